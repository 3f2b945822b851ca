//! The graph's ops: one [`Op`] implementation per primitive of the kernel library, each with its
//! shape rule, its launcher call and its backward rule, and the builder method model code calls.
//!
//! Multi-output ops (norms, attentions) return their saved statistics as extra outputs that
//! their backward node reads; kernel scratch is an extra output (planned) or kept alive with
//! [`Io::keep_alive`]. Backward nodes have no backward rule themselves (first order only).

/// The lines of an [`Op`] impl that every op states the same way: its name and, when fixed, its
/// number of inputs (the builder checks it before `infer`). Ops whose input count depends on
/// their settings write `fn arity` themselves.
macro_rules! op_header {
    ($name:literal, inputs: $n:literal) => {
        fn name(&self) -> &str {
            $name
        }
        fn arity(&self) -> Option<usize> {
            Some($n)
        }
    };
    ($name:literal) => {
        fn name(&self) -> &str {
            $name
        }
    };
}

mod attention;
mod conv;
mod elementwise;
mod linalg;
mod loss;
mod movement;
mod norm;

pub use attention::{
    DeformAttn, DeformAttnBackward, MaskedAttention, MaskedAttentionBackward, WindowAttention,
    WindowAttentionBackward,
};
pub use conv::{Bilinear, BilinearBackward, Conv2d, Conv2dBackward};
pub use elementwise::{Binary, BinaryKind, LessThanZero, Unary, UnaryBackward, UnaryKind};
pub use linalg::{BroadcastTo, MatMul, Softmax, SoftmaxBackward, SumTo};
pub use loss::{
    ClassLoss, ClassLossBackward, GatherSample, ImportancePoints, MaskLoss, MaskLossBackward,
    MatchCost, PointSample, PointSampleBackward, Uniform,
};
pub use movement::{Concat, Pad, Permute, Slice};
pub use norm::{GroupNorm, GroupNormBackward, LayerNorm, LayerNormBackward};

use super::ir::{Grads, Graph, InferResult, Io, Op, TensorInfo, Value};
use super::Result;
use crate::runtime::{Dispatch, Runtime};

fn infer_err<T>(msg: impl Into<String>) -> std::result::Result<T, String> {
    Err(msg.into())
}

/// NumPy broadcasting of two shapes (aligned at the right).
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i + s.len() >= n {
            s[i + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(format!("{a:?} and {b:?} do not broadcast ({x} vs {y})")),
        })
        .collect()
}

// ---- views ---------------------------------------------------------------------------------

/// The same data seen with another shape (no kernel: the output shares the input's buffer).
#[derive(Debug, Clone)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl Op for Reshape {
    op_header!("reshape", inputs: 1);
    fn infer(&self, inputs: &[&TensorInfo]) -> InferResult {
        let x = inputs[0];
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
    ) -> Grads {
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
    op_header!("detach", inputs: 1);
    fn infer(&self, inputs: &[&TensorInfo]) -> InferResult {
        Ok(vec![inputs[0].clone()])
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
    ) -> Grads {
        Ok(vec![None])
    }
    fn view_of(&self) -> Option<usize> {
        Some(0)
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
}
