//! The pixel decoder (transformers `Mask2FormerPixelDecoder`): 1x1 projections + GroupNorm of the
//! three coarsest backbone maps, a 6-layer multi-scale deformable-attention encoder over their
//! flattened tokens, then one FPN step to stride 4 and the mask projection.

use crate::graph::{Graph, ParamKind, Result, Value};
use crate::model::config::Mask2FormerConfig;
use crate::model::embed::{reference_points, sine_position_embedding};
use crate::model::swin::FeatureMap;
use crate::nn::{self, Path};

/// Deformable attention samples this many points per head and level.
pub const N_POINTS: usize = 4;
/// Levels fed to the deformable encoder and the transformer decoder (strides 32, 16, 8).
pub const N_LEVELS: usize = 3;

pub struct PixelDecoderOut {
    /// `[B, mask_dim, H/4, W/4]`
    pub mask_features: Value,
    /// Encoder outputs `[B, C, h, w]` at strides 32, 16, 8 (in that order).
    pub multi_scale: Vec<FeatureMap>,
}

/// The pixel decoder on the four backbone maps (strides 4, 8, 16, 32).
pub fn pixel_decoder(
    g: &mut Graph,
    p: &Path,
    cfg: &Mask2FormerConfig,
    features: &[FeatureMap],
) -> Result<PixelDecoderOut> {
    let c = cfg.feature_size;
    let b = g.shape(features[0].value)[0];
    // Levels from the coarsest: stage 4 (1/32), stage 3, stage 2 (1/8).
    let levels: Vec<&FeatureMap> = features.iter().rev().take(N_LEVELS).collect();
    let shapes: Vec<(usize, usize)> = levels.iter().map(|f| (f.height, f.width)).collect();
    let seq: usize = shapes.iter().map(|(h, w)| h * w).sum();
    let (mut x, pos) = input_tokens(g, p, c, &levels)?;

    // Constants of the deformable attention: reference points [1, S, 1, L, P·2] and the
    // per-level offset normaliser 1 / (w_l, h_l) [1, 1, 1, L, P·2], each (x, y) pair repeated
    // for the P points. Laid out like the sampling offsets' last axes [H, L, P·2], both
    // broadcasts read L·P·2 contiguous values a row and run on whole vec4s; with the pairs
    // broadcast along P they ran element by element (~1 ms each in the demo training step).
    let per_point = |pairs: &[f32]| -> Vec<f32> {
        pairs.chunks(2).flat_map(|xy| xy.repeat(N_POINTS)).collect()
    };
    let refs = per_point(&reference_points(&shapes));
    let refs = g.constant(&refs, &[1, seq, 1, N_LEVELS, 2 * N_POINTS])?;
    let inv: Vec<f32> = shapes
        .iter()
        .flat_map(|&(h, w)| [1.0 / w as f32, 1.0 / h as f32])
        .collect();
    let inv = g.constant(&per_point(&inv), &[1, 1, 1, N_LEVELS, 2 * N_POINTS])?;

    let enc = p.pp("encoder");
    for i in 0..cfg.encoder_layers {
        let lp = enc.pp("layers").pp(i);
        x = g.scoped(lp.as_str(), |g| {
            encoder_layer(g, &lp, cfg, x, pos, refs, inv, &shapes)
        })?;
    }

    // Split the tokens back into maps [B, C, h, w].
    let mut multi_scale = Vec::new();
    let mut start = 0;
    for &(h, w) in &shapes {
        let t = g.slice(x, 1, start, start + h * w)?;
        start += h * w;
        let t = g.permute(t, &[0, 2, 1])?;
        let t = g.reshape(t, &[b, c, h, w])?;
        multi_scale.push(FeatureMap {
            value: t,
            channels: c,
            height: h,
            width: w,
        });
    }
    let coarse = multi_scale.last().expect("three levels").value;
    let out = fpn(g, p, cfg, features, coarse)?;
    let mask_features = nn::conv2d(
        g,
        &p.pp("mask_projection"),
        out,
        cfg.mask_feature_size,
        1,
        1,
        0,
        true,
    )?;
    Ok(PixelDecoderOut {
        mask_features,
        multi_scale,
    })
}

