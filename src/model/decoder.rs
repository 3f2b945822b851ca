//! The masked-attention transformer decoder (transformers `Mask2FormerTransformerModule`):
//! learnable queries attend, layer by layer, to one level of the pixel decoder at a time
//! (1/32, 1/16, 1/8, 1/32, …) through cross-attention masked to each query's previous mask
//! prediction, then to each other, then an FFN (post-norm). A prediction (class logits and mask
//! logits) is made from the learnable queries and after every layer.

use crate::graph::{Graph, ParamKind, Result, Value};
use crate::model::config::Mask2FormerConfig;
use crate::model::embed::sine_position_embedding;
use crate::model::pixel_decoder::{PixelDecoderOut, N_LEVELS};
use crate::nn::{self, Path};

/// One prediction: `class_logits [B, Q, K+1]`, `mask_logits [B, Q, H/4, W/4]`.
#[derive(Clone, Copy, Debug)]
pub struct Prediction {
    pub class_logits: Value,
    pub mask_logits: Value,
    /// The cross-attention mask this prediction produces for the next layer, `[B, Q, h*w]`
    /// (1 = blocked), at the next layer's level.
    pub next_attention_mask: Value,
    /// Decoder query states after `decoder.layernorm`, `[B, Q, C]`.
    pub queries: Value,
}

/// Returns every prediction, the learnable-query one first and the final one last.
/// `model` is the `model.` prefix; `class_predictor` lives at the top level.
pub fn transformer_decoder(
    g: &mut Graph,
    model: &Path,
    class_predictor: &Path,
    cfg: &Mask2FormerConfig,
    pix: &PixelDecoderOut,
) -> Result<Vec<Prediction>> {
    let p = model.pp("transformer_module");
    let c = cfg.hidden_dim;
    let q = cfg.num_queries;
    let b = g.shape(pix.mask_features)[0];

    let Levels { feats, poss, sizes } = level_tokens(g, &p, cfg, pix)?;

    // Learnable queries: content (`queries_features`) and position (`queries_embedder`). Declared
    // in the checkpoint's [Q, C] (parameters carry their hub shapes), used as [1, Q, C] views.
    let qfeat = g.param_of_kind(
        &p.pp("queries_features").key("weight"),
        &[q, c],
        ParamKind::Embedding,
    )?;
    let qfeat = g.reshape(qfeat, &[1, q, c])?;
    let qpos = g.param_of_kind(
        &p.pp("queries_embedder").key("weight"),
        &[q, c],
        ParamKind::Embedding,
    )?;
    let qpos = g.reshape(qpos, &[1, q, c])?;
    let zeros = g.constant(&vec![0.0; b * q * c], &[b, q, c])?;
    let mut x = g.add(zeros, qfeat)?;

    let dp = p.pp("decoder");
    let mask_features = pix.mask_features;
    let mut preds = Vec::new();
    let first = g.scoped(dp.as_str(), |g| {
        prediction(g, &dp, class_predictor, cfg, x, mask_features, sizes[0])
    })?;
    preds.push(first);
    for i in 0..cfg.num_masked_attention_layers() {
        let level = i % N_LEVELS;
        let lp = dp.pp("layers").pp(i);
        let mask = preds
            .last()
            .expect("a prediction precedes each layer")
            .next_attention_mask;
        x = g.scoped(lp.as_str(), |g| {
            decoder_layer(g, &lp, cfg, x, qpos, feats[level], poss[level], mask)
        })?;
        let next = sizes[(i + 1) % N_LEVELS];
        let pred = g.scoped(dp.as_str(), |g| {
            prediction(g, &dp, class_predictor, cfg, x, mask_features, next)
        })?;
        preds.push(pred);
    }
    Ok(preds)
}

/// What the decoder layers attend to, per level.
struct Levels {
    /// Tokens `[B, h*w, C]` + level embedding.
    feats: Vec<Value>,
    /// Sine positions `[1, h*w, C]`.
    poss: Vec<Value>,
    /// `(h, w)`.
    sizes: Vec<(usize, usize)>,
}

/// The keys, values and positions of the three levels, projected to `hidden_dim` if needed.
fn level_tokens(
    g: &mut Graph,
    p: &Path,
    cfg: &Mask2FormerConfig,
    pix: &PixelDecoderOut,
) -> Result<Levels> {
    let c = cfg.hidden_dim;
    let b = g.shape(pix.mask_features)[0];
    let level_embed = g.param_of_kind(
        &p.pp("level_embed").key("weight"),
        &[N_LEVELS, c],
        ParamKind::Embedding,
    )?;
    let mut feats = Vec::new();
    let mut poss = Vec::new();
    let mut sizes = Vec::new();
    for (l, f) in pix.multi_scale.iter().enumerate() {
        let n = f.height * f.width;
        // transformers projects each level to hidden_dim with a 1x1 conv when the widths differ
        // or `enforce_input_projection` is set (an identity otherwise).
        let v = if cfg.has_decoder_input_projection() {
            let ip = p.pp("input_projections").pp(l);
            g.scoped(ip.as_str(), |g| {
                nn::conv2d(g, &ip, f.value, c, 1, 1, 0, true)
            })?
        } else {
            f.value
        };
        let t = g.reshape(v, &[b, c, n])?;
        let t = g.permute(t, &[0, 2, 1])?;
        let lv = g.slice(level_embed, 0, l, l + 1)?;
        feats.push(g.add(t, lv)?);
        poss.push(g.constant(
            &sine_position_embedding(f.height, f.width, c / 2),
            &[1, n, c],
        )?);
        sizes.push((f.height, f.width));
    }
    Ok(Levels { feats, poss, sizes })
}

