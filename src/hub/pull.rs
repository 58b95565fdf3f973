//! One model pull: resolve the revision, keep only the files the pipeline needs, fetch their
//! metadata, download what the cache lacks (several files at once, resuming partial files,
//! retrying network hiccups), verify every file against the hub's checksum, and only then link
//! the snapshot and write the ref. A failed pull never leaves a half-linked snapshot behind, so
//! the registry never lists a model it cannot run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::cache::{check_file_path, check_repo_id, check_revision};
use super::{HubCache, HubClient, HubError};
use crate::api::pull::{FileState, PullFile, PullState, PullStatus};
use crate::engine::model::{check_layout, REQUIRED_FILES};
use crate::hub::client::FileMeta;

/// Short names for known-good SD 1.5 ONNX repositories.
pub struct Alias {
    pub name: &'static str,
    pub repo_id: &'static str,
    pub revision: &'static str,
    pub description: &'static str,
}

pub const ALIASES: [Alias; 2] = [
    Alias {
        name: "sd15",
        repo_id: "stable-diffusion-v1-5/stable-diffusion-v1-5",
        revision: "onnx",
        description: "Stable Diffusion 1.5, fp32 ONNX export (the one diffusers tests against; for CPU), about 4.3 GB",
    },
    Alias {
        name: "sd15-fp16",
        repo_id: "nmkd/stable-diffusion-1.5-onnx-fp16",
        revision: "main",
        description: "Stable Diffusion 1.5, fp16 ONNX export (for GPUs), about 2.1 GB",
    },
];

/// Files downloaded at once.
pub const CONCURRENT_DOWNLOADS: usize = 4;
/// Tries per file when the network drops (each resumes where the last stopped).
const ATTEMPTS: u32 = 4;
/// Never fill the disk to the last byte.
const DISK_MARGIN: u64 = 256 << 20;

/// What to pull.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequest {
    pub repo_id: String,
    pub revision: String,
    /// Also fetch `safety_checker/` and `feature_extractor/` (skipped by default: ~1.2 GB unused).
    pub with_safety_checker: bool,
}

impl PullRequest {
    /// `sd15`, `org/name` or `org/name@revision`.
    pub fn parse(spec: &str) -> Result<Self, HubError> {
        let spec = spec.trim();
        if let Some(alias) = ALIASES.iter().find(|a| a.name == spec) {
            return Ok(Self { repo_id: alias.repo_id.into(), revision: alias.revision.into(), with_safety_checker: false });
        }
        let (repo_id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        if !repo_id.contains('/') {
            return Err(HubError::BadName {
                what: "model",
                value: spec.to_string(),
                hint: "use a repository id (org/name[@revision]) or an alias: sd15, sd15-fp16",
            });
        }
        check_repo_id(repo_id)?;
        check_revision(revision)?;
        Ok(Self { repo_id: repo_id.into(), revision: revision.into(), with_safety_checker: false })
    }
}

/// The outcome of a successful pull.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    pub repo_id: String,
    pub revision: String,
    pub commit: String,
    pub dir: PathBuf,
    /// Bytes fetched over the network.
    pub downloaded_bytes: u64,
    pub total_bytes: u64,
    /// The hub could not be reached and the cached snapshot of the revision was used.
    pub offline: bool,
    /// The snapshot was already complete in the cache before this pull (perhaps put there by
    /// another tool): nothing of it belongs to Easel.
    pub already_cached: bool,
}

