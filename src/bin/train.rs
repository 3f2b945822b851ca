//! `train`: train Mask2Former (from scratch, or fine-tuning with the paper's recipe) on the synthetic dataset or a COCO / semantic
//! folder; checkpoints in the hub layout, metrics.jsonl, Ctrl-C / SIGTERM checkpoint and exit
//! (status 130 / 143), --resume. Built with `--features distributed` and started by
//! `mpirun -np N`, it trains data-parallel over MPI (each rank `--batch-size` images).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mask2former::model::config::Mask2FormerConfig;
#[cfg(feature = "distributed")]
use mask2former::runtime::AdapterIndex;
use mask2former::runtime::RuntimeOptions;
use mask2former::train::{signals, Collective, Init, Solo, TrainConfig, Trainer};
use mask2former::Runtime;

#[derive(Parser, Debug)]
#[command(version, about = "Train Mask2Former on any GPU (wgpu)")]
struct Args {
    /// synthetic, a dataset root (COCO 2017 panoptic/instance, ADE20K, Cityscapes; the training
    /// split), KIND:ROOT or explicit files, as for `evaluate --data` (see its --help).
    #[arg(long, default_value_t = TrainConfig::default().data)]
    data: String,
    /// A Mask2Former config.json (default: the --init checkpoint's, else the small demo one).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Start from a checkpoint (fine-tuning): a folder, or a Hugging Face Hub id
    /// owner/name[@revision] fetched into the HF cache (see `segment --help`).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Total steps (default: 1000 from scratch, 200 with --init; on --resume, the run's own
    /// total unless given).
    #[arg(long)]
    steps: Option<u64>,
    /// Images per step of each process: under `mpirun -np N` (a `distributed` build) the
    /// global batch is N times this.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Learning rate (default: 1e-3 from scratch, 1e-4 with --init).
    #[arg(long)]
    lr: Option<f64>,
    /// Square LSJ crop size, a multiple of 32 (default: 128 from scratch, 160 with --init).
    #[arg(long)]
    image_size: Option<usize>,
    /// Images of the synthetic validation split scored for PQ at each evaluation; 0: loss only.
    #[arg(long, default_value_t = TrainConfig::default().pq_images)]
    pq_images: usize,
    /// Evaluate every N steps: validation loss, and PQ with synthetic data; 0: never
    /// (default: 500 from scratch, 0 with --init).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Checkpoint every N steps (and always at the end).
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    checkpoint_every: u64,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Full-model gradient clipping (L2 norm); 0 turns it off.
    #[arg(long, default_value_t = TrainConfig::default().clip_grad_norm.unwrap_or(0.0))]
    clip_grad_norm: f64,
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    weight_decay: f64,
    /// Learning-rate multiplier of the Swin backbone (default: 1 from scratch, 0.1 with --init).
    #[arg(long)]
    backbone_lr_multiplier: Option<f64>,
    /// Linear warmup iterations (default: 200 from scratch; the paper's 10 with --init).
    #[arg(long)]
    warmup_iters: Option<u64>,
    /// Warmup's starting fraction of the learning rate, in (0, 1] (default: 0.01 from scratch;
    /// the paper's 1.0 with --init).
    #[arg(long)]
    warmup_factor: Option<f64>,
    /// Points per mask for matching and the mask losses (default: 1024 from scratch; the
    /// config's, 12544, with --init).
    #[arg(long)]
    num_points: Option<usize>,
    /// Print where a step's time goes every N steps: data, forward, readback, host criterion,
    /// upload, backward and optimizer, with device times where the adapter has timestamps;
    /// 0: never (each step's times are in metrics.jsonl regardless).
    #[arg(long, default_value_t = TrainConfig::default().timeline_every)]
    timeline_every: u64,
    /// Run the criterion on the device (matching costs, point sampling and losses; only the
    /// small cost matrices are read back) with N target slots per image; default: on the host.
    #[arg(long, value_name = "N")]
    device_criterion: Option<usize>,
    /// Data-parallel runs (mpirun): compare the ranks' parameter checksums every N steps and
    /// stop on a mismatch; 0: never.
    #[arg(long, default_value_t = TrainConfig::default().checksum_every)]
    checksum_every: u64,
    /// Run folder (default runs/<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Start a new run in an --out that already holds one, replacing its checkpoint and logs.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
}

