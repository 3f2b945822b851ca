//! Models named by their Hugging Face Hub id, `owner/name[@revision]`, resolved to a checkpoint
//! folder in the cache that `transformers` and `huggingface_hub` share:
//! `models--owner--name/snapshots/<commit>/<file>` links to `blobs/<etag>`, and
//! `refs/<branch>` holds the commit a branch pointed at when it was last fetched.
//!
//! Downloads go through `hf-hub`'s blocking client: it writes a file to `blobs/<etag>.part`,
//! renames it and links it into the snapshot, showing a progress bar. This module adds what that
//! client lacks: `HF_HUB_CACHE`, `HF_TOKEN` and `HF_HUB_OFFLINE`, a cache-only path (also taken
//! when the Hub cannot be reached), size checks against the Hub's file listing (the client does
//! not check that a body arrived whole), reuse of blobs already in the cache, and removal of a
//! failed download's `.part` file, so that no partial file stays in the cache.

use std::fmt;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use indicatif::HumanBytes;
use serde::Deserialize;
use thiserror::Error;

/// The files of a checkpoint folder, and whether the model needs them.
pub const MODEL_FILES: [(&str, bool); 4] = [
    ("config.json", true),
    ("model.safetensors", true),
    ("preprocessor_config.json", false),
    // written by `train`; lets a model trained here and pushed to the Hub keep its thing/stuff flags
    ("categories.json", false),
];

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A model on the Hub: `owner/name` and a branch, tag or commit (default `main`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    pub repo: String,
    pub revision: String,
}

impl HubId {
    /// Parses `owner/name[@revision]`; `None` when `s` is not of that form (a path such as
    /// `./x`, `/abs/dir` or `a/b/c` is not).
    pub fn parse(s: &str) -> Option<Self> {
        let (repo, revision) = match s.split_once('@') {
            Some((_, "")) => return None,
            Some((repo, rev)) => (repo, rev),
            None => (s, "main"),
        };
        let (owner, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !p.starts_with(['.', '-'])
                && !p.ends_with(['.', '-'])
                && !p.contains("..")
        };
        let rev_ok = !revision.contains("..")
            && !revision.starts_with('/')
            && revision.chars().all(|c| c.is_ascii_graphic() && c != '\\');
        (part_ok(owner) && part_ok(name) && rev_ok).then(|| Self {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

impl fmt::Display for HubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repo, self.revision)
    }
}

/// Why a model could not be made available.
#[derive(Debug, Error)]
pub enum HubError {
    #[error(
        "model `{0}`: not a checkpoint folder (no such path), and not a Hub id of the form owner/name[@revision]"
    )]
    NoSuchModel(String),
    #[error(
        "{id}: {what} on {endpoint} (HTTP {status}){hint}; no local folder has that name either"
    )]
    NotFound {
        id: HubId,
        what: &'static str,
        endpoint: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{id}: the repository has no {file}{hint} (files: {files})")]
    MissingFile {
        id: HubId,
        file: String,
        files: String,
        hint: &'static str,
    },
    #[error("{id}: {file}: {url} answered HTTP {status}")]
    Http {
        id: HubId,
        file: String,
        url: String,
        status: u16,
    },
    #[error("{id}: {url}: {reason}")]
    Protocol {
        id: HubId,
        url: String,
        reason: String,
    },
    #[error(
        "{id}: cannot reach {endpoint} ({reason}), and the cache {} has no usable copy: {cached}",
        cache.display()
    )]
    Unreachable {
        id: HubId,
        endpoint: String,
        reason: String,
        cache: PathBuf,
        cached: String,
    },
    #[error("{id}: HF_HUB_OFFLINE is set and the cache {} has no usable copy: {reason}", cache.display())]
    NotCached {
        id: HubId,
        cache: PathBuf,
        reason: String,
    },
    #[error("{id}: downloading {file} from {url} failed: {reason}; no partial file was kept in the cache")]
    Download {
        id: HubId,
        file: String,
        url: String,
        reason: String,
    },
    #[error(
        "{id}: {file} is cut short: {got} bytes where the Hub lists {expected} ({}); it was removed from the cache",
        path.display()
    )]
    Truncated {
        id: HubId,
        file: String,
        path: PathBuf,
        got: u64,
        expected: u64,
    },
    #[error("{id}: cache {}: {source}", path.display())]
    Cache {
        id: HubId,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where models come from; [`HubOptions::from_env`] reads the variables `huggingface_hub` reads.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// `HF_ENDPOINT`, default `https://huggingface.co`.
    pub endpoint: String,
    /// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub cache: PathBuf,
    /// `HF_TOKEN`, else the token file `huggingface-cli login` writes.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE=1`: use the cache only.
    pub offline: bool,
    /// Show a progress bar while downloading (drawn only on a terminal).
    pub progress: bool,
}

