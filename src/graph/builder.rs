//! Building a [`Graph`]: inputs, parameters, constants and op nodes, with shapes inferred and
//! checked as each node is added; scopes; queries. Model code calls the op methods
//! (`g.matmul(x, w)?`) defined next to each op in `ops/`.

use std::sync::Arc;

use super::ir::{Graph, Node, NodeId, NodeKind, Op, ParamKind, TensorInfo, Value, ValueInfo};
use super::{GraphError, Result};
use crate::DType;

impl Graph {
    // ---- leaves ----------------------------------------------------------------------------

    /// An f32 input given to every run.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<Value> {
        self.input_typed(name, shape, DType::F32)
    }

    /// An input of another element type (u32 labels, indices, masks).
    pub fn input_typed(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Value> {
        self.claim_name(name)?;
        let v = self.leaf(
            NodeKind::Input { name: name.into() },
            TensorInfo {
                shape: shape.to_vec(),
                dtype,
            },
            name.into(),
        );
        self.names.insert(name.into(), v);
        Ok(v)
    }

    /// A trained f32 parameter; its optimizer group comes from [`ParamKind::from_name`].
    pub fn param(&mut self, name: &str, shape: &[usize]) -> Result<Value> {
        self.param_of_kind(name, shape, ParamKind::from_name(name))
    }

    /// A parameter whose kind the name does not tell.
    pub fn param_of_kind(&mut self, name: &str, shape: &[usize], kind: ParamKind) -> Result<Value> {
        self.claim_name(name)?;
        let v = self.leaf(
            NodeKind::Param {
                name: name.into(),
                kind,
            },
            TensorInfo::f32(shape),
            name.into(),
        );
        self.names.insert(name.into(), v);
        Ok(v)
    }

    /// An f32 constant fixed at build time (uploaded once per plan).
    pub fn constant(&mut self, data: &[f32], shape: &[usize]) -> Result<Value> {
        let info = TensorInfo::f32(shape);
        if data.len() != info.numel() {
            return Err(GraphError::Length {
                what: "constant",
                name: self.label(),
                got: data.len(),
                expected: info.numel(),
                shape: shape.to_vec(),
            });
        }
        let label = self.label();
        Ok(self.leaf(
            NodeKind::Const {
                data: data.to_vec(),
            },
            info,
            label,
        ))
    }

    fn claim_name(&self, name: &str) -> Result<()> {
        if self.names.contains_key(name) {
            return Err(GraphError::DuplicateName(name.into()));
        }
        Ok(())
    }

    fn leaf(&mut self, kind: NodeKind, info: TensorInfo, label: String) -> Value {
        let node = NodeId(self.nodes.len() as u32);
        let v = Value(self.values.len() as u32);
        self.values.push(ValueInfo {
            info,
            producer: node,
            output: 0,
        });
        self.nodes.push(Node {
            kind,
            outputs: vec![v],
            label,
        });
        v
    }

    // ---- op nodes --------------------------------------------------------------------------

    /// Adds a node applying `op` to `inputs`; returns its outputs. Shapes are checked here.
    pub fn apply(&mut self, op: Arc<dyn Op>, inputs: &[Value]) -> Result<Vec<Value>> {
        for &v in inputs {
            self.check(v)?;
        }
        let infos: Vec<&TensorInfo> = inputs.iter().map(|&v| self.info(v)).collect();
        let outs = match op.arity() {
            Some(n) if n != infos.len() => Err(format!("takes {n} inputs, got {}", infos.len())),
            _ => op.infer(&infos),
        };
        let outs = outs.map_err(|detail| GraphError::Shape {
            node: self.label_or(op.name()),
            op: op.name().into(),
            inputs: infos
                .iter()
                .map(|i| format!("{:?}{:?}", i.dtype, i.shape))
                .collect::<Vec<_>>()
                .join(", "),
            detail,
        })?;
        let node = NodeId(self.nodes.len() as u32);
        let mut values = Vec::with_capacity(outs.len());
        for (output, info) in outs.into_iter().enumerate() {
            values.push(Value(self.values.len() as u32));
            self.values.push(ValueInfo {
                info,
                producer: node,
                output,
            });
        }
        let label = self.label_or(op.name());
        self.nodes.push(Node {
            kind: NodeKind::Op {
                op,
                inputs: inputs.to_vec(),
            },
            outputs: values.clone(),
            label,
        });
        Ok(values)
    }

    /// [`Graph::apply`] for single-output ops.
    pub fn apply1(&mut self, op: impl Op + 'static, inputs: &[Value]) -> Result<Value> {
        let outs = self.apply(Arc::new(op), inputs)?;
        debug_assert_eq!(outs.len(), 1, "apply1 on a multi-output op");
        Ok(outs[0])
    }

    /// Uses `op` (two inputs of one shape, one output) to sum gradient contributions in
    /// [`Graph::backward`] instead of the elementwise `add`.
    pub fn set_grad_accumulator(&mut self, op: Arc<dyn Op>) {
        self.accumulate = Some(op);
    }

    // ---- scopes and labels -----------------------------------------------------------------

    /// Enters a module scope: nodes built until the matching `pop_scope` carry the joined path
    /// (`model.pixel_level_module.decoder`) as their label.
    pub fn push_scope(&mut self, name: impl Into<String>) {
        self.scope.push(name.into());
    }

    pub fn pop_scope(&mut self) {
        self.scope.pop();
    }

    /// Runs `f` inside scope `name`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.push_scope(name);
        let r = f(self);
        self.pop_scope();
        r
    }

    pub(crate) fn scope_mut(&mut self) -> &mut Vec<String> {
        &mut self.scope
    }

    fn label(&self) -> String {
        self.scope.join(".")
    }

    fn label_or(&self, op: &str) -> String {
        if self.scope.is_empty() {
            op.to_string()
        } else {
            format!("{}.{op}", self.label())
        }
    }

    // ---- queries ---------------------------------------------------------------------------

    pub fn info(&self, v: Value) -> &TensorInfo {
        &self.values[v.index()].info
    }
    pub fn shape(&self, v: Value) -> &[usize] {
        &self.values[v.index()].info.shape
    }
    pub fn value(&self, v: Value) -> &ValueInfo {
        &self.values[v.index()]
    }
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }
    /// The node that produces `v`.
    pub fn producer(&self, v: Value) -> &Node {
        &self.nodes[self.values[v.index()].producer.index()]
    }
    pub fn num_values(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn check(&self, v: Value) -> Result<()> {
        if v.index() >= self.values.len() {
            return Err(GraphError::UnknownValue {
                value: v,
                count: self.values.len(),
            });
        }
        Ok(())
    }

    /// The input or parameter called `name`.
    pub fn by_name(&self, name: &str) -> Option<Value> {
        self.names.get(name).copied()
    }

    /// Parameters in build order: (name, value, kind).
    pub fn params(&self) -> impl Iterator<Item = (&str, Value, ParamKind)> + '_ {
        self.nodes.iter().filter_map(|n| match &n.kind {
            NodeKind::Param { name, kind } => Some((name.as_str(), n.outputs[0], *kind)),
            _ => None,
        })
    }

    /// Inputs in build order: (name, value).
    pub fn inputs(&self) -> impl Iterator<Item = (&str, Value)> + '_ {
        self.nodes.iter().filter_map(|n| match &n.kind {
            NodeKind::Input { name } => Some((name.as_str(), n.outputs[0])),
            _ => None,
        })
    }

    /// The gradient of parameter `param` after [`Graph::backward`] (`None` when the loss does
    /// not depend on it).
    pub fn grad(&self, param: Value) -> Option<Value> {
        self.grads
            .iter()
            .find(|(p, _)| *p == param)
            .map(|(_, g)| *g)
    }

    /// All (parameter, gradient) pairs from the last [`Graph::backward`].
    pub fn grads(&self) -> &[(Value, Value)] {
        &self.grads
    }
}
