//! Parity of the training criterion and one training step with transformers' Mask2Former
//! (`tests/fixtures/parity/tiny/loss.*`, see the README there): with the recorded random point
//! draws replayed, the matching, every loss term, every parameter gradient and the parameters
//! after one AdamW step must match.

use std::collections::HashMap;
use std::path::PathBuf;

use mask2former::graph::{CompileOptions, Executable, Graph, HostData, Value};
use mask2former::model::checkpoint::Checkpoint;
use mask2former::model::config::Mask2FormerConfig;
use mask2former::model::criterion::device::{
    attach_device_criterion, drawn_loss_input_names, given_point_names, match_targets, solve_costs,
    LossWeights, MatchShape, PointsFrom, MATCH_TARGET_CLASSES, MATCH_TARGET_MASKS,
};
use mask2former::model::criterion::{
    attach_logit_gradients, seed_names, Criterion, CriterionConfig, ImageTargets, Logits,
    LossOutput, PredictionShape, ReplayPoints,
};
use mask2former::model::network;
use mask2former::optim::{AdamW, AdamWConfig, GroupConfig};
use mask2former::testing;
use safetensors::{Dtype, SafeTensors};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tiny")
}

enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

struct Fixture {
    tensors: HashMap<String, (Vec<usize>, Data)>,
    json: serde_json::Value,
    config: Mask2FormerConfig,
}

