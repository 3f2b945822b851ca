//! Runtime behaviour on the headless adapter: round trips, fills, large tensors, parallel devices.

use mask2former::runtime::{DType, Runtime};
use mask2former::testing;

#[test]
fn upload_download_round_trip() {
    let rt = testing::runtime();
    let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
    let t = rt.upload(&data, &[10, 100]).unwrap();
    assert_eq!(t.shape(), &[10, 100]);
    assert_eq!(rt.download(&t).unwrap(), data);
    let u = rt.upload_u32(&[1, 2, 3], &[3]).unwrap();
    assert_eq!(rt.download_u32(&u).unwrap(), vec![1, 2, 3]);
}

#[test]
fn shape_and_dtype_errors_name_the_op() {
    let rt = testing::runtime();
    let err = rt.upload(&[1.0, 2.0], &[3]).unwrap_err().to_string();
    assert!(err.contains("upload") && err.contains("[3]"), "{err}");
    let u = rt.upload_u32(&[1], &[1]).unwrap();
    let err = rt.download(&u).unwrap_err().to_string();
    assert!(err.contains("download") && err.contains("U32"), "{err}");
    let t = rt.upload(&[1.0; 6], &[2, 3]).unwrap();
    assert!(t.reshape(&[4, 2]).is_err());
    assert_eq!(t.reshape(&[3, 2]).unwrap().shape(), &[3, 2]);
}

#[test]
fn fill_odd_sizes_and_nan() {
    let rt = testing::runtime();
    for n in [1usize, 255, 256, 257, 70_001] {
        let t = rt.full(&[n], 3.5).unwrap();
        assert!(rt.download(&t).unwrap().iter().all(|&v| v == 3.5), "n={n}");
        rt.fill(&t, f32::NAN).unwrap();
        assert!(rt.download(&t).unwrap().iter().all(|v| v.is_nan()), "n={n}");
    }
}

/// A tensor just over the 128 MiB storage-binding limit is filled in chunks and read back whole.
#[test]
fn fill_tensor_past_binding_limit() {
    let rt = testing::runtime();
    let limit = rt.caps().max_storage_binding;
    let n = (limit / 4 + 1000) as usize;
    let t = rt.full(&[n], 1.25).unwrap();
    let host = rt.download(&t).unwrap();
    assert_eq!(host.len(), n);
    assert!(host.iter().all(|&v| v == 1.25));
    assert!(host[n - 1] == 1.25);
}

#[test]
fn pool_reuses_buffers_and_counts_peak() {
    let rt = Runtime::new().unwrap();
    let before = rt.memory();
    {
        let _a = rt.empty(&[1000], DType::F32).unwrap();
        let _b = rt.empty(&[1000], DType::F32).unwrap();
    }
    let mid = rt.memory();
    assert_eq!(mid.live_bytes, before.live_bytes);
    assert!(mid.peak_bytes >= before.live_bytes + 8000);
    let _c = rt.empty(&[1000], DType::F32).unwrap();
    assert_eq!(
        rt.memory().allocated_bytes,
        mid.allocated_bytes,
        "a freed buffer is reused"
    );
}

#[test]
fn several_devices_in_parallel_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let rt = Runtime::new().unwrap();
                let t = rt.full(&[4096], i as f32).unwrap();
                rt.download(&t).unwrap().iter().all(|&v| v == i as f32)
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

#[test]
fn portable_runtime_has_no_optional_features() {
    let rt = testing::portable_runtime();
    let c = rt.caps();
    assert!(!c.f16 && !c.subgroups && !c.f32_atomics && !c.timestamps);
    let t = rt.full(&[10], 2.0).unwrap();
    assert_eq!(rt.download(&t).unwrap(), vec![2.0; 10]);
}

#[test]
fn timestamps_time_each_dispatch_when_present() {
    let rt = testing::runtime();
    if !rt.caps().timestamps {
        eprintln!(
            "skipping timestamps_time_each_dispatch_when_present: adapter has no timestamp queries"
        );
        return;
    }
    let k = rt
        .kernel(&mask2former::shader!("fill"), "main", &[])
        .unwrap();
    let t = rt.empty(&[1 << 16], DType::F32).unwrap();
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct P {
        n: u32,
        v: u32,
    }
    let d: Vec<_> = (0..3)
        .map(|_| {
            rt.dispatch(
                &k,
                &P { n: 1 << 16, v: 0 },
                &[t.binding()],
                rt.grid(1 << 16, 256),
            )
        })
        .collect();
    let times = rt.run_timed(&d).unwrap();
    assert_eq!(times.len(), 3);
}

#[test]
fn bad_backend_name_is_a_clear_error() {
    let err = mask2former::runtime::parse_backend("cuda")
        .unwrap_err()
        .to_string();
    assert!(err.contains("M2F_BACKEND") && err.contains("cuda"), "{err}");
}

#[test]
fn kernel_policy_is_read_from_the_environment() {
    use mask2former::runtime::{KernelPolicy, RuntimeOptions};
    let vars = |value: &'static str| {
        move |name: &str| (name == "M2F_KERNEL_POLICY").then(|| value.to_string())
    };
    for (value, want) in [
        ("gpu", KernelPolicy::Gpu),
        ("CPU", KernelPolicy::Cpu),
        ("auto", KernelPolicy::Auto),
        ("", KernelPolicy::Auto),
    ] {
        let opts = RuntimeOptions::from_vars(vars(value)).unwrap();
        assert_eq!(opts.kernel_policy, want, "{value:?}");
    }
    let unset = RuntimeOptions::from_vars(|_| None).unwrap();
    assert_eq!(unset.kernel_policy, KernelPolicy::Auto);
    let err = RuntimeOptions::from_vars(vars("fast"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("M2F_KERNEL_POLICY") && err.contains("fast") && err.contains("gpu"),
        "{err}"
    );
}