fn default_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo-config.json")
}

/// The processes of this run: an MPI job under `mpirun` (feature `distributed`), else one.
struct Job {
    #[cfg(feature = "distributed")]
    mpi: mask2former::train::distributed::Mpi,
}

impl Job {
    fn start() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(feature = "distributed")]
            mpi: mask2former::train::distributed::Mpi::init().map_err(anyhow::Error::msg)?,
        })
    }

    fn group(&self) -> Box<dyn Collective> {
        #[cfg(feature = "distributed")]
        if self.mpi.world() > 1 {
            return self.mpi.group();
        }
        Box::new(Solo)
    }

    /// The device options: with several ranks, each takes the adapter of its node-local rank
    /// among those matching `M2F_BACKEND` / `M2F_ADAPTER`, unless `M2F_ADAPTER_INDEX` is set.
    fn runtime(&self) -> anyhow::Result<Runtime> {
        // A training run repays the fastest kernels' longer compiles.
        #[allow(unused_mut)] // the distributed build picks the rank's adapter
        let mut opts = RuntimeOptions {
            compile_for_speed: true,
            ..RuntimeOptions::from_env()?
        };
        #[cfg(feature = "distributed")]
        if self.mpi.world() > 1 && opts.adapter_index.is_none() {
            opts.adapter_index = Some(AdapterIndex::Rank(self.mpi.local_rank()));
        }
        Runtime::with_options(&opts).context("starting the GPU runtime")
    }

    /// Reports `e`; with several ranks, ends the whole job so no rank waits for this one.
    fn fail(&self, e: &anyhow::Error) -> ExitCode {
        #[cfg(feature = "distributed")]
        if self.mpi.world() > 1 {
            let rank = self.mpi.rank();
            eprintln!(
                "error (rank {rank} of {}): {}",
                self.mpi.world(),
                mask2former::cli::error_message(e)
            );
            self.mpi.abort(mask2former::cli::EXIT_ERROR as i32);
        }
        mask2former::cli::report(e)
    }
}

fn main() -> ExitCode {
    let job = match Job::start() {
        Ok(j) => j,
        Err(e) => return mask2former::cli::report(&e),
    };
    match run(&job) {
        // Stopped by a signal (checkpoint written): 128 + the signal, as shells report it.
        Ok(()) => match signals::received() {
            Some(sig) => ExitCode::from(signals::exit_status(sig)),
            None => ExitCode::SUCCESS,
        },
        Err(e) => job.fail(&e),
    }
}

fn run(job: &Job) -> anyhow::Result<()> {
    // Over ~80 lines: the CLI's sequence (open or resume, report, train, save, evaluate) in order.
    let args = Args::parse();
    let runtime = || job.runtime();
    let mut trainer = if args.resume {
        let Some(out) = &args.out else {
            bail!("--resume needs --out <DIR> (the run folder to continue)");
        };
        Trainer::resume_in(&runtime()?, out, args.steps, job.group())
            .with_context(|| format!("resuming {}", out.display()))?
    } else {
        new_run(&args, runtime, job.group())?
    };
    let (rank, world) = trainer.rank();
    if world > 1 {
        // Every rank says which adapter it took.
        eprintln!(
            "rank {rank} of {world}: training on {}",
            trainer.runtime().describe()
        );
    }
    if rank > 0 {
        return follow(&mut trainer);
    }
    eprintln!(
        "training on {} ({}), run folder {}",
        trainer.runtime().describe(),
        trainer.config().data,
        trainer.run_dir().display()
    );
    if world > 1 {
        eprintln!(
            "data-parallel: {world} ranks x {} images = global batch {}",
            trainer.config().batch_size,
            world * trainer.config().batch_size
        );
    }
    eprintln!("data: {}", trainer.data_summary());

    let stop = signals::install().context("installing the SIGINT/SIGTERM handlers")?;

    let total = trainer.config().steps;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(trainer.step());
    let first = std::cell::Cell::new(None::<f64>);
    let result = trainer.run(stop, |r| {
        if first.get().is_none() {
            first.set(Some(r.loss));
        }
        if r.timeline {
            // Printed also when stderr is not a terminal (the bar is hidden then).
            bar.suspend(|| eprintln!("step {}: {}", r.step + 1, r.times));
        }
        bar.set_position(r.step + 1);
        bar.set_message(format!(
            "loss {:.3} (first {:.3}) lr {:.1e} {:.2} img/s",
            r.loss,
            first.get().unwrap_or(r.loss),
            r.lr,
            r.images_per_second
        ));
    });
    bar.abandon();
    let ckpt = result?;
    if let Some(sig) = signals::received() {
        eprintln!(
            "stopped by {} at step {}: checkpoint written to {} (continue with --resume --out {})",
            signals::name(sig),
            trainer.step(),
            ckpt.display(),
            trainer.run_dir().display()
        );
    } else {
        if let Some(pq) = trainer.last_pq() {
            eprintln!("last evaluation: PQ {pq:.1} on the synthetic validation split");
        }
        eprintln!(
            "done: {} steps; checkpoint {} (segment --model {})",
            trainer.step(),
            ckpt.display(),
            ckpt.display()
        );
    }
    Ok(())
}

