//! AdamW with parameter groups over arenas: the parameters, their gradients and both moments
//! sit at the same offsets of four arenas ([`crate::runtime::Arena`]), so one launch per
//! binding-sized window (one for the demo model and Swin-T, four for Swin-B) updates every
//! parameter, with a table giving each tensor's offset, length and group (`update.rs`: the
//! buffer form `shaders/adamw.wgsl`, or on CPU adapters `shaders/adamw_texel.wgsl` over texel
//! views, per chunk of a window). It runs after the gradient-norm reduction in the same submit
//! as the training graph.
//!
//! Update for step t ≥ 1 (torch.optim.AdamW, amsgrad off), with g already clipped:
//! ```text
//! p ← p·(1 − lr·wd)
//! m ← β₁m + (1 − β₁)g          v ← β₂v + (1 − β₂)g²
//! p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```

use std::sync::Arc;

use super::clip::GradNorm;
use super::{update, OptimError, Result};
use crate::graph::{Executable, ParamKind, Trainable};
use crate::runtime::{Arena, Dispatch, Runtime, Tensor};

/// Hyperparameters shared by all groups.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamWConfig {
    pub betas: (f64, f64),
    pub eps: f64,
    /// Clip the global L2 norm of all gradients to this (Mask2Former: 0.01); `None`: no clipping.
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            max_grad_norm: None,
        }
    }
}

/// How parameters are grouped: weight decay by kind, learning-rate multiplier by name prefix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupConfig {
    pub weight_decay: f64,
    /// Kinds trained without weight decay.
    pub no_decay: Vec<ParamKind>,
    /// (name prefix, lr multiplier); the first matching prefix wins, 1 otherwise.
    pub lr_multipliers: Vec<(String, f64)>,
}

impl GroupConfig {
    /// Mask2Former's `build_optimizer`: weight decay 0.05 except norms, biases, embeddings and
    /// position tables; the Swin backbone at 0.1× the learning rate.
    pub fn mask2former() -> Self {
        Self {
            weight_decay: 0.05,
            no_decay: vec![
                ParamKind::Norm,
                ParamKind::Bias,
                ParamKind::Embedding,
                ParamKind::PositionTable,
            ],
            lr_multipliers: vec![("model.pixel_level_module.encoder.".into(), 0.1)],
        }
    }

    /// (lr multiplier, weight decay) of a parameter.
    pub fn group_of(&self, name: &str, kind: ParamKind) -> (f64, f64) {
        let lr = self
            .lr_multipliers
            .iter()
            .find(|(p, _)| name.starts_with(p.as_str()))
            .map_or(1.0, |(_, m)| *m);
        let wd = if self.no_decay.contains(&kind) {
            0.0
        } else {
            self.weight_decay
        };
        (lr, wd)
    }
}

/// Optimizer state of one parameter.
pub struct ParamState {
    pub name: String,
    pub kind: ParamKind,
    pub lr_mult: f64,
    pub weight_decay: f64,
    /// The parameter's entry in the arenas.
    pub entry: usize,
    /// First and second moment estimates (views of the moment arenas).
    pub m: Tensor,
    pub v: Tensor,
}

/// Both moments of one parameter, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub name: String,
    pub shape: Vec<usize>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// Everything AdamW carries from one step to the next (torch's `optimizer.state_dict()`).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// Steps taken (the bias corrections' `t`).
    pub step: u64,
    pub moments: Vec<Moments>,
}

/// AdamW over the trainable entries of a parameter arena and its gradient arena.
pub struct AdamW {
    rt: Runtime,
    cfg: AdamWConfig,
    hyper: Tensor,
    norm: GradNorm,
    m: Arena,
    v: Arena,
    /// The segment table of each launch.
    tables: Vec<Tensor>,
    /// Whether the update reads texel views (`update.rs`).
    texel: bool,
    states: Vec<ParamState>,
    t: u64,
}

