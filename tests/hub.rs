//! Models by Hub id against a local server in the Hub's URL layout (`/api/models/{repo}/revision/
//! {rev}` listing, `/{repo}/resolve/{rev}/{file}` with ranges and the `x-repo-commit`/`etag`
//! headers `hf-hub` reads), serving the tiny transformers fixture: the first run downloads into
//! the Hugging Face cache layout, later runs work offline from it, and a missing file, a dropped
//! connection, a short body or a damaged cached file give errors naming repo, revision and file
//! and leave no partial file in the cache.

mod hub_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hub_common::{closed_endpoint, fixture, temp_cache, Fault, HubServer, FILES, REPO, SHA};
use mask2former::hub::{fetch, HubId, HubOptions};

fn options(endpoint: &str, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: endpoint.to_owned(),
        cache: cache.to_owned(),
        token: None,
        offline: false,
        progress: false,
    }
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--test-org--tiny-m2f")
}

/// Every file under `dir` (following no links), as paths relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// No partial download anywhere, and no snapshot entry for `file`.
fn assert_nothing_partial(cache: &Path, file: &str) {
    let files = tree(cache);
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".part") || f.ends_with(&format!("snapshots/{SHA}/{file}"))),
        "{files:?}"
    );
}

fn id() -> HubId {
    HubId::parse(REPO).unwrap()
}

