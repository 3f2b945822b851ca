//! The toy network of the training test and the train-step benchmark: a conv stem, a Swin
//! window-attention block, a deformable-attention block and masked attention of learnable
//! queries, predicting per-query masks regressed onto fixed targets.
#![allow(dead_code)]

use mask2former::graph::{Graph, Value};
use rand::{Rng, SeedableRng};

pub const C: usize = 16;
pub const H: usize = 8;
pub const W: usize = 8;
pub const HEADS: usize = 2;
pub const QUERIES: usize = 4;
const POINTS: usize = 2;

pub struct Toy {
    pub g: Graph,
    pub loss: Value,
    /// (name, initial values) of every parameter.
    pub params: Vec<(String, Vec<f32>)>,
    /// (name, data) of every input.
    pub inputs: Vec<(String, Vec<f32>)>,
}

fn linear(g: &mut Graph, name: &str, x: Value, out: usize, bias: bool) -> Value {
    let d_in = *g.shape(x).last().unwrap();
    let w = g.param(&format!("{name}.weight"), &[out, d_in]).unwrap();
    let b = bias.then(|| g.param(&format!("{name}.bias"), &[out]).unwrap());
    g.linear(x, w, b).unwrap()
}

fn layer_norm(g: &mut Graph, name: &str, x: Value) -> Value {
    let c = *g.shape(x).last().unwrap();
    let w = g.param(&format!("{name}.weight"), &[c]).unwrap();
    let b = g.param(&format!("{name}.bias"), &[c]).unwrap();
    g.layer_norm(x, w, b, 1e-5).unwrap()
}

/// Builds the network and its loss; parameters get a fixed-seed init (uniform ±1/√fan_in,
/// norms at weight 1 / bias 0), the image and target masks come from the same seed.
pub fn toy(seed: u64) -> Toy {
    toy_with(seed, true)
}

