//! Shared by `benches/model.rs` and `examples/profile_model.rs`: the Swin-T Mask2Former at the
//! official shape with random weights, compiled for one input size, and a FLOP count of the
//! nodes its plan runs.

use std::collections::BTreeMap;
use std::path::Path;

use mask2former::graph::{CompileOptions, Executable, Graph, Value};
use mask2former::model::config::Mask2FormerConfig;
use mask2former::model::network::expected_keys;
use mask2former::model::network::{self, PIXEL_VALUES};
use mask2former::Runtime;
use rand::{Rng, SeedableRng};

/// `facebook/mask2former-swin-tiny-coco-panoptic`'s architecture, as written by transformers
/// (the same config `tools/torch_bench.py` builds).
pub const CONFIG_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/swin-tiny-config.json");

pub fn swin_tiny_config() -> Mask2FormerConfig {
    let cfg = Mask2FormerConfig::from_file(Path::new(CONFIG_PATH))
        .unwrap_or_else(|e| panic!("{CONFIG_PATH}: {e}"));
    cfg.validate()
        .unwrap_or_else(|e| panic!("{CONFIG_PATH}: {e}"));
    cfg
}

/// Standard normals (Box-Muller; `rand` alone has no normal distribution).
fn normals(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Every tensor of `expected_keys(cfg)`, filled with normals scaled so activations stay O(1):
/// matrices and kernels by 1/sqrt(fan-in), norm scales around 1, everything else by 0.02.
/// Random weights cost the same time as trained ones; only finite, moderate values matter.
pub fn random_weights(cfg: &Mask2FormerConfig, seed: u64) -> BTreeMap<String, Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    expected_keys(cfg)
        .expect("the network builds for a validated config")
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let z = normals(&mut rng, n);
            let is_norm = name
                .split('.')
                .rev()
                .nth(1)
                .is_some_and(|m| m.contains("norm"))
                || name.contains("layernorm");
            let data: Vec<f32> = if shape.len() >= 2 && !name.contains("relative_position") {
                let fan_in: usize = shape[1..].iter().product();
                let s = 1.0 / (fan_in as f32).sqrt();
                z.iter().map(|v| v * s).collect()
            } else if is_norm && name.ends_with("weight") {
                z.iter().map(|v| 1.0 + 0.02 * v).collect()
            } else {
                z.iter().map(|v| 0.02 * v).collect()
            };
            (name, data)
        })
        .collect()
}

/// The network for `batch x 3 x height x width`, compiled with the model's outputs
/// (`class_queries_logits`, `masks_queries_logits`) and random weights set.
pub struct Built {
    pub graph: Graph,
    pub exe: Executable,
    /// `class_queries_logits`, `masks_queries_logits`.
    pub outputs: [Value; 2],
}

/// Builds and compiles the network the way `Mask2Former::forward` does (same graph, same
/// outputs, default compile options) and sets every parameter.
pub fn build(
    rt: &Runtime,
    cfg: &Mask2FormerConfig,
    batch: usize,
    height: usize,
    width: usize,
) -> Built {
    let mut g = Graph::new();
    let net = network::build(&mut g, cfg, batch, height, width).expect("build the network");
    let last = *net.last();
    let outputs = [last.class_logits, last.mask_logits];
    let mut exe = Executable::compile(rt, &g, &outputs, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("compile at {batch}x3x{height}x{width}: {e}"));
    for (name, data) in random_weights(cfg, 17) {
        if exe.param(&name).is_ok() {
            exe.set_param(&name, &data)
                .expect("parameter shape from expected_keys");
        }
    }
    let pixels = normals(
        &mut rand::rngs::StdRng::seed_from_u64(3),
        batch * 3 * height * width,
    );
    exe.set_input(PIXEL_VALUES, pixels.as_slice())
        .expect("pixel_values");
    Built {
        graph: g,
        exe,
        outputs,
    }
}

impl Built {
    /// One forward as `Mask2Former::forward` runs it: submit, wait, read both outputs back.
    pub fn forward(&self) -> Vec<Vec<f32>> {
        self.exe.run().expect("run");
        self.outputs
            .iter()
            .map(|&v| self.exe.read(v).expect("read output"))
            .collect()
    }
}

