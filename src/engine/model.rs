//! A Stable Diffusion 1.x model folder in the diffusers ONNX layout: checking it, and holding its
//! sessions, tokenizer and scheduler config while it is in use.
//!
//! By default every session is created once and kept warm. In low-memory mode each sub-model is
//! loaded only while it runs (text encoder, then UNet, then VAE decoder), so at most one of them is
//! resident at a time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::clip_tokenizer::ClipTokenizer;
use super::onnx_edit;
use super::onnx_model::OnnxModel;
use super::prompt::EmbeddingSources;
use super::runtime::Runtime;
use super::scheduler::SchedulerConfig;
use super::EngineError;

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

/// A sub-model that is either resident or loaded on demand.
enum Slot {
    Resident(OnnxModel),
    OnDemand {
        role: &'static str,
        path: PathBuf,
    },
    /// Loaded at its first use, then kept (the VAE encoder: only image-to-image needs it).
    Lazy {
        role: &'static str,
        path: PathBuf,
        model: Option<OnnxModel>,
    },
}

pub struct SdModel {
    /// The folder name, used in metadata (`Model: tiny-sd`).
    pub name: String,
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
    runtime: &'static Runtime,
    threads: usize,
    text_encoder: Slot,
    unet: Slot,
    vae_decoder: Slot,
    /// `None` when the folder has no `vae_encoder/model.onnx` (txt2img does not need one).
    vae_encoder: Option<Slot>,
    /// The UNet's input channels once read (4, or 9 for an inpainting UNet).
    unet_in_channels: Option<usize>,
    /// Above this many latent positions the two halves of classifier-free guidance run as two
    /// UNet calls (see `pipeline::stages::SPLIT_GUIDANCE_TOKENS`, the default).
    pub split_guidance_tokens: usize,
    /// The text encoder edited for CLIP skip and embedding vectors (see [`onnx_edit`]), for the
    /// last CLIP skip asked for (kept only in [`Residency::Warm`]).
    edited_text_encoder: Option<(usize, OnnxModel, EncoderEdit)>,
}

/// What an edited text encoder takes besides `input_ids` (see [`onnx_edit::EditedEncoder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderEdit {
    /// Ids from here up read rows of the extra-embeddings input.
    pub vocab_rows: usize,
    /// Width of one embedding vector.
    pub hidden: usize,
}

