// Fragment: the GPU GEMM's workgroup tile, shared by the `gemm` entry (shaders/matmul.wgsl) and
// the implicit-GEMM convolution (shaders/conv2d_implicit.wgsl); each appends it to its own source
// and defines how the two operands are fetched:
//   fn gemm_fetch_a(base: u32, m: u32, k: u32, k_end: u32) -> vec4<f32>
//   fn gemm_fetch_b(base: u32, n: u32, k: u32, k_end: u32) -> vec4<f32>
// returning four consecutive elements along the operand's contiguous dimension (k when
// A_KMAJOR / B_KMAJOR, else m / n), 0 past the edges and past k_end.
//
// A GT×GT tile of C per workgroup of (GT/8)² threads (GT = 128: 256 threads; GT = 64: 64 threads,
// for products with few tiles), GK = 8 k per step. Each thread owns 8×8 outputs as 2×2 blocks of
// 4×4 that lie GT/2 apart, so its operands come from workgroup memory as 4 vec4 reads per k
// (64 FMAs); a warp's 32 lanes form a 4×8 grid of threads, so those reads touch 4 and 8
// consecutive vec4s (no bank conflicts). The next k-step's tiles are loaded into registers
// (one or two vec4s per operand and thread) while the current one is multiplied, then stored
// into the other of two workgroup buffers: one barrier per k-step. A k-major operand's four
// values are stored transposed into [k][row]; the row pitch GT + 4 puts the two halves of a
// warp's 16 rows in different banks (conflict-free).

override GT: u32 = 128u;
override A_KMAJOR: bool = true;
override B_KMAJOR: bool = false;

const GK: u32 = 8u;
// Vec4s per staged k-row (GT + 4 floats), and per buffer.
const GP_MAX: u32 = 33u;
var<workgroup> ga: array<vec4<f32>, 528>; // 2 buffers × GK × GP_MAX
var<workgroup> gb: array<vec4<f32>, 528>;

fn lanes_below(first: u32, end: u32) -> vec4<bool> {
    return vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(end);
}

// Load slot e (0 ≤ e < 2·GT) of a GT×GK tile: (row or column within the tile, k within the step)
// of its first element. K-major: two slots per row, 4 k each; otherwise GT/4 slots per k.
fn gemm_slot(e: u32, kmajor: bool) -> vec2<u32> {
    if (kmajor) {
        return vec2<u32>(e / 2u, (e % 2u) * 4u);
    }
    return vec2<u32>((e % (GT / 4u)) * 4u, e / (GT / 4u));
}

// Stores a loaded vec4 (slot `s`, from gemm_slot) into buffer `buf` of `kmajor`'s tile, laid out
// [k][row] with a pitch of GT/4 + 1 vec4s.
fn gemm_stage(buf: u32, s: vec2<u32>, kmajor: bool, v: vec4<f32>, is_a: bool) {
    let pitch = GT / 4u + 1u;
    let base = buf * GK * pitch;
    if (kmajor) {
        // Transposed: v holds k .. k+3 of one row.
        let col = s.x / 4u;
        let lane = s.x % 4u;
        for (var j = 0u; j < 4u; j++) {
            let at = base + (s.y + j) * pitch + col;
            if (is_a) {
                ga[at][lane] = v[j];
            } else {
                gb[at][lane] = v[j];
            }
        }
    } else {
        let at = base + s.y * pitch + s.x / 4u;
        if (is_a) {
            ga[at] = v;
        } else {
            gb[at] = v;
        }
    }
}

// The thread's place in the tile: its rows are m0 + (r / 4)·GT/2 + 4·t.x + r % 4 (r < 8) and its
// columns n0 + j·GT/2 + 4·t.y .. +3 (j < 2), holding acc[r·2 + j] of `gemm_tile`.
fn gemm_thread(li: u32) -> vec2<u32> {
    // Warps of 4×8 threads, tiled over the (GT/8)×(GT/8) thread grid.
    let warps_n = GT / 64u;
    let w = li / 32u;
    let lane = li % 32u;
    return vec2<u32>((w / warps_n) * 4u + lane / 8u, (w % warps_n) * 8u + lane % 8u);
}

// The workgroup's GT×GT product over k in [k_lo, k_hi) for the tile at (m0, n0); every thread of
// the workgroup calls it in uniform control flow (it holds barriers).
fn gemm_tile(li: u32, a_base: u32, b_base: u32, m0: u32, n0: u32, k_lo: u32, k_hi: u32) -> array<vec4<f32>, 16> {
    let threads = GT * GT / 64u;
    let loads = 128u / GT; // vec4s of each operand a thread loads per k-step
    let t = gemm_thread(li);
    let ty = t.x;
    let tx = t.y;
    let pitch = GT / 4u + 1u;
    let half = GT / 8u; // vec4s between a thread's two 4-wide blocks

    var acc: array<vec4<f32>, 16>; // row r (0..8) × column block j (0..2) at acc[r * 2 + j]
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var ra: array<vec4<f32>, 2>;
    var rb: array<vec4<f32>, 2>;
    let steps = select(0u, (k_hi - k_lo + GK - 1u) / GK, k_hi > k_lo);
    for (var r = 0u; r < loads; r++) {
        let e = li + r * threads;
        let sa = gemm_slot(e, A_KMAJOR);
        let sb = gemm_slot(e, B_KMAJOR);
        gemm_stage(0u, sa, A_KMAJOR, gemm_fetch_a(a_base, m0 + sa.x, k_lo + sa.y, k_hi), true);
        gemm_stage(0u, sb, B_KMAJOR, gemm_fetch_b(b_base, n0 + sb.x, k_lo + sb.y, k_hi), false);
    }
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let more = s + 1u < steps;
        let k_next = k_lo + (s + 1u) * GK;
        if (more) {
            // Issued before the FMAs below, so their latency hides behind them.
            for (var r = 0u; r < loads; r++) {
                let e = li + r * threads;
                let sa = gemm_slot(e, A_KMAJOR);
                let sb = gemm_slot(e, B_KMAJOR);
                ra[r] = gemm_fetch_a(a_base, m0 + sa.x, k_next + sa.y, k_hi);
                rb[r] = gemm_fetch_b(b_base, n0 + sb.x, k_next + sb.y, k_hi);
            }
        }
        let cur = (s & 1u) * GK * pitch;
        for (var kk = 0u; kk < GK; kk++) {
            let row = cur + kk * pitch;
            let a0 = ga[row + ty];
            let a1 = ga[row + ty + half];
            let b0 = gb[row + tx];
            let b1 = gb[row + tx + half];
            for (var i = 0u; i < 4u; i++) {
                acc[i * 2u] = fma(vec4<f32>(a0[i]), b0, acc[i * 2u]);
                acc[i * 2u + 1u] = fma(vec4<f32>(a0[i]), b1, acc[i * 2u + 1u]);
                acc[i * 2u + 8u] = fma(vec4<f32>(a1[i]), b0, acc[i * 2u + 8u]);
                acc[i * 2u + 9u] = fma(vec4<f32>(a1[i]), b1, acc[i * 2u + 9u]);
            }
        }
        if (more) {
            let nxt = (s + 1u) & 1u;
            for (var r = 0u; r < loads; r++) {
                let e = li + r * threads;
                gemm_stage(nxt, gemm_slot(e, A_KMAJOR), A_KMAJOR, ra[r], true);
                gemm_stage(nxt, gemm_slot(e, B_KMAJOR), B_KMAJOR, rb[r], false);
            }
        }
        workgroupBarrier();
    }
    return acc;
}
