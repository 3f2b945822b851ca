//! What the trainer needs from the other processes of a data-parallel run, and its
//! single-process form. The trainer calls a [`Collective`] at a few points of a step (the
//! loss normalisers, the gradients, the loss, the stop flag, the parameter checksum) and at the
//! start (the parameters of rank 0); with [`Solo`] each call returns at once and the step is
//! the single-process one. The MPI implementation is [`super::distributed`] (feature
//! `distributed`).
//!
//! Every rank must make the same calls in the same order with the same lengths (MPI's rule):
//! the trainer calls them at the same points of every step on every rank.

/// Collective operations over the ranks of one training job.
pub trait Collective {
    /// This process's rank, `0..world()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world(&self) -> usize;
    /// Overwrites `data` on every rank with rank 0's.
    fn broadcast(&self, data: &mut [f32]);
    /// `recv[i] = Σ over ranks of send[i]` (same lengths).
    fn sum_f32(&self, send: &[f32], recv: &mut [f32]);
    /// `recv[i] = Σ over ranks of send[i]`, in f64 (losses and normalisers).
    fn sum_f64(&self, send: &[f64], recv: &mut [f64]);
    /// The smallest and the largest of the ranks' `value` (the stop request of each step, the
    /// parameter checksums).
    fn min_max(&self, value: u64) -> (u64, u64);
    /// Returns when every rank has called it.
    fn barrier(&self);
    /// Whether this is rank 0, the one that writes the run folder.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: every operation is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn broadcast(&self, _: &mut [f32]) {}
    fn sum_f32(&self, send: &[f32], recv: &mut [f32]) {
        recv.copy_from_slice(send);
    }
    fn sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        recv.copy_from_slice(send);
    }
    fn min_max(&self, value: u64) -> (u64, u64) {
        (value, value)
    }
    fn barrier(&self) {}
}
