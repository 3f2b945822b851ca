// Batched matmul with a fused epilogue: C[b] = act(alpha·op(A[b])·op(B[b]) + bias + beta·C[b]).
//
// Three variants share the bindings, the parameter block and the epilogue:
// - `naive`:    one output per thread; the specification ported straight from reference.rs.
// - `regblock`: for CPU adapters (lavapipe): each thread owns a 16×8 register block, no workgroup
//               memory and no barriers (each barrier makes llvmpipe switch coroutines), vec4 loads
//               where the layout allows (A_MODE / B_MODE override constants).
// - `tiled`:    for GPUs: 64×64 workgroup tiles staged through workgroup memory, 4×4 per thread.
//
// Operands are addressed through strides, so transposes, broadcast batches (stride 0) and
// chunked launches over offset bindings are all the same kernel:
//   A(b, m, k) = a[a_off + b·a_bs + m·a_rs + k·a_cs]
//   B(b, k, n) = b[b_off + b·b_bs + k·b_rs + n·b_cs]
//   C(b, m, n) = c[c_off + b·c_bs + m·c_rs + n]      (the pre-activation uses p_off, same strides)
// A and B are bound as arrays of vec4 so the fast paths can load 16 bytes at once; scalar reads
// pick a component. The launcher binds ranges rounded up to 16 bytes.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32, // bit 0 add bias, bit 1 read C (beta), bit 2 write pre-activation, bits 4-5 activation
    a_off: u32,
    a_bs: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_bs: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_bs: u32,
    c_rs: u32,
    p_off: u32,
    bias_off: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;

const FLAG_BIAS: u32 = 1u;
const FLAG_READ_C: u32 = 2u;
const FLAG_WRITE_PRE: u32 = 4u;
const ACT_RELU: u32 = 1u;
const ACT_GELU: u32 = 2u;

fn ld_a(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

fn ld_b(i: u32) -> f32 {
    return b[i >> 2u][i & 3u];
}

// erf in f32. |x| < 0.5: Maclaurin series to x^15 (truncation < 2e-11, keeps relative
// accuracy near 0); otherwise Abramowitz–Stegun 7.1.26 (absolute error ≤ 1.5e-7).
fn erf_f32(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.5) {
        let z = x * x;
        // 2/sqrt(pi) · Σ (-1)^n x^(2n+1) / (n! (2n+1)), Horner in x².
        var s = -1.0 / 75600.0; // n = 7: 1/(7!·15)
        s = s * z + 1.0 / 9360.0; // n = 6: 1/(6!·13)
        s = s * z - 1.0 / 1320.0;
        s = s * z + 1.0 / 216.0;
        s = s * z - 1.0 / 42.0;
        s = s * z + 1.0 / 10.0;
        s = s * z - 1.0 / 3.0;
        s = s * z + 1.0;
        return 1.1283791670955126 * x * s;
    }
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-ax * ax);
    return select(-y, y, x >= 0.0);
}

fn activate(v: f32, act: u32) -> f32 {
    if (act == ACT_RELU) {
        return max(v, 0.0);
    }
    if (act == ACT_GELU) {
        return 0.5 * v * (1.0 + erf_f32(v * 0.7071067811865476));
    }
    return v;
}

// Writes one output element; the caller checks m < p.m and n < p.n.
fn epilogue(bz: u32, m: u32, n: u32, acc: f32) {
    var v = p.alpha * acc;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += bias[p.bias_off + n];
    }
    let rel = bz * p.c_bs + m * p.c_rs + n;
    let ci = p.c_off + rel;
    // beta = 0 never reads C, so an uninitialised (or NaN-poisoned) output is fine.
    if ((p.flags & FLAG_READ_C) != 0u) {
        v += p.beta * c[ci];
    }
    if ((p.flags & FLAG_WRITE_PRE) != 0u) {
        pre[p.p_off + rel] = v;
    }
    c[ci] = activate(v, (p.flags >> 4u) & 3u);
}

// Writes the first `count` (≤ 4) of four consecutive outputs of row m starting at column n.
fn store4(bz: u32, m: u32, n: u32, count: u32, acc: vec4<f32>) {
    for (var j = 0u; j < min(count, 4u); j++) {
        epilogue(bz, m, n + j, acc[j]);
    }
}

// ---- naive: one output per thread ---------------------------------------------------------

@compute @workgroup_size(16, 16, 1)
fn naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let m = gid.y;
    let bz = gid.z;
    if (m >= p.m || n >= p.n) {
        return;
    }
    let ab = p.a_off + bz * p.a_bs + m * p.a_rs;
    let bb = p.b_off + bz * p.b_bs + n * p.b_cs;
    var acc = 0.0;
    for (var k = 0u; k < p.k; k++) {
        acc = fma(ld_a(ab + k * p.a_cs), ld_b(bb + k * p.b_rs), acc);
    }
    epilogue(bz, m, n, acc);
}

// ---- regblock: 16×8 outputs per thread, registers only -------------------------------------

