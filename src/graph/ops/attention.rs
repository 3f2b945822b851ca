//! The three attentions: Swin window attention, masked (cross/self) attention and multi-scale
//! deformable attention. Each forward saves what its backward reads.

use std::sync::Arc;

use super::infer_err;
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::deform_attn::{
    self as msda, deform_attn_backward_into, deform_attn_into, BackwardOptions,
};
use crate::ops::masked_attention::{
    masked_attention_backward_into, masked_attention_into, MaskedAttentionGrads,
    MaskedAttentionInputs, MaskedAttentionOptions, MaskedAttentionWorkspace,
};
use crate::ops::window_attention::{
    window_attention_backward_into, window_attention_into, WindowAttentionGrads,
    WindowAttentionInputs, WindowAttentionOptions, WindowAttentionWorkspace,
};
use crate::runtime::{Dispatch, Runtime, Tensor};

/// Swin window attention: (q, k, v [B, H, W, C], table [(2w−1)², heads], pad_k?, pad_v? [C])
/// → (out [B, H, W, C], lse [B, nW, heads, w²]).
#[derive(Debug, Clone)]
pub struct WindowAttention {
    pub heads: usize,
    pub window: usize,
    pub shift: usize,
    /// Padding tokens' key and value are given (HF: the key/value linear biases).
    pub pad_tokens: bool,
    /// Logit scale; `None` = 1/√head_dim (set it when heads were zero-padded to a kernel size).
    pub scale: Option<f32>,
}

impl WindowAttention {
    fn opts(&self) -> WindowAttentionOptions {
        WindowAttentionOptions {
            heads: self.heads,
            window: self.window,
            shift: self.shift,
            scale: self.scale,
        }
    }
}

impl Op for WindowAttention {
    op_header!("window_attention");
    fn arity(&self) -> Option<usize> {
        Some(if self.pad_tokens { 6 } else { 4 })
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [b, h, w, c] = i[0].shape[..] else {
            return infer_err("q must be [B, H, W, C]");
        };
        if i[1].shape != i[0].shape || i[2].shape != i[0].shape {
            return infer_err("q, k and v must have one shape");
        }
        let win = self.window;
        if win == 0 || self.shift >= win || self.heads == 0 || !c.is_multiple_of(self.heads) {
            return infer_err(format!(
                "window {win}, shift {}, heads {} do not fit C = {c}",
                self.shift, self.heads
            ));
        }
        let table = [(2 * win - 1) * (2 * win - 1), self.heads];
        if i[3].shape != table {
            return infer_err(format!("table must be {table:?}, is {:?}", i[3].shape));
        }
        let nw = h.div_ceil(win) * w.div_ceil(win);
        Ok(vec![
            i[0].clone(),
            TensorInfo::f32(&[b, nw, self.heads, win * win]),
        ])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let x = WindowAttentionInputs {
            q: io.inputs[0],
            k: io.inputs[1],
            v: io.inputs[2],
            table: io.inputs[3],
            pad_k: io.inputs.get(4).copied(),
            pad_v: io.inputs.get(5).copied(),
        };
        window_attention_into(rt, &x, io.outputs[0], io.outputs[1], &self.opts())
    }
    fn backward(&self, g: &mut Graph, x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None; x.len()]);
        };
        let mut inputs = vec![dy, y[0], y[1]];
        inputs.extend_from_slice(x);
        let outs = g.apply(Arc::new(WindowAttentionBackward(self.clone())), &inputs)?;
        Ok(outs.into_iter().map(Some).collect())
    }
}

/// (dy, out, lse, q, k, v, table, pad_k?, pad_v?) → (dq, dk, dv, dtable, dpad_k?, dpad_v?).
#[derive(Debug, Clone)]
pub struct WindowAttentionBackward(pub WindowAttention);

impl Op for WindowAttentionBackward {
    op_header!("window_attention_backward");
    fn arity(&self) -> Option<usize> {
        Some(3 + if self.0.pad_tokens { 6 } else { 4 })
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(i[3..].iter().map(|t| (*t).clone()).collect())
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let (dy, out, lse) = (io.inputs[0], io.inputs[1], io.inputs[2]);
        let x = WindowAttentionInputs {
            q: io.inputs[3],
            k: io.inputs[4],
            v: io.inputs[5],
            table: io.inputs[6],
            pad_k: io.inputs.get(7).copied(),
            pad_v: io.inputs.get(8).copied(),
        };
        let o = &io.outputs;
        let grads = WindowAttentionGrads {
            dq: o[0].clone(),
            dk: o[1].clone(),
            dv: o[2].clone(),
            d_table: o[3].clone(),
            d_pad: self.0.pad_tokens.then(|| (o[4].clone(), o[5].clone())),
        };
        let opts = self.0.opts();
        let ws = WindowAttentionWorkspace::new(rt, &x, &opts)?;
        let ds = window_attention_backward_into(rt, &x, out, lse, dy, &grads, &ws, &opts)?;
        io.keep_alive(ws);
        Ok(ds)
    }
}

