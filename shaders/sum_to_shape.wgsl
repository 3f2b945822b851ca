// Sum of dy over the dims a target shape was broadcast along (the gradient of a broadcast, e.g.
// a bias gradient [N, C] -> [C]):
//   grad[k] = Σ_r dy[o(k, r)]
// Both index spaces are collapsed (at most 8 dims each) and dy is read through its strides in
// each.
// `main`: one thread per target element k, r running over [r0, r0 + rn) (clamped to the
// reduced size); with `accumulate` set it adds to grad instead of overwriting it (CPU adapters
// split long reductions over several launches: llvmpipe ends an invocation's loops after 65535
// iterations).
// `main_v4`: `main` for 4 consecutive kept elements a thread, where they are 4 consecutive
// values of dy at every reduced index (the kept inner dim contiguous in dy, extents, strides
// and windows multiples of 4): vec4 loads and stores.
// `partials`: the first pass of a two-pass sum, for long reductions into few outputs (a bias
// gradient sums up to 2·256² rows into 96 columns: one thread per column would leave a GPU
// idle). Thread (s, k) sums segment s, reduced indices [s·rn, (s + 1)·rn), into
// partial[s·kept + k]; the second pass sums the segments (`shaders/reduce.wgsl`).

struct Params {
    n: u32,
    start: u32,
    krank: u32,
    rrank: u32,
    win_dy: u32,
    win_g: u32,
    r0: u32,
    rn: u32,
    accumulate: u32,
    kept: u32,
    _p1: u32,
    _p2: u32,
    kshape: array<vec4<u32>, 2>,
    kd: array<vec4<u32>, 2>,
    rshape: array<vec4<u32>, 2>,
    rd: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
// main_v4
@group(0) @binding(1) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> grad4: array<vec4<f32>>;

// dy's offset of kept element k at reduced index 0.
fn kept_offset(k: u32) -> u32 {
    var rest = k;
    var kd = 0u;
    for (var d = p.krank; d > 0u; d--) {
        let j = d - 1u;
        let n = p.kshape[j / 4u][j % 4u];
        let c = rest % n;
        rest = rest / n;
        kd += c * p.kd[j / 4u][j % 4u];
    }
    return kd;
}

fn reduced_total() -> u32 {
    var total = 1u;
    for (var d = 0u; d < p.rrank; d++) {
        total *= p.rshape[d / 4u][d % 4u];
    }
    return total;
}

// The reduced index space walked as an odometer from r0: the digits and dy's offset (from kept
// offset kd). No divisions per element.
struct Odometer {
    digits: array<u32, 8>,
    id: u32,
}

fn odometer_at(kd: u32, r0: u32) -> Odometer {
    var o = Odometer(array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u), kd);
    var rest_r = r0;
    for (var d = p.rrank; d > 0u && rest_r > 0u; d--) {
        let j = d - 1u;
        let n = p.rshape[j / 4u][j % 4u];
        let c = rest_r % n;
        rest_r = rest_r / n;
        o.digits[j] = c;
        o.id += c * p.rd[j / 4u][j % 4u];
    }
    return o;
}

fn odometer_next(o: ptr<function, Odometer>) {
    for (var d = p.rrank; d > 0u; d--) {
        let j = d - 1u;
        let sd = p.rd[j / 4u][j % 4u];
        (*o).digits[j] += 1u;
        (*o).id += sd;
        let n = p.rshape[j / 4u][j % 4u];
        if ((*o).digits[j] < n) {
            break;
        }
        (*o).digits[j] = 0u;
        (*o).id -= n * sd;
    }
}

// Σ dy over reduced indices [r0, r_end) from kept offset kd.
fn sum_range(kd: u32, r0: u32, r_end: u32) -> f32 {
    var o = odometer_at(kd, r0);
    var acc = 0.0;
    for (var r = r0; r < r_end; r++) {
        acc += dy[o.id - p.win_dy];
        odometer_next(&o);
    }
    return acc;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    let k = p.start + i;
    let total = reduced_total();
    let r_end = min(total, p.r0 + min(p.rn, total));
    var acc = sum_range(kept_offset(k), p.r0, r_end);
    if (p.accumulate != 0u) {
        acc += grad[k - p.win_g];
    }
    grad[k - p.win_g] = acc;
}

// `sum_range` over 4 consecutive kept elements from kept offset kd (a multiple of 4).
fn sum_range4(kd: u32, r0: u32, r_end: u32) -> vec4<f32> {
    var o = odometer_at(kd, r0);
    var acc = vec4<f32>(0.0);
    for (var r = r0; r < r_end; r++) {
        acc += dy4[(o.id - p.win_dy) / 4u];
        odometer_next(&o);
    }
    return acc;
}

@compute @workgroup_size(256)
fn main_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = 4u * (gid.x + gid.y * nwg.x * 256u);
    if (e >= p.n) {
        return;
    }
    let k = p.start + e;
    let total = reduced_total();
    let r_end = min(total, p.r0 + min(p.rn, total));
    var acc = sum_range4(kept_offset(k), p.r0, r_end);
    if (p.accumulate != 0u) {
        acc += grad4[(k - p.win_g) / 4u];
    }
    grad4[(k - p.win_g) / 4u] = acc;
}

@compute @workgroup_size(256)
fn partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    let s = i / p.kept;
    let k = i - s * p.kept;
    let r0 = s * p.rn;
    let r_end = min(reduced_total(), r0 + p.rn);
    grad[i] = sum_range(kept_offset(k), r0, r_end);
}
