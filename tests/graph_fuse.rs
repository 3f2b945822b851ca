//! Compile-time epilogue fusion (`graph/fuse.rs`): a graph compiled with fusion gives the values
//! and gradients of the same graph compiled without it, and the fused products replace the
//! activation and residual passes they absorb.

use mask2former::graph::{CompileOptions, Executable, Graph, Value};
use mask2former::testing;

const PARAMS: [&str; 6] = ["fc1.w", "fc1.b", "fc2.w", "fc2.b", "fc3.w", "fc3.b"];

/// A Swin-style MLP block with a ReLU branch and a late residual:
/// `h = x + fc2(gelu(fc1(x)))`, `k = relu(fc3(h))`, `out = k + late` where `late = 2·h` is made
/// after fc3 (so fc3's add may not absorb it), `loss = Σ out · out`.
struct Block {
    g: Graph,
    loss: Value,
    out: Value,
    /// fc1's product, which a caller may ask to read.
    pre: Value,
}

fn block(b: usize, t: usize, c: usize) -> Block {
    let mut g = Graph::new();
    let x = g.input("x", &[b, t, c]).unwrap();
    let mut p = Vec::new();
    for (name, shape) in PARAMS.iter().zip([
        vec![4 * c, c],
        vec![4 * c],
        vec![c, 4 * c],
        vec![c],
        vec![c, c],
        vec![c],
    ]) {
        p.push(g.param(name, &shape).unwrap());
    }
    let pre = g.linear(x, p[0], Some(p[1])).unwrap();
    let y = g.gelu(pre).unwrap();
    let y = g.linear(y, p[2], Some(p[3])).unwrap();
    let h = g.add(x, y).unwrap();
    let k = g.linear(h, p[4], Some(p[5])).unwrap();
    let k = g.relu(k).unwrap();
    let late = g.scale(h, 2.0).unwrap();
    let out = g.add(k, late).unwrap();
    let sq = g.mul(out, out).unwrap();
    let loss = g.sum(sq).unwrap();
    g.backward(loss).unwrap();
    Block { g, loss, out, pre }
}

/// (outputs, gradients, op names of the steps) of one compilation.
fn run(
    blk: &Block,
    outputs: &[Value],
    fuse: bool,
    seed: u64,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<String>) {
    let rt = testing::runtime();
    let mut rng = testing::rng(seed);
    let opts = CompileOptions {
        fuse,
        ..CompileOptions::training()
    };
    let mut exe = Executable::compile(rt, &blk.g, outputs, &opts).unwrap();
    exe.plan().check_no_overlap().unwrap();
    let shape = blk.g.shape(blk.g.by_name("x").unwrap()).to_vec();
    let x = testing::uniform(&mut rng, shape.iter().product(), -1.0, 1.0);
    exe.set_input("x", &x).unwrap();
    for name in PARAMS {
        let v = blk.g.by_name(name).unwrap();
        let n: usize = blk.g.shape(v).iter().product();
        exe.set_param(name, &testing::uniform(&mut rng, n, -0.5, 0.5))
            .unwrap();
    }
    let got = exe.run_with(&[]).unwrap();
    let grads = PARAMS
        .iter()
        .map(|p| rt.download(exe.grad(p).unwrap().unwrap()).unwrap())
        .collect();
    let names = exe
        .plan()
        .steps()
        .iter()
        .map(|&id| blk.g.node(id).op_name().to_string())
        .collect();
    (got, grads, names)
}

#[test]
fn fused_values_and_gradients_equal_the_unfused_graph() {
    let seed = testing::seed();
    // Off the matmul tile grids; 2·37 rows.
    let blk = block(2, 37, 24);
    let outputs = [blk.loss, blk.out];
    let (want, want_grads, plain_steps) = run(&blk, &outputs, false, seed);
    let (got, got_grads, fused_steps) = run(&blk, &outputs, true, seed);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        testing::assert_close(&format!("output {i}"), seed, g, w, 1e-5);
    }
    for (name, (g, w)) in PARAMS.iter().zip(got_grads.iter().zip(&want_grads)) {
        testing::assert_close(&format!("d/d{name}"), seed, g, w, 1e-5);
    }
    // The node ids are the graph's, so the names are the unfused ops': count steps instead.
    assert!(
        fused_steps.len() + 3 <= plain_steps.len(),
        "gelu, relu and the MLP's residual add fold into products: {} vs {} steps",
        fused_steps.len(),
        plain_steps.len()
    );
}

#[test]
fn a_product_read_elsewhere_keeps_its_pre_activation() {
    let seed = testing::seed();
    let blk = block(1, 9, 8);
    // The caller reads fc1's product itself: it stays an output (and equal).
    let outputs = [blk.loss, blk.pre];
    let (want, want_grads, _) = run(&blk, &outputs, false, seed);
    let (got, got_grads, _) = run(&blk, &outputs, true, seed);
    testing::assert_close("loss", seed, &got[0], &want[0], 1e-5);
    testing::assert_close("fc1 product", seed, &got[1], &want[1], 1e-6);
    for (name, (g, w)) in PARAMS.iter().zip(got_grads.iter().zip(&want_grads)) {
        testing::assert_close(&format!("d/d{name}"), seed, g, w, 1e-5);
    }
}

#[test]
fn inference_fuses_without_writing_the_pre_activation() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 10]).unwrap();
    let w = g.param("w", &[16, 10]).unwrap();
    let y = g.linear(x, w, None).unwrap();
    let y = g.gelu(y).unwrap();
    let rt = testing::runtime();
    let mut outs = Vec::new();
    let mut rng = testing::rng(testing::seed());
    let (xd, wd) = (
        testing::uniform(&mut rng, 30, -2.0, 2.0),
        testing::uniform(&mut rng, 160, -1.0, 1.0),
    );
    for fuse in [false, true] {
        let opts = CompileOptions {
            fuse,
            ..CompileOptions::inference()
        };
        let mut exe = Executable::compile(rt, &g, &[y], &opts).unwrap();
        exe.set_input("x", &xd).unwrap();
        exe.set_param("w", &wd).unwrap();
        outs.push((exe.run_with(&[]).unwrap(), exe.profile().unwrap()));
    }
    testing::assert_close("gelu(x·wᵀ)", 0, &outs[1].0[0], &outs[0].0[0], 1e-6);
    let ops = |p: &mask2former::graph::Profile| -> Vec<String> {
        let mut ops: Vec<String> = p.entries.iter().map(|e| e.op.clone()).collect();
        ops.dedup();
        ops
    };
    assert_eq!(ops(&outs[0].1), ["matmul", "gelu"]);
    assert_eq!(ops(&outs[1].1), ["matmul+gelu"]);
}
