//! Every WGSL file of the engine compiles with the browser's WGSL compiler (Tint in Chromium),
//! which follows the WGSL grammar more strictly than naga (e.g. `a * b >> 2u` needs parentheses
//! there): a shader that only naga accepts would run natively and fail in every browser.
#![cfg(target_arch = "wasm32")]

use mask2former::{Runtime, RuntimeOptions};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

include!(concat!(env!("OUT_DIR"), "/shader_files.rs"));

/// The source as the runtime builds it: a file that says it is appended to another follows it,
/// and one that says it is followed by another precedes it.
fn assembled(name: &str, source: &str) -> String {
    let file = |base: &str| {
        SHADER_FILES
            .iter()
            .find(|(n, _)| *n == base)
            .unwrap_or_else(|| panic!("{name}: names unknown {base}"))
            .1
    };
    let follower = source
        .lines()
        .find_map(|l| l.strip_prefix("// Followed by shaders/"))
        .and_then(|l| l.split_whitespace().next())
        .map_or("", file);
    let body = match source
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// Appended to shaders/"))
        .and_then(|l| l.split_whitespace().next())
    {
        Some(base) => format!("{}{source}", file(base)),
        None => source.to_string(),
    };
    body + follower
}

#[wasm_bindgen_test]
async fn every_shader_compiles_in_the_browser() {
    let rt = Runtime::open(&RuntimeOptions::web())
        .await
        .expect("a WebGPU adapter");
    let mut failures = Vec::new();
    for (name, source) in SHADER_FILES {
        // Subgroup kernels need `enable subgroups;`, which naga does not parse yet; the engine
        // never asks a browser for subgroups (RuntimeOptions::web()), so they never run there.
        // A fragment compiles inside the files that name it.
        if source.contains("subgroupAdd") || source.starts_with("// Fragment:") {
            continue;
        }
        let source = assembled(name, source);
        let scope = rt.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let module = rt
            .device()
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        if let Some(e) = scope.pop().await {
            failures.push(format!("{name}: {e}"));
        }
        drop(module);
    }
    assert!(
        SHADER_FILES.len() > 30,
        "only {} shader files found",
        SHADER_FILES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
