//! Data-parallel training under `mpirun` (feature `distributed`; `.ci/run` runs these): two
//! ranks of one image match one process of two, three ranks agree step by step, and a job
//! that fails — a rank killed with SIGKILL, SIGTERM or SIGINT sent to mpirun, a rank whose
//! image does not decode, a rank that panics — ends quickly with a non-zero status, leaving a
//! checkpoint that resumes; a signal reaching one rank stops every rank at the same step.
#![cfg(all(feature = "distributed", unix))]

mod train_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mask2former::model::checkpoint::Checkpoint;
use mask2former::train::{Init, TrainConfig, Trainer};
use train_common::{run_dir, saved_step, tiny_config};

fn write_tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-config.json");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, tiny_config().to_json().unwrap()).unwrap();
    path
}

/// The training flags every run here shares (the tiny model at 64 px, no evaluation).
fn flags(config: &Path, out: &Path, steps: u64, batch: usize) -> Vec<String> {
    vec![
        format!("--model-config={}", config.display()),
        format!("--out={}", out.display()),
        format!("--steps={steps}"),
        format!("--batch-size={batch}"),
        "--image-size=64".into(),
        "--num-points=256".into(),
        "--lr=1e-3".into(),
        "--seed=5".into(),
        "--eval-every=0".into(),
        "--checkpoint-every=0".into(),
        "--checksum-every=1".into(),
    ]
}

/// `train` alone (one process).
fn train() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// `mpirun -np <ranks> train`, allowed to run as root in a container and to put more ranks
/// than cores on this machine, over shared memory.
fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_train"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl", "self,vader");
    c
}

/// Waits for `child` at most `limit`, killing it (and failing) past that: a hang is a failure.
fn wait_at_most(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let child = cmd.stderr(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let out = wait_at_most(child.unwrap(), Duration::from_secs(900), what);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what}: {}\n{err}", out.status);
    err
}

/// Each step's (loss, gradient norm) from `metrics.jsonl`, checking the world size and batch.
fn steps(run: &Path, world: u64, global_batch: u64) -> Vec<(f64, f64)> {
    let lines = mask2former::train::metrics::read(&run.join("metrics.jsonl")).unwrap();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            assert_eq!(l["step"].as_u64(), Some(i as u64), "{l}");
            assert_eq!(l["world_size"].as_u64(), Some(world), "{l}");
            assert_eq!(l["global_batch"].as_u64(), Some(global_batch), "{l}");
            if world > 1 {
                let a = &l["time"]["allreduce"];
                assert!(a["seconds"].as_f64().unwrap() >= 0.0, "{l}");
                assert!(a["bytes"].as_u64().unwrap() > 0, "{l}");
            }
            (
                l["loss"].as_f64().unwrap(),
                l["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn final_params(run: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let c = Checkpoint::load(&run.join("checkpoint/model.safetensors")).unwrap();
    c.tensors()
        .iter()
        .map(|(k, t)| (k.clone(), t.data.clone()))
        .collect()
}

/// The starting parameters of the runs (seed 5, from scratch), from the library.
fn initial_params(dir: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let cfg = TrainConfig {
        steps: 1,
        batch_size: 1,
        image_size: 64,
        seed: 5,
        ..TrainConfig::default()
    };
    let rt = mask2former::testing::runtime();
    let t = Trainer::new(rt, cfg, tiny_config(), Init::Scratch, &dir.join("init")).unwrap();
    let names: Vec<String> = t.param_names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|n| {
            let v = t.read_param(&n).unwrap();
            (n, v)
        })
        .collect()
}

/// Relative L2 distance of two runs' updates `p − p0`, leaving out the elements whose true
/// gradient is zero (attention key biases: Adam turns their rounding noise into ±lr steps; see
/// `tests/train_run.rs`).
fn update_distance(
    p0: &std::collections::BTreeMap<String, Vec<f32>>,
    a: &std::collections::BTreeMap<String, Vec<f32>>,
    b: &std::collections::BTreeMap<String, Vec<f32>>,
) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (name, x0) in p0 {
        if name.ends_with("key.bias") || name.ends_with("k_proj.bias") {
            continue;
        }
        let (xa, xb) = (&a[name], &b[name]);
        let len = x0.len();
        let skip = if name.ends_with("in_proj_bias") {
            len / 3..2 * len / 3
        } else {
            0..0
        };
        for i in (0..len).filter(|i| !skip.contains(i)) {
            let (da, db) = ((xa[i] - x0[i]) as f64, (xb[i] - x0[i]) as f64);
            num += (da - db).powi(2);
            den += da * da;
        }
    }
    (num / den).sqrt()
}

