//! The buffer planner: which nodes run, in what order, and which buffer holds each value.
//!
//! Leaves (inputs, parameters, constants) own their buffers. Every other value lives in one of
//! a set of shared buffers ("slots"): a value takes a free slot when its node runs and gives it
//! back after its last reader, so values whose lifetimes do not overlap share memory. A value a
//! node may overwrite in place ([`Op::inplace`](super::Op::inplace)) hands its slot straight to
//! that node's output when nothing reads it later. Requested outputs stay live to the end.

use super::ir::{Graph, NodeId, NodeKind, Value};
use super::Result;

/// Planner switches; turning reuse off gives every value its own buffer (the reference the
/// planned memory is compared with, and a way to rule the planner out when debugging).
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Share buffers between values whose lifetimes do not overlap.
    pub reuse: bool,
    /// Let ops that support it write their output over a dying input.
    pub inplace: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            reuse: true,
            inplace: true,
        }
    }
}

/// Where a value's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Not computed: nothing requested depends on it.
    Dead,
    /// A leaf with its own buffer (input, parameter, constant).
    Leaf,
    /// Shared buffer `slot`.
    Slot(usize),
    /// The buffer of another value (a reshape or detach).
    View(Value),
    /// Entry `k` of the gradient arena: the gradient of the arena's parameter `k`, kept to the
    /// end of the run and never shared with another value.
    Arena(usize),
}

/// Memory the plan needs, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanStats {
    /// Sum of the shared buffers: the planned peak for intermediate values.
    pub planned_bytes: u64,
    /// What the same values would need with a buffer each (no reuse).
    pub unshared_bytes: u64,
    /// The largest total of values live at one step: no assignment can do better.
    pub live_peak_bytes: u64,
    /// Inputs, parameters and constants (outside the shared buffers).
    pub leaf_bytes: u64,
    /// Number of shared buffers.
    pub slots: usize,
    /// Op nodes run (views included) and values that ran in place.
    pub steps: usize,
    pub inplace: usize,
}

impl std::fmt::Display for PlanStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        write!(
            f,
            "{} steps, {} shared buffers: {:.2} MiB planned vs {:.2} MiB unshared (live peak {:.2} MiB, {} in place); leaves {:.2} MiB",
            self.steps,
            self.slots,
            mib(self.planned_bytes),
            mib(self.unshared_bytes),
            mib(self.live_peak_bytes),
            self.inplace,
            mib(self.leaf_bytes)
        )
    }
}

/// Lifetime of a value that owns a slot: written at step `def`, last read at step `last`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetime {
    pub value: Value,
    pub slot: usize,
    pub def: usize,
    pub last: usize,
    /// Took its slot from a dying input of the same step.
    pub inplace: bool,
}

/// The static schedule and buffer assignment of a graph for a set of requested values.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Op nodes to run, in order.
    pub(crate) steps: Vec<NodeId>,
    /// `Some(i)` where step's output 0 overwrites its input `i`.
    pub(crate) inplace: Vec<Option<usize>>,
    pub(crate) storage: Vec<Storage>,
    pub(crate) slot_bytes: Vec<u64>,
    pub(crate) lifetimes: Vec<Lifetime>,
    pub(crate) outputs: Vec<Value>,
    /// Gradients that could not be computed in their arena entry, copied there after the last
    /// step: (the gradient value, its arena entry).
    pub(crate) arena_copies: Vec<(Value, usize)>,
    stats: PlanStats,
}

/// Bytes a value takes in a buffer (binding sizes are multiples of 4, never 0).
fn bytes_of(g: &Graph, v: Value) -> u64 {
    g.info(v).bytes().div_ceil(4).max(1) * 4
}

/// Best-fit assignment of buffer slots: a request takes the smallest free slot that holds it,
/// else grows the largest free slot; with nothing free (or reuse off) it opens a new slot.
#[derive(Debug)]
pub(crate) struct SlotAllocator {
    bytes: Vec<u64>,
    free: Vec<usize>,
    reuse: bool,
}

impl SlotAllocator {
    pub(crate) fn new(reuse: bool) -> Self {
        Self {
            bytes: Vec::new(),
            free: Vec::new(),
            reuse,
        }
    }

