//! The executor end to end on the adapter, with the test ops of `graph_common`: values and
//! gradients against hand-derived formulas, planned buffers against one buffer per value on
//! random graphs, in-place reuse, errors, profiles.

mod graph_common;

use graph_common::{graph, TAdd, TBroadcast, TMul, TScale, TSum};
use mask2former::graph::{
    CompileOptions, Executable, Graph, GraphError, HostData, PlanOptions, Value,
};
use mask2former::testing;
use rand::Rng;

const NO_REUSE: PlanOptions = PlanOptions {
    reuse: false,
    inplace: false,
};

struct Net {
    g: Graph,
    loss: Value,
    h3: Value,
}

/// loss = Σ ((2(x·w1 + b))² · w2 + w2), with a parameter `u` on a branch the loss ignores.
fn net(n: usize) -> Net {
    let mut g = graph();
    let x = g.input("x", &[n]).unwrap();
    let w1 = g.param("w1", &[n]).unwrap();
    let b = g.param("b", &[n]).unwrap();
    let w2 = g.param("w2", &[n]).unwrap();
    let u = g.param("u", &[n]).unwrap();
    let h = g.apply1(TMul, &[x, w1]).unwrap();
    let h2 = g.apply1(TAdd, &[h, b]).unwrap();
    let h3 = g.apply1(TScale(2.0), &[h2]).unwrap();
    let h4 = g.apply1(TMul, &[h3, h3]).unwrap();
    let r = g.apply1(TMul, &[h4, w2]).unwrap();
    let s = g.apply1(TAdd, &[r, w2]).unwrap();
    let _unused = g.apply1(TMul, &[u, x]).unwrap();
    let loss = g.apply1(TSum, &[s]).unwrap();
    g.backward(loss).unwrap();
    Net { g, loss, h3 }
}

fn set_all(exe: &mut Executable, vals: &[(&str, &Vec<f32>)]) {
    for (name, v) in vals {
        if *name == "x" {
            exe.set_input(name, *v).unwrap();
        } else {
            exe.set_param(name, v).unwrap();
        }
    }
}

#[test]
fn values_and_gradients_match_the_formula() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let n = 300;
    let Net { g, loss, h3 } = net(n);
    assert!(
        g.grad(g.by_name("u").unwrap()).is_none(),
        "unused parameter has no gradient"
    );
    let x = testing::uniform(&mut rng, n, -1.0, 1.0);
    let w1 = testing::uniform(&mut rng, n, -1.0, 1.0);
    let b = testing::uniform(&mut rng, n, -1.0, 1.0);
    let w2 = testing::uniform(&mut rng, n, -1.0, 1.0);
    let u = testing::uniform(&mut rng, n, -1.0, 1.0);
    let vals = [("x", &x), ("w1", &w1), ("b", &b), ("w2", &w2), ("u", &u)];

    let mut outs = Vec::new();
    for plan in [PlanOptions::default(), NO_REUSE] {
        let opts = CompileOptions::training().with_plan(plan);
        let mut exe = Executable::compile(rt, &g, &[loss, h3], &opts).unwrap();
        exe.plan().check_no_overlap().unwrap();
        set_all(&mut exe, &vals);
        let got = exe.run_with(&[]).unwrap();
        let grads: Vec<Vec<f32>> = ["w1", "b", "w2"]
            .iter()
            .map(|p| rt.download(exe.grad(p).unwrap().unwrap()).unwrap())
            .collect();
        assert!(exe.grad("u").unwrap().is_none());
        outs.push((got, grads, exe.plan().stats()));
    }
    let (with, without) = (&outs[0], &outs[1]);
    assert_eq!(with.0, without.0, "outputs with and without buffer reuse");
    assert_eq!(with.1, without.1, "gradients with and without buffer reuse");
    assert!(with.2.inplace >= 1, "scale runs in place: {}", with.2);
    assert_eq!(without.2.inplace, 0);
    assert!(
        with.2.planned_bytes < without.2.planned_bytes,
        "reuse saves memory: {} vs {}",
        with.2,
        without.2
    );
    assert_eq!(without.2.planned_bytes, without.2.unshared_bytes);

    // Reference in f64.
    let (mut want_loss, mut gw1, mut gb, mut gw2, mut wh3) =
        (0.0f64, vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let h3 = 2.0 * (x[i] as f64 * w1[i] as f64 + b[i] as f64);
        want_loss += h3 * h3 * w2[i] as f64 + w2[i] as f64;
        wh3.push(h3 as f32);
        gw1.push((4.0 * h3 * w2[i] as f64 * x[i] as f64) as f32);
        gb.push((4.0 * h3 * w2[i] as f64) as f32);
        gw2.push((h3 * h3 + 1.0) as f32);
    }
    // The loss sums 300 terms of both signs in f32: rounding relative to the partly cancelled
    // result reaches ~2e-5 for some inputs (seen: 1.6e-5), so the scalar gets 1e-4.
    testing::assert_close("loss", seed, &with.0[0], &[want_loss as f32], 1e-4);
    testing::assert_close("h3", seed, &with.0[1], &wh3, 1e-6);
    testing::assert_close("d/dw1", seed, &with.1[0], &gw1, 1e-6);
    testing::assert_close("d/db", seed, &with.1[1], &gb, 1e-6);
    testing::assert_close("d/dw2", seed, &with.1[2], &gw2, 1e-6);
}

