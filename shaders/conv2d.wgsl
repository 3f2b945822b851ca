// Conv2d forward, NCHW: out[n, co, oy, ox] = bias[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] ·
//   x[n, g·Cin_g + ci, oy·sh + ky·dh − ph, ox·sw + kx·dw − pw]   (zero outside x; g = co / Cout_g)
// with x [N, Cin, H, W], w [Cout, Cin_g, KH, KW], out [N, Cout, Ho, Wo].
//
// Register-blocked direct convolution without workgroup memory (the fast shape on CPU adapters,
// and reasonable on GPUs with a smaller block): each invocation owns CO_B output channels of one
// group × PX_B output pixels and keeps CO_B·PX_B accumulators in registers, so every loaded input
// value is used CO_B times and every weight PX_B times.
// - `direct`: any kernel/stride/padding/dilation/groups; pixels run along one output row.
// - `pointwise`: 1×1, stride 1, no padding: a batched GEMM whose pixels run over the flattened
//   H·W plane (no tap bounds checks; small maps do not waste a partial block on every row).
// - `direct_v4`: stride 1, dilation 1, W % 4 == 0 (the FPN's 3×3, and 1×1 seen as one long row):
//   input rows are read as aligned vec4 strips once per (ci, ky) and every tap is taken from the
//   strip in registers, so a thread issues ~3 divergent vec4 loads per CO_B·8·KW multiply-adds.
//   On lavapipe a load whose address differs per invocation costs a per-lane loop, so this is
//   what makes the convolution fast there; the kernel width KW and padding PW are overrides so
//   every strip index is a compile-time constant.
// Overrides CO_B ≤ MAXC, PX_B ≤ MAXB choose the block; the launcher picks them per adapter.

struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
    cin_g: u32, cout_g: u32, has_bias: u32, _pad: u32,
}

override CO_B: u32 = 8u;
override PX_B: u32 = 8u;
// direct_v4 only: kernel width and horizontal padding; the strip spans vec4 columns VLO..=VHI
// relative to the one before the block (the launcher checks PW ≤ 4 and KW − PW ≤ 5).
override KW: u32 = 3u;
override PW: u32 = 1u;
override VLO: u32 = (4u - PW) / 4u;
override VHI: u32 = (4u + V4_PX - 1u + KW - 1u - PW) / 4u;
const MAXC: u32 = 16u;
const MAXB: u32 = 8u;
const V4_PX: u32 = 8u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // the weight again when there is no bias
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// direct_v4 reads x through this vec4 view (binding 1 as well).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;

// A block of CO_B output channels inside one group: (group, first channel, channels in use).
struct ChannelBlock {
    g: u32,
    c0: u32,
    count: u32,
}

fn channel_block(cb: u32) -> ChannelBlock {
    let per_group = (p.cout_g + CO_B - 1u) / CO_B;
    let g = cb / per_group;
    let first = (cb % per_group) * CO_B;
    return ChannelBlock(g, g * p.cout_g + first, min(CO_B, p.cout_g - first));
}

fn blocks_per_batch() -> u32 {
    return p.groups * ((p.cout_g + CO_B - 1u) / CO_B);
}

