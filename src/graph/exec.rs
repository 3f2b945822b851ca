//! The executor: a plan bound to device buffers. Buffers, pipelines and bind groups are made
//! once in [`Executable::compile`]; each run writes the inputs, records every dispatch into one
//! compute pass, submits once, and reads back only what the caller asks for.

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

use super::bind::{self, Leaf, TrainArenas};
use super::ir::{Graph, ParamKind, Value};
use super::plan::{Plan, PlanOptions, Storage};
// Timestamp profiles wait for the device: native only.
#[cfg(not(target_arch = "wasm32"))]
use super::profile::{Profile, ProfileEntry};
use super::{GraphError, Result};
use crate::runtime::{Arena, DType, Dispatch, Runtime, Tensor};

/// Host data for an input or parameter.
#[derive(Clone, Copy, Debug)]
pub enum HostData<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

impl HostData<'_> {
    fn len(&self) -> usize {
        match self {
            HostData::F32(d) => d.len(),
            HostData::U32(d) => d.len(),
        }
    }
    fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::U32(_) => DType::U32,
        }
    }
    fn bytes(&self) -> &[u8] {
        match self {
            HostData::F32(d) => bytemuck::cast_slice(d),
            HostData::U32(d) => bytemuck::cast_slice(d),
        }
    }
}

impl<'a> From<&'a [f32]> for HostData<'a> {
    fn from(d: &'a [f32]) -> Self {
        HostData::F32(d)
    }
}
impl<'a> From<&'a Vec<f32>> for HostData<'a> {
    fn from(d: &'a Vec<f32>) -> Self {
        HostData::F32(d)
    }
}
impl<'a> From<&'a [u32]> for HostData<'a> {
    fn from(d: &'a [u32]) -> Self {
        HostData::U32(d)
    }
}
impl<'a> From<&'a Vec<u32>> for HostData<'a> {
    fn from(d: &'a Vec<u32>) -> Self {
        HostData::U32(d)
    }
}

/// What to compile a graph for.
#[derive(Clone, Copy, Debug)]
pub struct CompileOptions {
    pub plan: PlanOptions,
    /// Keep every parameter gradient of the last `Graph::backward` as an output (training).
    pub keep_grads: bool,
    /// Fold activations and residual adds into the products they consume (`fuse.rs`); off
    /// only to compare against the unfused graph.
    pub fuse: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            plan: PlanOptions::default(),
            keep_grads: false,
            fuse: true,
        }
    }
}

impl CompileOptions {
    pub fn inference() -> Self {
        Self::default()
    }
    pub fn training() -> Self {
        Self {
            keep_grads: true,
            ..Self::default()
        }
    }
    pub fn with_plan(mut self, plan: PlanOptions) -> Self {
        self.plan = plan;
        self
    }
}

/// A parameter with a gradient, as the optimizer sees it: views of entry `entry` of the
/// parameter and gradient arenas.
pub struct Trainable<'a> {
    pub name: &'a str,
    pub kind: ParamKind,
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub entry: usize,
}

/// A compiled graph: device buffers, dispatches and parameter state.
pub struct Executable {
    rt: Runtime,
    plan: Plan,
    infos: Vec<super::ir::TensorInfo>,
    tensors: Vec<Option<Tensor>>,
    /// The graph's dispatches, then any appended ones (the optimizer's).
    dispatches: Vec<Dispatch>,
    graph_dispatches: usize,
    /// Dispatches of the steps that do not depend on the inputs named by
    /// [`Executable::split_before_inputs`] (the forward of a training step); `None`: unsplit.
    first_phase: Option<usize>,
    /// The inputs only the second phase reads.
    second_phase_inputs: Vec<String>,
    /// Graph dispatches before each step (steps without dispatches repeat the count).
    step_dispatch_start: Vec<usize>,
    /// The values each step reads and writes, after fusion (which the caller's graph lacks).
    step_io: Vec<(Vec<Value>, Vec<Value>)>,
    /// The op name of each step, after fusion (`matmul+gelu`).
    step_ops: Vec<String>,
    /// (op name, node label) of each dispatch, for profiles.
    owners: Vec<(String, String)>,
    params: Vec<(Leaf, ParamKind, Option<Value>)>,
    inputs: Vec<Leaf>,
    by_name: HashMap<String, (bool, usize)>,
    /// Parameters and gradients packed in arenas (training executables only).
    arenas: Option<TrainArenas>,
    /// Kernel scratch the dispatches bind (see `Io::keep_alive`).
    _scratch: Vec<Box<dyn std::any::Any>>,
}

