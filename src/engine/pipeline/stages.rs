//! Owns the four stages every generation mode is composed of, each one step of diffusers'
//! pipelines: [`encode_prompt`] (text encoder), [`prepare_latents`] / [`encode_pixels`] (the
//! start latents from noise or from pixels through the VAE encoder), [`denoise`] (the UNet loop
//! with classifier-free guidance from any start call, with extra conditioning channels for
//! inpainting UNets and a per-step hook), and [`decode_latents`] (the VAE decoder to RGB8).
//!
//! Cancellation is checked before every model call.

use std::ops::Range;
use std::time::{Duration, Instant};

pub use super::guided_unet::GuidedUnet;
use super::randomness::Randomness;
use super::vae_tiles::{self, Planes, TileGrid};
use super::DecodedImage;
use crate::api::request::GenerationSettings;
use crate::api::{Compat, PromptSyntax, VaeTiling};
use crate::engine::cancel::CancelToken;
use crate::engine::model::SdModel;
use crate::engine::noise::NoiseSource;
use crate::engine::onnx_model::{spec, InputData};
use crate::engine::prompt::regions::Region;
use crate::engine::prompt::{self, Encoding, PromptConditioning, PromptRequest};
use crate::engine::scheduler::Scheduler;
use crate::engine::EngineError;

/// The VAE latent scale of SD 1.x (`AutoencoderKL.scaling_factor`), used when the model's VAE
/// config does not give one.
pub const SD15_VAE_SCALING_FACTOR: f32 = 0.18215;
/// Latent channels of SD 1.x.
pub const LATENT_CHANNELS: usize = 4;

pub(crate) fn check_cancel(cancel: &CancelToken) -> Result<(), EngineError> {
    if cancel.is_cancelled() {
        Err(EngineError::Cancelled)
    } else {
        Ok(())
    }
}

/// What the pipeline reads from a model's VAE config (`vae_decoder/config.json`, which optimum
/// and Easel's tooling write; a checkpoint file has none): read once, when the model opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeFacts {
    /// The latent scaling factor (SD's 0.18215 without a config).
    pub scaling_factor: f32,
    /// The tile side in latents, as diffusers derives it: `sample_size / 2^(blocks − 1)`, else
    /// SD's 64 (512 pixels).
    pub tile_latent: usize,
}

impl VaeFacts {
    /// The facts of the model at `dir` (a folder or a checkpoint file).
    pub fn read(dir: &std::path::Path) -> Self {
        let config: Option<serde_json::Value> =
            std::fs::read_to_string(dir.join("vae_decoder/config.json")).ok().and_then(|text| serde_json::from_str(&text).ok());
        let scaling_factor =
            config.as_ref().and_then(|j| j["scaling_factor"].as_f64()).map(|f| f as f32).unwrap_or(SD15_VAE_SCALING_FACTOR);
        let sample = config.as_ref().and_then(|j| j["sample_size"].as_u64().or_else(|| j["sample_size"][0].as_u64()));
        let blocks = config.as_ref().and_then(|j| j["block_out_channels"].as_array().map(Vec::len));
        let tile_latent = match (sample, blocks) {
            (Some(sample), Some(blocks)) if blocks >= 1 => ((sample as usize) >> (blocks - 1)).max(1),
            _ => vae_tiles::DEFAULT_TILE_LATENT,
        };
        Self { scaling_factor, tile_latent }
    }
}

/// The tile side (in latents) a picture of `height` x `width` pixels goes through the VAE with,
/// or `None` to run it whole: `tiling` already made concrete for the compat mode
/// ([`VaeTiling::for_compat`]); `Auto` tiles above [`vae_tiles::AUTO_TILE_ABOVE_PIXELS`].
pub fn vae_tiles_for(model: &SdModel, tiling: VaeTiling, height: usize, width: usize) -> Option<usize> {
    let tile = model.vae_facts.tile_latent;
    let larger_than_a_tile = TileGrid::encode(tile).needs_tiles(height, width);
    match tiling {
        VaeTiling::Off => None,
        VaeTiling::On => larger_than_a_tile.then_some(tile),
        VaeTiling::Auto => (larger_than_a_tile && (height * width) as u64 > vae_tiles::AUTO_TILE_ABOVE_PIXELS).then_some(tile),
    }
}

