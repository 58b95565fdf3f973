//! Owns single-file Stable Diffusion checkpoints (`.safetensors`) as weights for a known graph:
//! recognising what a file is from its keys (SD 1.x, with its UNet's input channels and context
//! width; SD 2.x, SDXL, a LoRA, a standalone VAE), refusing pickles, and turning its tensors into
//! the initializers a weight-free template graph (`models/templates/<arch>/<graph>/`, made by
//! `sdtool template`) declares as external, following the template's `weights.json`: the tensor
//! under its LDM key (or diffusers key), cast, reshaped and transposed as recorded.
//!
//! Untrusted input: the header is bounded and every tensor's offsets, size and dtype are checked
//! against the file before any tensor is read, and every tensor's shape against the template
//! before it is used. Most tensors are read by ONNX Runtime itself from the file at the checked
//! offsets; the few Easel converts (LoRA-patched ones) are read one at a time (no whole-file
//! buffer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::onnx_edit::{DataPlace, Placement, SourceLayout, Step};
use super::torch_file::{self, DType};
use super::weights_buffer::{packed_size, GraphWeights, WeightsBuffer, WeightsFile};

/// What a template's weights file says (`models/tooling/template.py` writes it).
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateWeights {
    pub format: String,
    pub version: u32,
    pub graph: String,
    /// The widths the template was made with (`hidden_size`, `in_channels`, ...).
    #[serde(default)]
    pub architecture: serde_json::Value,
    pub initializers: Vec<TemplateInitializer>,
}

impl TemplateWeights {
    /// Bytes every initializer takes packed in a [`WeightsBuffer`].
    pub fn packed_size(&self) -> usize {
        self.initializers.iter().map(|i| packed_size(i.shape.iter().product(), &i.dtype)).sum()
    }
}

/// One external initializer of a template and the checkpoint tensor it comes from.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateInitializer {
    pub name: String,
    pub diffusers: String,
    pub ldm: String,
    pub diffusers_shape: Vec<usize>,
    pub ldm_shape: Vec<usize>,
    /// Transpose the (2-D) diffusers-shaped tensor: `nn.Linear` weights are `MatMul` operands.
    pub transpose: bool,
    /// The initializer's shape in the graph.
    pub shape: Vec<usize>,
    /// `float32` or `float16`.
    pub dtype: String,
}

/// The format tag and version of `weights.json` this reader understands.
const WEIGHTS_FORMAT: (&str, u32) = ("easel-template-weights", 1);

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "{path} is a pickle (.ckpt/.pt); Easel does not load pickles because they can run code. Convert it once with \
         `models/sdtool convert {path} OUT` (or save it as .safetensors) and load that"
    )]
    Pickle { path: PathBuf },
    #[error("{path} is not a readable .safetensors file ({message}); it may be truncated or damaged")]
    Damaged { path: PathBuf, message: String },
    #[error("{path} is {kind}, not a Stable Diffusion 1.x checkpoint")]
    NotSd1 { path: PathBuf, kind: CheckpointKind },
    #[error("{path} has no tensor {ldm} (nor {diffusers}) for the {graph} graph")]
    Missing { path: PathBuf, graph: String, ldm: String, diffusers: String },
    #[error("{path}: tensor {key} has shape {got:?}; the {graph} graph needs {want:?}")]
    Shape { path: PathBuf, graph: String, key: String, got: Vec<usize>, want: Vec<usize> },
    #[error("{path}: tensor {key} is {dtype}; checkpoint weights are float32, float16 or bfloat16")]
    Dtype { path: PathBuf, key: String, dtype: String },
    #[error("template {path}: {message}")]
    Template { path: PathBuf, message: String },
}

/// What a file of weights is, from its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointKind {
    /// An SD 1.x checkpoint: the UNet's input channels (4, or 9 for inpainting) and its
    /// cross-attention width (768 for SD 1.x; 32 for the tiny test model).
    Sd1 {
        in_channels: usize,
        context_dim: usize,
    },
    Sd2,
    Sdxl,
    Lora,
    Vae,
    Unknown,
}

