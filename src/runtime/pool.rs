//! A pool of storage buffers reused by size class, with live and peak byte counts.
//!
//! Sizes are rounded up to one of four classes per power of two (at most ~19% waste), so a
//! freed buffer serves later requests of similar size without creating new allocations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Usage of every pooled buffer: bound as storage, filled by uploads/copies, read back by copies.
pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[derive(Default)]
struct PoolState {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    live_bytes: u64,
    peak_bytes: u64,
    allocated_bytes: u64,
}

pub(crate) struct BufferPool {
    device: wgpu::Device,
    state: Mutex<PoolState>,
}

/// A buffer checked out of the pool; returns itself to the pool when dropped.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    pool: Weak<BufferPool>,
}

impl PooledBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
    /// Capacity in bytes (the size class, at least the requested size).
    pub fn capacity(&self) -> u64 {
        self.class
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            let mut st = pool.state.lock().unwrap();
            st.live_bytes -= self.class;
            st.free.entry(self.class).or_default().push(buf);
        }
    }
}

/// Rounds `bytes` up to the next size class: 4 classes per octave, minimum 256 bytes.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let pow = 63 - (bytes - 1).leading_zeros() as u64; // floor(log2(bytes - 1))
    let base = 1u64 << pow;
    let step = (base / 4).max(1);
    bytes.div_ceil(step) * step
}

impl BufferPool {
    pub fn new(device: wgpu::Device) -> Arc<Self> {
        Arc::new(Self {
            device,
            state: Mutex::new(PoolState::default()),
        })
    }

    pub fn get(self: &Arc<Self>, bytes: u64, label: &str) -> PooledBuffer {
        let class = size_class(bytes);
        let mut st = self.state.lock().unwrap();
        let reused = st.free.get_mut(&class).and_then(|v| v.pop());
        let buffer = reused.unwrap_or_else(|| {
            st.allocated_bytes += class;
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: class,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            })
        });
        st.live_bytes += class;
        st.peak_bytes = st.peak_bytes.max(st.live_bytes);
        PooledBuffer {
            buffer: Some(buffer),
            class,
            pool: Arc::downgrade(self),
        }
    }

    /// (bytes in live tensors, peak of that, bytes ever allocated from the device).
    pub fn stats(&self) -> MemoryStats {
        let st = self.state.lock().unwrap();
        MemoryStats {
            live_bytes: st.live_bytes,
            peak_bytes: st.peak_bytes,
            allocated_bytes: st.allocated_bytes,
        }
    }

    /// Frees cached buffers that no tensor uses.
    pub fn trim(&self) {
        let mut st = self.state.lock().unwrap();
        let freed: u64 = st.free.iter().map(|(c, v)| c * v.len() as u64).sum();
        st.free.clear();
        st.allocated_bytes -= freed;
    }
}

/// Device-memory counters of the buffer pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live tensors.
    pub live_bytes: u64,
    /// Highest `live_bytes` seen.
    pub peak_bytes: u64,
    /// Bytes currently allocated from the device (live + cached).
    pub allocated_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_request_with_bounded_waste() {
        for bytes in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            4097,
            1 << 20,
            (1 << 20) + 1,
            123_456_789,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(
                c <= (bytes.max(256) as f64 * 1.25) as u64 + 1,
                "{bytes} -> {c}"
            );
        }
    }
}
