//! Texel views: a range of a storage buffer copied into a 2-D `rgba32float` texture, row after
//! row, so that a kernel can read it with texel loads.
//!
//! Why: on llvmpipe (Mesa 22.x, what Debian 12 ships) a storage-buffer load whose address
//! differs between the 8 lanes of a SIMD batch runs lane by lane, about 30 CPU cycles per lane
//! and per 32-bit value, while a texel load is a vector gather. A product that reads each
//! operand value many times (a GEMM) runs ~4× faster from texel views (docs/PERFORMANCE.md,
//! "Session 6"). The copy is a `copy_buffer_to_texture` recorded just before the dispatch that
//! reads the view, so a view always holds what the buffer held at that point of the stream.
//!
//! Layout: element `i` of the range (in f32s from the range's start) is component `i % 4` of
//! texel `t = i / 4`, at `(t % TEXEL_ROW, t / TEXEL_ROW)`. Views come from a few scratch
//! textures per runtime ([`TexelSlot`]), grown to the largest range asked for: launches reuse
//! them one after the other (the queue orders each copy after the previous reader).

use std::sync::Arc;

use super::kernel::{self, Kernel};
use super::tensor::Binding;
use super::{Dispatch, Runtime};
use crate::error::{Error, Result};

/// Texels per texture row: a power of two (kernels split the index with a mask and a shift)
/// whose row of 32 KiB satisfies wgpu's 256-byte copy-pitch alignment.
pub const TEXEL_ROW: u32 = 2048;

/// Which scratch texture a view uses: the views of one dispatch must not share one. C and D
/// serve the optimizer, which reads four arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TexelSlot {
    A = 0,
    B = 1,
    C = 2,
    D = 3,
}

/// The copy that fills a texel view: recorded before the dispatch that reads it.
pub(crate) struct TexelCopy {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) texels: u64,
    pub(crate) texture: wgpu::Texture,
}

/// A texel view of a buffer range: bind [`TexelView::view`] as
/// `texture_storage_2d<rgba32float, read>`; the dispatch made with it carries the copy.
pub struct TexelView {
    pub(crate) view: wgpu::TextureView,
    pub(crate) copy: TexelCopy,
}

/// The scratch textures of one runtime, by slot: (texture, rows).
#[derive(Default)]
pub(crate) struct TexelScratch {
    slots: [Option<(wgpu::Texture, u32)>; 4],
}

impl TexelScratch {
    /// A view of `range` in `slot`'s texture, growing the texture when the range needs more rows.
    pub(crate) fn view(
        &mut self,
        device: &wgpu::Device,
        max_dim: u32,
        slot: TexelSlot,
        range: Binding<'_>,
    ) -> Result<TexelView> {
        let texels = range.size.div_ceil(16).max(1);
        if !range.offset.is_multiple_of(16) || range.offset + texels * 16 > range.buffer.size() {
            return Err(Error::Unsupported {
                op: "texel view",
                what: format!(
                    "buffer range at {} of {} bytes (needs 16-byte alignment)",
                    range.offset, range.size
                ),
            });
        }
        let rows = texels.div_ceil(TEXEL_ROW as u64);
        if rows > max_dim as u64 || TEXEL_ROW > max_dim {
            return Err(Error::TooLarge {
                op: "texel view",
                what: "buffer range".into(),
                bytes: range.size,
                limit: max_dim as u64 * TEXEL_ROW as u64 * 16,
                limit_name: "texture rows × row bytes",
            });
        }
        let s = &mut self.slots[slot as usize];
        if s.as_ref().is_none_or(|(_, r)| (*r as u64) < rows) {
            // Grown in steps of 64 rows (8 MiB) so that a run's launches settle on a few sizes.
            let rows = (rows.div_ceil(64) * 64).min(max_dim as u64) as u32;
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("texel view"),
                size: wgpu::Extent3d {
                    width: TEXEL_ROW,
                    height: rows,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            *s = Some((texture, rows));
        }
        let texture = s
            .as_ref()
            .map(|(t, _)| t.clone())
            .expect("slot filled above");
        Ok(TexelView {
            view: texture.create_view(&Default::default()),
            copy: TexelCopy {
                buffer: range.buffer.clone(),
                offset: range.offset,
                texels,
                texture,
            },
        })
    }
}

impl Runtime {
    /// A texel view of `range` in scratch texture `slot` (see `texel.rs`); bind it with
    /// [`Runtime::dispatch_texels`]. Errors when the range is not 16-byte aligned or too long
    /// for the adapter's texture size.
    pub fn texel_view(&self, slot: TexelSlot, range: Binding<'_>) -> Result<TexelView> {
        let max_dim = self.inner.device.limits().max_texture_dimension_2d;
        self.inner
            .texels
            .lock()
            .unwrap()
            .view(&self.inner.device, max_dim, slot, range)
    }

    /// Like [`Runtime::dispatch`], with every storage buffer and texel view at the binding
    /// number given with it; the dispatch copies each range into its view just before it runs.
    pub fn dispatch_texels<P: bytemuck::Pod>(
        &self,
        kernel: &Arc<Kernel>,
        params: &P,
        storage: &[(u32, Binding<'_>)],
        texels: Vec<(u32, TexelView)>,
        workgroups: [u32; 3],
    ) -> Dispatch {
        let bound = storage
            .iter()
            .map(|(i, b)| (*i, kernel::Bound::Buffer(*b)))
            .chain(
                texels
                    .into_iter()
                    .map(|(i, t)| (i, kernel::Bound::Texel(t))),
            )
            .collect();
        kernel::make_dispatch_at(
            &self.inner.device,
            kernel,
            Some(bytemuck::bytes_of(params)),
            bound,
            workgroups,
        )
    }
}

/// Records `copy`: whole texture rows first, then the last partial row.
pub(crate) fn record_copy(enc: &mut wgpu::CommandEncoder, copy: &TexelCopy) {
    let row = TEXEL_ROW as u64;
    let (full, rest) = (copy.texels / row, copy.texels % row);
    let mut put = |first_row: u64, width: u64, rows: u64| {
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: &copy.buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: copy.offset + first_row * row * 16,
                    bytes_per_row: Some((row * 16) as u32),
                    rows_per_image: Some(rows as u32),
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: &copy.texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: first_row as u32,
                    z: 0,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: width as u32,
                height: rows as u32,
                depth_or_array_layers: 1,
            },
        );
    };
    if full > 0 {
        put(0, row, full);
    }
    if rest > 0 {
        put(full, rest, 1);
    }
}
