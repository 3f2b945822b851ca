//! Index-space helpers shared by the elementwise, reduce, softmax and copy launchers:
//! broadcasting, strides, dimension collapsing, parameter packing, and splitting a launch into
//! chunks whose storage bindings each stay under the adapter's binding limit.
//!
//! Every kernel of these families runs over an *index space* (a row-major shape of at most
//! [`MAX_RANK`] dims). Each operand is read or written at `Σ_d map_d(c_d)` for the index `c`,
//! where `map_d` is `c·stride` or, for padded copies, `clamp(c·step + start, 0, lim−1)·stride`.
//! Both are monotone in `c`, which lets [`Access::window`] find the exact element range a
//! chunk of the index space touches, so any chunk binds only that range (at an aligned offset;
//! the kernel subtracts the window start from the indices it computes).

use crate::error::{Error, Result};
use crate::runtime::{Binding, Dispatch, Kernel, Runtime, Tensor};
use std::sync::Arc;

/// Dims an index space may have after collapsing (packed as two `vec4<u32>` in params).
pub const MAX_RANK: usize = 8;
/// Threads per workgroup of the one-thread-per-item kernels.
pub const WG: u32 = 256;

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d];
    }
    s
}

/// The NumPy broadcast of `shapes` (aligned at the last dim).
pub fn broadcast_shape(op: &'static str, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (d, &n) in s.iter().enumerate() {
            let o = &mut out[off + d];
            if *o == 1 {
                *o = n;
            } else if n != 1 && n != *o {
                return Err(crate::shape_err!(
                    op,
                    "shapes {shapes:?} do not broadcast: dim {d} of {s:?} is {n}, others have {}",
                    *o
                ));
            }
        }
    }
    Ok(out)
}

/// Strides that read a contiguous tensor of `shape` at each index of `out` (its broadcast):
/// 0 along broadcast dims and along the missing leading dims.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    debug_assert!(shape.len() <= out.len());
    let own = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|d| {
            if d < off || shape[d - off] == 1 {
                0
            } else {
                own[d - off]
            }
        })
        .collect()
}

/// Drops size-1 dims of an index space and merges neighbouring dims that every operand walks
/// as one (stride of the outer = stride of the inner × its size). `fixed[d]` marks dims that
/// must stay as they are (padded or stepped dims of a copy). Returns the kept dims' indices
/// into the original shape, grouped: each group becomes one dim.
pub fn collapse_groups(shape: &[usize], strides: &[&[usize]], fixed: &[bool]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for d in 0..shape.len() {
        if shape[d] == 1 && !fixed.get(d).copied().unwrap_or(false) {
            continue;
        }
        if let Some(g) = groups.last_mut() {
            let prev = *g.last().unwrap();
            let mergeable = !fixed.get(d).copied().unwrap_or(false)
                && !fixed.get(prev).copied().unwrap_or(false)
                && strides.iter().all(|s| s[prev] == s[d] * shape[d]);
            if mergeable {
                g.push(d);
                continue;
            }
        }
        groups.push(vec![d]);
    }
    groups
}

/// Applies [`collapse_groups`] to a shape and its operand strides.
pub fn collapse(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let groups = collapse_groups(shape, strides, &[]);
    let new_shape = groups
        .iter()
        .map(|g| g.iter().map(|&d| shape[d]).product())
        .collect();
    let new_strides = strides
        .iter()
        .map(|s| groups.iter().map(|g| s[*g.last().unwrap()]).collect())
        .collect();
    (new_shape, new_strides)
}

/// Packs up to [`MAX_RANK`] values into the `array<vec4<u32>, 2>` layout of the params.
pub fn pack(op: &'static str, v: &[usize]) -> Result<[u32; MAX_RANK]> {
    if v.len() > MAX_RANK {
        return Err(Error::Unsupported {
            op,
            what: format!(
                "{} dims after collapsing (at most {MAX_RANK}): {v:?}",
                v.len()
            ),
        });
    }
    let mut out = [0u32; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = u32::try_from(x).map_err(|_| Error::Unsupported {
            op,
            what: format!("index value {x} does not fit in u32"),
        })?;
    }
    Ok(out)
}

/// Like [`pack`] for signed values (copy start offsets).
pub fn pack_i32(op: &'static str, v: &[i64]) -> Result<[i32; MAX_RANK]> {
    let mut out = [0i32; MAX_RANK];
    if v.len() > MAX_RANK {
        return Err(Error::Unsupported {
            op,
            what: format!("{} dims (at most {MAX_RANK})", v.len()),
        });
    }
    for (o, &x) in out.iter_mut().zip(v) {
        *o = i32::try_from(x).map_err(|_| Error::Unsupported {
            op,
            what: format!("offset {x} does not fit in i32"),
        })?;
    }
    Ok(out)
}

