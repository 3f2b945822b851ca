//! Adapter choice, device creation and the capabilities the kernels choose variants from.

use crate::error::{Error, Result};

/// Optional adapter features the engine uses where present and works without.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `enable f16;` in WGSL (storage and arithmetic).
    pub f16: bool,
    /// Subgroup operations (size in `subgroup_size`).
    pub subgroups: bool,
    /// `atomic<f32>` add on storage buffers (Vulkan/Metal; absent on DX12 and GL).
    pub f32_atomics: bool,
    /// Timestamp queries inside compute passes.
    pub timestamps: bool,
    /// CPU (software) adapter such as lavapipe: kernels without workgroup memory win there.
    pub is_cpu: bool,
    /// Subgroup size range reported by the adapter.
    pub subgroup_size: (u32, u32),
    /// Largest storage-buffer binding in bytes (128 MiB on lavapipe).
    pub max_storage_binding: u64,
    /// Largest buffer in bytes.
    pub max_buffer: u64,
    /// Largest workgroup count along one dispatch dimension.
    pub max_workgroups_per_dim: u32,
    /// Largest number of invocations in one workgroup.
    pub max_invocations_per_workgroup: u32,
    /// Workgroup memory in bytes.
    pub max_workgroup_storage: u32,
    /// Alignment of storage-buffer binding offsets in bytes.
    pub storage_offset_alignment: u32,
    /// Storage buffers one kernel may bind (8 in WebGPU's portable limits).
    pub max_storage_buffers_per_stage: u32,
}

/// Which kernel shapes the `Auto` variants of the kernel families choose (`M2F_KERNEL_POLICY`).
///
/// `Auto` picks from the adapter: loops without workgroup memory on CPU adapters (lavapipe),
/// workgroup-wide kernels on GPUs. `Gpu` and `Cpu` force one choice on any adapter: CI runs the
/// model-level tests with `Gpu` on lavapipe so the GPU variants are tested there too. Forcing
/// never drops the launch splits that keep CPU adapters under their loop limit
/// ([`crate::runtime::CPU_LOOP_ITERATIONS`]): those depend on the adapter, not on the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelPolicy {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// Parses a kernel policy as used by `M2F_KERNEL_POLICY` (`auto`, `cpu`, `gpu`; empty = auto).
pub fn parse_kernel_policy(value: &str) -> Result<KernelPolicy> {
    Ok(match value.trim().to_ascii_lowercase().as_str() {
        "auto" | "" => KernelPolicy::Auto,
        "cpu" => KernelPolicy::Cpu,
        "gpu" => KernelPolicy::Gpu,
        _ => {
            return Err(Error::Config {
                var: "M2F_KERNEL_POLICY",
                value: value.to_string(),
                reason: "expected one of gpu, cpu, auto".into(),
            })
        }
    })
}

/// How to choose the adapter, which optional features to allow and which kernel shapes to run.
///
/// `Default` reads nothing from the environment; [`RuntimeOptions::from_env`] honours
/// `M2F_BACKEND` (vulkan, metal, dx12, gl), `M2F_ADAPTER` (a substring of the adapter name) and
/// `M2F_KERNEL_POLICY` (gpu, cpu, auto).
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Backends to search; `None` means all that this build has.
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name to select.
    pub adapter_name: Option<String>,
    /// Which of the matching adapters (in preference order) to take; `None`: the first.
    pub adapter_index: Option<AdapterIndex>,
    /// Allow each optional feature when the adapter has it (turn off to test portable paths).
    pub allow_f16: bool,
    pub allow_subgroups: bool,
    pub allow_f32_atomics: bool,
    pub allow_timestamps: bool,
    /// Which kernel shapes `Auto` variants choose (default: from the adapter).
    pub kernel_policy: KernelPolicy,
    /// Let `Auto` variants take their fastest kernels even where those compile slowly: on
    /// CPU adapters, the large GEMM tiles for small products too (lavapipe JITs them for ~20 s
    /// on a machine's first run; Mesa's shader cache keeps them). `train` sets it, since a
    /// training run repays the compile; inference keeps its fast first run.
    pub compile_for_speed: bool,
    /// Device limits to ask for (capped at the adapter's); `None`: all the adapter has.
    pub limits: Option<wgpu::Limits>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            backends: None,
            adapter_name: None,
            adapter_index: None,
            allow_f16: true,
            allow_subgroups: true,
            allow_f32_atomics: true,
            allow_timestamps: true,
            kernel_policy: KernelPolicy::Auto,
            compile_for_speed: false,
            limits: None,
        }
    }
}

impl RuntimeOptions {
    /// Defaults, overridden by `M2F_BACKEND`, `M2F_ADAPTER` and `M2F_KERNEL_POLICY` when set.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`RuntimeOptions::from_env`], reading each variable through `var` (for tests and
    /// for callers with their own configuration source).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut opts = Self::default();
        if let Some(value) = var("M2F_BACKEND") {
            opts.backends = Some(parse_backend(&value)?);
        }
        if let Some(value) = var("M2F_ADAPTER") {
            if !value.is_empty() {
                opts.adapter_name = Some(value);
            }
        }
        if let Some(value) = var("M2F_KERNEL_POLICY") {
            opts.kernel_policy = parse_kernel_policy(&value)?;
        }
        if let Some(value) = var("M2F_ADAPTER_INDEX").filter(|v| !v.is_empty()) {
            let i = value.trim().parse().map_err(|_| Error::Config {
                var: "M2F_ADAPTER_INDEX",
                value: value.clone(),
                reason: "expected a non-negative integer (0: the first matching adapter)".into(),
            })?;
            opts.adapter_index = Some(AdapterIndex::Exact(i));
        }
        Ok(opts)
    }

    /// Only features every backend has: no f16, subgroups, float atomics or timestamps.
    pub fn portable(mut self) -> Self {
        self.allow_f16 = false;
        self.allow_subgroups = false;
        self.allow_f32_atomics = false;
        self.allow_timestamps = false;
        self
    }

    /// What a web page can count on in any browser with WebGPU: [`RuntimeOptions::portable`]
    /// features and WebGPU's default limits (8 storage buffers per kernel, 128 MiB bindings,
    /// 256 MiB buffers, 16 KiB workgroup memory). The browser build opens its runtime with
    /// these; native tests open lavapipe with them to check the kernels fit.
    pub fn web() -> Self {
        Self {
            limits: Some(wgpu::Limits::default()),
            ..Self::default().portable()
        }
    }
}