/// `backward_from`: gradients given at two values (one upstream of the other, so `h` sums a
/// seed and a propagated contribution) against the formula; a seed of the wrong shape is refused.
#[test]
fn seeded_backward_matches_the_formula() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let n = 257;
    let mut g = graph();
    let x = g.input("x", &[n]).unwrap();
    let w1 = g.param("w1", &[n]).unwrap();
    let b = g.param("b", &[n]).unwrap();
    let w2 = g.param("w2", &[n]).unwrap();
    let h0 = g.apply1(TMul, &[x, w1]).unwrap();
    let h = g.apply1(TAdd, &[h0, b]).unwrap();
    let y = g.apply1(TMul, &[h, w2]).unwrap();
    let gy = g.input("gy", &[n]).unwrap();
    let gh = g.input("gh", &[n]).unwrap();
    let short = g.input("short", &[n - 1]).unwrap();
    let err = g
        .clone()
        .backward_from(&[(y, short)])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{:?}", [n - 1])), "{err}");
    g.backward_from(&[(y, gy), (h, gh)]).unwrap();

    let vals: Vec<Vec<f32>> = (0..6)
        .map(|_| testing::uniform(&mut rng, n, -1.0, 1.0))
        .collect();
    let mut exe = Executable::compile(rt, &g, &[y], &CompileOptions::training()).unwrap();
    for (name, v) in ["x", "gy", "gh"].iter().zip(&vals[..3]) {
        exe.set_input(name, v).unwrap();
    }
    for (name, v) in ["w1", "b", "w2"].iter().zip(&vals[3..]) {
        exe.set_param(name, v).unwrap();
    }
    exe.run_with(&[]).unwrap();
    let got = |p: &str| rt.download(exe.grad(p).unwrap().unwrap()).unwrap();
    let [xs, gys, ghs, w1s, bs, w2s] = &vals[..] else {
        unreachable!()
    };
    let (mut gw1, mut gb, mut gw2) = (vec![], vec![], vec![]);
    for i in 0..n {
        let h = xs[i] as f64 * w1s[i] as f64 + bs[i] as f64;
        let dh = gys[i] as f64 * w2s[i] as f64 + ghs[i] as f64;
        gw1.push((dh * xs[i] as f64) as f32);
        gb.push(dh as f32);
        gw2.push((gys[i] as f64 * h) as f32);
    }
    testing::assert_close("d/dw1", seed, &got("w1"), &gw1, 1e-6);
    testing::assert_close("d/db", seed, &got("b"), &gb, 1e-6);
    testing::assert_close("d/dw2", seed, &got("w2"), &gw2, 1e-6);
}

#[test]
fn unused_branches_get_no_dispatches() {
    let rt = testing::runtime();
    let Net { g, loss, .. } = net(8);
    let exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();
    // Forward: mul, add, scale, mul, mul, add, sum (the `u·x` branch is dropped). Backward:
    // broadcast, add's identity, mul→w2 and mul→h4, mul(h3) twice + accumulate, scale, mul→w1.
    let forward = 7;
    let steps = exe.plan().steps().len();
    let labels: Vec<&str> = exe
        .plan()
        .steps()
        .iter()
        .map(|id| g.node(*id).op_name())
        .collect();
    assert!(steps > forward, "{labels:?}");
    // Plus one copy: b's gradient (add's identity) is read by w1's, so w1's is computed outside
    // the gradient arena and copied in.
    assert_eq!(exe.arena_copies(), 1);
    assert_eq!(exe.dispatch_count(), steps + 1, "{labels:?}");
    // Inference needs only the forward nodes.
    let inf = Executable::compile(rt, &g, &[loss], &CompileOptions::inference()).unwrap();
    assert_eq!(inf.dispatch_count(), forward);
    // The `u·x` node and the gradient nodes mul's rule builds for `x` (an input) exist in the
    // graph but are not planned.
    let op_nodes = g.nodes().iter().filter(|n| n.op().is_some()).count();
    assert!(op_nodes >= steps + 2, "{op_nodes} op nodes, {steps} steps");
}