impl Executable {
    /// Plans `g` for `outputs` (plus the parameter gradients when `opts.keep_grads`), allocates
    /// every buffer and builds every dispatch.
    pub fn compile(
        rt: &Runtime,
        g: &Graph,
        outputs: &[Value],
        opts: &CompileOptions,
    ) -> Result<Self> {
        let fused;
        let g = if opts.fuse {
            let mut keep = outputs.to_vec();
            if opts.keep_grads {
                keep.extend(g.grads().iter().map(|&(_, grad)| grad));
            }
            fused = super::fuse::epilogues(g, &keep);
            &fused
        } else {
            g
        };
        // Training: every parameter gradient is computed in (or copied to) its entry of the
        // gradient arena, at the offset its parameter has in the parameter arena.
        let (plan, arenas) = if opts.keep_grads {
            let entry: HashMap<Value, usize> = bind::param_values(g)
                .into_iter()
                .enumerate()
                .map(|(i, v)| (v, i))
                .collect();
            let grads: Vec<(Value, usize)> = g
                .grads()
                .iter()
                .map(|(p, grad)| (*grad, entry[p]))
                .collect();
            let plan = Plan::with_grad_arena(g, outputs, opts.plan, &grads)?;
            (plan, Some(bind::train_arenas(rt, g)?))
        } else {
            (Plan::new(g, outputs, opts.plan)?, None)
        };
        let mut tensors: Vec<Option<Tensor>> = vec![None; g.num_values()];
        let leaves = bind::bind_leaves(rt, g, &plan, &mut tensors, arenas.as_ref())?;
        bind::bind_steps(rt, g, &plan, &mut tensors, arenas.as_ref())?;
        let mut rec = bind::record_dispatches(rt, g, &plan, &tensors)?;
        bind::record_arena_copies(rt, &plan, &tensors, arenas.as_ref(), &mut rec)?;

        let step_io = plan
            .steps()
            .iter()
            .map(|&id| (g.node(id).inputs().to_vec(), g.node(id).outputs.clone()))
            .collect();
        let step_ops = plan
            .steps()
            .iter()
            .map(|&id| g.node(id).op_name().to_string())
            .collect();
        Ok(Self {
            rt: rt.clone(),
            step_io,
            step_ops,
            plan,
            infos: g.values.iter().map(|v| v.info.clone()).collect(),
            tensors,
            graph_dispatches: rec.dispatches.len(),
            first_phase: None,
            second_phase_inputs: Vec::new(),
            step_dispatch_start: rec.step_dispatch_start,
            dispatches: rec.dispatches,
            owners: rec.owners,
            params: leaves.params,
            inputs: leaves.inputs,
            by_name: leaves.by_name,
            arenas,
            _scratch: rec.scratch,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// The op each step of the plan runs, as profiles name it: the graph's op, or the fused
    /// product that absorbed its consumer (`matmul+gelu`, see `CompileOptions::fuse`).
    pub fn step_ops(&self) -> &[String] {
        &self.step_ops
    }
    /// Dispatches per run (the optimizer's included once appended).
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    // ---- state -----------------------------------------------------------------------------

    fn leaf(&self, name: &str, param: bool) -> Result<&Leaf> {
        match self.by_name.get(name) {
            Some(&(true, i)) if param => Ok(&self.params[i].0),
            Some(&(false, i)) if !param => Ok(&self.inputs[i]),
            _ => Err(GraphError::UnknownName {
                kind: if param { "parameter" } else { "input" },
                name: name.into(),
            }),
        }
    }

    fn write(&self, what: &'static str, leaf: &Leaf, data: HostData<'_>) -> Result<()> {
        let info = &self.infos[leaf.value.index()];
        if data.dtype() != info.dtype {
            return Err(GraphError::DType {
                what,
                name: leaf.name.clone(),
                expected: info.dtype,
                got: data.dtype(),
            });
        }
        if data.len() != info.numel() {
            return Err(GraphError::Length {
                what,
                name: leaf.name.clone(),
                got: data.len(),
                expected: info.numel(),
                shape: info.shape.clone(),
            });
        }
        if let (Some(t), false) = (&self.tensors[leaf.value.index()], data.len() == 0) {
            self.rt.write_bytes(t, data.bytes());
        }
        Ok(())
    }

    /// Writes input `name` for the following runs (ignored when nothing requested uses it).
    pub fn set_input<'a>(&mut self, name: &str, data: impl Into<HostData<'a>>) -> Result<()> {
        let leaf = self.leaf(name, false)?;
        self.write("input", leaf, data.into())?;
        let (_, i) = self.by_name[name];
        self.inputs[i].set = true;
        Ok(())
    }

    /// Writes parameter `name`.
    pub fn set_param(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let leaf = self.leaf(name, true)?;
        self.write("parameter", leaf, HostData::F32(data))?;
        let (_, i) = self.by_name[name];
        self.params[i].0.set = true;
        Ok(())
    }

    /// The device tensor of parameter `name`.
    pub fn param(&self, name: &str) -> Result<&Tensor> {
        let leaf = self.leaf(name, true)?;
        Ok(self.tensors[leaf.value.index()]
            .as_ref()
            .expect("parameters always have buffers"))
    }

    /// Parameter names in build order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.params.iter().map(|(l, _, _)| l.name.as_str())
    }

    /// Reads parameter `name` back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_param(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.rt.download(self.param(name)?)?)
    }

