//! Arenas: many tensors packed at aligned offsets of a few large buffers ("blocks"), so one
//! dispatch can reach all of them (the optimizer's update and gradient norm) and one copy can
//! move all of them (a data-parallel all-reduce of the gradients).
//!
//! Every tensor starts at a multiple of the storage-offset alignment (so kernels bind a tensor
//! with no shader change) and owns the padding up to the next one. A block holds at most
//! `block_limit` bytes, which the runtime sets to the largest storage binding, so a kernel can
//! bind a whole block at once; a tensor larger than that gets a block of its own and kernels
//! walk it in binding-sized windows. Blocks start zeroed and kernels never write padding, so
//! padding stays zero (sums over whole blocks may include it).

use std::sync::Arc;

use super::{DType, Runtime, Tensor};
use crate::error::{Error, Result};

/// Where one tensor of an arena lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaEntry {
    pub block: usize,
    /// Byte offset in the block (a multiple of the layout's alignment).
    pub offset: u64,
    /// Bytes the entry owns: its data rounded up to the alignment.
    pub capacity: u64,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl ArenaEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The placement of a list of tensors in blocks; several arenas may share one layout (the
/// parameters, their gradients and the optimizer's moments sit at the same offsets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaLayout {
    align: u64,
    block_limit: u64,
    blocks: Vec<u64>,
    entries: Vec<ArenaEntry>,
}

impl ArenaLayout {
    /// Packs `tensors` in order. `align` (a power of two, at least 4) is the offset alignment;
    /// `block_limit` (a multiple of `align`) the most bytes of one block, except for a tensor
    /// larger than it, which gets a block of exactly its own size.
    pub fn new(tensors: &[(Vec<usize>, DType)], align: u64, block_limit: u64) -> Result<Self> {
        let bad = |what: String| Error::Config {
            var: "arena layout",
            value: format!("align {align}, block limit {block_limit}"),
            reason: what,
        };
        if align < 4 || !align.is_power_of_two() {
            return Err(bad(
                "the alignment must be a power of two of at least 4".into()
            ));
        }
        if block_limit < align || !block_limit.is_multiple_of(align) {
            return Err(bad(
                "the block limit must be a multiple of the alignment".into()
            ));
        }
        let mut layout = Self {
            align,
            block_limit,
            blocks: Vec::new(),
            entries: Vec::with_capacity(tensors.len()),
        };
        for (shape, dtype) in tensors {
            if dtype.size() != 4 {
                return Err(bad(format!(
                    "a {dtype:?} tensor of shape {shape:?}: arenas hold 4-byte elements"
                )));
            }
            let bytes = (shape.iter().product::<usize>() * 4) as u64;
            let capacity = bytes.max(4).div_ceil(align) * align;
            let fits = layout
                .blocks
                .last()
                .is_some_and(|&used| used + capacity <= block_limit);
            if !fits {
                layout.blocks.push(0);
            }
            let block = layout.blocks.len() - 1;
            layout.entries.push(ArenaEntry {
                block,
                offset: layout.blocks[block],
                capacity,
                shape: shape.clone(),
                dtype: *dtype,
            });
            layout.blocks[block] += capacity;
        }
        Ok(layout)
    }

    pub fn align(&self) -> u64 {
        self.align
    }
    /// The most bytes one kernel binds of a block.
    pub fn block_limit(&self) -> u64 {
        self.block_limit
    }
    /// Bytes of each block.
    pub fn blocks(&self) -> &[u64] {
        &self.blocks
    }
    pub fn entries(&self) -> &[ArenaEntry] {
        &self.entries
    }
    /// Total bytes of all blocks.
    pub fn bytes(&self) -> u64 {
        self.blocks.iter().sum()
    }
    /// Binding-sized windows `(block, byte start, bytes)` covering every block in order.
    pub fn windows(&self) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        for (b, &bytes) in self.blocks.iter().enumerate() {
            let mut start = 0;
            while start < bytes {
                let len = (bytes - start).min(self.block_limit);
                out.push((b, start, len));
                start += len;
            }
        }
        out
    }
}