impl AdamW {
    /// State and dispatches for the `trainables` of the `params`/`grads` arenas (which share a
    /// layout): the gradient-norm reduction, then one update launch per window. Run them after
    /// the gradients are computed, after [`AdamW::begin_step`].
    pub fn new(
        rt: &Runtime,
        params: &Arena,
        grads: &Arena,
        trainables: &[Trainable<'_>],
        cfg: &AdamWConfig,
        groups: &GroupConfig,
    ) -> Result<(Self, Vec<Dispatch>)> {
        check(cfg, groups)?;
        let layout = params.layout().clone();
        if grads.layout() != &layout {
            return Err(OptimError::Config {
                what: "gradient arena",
                value: format!("{} blocks", grads.layout().blocks().len()),
                reason: "must have the parameter arena's layout",
            });
        }
        let mut states = Vec::with_capacity(trainables.len());
        let (m, v) = (rt.arena(layout.clone())?, rt.arena(layout.clone())?);
        for p in trainables {
            check_trainable(p, &layout, &states)?;
            let (lr_mult, weight_decay) = groups.group_of(p.name, p.kind);
            states.push(ParamState {
                name: p.name.into(),
                kind: p.kind,
                lr_mult,
                weight_decay,
                entry: p.entry,
                m: m.tensor(p.entry).clone(),
                v: v.tensor(p.entry).clone(),
            });
        }
        let (norm, mut ds) = GradNorm::new(rt, grads)?;
        let hyper = rt.full(&[12], 0.0)?;
        let arenas = update::Arenas {
            grads,
            params,
            m: &m,
            v: &v,
        };
        let launches = update::launches(rt, &arenas, &states, &hyper, norm.sum_of_squares())?;
        ds.extend(launches.dispatches);
        let opt = Self {
            rt: rt.clone(),
            cfg: cfg.clone(),
            hyper,
            norm,
            m,
            v,
            tables: launches.tables,
            texel: launches.texel,
            states,
            t: 0,
        };
        Ok((opt, ds))
    }

    /// Builds the optimizer for every parameter of `exe` that has a gradient and appends its
    /// dispatches to `exe`, so each `exe.run()` is a whole training step. `exe` must be
    /// compiled for training ([`crate::graph::CompileOptions::training`]).
    pub fn attach(exe: &mut Executable, cfg: &AdamWConfig, groups: &GroupConfig) -> Result<Self> {
        let Some((params, grads)) = exe.arenas() else {
            return Err(OptimError::Config {
                what: "executable",
                value: "compiled without keep_grads".into(),
                reason: "the optimizer needs CompileOptions::training()",
            });
        };
        let (opt, ds) = Self::new(exe.runtime(), params, grads, &exe.trainables(), cfg, groups)?;
        exe.append_dispatches("optimizer", ds);
        Ok(opt)
    }

    /// Advances the step counter and writes this step's learning rate and bias corrections;
    /// call once before each run of the dispatches. Until the first call the dispatches change
    /// nothing; running them twice without a call applies the same step twice.
    pub fn begin_step(&mut self, lr: f64) {
        self.t += 1;
        let (b1, b2) = self.cfg.betas;
        let h: [f32; 12] = [
            lr as f32,
            b1 as f32,
            (1.0 - b1) as f32,
            b2 as f32,
            (1.0 - b2) as f32,
            self.cfg.eps as f32,
            (1.0 - b1.powi(self.t as i32)) as f32,
            (1.0 - b2.powi(self.t as i32)) as f32,
            self.cfg.max_grad_norm.unwrap_or(0.0) as f32,
            0.0,
            0.0,
            0.0,
        ];
        self.rt
            .write(&self.hyper, &h)
            .expect("the hyperparameter tensor holds 12 f32");
    }

    /// Steps taken (after `begin_step`); set it when resuming from a checkpoint.
    pub fn step(&self) -> u64 {
        self.t
    }
    pub fn set_step(&mut self, t: u64) {
        self.t = t;
    }

    /// Global gradient norm (before clipping) of the last step; waits for the device.
    pub fn grad_norm(&self) -> Result<f64> {
        self.norm.read()
    }

    pub fn states(&self) -> &[ParamState] {
        &self.states
    }

    /// The state of parameter `name` (for checkpoints).
    pub fn state(&self, name: &str) -> Result<&ParamState> {
        self.states
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| OptimError::UnknownParam(name.into()))
    }

