//! Owns where single-file weights live and what they are called: the models dir's `checkpoints/`,
//! `loras/`, `vae/` and `embeddings/` folders, and the same folders of other tools' installs
//! (`--extra-models-dir`, read-only), whose layout is detected: AUTOMATIC1111 (`models/Stable-diffusion`,
//! `models/Lora`, `models/VAE`, `embeddings/`) or ComfyUI (`models/checkpoints`, `models/loras`,
//! `models/vae`, `models/embeddings`). Names are paths relative to their folder with `/`, as
//! those tools show them (`sd15-random.safetensors`, `style/ink.safetensors`).
//!
//! Cheap to call: directory entries only; never reads weights. Names are matched against the
//! listing, never joined onto a path, so a name cannot reach outside these folders.

use std::path::{Path, PathBuf};

/// The kinds of weight files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Checkpoint,
    Lora,
    Vae,
    Embedding,
}

impl From<crate::api::networks::WeightsKind> for FileKind {
    fn from(kind: crate::api::networks::WeightsKind) -> Self {
        use crate::api::networks::WeightsKind;
        match kind {
            WeightsKind::Checkpoint => FileKind::Checkpoint,
            WeightsKind::Lora => FileKind::Lora,
            WeightsKind::Vae => FileKind::Vae,
        }
    }
}

impl FileKind {
    /// The folder in Easel's models dir.
    pub fn easel_folder(self) -> &'static str {
        match self {
            FileKind::Checkpoint => "checkpoints",
            FileKind::Lora => "loras",
            FileKind::Vae => "vae",
            FileKind::Embedding => crate::engine::model::EMBEDDINGS_DIR,
        }
    }

    /// Folders relative to an A1111 install root.
    fn a1111_folders(self) -> &'static [&'static str] {
        match self {
            FileKind::Checkpoint => &["models/Stable-diffusion"],
            FileKind::Lora => &["models/Lora", "models/LyCORIS"],
            FileKind::Vae => &["models/VAE"],
            FileKind::Embedding => &["embeddings"],
        }
    }

    /// Folders relative to a ComfyUI install root.
    fn comfyui_folders(self) -> &'static [&'static str] {
        match self {
            FileKind::Checkpoint => &["models/checkpoints"],
            FileKind::Lora => &["models/loras"],
            FileKind::Vae => &["models/vae"],
            FileKind::Embedding => &["models/embeddings"],
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            FileKind::Embedding => crate::engine::prompt::embeddings::EMBEDDING_EXTENSIONS,
            _ => &["safetensors"],
        }
    }
}

/// Which tool's layout an extra folder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    A1111,
    ComfyUi,
    Easel,
}

/// The layout of `dir` and the install root it is relative to: an A1111 or ComfyUI install, or
/// their `models` folder given directly, or a folder laid out like Easel's models dir.
pub fn detect_layout(dir: &Path) -> (Layout, PathBuf) {
    if dir.join("models/Stable-diffusion").is_dir() {
        return (Layout::A1111, dir.to_path_buf());
    }
    if dir.join("models/checkpoints").is_dir() {
        return (Layout::ComfyUi, dir.to_path_buf());
    }
    if dir.join("Stable-diffusion").is_dir() {
        // A1111's models folder: its embeddings/ is beside it, in the install root.
        let root = std::fs::canonicalize(dir).ok().and_then(|d| d.parent().map(Path::to_path_buf));
        return (Layout::A1111, root.unwrap_or_else(|| dir.join("..")));
    }
    (if dir.join("checkpoints").is_dir() && dir.join("loras").is_dir() { Layout::ComfyUi } else { Layout::Easel }, dir.to_path_buf())
}

/// One weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFile {
    /// The path relative to its folder, with `/`.
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Whether it is in an extra (read-only) folder.
    pub extra: bool,
}

impl NamedFile {
    /// The name without its extension (what `<lora:NAME>` uses).
    pub fn stem(&self) -> &str {
        self.name.rsplit_once('.').map_or(&self.name, |(stem, _)| stem)
    }
}

/// Most folder levels searched below a folder.
const MAX_DEPTH: usize = 4;

