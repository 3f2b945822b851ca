//! Softmax, matmul and the reductions (sum to a shape, broadcast to a shape). `linear` and
//! `mean` are compositions.

use super::{broadcast_shapes, infer_err};
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::matmul::{
    matmul_epilogue_into, matmul_row_sums_into, Activation, Epilogue, MatmulOptions,
};
use crate::ops::reduce::{self, reduce_backward_into, Reduce};
use crate::ops::softmax;
use crate::runtime::{Dispatch, Runtime};

/// `dy` summed down to `shape` (the gradient of a broadcast), or `dy` when it already fits.
pub(super) fn sum_to(g: &mut Graph, dy: Value, shape: &[usize]) -> Result<Value> {
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

/// Softmax over the last axis.
#[derive(Debug, Clone)]
pub struct Softmax;

impl Op for Softmax {
    op_header!("softmax", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
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
    fn backward(&self, g: &mut Graph, _x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let dy = dy[0].expect("one output");
        Ok(vec![Some(g.apply1(SoftmaxBackward, &[dy, y[0]])?)])
    }
}

/// `y · (dy − Σ dy·y)` over the last axis: (dy, y) → dx.
#[derive(Debug, Clone)]
pub struct SoftmaxBackward;

impl Op for SoftmaxBackward {
    op_header!("softmax_backward", inputs: 2);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
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
}

/// `op(a) · op(b) (+ bias [n])` over the last two axes, with equal leading (batch) axes;
/// `op` transposes when the flag is set. The bias rides in the matmul's epilogue.
///
/// The graph builds plain products (`activation` none, no residual). Compilation fuses an
/// activation or a residual add that consumes the product into its epilogue (`graph::fuse`):
/// `y = act(op(a)·op(b) + bias) + residual`, output 0 in `out_shape` (the consumer's shape,
/// same size), and output 1 the pre-activation when `keep_pre` (the activation's backward
/// reads it). The backward of a linear layer builds its weight gradient with `row_sums`: a 2-D
/// product whose last output is Σ_k op(a)[m, k], the bias gradient (`matmul_row_sums_into`).
#[derive(Debug, Clone)]
pub struct MatMul {
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub bias: bool,
    pub activation: Activation,
    /// The last input is added after the activation.
    pub residual: bool,
    pub keep_pre: bool,
    pub out_shape: Option<Vec<usize>>,
    pub row_sums: bool,
}

impl MatMul {
    pub(crate) fn plain(transpose_a: bool, transpose_b: bool) -> Self {
        Self {
            transpose_a,
            transpose_b,
            bias: false,
            activation: Activation::None,
            residual: false,
            keep_pre: false,
            out_shape: None,
            row_sums: false,
        }
    }

    /// Whether compilation fused something into this product (or a backward rule gave it a
    /// second job): such a product has no backward rule.
    pub fn is_fused(&self) -> bool {
        self.activation != Activation::None
            || self.residual
            || self.out_shape.is_some()
            || self.row_sums
    }

    /// `[.., m, n]` of the product, or a sentence naming what does not fit.
    fn product_shape(&self, a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
        let r = a.len();
        let batched = r >= 2 && (b.len() == r && a[..r - 2] == b[..r - 2] || b.len() == 2);
        if !batched {
            return Err(
                "a and b must be [.., m, k] and [.., k, n] with equal batch axes (or b 2-D)".into(),
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
            return Err(format!("inner sizes differ: {ka} vs {kb}"));
        }
        let mut s = a[..r - 2].to_vec();
        s.extend([m, n]);
        Ok(s)
    }
}

impl Op for MatMul {
    fn name(&self) -> &str {
        match (self.activation, self.residual) {
            (Activation::None, false) => "matmul",
            (Activation::None, true) => "matmul+add",
            (Activation::Relu, false) => "matmul+relu",
            (Activation::Gelu, false) => "matmul+gelu",
            (_, true) => "matmul+act+add",
        }
    }
    fn arity(&self) -> Option<usize> {
        Some(2 + self.bias as usize + self.residual as usize)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let s = self.product_shape(&i[0].shape, &i[1].shape)?;
        let n = s[s.len() - 1];
        if self.bias && i[2].shape != [n] {
            return infer_err(format!("bias must be [{n}], is {:?}", i[2].shape));
        }
        let out = self.out_shape.clone().unwrap_or_else(|| s.clone());
        if out.iter().product::<usize>() != s.iter().product::<usize>() {
            return infer_err(format!("cannot write the product {s:?} as {out:?}"));
        }
        if self.residual && i[i.len() - 1].shape != out {
            return infer_err(format!("the residual must be {out:?}"));
        }
        let mut outs = vec![TensorInfo::f32(&out)];
        if self.keep_pre {
            outs.push(TensorInfo::f32(&s));
        }
        if self.row_sums {
            if s.len() != 2 {
                return infer_err(format!(
                    "row sums of 2-D products only, the product is {s:?}"
                ));
            }
            outs.push(TensorInfo::f32(&s[..1]));
        }
        Ok(outs)
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let opts = MatmulOptions {
            trans_a: self.transpose_a,
            trans_b: self.transpose_b,
            activation: self.activation,
            ..Default::default()
        };
        let (a, b) = (io.inputs[0], io.inputs[1]);
        let s = self
            .product_shape(a.shape(), b.shape())
            .map_err(|what| crate::Error::Unsupported { op: "matmul", what })?;
        // A fused consumer's shape is a view of the product's.
        let out = io.outputs[0].reshape(&s)?;
        let residual = match self.residual {
            true => Some(io.inputs[io.inputs.len() - 1].reshape(&s)?),
            false => None,
        };
        let ep = Epilogue {
            bias: self.bias.then(|| io.inputs[2]),
            residual: residual.as_ref(),
            preact: self.keep_pre.then(|| io.outputs[1]),
        };
        if self.row_sums {
            let rows = io.outputs[io.outputs.len() - 1];
            let (ds, keep) = matmul_row_sums_into(rt, a, b, &ep, &out, &opts, rows)?;
            keep.into_iter().for_each(|t| io.keep_alive(t));
            return Ok(ds);
        }
        // The kernel library picks the plan (a transposed copy of B where a buffer kernel wants it).
        let (ds, scratch) = matmul_epilogue_into(rt, a, b, &ep, &out, &opts)?;
        if let Some(t) = scratch {
            io.keep_alive(t);
        }
        Ok(ds)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        if self.is_fused() {
            // Fusion runs when compiling, after the backward was built.
            return Err(crate::graph::GraphError::Backward(format!(
                "{} is fused at compile time and has no backward rule",
                self.name()
            )));
        }
        let dc = dy[0].expect("one output");
        let (a, b, ta, tb) = (x[0], x[1], self.transpose_a, self.transpose_b);
        let mm = |g: &mut Graph, l, r, ta, tb| g.apply1(MatMul::plain(ta, tb), &[l, r]);
        // A linear layer (b = weightᵀ, 2-D) gets its bias gradient Σ_rows dC from its weight
        // gradient's product dCᵀ·A, as that product's row sums.
        let mut d_bias = None;
        let mut mm_w = |g: &mut Graph, l: Value, r: Value, ta, tb| -> Result<Value> {
            if !(self.bias && ta && g.shape(l).len() == 2 && g.shape(r).len() == 2) {
                return mm(g, l, r, ta, tb);
            }
            let op = MatMul {
                row_sums: true,
                ..MatMul::plain(ta, tb)
            };
            let ys = g.apply(std::sync::Arc::new(op), &[l, r])?;
            d_bias = Some(ys[1]);
            Ok(ys[0])
        };
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
                mm_w(g, c2, a2, true, false)?
            } else {
                mm(g, a2, c2, true, false)?
            }
        } else if tb {
            mm_w(g, dc, a, true, ta)?
        } else {
            mm(g, a, dc, !ta, false)?
        };
        let mut grads = vec![Some(da), Some(db)];
        if self.bias {
            let n = *g.shape(dc).last().expect("rank >= 2");
            grads.push(Some(match d_bias {
                Some(v) => v,
                None => sum_to(g, dc, &[n])?,
            }));
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
    op_header!("sum_to", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        if broadcast_shapes(&self.shape, &i[0].shape)? != i[0].shape {
            return infer_err(format!("{:?} does not broadcast to the input", self.shape));
        }
        Ok(vec![TensorInfo::f32(&self.shape)])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let (d, scratch) = reduce::sum_to_shape_scratch_into(rt, io.inputs[0], io.outputs[0])?;
        if let Some(t) = scratch {
            io.keep_alive(t);
        }
        Ok(d)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
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
    op_header!("broadcast_to", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
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
            [axis] => reduce_backward_into(rt, Reduce::Sum, &x.reshape(&xs)?, axis, out),
            _ if x.numel() == 1 => {
                let flat = out.reshape(&[1, out.numel()])?;
                reduce_backward_into(rt, Reduce::Sum, &x.reshape(&[1, 1])?, 1, &flat)
            }
            _ => Err(crate::Error::Unsupported {
                op: "broadcast_to",
                what: format!("{:?} to {:?} (more than one axis)", x.shape(), out.shape()),
            }),
        }
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let shape = g.shape(x[0]).to_vec();
        Ok(vec![Some(sum_to(g, dy[0].expect("one output"), &shape)?)])
    }
}

impl Graph {
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
            bias: bias.is_some(),
            ..MatMul::plain(false, true)
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
}
