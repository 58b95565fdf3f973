//! Owns checkpoint merging: two (or three) `.safetensors` checkpoints into a new one, with
//! AUTOMATIC1111's checkpoint-merger semantics, streamed one tensor at a time.
//!
//! The rules (A1111 `modules/extras.py`, `run_modelmerger`):
//! - **weighted sum** `(1 - M)·A + M·B`; **add difference** `A + M·(B - C)`;
//! - only keys of A that contain `model`, that B also has, and that are not the text encoder's
//!   `position_ids` are merged; every other key of A is copied byte for byte; keys only B has are
//!   dropped (the output's keys are A's keys); in add difference a key C lacks makes `B - C` zero;
//! - an inpainting A (9 input channels) with a normal B merges the first 4 input channels and
//!   keeps A's other 5; a normal A with an inpainting B is refused;
//! - arithmetic as torch does it on the CPU: every operation rounded to its result's dtype
//!   (`f32(1-M)·a` in A's dtype, `f32(M)·b` in B's, the sum in the promoted dtype; float16 and
//!   bfloat16 computed in float32 and rounded after each operation), never fused, so a float32
//!   merge is bit-identical to A1111's.
//!
//! Nothing is held whole in memory: the output header is computed from the input headers, then
//! each tensor is read, merged and written in turn, into a temporary file renamed into place only
//! when complete.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, CheckpointError, CheckpointKind};

/// The text encoder's position ids: never merged (A1111's skip list; broken in many files).
const SKIP_ON_MERGE: [&str; 1] = ["cond_stage_model.transformer.text_model.embeddings.position_ids"];

/// How two checkpoints are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMode {
    /// `(1 - M)·A + M·B`.
    WeightedSum,
    /// `A + M·(B - C)`.
    AddDifference,
}

impl MergeMode {
    /// The name A1111 writes in `sd_merge_recipe`'s `interp_method`.
    fn a1111_name(self) -> &'static str {
        match self {
            MergeMode::WeightedSum => "Weighted sum",
            MergeMode::AddDifference => "Add difference",
        }
    }
}

/// One merge to make.
#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub a: PathBuf,
    pub b: PathBuf,
    /// C, the base subtracted from B (add difference only).
    pub c: Option<PathBuf>,
    pub mode: MergeMode,
    /// M: B's share (weighted sum) or the difference's scale (add difference).
    pub multiplier: f64,
    pub output: PathBuf,
    /// Replace an existing output file.
    pub overwrite: bool,
}

/// What a finished merge wrote.
#[derive(Debug, Clone)]
pub struct MergeReport {
    pub output: PathBuf,
    pub tensors: usize,
    pub merged: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path} is {kind}; merging needs Stable Diffusion checkpoints")]
    NotACheckpoint { path: PathBuf, kind: CheckpointKind },
    #[error(
        "A ({a}) is a normal model and B ({b}) an inpainting one; when merging an inpainting model with a normal one, A must \
         be the inpainting model: swap them (and use 1 - alpha for a weighted sum)"
    )]
    InpaintingB { a: PathBuf, b: PathBuf },
    #[error("tensor {key} has shape {a:?} in A and {b:?} in B; the models have different architectures")]
    Shape { key: String, a: Vec<usize>, b: Vec<usize> },
    #[error("tensor {key} is {dtype}; merged tensors must be float32, float16, bfloat16 or integers")]
    Dtype { key: String, dtype: String },
    #[error("alpha must be a finite number (got {0}); 0 keeps A, 1 gives B in a weighted sum")]
    Multiplier(f64),
    #[error("add difference needs a base model C (--base); a weighted sum takes none")]
    Base,
    #[error("{0} already exists; choose another --output or pass --overwrite")]
    Exists(PathBuf),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// The element types merged tensors are computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Float {
    Bf16,
    F16,
    F32,
}

impl Float {
    /// The dtype a tensor of safetensors dtype `name` takes part in arithmetic as: its own for
    /// floats; integers (torch promotes an integer tensor times a float to float32) as float32.
    fn of(key: &str, name: &str) -> Result<Self, MergeError> {
        match name {
            "F32" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL" => Ok(Float::F32),
            "F16" => Ok(Float::F16),
            "BF16" => Ok(Float::Bf16),
            other => Err(MergeError::Dtype { key: key.to_string(), dtype: other.to_string() }),
        }
    }

    /// Torch's promotion of two float dtypes: the same stays, float16 with bfloat16 is float32.
    fn promote(self, other: Self) -> Self {
        if self == other {
            self
        } else {
            Float::F32
        }
    }

