//! Models by Hub id against a local server in the Hub's URL layout (`/api/models/{repo}/revision/
//! {rev}` listing, `/{repo}/resolve/{rev}/{file}` with ranges and the `x-repo-commit`/`etag`
//! headers `hf-hub` reads), serving the tiny transformers fixture: the first run downloads into
//! the Hugging Face cache layout, later runs work offline from it, and a missing file, a dropped
//! connection, a short body or a damaged cached file give errors naming repo, revision and file
//! and leave no partial file in the cache.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mask2former::hub::{fetch, HubId, HubOptions};

const REPO: &str = "test-org/tiny-m2f";
const SHA: &str = "5d0c1e6b9a8f7e6d5c4b3a29180706f5e4d3c2b1";
const FILES: [&str; 3] = [
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tiny")
}

/// How the server misbehaves for one file.
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    None,
    /// Listed, but the download answers 404.
    Vanished(&'static str),
    /// Not even listed.
    Unlisted(&'static str),
    /// Sends the full Content-Length, then half the body, then closes the connection.
    Drop(&'static str),
    /// Sends half the body with a matching Content-Length (shorter than the listing says).
    Short(&'static str),
}

impl Fault {
    /// The listing leaves `name` out.
    fn unlisted(&self, name: &str) -> bool {
        matches!(self, Fault::Unlisted(f) if *f == name)
    }

    /// Downloading `name` answers 404.
    fn gone(&self, name: &str) -> bool {
        matches!(self, Fault::Vanished(f) | Fault::Unlisted(f) if *f == name)
    }
}

struct HubServer {
    endpoint: String,
    fault: Arc<Mutex<Fault>>,
    /// The `Authorization` header of each request, if any.
    auth: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HubServer {
    fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let files: Vec<(String, Vec<u8>)> = FILES
            .iter()
            .map(|f| (f.to_string(), std::fs::read(fixture().join(f)).unwrap()))
            .collect();
        let fault = Arc::new(Mutex::new(fault));
        let stop = Arc::new(AtomicBool::new(false));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let (f2, s2, a2) = (fault.clone(), stop.clone(), auth.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let fault = f2.lock().unwrap().clone();
                    let _ = serve(stream, &files, &fault, &a2);
                }
            }
        });
        Self {
            endpoint,
            fault,
            auth,
            stop,
            thread: Some(thread),
        }
    }

    fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accept loop so it sees the flag; the listener closes with the thread
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A stand-in for a content hash: the cache names blobs by the ids the listing gives.
fn digest(bytes: &[u8], hex_len: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}").repeat(4)[..hex_len].to_owned()
}

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors")
}

fn listing(files: &[(String, Vec<u8>)], fault: &Fault) -> String {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .filter(|(n, _)| !fault.unlisted(n))
        .map(|(n, b)| {
            let mut s = serde_json::json!({"rfilename": n, "size": b.len(), "blobId": digest(b, 40)});
            if is_lfs(n) {
                s["lfs"] = serde_json::json!({"sha256": digest(b, 64), "size": b.len(), "pointerSize": 134});
            }
            s
        })
        .chain([serde_json::json!({"rfilename": "README.md", "size": 5, "blobId": "ab"})])
        .collect();
    serde_json::json!({"id": REPO, "sha": SHA, "siblings": siblings}).to_string()
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes())?;
    s.write_all(body)
}

fn serve(
    mut s: TcpStream,
    files: &[(String, Vec<u8>)],
    fault: &Fault,
    auth: &Mutex<Vec<Option<String>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_owned());
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_owned());
            }
        }
    }
    auth.lock().unwrap().push(authorization);
    let path = path.split('?').next().unwrap().replace("%2F", "/");
    let not_found = |s: &mut TcpStream, code: &str| {
        respond(s, "404 Not Found", &[("x-error-code", code.into())], b"{}")
    };
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, rev)) = rest.split_once("/revision/") else {
            return not_found(&mut s, "RepoNotFound");
        };
        return if repo != REPO {
            not_found(&mut s, "RepoNotFound")
        } else if rev != "main" && rev != SHA {
            not_found(&mut s, "RevisionNotFound")
        } else {
            let body = listing(files, fault);
            respond(
                &mut s,
                "200 OK",
                &[("Content-Type", "application/json".into())],
                body.as_bytes(),
            )
        };
    }
    let prefix = format!("/{REPO}/resolve/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return not_found(&mut s, "RepoNotFound");
    };
    let (_rev, name) = rest.split_once('/').unwrap_or((rest, ""));
    let file = files.iter().find(|(n, _)| n == name);
    let (name, bytes) = match file {
        Some((n, b)) if !fault.gone(n) => (n.as_str(), b),
        _ => return not_found(&mut s, "EntryNotFound"),
    };
    // `bytes=a-` or `bytes=a-b`
    let (start, end) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b = b.parse().unwrap_or(bytes.len() - 1);
            (a, b.min(bytes.len() - 1))
        })
        .unwrap_or((0, bytes.len() - 1));
    let mut headers = vec![
        ("x-repo-commit", SHA.to_owned()),
        ("etag", format!("\"{}\"", digest(bytes, 40))),
        (
            "Content-Range",
            format!("bytes {start}-{end}/{}", bytes.len()),
        ),
    ];
    if is_lfs(name) {
        headers.push(("x-linked-etag", format!("\"{}\"", digest(bytes, 64))));
    }
    let body = &bytes[start..=end];
    let probe = end == start;
    match fault {
        Fault::Drop(f) if *f == name && !probe => {
            let mut head = String::from("HTTP/1.1 206 Partial Content\r\nConnection: close\r\n");
            for (k, v) in &headers {
                head += &format!("{k}: {v}\r\n");
            }
            head += &format!("Content-Length: {}\r\n\r\n", body.len());
            s.write_all(head.as_bytes())?;
            s.write_all(&body[..body.len() / 2])?;
            s.flush()?;
            s.shutdown(Shutdown::Both)
        }
        Fault::Short(f) if *f == name && !probe => respond(
            &mut s,
            "206 Partial Content",
            &headers,
            &body[..body.len() / 2],
        ),
        _ => respond(&mut s, "206 Partial Content", &headers, body),
    }
}

fn temp_cache(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m2f-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

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

/// An endpoint where nothing listens.
fn closed_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
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
