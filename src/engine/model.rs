//! A Stable Diffusion 1.x model, a folder in the diffusers ONNX layout or a single-file
//! `.safetensors` checkpoint (weights for the compiled-in templates, [`super::templates`]):
//! checking it, and holding its sessions, tokenizer and scheduler config while it is in use, with
//! the LoRAs and the VAE chosen for it (sessions a change touches are rebuilt, the others kept).
//!
//! By default every session is created once and kept warm. In low-memory mode each sub-model is
//! loaded only while it runs (text encoder, then UNet, then VAE decoder), so at most one of them is
//! resident at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint::{Checkpoint, CheckpointError, CheckpointKind, Unpatched, WeightPatch};
use super::clip_tokenizer::ClipTokenizer;
use super::lora::{Component, LoraSet};
use super::onnx_attention;
use super::onnx_edit;
use super::onnx_model::{GraphBytes, OnnxModel};
use super::prompt::EmbeddingSources;
use super::runtime::Runtime;
use super::scheduler::SchedulerConfig;
use super::templates::{self, Template, TemplateGraph};
use super::weights_buffer::WeightsBuffer;
use super::EngineError;
use crate::api::Precision;

/// The parts txt2img needs, relative to the model folder (plus a tokenizer, see [`check_layout`]).
pub const REQUIRED_FILES: [&str; 5] =
    ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx"];

/// The folder of textual-inversion embeddings in a models dir (A1111 and ComfyUI both use it).
pub const EMBEDDINGS_DIR: &str = "embeddings";
/// The text encoder's width when its config does not say (SD 1.x: 768).
const SD15_TEXT_HIDDEN: usize = 768;

/// How sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Create every session once and keep it (fastest).
    #[default]
    Warm,
    /// Create each session only while it is needed (lowest peak memory).
    LowMemory,
}

/// A change made to a graph's bytes before its session is created.
type GraphEdit<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, EngineError> + 'a;

/// Where one sub-model's graph and weights come from.
#[derive(Clone)]
enum GraphSource {
    /// An ONNX file carrying its weights (a diffusers ONNX folder), and the template with the same
    /// initializer names when there is one (LoRAs need it to find their layers).
    Onnx { path: PathBuf, template: Option<&'static TemplateGraph> },
    /// A weight-free template graph filled from a `.safetensors` file.
    Template { graph: &'static TemplateGraph, weights: Arc<Checkpoint> },
}

/// When a sub-model's session is created and how long it is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Created with the model, kept.
    Warm,
    /// Created at its first use, then kept (the VAE encoder: only image-to-image needs it).
    Lazy,
    /// Created for each use and dropped after it (low-memory mode).
    OnDemand,
}

/// A sub-model: its source, the LoRA component it belongs to, and its session when kept.
struct Slot {
    role: &'static str,
    component: Option<Component>,
    source: GraphSource,
    keep: Keep,
    model: Option<OnnxModel>,
}

impl GraphSource {
    /// The path messages name (the ONNX file, or the weights file).
    fn path(&self) -> &Path {
        match self {
            GraphSource::Onnx { path, .. } => path,
            GraphSource::Template { weights, .. } => &weights.path,
        }
    }

