// Per-pixel decisions over Mask2Former's query masks, upsampled on the fly (src/ops/mask_argmax).
//
// `logits` holds one image's mask logits [Q, mask_h, mask_w]. The value of query q at output pixel
// (oy, ox) is the original's two bilinear resizes (align_corners=False): mask size → network input
// size → output size. Only the 4 input-size points the output pixel reads are computed, each from
// 4 mask pixels: 16 taps, with the host's f32 formula and order (`postprocess::resize_bilinear`:
// `top = a·(1−l) + b·l` per row, then `top·(1−ly) + bot·ly`), so an adapter that does not contract
// to FMA matches the host bit for bit. The taps (source indices and fractions) come from the host
// in `idx` / `lam`, computed once in f64 as the host computes them:
//   idx: rows1 [in_h × 2] | cols1 [in_w × 2] | rows2 [out_h × 2] | cols2 [out_w × 2]
//   lam: rows1 [in_h]     | cols1 [in_w]     | rows2 [out_h]     | cols2 [out_w]
// (step 1 maps input-size rows/columns to mask rows/columns, step 2 output to input size).
//
// Grid (panoptic, semantic): x = column block of WG, y = output row; (instance) see its section.
// Every thread stays to the workgroup barriers.

struct Params {
    mask_h: u32,
    mask_w: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    // panoptic: kept queries; semantic: queries
    n: u32,
    // semantic: classes (without "no object")
    classes: u32,
}

const WG: u32 = 64u;
// Most kept queries (panoptic) / queries (semantic) one launch handles; the launcher checks.
const MAX_QUERIES: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read> lam: array<f32>;

struct Tap {
    a: u32,
    b: u32,
    l: f32,
}

fn tap(at: u32, lam_at: u32, i: u32) -> Tap {
    var t: Tap;
    t.a = idx[at + 2u * i];
    t.b = idx[at + 2u * i + 1u];
    t.l = lam[lam_at + i];
    return t;
}

// The taps of one output pixel: the two input rows / columns it reads and, for each, the mask
// rows / columns those read.
struct Pixel {
    ya: Tap,
    yb: Tap,
    xa: Tap,
    xb: Tap,
    ly: f32,
    lx: f32,
}

fn pixel_taps(oy: u32, ox: u32) -> Pixel {
    let rows2 = 2u * (p.in_h + p.in_w);
    let cols2 = rows2 + 2u * p.out_h;
    let ty = tap(rows2, p.in_h + p.in_w, oy);
    let tx = tap(cols2, p.in_h + p.in_w + p.out_h, ox);
    var px: Pixel;
    px.ya = tap(0u, 0u, ty.a);
    px.yb = tap(0u, 0u, ty.b);
    px.xa = tap(2u * p.in_h, p.in_h, tx.a);
    px.xb = tap(2u * p.in_h, p.in_h, tx.b);
    px.ly = ty.l;
    px.lx = tx.l;
    return px;
}

// Step 1: the value at one input-size point, from 4 mask pixels of the plane at `base`.
fn step1(base: u32, ry: Tap, cx: Tap) -> f32 {
    let r0 = base + ry.a * p.mask_w;
    let r1 = base + ry.b * p.mask_w;
    let top = logits[r0 + cx.a] * (1.0 - cx.l) + logits[r0 + cx.b] * cx.l;
    let bot = logits[r1 + cx.a] * (1.0 - cx.l) + logits[r1 + cx.b] * cx.l;
    return top * (1.0 - ry.l) + bot * ry.l;
}