/// FLOPs of one run, by op name. Multiply-adds count as 2 FLOPs (detectron2/fvcore count one MAC
/// as one "FLOP", so its numbers are half of these).
#[derive(Debug, Default)]
pub struct Flops {
    /// Matmul, conv and attention kernels: the dense arithmetic.
    pub dense: BTreeMap<String, f64>,
    /// Every other op, one FLOP per output element (elementwise, norms, softmax, copies):
    /// reported, but not part of the GFLOP/s figure.
    pub other: BTreeMap<String, f64>,
}

impl Flops {
    pub fn dense_total(&self) -> f64 {
        self.dense.values().sum()
    }
    pub fn other_total(&self) -> f64 {
        self.other.values().sum()
    }
}

/// Counts the FLOPs of the op nodes the plan runs (nodes nothing requested depends on, such as
/// the auxiliary predictions, are left out because the plan skips them).
///
/// - matmul `[.., m, k] x [.., k, n]`: 2·m·n·k per batch entry;
/// - conv2d: 2·Cout·(Cin/groups)·kh·kw·Ho·Wo per image;
/// - window_attention (windows of T tokens, width C): Q·Kᵀ and P·V, 4·T²·C per window;
/// - masked_attention (Q queries, N keys, width C): 4·Q·N·C;
/// - deform_attn: per query, head, level and point, a bilinear sample of D channels
///   (4 multiply-adds) and its weighting (1 multiply-add): 10·D.
pub fn count_flops(built: &Built) -> Flops {
    let g = &built.graph;
    let mut flops = Flops::default();
    let names = built.exe.step_ops();
    for (s, &id) in built.exe.plan().steps().iter().enumerate() {
        let node = g.node(id);
        let Some(op) = node.op() else { continue };
        if op.view_of().is_some() {
            continue;
        }
        let shape = |i: usize| g.shape(node.inputs()[i]);
        let numel = |s: &[usize]| s.iter().product::<usize>() as f64;
        let out0 = g.shape(node.outputs[0]);
        // Profiles name a fused product `matmul+gelu`; its FLOPs are the graph's matmul's.
        let name = names[s].clone();
        let dense = match op.name() {
            "matmul" => {
                // out = [.., m, n] and a holds m·k per batch entry: 2·m·n·k·batch = 2·|a|·n.
                let n = *out0.last().expect("matmul output has rank >= 2") as f64;
                Some(2.0 * numel(shape(0)) * n)
            }
            "conv2d" => {
                // weight [Cout, Cin/groups, kh, kw]: |w| / Cout multiply-adds per output element.
                let w = shape(1);
                Some(2.0 * numel(out0) * numel(w) / w[0] as f64)
            }
            "window_attention" => {
                let [b, nw, _heads, t] = g.shape(node.outputs[1])[..] else {
                    panic!("window_attention's second output is [B, windows, heads, T]")
                };
                let c = *shape(0).last().expect("q is [B, H, W, C]");
                Some(4.0 * (b * nw * t * t * c) as f64)
            }
            "masked_attention" => {
                let (q, k) = (shape(0), shape(1));
                Some(4.0 * (q[0] * q[1] * k[1] * q[2]) as f64)
            }
            "deform_attn" => {
                let d = shape(0)[3] as f64;
                Some(10.0 * numel(shape(2)) * d)
            }
            _ => None,
        };
        match dense {
            Some(f) => *flops.dense.entry(name).or_default() += f,
            None => *flops.other.entry(name).or_default() += numel(out0),
        }
    }
    flops
}

pub fn print_flops(flops: &Flops) {
    println!("FLOPs per forward (multiply-add = 2):");
    for (op, f) in &flops.dense {
        println!("  {op:<24} {:>10.2} GFLOP", f / 1e9);
    }
    println!(
        "  {:<24} {:>10.2} GFLOP",
        "dense total",
        flops.dense_total() / 1e9
    );
    println!(
        "  other ops: {:.2} G output elements ({} op kinds; not in GFLOP/s)",
        flops.other_total() / 1e9,
        flops.other.len()
    );
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