@compute @workgroup_size(WG)
fn direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    // z: (n, channel block), the same for the whole workgroup so the weight loads are uniform
    // (one scalar load instead of a gather on SIMD-over-invocations adapters); x, y: pixel blocks.
    let xblocks = (p.wo + PX_B - 1u) / PX_B;
    let nb = blocks_per_batch();
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.ho * xblocks) {
        return;
    }
    let ox0 = (t % xblocks) * PX_B;
    let oy = t / xblocks;
    let blk = channel_block(wid.z % nb);
    let nn = wid.z / nb;

    let taps = p.kh * p.kw;
    let wstride = p.cin_g * taps; // between output channels in wt
    var acc: array<array<f32, MAXB>, MAXC>;
    for (var ci = 0u; ci < p.cin_g; ci += 1u) {
        let xc = (nn * p.cin + blk.g * p.cin_g + ci) * p.h;
        let wc = blk.c0 * wstride + ci * taps;
        for (var ky = 0u; ky < p.kh; ky += 1u) {
            let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            let xrow = (xc + u32(iy)) * p.w;
            for (var kx = 0u; kx < p.kw; kx += 1u) {
                var xv: array<f32, MAXB>;
                for (var j = 0u; j < PX_B; j += 1u) {
                    let ix = i32((ox0 + j) * p.sw + kx * p.dw) - i32(p.pw);
                    let inside = ix >= 0 && ix < i32(p.w);
                    // Clamped index: the load stays in bounds and the value is discarded outside.
                    xv[j] = select(0.0, x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
                }
                let wk = wc + ky * p.kw + kx;
                for (var i = 0u; i < CO_B; i += 1u) {
                    let wv = wt[wk + min(i, blk.count - 1u) * wstride];
                    for (var j = 0u; j < PX_B; j += 1u) {
                        acc[i][j] = fma(wv, xv[j], acc[i][j]);
                    }
                }
            }
        }
    }
    for (var i = 0u; i < CO_B; i += 1u) {
        if (i < blk.count) {
            let c = blk.c0 + i;
            let b = select(0.0, bias[c], p.has_bias != 0u);
            let base = ((nn * p.cout + c) * p.ho + oy) * p.wo;
            for (var j = 0u; j < PX_B; j += 1u) {
                if (ox0 + j < p.wo) {
                    out[base + ox0 + j] = acc[i][j] + b;
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn pointwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    // Grid as in `direct`: z is (n, channel block), x and y the pixel blocks.
    let s = p.h * p.w;
    let nb = blocks_per_batch();
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= (s + PX_B - 1u) / PX_B) {
        return;
    }
    let q0 = t * PX_B;
    let blk = channel_block(wid.z % nb);
    let nn = wid.z / nb;

    var acc: array<array<f32, MAXB>, MAXC>;
    for (var ci = 0u; ci < p.cin_g; ci += 1u) {
        let xc = (nn * p.cin + blk.g * p.cin_g + ci) * s;
        var xv: array<f32, MAXB>;
        for (var j = 0u; j < PX_B; j += 1u) {
            xv[j] = x[xc + min(q0 + j, s - 1u)];
        }
        for (var i = 0u; i < CO_B; i += 1u) {
            let wv = wt[(blk.c0 + min(i, blk.count - 1u)) * p.cin_g + ci];
            for (var j = 0u; j < PX_B; j += 1u) {
                acc[i][j] = fma(wv, xv[j], acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < CO_B; i += 1u) {
        if (i < blk.count) {
            let c = blk.c0 + i;
            let b = select(0.0, bias[c], p.has_bias != 0u);
            let base = (nn * p.cout + c) * s;
            for (var j = 0u; j < PX_B; j += 1u) {
                if (q0 + j < s) {
                    out[base + q0 + j] = acc[i][j] + b;
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn direct_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    // Grid as in `direct`, with blocks of V4_PX pixels starting at multiples of 8.
    let xblocks = (p.wo + V4_PX - 1u) / V4_PX;
    let nb = blocks_per_batch();
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.ho * xblocks) {
        return;
    }
    let ox0 = (t % xblocks) * V4_PX;
    let oy = t / xblocks;
    let blk = channel_block(wid.z % nb);
    let nn = wid.z / nb;

    let w4 = p.w / 4u;
    let taps = p.kh * KW;
    let wstride = p.cin_g * taps;
    // Vec4 column holding input column ox0 − 4: strip[m] is input column ox0 − 4 + m.
    let c4 = i32(ox0 / 4u) - 1;
    var acc: array<array<f32, V4_PX>, MAXC>;
    for (var ci = 0u; ci < p.cin_g; ci += 1u) {
        let xc = (nn * p.cin + blk.g * p.cin_g + ci) * p.h;
        let wc = blk.c0 * wstride + ci * taps;
        for (var ky = 0u; ky < p.kh; ky += 1u) {
            let iy = i32(oy + ky) - i32(p.ph);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            let rowv = (xc + u32(iy)) * w4;
            var strip: array<f32, 16>;
            for (var v = VLO; v <= VHI; v += 1u) {
                // W % 4 == 0, so a vec4 is either wholly inside the row or wholly padding.
                let col = c4 + i32(v);
                let inside = col >= 0 && col < i32(w4);
                let q = select(vec4<f32>(0.0), x4[rowv + u32(clamp(col, 0, i32(w4) - 1))], inside);
                strip[4u * v] = q.x;
                strip[4u * v + 1u] = q.y;
                strip[4u * v + 2u] = q.z;
                strip[4u * v + 3u] = q.w;
            }
            let wk = wc + ky * KW;
            for (var kx = 0u; kx < KW; kx += 1u) {
                for (var i = 0u; i < CO_B; i += 1u) {
                    let wv = wt[wk + kx + min(i, blk.count - 1u) * wstride];
                    for (var j = 0u; j < V4_PX; j += 1u) {
                        acc[i][j] = fma(wv, strip[4u + j + kx - PW], acc[i][j]);
                    }
                }
            }
        }
    }
    for (var i = 0u; i < CO_B; i += 1u) {
        if (i < blk.count) {
            let c = blk.c0 + i;
            let b = select(0.0, bias[c], p.has_bias != 0u);
            let base = ((nn * p.cout + c) * p.ho + oy) * p.wo;
            for (var j = 0u; j < V4_PX; j += 1u) {
                if (ox0 + j < p.wo) {
                    out[base + ox0 + j] = acc[i][j] + b;
                }
            }
        }
    }
}
