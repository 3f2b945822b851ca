//! Small building blocks on the graph, named like the checkpoint's modules: a parameter path
//! (`p.pp("layers").pp(3)`) and linear, norm, conv and MLP layers that create their parameters
//! under it. Model code reads like the PyTorch modules it mirrors.

use crate::graph::{Graph, GraphError, ParamKind, Result, Value};

/// A checkpoint key prefix, e.g. `model.pixel_level_module.decoder`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn root(prefix: &str) -> Self {
        Self(prefix.to_string())
    }
    /// The child module `name` (a field name or a list index).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }
    /// The full key of parameter `leaf` of this module.
    pub fn key(&self, leaf: &str) -> String {
        self.pp(leaf).0
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parameter `name`, created on first use and shared afterwards (Mask2Former applies one
/// prediction head after every decoder layer). A second use with another shape is an error.
pub fn param(g: &mut Graph, name: &str, shape: &[usize], kind: ParamKind) -> Result<Value> {
    if let Some(v) = g.by_name(name) {
        if g.shape(v) != shape {
            return Err(GraphError::Shape {
                node: name.to_string(),
                op: "param".into(),
                inputs: format!("{:?}", g.shape(v)),
                detail: format!("parameter reused with shape {shape:?}"),
            });
        }
        return Ok(v);
    }
    g.param_of_kind(name, shape, kind)
}

fn param_auto(g: &mut Graph, name: &str, shape: &[usize]) -> Result<Value> {
    param(g, name, shape, ParamKind::from_name(name))
}

/// `nn.Linear`: `x [.., in] -> [.., out]`, weight `[out, in]`, optional bias `[out]`.
pub fn linear(g: &mut Graph, p: &Path, x: Value, out: usize, bias: bool) -> Result<Value> {
    let d_in = *g.shape(x).last().expect("linear input has a feature axis");
    let w = param_auto(g, &p.key("weight"), &[out, d_in])?;
    let b = if bias {
        Some(param_auto(g, &p.key("bias"), &[out])?)
    } else {
        None
    };
    g.linear(x, w, b)
}

/// `nn.Linear` with given weight and bias values (e.g. slices of a packed `in_proj_weight`).
pub fn linear_with(g: &mut Graph, x: Value, w: Value, b: Option<Value>) -> Result<Value> {
    g.linear(x, w, b)
}

/// `nn.LayerNorm` over the last axis.
pub fn layer_norm(g: &mut Graph, p: &Path, x: Value, eps: f32) -> Result<Value> {
    let d = *g
        .shape(x)
        .last()
        .expect("layer norm input has a feature axis");
    let w = param(g, &p.key("weight"), &[d], ParamKind::Norm)?;
    let b = param(g, &p.key("bias"), &[d], ParamKind::Norm)?;
    g.layer_norm(x, w, b, eps)
}

/// `nn.GroupNorm(groups, C)` on `[N, C, H, W]`, optionally followed by ReLU.
pub fn group_norm(g: &mut Graph, p: &Path, x: Value, groups: usize, relu: bool) -> Result<Value> {
    let c = g.shape(x)[1];
    let w = param(g, &p.key("weight"), &[c], ParamKind::Norm)?;
    let b = param(g, &p.key("bias"), &[c], ParamKind::Norm)?;
    g.group_norm(x, w, b, groups, 1e-5, relu)
}

/// `nn.Conv2d` on `[N, C, H, W]` with a square kernel, no dilation, one group.
pub fn conv2d(
    g: &mut Graph,
    p: &Path,
    x: Value,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> Result<Value> {
    let c = g.shape(x)[1];
    let w = param_auto(g, &p.key("weight"), &[out, c, kernel, kernel])?;
    let b = if bias {
        Some(param_auto(g, &p.key("bias"), &[out])?)
    } else {
        None
    };
    g.conv2d(x, w, b, stride, padding)
}

/// The attention kernels read each head's channels as vec4: a head size that is not a multiple
/// of 4 is zero-padded per head (`[.., heads·d] -> [.., heads·d4]`). Zero channels add nothing to
/// q·k and produce zero outputs, which [`unpad_heads`] drops; the logit scale must stay 1/√d.
pub fn pad_heads(g: &mut Graph, x: Value, heads: usize) -> Result<Value> {
    let shape = g.shape(x).to_vec();
    let (lead, c) = shape.split_at(shape.len() - 1);
    let d = c[0] / heads;
    let d4 = d.next_multiple_of(4);
    if d4 == d {
        return Ok(x);
    }
    let mut split = lead.to_vec();
    split.extend([heads, d]);
    let y = g.reshape(x, &split)?;
    let mut pads = vec![(0, 0); split.len()];
    *pads.last_mut().expect("head axis") = (0, d4 - d);
    let y = g.pad(y, &pads)?;
    let mut merged = lead.to_vec();
    merged.push(heads * d4);
    g.reshape(y, &merged)
}

/// Inverse of [`pad_heads`]: keeps the first `d` channels of each padded head.
pub fn unpad_heads(g: &mut Graph, x: Value, heads: usize, d: usize) -> Result<Value> {
    let shape = g.shape(x).to_vec();
    let (lead, c) = shape.split_at(shape.len() - 1);
    let d4 = c[0] / heads;
    if d4 == d {
        return Ok(x);
    }
    let mut split = lead.to_vec();
    split.extend([heads, d4]);
    let y = g.reshape(x, &split)?;
    let y = g.slice(y, split.len() - 1, 0, d)?;
    let mut merged = lead.to_vec();
    merged.push(heads * d);
    g.reshape(y, &merged)
}

/// Multi-head attention of `q [B, Q, C]` over `k, v [B, K, C]` (scale 1/√(C/heads)), blocked
/// where `mask [B, Q, K]` is 1; any head size.
pub fn attention(
    g: &mut Graph,
    q: Value,
    k: Value,
    v: Value,
    mask: Option<Value>,
    heads: usize,
) -> Result<Value> {
    let c = *g.shape(q).last().expect("[B, Q, C]");
    let d = c / heads;
    let (q, k, v) = (
        pad_heads(g, q, heads)?,
        pad_heads(g, k, heads)?,
        pad_heads(g, v, heads)?,
    );
    let op = crate::graph::ops::MaskedAttention {
        heads,
        masked: mask.is_some(),
        scale: Some(1.0 / (d as f32).sqrt()),
    };
    let mut inputs = vec![q, k, v];
    inputs.extend(mask);
    let y = g.apply(std::sync::Arc::new(op), &inputs)?[0];
    unpad_heads(g, y, heads, d)
}