    fn safetensors_name(self) -> &'static str {
        match self {
            Float::F32 => "F32",
            Float::F16 => "F16",
            Float::Bf16 => "BF16",
        }
    }

    fn size(self) -> usize {
        match self {
            Float::F32 => 4,
            Float::F16 | Float::Bf16 => 2,
        }
    }

    /// `x` rounded to this dtype (round to nearest even), as an f32.
    fn round(self, x: f32) -> f32 {
        match self {
            Float::F32 => x,
            Float::F16 => half::f16::from_f32(x).to_f32(),
            Float::Bf16 => half::bf16::from_f32(x).to_f32(),
        }
    }

    fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * self.size());
        for &v in values {
            match self {
                Float::F32 => out.extend_from_slice(&v.to_le_bytes()),
                Float::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                Float::Bf16 => out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            }
        }
        out
    }
}

/// Stored bytes of safetensors dtype `name` as f32 values (exact for every float type here;
/// integers as torch converts them).
fn values(name: &str, bytes: &[u8]) -> Vec<f32> {
    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| c.try_into().expect("chunk of N bytes"))
    }
    match name {
        "F32" => chunks::<4>(bytes).map(f32::from_le_bytes).collect(),
        "F16" => chunks::<2>(bytes).map(|b| half::f16::from_le_bytes(b).to_f32()).collect(),
        "BF16" => chunks::<2>(bytes).map(|b| half::bf16::from_le_bytes(b).to_f32()).collect(),
        "I64" => chunks::<8>(bytes).map(|b| i64::from_le_bytes(b) as f32).collect(),
        "I32" => chunks::<4>(bytes).map(|b| i32::from_le_bytes(b) as f32).collect(),
        "I16" => chunks::<2>(bytes).map(|b| i16::from_le_bytes(b) as f32).collect(),
        "I8" => bytes.iter().map(|&b| b as i8 as f32).collect(),
        _ => bytes.iter().map(|&b| b as f32).collect(),
    }
}

/// One input tensor taking part in a merge.
struct Operand {
    float: Float,
    values: Vec<f32>,
}

fn operand(file: &Checkpoint, handle: &mut std::fs::File, key: &str) -> Result<Operand, MergeError> {
    let dtype = file.dtype(key).unwrap_or("F32").to_string();
    let float = Float::of(key, &dtype)?;
    Ok(Operand { float, values: values(&dtype, &file.raw(handle, key)?) })
}

/// What happens to one key of A.
enum Plan {
    Copy,
    /// Merged over all of the tensor.
    Whole(Float),
    /// An inpainting A's input conv: the first 4 of its 9 input channels merged, kept in A's dtype.
    FirstChannels(Float),
}

/// Whether `a` is an inpainting A's input conv and `b` the normal model's: `[o, 9, ..]` against
/// `[o, 4, ..]` with every other dimension equal.
fn inpainting_pair(a: &[usize], b: &[usize]) -> bool {
    a.len() >= 2 && a.len() == b.len() && a[0] == b[0] && a[2..] == b[2..] && a[1] == 9 && b[1] == 4
}

fn plan(key: &str, a: &Checkpoint, b: &Checkpoint, c: Option<&Checkpoint>, req: &MergeRequest) -> Result<Plan, MergeError> {
    let Some(b_shape) = b.shape(key) else { return Ok(Plan::Copy) };
    if !key.contains("model") || SKIP_ON_MERGE.contains(&key) {
        return Ok(Plan::Copy);
    }
    let a_shape = a.shape(key).unwrap_or(&[]);
    let a_float = Float::of(key, a.dtype(key).unwrap_or("F32"))?;
    let mut b_float = Float::of(key, b.dtype(key).unwrap_or("F32"))?;
    if let Some(c) = c.filter(|c| c.shape(key).is_some()) {
        b_float = b_float.promote(Float::of(key, c.dtype(key).unwrap_or("F32"))?);
    }
    if a_shape == b_shape {
        return Ok(Plan::Whole(a_float.promote(b_float)));
    }
    if inpainting_pair(a_shape, b_shape) {
        return Ok(Plan::FirstChannels(a_float));
    }
    if inpainting_pair(b_shape, a_shape) {
        return Err(MergeError::InpaintingB { a: req.a.clone(), b: req.b.clone() });
    }
    Err(MergeError::Shape { key: key.to_string(), a: a_shape.to_vec(), b: b_shape.to_vec() })
}

/// The merge formula on one tensor (or channel slice), each operation rounded as torch rounds it.
struct Formula {
    mode: MergeMode,
    /// `f32(1 - M)`, with `1 - M` formed in f64 as Python does.
    keep: f32,
    /// `f32(M)`.
    take: f32,
}

