//! Text-to-image: the denoising loop of diffusers' `StableDiffusionPipeline`, step for step.
//!
//! 1. Tokenize the prompt and the negative prompt (`""` when none) to 77 ids each and run the text
//!    encoder on each. With classifier-free guidance (CFG > 1) the UNet batch is
//!    `[uncond × B, cond × B]`; at CFG ≤ 1 only the conditional half runs.
//! 2. Initial latents: `randn([B, 4, H/8, W/8])` from a generator equal to
//!    `torch.Generator("cpu").manual_seed(seed)`, times the scheduler's `init_noise_sigma`.
//! 3. For each scheduler timestep: scale the input, run the UNet, combine
//!    `uncond + cfg · (cond − uncond)`, and let the scheduler step (ancestral samplers draw their
//!    noise from the same generator, continuing the stream, as diffusers does).
//! 4. Decode `latents / scaling_factor` with the VAE decoder, then pixels are
//!    `round(clamp(x / 2 + 0.5, 0, 1) · 255)` (numpy rounds half to even).
//!
//! Cancellation is checked before every model call; progress is reported after every step.

use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::model::SdModel;
use super::onnx_model::{spec, InputData};
use super::scheduler::{build_scheduler, SamplerKind, Schedule};
use super::torch_rng::TorchGenerator;
use super::EngineError;
use crate::request::GenerationSettings;

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
    let started = Instant::now();
    let sampler: SamplerKind = settings.sampler.parse()?;
    let schedule: Schedule = settings.schedule.parse()?;
    let batch = settings.batch_size as usize;
    let (latent_h, latent_w) = (settings.height as usize / 8, settings.width as usize / 8);
    let latent_shape = [batch, LATENT_CHANNELS, latent_h, latent_w];
    let guided = settings.cfg_scale > 1.0;

    // 1. Text conditioning.
    check_cancel(cancel)?;
    let (cond, dim) = encode_text(model, &settings.prompt)?;
    let uncond = if guided {
        check_cancel(cancel)?;
        Some(encode_text(model, &settings.negative_prompt)?.0)
    } else {
        None
    };
    let text_encoding = started.elapsed();
    let mut text_embeddings = uncond.clone().unwrap_or_default();
    text_embeddings.extend_from_slice(&cond);
    let mut unet_context = Vec::with_capacity(text_embeddings.len() * batch);
    for half in text_embeddings.chunks(cond.len()) {
        for _ in 0..batch {
            unet_context.extend_from_slice(half);
        }
    }
    let unet_batch = if guided { 2 * batch } else { batch };

    // 2. Scheduler and initial noise.
    let mut scheduler = build_scheduler(sampler, schedule, &model.scheduler_config, settings.steps as usize)?;
    let mut rng = TorchGenerator::new(settings.seed);
    let init_sigma = scheduler.init_noise_sigma() as f32;
    let mut latents: Vec<f32> = rng.randn(latent_shape.iter().product()).into_iter().map(|x| x * init_sigma).collect();

    // 3. Denoising loop.
    let timesteps = scheduler.timesteps().to_vec();
    let mut unet_steps = Vec::with_capacity(timesteps.len());
    {
        let mut unet = model.unet()?;
        let sample_in = spec(&unet, "sample", 0)?;
        let timestep_in = spec(&unet, "timestep", 1)?;
        let context_in = spec(&unet, "encoder_hidden_states", 2)?;
        for (index, &t) in timesteps.iter().enumerate() {
            check_cancel(cancel)?;
            let step_started = Instant::now();
            let mut model_input = latents.clone();
            scheduler.scale_model_input(&mut model_input, index);
            if guided {
                model_input.extend_from_within(..);
            }
            let (_, noise) = unet.run(
                vec![
                    (&sample_in, InputData::Float { shape: vec![unet_batch, LATENT_CHANNELS, latent_h, latent_w], data: &model_input }),
                    (&timestep_in, InputData::Timestep { value: t, batch: unet_batch }),
                    (&context_in, InputData::Float { shape: vec![unet_batch, 77, dim], data: &unet_context }),
                ],
                "out_sample",
            )?;
            let guided_noise: Vec<f32> = if guided {
                let (u, c) = noise.split_at(latents.len());
                let g = settings.cfg_scale;
                u.iter().zip(c).map(|(&u, &c)| u + g * (c - u)).collect()
            } else {
                noise
            };
            latents = scheduler.step(&guided_noise, index, &latents, &mut rng);
            unet_steps.push(step_started.elapsed());
            progress(&StepProgress {
                step: index + 1,
                total: timesteps.len(),
                elapsed: started.elapsed(),
                latents: &latents,
                latent_shape,
            });
        }
    }

    // 4. Decode, one image at a time to bound memory.
    let decode_started = Instant::now();
    let scale = vae_scaling_factor(model);
    let mut decoder = model.vae_decoder()?;
    let latent_in = spec(&decoder, "latent_sample", 0)?;
    let per_image = LATENT_CHANNELS * latent_h * latent_w;
    let mut images = Vec::with_capacity(batch);
    for (index, one) in latents.chunks(per_image).enumerate() {
        check_cancel(cancel)?;
        let scaled: Vec<f32> = one.iter().map(|&x| x / scale).collect();
        let (shape, pixels) = decoder.run(
            vec![(&latent_in, InputData::Float { shape: vec![1, LATENT_CHANNELS, latent_h, latent_w], data: &scaled })],
            "sample",
        )?;
        let [_, 3, h, w] = shape[..] else {
            return Err(EngineError::UnexpectedModelIo {
                model: "vae_decoder",
                message: format!("output has shape {shape:?}, expected [1, 3, H, W]"),
            });
        };
        images.push(DecodedImage { index, width: w as u32, height: h as u32, rgb: to_rgb8(&pixels, w, h) });
    }
    drop(decoder);
    let vae_decode = decode_started.elapsed();
    Ok(Txt2ImgOutput {
        images,
        latents,
        latent_shape,
        text_embeddings,
        timings: Timings { text_encoding, unet_steps, vae_decode, total: started.elapsed() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_round_half_to_even_like_numpy() {
        // x/2+0.5 = 0.5 -> 127.5 -> 128 (even); -1 -> 0; 1 -> 255; out of range clamps.
        let chw = [0.0f32, -1.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let rgb = to_rgb8(&chw, 4, 1);
        assert_eq!(&rgb[..], &[128, 128, 128, 0, 128, 128, 255, 128, 128, 255, 128, 128]);
    }
}