    /// The gradient tensor of parameter `name` after a run (`None` when the loss does not
    /// depend on it or the plan was compiled without `keep_grads`): its gradient-arena entry.
    pub fn grad(&self, name: &str) -> Result<Option<&Tensor>> {
        let (true, i) = *self.by_name.get(name).unwrap_or(&(false, usize::MAX)) else {
            return Err(GraphError::UnknownName {
                kind: "parameter",
                name: name.into(),
            });
        };
        Ok(match (&self.arenas, self.params[i].2) {
            (Some(a), Some(_)) => Some(a.grads.tensor(i)),
            _ => None,
        })
    }

    /// Parameters with gradients, for the optimizer (none without `keep_grads`).
    pub fn trainables(&self) -> Vec<Trainable<'_>> {
        let Some(a) = &self.arenas else {
            return Vec::new();
        };
        self.params
            .iter()
            .enumerate()
            .filter(|(_, (_, _, grad))| grad.is_some())
            .map(|(i, (leaf, kind, _))| Trainable {
                name: &leaf.name,
                kind: *kind,
                param: a.params.tensor(i),
                grad: a.grads.tensor(i),
                entry: i,
            })
            .collect()
    }

    /// The parameter and gradient arenas of a training executable (`keep_grads`): entry `i`
    /// is parameter `i` in build order. The gradient arena's blocks hold every gradient after
    /// a run (zero for parameters the loss does not reach, and in the padding).
    pub fn arenas(&self) -> Option<(&Arena, &Arena)> {
        self.arenas.as_ref().map(|a| (&a.params, &a.grads))
    }

    /// Gradients copied into the gradient arena after the graph (the rest are computed there).
    pub fn arena_copies(&self) -> usize {
        self.plan.arena_copies().len()
    }

    /// Splits the run into two phases at the first step that depends on any of `inputs`:
    /// [`Executable::run_first_phase`] runs the steps before it (a training step's forward),
    /// after which outputs computed there can be read and those inputs set;
    /// [`Executable::run_second_phase`] runs the rest and the appended dispatches. Needs the
    /// graph `g` this was compiled from. Steps run in the compiled order, so the buffer plan
    /// holds; an output read between the phases must come from the first one (checked).
    pub fn split_before_inputs(
        &mut self,
        g: &Graph,
        inputs: &[&str],
        read_between: &[Value],
    ) -> Result<()> {
        let mut depends = vec![false; g.num_values()];
        for name in inputs {
            let v = g.by_name(name).ok_or_else(|| GraphError::UnknownName {
                kind: "input",
                name: (*name).into(),
            })?;
            depends[v.index()] = true;
        }
        let mut split = self.plan.steps().len();
        for (s, (ins, outs)) in self.step_io.iter().enumerate() {
            if ins.iter().any(|v| depends[v.index()]) {
                for v in outs {
                    depends[v.index()] = true;
                }
                split = split.min(s);
            }
        }
        for &v in read_between {
            let made_later = self.step_io[split..]
                .iter()
                .any(|(_, outs)| outs.contains(&v));
            if depends[v.index()] || made_later || !self.plan.outputs.contains(&v) {
                return Err(GraphError::NotAnOutput { value: v });
            }
        }
        self.second_phase_inputs = inputs.iter().map(|n| n.to_string()).collect();
        self.first_phase = Some(
            self.step_dispatch_start
                .get(split)
                .copied()
                .unwrap_or(self.graph_dispatches),
        );
        Ok(())
    }

    /// The first phase of a split run (see [`Executable::split_before_inputs`]): one submit.
    /// Inputs of the second phase need not be set yet.
    pub fn run_first_phase(&self) -> Result<()> {
        let k = self.first_phase.ok_or(GraphError::NotSplit)?;
        self.run_first_phase_checks()?;
        self.rt.run(&self.dispatches[..k]);
        Ok(())
    }

    /// What the first phase needs: every live parameter, and every input it reads, set.
    fn run_first_phase_checks(&self) -> Result<()> {
        if let Some((l, _, _)) = self.params.iter().find(|(l, _, _)| l.live && !l.set) {
            return Err(GraphError::ParamNotSet(l.name.clone()));
        }
        let later = |l: &Leaf| self.second_phase_inputs.contains(&l.name);
        if let Some(l) = self.inputs.iter().find(|l| l.live && !l.set && !later(l)) {
            return Err(GraphError::InputNotSet(l.name.clone()));
        }
        Ok(())
    }

    /// The second phase of a split run, appended dispatches included: one submit.
    pub fn run_second_phase(&self) -> Result<()> {
        let k = self.first_phase.ok_or(GraphError::NotSplit)?;
        self.check_ready()?;
        self.rt.run(&self.dispatches[k..]);
        Ok(())
    }

    /// [`Executable::run_first_phase`] with a GPU timestamp around every dispatch (needs
    /// `Capabilities::timestamps`): the same work, submitted in chunks, waited for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_first_phase_timed(&self) -> Result<Profile> {
        let k = self.first_phase.ok_or(GraphError::NotSplit)?;
        self.run_first_phase_checks()?;
        let times = self.rt.run_timed(&self.dispatches[..k])?;
        Ok(self.profile_of(0, times))
    }

    /// [`Executable::run_second_phase`] with GPU timestamps: the profiles of the graph's part
    /// (a training step's backward) and of the appended dispatches (the optimizer's).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_second_phase_timed(&self) -> Result<(Profile, Profile)> {
        let k = self.first_phase.ok_or(GraphError::NotSplit)?;
        self.check_ready()?;
        let mut times = self.rt.run_timed(&self.dispatches[k..])?;
        let graph = self.graph_dispatches.saturating_sub(k).min(times.len());
        let appended = times.split_off(graph);
        Ok((
            self.profile_of(k, times),
            self.profile_of(k + graph, appended),
        ))
    }

    /// Names the dispatch times of a run that started at dispatch `first`.
    #[cfg(not(target_arch = "wasm32"))]
    fn profile_of(&self, first: usize, times: Vec<Duration>) -> Profile {
        let owners = self.owners[first..].iter();
        let kernels = self.dispatches[first..].iter().map(Dispatch::label);
        Profile {
            entries: owners
                .zip(kernels)
                .zip(times)
                .map(|(((op, scope), kernel), time)| ProfileEntry {
                    op: op.clone(),
                    scope: scope.clone(),
                    kernel: kernel.to_string(),
                    time,
                })
                .collect(),
        }
    }

    /// Adds dispatches (e.g. the optimizer's) that run after the graph in the same submit.
    pub fn append_dispatches(&mut self, label: &str, dispatches: Vec<Dispatch>) {
        for d in dispatches {
            self.owners.push((d.label().to_string(), label.to_string()));
            self.dispatches.push(d);
        }
    }

    // ---- running ---------------------------------------------------------------------------

    fn check_ready(&self) -> Result<()> {
        if let Some((l, _, _)) = self.params.iter().find(|(l, _, _)| l.live && !l.set) {
            return Err(GraphError::ParamNotSet(l.name.clone()));
        }
        if let Some(l) = self.inputs.iter().find(|l| l.live && !l.set) {
            return Err(GraphError::InputNotSet(l.name.clone()));
        }
        Ok(())
    }

    /// Runs every dispatch: one compute pass, one submit (does not wait).
    pub fn run(&self) -> Result<()> {
        self.check_ready()?;
        self.rt.run(&self.dispatches);
        Ok(())
    }

    /// Runs the graph's own dispatches without the appended ones (e.g. the loss without an
    /// optimizer update): one pass, one submit.
    pub fn run_graph(&self) -> Result<()> {
        self.check_ready()?;
        self.rt.run(&self.dispatches[..self.graph_dispatches]);
        Ok(())
    }

    /// Sets the inputs, runs (appended dispatches included), and reads back every requested output, in request order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_with<'a>(&mut self, inputs: &[(&str, HostData<'a>)]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.run_with_async(inputs))
    }

    /// [`Executable::run_with`] without blocking: sets the inputs, runs and awaits the
    /// requested outputs (the only form in a browser).
    pub async fn run_with_async<'a>(
        &mut self,
        inputs: &[(&str, HostData<'a>)],
    ) -> Result<Vec<Vec<f32>>> {
        for (name, data) in inputs {
            self.set_input(name, *data)?;
        }
        self.run()?;
        let mut outs = Vec::with_capacity(self.plan.outputs.len());
        for v in self.plan.outputs.clone() {
            outs.push(self.read_async(v).await?);
        }
        Ok(outs)
    }

    /// Reads a requested output (or parameter/input) of the last run (waits for the GPU).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, v: Value) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async(v))
    }

    /// [`Executable::read`] without blocking.
    pub async fn read_async(&self, v: Value) -> Result<Vec<f32>> {
        Ok(self.rt.download_async(self.tensor(v)?).await?)
    }

    /// The tensor holding a requested output (valid until the next run).
    pub fn tensor(&self, v: Value) -> Result<&Tensor> {
        let readable = self.plan.outputs.contains(&v)
            || matches!(self.plan.storage(v), Storage::Leaf)
            || self.params.iter().any(|(l, _, _)| l.value == v);
        match (readable, self.tensors.get(v.index())) {
            (true, Some(Some(t))) => Ok(t),
            _ => Err(GraphError::NotAnOutput { value: v }),
        }
    }

    /// Runs once with a GPU timestamp around every dispatch (needs `Capabilities::timestamps`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self) -> Result<Profile> {
        self.check_ready()?;
        let times = self.rt.run_timed(&self.dispatches)?;
        Ok(self.profile_of(0, times))
    }
}
