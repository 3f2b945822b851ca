// Helpers of the implicit-GEMM conv2d path (one group, NCHW; see src/ops/conv2d/gemm.rs). The
// GEMM itself is the matmul family's; these kernels only move data around it.
//
// A chunk is images n0..n0+nb × output rows oy0..oy0+rows (rows = Ho whenever nb > 1), i.e.
// `pc = rows·Wo` output pixels per image. The column matrix of a chunk holds, for tap
// k = (ci, ky, kx) and pixel q = (oy − oy0)·Wo + ox of image b, the input value under that tap:
//   col[k, b, q] (CM = 1, channel-major: one [K, nb·pc] matrix, the backward's layout) or
//   col[b, k, q] (CM = 0, image-major: a batch of [K, pc] matrices, the forward's layout).
// Entry points (disjoint globals; globals of different entry points share bindings):
// - `im2col`: x → col (zero padding); `im2col_v4` the same with vec4 stores (pixels per row a
//   multiple of 4); `im2col_t4` the same reading x as texels (its texel form on CPU adapters:
//   W and Wo multiples of 4, unit column stride and dilation).
// - `col2im`: dcol (same layout) → dx rows iy0..iy1 of the chunk's images, the sum over every tap
//   that reads the pixel; rows below `acc_below` add to dx (an earlier chunk wrote them), the rest
//   are overwritten. One invocation per dx element, so no atomics and a fixed summation order;
//   `col2im_v4` the same with vec4 stores (W a multiple of 4); `col2im_t4` the same reading dcol
//   as texels (its texel form on CPU adapters: W and Wo multiples of 4, unit column stride and
//   dilation).
// - `scatter`: tmp [nb, Cout, pc] → out rows of the chunk, + bias.
// - `gather`: dy rows of the chunk → tmp [Cout, nb, pc] (channel-major, the backward's GEMM input).
// - `bias_fill`: out[n, co, :] = bias[co] (the GEMM then accumulates with beta = 1);
//   `bias_fill_v4` the same with vec4 stores (Ho·Wo a multiple of 4).
// Every kernel takes 4 consecutive pixels per invocation (fewer address computations) and
// checks its bounds.

struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, ph: u32,
    pw: u32, dh: u32, dw: u32, n0: u32,
    nb: u32, oy0: u32, rows: u32, iy0: u32,
    iy1: u32, acc_below: u32, has_bias: u32, cm: u32,
}

const WG: u32 = 64u;
const PX: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
// im2col
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> col: array<f32>;
// im2col_v4 (x as above)
@group(0) @binding(2) var<storage, read_write> col4: array<vec4<f32>>;
// im2col_t4 (col4 as above)
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
// col2im
@group(0) @binding(1) var<storage, read> dcol: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
// col2im_v4 (dcol as above)
@group(0) @binding(2) var<storage, read_write> dx4: array<vec4<f32>>;
// col2im_t4 (dx4 as above)
@group(0) @binding(1) var<storage, read> dcol4: array<vec4<f32>>;
// scatter
@group(0) @binding(1) var<storage, read> tmp_in: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// gather
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> tmp_out: array<f32>;
// bias_fill
@group(0) @binding(1) var<storage, read> fill_bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> fill_out: array<f32>;
// bias_fill_v4 (fill_bias as above)
@group(0) @binding(2) var<storage, read_write> fill_out4: array<vec4<f32>>;

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Start of row (k, b) of the column matrix: its pc pixels are contiguous in both layouts.
fn col_row(k: u32, b: u32, taps_total: u32, pc: u32) -> u32 {
    return select((b * taps_total + k) * pc, (k * p.nb + b) * pc, p.cm != 0u);
}

// One im2col invocation's PX consecutive pixels of one (b, k) row: the row's start in the column
// matrix, the first pixel and the values (0 in the padding and past the row).
struct ColBlock {
    dst: u32,
    q0: u32,
    v: vec4<f32>,
}

// Invocation t of an im2col entry: its first pixel q0 and its tap k = (ci, ky, kx) of image b.
struct ColTap {
    q0: u32,
    k: u32,
    b: u32,
    ci: u32,
    ky: u32,
    kx: u32,
}