impl std::fmt::Display for CheckpointKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointKind::Sd1 { in_channels: 9, .. } => f.write_str("an SD 1.x inpainting checkpoint"),
            CheckpointKind::Sd1 { .. } => f.write_str("an SD 1.x checkpoint"),
            CheckpointKind::Sd2 => f.write_str("an SD 2.x checkpoint (not supported yet)"),
            CheckpointKind::Sdxl => f.write_str("an SDXL checkpoint (not supported yet)"),
            CheckpointKind::Lora => f.write_str("a LoRA (load it with a model, not as one)"),
            CheckpointKind::Vae => f.write_str("a standalone VAE (choose it as a model's VAE)"),
            CheckpointKind::Unknown => f.write_str("not a Stable Diffusion checkpoint Easel knows"),
        }
    }
}

const UNET_CONV_IN: &str = "model.diffusion_model.input_blocks.0.0.weight";
const UNET_CROSS_ATTENTION: &str = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight";
/// The same two tensors in a diffusers folder's UNet file (`unet/diffusion_pytorch_model.safetensors`).
const DIFFUSERS_UNET_CONV_IN: &str = "conv_in.weight";
const DIFFUSERS_UNET_CROSS_ATTENTION: &str = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";

/// Recognises a checkpoint (or a diffusers folder's UNet file) from its keys and a few shapes.
pub fn classify(shapes: &HashMap<String, Vec<usize>>) -> CheckpointKind {
    let any = |f: &dyn Fn(&str) -> bool| shapes.keys().any(|k| f(k));
    if any(&|k| k.starts_with("conditioner.embedders.") || k == "add_embedding.linear_1.weight") {
        return CheckpointKind::Sdxl;
    }
    if any(&|k| k.starts_with("cond_stage_model.model.")) {
        return CheckpointKind::Sd2;
    }
    if let Some(conv_in) = shapes.get(UNET_CONV_IN).or_else(|| shapes.get(DIFFUSERS_UNET_CONV_IN)) {
        let cross_attention = shapes.get(UNET_CROSS_ATTENTION).or_else(|| shapes.get(DIFFUSERS_UNET_CROSS_ATTENTION));
        let context = cross_attention.and_then(|s| s.get(1).copied()).unwrap_or(0);
        if context == 1024 {
            return CheckpointKind::Sd2;
        }
        return CheckpointKind::Sd1 { in_channels: conv_in.get(1).copied().unwrap_or(0), context_dim: context };
    }
    if any(&|k| k.starts_with("lora_") || k.contains(".lora_down.") || k.contains(".lora_A.")) {
        return CheckpointKind::Lora;
    }
    if any(&|k| k.starts_with("encoder.conv_in.") || k.starts_with("decoder.conv_in.")) {
        return CheckpointKind::Vae;
    }
    CheckpointKind::Unknown
}

/// Largest safetensors header read (real checkpoints have a few hundred KB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Where one tensor is in the file.
#[derive(Debug, Clone)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// A checkpoint file whose header has been read and checked; tensors are read one at a time
/// from the file when they are converted, so the file is never held in memory whole.
pub struct Checkpoint {
    pub path: PathBuf,
    tensors: HashMap<String, TensorEntry>,
    /// The header's `__metadata__` strings (trainers record names and hashes there).
    pub metadata: HashMap<String, String>,
    /// Where the tensor bytes start (8 + header length): A1111's LoRA hash covers the bytes from here.
    pub data_start: u64,
}

fn dtype_of(name: &str) -> Option<(DType, usize)> {
    match name {
        "F32" => Some((DType::F32, 4)),
        "F16" => Some((DType::F16, 2)),
        "BF16" => Some((DType::BF16, 2)),
        "F64" => Some((DType::F64, 8)),
        _ => None,
    }
}

