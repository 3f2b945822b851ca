//! Writes scenes of the synthetic dataset as PNG files, at any size, e.g. demo inputs for
//! `segment`: `cargo run --release --example synthetic_image -- OUT_DIR [SIZE] [COUNT] [SEED]`
//! (validation split; defaults 384 px, 4 images, seed 0). Objects scale with the image.

use mask2former::data::synthetic::{Config, Dataset, Split};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: synthetic_image OUT_DIR [SIZE] [COUNT] [SEED]";
    let out = std::path::PathBuf::from(args.first().expect(usage));
    let num = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{usage}")))
    };
    let (size, count, seed) = (num(1, 384), num(2, 4), num(3, 0) as u64);
    let cfg = Config {
        height: size,
        width: size,
        ..Config::default()
    };
    let ds = Dataset::with_config(seed, Split::Val, count, cfg);
    std::fs::create_dir_all(&out).expect("creating the output folder");
    for i in 0..count {
        let path = out.join(format!("synthetic_{size}_{seed}_{i}.png"));
        ds.generate(i).image.save(&path).expect("writing the image");
        println!("{}", path.display());
    }
}