/// Per-dim clamp-affine coordinate map of a padded/stepped copy: the operand coordinate of
/// index `c` is `c·step + start`, valid in `[0, lim)`; for window computations it is clamped.
#[derive(Clone, Debug)]
pub struct Affine {
    pub start: Vec<i64>,
    pub step: Vec<usize>,
    pub lim: Vec<usize>,
}

/// How an operand is addressed from an index space.
#[derive(Clone, Debug)]
pub struct Access {
    /// Elements the tensor holds.
    pub len: usize,
    /// Element offset of index 0.
    pub base: usize,
    pub strides: Vec<usize>,
    pub affine: Option<Affine>,
    /// Elements the kernel reaches past the mapped one (the extent of a reduced axis).
    pub extra: usize,
}

/// The element range `[offset, offset + len)` of one operand bound for one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub offset: usize,
    pub len: usize,
}

/// A part of an index space launched as one dispatch, with each operand's window.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub start: usize,
    pub n: usize,
    pub windows: Vec<Window>,
}

impl Access {
    /// A contiguous operand whose layout is the index space itself.
    pub fn contiguous(shape: &[usize]) -> Self {
        Self::strided(shape.iter().product(), strides(shape))
    }

    pub fn strided(len: usize, strides: Vec<usize>) -> Self {
        Self {
            len,
            base: 0,
            strides,
            affine: None,
            extra: 0,
        }
    }

    fn at(&self, d: usize, c: usize) -> usize {
        match &self.affine {
            None => c * self.strides[d],
            Some(a) => {
                let v = c as i64 * a.step[d] as i64 + a.start[d];
                v.clamp(0, a.lim[d] as i64 - 1).max(0) as usize * self.strides[d]
            }
        }
    }

    /// Smallest and largest mapped offset over the linear indices `[s, e)` of `shape` (s < e).
    pub fn span(&self, shape: &[usize], s: usize, e: usize) -> (usize, usize) {
        let mut lo = usize::MAX;
        let mut hi = 0;
        self.span_rec(shape, 0, s, e, self.base, &mut lo, &mut hi);
        (lo, hi + self.extra)
    }

    #[allow(clippy::too_many_arguments)]
    fn span_rec(
        &self,
        shape: &[usize],
        d: usize,
        s: usize,
        e: usize,
        acc: usize,
        lo: &mut usize,
        hi: &mut usize,
    ) {
        if d == shape.len() {
            *lo = (*lo).min(acc);
            *hi = (*hi).max(acc);
            return;
        }
        let block: usize = shape[d + 1..].iter().product();
        if s == 0 && e == block * shape[d] {
            // A whole sub-space: each monotone map is smallest at 0 and largest at n−1.
            *lo = (*lo).min(acc + (d..shape.len()).map(|k| self.at(k, 0)).sum::<usize>());
            *hi = (*hi).max(
                acc + (d..shape.len())
                    .map(|k| self.at(k, shape[k] - 1))
                    .sum::<usize>(),
            );
            return;
        }
        let (i0, i1) = (s / block, (e - 1) / block);
        if i0 == i1 {
            let base = i0 * block;
            self.span_rec(
                shape,
                d + 1,
                s - base,
                e - base,
                acc + self.at(d, i0),
                lo,
                hi,
            );
            return;
        }
        self.span_rec(
            shape,
            d + 1,
            s - i0 * block,
            block,
            acc + self.at(d, i0),
            lo,
            hi,
        );
        if i1 > i0 + 1 {
            // Whole blocks i0+1 ..= i1−1 in between.
            let rest_lo: usize = (d + 1..shape.len()).map(|k| self.at(k, 0)).sum();
            let rest_hi: usize = (d + 1..shape.len()).map(|k| self.at(k, shape[k] - 1)).sum();
            *lo = (*lo).min(acc + self.at(d, i0 + 1) + rest_lo);
            *hi = (*hi).max(acc + self.at(d, i1 - 1) + rest_hi);
        }
        self.span_rec(
            shape,
            d + 1,
            0,
            e - i1 * block,
            acc + self.at(d, i1),
            lo,
            hi,
        );
    }
}