/// The text conditioning of a request, from [`encode_prompt`]: the negative prompt's (with
/// guidance) and one per `AND` part, each possibly changing over the calls of the pass.
pub struct TextConditioning {
    pub prompt: PromptConditioning,
    /// Whether the unconditional branch is there, i.e. classifier-free guidance is on.
    pub guided: bool,
}

impl TextConditioning {
    /// The text encoder's hidden size (768 for SD 1.x).
    pub fn dim(&self) -> usize {
        self.prompt.dim
    }

    /// The guidance branches at call `call` of the pass (from 0): the unconditional one first
    /// (weight 0) when guided, then each `AND` part with its weight.
    /// With ComfyUI's conditioning lists, the negative side's further entries follow the first.
    pub fn branches(&self, call: usize) -> Vec<(f32, &Encoding)> {
        let more = self.prompt.regions.iter().flat_map(|r| &r.more_negatives);
        let negatives = self.prompt.uncond.iter().chain(more).filter(|_| self.guided).map(|u| (0.0, u.at(call)));
        negatives.chain(self.prompt.parts.iter().map(|(w, s)| (*w, s.at(call)))).collect()
    }

    /// With ComfyUI's conditioning lists, each branch's side (`true` = negative) and region, in
    /// the order of [`Self::branches`].
    pub fn regions(&self) -> Option<Vec<(bool, Region)>> {
        let regions = self.prompt.regions.as_ref()?;
        let negative = regions.negative.iter().filter(|_| self.guided).map(|r| (true, *r));
        Some(negative.chain(regions.positive.iter().map(|r| (false, *r))).collect())
    }

    /// The branches' encodings at the first call, `[branches, tokens, dim]`: each padded to the
    /// longest by repeating its last token (the padding is never fed to the UNet).
    pub fn first_call_embeddings(&self) -> (Vec<f32>, [usize; 3]) {
        let dim = self.dim();
        let branches = self.branches(0);
        let tokens = branches.iter().map(|(_, e)| e.len() / dim).max().unwrap_or(0);
        let mut out = Vec::with_capacity(branches.len() * tokens * dim);
        for (_, e) in &branches {
            out.extend_from_slice(e);
            let last = &e[e.len().saturating_sub(dim)..];
            for _ in e.len() / dim..tokens {
                out.extend_from_slice(last);
            }
        }
        (out, [branches.len(), tokens, dim])
    }
}

/// Whether a request needs classifier-free guidance: in the diffusers mode a CFG scale above 1, or
/// an A1111 prompt whose `AND` parts or part weight make the guidance sum something other than the
/// prompt alone; A1111 always runs the negative prompt too; ComfyUI skips it only at CFG 1.
pub fn needs_guidance(settings: &GenerationSettings) -> bool {
    let cfg = f64::from(settings.cfg_scale);
    match settings.noise.compat {
        Compat::A1111 => return true,
        // CFG++ samplers turn ComfyUI's CFG-1 shortcut off: they read the unconditional branch.
        Compat::ComfyUi => return settings.sampler.cfg_pp() || (cfg - 1.0).abs() > 1e-9 * cfg.abs().max(1.0),
        Compat::Diffusers => {}
    }
    if settings.cfg_scale > 1.0 {
        return true;
    }
    match settings.prompt_syntax {
        PromptSyntax::A1111 => {
            let parts = prompt::a1111::and_parts(&settings.prompt);
            parts.len() > 1 || parts.iter().any(|p| p.weight != 1.0)
        }
        _ => false,
    }
}

