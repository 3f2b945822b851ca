// Swin (shifted-)window multi-head attention, fused: pad, cyclic shift, window partition,
// softmax(q·kᵀ·scale + relative-position bias + shift mask)·v, window reverse, roll back, crop.
//
// Layout (see src/ops/window_attention/mod.rs): q, k, v, out are [B, H, W, C] channels-last with
// C = heads·D (channel h·D + e is element e of head h), read as vec4. Windows are numbered in the
// shifted, padded frame (Hp × Wp, multiples of WIN) row-major; token i of a window is its row-major
// position (i / WIN, i % WIN). One thread per (batch, window, head, query token): no workgroup
// memory (lavapipe runs barriers slowly), scores kept in registers one window row at a time with
// an online softmax across rows.

struct Params {
    batch: u32,
    height: u32,
    width: u32,
    c4: u32, // C / 4
    heads: u32,
    hp: u32, // padded height (multiple of WIN)
    wp: u32, // padded width
    nww: u32, // windows per row of the padded map
    nw: u32, // windows per image
    shift: u32,
    has_pad: u32, // 1: padded tokens take pad_k / pad_v; 0: padded tokens are zero
    scale: f32,
    n_rows: u32, // batch · nw · heads · WIN²
    n_pad: u32, // padded tokens per image: hp·wp − height·width
    _r0: u32,
    _r1: u32,
    // Window size. A uniform, not an override constant: with a constant the shader compiler
    // unrolls the key loops (WIN × D4 texel loads each), and lavapipe's JIT time follows the
    // unrolled size (issue 13, cold start).
    win: u32,
    _r2: u32,
    _r3: u32,
    _r4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> table: array<f32>; // [(2·WIN−1)², heads]
@group(0) @binding(5) var<storage, read> pad_k: array<vec4<f32>>; // [C]
@group(0) @binding(6) var<storage, read> pad_v: array<vec4<f32>>; // [C]
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> lse: array<f32>; // [B, nw, heads, WIN²]

// K and V are read only through these (their texel form reads texel views: ops/common/texel.rs).
fn ld_k(i: u32) -> vec4<f32> { return k[i]; }
fn ld_v(i: u32) -> vec4<f32> { return v[i]; }

override D4: u32 = 8u; // head_dim / 4
const MAX_D4: u32 = 16u;
const MAX_WIN: u32 = 16u;
const WG: u32 = 64u;
const NEG_BIG: f32 = -3.0e38;

// Region of a shifted-frame coordinate along one axis, by HF's slices (0,−w), (−w,−s), (−s,None).
fn region(c: u32, n: u32) -> u32 {
    return select(select(2u, 1u, c + p.shift < n), 0u, c + p.win < n);
}

// Position in the padded (unshifted) map of shifted-frame coordinate c: the roll by −shift.
fn unshift(c: u32, n: u32) -> u32 {
    let t = c + p.shift;
    return select(t, t - n, t >= n);
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.n_rows) {
        return;
    }
    let wsz = p.win; // the window size
    let n = wsz * wsz;
    let i = t % n;
    var r = t / n;
    let h = r % p.heads;
    r = r / p.heads;
    let win = r % p.nw;
    let b = r / p.nw;
    let wy = win / p.nww;
    let wx = win % p.nww;
    let iy = i / wsz;
    let ix = i % wsz;
    let sy = wy * wsz + iy;
    let sx = wx * wsz + ix;
    let oy = unshift(sy, p.hp);
    let ox = unshift(sx, p.wp);
    if (oy >= p.height || ox >= p.width) {
        // A padding token's output is cropped away; backward skips it too.
        lse[t] = 0.0;
        return;
    }
    let qbase = ((b * p.height + oy) * p.width + ox) * p.c4 + h * D4;
    var qv: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        qv[c] = q[qbase + c] * p.scale;
    }
    let reg_i = region(sy, p.hp) * 3u + region(sx, p.wp);
    let tw = 2u * wsz - 1u;
    // Every padding token has the same key (pad_k, or zero) and value (pad_v, or zero): its q·k
    // is computed once here, and its softmax weights are summed into pad_w and applied once at
    // the end. Read inside the key loops, pad_k and pad_v were a second copy of those loops' code
    // (a buffer read differing between lanes is a per-lane loop on llvmpipe) and of its JIT time.
    var pad_d = vec4<f32>(0.0);
    if (p.has_pad != 0u) {
        for (var c = 0u; c < D4; c++) {
            pad_d = fma(qv[c], pad_k[h * D4 + c], pad_d);
        }
    }
    let pad_s = pad_d.x + pad_d.y + pad_d.z + pad_d.w;
    var pad_w = 0.0;
    var m = NEG_BIG;
    var l = 0.0;
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    for (var jy = 0u; jy < wsz; jy++) {
        let syj = wy * wsz + jy;
        let oyj = unshift(syj, p.hp);
        let row_real = oyj < p.height;
        let reg_y = region(syj, p.hp) * 3u;
        // relative_position_index = (iy − jy + wsz − 1)·(2·wsz − 1) + (ix − jx + wsz − 1)
        let trow = (iy + wsz - 1u - jy) * tw + ix + wsz - 1u;
        let krow = (b * p.height + oyj) * p.width;
        var sc: array<f32, MAX_WIN>;
        var cmax = NEG_BIG;
        for (var jx = 0u; jx < wsz; jx++) {
            let sxj = wx * wsz + jx;
            let oxj = unshift(sxj, p.wp);
            var s = pad_s;
            if (row_real && oxj < p.width) {
                let kb = (krow + oxj) * p.c4 + h * D4;
                var d = vec4<f32>(0.0);
                for (var c = 0u; c < D4; c++) {
                    d = fma(qv[c], ld_k(kb + c), d);
                }
                s = d.x + d.y + d.z + d.w;
            }
            s += table[(trow - jx) * p.heads + h];
            if (p.shift > 0u && reg_y + region(sxj, p.wp) != reg_i) {
                s -= 100.0;
            }
            sc[jx] = s;
            cmax = max(cmax, s);
        }
        let mn = max(m, cmax);
        let alpha = exp(m - mn);
        l *= alpha;
        pad_w *= alpha;
        for (var c = 0u; c < D4; c++) {
            acc[c] *= alpha;
        }
        for (var jx = 0u; jx < wsz; jx++) {
            let oxj = unshift(wx * wsz + jx, p.wp);
            let pj = exp(sc[jx] - mn);
            l += pj;
            if (row_real && oxj < p.width) {
                let vb = (krow + oxj) * p.c4 + h * D4;
                for (var c = 0u; c < D4; c++) {
                    acc[c] = fma(vec4<f32>(pj), ld_v(vb + c), acc[c]);
                }
            } else {
                pad_w += pj;
            }
        }
        m = mn;
    }
    if (p.has_pad != 0u) {
        for (var c = 0u; c < D4; c++) {
            acc[c] = fma(vec4<f32>(pad_w), pad_v[h * D4 + c], acc[c]);
        }
    }
    let inv = 1.0 / l;
    for (var c = 0u; c < D4; c++) {
        out[qbase + c] = acc[c] * inv;
    }
    lse[t] = m + log(l);
}
