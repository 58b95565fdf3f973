//! `easel generate`: one generation from the command line (text-to-image, image-to-image,
//! inpainting, outpainting, hires fix), with a progress bar. Glue only: settings come from
//! [`crate::api::request`], pictures are read by [`crate::uploads`], the work is
//! [`crate::engine::pipeline::generate`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::image_modes::{HiresRequest, Outpaint};
use crate::api::request::{FieldError, GenerateRequest, GenerationSettings};
use crate::engine::model::{Residency, SdModel};
use crate::engine::pipeline::{generate, SourceImages};
use crate::engine::prompt::embeddings::{EmbeddingFile, EMBEDDING_EXTENSIONS};
use crate::engine::{npy, png_meta, runtime, CancelToken, EngineError};
use crate::uploads;

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Model folder, or a model name or alias from `easel models list` [default: the default model].
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub prompt: String,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Noise seed (u64); random when absent. Always printed and recorded.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Denoising steps [default: 20].
    #[arg(long)]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale [default: 7.0].
    #[arg(long)]
    pub cfg_scale: Option<f32>,
    /// Image width, a multiple of 8 in 64..2048 [default: 512].
    #[arg(long)]
    pub width: Option<u32>,
    /// Image height, a multiple of 8 in 64..2048 [default: 512].
    #[arg(long)]
    pub height: Option<u32>,
    /// pndm, ddim, euler, euler_a, heun, lms, dpmpp_2m or unipc [default: dpmpp_2m].
    #[arg(long)]
    pub sampler: Option<String>,
    /// default or karras [default: karras for dpmpp_2m, default otherwise].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Images generated together [default: 1].
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// A .png file, or a folder [default: the outputs dir].
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Save the final latents (before the VAE) as a NumPy .npy file.
    #[arg(long, value_name = "FILE.npy")]
    pub save_latents: Option<PathBuf>,
    /// Do not record the images in the job database (by default, images written to the outputs
    /// dir appear in the server's Gallery and history like any job's).
    #[arg(long)]
    pub no_record: bool,
    /// Image-to-image: start from this picture (PNG, JPEG or WebP) instead of noise. It sets
    /// width and height unless they are given; otherwise it is resized (Lanczos).
    #[arg(long, value_name = "IN.png")]
    pub init_image: Option<PathBuf>,
    /// Image-to-image: how much of the init image is repainted, in (0, 1]; int(steps x strength)
    /// steps run [default: 0.75].
    #[arg(long, requires = "init_image")]
    pub strength: Option<f64>,
    /// Inpainting: white repaints, black keeps (a transparent PNG: its alpha). Resized to the
    /// init image.
    #[arg(long, value_name = "MASK.png", requires = "init_image")]
    pub mask: Option<PathBuf>,
    /// Blur of the mask in pixels before it is binarised at 50% [default: 4]; with --outpaint,
    /// the width of the soft seam is twice this.
    #[arg(long)]
    pub mask_blur: Option<u32>,
    /// Inpainting: what the masked part holds when it is encoded: original; grey (ComfyUI's
    /// VAEEncodeForInpaint, compat comfyui); fill, latent_noise or latent_nothing (A1111's,
    /// compat a1111) [default: original].
    #[arg(long, requires = "mask")]
    pub masked_content: Option<String>,
    /// Inpainting, compat a1111: whole (the picture) or only_masked (the mask's area at the
    /// image size, pasted back; A1111's "Only masked") [default: whole].
    #[arg(long, requires = "mask")]
    pub inpaint_area: Option<String>,
    /// With --inpaint-area only_masked: pixels around the mask's area [default: 32].
    #[arg(long, requires = "inpaint_area")]
    pub inpaint_padding: Option<u32>,
    /// With --masked-content grey: grow the latent mask by this many pixels (ComfyUI's
    /// grow_mask_by) [default: 0].
    #[arg(long, requires = "masked_content")]
    pub mask_grow: Option<u32>,
    /// Outpainting: extend the init image, e.g. left=64,right=64,top=0,bottom=0 (multiples of 8).
    #[arg(long, value_name = "SIDES", requires = "init_image", value_parser = Outpaint::parse)]
    pub outpaint: Option<Outpaint>,
    /// Hires fix: upscale the text-to-image result by this factor, in (1, 4], and refine it.
    #[arg(long)]
    pub hires_scale: Option<f64>,
    /// Hires fix: strength of the second pass [default: 0.7].
    #[arg(long)]
    pub hires_strength: Option<f64>,
    /// Hires fix: steps of the second pass; 0 = the same as --steps [default: 0].
    #[arg(long)]
    pub hires_steps: Option<u32>,
    /// Hires fix: latent (bilinear), latent-nearest-exact, latent-bicubic, latent-nearest,
    /// latent-area, or lanczos (the picture) [default: latent].
    #[arg(long)]
    pub hires_upscaler: Option<String>,
    /// How the prompts are read: a1111 ((word:1.2), [a:b:0.5], BREAK, AND; any length), comfyui
    /// ((word:1.2), embedding:name; any length) or plain (literal, cut at 77 tokens, as
    /// diffusers) [default: a1111].
    #[arg(long, value_name = "SYNTAX")]
    pub prompt_syntax: Option<String>,
    /// CLIP skip as A1111 counts it: 1 = the text encoder's last layer, 2 = the one before
    /// (through the final layer norm) [default: 1].
    #[arg(long, value_name = "N")]
    pub clip_skip: Option<u32>,
    /// A textual-inversion embedding file (.pt, .bin or .safetensors) the prompt may use by its
    /// file name, besides the models dir's embeddings/ folder. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub embedding: Vec<PathBuf>,
    /// Save the text conditioning the UNet gets at the first step as a NumPy .npy file:
    /// [branches x batch, tokens, hidden], the negative prompt's first, then each AND part's
    /// (a shorter one padded by repeating its last token).
    #[arg(long, value_name = "FILE.npy")]
    pub save_embeddings: Option<PathBuf>,
    /// Apply a LoRA: a .safetensors file or a name from the loras folders, with its weight
    /// [default weight: 1]. Repeatable. In the a1111 prompt syntax `<lora:NAME:W>` also works.
    #[arg(long, value_name = "PATH:WEIGHT")]
    pub lora: Vec<String>,
    /// Use this VAE instead of the model's own: a .safetensors file or a name from the vae folders.
    #[arg(long, value_name = "PATH")]
    pub vae: Option<String>,
    /// Whose noise to follow: diffusers (one torch CPU generator), a1111 (image i seeded with
    /// seed+i, from --randn-source) or comfyui (one CPU draw for the batch) [default: diffusers].
    #[arg(long, value_name = "MODE")]
    pub compat: Option<String>,
    /// A1111's noise source (--compat a1111): nv (its Philox equal of GPU noise, A1111's default)
    /// or cpu [default: nv].
    #[arg(long, value_name = "SOURCE")]
    pub randn_source: Option<String>,
    /// A1111's variation seed (--compat a1111); image i uses SUBSEED+i.
    #[arg(long, value_name = "SEED")]
    pub subseed: Option<u64>,
    /// How much of the variation seed's noise to mix in, 0 to 1 [default: 0].
    #[arg(long, value_name = "F")]
    pub subseed_strength: Option<f64>,
    /// A1111's "resize seed from" (--compat a1111): the noise of a WxH image, centred.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub seed_resize_from: Option<(u32, u32)>,
    /// A1111's eta noise seed delta (--compat a1111): sampler noise seeded with seed+DELTA.
    #[arg(long, value_name = "DELTA")]
    pub eta_noise_seed_delta: Option<u64>,
    /// Save the start noise of the whole batch (before it is scaled to the first sigma) as a
    /// NumPy .npy file, [batch, 4, height/8, width/8].
    #[arg(long, value_name = "FILE.npy")]
    pub save_noise: Option<PathBuf>,
    /// Run the VAE over large pictures in overlapping tiles (bounded memory): auto (above
    /// 512x512 in --compat diffusers), on, or off [default: auto].
    #[arg(long, value_name = "MODE")]
    pub vae_tiling: Option<String>,
}