// A_MODE: 0 scalar loads (any layout); 1 vec4 along k (a_cs = 1, a_rs, a_off multiple of 4);
// 2 vec4 along m (a_rs = 1, a_cs and m multiple of 4). B_MODE: 0 scalar; 1 vec4 along n
// (b_cs = 1, b_rs and n multiple of 4); 2 vec4 along k (b_rs = 1, b_cs multiple of 4).
// Offsets and batch strides are multiples of 4 whenever a vector mode is chosen.
override A_MODE: u32 = 0u;
override B_MODE: u32 = 0u;

// BEGIN GENERATED regblock (src/ops/matmul/gen_regblock.py)
const TM: u32 = 16u; // rows of C per thread
const TN: u32 = 8u; // columns of C per thread (2 vec4)

@compute @workgroup_size(8, 8, 1)
fn regblock(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.x) * TN;
    let m0 = (wg.y * 8u + lid.y) * TM;
    let bz = wg.z;
    // No barriers in this kernel, so threads past the edge may leave early.
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    let a_base = p.a_off + bz * p.a_bs;
    let b_base = p.b_off + bz * p.b_bs;
    // Rows and columns past the edge are clamped to the last valid one: every load stays in
    // bounds without a branch, and those results are dropped by the store's bounds check.
    let ar0 = a_base + min(m0 + 0u, p.m - 1u) * p.a_rs;
    let ar1 = a_base + min(m0 + 1u, p.m - 1u) * p.a_rs;
    let ar2 = a_base + min(m0 + 2u, p.m - 1u) * p.a_rs;
    let ar3 = a_base + min(m0 + 3u, p.m - 1u) * p.a_rs;
    let ar4 = a_base + min(m0 + 4u, p.m - 1u) * p.a_rs;
    let ar5 = a_base + min(m0 + 5u, p.m - 1u) * p.a_rs;
    let ar6 = a_base + min(m0 + 6u, p.m - 1u) * p.a_rs;
    let ar7 = a_base + min(m0 + 7u, p.m - 1u) * p.a_rs;
    let ar8 = a_base + min(m0 + 8u, p.m - 1u) * p.a_rs;
    let ar9 = a_base + min(m0 + 9u, p.m - 1u) * p.a_rs;
    let ar10 = a_base + min(m0 + 10u, p.m - 1u) * p.a_rs;
    let ar11 = a_base + min(m0 + 11u, p.m - 1u) * p.a_rs;
    let ar12 = a_base + min(m0 + 12u, p.m - 1u) * p.a_rs;
    let ar13 = a_base + min(m0 + 13u, p.m - 1u) * p.a_rs;
    let ar14 = a_base + min(m0 + 14u, p.m - 1u) * p.a_rs;
    let ar15 = a_base + min(m0 + 15u, p.m - 1u) * p.a_rs;
    let bc0 = b_base + min(n0 + 0u, p.n - 1u) * p.b_cs;
    let bc1 = b_base + min(n0 + 1u, p.n - 1u) * p.b_cs;
    let bc2 = b_base + min(n0 + 2u, p.n - 1u) * p.b_cs;
    let bc3 = b_base + min(n0 + 3u, p.n - 1u) * p.b_cs;
    let bc4 = b_base + min(n0 + 4u, p.n - 1u) * p.b_cs;
    let bc5 = b_base + min(n0 + 5u, p.n - 1u) * p.b_cs;
    let bc6 = b_base + min(n0 + 6u, p.n - 1u) * p.b_cs;
    let bc7 = b_base + min(n0 + 7u, p.n - 1u) * p.b_cs;
    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].
    var c0_0 = vec4<f32>(0.0); var c0_1 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0); var c1_1 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0); var c2_1 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0); var c3_1 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0); var c4_1 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0); var c5_1 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0); var c6_1 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0); var c7_1 = vec4<f32>(0.0);
    var c8_0 = vec4<f32>(0.0); var c8_1 = vec4<f32>(0.0);
    var c9_0 = vec4<f32>(0.0); var c9_1 = vec4<f32>(0.0);
    var c10_0 = vec4<f32>(0.0); var c10_1 = vec4<f32>(0.0);
    var c11_0 = vec4<f32>(0.0); var c11_1 = vec4<f32>(0.0);
    var c12_0 = vec4<f32>(0.0); var c12_1 = vec4<f32>(0.0);
    var c13_0 = vec4<f32>(0.0); var c13_1 = vec4<f32>(0.0);
    var c14_0 = vec4<f32>(0.0); var c14_1 = vec4<f32>(0.0);
    var c15_0 = vec4<f32>(0.0); var c15_1 = vec4<f32>(0.0);
    let k4 = p.k & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        // a{i} = A[m0 + i][k .. k + 4]
        var a0: vec4<f32>;
        var a1: vec4<f32>;
        var a2: vec4<f32>;
        var a3: vec4<f32>;
        var a4: vec4<f32>;
        var a5: vec4<f32>;
        var a6: vec4<f32>;
        var a7: vec4<f32>;
        var a8: vec4<f32>;
        var a9: vec4<f32>;
        var a10: vec4<f32>;
        var a11: vec4<f32>;
        var a12: vec4<f32>;
        var a13: vec4<f32>;
        var a14: vec4<f32>;
        var a15: vec4<f32>;
        if (A_MODE == 1u) {
            a0 = a[(ar0 + k) >> 2u];
            a1 = a[(ar1 + k) >> 2u];
            a2 = a[(ar2 + k) >> 2u];
            a3 = a[(ar3 + k) >> 2u];
            a4 = a[(ar4 + k) >> 2u];
            a5 = a[(ar5 + k) >> 2u];
            a6 = a[(ar6 + k) >> 2u];
            a7 = a[(ar7 + k) >> 2u];
            a8 = a[(ar8 + k) >> 2u];
            a9 = a[(ar9 + k) >> 2u];
            a10 = a[(ar10 + k) >> 2u];
            a11 = a[(ar11 + k) >> 2u];
            a12 = a[(ar12 + k) >> 2u];
            a13 = a[(ar13 + k) >> 2u];
            a14 = a[(ar14 + k) >> 2u];
            a15 = a[(ar15 + k) >> 2u];
        } else if (A_MODE == 2u) {
            // Four rows at a time along m, transposed into a{i} in registers.
            let mv0 = (a_base + min(m0 + 0u, p.m - 4u)) >> 2u;
            let mv1 = (a_base + min(m0 + 4u, p.m - 4u)) >> 2u;
            let mv2 = (a_base + min(m0 + 8u, p.m - 4u)) >> 2u;
            let mv3 = (a_base + min(m0 + 12u, p.m - 4u)) >> 2u;
            let t0_0 = a[mv0 + ((k + 0u) * p.a_cs >> 2u)];
            let t0_1 = a[mv1 + ((k + 0u) * p.a_cs >> 2u)];
            let t0_2 = a[mv2 + ((k + 0u) * p.a_cs >> 2u)];
            let t0_3 = a[mv3 + ((k + 0u) * p.a_cs >> 2u)];
            let t1_0 = a[mv0 + ((k + 1u) * p.a_cs >> 2u)];
            let t1_1 = a[mv1 + ((k + 1u) * p.a_cs >> 2u)];
            let t1_2 = a[mv2 + ((k + 1u) * p.a_cs >> 2u)];
            let t1_3 = a[mv3 + ((k + 1u) * p.a_cs >> 2u)];
            let t2_0 = a[mv0 + ((k + 2u) * p.a_cs >> 2u)];
            let t2_1 = a[mv1 + ((k + 2u) * p.a_cs >> 2u)];
            let t2_2 = a[mv2 + ((k + 2u) * p.a_cs >> 2u)];
            let t2_3 = a[mv3 + ((k + 2u) * p.a_cs >> 2u)];
            let t3_0 = a[mv0 + ((k + 3u) * p.a_cs >> 2u)];
            let t3_1 = a[mv1 + ((k + 3u) * p.a_cs >> 2u)];
            let t3_2 = a[mv2 + ((k + 3u) * p.a_cs >> 2u)];
            let t3_3 = a[mv3 + ((k + 3u) * p.a_cs >> 2u)];
            a0 = vec4<f32>(t0_0.x, t1_0.x, t2_0.x, t3_0.x);
            a1 = vec4<f32>(t0_0.y, t1_0.y, t2_0.y, t3_0.y);
            a2 = vec4<f32>(t0_0.z, t1_0.z, t2_0.z, t3_0.z);
            a3 = vec4<f32>(t0_0.w, t1_0.w, t2_0.w, t3_0.w);
            a4 = vec4<f32>(t0_1.x, t1_1.x, t2_1.x, t3_1.x);
            a5 = vec4<f32>(t0_1.y, t1_1.y, t2_1.y, t3_1.y);
            a6 = vec4<f32>(t0_1.z, t1_1.z, t2_1.z, t3_1.z);
            a7 = vec4<f32>(t0_1.w, t1_1.w, t2_1.w, t3_1.w);
            a8 = vec4<f32>(t0_2.x, t1_2.x, t2_2.x, t3_2.x);
            a9 = vec4<f32>(t0_2.y, t1_2.y, t2_2.y, t3_2.y);
            a10 = vec4<f32>(t0_2.z, t1_2.z, t2_2.z, t3_2.z);
            a11 = vec4<f32>(t0_2.w, t1_2.w, t2_2.w, t3_2.w);
            a12 = vec4<f32>(t0_3.x, t1_3.x, t2_3.x, t3_3.x);
            a13 = vec4<f32>(t0_3.y, t1_3.y, t2_3.y, t3_3.y);
            a14 = vec4<f32>(t0_3.z, t1_3.z, t2_3.z, t3_3.z);
            a15 = vec4<f32>(t0_3.w, t1_3.w, t2_3.w, t3_3.w);
        } else {
            a0 = vec4<f32>(ld_a(ar0 + (k + 0u) * p.a_cs), ld_a(ar0 + (k + 1u) * p.a_cs), ld_a(ar0 + (k + 2u) * p.a_cs), ld_a(ar0 + (k + 3u) * p.a_cs));
            a1 = vec4<f32>(ld_a(ar1 + (k + 0u) * p.a_cs), ld_a(ar1 + (k + 1u) * p.a_cs), ld_a(ar1 + (k + 2u) * p.a_cs), ld_a(ar1 + (k + 3u) * p.a_cs));
            a2 = vec4<f32>(ld_a(ar2 + (k + 0u) * p.a_cs), ld_a(ar2 + (k + 1u) * p.a_cs), ld_a(ar2 + (k + 2u) * p.a_cs), ld_a(ar2 + (k + 3u) * p.a_cs));
            a3 = vec4<f32>(ld_a(ar3 + (k + 0u) * p.a_cs), ld_a(ar3 + (k + 1u) * p.a_cs), ld_a(ar3 + (k + 2u) * p.a_cs), ld_a(ar3 + (k + 3u) * p.a_cs));
            a4 = vec4<f32>(ld_a(ar4 + (k + 0u) * p.a_cs), ld_a(ar4 + (k + 1u) * p.a_cs), ld_a(ar4 + (k + 2u) * p.a_cs), ld_a(ar4 + (k + 3u) * p.a_cs));
            a5 = vec4<f32>(ld_a(ar5 + (k + 0u) * p.a_cs), ld_a(ar5 + (k + 1u) * p.a_cs), ld_a(ar5 + (k + 2u) * p.a_cs), ld_a(ar5 + (k + 3u) * p.a_cs));
            a6 = vec4<f32>(ld_a(ar6 + (k + 0u) * p.a_cs), ld_a(ar6 + (k + 1u) * p.a_cs), ld_a(ar6 + (k + 2u) * p.a_cs), ld_a(ar6 + (k + 3u) * p.a_cs));
            a7 = vec4<f32>(ld_a(ar7 + (k + 0u) * p.a_cs), ld_a(ar7 + (k + 1u) * p.a_cs), ld_a(ar7 + (k + 2u) * p.a_cs), ld_a(ar7 + (k + 3u) * p.a_cs));
            a8 = vec4<f32>(ld_a(ar8 + (k + 0u) * p.a_cs), ld_a(ar8 + (k + 1u) * p.a_cs), ld_a(ar8 + (k + 2u) * p.a_cs), ld_a(ar8 + (k + 3u) * p.a_cs));
            a9 = vec4<f32>(ld_a(ar9 + (k + 0u) * p.a_cs), ld_a(ar9 + (k + 1u) * p.a_cs), ld_a(ar9 + (k + 2u) * p.a_cs), ld_a(ar9 + (k + 3u) * p.a_cs));
            a10 = vec4<f32>(ld_a(ar10 + (k + 0u) * p.a_cs), ld_a(ar10 + (k + 1u) * p.a_cs), ld_a(ar10 + (k + 2u) * p.a_cs), ld_a(ar10 + (k + 3u) * p.a_cs));
            a11 = vec4<f32>(ld_a(ar11 + (k + 0u) * p.a_cs), ld_a(ar11 + (k + 1u) * p.a_cs), ld_a(ar11 + (k + 2u) * p.a_cs), ld_a(ar11 + (k + 3u) * p.a_cs));
            a12 = vec4<f32>(ld_a(ar12 + (k + 0u) * p.a_cs), ld_a(ar12 + (k + 1u) * p.a_cs), ld_a(ar12 + (k + 2u) * p.a_cs), ld_a(ar12 + (k + 3u) * p.a_cs));
            a13 = vec4<f32>(ld_a(ar13 + (k + 0u) * p.a_cs), ld_a(ar13 + (k + 1u) * p.a_cs), ld_a(ar13 + (k + 2u) * p.a_cs), ld_a(ar13 + (k + 3u) * p.a_cs));
            a14 = vec4<f32>(ld_a(ar14 + (k + 0u) * p.a_cs), ld_a(ar14 + (k + 1u) * p.a_cs), ld_a(ar14 + (k + 2u) * p.a_cs), ld_a(ar14 + (k + 3u) * p.a_cs));
            a15 = vec4<f32>(ld_a(ar15 + (k + 0u) * p.a_cs), ld_a(ar15 + (k + 1u) * p.a_cs), ld_a(ar15 + (k + 2u) * p.a_cs), ld_a(ar15 + (k + 3u) * p.a_cs));
        }
        // b{kk}_{h} = B[k + kk][n0 + 4h .. n0 + 4h + 4]
        var b0_0: vec4<f32>; var b0_1: vec4<f32>;
        var b1_0: vec4<f32>; var b1_1: vec4<f32>;
        var b2_0: vec4<f32>; var b2_1: vec4<f32>;
        var b3_0: vec4<f32>; var b3_1: vec4<f32>;
        if (B_MODE == 1u) {
            let nv0 = min(n0 + 0u, p.n - 4u);
            let nv1 = min(n0 + 4u, p.n - 4u);
            let row0 = b_base + (k + 0u) * p.b_rs;
            b0_0 = b[(row0 + nv0) >> 2u];
            b0_1 = b[(row0 + nv1) >> 2u];
            let row1 = b_base + (k + 1u) * p.b_rs;
            b1_0 = b[(row1 + nv0) >> 2u];
            b1_1 = b[(row1 + nv1) >> 2u];
            let row2 = b_base + (k + 2u) * p.b_rs;
            b2_0 = b[(row2 + nv0) >> 2u];
            b2_1 = b[(row2 + nv1) >> 2u];
            let row3 = b_base + (k + 3u) * p.b_rs;
            b3_0 = b[(row3 + nv0) >> 2u];
            b3_1 = b[(row3 + nv1) >> 2u];
        } else if (B_MODE == 2u) {
            // One vec4 along k per column, transposed into b{kk}_{h} in registers.
            let u0 = b[(bc0 + k) >> 2u];
            let u1 = b[(bc1 + k) >> 2u];
            let u2 = b[(bc2 + k) >> 2u];
            let u3 = b[(bc3 + k) >> 2u];
            let u4 = b[(bc4 + k) >> 2u];
            let u5 = b[(bc5 + k) >> 2u];
            let u6 = b[(bc6 + k) >> 2u];
            let u7 = b[(bc7 + k) >> 2u];
            b0_0 = vec4<f32>(u0.x, u1.x, u2.x, u3.x);
            b0_1 = vec4<f32>(u4.x, u5.x, u6.x, u7.x);
            b1_0 = vec4<f32>(u0.y, u1.y, u2.y, u3.y);
            b1_1 = vec4<f32>(u4.y, u5.y, u6.y, u7.y);
            b2_0 = vec4<f32>(u0.z, u1.z, u2.z, u3.z);
            b2_1 = vec4<f32>(u4.z, u5.z, u6.z, u7.z);
            b3_0 = vec4<f32>(u0.w, u1.w, u2.w, u3.w);
            b3_1 = vec4<f32>(u4.w, u5.w, u6.w, u7.w);
        } else {
            b0_0 = vec4<f32>(ld_b(bc0 + (k + 0u) * p.b_rs), ld_b(bc1 + (k + 0u) * p.b_rs), ld_b(bc2 + (k + 0u) * p.b_rs), ld_b(bc3 + (k + 0u) * p.b_rs));
            b0_1 = vec4<f32>(ld_b(bc4 + (k + 0u) * p.b_rs), ld_b(bc5 + (k + 0u) * p.b_rs), ld_b(bc6 + (k + 0u) * p.b_rs), ld_b(bc7 + (k + 0u) * p.b_rs));
            b1_0 = vec4<f32>(ld_b(bc0 + (k + 1u) * p.b_rs), ld_b(bc1 + (k + 1u) * p.b_rs), ld_b(bc2 + (k + 1u) * p.b_rs), ld_b(bc3 + (k + 1u) * p.b_rs));
            b1_1 = vec4<f32>(ld_b(bc4 + (k + 1u) * p.b_rs), ld_b(bc5 + (k + 1u) * p.b_rs), ld_b(bc6 + (k + 1u) * p.b_rs), ld_b(bc7 + (k + 1u) * p.b_rs));
            b2_0 = vec4<f32>(ld_b(bc0 + (k + 2u) * p.b_rs), ld_b(bc1 + (k + 2u) * p.b_rs), ld_b(bc2 + (k + 2u) * p.b_rs), ld_b(bc3 + (k + 2u) * p.b_rs));
            b2_1 = vec4<f32>(ld_b(bc4 + (k + 2u) * p.b_rs), ld_b(bc5 + (k + 2u) * p.b_rs), ld_b(bc6 + (k + 2u) * p.b_rs), ld_b(bc7 + (k + 2u) * p.b_rs));
            b3_0 = vec4<f32>(ld_b(bc0 + (k + 3u) * p.b_rs), ld_b(bc1 + (k + 3u) * p.b_rs), ld_b(bc2 + (k + 3u) * p.b_rs), ld_b(bc3 + (k + 3u) * p.b_rs));
            b3_1 = vec4<f32>(ld_b(bc4 + (k + 3u) * p.b_rs), ld_b(bc5 + (k + 3u) * p.b_rs), ld_b(bc6 + (k + 3u) * p.b_rs), ld_b(bc7 + (k + 3u) * p.b_rs));
        }
        c0_0 = fma(vec4<f32>(a0.w), b3_0, fma(vec4<f32>(a0.z), b2_0, fma(vec4<f32>(a0.y), b1_0, fma(vec4<f32>(a0.x), b0_0, c0_0))));
        c0_1 = fma(vec4<f32>(a0.w), b3_1, fma(vec4<f32>(a0.z), b2_1, fma(vec4<f32>(a0.y), b1_1, fma(vec4<f32>(a0.x), b0_1, c0_1))));
        c1_0 = fma(vec4<f32>(a1.w), b3_0, fma(vec4<f32>(a1.z), b2_0, fma(vec4<f32>(a1.y), b1_0, fma(vec4<f32>(a1.x), b0_0, c1_0))));
        c1_1 = fma(vec4<f32>(a1.w), b3_1, fma(vec4<f32>(a1.z), b2_1, fma(vec4<f32>(a1.y), b1_1, fma(vec4<f32>(a1.x), b0_1, c1_1))));
        c2_0 = fma(vec4<f32>(a2.w), b3_0, fma(vec4<f32>(a2.z), b2_0, fma(vec4<f32>(a2.y), b1_0, fma(vec4<f32>(a2.x), b0_0, c2_0))));
        c2_1 = fma(vec4<f32>(a2.w), b3_1, fma(vec4<f32>(a2.z), b2_1, fma(vec4<f32>(a2.y), b1_1, fma(vec4<f32>(a2.x), b0_1, c2_1))));
        c3_0 = fma(vec4<f32>(a3.w), b3_0, fma(vec4<f32>(a3.z), b2_0, fma(vec4<f32>(a3.y), b1_0, fma(vec4<f32>(a3.x), b0_0, c3_0))));
        c3_1 = fma(vec4<f32>(a3.w), b3_1, fma(vec4<f32>(a3.z), b2_1, fma(vec4<f32>(a3.y), b1_1, fma(vec4<f32>(a3.x), b0_1, c3_1))));
        c4_0 = fma(vec4<f32>(a4.w), b3_0, fma(vec4<f32>(a4.z), b2_0, fma(vec4<f32>(a4.y), b1_0, fma(vec4<f32>(a4.x), b0_0, c4_0))));
        c4_1 = fma(vec4<f32>(a4.w), b3_1, fma(vec4<f32>(a4.z), b2_1, fma(vec4<f32>(a4.y), b1_1, fma(vec4<f32>(a4.x), b0_1, c4_1))));
        c5_0 = fma(vec4<f32>(a5.w), b3_0, fma(vec4<f32>(a5.z), b2_0, fma(vec4<f32>(a5.y), b1_0, fma(vec4<f32>(a5.x), b0_0, c5_0))));
        c5_1 = fma(vec4<f32>(a5.w), b3_1, fma(vec4<f32>(a5.z), b2_1, fma(vec4<f32>(a5.y), b1_1, fma(vec4<f32>(a5.x), b0_1, c5_1))));
        c6_0 = fma(vec4<f32>(a6.w), b3_0, fma(vec4<f32>(a6.z), b2_0, fma(vec4<f32>(a6.y), b1_0, fma(vec4<f32>(a6.x), b0_0, c6_0))));
        c6_1 = fma(vec4<f32>(a6.w), b3_1, fma(vec4<f32>(a6.z), b2_1, fma(vec4<f32>(a6.y), b1_1, fma(vec4<f32>(a6.x), b0_1, c6_1))));
        c7_0 = fma(vec4<f32>(a7.w), b3_0, fma(vec4<f32>(a7.z), b2_0, fma(vec4<f32>(a7.y), b1_0, fma(vec4<f32>(a7.x), b0_0, c7_0))));
        c7_1 = fma(vec4<f32>(a7.w), b3_1, fma(vec4<f32>(a7.z), b2_1, fma(vec4<f32>(a7.y), b1_1, fma(vec4<f32>(a7.x), b0_1, c7_1))));
        c8_0 = fma(vec4<f32>(a8.w), b3_0, fma(vec4<f32>(a8.z), b2_0, fma(vec4<f32>(a8.y), b1_0, fma(vec4<f32>(a8.x), b0_0, c8_0))));
        c8_1 = fma(vec4<f32>(a8.w), b3_1, fma(vec4<f32>(a8.z), b2_1, fma(vec4<f32>(a8.y), b1_1, fma(vec4<f32>(a8.x), b0_1, c8_1))));
        c9_0 = fma(vec4<f32>(a9.w), b3_0, fma(vec4<f32>(a9.z), b2_0, fma(vec4<f32>(a9.y), b1_0, fma(vec4<f32>(a9.x), b0_0, c9_0))));
        c9_1 = fma(vec4<f32>(a9.w), b3_1, fma(vec4<f32>(a9.z), b2_1, fma(vec4<f32>(a9.y), b1_1, fma(vec4<f32>(a9.x), b0_1, c9_1))));
        c10_0 = fma(vec4<f32>(a10.w), b3_0, fma(vec4<f32>(a10.z), b2_0, fma(vec4<f32>(a10.y), b1_0, fma(vec4<f32>(a10.x), b0_0, c10_0))));
        c10_1 = fma(vec4<f32>(a10.w), b3_1, fma(vec4<f32>(a10.z), b2_1, fma(vec4<f32>(a10.y), b1_1, fma(vec4<f32>(a10.x), b0_1, c10_1))));
        c11_0 = fma(vec4<f32>(a11.w), b3_0, fma(vec4<f32>(a11.z), b2_0, fma(vec4<f32>(a11.y), b1_0, fma(vec4<f32>(a11.x), b0_0, c11_0))));
        c11_1 = fma(vec4<f32>(a11.w), b3_1, fma(vec4<f32>(a11.z), b2_1, fma(vec4<f32>(a11.y), b1_1, fma(vec4<f32>(a11.x), b0_1, c11_1))));
        c12_0 = fma(vec4<f32>(a12.w), b3_0, fma(vec4<f32>(a12.z), b2_0, fma(vec4<f32>(a12.y), b1_0, fma(vec4<f32>(a12.x), b0_0, c12_0))));
        c12_1 = fma(vec4<f32>(a12.w), b3_1, fma(vec4<f32>(a12.z), b2_1, fma(vec4<f32>(a12.y), b1_1, fma(vec4<f32>(a12.x), b0_1, c12_1))));
        c13_0 = fma(vec4<f32>(a13.w), b3_0, fma(vec4<f32>(a13.z), b2_0, fma(vec4<f32>(a13.y), b1_0, fma(vec4<f32>(a13.x), b0_0, c13_0))));
        c13_1 = fma(vec4<f32>(a13.w), b3_1, fma(vec4<f32>(a13.z), b2_1, fma(vec4<f32>(a13.y), b1_1, fma(vec4<f32>(a13.x), b0_1, c13_1))));
        c14_0 = fma(vec4<f32>(a14.w), b3_0, fma(vec4<f32>(a14.z), b2_0, fma(vec4<f32>(a14.y), b1_0, fma(vec4<f32>(a14.x), b0_0, c14_0))));
        c14_1 = fma(vec4<f32>(a14.w), b3_1, fma(vec4<f32>(a14.z), b2_1, fma(vec4<f32>(a14.y), b1_1, fma(vec4<f32>(a14.x), b0_1, c14_1))));
        c15_0 = fma(vec4<f32>(a15.w), b3_0, fma(vec4<f32>(a15.z), b2_0, fma(vec4<f32>(a15.y), b1_0, fma(vec4<f32>(a15.x), b0_0, c15_0))));
        c15_1 = fma(vec4<f32>(a15.w), b3_1, fma(vec4<f32>(a15.z), b2_1, fma(vec4<f32>(a15.y), b1_1, fma(vec4<f32>(a15.x), b0_1, c15_1))));
    }
    // The last k % 4 steps, scalar loads.
    for (var k = k4; k < p.k; k++) {
        let s0 = vec4<f32>(ld_b(bc0 + k * p.b_rs), ld_b(bc1 + k * p.b_rs), ld_b(bc2 + k * p.b_rs), ld_b(bc3 + k * p.b_rs));
        let s1 = vec4<f32>(ld_b(bc4 + k * p.b_rs), ld_b(bc5 + k * p.b_rs), ld_b(bc6 + k * p.b_rs), ld_b(bc7 + k * p.b_rs));
        let r0 = vec4<f32>(ld_a(ar0 + k * p.a_cs));
        c0_0 = fma(r0, s0, c0_0);
        c0_1 = fma(r0, s1, c0_1);
        let r1 = vec4<f32>(ld_a(ar1 + k * p.a_cs));
        c1_0 = fma(r1, s0, c1_0);
        c1_1 = fma(r1, s1, c1_1);
        let r2 = vec4<f32>(ld_a(ar2 + k * p.a_cs));
        c2_0 = fma(r2, s0, c2_0);
        c2_1 = fma(r2, s1, c2_1);
        let r3 = vec4<f32>(ld_a(ar3 + k * p.a_cs));
        c3_0 = fma(r3, s0, c3_0);
        c3_1 = fma(r3, s1, c3_1);
        let r4 = vec4<f32>(ld_a(ar4 + k * p.a_cs));
        c4_0 = fma(r4, s0, c4_0);
        c4_1 = fma(r4, s1, c4_1);
        let r5 = vec4<f32>(ld_a(ar5 + k * p.a_cs));
        c5_0 = fma(r5, s0, c5_0);
        c5_1 = fma(r5, s1, c5_1);
        let r6 = vec4<f32>(ld_a(ar6 + k * p.a_cs));
        c6_0 = fma(r6, s0, c6_0);
        c6_1 = fma(r6, s1, c6_1);
        let r7 = vec4<f32>(ld_a(ar7 + k * p.a_cs));
        c7_0 = fma(r7, s0, c7_0);
        c7_1 = fma(r7, s1, c7_1);
        let r8 = vec4<f32>(ld_a(ar8 + k * p.a_cs));
        c8_0 = fma(r8, s0, c8_0);
        c8_1 = fma(r8, s1, c8_1);
        let r9 = vec4<f32>(ld_a(ar9 + k * p.a_cs));
        c9_0 = fma(r9, s0, c9_0);
        c9_1 = fma(r9, s1, c9_1);
        let r10 = vec4<f32>(ld_a(ar10 + k * p.a_cs));
        c10_0 = fma(r10, s0, c10_0);
        c10_1 = fma(r10, s1, c10_1);
        let r11 = vec4<f32>(ld_a(ar11 + k * p.a_cs));
        c11_0 = fma(r11, s0, c11_0);
        c11_1 = fma(r11, s1, c11_1);
        let r12 = vec4<f32>(ld_a(ar12 + k * p.a_cs));
        c12_0 = fma(r12, s0, c12_0);
        c12_1 = fma(r12, s1, c12_1);
        let r13 = vec4<f32>(ld_a(ar13 + k * p.a_cs));
        c13_0 = fma(r13, s0, c13_0);
        c13_1 = fma(r13, s1, c13_1);
        let r14 = vec4<f32>(ld_a(ar14 + k * p.a_cs));
        c14_0 = fma(r14, s0, c14_0);
        c14_1 = fma(r14, s1, c14_1);
        let r15 = vec4<f32>(ld_a(ar15 + k * p.a_cs));
        c15_0 = fma(r15, s0, c15_0);
        c15_1 = fma(r15, s1, c15_1);
    }
    // Epilogue: the accumulators go to a private array once so that the row loop below is
    // not unrolled (16 inlined copies of the GELU path would bloat the kernel).
    var acc: array<vec4<f32>, 32>;
    acc[0u] = c0_0;
    acc[1u] = c0_1;
    acc[2u] = c1_0;
    acc[3u] = c1_1;
    acc[4u] = c2_0;
    acc[5u] = c2_1;
    acc[6u] = c3_0;
    acc[7u] = c3_1;
    acc[8u] = c4_0;
    acc[9u] = c4_1;
    acc[10u] = c5_0;
    acc[11u] = c5_1;
    acc[12u] = c6_0;
    acc[13u] = c6_1;
    acc[14u] = c7_0;
    acc[15u] = c7_1;
    acc[16u] = c8_0;
    acc[17u] = c8_1;
    acc[18u] = c9_0;
    acc[19u] = c9_1;
    acc[20u] = c10_0;
    acc[21u] = c10_1;
    acc[22u] = c11_0;
    acc[23u] = c11_1;
    acc[24u] = c12_0;
    acc[25u] = c12_1;
    acc[26u] = c13_0;
    acc[27u] = c13_1;
    acc[28u] = c14_0;
    acc[29u] = c14_1;
    acc[30u] = c15_0;
    acc[31u] = c15_1;
    let nv = min(p.n - n0, TN);
    for (var i = 0u; i < min(p.m - m0, TM); i++) {
        store4(bz, m0 + i, n0 + 0u, nv - min(nv, 0u), acc[i * 2u + 0u]);
        store4(bz, m0 + i, n0 + 4u, nv - min(nv, 4u), acc[i * 2u + 1u]);
    }
}
// END GENERATED regblock