/// The subset of a repository's files the pipeline uses: the diffusers ONNX folders, only their
/// ONNX graphs, external weights, JSON configs and tokenizer files (PyTorch/Flax weights that
/// some repos carry beside the ONNX export are left out).
pub fn needed_files(files: &[String], with_safety_checker: bool) -> Vec<String> {
    let mut folders = vec!["text_encoder", "unet", "vae_decoder", "vae_encoder", "tokenizer", "scheduler"];
    if with_safety_checker {
        folders.extend(["safety_checker", "feature_extractor"]);
    }
    let wanted_file = |name: &str| {
        let lower = name.to_ascii_lowercase();
        [".onnx", ".pb", ".onnx_data", ".onnx.data", ".json", ".txt"].iter().any(|ext| lower.ends_with(ext))
    };
    let mut needed: Vec<String> = files
        .iter()
        .filter(|f| {
            *f == "model_index.json"
                || f.split_once('/').is_some_and(|(folder, rest)| folders.contains(&folder) && !rest.contains('/') && wanted_file(rest))
        })
        .cloned()
        .collect();
    needed.sort();
    needed
}

/// The required files (see [`REQUIRED_FILES`]) that `files` lacks.
fn missing_required(files: &[String]) -> Vec<String> {
    let has = |p: &str| files.iter().any(|f| f == p);
    let mut missing: Vec<String> = REQUIRED_FILES.iter().filter(|p| !has(p)).map(|p| p.to_string()).collect();
    if !(has("tokenizer/tokenizer.json") || (has("tokenizer/vocab.json") && has("tokenizer/merges.txt"))) {
        missing.push("tokenizer/vocab.json + merges.txt".into());
    }
    missing
}

/// Progress shared by the download tasks; reports at most every 100 ms, and at every state change.
struct Progress {
    status: Mutex<PullStatus>,
    last_report: Mutex<Instant>,
    report: Arc<dyn Fn(&PullStatus) + Send + Sync>,
}

impl Progress {
    fn update(&self, force: bool, change: impl FnOnce(&mut PullStatus)) {
        let snapshot = {
            let mut status = self.status.lock().expect("pull status lock");
            change(&mut status);
            status.done_bytes = status.files.iter().map(|f| f.done).sum();
            let mut last = self.last_report.lock().expect("pull report lock");
            if !force && last.elapsed() < Duration::from_millis(100) {
                return;
            }
            *last = Instant::now();
            status.clone()
        };
        (self.report)(&snapshot);
    }

    fn file(&self, index: usize, force: bool, change: impl FnOnce(&mut PullFile)) {
        self.update(force, |s| change(&mut s.files[index]));
    }
}

