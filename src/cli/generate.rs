//! `easel generate`: one text-to-image run from the command line, with a progress bar.
//! Glue only: settings come from [`crate::api::request`], the work from [`crate::engine`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::request::{FieldError, GenerateRequest, GenerationSettings};
use crate::engine::model::{Residency, SdModel};
use crate::engine::pipeline::{img2img, txt2img, InitImage};
use crate::engine::{infotext, npy, png_meta, runtime, CancelToken, EngineError};

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
    /// Image-to-image: start from this PNG instead of noise. It sets width and height unless they
    /// are given (rounded down to multiples of 8); otherwise it is resized (Lanczos).
    #[arg(long, value_name = "IN.png")]
    pub init_image: Option<PathBuf>,
    /// Image-to-image: how much of the init image is repainted, in (0, 1]; int(steps x strength)
    /// steps run [default: 0.75].
    #[arg(long, requires = "init_image")]
    pub strength: Option<f64>,
}

/// Default image-to-image strength (A1111's default denoising strength).
pub const DEFAULT_STRENGTH: f64 = 0.75;
/// Largest init image accepted, in pixels per side (decoded).
pub const MAX_INIT_IMAGE_SIDE: u32 = 4096;

/// Reads an init image, RGB8, refusing what is not an image or is larger than
/// [`MAX_INIT_IMAGE_SIDE`] on a side (the decoder's limits stop decompression bombs).
fn read_init_image(path: &Path) -> Result<image::RgbImage, GenerateError> {
    let invalid = |message: String| GenerateError::Invalid(vec![FieldError::new("init_image", message)]);
    let reader = image::ImageReader::open(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let mut reader = reader.with_guessed_format().map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_INIT_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_INIT_IMAGE_SIDE);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| {
        invalid(format!(
            "{} is not an image Easel can read (PNG, at most {MAX_INIT_IMAGE_SIDE}x{MAX_INIT_IMAGE_SIDE}): {e}",
            path.display()
        ))
    })?;
    Ok(decoded.to_rgb8())
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
    if model.is_some() && direct.is_dir() {
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

pub fn run(args: &GenerateArgs, settings: &crate::config::Settings) -> Result<(), GenerateError> {
    let init_image = args.init_image.as_deref().map(read_init_image).transpose()?;
    let strength = args.strength.unwrap_or(DEFAULT_STRENGTH);
    if init_image.is_some() && !(strength > 0.0 && strength <= 1.0) {
        return Err(GenerateError::Invalid(vec![FieldError::new(
            "strength",
            format!("strength {strength} is outside (0, 1]; 0.75 repaints three quarters"),
        )]));
    }
    // diffusers' image processor: the image's own size, rounded down to multiples of 8.
    let image_size = |side: u32| Some(side / 8 * 8).filter(|s| *s > 0);
    let request = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        seed: args.seed,
        steps: args.steps,
        cfg_scale: args.cfg_scale,
        width: args.width.or_else(|| init_image.as_ref().and_then(|i| image_size(i.width()))),
        height: args.height.or_else(|| init_image.as_ref().and_then(|i| image_size(i.height()))),
        sampler: args.sampler.clone(),
        schedule: args.schedule.clone(),
        batch_size: args.batch_size,
        model: args.model.clone(),
    };
    let resolved = request.resolve(crate::api::request::random_seed).map_err(GenerateError::Invalid)?;
    let failed = |e: EngineError| GenerateError::Failed(e.to_string());
    let rt = runtime::runtime().map_err(|e| failed(e.into()))?;
    let (dir, name) = resolve_model_dir(args.model.as_deref(), settings).map_err(GenerateError::BadModel)?;
    crate::engine::model::check_layout(&dir).map_err(GenerateError::BadModel)?;
    let residency = if settings.low_memory { Residency::LowMemory } else { Residency::Warm };
    let load_started = Instant::now();
    let mut model = SdModel::load(&dir, rt, settings.threads, residency).map_err(failed)?;
    model.name = name;
    eprintln!(
        "model {} ({}) loaded in {:.2} s; seed {}",
        model.name,
        model.short_hash,
        load_started.elapsed().as_secs_f64(),
        resolved.seed
    );
    if model.tokenizer.count_tokens(&resolved.prompt) > 75 {
        eprintln!("warning: the prompt is longer than CLIP's 75 tokens; the rest is ignored");
    }

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len}  {per_sec}  ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut on_step = |p: &crate::engine::pipeline::StepProgress<'_>| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64);
    };
    let output = match &init_image {
        None => txt2img(&mut model, &resolved, &CancelToken::new(), &mut on_step),
        Some(image) => {
            let (width, height) = (resolved.width, resolved.height);
            let sized = if image.dimensions() == (width, height) {
                image.clone()
            } else {
                image::imageops::resize(image, width, height, image::imageops::FilterType::Lanczos3)
            };
            let init = InitImage { width, height, rgb: sized.as_raw() };
            img2img(&mut model, &resolved, &init, strength, &CancelToken::new(), &mut on_step)
        }
    }
    .map_err(failed)?;
    bar.finish_and_clear();

    let out = args.output.clone().unwrap_or_else(|| settings.outputs_dir.clone());
    let parameters = infotext::infotext_with(&resolved, &model.name, &model.short_hash, init_image.as_ref().map(|_| strength));
    for (image, path) in output.images.iter().zip(output_paths(&out, &resolved)) {
        let bytes = png_meta::image_png(&resolved, &model, image, &parameters).map_err(failed)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| GenerateError::Failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, bytes).map_err(|e| GenerateError::Failed(format!("cannot write {}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    if let Some(path) = &args.save_latents {
        npy::write_f32(path, &output.latent_shape, &output.latents)
            .map_err(|e| GenerateError::Failed(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("latents saved to {}", path.display());
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