    /// Creates the session, `loras` applied to the weights of `component`, the graph first passed
    /// through `edit` when given (the text encoder's CLIP-skip and embedding edit).
    fn build(
        &self,
        runtime: &Runtime,
        role: &'static str,
        threads: usize,
        component: Option<Component>,
        loras: &LoraSet,
        edit: Option<&GraphEdit<'_>>,
    ) -> Result<OnnxModel, EngineError> {
        let patch = component.filter(|c| loras.touches(*c));
        let path = self.path().to_path_buf();
        let load_err = |message: String| EngineError::LoadSession { path: path.clone(), message };
        match self {
            GraphSource::Onnx { path, template } => {
                if let Some(component) = patch {
                    // ONNX Runtime applies an overriding initializer only after its graph
                    // optimisations have read the file's value, so a patched export is instead
                    // run as its template graph with every weight supplied (the export's values,
                    // LoRA deltas added).
                    let template = template.ok_or_else(|| {
                        load_err("LoRAs apply to ONNX folders exported by Easel's tooling (whose layers it can name); load this model's checkpoint (.safetensors) to use LoRAs with it".into())
                    })?;
                    let edited = edit.map(|edit| edit(template.onnx)).transpose()?;
                    let bytes = edited.as_deref().unwrap_or(template.onnx);
                    return with_fused_attention(role, bytes, |bytes| {
                        let supplied = onnx_weights_with_loras(path, template, component, loras)?;
                        OnnxModel::load_with_weights(runtime, role, path, GraphBytes::Memory(bytes), supplied.into(), threads)
                    });
                }
                match edit {
                    None if role == UNET && onnx_attention::enabled() => {
                        // The graph alone (its weights are external data beside it) is read,
                        // fused and handed over; a graph with its weights inside is too big to
                        // copy in memory and is loaded from its file as it is.
                        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
                        if size > MAX_GRAPH_TO_FUSE {
                            return OnnxModel::load(runtime, role, path, threads);
                        }
                        let bytes =
                            std::fs::read(path).map_err(|e| EngineError::ReadFile { path: path.clone(), message: e.to_string() })?;
                        // External data behind links (the hub cache's snapshots) is named by
                        // where it really is, since the graph no longer comes from its file.
                        let beside = path.parent().unwrap_or(Path::new("")).to_path_buf();
                        let (bytes, folder) = onnx_edit::resolve_external_data(&bytes, &beside).unwrap_or((bytes, beside));
                        with_fused_attention(role, &bytes, |bytes| {
                            OnnxModel::load_from_memory_in(runtime, role, path, bytes, threads, &folder)
                        })
                        .or_else(|e| {
                            tracing::warn!("the UNet could not be loaded from memory ({e}); loading it from its file");
                            OnnxModel::load(runtime, role, path, threads)
                        })
                    }
                    None => OnnxModel::load(runtime, role, path, threads),
                    Some(edit) => {
                        let bytes =
                            std::fs::read(path).map_err(|e| EngineError::ReadFile { path: path.clone(), message: e.to_string() })?;
                        let edited = edit(&bytes)?;
                        drop(bytes);
                        OnnxModel::load_from_memory(runtime, role, path, &edited, threads)
                    }
                }
            }
            GraphSource::Template { graph, weights } => {
                let map = graph.weights().map_err(checkpoint_error)?;
                let lora_patch = patch.map(|c| loras.patch(c));
                let changes: &dyn WeightPatch = match &lora_patch {
                    Some(p) => p,
                    None => &Unpatched,
                };
                let edited = edit.map(|edit| edit(graph.onnx)).transpose()?;
                let bytes = edited.as_deref().unwrap_or(graph.onnx);
                with_fused_attention(role, bytes, |bytes| {
                    let supplied = weights.graph_weights(&map, &graph.label(), changes).map_err(checkpoint_error)?;
                    OnnxModel::load_with_weights(runtime, role, &weights.path, GraphBytes::Memory(bytes), supplied, threads)
                })
            }
        }
    }
}

/// The UNet's role name, whose attention is fused (see [`onnx_attention`]).
const UNET: &str = "unet";
/// Graph files larger than this carry their weights inside and are not copied to be fused.
const MAX_GRAPH_TO_FUSE: u64 = 256 << 20;

/// Creates a session with `create` from `bytes` with the UNet's attention fused when `role` is
/// the UNet and the graph has the exported attention; from `bytes` as they are otherwise, or
/// when the fused graph is refused (a provider without the fused operator), which is logged.
fn with_fused_attention(
    role: &'static str,
    bytes: &[u8],
    mut create: impl FnMut(&[u8]) -> Result<OnnxModel, EngineError>,
) -> Result<OnnxModel, EngineError> {
    let fused = (role == UNET && onnx_attention::enabled()).then(|| onnx_attention::fuse_attention(bytes)).flatten();
    match fused {
        Some(fused) => match create(&fused.bytes) {
            Ok(mut model) => {
                tracing::debug!(blocks = fused.fused, "UNet attention fused");
                model.fused_attention = fused.fused;
                Ok(model)
            }
            Err(e) => {
                tracing::warn!("the UNet with fused attention could not be loaded ({e}); loading it unfused");
                create(bytes)
            }
        },
        None => create(bytes),
    }
}

fn checkpoint_error(e: CheckpointError) -> EngineError {
    EngineError::Weights(e.to_string())
}

/// Every initializer of `template` from the ONNX export at `path` (whose initializer names,
/// shapes and element types are the template's), with `loras`' deltas for `component` added.
fn onnx_weights_with_loras(
    path: &Path,
    template: &TemplateGraph,
    component: Component,
    loras: &LoraSet,
) -> Result<WeightsBuffer, EngineError> {
    let map = template.weights().map_err(checkpoint_error)?;
    let load_err = |message: String| EngineError::LoadSession { path: path.to_path_buf(), message };
    let wanted: std::collections::HashSet<&str> = map.initializers.iter().map(|init| init.name.as_str()).collect();
    let mut found = super::onnx_inspect::initializer_values(path, &wanted).map_err(load_err)?;
    let mut out = WeightsBuffer::with_capacity(map.packed_size());
    for init in &map.initializers {
        let Some(original) = found.remove(&init.name) else {
            return Err(load_err(format!(
                "it has no initializer {} ({}), so it is not Easel's export; use the checkpoint for LoRAs",
                init.name, init.diffusers
            )));
        };
        let dtype = if original.element == 10 { "float16" } else { "float32" };
        if original.dims != init.shape || dtype != init.dtype {
            return Err(load_err(format!(
                "initializer {} is {dtype} {:?}, the template's {} {:?}; use the checkpoint for LoRAs",
                init.name, original.dims, init.dtype, init.shape
            )));
        }
        let mut values = original.values;
        if let Some(delta) = loras.delta(component, init) {
            values.iter_mut().zip(delta).for_each(|(v, d)| *v += d);
        }
        out.push(&init.name, &values, dtype).map_err(load_err)?;
    }
    Ok(out)
}

pub struct SdModel {
    /// The folder or file name, used in metadata (`Model: tiny-sd`, `Model: sd15-random`).
    pub name: String,
    /// The model folder, or the checkpoint file.
    pub dir: PathBuf,
    /// First 10 hex digits of the model's sha256, as A1111 writes `Model hash`.
    pub short_hash: String,
    pub tokenizer: Arc<ClipTokenizer>,
    /// Where textual-inversion embeddings for this model are found (by default the
    /// `embeddings/` folder beside the model's folder, i.e. in the models dir).
    pub embedding_sources: EmbeddingSources,
    /// The text encoder's hidden size (768 for SD 1.x).
    text_hidden: usize,
    pub scheduler_config: SchedulerConfig,
    /// The precision the model runs at: its graphs' (fp32 for checkpoints, which fill fp32
    /// templates), checked against the precision asked for (see `engine::execution`).
    pub precision: Precision,
    runtime: &'static Runtime,
    threads: usize,
    /// The template of this model's architecture (a checkpoint's, or the one an Easel ONNX
    /// export matches); VAE files and LoRAs are read against it.
    template: Option<&'static Template>,
    text_encoder: Slot,
    unet: Slot,
    vae_decoder: Slot,
    /// `None` when the model has no VAE encoder (txt2img does not need one).
    vae_encoder: Option<Slot>,
    /// The model's own VAE sources, restored when a chosen VAE is cleared.
    own_vae: (GraphSource, Option<GraphSource>),
    /// The VAE file replacing the model's own, if any.
    vae_file: Option<PathBuf>,
    /// The LoRAs applied to the UNet and text encoder sessions.
    loras: LoraSet,
    /// The UNet's input channels once read (4, or 9 for an inpainting UNet).
    unet_in_channels: Option<usize>,
    /// Above this many latent positions the two halves of classifier-free guidance run as two
    /// UNet calls (see `pipeline::stages::SPLIT_GUIDANCE_TOKENS`, the default).
    pub split_guidance_tokens: usize,
    /// The VAE config's scaling factor and tile size, read once.
    pub vae_facts: super::pipeline::stages::VaeFacts,
    /// The text encoder edited for CLIP skip and embedding vectors (see [`onnx_edit`]), for the
    /// last CLIP skip asked for (kept only in [`Residency::Warm`]).
    edited_text_encoder: Option<(usize, OnnxModel, EncoderEdit)>,
}

/// What names a model made of a template's graphs: its name, its file or folder, the file whose
/// hash is its A1111 short hash, the template, and the UNet's input channels.
struct TemplatePlace<'a> {
    name: String,
    path: &'a Path,
    hashed: &'a Path,
    template: &'static Template,
    in_channels: usize,
}

