//! Tuning probe for matmul kernels on the current adapter, reading the WGSL at run time so that a
//! regenerated shader needs no rebuild:
//! `cargo run --release --example matmul_probe -- shaders/matmul.wgsl regblock_vec 1024 1024 1024`
//! Prints pipeline-creation and first-dispatch (JIT) time, then wall and CPU-time GFLOP/s
//! (process CPU over all lavapipe threads; clean-equivalent = FLOP / (cpu / cores)), and checks
//! 64 sampled outputs against an f64 dot product. Row-major A [M, K] and B [K, N], alpha 1;
//! with `TRANS_A=1` in the environment A is stored [K, M] (as `trans_a`, e.g. `regblock_vec_ta`).

use mask2former::runtime::Shader;
use mask2former::{DType, Runtime};
use std::time::Instant;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_off: u32,
    a_bs: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_bs: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_bs: u32,
    c_rs: u32,
    p_off: u32,
    bias_off: u32,
    alpha: f32,
    beta: f32,
    ksplit: u32,
    kslice: u32,
    _pad: [u32; 3],
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!("usage: matmul_probe WGSL ENTRY M N K TILE_M TILE_N [NAME=VALUE ...]");
        std::process::exit(2);
    }
    let source: &'static str =
        Box::leak(std::fs::read_to_string(&args[1]).unwrap().into_boxed_str());
    let entry = &args[2];
    let p: Vec<usize> = args[3..8].iter().map(|s| s.parse().unwrap()).collect();
    let (m, n, k, tm, tn) = (p[0], p[1], p[2], p[3], p[4]);
    let consts: Vec<(String, f64)> = args[8..]
        .iter()
        .map(|s| {
            let (a, b) = s.split_once('=').unwrap();
            (a.to_string(), b.parse().unwrap())
        })
        .collect();
    let consts: Vec<(&str, f64)> = consts.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let rt = Runtime::new().unwrap();
    eprintln!(
        "{} (device open {:.3} s)",
        rt.describe(),
        t0.elapsed().as_secs_f64()
    );
    let trans_a = std::env::var("TRANS_A").is_ok_and(|v| v == "1");
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
    let ta = rt.upload(&a, &[m * k]).unwrap();
    let tb = rt.upload(&b, &[k, n]).unwrap();
    let tc = rt.empty(&[m, n], DType::F32).unwrap();
    rt.fill(&tc, f32::NAN).unwrap();
    let tbias = rt.full(&[n], 0.0).unwrap();
    let shader = Shader {
        name: "probe",
        source,
    };
    let (t1, c1) = (Instant::now(), cpu_seconds());
    let kernel = rt.kernel(&shader, entry, &consts).unwrap();
    let (create_w, create_c) = (t1.elapsed().as_secs_f64(), cpu_seconds() - c1);
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        flags: 0,
        a_off: 0,
        a_bs: 0,
        a_rs: if trans_a { 1 } else { k as u32 },
        a_cs: if trans_a { m as u32 } else { 1 },
        b_off: 0,
        b_bs: 0,
        b_rs: n as u32,
        b_cs: 1,
        c_off: 0,
        c_bs: 0,
        c_rs: n as u32,
        p_off: 0,
        bias_off: 0,
        alpha: 1.0,
        beta: 0.0,
        ksplit: 1,
        kslice: k as u32,
        _pad: [0; 3],
    };
    let wg = [n.div_ceil(tn) as u32, m.div_ceil(tm) as u32, 1];
    let d = [rt.dispatch(
        &kernel,
        &params,
        &[
            ta.binding(),
            tb.binding(),
            tbias.binding(),
            tc.binding(),
            tc.binding(),
        ],
        wg,
    )];
    let (t2, c2) = (Instant::now(), cpu_seconds());
    rt.run(&d);
    rt.sync().unwrap();
    let (first_w, first_c) = (t2.elapsed().as_secs_f64(), cpu_seconds() - c2);
    eprintln!(
        "{entry} {consts:?}: create {create_w:.2} s wall / {create_c:.2} s cpu; first dispatch {first_w:.2} s wall / {first_c:.2} s cpu; process so far {:.2} s cpu",
        cpu_seconds() - c0
    );
    let got = rt.download(&tc).unwrap();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for i in 0..64usize {
        let idx = if i < 2 {
            [0, m * n - 1][i]
        } else {
            (i * 2654435761) % (m * n)
        };
        let (r, c) = (idx / n, idx % n);
        let want: f64 = (0..k)
            .map(|j| a[if trans_a { j * m + r } else { r * k + j }] as f64 * b[j * n + c] as f64)
            .sum();
        num += (got[idx] as f64 - want).powi(2);
        den += want * want;
    }
    let nans = got.iter().filter(|v| !v.is_finite()).count();
    eprintln!(
        "sampled rel L2 {:.2e}, non-finite outputs {nans}",
        (num / den.max(1e-30)).sqrt()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let flop = 2.0 * (m * n * k) as f64;
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu_seconds());
        for _ in 0..reps {
            rt.run(&d);
            rt.sync().unwrap();
        }
        let wall = t.elapsed().as_secs_f64() / reps as f64;
        let cpu = (cpu_seconds() - c) / reps as f64;
        eprintln!(
            "  wall {wall:.3} s = {:.2} GFLOP/s; cpu {cpu:.3} s -> clean-equivalent {:.2} GFLOP/s",
            flop / wall / 1e9,
            flop / (cpu / cores) / 1e9
        );
    }
}
