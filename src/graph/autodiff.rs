//! Reverse-mode differentiation: walk the nodes from the loss back to the parameters and apply
//! each op's backward rule ([`Op::backward`](super::Op::backward)), summing the contributions
//! of values used more than once.
//!
//! Only nodes on a path from a parameter to the loss get a backward rule applied; gradient
//! nodes that an op builds for an input nobody needs are never planned or run (the planner
//! drops nodes that no requested value depends on).

use std::collections::HashMap;

use super::ir::{Graph, NodeKind, Value};
use super::{GraphError, Result};
use crate::DType;

impl Graph {
    /// Appends the gradient nodes of `loss` (a one-element f32 value) with respect to every
    /// parameter it depends on; read them with [`Graph::grad`] / [`Graph::grads`].
    pub fn backward(&mut self, loss: Value) -> Result<()> {
        self.check(loss)?;
        let info = self.info(loss).clone();
        if info.numel() != 1 || info.dtype != DType::F32 {
            return Err(GraphError::LossNotScalar {
                value: loss,
                shape: info.shape,
            });
        }
        let one = self.constant(&[1.0], &info.shape)?;
        self.backward_from(&[(loss, one)])
    }

    /// Appends the parameter gradients of a loss whose gradients with respect to some values
    /// are already known: `seeds` pairs each such value with its gradient (a value of the same
    /// shape, e.g. an input the host fills). This is [`Graph::backward`] without the scalar
    /// `Σ value · seed` a caller would otherwise build, whose forward and first backward nodes
    /// only reproduce the seeds.
    pub fn backward_from(&mut self, seeds: &[(Value, Value)]) -> Result<()> {
        for &(v, gv) in seeds {
            self.check(v)?;
            self.check(gv)?;
            if self.info(v) != self.info(gv) || self.info(v).dtype != DType::F32 {
                return Err(GraphError::Backward(format!(
                    "the gradient {gv} of {v} is {:?}{:?}, the value is {:?}{:?} (both f32 of one shape)",
                    self.info(gv).dtype,
                    self.info(gv).shape,
                    self.info(v).dtype,
                    self.info(v).shape
                )));
            }
        }
        let targets: Vec<Value> = seeds.iter().map(|&(v, _)| v).collect();
        let needed = self.needs_grad(&targets);
        self.wanted = needed.clone();
        let result = self.backward_nodes(seeds, &needed);
        self.wanted = Vec::new();
        result
    }

    /// During a backward rule ([`Op::backward`](super::Op::backward)): whether the gradient of
    /// `v` is wanted (`v` depends on a parameter and leads to the loss), so a rule can skip work
    /// for inputs that need none (a convolution over the image). Outside `backward`: `true`.
    pub fn needs_gradient(&self, v: Value) -> bool {
        self.wanted.get(v.index()).copied().unwrap_or(true)
    }

    fn backward_nodes(&mut self, seeds: &[(Value, Value)], needed: &[bool]) -> Result<()> {
        let forward_nodes = self.nodes.len();

        let mut contributions: HashMap<Value, Vec<Value>> = HashMap::new();
        for &(v, gv) in seeds {
            contributions.entry(v).or_default().push(gv);
        }
        let mut grads = Vec::new();

        for idx in (0..forward_nodes).rev() {
            let node = self.nodes[idx].clone();
            match &node.kind {
                NodeKind::Param { .. } => {
                    let p = node.outputs[0];
                    if let Some(list) = contributions.remove(&p) {
                        let g = self.sum_contributions(list)?;
                        grads.push((p, g));
                    }
                }
                NodeKind::Op { op, inputs } => {
                    if !inputs.iter().any(|v| needed[v.index()]) {
                        continue;
                    }
                    let mut out_grads = Vec::with_capacity(node.outputs.len());
                    for v in &node.outputs {
                        out_grads.push(match contributions.remove(v) {
                            Some(list) => Some(self.sum_contributions(list)?),
                            None => None,
                        });
                    }
                    if out_grads.iter().all(Option::is_none) {
                        continue;
                    }
                    let saved_scope = std::mem::take(self.scope_mut());
                    self.push_scope(format!("{}.backward", node.label));
                    let in_grads = op.backward(self, inputs, &node.outputs, &out_grads);
                    *self.scope_mut() = saved_scope;
                    let in_grads = in_grads?;
                    if in_grads.len() != inputs.len() {
                        return Err(GraphError::Backward(format!(
                            "{} ({}) returned {} input gradients for {} inputs",
                            node.label,
                            op.name(),
                            in_grads.len(),
                            inputs.len()
                        )));
                    }
                    for (&x, gx) in inputs.iter().zip(in_grads) {
                        let (true, Some(gx)) = (needed[x.index()], gx) else {
                            continue;
                        };
                        if self.info(gx) != self.info(x) {
                            return Err(GraphError::Backward(format!(
                                "{} ({}): gradient {gx} of input {x} is {:?}{:?}, the input is {:?}{:?}",
                                node.label,
                                op.name(),
                                self.info(gx).dtype,
                                self.info(gx).shape,
                                self.info(x).dtype,
                                self.info(x).shape
                            )));
                        }
                        contributions.entry(x).or_default().push(gx);
                    }
                }
                NodeKind::Input { .. } | NodeKind::Const { .. } => {}
            }
        }
        grads.sort_by_key(|(p, _)| *p);
        self.grads = grads;
        Ok(())
    }

    /// For each value: is it f32, downstream of a parameter and upstream of a target?
    fn needs_grad(&self, targets: &[Value]) -> Vec<bool> {
        let mut from_param = vec![false; self.values.len()];
        for node in &self.nodes {
            let trainable = match &node.kind {
                NodeKind::Param { .. } => true,
                NodeKind::Op { inputs, .. } => inputs.iter().any(|v| from_param[v.index()]),
                _ => false,
            };
            for v in &node.outputs {
                from_param[v.index()] = trainable && self.info(*v).dtype == DType::F32;
            }
        }
        let mut to_loss = vec![false; self.values.len()];
        for t in targets {
            to_loss[t.index()] = true;
        }
        for node in self.nodes.iter().rev() {
            if node.outputs.iter().any(|v| to_loss[v.index()]) {
                for v in node.inputs() {
                    to_loss[v.index()] = true;
                }
            }
        }
        from_param
            .iter()
            .zip(&to_loss)
            .map(|(a, b)| *a && *b)
            .collect()
    }

    /// Sums gradient contributions in the order they were made (deterministic).
    fn sum_contributions(&mut self, list: Vec<Value>) -> Result<Value> {
        let mut it = list.into_iter();
        let mut acc = it.next().expect("contribution lists are never empty");
        for g in it {
            acc = match self.accumulate.clone() {
                Some(op) => self.apply(op, &[acc, g])?[0],
                None => self.add(acc, g)?,
            };
        }
        Ok(acc)
    }
}
