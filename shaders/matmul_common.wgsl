// Batched matmul with a fused epilogue: C[b] = act(alpha·op(A[b])·op(B[b]) + bias + beta·C[b]).
// This file holds what every entry shares; the entries are in the files appended to it:
// matmul.wgsl (buffer entries), matmul_texel.wgsl and matmul_texel8.wgsl (texel entries).
//
// The variants share the bindings, the parameter block and the epilogue:
// - `naive`:    one output per thread; the specification ported straight from reference.rs.
// - `regblock`: for CPU adapters (lavapipe): each thread owns an 8×16 register block, no workgroup
//               memory and no barriers (each barrier makes llvmpipe switch coroutines), vec4 loads
//               where the layout allows (A_MODE / B_MODE override constants).
// - `regblock_vec`: the same scheme with a 24×16 block and a single vec4 code path (row-major A
//               and B, K and N multiples of 4), small enough for lavapipe's JIT (docs/PERFORMANCE.md).
// - `regblock_vec_ta`: 24×16 for `trans_a` (A stored [K, M], M and N multiples of 4, any K): at
//               fixed k a thread's 24 values of A are contiguous, so both operands load as vec4s.
// - `tiled`:    for GPUs: 64×64 workgroup tiles staged through workgroup memory, 4×4 per thread.
//
// Operands are addressed through strides, so transposes, broadcast batches (stride 0) and
// chunked launches over offset bindings are all the same kernel:
//   A(b, m, k) = a[a_off + b·a_bs + m·a_rs + k·a_cs]
//   B(b, k, n) = b[b_off + b·b_bs + k·b_rs + n·b_cs]
//   C(b, m, n) = c[c_off + b·c_bs + m·c_rs + n]      (the pre-activation uses p_off, the residual
//                                                    r_off, same strides)
// A and B are bound as arrays of vec4 so the fast paths can load 16 bytes at once; scalar reads
// pick a component. The launcher binds ranges rounded up to 16 bytes.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0 add bias, bit 1 read C (beta), bit 2 write pre-activation, bit 3 add the residual
    // after the activation, bits 4-5 activation
    flags: u32,
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
    // Split-K: z = batch · ksplit + slice, slice s reduces k in [s·kslice, (s+1)·kslice) ∩ [0, k)
    // into its own C slot (z); ksplit = 1 and kslice ≥ k otherwise. `splitk_sum` reads ksplit
    // as the slice count.
    ksplit: u32,
    kslice: u32,
    r_off: u32,
    // The row sums' offset (the texel `ta` entries with ROW_SUMS, see gen_texel.py).
    s_off: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;
@group(0) @binding(6) var<storage, read> residual: array<f32>;

const FLAG_BIAS: u32 = 1u;
const FLAG_READ_C: u32 = 2u;
const FLAG_WRITE_PRE: u32 = 4u;
const FLAG_RESIDUAL: u32 = 8u;
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

// A launch's batch and reduction range for workgroup z (see `ksplit` in Params).
struct Slice {
    bz: u32,
    k_lo: u32,
    k_hi: u32,
}

fn slice_of(z: u32) -> Slice {
    let k_lo = (z % p.ksplit) * p.kslice;
    return Slice(z / p.ksplit, k_lo, min(p.k, k_lo + p.kslice));
}

// Writes one output element of C slot cz (the batch, or a split-K partial); the caller checks
// m < p.m and n < p.n.
fn epilogue(cz: u32, m: u32, n: u32, acc: f32) {
    epilogue_with(cz, m, n, acc, bias_at(n));
}

// The bias of column n < p.n (0 without one). The texel entries load their lanes' biases once
// per workgroup and pass them to `epilogue_with`: on lavapipe every buffer load runs lane by lane,
// and a bias read per output cost as much as a K = 96 product itself (docs/PERFORMANCE.md,
// "Session 9").
fn bias_at(n: u32) -> f32 {
    if ((p.flags & FLAG_BIAS) != 0u) {
        return bias[p.bias_off + n];
    }
    return 0.0;
}

// The four biases of columns n..n+3 (those past p.n are 0).
fn bias4_at(n: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (n + j < p.n) {
            v[j] = bias_at(n + j);
        }
    }
    return v;
}

// `epilogue` with the column's bias given (`bias_at(n)`).
fn epilogue_with(cz: u32, m: u32, n: u32, acc: f32, bias_n: f32) {
    let v0 = p.alpha * acc;
    var v = v0 + bias_n;
    if ((p.flags & FLAG_BIAS) == 0u) {
        // Keeps alpha·acc bit for bit (a -0.0 plus 0.0 would turn positive).
        v = v0;
    }
    let rel = cz * p.c_bs + m * p.c_rs + n;
    let ci = p.c_off + rel;
    // beta = 0 never reads C, so an uninitialised (or NaN-poisoned) output is fine.
    if ((p.flags & FLAG_READ_C) != 0u) {
        v += p.beta * c[ci];
    }
    if ((p.flags & FLAG_WRITE_PRE) != 0u) {
        pre[p.p_off + rel] = v;
    }
    var res = activate(v, (p.flags >> 4u) & 3u);
    // A residual branch (x + f(x·W)) added here saves a pass over C.
    if ((p.flags & FLAG_RESIDUAL) != 0u) {
        res += residual[p.r_off + rel];
    }
    c[ci] = res;
}

// Writes the first `count` (≤ 4) of four consecutive outputs of row m starting at column n.
fn store4(cz: u32, m: u32, n: u32, count: u32, acc: vec4<f32>) {
    store4_with(cz, m, n, count, acc, bias4_at(n));
}

// `store4` with the four columns' biases given (`bias4_at(n)`).
fn store4_with(cz: u32, m: u32, n: u32, count: u32, acc: vec4<f32>, bias4: vec4<f32>) {
    for (var j = 0u; j < min(count, 4u); j++) {
        epilogue_with(cz, m, n + j, acc[j], bias4[j]);
    }
}
