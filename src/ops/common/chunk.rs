//! Splitting launches over the leading ("item") dimension so that no storage binding exceeds the
//! adapter's limit (128 MiB on lavapipe), and helpers shared by the sampling families.
//!
//! A chunk binds each chunked tensor from an offset rounded DOWN to the storage-offset alignment;
//! the kernel adds the remaining element skip (`ChunkView::skip`) to its indices. So item sizes
//! need not be multiples of the alignment.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::{Binding, Dispatch, Kernel, Runtime, Tensor};

/// Where one tensor's part of a chunk lies: binding start and size in bytes, and how many
/// elements the kernel skips from the binding start to reach the chunk's first item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkView {
    pub offset: u64,
    pub size: u64,
    pub skip: u32,
}

/// `count` consecutive items of the launch (chunks come in order) and one view per tensor.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub count: u64,
    pub views: Vec<ChunkView>,
}

impl Chunk {
    /// The binding of `t` (the `k`-th chunked tensor) for this chunk.
    pub fn bind<'a>(&self, k: usize, t: &'a Tensor) -> Binding<'a> {
        let v = self.views[k];
        t.binding_range(v.offset, v.size)
    }
}

pub(crate) use super::binding_limit;

/// Splits `items` items into chunks where every tensor's slice fits in `max_binding` bytes.
/// `per_item[k]` is tensor k's element count (4-byte elements) per item; `names[k]` names it in
/// errors. An item too large to bind even alone is a `TooLarge` error.
pub(crate) fn plan(
    op: &'static str,
    items: u64,
    per_item: &[u64],
    names: &[&str],
    max_binding: u64,
    align: u64,
) -> Result<Vec<Chunk>> {
    plan_capped(op, items, per_item, names, max_binding, align, u64::MAX)
}

