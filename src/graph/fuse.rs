//! Compile-time fusion into the matmul epilogue: an activation (`relu`, `gelu`) or a residual
//! `add` that consumes a product is computed by the product's own kernel, which saves one
//! elementwise pass (a read and a write of the product) and one dispatch each.
//!
//! The model code keeps writing `linear → gelu → linear → add` as the paper does; fusion
//! rewrites a copy of the graph just before planning, after the backward was built, so backward
//! rules never see a fused op. Value and node ids are kept: the fused product takes over its
//! consumer's output value, and the consumer is left in place with no outputs (never live).
//!
//! A product keeps writing its pre-activation (output 1) when anything else reads it — in
//! training, the activation's backward.

use std::sync::Arc;

use super::ir::{Graph, NodeId, NodeKind, Op, Value};
use super::ops::{Binary, BinaryKind, MatMul, Reshape, Unary, UnaryKind};
use crate::ops::matmul::Activation;

/// `g` with every fusable activation and residual add folded into its product. `keep` lists
/// the values the caller reads (outputs, gradients): they are never fused away.
pub(crate) fn epilogues(g: &Graph, keep: &[Value]) -> Graph {
    let mut f = Fusion::new(g, keep);
    for m in 0..g.nodes.len() {
        let Some(mm) = f.plain_matmul(m) else {
            continue;
        };
        if !f.activation(m, &mm) {
            f.residual(m, &mm);
        }
    }
    f.g
}

struct Fusion {
    g: Graph,
    /// The op nodes reading each value, in node order (a node once per value it reads).
    readers: Vec<Vec<usize>>,
    kept: Vec<bool>,
}

/// A product's value `p`, and the reshape `p → r` between it and its consumer, if any.
struct Chain {
    p: Value,
    reshape: Option<(usize, Value)>,
    /// The consumer node and the value it reads (`r`, or `p`).
    consumer: usize,
    read: Value,
}

impl Fusion {
    fn new(g: &Graph, keep: &[Value]) -> Self {
        let mut readers = vec![Vec::new(); g.num_values()];
        for (i, node) in g.nodes.iter().enumerate() {
            let mut seen: Vec<Value> = Vec::new();
            for &v in node.inputs() {
                if !seen.contains(&v) {
                    seen.push(v);
                    readers[v.index()].push(i);
                }
            }
        }
        let mut kept = vec![false; g.num_values()];
        for v in keep {
            kept[v.index()] = true;
        }
        Self {
            g: g.clone(),
            readers,
            kept,
        }
    }

