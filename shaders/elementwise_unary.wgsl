// Unary maps over contiguous f32 tensors: y[i] = f(x[i]), one thread per 4 elements read and
// written as vec4 (per-lane memory access dominates on CPU adapters; the bindings are rounded
// up to 16 bytes and window offsets are multiples of 8 elements, so vec4 k holds 4k..4k+3).
// OP selects f; the codes match `Unary::code` in src/ops/elementwise/mod.rs. alpha/beta are the
// scalar operands (add/mul/pow/compare scalar, clamp bounds).

override OP: u32 = 0u;

struct Params {
    n: u32,      // elements in this chunk
    start: u32,  // global index of the chunk's first element
    win_x: u32,  // first element of x's bound window
    win_y: u32,  // first element of y's bound window
    alpha: f32,
    beta: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

fn nan() -> f32 {
    return bitcast<f32>(NAN_BITS);
}

// erfc for z >= 0 with relative error below 1.2e-7 (Chebyshev fit, Numerical Recipes `erfcc`);
// relative accuracy in the tail keeps GELU of large negative inputs accurate.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let q = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(q);
}

// Exact (erf-based) GELU: x·Φ(x), Φ(x) = erfc(−x/√2)/2.
fn gelu(v: f32) -> f32 {
    let c = erfc_pos(abs(v) * 0.70710678118654752);
    if (v >= 0.0) {
        return v * (1.0 - 0.5 * c);
    }
    return 0.5 * v * c;
}

fn sigmoid(v: f32) -> f32 {
    // Never exponentiates a positive number, so no overflow to inf/inf.
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

// x^a as torch.pow: integer exponents of negative bases keep their sign, others give NaN.
fn powf(v: f32, a: f32) -> f32 {
    if (a == 0.0) {
        return 1.0;
    }
    if (a == 1.0) {
        return v;
    }
    if (a == 2.0) {
        return v * v;
    }
    let r = pow(abs(v), a);
    if (v < 0.0) {
        if (fract(a) != 0.0) {
            return nan();
        }
        if (fract(a * 0.5) != 0.0) {
            return -r;
        }
    }
    return r;
}

fn apply(v: f32) -> f32 {
    switch (OP) {
        case 0u: { return -v; }
        case 1u: { return max(v, 0.0); }
        case 2u: { return gelu(v); }
        case 3u: { return sigmoid(v); }
        case 4u: { return exp(v); }
        case 5u: { return log(v); }
        case 6u: { return sqrt(v); }
        case 7u: { return inverseSqrt(v); }
        // tanh saturates to ±1 in f32 past |x| = 9; clamping keeps e^2x-based builtins finite.
        case 8u: { return tanh(clamp(v, -15.0, 15.0)); }
        case 9u: { return abs(v); }
        case 10u: { return 1.0 / v; }
        case 11u: { return v + p.alpha; }
        case 12u: { return v * p.alpha; }
        case 13u: { return powf(v, p.alpha); }
        case 14u: { return min(max(v, p.alpha), p.beta); }
        case 15u: { return select(0.0, 1.0, v < p.alpha); }
        case 16u: { return select(0.0, 1.0, v > p.alpha); }
        default: { return nan(); }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = 4u * (gid.x + gid.y * nwg.x * 256u);
    if (e >= p.n) {
        return;
    }
    let g = p.start + e;
    let v = x[(g - p.win_x) / 4u];
    let r = vec4<f32>(apply(v.x), apply(v.y), apply(v.z), apply(v.w));
    let k = (g - p.win_y) / 4u;
    if (e + 4u <= p.n) {
        y[k] = r;
    } else {
        // The chunk's last partial vec4: write only its live elements.
        for (var j = 0u; j < p.n - e; j++) {
            y[k][j] = r[j];
        }
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> NAN_BITS: u32 = 0x7fc00000u;
