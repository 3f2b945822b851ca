//! Bringing a cached snapshot up to date with the Hub's listing: `hf-hub` downloads each file;
//! this checks sizes, reuses blobs already cached, records the ref and cleans up after failures.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiError};
use hf_hub::{Repo, RepoType};
use indicatif::HumanBytes;
use serde::Deserialize;

use super::{HubError, HubId, HubOptions, MODEL_FILES};

/// The repository listing of `GET /api/models/{repo}/revision/{rev}?blobs=true`.
#[derive(Debug, Deserialize)]
pub(super) struct RepoInfo {
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

pub(super) fn repo_info(id: &HubId, opts: &HubOptions, api: &Api) -> Result<RepoInfo, HubError> {
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
                cached: String::new(),
            })
        }
    };
    let body = response.into_string().map_err(|e| HubError::Unreachable {
        id: id.clone(),
        endpoint: opts.endpoint.clone(),
        reason: e.to_string(),
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

/// Brings the snapshot of `info.sha` up to date with the listing and points the ref at it.
pub(super) fn sync_snapshot(
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
            ApiError::IoError(e) => e.to_string(),
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
