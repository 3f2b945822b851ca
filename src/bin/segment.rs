//! `segment`: run Mask2Former on images and write overlays, segments JSON and label maps.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mask2former::cli;
use mask2former::image_input::load_image;
use mask2former::model::preprocess::Preprocessed;
use mask2former::segment::{output_stems, write_outputs, Segmenter, Task};
use mask2former::Runtime;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Panoptic, instance and semantic segmentation with Mask2Former on any GPU (wgpu)"
)]
struct Args {
    /// Images to segment (PNG or JPEG, recognised by content; EXIF orientation applied).
    /// Outputs are named after each file's stem; inputs sharing a stem (a/x.png, b/x.png) get
    /// -2, -3, … appended in the order given (a note says so).
    #[arg(required_unless_present = "pixel_values")]
    images: Vec<PathBuf>,
    /// Checkpoint folder (config.json + model.safetensors) or Hugging Face Hub id
    /// owner/name[@revision], fetched into the HF cache (HF_HUB_CACHE, HF_HOME; HF_ENDPOINT,
    /// HF_TOKEN, HF_HUB_OFFLINE=1 honoured). An existing folder wins over a Hub id of the same
    /// name. Default: the bundled demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Task::Panoptic)]
    task: Task,
    /// Output folder.
    #[arg(long, default_value = "segment-out")]
    out: PathBuf,
    /// Run on a preprocessed NCHW f32 tensor stored under `pixel_values` in a safetensors file.
    #[arg(long)]
    pixel_values: Option<PathBuf>,
    /// Also write the raw outputs (`class_queries_logits`, `masks_queries_logits`) to this
    /// safetensors file (with several images: `<stem>.<name>` beside it).
    #[arg(long)]
    dump_raw: Option<PathBuf>,
    /// Use a truncated JPEG (the missing part decodes as grey) with a warning instead of
    /// failing on it.
    #[arg(long)]
    allow_truncated: bool,
    /// Panoptic: minimum class score of a query, 0 to 1 (original Mask2Former: 0.8).
    #[arg(long)]
    object_mask_threshold: Option<f32>,
    /// Panoptic: minimum visible share of a segment's mask, 0 to 1 (original: 0.8).
    #[arg(long)]
    overlap_threshold: Option<f32>,
    /// Instance: number of (query, class) pairs kept, at least 1 (original: 100).
    #[arg(long)]
    top_k: Option<usize>,
}

fn default_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model")
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::from(cli::EXIT_OK),
        Ok(false) => ExitCode::from(cli::EXIT_PARTIAL),
        Err(e) => cli::report(&e),
    }
}

/// Every flag checked before anything runs; errors name the flag.
fn validate(args: &Args) -> anyhow::Result<()> {
    if let Some(v) = args.object_mask_threshold {
        cli::check_range("--object-mask-threshold", v as f64, 0.0, 1.0)?;
    }
    if let Some(v) = args.overlap_threshold {
        cli::check_range("--overlap-threshold", v as f64, 0.0, 1.0)?;
    }
    if args.top_k == Some(0) {
        bail!("--top-k 0: must be at least 1");
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!("--out {}: exists and is not a folder", args.out.display());
    }
    mask2former::segment::prepare_out_dir(&args.out).context("--out")?;
    if let Some(dump) = &args.dump_raw {
        if dump.is_dir() || dump.file_name().is_none() {
            bail!("--dump-raw {}: must be a file path", dump.display());
        }
        if let Some(parent) = dump.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("--dump-raw: creating {}", parent.display()))?;
        }
    }
    Ok(())
}

