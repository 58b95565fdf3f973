//! Every model Easel can run, wherever it lives: folders under the models dir (converted models,
//! the bundled `tiny-sd`) and snapshots in the Hugging Face hub cache (pulled by Easel, or by
//! Python tools sharing the cache). Also owns the default-model choice and the list of hub
//! snapshots Easel pulled (the only hub models it will delete), both in `<data dir>/models.json`.
//!
//! Cheap to call: it reads directory entries and small files, never weights.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::api::{ModelEntry, ModelLocation};
use crate::config::Settings;
use crate::engine::model::is_model_dir;
use crate::hub::pull::ALIASES;
use crate::hub::HubCache;
use crate::model_files::{self, FileKind, NamedFile};

/// The model used when a request names none and no default is configured.
pub const FALLBACK_DEFAULT_MODEL: &str = "tiny-sd";
const STATE_FILE: &str = "models.json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no model named {name:?}; available: {}. Pull one with `easel pull sd15` or put a diffusers ONNX folder in the models dir", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NotFound { name: String, known: Vec<String> },
    #[error("{name} is in the shared Hugging Face cache but was not pulled by Easel, so Easel leaves it alone; remove it with the tool that downloaded it (e.g. `huggingface-cli delete-cache`)")]
    NotOwned { name: String },
    #[error("no file named {name:?} in the {kind} folders; available: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NoFile { kind: &'static str, name: String, known: Vec<String> },
    #[error("cannot update {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("the default model is fixed to {fixed:?} by --default-model, EASEL_DEFAULT_MODEL or default_model in easel.toml; remove that setting to choose the default here")]
    DefaultFixed { fixed: String },
}

/// LoRA files with their (UNet, text-encoder) weights, and the VAE file, of one generation.
pub type NetworkFiles = (Vec<(PathBuf, f32, f32)>, Option<PathBuf>);

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredState {
    #[serde(default)]
    default_model: Option<String>,
    /// `repo_id@commit` of every snapshot Easel pulled.
    #[serde(default)]
    pulled: BTreeSet<String>,
    /// The VAE file each model uses when a request names none (model name -> VAE file name).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    vaes: std::collections::BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct ModelRegistry {
    models_dir: PathBuf,
    /// Other tools' model folders (`--extra-models-dir`), read-only.
    extra_dirs: Vec<PathBuf>,
    hub: HubCache,
    state_path: PathBuf,
    configured_default: Option<String>,
    /// Serialises read-modify-write of the state file within this process.
    state_lock: Arc<Mutex<()>>,
}

/// A model found on disk before its size and precision are read.
struct Candidate {
    name: String,
    path: PathBuf,
    location: ModelLocation,
    repo_id: Option<String>,
    commit: Option<String>,
    aliases: Vec<String>,
}

impl Candidate {
    /// Whether `name` selects this model: its name, an alias, or `repo@commit`.
    fn answers_to(&self, name: &str) -> bool {
        self.name == name
            || self.aliases.iter().any(|a| a == name)
            || matches!((&self.repo_id, &self.commit), (Some(repo), Some(commit)) if name == format!("{repo}@{commit}"))
    }
}

