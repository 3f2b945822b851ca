//! Initial weights for training from scratch, per parameter kind: fan-in scaled normals for
//! matrices and kernels, zero biases, unit norms, N(0, 1) embeddings, 0.02 position tables, and
//! Deformable DETR's MSDeformAttn init (zero offset weights, offsets biased to a ring of
//! directions, uniform attention), which the pixel decoder needs to sample sensibly at start.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr_free::normal;

use crate::graph::ParamKind;

/// Box–Muller normals (keeps the dependency list short).
mod rand_distr_free {
    use rand::Rng;

    pub fn normal(rng: &mut impl Rng, std: f64) -> f32 {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
    }
}

fn mix(seed: u64, name: &str) -> u64 {
    // FNV-1a over the name, so a parameter's init does not depend on build order.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Values for parameter `name` of `shape` and `kind`. `heads`: MSDeformAttn heads (for the
/// sampling-offset bias); levels and points are Mask2Former's 3 and 4.
pub fn init_param(
    name: &str,
    shape: &[usize],
    kind: ParamKind,
    heads: usize,
    seed: u64,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, name));
    if name.ends_with("sampling_offsets.bias") {
        return offset_bias(heads, 3, 4, n);
    }
    if name.contains("sampling_offsets.") || name.contains("self_attn.attention_weights.") {
        return vec![0.0; n];
    }
    match kind {
        ParamKind::Norm if name.ends_with(".bias") => vec![0.0; n],
        ParamKind::Norm => vec![1.0; n],
        ParamKind::Bias => vec![0.0; n],
        ParamKind::Embedding => (0..n).map(|_| normal(&mut rng, 1.0)).collect(),
        ParamKind::PositionTable => (0..n).map(|_| normal(&mut rng, 0.02)).collect(),
        ParamKind::Weight => {
            // [out, in, ...]: fan-in is everything but the first axis.
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let std = (1.0 / fan_in as f64).sqrt();
            (0..n).map(|_| normal(&mut rng, std)).collect()
        }
    }
}

/// Initial values of every parameter in `params` (name, shape, kind), as `init_param`, except
/// the Swin patch-embedding bias: the original Mask2Former's Swin leaves that `Conv2d` at
/// PyTorch's default init, uniform ±1/√fan_in. It matters: with a zero bias, the zero-padded
/// pixels of an LSJ crop embed to all-zero tokens, every LayerNorm then divides by √eps, and the
/// gradient grows ~300x per norm until it overflows.
pub fn init_params(
    params: &[(String, Vec<usize>, ParamKind)],
    heads: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|(name, shape, kind)| {
            let weight = name
                .strip_suffix("patch_embeddings.projection.bias")
                .map(|p| format!("{p}patch_embeddings.projection.weight"));
            let fan_in = weight.and_then(|w| {
                params
                    .iter()
                    .find(|(n, _, _)| *n == w)
                    .map(|(_, s, _)| s.iter().skip(1).product::<usize>().max(1))
            });
            match fan_in {
                Some(f) => {
                    let bound = 1.0 / (f as f32).sqrt();
                    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, name));
                    let n: usize = shape.iter().product();
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
                None => init_param(name, shape, *kind, heads, seed),
            }
        })
        .collect()
}

/// `[heads, levels, points, 2]`: head h points along angle 2πh/heads, scaled to the unit square
/// and by (point + 1).
fn offset_bias(heads: usize, levels: usize, points: usize, n: usize) -> Vec<f32> {
    if heads * levels * points * 2 != n {
        return vec![0.0; n];
    }
    let mut out = Vec::with_capacity(n);
    for h in 0..heads {
        let theta = h as f64 * std::f64::consts::TAU / heads as f64;
        let (c, s) = (theta.cos(), theta.sin());
        let m = c.abs().max(s.abs());
        for _ in 0..levels {
            for p in 0..points {
                out.push((c / m * (p + 1) as f64) as f32);
                out.push((s / m * (p + 1) as f64) as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_get_their_init() {
        let w = init_param("a.fc.weight", &[64, 256], ParamKind::Weight, 4, 1);
        let var: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var - 1.0 / 256.0).abs() < 0.2 / 256.0, "variance {var}");
        assert_eq!(
            w,
            init_param("a.fc.weight", &[64, 256], ParamKind::Weight, 4, 1)
        );
        assert_ne!(
            w,
            init_param("a.fc.weight", &[64, 256], ParamKind::Weight, 4, 2)
        );
        assert!(
            init_param("x.layernorm.weight", &[8], ParamKind::Norm, 4, 1)
                .iter()
                .all(|&v| v == 1.0)
        );
        let b = init_param(
            "e.self_attn.sampling_offsets.bias",
            &[96],
            ParamKind::Bias,
            4,
            1,
        );
        // head 0 points along +x: (1, 0), (2, 0), ...
        assert_eq!(&b[..4], &[1.0, 0.0, 2.0, 0.0]);
    }

    #[test]
    fn patch_embedding_bias_is_pytorch_default() {
        let p = "model.pixel_level_module.encoder.embeddings.patch_embeddings.projection";
        let params = vec![
            (format!("{p}.weight"), vec![32, 3, 4, 4], ParamKind::Weight),
            (format!("{p}.bias"), vec![32], ParamKind::Bias),
            ("x.dense.bias".to_string(), vec![8], ParamKind::Bias),
        ];
        let v = init_params(&params, 4, 3);
        let bound = 1.0 / 48f32.sqrt();
        assert!(v[1].iter().all(|x| x.abs() <= bound));
        // Not constant across channels: a padded token must not normalise to zero.
        assert!(v[1].iter().any(|&x| x != v[1][0]));
        assert!(v[2].iter().all(|&x| x == 0.0));
    }
}
