//! Kernels against the f64 reference on fresh random inputs (seed in every failure message),
//! outputs poisoned with NaN first, for every variant, transpose combination and epilogue.

use super::reference::{self, Dims};
use super::*;
use crate::runtime::Runtime;
use crate::testing::{self, assert_close, assert_close_to_bound};

mod forward;
mod gemm;
mod large_block;
mod limits;
mod row_sums;
mod split_k;
mod texel;

const VARIANTS: [Variant; 8] = [
    Variant::Texel,
    Variant::TexelWide,
    Variant::TexelSmall,
    Variant::RegBlockLarge,
    Variant::RegBlock,
    Variant::Gemm,
    Variant::Tiled,
    Variant::Naive,
];
const TRANS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// One problem: leading dims of A and B, M, N, K and the transposes.
#[derive(Clone, Debug)]
struct Case {
    lead_a: Vec<usize>,
    lead_b: Vec<usize>,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
}

impl Case {
    fn new(m: usize, n: usize, k: usize, (trans_a, trans_b): (bool, bool)) -> Self {
        Self {
            lead_a: vec![],
            lead_b: vec![],
            m,
            n,
            k,
            trans_a,
            trans_b,
        }
    }
    fn batched(mut self, lead_a: &[usize], lead_b: &[usize]) -> Self {
        self.lead_a = lead_a.to_vec();
        self.lead_b = lead_b.to_vec();
        self
    }
    fn dims(&self) -> Dims {
        Dims {
            batch_a: self.lead_a.iter().product(),
            batch_b: self.lead_b.iter().product(),
            m: self.m,
            n: self.n,
            k: self.k,
            trans_a: self.trans_a,
            trans_b: self.trans_b,
        }
    }
    fn a_shape(&self) -> Vec<usize> {
        let mut s = self.lead_a.clone();
        s.extend(if self.trans_a {
            [self.k, self.m]
        } else {
            [self.m, self.k]
        });
        s
    }
    fn b_shape(&self) -> Vec<usize> {
        let mut s = self.lead_b.clone();
        s.extend(if self.trans_b {
            [self.n, self.k]
        } else {
            [self.k, self.n]
        });
        s
    }
    fn c_shape(&self) -> Vec<usize> {
        let d = self.dims();
        let lead = if d.batch_a != 1 || (d.batch_b == 1 && self.lead_a.len() >= self.lead_b.len()) {
            &self.lead_a
        } else {
            &self.lead_b
        };
        let mut s = lead.clone();
        s.extend([self.m, self.n]);
        s
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

fn nan_tensor(rt: &Runtime, shape: &[usize]) -> Tensor {
    let t = rt.empty(shape, DType::F32).unwrap();
    rt.fill(&t, f32::NAN).unwrap();
    t
}

/// Runs the forward on random inputs and compares C (and `pre` when asked) with the reference.
fn check_forward(rt: &Runtime, case: &Case, opts: &MatmulOptions, with_bias: bool, with_pre: bool) {
    check_forward_split(rt, case, opts, with_bias, with_pre, false);
}

/// [`check_forward`] through the launcher that may split K (`split_ok`, as `matmul_scratch_into`
/// and the allocating forms run it); returns the dispatches' entry points and C.
fn check_forward_split(
    rt: &Runtime,
    case: &Case,
    opts: &MatmulOptions,
    with_bias: bool,
    with_pre: bool,
    split_ok: bool,
) -> (Vec<String>, Vec<f32>) {
    check_forward_seeded(
        rt,
        case,
        opts,
        (with_bias, with_pre, false, split_ok),
        testing::seed(),
    )
}

/// [`check_forward_split`] on the inputs of `seed`; `flags` = (bias, pre, residual, split_ok).
fn check_forward_seeded(
    rt: &Runtime,
    case: &Case,
    opts: &MatmulOptions,
    (with_bias, with_pre, with_res, split_ok): (bool, bool, bool, bool),
    seed: u64,
) -> (Vec<String>, Vec<f32>) {
    let mut rng = testing::rng(seed);
    let (sa, sb, sc) = (case.a_shape(), case.b_shape(), case.c_shape());
    let a = testing::uniform(&mut rng, numel(&sa), -1.0, 1.0);
    let b = testing::uniform(&mut rng, numel(&sb), -1.0, 1.0);
    let bias = testing::uniform(&mut rng, case.n, -1.0, 1.0);
    let c_in = testing::uniform(&mut rng, numel(&sc), -1.0, 1.0);
    let res = testing::uniform(&mut rng, numel(&sc), -1.0, 1.0);
    let tres = rt.upload(&res, &sc).unwrap();
    let ta = rt.upload(&a, &sa).unwrap();
    let tb = rt.upload(&b, &sb).unwrap();
    let tbias = rt.upload(&bias, &[case.n]).unwrap();
    let out = if opts.beta != 0.0 {
        rt.upload(&c_in, &sc).unwrap()
    } else {
        nan_tensor(rt, &sc)
    };
    let pre = nan_tensor(rt, &sc);
    let bias_arg = with_bias.then_some(&tbias);
    let pre_arg = with_pre.then_some(&pre);
    let ep = Epilogue {
        bias: bias_arg,
        residual: with_res.then_some(&tres),
        preact: pre_arg,
    };
    let (d, _scratch) = forward_into("test", rt, &ta, &tb, &ep, &out, opts, split_ok).unwrap();
    rt.run(&d);
    let (mut want, want_pre) = reference::forward(
        &case.dims(),
        &f64s(&a),
        &f64s(&b),
        with_bias.then_some(&f64s(&bias)[..]),
        Some(&f64s(&c_in)),
        opts.alpha as f64,
        opts.beta as f64,
        opts.activation,
    );
    if with_res {
        // C = act(pre) + R: the residual comes after the activation.
        want.iter_mut().zip(&res).for_each(|(w, &r)| *w += r as f64);
    }
    // Each output's conditioning: the same product over the terms' magnitudes. A short sum that
    // cancels (a 1×1 output over K = 37) is only as exact as f32 rounding of its terms allows.
    let abs = |v: &[f32]| v.iter().map(|x| x.abs() as f64).collect::<Vec<_>>();
    let (mut bound, _) = reference::forward(
        &case.dims(),
        &abs(&a),
        &abs(&b),
        with_bias.then_some(&abs(&bias)[..]),
        Some(&abs(&c_in)),
        opts.alpha.abs() as f64,
        opts.beta.abs() as f64,
        Activation::None,
    );
    let bound_pre = f32s(&bound);
    if with_res {
        bound
            .iter_mut()
            .zip(&res)
            .for_each(|(w, &r)| *w += r.abs() as f64);
    }
    let name =
        format!("{case:?} {opts:?} bias={with_bias} residual={with_res} split_ok={split_ok}");
    let got = rt.download(&out).unwrap();
    assert_close_to_bound(&name, seed, &got, &f32s(&want), &f32s(&bound), 1e-5);
    if with_pre {
        let name = format!("pre-activation of {name}");
        let got_pre = rt.download(&pre).unwrap();
        assert_close_to_bound(&name, seed, &got_pre, &f32s(&want_pre), &bound_pre, 1e-5);
    }
    (labels(&d), got)
}

/// The dispatches' full labels, override constants included (`matmul::gemm[GT=64,…]`).
fn full_labels(d: &[Dispatch]) -> Vec<String> {
    d.iter().map(|d| d.label().to_string()).collect()
}

/// Entry points of dispatches (`matmul::regblock_vec`, …).
fn labels(d: &[Dispatch]) -> Vec<String> {
    d.iter()
        .map(|d| d.label().split('[').next().unwrap().to_string())
        .collect()
}

fn opts(variant: Variant, (trans_a, trans_b): (bool, bool)) -> MatmulOptions {
    MatmulOptions {
        trans_a,
        trans_b,
        variant,
        ..Default::default()
    }
}

/// Odd sizes, one-element dims, multiples of 4 (the vec4 paths) and sizes past one workgroup tile
/// (64×128 regblock, 64×64 tiled) in both directions.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (7, 13, 5),
    (65, 33, 129),
    (36, 20, 12),
    (132, 72, 68),
    (130, 70, 3),
    (1, 68, 8),
    (260, 132, 12),
];

/// The entry points the launches of one forward call run (`matmul::regblock_vec`, …).
fn entries(rt: &Runtime, case: &Case, opts: &MatmulOptions) -> Vec<String> {
    let a = rt.empty(&case.a_shape(), DType::F32).unwrap();
    let b = rt.empty(&case.b_shape(), DType::F32).unwrap();
    let c = rt.empty(&case.c_shape(), DType::F32).unwrap();
    labels(&matmul_into(rt, &a, &b, None, &c, opts).unwrap())
}

const LARGE: &str = "matmul::regblock_vec";
const LARGE_TA: &str = "matmul::regblock_vec_ta";
const LARGE_TB: &str = "matmul::regblock_vec_tb";
const SPLIT_SUM: &str = "matmul::splitk_sum";
const TEXEL_NN: &str = "matmul_texel::texel_nn";
const TEXEL_TA: &str = "matmul_texel::texel_ta";
const TEXEL_TB: &str = "matmul_texel::texel_tb";
const TEXEL_NN_WIDE: &str = "matmul_texel_wide::texel_nn_wide";
const TEXEL_TA_WIDE: &str = "matmul_texel_wide::texel_ta_wide";
const TEXEL_TB_WIDE: &str = "matmul_texel_wide::texel_tb_wide";
const TEXEL_NN8: &str = "matmul_texel8::texel_nn8";
const TEXEL_TA8: &str = "matmul_texel8::texel_ta8";
const TEXEL_TB8: &str = "matmul_texel8::texel_tb8";