/// Splits the index space `shape` into chunks whose operand windows each fit in one storage
/// binding. Operands that fit whole are bound whole; the others get the exact range a chunk
/// touches, started at an aligned offset. Empty index spaces give no chunks.
pub fn plan(
    rt: &Runtime,
    op: &'static str,
    shape: &[usize],
    ops: &[&Access],
) -> Result<Vec<Chunk>> {
    let total: usize = shape.iter().product();
    if total == 0 {
        return Ok(Vec::new());
    }
    let caps = rt.caps();
    let limit = super::binding_limit(rt);
    let max = (limit / 4) as usize;
    let align = (caps.storage_offset_alignment as usize / 4).max(1);
    let whole = |a: &Access| Window {
        offset: 0,
        len: a.len,
    };
    if ops.iter().all(|a| a.len <= max) {
        return Ok(vec![Chunk {
            start: 0,
            n: total,
            windows: ops.iter().map(|a| whole(a)).collect(),
        }]);
    }
    // Chunk starts stay multiples of the workgroup size and of the offset alignment, so a
    // contiguous operand's window starts exactly at its chunk.
    let unit = (WG as usize).max(align);
    let mut len = ((max - align) / unit * unit).max(unit);
    let mut chunks = Vec::new();
    let mut s = 0;
    while s < total {
        let e = (s + len).min(total);
        let mut windows = Vec::with_capacity(ops.len());
        let mut fits = true;
        for a in ops {
            if a.len <= max {
                windows.push(whole(a));
                continue;
            }
            let (lo, hi) = a.span(shape, s, e);
            let offset = super::aligned_start(lo as u64, align as u64) as usize;
            let w = Window {
                offset,
                len: (hi + 1).min(a.len) - offset,
            };
            if w.len > max {
                fits = false;
                break;
            }
            windows.push(w);
        }
        if !fits {
            if len <= unit {
                let big = ops.iter().find(|a| a.len > max).unwrap();
                return Err(Error::TooLarge {
                    op,
                    what: format!(
                        "one chunk of {len} indices of index space {shape:?} reaching a span of an operand of {} elements",
                        big.len
                    ),
                    bytes: (big.len * 4) as u64,
                    limit,
                    limit_name: "max_storage_buffer_binding_size",
                });
            }
            len = (len / 2 / unit * unit).max(unit);
            continue;
        }
        chunks.push(Chunk {
            start: s,
            n: e - s,
            windows,
        });
        s = e;
    }
    Ok(chunks)
}

/// The binding of a tensor's window.
/// How a launch binds a chunk's window of a tensor ([`bind`], [`bind_vec4`]).
pub type Binder = for<'t> fn(&'t Tensor, Window) -> Binding<'t>;

/// Whether every chunk starts and ends on a whole texel (4 elements) and so do its windows: what
/// kernels taking 4 elements a thread through vec4 bindings need.
pub fn texel_aligned(chunks: &[Chunk]) -> bool {
    let four = |v: usize| v.is_multiple_of(4);
    chunks
        .iter()
        .all(|c| four(c.start) && four(c.n) && c.windows.iter().all(|w| four(w.offset)))
}

pub fn bind(t: &Tensor, w: Window) -> Binding<'_> {
    t.binding_range(w.offset as u64 * 4, w.len as u64 * 4)
}

/// The binding of a tensor's window rounded up to whole 16-byte words, for kernels that view
/// the data as `array<vec4<f32>>` (the pooled buffer's capacity is a multiple of 64 bytes, so
/// the rounded range stays inside it; the kernels never write past their element count).
/// Windows never exceed the binding limit, a multiple of 16, so rounding cannot either.
pub fn bind_vec4(t: &Tensor, w: Window) -> Binding<'_> {
    let offset = w.offset as u64 * 4;
    let size = (w.len as u64 * 4).div_ceil(16).max(1) * 16;
    debug_assert!(
        offset + size <= t.capacity(),
        "vec4 binding inside the buffer"
    );
    t.binding_range(offset, size)
}

/// Builds one dispatch per chunk: `params(chunk)` gives the chunk's parameters, operands are
/// bound in order, and `per_wg` items run in one workgroup (WG for one thread per item, 1 for
/// one workgroup per item).
pub fn launch<P: bytemuck::Pod>(
    rt: &Runtime,
    kernel: &Arc<Kernel>,
    chunks: &[Chunk],
    tensors: &[&Tensor],
    per_wg: u32,
    params: impl Fn(&Chunk) -> P,
) -> Vec<Dispatch> {
    launch_with(rt, kernel, chunks, tensors, per_wg, bind, params)
}

/// [`launch`] with every binding made by `binder` (e.g. [`bind_vec4`]).
pub fn launch_with<P: bytemuck::Pod>(
    rt: &Runtime,
    kernel: &Arc<Kernel>,
    chunks: &[Chunk],
    tensors: &[&Tensor],
    per_wg: u32,
    binder: for<'t> fn(&'t Tensor, Window) -> Binding<'t>,
    params: impl Fn(&Chunk) -> P,
) -> Vec<Dispatch> {
    chunks
        .iter()
        .map(|c| {
            let b: Vec<Binding> = tensors
                .iter()
                .zip(&c.windows)
                .map(|(t, w)| binder(t, *w))
                .collect();
            rt.dispatch(kernel, &params(c), &b, rt.grid(c.n as u64, per_wg))
        })
        .collect()
}