// Query q's mask logit at the output pixel whose taps are `px`.
fn upsampled(q: u32, px: Pixel) -> f32 {
    let base = q * p.mask_h * p.mask_w;
    let v00 = step1(base, px.ya, px.xa);
    let v01 = step1(base, px.ya, px.xb);
    let v10 = step1(base, px.yb, px.xa);
    let v11 = step1(base, px.yb, px.xb);
    let top = v00 * (1.0 - px.lx) + v01 * px.lx;
    let bot = v10 * (1.0 - px.lx) + v11 * px.lx;
    return top * (1.0 - px.ly) + bot * px.ly;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// ---- panoptic ---------------------------------------------------------------------------------
// `table` holds the kept queries (indices into Q), then their class scores (f32 bits); per pixel
// the owner is the first kept query with the highest score · sigmoid(mask), written as its kept
// index with bit 31 set when the owner's probability is ≥ 0.5. `area[j]` counts the pixels where kept query j's probability is
// ≥ 0.5 (its "original area"); the owner map gives the rest.

// All entries: `table` (per-query data, as u32 bits) and the per-pixel map they write;
// panoptic and instance: per-query counters (`area` for panoptic, 5 per query for instance).
@group(0) @binding(4) var<storage, read> table: array<u32>;
@group(0) @binding(5) var<storage, read_write> pixels: array<u32>;
@group(0) @binding(6) var<storage, read_write> area: array<atomic<u32>>;

var<workgroup> wg_area: array<atomic<u32>, MAX_QUERIES>;

@compute @workgroup_size(WG)
fn panoptic(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // Workgroup memory is not zeroed for us (the runtime turns wgpu's zeroing off).
    for (var j = li; j < p.n; j += WG) {
        atomicStore(&wg_area[j], 0u);
    }
    workgroupBarrier();
    let ox = gid.x;
    let oy = gid.y;
    if (ox < p.out_w && oy < p.out_h) {
        let px = pixel_taps(oy, ox);
        var best = -1.0;
        var who = 0u;
        var who_p = 0.0;
        for (var j = 0u; j < p.n; j++) {
            let prob = sigmoid(upsampled(table[j], px));
            let v = bitcast<f32>(table[p.n + j]) * prob;
            if (v > best) {
                best = v;
                who = j;
                who_p = prob;
            }
            if (prob >= 0.5) {
                atomicAdd(&wg_area[j], 1u);
            }
        }
        pixels[oy * p.out_w + ox] = who | select(0u, 0x80000000u, who_p >= 0.5);
    }
    workgroupBarrier();
    for (var j = li; j < p.n; j += WG) {
        let c = atomicLoad(&wg_area[j]);
        if (c != 0u) {
            atomicAdd(&area[j], c);
        }
    }
}

// ---- semantic ---------------------------------------------------------------------------------
// label = argmax over classes c of Σ_q probs[q, c] · sigmoid(mask_q) (first wins ties), summed in
// query order as the host does. `table` holds probs [Q, classes] (softmax without "no object").

@compute @workgroup_size(WG)
fn semantic(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if (ox >= p.out_w || oy >= p.out_h) {
        return;
    }
    let px = pixel_taps(oy, ox);
    var m: array<f32, MAX_QUERIES>;
    for (var q = 0u; q < p.n; q++) {
        m[q] = sigmoid(upsampled(q, px));
    }
    var best = 0u;
    var best_s = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        var s = 0.0;
        for (var q = 0u; q < p.n; q++) {
            s += bitcast<f32>(table[q * p.classes + c]) * m[q];
        }
        if (c == 0u || s > best_s) {
            best = c;
            best_s = s;
        }
    }
    pixels[oy * p.out_w + ox] = best;
}

// ---- instance ---------------------------------------------------------------------------------
// Binary masks (logit > 0) of n selected queries, `table[j]` = query index into Q, packed as bits
// with each row padded to whole words: WPR = ceil(out_w / 32) words a row, pixel (y, x) of
// selected query j in word (j·out_h + y)·WPR + x/32, bit x % 32; the padding bits are 0.
// Grid: x = block of WG consecutive words of one mask (words run on across rows), y = j; one
// thread per word, i.e. 32 pixels of one row, which share the row's taps and, pixel to pixel,
// the step-1 values of the input columns they read (the same values `upsampled` computes, in
// the same order, so the logits are bit for bit those of the other entries).
// Per query j, `area[5j ..]` (atomics; the caller sets them to 0, MAX, MAX, 0, 0): the pixel
// count, min x, min y, max x, max y of the mask; counts and min / max are exact whatever the order.
// Per workgroup, `partials[2·(j·blocks + block) ..]`: Σ sigmoid over its mask pixels, in units of
// 2^-24 as (Σ of the low 16 bits, Σ of the high bits). A mask pixel's sigmoid lies in [0.5, 1],
// where every f32 is a multiple of 2^-24, so each term is an exact integer ≤ 2^24 and the sum is
// exact (32 terms per thread ≤ 2^29; the split halves stay below 2^22 over 64 threads): no float
// atomics, nothing depends on the order threads run in. The host adds the partials in u64.

@group(0) @binding(7) var<storage, read_write> partials: array<u32>;

