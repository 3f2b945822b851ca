// LayerNorm backward over the last dimension, from the forward's saved per-row mean and rstd.
//   xhat = (x - mean) * rstd,  g = dy * w
//   dx = rstd * (g - mean_row(g) - xhat * mean_row(g * xhat))          (overwrites dx)
//   dw[c] = sum_rows dy * xhat,  db[c] = sum_rows dy                      (overwrite dw, db)
// dx: one invocation per row (`dx_thread`, CPU adapters) or one workgroup per row (`dx_wg`, GPUs).
// dw/db: a deterministic two-stage column reduction without atomics: `param_partials` sums chunks of
// `chunk_rows` rows per column into part[2][chunks][cols], then `param_reduce` sums the chunks.
// Entry points use disjoint sets of globals; globals of different entry points may share a binding.

struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// dx_* bindings
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// param_partials bindings: dy, x as above, then
@group(0) @binding(3) var<storage, read> mean_p: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_p: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

// param_reduce bindings
@group(0) @binding(1) var<storage, read> part_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;
// param_reduce_v4 (C a multiple of 4): the same as vec4
@group(0) @binding(1) var<storage, read> part_in4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dw4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> db4: array<vec4<f32>>;

const WG_THREAD: u32 = 64u;
const WG_ROW: u32 = 256u;

// ---- dx, one row per invocation -----------------------------------------------------------------

@compute @workgroup_size(WG_THREAD)
fn dx_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG_THREAD;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let m = mean[r];
    let s = rstd[r];
    var c1 = 0.0;
    var c2 = 0.0;
    for (var i = 0u; i < p.cols; i += 1u) {
        let g = dy[base + i] * w[i];
        c1 += g;
        c2 += g * (x[base + i] - m) * s;
    }
    c1 /= f32(p.cols);
    c2 /= f32(p.cols);
    for (var i = 0u; i < p.cols; i += 1u) {
        let xh = (x[base + i] - m) * s;
        dx[base + i] = s * (dy[base + i] * w[i] - c1 - xh * c2);
    }
}

// ---- dx, one row per workgroup ------------------------------------------------------------------

var<workgroup> red: array<vec2<f32>, WG_ROW>;

@compute @workgroup_size(WG_ROW)
fn dx_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let m = mean[r];
    let s = rstd[r];
    var acc = vec2<f32>(0.0);
    for (var i = lid; i < p.cols; i += WG_ROW) {
        let g = dy[base + i] * w[i];
        acc += vec2<f32>(g, g * (x[base + i] - m) * s);
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var k = WG_ROW / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let c = red[0] / f32(p.cols);
    for (var i = lid; i < p.cols; i += WG_ROW) {
        let xh = (x[base + i] - m) * s;
        dx[base + i] = s * (dy[base + i] * w[i] - c.x - xh * c.y);
    }
}

// ---- dw, db -------------------------------------------------------------------------------------

// One invocation per (column, chunk); neighbouring invocations read neighbouring columns.
@compute @workgroup_size(WG_THREAD)
fn param_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG_THREAD;
    if (i >= p.cols * p.chunks) {
        return;
    }
    let c = i % p.cols;
    let k = i / p.cols;
    let r0 = k * p.chunk_rows;
    let r1 = min(r0 + p.chunk_rows, p.rows);
    var sw = 0.0;
    var sb = 0.0;
    for (var r = r0; r < r1; r += 1u) {
        let g = dy[r * p.cols + c];
        sw += g * (x[r * p.cols + c] - mean_p[r]) * rstd_p[r];
        sb += g;
    }
    part[k * p.cols + c] = sw;
    part[(p.chunks + k) * p.cols + c] = sb;
}

@compute @workgroup_size(WG_THREAD)
fn param_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = gid.x + gid.y * nwg.x * WG_THREAD;
    if (c >= p.cols) {
        return;
    }
    var sw = 0.0;
    var sb = 0.0;
    for (var k = 0u; k < p.chunks; k += 1u) {
        sw += part_in[k * p.cols + c];
        sb += part_in[(p.chunks + k) * p.cols + c];
    }
    dw[c] = sw;
    db[c] = sb;
}

// `param_reduce` for C a multiple of 4: 4 columns an invocation, vec4 loads and stores.
@compute @workgroup_size(WG_THREAD)
fn param_reduce_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c4 = gid.x + gid.y * nwg.x * WG_THREAD;
    let cols4 = p.cols / 4u;
    if (c4 >= cols4) {
        return;
    }
    var sw = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    for (var k = 0u; k < p.chunks; k += 1u) {
        sw += part_in4[k * cols4 + c4];
        sb += part_in4[(p.chunks + k) * cols4 + c4];
    }
    dw4[c4] = sw;
    db4[c4] = sb;
}
