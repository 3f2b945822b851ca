//! Device tensors: a pooled buffer with a shape and an element type. Always contiguous, row-major.

use std::sync::Arc;

use super::pool::PooledBuffer;

pub use crate::dtype::DType;

/// A tensor on the device. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) buf: Arc<PooledBuffer>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

impl Tensor {
    pub(crate) fn new(buf: PooledBuffer, shape: Vec<usize>, dtype: DType) -> Self {
        Self {
            buf: Arc::new(buf),
            shape,
            dtype,
        }
    }
    /// Another tensor over the same buffer, for the graph planner's shared buffers. The caller
    /// guarantees the buffer holds `shape`'s bytes (checked in debug builds).
    pub(crate) fn view_as(&self, shape: &[usize], dtype: DType) -> Self {
        debug_assert!(
            (shape.iter().product::<usize>() * dtype.size()) as u64 <= self.buf.capacity()
        );
        Self {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype,
        }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements (1 for a scalar of shape `[]`).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size of the data in bytes (the buffer may be larger).
    pub fn size_bytes(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
    /// Same storage seen with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> crate::Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(crate::shape_err!(
                "reshape",
                "cannot view {:?} as {:?}",
                self.shape,
                shape
            ));
        }
        Ok(Self {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }
    /// Binding of the whole tensor.
    pub fn binding(&self) -> Binding<'_> {
        Binding {
            buffer: self.buffer(),
            offset: 0,
            size: self.size_bytes().max(4),
        }
    }
    /// Binding of `bytes` bytes starting at `offset` (for chunked dispatches over large tensors).
    pub fn binding_range(&self, offset: u64, bytes: u64) -> Binding<'_> {
        Binding {
            buffer: self.buffer(),
            offset,
            size: bytes.max(4),
        }
    }
}

/// A range of a buffer bound as a storage buffer.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> From<&'a Tensor> for Binding<'a> {
    fn from(t: &'a Tensor) -> Self {
        t.binding()
    }
}