/// `WxH` of `--seed-resize-from`.
fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| format!("{text:?} is not WxH, e.g. 512x768"))?;
    let side = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("{text:?} is not WxH, e.g. 512x768"));
    Ok((side(w)?, side(h)?))
}

/// `PATH[:WEIGHT]` of `--lora`: the file (or name) and the weight.
fn lora_arg(arg: &str) -> Result<(String, f32), GenerateError> {
    match arg.rsplit_once(':') {
        Some((path, weight)) if !path.is_empty() => match weight.trim().parse::<f32>() {
            Ok(w) => Ok((path.to_string(), w)),
            Err(_) => Err(GenerateError::Invalid(vec![FieldError::new(
                "lora",
                format!("--lora {arg}: the weight {weight:?} is not a number; write PATH:0.8"),
            )])),
        },
        _ => Ok((arg.to_string(), 1.0)),
    }
}

/// A file given on the command line, or else a name the registry finds in `kind`'s folders.
fn file_or_name(
    registry: &crate::model_registry::ModelRegistry,
    kind: crate::model_files::FileKind,
    given: &str,
) -> Result<PathBuf, GenerateError> {
    let path = PathBuf::from(given);
    if path.is_file() {
        return Ok(path);
    }
    registry
        .find_file(kind, given)
        .map(|f| f.path)
        .map_err(|e| GenerateError::Invalid(vec![FieldError::new(kind.easel_folder(), e.to_string())]))
}

