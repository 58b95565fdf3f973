//! Text-to-image: the denoising loop of diffusers' `StableDiffusionPipeline`, step for step, as
//! four stages that the other pipelines can reuse (img2img starts [`denoise`] later from encoded
//! image latents; inpainting blends known latents in its per-step hook; a hires fix runs a second
//! [`denoise`] on upscaled latents).
//!
//! 1. [`encode_prompt`]: tokenize the prompt and the negative prompt (`""` when none) to 77 ids
//!    each and run the text encoder on each. With classifier-free guidance (CFG > 1) the UNet
//!    batch is `[uncond × B, cond × B]`; at CFG ≤ 1 only the conditional half runs.
//! 2. [`prepare_latents`]: `randn([B, 4, H/8, W/8])` from a generator equal to
//!    `torch.Generator("cpu").manual_seed(seed)`, times the scheduler's `init_noise_sigma`.
//! 3. [`denoise`]: for each scheduler timestep: scale the input, run the UNet, combine
//!    `uncond + cfg · (cond − uncond)`, and let the scheduler step (ancestral samplers draw their
//!    noise from the same generator, continuing the stream, as diffusers does).
//! 4. [`decode_latents`]: decode `latents / scaling_factor` with the VAE decoder, then pixels are
//!    `round(clamp(x / 2 + 0.5, 0, 1) · 255)` (numpy rounds half to even).
//!
//! Cancellation is checked before every model call; progress is reported after every step.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::model::SdModel;
use super::onnx_model::{spec, InputData};
use super::scheduler::{build_scheduler, Scheduler};
use super::torch_rng::TorchGenerator;
use super::EngineError;
use crate::api::request::GenerationSettings;

/// The VAE latent scale of SD 1.x (`AutoencoderKL.scaling_factor`), used when the model's VAE
/// config does not give one.
pub const SD15_VAE_SCALING_FACTOR: f32 = 0.18215;
/// Latent channels of SD 1.x.
pub const LATENT_CHANNELS: usize = 4;

/// What the progress sink sees after each scheduler step.
pub struct StepProgress<'a> {
    /// 1-based index of the step just finished.
    pub step: usize,
    pub total: usize,
    pub elapsed: Duration,
    /// The latents after this step, `[batch, 4, height/8, width/8]`.
    pub latents: &'a [f32],
    pub latent_shape: [usize; 4],
}

/// One decoded image, RGB8, row-major.
pub struct DecodedImage {
    /// Position in the batch.
    pub index: usize,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Wall time of each stage, for benchmarks and job records.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub text_encoding: Duration,
    pub unet_steps: Vec<Duration>,
    pub vae_decode: Duration,
    pub total: Duration,
}

pub struct Txt2ImgOutput {
    pub images: Vec<DecodedImage>,
    /// Final latents before the VAE, `[batch, 4, h, w]`.
    pub latents: Vec<f32>,
    pub latent_shape: [usize; 4],
    /// The embeddings fed to the UNet for one image: `[uncond; cond]` (`[2, 77, dim]`) with CFG,
    /// `[cond]` (`[1, 77, dim]`) without.
    pub text_embeddings: Vec<f32>,
    pub timings: Timings,
}

fn check_cancel(cancel: &CancelToken) -> Result<(), EngineError> {
    if cancel.is_cancelled() {
        Err(EngineError::Cancelled)
    } else {
        Ok(())
    }
}

