//! The Hugging Face hub cache on disk, in the layout `huggingface_hub` writes, so a model pulled
//! by Easel is found by Python tools and the other way round:
//!
//! ```text
//! <cache>/models--<org>--<name>/
//!     blobs/<etag>                 file contents, named by the hub's etag (sha256 for LFS files)
//!     blobs/<etag>.incomplete      a download in progress (resumed with an HTTP Range request)
//!     snapshots/<commit>/<path>    relative symlinks into ../../blobs
//!     refs/<revision>              the commit a branch or tag pointed to when last pulled
//! ```
//!
//! Every name that comes from the network (repo id, revision, etag, file path) is checked before
//! it becomes part of a path, so a hostile server cannot write outside the cache.

use std::path::{Component, Path, PathBuf};

use super::HubError;

/// The cache root and the paths inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubCache {
    root: PathBuf,
}

/// One snapshot found in the cache: a repo at a commit, and the refs that point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedSnapshot {
    pub repo_id: String,
    pub commit: String,
    /// Branches or tags whose ref file holds this commit (`main`, `onnx`, ...).
    pub refs: Vec<String>,
    pub dir: PathBuf,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`: the same lookup as
    /// `huggingface_hub`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        Self::set_in_env(&get).unwrap_or_else(|| Self::new(default_home(None).join("hub")))
    }

    /// The cache the environment points at, or `None` when no variable that moves it is set
    /// (so a settings file may choose instead).
    pub fn set_in_env(get: &impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(cache) = non_empty("HF_HUB_CACHE") {
            return Some(Self::new(cache));
        }
        if let Some(home) = non_empty("HF_HOME") {
            return Some(Self::new(PathBuf::from(home).join("hub")));
        }
        non_empty("XDG_CACHE_HOME").map(|xdg| Self::new(default_home(Some(PathBuf::from(xdg))).join("hub")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name` for `org/name`.
    pub fn repo_dir(&self, repo_id: &str) -> PathBuf {
        self.root.join(format!("models--{}", repo_id.replace('/', "--")))
    }

    pub fn blob_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo_id).join("blobs").join(etag)
    }

    pub fn incomplete_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo_id).join("blobs").join(format!("{etag}.incomplete"))
    }

    /// The lock file `huggingface_hub` holds (an exclusive `flock`) while it downloads a blob;
    /// Easel takes the same lock, so two pulls of one file (two Easel processes, or Easel and a
    /// Python tool) never write it at once.
    pub fn lock_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.root.join(".locks").join(format!("models--{}", repo_id.replace('/', "--"))).join(format!("{etag}.lock"))
    }

    pub fn snapshot_dir(&self, repo_id: &str, commit: &str) -> PathBuf {
        self.repo_dir(repo_id).join("snapshots").join(commit)
    }

    /// The commit `revision` pointed to when it was last pulled, if recorded.
    pub fn read_ref(&self, repo_id: &str, revision: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.repo_dir(repo_id).join("refs").join(revision)).ok()?;
        let commit = text.trim().to_string();
        check_commit(&commit).ok().map(|()| commit)
    }

    pub fn write_ref(&self, repo_id: &str, revision: &str, commit: &str) -> std::io::Result<()> {
        let path = self.repo_dir(repo_id).join("refs").join(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, commit)
    }

    /// Makes `snapshots/<commit>/<file>` point at the blob (a relative symlink, as
    /// `huggingface_hub` makes; a copy where symlinks are unavailable).
    pub fn link_snapshot_file(&self, repo_id: &str, commit: &str, file: &str, etag: &str) -> std::io::Result<()> {
        let link = self.snapshot_dir(repo_id, commit).join(file);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // From snapshots/<commit>/<a>/<b>/file back to the repo folder: one `..` per folder.
        let depth = 2 + Path::new(file).components().count() - 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link)?;
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&target, &link)
        }
        #[cfg(not(unix))]
        {
            std::fs::copy(self.blob_path(repo_id, etag), &link).map(|_| ())
        }
    }

    /// Every snapshot of every model repo in the cache (datasets and spaces are skipped).
    pub fn snapshots(&self) -> Vec<CachedSnapshot> {
        let Ok(repos) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut found = Vec::new();
        for repo in repos.filter_map(Result::ok) {
            let folder = repo.file_name().to_string_lossy().into_owned();
            let Some(rest) = folder.strip_prefix("models--") else { continue };
            let repo_id = rest.split("--").collect::<Vec<_>>().join("/");
            let refs = read_refs(&repo.path().join("refs"));
            let Ok(snapshots) = std::fs::read_dir(repo.path().join("snapshots")) else { continue };
            for snapshot in snapshots.filter_map(Result::ok) {
                let commit = snapshot.file_name().to_string_lossy().into_owned();
                let pointing = refs.iter().filter(|(_, c)| *c == commit).map(|(r, _)| r.clone()).collect();
                found.push(CachedSnapshot { repo_id: repo_id.clone(), dir: snapshot.path(), commit, refs: pointing });
            }
        }
        found.sort_by(|a, b| (&a.repo_id, &a.commit).cmp(&(&b.repo_id, &b.commit)));
        found
    }

    /// Removes a snapshot, the refs that point at it, and the blobs no other snapshot uses; the
    /// whole repo folder goes when nothing is left. Returns the bytes freed.
    pub fn remove_snapshot(&self, repo_id: &str, commit: &str) -> std::io::Result<u64> {
        let repo_dir = self.repo_dir(repo_id);
        let snapshot = self.snapshot_dir(repo_id, commit);
        let mut linked_elsewhere = std::collections::HashSet::new();
        let mut mine = std::collections::HashSet::new();
        if let Ok(others) = std::fs::read_dir(repo_dir.join("snapshots")) {
            for other in others.filter_map(Result::ok) {
                let set = if other.path() == snapshot { &mut mine } else { &mut linked_elsewhere };
                collect_blob_names(&other.path(), set);
            }
        }
        // Plain files in the snapshot (copies, where symlinks were unavailable) are freed too.
        let mut freed = regular_file_bytes(&snapshot);
        std::fs::remove_dir_all(&snapshot)?;
        for (name, pointed) in read_refs(&repo_dir.join("refs")) {
            if pointed == commit {
                std::fs::remove_file(repo_dir.join("refs").join(name))?;
            }
        }
        for blob in mine.difference(&linked_elsewhere) {
            let path = repo_dir.join("blobs").join(blob);
            freed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(path);
        }
        let snapshots_left = std::fs::read_dir(repo_dir.join("snapshots")).map(|mut d| d.next().is_some()).unwrap_or(false);
        if !snapshots_left {
            std::fs::remove_dir_all(&repo_dir)?;
        }
        Ok(freed)
    }
}