// ---- tiled: workgroup tiles through workgroup memory (GPUs) --------------------------------

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// Stored [k][m] and [k][n] so the inner loop reads consecutive addresses across threads.
var<workgroup> tile_a: array<f32, 1024>; // BK × BM
var<workgroup> tile_b: array<f32, 1024>; // BK × BN

@compute @workgroup_size(16, 16, 1)
fn tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m_tile = wg.y * BM;
    let n_tile = wg.x * BN;
    let bz = wg.z;
    let a_base = p.a_off + bz * p.a_bs;
    let b_base = p.b_off + bz * p.b_bs;
    // Each thread owns rows lid.y + 16i and columns lid.x + 16j of the tile.
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    // No early return: every thread must reach the barriers; loads past an edge read 0.
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + 256u * r;
            // A tile: consecutive threads take consecutive k of one row (contiguous when a_cs = 1).
            let am = e / BK;
            let ak = e % BK;
            let gm = m_tile + am;
            let gk = k0 + ak;
            var va = 0.0;
            if (gm < p.m && gk < p.k) {
                va = ld_a(a_base + gm * p.a_rs + gk * p.a_cs);
            }
            tile_a[ak * BM + am] = va;
            // B tile: consecutive threads take consecutive n of one k (contiguous when b_cs = 1).
            let bk = e / BN;
            let bn = e % BN;
            let gn = n_tile + bn;
            let gk2 = k0 + bk;
            var vb = 0.0;
            if (gn < p.n && gk2 < p.k) {
                vb = ld_b(b_base + gk2 * p.b_rs + gn * p.b_cs);
            }
            tile_b[bk * BN + bn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ra: array<f32, 4>;
            var rb: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                ra[i] = tile_a[kk * BM + lid.y + 16u * i];
                rb[i] = tile_b[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(ra[i], rb[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m_tile + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = n_tile + lid.x + 16u * j;
            if (m < p.m && n < p.n) {
                epilogue(bz, m, n, acc[i * 4u + j]);
            }
        }
    }
}
