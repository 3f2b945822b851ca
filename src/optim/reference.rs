//! The optimizer's specification on host data, in f64: what the AdamW kernel must compute.

use super::AdamWConfig;

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
