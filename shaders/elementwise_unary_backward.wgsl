// Backward of the unary maps: dx[i] = dy[i] · f'(x[i]) (overwrites dx). Same OP codes and
// scalars as elementwise_unary.wgsl; derivatives follow PyTorch's conventions at kinks
// (relu'(0) = 0, abs'(0) = 0, clamp passes the gradient on the closed interval).

override OP: u32 = 0u;

struct Params {
    n: u32,
    start: u32,
    win_x: u32,
    win_dy: u32,
    win_dx: u32,
    alpha: f32,
    beta: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// vec4 views, as in elementwise_unary.wgsl.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;

fn nan() -> f32 {
    return bitcast<f32>(NAN_BITS);
}

fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let q = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(q);
}

// d/dx x·Φ(x) = Φ(x) + x·φ(x).
fn gelu_grad(v: f32) -> f32 {
    let c = erfc_pos(abs(v) * 0.70710678118654752);
    let cdf = select(0.5 * c, 1.0 - 0.5 * c, v >= 0.0);
    return cdf + v * 0.39894228040143268 * exp(-0.5 * v * v);
}

fn powf(v: f32, a: f32) -> f32 {
    if (a == 0.0) {
        return 1.0;
    }
    if (a == 1.0) {
        return v;
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

fn derivative(v: f32) -> f32 {
    switch (OP) {
        case 0u: { return -1.0; }
        case 1u: { return select(0.0, 1.0, v > 0.0); }
        case 2u: { return gelu_grad(v); }
        // σ(1−σ) = e/(1+e)² with e = exp(−|x|): no cancellation in 1−σ when σ is near 1.
        case 3u: { let e = exp(-abs(v)); return e / ((1.0 + e) * (1.0 + e)); }
        case 4u: { return exp(v); }
        case 5u: { return 1.0 / v; }
        case 6u: { return 0.5 * inverseSqrt(v); }
        case 7u: { let r = inverseSqrt(v); return -0.5 * r * r * r; }
        // 1 − tanh² = 4e/(1+e)² with e = exp(−2|x|), accurate where tanh is near ±1.
        case 8u: { let e = exp(-2.0 * abs(v)); return 4.0 * e / ((1.0 + e) * (1.0 + e)); }
        case 9u: { return sign(v); }
        case 10u: { return -1.0 / (v * v); }
        case 11u: { return 1.0; }
        case 12u: { return p.alpha; }
        case 13u: {
            if (p.alpha == 0.0) {
                return 0.0;
            }
            return p.alpha * powf(v, p.alpha - 1.0);
        }
        case 14u: { return select(0.0, 1.0, v >= p.alpha && v <= p.beta); }
        case 15u, 16u: { return 0.0; }
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
    let r = dy[(g - p.win_dy) / 4u]
        * vec4<f32>(derivative(v.x), derivative(v.y), derivative(v.z), derivative(v.w));
    let k = (g - p.win_dx) / 4u;
    if (e + 4u <= p.n) {
        dx[k] = r;
    } else {
        for (var j = 0u; j < p.n - e; j++) {
            dx[k][j] = r[j];
        }
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> NAN_BITS: u32 = 0x7fc00000u;