/// The graph sources of one model's sub-models.
struct Sources {
    text_encoder: GraphSource,
    unet: GraphSource,
    vae_decoder: GraphSource,
    vae_encoder: Option<GraphSource>,
}

/// What an edited text encoder takes besides `input_ids` (see [`onnx_edit::EditedEncoder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderEdit {
    /// Ids from here up read rows of the extra-embeddings input.
    pub vocab_rows: usize,
    /// Width of one embedding vector.
    pub hidden: usize,
}

/// The text encoder's hidden size of the model at `dir` (`hidden_size` in
/// `text_encoder/config.json`; a checkpoint file's cross-attention width; else SD 1.x's 768).
pub fn text_hidden_size(dir: &Path) -> usize {
    if dir.is_file() {
        // A checkpoint: its cross-attention width, read from the header.
        return match Checkpoint::open(dir).map(|c| c.kind()) {
            Ok(CheckpointKind::Sd1 { context_dim, .. }) if context_dim > 0 => context_dim,
            _ => SD15_TEXT_HIDDEN,
        };
    }
    std::fs::read_to_string(dir.join("text_encoder/config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j["hidden_size"].as_u64())
        .map_or(SD15_TEXT_HIDDEN, |h| h as usize)
}

/// Checks the folder holds every part txt2img needs; the error names all missing parts at once.
pub fn check_layout(dir: &Path) -> Result<(), EngineError> {
    if !dir.is_dir() {
        return Err(EngineError::NotAModel { path: dir.to_path_buf(), missing: vec!["the folder itself".into()] });
    }
    let mut missing: Vec<String> = REQUIRED_FILES.iter().filter(|p| !dir.join(p).is_file()).map(|p| p.to_string()).collect();
    let tokenizer = dir.join("tokenizer");
    let has_json = tokenizer.join("tokenizer.json").is_file();
    let has_bpe_files = tokenizer.join("vocab.json").is_file() && tokenizer.join("merges.txt").is_file();
    if !(has_json || has_bpe_files) {
        missing.push("tokenizer/tokenizer.json (or tokenizer/vocab.json + merges.txt)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(EngineError::NotAModel { path: dir.to_path_buf(), missing })
    }
}

/// The weight files of a diffusers folder saved with `.safetensors` (what `save_pretrained` and
/// the Hugging Face hub hold for most SD 1.x repositories), found when the folder has no ONNX graphs.
pub struct DiffusersWeights {
    pub unet: PathBuf,
    pub text_encoder: PathBuf,
    pub vae: PathBuf,
}

impl DiffusersWeights {
    /// The three files, full precision preferred over a `.fp16` variant; `None` unless the folder
    /// has `model_index.json` and all three.
    pub fn find(dir: &Path) -> Option<Self> {
        if !dir.join("model_index.json").is_file() {
            return None;
        }
        let pick = |sub: &str, stem: &str| {
            [format!("{stem}.safetensors"), format!("{stem}.fp16.safetensors")]
                .into_iter()
                .map(|f| dir.join(sub).join(f))
                .find(|p| p.is_file())
        };
        Some(Self {
            unet: pick("unet", "diffusion_pytorch_model")?,
            text_encoder: pick("text_encoder", "model")?,
            vae: pick("vae", "diffusion_pytorch_model")?,
        })
    }
}

/// Whether `dir` is a model Easel runs: an ONNX folder ([`check_layout`]) or a diffusers folder
/// with `.safetensors` weights ([`DiffusersWeights`]).
pub fn is_model_dir(dir: &Path) -> bool {
    check_layout(dir).is_ok() || DiffusersWeights::find(dir).is_some()
}

/// The identity hash of a model: the checkpoint's sha256 recorded by the converter in
/// `easel-model.json` when present (so it equals what A1111 shows for the same checkpoint),
/// otherwise the sha256 of the UNet graph file.
fn model_hash(dir: &Path) -> Result<String, EngineError> {
    if let Some(recorded) = recorded_hash(dir) {
        return Ok(recorded);
    }
    let path = dir.join("unet/model.onnx");
    super::file_hash::cached_sha256_from(&path, 0).map_err(|e| EngineError::ReadFile { path, message: e.to_string() })
}

/// The sha256 an Easel ONNX folder records of the checkpoint it was converted from.
fn recorded_hash(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("easel-model.json")).ok()?;
    let json = serde_json::from_str::<serde_json::Value>(&text).ok()?;
    let recorded = json["source"]["sha256"].as_str().or_else(|| json["source_sha256"].as_str())?;
    (recorded.len() >= 10 && recorded.chars().all(|c| c.is_ascii_hexdigit())).then(|| recorded.to_string())
}

/// The A1111 short hash (10 hex digits) of the model at `path` if it is known without reading
/// the weights: recorded by a conversion, or hashed before (see [`super::file_hash`]). Model
/// lists show it; loading a model computes it.
pub fn known_short_hash(path: &Path) -> Option<String> {
    let full = if path.is_file() {
        super::file_hash::known_sha256_from(path, 0)
    } else if let Some(files) = DiffusersWeights::find(path) {
        super::file_hash::known_sha256_from(&files.unet, 0)
    } else {
        recorded_hash(path).or_else(|| super::file_hash::known_sha256_from(&path.join("unet/model.onnx"), 0))
    }?;
    Some(full[..10].to_string())
}

impl Slot {
    fn new(role: &'static str, component: Option<Component>, source: GraphSource, keep: Keep) -> Self {
        Self { role, component, source, keep, model: None }
    }

    fn get(&mut self, runtime: &Runtime, threads: usize, loras: &LoraSet) -> Result<SlotGuard<'_>, EngineError> {
        if self.keep == Keep::OnDemand {
            return Ok(SlotGuard::Owned(self.source.build(runtime, self.role, threads, self.component, loras, None)?));
        }
        if self.model.is_none() {
            self.model = Some(self.source.build(runtime, self.role, threads, self.component, loras, None)?);
        }
        Ok(SlotGuard::Borrowed(self.model.as_mut().expect("built above")))
    }

    /// Drops the session so the next use builds it again (its weights changed).
    fn reset(&mut self) {
        self.model = None;
    }
}

/// A sub-model for the duration of one use: borrowed when resident, owned (and dropped after use)
/// in low-memory mode.
pub enum SlotGuard<'a> {
    Borrowed(&'a mut OnnxModel),
    Owned(OnnxModel),
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = OnnxModel;
    fn deref(&self) -> &OnnxModel {
        match self {
            SlotGuard::Borrowed(m) => m,
            SlotGuard::Owned(m) => m,
        }
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut OnnxModel {
        match self {
            SlotGuard::Borrowed(m) => m,
            SlotGuard::Owned(m) => m,
        }
    }
}

impl SdModel {
    /// Loads a model folder (diffusers ONNX layout or `.safetensors` weights) or a `.safetensors`
    /// checkpoint file: checks it, reads the tokenizer and scheduler config, and creates the
    /// sessions (all of them in [`Residency::Warm`], none in [`Residency::LowMemory`]).
    pub fn load(path: &Path, runtime: &'static Runtime, threads: usize, residency: Residency) -> Result<Self, EngineError> {
        let mut model = Self::open(path, runtime, threads, residency)?;
        model.warm()?;
        Ok(model)
    }

    /// Creates the sessions a warm model keeps (none in low-memory mode), with the LoRAs and VAE
    /// chosen so far: call after [`SdModel::open`] and [`SdModel::use_networks`] so that a model
    /// used with LoRAs from the start builds its UNet once, not twice.
    pub fn warm(&mut self) -> Result<(), EngineError> {
        for slot in [&mut self.text_encoder, &mut self.unet, &mut self.vae_decoder] {
            if slot.keep == Keep::Warm {
                slot.get(self.runtime, self.threads, &self.loras)?;
            }
        }
        Ok(())
    }

    /// [`SdModel::load`] without creating any session yet (see [`SdModel::warm`]).
    pub fn open(path: &Path, runtime: &'static Runtime, threads: usize, residency: Residency) -> Result<Self, EngineError> {
        if path.is_file() {
            return Self::load_checkpoint(path, runtime, threads, residency);
        }
        let dir = path;
        if let Err(not_onnx) = check_layout(dir) {
            return match DiffusersWeights::find(dir) {
                Some(weights) => Self::load_diffusers(dir, &weights, runtime, threads, residency),
                None => Err(not_onnx),
            };
        }
        let tokenizer = Arc::new(ClipTokenizer::load(&dir.join("tokenizer"))?);
        let scheduler_path = dir.join("scheduler/scheduler_config.json");
        let scheduler_text = std::fs::read_to_string(&scheduler_path)
            .map_err(|e| EngineError::ReadFile { path: scheduler_path.clone(), message: e.to_string() })?;
        let scheduler_config = SchedulerConfig::from_json(&scheduler_text)?;
        let text_hidden = text_hidden_size(dir);
        let template = templates::TEMPLATES.iter().find(|t| t.context_dim == text_hidden);
        let onnx = |sub: &str, graph: Option<&'static TemplateGraph>| GraphSource::Onnx {
            path: dir.join(sub).join("model.onnx"),
            template: graph,
        };
        let vae_encoder = dir.join("vae_encoder/model.onnx").is_file().then(|| onnx("vae_encoder", template.map(|t| &t.vae_encoder)));
        let sources = Sources {
            text_encoder: onnx("text_encoder", template.map(|t| &t.text_encoder)),
            unet: onnx("unet", template.map(|t| &t.unet)),
            vae_decoder: onnx("vae_decoder", template.map(|t| &t.vae_decoder)),
            vae_encoder,
        };
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let short_hash = model_hash(dir)?[..10].to_string();
        Self::assemble(name, dir, short_hash, tokenizer, scheduler_config, text_hidden, template, sources, runtime, threads, residency)
    }

    /// A single-file SD 1.x checkpoint: its architecture recognised from its keys, its weights
    /// read into the compiled-in template graphs; the tokenizer and scheduler are SD 1.x's.
    fn load_checkpoint(path: &Path, runtime: &'static Runtime, threads: usize, residency: Residency) -> Result<Self, EngineError> {
        let checkpoint = Checkpoint::open(path).map_err(checkpoint_error)?;
        let kind = checkpoint.kind();
        let template = templates::for_kind(&kind).ok_or_else(|| {
            let why = match &kind {
                CheckpointKind::Sd1 { in_channels, context_dim } => {
                    format!("an SD 1.x-like checkpoint with a {in_channels}-channel UNet and {context_dim}-wide cross-attention, which no template fits")
                }
                other => other.to_string(),
            };
            EngineError::Weights(format!("{} is {why}; Easel runs SD 1.x checkpoints", path.display()))
        })?;
        let CheckpointKind::Sd1 { in_channels, .. } = kind else { unreachable!("templates exist only for SD 1.x") };
        let weights = Arc::new(checkpoint);
        let from = |graph: &'static TemplateGraph| GraphSource::Template { graph, weights: weights.clone() };
        let sources = Sources {
            text_encoder: from(&template.text_encoder),
            unet: from(template.unet_for(in_channels)),
            vae_decoder: from(&template.vae_decoder),
            vae_encoder: Some(from(&template.vae_encoder)),
        };
        let scheduler_config = SchedulerConfig::from_json(templates::SD1_SCHEDULER_CONFIG)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        let place = TemplatePlace { name, path, hashed: path, template, in_channels };
        Self::from_template(place, sources, scheduler_config, runtime, threads, residency)
    }

    /// A model of `place.template`'s graphs over `sources`, with SD 1.x's tokenizer and the A1111
    /// short hash of `place.hashed`.
    fn from_template(
        place: TemplatePlace<'_>,
        sources: Sources,
        scheduler_config: SchedulerConfig,
        runtime: &'static Runtime,
        threads: usize,
        residency: Residency,
    ) -> Result<Self, EngineError> {
        let tokenizer = Arc::new(templates::sd1_tokenizer()?);
        let hash = super::file_hash::cached_sha256_from(place.hashed, 0)
            .map_err(|e| EngineError::ReadFile { path: place.hashed.to_path_buf(), message: e.to_string() })?;
        let template = place.template;
        let mut model = Self::assemble(
            place.name,
            place.path,
            hash[..10].to_string(),
            tokenizer,
            scheduler_config,
            template.text_hidden(),
            Some(template),
            sources,
            runtime,
            threads,
            residency,
        )?;
        model.unet_in_channels = Some(place.in_channels);
        Ok(model)
    }

    /// A diffusers folder saved with `.safetensors` weights (`unet/`, `text_encoder/`, `vae/`):
    /// each component's file fills its template, as a checkpoint does; SD 1.x's tokenizer, and the
    /// folder's scheduler config when it has one.
    fn load_diffusers(
        dir: &Path,
        files: &DiffusersWeights,
        runtime: &'static Runtime,
        threads: usize,
        residency: Residency,
    ) -> Result<Self, EngineError> {
        let open = |path: &Path| Checkpoint::open(path).map(Arc::new).map_err(checkpoint_error);
        let (unet, text_encoder, vae) = (open(&files.unet)?, open(&files.text_encoder)?, open(&files.vae)?);
        let kind = unet.kind();
        let template = templates::for_kind(&kind)
            .ok_or_else(|| EngineError::Weights(format!("{} holds {kind}; Easel runs SD 1.x models", dir.display())))?;
        let CheckpointKind::Sd1 { in_channels, .. } = kind else { unreachable!("templates exist only for SD 1.x") };
        let from = |graph: &'static TemplateGraph, weights: &Arc<Checkpoint>| GraphSource::Template { graph, weights: weights.clone() };
        let sources = Sources {
            text_encoder: from(&template.text_encoder, &text_encoder),
            unet: from(template.unet_for(in_channels), &unet),
            vae_decoder: from(&template.vae_decoder, &vae),
            vae_encoder: Some(from(&template.vae_encoder, &vae)),
        };
        let scheduler_path = dir.join("scheduler/scheduler_config.json");
        let scheduler_config = match std::fs::read_to_string(&scheduler_path) {
            Ok(text) => SchedulerConfig::from_json(&text)?,
            Err(_) => SchedulerConfig::from_json(templates::SD1_SCHEDULER_CONFIG)?,
        };
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        // No A1111 hash is defined for a folder: the UNet file's, which identifies the weights.
        let place = TemplatePlace { name, path: dir, hashed: &files.unet, template, in_channels };
        Self::from_template(place, sources, scheduler_config, runtime, threads, residency)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        name: String,
        path: &Path,
        short_hash: String,
        tokenizer: Arc<ClipTokenizer>,
        scheduler_config: SchedulerConfig,
        text_hidden: usize,
        template: Option<&'static Template>,
        sources: Sources,
        runtime: &'static Runtime,
        threads: usize,
        residency: Residency,
    ) -> Result<Self, EngineError> {
        let (keep, lazy) = match residency {
            Residency::Warm => (Keep::Warm, Keep::Lazy),
            Residency::LowMemory => (Keep::OnDemand, Keep::OnDemand),
        };
        let graphs = match &sources.unet {
            GraphSource::Onnx { path, .. } => {
                super::onnx_inspect::summarize(path).ok().and_then(|s| Precision::of_graph(s.precision("sample")))
            }
            GraphSource::Template { .. } => Some(Precision::Fp32),
        };
        let (device, asked) = runtime.execution();
        let precision = super::execution::resolve_precision(asked, graphs, device)?;
        let own_vae = (sources.vae_decoder.clone(), sources.vae_encoder.clone());
        let model = Self {
            name,
            dir: path.to_path_buf(),
            short_hash,
            tokenizer,
            embedding_sources: EmbeddingSources {
                dirs: path.parent().map(|models| models.join(EMBEDDINGS_DIR)).into_iter().collect(),
                files: Vec::new(),
            },
            text_hidden,
            scheduler_config,
            precision,
            runtime,
            threads,
            template,
            text_encoder: Slot::new("text_encoder", Some(Component::TextEncoder), sources.text_encoder, keep),
            unet: Slot::new("unet", Some(Component::Unet), sources.unet, keep),
            vae_decoder: Slot::new("vae_decoder", None, sources.vae_decoder, keep),
            vae_encoder: sources.vae_encoder.map(|source| Slot::new("vae_encoder", None, source, lazy)),
            own_vae,
            vae_file: None,
            loras: LoraSet::default(),
            unet_in_channels: None,
            split_guidance_tokens: super::pipeline::stages::SPLIT_GUIDANCE_TOKENS,
            vae_facts: super::pipeline::stages::VaeFacts::read(path),
            edited_text_encoder: None,
        };
        Ok(model)
    }

    /// Uses the VAE in `file` (a standalone VAE `.safetensors`, e.g. ft-MSE) instead of the
    /// model's own, or the model's own again for `None`. Only the VAE sessions are rebuilt, and
    /// only when the choice changed.
    pub fn set_vae(&mut self, file: Option<&Path>) -> Result<(), EngineError> {
        if self.vae_file.as_deref() == file {
            return Ok(());
        }
        let (decoder, encoder) = match file {
            None => self.own_vae.clone(),
            Some(file) => {
                let template = self.template.ok_or_else(|| {
                    EngineError::Weights(format!(
                        "{} is not an architecture Easel has templates for, so its VAE cannot be replaced",
                        self.name
                    ))
                })?;
                let vae = Checkpoint::open(file).map_err(checkpoint_error)?;
                let decoder_map = template.vae_decoder.weights().map_err(checkpoint_error)?;
                if !vae.covers(&decoder_map) || !vae.covers(&template.vae_encoder.weights().map_err(checkpoint_error)?) {
                    return Err(EngineError::Weights(format!(
                        "{} is {}, not a VAE for {} (its tensors do not fill the VAE)",
                        file.display(),
                        vae.kind(),
                        self.name
                    )));
                }
                let vae = Arc::new(vae);
                (
                    GraphSource::Template { graph: &template.vae_decoder, weights: vae.clone() },
                    Some(GraphSource::Template { graph: &template.vae_encoder, weights: vae }),
                )
            }
        };
        self.vae_decoder.source = decoder;
        self.vae_decoder.reset();
        match (&mut self.vae_encoder, encoder) {
            (Some(slot), Some(source)) => {
                slot.source = source;
                slot.reset();
            }
            (None, Some(source)) => self.vae_encoder = Some(Slot::new("vae_encoder", None, source, self.vae_decoder_keep_lazy())),
            (_, None) => self.vae_encoder = None,
        }
        self.vae_file = file.map(Path::to_path_buf);
        if self.vae_decoder.keep == Keep::Warm {
            self.vae_decoder.get(self.runtime, self.threads, &self.loras)?;
        }
        Ok(())
    }

    fn vae_decoder_keep_lazy(&self) -> Keep {
        if self.vae_decoder.keep == Keep::OnDemand {
            Keep::OnDemand
        } else {
            Keep::Lazy
        }
    }

    /// The VAE file in use instead of the model's own.
    pub fn vae_file(&self) -> Option<&Path> {
        self.vae_file.as_deref()
    }

    /// Applies `loras` (replacing the previous set): each is checked against this model's layers
    /// first; the UNet and text encoder sessions are rebuilt only when the set changed.
    pub fn set_loras(&mut self, loras: LoraSet) -> Result<(), EngineError> {
        if loras.identity() == self.loras.identity() {
            return Ok(());
        }
        if !loras.entries.is_empty() {
            let template = self.template.ok_or_else(|| {
                EngineError::Weights(format!("{} is not an architecture Easel has templates for, so LoRAs cannot be applied", self.name))
            })?;
            let unet = match &self.unet.source {
                GraphSource::Template { graph, .. } => *graph,
                GraphSource::Onnx { .. } => &template.unet,
            };
            let (unet_map, text_map) =
                (unet.weights().map_err(checkpoint_error)?, template.text_encoder.weights().map_err(checkpoint_error)?);
            loras
                .check(&[(Component::Unet, &unet_map.initializers), (Component::TextEncoder, &text_map.initializers)])
                .map_err(|e| EngineError::Weights(e.to_string()))?;
        }
        let (unet_changed, text_changed) = (
            loras.touches(Component::Unet) || self.loras.touches(Component::Unet),
            loras.touches(Component::TextEncoder) || self.loras.touches(Component::TextEncoder),
        );
        self.loras = loras;
        if unet_changed {
            self.unet.reset();
        }
        if text_changed {
            self.text_encoder.reset();
            self.edited_text_encoder = None;
        }
        Ok(())
    }

    /// A1111's infotext entries for the LoRAs and the VAE in use: `Lora hashes`, `VAE hash` (first
    /// 10 hex digits of the file's sha256) and `VAE` (its file name without extension).
    pub fn network_parameters(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self.loras.infotext_hashes().map(|h| ("Lora hashes", h)).into_iter().collect();
        if let Some(vae) = &self.vae_file {
            if let Ok(hash) = super::file_hash::cached_sha256_from(vae, 0) {
                out.push(("VAE hash", hash[..10].to_string()));
            }
            out.push(("VAE", vae.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()));
        }
        out
    }

    /// Applies the LoRA files (`(file, unet weight, text-encoder weight)`) and the VAE file a
    /// generation names, read through `cache`; sessions are rebuilt only for what changed.
    pub fn use_networks(
        &mut self,
        cache: &mut super::lora::LoraCache,
        loras: &[(PathBuf, f32, f32)],
        vae: Option<&Path>,
    ) -> Result<(), EngineError> {
        let set = cache.set(loras).map_err(|e| EngineError::Weights(e.to_string()))?;
        self.set_loras(set)?;
        self.set_vae(vae)
    }

    /// The LoRAs applied now.
    pub fn loras(&self) -> &LoraSet {
        &self.loras
    }

    /// Adds a folder of embeddings (the models dir's) unless it is already searched.
    pub fn add_embeddings_dir(&mut self, dir: PathBuf) {
        if !self.embedding_sources.dirs.contains(&dir) {
            self.embedding_sources.dirs.insert(0, dir);
        }
    }

    /// The text encoder's hidden size, read from its config at load (see [`text_hidden_size`]).
    pub fn text_hidden_size(&self) -> usize {
        self.text_hidden
    }

    pub fn text_encoder(&mut self) -> Result<SlotGuard<'_>, EngineError> {
        self.text_encoder.get(self.runtime, self.threads, &self.loras)
    }

    /// The text encoder with an extra-embeddings input and, for `clip_skip` > 1, its output taken
    /// from an earlier layer: the model's graph edited in memory (no re-export, no file written).
    pub fn edited_text_encoder(&mut self, clip_skip: usize) -> Result<(SlotGuard<'_>, EncoderEdit), EngineError> {
        let cached = matches!(&self.edited_text_encoder, Some((skip, _, _)) if *skip == clip_skip);
        if !cached {
            self.edited_text_encoder = None;
            let path = self.text_encoder.source.path().to_path_buf();
            let shape = std::cell::Cell::new(None);
            let edit = |bytes: &[u8]| -> Result<Vec<u8>, EngineError> {
                let edited = onnx_edit::edit_text_encoder(bytes, clip_skip)
                    .map_err(|e| EngineError::LoadSession { path: path.clone(), message: e.to_string() })?;
                shape.set(Some(EncoderEdit { vocab_rows: edited.vocab_rows, hidden: edited.hidden }));
                Ok(edited.bytes)
            };
            let model = self.text_encoder.source.build(
                self.runtime,
                "text_encoder",
                self.threads,
                Some(Component::TextEncoder),
                &self.loras,
                Some(&edit),
            )?;
            let edit = shape.get().expect("the edit ran");
            if self.text_encoder.keep == Keep::OnDemand {
                return Ok((SlotGuard::Owned(model), edit));
            }
            self.edited_text_encoder = Some((clip_skip, model, edit));
        }
        let (_, model, edit) = self.edited_text_encoder.as_mut().expect("cached above");
        Ok((SlotGuard::Borrowed(model), *edit))
    }

    pub fn unet(&mut self) -> Result<SlotGuard<'_>, EngineError> {
        self.unet.get(self.runtime, self.threads, &self.loras)
    }

    /// The UNet's input channels: 4, or 9 for an inpainting UNet (latents, mask, masked-image
    /// latents). Read from the session once (in low-memory mode that loads the UNet once more).
    pub fn unet_in_channels(&mut self) -> Result<usize, EngineError> {
        if let Some(channels) = self.unet_in_channels {
            return Ok(channels);
        }
        let unet = self.unet()?;
        let sample = super::onnx_model::spec(&unet, "sample", 0)?;
        let channels = match sample.dims.get(1) {
            Some(&c) if c > 0 => c as usize,
            _ => 4,
        };
        drop(unet);
        self.unet_in_channels = Some(channels);
        Ok(channels)
    }

    pub fn vae_decoder(&mut self) -> Result<SlotGuard<'_>, EngineError> {
        self.vae_decoder.get(self.runtime, self.threads, &self.loras)
    }

    /// The VAE encoder (image-to-image); an error naming the folder when the model has none.
    pub fn vae_encoder(&mut self) -> Result<SlotGuard<'_>, EngineError> {
        match self.vae_encoder.as_mut() {
            Some(slot) => slot.get(self.runtime, self.threads, &self.loras),
            None => Err(EngineError::NotAModel {
                path: self.dir.clone(),
                missing: vec!["vae_encoder/model.onnx (image-to-image needs it)".into()],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parts_are_all_named() {
        let dir = std::env::temp_dir().join(format!("easel-layout-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("unet")).unwrap();
        std::fs::write(dir.join("model_index.json"), "{}").unwrap();
        std::fs::write(dir.join("unet/model.onnx"), "").unwrap();
        let msg = check_layout(&dir).unwrap_err().to_string();
        for part in ["text_encoder/model.onnx", "vae_decoder/model.onnx", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json"] {
            assert!(msg.contains(part), "{msg}");
        }
        assert!(!msg.contains("unet/model.onnx"), "{msg}");
    }

    #[test]
    fn tiny_model_layout_is_complete() {
        check_layout(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd")).unwrap();
    }
}