/// The model's VAE scaling factor from `vae_decoder/config.json` when present (optimum writes it).
fn vae_scaling_factor(model: &SdModel) -> f32 {
    std::fs::read_to_string(model.dir.join("vae_decoder/config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j["scaling_factor"].as_f64())
        .map(|f| f as f32)
        .unwrap_or(SD15_VAE_SCALING_FACTOR)
}

/// Runs the text encoder on one prompt: `[77, dim]` hidden states.
fn encode_text(model: &mut SdModel, text: &str) -> Result<(Vec<f32>, usize), EngineError> {
    let ids: Vec<i64> = model.tokenizer.encode(text)?.into_iter().map(i64::from).collect();
    let mut encoder = model.text_encoder()?;
    let input = spec(&encoder, "input_ids", 0)?;
    let (shape, hidden) = encoder.run(vec![(&input, InputData::Int { shape: vec![1, ids.len()], data: &ids })], "last_hidden_state")?;
    match shape.as_slice() {
        [1, tokens, dim] if *tokens == ids.len() => Ok((hidden, *dim)),
        other => Err(EngineError::UnexpectedModelIo {
            model: "text_encoder",
            message: format!("last_hidden_state has shape {other:?}, expected [1, 77, dim]"),
        }),
    }
}

/// The text conditioning of a request, from [`encode_prompt`].
pub struct TextConditioning {
    /// The embeddings for one image: `[uncond; cond]` (`[2, 77, dim]`) with guidance, `[cond]`
    /// (`[1, 77, dim]`) without.
    pub embeddings: Vec<f32>,
    /// The UNet's `encoder_hidden_states` for the whole batch: `[uncond × B, cond × B]` with
    /// guidance, `[cond × B]` without.
    pub unet_context: Vec<f32>,
    /// The text encoder's hidden size (768 for SD 1.x).
    pub dim: usize,
    /// Whether the unconditional half is there, i.e. classifier-free guidance is on.
    pub guided: bool,
}

/// Stage 1: encodes `prompt` and, when `guided`, `negative_prompt`, laid out for a UNet batch
/// of `batch` images.
pub fn encode_prompt(
    model: &mut SdModel,
    prompt: &str,
    negative_prompt: &str,
    guided: bool,
    batch: usize,
    cancel: &CancelToken,
) -> Result<TextConditioning, EngineError> {
    check_cancel(cancel)?;
    let (cond, dim) = encode_text(model, prompt)?;
    let uncond = if guided {
        check_cancel(cancel)?;
        Some(encode_text(model, negative_prompt)?.0)
    } else {
        None
    };
    let mut embeddings = uncond.unwrap_or_default();
    embeddings.extend_from_slice(&cond);
    let mut unet_context = Vec::with_capacity(embeddings.len() * batch);
    for half in embeddings.chunks(cond.len()) {
        for _ in 0..batch {
            unet_context.extend_from_slice(half);
        }
    }
    Ok(TextConditioning { embeddings, unet_context, dim, guided })
}

/// Stage 2: the starting latents of txt2img, `randn(latent_shape)` drawn from `rng` times the
/// scheduler's `init_noise_sigma` (as float32, as diffusers multiplies a float32 tensor).
pub fn prepare_latents(rng: &mut TorchGenerator, latent_shape: [usize; 4], init_noise_sigma: f64) -> Vec<f32> {
    let init_sigma = init_noise_sigma as f32;
    rng.randn(latent_shape.iter().product()).into_iter().map(|x| x * init_sigma).collect()
}

/// What stays fixed over the scheduler calls of one [`denoise`] run.
pub struct DenoiseRun<'a> {
    /// From [`encode_prompt`] with the batch size `latent_shape[0]`.
    pub text: &'a TextConditioning,
    pub cfg_scale: f32,
    /// `[batch, 4, height/8, width/8]`.
    pub latent_shape: [usize; 4],
    /// The scheduler calls to make, as indices into [`Scheduler::timesteps`]: all of them for
    /// txt2img; img2img starts later, at the timestep its strength gives.
    pub calls: Range<usize>,
}

/// What the per-step hook of [`denoise`] sees after each scheduler call.
pub struct DenoiseStep<'a> {
    /// The scheduler call just made (an index into [`Scheduler::timesteps`]).
    pub index: usize,
    /// The latents after it. The hook may change them (inpainting puts the known region back).
    pub latents: &'a mut [f32],
}

/// The result of a [`denoise`] run.
pub struct Denoised {
    pub latents: Vec<f32>,
    /// Wall time of each scheduler call (UNet and step, not the hook).
    pub unet_steps: Vec<Duration>,
}