/// Multi-head attention with an optional blocking mask (1 = blocked; a fully blocked row
/// attends everywhere, as Mask2Former): (q [B, Q, C], k [B, N, C], v [B, N, C], mask? [B, Q, N])
/// → out [B, Q, C].
#[derive(Debug, Clone)]
pub struct MaskedAttention {
    pub heads: usize,
    pub masked: bool,
    /// Logit scale; `None` = 1/√head_dim.
    pub scale: Option<f32>,
}

impl Op for MaskedAttention {
    op_header!("masked_attention");
    fn arity(&self) -> Option<usize> {
        Some(3 + self.masked as usize)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [b, q, c] = i[0].shape[..] else {
            return infer_err("q must be [B, Q, C]");
        };
        let [bk, n, ck] = i[1].shape[..] else {
            return infer_err("k must be [B, N, C]");
        };
        if bk != b || ck != c || i[2].shape != i[1].shape {
            return infer_err("k and v must be [B, N, C] with the batch and width of q");
        }
        if self.heads == 0 || !c.is_multiple_of(self.heads) {
            return infer_err(format!("{} heads do not divide C = {c}", self.heads));
        }
        if self.masked && i[3].shape != [b, q, n] {
            return infer_err(format!("mask must be [{b}, {q}, {n}], is {:?}", i[3].shape));
        }
        Ok(vec![i[0].clone(), TensorInfo::f32(&[b, self.heads, q])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let mask = self.mask_view(io.inputs.get(3).copied())?;
        let x = MaskedAttentionInputs {
            q: io.inputs[0],
            k: io.inputs[1],
            v: io.inputs[2],
            mask: mask.as_ref(),
            additive: None,
        };
        let mut opts = MaskedAttentionOptions::new(self.heads);
        opts.scale = self.scale;
        let ws = MaskedAttentionWorkspace::new(rt, &x, &opts)?;
        let ds = masked_attention_into(rt, &x, io.outputs[0], io.outputs[1], &ws, &opts)?;
        io.keep_alive(ws);
        Ok(ds)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None; x.len()]);
        };
        let mut inputs = vec![dy, y[0], y[1]];
        inputs.extend_from_slice(x);
        let outs = g.apply(Arc::new(MaskedAttentionBackward(self.clone())), &inputs)?;
        let mut grads: Vec<Option<Value>> = outs.into_iter().map(Some).collect();
        if self.masked {
            grads.push(None); // the mask is a detached 0/1 tensor
        }
        Ok(grads)
    }
}

impl MaskedAttention {
    /// The kernel's mask is [B, 1, Q, K] (one mask for all heads): the same data.
    fn mask_view(&self, mask: Option<&Tensor>) -> crate::Result<Option<Tensor>> {
        mask.map(|m| {
            let s = m.shape();
            m.reshape(&[s[0], 1, s[1], s[2]])
        })
        .transpose()
    }
}

/// (dy, out, lse, q, k, v, mask?) → (dq, dk, dv).
#[derive(Debug, Clone)]
pub struct MaskedAttentionBackward(pub MaskedAttention);

impl Op for MaskedAttentionBackward {
    op_header!("masked_attention_backward");
    fn arity(&self) -> Option<usize> {
        Some(6 + self.0.masked as usize)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[3].clone(), i[4].clone(), i[5].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let (dy, out, lse) = (io.inputs[0], io.inputs[1], io.inputs[2]);
        let mask = self.0.mask_view(io.inputs.get(6).copied())?;
        let x = MaskedAttentionInputs {
            q: io.inputs[3],
            k: io.inputs[4],
            v: io.inputs[5],
            mask: mask.as_ref(),
            additive: None,
        };
        let grads = MaskedAttentionGrads {
            dq: io.outputs[0].clone(),
            dk: io.outputs[1].clone(),
            dv: io.outputs[2].clone(),
        };
        let mut opts = MaskedAttentionOptions::new(self.0.heads);
        opts.scale = self.0.scale;
        let ws = MaskedAttentionWorkspace::new(rt, &x, &opts)?;
        let ds = masked_attention_backward_into(rt, &x, out, lse, dy, &grads, &ws, &opts)?;
        io.keep_alive(ws);
        Ok(ds)
    }
}

