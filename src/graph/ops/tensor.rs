//! Tensor primitives: broadcasting arithmetic, activations, softmax, matmul, reductions and
//! data movement (slice, pad, permute, concat). `linear`, `sub`, `mean` are compositions.

use std::sync::Arc;

use super::{arity, infer_err};
use crate::graph::{Graph, Io, Op, Result, TensorInfo, Value};
use crate::ops::elementwise as ew;
use crate::ops::matmul::{matmul_scratch_into, MatmulOptions};
use crate::ops::reduce::{reduce_backward_into, Reduce};
use crate::ops::{copy, softmax};
use crate::runtime::{Dispatch, Runtime};
use crate::DType;

type Infer = std::result::Result<Vec<TensorInfo>, String>;

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

/// `dy` summed down to `shape` (the gradient of a broadcast), or `dy` when it already fits.
fn sum_to(g: &mut Graph, dy: Value, shape: &[usize]) -> Result<Value> {
    if g.shape(dy) == shape {
        return Ok(dy);
    }
    g.apply1(
        SumTo {
            shape: shape.to_vec(),
        },
        &[dy],
    )
}

// ---- elementwise -------------------------------------------------------------------------

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
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 2)?;
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
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
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
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        ew::unary_into(rt, self.0.kernel(), io.inputs[0], io.outputs[0])
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
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
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 2)?;
        Ok(vec![i[1].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [dy, x] = io.inputs[..] else {
            unreachable!("arity checked")
        };
        ew::unary_backward_into(rt, self.0.kernel(), x, dy, io.outputs[0])
    }
    fn backward(
        &self,
        _g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        _dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        super::no_second_order("unary_backward")
    }
}

/// 1 where `x < 0`, else 0, with no gradient (Mask2Former's next attention mask:
/// sigmoid(logit) < 0.5 ⇔ logit < 0).
#[derive(Debug, Clone)]
pub struct LessThanZero;

impl Op for LessThanZero {
    fn name(&self) -> &str {
        "less_than_zero"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        ew::unary_into(rt, ew::Unary::LtScalar(0.0), io.inputs[0], io.outputs[0])
    }
    fn backward(
        &self,
        _g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        _dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        Ok(vec![None])
    }
}

// ---- softmax, matmul, reductions ---------------------------------------------------------

/// Softmax over the last axis.
#[derive(Debug, Clone)]
pub struct Softmax;

impl Op for Softmax {
    fn name(&self) -> &str {
        "softmax"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        if i[0].shape.is_empty() {
            return infer_err("needs an axis");
        }
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let x = io.inputs[0];
        let axis = x.rank() - 1;
        softmax::softmax_into(
            rt,
            softmax::Kind::Softmax,
            x,
            axis,
            io.outputs[0],
            softmax::Variant::Auto,
        )
    }
    fn backward(
        &self,
        g: &mut Graph,
        _x: &[Value],
        y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let dy = dy[0].expect("one output");
        Ok(vec![Some(g.apply1(SoftmaxBackward, &[dy, y[0]])?)])
    }
}

/// `y · (dy − Σ dy·y)` over the last axis: (dy, y) → dx.
#[derive(Debug, Clone)]
pub struct SoftmaxBackward;