    /// A slot of at least `need` bytes for a value that starts now.
    pub(crate) fn alloc(&mut self, need: u64) -> usize {
        if !self.reuse || self.free.is_empty() {
            self.bytes.push(need);
            return self.bytes.len() - 1;
        }
        let bytes = &self.bytes;
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &f)| bytes[f] >= need)
            .min_by_key(|(_, &f)| bytes[f]);
        let pos = match fit {
            Some((pos, _)) => pos,
            None => {
                self.free
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, &f)| bytes[f])
                    .expect("free is not empty")
                    .0
            }
        };
        let slot = self.free.swap_remove(pos);
        self.bytes[slot] = self.bytes[slot].max(need);
        slot
    }

    /// `slot`'s value is dead: later values may take the slot.
    pub(crate) fn release(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// The size of every slot opened.
    pub(crate) fn into_sizes(self) -> Vec<u64> {
        self.bytes
    }
}

/// Which nodes run: those that some requested value depends on.
fn live_nodes(g: &Graph, outputs: &[Value]) -> Vec<bool> {
    let mut wanted = vec![false; g.num_values()];
    for &v in outputs {
        wanted[v.index()] = true;
    }
    let mut live_node = vec![false; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|v| wanted[v.index()]) {
            live_node[i] = true;
            for v in node.inputs() {
                wanted[v.index()] = true;
            }
        }
    }
    live_node
}

/// The steps (live op nodes in order), the storage kind of every value of a live node (slots
/// still unassigned), and every value's root (views point at the value owning their buffer).
fn classify(g: &Graph, live_node: &[bool]) -> (Vec<NodeId>, Vec<Storage>, Vec<Value>) {
    let nv = g.num_values();
    let mut storage = vec![Storage::Dead; nv];
    let mut steps = Vec::new();
    let mut root: Vec<Value> = (0..nv as u32).map(Value).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        if !live_node[i] {
            continue;
        }
        match &node.kind {
            NodeKind::Op { op, inputs } => {
                steps.push(NodeId(i as u32));
                let view = op.view_of();
                for (k, &v) in node.outputs.iter().enumerate() {
                    if let (0, Some(j)) = (k, view) {
                        let r = root[inputs[j].index()];
                        root[v.index()] = r;
                        storage[v.index()] = Storage::View(r);
                    } else {
                        storage[v.index()] = Storage::Slot(usize::MAX);
                    }
                }
            }
            _ => storage[node.outputs[0].index()] = Storage::Leaf,
        }
    }
    (steps, storage, root)
}

/// The last step that reads each root value; requested outputs live to the end (`steps.len()`).
fn last_uses(g: &Graph, steps: &[NodeId], root: &[Value], outputs: &[Value]) -> Vec<usize> {
    let mut last = vec![0usize; g.num_values()];
    for (s, id) in steps.iter().enumerate() {
        let node = g.node(*id);
        for v in &node.outputs {
            last[v.index()] = last[v.index()].max(s);
        }
        for v in node.inputs() {
            let r = root[v.index()];
            last[r.index()] = last[r.index()].max(s);
        }
    }
    for &v in outputs {
        last[root[v.index()].index()] = steps.len();
    }
    last
}

/// Places each gradient (value, arena entry) of `grads` in its entry: the value's root then
/// takes no slot and no other value ever shares it. The rest are returned, to be copied into
/// their entries after the last step:
/// - a root that is not an op output with a slot of its own (a constant seed, a parameter),
///   or that is also another entry's gradient (two parameters with one gradient value);
/// - an output of a step that reads a value already in the arena: one dispatch cannot bind a
///   buffer both read-only and writable, so it is computed in a slot and copied. (Two arena
///   outputs of one step are fine: both are bound writable.)
fn place_grads(
    g: &Graph,
    steps: &[NodeId],
    storage: &mut [Storage],
    root: &[Value],
    grads: &[(Value, usize)],
) -> Vec<(Value, usize)> {
    let mut copies = Vec::new();
    let mut claims = vec![0usize; g.num_values()];
    for &(v, _) in grads {
        claims[root[v.index()].index()] += 1;
    }
    let mut wanted: Vec<Option<usize>> = vec![None; g.num_values()];
    for &(v, k) in grads {
        let r = root[v.index()];
        // A root shared by two entries stays in a slot: a copy from one entry into another
        // would bind the arena both ways.
        let own_slot = storage[r.index()] == Storage::Slot(usize::MAX);
        if own_slot && claims[r.index()] == 1 && bytes_of(g, r) == bytes_of(g, v) {
            wanted[r.index()] = Some(k);
        } else {
            copies.push((v, k));
        }
    }
    let in_arena = |storage: &[Storage], v: &Value| {
        matches!(storage[root[v.index()].index()], Storage::Arena(_))
    };
    for id in steps {
        let node = g.node(*id);
        let reads_arena = node.inputs().iter().any(|v| in_arena(storage, v));
        for v in &node.outputs {
            if let Some(k) = wanted[v.index()] {
                if reads_arena {
                    copies.push((*v, k));
                } else {
                    storage[v.index()] = Storage::Arena(k);
                }
            }
        }
    }
    // Report copies by the gradient value itself (a view's root may have been demoted).
    let named: std::collections::HashMap<usize, Value> =
        grads.iter().map(|&(v, k)| (k, v)).collect();
    copies.into_iter().map(|(_, k)| (named[&k], k)).collect()
}

