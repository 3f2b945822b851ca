//! The update launches of [`super::AdamW`]: one per binding-sized window of the four arenas
//! (gradients, parameters, both moments), each with a segment table naming every trainable
//! tensor's part inside it.
//!
//! Two forms of one update. GPUs, and adapters where texel views cannot be made, run
//! `shaders/adamw.wgsl` over the arenas' buffers. CPU adapters under the CPU kernel policy run
//! `shaders/adamw_texel.wgsl`, which reads all four arenas from texel views (see
//! `runtime/texel.rs`: llvmpipe runs a buffer load lane by lane, a texel load as one gather of
//! four elements) in chunks of at most [`TEXEL_CHUNK_BYTES`], so the four scratch textures stay
//! small; it needs an arena alignment of whole texels (16 bytes; the runtime's is 256).

use super::adamw::ParamState;
use super::Result;
use crate::ops::common::texel;
use crate::runtime::{grid_1d, Arena, Binding, Dispatch, Runtime, Tensor, TexelSlot};

/// Elements one workgroup of `shaders/adamw.wgsl` updates (256 invocations × 8).
const ELEMENTS_PER_WORKGROUP: u32 = 2048;

/// Texels one workgroup of `shaders/adamw_texel.wgsl` updates (256 invocations × 2).
const TEXELS_PER_WORKGROUP: u32 = 512;

/// The longest piece of a window the texel form views at once: four textures of this size.
pub(super) const TEXEL_CHUNK_BYTES: u64 = 32 << 20;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    segments: u32,
    workgroups: u32,
}

/// One row of the kernels' segment table (`table` in `shaders/adamw.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Segment {
    offset: u32,
    len: u32,
    first_wg: u32,
    lr_mult: f32,
    weight_decay: f32,
    pad: [u32; 3],
}

/// The four arenas the update reads and writes (one layout).
pub(super) struct Arenas<'a> {
    pub grads: &'a Arena,
    pub params: &'a Arena,
    pub m: &'a Arena,
    pub v: &'a Arena,
}

/// The update's launches: their segment tables (kept alive with the dispatches), the
/// dispatches, and whether they read texel views.
pub(super) struct Launches {
    pub tables: Vec<Tensor>,
    pub dispatches: Vec<Dispatch>,
    pub texel: bool,
}

/// A piece of an arena: (block, first byte, bytes).
type Piece = (usize, u64, u64);

/// The segment table of `piece`: every trainable entry's part inside it, with its first
/// workgroup (`workgroups(offset, len)` workgroups per segment), and the workgroups in all.
fn segment_table(
    arena: &Arena,
    states: &[ParamState],
    (block, start, bytes): Piece,
    workgroups: impl Fn(u32, u32) -> u32,
) -> (Vec<Segment>, u32) {
    let layout = arena.layout();
    let mut segs = Vec::new();
    let mut wgs = 0u32;
    for s in states {
        let e = &layout.entries()[s.entry];
        let (lo, hi) = (e.offset, e.offset + e.numel() as u64 * 4);
        let (lo, hi) = (lo.max(start), hi.min(start + bytes));
        if e.block != block || lo >= hi {
            continue;
        }
        let (offset, len) = (((lo - start) / 4) as u32, ((hi - lo) / 4) as u32);
        segs.push(Segment {
            offset,
            len,
            first_wg: wgs,
            lr_mult: s.lr_mult as f32,
            weight_decay: s.weight_decay as f32,
            pad: [0; 3],
        });
        wgs += workgroups(offset, len);
    }
    (segs, wgs)
}

/// The table's words: the segments, then each workgroup's segment.
fn table_words(segs: &[Segment], wgs: u32) -> Vec<u32> {
    let mut words: Vec<u32> = bytemuck::cast_slice(segs).to_vec();
    for (k, s) in segs.iter().enumerate() {
        let next = segs.get(k + 1).map_or(wgs, |n| n.first_wg);
        words.extend(std::iter::repeat_n(k as u32, (next - s.first_wg) as usize));
    }
    words
}

/// `window` split into pieces of at most `limit` bytes (a multiple of 16).
fn split(window: Piece, limit: u64) -> impl Iterator<Item = Piece> {
    let (block, start, bytes) = window;
    (0..bytes.div_ceil(limit)).map(move |k| {
        let at = k * limit;
        (block, start + at, (bytes - at).min(limit))
    })
}

/// Whether the texel form runs on `rt` for arenas of alignment `align`.
pub(super) fn texel_form(rt: &Runtime, align: u64) -> bool {
    texel::preferred(rt) && align.is_multiple_of(16)
}