impl Op for SoftmaxBackward {
    fn name(&self) -> &str {
        "softmax_backward"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 2)?;
        Ok(vec![i[1].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let (dy, y) = (io.inputs[0], io.inputs[1]);
        let axis = y.rank() - 1;
        softmax::softmax_backward_into(
            rt,
            softmax::Kind::Softmax,
            y,
            dy,
            axis,
            io.outputs[0],
            softmax::Variant::Auto,
        )
    }
    fn backward(
        &self,
        _g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        _dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        super::no_second_order("softmax_backward")
    }
}

/// `op(a) · op(b) (+ bias [n])` over the last two axes, with equal leading (batch) axes;
/// `op` transposes when the flag is set. The bias rides in the matmul's epilogue.
#[derive(Debug, Clone)]
pub struct MatMul {
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub bias: bool,
}

impl MatMul {
    fn plain(transpose_a: bool, transpose_b: bool) -> Self {
        Self {
            transpose_a,
            transpose_b,
            bias: false,
        }
    }
}

impl Op for MatMul {
    fn name(&self) -> &str {
        "matmul"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 2 + self.bias as usize)?;
        let (a, b) = (&i[0].shape, &i[1].shape);
        let r = a.len();
        let batched = r >= 2 && (b.len() == r && a[..r - 2] == b[..r - 2] || b.len() == 2);
        if !batched {
            return infer_err(
                "a and b must be [.., m, k] and [.., k, n] with equal batch axes (or b 2-D)",
            );
        }
        let rb = b.len();
        let (m, ka) = if self.transpose_a {
            (a[r - 1], a[r - 2])
        } else {
            (a[r - 2], a[r - 1])
        };
        let (kb, n) = if self.transpose_b {
            (b[rb - 1], b[rb - 2])
        } else {
            (b[rb - 2], b[rb - 1])
        };
        if ka != kb {
            return infer_err(format!("inner sizes differ: {ka} vs {kb}"));
        }
        if self.bias && i[2].shape != [n] {
            return infer_err(format!("bias must be [{n}], is {:?}", i[2].shape));
        }
        let mut s = a[..r - 2].to_vec();
        s.extend([m, n]);
        Ok(vec![TensorInfo::f32(&s)])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let opts = MatmulOptions {
            trans_a: self.transpose_a,
            trans_b: self.transpose_b,
            ..Default::default()
        };
        // The kernel library picks the plan (on CPU adapters a transposed copy of B).
        let (ds, scratch) = matmul_scratch_into(
            rt,
            io.inputs[0],
            io.inputs[1],
            io.inputs.get(2).copied(),
            io.outputs[0],
            &opts,
        )?;
        if let Some(t) = scratch {
            io.keep_alive(t);
        }
        Ok(ds)
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let dc = dy[0].expect("one output");
        let (a, b, ta, tb) = (x[0], x[1], self.transpose_a, self.transpose_b);
        let mm = |g: &mut Graph, l, r, ta, tb| g.apply1(MatMul::plain(ta, tb), &[l, r]);
        // C = op(A)·op(B): d op(A) = dC·op(B)ᵀ, d op(B) = op(A)ᵀ·dC, transposed back where op is.
        let da = if ta {
            mm(g, b, dc, tb, true)?
        } else {
            mm(g, dc, b, false, !tb)?
        };
        let db = if g.shape(b).len() == 2 && g.shape(a).len() > 2 {
            // b is shared by every batch: fold the batch into rows first.
            let (sa, sc) = (g.shape(a).to_vec(), g.shape(dc).to_vec());
            let a2 = g.reshape(a, &[sa[..sa.len() - 1].iter().product(), sa[sa.len() - 1]])?;
            let c2 = g.reshape(dc, &[sc[..sc.len() - 1].iter().product(), sc[sc.len() - 1]])?;
            if ta {
                return Err(crate::graph::GraphError::Backward(
                    "matmul with a transposed batched a and a shared b".into(),
                ));
            }
            if tb {
                mm(g, c2, a2, true, false)?
            } else {
                mm(g, a2, c2, true, false)?
            }
        } else if tb {
            mm(g, dc, a, true, ta)?
        } else {
            mm(g, a, dc, !ta, false)?
        };
        let mut grads = vec![Some(da), Some(db)];
        if self.bias {
            let n = *g.shape(dc).last().expect("rank >= 2");
            grads.push(Some(sum_to(g, dc, &[n])?));
        }
        Ok(grads)
    }
}

/// Sum of `x` down to `shape`, which broadcasts to `x`'s shape (summing the broadcast axes).
#[derive(Debug, Clone)]
pub struct SumTo {
    pub shape: Vec<usize>,
}

impl Op for SumTo {
    fn name(&self) -> &str {
        "sum_to"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        if broadcast_shapes(&self.shape, &i[0].shape)? != i[0].shape {
            return infer_err(format!("{:?} does not broadcast to the input", self.shape));
        }
        Ok(vec![TensorInfo::f32(&self.shape)])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        ew::sum_to_shape_into(rt, io.inputs[0], io.outputs[0])
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let shape = g.shape(x[0]).to_vec();
        Ok(vec![Some(g.apply1(
            BroadcastTo { shape },
            &[dy[0].expect("one output")],
        )?)])
    }
}

/// `x` repeated along broadcast axes to `shape`.
#[derive(Debug, Clone)]
pub struct BroadcastTo {
    pub shape: Vec<usize>,
}