/// Stage 1: encodes the prompt and, when `guided`, the negative prompt, in the request's syntax
/// and CLIP skip, for a pass of `steps` (the hires fix's second pass gives `hires_steps`).
pub fn encode_prompt(
    model: &mut SdModel,
    settings: &GenerationSettings,
    guided: bool,
    steps: u32,
    hires_steps: Option<u32>,
    cancel: &CancelToken,
) -> Result<TextConditioning, EngineError> {
    check_cancel(cancel)?;
    let request = PromptRequest {
        prompt: &settings.prompt,
        negative_prompt: &settings.negative_prompt,
        syntax: settings.prompt_syntax,
        clip_skip: settings.clip_skip.max(1) as usize,
        steps: steps as usize,
        hires_steps: hires_steps.map(|h| h as usize),
        guided,
        combined: &settings.combined_prompts,
        conditioning: settings.conditioning.as_ref(),
    };
    let prompt = prompt::encode(model, &request, cancel)?;
    Ok(TextConditioning { prompt, guided })
}

/// Stage 2: the starting latents of txt2img, `randn(latent_shape)` drawn from `rng` times the
/// scheduler's `init_noise_sigma` (as float32, as diffusers multiplies a float32 tensor).
pub fn prepare_latents(rng: &mut Randomness, latent_shape: [usize; 4], init_noise_sigma: f64) -> Vec<f32> {
    let init_sigma = init_noise_sigma as f32;
    rng.start_noise(latent_shape.iter().product()).into_iter().map(|x| x * init_sigma).collect()
}

/// Latent positions (h/8 × w/8) above which the branches of classifier-free guidance run as
/// separate UNet calls: 64² (512² pixels) and below run as one call of twice the batch.
pub const SPLIT_GUIDANCE_TOKENS: usize = 64 * 64;

/// What stays fixed over the scheduler calls of one [`denoise`] run.
pub struct DenoiseRun<'a> {
    /// From [`encode_prompt`]; call `calls.start` is the conditioning's call 0.
    pub text: &'a TextConditioning,
    pub cfg_scale: f32,
    /// `[batch, 4, height/8, width/8]`.
    pub latent_shape: [usize; 4],
    /// The scheduler calls to make, as indices into [`Scheduler::timesteps`]: all of them for
    /// txt2img; img2img starts later, at the timestep its strength gives.
    pub calls: Range<usize>,
    /// Extra UNet input channels after the scaled latents, for every image of the batch in
    /// order: `[batch, k, h, w]` (an inpainting UNet's mask and masked-image latents, `k = 5`).
    /// Empty for a plain 4-channel UNet. They are not scaled; with guidance both halves get them.
    pub conditioning: &'a [f32],
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
    rng: &mut dyn NoiseSource,
    cancel: &CancelToken,
    on_step: &mut dyn FnMut(DenoiseStep<'_>),
) -> Result<Denoised, EngineError> {
    let timesteps = scheduler.timesteps().to_vec();
    let mut unet_steps = Vec::with_capacity(run.calls.len());
    let mut unet = GuidedUnet::new(model, run)?;
    for index in run.calls.clone() {
        check_cancel(cancel)?;
        let step_started = Instant::now();
        let mut scaled = latents.clone();
        scheduler.scale_model_input(&mut scaled, index);
        let call = index - run.calls.start;
        let outputs = unet.branch_outputs(&scaled, timesteps[index], call)?;
        // ε = ε_u + Σ_j w_j·g·(ε_j − ε_u): diffusers' `u + g·(c − u)` for one part of weight 1
        // (bit for bit), A1111's composable guidance for `AND` parts.
        let guided_noise = unet.guide(outputs, call);
        latents = scheduler.step(&guided_noise, index, &latents, rng);
        unet_steps.push(step_started.elapsed());
        on_step(DenoiseStep { index, latents: &mut latents });
    }
    Ok(Denoised { latents, unet_steps })
}

/// How decoded pixels in [−1, 1] become 8-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantize {
    /// diffusers: `(x/2 + 0.5)` clamped, times 255, rounded half to even (numpy's `round`).
    Round,
    /// A1111 and ComfyUI: `(x + 1)/2` clamped, times 255, truncated (`astype(np.uint8)`).
    Truncate,
}

