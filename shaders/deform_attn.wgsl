// Multi-scale deformable attention (the MSDeformAttn core), forward and backward, with the
// semantics of Deformable-DETR's CUDA kernel (ms_deform_im2col_cuda.cuh):
//   value [N, S, M, D] (S = Σ H_l·W_l, levels concatenated), sampling_locations [N, Lq, M, L, P, 2]
//   (x, y normalised to [0, 1]), attention_weights [N, Lq, M, L, P] → out [N, Lq, M·D].
// Level l is sampled at h = y·H_l − 0.5, w = x·W_l − 0.5 only when −1 < h < H_l and −1 < w < W_l;
// bilinear corners outside the map read as 0.
//
// Forward: one thread per (n, q, m, channel group) — 4·C4 channels with vec4 loads when
// D % 4 == 0 (`forward_vec4`), else one channel (`forward`). Backward: one thread per (n, q, m)
// loops over the channels, so the per-(q, m, l, p) gradients (sums over D) need no reduction between threads;
// grad_value is a scatter-add (compare-exchange on atomic<u32> here; the launcher swaps in native
// f32 atomics where the adapter has them). `*_off` are element skips from the binding starts
// (chunked launches over N, see src/ops/resample/chunk.rs).

struct Params {
    items: u32,
    queries: u32,
    heads: u32,
    channels: u32,
    levels: u32,
    points: u32,
    spatial: u32,
    value_off: u32,
    loc_off: u32,
    attn_off: u32,
    out_off: u32,
    _pad: u32,
    // Per level: (H, W, start index in S, unused).
    shapes: array<vec4<u32>, 8>,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> loc: array<f32>;
@group(0) @binding(3) var<storage, read> attn: array<f32>;

@group(0) @binding(1) var<storage, read> value: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The vec4 forward's views of the same bindings.
@group(0) @binding(1) var<storage, read> value4: array<vec4<f32>>;
// value4 is read only through this (its texel form reads a texel view: ops/common/texel.rs).
fn ld_value4(i: u32) -> vec4<f32> { return value4[i]; }
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;
// Backward: grad_out [N, Lq, M·D] in the output's slot, grad_loc, grad_attn, grad_value.
@group(0) @binding(4) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read> grad_out4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> grad_loc: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_attn: array<f32>;
// SCATTER_BEGIN
@group(0) @binding(7) var<storage, read_write> grad_value: array<atomic<u32>>;
// Portable float add: retry a compare-exchange on the f32 bits until no other thread intervened.
fn scatter_add(i: u32, v: f32) {
    var old = atomicLoad(&grad_value[i]);
    loop {
        let r = atomicCompareExchangeWeak(&grad_value[i], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}
// SCATTER_END

// One bilinear tap on one level: spatial indices (into S) of the corners (h_low, w_low),
// (h_low, w_high), (h_high, w_low), (h_high, w_high), their weights (0 for corners outside, whose
// index is then the level start so reads stay in bounds), the fractions, and whether the point is
// inside the sampling region at all.
struct Tap {
    s: vec4<u32>,
    w: vec4<f32>,
    mask: vec4<f32>,
    lh: f32,
    lw: f32,
    inside: bool,
}

fn tap(l: u32, x: f32, y: f32) -> Tap {
    let shape = p.shapes[l];
    let hf = f32(shape.x);
    let wf = f32(shape.y);
    let h_im = y * hf - 0.5;
    let w_im = x * wf - 0.5;
    var t: Tap;
    t.inside = h_im > -1.0 && w_im > -1.0 && h_im < hf && w_im < wf;
    if (!t.inside) {
        t.s = vec4<u32>(shape.z);
        t.w = vec4<f32>(0.0);
        t.mask = vec4<f32>(0.0);
        t.lh = 0.0;
        t.lw = 0.0;
        return t;
    }
    let h0 = floor(h_im);
    let w0 = floor(w_im);
    t.lh = h_im - h0;
    t.lw = w_im - w0;
    let hh = 1.0 - t.lh;
    let hw = 1.0 - t.lw;
    let hs = vec4<f32>(h0, h0, h0 + 1.0, h0 + 1.0);
    let ws = vec4<f32>(w0, w0 + 1.0, w0, w0 + 1.0);
    let ok = (hs >= vec4<f32>(0.0)) & (hs <= vec4<f32>(hf - 1.0)) & (ws >= vec4<f32>(0.0)) & (ws <= vec4<f32>(wf - 1.0));
    t.mask = select(vec4<f32>(0.0), vec4<f32>(1.0), ok);
    t.w = t.mask * vec4<f32>(hh * hw, hh * t.lw, t.lh * hw, t.lh * t.lw);
    // Inside the region, h0 >= -1 and w0 >= -1, so the clamped indices are the real ones where ok.
    let hi = vec4<u32>(clamp(hs, vec4<f32>(0.0), vec4<f32>(hf - 1.0)));
    let wi = vec4<u32>(clamp(ws, vec4<f32>(0.0), vec4<f32>(wf - 1.0)));
    t.s = select(vec4<u32>(shape.z), vec4<u32>(shape.z) + hi * shape.y + wi, ok);
    return t;
}

// (n, q, m) of a thread index over N·Lq·M, plus the first (l, p) slot of its attention weights.
fn head_slot(nqm: u32) -> u32 {
    return nqm * p.levels * p.points;
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.items * p.queries * p.heads * p.channels) {
        return;
    }
    let c = t % p.channels;
    let nqm = t / p.channels;
    let m = nqm % p.heads;
    let n = nqm / (p.heads * p.queries);
    let vbase = p.value_off + n * p.spatial * p.heads * p.channels + m * p.channels + c;
    let vstride = p.heads * p.channels;
    var acc = 0.0;
    var slot = head_slot(nqm);
    for (var l = 0u; l < p.levels; l++) {
        for (var k = 0u; k < p.points; k++) {
            let a = attn[p.attn_off + slot];
            let tp = tap(l, loc[p.loc_off + 2u * slot], loc[p.loc_off + 2u * slot + 1u]);
            slot++;
            if (!tp.inside) {
                continue;
            }
            let v = vec4<f32>(value[vbase + tp.s.x * vstride], value[vbase + tp.s.y * vstride],
                value[vbase + tp.s.z * vstride], value[vbase + tp.s.w * vstride]);
            acc += a * dot(tp.w, v);
        }
    }
    out[p.out_off + t] = acc;
}

// Channel groups of 4 per thread in `forward_vec4`, at most 8 (32 channels): the launcher sets
// the largest divisor of D / 4 up to 8 on CPU adapters (the tap weights are computed once per
// thread, and with a constant trip count the accumulators stay in registers), 1 on GPUs (more
// threads).
override C4: u32 = 1u;

@compute @workgroup_size(WG)
fn forward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let c4s = p.channels / 4u;
    let groups = c4s / C4;
    if (t >= p.items * p.queries * p.heads * groups) {
        return;
    }
    let c4 = (t % groups) * C4;
    let nqm = t / groups;
    let m = nqm % p.heads;
    let n = nqm / (p.heads * p.queries);
    // Offsets are multiples of 4 elements when D % 4 == 0 (the launcher checks the alignment).
    let vbase = p.value_off / 4u + n * p.spatial * p.heads * c4s + m * c4s + c4;
    let vstride = p.heads * c4s;
    var acc: array<vec4<f32>, 8>;
    for (var j = 0u; j < C4; j++) {
        acc[j] = vec4<f32>(0.0);
    }
    var slot = head_slot(nqm);
    for (var l = 0u; l < p.levels; l++) {
        for (var k = 0u; k < p.points; k++) {
            let a = attn[p.attn_off + slot];
            let tp = tap(l, loc[p.loc_off + 2u * slot], loc[p.loc_off + 2u * slot + 1u]);
            slot++;
            if (!tp.inside) {
                continue;
            }
            let w = a * tp.w;
            let s = vbase + tp.s * vstride;
            for (var j = 0u; j < C4; j++) {
                acc[j] += w.x * ld_value4(s.x + j) + w.y * ld_value4(s.y + j) + w.z * ld_value4(s.z + j)
                    + w.w * ld_value4(s.w + j);
            }
        }
    }
    let o = p.out_off / 4u + nqm * c4s + c4;
    for (var j = 0u; j < C4; j++) {
        out4[o + j] = acc[j];
    }
}

// Per-tap factors of the backward: corner weights times the attention weight (grad_value), and
// the derivatives of the sample with respect to h_im and w_im per corner value.
struct TapGrad {
    sw: vec4<f32>,
    dh: vec4<f32>,
    dw: vec4<f32>,
}

fn tap_grad(tp: Tap, a: f32) -> TapGrad {
    let hh = 1.0 - tp.lh;
    let hw = 1.0 - tp.lw;
    var g: TapGrad;
    g.sw = a * tp.w;
    g.dh = tp.mask * vec4<f32>(-hw, -tp.lw, hw, tp.lw);
    g.dw = tp.mask * vec4<f32>(-hh, hh, -tp.lh, tp.lh);
    return g;
}

fn scatter_corners(s: vec4<u32>, sw: vec4<f32>, go: f32) {
    if (go != 0.0) {
        if (sw.x != 0.0) { scatter_add(s.x, sw.x * go); }
        if (sw.y != 0.0) { scatter_add(s.y, sw.y * go); }
        if (sw.z != 0.0) { scatter_add(s.z, sw.z * go); }
        if (sw.w != 0.0) { scatter_add(s.w, sw.w * go); }
    }
}

// Writes the (l, p) slot's weight and location gradients from the channel sums.
fn store_tap_grads(slot: u32, l: u32, a: f32, g_attn: f32, g_h: f32, g_w: f32) {
    let shape = p.shapes[l];
    grad_attn[p.attn_off + slot] = g_attn;
    // d(w_im)/dx = W and d(h_im)/dy = H.
    grad_loc[p.loc_off + 2u * slot] = g_w * a * f32(shape.y);
    grad_loc[p.loc_off + 2u * slot + 1u] = g_h * a * f32(shape.x);
}

// grad_value must be zero before these run (the launcher records the zero fill); grad_loc and
// grad_attn are overwritten.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let nqm = gid.x + gid.y * nwg.x * WG;
    if (nqm >= p.items * p.queries * p.heads) {
        return;
    }
    let m = nqm % p.heads;
    let n = nqm / (p.heads * p.queries);
    let vbase = p.value_off + n * p.spatial * p.heads * p.channels + m * p.channels;
    let vstride = p.heads * p.channels;
    let gbase = p.out_off + nqm * p.channels;
    var slot = head_slot(nqm);
    for (var l = 0u; l < p.levels; l++) {
        for (var k = 0u; k < p.points; k++) {
            let a = attn[p.attn_off + slot];
            let tp = tap(l, loc[p.loc_off + 2u * slot], loc[p.loc_off + 2u * slot + 1u]);
            var g_attn = 0.0;
            var g_h = 0.0;
            var g_w = 0.0;
            if (tp.inside) {
                let tg = tap_grad(tp, a);
                let s = vbase + tp.s * vstride;
                for (var c = 0u; c < p.channels; c++) {
                    let go = grad_out[gbase + c];
                    let v = vec4<f32>(value[s.x + c], value[s.y + c], value[s.z + c], value[s.w + c]);
                    g_attn += go * dot(tp.w, v);
                    g_h += go * dot(tg.dh, v);
                    g_w += go * dot(tg.dw, v);
                    scatter_corners(s + vec4<u32>(c), tg.sw, go);
                }
            }
            store_tap_grads(slot, l, a, g_attn, g_h, g_w);
            slot++;
        }
    }
}

