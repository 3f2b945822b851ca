// LayerNorm forward on GPUs with subgroup operations: one subgroup per row, its lanes striding
// over the row's vec4s, the two reductions (mean, then squared deviations) done with
// subgroupAdd: no workgroup memory and no barriers, where `rows_wg` (layer_norm.wgsl) spends a
// 256-invocation workgroup and eight barriers on a row of 96–768 values.
//
// A workgroup is exactly one subgroup: the launcher sets SG to the adapter's subgroup size and
// runs this only where the adapter reports a single size (min = max: 32 on NVIDIA, 8 on
// lavapipe) and C is a multiple of 4. Same bindings as layer_norm.wgsl, read four at a time.
// Uses the subgroup built-ins without `enable subgroups;`, which naga does not parse yet; it never
// runs in a browser (RuntimeOptions::web() asks for no subgroups).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;

override SG: u32 = 32u;

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Normalises row r (uniform across the subgroup); returns (mean, rstd).
fn row(r: u32, lane: u32) -> vec2<f32> {
    let n4 = p.cols >> 2u;
    let base = r * n4;
    var s = vec4<f32>(0.0);
    for (var i = lane; i < n4; i += SG) {
        s += x[base + i];
    }
    let mean = subgroupAdd(hsum(s)) / f32(p.cols);
    var q = vec4<f32>(0.0);
    for (var i = lane; i < n4; i += SG) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(subgroupAdd(hsum(q)) / f32(p.cols) + p.eps);
    for (var i = lane; i < n4; i += SG) {
        y[base + i] = (x[base + i] - mean) * rstd * w[i] + b[i];
    }
    return vec2<f32>(mean, rstd);
}

// 2-D grid past 65535 workgroups: one workgroup per row, linear over x then y.
fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(SG)
fn rows_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let r = row_index(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    row(r, lane);
}

@compute @workgroup_size(SG)
fn rows_subgroup_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(subgroup_invocation_id) lane: u32) {
    let r = row_index(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    let s = row(r, lane);
    if (lane == 0u) {
        mean_out[r] = s.x;
        rstd_out[r] = s.y;
    }
}