#[test]
fn forced_kernel_policy_reaches_the_runtime() {
    use mask2former::runtime::{KernelPolicy, RuntimeOptions};
    for policy in [KernelPolicy::Gpu, KernelPolicy::Cpu] {
        let opts = RuntimeOptions {
            kernel_policy: policy,
            ..RuntimeOptions::default()
        };
        let rt = Runtime::with_options(&opts).unwrap();
        assert_eq!(rt.kernel_policy(), policy);
        assert!(
            rt.describe().contains("kernels forced"),
            "{}",
            rt.describe()
        );
    }
}

#[test]
fn empty_tensors_round_trip() {
    let rt = testing::runtime();
    let t = rt.upload(&[], &[0, 3]).unwrap();
    assert_eq!(rt.download(&t).unwrap(), Vec::<f32>::new());
}

/// Probe of llvmpipe's loop limiter (`CPU_LOOP_ITERATIONS`): counts the iterations each kind of
/// loop really runs. Run with `--ignored --nocapture`; prints what the adapter does.
#[test]
#[ignore]
fn probe_cpu_loop_limit() {
    const SRC: &str = r#"
struct P { n: u32, m: u32, k: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

// One uniform loop of p.n iterations.
@compute @workgroup_size(64)
fn uniform_loop(@builtin(global_invocation_id) g: vec3<u32>) {
    var c = 0u;
    for (var i = 0u; i < p.n; i++) { c += 1u; }
    out[g.x] = c;
}
// A loop whose bound differs per invocation: n + gid.
@compute @workgroup_size(64)
fn divergent_loop(@builtin(global_invocation_id) g: vec3<u32>) {
    var c = 0u;
    for (var i = 0u; i < p.n + g.x; i++) { c += 1u; }
    out[g.x] = c;
}
// Two sequential uniform loops of p.n and p.m.
@compute @workgroup_size(64)
fn two_loops(@builtin(global_invocation_id) g: vec3<u32>) {
    var c = 0u;
    for (var i = 0u; i < p.n; i++) { c += 1u; }
    var d = 0u;
    for (var i = 0u; i < p.m; i++) { d += 1u; }
    out[2u * g.x] = c;
    out[2u * g.x + 1u] = d;
}
// Nested: p.n outer x p.m inner.
@compute @workgroup_size(64)
fn nested(@builtin(global_invocation_id) g: vec3<u32>) {
    var c = 0u;
    for (var i = 0u; i < p.n; i++) { for (var j = 0u; j < p.m; j++) { c += 1u; } }
    out[g.x] = c;
}
// Constant trip count.
@compute @workgroup_size(64)
fn constant_loop(@builtin(global_invocation_id) g: vec3<u32>) {
    var c = 0u;
    for (var i = 0u; i < 100000u; i++) { c += 1u + (p.pad & i); }
    out[g.x] = c;
}
// Workgroup of 256 with a barrier after a loop.
var<workgroup> sh: array<u32, 256>;
@compute @workgroup_size(256)
fn barrier_loop(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) w: vec3<u32>) {
    var c = 0u;
    for (var i = 0u; i < p.n; i++) { c += 1u; }
    sh[l] = c;
    workgroupBarrier();
    var d = 0u;
    for (var i = 0u; i < p.m; i++) { d += 1u; }
    out[2u * (w.x * 256u + l)] = sh[255u - l];
    out[2u * (w.x * 256u + l) + 1u] = d;
}
"#;
    let rt = testing::runtime();
    let shader = mask2former::runtime::Shader {
        name: "probe_loops",
        source: SRC,
    };
    let run = |entry: &str, p: [u32; 4], threads: usize, words: usize, wg: u32| {
        let k = rt.kernel(&shader, entry, &[]).unwrap();
        let out = rt.empty(&[threads * words], DType::U32).unwrap();
        let d = rt.dispatch(
            &k,
            &p,
            &[out.binding()],
            [(threads as u32).div_ceil(wg), 1, 1],
        );
        rt.run(&[d]);
        let v = rt.download_u32(&out).unwrap();
        println!(
            "{entry} {:?}: first {:?} last {:?}",
            p,
            &v[..words.min(v.len())],
            &v[v.len() - words..]
        );
    };
    println!("{}", rt.describe());
    run("uniform_loop", [100_000, 0, 0, 0], 64, 1, 64);
    run("uniform_loop", [65_535, 0, 0, 0], 64, 1, 64);
    run("uniform_loop", [65_536, 0, 0, 0], 64, 1, 64);
    run("divergent_loop", [65_530, 0, 0, 0], 64, 1, 64);
    run("two_loops", [40_000, 40_000, 0, 0], 64, 2, 64);
    run("nested", [300, 300, 0, 0], 64, 1, 64);
    run("nested", [1, 100_000, 0, 0], 64, 1, 64);
    run("constant_loop", [0, 0, 0, 0], 64, 1, 64);
    run("barrier_loop", [40_000, 40_000, 0, 0], 512, 2, 256);
}
