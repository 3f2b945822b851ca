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

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo};
use thiserror::Error;

mod download;

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
    #[error("{id}: cannot reach {endpoint} ({reason}), and the Hugging Face cache has no usable copy: {cached}")]
    Unreachable {
        id: HubId,
        endpoint: String,
        reason: String,
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
    let info = match download::repo_info(id, opts, &api) {
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
                    cached,
                }),
            }
        }
        Err(e) => return Err(e),
    };
    download::sync_snapshot(id, opts, &api, &info)
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
