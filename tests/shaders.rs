//! Every `shaders/*.wgsl` parses and validates with naga, so a broken shader fails even on a
//! machine with no adapter.

#[test]
fn every_shader_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Err(e) = mask2former::runtime::validate_wgsl(&name, &source) {
            failures.push(e.to_string());
        }
        count += 1;
    }
    assert!(count > 0, "no shaders found in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
