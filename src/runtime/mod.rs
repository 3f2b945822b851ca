//! The tensor runtime: adapter choice and capabilities, pooled buffers, the kernel cache,
//! upload/download, and recording dispatches into one pass and one submit.
//!
//! ```no_run
//! use mask2former::runtime::Runtime;
//! let rt = Runtime::new()?; // best adapter; M2F_BACKEND / M2F_ADAPTER / M2F_KERNEL_POLICY override
//! let x = rt.upload(&[1.0, 2.0, 3.0], &[3])?;
//! assert_eq!(rt.download(&x)?, vec![1.0, 2.0, 3.0]);
//! # Ok::<(), mask2former::Error>(())
//! ```

mod arena;
mod device;
mod kernel;
mod pool;
mod readback;
mod tensor;
mod texel;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use web_time::Instant;

pub use arena::{Arena, ArenaEntry, ArenaLayout};
pub use device::{
    parse_backend, parse_kernel_policy, AdapterIndex, Capabilities, KernelPolicy, RuntimeOptions,
};
pub use kernel::{grid_1d, validate_wgsl, Dispatch, Kernel, Shader};
pub use pool::{MemoryStats, PooledBuffer};
pub use tensor::{Binding, DType, Tensor};
pub use texel::{TexelSlot, TexelView, TEXEL_ROW};

/// Loop iterations one invocation may run on llvmpipe (lavapipe), summed over all the loops
/// of the shader: past it, every loop exits silently (Mesa's `LP_MAX_TGSI_LOOP_ITERATIONS`
/// loop limiter). Kernels whose one-invocation loops scale with the input (reductions over a
/// plane, attention over all keys) choose a shape that stays under it on CPU adapters; the
/// full-size Swin-T parity run found it (GroupNorm over 131072-value groups).
///
/// Measured with `tests/runtime.rs::probe_cpu_loop_limit` (lavapipe, LLVM 15): uniform loops
/// and constant-trip loops count like divergent ones; each loop also spends one iteration on
/// its exit test (two loops of 40000 get 40000 and 25534); nested loops count every inner
/// pass; the counter is shared by the 8 lanes of a SIMD batch (the longest lane sets it) and
/// is not reset at barriers. Small constant-trip loops that NIR unrolls do not count.
pub const CPU_LOOP_ITERATIONS: usize = 65535;

use crate::error::{Error, Result};
use pool::BufferPool;

/// A device, its queue, the buffer pool and the compiled-kernel cache. Cheap to clone; safe to
/// share between threads. Several runtimes may exist in one process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    _adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    caps: Capabilities,
    features: wgpu::Features,
    kernel_policy: KernelPolicy,
    compile_for_speed: bool,
    pool: Arc<BufferPool>,
    kernels: Mutex<HashMap<kernel::KernelKey, Arc<Kernel>>>,
    texels: Mutex<texel::TexelScratch>,
    /// Validated shader modules, shared by the shader's pipelines; keyed by name and source
    /// address, so two sources under one name (generated variants, probes) stay apart.
    modules: Mutex<HashMap<(&'static str, usize), wgpu::ShaderModule>>,
    /// Every pipeline this runtime created, in order, with the time its creation took.
    compiles: Mutex<Vec<PipelineCompile>>,
    /// Errors the device reported outside error scopes. In a browser every validation error
    /// lands here (no scope can be waited for there), and a readback after one fails with it
    /// instead of returning what an invalid command left in the buffer. Natively wgpu's own
    /// handler panics first.
    device_errors: Arc<Mutex<Vec<String>>>,
    /// See [`Runtime::unused_binding`].
    unused: wgpu::Buffer,
}

/// One pipeline creation: its label (`shader::entry[constants]`) and how long
/// `create_compute_pipeline` took (naga and the driver's compile; lavapipe JITs the machine
/// code later, in the pipeline's first dispatch).
#[derive(Clone, Debug)]
pub struct PipelineCompile {
    pub label: String,
    pub time: Duration,
}

