//! Instance masks on the device (entry `instance` of `shaders/mask_argmax.wgsl`): for n selected
//! queries, each query's mask logits upsampled to the output size (the two bilinear steps and
//! f32 formula of the other entries and of the host), thresholded at logit > 0 and packed as
//! bits, plus per query what the host's instance results need besides the pixels: area,
//! bounding box and Σ sigmoid over the mask, all exact (see [`MaskStats`]).
//!
//! Bit layout, `bits` u32 `[n, out_h, words_per_row]` with `words_per_row = ceil(out_w / 32)`:
//! every row is padded to whole words, pixel (y, x) of selected query j is bit `x % 32` of
//! `bits[j, y, x / 32]`, and the padding bits are 0. Padded rows keep each word inside one row,
//! so a thread's 32 pixels share the row's taps. [`unpack_mask`] turns one query's words back
//! into `[out_h · out_w]` booleans.
//!
//! Grid: (blocks of 64 consecutive words of one mask, n); each thread does one word, so its
//! only loop has 32 iterations (far from llvmpipe's 65535) whatever the image size. Limits:
//! n ≤ [`MAX_QUERIES`], one mask in at most `max_workgroups_per_dim` blocks (65535 blocks of 64
//! words: about 134M pixels), the bits of one launch in one storage binding
//! ([`queries_per_launch`] says how many masks fit). Beyond them the launcher returns
//! `Error::Unsupported` / `Error::TooLarge`, which the caller takes as "use the host".

use super::{params, Upsampling, MAX_QUERIES, WG};
use crate::error::{Error, Result};
use crate::ops::common::check as chk;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// Words of one packed mask row.
pub fn words_per_row(out_w: usize) -> usize {
    out_w.div_ceil(32)
}

/// Workgroups (blocks of WG words) of one mask: the grid's x.
fn blocks((oh, ow): (usize, usize)) -> usize {
    (oh * words_per_row(ow)).div_ceil(WG)
}

/// What the host needs of one selected query's mask besides its pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskStats {
    /// Pixels with logit > 0.
    pub area: u64,
    /// `[x, y, width, height]` of those pixels; zeros for an empty mask.
    pub bbox: [u32; 4],
    /// Σ sigmoid(logit) over those pixels: the exact sum of the device's f32 sigmoids (the
    /// kernel adds them as integers in units of 2^-24, see the shader).
    pub sigmoid_sum: f64,
}

/// The outputs of one launch for n selected queries at one output size.
pub struct InstanceMasks {
    output: (usize, usize),
    /// u32 `[n, out_h, words_per_row]`, the layout of the module docs.
    pub bits: Tensor,
    /// u32 `[n, 5]`: pixel count, min x, min y, max x, max y (atomics; [`InstanceMasks::new`]
    /// sets them to 0, MAX, MAX, 0, 0).
    pub counters: Tensor,
    /// u32 `[n, blocks, 2]`: per workgroup Σ sigmoid in units of 2^-24, as (Σ of the low 16
    /// bits, Σ of the high bits) of its threads' sums; every entry is written by the kernel.
    pub partials: Tensor,
}

impl InstanceMasks {
    /// Outputs for `n` queries at `output` (rows, columns), counters ready for a launch. The
    /// bits and partials are left as they are: the kernel writes every word of both.
    pub fn new(rt: &Runtime, n: usize, output: (usize, usize)) -> Result<Self> {
        let (oh, ow) = output;
        let counters: Vec<u32> = (0..n).flat_map(|_| [0, u32::MAX, u32::MAX, 0, 0]).collect();
        Ok(Self {
            output,
            bits: rt.empty(&[n, oh, words_per_row(ow)], DType::U32)?,
            counters: rt.upload_u32(&counters, &[n, 5])?,
            partials: rt.empty(&[n, blocks(output), 2], DType::U32)?,
        })
    }

    /// Reads the outputs back: the bits (`[n · out_h · words_per_row]`) and each query's stats.
    pub async fn read(&self, rt: &Runtime) -> Result<(Vec<u32>, Vec<MaskStats>)> {
        let bits = rt.download_u32_async(&self.bits).await?;
        let counters = rt.download_u32_async(&self.counters).await?;
        let partials = rt.download_u32_async(&self.partials).await?;
        let per_query = 2 * blocks(self.output);
        let stats = counters
            .chunks(5)
            .zip(partials.chunks(per_query.max(1)))
            .map(|(c, part)| {
                // Integers: the order of the additions does not matter, and u64 cannot
                // overflow (at most 2^24 per pixel).
                let units: u64 = part
                    .chunks(2)
                    .map(|lh| u64::from(lh[0]) + (u64::from(lh[1]) << 16))
                    .sum();
                let bbox = if c[0] == 0 {
                    [0; 4]
                } else {
                    [c[1], c[2], c[3] - c[1] + 1, c[4] - c[2] + 1]
                };
                MaskStats {
                    area: u64::from(c[0]),
                    bbox,
                    sigmoid_sum: units as f64 / (1u64 << 24) as f64,
                }
            })
            .collect();
        Ok((bits, stats))
    }
}