/// The text encoder's hidden size of the model in `dir` (`hidden_size` in
/// `text_encoder/config.json`, else SD 1.x's 768).
pub fn text_hidden_size(dir: &Path) -> usize {
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

/// The identity hash of a model: the checkpoint's sha256 recorded by the converter in
/// `easel-model.json` when present (so it equals what A1111 shows for the same checkpoint),
/// otherwise the sha256 of the UNet graph file.
fn model_hash(dir: &Path) -> Result<String, EngineError> {
    if let Ok(text) = std::fs::read_to_string(dir.join("easel-model.json")) {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let recorded = json["source"]["sha256"].as_str().or_else(|| json["source_sha256"].as_str());
            if let Some(h) = recorded.filter(|h| h.len() >= 10 && h.chars().all(|c| c.is_ascii_hexdigit())) {
                return Ok(h.to_string());
            }
        }
    }
    let path = dir.join("unet/model.onnx");
    let read_err = |e: std::io::Error| EngineError::ReadFile { path: path.clone(), message: e.to_string() };
    let mut file = std::fs::File::open(&path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

impl Slot {
    fn get(&mut self, runtime: &Runtime, threads: usize) -> Result<SlotGuard<'_>, EngineError> {
        match self {
            Slot::Resident(model) => Ok(SlotGuard::Borrowed(model)),
            Slot::OnDemand { role, path } => Ok(SlotGuard::Owned(OnnxModel::load(runtime, role, path, threads)?)),
            Slot::Lazy { role, path, model } => {
                if model.is_none() {
                    *model = Some(OnnxModel::load(runtime, role, path, threads)?);
                }
                Ok(SlotGuard::Borrowed(model.as_mut().expect("loaded above")))
            }
        }
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
    /// Checks the layout, reads the tokenizer and scheduler config, and creates the sessions
    /// (all of them in [`Residency::Warm`], none in [`Residency::LowMemory`]).
    pub fn load(dir: &Path, runtime: &'static Runtime, threads: usize, residency: Residency) -> Result<Self, EngineError> {
        check_layout(dir)?;
        let tokenizer = Arc::new(ClipTokenizer::load(&dir.join("tokenizer"))?);
        let embedding_sources =
            EmbeddingSources { dirs: dir.parent().map(|models| models.join(EMBEDDINGS_DIR)).into_iter().collect(), files: Vec::new() };
        let scheduler_path = dir.join("scheduler/scheduler_config.json");
        let scheduler_text = std::fs::read_to_string(&scheduler_path)
            .map_err(|e| EngineError::ReadFile { path: scheduler_path.clone(), message: e.to_string() })?;
        let scheduler_config = SchedulerConfig::from_json(&scheduler_text)?;
        let slot = |role: &'static str, sub: &str| -> Result<Slot, EngineError> {
            let path = dir.join(sub).join("model.onnx");
            Ok(match residency {
                Residency::Warm => Slot::Resident(OnnxModel::load(runtime, role, &path, threads)?),
                Residency::LowMemory => Slot::OnDemand { role, path },
            })
        };
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            short_hash: model_hash(dir)?[..10].to_string(),
            tokenizer,
            embedding_sources,
            text_hidden: text_hidden_size(dir),
            scheduler_config,
            runtime,
            threads,
            text_encoder: slot("text_encoder", "text_encoder")?,
            unet: slot("unet", "unet")?,
            vae_decoder: slot("vae_decoder", "vae_decoder")?,
            vae_encoder: dir.join("vae_encoder/model.onnx").is_file().then(|| {
                let (role, path) = ("vae_encoder", dir.join("vae_encoder/model.onnx"));
                match residency {
                    Residency::Warm => Slot::Lazy { role, path, model: None },
                    Residency::LowMemory => Slot::OnDemand { role, path },
                }
            }),
            unet_in_channels: None,
            split_guidance_tokens: super::pipeline::stages::SPLIT_GUIDANCE_TOKENS,
            edited_text_encoder: None,
        })
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
        self.text_encoder.get(self.runtime, self.threads)
    }

    /// The text encoder with an extra-embeddings input and, for `clip_skip` > 1, its output taken
    /// from an earlier layer: the model's graph edited in memory (no re-export, no file written).
    pub fn edited_text_encoder(&mut self, clip_skip: usize) -> Result<(SlotGuard<'_>, EncoderEdit), EngineError> {
        let cached = matches!(&self.edited_text_encoder, Some((skip, _, _)) if *skip == clip_skip);
        if !cached {
            self.edited_text_encoder = None;
            let path = self.dir.join("text_encoder/model.onnx");
            let bytes = std::fs::read(&path).map_err(|e| EngineError::ReadFile { path: path.clone(), message: e.to_string() })?;
            let edited = onnx_edit::edit_text_encoder(&bytes, clip_skip)
                .map_err(|e| EngineError::LoadSession { path: path.clone(), message: e.to_string() })?;
            drop(bytes);
            let model = OnnxModel::load_from_memory(self.runtime, "text_encoder", &path, &edited.bytes, self.threads)?;
            let edit = EncoderEdit { vocab_rows: edited.vocab_rows, hidden: edited.hidden };
            if matches!(self.text_encoder, Slot::OnDemand { .. }) {
                return Ok((SlotGuard::Owned(model), edit));
            }
            self.edited_text_encoder = Some((clip_skip, model, edit));
        }
        let (_, model, edit) = self.edited_text_encoder.as_mut().expect("cached above");
        Ok((SlotGuard::Borrowed(model), *edit))
    }

    pub fn unet(&mut self) -> Result<SlotGuard<'_>, EngineError> {
        self.unet.get(self.runtime, self.threads)
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
        self.vae_decoder.get(self.runtime, self.threads)
    }

    /// The VAE encoder (image-to-image); an error naming the folder when the model has none.
    pub fn vae_encoder(&mut self) -> Result<SlotGuard<'_>, EngineError> {
        match self.vae_encoder.as_mut() {
            Some(slot) => slot.get(self.runtime, self.threads),
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