/// [`toy`] with the attention mask either from the queries' own guess (as Mask2Former: the
/// loss then jumps where a guess crosses zero) or fixed (a smooth loss, for finite differences).
pub fn toy_with(seed: u64, mask_from_guess: bool) -> Toy {
    let mut g = Graph::new();
    let image = g.input("image", &[1, 3, H, W]).unwrap();
    let target = g.input("target", &[1, QUERIES, H * W]).unwrap();
    let n = H * W;

    // Stem: conv 3×3 + ReLU, NCHW [1, C, H, W] → tokens [1, HW, C] through a transposing
    // matmul with the identity.
    let x = g.scoped("stem", |g| {
        let w = g.param("stem.conv.weight", &[C, 3, 3, 3]).unwrap();
        let b = g.param("stem.conv.bias", &[C]).unwrap();
        let x = g.conv2d(image, w, Some(b), 1, 1).unwrap();
        let x = g.relu(x).unwrap();
        let x = g.reshape(x, &[1, C, n]).unwrap();
        let mut eye = vec![0.0; C * C];
        for i in 0..C {
            eye[i * C + i] = 1.0;
        }
        let eye = g.constant(&eye, &[1, C, C]).unwrap();
        g.matmul_t(x, eye, true, false).unwrap()
    });

    // Swin block: x + proj(window_attention(LN(x))), then x + MLP(LN(x)).
    let x = g.scoped("swin", |g| {
        let y = layer_norm(g, "swin.norm1", x);
        let q = linear(g, "swin.query", y, C, true);
        let k = linear(g, "swin.key", y, C, true);
        let v = linear(g, "swin.value", y, C, true);
        let table = g
            .param("swin.relative_position_bias_table", &[49, HEADS])
            .unwrap();
        let [q, k, v] = [q, k, v].map(|t| g.reshape(t, &[1, H, W, C]).unwrap());
        let a = g.window_attention(q, k, v, table, HEADS, 4, 2).unwrap();
        let a = g.reshape(a, &[1, n, C]).unwrap();
        let a = linear(g, "swin.proj", a, C, true);
        let x = g.add(x, a).unwrap();
        let y = layer_norm(g, "swin.norm2", x);
        let y = linear(g, "swin.fc1", y, 2 * C, true);
        let y = g.gelu(y).unwrap();
        let y = linear(g, "swin.fc2", y, C, true);
        g.add(x, y).unwrap()
    });

    // Deformable attention over the one 8×8 level: reference point per token + offsets.
    let x = g.scoped("msda", |g| {
        let value = linear(g, "msda.value_proj", x, C, true);
        let value = g.reshape(value, &[1, n, HEADS, C / HEADS]).unwrap();
        let off = linear(g, "msda.sampling_offsets", x, HEADS * POINTS * 2, true);
        let off = g.reshape(off, &[1, n, HEADS, 1, POINTS, 2]).unwrap();
        let off = g.scale(off, 1.0 / W as f32).unwrap();
        let refs: Vec<f32> = (0..n)
            .flat_map(|i| {
                [
                    ((i % W) as f32 + 0.5) / W as f32,
                    ((i / W) as f32 + 0.5) / H as f32,
                ]
            })
            .collect();
        let refs = g.constant(&refs, &[1, n, 1, 1, 1, 2]).unwrap();
        let loc = g.add(off, refs).unwrap();
        let att = linear(g, "msda.attention_weights", x, HEADS * POINTS, true);
        let att = g.reshape(att, &[1, n, HEADS, 1, POINTS]).unwrap();
        let y = g.deform_attn(value, loc, att, &[(H, W)]).unwrap();
        let y = linear(g, "msda.output_proj", y, C, true);
        let x = g.add(x, y).unwrap();
        layer_norm(g, "msda.norm", x)
    });

    // Learnable queries attend to the tokens, masked by their own (detached) mask guess, then
    // predict a mask as query · token.
    let loss = g.scoped("decoder", |g| {
        let qf = g.param("decoder.query_feat", &[1, QUERIES, C]).unwrap();
        let guess = if mask_from_guess {
            g.matmul_t(qf, x, false, true).unwrap() // [1, Q, HW]
        } else {
            let pattern: Vec<f32> = (0..QUERIES * n)
                .map(|i| ((i * 7) % 5) as f32 - 1.5)
                .collect();
            g.constant(&pattern, &[1, QUERIES, n]).unwrap()
        };
        let blocked = g.less_than_zero(guess).unwrap();
        let q = linear(g, "decoder.q_proj", qf, C, true);
        let k = linear(g, "decoder.k_proj", x, C, true);
        let v = linear(g, "decoder.v_proj", x, C, true);
        let a = g.masked_attention(q, k, v, Some(blocked), HEADS).unwrap();
        let a = linear(g, "decoder.out_proj", a, C, true);
        let q = g.add(qf, a).unwrap();
        let q = layer_norm(g, "decoder.norm", q);
        let e = linear(g, "decoder.mask_embed", q, C, true);
        let masks = g.matmul_t(e, x, false, true).unwrap(); // [1, Q, HW]
        let neg = g.scale(target, -1.0).unwrap();
        let d = g.add(masks, neg).unwrap();
        let d2 = g.mul(d, d).unwrap();
        g.mean(d2).unwrap()
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let params = g
        .params()
        .map(|(name, v, _)| {
            let shape = g.shape(v);
            let numel: usize = shape.iter().product();
            let data = if name.contains("norm") {
                vec![if name.ends_with("weight") { 1.0 } else { 0.0 }; numel]
            } else {
                let fan_in = if shape.len() > 1 { numel / shape[0] } else { C };
                let b = 1.0 / (fan_in as f32).sqrt();
                (0..numel).map(|_| rng.random_range(-b..b)).collect()
            };
            (name.to_string(), data)
        })
        .collect();
    let img: Vec<f32> = (0..3 * H * W)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    // Each query's target: one quadrant-ish block of the image, ±1.
    let tgt: Vec<f32> = (0..QUERIES * n)
        .map(|i| {
            let (q, p) = (i / n, i % n);
            let (y, x) = (p / W, p % W);
            if (y < H / 2) == q.is_multiple_of(2) && (x < W / 2) == (q / 2 == 0) {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    Toy {
        g,
        loss,
        params,
        inputs: vec![("image".into(), img), ("target".into(), tgt)],
    }
}