/// The bound of `tests/train_run.rs`'s resume test: the float-atomic summation order of the
/// deformable-attention backward makes two identical runs differ by up to ~1e-2.
const UPDATE_BOUND: f64 = 5e-2;

/// Two ranks of one image each take the same 3 steps as one process of two images (the same
/// global batch): the same losses, gradient norms and parameters. Without the all-reduce the
/// ranks' parameters differ after the first step (the checksum, compared every step, stops
/// the job) and rank 0's updates follow its own image only; summing instead of averaging
/// doubles the gradient norm.
#[test]
fn two_ranks_of_one_image_match_one_process_of_two() {
    let dir = run_dir("dp-2x1");
    let config = write_tiny_config(&dir);
    let (one, two) = (dir.join("one"), dir.join("two"));
    let mut single = train();
    single.args(flags(&config, &one, 3, 2));
    run_ok(single, "1 process x 2 images");
    let mut pair = mpirun(2);
    pair.args(flags(&config, &two, 3, 1));
    let err = run_ok(pair, "2 ranks x 1 image");
    assert!(err.contains("rank 0 of 2: training on"), "{err}");
    assert!(err.contains("rank 1 of 2: training on"), "{err}");
    assert!(err.contains("global batch 2"), "{err}");

    let (a, b) = (steps(&one, 1, 2), steps(&two, 2, 2));
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    for (s, ((la, ga), (lb, gb))) in a.iter().zip(&b).enumerate() {
        eprintln!("step {s}: loss {la:.6} vs {lb:.6}, grad norm {ga:.6e} vs {gb:.6e}");
        assert!(
            (la - lb).abs() <= 1e-3 * la.abs(),
            "step {s}: loss {la} vs {lb}"
        );
        assert!(
            (ga - gb).abs() <= 1e-2 * ga,
            "step {s}: grad norm {ga} vs {gb}"
        );
    }
    let p0 = initial_params(&dir);
    let d = update_distance(&p0, &final_params(&one), &final_params(&two));
    eprintln!("updates after 3 steps: 2x1 vs 1x2 differ by {d:.2e} (relative L2)");
    assert!(
        d < UPDATE_BOUND,
        "2 ranks x 1 image: updates differ by {d:.3e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three ranks (not a power of two) train with their parameters compared every step.
#[test]
fn three_ranks_agree() {
    let dir = run_dir("dp-3");
    let config = write_tiny_config(&dir);
    let run = dir.join("run");
    let mut job = mpirun(3);
    job.args(flags(&config, &run, 2, 1));
    let err = run_ok(job, "3 ranks");
    assert!(err.contains("global batch 3"), "{err}");
    let s = steps(&run, 3, 3);
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|(l, g)| l.is_finite() && g.is_finite()));
    assert_eq!(saved_step(&run), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The processes of the train binary whose parent is `parent` (mpirun's ranks).
fn ranks_of(parent: u32) -> Vec<u32> {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_train")).unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let is_train = std::fs::read_link(entry.path().join("exe")).is_ok_and(|e| e == exe);
        if ppid == Some(parent) && is_train {
            out.push(pid);
        }
    }
    out
}

/// The flags of a long run (10 000 steps) that writes a checkpoint at every step.
fn long_run_flags(config: &Path, run: &Path) -> Vec<String> {
    let mut args = flags(config, run, 10_000, 1);
    args.retain(|a| !a.starts_with("--checkpoint-every"));
    args.push("--checkpoint-every=1".into());
    args
}

/// Starts `job` (stderr piped) and returns it once `run` holds a checkpoint of step `at`
/// or later.
fn start_until_checkpoint(mut job: Command, run: &Path, at: u64) -> Child {
    job.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut child = job.spawn().unwrap();
    let start = Instant::now();
    // (A checkpoint being replaced may not load for a moment: read it again.)
    let saved = || mask2former::train::checkpoint::load(run).map_or(0, |s| s.state.step);
    while saved() < at {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "mpirun ended early: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed().as_secs() < 600,
            "no checkpoint of step {at} within 600 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child
}

/// Sends `signal` (a `kill` name) to `pid`.
fn send(signal: &str, pid: u32) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Resumes the run in `run` under 2 ranks for 2 more steps: it continues from the last
/// checkpoint, and `metrics.jsonl` holds exactly one line per step.
fn resume_two_more(run: &Path) {
    let step = saved_step(run);
    let mut resume = mpirun(2);
    resume
        .arg("--resume")
        .arg(format!("--out={}", run.display()))
        .arg(format!("--steps={}", step + 2));
    run_ok(resume, "resumed 2 ranks");
    assert_eq!(saved_step(run), step + 2);
    let s = steps(run, 2, 2);
    assert_eq!(s.len() as u64, step + 2);
}

/// The MPI rank of process `pid` (OpenMPI puts it in the environment of each rank).
fn world_rank(pid: u32) -> Option<usize> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        kv.strip_prefix("OMPI_COMM_WORLD_RANK=")?.parse().ok()
    })
}