/// The encoder's input: each level projected (1x1 conv + GroupNorm) and flattened, concatenated
/// to tokens `[B, S, C]`, with their positions (sine embedding + level embedding) `[1, S, C]`.
fn input_tokens(
    g: &mut Graph,
    p: &Path,
    c: usize,
    levels: &[&FeatureMap],
) -> Result<(Value, Value)> {
    let b = g.shape(levels[0].value)[0];
    let seq: usize = levels.iter().map(|f| f.height * f.width).sum();
    let level_embed =
        g.param_of_kind(&p.key("level_embed"), &[N_LEVELS, c], ParamKind::Embedding)?;
    let mut tokens = Vec::new();
    let mut pos = Vec::new();
    for (l, f) in levels.iter().enumerate() {
        let ip = p.pp("input_projections").pp(l);
        let x = g.scoped(ip.as_str(), |g| -> Result<Value> {
            let x = nn::conv2d(g, &ip.pp(0), f.value, c, 1, 1, 0, true)?;
            nn::group_norm(g, &ip.pp(1), x, 32, false)
        })?;
        // [B, C, h, w] -> [B, h*w, C]
        let x = g.reshape(x, &[b, c, f.height * f.width])?;
        tokens.push(g.permute(x, &[0, 2, 1])?);
        // Position: sine embedding + this level's embedding, [h*w, C].
        let pe = g.constant(
            &sine_position_embedding(f.height, f.width, c / 2),
            &[f.height * f.width, c],
        )?;
        let lv = g.slice(level_embed, 0, l, l + 1)?;
        pos.push(g.add(pe, lv)?);
    }
    let x = g.concat(&tokens, 1)?; // [B, S, C]
    let pos = g.concat(&pos, 0)?; // [S, C]
    let pos = g.reshape(pos, &[1, seq, c])?;
    Ok((x, pos))
}

/// FPN: from the encoder's 1/8 map down to `common_stride`, each step a lateral (1x1 conv + GN)
/// of the backbone map plus the upsampled coarser map, then 3x3 conv + GN + ReLU.
fn fpn(
    g: &mut Graph,
    p: &Path,
    cfg: &Mask2FormerConfig,
    features: &[FeatureMap],
    coarse: Value,
) -> Result<Value> {
    let c = cfg.feature_size;
    let mut out = coarse;
    for idx in (0..cfg.num_fpn_levels()).rev() {
        let f = &features[idx];
        let lat = p.pp(format!("adapter_{}", idx + 1));
        let lateral = g.scoped(lat.as_str(), |g| -> Result<Value> {
            let y = nn::conv2d(g, &lat.pp(0), f.value, c, 1, 1, 0, false)?;
            nn::group_norm(g, &lat.pp(1), y, 32, false)
        })?;
        let up = g.interpolate_bilinear(out, (f.height, f.width))?;
        let y = g.add(lateral, up)?;
        let lay = p.pp(format!("layer_{}", idx + 1));
        out = g.scoped(lay.as_str(), |g| -> Result<Value> {
            let y = nn::conv2d(g, &lay.pp(0), y, c, 3, 1, 1, false)?;
            nn::group_norm(g, &lay.pp(1), y, 32, true)
        })?;
    }
    Ok(out)
}

/// One deformable encoder layer on tokens `[B, S, C]` (post-norm).
#[allow(clippy::too_many_arguments)]
fn encoder_layer(
    g: &mut Graph,
    p: &Path,
    cfg: &Mask2FormerConfig,
    x: Value,
    pos: Value,
    refs: Value,
    inv: Value,
    shapes: &[(usize, usize)],
) -> Result<Value> {
    let c = cfg.feature_size;
    let heads = cfg.num_attention_heads;
    let [b, s, _] = g.shape(x).try_into().expect("[B, S, C]");
    let ap = p.pp("self_attn");
    let q = g.add(x, pos)?;
    let value = nn::linear(g, &ap.pp("value_proj"), x, c, true)?;
    let value = g.reshape(value, &[b, s, heads, c / heads])?;
    let off = nn::linear(
        g,
        &ap.pp("sampling_offsets"),
        q,
        heads * N_LEVELS * N_POINTS * 2,
        true,
    )?;
    let off = g.reshape(off, &[b, s, heads, N_LEVELS, 2 * N_POINTS])?;
    let attn = nn::linear(
        g,
        &ap.pp("attention_weights"),
        q,
        heads * N_LEVELS * N_POINTS,
        true,
    )?;
    let attn = g.reshape(attn, &[b, s, heads, N_LEVELS * N_POINTS])?;
    let attn = g.softmax(attn)?;
    let attn = g.reshape(attn, &[b, s, heads, N_LEVELS, N_POINTS])?;
    // sampling location = reference point + offset / (w_l, h_l)
    let off = g.mul(off, inv)?;
    let loc = g.add(refs, off)?;
    let loc = g.reshape(loc, &[b, s, heads, N_LEVELS, N_POINTS, 2])?;
    let y = g.deform_attn(value, loc, attn, shapes)?; // [B, S, C]
    let y = nn::linear(g, &ap.pp("output_proj"), y, c, true)?;
    let x = g.add(x, y)?;
    let x = nn::layer_norm(g, &p.pp("self_attn_layer_norm"), x, 1e-5)?;
    let y = nn::linear(g, &p.pp("fc1"), x, cfg.encoder_feedforward_dim, true)?;
    let y = g.relu(y)?;
    let y = nn::linear(g, &p.pp("fc2"), y, c, true)?;
    let x = g.add(x, y)?;
    nn::layer_norm(g, &p.pp("final_layer_norm"), x, 1e-5)
}