/// Stage 3: the denoising loop. Starting from `latents`, runs the scheduler calls
/// `run.calls` over the UNet with classifier-free guidance; the ancestral samplers' noise comes
/// from `rng`. `on_step` runs after every call.
pub fn denoise(
    model: &mut SdModel,
    scheduler: &mut dyn Scheduler,
    run: &DenoiseRun<'_>,
    mut latents: Vec<f32>,
    rng: &mut TorchGenerator,
    cancel: &CancelToken,
    on_step: &mut dyn FnMut(DenoiseStep<'_>),
) -> Result<Denoised, EngineError> {
    let text = run.text;
    let [batch, channels, latent_h, latent_w] = run.latent_shape;
    let unet_batch = if text.guided { 2 * batch } else { batch };
    let timesteps = scheduler.timesteps().to_vec();
    let mut unet_steps = Vec::with_capacity(run.calls.len());
    let mut unet = model.unet()?;
    let sample_in = spec(&unet, "sample", 0)?;
    let timestep_in = spec(&unet, "timestep", 1)?;
    let context_in = spec(&unet, "encoder_hidden_states", 2)?;
    for index in run.calls.clone() {
        check_cancel(cancel)?;
        let step_started = Instant::now();
        let mut model_input = latents.clone();
        scheduler.scale_model_input(&mut model_input, index);
        if text.guided {
            model_input.extend_from_within(..);
        }
        let (_, noise) = unet.run(
            vec![
                (&sample_in, InputData::Float { shape: vec![unet_batch, channels, latent_h, latent_w], data: &model_input }),
                (&timestep_in, InputData::Timestep { value: timesteps[index], batch: unet_batch }),
                (&context_in, InputData::Float { shape: vec![unet_batch, 77, text.dim], data: &text.unet_context }),
            ],
            "out_sample",
        )?;
        let guided_noise: Vec<f32> = if text.guided {
            let (u, c) = noise.split_at(latents.len());
            let g = run.cfg_scale;
            u.iter().zip(c).map(|(&u, &c)| u + g * (c - u)).collect()
        } else {
            noise
        };
        latents = scheduler.step(&guided_noise, index, &latents, rng);
        unet_steps.push(step_started.elapsed());
        on_step(DenoiseStep { index, latents: &mut latents });
    }
    Ok(Denoised { latents, unet_steps })
}

/// Stage 4: decodes `latents` (`[batch, 4, h, w]`) with the VAE, one image at a time to bound
/// memory.
pub fn decode_latents(
    model: &mut SdModel,
    latents: &[f32],
    latent_shape: [usize; 4],
    cancel: &CancelToken,
) -> Result<Vec<DecodedImage>, EngineError> {
    let [batch, channels, latent_h, latent_w] = latent_shape;
    let scale = vae_scaling_factor(model);
    let mut decoder = model.vae_decoder()?;
    let latent_in = spec(&decoder, "latent_sample", 0)?;
    let mut images = Vec::with_capacity(batch);
    for (index, one) in latents.chunks(channels * latent_h * latent_w).enumerate() {
        check_cancel(cancel)?;
        let scaled: Vec<f32> = one.iter().map(|&x| x / scale).collect();
        let (shape, pixels) =
            decoder.run(vec![(&latent_in, InputData::Float { shape: vec![1, channels, latent_h, latent_w], data: &scaled })], "sample")?;
        let [_, 3, h, w] = shape[..] else {
            return Err(EngineError::UnexpectedModelIo {
                model: "vae_decoder",
                message: format!("output has shape {shape:?}, expected [1, 3, H, W]"),
            });
        };
        images.push(DecodedImage { index, width: w as u32, height: h as u32, rgb: to_rgb8(&pixels, w, h) });
    }
    Ok(images)
}

/// Converts the decoder's `[3, H, W]` floats in about [-1, 1] to interleaved RGB8.
fn to_rgb8(chw: &[f32], width: usize, height: usize) -> Vec<u8> {
    let plane = width * height;
    let mut rgb = Vec::with_capacity(plane * 3);
    for i in 0..plane {
        for c in 0..3 {
            let x = (chw[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
            rgb.push((x * 255.0).round_ties_even() as u8);
        }
    }
    rgb
}

/// Generates `settings.batch_size` images. `progress` is called after every scheduler step.
pub fn txt2img(
    model: &mut SdModel,
    settings: &GenerationSettings,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Txt2ImgOutput, EngineError> {
    generate(model, settings, Start::Noise, cancel, progress)
}

/// Where a run's latents come from.
enum Start<'a> {
    /// txt2img: seeded noise times `init_noise_sigma`, every scheduler call.
    Noise,
    /// img2img: the image's latents noised to the level of the first call that runs.
    Image { init: &'a InitImage<'a>, denoised_steps: u32 },
}

/// The stages in order, for every mode: encode the prompt, build the scheduler and the seeded
/// generator, the start latents (from noise, or from an image with a late start), denoise,
/// decode. `progress` counts the calls that run from 1.
fn generate(
    model: &mut SdModel,
    settings: &GenerationSettings,
    start: Start<'_>,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Txt2ImgOutput, EngineError> {
    let started = Instant::now();
    let batch = settings.batch_size as usize;
    let latent_shape = [batch, LATENT_CHANNELS, settings.height as usize / 8, settings.width as usize / 8];
    let guided = settings.cfg_scale > 1.0;

    let text = encode_prompt(model, &settings.prompt, &settings.negative_prompt, guided, batch, cancel)?;
    let text_encoding = started.elapsed();

    let mut scheduler = build_scheduler(settings.sampler, settings.schedule, &model.scheduler_config, settings.steps as usize)?;
    let mut rng = TorchGenerator::new(settings.seed);
    let total = scheduler.timesteps().len();
    let (latents, begin) = match start {
        Start::Noise => (prepare_latents(&mut rng, latent_shape, scheduler.init_noise_sigma()), 0),
        Start::Image { init, denoised_steps } => {
            let begin = (settings.steps - denoised_steps) as usize * scheduler.order();
            // diffusers' order of draws: the VAE posterior sample for the one image, then the
            // noise for the whole batch; the image's latents are repeated for every image.
            let image_latents = encode_image(model, init, &mut rng, cancel)?;
            let batch_latents: Vec<f32> = image_latents.iter().copied().cycle().take(image_latents.len() * batch).collect();
            let noise = rng.randn(batch_latents.len());
            (scheduler.add_noise(&batch_latents, &noise, begin), begin)
        }
    };

    let run = DenoiseRun { text: &text, cfg_scale: settings.cfg_scale, latent_shape, calls: begin..total };
    let calls = total - begin;
    let denoised = denoise(model, scheduler.as_mut(), &run, latents, &mut rng, cancel, &mut |step| {
        let done = step.index + 1 - begin;
        progress(&StepProgress { step: done, total: calls, elapsed: started.elapsed(), latents: step.latents, latent_shape })
    })?;

    let decode_started = Instant::now();
    let images = decode_latents(model, &denoised.latents, latent_shape, cancel)?;
    let vae_decode = decode_started.elapsed();
    Ok(Txt2ImgOutput {
        images,
        latents: denoised.latents,
        latent_shape,
        text_embeddings: text.embeddings,
        timings: Timings { text_encoding, unet_steps: denoised.unet_steps, vae_decode, total: started.elapsed() },
    })
}

/// An image to start from: RGB8, row-major, at the generation's width and height.
pub struct InitImage<'a> {
    pub width: u32,
    pub height: u32,
    pub rgb: &'a [u8],
}

/// Stage 2 from an image: the VAE encoder's latents of `image`, `[1, 4, H/8, W/8]`, times the
/// VAE scaling factor. As diffusers' `retrieve_latents(vae.encode(x), generator)`: pixels become
/// `2·(p/255) − 1`; the encoder's `latent_parameters` are mean ‖ log-variance, the log-variance is
/// clamped to [−30, 20] and the latents are *sampled*, `mean + exp(½·logvar)·randn`, with the
/// noise drawn from `rng` (the first draw of the run, as in diffusers). A legacy export whose
/// encoder outputs `latent_sample` draws inside the graph instead, so its latents cannot equal
/// diffusers'; they are used as they are.
pub fn encode_image(
    model: &mut SdModel,
    image: &InitImage<'_>,
    rng: &mut TorchGenerator,
    cancel: &CancelToken,
) -> Result<Vec<f32>, EngineError> {
    check_cancel(cancel)?;
    let (width, height) = (image.width as usize, image.height as usize);
    let plane = width * height;
    if image.rgb.len() != plane * 3 {
        return Err(EngineError::InvalidRequest(format!("the init image has {} bytes, expected {width}x{height}x3", image.rgb.len())));
    }
    let mut chw = vec![0.0f32; plane * 3];
    for (i, pixel) in image.rgb.chunks_exact(3).enumerate() {
        for (c, &value) in pixel.iter().enumerate() {
            chw[c * plane + i] = 2.0 * (f32::from(value) / 255.0) - 1.0;
        }
    }
    let scale = vae_scaling_factor(model);
    let mut encoder = model.vae_encoder()?;
    let sample_in = spec(&encoder, "sample", 0)?;
    let output = encoder.output_name("latent_parameters")?;
    let (shape, values) = encoder.run(vec![(&sample_in, InputData::Float { shape: vec![1, 3, height, width], data: &chw })], &output)?;
    let latents: Vec<f32> = match shape[..] {
        [1, 8, h, w] if h * 8 == height && w * 8 == width => {
            let (mean, logvar) = values.split_at(values.len() / 2);
            let noise = rng.randn(mean.len());
            mean.iter().zip(logvar).zip(&noise).map(|((m, lv), n)| m + (0.5 * lv.clamp(-30.0, 20.0)).exp() * n).collect()
        }
        [1, 4, h, w] if h * 8 == height && w * 8 == width => values,
        _ => {
            return Err(EngineError::UnexpectedModelIo {
                model: "vae_encoder",
                message: format!("output {output} has shape {shape:?}, expected [1, 8, H/8, W/8] (mean and log-variance)"),
            })
        }
    };
    Ok(latents.into_iter().map(|x| scale * x).collect())
}

/// How many of `steps` inference steps an img2img run of `strength` makes: diffusers'
/// `init_timestep = min(int(steps · strength), steps)` (the product in double precision, as
/// Python computes it, then truncated). Zero means nothing would be denoised.
pub fn img2img_steps(steps: u32, strength: f64) -> u32 {
    ((f64::from(steps) * strength) as u32).min(steps)
}

/// Image-to-image: `init` (at the settings' width and height) encoded, noised to the level
/// `strength` selects, and denoised from there, as diffusers' `StableDiffusionImg2ImgPipeline`
/// with `torch.Generator("cpu").manual_seed(seed)`. `progress` counts the calls that run.
pub fn img2img(
    model: &mut SdModel,
    settings: &GenerationSettings,
    init: &InitImage<'_>,
    strength: f64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Txt2ImgOutput, EngineError> {
    if (init.width, init.height) != (settings.width, settings.height) {
        return Err(EngineError::InvalidRequest(format!(
            "the init image is {}x{}, the generation {}x{}; resize it first",
            init.width, init.height, settings.width, settings.height
        )));
    }
    let denoised_steps = img2img_steps(settings.steps, strength);
    if denoised_steps == 0 {
        return Err(EngineError::InvalidRequest(format!(
            "strength {strength} with {} steps denoises no step (int(steps x strength) = 0); raise the strength or the steps",
            settings.steps
        )));
    }
    generate(model, settings, Start::Image { init, denoised_steps }, cancel, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn img2img_runs_int_of_steps_times_strength_in_double_precision() {
        // Python: int(10 * 0.7) = int(7.000000000000001) = 7; in float32 0.7 would give 6.
        assert_eq!(img2img_steps(10, 0.7), 7);
        assert_eq!(img2img_steps(20, 0.75), 15);
        assert_eq!(img2img_steps(50, 0.8), 40);
        assert_eq!(img2img_steps(3, 0.3), 0);
        assert_eq!(img2img_steps(7, 1.0), 7);
    }

    #[test]
    fn pixels_round_half_to_even_like_numpy() {
        // x/2+0.5 = 0.5 -> 127.5 -> 128 (even); -1 -> 0; 1 -> 255; out of range clamps.
        let chw = [0.0f32, -1.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let rgb = to_rgb8(&chw, 4, 1);
        assert_eq!(&rgb[..], &[128, 128, 128, 0, 128, 128, 255, 128, 128, 255, 128, 128]);
    }
}