/// Bytes per element of a safetensors dtype name (for the size check of every entry).
fn element_bytes(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

impl Checkpoint {
    /// Opens a `.safetensors` file and checks its header against the file: every tensor's
    /// bytes inside the file and of the size its dtype and shape say. A pickle is refused by its
    /// extension or its first bytes (a zip or a pickle protocol marker) before anything else.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        use std::io::Read;
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if matches!(ext.as_str(), "ckpt" | "pt" | "pth" | "bin" | "pkl") {
            return Err(CheckpointError::Pickle { path: path.to_path_buf() });
        }
        let io = |e: std::io::Error| CheckpointError::Io { path: path.to_path_buf(), message: e.to_string() };
        let damaged = |message: String| CheckpointError::Damaged { path: path.to_path_buf(), message };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut first = Vec::with_capacity(8);
        (&mut file).take(8).read_to_end(&mut first).map_err(io)?;
        // A pickle starts with PROTO (0x80, protocol 2..5); a safetensors header length may also
        // start with 0x80, but then it fits the file, which a pickle's bytes read as a length never do.
        let as_length = first.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let pickle_proto = first.first() == Some(&0x80) && first.get(1).is_some_and(|p| (2..=5).contains(p));
        if first.starts_with(b"PK\x03\x04") || (pickle_proto && as_length.is_none_or(|n| n.saturating_add(8) > file_len)) {
            return Err(CheckpointError::Pickle { path: path.to_path_buf() });
        }
        let first: [u8; 8] = first.try_into().map_err(|_| damaged(format!("only {file_len} bytes")))?;
        let header_len = u64::from_le_bytes(first);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(damaged(format!("its header claims {header_len} bytes of a {file_len}-byte file")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| damaged(format!("its header is not JSON: {e}")))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::with_capacity(header.len());
        let mut metadata = HashMap::new();
        for (name, info) in header {
            if name == "__metadata__" {
                if let Some(map) = info.as_object() {
                    metadata.extend(map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))));
                }
                continue;
            }
            let bad = |why: &str| damaged(format!("tensor {name}: {why}"));
            let dtype = info["dtype"].as_str().ok_or_else(|| bad("no dtype"))?.to_string();
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .ok_or_else(|| bad("no shape"))?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("a bad shape"))?;
            let offsets = info["data_offsets"].as_array().ok_or_else(|| bad("no data_offsets"))?;
            let (Some(begin), Some(end)) = (offsets.first().and_then(|v| v.as_u64()), offsets.get(1).and_then(|v| v.as_u64())) else {
                return Err(bad("bad data_offsets"));
            };
            let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(|| bad("a shape too large"))?;
            let size = element_bytes(&dtype).and_then(|b| elements.checked_mul(b)).ok_or_else(|| bad("an unknown dtype or too large"))?;
            if end < begin || end - begin != size || data_start.checked_add(end).is_none_or(|last| last > file_len) {
                return Err(bad(&format!("its bytes {begin}..{end} do not fit its shape or the {file_len}-byte file")));
            }
            tensors.insert(name, TensorEntry { dtype, shape, start: data_start + begin, end: data_start + end });
        }
        Ok(Self { path: path.to_path_buf(), tensors, metadata, data_start })
    }

    /// Every tensor's shape, by key.
    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.tensors.iter().map(|(k, v)| (k.clone(), v.shape.clone())).collect()
    }

    pub fn kind(&self) -> CheckpointKind {
        classify(&self.shapes())
    }

    /// The element type most of the tensors have: `float16`, `bfloat16` or `float32`.
    pub fn precision(&self) -> &'static str {
        let count = |d: &str| self.tensors.values().filter(|e| e.dtype == d).count();
        let (f16, bf16, f32) = (count("F16"), count("BF16"), count("F32"));
        if f16 >= bf16 && f16 > f32 {
            "float16"
        } else if bf16 > f32 {
            "bfloat16"
        } else {
            "float32"
        }
    }

    /// Every tensor's key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// One tensor's shape, if the file has it.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|e| e.shape.as_slice())
    }

    /// One tensor's safetensors dtype name (`F32`, `F16`, `BF16`, `I64`, ...), if the file has it.
    pub fn dtype(&self, key: &str) -> Option<&str> {
        self.tensors.get(key).map(|e| e.dtype.as_str())
    }

    /// One tensor's size in bytes as stored (0 when the file lacks it).
    pub fn byte_len(&self, key: &str) -> u64 {
        self.tensors.get(key).map_or(0, |e| e.end - e.start)
    }

    /// One tensor's bytes as stored (little-endian, its own dtype), read from `file` (this
    /// checkpoint's file, opened once by the caller for many reads).
    pub fn raw(&self, file: &mut std::fs::File, key: &str) -> Result<Vec<u8>, CheckpointError> {
        use std::io::{Read, Seek, SeekFrom};
        let entry = self
            .tensors
            .get(key)
            .ok_or_else(|| CheckpointError::Damaged { path: self.path.clone(), message: format!("no tensor {key}") })?;
        let io = |e: std::io::Error| CheckpointError::Io { path: self.path.clone(), message: e.to_string() };
        let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
        file.seek(SeekFrom::Start(entry.start)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
        Ok(bytes)
    }

    /// One tensor as f32 (from f32, f16, bf16 or f64), read from the file.
    pub fn read(&self, key: &str) -> Result<Vec<f32>, CheckpointError> {
        let entry = self
            .tensors
            .get(key)
            .ok_or_else(|| CheckpointError::Damaged { path: self.path.clone(), message: format!("no tensor {key}") })?;
        let mut file =
            std::fs::File::open(&self.path).map_err(|e| CheckpointError::Io { path: self.path.clone(), message: e.to_string() })?;
        self.read_f32(&mut file, key, entry)
    }

    fn read_f32(&self, file: &mut std::fs::File, key: &str, entry: &TensorEntry) -> Result<Vec<f32>, CheckpointError> {
        use std::io::{Read, Seek, SeekFrom};
        let (dtype, _) = dtype_of(&entry.dtype).ok_or_else(|| CheckpointError::Dtype {
            path: self.path.clone(),
            key: key.to_string(),
            dtype: entry.dtype.clone(),
        })?;
        let io = |e: std::io::Error| CheckpointError::Io { path: self.path.clone(), message: e.to_string() };
        let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
        file.seek(SeekFrom::Start(entry.start)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
        Ok(torch_file::to_f32(&bytes, dtype))
    }

    /// The tensor that fills `init`, under any name a file of this kind may use (see
    /// [`key_candidates`]).
    fn entry_for(&self, init: &TemplateInitializer) -> Option<(String, &TensorEntry)> {
        key_candidates(init).into_iter().find_map(|k| self.tensors.get(k.as_str()).map(|e| (k, e)))
    }

    /// Whether this file has a tensor for every initializer of `template` (a standalone VAE has
    /// only the VAE's).
    pub fn covers(&self, template: &TemplateWeights) -> bool {
        template.initializers.iter().all(|init| self.entry_for(init).is_some())
    }

    /// Where ONNX Runtime finds the initializers `template` declares: this file itself for every
    /// tensor `patch` leaves alone (its element type, layout and shape converted by nodes ONNX
    /// Runtime folds once), and a buffer in the graph's layout and dtypes for the tensors it
    /// changes, with the changes added (a LoRA's `weight * scale * up @ down`, computed one at a
    /// time so no second copy of the weights is ever held). `label` names the template in
    /// messages.
    pub fn graph_weights(&self, template: &TemplateWeights, label: &str, patch: &dyn WeightPatch) -> Result<GraphWeights, CheckpointError> {
        let template_err = |message: String| CheckpointError::Template { path: label.into(), message };
        if (template.format.as_str(), template.version) != WEIGHTS_FORMAT {
            return Err(template_err(format!(
                "format {} version {}; this Easel reads {} version {}",
                template.format, template.version, WEIGHTS_FORMAT.0, WEIGHTS_FORMAT.1
            )));
        }
        // Patched tensors are written into the graph itself (see `GraphWeights::attach`), which
        // protobuf bounds at 2 GB; past [`MAX_INLINE_BYTES`] every weight goes through memory.
        let patched: usize = template
            .initializers
            .iter()
            .filter(|init| patch.changes(init))
            .map(|init| packed_size(init.shape.iter().product(), &init.dtype))
            .sum();
        let location = if patched > MAX_INLINE_BYTES { None } else { self.location() };
        let mut placed = Vec::with_capacity(template.initializers.len());
        for init in &template.initializers {
            let (key, entry) = self.entry_for(init).ok_or_else(|| CheckpointError::Missing {
                path: self.path.clone(),
                graph: template.graph.clone(),
                ldm: init.ldm.clone(),
                diffusers: init.diffusers.clone(),
            })?;
            if entry.shape != init.ldm_shape && entry.shape != init.diffusers_shape {
                return Err(CheckpointError::Shape {
                    path: self.path.clone(),
                    graph: template.graph.clone(),
                    key,
                    got: entry.shape.clone(),
                    want: init.ldm_shape.clone(),
                });
            }
            if init.transpose && init.diffusers_shape.len() != 2 {
                return Err(template_err(format!("{} is transposed but not 2-D", init.name)));
            }
            let elements: usize = entry.shape.iter().product();
            if init.shape.iter().product::<usize>() != elements {
                return Err(template_err(format!("{} has shape {:?} but {key} has {elements} values", init.name, init.shape)));
            }
            let layout = location.as_ref().filter(|_| !patch.changes(init)).and_then(|_| stored_layout(init, entry));
            placed.push((init, key, entry, layout));
        }

        let in_memory = placed.iter().filter(|p| p.3.is_none()).map(|(init, ..)| packed_size(init.shape.iter().product(), &init.dtype));
        let mut buffer = WeightsBuffer::with_capacity(in_memory.sum());
        let mut placements = HashMap::new();
        let mut file = None;
        for (init, key, entry, layout) in placed {
            if let Some(layout) = layout {
                let (_, name) = location.as_ref().expect("a layout is chosen only with a location");
                let source = (!layout.steps.is_empty()).then_some(layout);
                placements.insert(
                    init.name.clone(),
                    Placement {
                        data: DataPlace::External { location: name.clone(), offset: entry.start, length: entry.end - entry.start },
                        source,
                    },
                );
                continue;
            }
            let file = match &mut file {
                Some(file) => file,
                None => file.insert(
                    std::fs::File::open(&self.path).map_err(|e| CheckpointError::Io { path: self.path.clone(), message: e.to_string() })?,
                ),
            };
            let mut values = self.read_f32(file, &key, entry)?;
            if init.transpose {
                values = transpose(&values, init.diffusers_shape[0], init.diffusers_shape[1]);
            }
            if let Some(change) = patch.delta(init) {
                for (v, d) in values.iter_mut().zip(change) {
                    *v += d;
                }
            }
            buffer.push(&init.name, &values, &init.dtype).map_err(template_err)?;
        }
        let file = location.map(|(folder, _)| WeightsFile { folder, placements }).filter(|f| !f.placements.is_empty());
        Ok(GraphWeights { buffer, file })
    }

    /// The folder and file name ONNX Runtime can open this file by (its real path, so a link
    /// into a cache resolves), or `None` when either is not UTF-8.
    fn location(&self) -> Option<(PathBuf, String)> {
        let real = std::fs::canonicalize(&self.path).ok()?;
        let name = real.file_name()?.to_str()?.to_string();
        let folder = real.parent()?.to_path_buf();
        folder.to_str()?;
        Some((folder, name))
    }
}

/// The most bytes of LoRA-patched tensors written into a graph (protobuf's limit is 2 GB).
const MAX_INLINE_BYTES: usize = 1536 << 20;

/// A change to some of a graph's weights, added where they are converted (a LoRA set's).
pub trait WeightPatch {
    /// Whether `init` is changed (decides where its tensor is placed; must not compute it).
    fn changes(&self, init: &TemplateInitializer) -> bool;
    /// The change to add to `init`, in the graph's layout.
    fn delta(&self, init: &TemplateInitializer) -> Option<Vec<f32>>;
}

/// No change to any weight.
pub struct Unpatched;

impl WeightPatch for Unpatched {
    fn changes(&self, _: &TemplateInitializer) -> bool {
        false
    }

    fn delta(&self, _: &TemplateInitializer) -> Option<Vec<f32>> {
        None
    }
}

/// ONNX element type of a graph dtype (`float16` or `float32`).
fn graph_element(dtype: &str) -> i64 {
    if dtype == "float16" {
        10
    } else {
        1
    }
}

/// How the stored tensor `entry` becomes `init`: reshaped to the diffusers shape and transposed
/// when the initializer is a transposed `nn.Linear` weight, reshaped to the graph's shape, then
/// cast (reshapes and transposes first, so they move the smaller stored elements). `None` for an
/// element type ONNX Runtime does not cast from.
fn stored_layout(init: &TemplateInitializer, entry: &TensorEntry) -> Option<SourceLayout> {
    let element = match dtype_of(&entry.dtype)?.0 {
        DType::F32 => 1,
        DType::F16 => 10,
        DType::BF16 => 16,
        DType::F64 => 11,
    };
    let mut steps = Vec::new();
    let mut dims = entry.shape.clone();
    if init.transpose {
        if dims != init.diffusers_shape {
            steps.push(Step::Reshape(init.diffusers_shape.clone()));
        }
        steps.push(Step::Transpose);
        dims = vec![init.diffusers_shape[1], init.diffusers_shape[0]];
    }
    if dims != init.shape {
        steps.push(Step::Reshape(init.shape.clone()));
    }
    if element != graph_element(&init.dtype) {
        steps.push(Step::Cast(graph_element(&init.dtype)));
    }
    Some(SourceLayout { element, dims: entry.shape.clone(), steps })
}

/// A `rows x cols` row-major matrix transposed.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut transposed = vec![0.0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            transposed[c * rows + r] = values[r * cols + c];
        }
    }
    transposed
}

