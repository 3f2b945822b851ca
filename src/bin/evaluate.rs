//! `evaluate`: panoptic quality, mask AP or mIoU of predictions against a dataset.
//!
//! ```text
//! cargo run --release --bin evaluate -- --data <SPEC> (--model <DIR> | --predictions <PATH>) [--out FILE]
//!   <SPEC>: synthetic[:N[:SEED]] | coco-panoptic:<DIR> | coco-instance:<DIR> | semantic:<DIR>
//! cargo run --release --bin evaluate -- --data synthetic --export-gt <DIR>
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mask2former::data::synthetic::{Dataset, Split};
use mask2former::eval::{run, DataSpec, EvalOptions, Source};

#[derive(Parser, Debug)]
#[command(about = "Evaluate segmentation predictions (PQ, mask AP, mIoU)")]
struct Args {
    /// One of synthetic, synthetic:N, synthetic:N:SEED, coco-panoptic:DIR, coco-instance:DIR,
    /// semantic:DIR. Layouts: coco-panoptic DIR/{panoptic.json,panoptic/,images/}; coco-instance
    /// DIR/{instances.json,images/}; semantic DIR/{labels/*.png,images/,classes.txt?}.
    #[arg(long)]
    data: String,
    /// Run the segmentation model in this directory (config.json + model.safetensors).
    #[arg(long, conflicts_with = "predictions")]
    model: Option<PathBuf>,
    /// COCO results JSON (instance data; with panoptic data: mask AP on the "thing" segments),
    /// COCO panoptic JSON with its PNG folder of the same name (or a folder with panoptic.json +
    /// panoptic/), or a folder of label PNGs (semantic).
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Where to write the numbers as JSON.
    #[arg(long, default_value = "evaluate-out/metrics.json")]
    out: PathBuf,
    /// ADE20K-style label reduction of semantic ground truth (0 → ignore, others − 1).
    #[arg(long)]
    reduce_labels: bool,
    /// Number of semantic classes (default: classes.txt, else the largest label seen + 1).
    #[arg(long)]
    num_classes: Option<usize>,
    /// Synthetic data only: write its ground truth in COCO panoptic format to this folder and exit.
    #[arg(long, conflicts_with_all = ["model", "predictions"])]
    export_gt: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run_cli() {
        Ok(()) => std::process::ExitCode::from(mask2former::cli::EXIT_OK),
        Err(e) => mask2former::cli::report(&e),
    }
}

fn run_cli() -> Result<()> {
    let args = Args::parse();
    if args.num_classes == Some(0) {
        bail!("--num-classes 0: must be at least 1");
    }
    let data: DataSpec = args.data.parse()?;
    if let Some(dir) = &args.export_gt {
        let DataSpec::Synthetic { count, seed } = data else {
            bail!("--export-gt works with --data synthetic only");
        };
        Dataset::new(seed, Split::Val, count)
            .write_coco_panoptic(dir)
            .with_context(|| format!("writing the synthetic dataset to {}", dir.display()))?;
        println!(
            "wrote {count} synthetic images (seed {seed}) to {}",
            dir.display()
        );
        return Ok(());
    }
    let source = match (args.model, args.predictions) {
        (Some(m), None) => Source::Model(m),
        (None, Some(p)) => Source::Predictions(p),
        _ => bail!("give exactly one of --model <DIR> or --predictions <PATH>"),
    };
    let opts = EvalOptions {
        data,
        source,
        reduce_labels: args.reduce_labels,
        num_classes: args.num_classes,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {elapsed}")
            .expect("valid template"),
    );
    let report = run(&opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("evaluating {}", args.data))?;
    bar.finish_and_clear();
    print!("{}", report.table());
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    mask2former::atomic_file::write_atomic(&args.out, json.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("metrics written to {}", args.out.display());
    Ok(())
}
