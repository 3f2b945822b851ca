//! Lists the engine's WGSL files for the browser test that compiles every one of them with the
//! browser's own WGSL compiler (`tests/shaders.rs`): a new shader is covered without editing a list.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the engine's shaders/ folder")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    let mut out = String::from("/// Every `shaders/*.wgsl`: (file name, source).\npub const SHADER_FILES: &[(&str, &str)] = &[\n");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let abs = path.canonicalize().expect("a readable shader file");
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shader_files.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
