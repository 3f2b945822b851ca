//! Training a small network with conv, window attention, deformable attention and masked
//! attention end to end: forward, backward, gradient clipping and AdamW in one submit per step.

mod graph_toy;

use mask2former::graph::{CompileOptions, Executable, PlanOptions};
use mask2former::optim::{AdamW, AdamWConfig, Decay, GroupConfig, LrSchedule, Warmup};
use mask2former::testing;
use rand::Rng;

fn compile(toy: &graph_toy::Toy, plan: PlanOptions) -> Executable {
    let rt = testing::runtime();
    let opts = CompileOptions::training().with_plan(plan);
    let mut exe = Executable::compile(rt, &toy.g, &[toy.loss], &opts).unwrap();
    for (name, data) in &toy.params {
        exe.set_param(name, data).unwrap();
    }
    for (name, data) in &toy.inputs {
        exe.set_input(name, data).unwrap();
    }
    exe
}

/// Fixed seed; the mask regression loss must fall below 20% of its start in 150 steps
/// (linear warmup over 10 steps, then poly decay).
#[test]
fn toy_network_trains_below_threshold() {
    let mut toy = graph_toy::toy(7);
    toy.g.backward(toy.loss).unwrap();
    assert_eq!(
        toy.g.grads().len(),
        toy.params.len(),
        "every parameter reaches the loss"
    );
    let mut exe = compile(&toy, PlanOptions::default());
    exe.plan().check_no_overlap().unwrap();
    let cfg = AdamWConfig {
        max_grad_norm: Some(1.0),
        ..AdamWConfig::default()
    };
    let mut groups = GroupConfig::mask2former();
    groups.lr_multipliers = vec![("stem.".into(), 0.5)];
    let mut opt = AdamW::attach(&mut exe, &cfg, &groups).unwrap();
    let steps = 150;
    let schedule = LrSchedule {
        base_lr: 1e-2,
        total_steps: steps,
        warmup: Some(Warmup::Linear {
            iters: 10,
            start_factor: 0.1,
        }),
        decay: Decay::Poly { power: 0.9 },
    };
    exe.run_graph().unwrap();
    let first = exe.read(toy.loss).unwrap()[0];
    let mut losses = Vec::new();
    for step in 0..steps {
        opt.begin_step(schedule.lr(step));
        exe.run().unwrap();
        if step.is_multiple_of(25) || step + 1 == steps {
            losses.push(exe.read(toy.loss).unwrap()[0]);
        }
    }
    exe.run_graph().unwrap();
    let last = exe.read(toy.loss).unwrap()[0];
    assert!(first.is_finite() && first > 0.5, "initial loss {first}");
    assert!(
        last < 0.2 * first,
        "loss {first} -> {last} (every 25 steps: {losses:?})"
    );
    assert!(opt.grad_norm().unwrap().is_finite());
}

/// One forward/backward with and without buffer reuse gives the same loss and gradients.
/// (Compared before any optimizer step: Adam's first updates are ±lr·sign(g), which would
/// magnify the last-bit differences of the scatter-adds in deformable attention's backward.)
#[test]
fn toy_gradients_are_the_same_with_and_without_buffer_reuse() {
    let rt = testing::runtime();
    let mut toy = graph_toy::toy(11);
    toy.g.backward(toy.loss).unwrap();
    let mut results = Vec::new();
    for plan in [
        PlanOptions::default(),
        PlanOptions {
            reuse: false,
            inplace: false,
        },
    ] {
        let exe = compile(&toy, plan);
        exe.run_graph().unwrap();
        let mut all = exe.read(toy.loss).unwrap();
        for (name, _) in &toy.params {
            all.extend(rt.download(exe.grad(name).unwrap().unwrap()).unwrap());
        }
        results.push((all, exe.plan().stats()));
    }
    let (a, b) = (&results[0], &results[1]);
    assert!(a.1.planned_bytes < b.1.planned_bytes, "{} vs {}", a.1, b.1);
    testing::assert_close("loss and gradients", 0, &a.0, &b.0, 1e-5);
}

/// Central finite differences of the loss through the executor against the gradients the
/// backward rules produce, for random elements of every parameter (with a fixed attention
/// mask: a mask computed from the parameters makes the loss jump where it flips).
#[test]
fn toy_gradients_match_finite_differences() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let mut toy = graph_toy::toy_with(3, false);
    toy.g.backward(toy.loss).unwrap();
    let mut exe = compile(&toy, PlanOptions::default());
    exe.run_graph().unwrap();
    let grads: Vec<Vec<f32>> = toy
        .params
        .iter()
        .map(|(name, _)| rt.download(exe.grad(name).unwrap().unwrap()).unwrap())
        .collect();
    let loss_at = |exe: &mut Executable, name: &str, data: &[f32]| -> f64 {
        exe.set_param(name, data).unwrap();
        exe.run_graph().unwrap();
        exe.read(toy.loss).unwrap()[0] as f64
    };
    let eps = 3e-3f32;
    let mut worst = (0.0f64, String::new());
    for (k, (name, data)) in toy.params.iter().enumerate() {
        let scale = grads[k].iter().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
        for _ in 0..2 {
            let i = rng.random_range(0..data.len());
            let mut p = data.clone();
            p[i] = data[i] + eps;
            let up = loss_at(&mut exe, name, &p);
            p[i] = data[i] - eps;
            let down = loss_at(&mut exe, name, &p);
            exe.set_param(name, data).unwrap();
            let fd = (up - down) / (2.0 * eps as f64);
            let g = grads[k][i] as f64;
            // Relative to the largest gradient of the tensor, above an absolute floor: the
            // f32 loss moves by ~1e-6 from rounding alone, i.e. ~3e-4 in the quotient.
            let err = (fd - g).abs() / (scale + 0.04);
            if err > worst.0 {
                worst = (err, format!("{name}[{i}]: fd {fd:.6e}, backward {g:.6e}"));
            }
        }
    }
    assert!(worst.0 < 5e-2, "worst {worst:?} (seed {seed})");
}
