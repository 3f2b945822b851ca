//! The bundled demo model (`assets/demo-model`, `segment`'s default) on the synthetic
//! validation split: the shipped weights, their `preprocessor_config.json` and the original
//! post-processing thresholds together keep the quality the README states.

use std::path::PathBuf;

use mask2former::eval::{self, DataSpec, EvalOptions, Source};

#[test]
fn bundled_demo_model_reaches_its_panoptic_quality() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model");
    let opts = EvalOptions {
        data: DataSpec::Synthetic { count: 16, seed: 0 },
        source: Source::Model(model),
        reduce_labels: false,
        num_classes: None,
    };
    let report = eval::run(&opts, &mut |_, _| {}).unwrap();
    let pq = report.panoptic.expect("synthetic data is panoptic");
    // Measured 77.2 (76.6 on all 64 images); the bound leaves room for float-atomic noise across adapters.
    assert!(
        pq.all.pq >= 0.65,
        "demo model: PQ {:.1} (things {:.1}, stuff {:.1}) on synthetic:16",
        100.0 * pq.all.pq,
        100.0 * pq.things.pq,
        100.0 * pq.stuff.pq
    );
}