impl HubOptions {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::home_dir().map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(token_file)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        });
        Self {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            cache: var("HF_HUB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("hub")),
            token,
            offline,
            progress: true,
        }
    }

    /// `models--owner--name`, the repository's folder in the cache.
    pub fn repo_dir(&self, id: &HubId) -> PathBuf {
        self.cache.join(Repo::model(id.repo.clone()).folder_name())
    }
}

/// The checkpoint folder a `--model` / `--init` argument names. An existing path always wins
/// (so a local folder `owner/name` shadows the Hub model of that name); otherwise the argument
/// must be a Hub id, which is looked up in the cache and downloaded as needed.
pub fn resolve_model(arg: &Path) -> Result<PathBuf, HubError> {
    if arg.exists() {
        return Ok(arg.to_owned());
    }
    let text = arg.to_string_lossy();
    let id = HubId::parse(&text).ok_or_else(|| HubError::NoSuchModel(text.clone().into_owned()))?;
    fetch(&id, &HubOptions::from_env())
}

/// Makes the model's files available in the cache and returns its snapshot folder. Online, the
/// Hub's file listing decides what is current; offline (or when the Hub cannot be reached) the
/// cached snapshot of the revision is used as it is.
pub fn fetch(id: &HubId, opts: &HubOptions) -> Result<PathBuf, HubError> {
    if opts.offline {
        return cached_snapshot(id, opts).map_err(|reason| HubError::NotCached {
            id: id.clone(),
            cache: opts.cache.clone(),
            reason,
        });
    }
    let api = ApiBuilder::from_cache(Cache::new(opts.cache.clone()))
        .with_endpoint(opts.endpoint.clone())
        .with_token(opts.token.clone())
        .with_progress(opts.progress)
        .build()
        .map_err(|e| HubError::Protocol {
            id: id.clone(),
            url: opts.endpoint.clone(),
            reason: e.to_string(),
        })?;
    let info = match repo_info(id, opts, &api) {
        Ok(info) => info,
        Err(HubError::Unreachable { reason, .. }) => {
            return match cached_snapshot(id, opts) {
                Ok(dir) => {
                    eprintln!(
                        "warning: cannot reach {} ({reason}); using the cached {}",
                        opts.endpoint,
                        dir.display()
                    );
                    Ok(dir)
                }
                Err(cached) => Err(HubError::Unreachable {
                    id: id.clone(),
                    endpoint: opts.endpoint.clone(),
                    reason,
                    cache: opts.cache.clone(),
                    cached,
                }),
            }
        }
        Err(e) => return Err(e),
    };
    sync_snapshot(id, opts, &api, &info)
}

/// The repository listing of `GET /api/models/{repo}/revision/{rev}?blobs=true`.
#[derive(Debug, Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

impl Sibling {
    /// The name of its blob in the cache: the Hub's ETag, the LFS sha256 or the git blob id.
    fn etag(&self) -> Option<&str> {
        self.lfs
            .as_ref()
            .map(|l| l.sha256.as_str())
            .or(self.blob_id.as_deref())
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\', '.']))
    }

    fn size(&self) -> Option<u64> {
        self.lfs.as_ref().map(|l| l.size).or(self.size)
    }
}