// The step-1 values at input-size column `ix` for the two input rows of `px` (its ya, yb), from
// the plane at `base`: what `upsampled` computes as v00 / v10 (or v01 / v11) for that column.
fn input_column(base: u32, px: Pixel, ix: u32) -> vec2<f32> {
    let cx = tap(2u * p.in_h, p.in_h, ix);
    return vec2<f32>(step1(base, px.ya, cx), step1(base, px.yb, cx));
}

// count, min x, min y, max x, max y, Σ low halves, Σ high halves (as in `area` and `partials`)
var<workgroup> wg_stats: array<atomic<u32>, 7>;

@compute @workgroup_size(WG)
fn instance(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // Workgroup memory is not zeroed for us (the runtime turns wgpu's zeroing off).
    if (li == 0u) {
        atomicStore(&wg_stats[0], 0u);
        atomicStore(&wg_stats[1], 0xffffffffu);
        atomicStore(&wg_stats[2], 0xffffffffu);
        atomicStore(&wg_stats[3], 0u);
        atomicStore(&wg_stats[4], 0u);
        atomicStore(&wg_stats[5], 0u);
        atomicStore(&wg_stats[6], 0u);
    }
    workgroupBarrier();
    let j = wid.y;
    let wpr = (p.out_w + 31u) / 32u;
    let w = wid.x * WG + li;
    if (w < p.out_h * wpr) {
        let y = w / wpr;
        let x0 = (w % wpr) * 32u;
        let base = table[j] * p.mask_h * p.mask_w;
        let px = pixel_taps(y, x0);
        // The two input-size columns the previous pixel read, with their values at the pixel
        // row's two input rows: neighbouring pixels mostly read the same ones.
        var ca = 0xffffffffu;
        var cb = 0xffffffffu;
        var va = vec2<f32>();
        var vb = vec2<f32>();
        var bits = 0u;
        var sum = 0u;
        for (var b = 0u; b < min(32u, p.out_w - x0); b++) {
            let tx = tap(2u * (p.in_h + p.in_w + p.out_h), p.in_h + p.in_w + p.out_h, x0 + b);
            var na = vec2<f32>();
            if (tx.a == ca) {
                na = va;
            } else if (tx.a == cb) {
                na = vb;
            } else {
                na = input_column(base, px, tx.a);
            }
            var nb = na;
            if (tx.b == cb) {
                nb = vb;
            } else if (tx.b != tx.a) {
                nb = input_column(base, px, tx.b);
            }
            ca = tx.a;
            cb = tx.b;
            va = na;
            vb = nb;
            // `upsampled`'s last step, in its order: v00 = na.x, v01 = nb.x, v10 = na.y, v11 = nb.y.
            let top = na.x * (1.0 - tx.l) + nb.x * tx.l;
            let bot = na.y * (1.0 - tx.l) + nb.y * tx.l;
            let v = top * (1.0 - px.ly) + bot * px.ly;
            if (v > 0.0) {
                bits |= 1u << b;
                // sigmoid(v) in [0.5, 1] (see above): exact in units of 2^-24; round() only
                // matters if an inexact exp put it below 0.5.
                sum += u32(round(sigmoid(v) * 16777216.0));
            }
        }
        pixels[j * p.out_h * wpr + w] = bits;
        if (bits != 0u) {
            atomicAdd(&wg_stats[0], countOneBits(bits));
            atomicMin(&wg_stats[1], x0 + countTrailingZeros(bits));
            atomicMin(&wg_stats[2], y);
            atomicMax(&wg_stats[3], x0 + 31u - countLeadingZeros(bits));
            atomicMax(&wg_stats[4], y);
            atomicAdd(&wg_stats[5], sum & 0xffffu);
            atomicAdd(&wg_stats[6], sum >> 16u);
        }
    }
    workgroupBarrier();
    if (li == 0u) {
        let count = atomicLoad(&wg_stats[0]);
        if (count != 0u) {
            atomicAdd(&area[5u * j], count);
            atomicMin(&area[5u * j + 1u], atomicLoad(&wg_stats[1]));
            atomicMin(&area[5u * j + 2u], atomicLoad(&wg_stats[2]));
            atomicMax(&area[5u * j + 3u], atomicLoad(&wg_stats[3]));
            atomicMax(&area[5u * j + 4u], atomicLoad(&wg_stats[4]));
        }
        // Written by every workgroup, so the buffer needs no clearing first.
        let at = 2u * (j * groups.x + wid.x);
        partials[at] = atomicLoad(&wg_stats[5]);
        partials[at + 1u] = atomicLoad(&wg_stats[6]);
    }
}
