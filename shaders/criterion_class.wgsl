// Cross-entropy of rows of class logits x [R, C] against target classes k [R] (u32)
// (src/ops/criterion): loss[r] = log Σ_c exp(x[r,c]) − x[r,k[r]], with the log-sum-exp saved to
// lse [R] for the backward. A target past the row (k ≥ C) gives NaN, never a read out of bounds.
// `forward`: one 64-thread workgroup per row, max and sum trees in workgroup memory.
// `backward`: one thread per logit, dx = dl·(exp(x − lse) − [c = k]).

struct Params {
    rows: u32,
    classes: u32,
    _p0: u32,
    _p1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> target_class: array<u32>;
// forward: loss [R], lse [R]; backward: lse [R] (read), dloss [R], dx [R, C].
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    // Uniform control flow: every thread reaches every barrier, dead rows included.
    let r = wid.x + wid.y * nwg.x;
    let live = r < p.rows;
    let base = r * p.classes;
    var m = -bitcast<f32>(INF_BITS);
    if (live) {
        for (var c = lid; c < p.classes; c += WG) {
            m = max(m, x[base + c]);
        }
    }
    part[lid] = m;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part[lid] = max(part[lid], part[lid + k]);
        }
        workgroupBarrier();
    }
    m = part[0];
    workgroupBarrier();
    var acc = 0.0;
    if (live) {
        for (var c = lid; c < p.classes; c += WG) {
            acc += exp(x[base + c] - m);
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
        let l = m + log(part[0]);
        lse[r] = l;
        let k = target_class[r];
        if (k < p.classes) {
            loss[r] = l - x[base + k];
        } else {
            loss[r] = bitcast<f32>(NAN_BITS);
        }
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> NAN_BITS: u32 = 0x7fc00000u;
var<private> INF_BITS: u32 = 0x7f800000u;
