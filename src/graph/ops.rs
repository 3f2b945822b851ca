//! The graph's ops: one [`Op`] implementation per primitive of the kernel library, each with its
//! shape rule, its launcher call and its backward rule, and the builder method model code calls.
//!
//! An op whose kernel family has not been merged yet reports so from `dispatches` (an
//! `Unsupported` error naming the family) — its shape and backward rules already work, so graphs
//! that use it build, differentiate and plan.

use super::builder::Graph;
use super::ir::{Io, Op, TensorInfo, Value};
use super::Result;
use crate::runtime::{Dispatch, Runtime};

fn pending(op: &'static str, family: &str) -> crate::Error {
    crate::Error::Unsupported {
        op,
        what: format!("the `{family}` kernel family is not in this build yet"),
    }
}

fn same_shape(inputs: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
    let first = inputs[0];
    if let Some(other) = inputs.iter().find(|i| i.shape != first.shape) {
        return Err(format!(
            "shapes {:?} and {:?} differ",
            first.shape, other.shape
        ));
    }
    if let Some(other) = inputs.iter().find(|i| i.dtype != first.dtype) {
        return Err(format!(
            "dtypes {:?} and {:?} differ",
            first.dtype, other.dtype
        ));
    }
    Ok(vec![first.clone()])
}

// ---- views ---------------------------------------------------------------------------------

/// The same data seen with another shape (no kernel: the output shares the input's buffer).
#[derive(Debug, Clone)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl Op for Reshape {
    fn name(&self) -> &str {
        "reshape"
    }
    fn infer(&self, inputs: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        let [x] = inputs else {
            return Err(format!("takes 1 input, got {}", inputs.len()));
        };
        let n: usize = self.shape.iter().product();
        if n != x.numel() {
            return Err(format!(
                "cannot view {} elements as {:?}",
                x.numel(),
                self.shape
            ));
        }
        Ok(vec![TensorInfo {
            shape: self.shape.clone(),
            dtype: x.dtype,
        }])
    }
    fn dispatches(&self, _rt: &Runtime, _io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
    fn backward(
        &self,
        g: &mut Graph,
        inputs: &[Value],
        _outputs: &[Value],
        grads: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let shape = g.shape(inputs[0]).to_vec();
        Ok(vec![match grads[0] {
            Some(dy) => Some(g.reshape(dy, &shape)?),
            None => None,
        }])
    }
    fn view_of(&self) -> Option<usize> {
        Some(0)
    }
}

/// The same value with no gradient flowing back through it (Mask2Former's attention masks).
#[derive(Debug, Clone)]
pub struct Detach;

impl Op for Detach {
    fn name(&self) -> &str {
        "detach"
    }
    fn infer(&self, inputs: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        match inputs {
            [x] => Ok(vec![(*x).clone()]),
            _ => Err(format!("takes 1 input, got {}", inputs.len())),
        }
    }
    fn dispatches(&self, _rt: &Runtime, _io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
    fn backward(
        &self,
        _g: &mut Graph,
        _inputs: &[Value],
        _outputs: &[Value],
        _grads: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        Ok(vec![None])
    }
    fn view_of(&self) -> Option<usize> {
        Some(0)
    }
}

// ---- elementwise ---------------------------------------------------------------------------

/// `a + b` for equal shapes; also the default accumulator of gradient contributions.
#[derive(Debug, Clone)]
pub struct Add;

impl Op for Add {
    fn name(&self) -> &str {
        "add"
    }
    fn infer(&self, inputs: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        if inputs.len() != 2 {
            return Err(format!("takes 2 inputs, got {}", inputs.len()));
        }
        same_shape(inputs)
    }
    fn dispatches(&self, _rt: &Runtime, _io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        Err(pending("add", "elementwise"))
    }
    fn backward(
        &self,
        _g: &mut Graph,
        _inputs: &[Value],
        _outputs: &[Value],
        grads: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        Ok(vec![grads[0], grads[0]])
    }
}

impl Graph {
    /// `x` seen with shape `shape` (same element count; shares the buffer).
    pub fn reshape(&mut self, x: Value, shape: &[usize]) -> Result<Value> {
        self.apply1(
            Reshape {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }

    /// `x` without gradient (stop-gradient).
    pub fn detach(&mut self, x: Value) -> Result<Value> {
        self.apply1(Detach, &[x])
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.apply1(Add, &[a, b])
    }
}
