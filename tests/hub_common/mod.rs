//! A local server in the Hugging Face Hub's URL layout for the tests of Hub ids: the model
//! listing at `/api/models/{repo}/revision/{rev}` and files at `/{repo}/resolve/{rev}/{file}`
//! with ranges and the `x-repo-commit`/`etag` headers `hf-hub` reads, serving the tiny
//! transformers fixture, with faults on demand.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub const REPO: &str = "test-org/tiny-m2f";
pub const SHA: &str = "5d0c1e6b9a8f7e6d5c4b3a29180706f5e4d3c2b1";
pub const FILES: [&str; 3] = [
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
];

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tiny")
}

/// How the server misbehaves for one file.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
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

pub struct HubServer {
    pub endpoint: String,
    fault: Arc<Mutex<Fault>>,
    /// The `Authorization` header of each request, if any.
    pub auth: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HubServer {
    pub fn start(fault: Fault) -> Self {
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

    pub fn set_fault(&self, fault: Fault) {
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

pub fn temp_cache(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m2f-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// An endpoint where nothing listens.
pub fn closed_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}