impl Runtime {
    /// Opens the best adapter, honouring `M2F_BACKEND`, `M2F_ADAPTER` and `M2F_KERNEL_POLICY`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        Self::with_options(&RuntimeOptions::from_env()?)
    }

    /// [`Runtime::open`], waiting for it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(opts: &RuntimeOptions) -> Result<Self> {
        pollster::block_on(Self::open(opts))
    }

    /// Opens the adapter `opts` selects without blocking: the way to open one in a browser,
    /// where the page's event loop must run while the adapter and device requests complete.
    pub async fn open(opts: &RuntimeOptions) -> Result<Self> {
        let o = device::open(opts).await?;
        let pool = BufferPool::new(o.device.clone());
        let unused = o.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let device_errors = Arc::new(Mutex::new(Vec::new()));
        #[cfg(target_arch = "wasm32")]
        {
            let sink = device_errors.clone();
            o.device
                .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                    sink.lock().unwrap().push(e.to_string());
                }));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                _adapter: o.adapter,
                device: o.device,
                queue: o.queue,
                info: o.info,
                caps: o.caps,
                features: o.features,
                kernel_policy: opts.kernel_policy,
                compile_for_speed: opts.compile_for_speed,
                pool,
                kernels: Mutex::new(HashMap::new()),
                texels: Mutex::new(Default::default()),
                modules: Mutex::new(HashMap::new()),
                compiles: Mutex::new(Vec::new()),
                device_errors,
                unused,
            }),
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }
    pub fn caps(&self) -> &Capabilities {
        &self.inner.caps
    }
    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }
    /// The kernel policy this runtime was opened with (`ops` resolves `Auto` from it).
    pub fn kernel_policy(&self) -> KernelPolicy {
        self.inner.kernel_policy
    }
    /// Whether this runtime was opened with [`RuntimeOptions::compile_for_speed`].
    pub fn compile_for_speed(&self) -> bool {
        self.inner.compile_for_speed
    }
    /// One line naming the adapter, backend and optional features, for logs and CLIs.
    pub fn describe(&self) -> String {
        let i = &self.inner.info;
        let c = &self.inner.caps;
        format!(
            "{} ({:?}, {:?}; f16={} subgroups={} f32-atomics={} timestamps={}; max binding {} MiB{})",
            // Browsers may withhold the name (Chromium's SwiftShader gives none).
            if i.name.is_empty() { "unnamed adapter" } else { &i.name },
            i.backend,
            i.device_type,
            c.f16,
            c.subgroups,
            c.f32_atomics,
            c.timestamps,
            c.max_storage_binding >> 20,
            match self.inner.kernel_policy {
                KernelPolicy::Auto => "",
                KernelPolicy::Cpu => "; CPU kernels forced",
                KernelPolicy::Gpu => "; GPU kernels forced",
            }
        )
    }

    // ---- kernels -------------------------------------------------------------------------

    /// The compiled pipeline for `entry` of `shader` with the given override constants (cached).
    pub fn kernel(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>> {
        let key = kernel::key(shader, entry, constants);
        if let Some(k) = self.inner.kernels.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        // Compile outside the lock: pipelines can take milliseconds and tests share runtimes.
        let t0 = Instant::now();
        let module_key = (shader.name, shader.source.as_ptr() as usize);
        let cached = self.inner.modules.lock().unwrap().get(&module_key).cloned();
        let module = match cached {
            Some(m) => m,
            None => {
                let m = kernel::module(&self.inner.device, shader)?;
                let mut modules = self.inner.modules.lock().unwrap();
                modules.entry(module_key).or_insert(m).clone()
            }
        };
        let k = Arc::new(kernel::compile(
            &self.inner.device,
            &module,
            shader,
            entry,
            constants,
        )?);
        self.inner.compiles.lock().unwrap().push(PipelineCompile {
            label: k.label.clone(),
            time: t0.elapsed(),
        });
        Ok(self
            .inner
            .kernels
            .lock()
            .unwrap()
            .entry(key)
            .or_insert(k)
            .clone())
    }

    /// The pipelines created so far, in creation order, with their creation times.
    pub fn pipeline_compiles(&self) -> Vec<PipelineCompile> {
        self.inner.compiles.lock().unwrap().clone()
    }

    /// Binds `params` (uniform, binding 0) and `storage` (bindings 1..) to `kernel`.
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: &Arc<Kernel>,
        params: &P,
        storage: &[Binding<'_>],
        workgroups: [u32; 3],
    ) -> Dispatch {
        kernel::make_dispatch(
            &self.inner.device,
            kernel,
            Some(bytemuck::bytes_of(params)),
            storage,
            workgroups,
        )
    }

    /// Like [`Runtime::dispatch`] for kernels without a parameter struct (storage from binding 0).
    pub fn dispatch_no_params(
        &self,
        kernel: &Arc<Kernel>,
        storage: &[Binding<'_>],
        workgroups: [u32; 3],
    ) -> Dispatch {
        kernel::make_dispatch(&self.inner.device, kernel, None, storage, workgroups)
    }

    /// A 1-D launch of `n` threads in workgroups of `wg` threads, split over x/y past the limit.
    pub fn grid(&self, n: u64, wg: u32) -> [u32; 3] {
        grid_1d(
            n.div_ceil(wg as u64),
            self.inner.caps.max_workgroups_per_dim,
        )
    }

    /// Records all dispatches into one compute pass and submits once (does not wait).
    pub fn run(&self, dispatches: &[Dispatch]) {
        let mut enc = self
            .inner
            .device
            .create_command_encoder(&Default::default());
        record(&mut enc, dispatches, None);
        self.inner.queue.submit([enc.finish()]);
    }

    /// Waits until all submitted work has finished (in a browser it returns at once: work
    /// completes on the page's event loop, and readbacks await it).
    pub fn sync(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    /// Runs the dispatches with a GPU timestamp around each one and returns each one's time.
    /// Needs `Capabilities::timestamps`; otherwise an `Unsupported` error.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_timed(&self, dispatches: &[Dispatch]) -> Result<Vec<Duration>> {
        if !self.inner.caps.timestamps {
            return Err(Error::Unsupported {
                op: "run_timed",
                what: "timestamp queries on this adapter".into(),
            });
        }
        let dev = &self.inner.device;
        let period = self.inner.queue.get_timestamp_period() as f64;
        let mut out = Vec::with_capacity(dispatches.len());
        // A query set holds at most 4096 queries: time the dispatches in chunks.
        for chunk in dispatches.chunks(2047) {
            let count = chunk.len() as u32 + 1;
            let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let bytes = count as u64 * 8;
            let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps.resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut enc = dev.create_command_encoder(&Default::default());
            record(&mut enc, chunk, Some(&qs));
            enc.resolve_query_set(&qs, 0..count, &resolve, 0);
            self.inner.queue.submit([enc.finish()]);
            let raw = self.read_buffer(&resolve, 0, bytes)?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            for w in ticks.windows(2) {
                out.push(Duration::from_nanos(
                    (w[1].saturating_sub(w[0]) as f64 * period) as u64,
                ));
            }
        }
        Ok(out)
    }

    // ---- memory --------------------------------------------------------------------------

    /// A small buffer for a writable binding slot the kernel will not touch in this launch (an
    /// output switched off by a flag). WebGPU forbids a writable binding that overlaps another
    /// binding of the same dispatch, so such a slot cannot borrow the real output's range.
    pub fn unused_binding(&self) -> Binding<'_> {
        Binding {
            buffer: &self.inner.unused,
            offset: 0,
            size: 256,
        }
    }

    /// An uninitialised tensor from the pool.
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = (shape.iter().product::<usize>() * dtype.size()) as u64;
        if bytes > self.inner.caps.max_buffer {
            return Err(Error::TooLarge {
                op: "empty",
                what: format!("a {dtype:?} tensor of shape {shape:?}"),
                bytes,
                limit: self.inner.caps.max_buffer,
                limit_name: "max_buffer_size",
            });
        }
        if dtype == DType::F16 && !self.inner.caps.f16 {
            return Err(Error::Unsupported {
                op: "empty",
                what: "f16 storage on this adapter".into(),
            });
        }
        Ok(Tensor::new(
            self.inner.pool.get(bytes, "tensor"),
            shape.to_vec(),
            dtype,
        ))
    }

    /// Uploads f32 data with the given shape.
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        self.upload_bytes(
            bytemuck::cast_slice(data),
            data.len(),
            shape,
            DType::F32,
            "upload",
        )
    }

    /// Uploads u32 data (indices, labels, masks) with the given shape.
    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        self.upload_bytes(
            bytemuck::cast_slice(data),
            data.len(),
            shape,
            DType::U32,
            "upload_u32",
        )
    }

    fn upload_bytes(
        &self,
        bytes: &[u8],
        len: usize,
        shape: &[usize],
        dtype: DType,
        op: &'static str,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != len {
            return Err(crate::shape_err!(
                op,
                "{len} values do not fill shape {shape:?} ({n} elements)"
            ));
        }
        let t = self.empty(shape, dtype)?;
        self.write_bytes(&t, bytes);
        Ok(t)
    }

    /// Overwrites an f32 tensor (a whole one or a view of an arena) with `data` on the queue:
    /// later submits see it.
    pub fn write(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "write",
                expected: DType::F32,
                got: t.dtype(),
            });
        }
        if data.len() != t.numel() {
            return Err(crate::shape_err!(
                "write",
                "{} values do not fill shape {:?} ({} elements)",
                data.len(),
                t.shape(),
                t.numel()
            ));
        }
        self.write_bytes(t, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Writes `bytes` at the start of `t`'s range (the caller checked they fit).
    pub(crate) fn write_bytes(&self, t: &Tensor, bytes: &[u8]) {
        debug_assert!(bytes.len() as u64 <= t.size_bytes().div_ceil(4) * 4);
        if bytes.is_empty() {
            return;
        }
        // write_buffer needs a multiple of 4 bytes; f16 data of odd length gets one pad element.
        if bytes.len().is_multiple_of(4) {
            self.inner.queue.write_buffer(t.buffer(), t.offset(), bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            self.inner
                .queue
                .write_buffer(t.buffer(), t.offset(), &padded);
        }
    }

    /// A tensor filled with `value` (f32 bit pattern for F32, the integer for U32/I32).
    pub fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = self.empty(shape, DType::F32)?;
        self.fill(&t, value)?;
        Ok(t)
    }

    /// Overwrites every element of an f32 tensor with `value` (e.g. NaN to poison outputs in tests).
    pub fn fill(&self, t: &Tensor, value: f32) -> Result<()> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "fill",
                expected: DType::F32,
                got: t.dtype(),
            });
        }
        let words = t.numel() as u64;
        if words == 0 {
            return Ok(());
        }
        let k = self.kernel(&crate::shader!("fill"), "main", &[])?;
        // Bind at most max_storage_binding bytes at a time so tensors past the limit still fill.
        let max_words = (self.inner.caps.max_storage_binding / 4) & !63;
        let mut dispatches = Vec::new();
        let mut start = 0u64;
        while start < words {
            let n = (words - start).min(max_words);
            #[repr(C)]
            #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
            struct P {
                n: u32,
                value: u32,
            }
            let p = P {
                n: n as u32,
                value: value.to_bits(),
            };
            dispatches.push(self.dispatch(
                &k,
                &p,
                &[t.binding_range(start * 4, n * 4)],
                self.grid(n, 256),
            ));
            start += n;
        }
        self.run(&dispatches);
        Ok(())
    }

    /// Device memory used by tensors (live, peak) and held by the pool.
    pub fn memory(&self) -> MemoryStats {
        self.inner.pool.stats()
    }

    /// Releases pooled buffers that no tensor uses.
    pub fn trim_pool(&self) {
        self.inner.pool.trim()
    }
}

fn record(
    enc: &mut wgpu::CommandEncoder,
    dispatches: &[Dispatch],
    timestamps: Option<&wgpu::QuerySet>,
) {
    // One compute pass, broken where a dispatch first copies into its texel views (copies are
    // encoder commands). A copy's time counts in its dispatch's timestamp interval.
    let mut i = 0;
    while i < dispatches.len() {
        let start = i;
        for copy in &dispatches[i].copies {
            texel::record_copy(enc, copy);
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        if let (Some(qs), 0) = (timestamps, start) {
            pass.write_timestamp(qs, 0);
        }
        while i < dispatches.len() && (i == start || dispatches[i].copies.is_empty()) {
            let d = &dispatches[i];
            let [x, y, z] = d.workgroups;
            if x > 0 && y > 0 && z > 0 {
                pass.set_pipeline(&d.kernel.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(x, y, z);
            }
            if let Some(qs) = timestamps {
                pass.write_timestamp(qs, i as u32 + 1);
            }
            i += 1;
        }
    }
    if dispatches.is_empty() {
        if let Some(qs) = timestamps {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.write_timestamp(qs, 0);
        }
    }
}