/// The blocks of an arena on the device and a view per entry.
pub struct Arena {
    layout: Arc<ArenaLayout>,
    blocks: Vec<Tensor>,
    views: Vec<Tensor>,
}

impl Arena {
    pub fn layout(&self) -> &Arc<ArenaLayout> {
        &self.layout
    }
    /// One f32 tensor per block, covering all of it (padding included).
    pub fn blocks(&self) -> &[Tensor] {
        &self.blocks
    }
    /// The tensor of entry `i`.
    pub fn tensor(&self, i: usize) -> &Tensor {
        &self.views[i]
    }
    pub fn len(&self) -> usize {
        self.views.len()
    }
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
    /// Device bytes held.
    pub fn bytes(&self) -> u64 {
        self.layout.bytes()
    }
}

impl Runtime {
    /// The layout of `tensors` for this adapter: offsets aligned to
    /// `min_storage_buffer_offset_alignment` (at least 256 bytes, as the kernels' chunking
    /// assumes) and blocks no larger than one storage binding.
    pub fn arena_layout(&self, tensors: &[(Vec<usize>, DType)]) -> Result<ArenaLayout> {
        let caps = self.caps();
        let align = (caps.storage_offset_alignment as u64).max(256);
        let limit = caps.max_storage_binding.min(caps.max_buffer) / align * align;
        ArenaLayout::new(tensors, align, limit)
    }

