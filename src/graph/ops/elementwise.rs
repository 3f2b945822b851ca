//! Elementwise graph ops: broadcasting arithmetic and activations.

use super::linalg::sum_to;
use super::{broadcast_shapes, infer_err};
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::elementwise as ew;
use crate::runtime::{Dispatch, Runtime};
use crate::DType;

/// Which binary operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Mul,
}

/// `a ∘ b` with broadcasting. (Add is also the default gradient accumulator.)
#[derive(Debug, Clone)]
pub struct Binary(pub BinaryKind);

impl Op for Binary {
    fn name(&self) -> &str {
        match self.0 {
            BinaryKind::Add => "add",
            BinaryKind::Mul => "mul",
        }
    }
    fn arity(&self) -> Option<usize> {
        Some(2)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        if i[0].dtype != DType::F32 || i[1].dtype != DType::F32 {
            return infer_err("takes f32 inputs");
        }
        Ok(vec![TensorInfo::f32(&broadcast_shapes(
            &i[0].shape,
            &i[1].shape,
        )?)])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let op = match self.0 {
            BinaryKind::Add => ew::Binary::Add,
            BinaryKind::Mul => ew::Binary::Mul,
        };
        ew::binary_into(rt, op, io.inputs[0], io.inputs[1], io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let dy = dy[0].expect("one output");
        let (sa, sb) = (g.shape(x[0]).to_vec(), g.shape(x[1]).to_vec());
        let (da, db) = match self.0 {
            BinaryKind::Add => (dy, dy),
            BinaryKind::Mul => (g.mul(dy, x[1])?, g.mul(dy, x[0])?),
        };
        Ok(vec![Some(sum_to(g, da, &sa)?), Some(sum_to(g, db, &sb)?)])
    }
}

/// Which unary operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryKind {
    Relu,
    /// The exact (erf) GELU, as Swin and PyTorch's default.
    Gelu,
    Scale(f32),
}

impl UnaryKind {
    fn kernel(self) -> ew::Unary {
        match self {
            UnaryKind::Relu => ew::Unary::Relu,
            UnaryKind::Gelu => ew::Unary::Gelu,
            UnaryKind::Scale(c) => ew::Unary::MulScalar(c),
        }
    }
}

/// `f(x)` elementwise.
#[derive(Debug, Clone)]
pub struct Unary(pub UnaryKind);

impl Op for Unary {
    fn name(&self) -> &str {
        match self.0 {
            UnaryKind::Relu => "relu",
            UnaryKind::Gelu => "gelu",
            UnaryKind::Scale(_) => "scale",
        }
    }
    fn arity(&self) -> Option<usize> {
        Some(1)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        ew::unary_into(rt, self.0.kernel(), io.inputs[0], io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let dy = dy[0].expect("one output");
        Ok(vec![Some(match self.0 {
            UnaryKind::Scale(c) => g.scale(dy, c)?,
            kind => g.apply1(UnaryBackward(kind), &[dy, x[0]])?,
        })])
    }
}

/// `dy · f'(x)`: (dy, x) → dx.
#[derive(Debug, Clone)]
pub struct UnaryBackward(pub UnaryKind);

impl Op for UnaryBackward {
    fn name(&self) -> &str {
        match self.0 {
            UnaryKind::Relu => "relu_backward",
            UnaryKind::Gelu => "gelu_backward",
            UnaryKind::Scale(_) => "scale_backward",
        }
    }
    fn arity(&self) -> Option<usize> {
        Some(2)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[1].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [dy, x] = io.inputs_n()?;
        ew::unary_backward_into(rt, self.0.kernel(), x, dy, io.outputs[0])
    }
}

/// 1 where `x < 0`, else 0, with no gradient (Mask2Former's next attention mask:
/// sigmoid(logit) < 0.5 ⇔ logit < 0).
#[derive(Debug, Clone)]
pub struct LessThanZero;

impl Op for LessThanZero {
    op_header!("less_than_zero", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        ew::unary_into(rt, ew::Unary::LtScalar(0.0), io.inputs[0], io.outputs[0])
    }
    fn backward(&self, _g: &mut Graph, _x: &[Value], _y: &[Value], _dy: &[Option<Value>]) -> Grads {
        Ok(vec![None])
    }
}

impl Graph {
    /// `a + b` with broadcasting.
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.apply1(Binary(BinaryKind::Add), &[a, b])
    }
    /// `a · b` with broadcasting.
    pub fn mul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.apply1(Binary(BinaryKind::Mul), &[a, b])
    }
    /// `a − b` with broadcasting.
    pub fn sub(&mut self, a: Value, b: Value) -> Result<Value> {
        let nb = self.scale(b, -1.0)?;
        self.add(a, nb)
    }
    /// `c · x`.
    pub fn scale(&mut self, x: Value, c: f32) -> Result<Value> {
        self.apply1(Unary(UnaryKind::Scale(c)), &[x])
    }
    pub fn relu(&mut self, x: Value) -> Result<Value> {
        self.apply1(Unary(UnaryKind::Relu), &[x])
    }
    pub fn gelu(&mut self, x: Value) -> Result<Value> {
        self.apply1(Unary(UnaryKind::Gelu), &[x])
    }
    /// 1 where `x < 0`, else 0; no gradient.
    pub fn less_than_zero(&mut self, x: Value) -> Result<Value> {
        self.apply1(LessThanZero, &[x])
    }
}
