//! Binding a plan to device memory, once per [`Executable`](super::Executable): leaves get
//! their buffers (parameters a view each of the parameter arena when training), the plan's
//! slots and gradient-arena entries are allocated, and every step's dispatches are built.

use std::collections::HashMap;
use std::sync::Arc;

use super::ir::{Graph, Io, NodeKind, ParamKind, Value};
use super::plan::{Plan, Storage};
use super::{GraphError, Result};
use crate::ops::copy::{strided_copy_into, StridedCopy};
use crate::runtime::{Arena, DType, Dispatch, Runtime, Tensor};

pub(super) struct Leaf {
    pub name: String,
    pub value: Value,
    /// Bound by the plan (a leaf nothing requested depends on has no buffer).
    pub live: bool,
    pub set: bool,
}

/// The parameters and inputs of a graph, bound to their buffers.
pub(super) struct Leaves {
    /// (leaf, kind, gradient value); a parameter's index here is its arena entry.
    pub params: Vec<(Leaf, ParamKind, Option<Value>)>,
    pub inputs: Vec<Leaf>,
    pub by_name: HashMap<String, (bool, usize)>,
}

/// A training executable's parameters and their gradients, packed at the same offsets of two
/// arenas (entry `i` is the graph's `i`-th parameter), so the optimizer reaches all of them in
/// a few launches and a data-parallel all-reduce moves the gradients as whole blocks.
pub struct TrainArenas {
    pub params: Arena,
    pub grads: Arena,
}

/// The parameters of `g` in build order.
pub(super) fn param_values(g: &Graph) -> Vec<Value> {
    g.nodes()
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Param { .. }))
        .map(|n| n.outputs[0])
        .collect()
}

/// Zeroed parameter and gradient arenas for `g`'s parameters, in build order.
pub(super) fn train_arenas(rt: &Runtime, g: &Graph) -> Result<TrainArenas> {
    let shapes: Vec<_> = param_values(g)
        .into_iter()
        .map(|v| (g.info(v).shape.clone(), DType::F32))
        .collect();
    let layout = Arc::new(rt.arena_layout(&shapes)?);
    Ok(TrainArenas {
        params: rt.arena(layout.clone())?,
        grads: rt.arena(layout)?,
    })
}

/// Gives every parameter a buffer (they are state, used or not): its arena entry when
/// `arenas` is given; every live input a buffer and every live constant its uploaded data.
pub(super) fn bind_leaves(
    rt: &Runtime,
    g: &Graph,
    plan: &Plan,
    tensors: &mut [Option<Tensor>],
    arenas: Option<&TrainArenas>,
) -> Result<Leaves> {
    let mut leaves = Leaves {
        params: Vec::new(),
        inputs: Vec::new(),
        by_name: HashMap::new(),
    };
    for node in g.nodes() {
        // Leaves have one output; an op node that fusion absorbed has none.
        let Some(&v) = node.outputs.first() else {
            continue;
        };
        let info = g.info(v);
        let live = plan.storage(v) == Storage::Leaf;
        let leaf = |name: &String| Leaf {
            name: name.clone(),
            value: v,
            live,
            set: false,
        };
        match &node.kind {
            NodeKind::Param { name, kind } => {
                let i = leaves.params.len();
                tensors[v.index()] = Some(match arenas {
                    Some(a) => a.params.tensor(i).clone(),
                    None => rt.empty(&info.shape, info.dtype)?,
                });
                leaves.by_name.insert(name.clone(), (true, i));
                leaves.params.push((leaf(name), *kind, g.grad(v)));
            }
            NodeKind::Input { name } => {
                if live {
                    tensors[v.index()] = Some(rt.empty(&info.shape, info.dtype)?);
                }
                leaves
                    .by_name
                    .insert(name.clone(), (false, leaves.inputs.len()));
                leaves.inputs.push(leaf(name));
            }
            NodeKind::Const { data } if live => {
                tensors[v.index()] = Some(rt.upload(data, &info.shape)?);
            }
            _ => {}
        }
    }
    Ok(leaves)
}