    fn op_of<T: 'static>(&self, node: usize) -> Option<&T> {
        let op: &dyn Op = self.g.nodes[node].op()?.as_ref();
        (op as &dyn std::any::Any).downcast_ref::<T>()
    }

    /// The node's op if it is a product nothing was fused into yet.
    fn plain_matmul(&self, m: usize) -> Option<MatMul> {
        let mm = self.op_of::<MatMul>(m)?;
        (!mm.is_fused() && !mm.keep_pre && self.g.nodes[m].outputs.len() == 1).then(|| mm.clone())
    }

    /// The readers of `p` (and of `r` through one reshape) that `want` accepts, as chains.
    fn chains(&self, p: Value, want: impl Fn(&Self, usize) -> bool) -> Vec<Chain> {
        let mut out = Vec::new();
        for &c in &self.readers[p.index()] {
            if want(self, c) {
                out.push(Chain {
                    p,
                    reshape: None,
                    consumer: c,
                    read: p,
                });
            } else if self.op_of::<Reshape>(c).is_some() {
                let r = self.g.nodes[c].outputs[0];
                for &u in &self.readers[r.index()] {
                    if want(self, u) {
                        out.push(Chain {
                            p,
                            reshape: Some((c, r)),
                            consumer: u,
                            read: r,
                        });
                    }
                }
            }
        }
        out
    }

    /// Whether anything but the chain reads `p` (or `r`), or the caller keeps either.
    fn read_elsewhere(&self, ch: &Chain) -> bool {
        let others = |v: Value, skip: usize| self.readers[v.index()].iter().any(|&n| n != skip);
        match ch.reshape {
            None => self.kept[ch.p.index()] || others(ch.p, ch.consumer),
            Some((rn, r)) => {
                self.kept[ch.p.index()]
                    || self.kept[r.index()]
                    || others(ch.p, rn)
                    || others(r, ch.consumer)
            }
        }
    }

    /// `p → [reshape] → relu | gelu`: the product applies the activation.
    fn activation(&mut self, m: usize, mm: &MatMul) -> bool {
        let p = self.g.nodes[m].outputs[0];
        let act = |f: &Self, n: usize| match f.op_of::<Unary>(n).map(|u| u.0) {
            Some(UnaryKind::Relu) => Some(Activation::Relu),
            Some(UnaryKind::Gelu) => Some(Activation::Gelu),
            _ => None,
        };
        let Some(ch) = self
            .chains(p, |f, n| act(f, n).is_some())
            .into_iter()
            .next()
        else {
            return false;
        };
        let y = self.g.nodes[ch.consumer].outputs[0];
        let keep_pre = self.read_elsewhere(&ch);
        let op = MatMul {
            activation: act(self, ch.consumer).expect("chosen for its activation"),
            keep_pre,
            out_shape: self.reshaped(p, y),
            ..mm.clone()
        };
        let mut outputs = vec![y];
        if keep_pre {
            outputs.push(p);
        }
        self.rewrite(m, op, None, outputs, ch.consumer);
        true
    }

    /// `p → [reshape] → add(p, x)` with `x` of the same shape, made before the product: the
    /// product adds `x` in its epilogue.
    fn residual(&mut self, m: usize, mm: &MatMul) -> bool {
        let p = self.g.nodes[m].outputs[0];
        let is_add = |f: &Self, n: usize| {
            f.op_of::<Binary>(n).is_some_and(|b| b.0 == BinaryKind::Add)
                && f.g.nodes[n].outputs.len() == 1
        };
        for ch in self.chains(p, is_add) {
            let ins = self.g.nodes[ch.consumer].inputs().to_vec();
            let Some(&x) = ins.iter().find(|&&v| v != ch.read) else {
                continue; // add(p, p)
            };
            let z = self.g.nodes[ch.consumer].outputs[0];
            let made_before = self.g.values[x.index()].producer.index() < m;
            let same_shape =
                self.g.shape(x) == self.g.shape(z) && self.g.shape(ch.read) == self.g.shape(z);
            if !made_before || !same_shape || self.read_elsewhere(&ch) {
                continue;
            }
            let op = MatMul {
                residual: true,
                out_shape: self.reshaped(p, z),
                ..mm.clone()
            };
            self.rewrite(m, op, Some(x), vec![z], ch.consumer);
            return true;
        }
        false
    }

    /// `Some(shape of y)` when it is not the product's own shape.
    fn reshaped(&self, p: Value, y: Value) -> Option<Vec<usize>> {
        (self.g.shape(y) != self.g.shape(p)).then(|| self.g.shape(y).to_vec())
    }

    /// Node `m` runs `op` (with `extra` appended to its inputs) and produces `outputs`; the
    /// consumer it absorbed produces nothing any more.
    fn rewrite(
        &mut self,
        m: usize,
        op: MatMul,
        extra: Option<Value>,
        outputs: Vec<Value>,
        consumer: usize,
    ) {
        let node = &mut self.g.nodes[m];
        let NodeKind::Op { inputs, .. } = &node.kind else {
            unreachable!("a matmul node is an op node")
        };
        let mut inputs = inputs.clone();
        if let Some(x) = extra {
            inputs.push(x);
            self.readers[x.index()].push(m);
        }
        let old = std::mem::replace(&mut node.outputs, outputs.clone());
        node.kind = NodeKind::Op {
            op: Arc::new(op),
            inputs,
        };
        for (k, &v) in outputs.iter().enumerate() {
            let info = &mut self.g.values[v.index()];
            info.producer = NodeId(m as u32);
            info.output = k;
        }
        // A pre-activation nothing reads any more is produced by nobody.
        for v in old.into_iter().filter(|v| !outputs.contains(v)) {
            self.g.values[v.index()].output = usize::MAX;
        }
        self.g.nodes[consumer].outputs.clear();
        let NodeKind::Op { inputs, .. } = &self.g.nodes[consumer].kind else {
            unreachable!("a consumer is an op node")
        };
        for v in inputs {
            self.readers[v.index()].retain(|&n| n != consumer);
        }
    }
}
