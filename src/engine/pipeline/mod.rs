//! Owns generation: every mode (text-to-image, image-to-image, inpainting, outpainting, hires
//! fix) as one composition of the stages in [`stages`], step for step what diffusers' pipelines
//! do with `torch.Generator("cpu").manual_seed(seed)`:
//!
//! 1. encode the prompt in the request's syntax ([`stages::encode_prompt`], `engine::prompt`);
//! 2. the start latents: seeded noise times `init_noise_sigma` (txt2img), or the init image's
//!    VAE latents noised to the level of the first call that runs (`int(steps × strength)` steps
//!    run, diffusers' `StableDiffusionImg2ImgPipeline`), with a mask for inpainting
//!    ([`inpaint`], diffusers' `StableDiffusionInpaintPipeline`: a 4-channel UNet gets the known
//!    region re-noised and blended back after every call; a 9-channel inpainting UNet gets the
//!    mask and the masked image's latents as extra input channels; asked for text-to-image or
//!    image-to-image without a mask, it inpaints everything);
//! 3. denoise from that call ([`stages::denoise`]);
//! 4. for the hires fix ([`hires`]), enlarge the result (latents bilinearly, or the decoded
//!    image with Lanczos and encoded again) and run 2–3 once more from a generator re-seeded
//!    with the same seed;
//! 5. decode ([`stages::decode_latents`]; large pictures in tiles, [`vae_tiles`], as diffusers'
//!    `enable_tiling()`); outpainting ([`outpaint`]) pastes the original back with a soft seam.
//!
//! The random draws happen in diffusers' order, which differs by mode (see each step), so the
//! same seed gives the same image. Progress counts the UNet calls of all passes from 1.

mod a1111_inpaint;
mod a1111_upscale;
mod area_weights;
mod concat_conditioning;
mod grey_fill;
pub mod guided_unet;
mod hires;
pub mod inpaint;
mod ksampling;
pub mod outpaint;
pub mod randomness;
pub mod stages;
pub mod vae_tiles;

use std::time::{Duration, Instant};

use image::{GrayImage, RgbImage};

pub use stages::{
    decode_latents, denoise, encode_pixels, encode_prompt, needs_guidance, pixels_to_chw, prepare_latents, DenoiseRun, DenoiseStep,
    Denoised, TextConditioning, LATENT_CHANNELS, SD15_VAE_SCALING_FACTOR,
};

use super::cancel::CancelToken;
use super::imageops;
use super::model::SdModel;
use super::scheduler::{build_scheduler, Scheduler};
use super::EngineError;
use crate::api::image_modes::DEFAULT_STRENGTH;
use crate::api::request::GenerationSettings;
use crate::api::{PromptSyntax, Sampler, Schedule, VaeTiling};
use randomness::Randomness;

/// What the progress sink sees after each scheduler step.
pub struct StepProgress<'a> {
    /// 1-based count of the UNet calls done, over all passes.
    pub step: usize,
    pub total: usize,
    pub elapsed: Duration,
    /// The latents after this step, `[batch, 4, h, w]` (the pass's size).
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
    /// VAE encoder runs (init image, masked image, the hires fix's Lanczos path).
    pub vae_encode: Duration,
    pub unet_steps: Vec<Duration>,
    pub vae_decode: Duration,
    pub total: Duration,
}