/// A rank killed with SIGKILL mid-run: mpirun exits non-zero within 30 s, the last checkpoint
/// loads, and the job resumes from it under mpirun.
#[test]
fn killed_rank_ends_the_job_and_the_run_resumes() {
    let dir = run_dir("dp-kill");
    let config = write_tiny_config(&dir);
    let run = dir.join("run");
    let mut job = mpirun(2);
    job.args(long_run_flags(&config, &run));
    let child = start_until_checkpoint(job, &run, 2);
    let ranks = ranks_of(child.id());
    assert_eq!(ranks.len(), 2, "mpirun's ranks: {ranks:?}");
    send("KILL", *ranks.iter().max().unwrap());
    let at = Instant::now();
    let out = wait_at_most(
        child,
        Duration::from_secs(30),
        "mpirun after a rank was killed",
    );
    eprintln!("mpirun exited {:?} after {:?}", out.status, at.elapsed());
    assert!(!out.status.success(), "a killed rank must fail the job");

    // The last checkpoint is intact and the run continues from it.
    let step = saved_step(&run);
    assert!(step >= 2, "checkpoint at step {step}");
    resume_two_more(&run);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What `mpirun` does on SIGTERM (what `timeout`, Slurm and `docker stop` send) and SIGINT
/// (Ctrl-C): it ends the job — each rank gets SIGTERM (after either signal) and,
/// `odls_base_sigkill_timeout` seconds later (1 by default), SIGKILL — and exits with
/// OpenMPI's status 1 within seconds. Within that time the ranks finish their step, agree to
/// stop, and rank 0 checkpoints it; past it the steps since the last checkpoint are lost.
/// Either way the last checkpoint loads and `--resume` under mpirun continues from it. The
/// first round uses the default timeout (the job must end, the checkpoint stay whole); the
/// second gives the ranks 10 s, so the checkpoint must be of the step they stopped at.
#[test]
fn a_signal_to_mpirun_ends_the_job_and_the_run_resumes() {
    let dir = run_dir("dp-signal");
    let config = write_tiny_config(&dir);
    let run = dir.join("run");
    for (signal, round) in [("TERM", 0), ("INT", 1)] {
        let mut job = mpirun(2);
        let before = match round {
            0 => {
                job.args(long_run_flags(&config, &run));
                0
            }
            _ => {
                job.arg("--resume")
                    .arg(format!("--out={}", run.display()))
                    .arg("--steps=10000")
                    .env("OMPI_MCA_odls_base_sigkill_timeout", "10");
                saved_step(&run)
            }
        };
        let child = start_until_checkpoint(job, &run, before + 2);
        send(signal, child.id());
        let at = Instant::now();
        // OpenMPI 4.1 waits out the timeout for each local rank: 2 x 10 s.
        let out = wait_at_most(child, Duration::from_secs(60), "mpirun after a signal");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "SIG{signal} to mpirun: exited {:?} after {:?}",
            out.status,
            at.elapsed()
        );
        assert!(!out.status.success(), "SIG{signal}: {}\n{err}", out.status);
        let step = saved_step(&run);
        assert!(step >= before + 2, "SIG{signal}: checkpoint at step {step}");
        if round == 1 {
            // mpirun turns its SIGINT into SIGTERM for the ranks.
            let said = format!("stopped by SIGTERM at step {step}: checkpoint written");
            assert!(err.contains(&said), "checkpoint of step {step}:\n{err}");
            assert_eq!(steps(&run, 2, 2).len() as u64, step);
        }
    }
    resume_two_more(&run);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM sent to one rank only (signals reach the ranks at different times): every rank
/// stops at the same step, rank 0 checkpoints that step, and the job exits 143 (128 +
/// SIGTERM) like a single process, with rank 0 saying why.
#[test]
fn a_signal_to_one_rank_stops_every_rank_at_the_same_step() {
    let dir = run_dir("dp-signal-rank");
    let config = write_tiny_config(&dir);
    let run = dir.join("run");
    let mut job = mpirun(2);
    job.args(long_run_flags(&config, &run));
    let child = start_until_checkpoint(job, &run, 2);
    let ranks = ranks_of(child.id());
    assert_eq!(ranks.len(), 2, "mpirun's ranks: {ranks:?}");
    // Rank 1: rank 0, which writes the checkpoint and reports, learns of it from the stop
    // request all-reduced at each step.
    let rank1 = ranks.iter().find(|&&p| world_rank(p) == Some(1));
    send("TERM", *rank1.expect("rank 1's process"));
    let out = wait_at_most(
        child,
        Duration::from_secs(60),
        "mpirun after SIGTERM to a rank",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{}\n{err}", out.status);
    let step = saved_step(&run);
    assert!(
        err.contains(&format!(
            "stopped by SIGTERM at step {step}: checkpoint written"
        )),
        "checkpoint of step {step}:\n{err}"
    );
    assert_eq!(steps(&run, 2, 2).len() as u64, step);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A semantic dataset of four 64 px images of noise (so a truncated one still has its
/// header, which the dataset's check at start reads, but does not decode), labels 0..4.
fn write_noise_dataset(root: &Path) {
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("labels")).unwrap();
    let mut x = 0x2545_f491_u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for name in ["a", "b", "c", "d"] {
        let img = image::RgbImage::from_fn(64, 64, |_, _| {
            let v = next().to_le_bytes();
            image::Rgb([v[0], v[1], v[2]])
        });
        img.save(root.join(format!("images/{name}.png"))).unwrap();
        let label = image::GrayImage::from_fn(64, 64, |x, y| {
            image::Luma([((x / 32) + 2 * (y / 32)) as u8])
        });
        label.save(root.join(format!("labels/{name}.png"))).unwrap();
    }
}

/// An image that fails to decode when one rank samples it (truncated after its header):
/// that rank's error names the file, the whole job exits non-zero, the last checkpoint
/// stays intact, and once the file is fixed the run resumes.
#[test]
fn a_bad_image_on_one_rank_ends_the_job_with_its_name() {
    let dir = run_dir("dp-bad-image");
    let config = write_tiny_config(&dir);
    let (data, run) = (dir.join("sem"), dir.join("run"));
    write_noise_dataset(&data);
    let mut args = flags(&config, &run, 2, 1);
    args.retain(|a| !a.starts_with("--checkpoint-every"));
    args.push("--checkpoint-every=1".into());
    args.push(format!("--data=semantic:{}", data.display()));
    let mut job = mpirun(2);
    job.args(&args);
    run_ok(job, "2 ranks on good images");
    assert_eq!(saved_step(&run), 2);

    // Steps 2 and 3 (the second epoch of 4 images) sample every image once.
    let bad = data.join("images/c.png");
    let good = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let mut job = mpirun(2);
    job.arg("--resume")
        .arg(format!("--out={}", run.display()))
        .arg("--steps=10")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let out = wait_at_most(
        job.spawn().unwrap(),
        Duration::from_secs(600),
        "the bad image",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}\n{err}", out.status);
    assert!(
        err.contains("error (rank ") && err.contains("c.png"),
        "the failing rank's message:\n{err}"
    );
    let step = saved_step(&run);
    assert!((2..=3).contains(&step), "checkpoint at step {step}");

    std::fs::write(&bad, &good).unwrap();
    resume_two_more(&run);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run by [`a_panicking_rank_aborts_the_job`] under mpirun: rank 1 panics while rank 0
/// waits for it in a barrier, which only the panic hook's `MPI_Abort` ends.
#[test]
#[ignore = "run under mpirun by a_panicking_rank_aborts_the_job"]
fn panicking_rank() {
    if std::env::var_os("M2F_PANICKING_RANK").is_none() {
        return;
    }
    let mpi = mask2former::train::distributed::Mpi::init().unwrap();
    let group = mpi.group();
    if mpi.rank() == 1 {
        panic!("injected failure on rank 1");
    }
    group.barrier();
}

/// A rank that panics ends the whole job within seconds (the panic hook aborts it), with the
/// rank and the panic's message in the output.
#[test]
fn a_panicking_rank_aborts_the_job() {
    let mut job = Command::new("mpirun");
    job.args(["--oversubscribe", "-np", "2"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "panicking_rank", "--ignored", "--nocapture"])
        .env("M2F_PANICKING_RANK", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl", "self,vader")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    let out = wait_at_most(
        job.spawn().unwrap(),
        Duration::from_secs(30),
        "a panicking rank",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}\n{err}", out.status);
    assert!(err.contains("rank 1 of 2 panicked"), "{err}");
    assert!(err.contains("injected failure on rank 1"), "{err}");
}