    /// Zero-filled blocks for `layout`.
    pub fn arena(&self, layout: Arc<ArenaLayout>) -> Result<Arena> {
        let mut blocks = Vec::with_capacity(layout.blocks.len());
        for &bytes in &layout.blocks {
            blocks.push(self.full(&[(bytes / 4) as usize], 0.0)?);
        }
        let views = layout
            .entries
            .iter()
            .map(|e| {
                blocks[e.block]
                    .sub_tensor(e.offset, e.capacity, &e.shape, e.dtype, layout.align)
                    .expect("layout entries lie inside their blocks")
            })
            .collect();
        Ok(Arena {
            layout,
            blocks,
            views,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(sizes: &[usize]) -> Vec<(Vec<usize>, DType)> {
        sizes.iter().map(|&n| (vec![n], DType::F32)).collect()
    }

    /// Entries are aligned, disjoint, inside their blocks and in order; blocks respect the limit
    /// except for one oversized entry each; windows cover every block exactly.
    #[test]
    fn layout_packs_aligned_disjoint_entries() {
        let sizes = [1usize, 64, 65, 0, 1000, 300, 2000, 3, 64];
        let l = ArenaLayout::new(&f32s(&sizes), 256, 1024).unwrap();
        let mut prev: Option<&ArenaEntry> = None;
        for (e, &n) in l.entries().iter().zip(&sizes) {
            assert_eq!(e.offset % 256, 0);
            assert!(e.capacity >= (n * 4).max(4) as u64 && e.capacity % 256 == 0);
            assert!(e.offset + e.capacity <= l.blocks()[e.block]);
            if e.capacity > 1024 {
                assert_eq!((e.offset, l.blocks()[e.block]), (0, e.capacity));
            }
            if let Some(p) = prev {
                assert!(e.block > p.block || e.offset >= p.offset + p.capacity);
            }
            prev = Some(e);
        }
        for (b, &bytes) in l.blocks().iter().enumerate() {
            let entries = l.entries().iter().filter(|e| e.block == b).count();
            assert!(entries >= 1 && (bytes <= 1024 || entries == 1), "block {b}");
        }
        assert_eq!(l.blocks().len(), 6, "{l:?}");
        for b in 0..l.blocks().len() {
            let covered: u64 = l.windows().iter().filter(|w| w.0 == b).map(|w| w.2).sum();
            assert_eq!(covered, l.blocks()[b]);
        }
        assert!(l.windows().iter().all(|w| w.2 <= 1024 && w.1 % 256 == 0));
    }

    /// Views of an arena upload, download, fill and bind (as a kernel's input and output)
    /// only their own range: the neighbours and the padding keep their NaN poison.
    #[test]
    fn views_write_read_and_bind_only_their_range() {
        use crate::ops::copy::{permute, strided_copy_into, StridedCopy};
        let rt = crate::testing::runtime();
        let sizes = [3usize, 70, 1, 129];
        let layout = Arc::new(rt.arena_layout(&f32s(&sizes)).unwrap());
        let (a, b) = (rt.arena(layout.clone()).unwrap(), rt.arena(layout).unwrap());
        for block in a.blocks().iter().chain(b.blocks()) {
            rt.fill(block, f32::NAN).unwrap();
        }
        let data: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|k| (i * 1000 + k) as f32).collect())
            .collect();
        for (i, d) in data.iter().enumerate() {
            assert_eq!(a.tensor(i).offset() % 256, 0);
            rt.write(a.tensor(i), d).unwrap();
        }
        assert_eq!(rt.download(a.tensor(1)).unwrap(), data[1]);
        // A kernel reading a view: a 2-D permute of entry 1 (seen as 7 x 10).
        let t = permute(rt, &a.tensor(1).reshape(&[7, 10]).unwrap(), &[1, 0]).unwrap();
        let want: Vec<f32> = (0..70).map(|k| data[1][(k % 7) * 10 + k / 7]).collect();
        assert_eq!(rt.download(&t).unwrap(), want);
        // A kernel writing a view of the other arena, and a fill of one view.
        let copy = StridedCopy::gather_view(&[129], vec![1], 0);
        rt.run(&strided_copy_into(rt, a.tensor(3), b.tensor(3), &copy).unwrap());
        rt.fill(b.tensor(1), 2.5).unwrap();
        assert_eq!(rt.download(b.tensor(3)).unwrap(), data[3]);
        assert_eq!(rt.download(b.tensor(1)).unwrap(), vec![2.5; 70]);
        for i in [0, 2] {
            assert!(rt.download(b.tensor(i)).unwrap().iter().all(|x| x.is_nan()));
        }
        let block = rt.download(&b.blocks()[0]).unwrap();
        let e = &b.layout().entries()[1];
        let past = (e.offset / 4) as usize + 70;
        assert!(block[past..(e.offset + e.capacity) as usize / 4]
            .iter()
            .all(|x| x.is_nan()));
        // Wrong data and dtype are refused by name.
        assert!(rt
            .write(a.tensor(0), &[1.0])
            .unwrap_err()
            .to_string()
            .contains("write"));
        // Sub-tensors must be aligned and inside.
        let whole = &a.blocks()[0];
        assert!(whole.sub_tensor(4, 256, &[1], DType::F32, 256).is_none());
        assert!(whole
            .sub_tensor(0, 1 << 40, &[1], DType::F32, 256)
            .is_none());
        assert!(whole.sub_tensor(256, 256, &[65], DType::F32, 256).is_none());
        assert!(a.tensor(0).overlaps(whole) && !a.tensor(0).overlaps(a.tensor(1)));
        assert!(!a.tensor(1).overlaps(b.tensor(1)));
    }

    #[test]
    fn bad_layouts_are_named() {
        for (align, limit) in [(3u64, 1024u64), (256, 1000), (256, 128)] {
            let err = ArenaLayout::new(&f32s(&[4]), align, limit).unwrap_err();
            assert!(err.to_string().contains("arena layout"), "{err}");
        }
        let err = ArenaLayout::new(&[(vec![2], DType::F16)], 256, 1024).unwrap_err();
        assert!(err.to_string().contains("F16"), "{err}");
    }
}
