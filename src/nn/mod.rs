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