    /// The optimizer's state on the host, for a checkpoint: the step counter and both moments
    /// of every parameter. Waits for the device.
    pub fn save_state(&self) -> Result<OptimizerState> {
        // One readback per block and moment, not one per parameter.
        let host = |a: &Arena| -> Result<Vec<Vec<f32>>> {
            let blocks = a.blocks().iter().map(|b| self.rt.download(b));
            Ok(blocks.collect::<crate::Result<_>>()?)
        };
        let (hm, hv) = (host(&self.m)?, host(&self.v)?);
        let layout = self.m.layout();
        let moments = self
            .states
            .iter()
            .map(|s| {
                let e = &layout.entries()[s.entry];
                let range = (e.offset / 4) as usize..(e.offset / 4) as usize + e.numel();
                Moments {
                    name: s.name.clone(),
                    shape: e.shape.clone(),
                    exp_avg: hm[e.block][range.clone()].to_vec(),
                    exp_avg_sq: hv[e.block][range].to_vec(),
                }
            })
            .collect();
        Ok(OptimizerState {
            step: self.t,
            moments,
        })
    }

    /// Restores a state written by [`AdamW::save_state`]: every parameter of this optimizer
    /// must be in `state` with its element count (extra entries are an error too: they mean a
    /// different model).
    pub fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let bad = |name: &str, reason: String| OptimError::State {
            name: name.into(),
            reason,
        };
        if let Some(extra) = state
            .moments
            .iter()
            .find(|m| !self.states.iter().any(|s| s.name == m.name))
        {
            return Err(bad(&extra.name, "the model has no such parameter".into()));
        }
        for s in &self.states {
            let m = state
                .moments
                .iter()
                .find(|m| m.name == s.name)
                .ok_or_else(|| bad(&s.name, "missing from the saved state".into()))?;
            for (what, data) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
                if data.len() != s.m.numel() {
                    return Err(bad(
                        &s.name,
                        format!(
                            "{what} has {} values, the parameter {}",
                            data.len(),
                            s.m.numel()
                        ),
                    ));
                }
                if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                    return Err(bad(
                        &s.name,
                        format!("{what}[{i}] = {} is not finite", data[i]),
                    ));
                }
            }
        }
        for s in &self.states {
            let m = state
                .moments
                .iter()
                .find(|m| m.name == s.name)
                .expect("checked above");
            self.rt.write(&s.m, &m.exp_avg)?;
            self.rt.write(&s.v, &m.exp_avg_sq)?;
        }
        self.t = state.step;
        Ok(())
    }

    /// Device memory held by the optimizer (moments, norm buffers, segment tables).
    pub fn bytes(&self) -> u64 {
        self.m.bytes()
            + self.v.bytes()
            + self.norm.bytes()
            + self.hyper.size_bytes()
            + self.tables.iter().map(Tensor::size_bytes).sum::<u64>()
    }

    /// Update launches per step: one per arena window with trainable entries (in the texel
    /// form, per chunk of at most 32 MiB of a window).
    pub fn launches(&self) -> usize {
        self.tables.len()
    }

    /// Whether the update reads the arenas through texel views (CPU adapters under the CPU
    /// kernel policy) rather than as storage buffers.
    pub fn texel_views(&self) -> bool {
        self.texel
    }
}

/// A trainable names an entry of the layout, once, in increasing order, with its shape.
fn check_trainable(
    p: &Trainable<'_>,
    layout: &Arc<crate::runtime::ArenaLayout>,
    done: &[ParamState],
) -> Result<()> {
    if p.param.shape() != p.grad.shape() {
        return Err(OptimError::GradShape {
            name: p.name.into(),
            param: p.param.shape().to_vec(),
            grad: p.grad.shape().to_vec(),
        });
    }
    let bad = |reason: String| OptimError::State {
        name: p.name.into(),
        reason,
    };
    let Some(e) = layout.entries().get(p.entry) else {
        return Err(bad(format!(
            "arena entry {} of {}",
            p.entry,
            layout.entries().len()
        )));
    };
    if e.shape != p.param.shape() {
        return Err(bad(format!(
            "shape {:?}, its arena entry {} holds {:?}",
            p.param.shape(),
            p.entry,
            e.shape
        )));
    }
    if done.last().is_some_and(|s| s.entry >= p.entry) {
        return Err(bad(format!(
            "arena entry {} comes after entry {}",
            p.entry,
            done.last().map_or(0, |s| s.entry)
        )));
    }
    Ok(())
}

