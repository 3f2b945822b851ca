//! Kernel benchmarks: `cargo bench --bench kernels`. Throughput is set to the FLOP count, so
//! criterion's `thrpt` column reads in FLOP/s (it prints "elem/s").

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "kernels/attention.rs"]
mod attention;
#[path = "kernels/conv.rs"]
mod conv;
#[path = "kernels/deform.rs"]
mod deform;
#[path = "kernels/gemm.rs"]
mod gemm;
#[path = "kernels/matmul.rs"]
mod matmul;

fn all(c: &mut Criterion) {
    matmul::benches(c);
    attention::benches(c);
    deform::benches(c);
    gemm::benches(c);
    conv::benches(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_secs(1));
    targets = all
}
criterion_main!(benches);