impl ModelRegistry {
    pub fn new(models_dir: PathBuf, hub: HubCache, data_dir: &Path, configured_default: Option<String>) -> Self {
        Self {
            models_dir,
            extra_dirs: Vec::new(),
            hub,
            state_path: data_dir.join(STATE_FILE),
            configured_default,
            state_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Also reads these folders of other tools (read-only; layout detected, see [`model_files`]).
    pub fn with_extra_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.extra_dirs = dirs;
        self
    }

    pub fn from_settings(settings: &Settings) -> Self {
        Self::new(settings.models_dir.clone(), HubCache::new(&settings.hub_cache), &settings.data_dir, settings.default_model.clone())
            .with_extra_dirs(settings.extra_models_dirs.clone())
    }

    /// Every weights file of `kind` (checkpoints, LoRAs, VAEs, embeddings) in the models dir and
    /// the extra dirs.
    pub fn files(&self, kind: FileKind) -> Vec<NamedFile> {
        model_files::list(&self.models_dir, &self.extra_dirs, kind)
    }

    /// The file of `kind` that `name` selects (see [`model_files::find`]); the error lists what
    /// there is.
    pub fn find_file(&self, kind: FileKind, name: &str) -> Result<NamedFile, RegistryError> {
        model_files::find(&self.models_dir, &self.extra_dirs, kind, name).ok_or_else(|| RegistryError::NoFile {
            kind: kind.easel_folder(),
            name: name.to_string(),
            known: self.files(kind).into_iter().map(|f| f.name).collect(),
        })
    }

    /// The LoRA files (with their UNet and text-encoder weights) and the VAE file `settings` name.
    pub fn network_files(&self, settings: &crate::api::GenerationSettings) -> Result<NetworkFiles, RegistryError> {
        let loras = settings
            .all_loras()
            .iter()
            .map(|l| {
                let (unet, text) = l.weights();
                Ok((self.find_file(FileKind::Lora, &l.name)?.path, unet, text))
            })
            .collect::<Result<_, RegistryError>>()?;
        let vae = settings.vae.as_deref().map(|v| self.find_file(FileKind::Vae, v).map(|f| f.path)).transpose()?;
        Ok((loras, vae))
    }

    /// Every folder embeddings are read from: the models dir's, then the extra dirs'.
    pub fn embeddings_dirs(&self) -> Vec<PathBuf> {
        model_files::folders(&self.models_dir, &self.extra_dirs, FileKind::Embedding).into_iter().map(|(d, _)| d).collect()
    }

    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    pub fn hub_cache(&self) -> &HubCache {
        &self.hub
    }

    fn state(&self) -> StoredState {
        std::fs::read_to_string(&self.state_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    fn update_state(&self, change: impl FnOnce(&mut StoredState)) -> Result<(), RegistryError> {
        let _guard = self.state_lock.lock().expect("registry state lock");
        let mut state = self.state();
        change(&mut state);
        let json = serde_json::to_vec_pretty(&state).expect("state serialises");
        crate::atomic_file::write_atomically(&self.state_path, &json)
            .map_err(|e| RegistryError::Io { path: self.state_path.clone(), message: e.to_string() })
    }

    /// The default model's name, by the rule `docs/models.md` states: the configured one (flag,
    /// env, easel.toml), else the one chosen with `set_default`, when it names a model that
    /// exists; else `tiny-sd` when present; else the model added last (newest folder, file or
    /// hub snapshot). `tiny-sd` when there is no model at all (the error then says so).
    pub fn default_name(&self) -> String {
        self.default_in(&self.state(), &self.candidates())
    }

    fn default_in(&self, state: &StoredState, candidates: &[Candidate]) -> String {
        for chosen in [&self.configured_default, &state.default_model].into_iter().flatten() {
            if candidates.iter().any(|c| c.answers_to(chosen)) {
                return chosen.clone();
            }
        }
        if candidates.iter().any(|c| c.answers_to(FALLBACK_DEFAULT_MODEL)) || candidates.is_empty() {
            return FALLBACK_DEFAULT_MODEL.to_string();
        }
        let added = |c: &Candidate| std::fs::symlink_metadata(&c.path).and_then(|m| m.modified()).ok();
        candidates.iter().max_by_key(|c| (added(c), std::cmp::Reverse(c.name.clone()))).map(|c| c.name.clone()).unwrap_or_default()
    }

    /// Why the configured or stored default is not used (it names no model), for the log and
    /// `easel doctor`; `None` when it is used or none is set.
    pub fn default_problem(&self) -> Option<String> {
        let state = self.state();
        let candidates = self.candidates();
        let (what, chosen) = match (&self.configured_default, &state.default_model) {
            (Some(c), _) => ("configured default model (default_model / EASEL_DEFAULT_MODEL / --default-model)", c),
            (None, Some(s)) => ("default model chosen earlier", s),
            (None, None) => return None,
        };
        (!candidates.iter().any(|c| c.answers_to(chosen)))
            .then(|| format!("the {what} {chosen:?} is not among the models; using {:?} instead", self.default_in(&state, &candidates)))
    }

    fn candidates(&self) -> Vec<Candidate> {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.models_dir) {
            for path in entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_model_dir(p)) {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                found.push(Candidate { name, path, location: ModelLocation::ModelsDir, repo_id: None, commit: None, aliases: Vec::new() });
            }
        }
        for file in self.files(FileKind::Checkpoint) {
            let location = if file.extra { ModelLocation::ExtraDir } else { ModelLocation::ModelsDir };
            found.push(Candidate { name: file.name, path: file.path, location, repo_id: None, commit: None, aliases: Vec::new() });
        }
        for snapshot in self.hub.snapshots().into_iter().filter(|s| is_model_dir(&s.dir)) {
            let name = hub_model_name(&snapshot.repo_id, &snapshot.refs, &snapshot.commit);
            let aliases = ALIASES
                .iter()
                .filter(|a| a.repo_id == snapshot.repo_id && snapshot.refs.iter().any(|r| r == a.revision))
                .map(|a| a.name.to_string())
                .collect();
            found.push(Candidate {
                name,
                path: snapshot.dir,
                location: ModelLocation::HubCache,
                repo_id: Some(snapshot.repo_id),
                commit: Some(snapshot.commit),
                aliases,
            });
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Every runnable model, sorted by name.
    pub fn list(&self) -> Vec<ModelEntry> {
        let state = self.state();
        let candidates = self.candidates();
        let default = self.default_in(&state, &candidates);
        candidates.into_iter().map(|c| self.describe(c, &default, &state)).collect()
    }

    fn describe(&self, c: Candidate, default: &str, state: &StoredState) -> ModelEntry {
        let is_default = c.answers_to(default);
        let vae = state.vaes.get(&c.name).cloned();
        let (precision, source) = provenance(&c.path);
        let pulled = match (&c.repo_id, &c.commit) {
            (Some(repo), Some(commit)) => state.pulled.contains(&format!("{repo}@{commit}")),
            _ => false,
        };
        let is_file = c.path.is_file();
        let source = match c.location {
            ModelLocation::ModelsDir if is_file => "checkpoint file".into(),
            ModelLocation::ExtraDir => "checkpoint file in an extra models dir (read-only)".into(),
            ModelLocation::ModelsDir => source.unwrap_or_else(|| "local folder".into()),
            ModelLocation::HubCache if pulled => "pulled from the hub by Easel".into(),
            ModelLocation::HubCache => "hub cache (downloaded by another tool)".into(),
        };
        ModelEntry {
            hash: crate::engine::model::known_short_hash(&c.path),
            is_default,
            vae,
            removable: c.location == ModelLocation::ModelsDir || pulled,
            size_bytes: if is_file { std::fs::metadata(&c.path).map_or(0, |m| m.len()) } else { dir_size(&c.path) },
            precision,
            source,
            name: c.name,
            path: c.path,
            location: c.location,
            repo_id: c.repo_id,
            commit: c.commit,
            aliases: c.aliases,
        }
    }

    /// The model `name` selects: a folder name, a hub name (`org/name`, `org/name@revision`,
    /// `org/name@<commit>`), or an alias (`sd15`).
    pub fn find(&self, name: &str) -> Option<ModelEntry> {
        let name = name.trim();
        let candidates = self.candidates();
        let state = self.state();
        let default = self.default_in(&state, &candidates);
        let candidate = candidates.into_iter().find(|c| c.answers_to(name))?;
        Some(self.describe(candidate, &default, &state))
    }

    /// `name`, or the default model when `None`; the error lists what is available.
    pub fn resolve(&self, name: Option<&str>) -> Result<ModelEntry, RegistryError> {
        let wanted = name.map(str::to_string).unwrap_or_else(|| self.default_name());
        self.find(&wanted)
            .ok_or_else(|| RegistryError::NotFound { name: wanted, known: self.candidates().into_iter().map(|c| c.name).collect() })
    }

    /// Makes `name` the default (stored in the data dir, so it survives restarts). Refused while
    /// a setting fixes the default.
    pub fn set_default(&self, name: &str) -> Result<ModelEntry, RegistryError> {
        if let Some(fixed) = &self.configured_default {
            return Err(RegistryError::DefaultFixed { fixed: fixed.clone() });
        }
        let entry = self.resolve(Some(name))?;
        let chosen = entry.name.clone();
        self.update_state(|s| s.default_model = Some(chosen))?;
        Ok(ModelEntry { is_default: true, ..entry })
    }

    /// Makes `vae` (a name from the VAE files; `None` for the model's own) the VAE `model` uses
    /// when a request names none (stored in the data dir).
    pub fn set_vae(&self, model: &str, vae: Option<&str>) -> Result<ModelEntry, RegistryError> {
        let entry = self.resolve(Some(model))?;
        let file = vae.map(|v| self.find_file(FileKind::Vae, v)).transpose()?.map(|f| f.name);
        let key = entry.name.clone();
        self.update_state(|s| match &file {
            Some(name) => {
                s.vaes.insert(key, name.clone());
            }
            None => {
                s.vaes.remove(&key);
            }
        })?;
        Ok(ModelEntry { vae: file, ..entry })
    }

    /// Remembers that Easel pulled this snapshot (so `rm` may delete it later).
    pub fn record_pull(&self, repo_id: &str, commit: &str) -> Result<(), RegistryError> {
        let key = format!("{repo_id}@{commit}");
        self.update_state(|s| {
            s.pulled.insert(key);
        })
    }

    /// Deletes a model Easel owns; returns the bytes freed. A hub snapshot loses only the blobs no
    /// other snapshot shares. If it was the default, the default falls back.
    pub fn remove(&self, name: &str) -> Result<u64, RegistryError> {
        let entry = self.resolve(Some(name))?;
        if !entry.removable {
            return Err(RegistryError::NotOwned { name: entry.name });
        }
        let io = |e: std::io::Error| RegistryError::Io { path: entry.path.clone(), message: e.to_string() };
        let freed = match (&entry.repo_id, &entry.commit) {
            (Some(repo), Some(commit)) => self.hub.remove_snapshot(repo, commit).map_err(io)?,
            _ if entry.path.is_file() => {
                std::fs::remove_file(&entry.path).map_err(io)?;
                entry.size_bytes
            }
            _ => {
                let size = entry.size_bytes;
                std::fs::remove_dir_all(&entry.path).map_err(io)?;
                size
            }
        };
        let (key, names) = (entry.repo_id.as_ref().zip(entry.commit.as_ref()).map(|(r, c)| format!("{r}@{c}")), {
            let mut n = entry.aliases.clone();
            n.push(entry.name.clone());
            n
        });
        self.update_state(|s| {
            if let Some(key) = key {
                s.pulled.remove(&key);
            }
            if s.default_model.as_ref().is_some_and(|d| names.contains(d)) {
                s.default_model = None;
            }
        })?;
        Ok(freed)
    }
}

/// `org/name` for the snapshot `main` points to, `org/name@<ref>` for another branch or tag, and
/// `org/name@<commit>` for one pulled by commit.
pub fn hub_model_name(repo_id: &str, refs: &[String], commit: &str) -> String {
    if refs.iter().any(|r| r == "main") {
        repo_id.to_string()
    } else if let Some(first) = refs.first() {
        format!("{repo_id}@{first}")
    } else {
        format!("{repo_id}@{commit}")
    }
}

/// Total size of the files under `path`, following symlinks (hub snapshots are links to blobs).
pub fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match std::fs::metadata(e.path()) {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// `(precision, source)`: from `easel-model.json` (written by `models/sdtool`) when present,
/// otherwise the precision read from the UNet graph.
fn provenance(path: &Path) -> (String, Option<String>) {
    if path.is_file() {
        return (checkpoint_precision(path), None);
    }
    let json = std::fs::read_to_string(path.join("easel-model.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let recorded = json.as_ref().and_then(|j| j["dtype"].as_str()).map(str::to_string);
    let source = json.as_ref().and_then(|j| j["source"]["kind"].as_str()).map(str::to_string);
    if let Some(weights) = crate::engine::model::DiffusersWeights::find(path).filter(|_| !path.join("unet/model.onnx").is_file()) {
        return (checkpoint_precision(&weights.unet), Some(source.unwrap_or_else(|| "diffusers folder (.safetensors)".into())));
    }
    let precision = recorded.unwrap_or_else(|| {
        crate::engine::onnx_inspect::summarize(&path.join("unet/model.onnx"))
            .map(|s| s.precision("sample").to_string())
            .unwrap_or_else(|_| "unknown".into())
    });
    (precision, source)
}

/// The element type most of a checkpoint's tensors have (`float16`, `bfloat16`, `float32`), from
/// its header.
fn checkpoint_precision(path: &Path) -> String {
    crate::engine::checkpoint::Checkpoint::open(path).map(|c| c.precision().to_string()).unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(data: &Path) -> ModelRegistry {
        let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        ModelRegistry::new(models, HubCache::new(data.join("hub")), data, None)
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("easel-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tiny_model_is_listed_as_default() {
        let data = temp("tiny");
        let models = registry(&data).list();
        let tiny = models.iter().find(|m| m.name == "tiny-sd").expect("tiny-sd listed");
        assert!(tiny.is_default && tiny.removable);
        assert_eq!((tiny.precision.as_str(), tiny.location), ("float32", ModelLocation::ModelsDir));
        assert!(tiny.size_bytes > 1_000_000 && tiny.size_bytes < 20_000_000, "{}", tiny.size_bytes);
    }

    #[test]
    fn names_cannot_escape_the_models_dir() {
        let data = temp("escape");
        let r = registry(&data);
        assert!(r.find("tiny-sd").is_some());
        for bad in ["../models/tiny-sd", "/etc", "..", "", "tiny-sd/../tiny-sd", "nonexistent"] {
            assert!(r.find(bad).is_none(), "{bad}");
        }
        let err = r.resolve(Some("nonexistent")).unwrap_err().to_string();
        assert!(err.contains("tiny-sd") && err.contains("easel pull"), "{err}");
    }

    #[test]
    fn hub_snapshots_are_named_by_repo_and_ref_and_only_pulled_ones_are_removable() {
        let data = temp("hub");
        let r = registry(&data);
        let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd");
        let commit = "a".repeat(40);
        let snapshot = r.hub_cache().snapshot_dir(ALIASES[0].repo_id, &commit);
        copy_dir(&tiny, &snapshot);
        r.hub_cache().write_ref(ALIASES[0].repo_id, "onnx", &commit).unwrap();

        let entry = r.find("sd15").expect("alias finds the snapshot");
        assert_eq!(entry.name, format!("{}@onnx", ALIASES[0].repo_id));
        assert_eq!(entry.aliases, vec!["sd15".to_string()]);
        assert!(!entry.removable, "not pulled by Easel");
        assert!(matches!(r.remove("sd15"), Err(RegistryError::NotOwned { .. })));
        assert!(r.find(&format!("{}@{commit}", ALIASES[0].repo_id)).is_some());

        r.set_default("sd15").unwrap();
        assert_eq!(r.default_name(), entry.name);
        assert!(r.list().iter().any(|m| m.is_default && m.name == entry.name));
        r.record_pull(ALIASES[0].repo_id, &commit).unwrap();
        assert!(r.find("sd15").unwrap().removable);
        assert!(r.remove("sd15").unwrap() > 1_000_000);
        assert!(r.find("sd15").is_none());
        assert_eq!(r.default_name(), FALLBACK_DEFAULT_MODEL, "removing the default falls back");
    }

    /// A models dir whose only model is `oracle-tiny` (the tiny model under another name).
    fn models_without_tiny_sd(data: &Path) -> PathBuf {
        let models = data.join("models");
        copy_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd"), &models.join("oracle-tiny"));
        models
    }

    #[test]
    fn without_tiny_sd_the_default_is_a_model_that_exists() {
        let data = temp("no-tiny");
        let models = models_without_tiny_sd(&data);
        let r = ModelRegistry::new(models.clone(), HubCache::new(data.join("hub")), &data, None);
        assert_eq!(r.default_name(), "oracle-tiny");
        assert_eq!(r.resolve(None).unwrap().name, "oracle-tiny");
        assert!(r.list().iter().any(|m| m.name == "oracle-tiny" && m.is_default));
        assert_eq!(r.default_problem(), None);
        // Of several, the one added last.
        std::thread::sleep(std::time::Duration::from_millis(20));
        copy_dir(&models.join("oracle-tiny"), &models.join("newer"));
        assert_eq!(r.default_name(), "newer");
        // A stored or configured default that is gone falls back the same way, and says so.
        r.set_default("oracle-tiny").unwrap();
        std::fs::remove_dir_all(models.join("oracle-tiny")).unwrap();
        assert_eq!(r.default_name(), "newer");
        assert!(r.default_problem().is_some_and(|p| p.contains("\"oracle-tiny\"") && p.contains("\"newer\"")), "{:?}", r.default_problem());
        let configured = ModelRegistry::new(models, HubCache::new(data.join("hub")), &data, Some("tiny-sd".into()));
        assert_eq!(configured.default_name(), "newer");
        assert!(configured.default_problem().is_some_and(|p| p.contains("configured")));
    }

    #[test]
    fn a_configured_default_wins_and_cannot_be_changed_here() {
        let data = temp("fixed");
        let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        let r = ModelRegistry::new(models, HubCache::new(data.join("hub")), &data, Some("tiny-sd".into()));
        assert_eq!(r.default_name(), "tiny-sd");
        let err = r.set_default("tiny-sd").unwrap_err();
        assert!(matches!(err, RegistryError::DefaultFixed { .. }) && err.to_string().contains("EASEL_DEFAULT_MODEL"), "{err}");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
            if e.path().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}
