//! Segment one image with a Mask2Former checkpoint folder and print the panoptic segments.
//!
//! ```text
//! cargo run --release --example segment_image -- [MODEL_DIR] [IMAGE]
//! ```
//! Defaults: the tiny random-weight transformers fixture and its image (so this runs anywhere;
//! its segments are meaningless — pass a real checkpoint for real results).

use mask2former::segment::{Segmenter, Task};
use mask2former::Runtime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| root.join("tests/fixtures/parity/tiny"));
    let image = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| root.join("tests/fixtures/parity/tiny/image_0.png"));

    let rt = Runtime::new()?;
    let mut seg = Segmenter::load(&rt, &model)?;
    let result = seg.segment(&image::open(&image)?, Task::Panoptic)?;
    for s in result.segments(seg.labels()) {
        println!(
            "{:>3} {:<20} score {:.2} area {:>7} bbox {:?}",
            s.id, s.label_name, s.score, s.area, s.bbox
        );
    }
    Ok(())
}
