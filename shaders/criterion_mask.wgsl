// Mask2Former's point losses of rows of sampled mask logits x [R, P] against labels t [R, P]
// (src/ops/criterion): per row the mean sigmoid-BCE and the dice loss,
//   bce = mean_p max(x,0) − x·t + log1p(exp(−|x|)),   s = sigmoid(x),
//   num = 2·Σ s·t + 1,  den = Σ s + Σ t + 1,  dice = 1 − num/den,
// written to loss [R, 2] (bce, dice) with (num, den) to stats [R, 2] for the backward.
// `forward`: one 64-thread workgroup per row, tree sums in workgroup memory (each thread loops
// over P/64 points, under llvmpipe's loop budget, checked by the launcher).
// `backward`: one thread per point, dx = dl_bce·(s − t)/P − dl_dice·(2t·den − num)/den²·s(1 − s).

struct Params {
    rows: u32,
    points: u32,
    _p0: u32,
    _p1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
// forward: loss [R, 2], stats [R, 2]; backward: stats [R, 2] (read), dloss [R, 2], dx [R, P].
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;

// log1p(u) for u in [0, 1] without losing the small u (WGSL has no log1p): Kahan's trick.
fn log1p_small(u: f32) -> f32 {
    let v = 1.0 + u;
    if (v == 1.0) {
        return u;
    }
    return log(v) * u / (v - 1.0);
}

fn bce(v: f32, l: f32) -> f32 {
    return max(v, 0.0) - v * l + log1p_small(exp(-abs(v)));
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

var<workgroup> part: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    // Uniform control flow: every thread reaches every barrier, dead rows included.
    let r = wid.x + wid.y * nwg.x;
    let live = r < p.rows;
    var acc = vec4<f32>(0.0);
    if (live) {
        let base = r * p.points;
        for (var i = lid; i < p.points; i += WG) {
            let v = x[base + i];
            let l = t[base + i];
            let s = sigmoid(v);
            acc += vec4<f32>(bce(v, l), s, l, s * l);
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part[lid] += part[lid + k];
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        let a = part[0];
        let num = 2.0 * a.w + 1.0;
        let den = a.y + a.z + 1.0;
        loss[2u * r] = a.x / f32(p.points);
        loss[2u * r + 1u] = 1.0 - num / den;
        stats[2u * r] = num;
        stats[2u * r + 1u] = den;
    }
}