fn col_tap(t: u32) -> ColTap {
    let qblocks = (p.rows * p.wo + PX - 1u) / PX;
    let taps = p.kh * p.kw;
    let kk = p.cin * taps;
    let row = t / qblocks; // b · K + k
    let k = row % kk;
    return ColTap((t % qblocks) * PX, k, row / kk, k / taps, (k % taps) / p.kw, k % p.kw);
}

fn im2col_block(t: u32) -> ColBlock {
    let pc = p.rows * p.wo;
    let c = col_tap(t);
    let xc = ((p.n0 + c.b) * p.cin + c.ci) * p.h;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < PX; j += 1u) {
        let q = c.q0 + j;
        let oy = p.oy0 + q / p.wo;
        let ox = q % p.wo;
        let iy = i32(oy * p.sh + c.ky * p.dh) - i32(p.ph);
        let ix = i32(ox * p.sw + c.kx * p.dw) - i32(p.pw);
        let inside = q < pc && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
        // Clamped index: the load stays in bounds and the value is discarded outside.
        let src = (xc + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w + u32(clamp(ix, 0, i32(p.w) - 1));
        v[j] = select(0.0, x[src], inside);
    }
    return ColBlock(col_row(c.k, c.b, p.cin * p.kh * p.kw, pc), c.q0, v);
}

fn im2col_threads() -> u32 {
    return p.nb * p.cin * p.kh * p.kw * ((p.rows * p.wo + PX - 1u) / PX);
}

@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= im2col_threads()) {
        return;
    }
    let c = im2col_block(t);
    let pc = p.rows * p.wo;
    for (var j = 0u; j < PX; j += 1u) {
        if (c.q0 + j < pc) {
            col[c.dst + c.q0 + j] = c.v[j];
        }
    }
}

// `im2col` where a row holds a multiple of 4 pixels (so every row starts on a vec4): one vec4
// store per invocation instead of four (lavapipe runs each buffer store lane by lane).
@compute @workgroup_size(WG)
fn im2col_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= im2col_threads()) {
        return;
    }
    let c = im2col_block(t);
    col4[(c.dst + c.q0) >> 2u] = c.v;
}

// x4 is read only through this: its texel form (ops/common/texel.rs) reads a texel view.
fn ld_x4(i: u32) -> vec4<f32> { return x4[i]; }

// Texel t of the x row starting at texel `start`, zero outside the row's w4 texels.
fn row_texel(start: u32, t: i32, w4: i32) -> vec4<f32> {
    let v = ld_x4(start + u32(clamp(t, 0, w4 - 1)));
    return select(vec4<f32>(0.0), v, t >= 0 && t < w4);
}

// Elements base .. base + 4 of a row from its texels lo = floor(base / 4) and hi = lo + 1.
fn window4(lo: vec4<f32>, hi: vec4<f32>, r: i32) -> vec4<f32> {
    return select(
        select(
            select(vec4<f32>(lo.w, hi.x, hi.y, hi.z), vec4<f32>(lo.z, lo.w, hi.x, hi.y), r == 2),
            vec4<f32>(lo.y, lo.z, lo.w, hi.x),
            r == 1,
        ),
        lo,
        r == 0,
    );
}

// `im2col_v4` for W and Wo multiples of 4 with unit column stride and dilation: the 4 pixels of
// an invocation are x[iy, base .. base + 4) of one input row, so they come from one or two
// texels (one gather each on llvmpipe) instead of four lane-by-lane loads.
@compute @workgroup_size(WG)
fn im2col_t4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= im2col_threads()) {
        return;
    }
    let c = col_tap(t);
    let oy = p.oy0 + c.q0 / p.wo;
    let iy = i32(oy * p.sh + c.ky * p.dh) - i32(p.ph);
    var v = vec4<f32>(0.0);
    if (iy >= 0 && iy < i32(p.h)) {
        let w4 = i32(p.w / PX);
        let start = (((p.n0 + c.b) * p.cin + c.ci) * p.h + u32(iy)) * (p.w / PX);
        let base = i32(c.q0 % p.wo + c.kx) - i32(p.pw);
        let t0 = base >> 2u; // floor(base / 4), also below zero
        let r = base & 3;
        v = window4(row_texel(start, t0, w4), row_texel(start, t0 + 1, w4), r);
    }
    col4[(col_row(c.k, c.b, p.cin * p.kh * p.kw, p.rows * p.wo) + c.q0) >> 2u] = v;
}