fn repo_info(id: &HubId, opts: &HubOptions, api: &Api) -> Result<RepoInfo, HubError> {
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let request = repo.info_request().query("blobs", "true");
    let url = request.url().to_owned();
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            let code = r.header("x-error-code").unwrap_or_default().to_owned();
            let (what, hint) = match (status, code.as_str()) {
                (_, "RevisionNotFound") => ("no such revision", ""),
                (_, "GatedRepo") => (
                    "the repository is gated",
                    "; accept its terms on the Hub and set HF_TOKEN",
                ),
                (401 | 403 | 404, _) => (
                    "repository not found",
                    "; if it is private or gated, set HF_TOKEN",
                ),
                _ => ("the repository listing failed", ""),
            };
            return Err(HubError::NotFound {
                id: id.clone(),
                what,
                endpoint: opts.endpoint.clone(),
                status,
                hint,
            });
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(HubError::Unreachable {
                id: id.clone(),
                endpoint: opts.endpoint.clone(),
                reason: t.to_string(),
                cache: opts.cache.clone(),
                cached: String::new(),
            })
        }
    };
    let body = response.into_string().map_err(|e| HubError::Unreachable {
        id: id.clone(),
        endpoint: opts.endpoint.clone(),
        reason: e.to_string(),
        cache: opts.cache.clone(),
        cached: String::new(),
    })?;
    let info: RepoInfo = serde_json::from_str(&body).map_err(|e| HubError::Protocol {
        id: id.clone(),
        url: url.clone(),
        reason: format!("not a repository listing: {e}"),
    })?;
    if info.sha.is_empty() || info.sha.contains(['/', '\\', '.']) {
        return Err(HubError::Protocol {
            id: id.clone(),
            url,
            reason: format!("invalid commit `{}` in the listing", info.sha),
        });
    }
    Ok(info)
}

/// The cached snapshot of `id` when it holds every required file; else what is missing.
pub fn cached_snapshot(id: &HubId, opts: &HubOptions) -> Result<PathBuf, String> {
    let repo_dir = opts.repo_dir(id);
    let is_commit = id.revision.len() == 40 && id.revision.chars().all(|c| c.is_ascii_hexdigit());
    let snapshots = repo_dir.join("snapshots");
    let commit = if is_commit && snapshots.join(&id.revision).is_dir() {
        id.revision.clone()
    } else {
        let ref_path = repo_dir.join("refs").join(&id.revision);
        let text = std::fs::read_to_string(&ref_path)
            .map_err(|_| format!("{} not found", ref_path.display()))?;
        text.trim().to_owned()
    };
    let dir = snapshots.join(&commit);
    for (file, required) in MODEL_FILES {
        if required && !dir.join(file).is_file() {
            return Err(format!("{} not found", dir.join(file).display()));
        }
    }
    Ok(dir)
}

/// Brings the snapshot of `info.sha` up to date with the listing and points the ref at it.
fn sync_snapshot(
    id: &HubId,
    opts: &HubOptions,
    api: &Api,
    info: &RepoInfo,
) -> Result<PathBuf, HubError> {
    let repo_dir = opts.repo_dir(id);
    let snapshot = repo_dir.join("snapshots").join(&info.sha);
    let fetcher = Fetcher {
        id,
        opts,
        api,
        repo_dir: &repo_dir,
        sha: &info.sha,
    };
    for (file, required) in MODEL_FILES {
        match info.siblings.iter().find(|s| s.rfilename == file) {
            Some(sib) => fetcher.ensure(file, sib)?,
            None if required => return Err(missing_file(id, file, info)),
            None => {}
        }
    }
    if id.revision != info.sha {
        let ref_path = repo_dir.join("refs").join(&id.revision);
        let current = std::fs::read_to_string(&ref_path).unwrap_or_default();
        if current.trim() != info.sha {
            let cache_err = |source| HubError::Cache {
                id: id.clone(),
                path: ref_path.clone(),
                source,
            };
            if let Some(parent) = ref_path.parent() {
                std::fs::create_dir_all(parent).map_err(cache_err)?;
            }
            crate::atomic_file::write_atomic(&ref_path, info.sha.as_bytes()).map_err(cache_err)?;
        }
    }
    Ok(snapshot)
}

fn missing_file(id: &HubId, file: &str, info: &RepoInfo) -> HubError {
    let names: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let hint = if file == "model.safetensors" && names.contains(&"pytorch_model.bin") {
        ", only pytorch_model.bin, which this crate does not read; a converted revision \
         (e.g. a refs/pr/N branch by the Hub's safetensors bot) can be named with @revision"
    } else {
        ""
    };
    HubError::MissingFile {
        id: id.clone(),
        file: file.to_owned(),
        files: if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        },
        hint,
    }
}

