// The Hungarian matcher's cost (src/ops/criterion): for every image b, query q and target t,
// over the P points shared by the image (x [B, Q, P] sampled mask logits, l [B, T, P] sampled
// target masks, probs [B, Q, C] class probabilities, classes [B, T] u32),
//   mask = (Σ_p softplus(x) − x·l)/P     (sigmoid-BCE: bce(x,1)·l + bce(x,0)·(1 − l)),
//   dice = 1 − (2·Σ s·l + 1)/(Σ s + Σ l + 1),  s = sigmoid(x),
//   cost = cost_mask·mask − cost_class·probs[b, q, classes[b, t]] + cost_dice·dice,
// with NaN set to 0 and the rest clamped to ±1e10 (as transformers does before the solve).
// One 64-thread workgroup per (b, q, t), five tree sums in workgroup memory; each thread loops
// over P/64 points (under llvmpipe's loop budget, checked by the launcher).

struct Params {
    batch: u32,
    queries: u32,
    targets: u32,
    points: u32,
    classes: u32,
    cost_class: f32,
    cost_mask: f32,
    cost_dice: f32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> lab: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> classes: array<u32>;
@group(0) @binding(5) var<storage, read_write> cost: array<f32>;

fn log1p_small(u: f32) -> f32 {
    let v = 1.0 + u;
    if (v == 1.0) {
        return u;
    }
    return log(v) * u / (v - 1.0);
}

var<workgroup> part: array<vec4<f32>, 64>;
var<workgroup> part_l: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let cell = wid.x + wid.y * nwg.x;
    let live = cell < p.batch * p.queries * p.targets;
    let tq = p.queries * p.targets;
    let b = cell / tq;
    let q = (cell - b * tq) / p.targets;
    let t = cell - b * tq - q * p.targets;
    var acc = vec4<f32>(0.0);
    var acc_l = 0.0;
    if (live) {
        let xb = (b * p.queries + q) * p.points;
        let lb = (b * p.targets + t) * p.points;
        for (var i = lid; i < p.points; i += WG) {
            let v = x[xb + i];
            let l = lab[lb + i];
            let s = 1.0 / (1.0 + exp(-v));
            let softplus = max(v, 0.0) + log1p_small(exp(-abs(v)));
            acc += vec4<f32>(softplus, v * l, s, s * l);
            acc_l += l;
        }
    }
    part[lid] = acc;
    part_l[lid] = acc_l;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part[lid] += part[lid + k];
            part_l[lid] += part_l[lid + k];
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        let a = part[0];
        let mask = (a.x - a.y) / f32(p.points);
        let dice = 1.0 - (2.0 * a.w + 1.0) / (a.z + part_l[0] + 1.0);
        let k = classes[b * p.targets + t];
        var class_p = bitcast<f32>(NAN_BITS);
        if (k < p.classes) {
            class_p = probs[(b * p.queries + q) * p.classes + k];
        }
        let v = p.cost_mask * mask - p.cost_class * class_p + p.cost_dice * dice;
        // NaN by its bits: WGSL lets compilers assume that no float is NaN.
        if ((bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u) {
            cost[cell] = 0.0;
        } else {
            cost[cell] = clamp(v, -1e10, 1e10);
        }
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> NAN_BITS: u32 = 0x7fc00000u;