// One col2im invocation's PX consecutive columns of one dx row iy in iy0..iy1 of (b, ci): the
// row's first element in dx, the first column, whether the row adds to dx, and the sums.
struct DxBlock {
    base: u32,
    ix0: u32,
    add: bool,
    acc: vec4<f32>,
}

// The output row oy of the chunk with oy·sh + ky·dh − ph = iy (the row whose tap ky reads input
// row iy), or −1 where there is none.
fn out_row(iy: u32, ky: u32) -> i32 {
    let ny = i32(iy + p.ph) - i32(ky * p.dh);
    if (ny < 0 || u32(ny) % p.sh != 0u) {
        return -1;
    }
    let oy = u32(ny) / p.sh;
    if (oy < p.oy0 || oy >= p.oy0 + p.rows) {
        return -1;
    }
    return i32(oy);
}

// Invocation t of a col2im entry: its first dx column ix0 of row iy of channel ci, image b.
struct DxAt {
    ix0: u32,
    iy: u32,
    ci: u32,
    b: u32,
}

fn dx_at(t: u32) -> DxAt {
    let rows = p.iy1 - p.iy0;
    let xblocks = (p.w + PX - 1u) / PX;
    let bc = t / (xblocks * rows); // b · Cin + ci
    return DxAt((t % xblocks) * PX, p.iy0 + (t / xblocks) % rows, bc % p.cin, bc / p.cin);
}

// Start in dcol of output row oy's columns under tap (ky, kx) of d's channel and image.
fn dcol_row(d: DxAt, ky: u32, kx: u32, oy: u32) -> u32 {
    let k = (d.ci * p.kh + ky) * p.kw + kx;
    return col_row(k, d.b, p.cin * p.kh * p.kw, p.rows * p.wo) + (oy - p.oy0) * p.wo;
}

fn col2im_threads() -> u32 {
    return p.nb * p.cin * (p.iy1 - p.iy0) * ((p.w + PX - 1u) / PX);
}

fn col2im_block(t: u32) -> DxBlock {
    let d = dx_at(t);
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky += 1u) {
        let oy = out_row(d.iy, ky);
        if (oy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx += 1u) {
            let src = dcol_row(d, ky, kx, u32(oy));
            for (var j = 0u; j < PX; j += 1u) {
                let nx = i32(d.ix0 + j + p.pw) - i32(kx * p.dw);
                let ux = u32(max(nx, 0));
                let hit = nx >= 0 && ux % p.sw == 0u && ux / p.sw < p.wo;
                acc[j] += select(0.0, dcol[src + min(ux / p.sw, p.wo - 1u)], hit);
            }
        }
    }
    let base = (((p.n0 + d.b) * p.cin + d.ci) * p.h + d.iy) * p.w;
    return DxBlock(base, d.ix0, d.iy < p.acc_below, acc);
}

@compute @workgroup_size(WG)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= col2im_threads()) {
        return;
    }
    let c = col2im_block(t);
    for (var j = 0u; j < PX; j += 1u) {
        if (c.ix0 + j < p.w) {
            let i = c.base + c.ix0 + j;
            if (c.add) {
                dx[i] += c.acc[j];
            } else {
                dx[i] = c.acc[j];
            }
        }
    }
}

// `col2im` where W is a multiple of 4 (every dx row starts on a vec4): one vec4 store (and load,
// where it adds) per invocation instead of four.
@compute @workgroup_size(WG)
fn col2im_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= col2im_threads()) {
        return;
    }
    let c = col2im_block(t);
    let i = (c.base + c.ix0) >> 2u;
    if (c.add) {
        dx4[i] += c.acc;
    } else {
        dx4[i] = c.acc;
    }
}

