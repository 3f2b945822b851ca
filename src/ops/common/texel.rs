//! Texel forms of buffer kernels: the same WGSL with some `array<vec4<f32>>` storage buffers
//! read through texel views (`runtime::TexelView`) instead, for CPU adapters, where a buffer
//! load that differs between SIMD lanes runs lane by lane (see `runtime/texel.rs`).
//!
//! A kernel opts in by reading each such buffer `NAME` only through a function spelled
//! `fn ld_NAME(i: u32) -> vec4<f32> { return NAME[i]; }`; the texel form rebinds `NAME` as a
//! read-only `rgba32float` storage texture at the same binding and rewrites that body.

use crate::runtime::{Runtime, TEXEL_ROW};

/// Whether kernels use their texel forms on `rt`: CPU adapters, under the CPU kernel policy.
pub(crate) fn preferred(rt: &Runtime) -> bool {
    rt.info().device_type == wgpu::DeviceType::Cpu && crate::ops::policy::policy(rt).cpu_shapes()
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
        let bad = std::panic::catch_unwind(|| super::texel_source(base.source, &["q"]));
        assert!(bad.is_err(), "q is read directly, not through ld_q");
    }
}