/// Pulls `request` into `cache`, calling `report` with the progress as it goes (never with a
/// finished state: what the caller does with the result comes first).
pub async fn pull(
    client: Arc<HubClient>,
    cache: Arc<HubCache>,
    request: &PullRequest,
    report: Arc<dyn Fn(&PullStatus) + Send + Sync>,
) -> Result<Pulled, HubError> {
    let (repo_id, revision) = (request.repo_id.as_str(), request.revision.as_str());
    check_repo_id(repo_id)?;
    check_revision(revision)?;
    let info = match client.repo_info(repo_id, revision).await {
        Ok(info) => info,
        Err(e @ HubError::Unreachable { .. }) => return cached_offline(&cache, request).ok_or(e),
        Err(e) => return Err(e),
    };
    let commit = info.commit.clone();
    let files = needed_files(&info.files, request.with_safety_checker);
    for file in &files {
        check_file_path(file)?;
    }
    let missing = missing_required(&files);
    if !missing.is_empty() {
        return Err(HubError::NotAModel { repo_id: repo_id.into(), revision: revision.into(), missing });
    }

    // Metadata for every file (small requests, eight at a time), pinned to the resolved commit
    // so a branch moving mid-pull cannot mix two versions.
    let metas = fetch_metadata(&client, repo_id, &commit, &files).await?;
    let progress = Arc::new(Progress {
        status: Mutex::new(PullStatus::new(String::new(), repo_id.into(), revision.into())),
        last_report: Mutex::new(Instant::now() - Duration::from_secs(1)),
        report,
    });
    // Files with the same content (identical configs in two folders) share one blob: it is
    // downloaded once, by the first of them, and the others wait for it.
    let mut to_download: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut bytes_needed = 0u64;
    let files_status: Vec<PullFile> = metas
        .iter()
        .enumerate()
        .map(|(i, meta)| {
            let cached = cache.blob_path(repo_id, &meta.etag).is_file();
            if !cached {
                match to_download.iter_mut().find(|(first, _)| metas[*first].etag == meta.etag) {
                    Some((_, sharing)) => sharing.push(i),
                    None => {
                        let partial = std::fs::metadata(cache.incomplete_path(repo_id, &meta.etag)).map(|m| m.len()).unwrap_or(0);
                        bytes_needed += meta.size.saturating_sub(partial);
                        to_download.push((i, vec![i]));
                    }
                }
            }
            let state = if cached { FileState::Cached } else { FileState::Waiting };
            PullFile { path: meta.path.clone(), size: meta.size, done: if cached { meta.size } else { 0 }, state }
        })
        .collect();
    progress.update(true, |s| {
        s.commit = Some(commit.clone());
        s.total_bytes = metas.iter().map(|m| m.size).sum();
        s.files = files_status;
        s.state = PullState::Downloading;
    });

    let blobs = cache.repo_dir(repo_id).join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| HubError::from_io(&blobs, e))?;
    if let Ok(available) = fs4::available_space(&blobs) {
        if bytes_needed + DISK_MARGIN > available && bytes_needed > 0 {
            return Err(HubError::DiskFull { path: blobs, needed: Some(bytes_needed), available: Some(available) });
        }
    }

    let downloaded = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS));
    let mut tasks = JoinSet::new();
    for (index, sharing) in to_download {
        let (client, cache, progress, downloaded, limit) =
            (client.clone(), cache.clone(), progress.clone(), downloaded.clone(), limit.clone());
        let (meta, repo_id) = (metas[index].clone(), repo_id.to_string());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let result = fetch_blob(&client, &cache, &repo_id, &meta, index, &progress, &downloaded).await;
            progress.update(true, |s| {
                for &i in &sharing {
                    let file = &mut s.files[i];
                    file.state = if result.is_ok() { FileState::Done } else { FileState::Failed };
                    if result.is_ok() {
                        file.done = file.size;
                    }
                }
            });
            result
        });
    }
    while let Some(joined) = tasks.join_next().await {
        // Dropping `tasks` on the first error cancels the other downloads (their partial files stay
        // for the next pull to resume).
        joined.map_err(|e| HubError::Protocol(format!("download task failed: {e}")))??;
    }

    let snapshot = cache.snapshot_dir(repo_id, &commit);
    let already_cached = check_layout(&snapshot).is_ok() && metas.iter().all(|m| snapshot.join(&m.path).is_file());
    for meta in &metas {
        cache.link_snapshot_file(repo_id, &commit, &meta.path, &meta.etag).map_err(|e| HubError::from_io(&snapshot, e))?;
    }
    if revision != commit {
        cache.write_ref(repo_id, revision, &commit).map_err(|e| HubError::from_io(&cache.repo_dir(repo_id), e))?;
    }
    let downloaded_bytes = downloaded.load(std::sync::atomic::Ordering::Relaxed);
    let total_bytes = metas.iter().map(|m| m.size).sum();
    // The state stays `downloading`: the caller announces `done` once it has registered the model.
    progress.update(true, |s| s.downloaded_bytes = downloaded_bytes);
    Ok(Pulled {
        repo_id: repo_id.into(),
        revision: revision.into(),
        commit,
        dir: snapshot,
        downloaded_bytes,
        total_bytes,
        offline: false,
        already_cached,
    })
}

