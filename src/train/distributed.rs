//! The [`Collective`] of a data-parallel job launched by `mpirun`: MPI through rsmpi over the
//! system's MPI library (feature `distributed`). Only the main thread calls MPI.
//!
//! Failure: MPI's default error handler aborts the whole job on a communication error, and
//! [`Mpi::init`] installs a panic hook that prints the panic with the rank and then aborts the
//! job (`MPI_Abort`), so a rank that dies never leaves the others waiting in a collective; the
//! `train` binary aborts the same way when a rank returns an error.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::collective::Collective;

/// This process's place in an MPI job. Keep it alive until the process exits: dropping it
/// finalises MPI.
pub struct Mpi {
    /// Finalises MPI when dropped: keep it alive until the process exits.
    _universe: Universe,
    world: SimpleCommunicator,
    local_rank: usize,
    local_size: usize,
}

/// Exit status of a job aborted by a failing rank.
pub const ABORT_STATUS: i32 = 1;

impl Mpi {
    /// Initialises MPI (a process started without `mpirun` is a job of one rank) and installs
    /// the panic hook. Fails when MPI was already initialised.
    pub fn init() -> Result<Self, String> {
        let universe = mpi::initialize()
            .ok_or_else(|| "MPI: already initialised in this process".to_string())?;
        let world = universe.world();
        // The ranks sharing this node: the node-local rank picks the adapter.
        let node = world.split_shared(world.rank());
        let mpi = Self {
            local_rank: node.rank() as usize,
            local_size: node.size() as usize,
            _universe: universe,
            world,
        };
        if mpi.world() > 1 {
            install_panic_hook(mpi.rank(), mpi.world());
        }
        Ok(mpi)
    }

    /// Rank among the processes of this node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    /// Processes of this job on this node.
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// Ends every process of the job with `status` (after this one printed why).
    pub fn abort(&self, status: i32) -> ! {
        self.world.abort(status)
    }

    /// The job's ranks, for the trainer (a handle: MPI stays initialised while `self` lives).
    pub fn group(&self) -> Box<dyn Collective> {
        Box::new(World(SimpleCommunicator::world()))
    }

    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    pub fn world(&self) -> usize {
        self.world.size() as usize
    }
}

/// `MPI_COMM_WORLD` as a [`Collective`].
struct World(SimpleCommunicator);

/// Prints the panic as usual, prefixed with the rank, then aborts the whole job.
fn install_panic_hook(rank: usize, world: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("rank {rank} of {world} panicked; aborting the MPI job");
        previous(info);
        SimpleCommunicator::world().abort(ABORT_STATUS);
    }));
}

impl Collective for World {
    fn rank(&self) -> usize {
        self.0.rank() as usize
    }
    fn world(&self) -> usize {
        self.0.size() as usize
    }
    fn broadcast(&self, data: &mut [f32]) {
        self.0.process_at_rank(0).broadcast_into(data);
    }
    fn sum_f32(&self, send: &[f32], recv: &mut [f32]) {
        self.0.all_reduce_into(send, recv, SystemOperation::sum());
    }
    fn sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        self.0.all_reduce_into(send, recv, SystemOperation::sum());
    }
    fn min_max(&self, value: u64) -> (u64, u64) {
        let (mut lo, mut hi) = (0u64, 0u64);
        self.0
            .all_reduce_into(&value, &mut lo, SystemOperation::min());
        self.0
            .all_reduce_into(&value, &mut hi, SystemOperation::max());
        (lo, hi)
    }
    fn barrier(&self) {
        self.0.barrier();
    }
}