/// Random graphs of adds, muls, scales, sums, broadcasts and reshapes, differentiated; every
/// output and gradient must be bit-identical with and without buffer sharing.
#[test]
fn planned_buffers_give_the_same_results_as_unshared_ones() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for case in 0..6 {
        let sizes = [4usize, 16, 36];
        let mut g = graph();
        let mut pool: Vec<Vec<Value>> = vec![Vec::new(); sizes.len()];
        let mut host: Vec<(String, Vec<f32>)> = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            for j in 0..2 {
                let name = format!("p{k}_{j}");
                pool[k].push(g.param(&name, &[n]).unwrap());
                host.push((name, testing::uniform(&mut rng, n, -1.0, 1.0)));
            }
        }
        for _ in 0..rng.random_range(10..30) {
            let k = rng.random_range(0..sizes.len());
            let pick = |rng: &mut rand::rngs::StdRng, p: &[Value]| p[rng.random_range(0..p.len())];
            let a = pick(&mut rng, &pool[k]);
            let b = pick(&mut rng, &pool[k]);
            let v = match rng.random_range(0..6) {
                0 => g.apply1(TAdd, &[a, b]).unwrap(),
                1 => g.apply1(TMul, &[a, b]).unwrap(),
                2 => g.apply1(TScale(rng.random_range(-1.5..1.5)), &[a]).unwrap(),
                3 => {
                    // Across sizes: sum to one element, then spread to another size.
                    let s = g.apply1(TSum, &[a]).unwrap();
                    let k2 = rng.random_range(0..sizes.len());
                    let v = g.apply1(TBroadcast(vec![sizes[k2]]), &[s]).unwrap();
                    pool[k2].push(v);
                    continue;
                }
                4 => {
                    let n = sizes[k];
                    let r = g.reshape(a, &[n / 2, 2]).unwrap();
                    let r = g.apply1(TScale(0.5), &[r]).unwrap();
                    g.reshape(r, &[n]).unwrap()
                }
                _ => {
                    let d = g.detach(a).unwrap();
                    g.apply1(TAdd, &[d, b]).unwrap()
                }
            };
            pool[k].push(v);
        }
        // Loss: sum over the last value of each size, combined through broadcasts.
        let mut parts = Vec::new();
        for p in &pool {
            parts.push(g.apply1(TSum, &[*p.last().unwrap()]).unwrap());
        }
        let mut loss = parts[0];
        for p in &parts[1..] {
            loss = g.apply1(TAdd, &[loss, *p]).unwrap();
        }
        g.backward(loss).unwrap();
        let mut outputs = vec![loss];
        outputs.extend(pool.iter().map(|p| p[p.len() / 2]));

        let mut results = Vec::new();
        for plan in [PlanOptions::default(), NO_REUSE] {
            let opts = CompileOptions::training().with_plan(plan);
            let mut exe = Executable::compile(rt, &g, &outputs, &opts).unwrap();
            exe.plan()
                .check_no_overlap()
                .unwrap_or_else(|e| panic!("case {case} (seed {seed}): {e}"));
            for (name, data) in &host {
                exe.set_param(name, data).unwrap();
            }
            let outs = exe.run_with(&[]).unwrap();
            let mut grads = Vec::new();
            for (name, _) in &host {
                if let Some(t) = exe.grad(name).unwrap() {
                    grads.push(rt.download(t).unwrap());
                }
            }
            results.push((outs, grads, exe.plan().stats()));
        }
        let bits = |v: &Vec<Vec<f32>>| -> Vec<Vec<u32>> {
            v.iter()
                .map(|x| x.iter().map(|f| f.to_bits()).collect())
                .collect()
        };
        assert_eq!(
            bits(&results[0].0),
            bits(&results[1].0),
            "case {case} outputs (seed {seed})"
        );
        assert_eq!(
            bits(&results[0].1),
            bits(&results[1].1),
            "case {case} gradients (seed {seed})"
        );
        assert!(results[0].2.planned_bytes <= results[1].2.planned_bytes);
        assert!(results[0].2.planned_bytes >= results[0].2.live_peak_bytes);
    }
}