/// The cached snapshot `request.revision` pointed to last time, if it is a complete model.
fn cached_offline(cache: &HubCache, request: &PullRequest) -> Option<Pulled> {
    let commit = cache.read_ref(&request.repo_id, &request.revision).or_else(|| {
        let is_commit = request.revision.len() == 40 && request.revision.chars().all(|c| c.is_ascii_hexdigit());
        is_commit.then(|| request.revision.clone())
    })?;
    let dir = cache.snapshot_dir(&request.repo_id, &commit);
    check_layout(&dir).ok()?;
    Some(Pulled {
        repo_id: request.repo_id.clone(),
        revision: request.revision.clone(),
        commit,
        dir,
        downloaded_bytes: 0,
        total_bytes: 0,
        offline: true,
        already_cached: true,
    })
}

async fn fetch_metadata(client: &Arc<HubClient>, repo_id: &str, commit: &str, files: &[String]) -> Result<Vec<FileMeta>, HubError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = JoinSet::new();
    for (index, file) in files.iter().enumerate() {
        let (client, limit, repo_id, commit, file) = (client.clone(), limit.clone(), repo_id.to_string(), commit.to_string(), file.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            client.file_meta(&repo_id, &commit, &file).await.map(|m| (index, m))
        });
    }
    let mut metas: Vec<Option<FileMeta>> = vec![None; files.len()];
    while let Some(joined) = tasks.join_next().await {
        let (index, meta) = joined.map_err(|e| HubError::Protocol(format!("metadata task failed: {e}")))??;
        metas[index] = Some(meta);
    }
    Ok(metas.into_iter().map(|m| m.expect("every task answered")).collect())
}