/// The result of a generation.
pub struct Output {
    pub images: Vec<DecodedImage>,
    /// Final latents before the VAE, `[batch, 4, h, w]`.
    pub latents: Vec<f32>,
    pub latent_shape: [usize; 4],
    /// The first pass's start noise, before it is scaled to the first sigma.
    pub initial_noise: Option<Vec<f32>>,
    /// `[batch, 4, h, w]` of `initial_noise` (the first pass's).
    pub noise_shape: [usize; 4],
    /// The text conditioning fed to the UNet at the first call, for one image:
    /// `[uncond; cond per AND part]` with guidance, `[cond]` without; see
    /// [`TextConditioning::first_call_embeddings`] (shorter ones padded).
    pub text_embeddings: Vec<f32>,
    /// `[branches, tokens, dim]` of `text_embeddings`.
    pub text_embeddings_shape: [usize; 3],
    /// What the prompt stage wants the user to know (an embedding it could not use, truncation).
    pub prompt_notes: Vec<String>,
    /// Textual-inversion embeddings the prompts used (name and file hash).
    pub embeddings_used: Vec<crate::engine::prompt::EmbeddingUse>,
    /// A1111's `Lora hashes`, `VAE hash` and `VAE` for the LoRAs and VAE the model ran with.
    pub network_parameters: Vec<(&'static str, String)>,
    /// Whether an inpainting (9-channel) UNet took a mask and masked-picture conditioning
    /// (A1111's `is_using_inpainting_conditioning`).
    pub inpainting_conditioning: bool,
    /// The request's mask went unused: A1111's "only masked" with an empty mask, run as plain
    /// image-to-image (its infotext then has no inpainting keys but the blur).
    pub mask_unused: bool,
    pub timings: Timings,
}

impl Output {
    /// Infotext parameters only the run knows: A1111's `Conditional mask weight` (always 1: the
    /// masked picture is masked fully) for an inpainting model, the networks', and `TI hashes`
    /// when embeddings were used.
    pub fn extra_parameters(&self) -> Vec<(&'static str, String)> {
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        if self.inpainting_conditioning {
            extra.push((crate::engine::infotext::CONDITIONAL_MASK_WEIGHT, "1.0".into()));
        }
        extra.extend(self.network_parameters.iter().cloned());
        extra.extend(crate::engine::prompt::ti_hashes(&self.embeddings_used).map(|h| ("TI hashes", h)));
        extra
    }
}

/// The pictures a request refers to, decoded (any size; they are resized here).
#[derive(Default)]
pub struct SourceImages {
    pub init: Option<RgbImage>,
    pub mask: Option<GrayImage>,
}

/// How many of `steps` inference steps an image-to-image run of `strength` makes: diffusers'
/// `init_timestep = min(int(steps · strength), steps)` (the product in double precision, as
/// Python computes it, then truncated). Zero means nothing would be denoised.
pub fn img2img_steps(steps: u32, strength: f64) -> u32 {
    ((f64::from(steps) * strength) as u32).min(steps)
}

fn denoised_steps(steps: u32, strength: f64, what: &str) -> Result<u32, EngineError> {
    match img2img_steps(steps, strength) {
        0 => Err(EngineError::InvalidRequest(format!(
            "{what} {strength} with {steps} steps denoises no step (int(steps x strength) = 0); raise the strength or the steps"
        ))),
        n => Ok(n),
    }
}

/// Text-to-image: [`generate`] without source images.
pub fn txt2img(
    model: &mut SdModel,
    settings: &GenerationSettings,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    generate(model, settings, &SourceImages::default(), cancel, progress)
}

/// Counts UNet calls over all passes and reports them.
struct Progress<'p> {
    sink: &'p mut dyn FnMut(&StepProgress<'_>),
    started: Instant,
    done: usize,
    total: usize,
}

impl Progress<'_> {
    fn step(&mut self, latents: &[f32], latent_shape: [usize; 4]) {
        self.done += 1;
        (self.sink)(&StepProgress { step: self.done, total: self.total, elapsed: self.started.elapsed(), latents, latent_shape });
    }
}

/// One denoising pass: its scheduler, its first call and its latent size.
struct Pass {
    scheduler: Box<dyn Scheduler>,
    sampler: Sampler,
    schedule: Schedule,
    steps: u32,
    /// The first scheduler call that runs.
    begin: usize,
    shape: [usize; 4],
    /// How the VAE runs over this pass's pictures (the request's setting for its compat mode).
    vae_tiling: VaeTiling,
}

impl Pass {
    fn new(
        settings: &GenerationSettings,
        model: &SdModel,
        steps: u32,
        denoised: u32,
        width: u32,
        height: u32,
    ) -> Result<Pass, EngineError> {
        let scheduler = build_scheduler(settings.sampler, settings.schedule, &model.scheduler_config, steps as usize)?;
        let begin = (steps - denoised) as usize * scheduler.order();
        let shape = [settings.batch_size as usize, LATENT_CHANNELS, height as usize / 8, width as usize / 8];
        let vae_tiling = settings.vae_tiling.for_compat(settings.noise.compat);
        Ok(Pass { scheduler, sampler: settings.sampler, schedule: settings.schedule, steps, begin, shape, vae_tiling })
    }

    /// The steps prompt editing divides: steps × evaluations per step.
    fn evaluation_steps(&self) -> u32 {
        self.steps * self.scheduler.order() as u32
    }

    fn calls(&self) -> usize {
        self.scheduler.timesteps().len() - self.begin
    }
}

