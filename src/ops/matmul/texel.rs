//! Products on CPU adapters that read A and B from texel views (`runtime::TexelView`):
//! `shaders/matmul_texel.wgsl` and `matmul_texel8.wgsl`, written by `gen_texel.py`, each
//! appended to `shaders/matmul_common.wgsl`.
//!
//! On lavapipe a storage-buffer load that differs between SIMD lanes runs lane by lane; the
//! texel entries run the 24×16 entries' layouts about 4× faster (docs/PERFORMANCE.md,
//! "Session 6: texel views"). They take over from a `RegBlockLarge` entry under `Auto` (or run
//! when asked for with [`Variant::Texel`](super::Variant::Texel)); where a view cannot be made
//! (alignment, texture size, an adapter without read-only storage textures) the buffer entry runs.

use super::launch::{Extent, Params};
use crate::error::Result;
use crate::runtime::{Binding, Dispatch, Runtime, Shader, TexelSlot};

/// Rows and columns of C covered by one workgroup of the large texel entries (see gen_texel.py).
pub(super) const TEXEL_TILE: (u64, u64) = (32, 64);
/// The same for the small entries (`texel_nn8`, ...), whose JIT takes seconds less.
pub(super) const TEXEL_SMALL_TILE: (u64, u64) = (8, 64);

/// One texel entry, its shader and the tile of C its workgroups cover.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub name: &'static str,
    pub shader: &'static Shader,
    pub tile: (u64, u64),
}

/// The large texel entries (`shaders/matmul_texel.wgsl`) appended to the parameter block and
/// epilogue they share with the buffer entries (`shaders/matmul_common.wgsl`).
pub(super) const SHADER: Shader = Shader {
    name: "matmul_texel",
    source: concat!(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/matmul_common.wgsl"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/matmul_texel.wgsl"
        ))
    ),
};

/// The 8-row entries in a module of their own: a small model's first run parses ~20 KB of WGSL
/// for its products instead of the ~150 KB of every matmul entry (issue 13, cold start).
pub(super) const SMALL_SHADER: Shader = Shader {
    name: "matmul_texel8",
    source: concat!(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/matmul_common.wgsl"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/matmul_texel8.wgsl"
        ))
    ),
};

/// The texel entry (small or large) with the same layout as the 24×16 buffer entry `large`,
/// when the launch's split slices start on multiples of 4 (the `nn` and `tb` entries step k by
/// 4) and its grid fits.
pub(super) fn entry(large: &str, p: &Params, e: Extent, max_wg: u64, small: bool) -> Option<Entry> {
    let (name, k_steps_by_4) = match (large, small) {
        ("regblock_vec", false) => ("texel_nn", true),
        ("regblock_vec", true) => ("texel_nn8", true),
        ("regblock_vec_ta", false) => ("texel_ta", false),
        ("regblock_vec_ta", true) => ("texel_ta8", false),
        ("regblock_vec_tb", false) => ("texel_tb", true),
        ("regblock_vec_tb", true) => ("texel_tb8", true),
        _ => return None,
    };
    if k_steps_by_4 && p.ksplit > 1 && !p.kslice.is_multiple_of(4) {
        return None;
    }
    let (tile, shader) = match small {
        true => (TEXEL_SMALL_TILE, &SMALL_SHADER),
        false => (TEXEL_TILE, &SHADER),
    };
    let fits = e.m.div_ceil(tile.0) <= max_wg && e.n.div_ceil(tile.1) <= max_wg;
    fits.then_some(Entry { name, shader, tile })
}

/// Whether `Auto` uses texel views here: on CPU adapters, whose lane-by-lane buffer loads they
/// avoid (a GPU's buffer loads are coalesced, and its kernel is `gemm`).
pub(super) fn preferred(rt: &Runtime) -> bool {
    rt.info().device_type == wgpu::DeviceType::Cpu
}

/// The texel entry's dispatch for one launch (`slices` split-K slices per batch), or `None`
/// when the operands cannot be viewed (the caller runs the buffer entry).
pub(super) fn dispatch(
    rt: &Runtime,
    entry: Entry,
    params: &Params,
    e: Extent,
    slices: u64,
    [bind_a, bind_b, bind_bias, bind_c, bind_p, bind_r]: [Binding<'_>; 6],
) -> Result<Option<Dispatch>> {
    let (Ok(va), Ok(vb)) = (
        rt.texel_view(TexelSlot::A, bind_a),
        rt.texel_view(TexelSlot::B, bind_b),
    ) else {
        return Ok(None);
    };
    let kernel = rt.kernel(entry.shader, entry.name, &[])?;
    let workgroups = [
        e.n.div_ceil(entry.tile.1) as u32,
        e.m.div_ceil(entry.tile.0) as u32,
        (e.b * slices) as u32,
    ];
    // Bindings as declared in shaders/matmul_common.wgsl (bias 3, c 4, pre 5, residual 6) and the
    // texel file (views 7 and 8).
    let storage = [(3, bind_bias), (4, bind_c), (5, bind_p), (6, bind_r)];
    Ok(Some(rt.dispatch_texels(
        &kernel,
        params,
        &storage,
        vec![(7, va), (8, vb)],
        workgroups,
    )))
}
