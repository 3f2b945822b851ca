//! The Swin Transformer backbone (transformers `SwinBackbone`): patch embedding, stages of
//! shifted-window blocks with patch merging between them, and a LayerNorm on each stage output.
//! Runs with `always_partition=True` as Mask2Former does: a stage smaller than the window is
//! padded to it and still shifted.

use crate::graph::ops::WindowAttention;
use crate::graph::{Graph, ParamKind, Result, Value};
use crate::model::config::SwinConfig;
use crate::nn::{self, Path};

/// One stage's output feature map, `[B, C, H, W]`.
pub struct FeatureMap {
    pub value: Value,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Runs the backbone on `pixel_values [B, 3, H, W]`; returns the four stage maps (strides 4..32).
pub fn swin_backbone(
    g: &mut Graph,
    p: &Path,
    cfg: &SwinConfig,
    pixel_values: Value,
) -> Result<Vec<FeatureMap>> {
    let eps = cfg.layer_norm_eps as f32;
    let [b, _, h, w] = g
        .shape(pixel_values)
        .try_into()
        .expect("pixel_values is [B, 3, H, W]");
    let ps = cfg.patch_size;

    // Patch embedding: pad bottom/right to a multiple of the patch, conv k=s=patch, tokens, norm.
    let emb = p.pp("embeddings");
    let (ph, pw) = ((ps - h % ps) % ps, (ps - w % ps) % ps);
    let x = if ph + pw > 0 {
        g.pad(pixel_values, &[(0, 0), (0, 0), (0, ph), (0, pw)])?
    } else {
        pixel_values
    };
    let x = g.scoped(emb.as_str(), |g| {
        nn::conv2d(
            g,
            &emb.pp("patch_embeddings").pp("projection"),
            x,
            cfg.embed_dim,
            ps,
            ps,
            0,
            true,
        )
    })?;
    let (mut hh, mut ww) = (h.div_ceil(ps), w.div_ceil(ps));
    // [B, C, H, W] -> [B, H*W, C]
    let x = g.permute(x, &[0, 2, 3, 1])?;
    let x = g.reshape(x, &[b, hh * ww, cfg.embed_dim])?;
    let mut x = nn::layer_norm(g, &emb.pp("norm"), x, eps)?;

    let mut maps = Vec::with_capacity(cfg.depths.len());
    let mut dim = cfg.embed_dim;
    for (s, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.num_heads).enumerate() {
        let stage = p.pp("encoder").pp("layers").pp(s);
        for blk in 0..depth {
            let bp = stage.pp("blocks").pp(blk);
            let shift = if blk % 2 == 0 { 0 } else { cfg.window_size / 2 };
            x = g.scoped(bp.as_str(), |g| {
                swin_block(g, &bp, cfg, x, (b, hh, ww, dim), heads, shift)
            })?;
        }
        // Stage output before downsampling, normed: [B, H*W, C] -> [B, C, H, W].
        let norm = p.pp("hidden_states_norms").pp(format!("stage{}", s + 1));
        let y = nn::layer_norm(g, &norm, x, eps)?;
        let y = g.reshape(y, &[b, hh, ww, dim])?;
        let y = g.permute(y, &[0, 3, 1, 2])?;
        maps.push(FeatureMap {
            value: y,
            channels: dim,
            height: hh,
            width: ww,
        });
        if s + 1 < cfg.depths.len() {
            let dp = stage.pp("downsample");
            x = g.scoped(dp.as_str(), |g| {
                patch_merging(g, &dp, x, (b, hh, ww, dim), eps)
            })?;
            (hh, ww) = (hh.div_ceil(2), ww.div_ceil(2));
            dim *= 2;
        }
    }
    Ok(maps)
}

/// One Swin block on tokens `[B, H*W, C]`: x + attn(LN(x)), then x + MLP(LN(x)).
fn swin_block(
    g: &mut Graph,
    p: &Path,
    cfg: &SwinConfig,
    x: Value,
    (b, h, w, c): (usize, usize, usize, usize),
    heads: usize,
    shift: usize,
) -> Result<Value> {
    let eps = cfg.layer_norm_eps as f32;
    let win = cfg.window_size;
    let y = nn::layer_norm(g, &p.pp("layernorm_before"), x, eps)?;
    let att = p.pp("attention");
    let sp = att.pp("self");
    let q = nn::linear(g, &sp.pp("query"), y, c, cfg.qkv_bias)?;
    let k = nn::linear(g, &sp.pp("key"), y, c, cfg.qkv_bias)?;
    let v = nn::linear(g, &sp.pp("value"), y, c, cfg.qkv_bias)?;
    let table = g.param_of_kind(
        &sp.key("relative_position_bias_table"),
        &[(2 * win - 1) * (2 * win - 1), heads],
        ParamKind::PositionTable,
    )?;
    // [B, H*W, C] -> [B, H, W, C]: the kernel pads, shifts, partitions and reverses itself.
    // Heads are zero-padded to a multiple of 4 channels where needed (see `nn::pad_heads`).
    let d = c / heads;
    let mut inputs = Vec::with_capacity(6);
    for t in [q, k, v] {
        let t = g.reshape(t, &[b, h, w, c])?;
        inputs.push(nn::pad_heads(g, t, heads)?);
    }
    inputs.push(table);
    // transformers pads the normed tokens before the q/k/v linears, so a padding token's key and
    // value are the linears' biases: the kernel takes them as the padding values.
    if cfg.qkv_bias {
        for name in ["key", "value"] {
            let bias = nn::param(g, &sp.pp(name).key("bias"), &[c], ParamKind::Bias)?;
            inputs.push(nn::pad_heads(g, bias, heads)?);
        }
    }
    let op = WindowAttention {
        heads,
        window: win,
        shift,
        pad_tokens: cfg.qkv_bias,
        scale: Some(1.0 / (d as f32).sqrt()),
    };
    let a = g.apply(std::sync::Arc::new(op), &inputs)?[0];
    let a = nn::unpad_heads(g, a, heads, d)?;
    let a = g.reshape(a, &[b, h * w, c])?;
    let a = nn::linear(g, &att.pp("output").pp("dense"), a, c, true)?;
    let x = g.add(x, a)?;

    let y = nn::layer_norm(g, &p.pp("layernorm_after"), x, eps)?;
    let hidden = (c as f64 * cfg.mlp_ratio) as usize;
    let y = nn::linear(g, &p.pp("intermediate").pp("dense"), y, hidden, true)?;
    let y = g.gelu(y)?;
    let y = nn::linear(g, &p.pp("output").pp("dense"), y, c, true)?;
    g.add(x, y)
}

/// Patch merging: pad H and W to even, concatenate each 2x2 neighbourhood in the order
/// (0,0), (1,0), (0,1), (1,1) (row, col) into 4C channels, LayerNorm, linear 4C -> 2C (no bias).
fn patch_merging(
    g: &mut Graph,
    p: &Path,
    x: Value,
    (b, h, w, c): (usize, usize, usize, usize),
    eps: f32,
) -> Result<Value> {
    let x = g.reshape(x, &[b, h, w, c])?;
    let (ph, pw) = (h % 2, w % 2);
    let x = if ph + pw > 0 {
        g.pad(x, &[(0, 0), (0, ph), (0, pw), (0, 0)])?
    } else {
        x
    };
    let (h2, w2) = ((h + ph) / 2, (w + pw) / 2);
    // [B, H/2, 2(row), W/2, 2(col), C] -> [B, H/2, W/2, col, row, C]: channel block = col*2 + row.
    let x = g.reshape(x, &[b, h2, 2, w2, 2, c])?;
    let x = g.permute(x, &[0, 1, 3, 4, 2, 5])?;
    let x = g.reshape(x, &[b, h2 * w2, 4 * c])?;
    let x = nn::layer_norm(g, &p.pp("norm"), x, eps)?;
    nn::linear(g, &p.pp("reduction"), x, 2 * c, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{CompileOptions, Executable};
    use crate::testing;
    use crate::train::init::init_param;

    /// One Swin block's input gradient through the graph against central differences of the
    /// same graph's forward, on maps the window pads heavily (8x8 and 16x16 in a 7-window).
    #[test]
    fn block_input_gradient_matches_finite_differences() {
        // Long: one test's setup, forward, backward and finite-difference loop.
        let rt = testing::runtime();
        let seed = testing::seed();
        let cfg: SwinConfig = serde_json::from_str("{}").unwrap();
        for &(h, shift) in &[(8usize, 0usize), (8, 3), (10, 0)] {
            let (b, c, heads) = (2, 128, 4);
            let mut g = Graph::new();
            let x = g
                .param_of_kind("x", &[b, h * h, c], ParamKind::Weight)
                .unwrap();
            let r = g.input("r", &[b, h * h, c]).unwrap();
            let y = swin_block(
                &mut g,
                &Path::root("blk"),
                &cfg,
                x,
                (b, h, h, c),
                heads,
                shift,
            )
            .unwrap();
            let yr = g.mul(y, r).unwrap();
            let loss = g.sum(yr).unwrap();
            g.backward(loss).unwrap();
            let mut exe =
                Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();
            let params: Vec<(String, Vec<usize>, ParamKind)> = g
                .params()
                .map(|(n, v, k)| (n.to_string(), g.shape(v).to_vec(), k))
                .collect();
            let mut xd = Vec::new();
            for (name, shape, kind) in &params {
                let mut d = init_param(name, shape, *kind, 1, seed);
                if name == "x" {
                    let mut rng = testing::rng(seed);
                    d = testing::uniform(&mut rng, d.len(), -1.0, 1.0);
                    xd = d.clone();
                }
                exe.set_param(name, &d).unwrap();
            }
            let mut rng = testing::rng(seed ^ 7);
            let rd = testing::uniform(&mut rng, b * h * h * c, -1.0, 1.0);
            exe.set_input("r", &rd).unwrap();
            exe.run().unwrap();
            let dx = rt.download(exe.grad("x").unwrap().unwrap()).unwrap();
            // Central differences along random unit directions with a step of 1: a coordinate
            // moves by ~1e-2, so the step's curvature error stays small, while the forward's own f32
            // rounding (~1e-4 of the loss's ~1e2) costs ~1e-4 of a derivative. Single coordinates
            // with a step of 1e-2 met that rounding at 1e-2 relative and failed by chance.
            let norm = |v: &[f32]| {
                v.iter()
                    .map(|&a| (a as f64) * (a as f64))
                    .sum::<f64>()
                    .sqrt()
            };
            let mut fd = Vec::new();
            let mut an = Vec::new();
            let mut rng = testing::rng(seed ^ 11);
            for _ in 0..6 {
                let mut dir = testing::uniform(&mut rng, xd.len(), -1.0, 1.0);
                let n = norm(&dir) as f32;
                dir.iter_mut().for_each(|a| *a /= n);
                let eps = 1.0f32;
                let mut at = |sign: f32| {
                    let p: Vec<f32> = xd
                        .iter()
                        .zip(&dir)
                        .map(|(&a, &d)| a + sign * eps * d)
                        .collect();
                    exe.set_param("x", &p).unwrap();
                    exe.run_with(&[]).unwrap()[0][0] as f64
                };
                let (lp, lm) = (at(1.0), at(-1.0));
                fd.push(((lp - lm) / (2.0 * eps as f64)) as f32);
                an.push(
                    dx.iter()
                        .zip(&dir)
                        .map(|(&g, &d)| g as f64 * d as f64)
                        .sum::<f64>() as f32,
                );
            }
            exe.set_param("x", &xd).unwrap();
            // Measured at most 7e-4 over 45 cases (15 seeds).
            assert!(
                testing::rel_l2(&an, &fd) < 5e-3,
                "h={h} shift={shift}: analytic {an:?} vs differences {fd:?} (seed {seed})"
            );
        }
    }
}
