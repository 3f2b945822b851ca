//! Attention kernels at the shapes Mask2Former runs them (384×384 input):
//! - Swin-T stage 1 window attention: 96×96 tokens, C = 96, 3 heads, window 7 (shift 3);
//! - decoder masked cross-attention at the 1/8 level: Q = 100, K = 48·48, 8 heads, d = 32.
//!
//! Throughput is FLOPs: forward 4·Q·K·d per head (QKᵀ and PV; windows count their padded
//! w²×w² blocks), backward 10·Q·K·d per head (QKᵀ recomputed, dO·Vᵀ, dS·K, dSᵀ·Q, Pᵀ·dO).

use criterion::{Criterion, Throughput};
use mask2former::ops::masked_attention::{
    masked_attention_backward_into, masked_attention_into, MaskedAttentionGrads,
    MaskedAttentionInputs, MaskedAttentionOptions, MaskedAttentionWorkspace,
};
use mask2former::ops::window_attention::{
    window_attention_backward_into, window_attention_into, WindowAttentionGrads,
    WindowAttentionInputs, WindowAttentionOptions, WindowAttentionWorkspace,
};
use mask2former::runtime::Dispatch;
use mask2former::{DType, Runtime};

fn values(n: usize, seed: u32) -> Vec<f32> {
    // xorshift: deterministic inputs without a dependency.
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn time(c: &mut Criterion, rt: &Runtime, name: &str, flops: u64, ds: &[Dispatch]) {
    let mut g = c.benchmark_group("attention");
    g.throughput(Throughput::Elements(flops));
    g.bench_function(name, |b| {
        b.iter(|| {
            rt.run(ds);
            rt.sync().unwrap();
        })
    });
    g.finish();
}

fn window(c: &mut Criterion, rt: &Runtime) {
    let (hw, ch, heads, w) = (96usize, 96usize, 3usize, 7usize);
    let shape = [1, hw, hw, ch];
    let n = hw * hw * ch;
    let q = rt.upload(&values(n, 1), &shape).unwrap();
    let k = rt.upload(&values(n, 2), &shape).unwrap();
    let v = rt.upload(&values(n, 3), &shape).unwrap();
    let tl = (2 * w - 1) * (2 * w - 1);
    let table = rt.upload(&values(tl * heads, 4), &[tl, heads]).unwrap();
    let pad_k = rt.upload(&values(ch, 5), &[ch]).unwrap();
    let pad_v = rt.upload(&values(ch, 6), &[ch]).unwrap();
    let x = WindowAttentionInputs {
        q: &q,
        k: &k,
        v: &v,
        table: &table,
        pad_k: Some(&pad_k),
        pad_v: Some(&pad_v),
    };
    let opts = WindowAttentionOptions {
        heads,
        window: w,
        shift: w / 2,
        scale: None,
    };
    let windows = (hw.div_ceil(w) * hw.div_ceil(w)) as u64;
    let pair_flops = windows * heads as u64 * (w * w * w * w) as u64 * (ch / heads) as u64;
    let out = rt.empty(&shape, DType::F32).unwrap();
    let lse = rt
        .empty(&[1, windows as usize, heads, w * w], DType::F32)
        .unwrap();
    let fwd = window_attention_into(rt, &x, &out, &lse, &opts).unwrap();
    time(c, rt, "window_swin_t_s1_384_fwd", 4 * pair_flops, &fwd);
    let dout = rt.upload(&values(n, 7), &shape).unwrap();
    let grads = WindowAttentionGrads::new(rt, &x, &opts).unwrap();
    let ws = WindowAttentionWorkspace::new(rt, &x, &opts).unwrap();
    let bwd =
        window_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &opts).unwrap();
    time(c, rt, "window_swin_t_s1_384_bwd", 10 * pair_flops, &bwd);
}

fn masked(c: &mut Criterion, rt: &Runtime) {
    let (nq, nk, heads, d) = (100usize, 48 * 48, 8usize, 32usize);
    let ch = heads * d;
    let q = rt.upload(&values(nq * ch, 11), &[1, nq, ch]).unwrap();
    let k = rt.upload(&values(nk * ch, 12), &[1, nk, ch]).unwrap();
    let v = rt.upload(&values(nk * ch, 13), &[1, nk, ch]).unwrap();
    // About half the keys masked, as from thresholded mask predictions.
    let m: Vec<u32> = values(heads * nq * nk, 14)
        .iter()
        .map(|&x| (x > 0.0) as u32)
        .collect();
    let mask = rt.upload_u32(&m, &[1, heads, nq, nk]).unwrap();
    let x = MaskedAttentionInputs {
        q: &q,
        k: &k,
        v: &v,
        mask: Some(&mask),
        additive: None,
    };
    let opts = MaskedAttentionOptions::new(heads);
    let pair_flops = (heads * nq * nk * d) as u64;
    let ws = MaskedAttentionWorkspace::new(rt, &x, &opts).unwrap();
    let out = rt.empty(&[1, nq, ch], DType::F32).unwrap();
    let lse = rt.empty(&[1, heads, nq], DType::F32).unwrap();
    let fwd = masked_attention_into(rt, &x, &out, &lse, &ws, &opts).unwrap();
    time(c, rt, "masked_cross_q100_k2304_fwd", 4 * pair_flops, &fwd);
    let dout = rt.upload(&values(nq * ch, 15), &[1, nq, ch]).unwrap();
    let grads = MaskedAttentionGrads::new(rt, &x).unwrap();
    let bwd =
        masked_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &opts).unwrap();
    time(c, rt, "masked_cross_q100_k2304_bwd", 10 * pair_flops, &bwd);
}

pub fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("a wgpu adapter");
    window(c, &rt);
    masked(c, &rt);
}