/// `<cache>/huggingface`, the cache being `XDG_CACHE_HOME` or `~/.cache`.
fn default_home(xdg_cache: Option<PathBuf>) -> PathBuf {
    let cache = xdg_cache.or_else(|| dirs::home_dir().map(|h| h.join(".cache")));
    cache.unwrap_or_else(|| PathBuf::from(".cache")).join("huggingface")
}

/// `(revision, commit)` for every ref file under `refs/` (revisions may hold `/`).
fn read_refs(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let (Ok(text), Ok(rel)) = (std::fs::read_to_string(&path), path.strip_prefix(base)) {
                out.push((rel.to_string_lossy().replace('\\', "/"), text.trim().to_string()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn regular_file_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match std::fs::symlink_metadata(e.path()) {
            Ok(m) if m.is_dir() => regular_file_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Names of the blobs the symlinks under `dir` point to.
fn collect_blob_names(dir: &Path, out: &mut std::collections::HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => collect_blob_names(&path, out),
            Ok(m) if m.file_type().is_symlink() => {
                if let Some(name) = std::fs::read_link(&path).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())) {
                    out.insert(name);
                }
            }
            _ => {}
        }
    }
}

/// `org/name` (or a bare `name`) of letters, digits, `-`, `_`, `.`; no `..`.
pub fn check_repo_id(repo_id: &str) -> Result<(), HubError> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && !p.contains("..")
            && !p.contains("--")
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = repo_id.split('/').collect();
    if (1..=2).contains(&parts.len()) && parts.iter().all(|p| part_ok(p)) {
        Ok(())
    } else {
        Err(HubError::BadName {
            what: "repository id",
            value: repo_id.to_string(),
            hint: "use the form org/name, e.g. nmkd/stable-diffusion-1.5-onnx-fp16",
        })
    }
}