/// Which of the adapters matching `M2F_BACKEND` / `M2F_ADAPTER` to open, counted in preference
/// order (GPUs first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterIndex {
    /// This one (`M2F_ADAPTER_INDEX`); fewer matching adapters is an error.
    Exact(usize),
    /// A data-parallel rank's node-local rank, counted among the adapters of the best kind
    /// (device type and API): wraps around when the node's ranks outnumber them (they then
    /// share them).
    Rank(usize),
}

/// Parses a backend name as used by `M2F_BACKEND`.
pub fn parse_backend(value: &str) -> Result<wgpu::Backends> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" | "mtl" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        "all" | "" => wgpu::Backends::all(),
        _ => {
            return Err(Error::Config {
                var: "M2F_BACKEND",
                value: value.to_string(),
                reason: "expected one of vulkan, metal, dx12, gl, all".into(),
            })
        }
    })
}

pub(crate) struct Opened {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub caps: Capabilities,
    pub features: wgpu::Features,
}

/// Rank adapters: real GPUs first (discrete, then integrated), then virtual, then CPU; Vulkan
/// before GL on the same hardware because GL lacks f16, subgroups and float atomics.
fn rank(info: &wgpu::AdapterInfo) -> (u32, u32) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, backend)
}

pub(crate) async fn open(opts: &RuntimeOptions) -> Result<Opened> {
    // Over ~80 lines: adapter choice, feature negotiation, device request and the capability
    // record, in order.
    let backends = opts.backends.unwrap_or(wgpu::Backends::all());
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let mut adapters = instance.enumerate_adapters(backends).await;
    if let Some(name) = &opts.adapter_name {
        let needle = name.to_ascii_lowercase();
        adapters.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&needle));
    }
    adapters.sort_by_key(|a| rank(&a.get_info()));
    let skip = match opts.adapter_index {
        None => 0,
        Some(AdapterIndex::Rank(r)) => {
            // Ranks share out the adapters of the best kind (the discrete Vulkan GPUs, say), not
            // a second API to the same device (lavapipe's Vulkan and llvmpipe's GL).
            let best = adapters.first().map(|a| rank(&a.get_info()));
            let same = adapters
                .iter()
                .take_while(|a| Some(rank(&a.get_info())) == best)
                .count();
            r % same.max(1)
        }
        Some(AdapterIndex::Exact(i)) if i < adapters.len().max(1) => i,
        Some(AdapterIndex::Exact(i)) => {
            return Err(Error::Config {
                var: "M2F_ADAPTER_INDEX",
                value: i.to_string(),
                reason: format!(
                    "only {} adapter(s) match the backend and name filters",
                    adapters.len()
                ),
            })
        }
    };
    let adapter = adapters
        .into_iter()
        .nth(skip)
        .ok_or_else(|| Error::NoAdapter {
            tried: format!("{backends:?}"),
            filter: opts
                .adapter_name
                .as_ref()
                .map(|n| format!(", name containing `{n}`"))
                .unwrap_or_default(),
        })?;
    let info = adapter.get_info();
    let available = adapter.features();
    let limits = match &opts.limits {
        // What the caller asks for, capped at what the adapter has.
        Some(wanted) => wanted.clone().or_worse_values_from(&adapter.limits()),
        None => adapter.limits(),
    };

    // Ask for exactly the optional features we use and that are allowed.
    let mut features = wgpu::Features::empty();
    let mut want = |flag: wgpu::Features, allowed: bool| {
        let on = allowed && available.contains(flag);
        if on {
            features |= flag;
        }
        on
    };
    let f16 = want(wgpu::Features::SHADER_F16, opts.allow_f16);
    let subgroups = want(wgpu::Features::SUBGROUP, opts.allow_subgroups);
    let f32_atomics = want(
        wgpu::Features::SHADER_FLOAT32_ATOMIC,
        opts.allow_f32_atomics,
    );
    let timestamps = want(wgpu::Features::TIMESTAMP_QUERY, opts.allow_timestamps)
        && want(
            wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
            opts.allow_timestamps,
        );
    if !timestamps {
        features.remove(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        );
    }

    // The adapter's own limits unless asked otherwise: wgpu's defaults cap buffers at 256 MiB
    // and workgroups at 256 threads.
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("mask2former"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| Error::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;

    let caps = Capabilities {
        f16,
        subgroups,
        f32_atomics,
        timestamps,
        is_cpu: info.device_type == wgpu::DeviceType::Cpu,
        subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
        max_storage_binding: limits.max_storage_buffer_binding_size as u64,
        max_buffer: limits.max_buffer_size,
        max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
        max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        storage_offset_alignment: limits.min_storage_buffer_offset_alignment,
        max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
    };
    Ok(Opened {
        adapter,
        device,
        queue,
        info,
        caps,
        features,
    })
}