/// A data-parallel rank other than 0: trains in step with rank 0, which reports.
fn follow(trainer: &mut Trainer) -> anyhow::Result<()> {
    let stop = signals::install().context("installing the SIGINT/SIGTERM handlers")?;
    trainer.run(stop, |_| {})?;
    Ok(())
}

/// A new run from the flags: the model config, the recipe (from scratch or fine-tuning) with
/// the flags over it, checked before the device starts.
fn new_run(
    args: &Args,
    runtime: impl Fn() -> anyhow::Result<Runtime>,
    group: Box<dyn Collective>,
) -> anyhow::Result<Trainer> {
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(t.to_string())
    });
    let init_dir = args
        .init
        .as_deref()
        .map(mask2former::hub::resolve_model)
        .transpose()?;
    let path = (args.model_config.clone())
        .or_else(|| init_dir.as_ref().map(|d| d.join("config.json")))
        .unwrap_or_else(default_config);
    let model = Mask2FormerConfig::from_file(&path)
        .with_context(|| format!("model config {}", path.display()))?;
    let init = init_dir.map_or(Init::Scratch, Init::From);
    let recipe = TrainConfig::recipe(&init);
    let cfg = TrainConfig {
        data: args.data.clone(),
        steps: args.steps.unwrap_or(recipe.steps),
        batch_size: args.batch_size,
        lr: args.lr.unwrap_or(recipe.lr),
        image_size: args.image_size.unwrap_or(recipe.image_size),
        eval_every: args.eval_every.unwrap_or(recipe.eval_every),
        pq_images: args.pq_images,
        checkpoint_every: args.checkpoint_every,
        timeline_every: args.timeline_every,
        seed: args.seed,
        weight_decay: args.weight_decay,
        backbone_lr_multiplier: args
            .backbone_lr_multiplier
            .unwrap_or(recipe.backbone_lr_multiplier),
        // 0 turns clipping off; anything else (NaN, negative) is checked by validate.
        clip_grad_norm: (args.clip_grad_norm != 0.0).then_some(args.clip_grad_norm),
        warmup_iters: args.warmup_iters.unwrap_or(recipe.warmup_iters),
        warmup_factor: args.warmup_factor.unwrap_or(recipe.warmup_factor),
        num_points: args.num_points.or(recipe.num_points),
        device_criterion: args.device_criterion,
        checksum_every: args.checksum_every,
        ..recipe
    };
    // Before the device starts: a bad flag is reported at once.
    cfg.validate()?;
    eprintln!(
        "recipe: {} (lr {:e}, backbone x{}, warmup {} steps from x{}, {} steps); flags override it",
        match init {
            Init::Scratch => "from scratch (no --init: the demo model's recipe)",
            Init::From(_) => "fine-tuning (--init: the paper's recipe)",
        },
        cfg.lr,
        cfg.backbone_lr_multiplier,
        cfg.warmup_iters,
        cfg.warmup_factor,
        cfg.steps
    );
    Ok(Trainer::create_in(
        &runtime()?,
        cfg,
        model,
        init,
        &out,
        args.overwrite,
        group,
    )?)
}