/// Fetches the files of one snapshot.
struct Fetcher<'a> {
    id: &'a HubId,
    opts: &'a HubOptions,
    api: &'a Api,
    repo_dir: &'a Path,
    sha: &'a str,
}

impl Fetcher<'_> {
    fn cache_err(&self, path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
        let path = path.to_owned();
        move |source| HubError::Cache {
            id: self.id.clone(),
            path,
            source,
        }
    }

    /// Makes `snapshots/<sha>/<file>` present with the listed size: kept when it is, linked to
    /// a blob already in the cache, or downloaded.
    fn ensure(&self, file: &str, sib: &Sibling) -> Result<(), HubError> {
        let pointer = self.repo_dir.join("snapshots").join(self.sha).join(file);
        let expected = sib.size();
        if let Ok(meta) = std::fs::metadata(&pointer) {
            match expected {
                Some(n) if meta.len() != n => {
                    eprintln!(
                        "warning: {}: cached {file} has {} bytes, the Hub lists {n}: downloading it again ({})",
                        self.id,
                        meta.len(),
                        pointer.display()
                    );
                    self.remove_pointer(&pointer)?;
                }
                _ => return Ok(()),
            }
        } else if std::fs::symlink_metadata(&pointer).is_ok() {
            // a link whose blob is gone
            self.remove_pointer(&pointer)?;
        }
        let etag = sib.etag();
        if let (Some(etag), Some(n)) = (etag, expected) {
            let blob = self.repo_dir.join("blobs").join(etag);
            if std::fs::metadata(&blob).is_ok_and(|m| m.len() == n) {
                return self.link(&blob, &pointer);
            }
        }
        self.download(file, etag, expected, &pointer)
    }

    /// Removes a snapshot entry and, when it links into `blobs/`, the blob it names.
    fn remove_pointer(&self, pointer: &Path) -> Result<(), HubError> {
        if let Ok(target) = std::fs::read_link(pointer) {
            let blob = pointer.parent().unwrap_or(pointer).join(target);
            if blob.is_file() {
                std::fs::remove_file(&blob).map_err(self.cache_err(&blob))?;
            }
        }
        std::fs::remove_file(pointer).map_err(self.cache_err(pointer))
    }

    /// Puts a blob already in the cache into the snapshot, as `huggingface_hub` does: a relative
    /// symlink where the platform allows one, else a copy.
    fn link(&self, blob: &Path, pointer: &Path) -> Result<(), HubError> {
        let dir = pointer.parent().expect("a snapshot file has a folder");
        std::fs::create_dir_all(dir).map_err(self.cache_err(dir))?;
        #[cfg(unix)]
        let linked = {
            let name = blob.file_name().expect("a blob has a name");
            std::os::unix::fs::symlink(Path::new("../../blobs").join(name), pointer)
        };
        #[cfg(not(unix))]
        let linked = std::fs::copy(blob, pointer).map(|_| ());
        linked.map_err(self.cache_err(pointer))
    }

    fn download(
        &self,
        file: &str,
        etag: Option<&str>,
        expected: Option<u64>,
        pointer: &Path,
    ) -> Result<(), HubError> {
        let repo = self.api.repo(Repo::with_revision(
            self.id.repo.clone(),
            RepoType::Model,
            self.id.revision.clone(),
        ));
        let url = repo.url(file);
        // hf-hub resumes from a `.part` file it finds; one left by a killed run is not trusted
        let part = etag.map(|e| self.repo_dir.join("blobs").join(format!("{e}.part")));
        if let Some(part) = &part {
            let _ = std::fs::remove_file(part);
        }
        eprintln!(
            "downloading {} {file}{} from {}",
            self.id,
            expected.map_or(String::new(), |n| format!(" ({})", HumanBytes(n))),
            self.opts.endpoint
        );
        let result = repo.download(file);
        let got_part = part
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len());
        if let Some(part) = &part {
            let _ = std::fs::remove_file(part);
        }
        let path = result.map_err(|e| self.download_error(file, &url, e, got_part, expected))?;
        if path != pointer {
            // the branch moved between the listing and the download
            return Err(HubError::Protocol {
                id: self.id.clone(),
                url,
                reason: format!(
                    "the server sent {file} of another commit ({}) than its listing ({}); run again",
                    path.display(),
                    self.sha
                ),
            });
        }
        if self.id.revision == self.sha {
            // hf-hub records every revision as a ref; a commit is not a branch
            let _ = std::fs::remove_file(self.repo_dir.join("refs").join(self.sha));
        }
        let got = std::fs::metadata(&path)
            .map_err(self.cache_err(&path))?
            .len();
        match expected {
            Some(n) if got != n => {
                self.remove_pointer(&path)?;
                Err(HubError::Truncated {
                    id: self.id.clone(),
                    file: file.to_owned(),
                    path,
                    got,
                    expected: n,
                })
            }
            _ => Ok(()),
        }
    }

    fn download_error(
        &self,
        file: &str,
        url: &str,
        e: ApiError,
        got: Option<u64>,
        expected: Option<u64>,
    ) -> HubError {
        let reason = match e {
            ApiError::RequestError(e) => match *e {
                ureq::Error::Status(status, _) => {
                    return HubError::Http {
                        id: self.id.clone(),
                        file: file.to_owned(),
                        url: url.to_owned(),
                        status,
                    }
                }
                ureq::Error::Transport(t) => t.to_string(),
            },
            ApiError::MissingHeader(h) => {
                format!("the reply lacks the `{h}` header the Hub sends (is HF_ENDPOINT a Hub?)")
            }
            e => e.to_string(),
        };
        let progress = match (got, expected) {
            (Some(got), Some(n)) => format!(" after {got} of {n} bytes"),
            (Some(got), None) => format!(" after {got} bytes"),
            _ => String::new(),
        };
        HubError::Download {
            id: self.id.clone(),
            file: file.to_owned(),
            url: url.to_owned(),
            reason: format!("{reason}{progress}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_and_rejects_paths() {
        let id = HubId::parse("facebook/mask2former-swin-tiny-coco-panoptic").unwrap();
        assert_eq!(id.repo, "facebook/mask2former-swin-tiny-coco-panoptic");
        assert_eq!(id.revision, "main");
        let id = HubId::parse("a-b/c.d_e@refs/pr/3").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("a-b/c.d_e", "refs/pr/3")
        );
        assert_eq!(id.to_string(), "a-b/c.d_e@refs/pr/3");
        for bad in [
            "gpt2",
            "./a/b",
            "/a/b",
            "a/b/c",
            "a/",
            "/b",
            "a/b@",
            "../b",
            "a/..",
            "a/b@../x",
            "a b/c",
            "runs\\x/y",
        ] {
            assert_eq!(HubId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_existing_folder_wins_and_other_paths_are_named() {
        let dir = std::env::temp_dir().join(format!("m2f-hub-{}", std::process::id()));
        let local = dir.join("owner/name");
        std::fs::create_dir_all(&local).unwrap();
        assert_eq!(resolve_model(&local).unwrap(), local);
        let err = resolve_model(&dir.join("missing/x/y"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing/x/y") && err.contains("no such path"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offline_lookup_follows_refs_and_commits() {
        let cache = std::env::temp_dir().join(format!("m2f-hub-cache-{}", std::process::id()));
        let opts = HubOptions {
            endpoint: "http://127.0.0.1:9".into(),
            cache: cache.clone(),
            token: None,
            offline: true,
            progress: false,
        };
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let id = HubId::parse("o/n").unwrap();
        let repo = opts.repo_dir(&id);
        assert!(repo.ends_with("models--o--n"));
        let snap = repo.join("snapshots").join(sha);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), sha).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        let err = fetch(&id, &opts).unwrap_err().to_string();
        assert!(
            err.contains("o/n@main") && err.contains("model.safetensors"),
            "{err}"
        );
        std::fs::write(snap.join("model.safetensors"), "x").unwrap();
        assert_eq!(fetch(&id, &opts).unwrap(), snap);
        let by_commit = HubId::parse(&format!("o/n@{sha}")).unwrap();
        assert_eq!(fetch(&by_commit, &opts).unwrap(), snap);
        let err = fetch(&HubId::parse("o/n@v2").unwrap(), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("o/n@v2") && err.contains("refs/v2"), "{err}");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
