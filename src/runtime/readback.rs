//! Reading device memory back to the host. The `async` forms are the only ones in a browser,
//! where a mapping completes on the page's event loop; natively the blocking forms wait on
//! them, polling the device.

use super::{DType, Runtime, Tensor};
use crate::error::{Error, Result};

impl Runtime {
    /// Reads an f32 tensor back to the host (waits for all submitted work).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        pollster::block_on(self.download_async(t))
    }

    /// Reads a u32 tensor back to the host.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        pollster::block_on(self.download_u32_async(t))
    }

    /// Copies `bytes` bytes at `offset` of `buffer` into host memory (rounded up to 4 bytes).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_buffer_async(buffer, offset, bytes))
    }

    /// [`Runtime::download`] without blocking (the only form in a browser).
    pub async fn download_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "download",
                expected: DType::F32,
                got: t.dtype(),
            });
        }
        let raw = self
            .read_buffer_async(t.buffer(), t.offset(), t.size_bytes())
            .await?;
        // The byte vector is only 1-aligned: decode instead of casting in place.
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    /// [`Runtime::download_u32`] without blocking.
    pub async fn download_u32_async(&self, t: &Tensor) -> Result<Vec<u32>> {
        if t.dtype() != DType::U32 {
            return Err(Error::DType {
                op: "download_u32",
                expected: DType::U32,
                got: t.dtype(),
            });
        }
        let raw = self
            .read_buffer_async(t.buffer(), t.offset(), t.size_bytes())
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    /// [`Runtime::read_buffer`] without blocking.
    pub async fn read_buffer_async(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4) * 4;
        if size == 0 {
            return Ok(Vec::new());
        }
        // MAP_READ buffers may only be COPY_DST, so the data goes through a staging buffer.
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .inner
            .device
            .create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.inner.queue.submit([enc.finish()]);
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        // Native backends map only when polled; a browser maps on its own event loop, which
        // runs while this future waits.
        self.sync()?;
        rx.await
            .map_err(|e| Error::Gpu(format!("readback channel: {e}")))?
            .map_err(|e| Error::Gpu(format!("mapping readback buffer: {e}")))?;
        if let Some(e) = self.inner.device_errors.lock().unwrap().first() {
            return Err(Error::Gpu(format!(
                "the device reported an error earlier: {e}"
            )));
        }
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading mapped buffer: {e}")))?;
        let mut out = view.to_vec();
        drop(view);
        staging.unmap();
        out.truncate(bytes as usize);
        Ok(out)
    }
}