/// A branch, tag or commit: path-safe segments separated by `/`.
pub fn check_revision(revision: &str) -> Result<(), HubError> {
    let ok = !revision.is_empty()
        && revision.len() <= 200
        && revision.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && revision.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(HubError::BadName { what: "revision", value: revision.to_string(), hint: "use a branch, tag or commit hash, e.g. main" })
    }
}

pub fn check_commit(commit: &str) -> Result<(), HubError> {
    if commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(HubError::Protocol(format!("the hub answered with an invalid commit hash {commit:?}")))
    }
}

/// Etags become blob file names: hex digits and `-` only.
pub fn check_etag(etag: &str) -> Result<(), HubError> {
    if !etag.is_empty() && etag.len() <= 128 && etag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(HubError::Protocol(format!("the hub answered with an unusable etag {etag:?}")))
    }
}

/// A repository file path: relative, no `..` or `.` segments, no empty segments. Checked
/// segment by segment: `Path::components` would quietly drop `.` and empty segments.
pub fn check_file_path(path: &str) -> Result<(), HubError> {
    let ok = !path.is_empty()
        && !path.contains('\\')
        && path.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(HubError::Protocol(format!("the hub listed an unsafe file path {path:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_root_follows_the_huggingface_hub_lookup() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(HubCache::from_env(env(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h")])).root(), Path::new("/c"));
        assert_eq!(HubCache::from_env(env(&[("HF_HOME", "/h")])).root(), Path::new("/h/hub"));
        assert_eq!(HubCache::from_env(env(&[("XDG_CACHE_HOME", "/x")])).root(), Path::new("/x/huggingface/hub"));
    }

    #[test]
    fn names_from_the_network_cannot_escape_the_cache() {
        assert!(check_repo_id("nmkd/stable-diffusion-1.5-onnx-fp16").is_ok());
        assert!(check_repo_id("gpt2").is_ok());
        for bad in ["", "a/b/c", "../x", "a/..", "a/.b", "a b/c", "a--b/c", "/abs"] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        assert!(check_revision("refs/pr/1").is_ok());
        for bad in ["", "../main", "a//b", "a/./b", "main\n"] {
            assert!(check_revision(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_path("unet/model.onnx").is_ok());
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\\b", "", "a/.", "a//b", "./a", "a/"] {
            assert!(check_file_path(bad).is_err(), "{bad}");
        }
        assert!(check_etag("0123abcdef").is_ok());
        assert!(check_etag("../../x").is_err());
    }

    #[test]
    fn snapshot_links_are_relative_and_removal_frees_only_unshared_blobs() {
        let root = std::env::temp_dir().join(format!("easel-hubcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = HubCache::new(&root);
        let repo = "org/model";
        let (c1, c2) = ("1".repeat(40), "2".repeat(40));
        std::fs::create_dir_all(cache.repo_dir(repo).join("blobs")).unwrap();
        std::fs::write(cache.blob_path(repo, "shared"), b"same in both").unwrap();
        std::fs::write(cache.blob_path(repo, "only1"), b"first only").unwrap();
        cache.link_snapshot_file(repo, &c1, "unet/model.onnx", "shared").unwrap();
        cache.link_snapshot_file(repo, &c1, "model_index.json", "only1").unwrap();
        cache.link_snapshot_file(repo, &c2, "unet/model.onnx", "shared").unwrap();
        cache.write_ref(repo, "main", &c1).unwrap();
        cache.write_ref(repo, "refs/pr/1", &c2).unwrap();

        let link = cache.snapshot_dir(repo, &c1).join("unet/model.onnx");
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("../../../blobs/shared"));
        assert_eq!(std::fs::read(&link).unwrap(), b"same in both");
        let snaps = cache.snapshots();
        assert_eq!(snaps.len(), 2);
        assert_eq!((snaps[0].repo_id.as_str(), snaps[0].refs.clone()), (repo, vec!["main".to_string()]));
        assert_eq!(snaps[1].refs, vec!["refs/pr/1".to_string()]);
        assert_eq!(cache.read_ref(repo, "refs/pr/1"), Some(c2.clone()));

        assert_eq!(cache.remove_snapshot(repo, &c1).unwrap(), b"first only".len() as u64);
        assert!(cache.blob_path(repo, "shared").exists());
        assert!(cache.read_ref(repo, "main").is_none());
        cache.remove_snapshot(repo, &c2).unwrap();
        assert!(!cache.repo_dir(repo).exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
