//! Launch-time validation shared by the kernel families: dtype, exact shapes, rank, the
//! storage-binding limit and the 32-bit index range of the kernels. Every error names the op
//! and the operand.

use crate::error::{Error, Result};
use crate::runtime::{DType, Runtime, Tensor};

/// `t` holds f32 values.
pub(crate) fn f32_dtype(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            expected: DType::F32,
            got: t.dtype(),
        });
    }
    Ok(())
}

/// `t` has exactly `expected` as its shape.
pub(crate) fn shape(op: &'static str, name: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(crate::shape_err!(
            op,
            "{name} has shape {:?}, expected {expected:?}",
            t.shape()
        ));
    }
    Ok(())
}

/// `t` is f32 with shape `expected`.
pub(crate) fn f32_shape(
    op: &'static str,
    name: &str,
    t: &Tensor,
    expected: &[usize],
) -> Result<()> {
    f32_dtype(op, t)?;
    shape(op, name, t, expected)
}

/// `t` has one of `dtypes`.
pub(crate) fn dtype_in(op: &'static str, name: &str, t: &Tensor, dtypes: &[DType]) -> Result<()> {
    if !dtypes.contains(&t.dtype()) {
        return Err(crate::shape_err!(
            op,
            "{name} must have dtype {dtypes:?}, got {:?}",
            t.dtype()
        ));
    }
    Ok(())
}

/// `t` is f32 of rank `rank`.
pub(crate) fn f32_rank(op: &'static str, name: &str, t: &Tensor, rank: usize) -> Result<()> {
    f32_dtype(op, t)?;
    if t.rank() != rank {
        return Err(crate::shape_err!(
            op,
            "{name} must have rank {rank}, got shape {:?}",
            t.shape()
        ));
    }
    Ok(())
}

/// `t` is f32 with shape `expected` and fits one storage binding.
pub(crate) fn operand(
    rt: &Runtime,
    op: &'static str,
    name: &str,
    t: &Tensor,
    expected: &[usize],
) -> Result<()> {
    f32_dtype(op, t)?;
    shape(op, name, t, expected)?;
    binding(rt, op, name, t)
}

/// `t` fits in one storage-buffer binding (these kernels bind whole tensors).
pub(crate) fn binding(rt: &Runtime, op: &'static str, name: &str, t: &Tensor) -> Result<()> {
    let limit = rt.caps().max_storage_binding;
    if t.size_bytes() > limit {
        return Err(Error::TooLarge {
            op,
            what: format!("{name} of shape {:?} in one storage binding", t.shape()),
            bytes: t.size_bytes(),
            limit,
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    Ok(())
}

/// A tensor of `shape` with `bytes_per` bytes an element (one not allocated yet, such as a
/// workspace) fits in one storage-buffer binding.
pub(crate) fn binding_of(
    rt: &Runtime,
    op: &'static str,
    name: &str,
    shape: &[usize],
    bytes_per: usize,
) -> Result<()> {
    let bytes = (shape.iter().product::<usize>() * bytes_per) as u64;
    let limit = rt.caps().max_storage_binding;
    if bytes > limit {
        return Err(Error::TooLarge {
            op,
            what: format!("{name} of shape {shape:?} in one storage binding"),
            bytes,
            limit,
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    Ok(())
}

/// Element counts the kernels index with u32 must stay below 2^32.
pub(crate) fn u32_range(op: &'static str, what: &str, n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Unsupported {
        op,
        what: format!("{what} = {n} exceeds the kernels' 32-bit index range"),
    })
}