impl Formula {
    fn new(mode: MergeMode, multiplier: f64) -> Self {
        Self { mode, keep: (1.0 - multiplier) as f32, take: multiplier as f32 }
    }

    /// `a` and `b` (B, or `B - C` already formed, of dtype `b_float`) into `out`'s dtype.
    fn apply(&self, a: f32, a_float: Float, b: f32, b_float: Float, out: Float) -> f32 {
        match self.mode {
            MergeMode::WeightedSum => out.round(a_float.round(self.keep * a) + b_float.round(self.take * b)),
            MergeMode::AddDifference => out.round(a + b_float.round(self.take * b)),
        }
    }
}

/// B's operand for `key`: B itself, or `B - C` in their promoted dtype (zeros where C lacks it).
fn second_operand(
    key: &str,
    b: &Checkpoint,
    b_file: &mut std::fs::File,
    c: Option<(&Checkpoint, &mut std::fs::File)>,
) -> Result<Operand, MergeError> {
    let b_op = operand(b, b_file, key)?;
    let Some((c, c_file)) = c else { return Ok(b_op) };
    if c.shape(key).is_none() {
        return Ok(Operand { float: b_op.float, values: vec![0.0; b_op.values.len()] });
    }
    let c_op = operand(c, c_file, key)?;
    if c_op.values.len() != b_op.values.len() {
        return Err(MergeError::Shape {
            key: key.to_string(),
            a: c.shape(key).unwrap_or(&[]).to_vec(),
            b: b.shape(key).unwrap_or(&[]).to_vec(),
        });
    }
    let float = b_op.float.promote(c_op.float);
    let values = b_op.values.iter().zip(&c_op.values).map(|(x, y)| float.round(x - y)).collect();
    Ok(Operand { float, values })
}

/// Opens a checkpoint for merging and checks it is a full Stable Diffusion model.
fn open_model(path: &Path) -> Result<Checkpoint, MergeError> {
    let file = Checkpoint::open(path)?;
    match file.kind() {
        CheckpointKind::Lora | CheckpointKind::Vae | CheckpointKind::Unknown => {
            Err(MergeError::NotACheckpoint { path: path.to_path_buf(), kind: file.kind() })
        }
        _ => Ok(file),
    }
}