/// Like [`launch`] for kernels where each thread handles up to 4 consecutive elements of one
/// row of the innermost dim (extent `inner` ≥ 1): a chunk needs `ceil(inner/4)` threads for
/// every row it touches.
pub fn launch_rows<P: bytemuck::Pod>(
    rt: &Runtime,
    kernel: &Arc<Kernel>,
    chunks: &[Chunk],
    tensors: &[&Tensor],
    inner: usize,
    binder: for<'t> fn(&'t Tensor, Window) -> Binding<'t>,
    params: impl Fn(&Chunk) -> P,
) -> Vec<Dispatch> {
    let tpr = inner.div_ceil(4) as u64;
    chunks
        .iter()
        .map(|c| {
            let b: Vec<Binding> = tensors
                .iter()
                .zip(&c.windows)
                .map(|(t, w)| binder(t, *w))
                .collect();
            let rows = ((c.start + c.n - 1) / inner - c.start / inner + 1) as u64;
            rt.dispatch(kernel, &params(c), &b, rt.grid(rows * tpr, WG))
        })
        .collect()
}

/// Checks that `t` has the dtype and shape an op expects for one of its tensors.
pub fn expect(
    op: &'static str,
    name: &str,
    t: &Tensor,
    dtype: crate::DType,
    shape: &[usize],
) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::DType {
            op,
            expected: dtype,
            got: t.dtype(),
        });
    }
    if t.shape() != shape {
        return Err(crate::shape_err!(
            op,
            "{name} has shape {:?}, expected {shape:?}",
            t.shape()
        ));
    }
    Ok(())
}

/// Errors when an output shares its buffer with an input: one dispatch cannot bind a buffer
/// both read-only and writable (in-place updates need a separate output).
pub fn no_alias(op: &'static str, inputs: &[&Tensor], output: &Tensor) -> Result<()> {
    if inputs.iter().any(|t| t.buffer() == output.buffer()) {
        return Err(Error::Unsupported {
            op,
            what: format!(
                "an output ({:?}) that shares storage with an input (in place)",
                output.shape()
            ),
        });
    }
    Ok(())
}

/// Checks only the dtype.
pub fn expect_dtype(op: &'static str, t: &Tensor, dtype: crate::DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::DType {
            op,
            expected: dtype,
            got: t.dtype(),
        });
    }
    Ok(())
}

/// Converts a window offset (an element index below 2^31 on any adapter) to the kernel's u32.
pub fn u(x: usize) -> u32 {
    u32::try_from(x).expect("element indices fit u32: buffers are at most 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(a: &Access, shape: &[usize], s: usize, e: usize) -> (usize, usize) {
        let st = strides(shape);
        let mut lo = usize::MAX;
        let mut hi = 0;
        for i in s..e {
            let mut off = a.base;
            for d in 0..shape.len() {
                off += a.at(d, (i / st[d]) % shape[d]);
            }
            lo = lo.min(off);
            hi = hi.max(off);
        }
        (lo, hi + a.extra)
    }

    #[test]
    fn span_matches_brute_force() {
        let mut rng = crate::testing::rng(crate::testing::seed());
        use rand::Rng;
        for _ in 0..200 {
            let rank = rng.random_range(0..5);
            let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..5)).collect();
            let mut a = Access::strided(0, (0..rank).map(|_| rng.random_range(0..20)).collect());
            a.base = rng.random_range(0..3);
            if rng.random_bool(0.5) {
                a.affine = Some(Affine {
                    start: (0..rank).map(|_| rng.random_range(-3..3)).collect(),
                    step: (0..rank).map(|_| rng.random_range(1..3)).collect(),
                    lim: (0..rank).map(|_| rng.random_range(1..6)).collect(),
                });
            }
            let total: usize = shape.iter().product();
            let s = rng.random_range(0..total);
            let e = rng.random_range(s + 1..=total);
            assert_eq!(
                a.span(&shape, s, e),
                brute(&a, &shape, s, e),
                "{shape:?} {a:?} {s}..{e}"
            );
        }
    }

    #[test]
    fn broadcast_and_collapse() {
        assert_eq!(
            broadcast_shape("t", &[&[3, 1, 5], &[1, 4, 1]]).unwrap(),
            vec![3, 4, 5]
        );
        assert_eq!(broadcast_shape("t", &[&[], &[2]]).unwrap(), vec![2]);
        assert!(broadcast_shape("t", &[&[3], &[4]]).is_err());
        assert_eq!(broadcast_strides(&[4, 1], &[2, 4, 3]), vec![0, 1, 0]);
        let (s, st) = collapse(&[2, 3, 4], &[&[12, 4, 1], &[0, 0, 1]]);
        assert_eq!(s, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
    }
}
