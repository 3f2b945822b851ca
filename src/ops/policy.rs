//! The one place the kernel families decide how the adapter shapes their launches.
//!
//! Two separate questions, kept apart so that forcing one never breaks the other:
//! - which kernel shapes `Auto` variants pick ([`Shapes`]): loops without workgroup memory on
//!   CPU adapters, workgroup-wide kernels on GPUs; [`KernelPolicy`] (`M2F_KERNEL_POLICY`) can
//!   force either on any adapter, so the GPU variants run in the model-level tests on lavapipe;
//! - how many loop iterations one invocation may run ([`Policy::loop_budget`]): llvmpipe
//!   silently ends every loop of an invocation past [`CPU_LOOP_ITERATIONS`], so launches whose
//!   per-invocation loops grow with the input are split under it. That is a fact of the adapter
//!   and holds whatever the shapes.

use crate::runtime::{KernelPolicy, Runtime, CPU_LOOP_ITERATIONS};

/// Which family of kernel shapes `Auto` variants pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shapes {
    /// One invocation per row/segment/tile, no workgroup memory (fastest on lavapipe).
    Cpu,
    /// Workgroup-wide rows and shared-memory tiles (fastest on GPUs).
    Gpu,
}

/// How the kernels launch on one runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub shapes: Shapes,
    /// Loop iterations one invocation may run in all, where the adapter caps them (CPU
    /// adapters); `None` where it does not.
    pub loop_budget: Option<usize>,
    /// Products of at least this many FLOPs run the large CPU GEMM tiles; smaller ones the
    /// 8-row tile, whose JIT takes seconds less ([`RuntimeOptions::compile_for_speed`] lowers
    /// it: the demo training step ran 4-5% faster, docs/PERFORMANCE.md "Session 11").
    ///
    /// [`RuntimeOptions::compile_for_speed`]: crate::runtime::RuntimeOptions::compile_for_speed
    pub large_tile_flops: u64,
}

impl Policy {
    /// Whether `Auto` picks the CPU-shaped kernels.
    pub fn cpu_shapes(&self) -> bool {
        self.shapes == Shapes::Cpu
    }

    /// [`Policy::loop_budget`], or `usize::MAX` where loops are not capped.
    pub fn budget(&self) -> usize {
        self.loop_budget.unwrap_or(usize::MAX)
    }

    /// Threads one launch should have to keep the adapter busy: a few workgroups per core on
    /// CPU-shaped kernels, enough to fill a large GPU's SMs otherwise (an H100 holds 132 × 2048).
    pub fn fill_threads(&self) -> usize {
        match self.shapes {
            Shapes::Cpu => 1 << 12,
            Shapes::Gpu => 1 << 17,
        }
    }

    /// Segments of a two-pass sum of `len` terms into each of `outputs` outputs (a thread per
    /// (segment, output), then a pass over the segments): enough threads to fill the adapter,
    /// each segment at least `min_len` terms long, and every thread's loop (`per_term`
    /// iterations a term) within the loop budget. 1: one pass.
    pub fn sum_segments(
        &self,
        outputs: usize,
        len: usize,
        min_len: usize,
        per_term: usize,
    ) -> usize {
        let fill = self.fill_threads();
        let wanted = if outputs >= fill {
            1
        } else {
            fill.div_ceil(outputs.max(1))
                .min(len / min_len.max(1))
                .max(1)
        };
        // llvmpipe ends loops past its budget: a segment must fit in one thread's loop.
        let longest = (self.budget().saturating_sub(512) / per_term.max(1)).max(1);
        wanted.max(len.div_ceil(longest)).max(1)
    }
}

/// The policy of `rt`: its [`KernelPolicy`] resolved against its adapter.
pub fn policy(rt: &Runtime) -> Policy {
    let cpu_adapter = rt.caps().is_cpu;
    let shapes = match rt.kernel_policy() {
        KernelPolicy::Cpu => Shapes::Cpu,
        KernelPolicy::Gpu => Shapes::Gpu,
        KernelPolicy::Auto if cpu_adapter => Shapes::Cpu,
        KernelPolicy::Auto => Shapes::Gpu,
    };
    Policy {
        shapes,
        loop_budget: cpu_adapter.then_some(CPU_LOOP_ITERATIONS),
        large_tile_flops: if rt.compile_for_speed() {
            LARGE_TILE_FLOPS_FOR_SPEED
        } else {
            crate::ops::matmul::LARGE_MIN_FLOPS
        },
    }
}

/// [`Policy::large_tile_flops`] under [`RuntimeOptions::compile_for_speed`]: every product
/// past a few µs of work.
///
/// [`RuntimeOptions::compile_for_speed`]: crate::runtime::RuntimeOptions::compile_for_speed
pub const LARGE_TILE_FLOPS_FOR_SPEED: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeOptions;

    #[test]
    fn sum_segments_fill_the_adapter_within_the_loop_budget() {
        let gpu = Policy {
            shapes: Shapes::Gpu,
            loop_budget: None,
            large_tile_flops: 0,
        };
        let cpu = Policy {
            shapes: Shapes::Cpu,
            loop_budget: Some(CPU_LOOP_ITERATIONS),
            large_tile_flops: 0,
        };
        // A bias gradient: 96 columns over 131,072 rows.
        assert_eq!(gpu.sum_segments(96, 131_072, 64, 2), 1366);
        assert_eq!(cpu.sum_segments(96, 131_072, 64, 2), 43);
        // Enough outputs to fill the adapter alone, or too short to split.
        assert_eq!(gpu.sum_segments(1 << 17, 1000, 64, 2), 1);
        assert_eq!(cpu.sum_segments(8, 100, 64, 2), 1);
        // One output over 10^6 terms: the loop budget, not the fill, sets the count on llvmpipe.
        let n = cpu.sum_segments(4096, 1_000_000, 64, 2);
        assert_eq!(n, 31);
        assert!(1_000_000usize.div_ceil(n) * 2 <= CPU_LOOP_ITERATIONS);
    }

    /// A forced policy reaches every `Auto` choice through [`policy`], and the loop budget stays
    /// with the adapter whatever the policy.
    #[test]
    fn forced_policy_picks_the_shapes_and_keeps_the_adapter_budget() {
        let open = |kernel_policy| {
            Runtime::with_options(&RuntimeOptions {
                kernel_policy,
                ..RuntimeOptions::default()
            })
            .unwrap()
        };
        let gpu = open(KernelPolicy::Gpu);
        let cpu = open(KernelPolicy::Cpu);
        let auto = open(KernelPolicy::Auto);
        let budget = auto.caps().is_cpu.then_some(CPU_LOOP_ITERATIONS);
        for (rt, shapes) in [(&gpu, Shapes::Gpu), (&cpu, Shapes::Cpu)] {
            assert_eq!(
                policy(rt),
                Policy {
                    shapes,
                    loop_budget: budget,
                    large_tile_flops: crate::ops::matmul::LARGE_MIN_FLOPS,
                }
            );
        }
        let want = if auto.caps().is_cpu {
            Shapes::Cpu
        } else {
            Shapes::Gpu
        };
        assert_eq!(policy(&auto).shapes, want);
        use crate::ops::matmul::Variant;
        assert_eq!(Variant::Auto.resolve(&gpu), Variant::Gemm);
        assert_eq!(Variant::Auto.resolve(&cpu), Variant::RegBlockLarge);
    }
}