/// Generates `settings.batch_size` images in the mode the settings describe, from `images`.
/// `progress` is called after every UNet call.
pub fn generate(
    model: &mut SdModel,
    settings: &GenerationSettings,
    images: &SourceImages,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    if ksampling::flavor(settings.noise.compat).is_some() {
        return ksampling::generate(model, settings, images, cancel, progress);
    }
    let started = Instant::now();
    let missing = |what: &str| EngineError::InvalidRequest(format!("the request names {what} but none was given"));
    let init = match (&settings.init_image, &images.init) {
        (Some(_), Some(image)) => Some(sized_rgb(image, settings.init_size())),
        (Some(_), None) => return Err(missing("an init image")),
        (None, _) => None,
    };
    let mask = match (&settings.mask, &images.mask) {
        (Some(_), Some(mask)) => Some(mask),
        (Some(_), None) => return Err(missing("a mask")),
        (None, _) => None,
    };
    let mut strength = settings.strength.unwrap_or(DEFAULT_STRENGTH);
    // Outpainting is inpainting of a grown canvas whose mask is the new area.
    let canvas = match (&init, &settings.outpaint) {
        (Some(init), Some(o)) => Some(outpaint::extend(init, o, settings.seed)),
        _ => None,
    };
    let (mut init, mut mask_image, mut mask_blur) = match (&canvas, init) {
        (Some(c), _) => (Some(c.rgb.clone()), Some(c.mask.clone()), 0),
        (None, init) => (init, mask.map(|m| sized_gray(m, settings.width, settings.height)), settings.mask_blur.unwrap_or(0)),
    };
    if mask_image.is_none() && model.unet_in_channels()? != LATENT_CHANNELS {
        // An inpainting UNet asked for text-to-image or image-to-image (A1111 allows both):
        // inpaint everything. Without an init image that is diffusers' inpainting at strength 1
        // with a white mask, where the picture is never encoded (a black one stands in).
        if settings.hires.is_some() {
            return Err(EngineError::InvalidRequest("the hires fix needs a normal (4-channel) model, not an inpainting model".into()));
        }
        mask_image = Some(GrayImage::from_pixel(settings.width, settings.height, image::Luma([255])));
        mask_blur = 0;
        if init.is_none() {
            init = Some(RgbImage::new(settings.width, settings.height));
            strength = 1.0;
        }
    }

    let denoised = match &init {
        Some(_) => denoised_steps(settings.steps, strength, "strength")?,
        None => settings.steps,
    };
    let mut first = Pass::new(settings, model, settings.steps, denoised, settings.width, settings.height)?;
    let mut second = match &settings.hires {
        Some(h) => {
            let steps = h.steps_or(settings.steps);
            let (w, hh) = h.target_size(settings.width, settings.height);
            Some(Pass::new(settings, model, steps, denoised_steps(steps, h.strength, "hires strength")?, w, hh)?)
        }
        None => None,
    };
    // Prompt editing counts model evaluations, as A1111's denoiser does: a second-order
    // sampler's schedule has twice the steps.
    let guided = needs_guidance(settings);
    let encode_started = Instant::now();
    let text = encode_prompt(model, settings, guided, first.evaluation_steps(), None, cancel)?;
    let mut timings = Timings { text_encoding: encode_started.elapsed(), ..Timings::default() };
    let total = first.calls() + second.as_ref().map_or(0, Pass::calls);
    let mut progress = Progress { sink: progress, started, done: 0, total };

    let mut rng = Randomness::new(settings, first.shape);
    let mut latents = match &init {
        None => {
            let start = prepare_latents(&mut rng, first.shape, first.scheduler.init_noise_sigma());
            run_pass(model, &mut first, &text, settings.cfg_scale, start, &[], None, &mut rng, cancel, &mut progress, &mut timings)?
        }
        Some(init) => {
            let chw = pixels_to_chw(init.as_raw(), init.width() as usize, init.height() as usize);
            match &mask_image {
                None => {
                    let encode_started = Instant::now();
                    let image_latents =
                        encode_pixels(model, &chw, init.width() as usize, init.height() as usize, first.vae_tiling, rng.vae(), cancel)?;
                    timings.vae_encode += encode_started.elapsed();
                    let start = noised(&mut first, &image_latents, &mut rng);
                    run_pass(model, &mut first, &text, settings.cfg_scale, start, &[], None, &mut rng, cancel, &mut progress, &mut timings)?
                }
                Some(mask) => {
                    let mask = inpaint::Mask::new(mask, mask_blur);
                    let setup = inpaint::prepare(model, &chw, &mask, &first, strength, &mut rng, cancel, &mut timings)?;
                    let blend = setup.blend.as_ref();
                    run_pass(
                        model,
                        &mut first,
                        &text,
                        settings.cfg_scale,
                        setup.start,
                        &setup.conditioning,
                        blend,
                        &mut rng,
                        cancel,
                        &mut progress,
                        &mut timings,
                    )?
                }
            }
        }
    };

    let (initial_noise, noise_shape) = (rng.take_initial(), first.shape);
    let mut shape = first.shape;
    if let (Some(h), Some(second)) = (&settings.hires, second.as_mut()) {
        // The second pass: fresh generators with the same seed, as a separate diffusers call.
        let mut rng = Randomness::new(settings, second.shape);
        let image_latents =
            hires::enlarge(model, h.upscaler, &latents, shape, second.shape, second.vae_tiling, rng.vae(), cancel, &mut timings)?;
        let start = noised(second, &image_latents, &mut rng);
        // A1111 reads prompt editing anew for the second pass (`[a:b:1.5]` counts both passes).
        let encode_started = Instant::now();
        let hires_text = match settings.prompt_syntax {
            PromptSyntax::A1111 => {
                Some(encode_prompt(model, settings, guided, first.evaluation_steps(), Some(second.evaluation_steps()), cancel)?)
            }
            PromptSyntax::ComfyUi | PromptSyntax::Plain => None,
        };
        timings.text_encoding += encode_started.elapsed();
        let second_text = hires_text.as_ref().unwrap_or(&text);
        latents =
            run_pass(model, second, second_text, settings.cfg_scale, start, &[], None, &mut rng, cancel, &mut progress, &mut timings)?;
        shape = second.shape;
    }

    let decode_started = Instant::now();
    let mut decoded = decode_latents(model, &latents, shape, first.vae_tiling, cancel)?;
    timings.vae_decode += decode_started.elapsed();
    if let (Some(o), Some(original)) = (&settings.outpaint, &images.init) {
        let original = sized_rgb(original, settings.init_size());
        for image in &mut decoded {
            outpaint::paste_original(&mut image.rgb, image.width, &original, o, settings.mask_blur.unwrap_or(0));
        }
    }
    timings.total = started.elapsed();
    let (text_embeddings, text_embeddings_shape) = text.first_call_embeddings();
    Ok(Output {
        images: decoded,
        latents,
        latent_shape: shape,
        initial_noise,
        noise_shape,
        text_embeddings,
        text_embeddings_shape,
        prompt_notes: text.prompt.notes.clone(),
        embeddings_used: text.prompt.embeddings_used.clone(),
        network_parameters: model.network_parameters(),
        inpainting_conditioning: model.unet_in_channels()? != LATENT_CHANNELS,
        mask_unused: false,
        timings,
    })
}

