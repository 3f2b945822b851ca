//! Data-parallel synchronisation of a training executable's arenas: the gradient arena averaged
//! over the ranks between the backward and the optimizer, rank 0's parameters broadcast at the
//! start, and a checksum of the parameters that the ranks compare.
//!
//! The gradient path allocates nothing per step: the gradient blocks are copied into one
//! persistent staging buffer (one submit) and read into a persistent host buffer, summed over
//! the ranks in [`CHUNK_FLOATS`] pieces through a persistent receive buffer, scaled by
//! 1 / ranks, and written back block by block.

use std::hash::Hasher;
use std::time::{Duration, Instant};

use super::collective::Collective;
use super::{Result, TrainError};
use crate::runtime::{Arena, Runtime};

/// Floats per all-reduce call (4 MiB): large enough to run at the link's bandwidth, small
/// enough that the receive buffer stays small.
pub const CHUNK_FLOATS: usize = 1 << 20;

/// Persistent buffers for averaging a gradient arena over the ranks.
pub(super) struct GradSync {
    staging: wgpu::Buffer,
    /// Every block of the arena, in order (padding included: it is zero on every rank).
    host: Vec<f32>,
    recv: Vec<f32>,
}

/// Where one all-reduce's time went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncTimes {
    /// Copying the gradients to the host and back.
    pub transfer: Duration,
    /// The all-reduce itself.
    pub reduce: Duration,
    /// Bytes all-reduced.
    pub bytes: u64,
}

impl GradSync {
    pub(super) fn new(rt: &Runtime, grads: &Arena) -> Self {
        let bytes = grads.bytes();
        let staging = rt.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("gradient all-reduce staging"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            staging,
            host: vec![0.0; (bytes / 4) as usize],
            recv: vec![0.0; CHUNK_FLOATS.min((bytes / 4) as usize)],
        }
    }

    /// Replaces every gradient of `grads` by its mean over the ranks. Waits for the device.
    pub(super) fn average(
        &mut self,
        rt: &Runtime,
        grads: &Arena,
        group: &dyn Collective,
    ) -> Result<SyncTimes> {
        let start = Instant::now();
        self.read(rt, grads)?;
        let read = start.elapsed();
        let reduce_start = Instant::now();
        average_host(&mut self.host, &mut self.recv, group);
        let reduce = reduce_start.elapsed();
        let write_start = Instant::now();
        let mut at = 0;
        for block in grads.blocks() {
            let n = block.numel();
            let bytes: &[u8] = bytemuck::cast_slice(&self.host[at..at + n]);
            rt.queue()
                .write_buffer(block.buffer(), block.offset(), bytes);
            at += n;
        }
        Ok(SyncTimes {
            transfer: read + write_start.elapsed(),
            reduce,
            bytes: 4 * self.host.len() as u64,
        })
    }

    /// Copies every block into `self.host` through the staging buffer.
    fn read(&mut self, rt: &Runtime, grads: &Arena) -> Result<()> {
        let mut enc = rt.device().create_command_encoder(&Default::default());
        let mut at = 0u64;
        for block in grads.blocks() {
            let size = block.size_bytes();
            enc.copy_buffer_to_buffer(block.buffer(), block.offset(), &self.staging, at, size);
            at += size;
        }
        rt.queue().submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        let slice = self.staging.slice(..at);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        rt.sync()?;
        let gpu = |e: String| TrainError::Runtime(crate::Error::Gpu(e));
        rx.recv()
            .map_err(|e| gpu(format!("gradient readback channel: {e}")))?
            .map_err(|e| gpu(format!("mapping the gradient staging buffer: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| gpu(format!("reading the gradient staging buffer: {e}")))?;
            // The mapped range is 4-byte aligned (a buffer start).
            bytemuck::cast_slice_mut::<f32, u8>(&mut self.host).copy_from_slice(&view);
        }
        self.staging.unmap();
        Ok(())
    }
}

/// Replaces `data` by its mean over the ranks, all-reduced in [`CHUNK_FLOATS`] pieces through
/// `recv` (at least one piece long, or all of `data` when shorter).
pub fn average_host(data: &mut [f32], recv: &mut [f32], group: &dyn Collective) {
    let scale = 1.0 / group.world() as f32;
    for chunk in data.chunks_mut(CHUNK_FLOATS) {
        let recv = &mut recv[..chunk.len()];
        group.sum_f32(chunk, recv);
        for (g, s) in chunk.iter_mut().zip(recv.iter()) {
            *g = s * scale;
        }
    }
}

/// Overwrites every rank's parameters with rank 0's (the arena's blocks, padding included).
pub(super) fn broadcast_params(rt: &Runtime, params: &Arena, group: &dyn Collective) -> Result<()> {
    for block in params.blocks() {
        let mut data = rt.download(block)?;
        group.broadcast(&mut data);
        rt.write(block, &data)?;
    }
    Ok(())
}

/// A 64-bit hash of the parameters' bits (every block, padding included).
pub(super) fn checksum(rt: &Runtime, params: &Arena) -> Result<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for block in params.blocks() {
        let data = rt.download(block)?;
        h.write(bytemuck::cast_slice(&data));
    }
    Ok(h.finish())
}