/// How many masks at `output` one launch may hold: [`MAX_QUERIES`], or fewer where their bits
/// would pass the storage-binding limit; `Error::TooLarge` when not even one fits.
pub fn queries_per_launch(rt: &Runtime, output: (usize, usize)) -> Result<usize> {
    let (oh, ow) = output;
    let shape = [1, oh, words_per_row(ow)];
    chk::binding_of(rt, "mask_argmax::instance", "one packed mask", &shape, 4)?;
    let per_mask = (4 * oh * words_per_row(ow)).max(1) as u64;
    let fit = crate::ops::common::binding_limit(rt) / per_mask;
    Ok((fit as usize).clamp(1, MAX_QUERIES))
}

/// Launches the instance kernel: `queries` u32 `[n]` (selected query indices into the logits'
/// Q; the launcher cannot check them where they lie, [`instance`] does) into `out`, made by
/// [`InstanceMasks::new`] for n queries at the output size of `up`.
pub fn instance_into(
    rt: &Runtime,
    logits: &Tensor,
    up: &Upsampling,
    queries: &Tensor,
    out: &InstanceMasks,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "mask_argmax::instance";
    chk::dtype_in(OP, "queries", queries, &[DType::U32])?;
    if queries.rank() != 1 || queries.numel() == 0 {
        return Err(crate::shape_err!(
            OP,
            "queries must be [n >= 1], got {:?}",
            queries.shape()
        ));
    }
    let n = queries.numel();
    let p = params(rt, OP, logits, up, n)?;
    let output = up.sizes().output;
    if out.output != output {
        return Err(crate::shape_err!(
            OP,
            "outputs made for {:?}, the upsampling is to {output:?}",
            out.output
        ));
    }
    let (oh, ow) = output;
    chk::shape(OP, "bits", &out.bits, &[n, oh, words_per_row(ow)])?;
    chk::shape(OP, "counters", &out.counters, &[n, 5])?;
    chk::shape(OP, "partials", &out.partials, &[n, blocks(output), 2])?;
    for (name, t) in [("bits", &out.bits), ("counters", &out.counters)] {
        chk::dtype_in(OP, name, t, &[DType::U32])?;
        chk::binding(rt, OP, name, t)?;
    }
    chk::dtype_in(OP, "partials", &out.partials, &[DType::U32])?;
    chk::binding(rt, OP, "partials", &out.partials)?;
    chk::u32_range(OP, "bits words", out.bits.numel() as u64)?;
    let max_dim = rt.caps().max_workgroups_per_dim as usize;
    if blocks(output) > max_dim {
        return Err(Error::Unsupported {
            op: OP,
            what: format!(
                "{oh} x {ow} output pixels ({} blocks of {WG} words, at most {max_dim})",
                blocks(output)
            ),
        });
    }
    let k = rt.kernel(&crate::shader!("mask_argmax"), "instance", &[])?;
    let bind = [
        logits.binding(),
        up.idx.binding(),
        up.lam.binding(),
        queries.binding(),
        out.bits.binding(),
        out.counters.binding(),
        out.partials.binding(),
    ];
    // One workgroup per WG words of one mask (x), one row of workgroups per query (y).
    let grid = [blocks(output) as u32, n as u32, 1];
    Ok(vec![rt.dispatch(&k, &p, &bind, grid)])
}

/// Runs [`instance_into`] for `queries` (indices into the logits' Q, checked here).
pub fn instance(
    rt: &Runtime,
    logits: &Tensor,
    up: &Upsampling,
    queries: &[u32],
) -> Result<InstanceMasks> {
    if queries.is_empty() {
        return Err(crate::shape_err!("mask_argmax::instance", "no queries"));
    }
    let q = logits.shape().first().copied().unwrap_or(0);
    if let Some(bad) = queries.iter().find(|&&j| j as usize >= q) {
        return Err(crate::shape_err!(
            "mask_argmax::instance",
            "query {bad} of logits with {q} queries"
        ));
    }
    let table = rt.upload_u32(queries, &[queries.len()])?;
    let out = InstanceMasks::new(rt, queries.len(), up.sizes().output)?;
    rt.run(&instance_into(rt, logits, up, &table, &out)?);
    Ok(out)
}

/// One query's mask as `[out_h · out_w]` booleans from its `out_h · words_per_row` words.
pub fn unpack_mask(words: &[u32], (oh, ow): (usize, usize)) -> Vec<bool> {
    let wpr = words_per_row(ow);
    assert_eq!(words.len(), oh * wpr, "packed mask size");
    let mut mask = Vec::with_capacity(oh * ow);
    for row in words.chunks(wpr) {
        for (i, &word) in row.iter().enumerate() {
            let n = (ow - 32 * i).min(32);
            mask.extend((0..n).map(|b| word >> b & 1 != 0));
        }
    }
    mask
}