impl Op for BroadcastTo {
    fn name(&self) -> &str {
        "broadcast_to"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        if broadcast_shapes(&i[0].shape, &self.shape)? != self.shape {
            return infer_err(format!("input does not broadcast to {:?}", self.shape));
        }
        Ok(vec![TensorInfo {
            shape: self.shape.clone(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        // The backward of a sum along one axis is this broadcast: the input, padded with
        // leading ones, may differ from the output in one axis (where it is 1).
        let (x, out) = (io.inputs[0], io.outputs[0]);
        let rank = out.rank();
        let mut xs = vec![1; rank - x.rank()];
        xs.extend_from_slice(x.shape());
        let differ: Vec<usize> = (0..rank).filter(|&a| xs[a] != out.shape()[a]).collect();
        match differ[..] {
            [] => Err(crate::Error::Unsupported {
                op: "broadcast_to",
                what: "a broadcast to the same shape (the builder skips these)".into(),
            }),
            [axis] => reduce_backward_into(rt, Reduce::Sum, &x.reshape(&xs)?, None, axis, out),
            _ if x.numel() == 1 => {
                let flat = out.reshape(&[1, out.numel()])?;
                reduce_backward_into(rt, Reduce::Sum, &x.reshape(&[1, 1])?, None, 1, &flat)
            }
            _ => Err(crate::Error::Unsupported {
                op: "broadcast_to",
                what: format!("{:?} to {:?} (more than one axis)", x.shape(), out.shape()),
            }),
        }
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let shape = g.shape(x[0]).to_vec();
        Ok(vec![Some(sum_to(g, dy[0].expect("one output"), &shape)?)])
    }
}

// ---- data movement -----------------------------------------------------------------------

/// `x[r0.0..r0.1, r1.0..r1.1, ..]`: one range per axis.
#[derive(Debug, Clone)]
pub struct Slice {
    pub ranges: Vec<(usize, usize)>,
}

impl Op for Slice {
    fn name(&self) -> &str {
        "slice"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        let s = &i[0].shape;
        if self.ranges.len() != s.len()
            || self
                .ranges
                .iter()
                .zip(s)
                .any(|(&(a, b), &d)| a > b || b > d)
        {
            return infer_err(format!("ranges {:?} do not fit {s:?}", self.ranges));
        }
        Ok(vec![TensorInfo {
            shape: self.ranges.iter().map(|(a, b)| b - a).collect(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let ranges: Vec<copy::Range> = self
            .ranges
            .iter()
            .map(|&(start, end)| copy::Range {
                start,
                end,
                step: 1,
            })
            .collect();
        copy::slice_into(rt, io.inputs[0], &ranges, io.outputs[0])
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let shape = g.shape(x[0]).to_vec();
        let pads = self
            .ranges
            .iter()
            .zip(&shape)
            .map(|(&(a, b), &d)| (a, d - b))
            .collect();
        Ok(vec![Some(
            g.apply1(Pad { pads }, &[dy[0].expect("one output")])?,
        )])
    }
}

/// Zero padding: (before, after) per axis.
#[derive(Debug, Clone)]
pub struct Pad {
    pub pads: Vec<(usize, usize)>,
}

impl Op for Pad {
    fn name(&self) -> &str {
        "pad"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        if self.pads.len() != i[0].shape.len() {
            return infer_err(format!(
                "{} pads for rank {}",
                self.pads.len(),
                i[0].shape.len()
            ));
        }
        Ok(vec![TensorInfo {
            shape: i[0]
                .shape
                .iter()
                .zip(&self.pads)
                .map(|(d, (a, b))| a + d + b)
                .collect(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let amounts: Vec<(i64, i64)> = self
            .pads
            .iter()
            .map(|&(a, b)| (a as i64, b as i64))
            .collect();
        copy::pad_into(rt, io.inputs[0], &amounts, 0f32.to_bits(), io.outputs[0])
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let shape = g.shape(x[0]).to_vec();
        let ranges = self
            .pads
            .iter()
            .zip(&shape)
            .map(|(&(a, _), &d)| (a, a + d))
            .collect();
        Ok(vec![Some(g.apply1(
            Slice { ranges },
            &[dy[0].expect("one output")],
        )?)])
    }
}

/// Axes reordered: output axis `i` is input axis `perm[i]`.
#[derive(Debug, Clone)]
pub struct Permute {
    pub perm: Vec<usize>,
}

impl Op for Permute {
    fn name(&self) -> &str {
        "permute"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        arity(i, 1)?;
        let mut seen = self.perm.clone();
        seen.sort_unstable();
        if seen != (0..i[0].shape.len()).collect::<Vec<_>>() {
            return infer_err(format!("{:?} is not a permutation of the axes", self.perm));
        }
        Ok(vec![TensorInfo {
            shape: self.perm.iter().map(|&p| i[0].shape[p]).collect(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        copy::permute_into(rt, io.inputs[0], &self.perm, io.outputs[0])
    }
    fn backward(
        &self,
        g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(vec![Some(g.permute(dy[0].expect("one output"), &inv)?)])
    }
}

/// Inputs joined along `axis`.
#[derive(Debug, Clone)]
pub struct Concat {
    pub axis: usize,
}

impl Op for Concat {
    fn name(&self) -> &str {
        "concat"
    }
    fn infer(&self, i: &[&TensorInfo]) -> Infer {
        let first = i.first().ok_or("needs inputs")?;
        let ax = self.axis;
        if ax >= first.shape.len() {
            return infer_err(format!("axis {ax} past rank {}", first.shape.len()));
        }
        let mut shape = first.shape.clone();
        shape[ax] = 0;
        for t in i {
            let mut s = t.shape.clone();
            if s.len() != shape.len() || t.dtype != first.dtype {
                return infer_err("inputs differ in rank or dtype");
            }
            shape[ax] += s[ax];
            s[ax] = 0;
            if s.iter()
                .zip(&first.shape)
                .enumerate()
                .any(|(k, (a, b))| k != ax && a != b)
            {
                return infer_err(format!(
                    "{:?} differs from {:?} off axis {ax}",
                    t.shape, first.shape
                ));
            }
        }
        Ok(vec![TensorInfo {
            shape,
            dtype: first.dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        copy::concat_into(rt, &io.inputs, self.axis, io.outputs[0])
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let dy = dy[0].expect("one output");
        let mut start = 0;
        let mut grads = Vec::with_capacity(x.len());
        for &xi in x {
            let n = g.shape(xi)[self.axis];
            grads.push(Some(g.slice(dy, self.axis, start, start + n)?));
            start += n;
        }
        Ok(grads)
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
    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: Value) -> Result<Value> {
        self.apply1(Softmax, &[x])
    }
    /// Batched `a [.., m, k] · b [.., k, n]`.
    pub fn matmul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.apply1(MatMul::plain(false, false), &[a, b])
    }
    /// `op(a) · op(b)`, transposing the last two axes of `a` / `b` where asked.
    pub fn matmul_t(&mut self, a: Value, b: Value, ta: bool, tb: bool) -> Result<Value> {
        self.apply1(MatMul::plain(ta, tb), &[a, b])
    }
    /// `nn.Linear`: `x [.., in] · weightᵀ + bias`, weight `[out, in]` (one matmul with the
    /// bias in its epilogue; the leading axes are folded into rows).
    pub fn linear(&mut self, x: Value, weight: Value, bias: Option<Value>) -> Result<Value> {
        let xs = self.shape(x).to_vec();
        let d_in = *xs.last().unwrap_or(&0);
        let rows = xs.iter().product::<usize>() / d_in.max(1);
        let x2 = self.reshape(x, &[rows, d_in])?;
        let op = MatMul {
            transpose_a: false,
            transpose_b: true,
            bias: bias.is_some(),
        };
        let mut inputs = vec![x2, weight];
        inputs.extend(bias);
        let y = self.apply1(op, &inputs)?;
        let mut ys = xs;
        *ys.last_mut().expect("x has a feature axis") = self.shape(y)[1];
        self.reshape(y, &ys)
    }
    /// Sum of all elements, shape `[1]`.
    pub fn sum(&mut self, x: Value) -> Result<Value> {
        self.apply1(SumTo { shape: vec![1] }, &[x])
    }
    /// Mean of all elements, shape `[1]`.
    pub fn mean(&mut self, x: Value) -> Result<Value> {
        let n = self.info(x).numel().max(1);
        let s = self.sum(x)?;
        self.scale(s, 1.0 / n as f32)
    }
    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(&mut self, x: Value, axis: usize, start: usize, end: usize) -> Result<Value> {
        let mut ranges: Vec<(usize, usize)> = self.shape(x).iter().map(|&d| (0, d)).collect();
        if let Some(r) = ranges.get_mut(axis) {
            *r = (start, end);
        } else {
            ranges.push((start, end)); // rank mismatch: the shape rule reports it
        }
        self.apply1(Slice { ranges }, &[x])
    }
    /// Zero padding, (before, after) per axis.
    pub fn pad(&mut self, x: Value, pads: &[(usize, usize)]) -> Result<Value> {
        self.apply1(
            Pad {
                pads: pads.to_vec(),
            },
            &[x],
        )
    }
    /// Axes reordered (`perm[i]` is the input axis of output axis `i`).
    pub fn permute(&mut self, x: Value, perm: &[usize]) -> Result<Value> {
        self.apply1(
            Permute {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }
    /// `xs` joined along `axis`.
    pub fn concat(&mut self, xs: &[Value], axis: usize) -> Result<Value> {
        Ok(self.apply(Arc::new(Concat { axis }), xs)?[0])
    }
}