/// What [`assign_slots`] decides.
struct Assignment {
    slot_bytes: Vec<u64>,
    lifetimes: Vec<Lifetime>,
    inplace: Vec<Option<usize>>,
}

/// Walks the steps: allocates outputs (see [`SlotAllocator`]), hands dying inputs to in-place
/// outputs, then frees what dies at the step. Fills in `storage`'s slots.
fn assign_slots(
    g: &Graph,
    steps: &[NodeId],
    storage: &mut [Storage],
    root: &[Value],
    last: &[usize],
    opts: PlanOptions,
) -> Assignment {
    let end = steps.len();
    let mut dies_at: Vec<Vec<Value>> = vec![Vec::new(); end + 1];
    for (v, st) in storage.iter().enumerate() {
        if matches!(st, Storage::Slot(_)) {
            dies_at[last[v]].push(Value(v as u32));
        }
    }
    let mut slots = SlotAllocator::new(opts.reuse);
    let mut lifetimes = Vec::new();
    let mut inplace = vec![None; end];
    for (s, id) in steps.iter().enumerate() {
        let node = g.node(*id);
        let op = node.op().expect("steps are op nodes");
        let mut handed_over = None;
        for (k, &v) in node.outputs.iter().enumerate() {
            if storage[v.index()] != Storage::Slot(usize::MAX) {
                continue;
            }
            let need = bytes_of(g, v);
            // An in-place output takes the slot of an input that dies here, has the same size
            // and is not read twice by this node.
            let donor = (k == 0 && opts.inplace)
                .then(|| op.inplace())
                .flatten()
                .filter(|&i| {
                    let x = node.inputs()[i];
                    let r = root[x.index()];
                    matches!(storage[r.index()], Storage::Slot(_))
                        && last[r.index()] == s
                        && bytes_of(g, x) == need
                        && node
                            .inputs()
                            .iter()
                            .filter(|&&y| root[y.index()] == r)
                            .count()
                            == 1
                });
            let (slot, took) = if let Some(i) = donor {
                let r = root[node.inputs()[i].index()];
                let Storage::Slot(slot) = storage[r.index()] else {
                    unreachable!("donor checked to own a slot")
                };
                inplace[s] = Some(i);
                handed_over = Some(r);
                (slot, true)
            } else {
                (slots.alloc(need), false)
            };
            storage[v.index()] = Storage::Slot(slot);
            lifetimes.push(Lifetime {
                value: v,
                slot,
                def: s,
                last: last[v.index()],
                inplace: took,
            });
        }
        for r in &dies_at[s] {
            if Some(*r) == handed_over {
                continue;
            }
            if let Storage::Slot(slot) = storage[r.index()] {
                slots.release(slot);
            }
        }
    }
    Assignment {
        slot_bytes: slots.into_sizes(),
        lifetimes,
        inplace,
    }
}

/// The memory report: planned, unshared and peak live bytes.
fn plan_stats(g: &Graph, storage: &[Storage], a: &Assignment, steps: usize) -> PlanStats {
    // Live bytes per step as a difference array (+b where a value starts, −b after it ends).
    let mut delta = vec![0i64; steps + 2];
    let mut unshared = 0;
    for lt in &a.lifetimes {
        let b = bytes_of(g, lt.value);
        unshared += b;
        // A value that took its input's slot in place does not add to the live total.
        let from = if lt.inplace { lt.def + 1 } else { lt.def };
        if from <= lt.last {
            delta[from] += b as i64;
            delta[lt.last + 1] -= b as i64;
        }
    }
    let live: Vec<u64> = delta
        .iter()
        .scan(0i64, |acc, d| {
            *acc += d;
            Some(*acc as u64)
        })
        .collect();
    let leaf_bytes = (0..storage.len())
        .filter(|&v| storage[v] == Storage::Leaf)
        .map(|v| bytes_of(g, Value(v as u32)))
        .sum();
    PlanStats {
        planned_bytes: a.slot_bytes.iter().sum(),
        unshared_bytes: unshared,
        live_peak_bytes: live.iter().copied().max().unwrap_or(0),
        leaf_bytes,
        slots: a.slot_bytes.len(),
        steps,
        inplace: a.inplace.iter().filter(|i| i.is_some()).count(),
    }
}