/// Downloads one file into its blob (resuming, retrying transient failures), verified.
async fn fetch_blob(
    client: &HubClient,
    cache: &HubCache,
    repo_id: &str,
    meta: &FileMeta,
    index: usize,
    progress: &Progress,
    downloaded: &std::sync::atomic::AtomicU64,
) -> Result<(), HubError> {
    let partial = cache.incomplete_path(repo_id, &meta.etag);
    let blob = cache.blob_path(repo_id, &meta.etag);
    let lock_path = cache.lock_path(repo_id, &meta.etag);
    let _lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use fs4::fs_std::FileExt;
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
        file.lock_exclusive()?;
        Ok(file)
    })
    .await
    .map_err(|e| HubError::Protocol(format!("lock task failed: {e}")))?
    .map_err(|e| HubError::from_io(&cache.lock_path(repo_id, &meta.etag), e))?;
    if blob.is_file() {
        // Another process finished this file while we waited for its lock.
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        progress.file(index, true, |f| f.state = FileState::Downloading);
        let mut last = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        let mut on_progress = |have: u64| {
            if have > last {
                downloaded.fetch_add(have - last, std::sync::atomic::Ordering::Relaxed);
            }
            last = have;
            progress.file(index, false, |f| f.done = have);
        };
        match client.download(repo_id, meta, &partial, &mut on_progress).await {
            Ok(()) => break,
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!(file = %meta.path, attempt, "{e}; retrying");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
    progress.file(index, true, |f| f.state = FileState::Verifying);
    let (path, etag, file) = (partial.clone(), meta.etag.clone(), meta.path.clone());
    tokio::task::spawn_blocking(move || verify(&path, &etag, &file))
        .await
        .map_err(|e| HubError::Protocol(format!("verification task failed: {e}")))??;
    std::fs::rename(&partial, &blob).map_err(|e| HubError::from_io(&blob, e))
}

/// Checks a downloaded file against its etag: sha256 for LFS files (64 hex digits), the git blob
/// sha1 for small files (40). Discards the file on a mismatch, and when the etag is neither (a
/// file nothing can vouch for is not kept).
fn verify(path: &std::path::Path, etag: &str, file: &str) -> Result<(), HubError> {
    let hex = etag.chars().all(|c| c.is_ascii_hexdigit());
    let actual = match (etag.len(), hex) {
        (64, true) => hash_file::<Sha256>(path, None),
        (40, true) => {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            hash_file::<Sha1>(path, Some(format!("blob {size}\0").as_bytes()))
        }
        _ => {
            let _ = std::fs::remove_file(path);
            return Err(HubError::ChecksumMissing { file: file.to_string(), etag: etag.to_string() });
        }
    }
    .map_err(|e| HubError::from_io(path, e))?;
    if actual.eq_ignore_ascii_case(etag) {
        Ok(())
    } else {
        let _ = std::fs::remove_file(path);
        Err(HubError::ChecksumMismatch { file: file.to_string(), expected: etag.to_string(), actual })
    }
}

fn hash_file<D: Digest>(path: &std::path::Path, prefix: Option<&[u8]>) -> std::io::Result<String> {
    use std::io::Read;
    let mut hasher = D::new();
    if let Some(prefix) = prefix {
        hasher.update(prefix);
    }
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bad_name_hint_lists_every_alias() {
        let err = PullRequest::parse("sd16").unwrap_err().to_string();
        for alias in &ALIASES {
            assert!(err.contains(alias.name), "{err}");
        }
    }

    #[test]
    fn specs_parse_to_repo_and_revision() {
        let sd15 = PullRequest::parse("sd15").unwrap();
        assert_eq!((sd15.repo_id.as_str(), sd15.revision.as_str()), ("stable-diffusion-v1-5/stable-diffusion-v1-5", "onnx"));
        let r = PullRequest::parse("org/name@refs/pr/3").unwrap();
        assert_eq!((r.repo_id.as_str(), r.revision.as_str()), ("org/name", "refs/pr/3"));
        assert_eq!(PullRequest::parse(" org/name ").unwrap().revision, "main");
        for bad in ["sd16", "", "org/../x", "org/name@../main", "a/b/c"] {
            assert!(PullRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_pipeline_files_are_pulled() {
        let listing: Vec<String> = [
            ".gitattributes",
            "README.md",
            "model_index.json",
            "v1-5-pruned.safetensors",
            "unet/model.onnx",
            "unet/weights.pb",
            "unet/diffusion_pytorch_model.bin",
            "unet/config.json",
            "text_encoder/model.onnx",
            "vae_decoder/model.onnx",
            "vae_encoder/model.onnx",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "scheduler/scheduler_config.json",
            "safety_checker/model.onnx",
            "feature_extractor/preprocessor_config.json",
            "unet/sub/x.onnx",
        ]
        .map(String::from)
        .to_vec();
        let needed = needed_files(&listing, false);
        assert!(needed.contains(&"unet/weights.pb".to_string()));
        assert!(!needed
            .iter()
            .any(|f| f.contains("safety") || f.contains("feature") || f.ends_with(".bin") || f.ends_with(".safetensors")));
        assert!(!needed.contains(&"README.md".to_string()) && !needed.contains(&"unet/sub/x.onnx".to_string()));
        assert!(missing_required(&needed).is_empty());
        assert_eq!(needed_files(&listing, true).len(), needed.len() + 2);
        let no_unet: Vec<String> = needed.iter().filter(|f| !f.starts_with("unet/")).cloned().collect();
        assert_eq!(missing_required(&no_unet), vec!["unet/model.onnx".to_string()]);
    }

    #[test]
    fn verification_accepts_the_right_hashes_and_discards_a_wrong_file() {
        let dir = std::env::temp_dir().join(format!("easel-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        // `git hash-object` of "hello\n" and `sha256sum` of the same bytes.
        verify(&path, "ce013625030ba8dba906f756967f9e9ca394464a", "f").unwrap();
        verify(&path, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", "f").unwrap();
        let err = verify(&path, &"0".repeat(64), "f").unwrap_err();
        assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err}");
        assert!(!path.exists());
        // An etag that is no checksum (a weak or opaque one) is refused, and the file discarded.
        std::fs::write(&path, b"hello\n").unwrap();
        let err = verify(&path, "W/abc-123", "f").unwrap_err();
        assert!(matches!(err, HubError::ChecksumMissing { .. }) && err.to_string().contains("cannot be verified"), "{err}");
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