// dcol4 is read only through this: its texel form reads a texel view.
fn ld_dcol4(i: u32) -> vec4<f32> { return dcol4[i]; }

// Texel t of the dcol row starting at texel `start`, zero outside the row's wo4 texels.
fn dcol_texel(start: u32, t: i32, wo4: i32) -> vec4<f32> {
    let v = ld_dcol4(start + u32(clamp(t, 0, wo4 - 1)));
    return select(vec4<f32>(0.0), v, t >= 0 && t < wo4);
}

// `col2im_v4` for W and Wo multiples of 4 with unit column stride and dilation: the 4 dx
// pixels of an invocation read, for each tap, dcol[.., ox0 .. ox0 + 4) of one output row: one
// or two texels instead of four lane-by-lane loads.
@compute @workgroup_size(WG)
fn col2im_t4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= col2im_threads()) {
        return;
    }
    let d = dx_at(t);
    let wo4 = i32(p.wo / PX);
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky += 1u) {
        let oy = out_row(d.iy, ky);
        if (oy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx += 1u) {
            let start = dcol_row(d, ky, kx, u32(oy)) >> 2u;
            let base = i32(d.ix0 + p.pw) - i32(kx); // the first output column ox
            let t0 = base >> 2u;
            acc += window4(dcol_texel(start, t0, wo4), dcol_texel(start, t0 + 1, wo4), base & 3);
        }
    }
    let i = ((((p.n0 + d.b) * p.cin + d.ci) * p.h + d.iy) * p.w + d.ix0) >> 2u;
    if (d.iy < p.acc_below) {
        dx4[i] += acc;
    } else {
        dx4[i] = acc;
    }
}

@compute @workgroup_size(WG)
fn scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pc = p.rows * p.wo;
    let qblocks = (pc + PX - 1u) / PX;
    let t = linear(gid, nwg);
    if (t >= p.nb * p.cout * qblocks) {
        return;
    }
    let q0 = (t % qblocks) * PX;
    let bc = t / qblocks; // b · Cout + co
    let co = bc % p.cout;
    let b = bc / p.cout;
    let bv = select(0.0, bias[min(co, arrayLength(&bias) - 1u)], p.has_bias != 0u);
    let dst = ((p.n0 + b) * p.cout + co) * p.ho * p.wo + p.oy0 * p.wo;
    for (var j = 0u; j < PX; j += 1u) {
        let q = q0 + j;
        if (q < pc) {
            out[dst + q] = tmp_in[bc * pc + q] + bv;
        }
    }
}

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pc = p.rows * p.wo;
    let qblocks = (pc + PX - 1u) / PX;
    let t = linear(gid, nwg);
    if (t >= p.nb * p.cout * qblocks) {
        return;
    }
    let q0 = (t % qblocks) * PX;
    let bc = t / qblocks; // b · Cout + co
    let co = bc % p.cout;
    let b = bc / p.cout;
    let src = ((p.n0 + b) * p.cout + co) * p.ho * p.wo + p.oy0 * p.wo;
    let dst = (co * p.nb + b) * pc;
    for (var j = 0u; j < PX; j += 1u) {
        let q = q0 + j;
        if (q < pc) {
            tmp_out[dst + q] = dy[src + q];
        }
    }
}

@compute @workgroup_size(WG)
fn bias_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = p.ho * p.wo;
    let qblocks = (plane + PX - 1u) / PX;
    let t = linear(gid, nwg);
    if (t >= p.n * p.cout * qblocks) {
        return;
    }
    let q0 = (t % qblocks) * PX;
    let nc = t / qblocks;
    let bv = fill_bias[nc % p.cout];
    for (var j = 0u; j < PX; j += 1u) {
        if (q0 + j < plane) {
            fill_out[nc * plane + q0 + j] = bv;
        }
    }
}

@compute @workgroup_size(WG)
fn bias_fill_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane4 = p.ho * p.wo / PX;
    let t = linear(gid, nwg);
    if (t >= p.n * p.cout * plane4) {
        return;
    }
    fill_out4[t] = vec4<f32>(fill_bias[(t / plane4) % p.cout]);
}
