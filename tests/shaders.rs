//! Every `shaders/*.wgsl` parses and validates with naga, so a broken shader fails even on a
//! machine with no adapter.

/// Every `shaders/*.wgsl` as the runtime builds it, by file name: a file that says it is appended
/// to another follows that one, and one that says it is followed by another precedes it. A
/// fragment (first line `// Fragment:`) is checked inside the files that name it.
fn shader_files() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    paths.sort();
    let files: Vec<_> = paths
        .into_iter()
        .map(|path| {
            let mut source = std::fs::read_to_string(&path).unwrap();
            if let Some(base) = source
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("// Appended to shaders/"))
                .and_then(|l| l.split_whitespace().next())
            {
                source = std::fs::read_to_string(dir.join(base)).unwrap() + &source;
            }
            let follower = source
                .lines()
                .find_map(|l| l.strip_prefix("// Followed by shaders/"))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_string);
            if let Some(next) = follower {
                source += &std::fs::read_to_string(dir.join(next)).unwrap();
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            (name, source)
        })
        .collect();
    let files: Vec<_> = files
        .into_iter()
        .filter(|(_, source)| !source.starts_with("// Fragment:"))
        .collect();
    assert!(!files.is_empty(), "no shaders found in {}", dir.display());
    files
}

#[test]
fn every_shader_validates_with_naga() {
    let failures: Vec<String> = shader_files()
        .iter()
        .filter_map(|(name, source)| mask2former::runtime::validate_wgsl(name, source).err())
        .map(|e| e.to_string())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The native-f32-atomic backward shaders are spliced together at run time and only compiled on
/// adapters with SHADER_FLOAT32_ATOMIC (not lavapipe): validate them here so a bad splice fails
/// on every machine.
#[test]
fn run_time_spliced_shaders_validate_with_naga() {
    let shaders = mask2former::ops::generated_shaders();
    assert!(!shaders.is_empty());
    for s in shaders {
        assert!(
            s.source.contains("atomic<f32>"),
            "{}: the splice left no native atomic",
            s.name
        );
        if let Err(e) = mask2former::runtime::validate_wgsl(s.name, s.source) {
            panic!("{e}");
        }
    }
}

/// The generated section of `shaders/matmul.wgsl` is what `src/ops/matmul/gen_regblock.py`
/// writes now, so nobody edits the output by hand or changes the generator without re-running it.
#[test]
fn matmul_generated_section_matches_its_generator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = match std::process::Command::new("python3")
        .arg(root.join("src/ops/matmul/gen_regblock.py"))
        .arg("--print")
        .current_dir(root)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping matmul_generated_section_matches_its_generator: no python3 ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "gen_regblock.py --print failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let shader = std::fs::read_to_string(root.join("shaders/matmul.wgsl")).unwrap();
    let begin = "// BEGIN GENERATED regblock (src/ops/matmul/gen_regblock.py)\n";
    let end = "// END GENERATED regblock\n";
    let (Some(b), Some(e)) = (shader.find(begin), shader.find(end)) else {
        panic!("shaders/matmul.wgsl: generated-section markers not found");
    };
    let section = &shader[b + begin.len()..e];
    if section != generated {
        let line = section
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(section.lines().count().min(generated.lines().count()));
        panic!(
            "shaders/matmul.wgsl differs from gen_regblock.py's output at generated line {} \
             (re-run python3 src/ops/matmul/gen_regblock.py)",
            line + 1
        );
    }
}

/// `shaders/matmul_texel.wgsl`, `matmul_texel_wide.wgsl` and `matmul_texel8.wgsl` are what
/// `src/ops/matmul/gen_texel.py` writes now.
#[test]
fn matmul_texel_matches_its_generator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = match std::process::Command::new("python3")
        .arg(root.join("src/ops/matmul/gen_texel.py"))
        .arg("--print")
        .current_dir(root)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping matmul_texel_matches_its_generator: no python3 ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "gen_texel.py --print failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shader = [
        "matmul_texel.wgsl",
        "matmul_texel_wide.wgsl",
        "matmul_texel8.wgsl",
    ]
    .map(|f| std::fs::read_to_string(root.join("shaders").join(f)).unwrap())
    .concat();
    assert!(
        shader == String::from_utf8(out.stdout).unwrap(),
        "shaders/matmul_texel*.wgsl differ from gen_texel.py's output \
         (re-run python3 src/ops/matmul/gen_texel.py)"
    );
}

/// Storage buffers each entry point binds, against the 8 that WebGPU guarantees per stage (what
/// browsers commonly give). Every kernel of the inference path fits (the browser test runs the
/// demo model; `web/tests/demo.rs` runs it natively under `RuntimeOptions::web()` too); the
/// entries listed here, all training backward passes, do not, so training could not run in a
/// browser as written. A new kernel over the limit fails here until it is listed (and the README
/// says so) or split.
#[test]
fn entry_points_over_the_webgpu_storage_buffer_limit_are_known() {
    const WEBGPU_STORAGE_BUFFERS: usize = 8;
    const KNOWN_OVER: &[&str] = &[
        "masked_attention_backward.wgsl::bwd_dq_split (10)",
        "masked_attention_backward.wgsl::bwd_kv (11)",
        "window_attention_backward.wgsl::bwd_query (11)",
    ];
    let mut over = Vec::new();
    for (name, source) in shader_files() {
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap();
        for (i, ep) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let storage = module
                .global_variables
                .iter()
                .filter(|(h, g)| {
                    matches!(g.space, naga::AddressSpace::Storage { .. }) && !uses[*h].is_empty()
                })
                .count();
            if storage > WEBGPU_STORAGE_BUFFERS {
                over.push(format!("{name}::{} ({storage})", ep.name));
            }
        }
    }
    assert_eq!(
        over, KNOWN_OVER,
        "entry points binding more than {WEBGPU_STORAGE_BUFFERS} storage buffers"
    );
}