/// Allocates the plan's shared slots and binds every value a step writes: a typed view of its
/// slot, of its gradient-arena entry, or of its root's tensor for a view.
pub(super) fn bind_steps(
    rt: &Runtime,
    g: &Graph,
    plan: &Plan,
    tensors: &mut [Option<Tensor>],
    arenas: Option<&TrainArenas>,
) -> Result<()> {
    let slots = plan
        .slot_bytes
        .iter()
        .map(|&b| rt.empty(&[(b / 4) as usize], DType::U32))
        .collect::<crate::Result<Vec<_>>>()?;
    for &id in plan.steps() {
        for &v in &g.node(id).outputs {
            let info = g.info(v);
            tensors[v.index()] = match plan.storage(v) {
                Storage::Slot(s) => Some(slots[s].view_as(&info.shape, info.dtype)),
                Storage::Arena(k) => {
                    let a = arenas.expect("arena storage is planned only with arenas");
                    Some(a.grads.tensor(k).view_as(&info.shape, info.dtype))
                }
                Storage::View(root) => Some(
                    tensors[root.index()]
                        .as_ref()
                        .expect("a view's root is bound before the view")
                        .view_as(&info.shape, info.dtype),
                ),
                Storage::Dead | Storage::Leaf => None,
            };
        }
    }
    Ok(())
}

/// Every step's dispatches, built once, with their owners for profiles.
pub(super) struct Recorded {
    pub dispatches: Vec<Dispatch>,
    pub owners: Vec<(String, String)>,
    pub scratch: Vec<Box<dyn std::any::Any>>,
    pub step_dispatch_start: Vec<usize>,
}

pub(super) fn record_dispatches(
    rt: &Runtime,
    g: &Graph,
    plan: &Plan,
    tensors: &[Option<Tensor>],
) -> Result<Recorded> {
    let mut rec = Recorded {
        dispatches: Vec::new(),
        owners: Vec::new(),
        scratch: Vec::new(),
        step_dispatch_start: Vec::with_capacity(plan.steps().len()),
    };
    for (s, &id) in plan.steps().iter().enumerate() {
        rec.step_dispatch_start.push(rec.dispatches.len());
        let node = g.node(id);
        let op = node.op().expect("steps are op nodes");
        if op.view_of().is_some() {
            continue;
        }
        let bound = |v: &Value| {
            tensors[v.index()]
                .as_ref()
                .expect("inputs and outputs of a step are bound")
        };
        let io = Io {
            inputs: node.inputs().iter().map(bound).collect(),
            outputs: node.outputs.iter().map(bound).collect(),
            inplace: plan.inplace[s],
            keep: Default::default(),
        };
        let ds = op
            .dispatches(rt, &io)
            .map_err(|source| GraphError::Kernel {
                node: node.label.clone(),
                op: op.name().into(),
                source: Box::new(source),
            })?;
        for d in ds {
            rec.owners.push((op.name().to_string(), node.label.clone()));
            rec.dispatches.push(d);
        }
        rec.scratch.extend(io.keep.into_inner());
    }
    Ok(rec)
}

/// Appends the copies of the gradients the plan could not compute in their arena entries
/// (see [`Plan::arena_copies`]); they run after every step.
pub(super) fn record_arena_copies(
    rt: &Runtime,
    plan: &Plan,
    tensors: &[Option<Tensor>],
    arenas: Option<&TrainArenas>,
    rec: &mut Recorded,
) -> Result<()> {
    for &(v, k) in plan.arena_copies() {
        let a = arenas.expect("arena copies are planned only with arenas");
        let src = tensors[v.index()]
            .as_ref()
            .expect("a gradient is a requested value and bound");
        let dst = a.grads.tensor(k);
        let copy = StridedCopy::gather_view(&[dst.numel()], vec![1], 0);
        let ds = strided_copy_into(rt, &src.view_as(dst.shape(), src.dtype()), dst, &copy)
            .map_err(|source| GraphError::Kernel {
                node: format!("gradient {v} into its arena entry {k}"),
                op: "copy".into(),
                source: Box::new(source),
            })?;
        for d in ds {
            rec.owners.push(("copy".into(), "gradient arena".into()));
            rec.dispatches.push(d);
        }
    }
    Ok(())
}
