//! The finiteness check of the mask logits where they lie (`shaders/count_nonfinite.wgsl`): the
//! count of NaN/±inf values and the first one's index, so post-processing on the device can
//! still refuse non-finite network outputs without reading the logits back.

use crate::error::Result;
use crate::ops::common::chunk;
use crate::runtime::{Runtime, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    skip: u32,
    base: u32,
    _pad: u32,
}

/// What [`count_nonfinite`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonFiniteCount {
    pub count: u64,
    /// Flat index of the first non-finite value (when `count > 0`).
    pub first: usize,
}

/// Counts the non-finite values of the f32 tensor `x` (any shape; chunked past the binding
/// limit) and reads back the count and the first index.
pub async fn count_nonfinite(rt: &Runtime, x: &Tensor) -> Result<NonFiniteCount> {
    const OP: &str = "mask_argmax::count_nonfinite";
    crate::ops::common::check::f32_dtype(OP, x)?;
    let n = x.numel() as u64;
    crate::ops::common::check::u32_range(OP, "elements", n)?;
    let chunks = chunk::plan(
        OP,
        n,
        &[1],
        &["input"],
        chunk::binding_limit(rt),
        rt.caps().storage_offset_alignment as u64,
    )?;
    let out = rt.upload_u32(&[0, u32::MAX], &[2])?;
    let k = rt.kernel(&crate::shader!("count_nonfinite"), "main", &[])?;
    let mut base = 0u64;
    let mut dispatches = Vec::with_capacity(chunks.len());
    for ch in &chunks {
        let p = Params {
            n: ch.count as u32,
            skip: ch.views[0].skip,
            base: base as u32,
            _pad: 0,
        };
        dispatches.push(rt.dispatch(
            &k,
            &p,
            &[ch.bind(0, x), out.binding()],
            rt.grid(ch.count, 256),
        ));
        base += ch.count;
    }
    if !dispatches.is_empty() {
        rt.run(&dispatches);
    }
    let got = rt.download_u32_async(&out).await?;
    Ok(NonFiniteCount {
        count: got[0] as u64,
        first: got[1] as usize,
    })
}
