//! WGSL kernels: the shader registry, the compiled-pipeline cache and recorded dispatches.
//!
//! Binding convention for every kernel in `shaders/`: group 0; when the kernel takes parameters
//! they are a uniform struct at binding 0 and the storage buffers follow at bindings 1, 2, …
//! in the order the launcher passes them; a kernel without parameters starts its storage
//! buffers at binding 0. Kernels that read texel views (`texel.rs`) are bound by explicit
//! binding numbers instead. Variants of one shader differ by WGSL `override` constants.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::tensor::Binding;
use super::texel::{TexelCopy, TexelView};
use crate::error::{Error, Result};

/// A WGSL source file from `shaders/`.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// `shader!("matmul")` embeds `shaders/matmul.wgsl`; `shader!("name" = "a", "b", …)` embeds
/// `shaders/a.wgsl`, `shaders/b.wgsl`, … one after the other as one source named `name` (a file
/// appended to a shared one, or followed by a shared fragment).
#[macro_export]
macro_rules! shader {
    ($name:literal = $($part:literal),+ $(,)?) => {
        $crate::runtime::Shader {
            name: $name,
            source: concat!($(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $part,
                ".wgsl"
            ))),+),
        }
    };
    ($name:literal) => {
        $crate::runtime::Shader {
            name: $name,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $name,
                ".wgsl"
            )),
        }
    };
}

/// A compiled compute pipeline for one shader entry point and one set of override constants.
pub struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) label: String,
}

impl Kernel {
    pub fn label(&self) -> &str {
        &self.label
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    shader: &'static str,
    entry: String,
    constants: Vec<(String, u64)>,
}

/// One recorded kernel launch: pipeline, bound resources, and workgroup count.
///
/// Bind groups are created when the dispatch is made, so a plan can record the same
/// dispatches into many command buffers without re-creating anything.
pub struct Dispatch {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: [u32; 3],
    /// Texel views this dispatch reads, filled just before it runs.
    pub(crate) copies: Vec<TexelCopy>,
}

impl Dispatch {
    pub fn label(&self) -> &str {
        &self.kernel.label
    }
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
}

/// Validates WGSL with naga, with every capability on (the adapter decides which kernels run).
pub fn validate_wgsl(name: &str, source: &str) -> Result<naga::Module> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| Error::Shader {
        name: name.into(),
        entry: "*".into(),
        message: e.emit_to_string(source),
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        name: name.into(),
        entry: "*".into(),
        message: e.emit_to_string(source),
    })?;
    Ok(module)
}

pub(crate) fn key(shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> KernelKey {
    KernelKey {
        shader: shader.name,
        entry: entry.to_string(),
        constants: constants
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_bits()))
            .collect(),
    }
}

/// Validates `shader` with naga and creates its module, once per runtime and shader: the
/// module is shared by every pipeline of the shader (parsing `matmul.wgsl` takes a tenth of a
/// second on lavapipe's machines, and a cold start creates several of its pipelines).
pub(crate) fn module(device: &wgpu::Device, shader: &Shader) -> Result<wgpu::ShaderModule> {
    // naga first: its messages point at the WGSL line, and a bad shader must not reach the
    // device's uncaptured-error handler (which panics by default).
    validate_wgsl(shader.name, shader.source)?;
    let (module, error) = validated(device, || {
        device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        })
    });
    if let Some(err) = error {
        return Err(Error::Shader {
            name: shader.name.into(),
            entry: "*".into(),
            message: err.to_string(),
        });
    }
    Ok(module)
}

/// Runs `create` and returns the validation error it raised. Natively inside an error scope,
/// waited for. In a browser the scope's answer comes on the page's event loop, after this
/// returns, so no scope is pushed there: an error reaches the device's uncaptured-error
/// handler, which panics into the console (and the native tests run the same kernels under
/// the browser's limits, `RuntimeOptions::web`).
fn validated<T>(device: &wgpu::Device, create: impl FnOnce() -> T) -> (T, Option<wgpu::Error>) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let made = create();
        (made, pollster::block_on(scope.pop()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = device;
        (create(), None)
    }
}

