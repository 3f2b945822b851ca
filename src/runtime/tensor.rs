//! Device tensors: a range of a pooled buffer with a shape and an element type. Always
//! contiguous, row-major. Most tensors own a buffer from offset 0; a tensor can also be a view
//! at an aligned byte offset of a larger buffer (the parameter and gradient arenas), and binds,
//! uploads and downloads only its own range.

use std::sync::Arc;

use super::pool::PooledBuffer;

pub use crate::dtype::DType;

/// A tensor on the device. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) buf: Arc<PooledBuffer>,
    /// Byte offset of element 0 in the buffer (a multiple of the storage-offset alignment).
    offset: u64,
    /// Bytes from `offset` that belong to this tensor (its data and the padding after it).
    capacity: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?}", self.shape, self.dtype)?;
        if self.offset != 0 {
            write!(f, ", at byte {}", self.offset)?;
        }
        write!(f, ")")
    }
}

impl Tensor {
    pub(crate) fn new(buf: PooledBuffer, shape: Vec<usize>, dtype: DType) -> Self {
        let capacity = buf.capacity();
        Self {
            buf: Arc::new(buf),
            offset: 0,
            capacity,
            shape,
            dtype,
        }
    }
    /// Another tensor over the same storage, for the graph planner's shared buffers. The caller
    /// guarantees the storage holds `shape`'s bytes (checked in debug builds).
    pub(crate) fn view_as(&self, shape: &[usize], dtype: DType) -> Self {
        debug_assert!((shape.iter().product::<usize>() * dtype.size()) as u64 <= self.capacity);
        Self {
            buf: self.buf.clone(),
            offset: self.offset,
            capacity: self.capacity,
            shape: shape.to_vec(),
            dtype,
        }
    }
    /// The tensor of `shape` that starts `offset` bytes into this one and may use `capacity`
    /// bytes (its data plus padding), for arenas. `None` when the range leaves this tensor's
    /// storage, is too small for `shape`, or `offset` is not a multiple of `align` (storage
    /// bindings must start at aligned offsets).
    pub fn sub_tensor(
        &self,
        offset: u64,
        capacity: u64,
        shape: &[usize],
        dtype: DType,
        align: u64,
    ) -> Option<Self> {
        let bytes = (shape.iter().product::<usize>() * dtype.size()) as u64;
        let fits = bytes <= capacity && offset.checked_add(capacity)? <= self.capacity;
        (fits && offset.is_multiple_of(align.max(1))).then(|| Self {
            buf: self.buf.clone(),
            offset: self.offset + offset,
            capacity,
            shape: shape.to_vec(),
            dtype,
        })
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
    /// Size of the data in bytes (the storage may be larger).
    pub fn size_bytes(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }
    /// The whole buffer this tensor lives in (it starts at [`Tensor::offset`]).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
    /// Byte offset of the tensor's first element in [`Tensor::buffer`].
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Bytes of storage from the tensor's start that belong to it (at least `size_bytes`):
    /// bindings rounded up to whole vectors may reach into it.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// Whether the two tensors' storage ranges share a byte (views of one buffer that do not
    /// overlap may be bound together, read-only).
    pub fn overlaps(&self, other: &Tensor) -> bool {
        let end = |t: &Tensor| t.offset + t.size_bytes().max(4);
        self.buffer() == other.buffer() && self.offset < end(other) && other.offset < end(self)
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
        Ok(self.view_as(shape, self.dtype))
    }
    /// Binding of the whole tensor.
    pub fn binding(&self) -> Binding<'_> {
        self.binding_range(0, self.size_bytes())
    }
    /// Binding of `bytes` bytes starting `offset` bytes into the tensor (for chunked dispatches
    /// over large tensors); `offset` must be a multiple of the storage-offset alignment.
    pub fn binding_range(&self, offset: u64, bytes: u64) -> Binding<'_> {
        Binding {
            buffer: self.buffer(),
            offset: self.offset + offset,
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