/// The start of an image-to-image pass: `image_latents` (one image's, repeated over the batch,
/// or one per image) noised with one draw for the whole batch to the level of the pass's
/// first call.
fn noised(pass: &mut Pass, image_latents: &[f32], rng: &mut Randomness) -> Vec<f32> {
    let n: usize = pass.shape.iter().product();
    let batch_latents: Vec<f32> = image_latents.iter().copied().cycle().take(n).collect();
    let noise = rng.start_noise(n);
    pass.scheduler.add_noise(&batch_latents, &noise, pass.begin)
}

/// Runs one pass's denoising loop from `start`, reporting each call.
#[allow(clippy::too_many_arguments)]
fn run_pass(
    model: &mut SdModel,
    pass: &mut Pass,
    text: &TextConditioning,
    cfg_scale: f32,
    start: Vec<f32>,
    conditioning: &[f32],
    blend: Option<&inpaint::Blend>,
    rng: &mut Randomness,
    cancel: &CancelToken,
    progress: &mut Progress<'_>,
    timings: &mut Timings,
) -> Result<Vec<f32>, EngineError> {
    let total_calls = pass.scheduler.timesteps().len();
    let run = DenoiseRun { text, cfg_scale, latent_shape: pass.shape, calls: pass.begin..total_calls, conditioning };
    let shape = pass.shape;
    let scheduler = &mut pass.scheduler;
    let denoised = {
        let mut hook = |step: DenoiseStep<'_>| {
            if let Some(blend) = blend {
                blend.apply(step.latents, step.index, total_calls);
            }
            progress.step(step.latents, shape);
        };
        denoise(model, scheduler.as_mut(), &run, start, rng.steps(), cancel, &mut hook)?
    };
    timings.unet_steps.extend(denoised.unet_steps);
    Ok(denoised.latents)
}

fn sized_rgb(image: &RgbImage, (width, height): (u32, u32)) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let pixels =
        imageops::resize_lanczos(image.as_raw(), 3, image.width() as usize, image.height() as usize, width as usize, height as usize);
    RgbImage::from_raw(width, height, pixels).expect("resize gives width x height x 3")
}

fn sized_gray(image: &GrayImage, width: u32, height: u32) -> GrayImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let pixels =
        imageops::resize_lanczos(image.as_raw(), 1, image.width() as usize, image.height() as usize, width as usize, height as usize);
    GrayImage::from_raw(width, height, pixels).expect("resize gives width x height")
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
}