/// The folders searched for `kind`: the models dir's own first, then each extra dir's.
pub fn folders(models_dir: &Path, extra_dirs: &[PathBuf], kind: FileKind) -> Vec<(PathBuf, bool)> {
    let mut out = vec![(models_dir.join(kind.easel_folder()), false)];
    for dir in extra_dirs {
        let (layout, root) = detect_layout(dir);
        let subs: Vec<String> = match layout {
            Layout::A1111 => kind.a1111_folders().iter().map(|s| s.to_string()).collect(),
            Layout::ComfyUi if root.join("models").is_dir() => kind.comfyui_folders().iter().map(|s| s.to_string()).collect(),
            Layout::ComfyUi | Layout::Easel => vec![kind.easel_folder().to_string()],
        };
        out.extend(subs.into_iter().map(|s| (root.join(s), true)));
    }
    out
}

/// Every file of `kind`, sorted by name within each folder; a name found twice keeps the first
/// (the models dir wins over extra dirs).
pub fn list(models_dir: &Path, extra_dirs: &[PathBuf], kind: FileKind) -> Vec<NamedFile> {
    let mut found: Vec<NamedFile> = Vec::new();
    for (folder, extra) in folders(models_dir, extra_dirs, kind) {
        let mut here = Vec::new();
        walk(&folder, "", 0, kind, extra, &mut here);
        here.sort_by(|a, b| a.name.cmp(&b.name));
        for file in here {
            if !found.iter().any(|f| f.name == file.name) {
                found.push(file);
            }
        }
    }
    found
}

fn walk(dir: &Path, prefix: &str, depth: usize, kind: FileKind, extra: bool, out: &mut Vec<NamedFile>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, &relative, depth + 1, kind, extra, out);
            }
        } else if path.extension().is_some_and(|e| kind.extensions().iter().any(|x| e.eq_ignore_ascii_case(x))) {
            out.push(NamedFile { name: relative, path, size_bytes: meta.len(), extra });
        }
    }
}

/// The file of `kind` that `name` selects: its relative name, with or without the extension, or
/// (for LoRAs, as A1111's `<lora:NAME>`) its file name without folder and extension.
pub fn find(models_dir: &Path, extra_dirs: &[PathBuf], kind: FileKind, name: &str) -> Option<NamedFile> {
    let name = name.trim();
    let files = list(models_dir, extra_dirs, kind);
    let exact = files.iter().find(|f| f.name == name || f.stem() == name).cloned();
    exact.or_else(|| files.into_iter().find(|f| f.stem().rsplit('/').next() == Some(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("easel-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn layouts_of_both_tools_are_found_and_names_are_relative() {
        let root = temp("layouts");
        let (models, a1111, comfy) = (root.join("models"), root.join("webui"), root.join("ComfyUI"));
        touch(&models.join("loras/mine.safetensors"));
        touch(&a1111.join("models/Stable-diffusion/sd15-random.safetensors"));
        touch(&a1111.join("models/Lora/style/ink.safetensors"));
        touch(&a1111.join("models/Lora/notes.txt"));
        touch(&comfy.join("models/checkpoints/other.safetensors"));
        touch(&comfy.join("models/vae/ft-mse.safetensors"));
        let extra = vec![a1111.clone(), comfy.clone()];
        assert_eq!(detect_layout(&a1111).0, Layout::A1111);
        assert_eq!(detect_layout(&comfy).0, Layout::ComfyUi);
        let names = |kind| list(&models, &extra, kind).into_iter().map(|f| (f.name, f.extra)).collect::<Vec<_>>();
        assert_eq!(names(FileKind::Checkpoint), vec![("sd15-random.safetensors".into(), true), ("other.safetensors".into(), true)]);
        assert_eq!(names(FileKind::Lora), vec![("mine.safetensors".into(), false), ("style/ink.safetensors".into(), true)]);
        assert_eq!(names(FileKind::Vae), vec![("ft-mse.safetensors".to_string(), true)]);
        for name in ["style/ink.safetensors", "style/ink", "ink"] {
            assert_eq!(find(&models, &extra, FileKind::Lora, name).unwrap().name, "style/ink.safetensors", "{name}");
        }
        for bad in ["../webui/models/Lora/style/ink.safetensors", "/etc/passwd", "", "notes"] {
            assert!(find(&models, &extra, FileKind::Lora, bad).is_none(), "{bad}");
        }
        // The models folder of an A1111 install, given directly.
        assert_eq!(list(&models, &[a1111.join("models")], FileKind::Checkpoint).len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }
}