/// The update launches over `arenas` for `states`, reading the per-step values from `hyper`
/// and the gradients' sum of squares from `sumsq`: the texel form where [`texel_form`] says so
/// and every view can be made, else the buffer form.
pub(super) fn launches(
    rt: &Runtime,
    arenas: &Arenas<'_>,
    states: &[ParamState],
    hyper: &Tensor,
    sumsq: &Tensor,
) -> Result<Launches> {
    if texel_form(rt, arenas.params.layout().align()) {
        if let Some(l) = texel_launches(rt, arenas, states, hyper, sumsq)? {
            return Ok(l);
        }
    }
    let kernel = rt.kernel(
        &crate::shader!("adamw" = "adamw", "adamw_common"),
        "main",
        &[],
    )?;
    let mut out = Launches {
        tables: Vec::new(),
        dispatches: Vec::new(),
        texel: false,
    };
    for piece in arenas.params.layout().windows() {
        let (segs, wgs) = segment_table(arenas.params, states, piece, |_, len| {
            len.div_ceil(ELEMENTS_PER_WORKGROUP)
        });
        if segs.is_empty() {
            continue;
        }
        let table = rt.upload_u32(&table_words(&segs, wgs), &[segs.len() * 8 + wgs as usize])?;
        out.dispatches.push(rt.dispatch(
            &kernel,
            &Params {
                segments: segs.len() as u32,
                workgroups: wgs,
            },
            &[
                hyper.binding(),
                sumsq.binding(),
                table.binding(),
                window(arenas.grads, piece),
                window(arenas.params, piece),
                window(arenas.m, piece),
                window(arenas.v, piece),
            ],
            grid_1d(wgs as u64, rt.caps().max_workgroups_per_dim),
        ));
        out.tables.push(table);
    }
    Ok(out)
}

fn window(a: &Arena, (block, start, bytes): Piece) -> Binding<'_> {
    a.blocks()[block].binding_range(start, bytes)
}

/// The texel form's launches, one per chunk of each window; `None` when a view cannot be made.
fn texel_launches(
    rt: &Runtime,
    arenas: &Arenas<'_>,
    states: &[ParamState],
    hyper: &Tensor,
    sumsq: &Tensor,
) -> Result<Option<Launches>> {
    let shader = crate::shader!("adamw_texel" = "adamw_texel", "adamw_common");
    let kernel = rt.kernel(&shader, "main", &[])?;
    let mut out = Launches {
        tables: Vec::new(),
        dispatches: Vec::new(),
        texel: true,
    };
    let pieces =
        (arenas.params.layout().windows().into_iter()).flat_map(|w| split(w, TEXEL_CHUNK_BYTES));
    for piece in pieces {
        let (segs, wgs) = segment_table(arenas.params, states, piece, |offset, len| {
            ((offset % 4) + len)
                .div_ceil(4)
                .div_ceil(TEXELS_PER_WORKGROUP)
        });
        if segs.is_empty() {
            continue;
        }
        let view = |slot, a| rt.texel_view(slot, window(a, piece)).ok();
        let views = [
            (4, view(TexelSlot::A, arenas.grads)),
            (5, view(TexelSlot::B, arenas.params)),
            (6, view(TexelSlot::C, arenas.m)),
            (7, view(TexelSlot::D, arenas.v)),
        ];
        let Some(views) = views
            .into_iter()
            .map(|(i, v)| v.map(|v| (i, v)))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let table = rt.upload_u32(&table_words(&segs, wgs), &[segs.len() * 8 + wgs as usize])?;
        let storage = [
            (1, hyper.binding()),
            (2, sumsq.binding()),
            (3, table.binding()),
            (8, window(arenas.params, piece)),
            (9, window(arenas.m, piece)),
            (10, window(arenas.v, piece)),
        ];
        out.dispatches.push(rt.dispatch_texels(
            &kernel,
            &Params {
                segments: segs.len() as u32,
                workgroups: wgs,
            },
            &storage,
            views,
            grid_1d(wgs as u64, rt.caps().max_workgroups_per_dim),
        ));
        out.tables.push(table);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_into_chunks_of_whole_texels() {
        let pieces: Vec<_> = split((2, 512, 100 << 20), TEXEL_CHUNK_BYTES).collect();
        assert_eq!(
            pieces,
            [
                (2, 512, 32 << 20),
                (2, 512 + (32 << 20), 32 << 20),
                (2, 512 + (64 << 20), 32 << 20),
                (2, 512 + (96 << 20), 4 << 20),
            ]
        );
        assert!(pieces.iter().all(|p| p.1 % 16 == 0 && p.2 % 16 == 0));
    }
}