fn segment(endpoint: &str, cache: &Path, out: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segment"));
    c.env("XDG_RUNTIME_DIR", "/tmp")
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        // ureq 2 ignores NO_PROXY: a proxy from the environment would take 127.0.0.1 requests
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .args(["--model", REPO, "--object-mask-threshold", "0.2", "--out"])
        .arg(out)
        .arg(fixture().join("image_0.png"));
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn segment_downloads_once_then_runs_offline_from_the_cache() {
    let cache = temp_cache("segment");
    let out = cache.with_extension("out");
    let server = HubServer::start(Fault::None);
    let token = [("HF_TOKEN", "hf_test_token")];
    let first = segment(&server.endpoint, &cache, &out.join("1"), &token);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let auth = server.auth.lock().unwrap().clone();
    assert!(
        auth.len() >= 7,
        "a listing, then a probe and a download per file: {auth:?}"
    );
    assert!(
        auth.iter()
            .all(|a| a.as_deref() == Some("Bearer hf_test_token")),
        "{auth:?}"
    );
    assert!(
        stderr.contains(&format!("downloading {REPO}@main model.safetensors")),
        "{stderr}"
    );

    // transformers' layout: refs/main → commit, snapshot entries linking to blobs
    let repo = repo_dir(&cache);
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        SHA
    );
    for f in FILES {
        let entry = repo.join("snapshots").join(SHA).join(f);
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(fixture().join(f)).unwrap(),
            "{f}"
        );
        #[cfg(unix)]
        assert!(
            std::fs::read_link(&entry)
                .unwrap()
                .starts_with("../../blobs"),
            "{f}"
        );
    }
    assert!(!tree(&cache).iter().any(|f| f.ends_with(".part")));

    drop(server);
    let offline = [("HF_HUB_OFFLINE", "1")];
    let second = segment(&closed_endpoint(), &cache, &out.join("2"), &offline);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(!stderr.contains("downloading"), "{stderr}");
    let json = |run: &str| std::fs::read_to_string(out.join(run).join("image_0.json")).unwrap();
    assert_eq!(json("1"), json("2"), "same model, same result");

    // online but unreachable: the cached snapshot is used, with a warning
    let third = segment(&closed_endpoint(), &cache, &out.join("3"), &[]);
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(
        third.status.success() && stderr.contains("cannot reach"),
        "{stderr}"
    );

    // evaluate takes the same ids (a one-image semantic set in the tiny model's 5-label space:
    // evaluate refuses a dataset whose categories differ from the model's labels)
    let sem = out.join("sem");
    std::fs::create_dir_all(sem.join("images")).unwrap();
    std::fs::create_dir_all(sem.join("labels")).unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 30]))
        .save(sem.join("images/field.png"))
        .unwrap();
    image::GrayImage::from_pixel(64, 64, image::Luma([1]))
        .save(sem.join("labels/field.png"))
        .unwrap();
    let eval = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .arg("--data")
        .arg(format!("semantic:{}", sem.display()))
        .args(["--model", REPO, "--out"])
        .arg(out.join("metrics.json"))
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    assert!(out.join("metrics.json").is_file());

    // a model file cut short in the cache: offline, the loader names the cached path
    let model = repo.join("snapshots").join(SHA).join("model.safetensors");
    let blob = model
        .parent()
        .unwrap()
        .join(std::fs::read_link(&model).unwrap());
    let len = std::fs::metadata(&blob).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let broken = segment(&closed_endpoint(), &cache, &out.join("4"), &offline);
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success(), "{stderr}");
    assert!(stderr.contains(&model.display().to_string()), "{stderr}");
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_cut_short_cached_file_is_downloaded_again_when_online() {
    let cache = temp_cache("reload");
    let server = HubServer::start(Fault::None);
    let opts = options(&server.endpoint, &cache);
    let dir = fetch(&id(), &opts).unwrap();
    let model = dir.join("model.safetensors");
    let want = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let blob = dir.join(std::fs::read_link(&model).unwrap());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(fetch(&id(), &opts).unwrap(), dir);
    assert_eq!(std::fs::read(&model).unwrap(), want);

    // a blob already in the cache is linked, not downloaded again
    std::fs::remove_file(&model).unwrap();
    server.set_fault(Fault::Vanished("model.safetensors"));
    assert_eq!(fetch(&id(), &opts).unwrap(), dir);
    assert_eq!(std::fs::read(&model).unwrap(), want);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_commit_revision_is_fetched_without_a_ref() {
    let cache = temp_cache("commit");
    let server = HubServer::start(Fault::None);
    let by_commit = HubId::parse(&format!("{REPO}@{SHA}")).unwrap();
    let dir = fetch(&by_commit, &options(&server.endpoint, &cache)).unwrap();
    assert!(dir.ends_with(format!("snapshots/{SHA}")) && dir.join("config.json").is_file());
    assert!(
        tree(&repo_dir(&cache).join("refs")).is_empty(),
        "a commit is not a branch"
    );
    drop(server);
    let mut opts = options(&closed_endpoint(), &cache);
    opts.offline = true;
    assert_eq!(fetch(&by_commit, &opts).unwrap(), dir);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_missing_file_is_named_and_nothing_is_kept() {
    let cache = temp_cache("missing");
    let server = HubServer::start(Fault::Vanished("model.safetensors"));
    let err = fetch(&id(), &options(&server.endpoint, &cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-org/tiny-m2f@main")
            && err.contains("model.safetensors")
            && err.contains("404"),
        "{err}"
    );
    assert_nothing_partial(&cache, "model.safetensors");

    server.set_fault(Fault::Unlisted("model.safetensors"));
    let err = fetch(&id(), &options(&server.endpoint, &cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-org/tiny-m2f@main") && err.contains("has no model.safetensors"),
        "{err}"
    );

    // an optional file may be absent
    server.set_fault(Fault::Unlisted("preprocessor_config.json"));
    let dir = fetch(&id(), &options(&server.endpoint, &cache)).unwrap();
    assert!(dir.join("model.safetensors").is_file());
    assert!(!dir.join("preprocessor_config.json").exists());

    for (bad, what) in [
        ("test-org/nope", "repository not found"),
        ("test-org/tiny-m2f@v9", "no such revision"),
    ] {
        let err = fetch(
            &HubId::parse(bad).unwrap(),
            &options(&server.endpoint, &cache),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(bad) && err.contains(what) && err.contains("404"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_dropped_connection_or_short_body_is_named_and_nothing_is_kept() {
    let cache = temp_cache("drop");
    let server = HubServer::start(Fault::Drop("model.safetensors"));
    let opts = options(&server.endpoint, &cache);
    let size = std::fs::metadata(fixture().join("model.safetensors"))
        .unwrap()
        .len();
    let err = fetch(&id(), &opts).unwrap_err().to_string();
    assert!(
        err.contains("test-org/tiny-m2f@main")
            && err.contains("downloading model.safetensors")
            && err.contains(&format!("after {} of {size} bytes", size / 2)),
        "{err}"
    );
    assert_nothing_partial(&cache, "model.safetensors");

    server.set_fault(Fault::Short("model.safetensors"));
    let err = fetch(&id(), &opts).unwrap_err().to_string();
    assert!(
        err.contains("test-org/tiny-m2f@main")
            && err.contains("model.safetensors is cut short")
            && err.contains(&format!("{} bytes where the Hub lists {size}", size / 2)),
        "{err}"
    );
    assert_nothing_partial(&cache, "model.safetensors");
    assert!(!tree(&cache).iter().any(|f| f.contains("blobs/")
        && !f.ends_with(".lock")
        && std::fs::metadata(cache.join(f)).unwrap().len() == size / 2));

    // the next try, with the server well again, succeeds
    server.set_fault(Fault::None);
    let dir = fetch(&id(), &opts).unwrap();
    assert_eq!(
        std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len(),
        size
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn no_network_with_nothing_cached_names_endpoint_and_cache() {
    let cache = temp_cache("offline");
    let endpoint = closed_endpoint();
    let err = fetch(&id(), &options(&endpoint, &cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-org/tiny-m2f@main")
            && err.contains(&format!("cannot reach {endpoint}"))
            && err.contains(&cache.display().to_string()),
        "{err}"
    );
    let mut opts = options(&endpoint, &cache);
    opts.offline = true;
    let err = fetch(&id(), &opts).unwrap_err().to_string();
    assert!(
        err.contains("test-org/tiny-m2f@main") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn train_init_takes_a_hub_id() {
    let cache = temp_cache("train");
    let work = cache.with_extension("train");
    // a one-image semantic set in the tiny model's 5-label space
    let sem = work.join("sem");
    std::fs::create_dir_all(sem.join("images")).unwrap();
    std::fs::create_dir_all(sem.join("labels")).unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 30]))
        .save(sem.join("images/field.png"))
        .unwrap();
    image::GrayImage::from_fn(64, 64, |x, _| image::Luma([1 + u8::from(x >= 32)]))
        .save(sem.join("labels/field.png"))
        .unwrap();
    let server = HubServer::start(Fault::None);
    let run = work.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env("HF_ENDPOINT", &server.endpoint)
        .env("HF_HUB_CACHE", &cache)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .arg("--data")
        .arg(format!("semantic:{}", sem.display()))
        .args(["--init", REPO, "--steps", "1", "--batch-size", "1"])
        .args(["--image-size", "64", "--num-points", "64", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("downloading {REPO}@main model.safetensors")),
        "{stderr}"
    );
    // the run starts from the downloaded weights and saves a checkpoint of the same model
    let snapshot = repo_dir(&cache).join("snapshots").join(SHA);
    assert!(snapshot.join("model.safetensors").is_file());
    let saved = run.join("checkpoint");
    let config = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(
        config(&saved)["backbone_config"]["embed_dim"],
        config(&snapshot)["backbone_config"]["embed_dim"]
    );
    assert!(saved.join("model.safetensors").is_file());
    drop(server);
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&work);
}