// The same with vec4 loads of value and grad_out (D % 4 == 0; offsets are multiples of 4).
@compute @workgroup_size(WG)
fn backward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let nqm = gid.x + gid.y * nwg.x * WG;
    if (nqm >= p.items * p.queries * p.heads) {
        return;
    }
    let c4s = p.channels / 4u;
    let m = nqm % p.heads;
    let n = nqm / (p.heads * p.queries);
    let vbase = p.value_off / 4u + n * p.spatial * p.heads * c4s + m * c4s;
    let vstride = p.heads * c4s;
    let gbase = p.out_off / 4u + nqm * c4s;
    var slot = head_slot(nqm);
    for (var l = 0u; l < p.levels; l++) {
        for (var k = 0u; k < p.points; k++) {
            let a = attn[p.attn_off + slot];
            let tp = tap(l, loc[p.loc_off + 2u * slot], loc[p.loc_off + 2u * slot + 1u]);
            var g_attn = 0.0;
            var g_h = 0.0;
            var g_w = 0.0;
            if (tp.inside) {
                let tg = tap_grad(tp, a);
                let s = vbase + tp.s * vstride;
                for (var c = 0u; c < c4s; c++) {
                    let go = grad_out4[gbase + c];
                    let v0 = ld_value4(s.x + c);
                    let v1 = ld_value4(s.y + c);
                    let v2 = ld_value4(s.z + c);
                    let v3 = ld_value4(s.w + c);
                    // Rows: corners; a column per channel. Sums over the four channels.
                    let val = tp.w.x * v0 + tp.w.y * v1 + tp.w.z * v2 + tp.w.w * v3;
                    let dh = tg.dh.x * v0 + tg.dh.y * v1 + tg.dh.z * v2 + tg.dh.w * v3;
                    let dw = tg.dw.x * v0 + tg.dw.y * v1 + tg.dw.z * v2 + tg.dw.w * v3;
                    g_attn += dot(go, val);
                    g_h += dot(go, dh);
                    g_w += dot(go, dw);
                    // Scalar element indices of channel 4c of each corner.
                    let e = 4u * (s + vec4<u32>(c));
                    scatter_corners(e, tg.sw, go.x);
                    scatter_corners(e + vec4<u32>(1u), tg.sw, go.y);
                    scatter_corners(e + vec4<u32>(2u), tg.sw, go.z);
                    scatter_corners(e + vec4<u32>(3u), tg.sw, go.w);
                }
            }
            store_tap_grads(slot, l, a, g_attn, g_h, g_w);
            slot++;
        }
    }
}
