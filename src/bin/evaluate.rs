//! `evaluate`: panoptic quality, mask AP or mIoU of predictions against a dataset.
//!
//! ```text
//! cargo run --release --bin evaluate -- --data <SPEC> [--split S] (--model <DIR> [--save-predictions DIR] | --predictions <PATH>) [--out FILE] [--per-category]
//!   <SPEC>: see `mask2former::data::spec` (dataset roots in the official layouts, or explicit files)
//! cargo run --release --bin evaluate -- --data synthetic --export-gt <DIR>
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mask2former::data::synthetic::{Dataset, Split};
use mask2former::eval::{open_data, run_opened, DataSpec, EvalOptions, Source};

#[derive(Parser, Debug)]
#[command(about = "Evaluate segmentation predictions (PQ, mask AP, mIoU)")]
struct Args {
    /// The dataset: a root whose layout is detected, KIND:ROOT, explicit files, or synthetic.
    ///   ROOT                          detect one of the layouts below
    ///   coco-panoptic:ROOT            ROOT/annotations/panoptic_SPLIT.json + annotations/panoptic_SPLIT/
    ///                                 (or ROOT/panoptic_SPLIT/) + ROOT/SPLIT/ (COCO 2017 as unzipped)
    ///   coco-instance:ROOT            ROOT/annotations/instances_SPLIT.json + ROOT/SPLIT/
    ///   ade20k:ROOT                   [ROOT/ADEChallengeData2016/]images/SPLIT + annotations/SPLIT
    ///                                 (150 classes, label 0 ignored, names from objectInfo150.txt)
    ///   cityscapes:ROOT               leftImg8bit/SPLIT/CITY/*_leftImg8bit.png +
    ///                                 gtFine/SPLIT/CITY/*_gtFine_labelIds.png (19 train ids)
    ///   semantic:DIR                  DIR/images/ + DIR/labels/*.png (+ DIR/classes.txt)
    ///   coco-instance:ANNOTATIONS.json,IMAGES_DIR
    ///   coco-panoptic:ANNOTATIONS.json,PNG_DIR,IMAGES_DIR
    ///   semantic:IMAGES_DIR,LABELS_DIR        (labels LABELS_DIR/STEM.png for IMAGES_DIR/STEM.*)
    ///   synthetic[:N[:SEED]]          the generated panoptic dataset
    #[arg(long, verbatim_doc_comment)]
    data: String,
    /// The split of a dataset root [default: val2017 (COCO), validation (ADE20K), val (Cityscapes)].
    #[arg(long)]
    split: Option<String>,
    /// Report records that cannot be used (a missing image, a PNG of another size, an unknown
    /// category, ...) and evaluate without them; without it such a record stops the run before
    /// any work.
    #[arg(long)]
    skip_bad: bool,
    /// With --model: also write the predictions in the reference tools' formats to this folder
    /// (DIR/results.json: COCO results with RLE masks; DIR/panoptic.json + DIR/panoptic/:
    /// panopticapi; DIR/KEY.png: semantic labels). --predictions DIR reads them back.
    #[arg(long, requires = "model")]
    save_predictions: Option<PathBuf>,
    /// Run this model: a checkpoint folder (config.json + model.safetensors) or a Hugging Face
    /// Hub id owner/name[@revision], fetched into the HF cache (see `segment --help`); an
    /// existing folder wins over a Hub id of the same name.
    #[arg(long, conflicts_with = "predictions")]
    model: Option<PathBuf>,
    /// COCO results JSON (instance data; with panoptic data: mask AP on the "thing" segments),
    /// COCO panoptic JSON with its PNG folder of the same name, a folder written by
    /// --save-predictions (results.json, or panoptic.json + panoptic/), or a folder of label PNGs
    /// KEY.png (semantic; KEY is the label's file stem, for Cityscapes without _gtFine_labelIds).
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Where to write the numbers as JSON (written atomically): the summary and, per category,
    /// panoptic.per_class (PQ, SQ, RQ, TP, FP, FN by category id), instance.per_category (AP
    /// by category id) and semantic.per_class_iou / per_class_acc (by class index; null: class
    /// absent from the ground truth).
    #[arg(long, default_value = "evaluate-out/metrics.json")]
    out: PathBuf,
    /// Also print a table with one row per category: PQ/SQ/RQ and TP/FP/FN (panoptic), AP
    /// (instance), IoU and accuracy (semantic); `-` where there is nothing to score.
    #[arg(long)]
    per_category: bool,
    /// ADE20K-style label reduction of semantic ground truth (0 → ignore, others − 1).
    #[arg(long)]
    reduce_labels: bool,
    /// Number of semantic classes (default: from the dataset, else the largest label seen + 1).
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
    let mut data: DataSpec = args.data.parse()?;
    if let Some(split) = &args.split {
        data = data.with_split(split)?;
    }
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
        (Some(m), None) => Source::Model(mask2former::hub::resolve_model(&m)?),
        (None, Some(p)) => Source::Predictions(p),
        _ => bail!("give exactly one of --model <DIR> or --predictions <PATH>"),
    };
    let opts = EvalOptions {
        data,
        source,
        reduce_labels: args.reduce_labels,
        num_classes: args.num_classes,
    };
    let opened =
        open_data(&opts, args.skip_bad).with_context(|| format!("opening {}", args.data))?;
    for record in &opened.skipped {
        eprintln!("skipped: {record}");
    }
    println!("{}", opened.summary);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {elapsed}")
            .expect("valid template"),
    );
    let save = args.save_predictions.as_deref();
    let report = run_opened(None, &opts, &opened.dataset, save, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("evaluating {}", args.data))?;
    bar.finish_and_clear();
    if args.per_category {
        print!("{}", report.per_category_table());
    }
    print!("{}", report.table());
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    mask2former::atomic_file::write_atomic(&args.out, json.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("metrics written to {}", args.out.display());
    if let Some(dir) = save {
        println!("predictions written to {}", dir.display());
    }
    Ok(())
}
