//! Element types of tensors. A leaf module (no crate imports) so that both `error` and `runtime`
//! can name it without depending on each other.

/// Element type of a tensor's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    /// Half-precision storage; only on adapters with `Capabilities::f16`.
    F16,
    U32,
    I32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 | DType::I32 => 4,
            DType::F16 => 2,
        }
    }
}