impl Fixture {
    fn load() -> Self {
        let bytes = std::fs::read(dir().join("loss.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors = HashMap::new();
        for (k, v) in st.iter() {
            let d = v.data();
            let data = match v.dtype() {
                Dtype::F32 => Data::F32(
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => Data::I64(
                    d.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::U8 => Data::U8(d.to_vec()),
                other => panic!("{k}: unexpected dtype {other:?}"),
            };
            tensors.insert(k.to_string(), (v.shape().to_vec(), data));
        }
        let json =
            serde_json::from_slice(&std::fs::read(dir().join("loss.json")).unwrap()).unwrap();
        let config = Mask2FormerConfig::from_file(&dir().join("config.json")).unwrap();
        Self {
            tensors,
            json,
            config,
        }
    }
    fn f32(&self, k: &str) -> &[f32] {
        match &self
            .tensors
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing"))
            .1
        {
            Data::F32(v) => v,
            _ => panic!("{k} is not f32"),
        }
    }
    fn i64(&self, k: &str) -> &[i64] {
        match &self.tensors[k].1 {
            Data::I64(v) => v,
            _ => panic!("{k} is not i64"),
        }
    }
    fn shape(&self, k: &str) -> &[usize] {
        &self.tensors[k].0
    }
    fn targets(&self) -> Vec<ImageTargets> {
        (0..2)
            .map(|b| {
                let k = format!("mask_labels.{b}");
                let s = self.shape(&k).to_vec();
                let Data::U8(m) = &self.tensors[&k].1 else {
                    panic!("{k} is not u8")
                };
                ImageTargets {
                    height: s[1],
                    width: s[2],
                    masks: m.iter().map(|&v| v as f32).collect(),
                    classes: self
                        .i64(&format!("class_labels.{b}"))
                        .iter()
                        .map(|&c| c as u32)
                        .collect(),
                }
            })
            .collect()
    }
    fn replay(&self) -> ReplayPoints {
        let mut draws = Vec::new();
        for i in 0.. {
            let k = format!("rand.{i:03}");
            if !self.tensors.contains_key(&k) {
                break;
            }
            let s = self.shape(&k);
            draws.push(([s[0], s[1], s[2]], self.f32(&k).to_vec()));
        }
        ReplayPoints::new(draws)
    }
    fn criterion(&self) -> Criterion {
        let costs = &self.json["matcher_costs"];
        let cfg = CriterionConfig {
            num_points: self.json["train_num_points"].as_u64().unwrap() as usize,
            cost_class: costs["class"].as_f64().unwrap(),
            cost_mask: costs["mask"].as_f64().unwrap(),
            cost_dice: costs["dice"].as_f64().unwrap(),
            ..CriterionConfig::from_model(&self.config)
        };
        Criterion::new(cfg, self.config.num_labels()).unwrap()
    }
    fn shape_of_predictions(&self) -> PredictionShape {
        let c = self.shape("predictions.0.class_logits");
        let m = self.shape("predictions.0.mask_logits");
        PredictionShape {
            batch: c[0],
            queries: c[1],
            classes: c[2],
            height: m[2],
            width: m[3],
        }
    }

    fn check_loss(&self, out: &LossOutput, tol: f64) {
        let want = self.json["total_loss"].as_f64().unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
        assert!(
            rel(out.total, want) < tol,
            "total loss {} vs transformers {want}",
            out.total
        );
        let terms = self.json["terms_weighted"].as_object().unwrap();
        assert_eq!(out.terms.len(), terms.len());
        for (name, v) in terms {
            let got = out.term(name).unwrap_or_else(|| panic!("no term {name}"));
            let want = v.as_f64().unwrap();
            assert!(rel(got, want) < tol, "{name}: {got} vs transformers {want}");
        }
        assert_eq!(
            out.num_masks,
            self.json["num_masks"].as_f64().unwrap(),
            "num_masks"
        );
    }

    fn check_matches(&self, out: &LossOutput) {
        for (p, per_image) in out.matches.iter().enumerate() {
            for (b, pairs) in per_image.iter().enumerate() {
                let q = self.i64(&format!("match.{p}.{b}.query"));
                let t = self.i64(&format!("match.{p}.{b}.target"));
                let want: Vec<(usize, usize)> = q
                    .iter()
                    .zip(t)
                    .map(|(&a, &b)| (a as usize, b as usize))
                    .collect();
                assert_eq!(pairs, &want, "matcher call {p}, image {b}");
            }
        }
    }
}

/// The criterion alone, on transformers' own predictions: matching and every term.
#[test]
fn criterion_matches_transformers_on_its_predictions() {
    let fx = Fixture::load();
    let n = 4;
    let preds: Vec<Logits> = (0..n)
        .map(|k| Logits {
            class_logits: fx.f32(&format!("predictions.{k}.class_logits")),
            mask_logits: fx.f32(&format!("predictions.{k}.mask_logits")),
        })
        .collect();
    let mut replay = fx.replay();
    let out = fx
        .criterion()
        .compute(
            fx.shape_of_predictions(),
            &preds,
            &fx.targets(),
            &mut replay,
        )
        .unwrap();
    assert_eq!(replay.remaining(), 0, "every recorded draw is used");
    fx.check_matches(&out);
    // Same inputs, so only summation order and f64-vs-f32 differ.
    fx.check_loss(&out, 2e-5);
}

/// The network on the graph: forward on the fixture batch, the criterion with the recorded
/// draws, back-propagation and one AdamW step (lr 1e-4, weight decay 0.05 on every parameter).
#[test]
fn training_step_matches_transformers() {
    let fx = Fixture::load();
    let rt = testing::runtime();
    let cfg = &fx.config;
    let px = fx.shape("pixel_values").to_vec();
    let mut g = Graph::new();
    let net = network::build(&mut g, cfg, px[0], px[2], px[3]).unwrap();
    let mut fwd_outputs = Vec::new();
    for p in &net.predictions {
        fwd_outputs.push(p.class_logits);
        fwd_outputs.push(p.mask_logits);
    }
    attach_logit_gradients(&mut g, &net.predictions).unwrap();
    let mut exe = Executable::compile(rt, &g, &fwd_outputs, &CompileOptions::training()).unwrap();
    let weights = Checkpoint::load(&dir().join("model.safetensors")).unwrap();
    let names: Vec<String> = exe.param_names().map(str::to_string).collect();
    for name in &names {
        let t = weights
            .tensors()
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in the fixture model"));
        exe.set_param(name, &t.data).unwrap();
    }
    exe.set_input(network::PIXEL_VALUES, fx.f32("pixel_values"))
        .unwrap();
    let shape = fx.shape_of_predictions();
    let zeros_c = vec![0f32; shape.batch * shape.queries * shape.classes];
    let zeros_m = vec![0f32; shape.batch * shape.queries * shape.height * shape.width];
    for k in 0..net.predictions.len() {
        let (cn, mn) = seed_names(k);
        exe.set_input(&cn, HostData::F32(&zeros_c)).unwrap();
        exe.set_input(&mn, HostData::F32(&zeros_m)).unwrap();
    }
    // Forward (the zero seeds make the backward a no-op), then the criterion on our predictions.
    exe.run_graph().unwrap();
    let host: Vec<Vec<f32>> = fwd_outputs.iter().map(|&v| exe.read(v).unwrap()).collect();
    let preds: Vec<Logits> = host
        .chunks(2)
        .map(|c| Logits {
            class_logits: &c[0],
            mask_logits: &c[1],
        })
        .collect();
    let out = fx
        .criterion()
        .compute(shape, &preds, &fx.targets(), &mut fx.replay())
        .unwrap();
    fx.check_matches(&out);
    fx.check_loss(&out, 1e-4);

    for (k, gr) in out.grads.iter().enumerate() {
        let (cn, mn) = seed_names(k);
        exe.set_input(&cn, &gr.class_logits).unwrap();
        exe.set_input(&mn, &gr.mask_logits).unwrap();
    }
    // One group, every parameter decayed, as the fixture's torch.optim.AdamW.
    let groups = GroupConfig {
        weight_decay: fx.json["optimizer"]["weight_decay"].as_f64().unwrap(),
        ..GroupConfig::default()
    };
    let mut opt = AdamW::attach(&mut exe, &AdamWConfig::default(), &groups).unwrap();
    exe.run_graph().unwrap();
    let scale = check_gradients(&fx, &exe, &names);
    opt.begin_step(fx.json["optimizer"]["lr"].as_f64().unwrap());
    exe.run().unwrap();
    let lr = fx.json["optimizer"]["lr"].as_f64().unwrap();
    // Elements with rounding-noise gradients (attention key biases, also the key third of
    // `cross_attn.in_proj_bias`, see above): Adam's first step is ±lr whatever their size, so
    // only the bound |Δ| ≤ lr·(1 + wd·|p|) is meaningful there; the rest must match.
    let tau = 1e-6 * scale;
    let mut degenerate = 0;
    for name in &names {
        let got = exe.read_param(name).unwrap();
        let want = fx.f32(&format!("param_after.{name}"));
        let before = &weights.tensors()[name].data;
        let zeros = vec![0f32; before.len()];
        let grad = fx
            .tensors
            .get(&format!("grad.{name}"))
            .map_or(&zeros[..], |_| fx.f32(&format!("grad.{name}")));
        let (mut g_after, mut w_after, mut d_got, mut d_want) = (vec![], vec![], vec![], vec![]);
        for i in 0..before.len() {
            let d = got[i] - before[i];
            if (grad[i] as f64).abs() < tau {
                assert!(
                    (d as f64).abs() <= lr * (1.0 + 0.05 * (before[i] as f64).abs()) * 1.01,
                    "{name}[{i}]: update {d} exceeds lr"
                );
                degenerate += 1;
                continue;
            }
            g_after.push(got[i]);
            w_after.push(want[i]);
            d_got.push(d);
            d_want.push(want[i] - before[i]);
        }
        if g_after.is_empty() {
            continue;
        }
        let err = testing::rel_l2(&g_after, &w_after);
        assert!(
            err < 1e-4,
            "{name} after one AdamW step: relative L2 error {err:.2e}"
        );
        // The update itself (about lr per element) must match too, not only the sum.
        // (Elements with near-zero gradients flip sign under rounding: Adam turns that into ±lr.)
        let derr = testing::rel_l2(&d_got, &d_want);
        assert!(
            derr < 5e-2,
            "{name}: AdamW update relative L2 error {derr:.2e}"
        );
    }
    let total: usize = names.iter().map(|n| weights.tensors()[n].data.len()).sum();
    assert!(
        degenerate * 50 < total,
        "{degenerate} of {total} elements have noise gradients"
    );
}

/// Every parameter gradient of `exe` against transformers' (1e-3 relative L2); returns the
/// largest fixture gradient norm.
fn check_gradients(fx: &Fixture, exe: &Executable, names: &[String]) -> f64 {
    let rt = testing::runtime();
    let no_grad: Vec<&str> = fx.json["params_without_grad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // Key biases of softmax attention have a zero gradient in exact arithmetic (adding q·b to a
    // whole row of scores changes nothing); both sides hold rounding noise there, so every
    // gradient is compared relative to max(its own norm, 1e-3 × the largest gradient norm).
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let scale = fx
        .tensors
        .keys()
        .filter(|k| k.starts_with("grad."))
        .map(|k| norm(fx.f32(k)))
        .fold(0.0, f64::max);
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in names {
        let key = format!("grad.{name}");
        if !fx.tensors.contains_key(&key) {
            assert!(
                no_grad.contains(&name.as_str()),
                "{name} has no fixture gradient"
            );
            continue;
        }
        let got = rt.download(exe.grad(name).unwrap().unwrap()).unwrap();
        let want = fx.f32(&key);
        let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
        let err = norm(&diff) / norm(want).max(1e-3 * scale);
        if err.is_nan() || err >= 1e-3 {
            failures.push(format!("{name}: {err:.2e} (|g| {:.2e})", norm(want)));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "gradients off by more than 1e-3 relative L2:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        checked,
        fx.tensors.keys().filter(|k| k.starts_with("grad.")).count()
    );

    scale
}

/// The criterion on the device (matcher costs, importance sampling, losses and the backward from
/// their total, all graph nodes) with transformers' recorded draws given as inputs: the matching
/// solved from the device's costs, every loss term and every parameter gradient must match.
#[test]
fn device_criterion_training_step_matches_transformers() {
    let fx = Fixture::load();
    let rt = testing::runtime();
    let cfg = &fx.config;
    let px = fx.shape("pixel_values").to_vec();
    let shape = fx.shape_of_predictions();
    let crit = fx.criterion();
    let targets = fx.targets();
    let mut g = Graph::new();
    let net = network::build(&mut g, cfg, px[0], px[2], px[3]).unwrap();
    let preds: Vec<(Value, Value)> = net
        .predictions
        .iter()
        .map(|p| (p.class_logits, p.mask_logits))
        .collect();
    let m = MatchShape {
        points: crit.config().num_points,
        max_targets: targets.iter().map(|t| t.len()).max().unwrap(),
        target_height: targets[0].height,
        target_width: targets[0].width,
    };
    let (costs, total, terms) =
        attach_device_criterion(&mut g, &preds, shape, m, &crit, PointsFrom::Inputs).unwrap();
    g.backward(total).unwrap();
    let mut outputs = costs.clone();
    outputs.push(total);
    outputs.extend(terms.iter().flat_map(|t| [t.cross_entropy, t.mask, t.dice]));
    let mut exe = Executable::compile(rt, &g, &outputs, &CompileOptions::training()).unwrap();
    let weights = Checkpoint::load(&dir().join("model.safetensors")).unwrap();
    let names: Vec<String> = exe.param_names().map(str::to_string).collect();
    for name in &names {
        exe.set_param(name, &weights.tensors()[name].data).unwrap();
    }
    exe.set_input(network::PIXEL_VALUES, fx.f32("pixel_values"))
        .unwrap();
    let (masks, classes) = match_targets(&targets, m).unwrap();
    exe.set_input(MATCH_TARGET_MASKS, HostData::U32(&masks))
        .unwrap();
    exe.set_input(MATCH_TARGET_CLASSES, HostData::U32(&classes))
        .unwrap();

    // The recorded draws, per matcher call (transformers' order: the final prediction, then the
    // auxiliary ones): B matcher draws, the candidates and the extras of the matched pairs.
    let draws: Vec<Vec<f32>> = (0..)
        .map(|i| format!("rand.{i:03}"))
        .take_while(|k| fx.tensors.contains_key(k))
        .map(|k| fx.f32(&k).to_vec())
        .collect();
    let last = preds.len() - 1;
    let call_of = |k: usize| if k == last { 0 } else { k + 1 };
    let (b, q) = (shape.batch, shape.queries);
    let rows = b * q;
    let (p, over) = (
        crit.config().num_points,
        (crit.config().num_points as f64 * crit.config().oversample_ratio) as usize,
    );
    let extra = p - (crit.config().importance_sample_ratio * p as f64) as usize;
    let per_call = b + 2;
    let num_masks = fx.json["num_masks"].as_f64().unwrap();
    let feed = |exe: &mut Executable, k: usize, matches: &[Vec<(usize, usize)>]| {
        let first = call_of(k) * per_call;
        let coords: Vec<f32> = (0..b).flat_map(|i| draws[first + i].clone()).collect();
        let [mn, cn, en] = given_point_names(k);
        let (mut cand, mut ext) = (vec![0f32; rows * over * 2], vec![0f32; rows * extra * 2]);
        let pairs = matches
            .iter()
            .enumerate()
            .flat_map(|(bi, ps)| ps.iter().map(move |&(qi, _)| bi * q + qi));
        for (i, r) in pairs.enumerate() {
            let (c, e) = (&draws[first + b], &draws[first + b + 1]);
            cand[r * over * 2..(r + 1) * over * 2]
                .copy_from_slice(&c[i * over * 2..(i + 1) * over * 2]);
            ext[r * extra * 2..(r + 1) * extra * 2]
                .copy_from_slice(&e[i * extra * 2..(i + 1) * extra * 2]);
        }
        exe.set_input(&mn, HostData::F32(&coords)).unwrap();
        exe.set_input(&cn, HostData::F32(&cand)).unwrap();
        exe.set_input(&en, HostData::F32(&ext)).unwrap();
        let w = LossWeights::new(&crit, shape, &targets, matches, m.max_targets, num_masks);
        let n = drawn_loss_input_names(k);
        exe.set_input(&n.row_targets, HostData::U32(&w.row_targets))
            .unwrap();
        exe.set_input(&n.mask_weights, HostData::F32(&w.mask_weights))
            .unwrap();
        exe.set_input(&n.class_targets, HostData::U32(&w.class_targets))
            .unwrap();
        exe.set_input(&n.class_weights, HostData::F32(&w.class_weights))
            .unwrap();
    };
    // The costs first (any loss inputs), then the losses of the matchings solved from them.
    for k in 0..preds.len() {
        feed(&mut exe, k, &vec![Vec::new(); b]);
    }
    exe.run().unwrap();
    let mut matches = Vec::new();
    for (k, &c) in costs.iter().enumerate() {
        let mk = solve_costs(&exe.read(c).unwrap(), shape, m.max_targets, &targets).unwrap();
        for (bi, pairs) in mk.iter().enumerate() {
            let qs = fx.i64(&format!("match.{}.{bi}.query", call_of(k)));
            let ts = fx.i64(&format!("match.{}.{bi}.target", call_of(k)));
            let want: Vec<(usize, usize)> = qs
                .iter()
                .zip(ts)
                .map(|(&a, &t)| (a as usize, t as usize))
                .collect();
            assert_eq!(pairs, &want, "prediction {k}, image {bi}");
        }
        matches.push(mk);
    }
    for (k, mk) in matches.iter().enumerate() {
        feed(&mut exe, k, mk);
    }
    exe.run().unwrap();

    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    let want_total = fx.json["total_loss"].as_f64().unwrap();
    let got_total = exe.read(total).unwrap()[0] as f64;
    assert!(
        rel(got_total, want_total) < 1e-4,
        "total {got_total} vs transformers {want_total}"
    );
    let want_terms = fx.json["terms_weighted"].as_object().unwrap();
    for (k, t) in terms.iter().enumerate() {
        let suffix = if k == last {
            String::new()
        } else {
            format!("_{k}")
        };
        for (name, v) in [
            ("loss_cross_entropy", t.cross_entropy),
            ("loss_mask", t.mask),
            ("loss_dice", t.dice),
        ] {
            let name = format!("{name}{suffix}");
            let want = want_terms[&name].as_f64().unwrap();
            let got = exe.read(v).unwrap()[0] as f64;
            assert!(
                rel(got, want) < 1e-4,
                "{name}: {got} vs transformers {want}"
            );
        }
    }
    check_gradients(&fx, &exe, &names);
}
