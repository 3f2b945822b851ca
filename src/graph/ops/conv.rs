//! Convolution and bilinear resampling.

use std::sync::Arc;

use super::infer_err;
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::conv2d::{
    conv2d_backward_with_workspace_into, conv2d_backward_workspace, conv2d_with_workspace_into,
    conv2d_workspace, conv_dims, Conv2dOptions,
};
use crate::ops::reduce;
use crate::ops::resample::{bilinear_backward_into, bilinear_into, Resize};
use crate::runtime::{Dispatch, Runtime};

/// `nn.Conv2d` (one group): (x [N, Cin, H, W], weight [Cout, Cin, kh, kw], bias [Cout]?) → y.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

impl Conv2d {
    fn opts(&self) -> Conv2dOptions {
        Conv2dOptions::default()
            .stride(self.stride)
            .padding(self.padding)
    }
}

impl Op for Conv2d {
    op_header!("conv2d");
    fn arity(&self) -> Option<usize> {
        Some(2 + self.bias as usize)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let d = conv_dims(&i[0].shape, &i[1].shape, &self.opts()).map_err(|e| e.to_string())?;
        if self.bias && i[2].shape != [d.cout] {
            return infer_err(format!("bias must be [{}], is {:?}", d.cout, i[2].shape));
        }
        Ok(vec![TensorInfo::f32(&[d.n, d.cout, d.ho, d.wo])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let bias = io.inputs.get(2).copied();
        let (x, w) = (io.inputs[0], io.inputs[1]);
        let ws = conv2d_workspace(rt, x.shape(), w.shape(), &self.opts())?;
        let list =
            conv2d_with_workspace_into(rt, x, w, bias, io.outputs[0], ws.as_ref(), &self.opts())?;
        // The GEMM path's column matrix must outlive the recorded dispatches.
        if let Some(ws) = ws {
            io.keep_alive(ws);
        }
        Ok(list)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None; x.len()]);
        };
        // No dx where the input needs no gradient (the image under the patch embedding): its
        // column-to-image pass and product are the larger half of the backward.
        let op = Conv2dBackward {
            conv: self.clone(),
            input_grad: g.needs_gradient(x[0]),
        };
        let mut outs = g
            .apply(Arc::new(op.clone()), &[dy, x[0], x[1]])?
            .into_iter();
        let dx = if op.input_grad { outs.next() } else { None };
        Ok([dx].into_iter().chain(outs.map(Some)).collect())
    }
}

/// (dy, x, weight) → (dx if `input_grad`, dweight, dbias?).
#[derive(Debug, Clone)]
pub struct Conv2dBackward {
    pub conv: Conv2d,
    pub input_grad: bool,
}

impl Op for Conv2dBackward {
    op_header!("conv2d_backward", inputs: 3);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let mut out = vec![i[1].clone(), i[2].clone()];
        if !self.input_grad {
            out.remove(0);
        }
        if self.conv.bias {
            out.push(TensorInfo::f32(&[i[2].shape[0]]));
        }
        Ok(out)
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [dy, x, w] = io.inputs_n()?;
        let opts = self.conv.opts();
        let ws = conv2d_backward_workspace(rt, x.shape(), w.shape(), &opts)?;
        let (dx, rest) = if self.input_grad {
            (Some(io.outputs[0]), &io.outputs[1..])
        } else {
            (None, &io.outputs[..])
        };
        let mut list = conv2d_backward_with_workspace_into(
            rt,
            dy,
            x,
            w,
            dx,
            rest[0],
            None,
            ws.as_ref(),
            &opts,
        )?;
        if let Some(ws) = ws {
            io.keep_alive(ws);
        }
        // The bias gradient sums dy over images and pixels: in two passes (many threads, then
        // the segments) rather than the conv family's one thread per channel.
        if let Some(db) = rest.get(1) {
            let cout = db.numel();
            let db3 = db.reshape(&[cout, 1, 1])?;
            let (d, scratch) = reduce::sum_to_shape_scratch_into(rt, dy, &db3)?;
            list.extend(d);
            if let Some(t) = scratch {
                io.keep_alive(t);
            }
        }
        Ok(list)
    }
}

/// Bilinear resize (align_corners=False) of [N, C, H, W] to [N, C, h, w].
#[derive(Debug, Clone)]
pub struct Bilinear {
    pub size: (usize, usize),
}

impl Op for Bilinear {
    op_header!("bilinear", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [n, c, _, _] = i[0].shape[..] else {
            return infer_err("x must be [N, C, H, W]");
        };
        Ok(vec![TensorInfo::f32(&[n, c, self.size.0, self.size.1])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let (h, w) = self.size;
        bilinear_into(rt, io.inputs[0], io.outputs[0], Resize::To(h, w))
    }
    fn backward(&self, g: &mut Graph, _x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None]);
        };
        let x_shape = g.shape(_x[0]).to_vec();
        Ok(vec![Some(g.apply1(
            BilinearBackward {
                size: self.size,
                input: (x_shape[2], x_shape[3]),
            },
            &[dy],
        )?)])
    }
}

/// dy [N, C, h, w] → dx [N, C, H, W] of a bilinear resize from `input` to `size`.
#[derive(Debug, Clone)]
pub struct BilinearBackward {
    pub size: (usize, usize),
    pub input: (usize, usize),
}

impl Op for BilinearBackward {
    op_header!("bilinear_backward", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [n, c, _, _] = i[0].shape[..] else {
            return infer_err("dy must be [N, C, h, w]");
        };
        Ok(vec![TensorInfo::f32(&[n, c, self.input.0, self.input.1])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let (h, w) = self.size;
        bilinear_backward_into(rt, io.inputs[0], io.outputs[0], Resize::To(h, w))
    }
}

impl Graph {
    /// `nn.Conv2d` with a square stride and padding, no dilation, one group.
    pub fn conv2d(
        &mut self,
        x: Value,
        weight: Value,
        bias: Option<Value>,
        stride: usize,
        padding: usize,
    ) -> Result<Value> {
        let op = Conv2d {
            stride,
            padding,
            bias: bias.is_some(),
        };
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        self.apply1(op, &inputs)
    }

    /// Bilinear resize (align_corners=False) of `x [N, C, H, W]` to `size` (h, w).
    pub fn interpolate_bilinear(&mut self, x: Value, size: (usize, usize)) -> Result<Value> {
        self.apply1(Bilinear { size }, &[x])
    }
}