/// Every key the tensor for `init` may have: the LDM key and the diffusers key of a single-file
/// checkpoint; the same without their component prefix, as a standalone VAE or a diffusers
/// folder's per-component file has them; and the older spellings some files still use (text
/// encoder keys without `text_model.`, diffusers VAE attention as `query`/`key`/`value`/`proj_attn`).
pub fn key_candidates(init: &TemplateInitializer) -> Vec<String> {
    let mut keys = vec![init.ldm.clone(), init.diffusers.clone()];
    if let Some(rest) = init.ldm.strip_prefix("first_stage_model.") {
        keys.push(rest.to_string());
    }
    if let Some(rest) = init.ldm.strip_prefix("cond_stage_model.transformer.text_model.") {
        keys.push(format!("cond_stage_model.transformer.{rest}"));
    }
    if let Some((_, rest)) = init.diffusers.split_once('.') {
        keys.push(rest.to_string());
        if rest.contains(".attentions.") {
            for (new, old) in [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")] {
                if rest.contains(new) {
                    keys.push(rest.replace(new, old));
                }
            }
        }
    }
    keys
}

/// Reads a template's `weights.json`.
pub fn read_template_weights(path: &Path) -> Result<TemplateWeights, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::Io { path: path.to_path_buf(), message: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Template { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(entries: &[(&str, &[usize])]) -> HashMap<String, Vec<usize>> {
        entries.iter().map(|(k, s)| (k.to_string(), s.to_vec())).collect()
    }

    #[test]
    fn keys_tell_what_a_file_is() {
        let sd1 = shapes(&[(UNET_CONV_IN, &[320, 4, 3, 3]), (UNET_CROSS_ATTENTION, &[320, 768])]);
        assert_eq!(classify(&sd1), CheckpointKind::Sd1 { in_channels: 4, context_dim: 768 });
        let inpaint = shapes(&[(UNET_CONV_IN, &[320, 9, 3, 3]), (UNET_CROSS_ATTENTION, &[320, 768])]);
        assert_eq!(classify(&inpaint).to_string(), "an SD 1.x inpainting checkpoint");
        let sd2 = shapes(&[(UNET_CONV_IN, &[320, 4, 3, 3]), (UNET_CROSS_ATTENTION, &[320, 1024])]);
        assert_eq!(classify(&sd2), CheckpointKind::Sd2);
        assert_eq!(classify(&shapes(&[("conditioner.embedders.0.x", &[1])])), CheckpointKind::Sdxl);
        assert_eq!(classify(&shapes(&[("lora_unet_down_blocks_0.lora_down.weight", &[4, 320])])), CheckpointKind::Lora);
        assert_eq!(classify(&shapes(&[("encoder.conv_in.weight", &[128, 3, 3, 3])])), CheckpointKind::Vae);
        assert_eq!(classify(&shapes(&[("something", &[1])])), CheckpointKind::Unknown);
    }
}
