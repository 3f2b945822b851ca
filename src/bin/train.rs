//! `train`: train Mask2Former (the paper's recipe) on the synthetic dataset or a COCO / semantic
//! folder; checkpoints in the hub layout, metrics.jsonl, Ctrl-C checkpoints and exits, --resume.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mask2former::model::config::Mask2FormerConfig;
use mask2former::train::Init;
use mask2former::train::{TrainConfig, Trainer};
use mask2former::Runtime;

#[derive(Parser, Debug)]
#[command(version, about = "Train Mask2Former on any GPU (wgpu)")]
struct Args {
    /// synthetic, a dataset root (COCO 2017 panoptic/instance, ADE20K, Cityscapes; the training
    /// split), KIND:ROOT or explicit files, as for `evaluate --data` (see its --help).
    #[arg(long, default_value_t = TrainConfig::default().data)]
    data: String,
    /// A Mask2Former config.json (default: the small demo configuration).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Start from a checkpoint folder (fine-tuning).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Total steps (default 200; on --resume, the run's own total unless given).
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Square LSJ crop size, a multiple of 32.
    #[arg(long, default_value_t = TrainConfig::default().image_size)]
    image_size: usize,
    /// Images of the synthetic validation split scored for PQ at each evaluation; 0: loss only.
    #[arg(long, default_value_t = TrainConfig::default().pq_images)]
    pq_images: usize,
    /// Evaluate every N steps: validation loss, and PQ with synthetic data; 0: never.
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    eval_every: u64,
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
    #[arg(long, default_value_t = TrainConfig::default().backbone_lr_multiplier)]
    backbone_lr_multiplier: f64,
    /// Linear warmup iterations (the paper: 10, factor 1.0).
    #[arg(long, default_value_t = TrainConfig::default().warmup_iters)]
    warmup_iters: u64,
    #[arg(long, default_value_t = TrainConfig::default().warmup_factor)]
    warmup_factor: f64,
    /// Points per mask for matching and the mask losses (default: the config's, 12544).
    #[arg(long)]
    num_points: Option<usize>,
    /// Run folder (default runs/<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out exactly where it stopped.
    #[arg(long)]
    resume: bool,
}

fn default_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo-config.json")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => mask2former::cli::report(&e),
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = Runtime::new().context("starting the GPU runtime")?;
    let mut trainer = if args.resume {
        let Some(out) = &args.out else {
            bail!("--resume needs --out <DIR> (the run folder to continue)");
        };
        Trainer::resume(&rt, out, args.steps)
            .with_context(|| format!("resuming {}", out.display()))?
    } else {
        let out = args.out.clone().unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from("runs").join(t.to_string())
        });
        let path = args.model_config.clone().unwrap_or_else(default_config);
        let model = Mask2FormerConfig::from_file(&path)
            .with_context(|| format!("model config {}", path.display()))?;
        let cfg = TrainConfig {
            data: args.data.clone(),
            steps: args.steps.unwrap_or(TrainConfig::default().steps),
            batch_size: args.batch_size,
            lr: args.lr,
            image_size: args.image_size,
            eval_every: args.eval_every,
            pq_images: args.pq_images,
            checkpoint_every: args.checkpoint_every,
            seed: args.seed,
            weight_decay: args.weight_decay,
            backbone_lr_multiplier: args.backbone_lr_multiplier,
            clip_grad_norm: (args.clip_grad_norm > 0.0).then_some(args.clip_grad_norm),
            warmup_iters: args.warmup_iters,
            warmup_factor: args.warmup_factor,
            num_points: args.num_points,
            ..TrainConfig::default()
        };
        let init = args.init.clone().map_or(Init::Scratch, Init::From);
        Trainer::new(&rt, cfg, model, init, &out)?
    };
    eprintln!(
        "training on {} ({}), run folder {}",
        rt.describe(),
        trainer.config().data,
        trainer.run_dir().display()
    );
    eprintln!("data: {}", trainer.data_summary());

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C: leave now (the last checkpoint on disk is intact).
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C handler")?;
    }

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
    let result = trainer.run(&stop, |r| {
        if first.get().is_none() {
            first.set(Some(r.loss));
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
    if stop.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted at step {}: checkpoint written to {} (continue with --resume --out {})",
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
