// Element-wise and reduction pieces of the matmul backward (the products themselves run on the
// forward kernels in matmul.wgsl with transposed flags):
// - `act_backward`: dpre[i] = dout[i] · act'(pre[i]) for the fused activation.
// - `bias_grad`:    dbias[n] = (accumulate ? dbias[n] : 0) + Σ_r dpre[r·n_cols + n] over `rows` rows.

struct Params {
    count: u32, // act_backward: elements; bias_grad: columns
    rows: u32, // bias_grad: rows summed by this launch
    act: u32, // 1 relu, 2 gelu
    accumulate: u32, // bias_grad: add to dbias instead of overwriting
    off: u32, // element offset of this launch's first element (row) inside the src/pre/dst bindings
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> pre: array<f32>;

const ACT_RELU: u32 = 1u;
const ACT_GELU: u32 = 2u;

// Same erf as matmul.wgsl (WGSL has no includes): Maclaurin series below 0.5, A&S 7.1.26 above.
fn erf_f32(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.5) {
        let z = x * x;
        var s = -1.0 / 75600.0;
        s = s * z + 1.0 / 9360.0;
        s = s * z - 1.0 / 1320.0;
        s = s * z + 1.0 / 216.0;
        s = s * z - 1.0 / 42.0;
        s = s * z + 1.0 / 10.0;
        s = s * z - 1.0 / 3.0;
        s = s * z + 1.0;
        return 1.1283791670955126 * x * s;
    }
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-ax * ax);
    return select(-y, y, x >= 0.0);
}

fn act_grad(x: f32, act: u32) -> f32 {
    if (act == ACT_RELU) {
        return select(0.0, 1.0, x > 0.0);
    }
    if (act == ACT_GELU) {
        // d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
        let cdf = 0.5 * (1.0 + erf_f32(x * 0.7071067811865476));
        let pdf = 0.3989422804014327 * exp(-0.5 * x * x);
        return cdf + x * pdf;
    }
    return 1.0;
}

@compute @workgroup_size(256)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.count) {
        return;
    }
    dst[p.off + i] = src[p.off + i] * act_grad(pre[p.off + i], p.act);
}

// One thread per column; consecutive threads read consecutive addresses of each row.
@compute @workgroup_size(64)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = gid.x + gid.y * nwg.x * 64u;
    if (n >= p.count) {
        return;
    }
    // Partial sums of 64 rows keep the rounding error growing with sqrt(rows / 64), not rows.
    var s = 0.0;
    for (var r0 = 0u; r0 < p.rows; r0 += 64u) {
        var part = 0.0;
        let r1 = min(r0 + 64u, p.rows);
        for (var r = r0; r < r1; r++) {
            part += src[p.off + r * p.count + n];
        }
        s += part;
    }
    if (p.accumulate != 0u) {
        s += dst[n];
    }
    dst[n] = s;
}