/// One decoder layer: masked cross-attention, self-attention, FFN, each residual + LayerNorm.
#[allow(clippy::too_many_arguments)]
fn decoder_layer(
    g: &mut Graph,
    p: &Path,
    cfg: &Mask2FormerConfig,
    x: Value,
    qpos: Value,
    feat: Value,
    pos: Value,
    mask: Value,
) -> Result<Value> {
    let c = cfg.hidden_dim;
    let heads = cfg.num_attention_heads;

    // Cross-attention (torch nn.MultiheadAttention): q/k/v weights packed as rows of
    // `in_proj_weight [3C, C]` in the order q, k, v.
    let ca = p.pp("cross_attn");
    let w = g.param(&ca.key("in_proj_weight"), &[3 * c, c])?;
    let bias = g.param(&ca.key("in_proj_bias"), &[3 * c])?;
    let (wq, wk, wv) = (
        g.slice(w, 0, 0, c)?,
        g.slice(w, 0, c, 2 * c)?,
        g.slice(w, 0, 2 * c, 3 * c)?,
    );
    let (bq, bk, bv) = (
        g.slice(bias, 0, 0, c)?,
        g.slice(bias, 0, c, 2 * c)?,
        g.slice(bias, 0, 2 * c, 3 * c)?,
    );
    let qin = g.add(x, qpos)?;
    let kin = g.add(feat, pos)?;
    let qq = nn::linear_with(g, qin, wq, Some(bq))?;
    let kk = nn::linear_with(g, kin, wk, Some(bk))?;
    let vv = nn::linear_with(g, feat, wv, Some(bv))?;
    let a = nn::attention(g, qq, kk, vv, Some(mask), heads)?;
    let a = nn::linear(g, &ca.pp("out_proj"), a, c, true)?;
    let x = g.add(x, a)?;
    let x = nn::layer_norm(g, &p.pp("cross_attn_layer_norm"), x, 1e-5)?;

    // Self-attention: queries and keys carry the query position, values do not.
    let sa = p.pp("self_attn");
    let qk_in = g.add(x, qpos)?;
    let qq = nn::linear(g, &sa.pp("q_proj"), qk_in, c, true)?;
    let kk = nn::linear(g, &sa.pp("k_proj"), qk_in, c, true)?;
    let vv = nn::linear(g, &sa.pp("v_proj"), x, c, true)?;
    let a = nn::attention(g, qq, kk, vv, None, heads)?;
    let a = nn::linear(g, &sa.pp("out_proj"), a, c, true)?;
    let x = g.add(x, a)?;
    let x = nn::layer_norm(g, &p.pp("self_attn_layer_norm"), x, 1e-5)?;

    let y = nn::linear(g, &p.pp("fc1"), x, cfg.dim_feedforward, true)?;
    let y = g.relu(y)?;
    let y = nn::linear(g, &p.pp("fc2"), y, c, true)?;
    let x = g.add(x, y)?;
    nn::layer_norm(g, &p.pp("final_layer_norm"), x, 1e-5)
}

/// Class and mask prediction from the decoder state, plus the next layer's attention mask
/// (mask logits resized to `next_size`, blocked where sigmoid < 0.5, i.e. logit < 0).
fn prediction(
    g: &mut Graph,
    dp: &Path,
    class_predictor: &Path,
    cfg: &Mask2FormerConfig,
    x: Value,
    mask_features: Value,
    next_size: (usize, usize),
) -> Result<Prediction> {
    let c = cfg.hidden_dim;
    let [b, q, _] = g.shape(x).try_into().expect("[B, Q, C]");
    let [_, cm, h4, w4] = g.shape(mask_features).try_into().expect("[B, C, H, W]");
    let y = nn::layer_norm(g, &dp.pp("layernorm"), x, 1e-5)?;
    let class_logits = nn::linear(g, class_predictor, y, cfg.num_labels() + 1, true)?;
    let mp = dp.pp("mask_predictor").pp("mask_embedder");
    let mut e = y;
    for j in 0..3 {
        let out = if j == 2 { cfg.mask_feature_size } else { c };
        e = nn::linear(g, &mp.pp(j).pp(0), e, out, true)?;
        if j < 2 {
            e = g.relu(e)?;
        }
    }
    // einsum("bqc,bchw->bqhw"): [B, Q, C] x [B, C, H*W].
    let mf = g.reshape(mask_features, &[b, cm, h4 * w4])?;
    let m = g.matmul(e, mf)?;
    let mask_logits = g.reshape(m, &[b, q, h4, w4])?;
    let small = g.interpolate_bilinear(mask_logits, next_size)?;
    let small = g.reshape(small, &[b, q, next_size.0 * next_size.1])?;
    let blocked = g.less_than_zero(small)?; // no gradient: a detached 0/1 mask
    Ok(Prediction {
        class_logits,
        mask_logits,
        next_attention_mask: blocked,
        queries: y,
    })
}