fn file_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The recipe A1111 records in `sd_merge_recipe` (the fields it writes, with Easel's values).
fn recipe(req: &MergeRequest, a: &Checkpoint) -> String {
    let hash = |p: &Path| super::file_hash::cached_sha256_from(p, 0).ok();
    let models: Vec<String> = [&req.a, &req.b].into_iter().map(|p| file_name(p)).chain(req.c.as_deref().map(file_name)).collect();
    serde_json::json!({
        "type": "easel",
        "primary_model_hash": hash(&req.a),
        "secondary_model_hash": hash(&req.b),
        "tertiary_model_hash": req.c.as_deref().and_then(hash),
        "interp_method": req.mode.a1111_name(),
        "multiplier": req.multiplier,
        "save_as_half": false,
        "custom_name": file_name(&req.output),
        "config_source": 0,
        "bake_in_vae": "None",
        "discard_weights": "",
        "is_inpainting": matches!(a.kind(), CheckpointKind::Sd1 { in_channels: 9, .. }),
        "is_instruct_pix2pix": false,
        "models": models,
    })
    .to_string()
}

/// Merges as `req` says and writes the output (see the module doc).
pub fn merge(req: &MergeRequest) -> Result<MergeReport, MergeError> {
    if !req.multiplier.is_finite() {
        return Err(MergeError::Multiplier(req.multiplier));
    }
    if (req.mode == MergeMode::AddDifference) != req.c.is_some() {
        return Err(MergeError::Base);
    }
    if req.output.exists() && !req.overwrite {
        return Err(MergeError::Exists(req.output.clone()));
    }
    let a = open_model(&req.a)?;
    let b = open_model(&req.b)?;
    let c = req.c.as_deref().map(open_model).transpose()?;

    let mut keys: Vec<&str> = a.keys().collect();
    keys.sort_unstable();
    let mut plans = Vec::with_capacity(keys.len());
    for key in &keys {
        plans.push(plan(key, &a, &b, c.as_ref(), req)?);
    }

    // The header, from the plans: merged tensors in their result dtype, copies as A has them.
    let mut header = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    metadata.insert("format".into(), "pt".into());
    metadata.insert("sd_merge_recipe".into(), recipe(req, &a).into());
    header.insert("__metadata__".into(), metadata.into());
    let mut offset = 0u64;
    for (key, plan) in keys.iter().zip(&plans) {
        let shape = a.shape(key).unwrap_or(&[]).to_vec();
        let elements: u64 = shape.iter().map(|&d| d as u64).product();
        let (dtype, bytes) = match plan {
            Plan::Whole(float) => (float.safetensors_name().to_string(), elements * float.size() as u64),
            Plan::Copy | Plan::FirstChannels(_) => {
                let dtype = a.dtype(key).unwrap_or("F32").to_string();
                let size = a.byte_len(key);
                (dtype, size)
            }
        };
        header.insert(key.to_string(), serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes] }));
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header).expect("JSON of strings and numbers");
    header.resize(header.len().div_ceil(8) * 8, b' ');

    let parent = req.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let write_err = |e: std::io::Error| MergeError::Write { path: req.output.clone(), message: e.to_string() };
    std::fs::create_dir_all(parent).map_err(write_err)?;
    let partial = parent.join(format!(".{}.partial", req.output.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let result = (|| -> Result<MergeReport, MergeError> {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial).map_err(write_err)?);
        out.write_all(&(header.len() as u64).to_le_bytes()).map_err(write_err)?;
        out.write_all(&header).map_err(write_err)?;
        let open =
            |c: &Checkpoint| std::fs::File::open(&c.path).map_err(|e| CheckpointError::Io { path: c.path.clone(), message: e.to_string() });
        let (mut a_file, mut b_file) = (open(&a)?, open(&b)?);
        let mut c_file = c.as_ref().map(open).transpose()?;
        let formula = Formula::new(req.mode, req.multiplier);
        let mut merged = 0;
        for (key, plan) in keys.iter().zip(&plans) {
            let bytes = match plan {
                Plan::Copy => a.raw(&mut a_file, key)?,
                Plan::Whole(out_float) | Plan::FirstChannels(out_float) => {
                    merged += 1;
                    let a_op = operand(&a, &mut a_file, key)?;
                    let b_op = second_operand(key, &b, &mut b_file, c.as_ref().zip(c_file.as_mut()))?;
                    let mut values = a_op.values;
                    let shape = a.shape(key).unwrap_or(&[]);
                    // Channels merged per output filter: all of them, or an inpainting A's first 4.
                    let (a_channels, b_channels) = match plan {
                        Plan::FirstChannels(_) => (shape[1], 4),
                        _ => (1, 1),
                    };
                    let spatial: usize = if a_channels > 1 { shape[2..].iter().product() } else { values.len() };
                    let a_block = a_channels * spatial;
                    let b_block = b_channels * spatial;
                    for (filter, b_values) in b_op.values.chunks(b_block).enumerate() {
                        let start = filter * a_block;
                        for (v, &bv) in values[start..start + b_block].iter_mut().zip(b_values) {
                            // Computed in the promoted dtype, then stored in the output's (A's for
                            // an inpainting conv, where torch assigns into A's tensor).
                            let promoted = a_op.float.promote(b_op.float);
                            *v = out_float.round(formula.apply(*v, a_op.float, bv, b_op.float, promoted));
                        }
                    }
                    out_float.encode(&values)
                }
            };
            out.write_all(&bytes).map_err(write_err)?;
        }
        let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        Ok(MergeReport { output: req.output.clone(), tensors: keys.len(), merged, bytes: 8 + header.len() as u64 + offset })
    })();
    match result {
        Ok(report) => {
            std::fs::rename(&partial, &req.output).map_err(write_err)?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_promotion_and_rounding() {
        assert_eq!(Float::F16.promote(Float::Bf16), Float::F32);
        assert_eq!(Float::F16.promote(Float::F16), Float::F16);
        assert_eq!(Float::F16.round(1.0 + 1e-4), 1.0);
        // f32(1 - 0.3) is formed in f64 first: 0.7f32 exactly, not 1.0f32 - 0.3f32.
        let f = Formula::new(MergeMode::WeightedSum, 0.3);
        assert_eq!(f.keep, 0.7f32);
        assert_eq!(f.apply(2.0, Float::F32, 4.0, Float::F32, Float::F32), 0.7f32 * 2.0 + 0.3f32 * 4.0);
    }

    #[test]
    fn inpainting_pairs_are_recognised_one_way() {
        assert!(inpainting_pair(&[320, 9, 3, 3], &[320, 4, 3, 3]));
        assert!(!inpainting_pair(&[320, 4, 3, 3], &[320, 9, 3, 3]));
        assert!(!inpainting_pair(&[320, 9, 3, 3], &[64, 4, 3, 3]));
    }
}