fn check(cfg: &AdamWConfig, groups: &GroupConfig) -> Result<()> {
    let bad = |what, value: f64, reason| {
        Err(OptimError::Config {
            what,
            value: value.to_string(),
            reason,
        })
    };
    let (b1, b2) = cfg.betas;
    if !(0.0..1.0).contains(&b1) {
        return bad("beta1", b1, "must be in [0, 1)");
    }
    if !(0.0..1.0).contains(&b2) {
        return bad("beta2", b2, "must be in [0, 1)");
    }
    if cfg.eps.is_nan() || cfg.eps <= 0.0 {
        return bad("eps", cfg.eps, "must be positive");
    }
    if let Some(c) = cfg.max_grad_norm {
        if c.is_nan() || c <= 0.0 {
            return bad("max_grad_norm", c, "must be positive");
        }
    }
    if groups.weight_decay.is_nan() || groups.weight_decay < 0.0 {
        return bad("weight_decay", groups.weight_decay, "must be non-negative");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(name: &str, n: usize, scale: f32) -> Moments {
        Moments {
            name: name.into(),
            shape: vec![n],
            exp_avg: (0..n).map(|i| scale * i as f32).collect(),
            exp_avg_sq: (0..n).map(|i| scale * (i * i) as f32).collect(),
        }
    }

    /// `load_state` then `save_state` gives the same moments and step; every mismatch (a
    /// missing or extra parameter, a wrong count, a non-finite value) is refused by name and
    /// leaves the state as it was.
    #[test]
    fn state_round_trips_and_mismatches_are_named() {
        let rt = crate::testing::runtime();
        let shapes = [(vec![5], crate::DType::F32), (vec![3], crate::DType::F32)];
        let layout = Arc::new(rt.arena_layout(&shapes).unwrap());
        let (pa, ga) = (rt.arena(layout.clone()).unwrap(), rt.arena(layout).unwrap());
        let params = [
            Trainable {
                name: "a",
                kind: ParamKind::Weight,
                param: pa.tensor(0),
                grad: ga.tensor(0),
                entry: 0,
            },
            Trainable {
                name: "b",
                kind: ParamKind::Bias,
                param: pa.tensor(1),
                grad: ga.tensor(1),
                entry: 1,
            },
        ];
        let (mut opt, _) = AdamW::new(
            rt,
            &pa,
            &ga,
            &params,
            &AdamWConfig::default(),
            &GroupConfig::default(),
        )
        .unwrap();
        let state = OptimizerState {
            step: 7,
            moments: vec![moments("b", 3, 0.5), moments("a", 5, 0.25)],
        };
        opt.load_state(&state).unwrap();
        let back = opt.save_state().unwrap();
        assert_eq!(back.step, 7);
        for m in &state.moments {
            assert_eq!(back.moments.iter().find(|b| b.name == m.name), Some(m));
        }
        let mut nan = moments("a", 5, 1.0);
        nan.exp_avg_sq[2] = f32::NAN;
        for (bad, name) in [
            (vec![moments("a", 5, 1.0)], "b"),
            (vec![moments("a", 4, 1.0), moments("b", 3, 1.0)], "a"),
            (
                vec![
                    moments("a", 5, 1.0),
                    moments("b", 3, 1.0),
                    moments("c", 1, 1.0),
                ],
                "c",
            ),
            (vec![nan, moments("b", 3, 1.0)], "a"),
        ] {
            let err = opt
                .load_state(&OptimizerState {
                    step: 1,
                    moments: bad,
                })
                .unwrap_err();
            assert!(
                matches!(&err, OptimError::State { name: n, .. } if n == name),
                "{err}"
            );
        }
        assert_eq!(opt.save_state().unwrap(), back);
    }
}