pub(crate) fn compile(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    shader: &Shader,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Kernel> {
    let label = if constants.is_empty() {
        format!("{}::{entry}", shader.name)
    } else {
        let c: Vec<String> = constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}::{entry}[{}]", shader.name, c.join(","))
    };
    let (pipeline, error) = validated(device, || {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    });
    if let Some(err) = error {
        return Err(Error::Shader {
            name: shader.name.into(),
            entry: entry.into(),
            message: err.to_string(),
        });
    }
    Ok(Kernel { pipeline, label })
}

/// What one binding slot holds.
pub(crate) enum Bound<'a> {
    Buffer(Binding<'a>),
    Texel(TexelView),
}

/// A dispatch with `params` (uniform, binding 0, when given) and `storage` at bindings 1, 2, …
/// (0, 1, … without params).
pub(crate) fn make_dispatch(
    device: &wgpu::Device,
    kernel: &Arc<Kernel>,
    params: Option<&[u8]>,
    storage: &[Binding<'_>],
    workgroups: [u32; 3],
) -> Dispatch {
    let first = params.is_some() as u32;
    let entries = storage
        .iter()
        .enumerate()
        .map(|(i, b)| (first + i as u32, Bound::Buffer(*b)))
        .collect();
    make_dispatch_at(device, kernel, params, entries, workgroups)
}

/// A dispatch with `params` at binding 0 (when given) and each resource at its own binding.
pub(crate) fn make_dispatch_at(
    device: &wgpu::Device,
    kernel: &Arc<Kernel>,
    params: Option<&[u8]>,
    bound: Vec<(u32, Bound<'_>)>,
    workgroups: [u32; 3],
) -> Dispatch {
    let layout = kernel.pipeline.get_bind_group_layout(0);
    // Uniform buffers are padded to 16 bytes: WGSL rounds uniform struct sizes up to that.
    let uniform = params.map(|bytes| {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &padded,
            usage: wgpu::BufferUsages::UNIFORM,
        })
    });
    let mut entries = Vec::with_capacity(bound.len() + 1);
    if let Some(u) = &uniform {
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: u.as_entire_binding(),
        });
    }
    for (binding, b) in &bound {
        let resource = match b {
            Bound::Buffer(b) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: b.buffer,
                offset: b.offset,
                size: wgpu::BufferSize::new(b.size),
            }),
            Bound::Texel(t) => wgpu::BindingResource::TextureView(&t.view),
        };
        entries.push(wgpu::BindGroupEntry {
            binding: *binding,
            resource,
        });
    }
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&kernel.label),
        layout: &layout,
        entries: &entries,
    });
    let copies = bound
        .into_iter()
        .filter_map(|(_, b)| match b {
            Bound::Texel(t) => Some(t.copy),
            Bound::Buffer(_) => None,
        })
        .collect();
    Dispatch {
        kernel: kernel.clone(),
        bind_group,
        workgroups,
        copies,
    }
}

/// Splits a 1-D workgroup count over x and y so that neither exceeds `max_per_dim`.
/// Kernels recover the linear index as `wid.x + wid.y * num_workgroups.x` and return past the end.
pub fn grid_1d(workgroups: u64, max_per_dim: u32) -> [u32; 3] {
    let max = max_per_dim as u64;
    if workgroups <= max {
        return [workgroups.max(1) as u32, 1, 1];
    }
    let y = workgroups.div_ceil(max);
    let x = workgroups.div_ceil(y);
    [x as u32, y as u32, 1]
}

#[cfg(test)]
mod tests {
    use super::grid_1d;

    #[test]
    fn grid_covers_all_workgroups() {
        for n in [0u64, 1, 65535, 65536, 1 << 20, 4_000_000_001] {
            let [x, y, z] = grid_1d(n, 65535);
            assert!(x <= 65535 && y <= 65535 && z == 1);
            assert!(x as u64 * y as u64 >= n);
        }
    }
}