#[test]
fn run_errors_name_what_is_missing_or_wrong() {
    let rt = testing::runtime();
    let Net { g, loss, .. } = net(8);
    let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();
    let err = exe.run().unwrap_err();
    assert!(
        matches!(err, GraphError::ParamNotSet(ref p) if p == "w1"),
        "{err}"
    );
    for p in ["w1", "b", "w2", "u"] {
        exe.set_param(p, &[0.5; 8]).unwrap();
    }
    let err = exe.run().unwrap_err().to_string();
    assert!(err.contains("input `x`"), "{err}");
    let err = exe
        .set_input("x", &vec![1.0f32; 7])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`x`") && err.contains("7") && err.contains("8"),
        "{err}"
    );
    let err = exe
        .set_input("x", HostData::U32(&[1; 8]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("U32"), "{err}");
    let err = exe.set_param("nope", &[1.0]).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    exe.set_input("x", &vec![1.0f32; 8]).unwrap();
    // (2(0.5+0.5))² · 0.5 + 0.5 = 2.5 per element.
    assert_eq!(exe.run_with(&[]).unwrap()[0], vec![20.0]);
    let h = g.by_name("x").unwrap();
    assert!(exe.read(h).is_ok(), "inputs are readable");
    let inner = g.nodes()[6].outputs[0];
    assert!(matches!(
        exe.read(inner),
        Err(GraphError::NotAnOutput { .. })
    ));
}

#[test]
fn profile_table_lists_every_op() {
    let rt = testing::runtime();
    if !rt.caps().timestamps {
        eprintln!("skipping profile_table_lists_every_op: adapter has no timestamp queries");
        return;
    }
    let Net { g, loss, .. } = net(64);
    let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();
    for p in ["w1", "b", "w2", "u"] {
        exe.set_param(p, &[0.5; 64]).unwrap();
    }
    exe.set_input("x", &vec![1.0f32; 64]).unwrap();
    let prof = exe.profile().unwrap();
    assert_eq!(prof.entries.len(), exe.dispatch_count());
    let rows = prof.by_op();
    let count: usize = rows.iter().map(|r| r.count).sum();
    assert_eq!(count, exe.dispatch_count());
    let share: f64 = rows.iter().map(|r| r.share).sum();
    assert!(
        (share - 1.0).abs() < 1e-6 || prof.total().is_zero(),
        "{share}"
    );
    let table = prof.to_string();
    for op in ["t_mul", "t_add", "t_scale", "t_sum", "t_broadcast", "total"] {
        assert!(table.contains(op), "{table}");
    }
}

/// A training step's shape: the host reads `h = (x·w)²` after the first phase, sets a seed
/// `s` from it, and the second phase computes `Σ h·s` and the gradient. The split run equals
/// one whole run with the same seed, and misuse is an error.
#[test]
fn split_run_reads_between_phases() {
    let rt = testing::runtime();
    let n = 37;
    let mut g = graph();
    let x = g.input("x", &[n]).unwrap();
    let s = g.input("s", &[n]).unwrap();
    let w = g.param("w", &[n]).unwrap();
    let xw = g.apply1(TMul, &[x, w]).unwrap();
    let h = g.apply1(TMul, &[xw, xw]).unwrap();
    let hs = g.apply1(TMul, &[h, s]).unwrap();
    let loss = g.apply1(TSum, &[hs]).unwrap();
    g.backward(loss).unwrap();
    let mut rng = testing::rng(testing::seed());
    let xd = testing::uniform(&mut rng, n, -1.0, 1.0);
    let wd = testing::uniform(&mut rng, n, -1.0, 1.0);

    let mut exe = Executable::compile(rt, &g, &[loss, h], &CompileOptions::training()).unwrap();
    assert!(matches!(exe.run_first_phase(), Err(GraphError::NotSplit)));
    // `loss` depends on the seed: it cannot be read between the phases.
    assert!(matches!(
        exe.split_before_inputs(&g, &["s"], &[loss]),
        Err(GraphError::NotAnOutput { .. })
    ));
    exe.split_before_inputs(&g, &["s"], &[h]).unwrap();
    exe.set_param("w", &wd).unwrap();
    assert!(matches!(
        exe.run_first_phase(),
        Err(GraphError::InputNotSet(name)) if name == "x"
    ));
    exe.set_input("x", &xd).unwrap();
    exe.run_first_phase().unwrap();
    let hd = exe.read(h).unwrap();
    let want_h: Vec<f32> = xd.iter().zip(&wd).map(|(a, b)| (a * b) * (a * b)).collect();
    testing::assert_close("h", 0, &hd, &want_h, 1e-6);
    // The seed is computed on the host from what the first phase produced.
    let sd: Vec<f32> = hd.iter().map(|v| 1.0 - v).collect();
    exe.set_input("s", &sd).unwrap();
    exe.run_second_phase().unwrap();
    let split_loss = exe.read(loss).unwrap();
    let split_grad = rt.download(exe.grad("w").unwrap().unwrap()).unwrap();

    let mut whole = Executable::compile(rt, &g, &[loss, h], &CompileOptions::training()).unwrap();
    whole.set_param("w", &wd).unwrap();
    let got = whole
        .run_with(&[("x", xd.as_slice().into()), ("s", sd.as_slice().into())])
        .unwrap();
    let grad = rt.download(whole.grad("w").unwrap().unwrap()).unwrap();
    assert_eq!(split_loss, got[0]);
    assert_eq!(split_grad, grad);
}

