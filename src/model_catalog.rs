//! The models Easel can run: every folder under the models dir that holds a complete diffusers
//! ONNX layout. Cheap to call (reads directory entries and small JSON files, never weights).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::model::check_layout;

/// The model used when a request names none and no default is configured.
pub const FALLBACK_DEFAULT_MODEL: &str = "tiny-sd";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelEntry {
    /// Folder name; what requests put in `model`.
    pub name: String,
    pub path: PathBuf,
    /// `float32`, `float16`, `int8`, or `unknown`.
    pub precision: String,
    /// Where it came from (`converted`, `random`, ...), from `easel-model.json` when present.
    pub source: String,
    pub size_bytes: u64,
    pub is_default: bool,
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn provenance(path: &Path) -> (String, String) {
    let json = std::fs::read_to_string(path.join("easel-model.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let precision = json.as_ref().and_then(|j| j["dtype"].as_str()).unwrap_or("unknown").to_string();
    let source = json.as_ref().and_then(|j| j["source"]["kind"].as_str()).unwrap_or("local folder").to_string();
    (precision, source)
}

/// Every complete model under `models_dir`, sorted by name; `default` marks the default one.
pub fn list_models(models_dir: &Path, default: &str) -> Vec<ModelEntry> {
    let Ok(entries) = std::fs::read_dir(models_dir) else { return Vec::new() };
    let mut models: Vec<ModelEntry> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| check_layout(p).is_ok())
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (precision, source) = provenance(&path);
            ModelEntry { is_default: name == default, size_bytes: dir_size(&path), name, path, precision, source }
        })
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    models
}

/// The folder of the model called `name`, if it is in the list. Names are folder names, never
/// paths, so a request cannot point Easel at an arbitrary directory.
pub fn find_model(models_dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
    let dir = models_dir.join(name);
    (plain && check_layout(&dir).is_ok()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    #[test]
    fn tiny_model_is_listed_as_default() {
        let models = list_models(&models_dir(), "tiny-sd");
        let tiny = models.iter().find(|m| m.name == "tiny-sd").expect("tiny-sd listed");
        assert!(tiny.is_default);
        assert_eq!(tiny.precision, "float32");
        assert!(tiny.size_bytes > 1_000_000 && tiny.size_bytes < 20_000_000, "{}", tiny.size_bytes);
    }

    #[test]
    fn names_cannot_escape_the_models_dir() {
        assert!(find_model(&models_dir(), "tiny-sd").is_some());
        for bad in ["../models/tiny-sd", "/etc", "..", "", "tiny-sd/../tiny-sd", "nonexistent"] {
            assert!(find_model(&models_dir(), bad).is_none(), "{bad}");
        }
    }
}
