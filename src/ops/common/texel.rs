//! Texel forms of buffer kernels: the same WGSL with some `array<vec4<f32>>` storage buffers
//! read through texel views (`runtime::TexelView`) instead, for CPU adapters, where a buffer
//! load that differs between SIMD lanes runs lane by lane (see `runtime/texel.rs`).
//!
//! A kernel opts in by reading each such buffer `NAME` only through a function spelled
//! `fn ld_NAME(i: u32) -> vec4<f32> { return NAME[i]; }`; the texel form rebinds `NAME` as a
//! read-only `rgba32float` storage texture at the same binding and rewrites that body.

use std::sync::OnceLock;

use crate::error::Result;
use crate::runtime::{Dispatch, Runtime, Shader, Tensor, TexelSlot, TexelView, TEXEL_ROW};

/// Whether kernels use their texel forms on `rt`: CPU adapters, under the CPU kernel policy.
pub(crate) fn preferred(rt: &Runtime) -> bool {
    rt.info().device_type == wgpu::DeviceType::Cpu && crate::ops::policy::policy(rt).cpu_shapes()
}

/// Texel views of two operands (slots A and B), or `None` where they cannot be made (the buffer
/// kernel runs instead).
pub(crate) fn views(rt: &Runtime, a: &Tensor, b: &Tensor) -> Option<(TexelView, TexelView)> {
    let a = rt.texel_view(TexelSlot::A, a.binding()).ok()?;
    let b = rt.texel_view(TexelSlot::B, b.binding()).ok()?;
    Some((a, b))
}

/// The texel form `name` of `base` reading `names` from texel views, its source made once into
/// `cell` (one static cell per form: the runtime caches modules by name and source address).
pub(crate) fn shader(
    cell: &'static OnceLock<String>,
    name: &'static str,
    base: Shader,
    names: &[&str],
) -> Shader {
    Shader {
        name,
        source: cell.get_or_init(|| texel_source(base.source, names)),
    }
}

/// A texel form of a shader, made on first use: its name and the two buffers it reads from
/// texel views (slots A and B).
pub(crate) struct Form {
    pub(crate) name: &'static str,
    pub(crate) names: [&'static str; 2],
    pub(crate) source: OnceLock<String>,
}

impl Form {
    pub(crate) const fn new(name: &'static str, names: [&'static str; 2]) -> Self {
        Self {
            name,
            names,
            source: OnceLock::new(),
        }
    }
}

/// A dispatch of `entry` with `tensors` at bindings 1, 2, …: where texel forms are preferred
/// and the views can be made, `form` of `base` reading `tensors[pair[0]]` and
/// `tensors[pair[1]]` from views; else `base` itself.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch<P: bytemuck::Pod>(
    rt: &Runtime,
    base: Shader,
    form: &'static Form,
    entry: &str,
    constants: &[(&str, f64)],
    params: &P,
    tensors: &[&Tensor],
    pair: [usize; 2],
    grid: [u32; 3],
) -> Result<Dispatch> {
    let [a, b] = pair;
    let v = match preferred(rt) {
        true => views(rt, tensors[a], tensors[b]),
        false => None,
    };
    let Some((va, vb)) = v else {
        let kernel = rt.kernel(&base, entry, constants)?;
        let bindings: Vec<_> = tensors.iter().map(|t| t.binding()).collect();
        return Ok(rt.dispatch(&kernel, params, &bindings, grid));
    };
    let kernel = rt.kernel(
        &shader(&form.source, form.name, base, &form.names),
        entry,
        constants,
    )?;
    let storage: Vec<_> = (tensors.iter().enumerate())
        .filter(|(i, _)| *i != a && *i != b)
        .map(|(i, t)| (i as u32 + 1, t.binding()))
        .collect();
    let texels = vec![(a as u32 + 1, va), (b as u32 + 1, vb)];
    Ok(rt.dispatch_texels(&kernel, params, &storage, texels, grid))
}

/// `base` with each buffer in `names` read from a texel view. Panics if `base` does not spell a
/// buffer as described above (a shader bug the texel-form tests catch).
pub(crate) fn texel_source(base: &str, names: &[&str]) -> String {
    let shift = TEXEL_ROW.trailing_zeros();
    let mut src = base.to_string();
    for name in names {
        let decl = format!("var<storage, read> {name}: array<vec4<f32>>;");
        let body = format!("return {name}[i];");
        assert!(
            src.matches(&decl).count() == 1 && src.matches(&body).count() == 1,
            "texel_source: `{name}` is not declared and read as texel_source expects"
        );
        src = src.replace(
            &decl,
            &format!("var {name}: texture_storage_2d<rgba32float, read>;"),
        );
        src = src.replace(
            &body,
            &format!(
                "return textureLoad({name}, vec2<u32>(i & {}u, i >> {shift}u));",
                TEXEL_ROW - 1
            ),
        );
    }
    src
}

#[cfg(test)]
mod tests {
    /// The texel forms the engine builds are valid WGSL, and a misspelt buffer is refused.
    #[test]
    fn texel_sources_validate() {
        let base = crate::shader!("masked_attention");
        let src = super::texel_source(base.source, &["k", "v"]);
        assert!(src.contains("var k: texture_storage_2d<rgba32float, read>;"));
        crate::runtime::validate_wgsl("masked_attention+texel", &src).unwrap();
        let base = crate::shader!("window_attention");
        let src = super::texel_source(base.source, &["k", "v"]);
        crate::runtime::validate_wgsl("window_attention+texel", &src).unwrap();
        let base = crate::shader!("deform_attn");
        let src = super::texel_source(base.source, &["value4"]);
        crate::runtime::validate_wgsl("deform_attn+texel", &src).unwrap();
        let base = crate::shader!("conv2d_im2col");
        for name in ["x4", "dcol4"] {
            let src = super::texel_source(base.source, &[name]);
            crate::runtime::validate_wgsl("conv2d_im2col+texel", &src).unwrap();
        }
        let masked = crate::shader!("masked_attention_backward");
        let window = crate::shader!("window_attention_backward");
        for (base, names) in [
            (masked, ["k", "v"]),
            (masked, ["q", "dout"]),
            (window, ["k", "v"]),
            (window, ["kq", "kdout"]),
        ] {
            let src = super::texel_source(base.source, &names);
            crate::runtime::validate_wgsl(base.name, &src).unwrap();
        }
        let bad = std::panic::catch_unwind(|| super::texel_source(base.source, &["q"]));
        assert!(bad.is_err(), "q is read directly, not through ld_q");
    }
}