/// Gradients in the gradient arena: placed where the binding rules allow, copied in where not
/// (a gradient shared by two parameters, the loss seed itself, a gradient whose step reads
/// another arena gradient); the values read back through `grad` and through the arena blocks
/// are the hand-derived ones, and no step both reads and writes the arena.
#[test]
fn gradients_land_in_the_arena_placed_or_copied() {
    use mask2former::graph::Storage;
    let rt = testing::runtime();
    let n = 37;
    let mut g = graph();
    let x = g.input("x", &[n]).unwrap();
    let [a, b, c, q, w] = ["a", "b", "c", "q", "w"].map(|s| g.param(s, &[n]).unwrap());
    let p = g.param("p", &[1]).unwrap();
    let s = g.apply1(TAdd, &[a, b]).unwrap();
    let t = g.apply1(TMul, &[s, x]).unwrap();
    let u = g.apply1(TMul, &[c, x]).unwrap();
    let v = g.apply1(TAdd, &[u, q]).unwrap();
    let ww = g.apply1(TMul, &[w, w]).unwrap();
    let tv = g.apply1(TAdd, &[t, v]).unwrap();
    let z = g.apply1(TAdd, &[tv, ww]).unwrap();
    let l1 = g.apply1(TSum, &[z]).unwrap();
    let loss = g.apply1(TAdd, &[l1, p]).unwrap();
    g.backward(loss).unwrap();
    let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();

    // p's gradient is the seed (a constant), a and b share one, c's step reads q's.
    assert_eq!(exe.arena_copies(), 4);
    let root = |v: Value| match exe.plan().storage(v) {
        Storage::View(r) => r,
        _ => v,
    };
    for id in exe.plan().steps() {
        let node = g.node(*id);
        let writes = node
            .outputs
            .iter()
            .any(|v| matches!(exe.plan().storage(root(*v)), Storage::Arena(_)));
        let reads = node
            .inputs()
            .iter()
            .any(|v| matches!(exe.plan().storage(root(*v)), Storage::Arena(_)));
        assert!(
            !(writes && reads),
            "{} reads and writes the arena",
            node.label
        );
    }

    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let xs = testing::uniform(&mut rng, n, -1.0, 1.0);
    let ws = testing::uniform(&mut rng, n, -1.0, 1.0);
    exe.set_input("x", &xs).unwrap();
    for name in ["a", "b", "c", "q"] {
        exe.set_param(name, &vec![0.5; n]).unwrap();
    }
    exe.set_param("w", &ws).unwrap();
    exe.set_param("p", &[3.0]).unwrap();
    exe.run().unwrap();
    let w2: Vec<f32> = ws.iter().map(|w| 2.0 * w).collect();
    let want: [(&str, Vec<f32>); 6] = [
        ("a", xs.clone()),
        ("b", xs.clone()),
        ("c", xs.clone()),
        ("q", vec![1.0; n]),
        ("w", w2),
        ("p", vec![1.0]),
    ];
    let mut sumsq = 0.0f64;
    for (name, grad) in &want {
        let got = rt.download(exe.grad(name).unwrap().unwrap()).unwrap();
        testing::assert_close(&format!("d/d{name}"), seed, &got, grad, 1e-6);
        sumsq += grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>();
    }
    // The blocks hold the gradients and zero padding: their sum of squares is the gradients'.
    let (_, grads) = exe.arenas().unwrap();
    let blocks: f64 = grads
        .blocks()
        .iter()
        .flat_map(|b| rt.download(b).unwrap())
        .map(|g| (g as f64).powi(2))
        .sum();
    assert!(
        (blocks - sumsq).abs() <= 1e-5 * sumsq,
        "{blocks} vs {sumsq}"
    );
}
