// The GPU convolution as an implicit GEMM (one group, NCHW; src/ops/conv2d/implicit.rs): per
// image, out [Cout, P] = W [Cout, K] · col [K, P] + bias, where K = Cin·KH·KW taps and
// P = Ho·Wo output pixels, without writing the column matrix: the B operand's tile is gathered
// from x as it is staged (zero padding included), so a 3×3 over 256 channels at 800×1216 moves
// x once instead of writing and reading a 560 MB im2col buffer.
// Followed by shaders/gemm_tile.wgsl (the workgroup tile, also the matmul `gemm` entry's).
//
// Grid: (P / GT, Cout / GT, N), rounded up; A = the weight, k-major (a row is 4-aligned when
// K % 4 == 0: W_VEC loads it as vec4s); B = the gathered columns, 4 consecutive pixels of one tap
// per load (B_KMAJOR = false). The kernel size is a pipeline constant (KH, KW).

struct Params {
    cout: u32,
    np: u32, // Ho·Wo
    k: u32,  // Cin·KH·KW
    has_bias: u32,
    cin: u32,
    h: u32,
    w: u32,
    wo: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
}

override W_VEC: bool = true;
override KH: u32 = 3u;
override KW: u32 = 3u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Weight row m, taps k .. k+3 (0 past Cout and k_end).
fn gemm_fetch_a(base: u32, m: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (m >= p.cout || k >= k_end) {
        return vec4<f32>(0.0);
    }
    let i = base + m * p.k + k;
    let ok = lanes_below(k, k_end);
    if (W_VEC) {
        return select(vec4<f32>(0.0), wt[i >> 2u], ok);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (ok[j]) {
            v[j] = wt[(i + j) >> 2u][(i + j) & 3u];
        }
    }
    return v;
}

// The rows and columns (before the tap's offset) that output pixels n .. n+3 read, cached per
// invocation: a thread stages the same four pixels at every k-step (only the tap changes), so the
// divisions by Wo run once per tile instead of once per load. Pixels past P get a row far below 0
// (never inside).
var<private> pix_n: u32 = 0xffffffffu;
var<private> pix_y: vec4<i32>;
var<private> pix_x: vec4<i32>;

fn cache_pixels(n: u32) {
    if (n == pix_n) {
        return;
    }
    pix_n = n;
    var oy = n / p.wo;
    var ox = n % p.wo;
    for (var j = 0u; j < 4u; j++) {
        pix_y[j] = select(-0x40000000, i32(oy * p.sh) - i32(p.ph), n + j < p.np);
        pix_x[j] = i32(ox * p.sw) - i32(p.pw);
        ox += 1u;
        if (ox == p.wo) {
            ox = 0u;
            oy += 1u;
        }
    }
}

// Tap k of output pixels n .. n+3 of the image at x[base]: the input value under the tap, 0 in
// the padding and past P and k_end. KH and KW are pipeline constants, so splitting k into
// (channel, row, column) compiles to multiplies.
fn gemm_fetch_b(base: u32, n: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (n >= p.np || k >= k_end) {
        return vec4<f32>(0.0);
    }
    cache_pixels(n);
    let ci = k / (KH * KW);
    let ky = (k % (KH * KW)) / KW;
    let kx = k % KW;
    let plane = base + ci * p.h * p.w;
    let iy = pix_y + vec4<i32>(i32(ky * p.dh));
    let ix = pix_x + vec4<i32>(i32(kx * p.dw));
    let inside = (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h))) & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w)));
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (inside[j]) {
            v[j] = x[plane + u32(iy[j]) * p.w + u32(ix[j])];
        }
    }
    return v;
}

@compute @workgroup_size(GT * GT / 64u, 1, 1)
fn implicit(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m0 = wg.y * GT;
    let n0 = wg.x * GT;
    let acc = gemm_tile(li, 0u, wg.z * p.cin * p.h * p.w, m0, n0, 0u, p.k);
    let t = gemm_thread(li);
    let o_base = wg.z * p.cout * p.np;
    for (var r = 0u; r < 8u; r++) {
        let m = m0 + (r / 4u) * (GT / 2u) + t.x * 4u + r % 4u;
        if (m < p.cout) {
            var bv = 0.0;
            if (p.has_bias != 0u) {
                bv = bias[m];
            }
            for (var j = 0u; j < 2u; j++) {
                let n = n0 + j * (GT / 2u) + t.y * 4u;
                let v = acc[r * 2u + j];
                for (var c = 0u; c < 4u; c++) {
                    if (n + c < p.np) {
                        out[o_base + m * p.np + n + c] = v[c] + bv;
                    }
                }
            }
        }
    }
}
