//! Global gradient-norm clipping (`torch.nn.utils.clip_grad_norm_` with norm type 2 over all
//! parameters): the norm is reduced on the device by `shaders/grad_norm.wgsl` and the clip
//! scale is applied inside the AdamW kernel, so nothing is read back during a step. The
//! partial sums run over the gradient arena's blocks, one binding-sized window at a time (the
//! padding between gradients is zero), then one workgroup adds the partials. Where the update
//! reads texel views (`update.rs`), so do the partial sums (`shaders/grad_norm_texel.wgsl`),
//! over the same chunks.

use super::update::{self, TEXEL_CHUNK_BYTES};
use super::Result;
use crate::runtime::{Arena, Dispatch, Runtime, Tensor, TexelSlot};

/// ‖(g₁, g₂, …)‖₂ over all gradients, in f64 (the specification of the device reduction).
pub fn global_norm_reference(grads: &[&[f32]]) -> f64 {
    grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| x as f64 * x as f64)
        .sum::<f64>()
        .sqrt()
}

/// The factor gradients are multiplied by: `min(1, max_norm / (norm + 1e-6))`, as PyTorch.
pub fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// Workgroups of 256 threads per window: at least 8 elements a thread, at most 512 workgroups
/// (enough to fill a large GPU; the final single-workgroup sum stays short). A window of a
/// 128 MiB binding then loops 256 times per thread, far under the llvmpipe loop budget
/// (`runtime::CPU_LOOP_ITERATIONS`), and 4 GiB windows would stay under it too.
fn workgroups_for(n: usize) -> u32 {
    n.div_ceil(256 * 8).clamp(1, 512) as u32
}

/// Workgroups of 64 threads for the texel entry over `n` elements: at least 16 elements (4
/// texels) a thread, at most 4096 threads (a few per SIMD lane of a CPU; more only lengthen
/// the finish). A chunk of `TEXEL_CHUNK_BYTES` loops 512 times per thread.
fn texel_workgroups_for(n: usize) -> u32 {
    n.div_ceil(64 * 16).clamp(1, 64) as u32
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    base: u32,
}

/// The device reduction of the global sum of squares over a fixed set of gradient tensors.
pub struct GradNorm {
    partials: Tensor,
    sumsq: Tensor,
    rt: Runtime,
}

impl GradNorm {
    /// Buffers and dispatches for the gradient arena `grads`: partial sums per window, then
    /// one final sum.
    pub fn new(rt: &Runtime, grads: &Arena) -> Result<(Self, Vec<Dispatch>)> {
        let texel = update::texel_form(rt, grads.layout().align());
        let mut pieces = Vec::new();
        let mut count = 0u32;
        for (block, start, bytes) in grads.layout().windows() {
            let limit = if texel { TEXEL_CHUNK_BYTES } else { bytes };
            for at in (0..bytes).step_by(limit as usize) {
                let len = ((bytes - at).min(limit) / 4) as usize;
                // Whole texels only: the view's last texel would read past the window otherwise.
                let texel = texel && len.is_multiple_of(4);
                let (wg, partials) = match texel {
                    true => (texel_workgroups_for(len), texel_workgroups_for(len) * 64),
                    false => (workgroups_for(len), workgroups_for(len)),
                };
                let range = grads.blocks()[block].binding_range(start + at, len as u64 * 4);
                pieces.push((range, texel, len, count, wg));
                count += partials;
            }
        }
        let partials = rt.full(&[count.max(1) as usize], 0.0)?;
        let sumsq = rt.full(&[1], 0.0)?;
        let partial = rt.kernel(&crate::shader!("grad_norm"), "partial", &[])?;
        let partial_texel = match texel {
            true => Some(rt.kernel(&crate::shader!("grad_norm_texel"), "partial", &[])?),
            false => None,
        };
        let finish = rt.kernel(&crate::shader!("grad_norm"), "finish", &[])?;
        let mut ds = Vec::with_capacity(pieces.len() + 1);
        for (range, texel, len, base, wg) in pieces {
            let p = Params {
                n: len as u32,
                base,
            };
            let view = (partial_texel.as_ref())
                .filter(|_| texel)
                .and_then(|k| Some((k, rt.texel_view(TexelSlot::A, range).ok()?)));
            ds.push(match view {
                Some((k, v)) => {
                    rt.dispatch_texels(k, &p, &[(2, partials.binding())], vec![(1, v)], [wg, 1, 1])
                }
                // A buffer entry writes fewer partials than the texel one: the rest stay zero.
                None => rt.dispatch(&partial, &p, &[range, partials.binding()], [wg, 1, 1]),
            });
        }
        ds.push(rt.dispatch(
            &finish,
            &Params { n: count, base: 0 },
            &[partials.binding(), sumsq.binding()],
            [1, 1, 1],
        ));
        Ok((
            Self {
                partials,
                sumsq,
                rt: rt.clone(),
            },
            ds,
        ))
    }

    /// The one-element tensor holding the sum of squares after the dispatches ran.
    pub fn sum_of_squares(&self) -> &Tensor {
        &self.sumsq
    }

    /// The global norm from the last run (waits for the device).
    pub fn read(&self) -> Result<f64> {
        let s = self.rt.download(&self.sumsq)?;
        Ok((s[0] as f64).sqrt())
    }

    /// Bytes of device memory held.
    pub fn bytes(&self) -> u64 {
        self.partials.size_bytes() + self.sumsq.size_bytes()
    }
}
