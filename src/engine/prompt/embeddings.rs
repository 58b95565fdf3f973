//! Owns textual-inversion embeddings: finding them (the `embeddings/` folder of the models dir
//! and files named on the command line), reading their vectors from untrusted files (A1111 and
//! diffusers `.pt`/`.bin` through the pickle-free reader in `torch_file`, `.safetensors` with
//! `emb_params`, `clip_l` or a single tensor), and matching their names in a prompt (A1111: the
//! name's tokens anywhere in the text; ComfyUI: `embedding:name`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::chunks::Vocabulary;
use crate::engine::torch_file::{self, DType, Value};

/// File extensions read as embeddings, in ComfyUI's lookup order.
pub const EMBEDDING_EXTENSIONS: &[&str] = &["safetensors", "pt", "bin"];
/// Most vectors one embedding may have (A1111 trains up to 75).
pub const MAX_VECTORS: usize = 75;
/// Largest embedding file read.
pub const MAX_EMBEDDING_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("cannot read embedding {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("embedding {path} is {size} bytes; embeddings are at most {MAX_EMBEDDING_BYTES} bytes")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("embedding {path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// An embedding file found on disk, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingFile {
    /// What prompts call it: the file stem (e.g. `easynegative`).
    pub name: String,
    pub path: PathBuf,
}

/// The embedding files of a folder (recursively, like both tools), by name; a name found twice
/// keeps the first in path order. Unreadable folders give an empty list.
pub fn scan_dir(dir: &Path) -> Vec<EmbeddingFile> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(folder) = stack.pop() {
        visited += 1;
        if visited > 1000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
            } else if let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) {
                let ext = ext.to_string_lossy().to_ascii_lowercase();
                if EMBEDDING_EXTENSIONS.contains(&ext.as_str()) {
                    found.entry(stem.to_string_lossy().into_owned()).or_insert(path);
                }
            }
        }
    }
    found.into_iter().map(|(name, path)| EmbeddingFile { name, path }).collect()
}

/// One embedding's vectors: `rows` × `dim` float32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Reads the vectors of an embedding file (never unpickling; see `torch_file`).
pub fn read_vectors(path: &Path) -> Result<Vectors, EmbeddingError> {
    read_file(path).map(|(vectors, _)| vectors)
}