/// Ok(false) when some images failed (they were reported and skipped).
fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    validate(&args)?;
    let model_dir = match &args.model {
        Some(m) => mask2former::hub::resolve_model(m)?,
        None => default_model(),
    };
    let rt = Runtime::new().context("opening a GPU adapter")?;
    eprintln!("adapter: {}", rt.describe());
    let mut seg = Segmenter::load(&rt, &model_dir)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    if let Some(v) = args.object_mask_threshold {
        seg.postprocess.object_mask_threshold = v;
    }
    if let Some(v) = args.overlap_threshold {
        seg.postprocess.overlap_threshold = v;
    }
    if let Some(v) = args.top_k {
        seg.postprocess.top_k = v;
    }

    if let Some(path) = &args.pixel_values {
        return run_pixel_values(&mut seg, path, &args).map(|_| true);
    }

    let bar = ProgressBar::new(args.images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]").unwrap(),
    );
    let start = Instant::now();
    let (mut done, mut failed) = (0usize, 0usize);
    let stems = output_stems(&args.images);
    for (path, stem) in args.images.iter().zip(&stems) {
        if path
            .file_stem()
            .is_some_and(|s| s.to_string_lossy() != *stem)
        {
            eprintln!(
                "note: another input is also named {:?}; outputs of {} are written as {stem}.*",
                path.file_stem().unwrap_or_default(),
                path.display()
            );
        }
    }
    for (path, stem) in args.images.iter().zip(&stems) {
        bar.set_message(path.display().to_string());
        match segment_one(&mut seg, path, stem, &args, &bar) {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("skipped {}: {e:#}", path.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{done} image(s) in {secs:.2} s ({:.2} images/s), {failed} failed; peak device memory {:.1} MiB; outputs in {}",
        done as f64 / secs.max(1e-9),
        rt.memory().peak_bytes as f64 / (1 << 20) as f64,
        args.out.display()
    );
    Ok(failed == 0)
}

/// Segments one image and writes its outputs; a failing `--dump-raw` does not keep the normal
/// outputs from being written (its error is returned after them).
fn segment_one(
    seg: &mut Segmenter,
    path: &std::path::Path,
    stem: &str,
    args: &Args,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let loaded = load_image(path, args.allow_truncated)?;
    for w in &loaded.warnings {
        bar.suspend(|| eprintln!("warning: {w}"));
    }
    let image = loaded.image;
    let (result, dumped) = match &args.dump_raw {
        // Segmenter::segment: post-processing on the device where that is the faster path.
        None => {
            let result = seg
                .segment(&image, args.task)
                .with_context(|| format!("running the model on {}", path.display()))?;
            (result, Ok(()))
        }
        // The raw outputs are needed on the host: forward, dump, post-process there.
        Some(dump) => {
            let pre = mask2former::model::preprocess::preprocess(&image, &seg.preprocess);
            let raw = seg
                .forward(&pre.pixel_values, 1, pre.height, pre.width)
                .with_context(|| format!("running the model on {}", path.display()))?;
            let file = if args.images.len() > 1 {
                dump.with_file_name(format!("{stem}.{}", file_name(dump)))
            } else {
                dump.clone()
            };
            let dumped = raw
                .save_safetensors(&file)
                .with_context(|| format!("--dump-raw {}", file.display()));
            (seg.postprocess(&raw, 0, &pre, args.task), dumped)
        }
    };
    write_outputs(
        &args.out,
        stem,
        &image.to_rgb8(),
        args.task,
        &result,
        seg.labels(),
    )?;
    dumped
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("raw.safetensors")
        .to_string()
}

/// `--pixel-values`: the batch in the file goes through the network as is; outputs are written
/// at the network input size (there is no original image).
fn run_pixel_values(
    seg: &mut Segmenter,
    path: &std::path::Path,
    args: &Args,
) -> anyhow::Result<()> {
    let t = mask2former::model::checkpoint::read_tensor(path, "pixel_values")
        .with_context(|| format!("--pixel-values {}", path.display()))?;
    let shape = t.shape.clone();
    if shape.len() != 4 || shape[1] != 3 {
        bail!(
            "{}: `pixel_values` must be [B, 3, H, W], found {:?}",
            path.display(),
            shape
        );
    }
    let data = t.data.clone();
    let (b, h, w) = (shape[0], shape[2], shape[3]);
    let start = Instant::now();
    let raw = seg
        .forward(&data, b, h, w)
        .with_context(|| format!("--pixel-values {}", path.display()))?;
    if let Some(dump) = &args.dump_raw {
        raw.save_safetensors(dump)?;
    }
    let plane = 3 * h * w;
    for i in 0..b {
        let pre = Preprocessed {
            pixel_values: data[i * plane..(i + 1) * plane].to_vec(),
            height: h,
            width: w,
            original_size: (h, w),
        };
        let result = seg.postprocess(&raw, i, &pre, args.task);
        let image = denormalize(&pre, &seg.preprocess);
        write_outputs(
            &args.out,
            &format!("batch{i}"),
            &image,
            args.task,
            &result,
            seg.labels(),
        )?;
    }
    println!(
        "{b} image(s) in {:.2} s; outputs in {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// Recovers a viewable RGB image from normalised pixel values (for the overlay).
fn denormalize(
    pre: &Preprocessed,
    cfg: &mask2former::model::preprocess::PreprocessConfig,
) -> image::RgbImage {
    let plane = pre.height * pre.width;
    image::RgbImage::from_fn(pre.width as u32, pre.height as u32, |x, y| {
        let i = y as usize * pre.width + x as usize;
        let px = |c: usize| {
            ((pre.pixel_values[c * plane + i] * cfg.std[c] + cfg.mean[c]) * 255.0).clamp(0.0, 255.0)
                as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}