/// Stage 4: decodes `latents` (`[batch, 4, h, w]`) with the VAE, one image at a time to bound
/// memory, in tiles when `tiling` says so ([`vae_tiles_for`]); pixels rounded as diffusers does.
pub fn decode_latents(
    model: &mut SdModel,
    latents: &[f32],
    latent_shape: [usize; 4],
    tiling: VaeTiling,
    cancel: &CancelToken,
) -> Result<Vec<DecodedImage>, EngineError> {
    decode_latents_as(model, latents, latent_shape, tiling, cancel, Quantize::Round)
}

/// [`decode_latents`] with the pixels quantised as `quantize` says.
pub fn decode_latents_as(
    model: &mut SdModel,
    latents: &[f32],
    latent_shape: [usize; 4],
    tiling: VaeTiling,
    cancel: &CancelToken,
    quantize: Quantize,
) -> Result<Vec<DecodedImage>, EngineError> {
    let [batch, channels, latent_h, latent_w] = latent_shape;
    let scale = model.vae_facts.scaling_factor;
    let tiles = vae_tiles_for(model, tiling, latent_h * vae_tiles::VAE_FACTOR, latent_w * vae_tiles::VAE_FACTOR);
    let mut decoder = model.vae_decoder()?;
    let latent_in = spec(&decoder, "latent_sample", 0)?;
    let mut decode = |latent: &Planes| -> Result<Planes, EngineError> {
        check_cancel(cancel)?;
        let input = InputData::Float { shape: vec![1, latent.channels, latent.height, latent.width], data: &latent.data };
        let (shape, data) = decoder.run(vec![(&latent_in, input)], "sample")?;
        match shape[..] {
            [1, 3, height, width] => Ok(Planes { channels: 3, height, width, data }),
            _ => Err(EngineError::UnexpectedModelIo {
                model: "vae_decoder",
                message: format!("output has shape {shape:?}, expected [1, 3, H, W]"),
            }),
        }
    };
    let mut images = Vec::with_capacity(batch);
    for (index, one) in latents.chunks(channels * latent_h * latent_w).enumerate() {
        let scaled = Planes { channels, height: latent_h, width: latent_w, data: one.iter().map(|&x| x / scale).collect() };
        let pixels = match tiles {
            Some(tile) => vae_tiles::run_tiled(&scaled, TileGrid::decode(tile), &mut decode)?,
            None => decode(&scaled)?,
        };
        let (w, h) = (pixels.width, pixels.height);
        let rgb = match quantize {
            Quantize::Round => to_rgb8(&pixels.data, w, h),
            Quantize::Truncate => to_rgb8_truncated(&pixels.data, w, h),
        };
        images.push(DecodedImage { index, width: w as u32, height: h as u32, rgb });
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

/// `[3, H, W]` planes in [−1, 1] to RGB8 as A1111 and ComfyUI save them: `(x + 1)/2` clamped
/// to [0, 1], times 255, truncated.
fn to_rgb8_truncated(chw: &[f32], width: usize, height: usize) -> Vec<u8> {
    let plane = width * height;
    let mut rgb = Vec::with_capacity(plane * 3);
    for i in 0..plane {
        for c in 0..3 {
            let x = ((chw[c * plane + i] + 1.0) / 2.0).clamp(0.0, 1.0);
            rgb.push((255.0 * x) as u8);
        }
    }
    rgb
}

/// RGB8 pixels as the VAE encoder's input: `[3, H, W]` planes of `2·(p/255) − 1`.
pub fn pixels_to_chw(rgb: &[u8], width: usize, height: usize) -> Vec<f32> {
    let plane = width * height;
    let mut chw = vec![0.0f32; plane * 3];
    for (i, pixel) in rgb.chunks_exact(3).take(plane).enumerate() {
        for (c, &value) in pixel.iter().enumerate() {
            chw[c * plane + i] = 2.0 * (f32::from(value) / 255.0) - 1.0;
        }
    }
    chw
}

/// Stage 2 from pixels: the VAE encoder's latents of one image given as `[3, H, W]` planes in
/// [−1, 1] (see [`pixels_to_chw`]), `[1, 4, H/8, W/8]`, times the VAE scaling factor. As
/// diffusers' `retrieve_latents(vae.encode(x), generator)`: the encoder's `latent_parameters` are
/// mean ‖ log-variance, the log-variance is clamped to [−30, 20] and the latents are *sampled*,
/// `mean + exp(½·logvar)·randn`, with the noise drawn from `rng`. A legacy export whose encoder
/// outputs `latent_sample` draws inside the graph instead, so its latents cannot equal
/// diffusers'; they are used as they are.
pub fn encode_pixels(
    model: &mut SdModel,
    chw: &[f32],
    width: usize,
    height: usize,
    tiling: VaeTiling,
    rng: &mut dyn NoiseSource,
    cancel: &CancelToken,
) -> Result<Vec<f32>, EngineError> {
    encode_latents(model, chw, width, height, tiling, Some(rng), cancel)
}

/// [`encode_pixels`] taking the posterior's mode (its mean) instead of a sample, as ComfyUI's
/// `VAEEncode` does.
pub fn encode_pixels_mode(
    model: &mut SdModel,
    chw: &[f32],
    width: usize,
    height: usize,
    tiling: VaeTiling,
    cancel: &CancelToken,
) -> Result<Vec<f32>, EngineError> {
    encode_latents(model, chw, width, height, tiling, None, cancel)
}

/// The VAE encoder's latents, sampled with `rng`'s noise or (`None`) the posterior's mean. In
/// tiles, the encoder's outputs (mean and log-variance) are blended before the one draw, as in
/// diffusers.
fn encode_latents(
    model: &mut SdModel,
    chw: &[f32],
    width: usize,
    height: usize,
    tiling: VaeTiling,
    rng: Option<&mut dyn NoiseSource>,
    cancel: &CancelToken,
) -> Result<Vec<f32>, EngineError> {
    check_cancel(cancel)?;
    if chw.len() != width * height * 3 {
        return Err(EngineError::InvalidRequest(format!("the image has {} values, expected {width}x{height}x3", chw.len())));
    }
    let scale = model.vae_facts.scaling_factor;
    let tiles = vae_tiles_for(model, tiling, height, width);
    let mut encoder = model.vae_encoder()?;
    let sample_in = spec(&encoder, "sample", 0)?;
    let output = encoder.output_name("latent_parameters")?;
    let mut encode = |pixels: &Planes| -> Result<Planes, EngineError> {
        check_cancel(cancel)?;
        let input = InputData::Float { shape: vec![1, 3, pixels.height, pixels.width], data: &pixels.data };
        let (shape, data) = encoder.run(vec![(&sample_in, input)], &output)?;
        match shape[..] {
            [1, channels, height, width] => Ok(Planes { channels, height, width, data }),
            _ => Err(EngineError::UnexpectedModelIo {
                model: "vae_encoder",
                message: format!("output {output} has shape {shape:?}, expected [1, 8, H/8, W/8] (mean and log-variance)"),
            }),
        }
    };
    let image = Planes { channels: 3, height, width, data: chw.to_vec() };
    let encoded = match tiles {
        Some(tile) => vae_tiles::run_tiled(&image, TileGrid::encode(tile), &mut encode)?,
        None => encode(&image)?,
    };
    let shape = [1, encoded.channels, encoded.height, encoded.width];
    let values = encoded.data;
    let latents: Vec<f32> = match shape[..] {
        [1, 8, h, w] if h * 8 == height && w * 8 == width => {
            let (mean, logvar) = values.split_at(values.len() / 2);
            match rng {
                Some(rng) => {
                    let noise = rng.draw(mean.len());
                    mean.iter().zip(logvar).zip(&noise).map(|((m, lv), n)| m + (0.5 * lv.clamp(-30.0, 20.0)).exp() * n).collect()
                }
                None => mean.to_vec(),
            }
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