/// [`plan`] with at most `max_items` items per chunk (e.g. when items map to a grid dimension).
pub(crate) fn plan_capped(
    op: &'static str,
    items: u64,
    per_item: &[u64],
    names: &[&str],
    max_binding: u64,
    align: u64,
    max_items: u64,
) -> Result<Vec<Chunk>> {
    let align = align.max(4);
    // Worst-case skip is align - 4 bytes, so a chunk of k items needs k*item + align - 4 bytes.
    let usable = max_binding.saturating_sub(align - 4);
    let mut per_chunk = items.clamp(1, max_items.max(1));
    for (k, &n) in per_item.iter().enumerate() {
        let bytes = n * 4;
        if bytes == 0 {
            continue;
        }
        let fit = usable / bytes;
        if fit == 0 {
            return Err(Error::TooLarge {
                op,
                what: format!(
                    "one item of `{}` ({n} f32 values) in a single binding",
                    names.get(k).copied().unwrap_or("?")
                ),
                bytes: bytes + align - 4,
                limit: max_binding,
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        per_chunk = per_chunk.min(fit);
    }
    let mut out = Vec::new();
    let mut first = 0;
    while first < items {
        let count = per_chunk.min(items - first);
        let views = per_item
            .iter()
            .map(|&n| {
                let start = first * n * 4;
                let offset = super::aligned_start(start, align);
                let skip = start - offset;
                ChunkView {
                    offset,
                    size: (skip + count * n * 4).max(4),
                    skip: (skip / 4) as u32,
                }
            })
            .collect();
        out.push(Chunk { count, views });
        first += count;
    }
    Ok(out)
}

/// Dispatches that overwrite every element of an f32 tensor with zero (before a scatter-add),
/// chunked like [`Runtime::fill`] so tensors past the binding limit work.
pub(crate) fn zero_dispatches(rt: &Runtime, t: &Tensor) -> Result<Vec<Dispatch>> {
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct FillParams {
        n: u32,
        value: u32,
    }
    let k: Arc<Kernel> = rt.kernel(&crate::shader!("fill"), "main", &[])?;
    let words = t.numel() as u64;
    let max_words = (binding_limit(rt) / 4) & !63;
    let mut out = Vec::new();
    let mut start = 0;
    while start < words {
        let n = (words - start).min(max_words);
        let p = FillParams {
            n: n as u32,
            value: 0,
        };
        out.push(rt.dispatch(
            &k,
            &p,
            &[t.binding_range(start * 4, n * 4)],
            rt.grid(n, 256),
        ));
        start += n;
    }
    Ok(out)
}

/// How backward kernels add into a gradient that many threads hit (scatter-add).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scatter {
    /// Native f32 atomics where the adapter has them, else compare-exchange.
    #[default]
    Auto,
    /// `atomicAdd` on `atomic<f32>` (needs `Capabilities::f32_atomics`).
    NativeF32,
    /// A compare-exchange loop on `atomic<u32>` holding the f32 bits: works on every adapter.
    CompareExchange,
}

impl Scatter {
    /// Resolves `Auto` for `rt`; asking for native atomics where there are none is an error.
    pub(crate) fn resolve(self, rt: &Runtime, op: &'static str) -> Result<Scatter> {
        match self {
            Scatter::Auto if rt.caps().f32_atomics => Ok(Scatter::NativeF32),
            Scatter::Auto => Ok(Scatter::CompareExchange),
            Scatter::NativeF32 if !rt.caps().f32_atomics => Err(Error::Unsupported {
                op,
                what: "native f32 atomics (SHADER_FLOAT32_ATOMIC) on this adapter".into(),
            }),
            s => Ok(s),
        }
    }
}

/// Marker lines around the scatter block in a backward shader; the native variant replaces the
/// block (CAS on `atomic<u32>`) with `NATIVE_SCATTER` bound to the same binding.
const BEGIN: &str = "// SCATTER_BEGIN";
const END: &str = "// SCATTER_END";

/// The shader source with its scatter block switched to native f32 atomics.
pub(crate) fn native_scatter_source(source: &str, binding: u32, buffer: &str) -> String {
    let (Some(b), Some(e)) = (source.find(BEGIN), source.find(END)) else {
        unreachable!("backward shader lacks the {BEGIN}/{END} markers");
    };
    let native = format!(
        "@group(0) @binding({binding}) var<storage, read_write> {buffer}: array<atomic<f32>>;\n\
         fn scatter_add(i: u32, v: f32) {{ atomicAdd(&{buffer}[i], v); }}\n"
    );
    format!("{}{}{}", &source[..b], native, &source[e + END.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_items_and_fit() {
        // 7 items of 10 and 3 elements, 32-byte alignment, 100-byte limit.
        let chunks = plan("t", 7, &[10, 3], &["a", "b"], 100, 32).unwrap();
        let mut next = 0;
        for c in &chunks {
            for (v, n) in c.views.iter().zip([10u64, 3]) {
                assert_eq!(v.offset % 32, 0);
                assert!(v.size <= 100);
                assert_eq!(v.offset + v.skip as u64 * 4, next * n * 4);
                assert!(v.size >= v.skip as u64 * 4 + c.count * n * 4);
            }
            next += c.count;
        }
        assert_eq!(next, 7);
        assert!(chunks.len() > 1);
        // GPUs align storage offsets to 256 bytes: skips stay below 64 elements and chunks fit.
        let mut next = 0;
        for c in plan("t", 50, &[37, 4], &["a", "b"], 4096, 256).unwrap() {
            for (v, n) in c.views.iter().zip([37u64, 4]) {
                assert_eq!(v.offset % 256, 0);
                assert!(v.skip < 64 && v.size <= 4096);
                assert_eq!(v.offset + v.skip as u64 * 4, next * n * 4);
            }
            next += c.count;
        }
        assert_eq!(next, 50);
        let capped = plan_capped("t", 7, &[1], &["a"], 1 << 20, 32, 3).unwrap();
        assert_eq!(
            capped.iter().map(|c| c.count).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        let err = plan("op_x", 2, &[100], &["big"], 100, 32).unwrap_err();
        assert!(err.to_string().contains("op_x") && err.to_string().contains("big"));
    }
}