impl Plan {
    /// Plans the nodes that `outputs` depend on.
    pub fn new(g: &Graph, outputs: &[Value], opts: PlanOptions) -> Result<Plan> {
        Self::with_grad_arena(g, outputs, opts, &[])
    }

    /// Like [`Plan::new`], with each (gradient value, arena entry) of `grads` computed in the
    /// gradient arena ([`Storage::Arena`]) where the wgpu binding rules allow, else copied
    /// there after the last step ([`Plan::arena_copies`]). The gradients are requested too.
    pub fn with_grad_arena(
        g: &Graph,
        outputs: &[Value],
        opts: PlanOptions,
        grads: &[(Value, usize)],
    ) -> Result<Plan> {
        let mut outputs = outputs.to_vec();
        for &(v, _) in grads {
            if !outputs.contains(&v) {
                outputs.push(v);
            }
        }
        let outputs = &outputs[..];
        for &v in outputs {
            g.check(v)?;
        }
        let live = live_nodes(g, outputs);
        let (steps, mut storage, root) = classify(g, &live);
        let last = last_uses(g, &steps, &root, outputs);
        let arena_copies = place_grads(g, &steps, &mut storage, &root, grads);
        let assignment = assign_slots(g, &steps, &mut storage, &root, &last, opts);
        let stats = plan_stats(g, &storage, &assignment, steps.len());
        Ok(Plan {
            steps,
            inplace: assignment.inplace,
            storage,
            slot_bytes: assignment.slot_bytes,
            lifetimes: assignment.lifetimes,
            outputs: outputs.to_vec(),
            arena_copies,
            stats,
        })
    }

    /// Gradients computed outside their arena entry and copied into it after the last step:
    /// (gradient value, arena entry).
    pub fn arena_copies(&self) -> &[(Value, usize)] {
        &self.arena_copies
    }

    pub fn stats(&self) -> PlanStats {
        self.stats
    }

    /// The op nodes that run, in order.
    pub fn steps(&self) -> &[NodeId] {
        &self.steps
    }

    /// Where value `v` lives.
    pub fn storage(&self, v: Value) -> Storage {
        self.storage[v.index()]
    }

    /// Checks that no two values that are live at the same step share a buffer (an in-place
    /// output may take the slot of the input that dies at its own step). `Err` names the pair.
    pub fn check_no_overlap(&self) -> std::result::Result<(), String> {
        let mut by_slot: Vec<Vec<&Lifetime>> = vec![Vec::new(); self.slot_bytes.len()];
        for lt in &self.lifetimes {
            by_slot[lt.slot].push(lt);
        }
        for (slot, lts) in by_slot.iter_mut().enumerate() {
            lts.sort_by_key(|lt| lt.def);
            for (i, a) in lts.iter().enumerate() {
                for b in &lts[i + 1..] {
                    let disjoint = a.last < b.def || (a.last == b.def && b.inplace);
                    if !disjoint {
                        return Err(format!(
                            "slot {slot}: {} (steps {}..={}) overlaps {} (steps {}..={}{})",
                            a.value,
                            a.def,
                            a.last,
                            b.value,
                            b.def,
                            b.last,
                            if b.inplace { ", in place" } else { "" }
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SlotAllocator;

    #[test]
    fn slot_allocator_best_fit_grow_and_no_reuse() {
        let mut a = SlotAllocator::new(true);
        // Nothing free: new slots.
        let (s0, s1, s2) = (a.alloc(100), a.alloc(40), a.alloc(70));
        assert_eq!((s0, s1, s2), (0, 1, 2));
        a.release(s0);
        a.release(s1);
        a.release(s2);
        // Best fit: the smallest free slot that holds the request.
        assert_eq!(a.alloc(50), s2);
        assert_eq!(a.alloc(10), s1);
        // None fits: the largest free slot grows.
        a.release(s1);
        assert_eq!(a.alloc(300), s0);
        // A slot is handed out once until released.
        assert_eq!(a.alloc(8), s1);
        assert_eq!(a.alloc(8), 3);
        assert_eq!(a.into_sizes(), [300, 40, 70, 8]);

        // Without reuse every request opens a slot, released or not.
        let mut n = SlotAllocator::new(false);
        let s = n.alloc(16);
        n.release(s);
        assert_eq!(n.alloc(16), 1);
        assert_eq!(n.into_sizes(), [16, 16]);
    }
}
