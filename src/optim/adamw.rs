//! AdamW with parameter groups: one fused kernel (`shaders/adamw.wgsl`) per parameter tensor,
//! dispatched after the gradient-norm reduction in the same submit as the training graph.
//!
//! Update for step t ≥ 1 (torch.optim.AdamW, amsgrad off), with g already clipped:
//! ```text
//! p ← p·(1 − lr·wd)
//! m ← β₁m + (1 − β₁)g          v ← β₂v + (1 − β₂)g²
//! p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```

use super::clip::GradNorm;
use super::{binding_chunks, OptimError, Result};
use crate::graph::{Executable, ParamKind, Trainable};
use crate::runtime::{Dispatch, Runtime, Tensor};

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
    /// First and second moment estimates.
    pub m: Tensor,
    pub v: Tensor,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    lr_mult: f32,
    weight_decay: f32,
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

/// AdamW over a fixed set of (parameter, gradient) tensors.
pub struct AdamW {
    rt: Runtime,
    cfg: AdamWConfig,
    hyper: Tensor,
    norm: GradNorm,
    states: Vec<ParamState>,
    t: u64,
}

impl AdamW {
    /// State and dispatches for `params`: the gradient-norm reduction, then one update per
    /// parameter (chunked past the binding limit). Run them after the gradients are computed,
    /// after [`AdamW::begin_step`].
    pub fn new(
        rt: &Runtime,
        params: &[Trainable<'_>],
        cfg: &AdamWConfig,
        groups: &GroupConfig,
    ) -> Result<(Self, Vec<Dispatch>)> {
        check(cfg, groups)?;
        for p in params {
            if p.param.shape() != p.grad.shape() {
                return Err(OptimError::GradShape {
                    name: p.name.into(),
                    param: p.param.shape().to_vec(),
                    grad: p.grad.shape().to_vec(),
                });
            }
        }
        let grads: Vec<&Tensor> = params.iter().map(|p| p.grad).collect();
        let (norm, mut ds) = GradNorm::new(rt, &grads)?;
        let hyper = rt.full(&[12], 0.0)?;
        let kernel = rt.kernel(&crate::shader!("adamw"), "main", &[])?;
        let max = rt.caps().max_storage_binding;
        let mut states = Vec::with_capacity(params.len());
        for p in params {
            let (lr_mult, weight_decay) = groups.group_of(p.name, p.kind);
            let m = rt.full(p.param.shape(), 0.0)?;
            let v = rt.full(p.param.shape(), 0.0)?;
            for (start, len) in binding_chunks(p.param.numel(), max) {
                let (off, bytes) = (start as u64 * 4, len as u64 * 4);
                ds.push(rt.dispatch(
                    &kernel,
                    &Params {
                        n: len as u32,
                        lr_mult: lr_mult as f32,
                        weight_decay: weight_decay as f32,
                    },
                    &[
                        hyper.binding(),
                        norm.sum_of_squares().binding(),
                        p.grad.binding_range(off, bytes),
                        p.param.binding_range(off, bytes),
                        m.binding_range(off, bytes),
                        v.binding_range(off, bytes),
                    ],
                    rt.grid(len as u64, 256),
                ));
            }
            states.push(ParamState {
                name: p.name.into(),
                kind: p.kind,
                lr_mult,
                weight_decay,
                m,
                v,
            });
        }
        let opt = Self {
            rt: rt.clone(),
            cfg: cfg.clone(),
            hyper,
            norm,
            states,
            t: 0,
        };
        Ok((opt, ds))
    }

    /// Builds the optimizer for every parameter of `exe` that has a gradient and appends its
    /// dispatches to `exe`, so each `exe.run()` is a whole training step.
    pub fn attach(exe: &mut Executable, cfg: &AdamWConfig, groups: &GroupConfig) -> Result<Self> {
        let (opt, ds) = Self::new(exe.runtime(), &exe.trainables(), cfg, groups)?;
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
            .queue()
            .write_buffer(self.hyper.buffer(), 0, bytemuck::cast_slice(&h));
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
        let mut moments = Vec::with_capacity(self.states.len());
        for s in &self.states {
            moments.push(Moments {
                name: s.name.clone(),
                shape: s.m.shape().to_vec(),
                exp_avg: self.rt.download(&s.m)?,
                exp_avg_sq: self.rt.download(&s.v)?,
            });
        }
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
            let q = self.rt.queue();
            q.write_buffer(s.m.buffer(), 0, bytemuck::cast_slice(&m.exp_avg));
            q.write_buffer(s.v.buffer(), 0, bytemuck::cast_slice(&m.exp_avg_sq));
        }
        self.t = state.step;
        Ok(())
    }

    /// Device memory held by the optimizer (moments, norm buffers).
    pub fn bytes(&self) -> u64 {
        self.states
            .iter()
            .map(|s| s.m.size_bytes() + s.v.size_bytes())
            .sum::<u64>()
            + self.norm.bytes()
            + self.hyper.size_bytes()
    }
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

/// One AdamW step on host data, in f64 (the specification of the kernel). `t` is the step
/// number after incrementing (1 for the first step); `clip` the gradient scale.
#[allow(clippy::too_many_arguments)]
pub fn adamw_reference(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    t: u64,
    lr: f64,
    cfg: &AdamWConfig,
    weight_decay: f64,
    clip: f64,
) {
    let (b1, b2) = cfg.betas;
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2 = 1.0 - b2.powi(t as i32);
    for i in 0..p.len() {
        let gi = g[i] as f64 * clip;
        let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
        let pi = p[i] as f64 * (1.0 - lr * weight_decay);
        let denom = vi.sqrt() / bc2.sqrt() + cfg.eps;
        p[i] = (pi - lr / bc1 * mi / denom) as f32;
        m[i] = mi as f32;
        v[i] = vi as f32;
    }
}
