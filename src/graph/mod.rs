//! Static computation graphs: build once per input shape, differentiate, plan, run many times.
//!
//! ```text
//! Graph (ir.rs, builder.rs)   values with static shapes, op nodes, shape inference at build time
//!   └─ backward (autodiff.rs)   appends gradient nodes; one backward rule per op, beside its forward
//!        └─ Plan (plan.rs)        liveness, shared buffers, in-place reuse, peak-memory report
//!             └─ Executable (exec.rs)  tensors bound once, dispatches built once, one submit per run
//! ```
//!
//! An op is one implementation of [`Op`]: its shape rule, its dispatches (the kernel family's
//! `_into` launcher) and its backward rule. The ops of the kernel library live in [`ops`].
//!
//! ```ignore
//! let mut g = Graph::new();
//! let x = g.input("x", &[4, 8])?;
//! let w = g.param("fc.weight", &[8, 2])?;
//! let y = g.matmul(x, w)?;
//! let loss = g.sum(y)?;
//! g.backward(loss)?;
//! let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training())?;
//! ```

mod autodiff;
mod bind;
mod builder;
mod exec;
mod fuse;
mod ir;
pub mod ops;
mod plan;
mod profile;

pub use bind::TrainArenas;
pub use exec::{CompileOptions, Executable, HostData, Trainable};
pub use ir::{
    Grads, Graph, InferResult, Io, Node, NodeId, NodeKind, Op, ParamKind, TensorInfo, Value,
    ValueInfo,
};
pub use plan::{Plan, PlanOptions, PlanStats, Storage};
pub use profile::{Profile, ProfileEntry, ProfileRow};

use thiserror::Error;

/// Errors from building, differentiating, planning and running graphs.
#[derive(Debug, Error)]
pub enum GraphError {
    #[error("{node} ({op}): shape error for inputs {inputs}: {detail}")]
    Shape {
        node: String,
        op: String,
        inputs: String,
        detail: String,
    },

    #[error("a graph input or parameter named `{0}` already exists")]
    DuplicateName(String),

    #[error("no graph {kind} named `{name}`")]
    UnknownName { kind: &'static str, name: String },

    #[error("value {value} does not belong to this graph ({count} values)")]
    UnknownValue { value: Value, count: usize },

    #[error("{what}: `{name}` has {got} elements, expected {expected} (shape {shape:?})")]
    Length {
        what: &'static str,
        name: String,
        got: usize,
        expected: usize,
        shape: Vec<usize>,
    },

    #[error("{what}: `{name}` has dtype {got:?}, expected {expected:?}")]
    DType {
        what: &'static str,
        name: String,
        expected: crate::DType,
        got: crate::DType,
    },

    #[error("backward: the loss {value} must have one element, its shape is {shape:?}")]
    LossNotScalar { value: Value, shape: Vec<usize> },

    #[error("backward: {0}")]
    Backward(String),

    #[error("parameter `{0}` was never given a value (Executable::set_param)")]
    ParamNotSet(String),

    #[error("input `{0}` was never given a value")]
    InputNotSet(String),

    #[error("value {value} was not requested as an output when the plan was compiled")]
    NotAnOutput { value: Value },

    #[error("the executable was not split into phases (see Executable::split_before_inputs)")]
    NotSplit,

    #[error("node {node} ({op}): {source}")]
    Kernel {
        node: String,
        op: String,
        #[source]
        source: Box<crate::Error>,
    },

    #[error(transparent)]
    Runtime(Box<crate::Error>),
}

impl From<crate::Error> for GraphError {
    fn from(e: crate::Error) -> Self {
        GraphError::Runtime(Box::new(e))
    }
}

pub type Result<T, E = GraphError> = std::result::Result<T, E>;
