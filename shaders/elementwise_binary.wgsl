// Binary maps with NumPy broadcasting: out[i] = f(a[ia], b[ib]) over the output's index space.
// `same`: a, b and out share one contiguous layout. `broadcast`: the output index is decomposed
// over `shape` (collapsed, at most 8 dims) and a/b are read through their strides (0 along
// broadcast dims). OP codes match `Binary::code` in src/ops/elementwise/mod.rs; comparisons
// give 1.0 or 0.0. Each thread computes 4 consecutive outputs; the tensors are viewed as vec4
// (bindings rounded up to 16 bytes, window offsets multiples of 8 elements), which cuts the
// per-lane memory-access cost on CPU adapters.

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
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

fn nan() -> f32 {
    return bitcast<f32>(NAN_BITS);
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


fn store(e: u32, g: u32, r: vec4<f32>) {
    let k = (g - p.win_o) / 4u;
    if (e + 4u <= p.n) {
        out[k] = r;
    } else {
        // The chunk's last partial vec4: write only its live elements.
        for (var j = 0u; j < p.n - e; j++) {
            out[k][j] = r[j];
        }
    }
}

@compute @workgroup_size(256)
fn same(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = 4u * (gid.x + gid.y * nwg.x * 256u);
    if (e >= p.n) {
        return;
    }
    let g = p.start + e;
    let u = a[(g - p.win_a) / 4u];
    let v = b[(g - p.win_b) / 4u];
    store(e, g, vec4<f32>(apply(u.x, v.x), apply(u.y, v.y), apply(u.z, v.z), apply(u.w, v.w)));
}

// Element i of a or b through the vec4 view.
fn at_a(i: u32) -> f32 {
    return a[i / 4u][i % 4u];
}

fn at_b(i: u32) -> f32 {
    return b[i / 4u][i % 4u];
}

// Each thread computes up to 4 consecutive outputs of one row of the innermost dim, so the
// divisions that locate the row (costly per lane on CPU adapters) are shared by 4 elements.
@compute @workgroup_size(256)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    let last = p.rank - 1u;
    let n0 = p.shape[last / 4u][last % 4u];
    let tpr = (n0 + 3u) / 4u;
    let row = p.start / n0 + t / tpr;
    let c0 = 4u * (t % tpr);
    let end = p.start + p.n;
    if (row * n0 + c0 >= end) {
        return;
    }
    var rest = row;
    var ia = 0u;
    var ib = 0u;
    for (var d = last; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rest % n;
        rest = rest / n;
        ia += c * p.sa[k / 4u][k % 4u];
        ib += c * p.sb[k / 4u][k % 4u];
    }
    let sa0 = p.sa[last / 4u][last % 4u];
    let sb0 = p.sb[last / 4u][last % 4u];
    let g0 = row * n0 + c0;
    let xa = ia + c0 * sa0 - p.win_a;
    let xb = ib + c0 * sb0 - p.win_b;
    // Whole aligned vec4 of a row along which each input is contiguous (stride 1, vec4-aligned)
    // or constant (stride 0), e.g. a bias add: one vector op instead of four scalar ones.
    let whole = n0 % 4u == 0u && g0 >= p.start && g0 + 4u <= end;
    let a_ok = sa0 == 0u || (sa0 == 1u && xa % 4u == 0u);
    let b_ok = sb0 == 0u || (sb0 == 1u && xb % 4u == 0u);
    if (whole && a_ok && b_ok) {
        var u = vec4<f32>(at_a(xa));
        if (sa0 == 1u) {
            u = a[xa / 4u];
        }
        var v = vec4<f32>(at_b(xb));
        if (sb0 == 1u) {
            v = b[xb / 4u];
        }
        out[(g0 - p.win_o) / 4u] =
            vec4<f32>(apply(u.x, v.x), apply(u.y, v.y), apply(u.z, v.z), apply(u.w, v.w));
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        let g = row * n0 + c;
        if (c >= n0 || g >= end) {
            break;
        }
        if (g < p.start) {
            continue;
        }
        let k = g - p.win_o;
        out[k / 4u][k % 4u] = apply(at_a(ia + c * sa0 - p.win_a), at_b(ib + c * sb0 - p.win_b));
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> NAN_BITS: u32 = 0x7fc00000u;
