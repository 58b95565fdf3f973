//! A model on the wire: every model Easel can run as the REST API, the server functions and the
//! CLI list it, and the short names (aliases) for known-good hub repositories.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a model's files are.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelLocation {
    ModelsDir,
    HubCache,
    /// A folder of another tool given with `--extra-models-dir` (read-only).
    ExtraDir,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelEntry {
    /// What requests put in `model`: the folder name, or the hub repo id (`org/name`, with
    /// `@revision` when it is not `main`).
    pub name: String,
    pub path: PathBuf,
    pub location: ModelLocation,
    /// `float32`, `float16`, `int8`, or `unknown`.
    pub precision: String,
    /// Where it came from, in words (`converted`, `random`, `pulled from the hub`, ...).
    pub source: String,
    pub repo_id: Option<String>,
    pub commit: Option<String>,
    /// Short names that also select this model (`sd15`).
    pub aliases: Vec<String>,
    pub size_bytes: u64,
    pub is_default: bool,
    /// Whether `easel models rm` may delete it: folders in the models dir, and hub snapshots
    /// Easel pulled itself (never ones another tool put in the shared cache).
    pub removable: bool,
    /// The VAE file it uses when a request names none (`None`: its own).
    #[serde(default)]
    pub vae: Option<String>,
    /// A1111's short hash (`Model hash`, 10 hex digits) once known: recorded by a conversion or
    /// computed at the model's first load (hashing a checkpoint reads all of it).
    #[serde(default)]
    pub hash: Option<String>,
}

/// A short name for a known-good hub repository (`sd15`), offered by `easel pull` and the Models page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasView {
    pub name: String,
    pub repo_id: String,
    pub revision: String,
    pub description: String,
}

impl AliasView {
    /// What to pull: `repo_id@revision`.
    pub fn target(&self) -> String {
        format!("{}@{}", self.repo_id, self.revision)
    }
}
