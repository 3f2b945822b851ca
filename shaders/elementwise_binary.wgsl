// Binary maps with NumPy broadcasting: out[i] = f(a[ia], b[ib]) over the output's index space.
// `same`: a, b and out share one contiguous layout. `broadcast`: the output index is decomposed
// over `shape` (collapsed, at most 8 dims) and a/b are read through their strides (0 along
// broadcast dims). OP codes match `Binary::code` in src/ops/elementwise/mod.rs; comparisons
// give 1.0 or 0.0.

override OP: u32 = 0u;

struct Params {
    n: u32,
    start: u32,
    rank: u32,
    win_a: u32,
    win_b: u32,
    win_o: u32,
    _p0: u32,
    _p1: u32,
    shape: array<vec4<u32>, 2>,
    sa: array<vec4<u32>, 2>,
    sb: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

fn powf(v: f32, e: f32) -> f32 {
    if (e == 0.0) {
        return 1.0;
    }
    if (e == 1.0) {
        return v;
    }
    if (e == 2.0) {
        return v * v;
    }
    let r = pow(abs(v), e);
    if (v < 0.0) {
        if (fract(e) != 0.0) {
            return nan();
        }
        if (fract(e * 0.5) != 0.0) {
            return -r;
        }
    }
    return r;
}

fn apply(u: f32, v: f32) -> f32 {
    switch (OP) {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        case 6u: { return powf(u, v); }
        case 7u: { return select(0.0, 1.0, u < v); }
        case 8u: { return select(0.0, 1.0, u <= v); }
        case 9u: { return select(0.0, 1.0, u > v); }
        case 10u: { return select(0.0, 1.0, u >= v); }
        case 11u: { return select(0.0, 1.0, u == v); }
        default: { return nan(); }
    }
}


@compute @workgroup_size(256)
fn same(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    let g = p.start + i;
    out[g - p.win_o] = apply(a[g - p.win_a], b[g - p.win_b]);
}

@compute @workgroup_size(256)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    let g = p.start + i;
    var rest = g;
    var ia = 0u;
    var ib = 0u;
    for (var d = p.rank; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rest % n;
        rest = rest / n;
        ia += c * p.sa[k / 4u][k % 4u];
        ib += c * p.sb[k / 4u][k % 4u];
    }
    out[g - p.win_o] = apply(a[ia - p.win_a], b[ib - p.win_b]);
}