/// Reads an embedding file once: its vectors, and A1111's short hash of the file (the first 12
/// hex digits of its sha256, for `TI hashes`).
fn read_file(path: &Path) -> Result<(Vectors, String), EmbeddingError> {
    use sha2::{Digest, Sha256};
    let io = |source| EmbeddingError::Io { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_EMBEDDING_BYTES {
        return Err(EmbeddingError::TooLarge { path: path.to_path_buf(), size });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let format = |message: String| EmbeddingError::Format { path: path.to_path_buf(), message };
    let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let (shape, data) = if is_safetensors { from_safetensors(&bytes).map_err(format)? } else { from_torch(&bytes).map_err(format)? };
    let (rows, dim) = match shape.as_slice() {
        [dim] => (1, *dim),
        [rows, dim] => (*rows, *dim),
        other => return Err(format(format!("the tensor has shape {other:?}, expected [vectors, dim]"))),
    };
    if rows == 0 || rows > MAX_VECTORS {
        return Err(format(format!("it has {rows} vectors; an embedding has 1 to {MAX_VECTORS}")));
    }
    let short_hash = format!("{:x}", Sha256::digest(&bytes))[..12].to_string();
    Ok((Vectors { rows, dim, data }, short_hash))
}

fn from_safetensors(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a readable safetensors file ({e})"))?;
    let names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    let pick = ["emb_params", "clip_l"].into_iter().find(|k| names.iter().any(|n| n == k)).map(str::to_string).or_else(|| {
        let mut matrices = names.iter().filter(|n| n.as_str() != "clip_g");
        match (matrices.next(), matrices.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    });
    let name = pick.ok_or_else(|| format!("no embedding tensor among {names:?} (expected emb_params, clip_l or a single tensor)"))?;
    let view = tensors.tensor(&name).map_err(|e| e.to_string())?;
    let dtype = match view.dtype() {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::F64 => DType::F64,
        other => return Err(format!("tensor {name} has dtype {other:?}; embeddings are floating point")),
    };
    Ok((view.shape().to_vec(), torch_file::to_f32(view.data(), dtype)))
}

fn from_torch(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let value = torch_file::read(bytes).map_err(|e| e.to_string())?;
    // A1111 / textual_inversion: {"string_to_param": {"*": tensor}} (a dict or a ParameterDict).
    if let Some(params) = value.get("string_to_param") {
        let params = params.get("_parameters").unwrap_or(params);
        return first_tensor(params).ok_or_else(|| "string_to_param holds no tensor".to_string());
    }
    // diffusers `learned_embeds.bin`: {"<token>": tensor}.
    match &value {
        Value::Dict(items) if items.len() == 1 => first_tensor(&value).ok_or_else(|| "its only entry is not a tensor".to_string()),
        Value::Tensor(t) => Ok((t.shape.clone(), t.data.clone())),
        _ => Err("no string_to_param and not a single tensor: not a textual-inversion embedding".to_string()),
    }
}

fn first_tensor(value: &Value) -> Option<(Vec<usize>, Vec<f32>)> {
    match value {
        Value::Dict(items) => items.iter().find_map(|(_, v)| match v {
            Value::Tensor(t) => Some((t.shape.clone(), t.data.clone())),
            _ => None,
        }),
        _ => None,
    }
}

/// One embedding ready for a prompt.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub name: String,
    /// A1111's short hash of the file (the first 12 hex digits of its sha256), for `TI hashes`.
    pub short_hash: String,
    /// The tokens of its name (A1111 finds an embedding by these tokens in the prompt).
    pub name_ids: Vec<u32>,
    pub vectors: Vectors,
}

/// The embeddings a prompt may use, in a fixed order (a [`super::chunks::Token::Vector`] names
/// one by index).
#[derive(Debug, Clone, Default)]
pub struct EmbeddingSet {
    pub embeddings: Vec<Embedding>,
    /// Files that could not be used, with the reason (reported, never fatal).
    pub skipped: Vec<String>,
}

impl EmbeddingSet {
    /// Reads the files among `files` whose name occurs in one of `texts` (case-insensitively;
    /// the rest are never opened), keeping those whose width is `dim`.
    pub fn for_texts(files: &[EmbeddingFile], texts: &[&str], dim: usize, vocab: &dyn Vocabulary) -> Self {
        let lowered: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
        let mut embeddings = Vec::new();
        let mut skipped = Vec::new();
        for file in files {
            let name = file.name.to_lowercase();
            if !lowered.iter().any(|t| t.contains(&name)) {
                continue;
            }
            match read_file(&file.path) {
                Ok((vectors, short_hash)) if vectors.dim == dim => {
                    let name_ids = vocab.ids(&file.name);
                    embeddings.push(Embedding { name: file.name.clone(), short_hash, name_ids, vectors });
                }
                Ok((vectors, _)) => skipped.push(format!(
                    "{}: vectors of width {} do not fit this model's text encoder ({dim}; an embedding for another model family?)",
                    file.name, vectors.dim
                )),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        EmbeddingSet { skipped, ..EmbeddingSet::new(embeddings) }
    }

    /// A set of embeddings already read, in lookup order (A1111 tries longer names first where
    /// several start with the same token).
    pub fn new(mut embeddings: Vec<Embedding>) -> Self {
        embeddings.sort_by_key(|e| std::cmp::Reverse(e.name_ids.len()));
        EmbeddingSet { embeddings, skipped: Vec::new() }
    }

    pub fn rows(&self, embedding: usize) -> usize {
        self.embeddings[embedding].vectors.rows
    }

    /// A1111's `find_embedding_at_position`: the embedding whose name's tokens start at
    /// `ids[position]`, with the number of tokens the name covers.
    pub fn match_at(&self, ids: &[u32], position: usize) -> Option<(usize, usize)> {
        self.embeddings.iter().enumerate().find_map(|(i, e)| {
            let end = position + e.name_ids.len();
            (!e.name_ids.is_empty() && ids.get(position..end) == Some(&e.name_ids[..])).then_some((i, e.name_ids.len()))
        })
    }

    /// ComfyUI's lookup: the embedding named exactly `name` (with or without its extension).
    pub fn find_by_name(&self, name: &str) -> Option<usize> {
        let stem = EMBEDDING_EXTENSIONS.iter().find_map(|ext| name.strip_suffix(&format!(".{ext}"))).unwrap_or(name);
        self.embeddings.iter().position(|e| e.name == stem)
    }

    /// The row `row` of embedding `embedding`.
    pub fn vector(&self, embedding: usize, row: usize) -> &[f32] {
        let v = &self.embeddings[embedding].vectors;
        &v.data[row * v.dim..(row + 1) * v.dim]
    }
}
