//! What a launch's operand layout and alignment allow: the `regblock` load modes, the 24×16
//! entry (and so the texel layout) it can run, and the `gemm` override constants.

use super::launch::{Extent, Params};
use super::{LARGE_MIN_FLOPS, LARGE_MIN_WORKGROUPS, LARGE_TILE};

/// The override constants of a `gemm` launch: its tile edge, which dimension each operand is
/// contiguous along (`*_KMAJOR`: along k) and whether that layout and alignment allow one vec4
/// load per four values (every vec4 the kernel loads then starts on a multiple of 4 elements).
pub(super) fn gemm_constants(p: &Params, tile: u64) -> [(&'static str, f64); 5] {
    let a_ok = p.a_off.is_multiple_of(4) && p.a_bs.is_multiple_of(4);
    let a_kmajor = p.a_cs <= 1 && p.a_rs != 1;
    let a_vec = a_ok
        && if a_kmajor {
            p.a_rs.is_multiple_of(4)
        } else {
            p.a_rs <= 1 && p.a_cs.is_multiple_of(4)
        };
    let b_ok = p.b_off.is_multiple_of(4) && p.b_bs.is_multiple_of(4);
    let b_kmajor = p.b_rs <= 1 && p.b_cs != 1;
    let b_vec = b_ok
        && if b_kmajor {
            p.b_cs.is_multiple_of(4)
        } else {
            p.b_cs <= 1 && p.b_rs.is_multiple_of(4)
        };
    let flag = |x: bool| if x { 1.0 } else { 0.0 };
    [
        ("GT", tile as f64),
        ("A_KMAJOR", flag(a_kmajor)),
        ("B_KMAJOR", flag(b_kmajor)),
        ("A_VEC", flag(a_vec)),
        ("B_VEC", flag(b_vec)),
    ]
}

/// The regblock load modes (see shaders/matmul.wgsl) this launch's layout and alignment allow.
pub(super) fn vector_modes(p: &Params, e: Extent) -> (u32, u32) {
    let a_ok = p.a_off.is_multiple_of(4) && p.a_bs.is_multiple_of(4);
    let a_mode = if a_ok && p.a_cs <= 1 && p.a_rs.is_multiple_of(4) && e.k >= 4 {
        1
    } else if a_ok && p.a_rs <= 1 && p.a_cs.is_multiple_of(4) && e.m.is_multiple_of(4) && e.k >= 4 {
        2
    } else {
        0
    };
    let b_ok = p.b_off.is_multiple_of(4) && p.b_bs.is_multiple_of(4);
    let b_mode =
        if b_ok && p.b_cs <= 1 && p.b_rs.is_multiple_of(4) && e.n.is_multiple_of(4) && e.k >= 4 {
            1
        } else if b_ok && p.b_rs <= 1 && p.b_cs.is_multiple_of(4) && e.k >= 4 {
            2
        } else {
            0
        };
    (a_mode, b_mode)
}

/// The 24×16 entry a `RegBlockLarge` launch runs, if any: `regblock_vec` when both operands
/// are in the row-major vec4 layouts (A_MODE = B_MODE = 1) with K a multiple of 4 (it has no
/// scalar k tail); `regblock_vec_ta` when A is stored [K, M] (`trans_a`: unit row stride, M and
/// the k stride multiples of 4) and B is row-major with N a multiple of 4, any K. Under `Auto`
/// either needs at least [`LARGE_MIN_WORKGROUPS`] of its workgroups and [`LARGE_MIN_FLOPS`].
/// `None`: `regblock`.
pub(super) fn large_entry(p: &Params, e: Extent, z: u64, auto: bool) -> Option<&'static str> {
    let wgs = z * e.m.div_ceil(LARGE_TILE.0) * e.n.div_ceil(LARGE_TILE.1);
    if auto && (wgs < LARGE_MIN_WORKGROUPS || 2 * z * e.m * e.n * e.k < LARGE_MIN_FLOPS) {
        return None;
    }
    if vector_modes(p, e) == (1, 1) && e.k.is_multiple_of(4) {
        return Some("regblock_vec");
    }
    let a_ok = p.a_off.is_multiple_of(4) && p.a_bs.is_multiple_of(4);
    let a_t = a_ok && p.a_rs <= 1 && p.a_cs.is_multiple_of(4) && e.m.is_multiple_of(4);
    let b_ok = p.b_off.is_multiple_of(4) && p.b_bs.is_multiple_of(4);
    let b_r = b_ok && p.b_cs <= 1 && p.b_rs.is_multiple_of(4) && e.n.is_multiple_of(4);
    if a_t && b_r {
        return Some("regblock_vec_ta");
    }
    // B stored [N, K] (trans_b) with row-major A, K a multiple of 4: regblock_vec_tb.
    let a_r = a_ok && p.a_cs <= 1 && p.a_rs.is_multiple_of(4);
    let b_t = b_ok && p.b_rs <= 1 && p.b_cs.is_multiple_of(4);
    (a_r && b_t && e.k.is_multiple_of(4)).then_some("regblock_vec_tb")
}