/// Multi-scale deformable attention sampling (MSDeformAttn core): (value [B, S, H, D],
/// locations [B, Lq, H, L, P, 2] in [0, 1], weights [B, Lq, H, L, P]) → [B, Lq, H·D], with
/// level sizes `shapes` ((h, w) per level, Σ h·w = S).
#[derive(Debug, Clone)]
pub struct DeformAttn {
    pub shapes: Vec<(usize, usize)>,
}

impl Op for DeformAttn {
    op_header!("deform_attn", inputs: 3);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [b, s, h, d] = i[0].shape[..] else {
            return infer_err("value must be [B, S, H, D]");
        };
        let total: usize = self.shapes.iter().map(|(h, w)| h * w).sum();
        if total != s {
            return infer_err(format!(
                "level sizes {:?} sum to {total}, not S = {s}",
                self.shapes
            ));
        }
        let [bl, lq, hl, l, p, 2] = i[1].shape[..] else {
            return infer_err("locations must be [B, Lq, H, L, P, 2]");
        };
        if bl != b || hl != h || l != self.shapes.len() {
            return infer_err("locations disagree with value or the level count");
        }
        if i[2].shape != [b, lq, h, l, p] {
            return infer_err(format!("weights must be {:?}", [b, lq, h, l, p]));
        }
        Ok(vec![TensorInfo::f32(&[b, lq, h * d])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [value, loc, attn] = io.inputs_n()?;
        let v = msda::Variant::Auto;
        deform_attn_into(rt, value, &self.shapes, loc, attn, io.outputs[0], v)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None; 3]);
        };
        let outs = g.apply(
            Arc::new(DeformAttnBackward(self.clone())),
            &[dy, x[0], x[1], x[2]],
        )?;
        Ok(outs.into_iter().map(Some).collect())
    }
}

/// (dy, value, locations, weights) → (dvalue, dlocations, dweights).
#[derive(Debug, Clone)]
pub struct DeformAttnBackward(pub DeformAttn);

impl Op for DeformAttnBackward {
    op_header!("deform_attn_backward", inputs: 4);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(i[1..].iter().map(|t| (*t).clone()).collect())
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [dy, value, loc, attn] = io.inputs_n()?;
        let grads = msda::Gradients {
            value: io.outputs[0].clone(),
            sampling_locations: io.outputs[1].clone(),
            attention_weights: io.outputs[2].clone(),
        };
        let shapes = &self.0.shapes;
        deform_attn_backward_into(
            rt,
            value,
            shapes,
            loc,
            attn,
            dy,
            &grads,
            BackwardOptions::default(),
        )
    }
}

impl Graph {
    /// Swin window attention on `q, k, v [B, H, W, C]` (padding tokens are zeros).
    #[allow(clippy::too_many_arguments)]
    pub fn window_attention(
        &mut self,
        q: Value,
        k: Value,
        v: Value,
        table: Value,
        heads: usize,
        window: usize,
        shift: usize,
    ) -> Result<Value> {
        let op = WindowAttention {
            heads,
            window,
            shift,
            pad_tokens: false,
            scale: None,
        };
        Ok(self.apply(Arc::new(op), &[q, k, v, table])?[0])
    }

    /// Multi-head attention of `q [B, Q, C]` over `k, v [B, N, C]`, blocked where `mask`
    /// `[B, Q, N]` is 1.
    pub fn masked_attention(
        &mut self,
        q: Value,
        k: Value,
        v: Value,
        mask: Option<Value>,
        heads: usize,
    ) -> Result<Value> {
        let mut inputs = vec![q, k, v];
        inputs.extend(mask);
        let op = MaskedAttention {
            heads,
            masked: mask.is_some(),
            scale: None,
        };
        Ok(self.apply(Arc::new(op), &inputs)?[0])
    }

    /// Multi-scale deformable attention sampling over levels of sizes `shapes`.
    pub fn deform_attn(
        &mut self,
        value: Value,
        locations: Value,
        weights: Value,
        shapes: &[(usize, usize)],
    ) -> Result<Value> {
        self.apply1(
            DeformAttn {
                shapes: shapes.to_vec(),
            },
            &[value, locations, weights],
        )
    }
}