/// Reads a picture given on the command line, as [`uploads::decode`] does for uploads.
fn read_picture(field: &str, path: &Path) -> Result<(image::DynamicImage, String), GenerateError> {
    let invalid = |message: String| GenerateError::Invalid(vec![FieldError::new(field, message)]);
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let image = uploads::decode(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    Ok((image, uploads::content_id("file_", &bytes)))
}

impl GenerateArgs {
    fn hires(&self) -> Option<HiresRequest> {
        let any =
            self.hires_scale.is_some() || self.hires_strength.is_some() || self.hires_steps.is_some() || self.hires_upscaler.is_some();
        any.then(|| HiresRequest {
            scale: self.hires_scale,
            strength: self.hires_strength,
            steps: self.hires_steps,
            upscaler: self.hires_upscaler.clone(),
            seed: None,
        })
    }
}

/// Failures of `easel generate`, split by exit code: bad input (2) or a failed run (1).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{}", .0.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadModel(EngineError),
    #[error("{0}")]
    Failed(String),
}

impl GenerateError {
    pub fn exit_code(&self) -> u8 {
        match self {
            GenerateError::Invalid(_) | GenerateError::BadModel(_) => 2,
            GenerateError::Failed(_) => 1,
        }
    }
}

/// A folder path as given, or a model name (models dir, hub cache, alias) from the registry.
/// Returns the folder and the name to record in image metadata.
pub fn resolve_model_dir(model: Option<&str>, settings: &crate::config::Settings) -> Result<(PathBuf, String), EngineError> {
    let direct = PathBuf::from(model.unwrap_or_default());
    if model.is_some() && (direct.is_dir() || direct.is_file()) {
        let name =
            direct.canonicalize().unwrap_or(direct.clone()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok((direct, name));
    }
    match crate::model_registry::ModelRegistry::from_settings(settings).resolve(model) {
        Ok(entry) => Ok((entry.path, entry.name)),
        Err(e) => Err(EngineError::UnknownModel(e.to_string())),
    }
}

fn output_paths(output: &Path, settings: &GenerationSettings) -> Vec<PathBuf> {
    let n = settings.batch_size as usize;
    let is_file = output.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    (0..n)
        .map(|i| {
            if is_file && n == 1 {
                output.to_path_buf()
            } else if is_file {
                let stem = output.file_stem().unwrap_or_default().to_string_lossy();
                output.with_file_name(format!("{stem}-{i}.png"))
            } else {
                output.join(format!("easel-{}-{i}.png", settings.seed))
            }
        })
        .collect()
}

/// The `--embedding` files, checked to exist and to be embedding files.
fn embedding_files(paths: &[PathBuf]) -> Result<Vec<EmbeddingFile>, GenerateError> {
    paths
        .iter()
        .map(|path| {
            let invalid = |message: String| GenerateError::Invalid(vec![FieldError::new("embedding", message)]);
            let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            if !EMBEDDING_EXTENSIONS.contains(&ext.as_str()) {
                return Err(invalid(format!("{}: an embedding is a .{} file", path.display(), EMBEDDING_EXTENSIONS.join(", ."))));
            }
            if !path.is_file() {
                return Err(invalid(format!("{}: no such file", path.display())));
            }
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(EmbeddingFile { name, path: path.clone() })
        })
        .collect()
}

pub fn run(args: &GenerateArgs, settings: &crate::config::Settings) -> Result<(), GenerateError> {
    let created_at_ms = crate::jobs::store::now_ms();
    let init = args.init_image.as_deref().map(|p| read_picture("init_image", p)).transpose()?;
    let mask = args.mask.as_deref().map(|p| read_picture("mask", p)).transpose()?;
    let mut request = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        seed: args.seed,
        steps: args.steps,
        cfg_scale: args.cfg_scale,
        width: args.width,
        height: args.height,
        sampler: args.sampler.clone(),
        schedule: args.schedule.clone(),
        batch_size: args.batch_size,
        model: args.model.clone(),
        init_image: init.as_ref().map(|(_, id)| id.clone()),
        mask: mask.as_ref().map(|(_, id)| id.clone()),
        mask_blur: args.mask_blur,
        strength: args.strength,
        outpaint: args.outpaint,
        hires: args.hires(),
        prompt_syntax: args.prompt_syntax.clone(),
        clip_skip: args.clip_skip,
        loras: None,
        vae: None,
        compat: args.compat.clone(),
        randn_source: args.randn_source.clone(),
        subseed: args.subseed,
        subseed_strength: args.subseed_strength,
        seed_resize_from_w: args.seed_resize_from.map(|(w, _)| w),
        seed_resize_from_h: args.seed_resize_from.map(|(_, h)| h),
        eta_noise_seed_delta: args.eta_noise_seed_delta,
        png_text: None,
        vae_tiling: args.vae_tiling.clone(),
        sampling_range: None,
        stages: None,
        masked_content: args.masked_content.clone(),
        mask_grow: args.mask_grow,
        inpaint_area: args.inpaint_area.clone(),
        inpaint_padding: args.inpaint_padding,
        batch_index: None,
        combined_prompts: None,
        conditioning: None,
    };
    let registry = crate::model_registry::ModelRegistry::from_settings(settings);
    let mut lora_files = Vec::new();
    let mut lora_refs = Vec::new();
    for arg in &args.lora {
        let (given, weight) = lora_arg(arg)?;
        let path = file_or_name(&registry, crate::model_files::FileKind::Lora, &given)?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        lora_refs.push(crate::api::LoraRef { name, weight, text_encoder_weight: None });
        lora_files.push((path, weight, weight));
    }
    request.loras = (!lora_refs.is_empty()).then_some(lora_refs);
    let vae_file = args.vae.as_deref().map(|v| file_or_name(&registry, crate::model_files::FileKind::Vae, v)).transpose()?;
    request.vae = vae_file.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    if let Some((image, _)) = &init {
        request.size_from_image(image.width(), image.height());
    }
    let resolved = request.resolve(crate::api::request::random_seed).map_err(GenerateError::Invalid)?;
    // The prompt's <lora:…> tags name files in the loras folders.
    if resolved.prompt_syntax == crate::api::PromptSyntax::A1111 {
        for tag in crate::api::networks::extra_network_tags(&resolved.prompt).1 {
            let path = file_or_name(&registry, crate::model_files::FileKind::Lora, &tag.name)?;
            let (unet, text) = tag.weights();
            lora_files.push((path, unet, text));
        }
    }
    let failed = |e: EngineError| GenerateError::Failed(e.to_string());
    let rt = runtime::runtime_for(settings.device).map_err(|e| failed(e.into()))?;
    rt.set_execution(settings.device, settings.precision).map_err(|e| GenerateError::BadModel(e.into()))?;
    let (dir, name) = resolve_model_dir(args.model.as_deref(), settings).map_err(GenerateError::BadModel)?;
    if dir.is_dir() && !crate::engine::model::is_model_dir(&dir) {
        crate::engine::model::check_layout(&dir).map_err(GenerateError::BadModel)?;
    }
    let residency = if settings.low_memory { Residency::LowMemory } else { Residency::Warm };
    let load_started = Instant::now();
    // Opened, then LoRAs and VAE chosen, then warmed: the sessions are built once, with them.
    let mut model = SdModel::open(&dir, rt, settings.threads, residency).map_err(|e| match e {
        EngineError::Execution(_) => GenerateError::BadModel(e),
        other => failed(other),
    })?;
    model.name = name;
    for dir in registry.embeddings_dirs().into_iter().rev() {
        model.add_embeddings_dir(dir);
    }
    model.use_networks(&mut crate::engine::lora::LoraCache::default(), &lora_files, vae_file.as_deref()).map_err(failed)?;
    model.warm().map_err(failed)?;
    model.embedding_sources.files.extend(embedding_files(&args.embedding)?);
    eprintln!(
        "model {} ({}) loaded in {:.2} s; seed {}",
        model.name,
        model.short_hash,
        load_started.elapsed().as_secs_f64(),
        resolved.seed
    );

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len}  {per_sec}  ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut on_step = |p: &crate::engine::pipeline::StepProgress<'_>| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64);
    };
    let images = SourceImages { init: init.map(|(i, _)| uploads::to_rgb(&i)), mask: mask.map(|(m, _)| uploads::to_mask(&m)) };
    let output = generate(&mut model, &resolved, &images, &CancelToken::new(), &mut on_step).map_err(|e| match e {
        EngineError::InvalidRequest(message) => GenerateError::Invalid(vec![FieldError::new("request", message)]),
        other => failed(other),
    })?;
    bar.finish_and_clear();
    for note in &output.prompt_notes {
        eprintln!("note: {note}");
    }

    if args.output.is_none() && !args.no_record {
        // Into the outputs dir as a job's images, recorded in the job database.
        let job_id = uuid::Uuid::new_v4().to_string();
        let saved = crate::job_runner::save_images(&settings.outputs_dir, &job_id, created_at_ms, &resolved, &model, &output)
            .map_err(|e| GenerateError::Failed(e.to_string()))?;
        for image in &saved {
            println!("{}", settings.outputs_dir.join(&image.path).display());
        }
        let store = crate::jobs::JobStore::open(&settings.data_dir).map_err(|e| GenerateError::Failed(e.to_string()))?;
        // Recorded with the model it ran on, as the server records a job's.
        let recorded = GenerationSettings { model: Some(model.name.clone()), ..resolved.clone() };
        store.record_finished(&job_id, &recorded, created_at_ms, &saved).map_err(|e| GenerateError::Failed(e.to_string()))?;
        eprintln!("recorded as job {job_id}: in the Gallery and history (--no-record to skip)");
    } else {
        let out = args.output.clone().unwrap_or_else(|| settings.outputs_dir.clone());
        let texts = crate::job_runner::image_infotexts(&resolved, &model, &output);
        for ((image, path), (_, parameters)) in output.images.iter().zip(output_paths(&out, &resolved)).zip(texts) {
            let bytes = png_meta::image_png(&resolved, &model, image, &parameters).map_err(failed)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| GenerateError::Failed(format!("cannot create {}: {e}", parent.display())))?;
            }
            std::fs::write(&path, bytes).map_err(|e| GenerateError::Failed(format!("cannot write {}: {e}", path.display())))?;
            println!("{}", path.display());
        }
    }
    if let Some(path) = &args.save_latents {
        npy::write_f32(path, &output.latent_shape, &output.latents)
            .map_err(|e| GenerateError::Failed(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("latents saved to {}", path.display());
    }
    if let Some(path) = &args.save_noise {
        let noise = output.initial_noise.as_deref().ok_or_else(|| GenerateError::Failed("this generation drew no start noise".into()))?;
        npy::write_f32(path, &output.noise_shape, noise)
            .map_err(|e| GenerateError::Failed(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("start noise saved to {}", path.display());
    }
    if let Some(path) = &args.save_embeddings {
        let [branches, tokens, dim] = output.text_embeddings_shape;
        let batch = resolved.batch_size as usize;
        let per_branch = tokens * dim;
        let mut all = Vec::with_capacity(branches * batch * per_branch);
        for branch in output.text_embeddings.chunks(per_branch.max(1)) {
            for _ in 0..batch {
                all.extend_from_slice(branch);
            }
        }
        npy::write_f32(path, &[branches * batch, tokens, dim], &all)
            .map_err(|e| GenerateError::Failed(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("text conditioning saved to {}", path.display());
    }
    let t = &output.timings;
    let unet: f64 = t.unet_steps.iter().map(|d| d.as_secs_f64()).sum();
    eprintln!(
        "seed {}; text encoder {:.2} s, unet {:.2} s ({} calls), vae {:.2} s, total {:.2} s",
        resolved.seed,
        t.text_encoding.as_secs_f64(),
        unet,
        t.unet_steps.len(),
        t.vae_decode.as_secs_f64(),
        t.total.as_secs_f64()
    );
    Ok(())
}
