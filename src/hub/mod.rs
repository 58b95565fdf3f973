//! Pulling models from the Hugging Face hub into the shared hub cache. Knows nothing of HTTP
//! serving, jobs or the UI: the CLI and the server both call [`pull::pull`] and watch its
//! [`crate::api::pull::PullStatus`] reports.
//!
//! - [`cache`]: the on-disk cache layout `huggingface_hub` uses (blobs, snapshots, refs).
//! - [`client`]: the hub protocol (file list, `HEAD` metadata, resumable downloads).
//! - [`pull`]: which files a pipeline needs, concurrent verified downloads, aliases.

pub mod cache;
pub mod client;
pub mod pull;

use std::path::{Path, PathBuf};

pub use cache::HubCache;
pub use client::HubClient;

/// The environment variables the hub client and cache read, as `huggingface_hub` does (help texts
/// quote this; [`client::env_endpoint`], [`client::env_token`] and [`HubCache::from_env`] read them).
pub const ENVIRONMENT_HELP: &str = "Environment: HF_ENDPOINT (hub or mirror URL), HF_TOKEN (access token),
HF_HOME / HF_HUB_CACHE (cache location, shared with Python tools).";

/// Every way a pull can fail, each worded so the user knows what to do next.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("could not reach the hub at {endpoint} ({detail}); check the network connection, set HF_ENDPOINT to a reachable mirror, or copy a model folder in the diffusers ONNX layout into the models dir")]
    Unreachable { endpoint: String, detail: String },
    #[error("{}", unauthorized_message(repo_id, *had_token))]
    Unauthorized { repo_id: String, had_token: bool },
    #[error("not found on the hub: {what}; check the spelling (repository ids look like org/name) and the revision")]
    NotFound { what: String },
    #[error("{repo_id}@{revision} is not a Stable Diffusion model in the diffusers ONNX layout: it lacks {}; pick an ONNX export, or convert a checkpoint with models/sdtool convert", missing.join(", "))]
    NotAModel { repo_id: String, revision: String, missing: Vec<String> },
    #[error("checksum mismatch for {file}: the hub says sha {expected}, the download has {actual}; the file was discarded and the model not registered: pull again")]
    ChecksumMismatch { file: String, expected: String, actual: String },
    #[error("the hub gave no checksum for {file} (etag {etag:?}, neither a sha256 nor a git sha1): it cannot be verified, so it was discarded and the model not registered; pull from huggingface.co or a mirror that sends checksums")]
    ChecksumMissing { file: String, etag: String },
    #[error("{}", disk_full_message(path, *needed, *available))]
    DiskFull { path: PathBuf, needed: Option<u64>, available: Option<u64> },
    #[error("download of {file} was interrupted after {have} of {size} bytes ({detail}); run the pull again to resume where it stopped")]
    Interrupted { file: String, have: u64, size: u64, detail: String },
    #[error("cannot write {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("invalid {what} {value:?}: {hint}")]
    BadName { what: &'static str, value: String, hint: &'static str },
    #[error("{0}")]
    Protocol(String),
}

impl HubError {
    pub fn from_io(path: &Path, e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            HubError::DiskFull { path: path.to_path_buf(), needed: None, available: None }
        } else {
            HubError::Io { path: path.to_path_buf(), message: e.to_string() }
        }
    }

    /// The message with the models dir named where the fix is to copy a model there.
    pub fn explain(&self, models_dir: &Path) -> String {
        match self {
            HubError::Unreachable { .. } => format!("{self} (the models dir is {})", models_dir.display()),
            other => other.to_string(),
        }
    }

    /// Worth trying again as it is (the network hiccuped), as opposed to needing the user.
    pub fn is_transient(&self) -> bool {
        matches!(self, HubError::Interrupted { .. } | HubError::Unreachable { .. })
    }
}

fn unauthorized_message(repo_id: &str, had_token: bool) -> String {
    if had_token {
        format!("the hub refused access to {repo_id} with the token given: accept the model's licence on its hub page, or set HF_TOKEN to a token with read access")
    } else {
        format!("{repo_id} was not found or needs a token: check the name, or set HF_TOKEN to a hub access token with read access")
    }
}

fn disk_full_message(path: &Path, needed: Option<u64>, available: Option<u64>) -> String {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    match (needed, available) {
        (Some(n), Some(a)) => format!(
            "not enough disk space in {}: the pull needs {:.2} GiB more, {:.2} GiB is free; free some space or set HF_HUB_CACHE to a bigger disk",
            path.display(),
            gib(n),
            gib(a)
        ),
        _ => format!("the disk is full while writing {}; free some space or set HF_HUB_CACHE to a bigger disk, then pull again (it resumes)", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_as_such_with_the_fix() {
        let err = HubError::from_io(Path::new("/cache/blobs/x"), std::io::Error::from_raw_os_error(28));
        assert!(matches!(err, HubError::DiskFull { .. }));
        assert!(err.to_string().contains("disk is full") && err.to_string().contains("HF_HUB_CACHE"), "{err}");
        let err = HubError::DiskFull { path: "/cache".into(), needed: Some(3 << 30), available: Some(1 << 30) };
        assert!(err.to_string().contains("needs 3.00 GiB more, 1.00 GiB is free"), "{err}");
        let other = HubError::from_io(Path::new("/x"), std::io::Error::from_raw_os_error(13));
        assert!(matches!(other, HubError::Io { .. }));
    }

    #[test]
    fn an_unreachable_hub_names_the_models_dir_to_copy_into() {
        let err = HubError::Unreachable { endpoint: "https://hub".into(), detail: "dns error".into() };
        let text = err.explain(Path::new("/data/models"));
        assert!(text.contains("could not reach the hub at https://hub") && text.ends_with("(the models dir is /data/models)"), "{text}");
        let other = HubError::NotFound { what: "x".into() };
        assert_eq!(other.explain(Path::new("/m")), other.to_string());
    }
}
