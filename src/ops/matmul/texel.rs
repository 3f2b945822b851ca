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

/// Rows and columns of C covered by one workgroup of the tall texel entries (see gen_texel.py).
pub(super) const TEXEL_TILE: (u64, u64) = (32, 64);
/// The same for the wide entries (`texel_nn_wide`, ...).
pub(super) const TEXEL_WIDE_TILE: (u64, u64) = (20, 128);
/// The same for the small entries (`texel_nn8`, ...), whose JIT takes seconds less.
pub(super) const TEXEL_SMALL_TILE: (u64, u64) = (8, 64);

/// How much faster the wide tile runs per padded FLOP than the tall one, as a ratio of work:
/// 22.9 against 20.1 GFLOP/s at 1536³ (`examples/load_probe`, docs/PERFORMANCE.md "Session 9"),
/// rounded down so that a tie in padded work goes to the wide tile and only a clearly smaller
/// padding (N = 288: 320 against 384 columns) to the tall one.
const WIDE_GAIN: f64 = 1.1;

/// Which texel tile a launch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Size {
    Small,
    Tall,
    Wide,
}

/// The large tile with the least padded work for an M×N output, the wide one's per-FLOP gain
/// counted: rows and columns past the edge are computed and dropped.
pub(super) fn large_size(e: Extent) -> Size {
    let padded = |(tm, tn): (u64, u64)| (e.m.div_ceil(tm) * tm * e.n.div_ceil(tn) * tn) as f64;
    if padded(TEXEL_WIDE_TILE) <= padded(TEXEL_TILE) * WIDE_GAIN {
        Size::Wide
    } else {
        Size::Tall
    }
}

/// One texel entry, its shader and the tile of C its workgroups cover.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub name: &'static str,
    /// A `ta` entry (A stored [K, M]), which can also write op(A)'s row sums.
    pub ta: bool,
    pub shader: &'static Shader,
    pub tile: (u64, u64),
}

/// The large texel entries (`shaders/matmul_texel.wgsl`) appended to the parameter block and
/// epilogue they share with the buffer entries (`shaders/matmul_common.wgsl`).
pub(super) const SHADER: Shader = crate::shader!(
    "matmul_texel" = "matmul_common",
    "matmul_texel",
    "matmul_texel_store"
);

/// The wide entries (20 rows × 128 columns), appended like the others.
pub(super) const WIDE_SHADER: Shader = crate::shader!(
    "matmul_texel_wide" = "matmul_common",
    "matmul_texel_wide",
    "matmul_texel_store"
);

/// The 8-row entries in a module of their own: a small model's first run parses ~20 KB of WGSL
/// for its products instead of the ~150 KB of every matmul entry (issue 13, cold start).
pub(super) const SMALL_SHADER: Shader = crate::shader!(
    "matmul_texel8" = "matmul_common",
    "matmul_texel8",
    "matmul_texel_store"
);

/// The texel entry of tile `size` with the same layout as the 24×16 buffer entry `large`,
/// when the launch's split slices start on multiples of 4 (the `nn` and `tb` entries step k by
/// 4), C is a view of whole texels (the entries store four columns at once,
/// shaders/matmul_texel_store.wgsl; with `c_padded` the last texel of a row may run past N) and
/// its grid fits.
pub(super) fn entry(
    large: &str,
    p: &Params,
    e: Extent,
    max_wg: u64,
    size: Size,
    c_padded: bool,
) -> Option<Entry> {
    let (layout, k_steps_by_4) = match large {
        "regblock_vec" => ("nn", true),
        "regblock_vec_ta" => ("ta", false),
        "regblock_vec_tb" => ("tb", true),
        _ => return None,
    };
    if k_steps_by_4 && p.ksplit > 1 && !p.kslice.is_multiple_of(4) {
        return None;
    }
    // C, the pre-activation and the residual share C's strides; the ones not bound have 0.
    let whole_texels = [p.c_off, p.c_bs, p.c_rs, p.p_off, p.r_off];
    if !whole_texels.iter().all(|v| v.is_multiple_of(4)) || !(c_padded || p.n.is_multiple_of(4)) {
        return None;
    }
    let (tile, shader, names) = match size {
        Size::Small => (TEXEL_SMALL_TILE, &SMALL_SHADER, SMALL_NAMES),
        Size::Tall => (TEXEL_TILE, &SHADER, TALL_NAMES),
        Size::Wide => (TEXEL_WIDE_TILE, &WIDE_SHADER, WIDE_NAMES),
    };
    let name = match layout {
        "nn" => names[0],
        "ta" => names[1],
        _ => names[2],
    };
    let fits = e.m.div_ceil(tile.0) <= max_wg && e.n.div_ceil(tile.1) <= max_wg;
    let ta = layout == "ta";
    fits.then_some(Entry {
        name,
        ta,
        shader,
        tile,
    })
}

/// Entry names per tile (nn, ta, tb), as gen_texel.py writes them.
const TALL_NAMES: [&str; 3] = ["texel_nn", "texel_ta", "texel_tb"];
const WIDE_NAMES: [&str; 3] = ["texel_nn_wide", "texel_ta_wide", "texel_tb_wide"];
const SMALL_NAMES: [&str; 3] = ["texel_nn8", "texel_ta8", "texel_tb8"];

/// Whether `Auto` uses texel views here: on CPU adapters, whose lane-by-lane buffer loads they
/// avoid (a GPU's buffer loads are coalesced, and its kernel is `gemm`).
pub(super) fn preferred(rt: &Runtime) -> bool {
    rt.info().device_type == wgpu::DeviceType::Cpu
}

/// The texel entry's dispatch for one launch (`slices` split-K slices per batch) and whether it
/// writes the row sums bound at `row_sums` (a `ta` entry does, if they start on a texel), or
/// `None` when the operands cannot be viewed (the caller runs the buffer entry).
pub(super) fn dispatch(
    rt: &Runtime,
    entry: Entry,
    params: &Params,
    e: Extent,
    slices: u64,
    [bind_a, bind_b, bind_bias, bind_c, bind_p, bind_r]: [Binding<'_>; 6],
    row_sums: Option<Binding<'_>>,
) -> Result<Option<(Dispatch, bool)>> {
    let (Ok(va), Ok(vb)) = (
        rt.texel_view(TexelSlot::A, bind_a),
        rt.texel_view(TexelSlot::B, bind_b),
    ) else {
        return Ok(None);
    };
    let row_sums = row_sums.filter(|_| entry.ta && params.s_off.is_multiple_of(4));
    let folded = row_sums.is_some();
    let constants: &[(&str, f64)] = if folded { &[("ROW_SUMS", 1.0)] } else { &[] };
    let kernel = rt.kernel(entry.shader, entry.name, constants)?;
    let workgroups = [
        e.n.div_ceil(entry.tile.1) as u32,
        e.m.div_ceil(entry.tile.0) as u32,
        (e.b * slices) as u32,
    ];
    // Bindings as declared in shaders/matmul_common.wgsl (bias 3, c 4, pre 5, residual 6) and the
    // texel file (views 7 and 8).
    let mut storage = vec![(3, bind_bias), (4, bind_c), (5, bind_p), (6, bind_r)];
    if entry.ta {
        // Never written without ROW_SUMS; the slot still needs a buffer that overlaps no other.
        storage.push((9, row_sums.unwrap_or_else(|| rt.unused_binding())));
    }
    let d = rt.dispatch_texels(
        &kernel,
        params,
        &storage,
        vec![(7, va), (8, vb)],
        workgroups,
    );
    Ok(Some((d, folded)))
}
