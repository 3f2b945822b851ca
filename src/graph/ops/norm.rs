//! LayerNorm and GroupNorm: the training forward saves mean/rstd as extra outputs, the
//! backward node reads them and gets its scratch space as an output the planner frees at once.

use super::infer_err;
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::group_norm::{
    group_norm_backward_into, group_norm_backward_workspace_len, group_norm_into,
    group_norm_workspace_len, GroupNormOptions,
};
use crate::ops::layer_norm::{
    layer_norm_backward_into, layer_norm_backward_workspace_len, layer_norm_into, LayerNormOptions,
};
use crate::runtime::{Dispatch, Runtime};

/// LayerNorm over the last axis: (x [.., C], weight [C], bias [C]) → (y, mean [rows], rstd [rows]).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub eps: f32,
}

fn ln_opts(eps: f32) -> LayerNormOptions {
    LayerNormOptions {
        eps,
        ..Default::default()
    }
}

impl Op for LayerNorm {
    op_header!("layer_norm", inputs: 3);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let c = *i[0].shape.last().ok_or("x needs a feature axis")?;
        for (k, what) in [(1, "weight"), (2, "bias")] {
            if i[k].shape != [c] {
                return infer_err(format!("{what} must be [{c}], is {:?}", i[k].shape));
            }
        }
        let rows = i[0].numel() / c.max(1);
        Ok(vec![
            i[0].clone(),
            TensorInfo::f32(&[rows]),
            TensorInfo::f32(&[rows]),
        ])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, w, b] = io.inputs_n()?;
        let [y, mean, rstd] = io.outputs_n()?;
        layer_norm_into(rt, x, w, b, y, Some((mean, rstd)), &ln_opts(self.eps))
    }
    fn backward(&self, g: &mut Graph, x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None; 3]);
        };
        let outs = g.apply(
            std::sync::Arc::new(LayerNormBackward { eps: self.eps }),
            &[dy, x[0], x[1], y[1], y[2]],
        )?;
        Ok(vec![Some(outs[0]), Some(outs[1]), Some(outs[2])])
    }
}

/// (dy, x, weight, mean, rstd) → (dx, dweight, dbias, workspace).
#[derive(Debug, Clone)]
pub struct LayerNormBackward {
    pub eps: f32,
}

impl Op for LayerNormBackward {
    op_header!("layer_norm_backward", inputs: 5);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![
            i[1].clone(),
            i[2].clone(),
            i[2].clone(),
            TensorInfo::f32(&[layer_norm_backward_workspace_len(&i[1].shape)]),
        ])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [dy, x, w, mean, rstd] = io.inputs_n()?;
        let [dx, dw, db, ws] = io.outputs_n()?;
        layer_norm_backward_into(rt, dy, x, w, mean, rstd, dx, dw, db, ws, &ln_opts(self.eps))
    }
}

/// GroupNorm on [N, C, ..] with an optional fused ReLU: (x, weight [C], bias [C]) →
/// (y, mean [N, G], rstd [N, G]).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub groups: usize,
    pub eps: f32,
    pub relu: bool,
}

impl GroupNorm {
    fn opts(&self) -> GroupNormOptions {
        GroupNormOptions {
            groups: self.groups,
            eps: self.eps,
            relu: self.relu,
            variant: Default::default(),
        }
    }
}

impl Op for GroupNorm {
    op_header!("group_norm", inputs: 3);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let s = &i[0].shape;
        if s.len() < 2 || self.groups == 0 || !s[1].is_multiple_of(self.groups) {
            return infer_err(format!(
                "x must be [N, C, ..] with C divisible by {} groups",
                self.groups
            ));
        }
        for (k, what) in [(1, "weight"), (2, "bias")] {
            if i[k].shape != [s[1]] {
                return infer_err(format!("{what} must be [{}], is {:?}", s[1], i[k].shape));
            }
        }
        let stats = TensorInfo::f32(&[s[0], self.groups]);
        // The chunked statistics' scratch (GPUs); a few KB.
        let ws = group_norm_workspace_len(s, self.groups).max(1);
        Ok(vec![
            i[0].clone(),
            stats.clone(),
            stats,
            TensorInfo::f32(&[ws]),
        ])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, w, b] = io.inputs_n()?;
        let [y, mean, rstd, ws] = io.outputs_n()?;
        group_norm_into(rt, x, w, b, y, mean, rstd, Some(ws), &self.opts())
    }
    fn backward(&self, g: &mut Graph, x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None; 3]);
        };
        let outs = g.apply(
            std::sync::Arc::new(GroupNormBackward(self.clone())),
            &[dy, x[0], x[1], x[2], y[1], y[2]],
        )?;
        Ok(vec![Some(outs[0]), Some(outs[1]), Some(outs[2])])
    }
}

/// (dy, x, weight, bias, mean, rstd) → (dx, dweight, dbias, workspace).
#[derive(Debug, Clone)]
pub struct GroupNormBackward(pub GroupNorm);

impl Op for GroupNormBackward {
    op_header!("group_norm_backward", inputs: 6);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let ws = group_norm_backward_workspace_len(&i[1].shape, self.0.groups);
        Ok(vec![
            i[1].clone(),
            i[2].clone(),
            i[3].clone(),
            TensorInfo::f32(&[ws]),
        ])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [dy, x, w, b, mean, rstd] = io.inputs_n()?;
        let [dx, dw, db, ws] = io.outputs_n()?;
        group_norm_backward_into(rt, dy, x, w, b, mean, rstd, dx, dw, db, ws, &self.0.opts())
    }
}

impl Graph {
    /// LayerNorm over the last axis of `x` with `weight`, `bias` `[C]`.
    pub fn layer_norm(&mut self, x: Value, weight: Value, bias: Value, eps: f32) -> Result<Value> {
        Ok(self.apply(std::sync::Arc::new(LayerNorm { eps }), &[x, weight, bias])?[0])
    }

    /// GroupNorm of `x [N, C, ..]` in `groups` groups, optionally followed by ReLU.
    pub fn group_norm(
        &mut self,
        x: Value,
        weight: Value,
        bias: Value,
        groups: usize,
        eps: f32,
        relu: bool,
    ) -> Result<Value> {
        Ok(self.apply(
            std::sync::Arc::new(GroupNorm { groups, eps, relu }),
            &[x, weight, bias],
        )?[0])
    }
}
