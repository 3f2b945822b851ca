// The GPU convolution as implicit GEMMs (one group, NCHW; src/ops/conv2d/implicit.rs), without
// writing a column matrix: the operand that im2col would have written is gathered from its
// tensor as each k-step is staged (zero padding by masking), so a 3×3 over 256 channels at
// 800×1216 reads x once instead of writing and reading 560 MB of columns. MODE (a pipeline
// constant) picks the product, per image z (z = image · ksplit + slice for the weight gradient):
//   0, forward:  out [Cout, P]  = W [Cout, K] · col [K, P] + bias
//   1, dx:       dx [Cin, H·W] = Wᵀ' [Cin, Cout·KH·KW] · dy' [Cout·KH·KW, H·W]: the transposed
//                convolution; tap (co, ky, kx) of input pixel (iy, ix) reads dy[co, oy, ox] where
//                oy·SH = iy + ph − ky·dh (0 where that is not a whole output row inside Ho)
//   2, dweight:  partial[z] [Cout, K] = dy [Cout, P-slice] · colᵀ [P-slice, K]
// with K = Cin·KH·KW taps and P = Ho·Wo output pixels.
// Followed by shaders/gemm_tile.wgsl (the workgroup tile, also the matmul `gemm` entry's).
//
// Grid: (n / GT, m / GT, images [· ksplit]) with m, n the product's sizes in Params. Operands:
// forward A = the weight, k-major (vec4 rows when K % 4 == 0: W_VEC), B = gathered x, 4 pixels of
// one tap per load; dx A = the weight read across its rows (scalar), B = gathered dy; dweight
// A = dy (k = pixels, contiguous), B = gathered x, 4 pixels of one tap per load (k-major). The
// kernel size and stride are pipeline constants (KH, KW, SH, SW), so splitting a tap index or an
// offset compiles to multiplies.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    cin: u32,
    h: u32,
    w: u32,
    wo: u32,
    ho: u32,
    cout: u32,
    ksplit: u32,
    kslice: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
}

override MODE: u32 = 0u;
override W_VEC: bool = true;
override KH: u32 = 3u;
override KW: u32 = 3u;
override SH: u32 = 1u;
override SW: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
// The weight (forward, dx; a placeholder for dweight).
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
// x (forward, dweight) or dy (dx).
@group(0) @binding(2) var<storage, read> src: array<f32>;
// The bias (forward) or dy (dweight); a placeholder for dx.
@group(0) @binding(3) var<storage, read> aux: array<f32>;
// out (forward), dx, or the weight gradient's partials.
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn wt_at(i: u32) -> f32 {
    return wt[i >> 2u][i & 3u];
}

// A: four consecutive k of row m (0 past p.m and k_end).
fn gemm_fetch_a(base: u32, m: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (m >= p.m || k >= k_end) {
        return vec4<f32>(0.0);
    }
    let ok = lanes_below(k, k_end);
    if (MODE == 0u && W_VEC) {
        return select(vec4<f32>(0.0), wt[(m * p.k + k) >> 2u], ok);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (ok[j]) {
            let kk = k + j;
            if (MODE == 0u) {
                v[j] = wt_at(m * p.k + kk);
            } else if (MODE == 1u) {
                // k = (co, tap): W[co, ci = m, tap].
                v[j] = wt_at(((kk / (KH * KW)) * p.cin + m) * (KH * KW) + kk % (KH * KW));
            } else {
                v[j] = aux[base + m * p.k + kk];
            }
        }
    }
    return v;
}

// Per invocation, the four pixels it stages (the same at every k-step of the forward and dx
// products, where only the tap changes): their row and column before the tap's offset, so the
// divisions by a row's width run once per tile. Pixels past the product's n get a row far below 0
// (never inside).
var<private> pix_n: u32 = 0xffffffffu;
var<private> pix_y: vec4<i32>;
var<private> pix_x: vec4<i32>;

