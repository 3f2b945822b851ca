//! All-reduce time and bandwidth of the gradient path of data-parallel training
//! (`train::average_host`: 4 MiB pieces through MPI, then the 1/ranks scale), for buffers of
//! the given sizes in MB (default: the demo model's and Swin-T's gradient arenas), plus the
//! device copies around it (gradient arena to host and back) on this machine's adapter.
//!
//! ```sh
//! cargo build --release --features distributed --example allreduce_bench
//! mpirun -np 2 target/release/examples/allreduce_bench 27 190
//! ```

use std::time::Instant;

use mask2former::train::distributed::Mpi;
use mask2former::train::{average_host, CHUNK_FLOATS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mpi = Mpi::init()?;
    let group = mpi.group();
    let (rank, world) = (group.rank(), group.world());
    let parsed: Result<Vec<f64>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let sizes = match parsed {
        Ok(v) if !v.is_empty() => v,
        Ok(_) => vec![27.0, 190.0],
        Err(e) => return Err(format!("sizes in MB: {e}").into()),
    };
    let rt = (rank == 0).then(mask2former::Runtime::new).transpose()?;
    for mb in sizes {
        let n = (mb * 1e6 / 4.0) as usize;
        let mut data = vec![1.0f32; n];
        let mut recv = vec![0f32; CHUNK_FLOATS.min(n)];
        average_host(&mut data, &mut recv, group.as_ref()); // warm-up: connections, pages
        let reps = 5;
        group.barrier();
        let start = Instant::now();
        for _ in 0..reps {
            average_host(&mut data, &mut recv, group.as_ref());
        }
        let t = start.elapsed().as_secs_f64() / reps as f64;
        assert!(
            data.iter().all(|&v| v == 1.0),
            "the mean of equal buffers changed"
        );
        if let Some(rt) = &rt {
            let bytes = 4.0 * n as f64;
            // Bus bandwidth as NCCL reports it: a ring moves 2 (N - 1) / N of the buffer per rank.
            let bus = 2.0 * (world - 1) as f64 / world as f64 * bytes / t;
            let t_dev = rt.full(&[n], 1.0)?;
            let start = Instant::now();
            let host = rt.download(&t_dev)?;
            rt.write(&t_dev, &host)?;
            rt.sync()?;
            let copies = start.elapsed().as_secs_f64();
            println!(
                "{world} ranks, {mb} MB: all-reduce {:.1} ms ({:.2} GB/s algorithm, {:.2} GB/s bus); \
                 device copies {:.1} ms",
                t * 1e3,
                bytes / t / 1e9,
                bus / 1e9,
                copies * 1e3
            );
        }
    }
    Ok(())
}
