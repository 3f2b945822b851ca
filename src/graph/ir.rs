//! The graph IR: values with static shapes, nodes that produce them, the [`Graph`] that holds
//! them and the [`Op`] trait that every operation implements once (shape rule, dispatches,
//! backward rule). The methods that add nodes are in `builder.rs`; nothing here depends on the
//! other graph modules.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::runtime::{Dispatch, Runtime, Tensor};
use crate::DType;

/// A tensor-valued result in a graph (an input, parameter, constant or op output). Cheap handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Index of a node in build order (which is a topological order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Shape and element type of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorInfo {
    pub fn f32(shape: &[usize]) -> Self {
        Self {
            shape: shape.to_vec(),
            dtype: DType::F32,
        }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }
}

/// A value's type and where it comes from.
#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub info: TensorInfo,
    pub producer: NodeId,
    /// Which output of the producer this is.
    pub output: usize,
}

/// What a parameter is, which decides its optimizer group (weight decay, lr multiplier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Matrices and kernels of linear and conv layers: weight decay applies.
    Weight,
    Bias,
    /// Scale and shift of layer/group norms.
    Norm,
    /// Embedding tables (queries, level embeddings).
    Embedding,
    /// Relative-position bias tables and absolute position embeddings.
    PositionTable,
}

impl ParamKind {
    /// The kind a Hugging Face checkpoint key implies: norms by module name, biases by suffix,
    /// embeddings and position tables by name. Use `Graph::param_of_kind` where a name misleads
    /// (Mask2Former's group norms are `input_projections.0.1.weight`).
    pub fn from_name(name: &str) -> Self {
        const EMBEDDINGS: [&str; 5] = [
            "queries_embedder",
            "queries_features",
            "query_embed",
            "query_feat",
            "level_embed",
        ];
        let lower = name.to_ascii_lowercase();
        let segments: Vec<&str> = lower.split('.').collect();
        let (leaf, module) = segments.split_last().unwrap_or((&"", &[]));
        if lower.contains("relative_position_bias_table")
            || lower.contains("absolute_pos_embed")
            || lower.contains("position_embeddings")
        {
            ParamKind::PositionTable
        } else if module.iter().any(|m| m.contains("norm")) {
            ParamKind::Norm
        } else if segments.iter().any(|s| EMBEDDINGS.contains(s)) {
            ParamKind::Embedding
        } else if *leaf == "bias" {
            ParamKind::Bias
        } else {
            ParamKind::Weight
        }
    }
}

/// How a node came to be.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// Data given to every run.
    Input { name: String },
    /// Trained state, kept on the device across runs.
    Param { name: String, kind: ParamKind },
    /// Data fixed when the graph is built (uploaded once per plan).
    Const { data: Vec<f32> },
    /// An operation on earlier values.
    Op { op: Arc<dyn Op>, inputs: Vec<Value> },
}

/// One node: its kind, the values it produces and a label (the checkpoint key prefix of the
/// module that built it, used in profiles and errors).
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub outputs: Vec<Value>,
    pub label: String,
}

impl Node {
    /// The op name (`input`, `param`, `const`, or the op's own name).
    pub fn op_name(&self) -> &str {
        match &self.kind {
            NodeKind::Input { .. } => "input",
            NodeKind::Param { .. } => "param",
            NodeKind::Const { .. } => "const",
            NodeKind::Op { op, .. } => op.name(),
        }
    }
    pub fn inputs(&self) -> &[Value] {
        match &self.kind {
            NodeKind::Op { inputs, .. } => inputs,
            _ => &[],
        }
    }
    pub fn op(&self) -> Option<&Arc<dyn Op>> {
        match &self.kind {
            NodeKind::Op { op, .. } => Some(op),
            _ => None,
        }
    }
}

/// A static graph under construction (and, after [`Graph::backward`], with its gradients).
#[derive(Clone)]
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) values: Vec<ValueInfo>,
    pub(super) names: HashMap<String, Value>,
    pub(super) scope: Vec<String>,
    /// (parameter, its gradient) in parameter order, filled by `backward`.
    pub(crate) grads: Vec<(Value, Value)>,
    /// The op that sums two gradient contributions of one value; `None`: the elementwise add
    /// (chosen in `autodiff`, so that the builder does not depend on the ops).
    pub(crate) accumulate: Option<Arc<dyn Op>>,
    /// While `backward` runs: which values' gradients are wanted (see
    /// [`Graph::needs_gradient`]); empty otherwise.
    pub(crate) wanted: Vec<bool>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|v| format!("{v}{:?}", self.info(*v).shape))
                .collect();
            let ins: Vec<String> = n.inputs().iter().map(|v| v.to_string()).collect();
            writeln!(
                f,
                "#{i} {} = {}({}) [{}]",
                outs.join(", "),
                n.op_name(),
                ins.join(", "),
                n.label
            )?;
        }
        Ok(())
    }
}

