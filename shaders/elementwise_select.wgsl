// where(cond, a, b) with NumPy broadcasting: out[i] = cond[ic] != 0 ? a[ia] : b[ib].
// The output index is decomposed over `shape` (collapsed, at most 8 dims); each input is read
// through its strides (0 along broadcast dims).

struct Params {
    n: u32,
    start: u32,
    rank: u32,
    win_c: u32,
    win_a: u32,
    win_b: u32,
    win_o: u32,
    _p0: u32,
    shape: array<vec4<u32>, 2>,
    sc: array<vec4<u32>, 2>,
    sa: array<vec4<u32>, 2>,
    sb: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    let g = p.start + i;
    var rest = g;
    var ic = 0u;
    var ia = 0u;
    var ib = 0u;
    for (var d = p.rank; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rest % n;
        rest = rest / n;
        ic += c * p.sc[k / 4u][k % 4u];
        ia += c * p.sa[k / 4u][k % 4u];
        ib += c * p.sb[k / 4u][k % 4u];
    }
    // Both sides are read unconditionally so the load pattern does not diverge.
    let va = a[ia - p.win_a];
    let vb = b[ib - p.win_b];
    out[g - p.win_o] = select(vb, va, cond[ic - p.win_c] != 0.0);
}