fn cache_pixels(n: u32) {
    if (n == pix_n) {
        return;
    }
    pix_n = n;
    // Forward: output pixels, at oy·SH − ph. dx: input pixels, at iy + ph.
    let row = select(p.w, p.wo, MODE == 0u);
    var y = n / row;
    var x = n % row;
    for (var j = 0u; j < 4u; j++) {
        if (MODE == 0u) {
            pix_y[j] = i32(y * SH) - i32(p.ph);
            pix_x[j] = i32(x * SW) - i32(p.pw);
        } else {
            pix_y[j] = i32(y + p.ph);
            pix_x[j] = i32(x + p.pw);
        }
        if (n + j >= p.n) {
            pix_y[j] = -0x40000000;
        }
        x += 1u;
        if (x == row) {
            x = 0u;
            y += 1u;
        }
    }
}

// The value of x under tap `tap` at input position (iy, ix) of the image at `base`, 0 outside.
fn x_at(base: u32, tap: u32, iy: i32, ix: i32) -> f32 {
    if (iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w)) {
        return 0.0;
    }
    return src[base + ((tap / (KH * KW)) * p.h + u32(iy)) * p.w + u32(ix)];
}

// B: four consecutive elements along its contiguous dimension (0 past p.n and k_end).
fn gemm_fetch_b(base: u32, n: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (n >= p.n || k >= k_end) {
        return vec4<f32>(0.0);
    }
    var v = vec4<f32>(0.0);
    if (MODE == 2u) {
        // Tap n of output pixels k .. k+3.
        let ky = i32(((n % (KH * KW)) / KW) * p.dh);
        let kx = i32((n % KW) * p.dw);
        var oy = k / p.wo;
        var ox = k % p.wo;
        for (var j = 0u; j < 4u; j++) {
            if (k + j < k_end) {
                let iy = i32(oy * SH) - i32(p.ph) + ky;
                let ix = i32(ox * SW) - i32(p.pw) + kx;
                v[j] = x_at(base, n, iy, ix);
            }
            ox += 1u;
            if (ox == p.wo) {
                ox = 0u;
                oy += 1u;
            }
        }
        return v;
    }
    cache_pixels(n);
    let tap = k % (KH * KW);
    let ky = i32((tap / KW) * p.dh);
    let kx = i32((tap % KW) * p.dw);
    for (var j = 0u; j < 4u; j++) {
        if (MODE == 0u) {
            v[j] = x_at(base, k, pix_y[j] + ky, pix_x[j] + kx);
        } else {
            // dx: the output pixel whose tap lands here, if any.
            let ny = pix_y[j] - ky;
            let nx = pix_x[j] - kx;
            let oy = u32(max(ny, 0)) / SH;
            let ox = u32(max(nx, 0)) / SW;
            let hit = ny >= 0 && nx >= 0 && u32(ny) % SH == 0u && u32(nx) % SW == 0u && oy < p.ho && ox < p.wo;
            if (hit) {
                v[j] = src[base + ((k / (KH * KW)) * p.ho + oy) * p.wo + ox];
            }
        }
    }
    return v;
}

@compute @workgroup_size(GT * GT / 64u, 1, 1)
fn implicit(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m0 = wg.y * GT;
    let n0 = wg.x * GT;
    let img = wg.z / p.ksplit;
    var a_base = 0u;
    var b_base = 0u;
    var k_lo = 0u;
    var k_hi = p.k;
    if (MODE == 0u) {
        b_base = img * p.cin * p.h * p.w;
    } else if (MODE == 1u) {
        b_base = img * p.cout * p.ho * p.wo;
    } else {
        a_base = img * p.cout * p.k;
        b_base = img * p.cin * p.h * p.w;
        k_lo = (wg.z % p.ksplit) * p.kslice;
        k_hi = min(p.k, k_lo + p.kslice);
    }
    let acc = gemm_tile(li, a_base, b_base, m0, n0, k_lo, k_hi);
    let t = gemm_thread(li);
    let o_base = wg.z * p.m * p.n;
    for (var r = 0u; r < 8u; r++) {
        let m = m0 + (r / 4u) * (GT / 2u) + t.x * 4u + r % 4u;
        if (m < p.m) {
            var bv = 0.0;
            if (MODE == 0u && p.has_bias != 0u) {
                bv = aux[m];
            }
            for (var j = 0u; j < 2u; j++) {
                let n = n0 + j * (GT / 2u) + t.y * 4u;
                let v = acc[r * 2u + j];
                for (var c = 0u; c < 4u; c++) {
                    if (n + c < p.n) {
                        dst[o_base + m * p.n + n + c] = v[c] + bv;
                    }
                }
            }
        }
    }
}
