// Gradient of one input of a broadcast binary map, reduced to that input's shape:
//   grad[k] = Σ_r dy[o(k, r)] · ∂f/∂(a or b)(a[ia(k, r)], b[ib(k, r)])
// One thread per gradient element k; r runs over the dims that input was broadcast along.
// Both index spaces are collapsed (at most 8 dims each) and every tensor is read through its
// own strides in each. WHICH = 0 gives the gradient of a, 1 that of b. OP codes are those of
// elementwise_binary.wgsl, plus 12 = where(cond, ·, ·) with cond passed as `a` (WHICH 0: the
// taken-if-true side, 1: the other) and 13 = plain sum of dy (sum to shape).
// Comparisons have zero gradient; max/min split ties evenly as PyTorch does.
// One launch covers the reduced indices [r0, r0 + rn) (clamped to the reduced size) and, with
// ACCUMULATE set, adds to grad instead of overwriting it: CPU adapters split long reductions
// over several launches because llvmpipe ends an invocation's loops after 65535 iterations.

override OP: u32 = 0u;
override WHICH: u32 = 0u;

struct Params {
    n: u32,
    start: u32,
    krank: u32,
    rrank: u32,
    win_a: u32,
    win_b: u32,
    win_dy: u32,
    win_g: u32,
    r0: u32,
    rn: u32,
    accumulate: u32,
    _p: u32,
    kshape: array<vec4<u32>, 2>,
    ka: array<vec4<u32>, 2>,
    kb: array<vec4<u32>, 2>,
    kd: array<vec4<u32>, 2>,
    rshape: array<vec4<u32>, 2>,
    ra: array<vec4<u32>, 2>,
    rb: array<vec4<u32>, 2>,
    rd: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

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

// ∂f/∂a (WHICH 0) or ∂f/∂b (WHICH 1) times g.
fn partial(u: f32, v: f32, g: f32) -> f32 {
    switch (OP) {
        case 0u: { return g; }
        case 1u: { return select(g, -g, WHICH == 1u); }
        case 2u: { return g * select(v, u, WHICH == 1u); }
        case 3u: {
            if (WHICH == 0u) {
                return g / v;
            }
            return -g * u / (v * v);
        }
        case 4u, 5u: {
            // max: a wins where a > b; min: where a < b; ties share.
            var wins = u > v;
            if (OP == 5u) {
                wins = u < v;
            }
            if (u == v) {
                return 0.5 * g;
            }
            return select(0.0, g, wins == (WHICH == 0u));
        }
        case 6u: {
            if (WHICH == 0u) {
                if (v == 0.0) {
                    return 0.0;
                }
                return g * v * powf(u, v - 1.0);
            }
            // d/db a^b = a^b·ln a, taken as 0 at a = 0 for b >= 0 (PyTorch's convention).
            if (u == 0.0 && v >= 0.0) {
                return 0.0;
            }
            return g * powf(u, v) * log(u);
        }
        case 7u, 8u, 9u, 10u, 11u: { return 0.0; }
        case 12u: { return select(0.0, g, (u != 0.0) == (WHICH == 0u)); }
        case 13u: { return g; }
        default: { return nan(); }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    let k = p.start + i;
    var rest = k;
    var ka = 0u;
    var kb = 0u;
    var kd = 0u;
    for (var d = p.krank; d > 0u; d--) {
        let j = d - 1u;
        let n = p.kshape[j / 4u][j % 4u];
        let c = rest % n;
        rest = rest / n;
        ka += c * p.ka[j / 4u][j % 4u];
        kb += c * p.kb[j / 4u][j % 4u];
        kd += c * p.kd[j / 4u][j % 4u];
    }
    var total = 1u;
    for (var d = 0u; d < p.rrank; d++) {
        total *= p.rshape[d / 4u][d % 4u];
    }
    let r_end = min(total, p.r0 + min(p.rn, total));
    // Walk the reduced index space as an odometer from r0: no divisions per element.
    var cr = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    var ia = ka;
    var ib = kb;
    var id = kd;
    var rest_r = p.r0;
    for (var d = p.rrank; d > 0u && rest_r > 0u; d--) {
        let j = d - 1u;
        let n = p.rshape[j / 4u][j % 4u];
        let c = rest_r % n;
        rest_r = rest_r / n;
        cr[j] = c;
        ia += c * p.ra[j / 4u][j % 4u];
        ib += c * p.rb[j / 4u][j % 4u];
        id += c * p.rd[j / 4u][j % 4u];
    }
    var acc = 0.0;
    for (var r = p.r0; r < r_end; r++) {
        acc += partial(a[ia - p.win_a], b[ib - p.win_b], dy[id - p.win_dy]);
        for (var d = p.rrank; d > 0u; d--) {
            let j = d - 1u;
            let sa = p.ra[j / 4u][j % 4u];
            let sb = p.rb[j / 4u][j % 4u];
            let sd = p.rd[j / 4u][j % 4u];
            cr[j] += 1u;
            ia += sa;
            ib += sb;
            id += sd;
            let n = p.rshape[j / 4u][j % 4u];
            if (cr[j] < n) {
                break;
            }
            cr[j] = 0u;
            ia -= n * sa;
            ib -= n * sb;
            id -= n * sd;
        }
    }
    if (p.accumulate != 0u) {
        acc += grad[k - p.win_g];
    }
    grad[k - p.win_g] = acc;
}