impl Graph {
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            values: Vec::new(),
            names: HashMap::new(),
            scope: Vec::new(),
            grads: Vec::new(),
            accumulate: None,
            wanted: Vec::new(),
        }
    }
}

/// What [`Op::infer`] returns: the output types, or a sentence naming what does not fit.
pub type InferResult = std::result::Result<Vec<TensorInfo>, String>;

/// What [`Op::backward`] returns: one gradient (or `None`) per input.
pub type Grads = super::Result<Vec<Option<Value>>>;

/// The bound tensors of one node, handed to [`Op::dispatches`].
pub struct Io<'a> {
    pub inputs: Vec<&'a Tensor>,
    pub outputs: Vec<&'a Tensor>,
    /// `Some(i)` when the planner gave output 0 the buffer of input `i` (see [`Op::inplace`]):
    /// the op must then bind that buffer once, read-write.
    pub inplace: Option<usize>,
    pub(crate) keep: std::cell::RefCell<Vec<Box<dyn std::any::Any>>>,
}

impl<'a> Io<'a> {
    /// Keeps `x` (a kernel's scratch tensors) alive as long as the plan: a pooled buffer
    /// dropped while its dispatch is recorded would be handed to another tensor.
    pub fn keep_alive<T: 'static>(&self, x: T) {
        self.keep.borrow_mut().push(Box::new(x));
    }

    /// The inputs as an array, for `let [x, w, b] = io.inputs_n()?;`.
    pub fn inputs_n<const N: usize>(&self) -> crate::Result<[&'a Tensor; N]> {
        fixed(&self.inputs, "inputs")
    }

    /// The outputs as an array, for `let [y, mean, rstd] = io.outputs_n()?;`.
    pub fn outputs_n<const N: usize>(&self) -> crate::Result<[&'a Tensor; N]> {
        fixed(&self.outputs, "outputs")
    }
}

fn fixed<'a, const N: usize>(tensors: &[&'a Tensor], what: &str) -> crate::Result<[&'a Tensor; N]> {
    tensors.try_into().map_err(|_| crate::Error::Shape {
        op: "graph node",
        detail: format!("expected {N} {what}, got {}", tensors.len()),
    })
}

/// One operation of the graph: shape rule, kernel launch and backward rule side by side.
///
/// Outputs are always overwritten in full by the dispatches (the planner hands out buffers that
/// hold stale data), so an op whose kernel accumulates must clear its output first.
pub trait Op: fmt::Debug + Send + Sync + std::any::Any {
    /// Short name for profiles and errors (`matmul`, `layer_norm_backward`).
    fn name(&self) -> &str;

    /// The number of inputs, checked by the builder before [`Op::infer`]; `None`: any number
    /// (the op's `infer` checks). Usually stated with `op_header!` in `ops/`.
    fn arity(&self) -> Option<usize> {
        None
    }

    /// Output types from input types. `Err` carries a sentence naming what does not fit; the
    /// builder adds the node, op and input shapes.
    fn infer(&self, inputs: &[&TensorInfo]) -> InferResult;

    /// The dispatches that compute the outputs from the inputs (built once per plan).
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>>;

    /// Gradients of the inputs given the gradients of the outputs (`None` where an output does
    /// not reach the loss), built as new nodes of `g`. Return one entry per input; `None` for
    /// inputs without a gradient (indices, masks).
    ///
    /// The default is for ops with no backward rule — the backward ops themselves, since there
    /// is no second-order training here: differentiating one is an error naming it.
    fn backward(
        &self,
        _g: &mut Graph,
        _inputs: &[Value],
        _outputs: &[Value],
        _grads: &[Option<Value>],
    ) -> Grads {
        Err(super::GraphError::Backward(format!(
            "{} has no backward rule (second derivatives are not supported)",
            self.name()
        )))
    }

    /// Output 0 is input `i` seen with another shape: no dispatch, no buffer of its own.
    fn view_of(&self) -> Option<usize> {
        None
    }

    /// The kernel can write output 0 over input `i` (same size) when `i` is not used later.
    fn inplace(&self) -> Option<usize> {
        None
    }
}
