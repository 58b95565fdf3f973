//! Owns text-to-image in the A1111 and ComfyUI compatibility modes: the tool's noise
//! ([`super::randomness`]), its sigma schedule and k-diffusion sampler
//! ([`crate::engine::kdiffusion`]) over the UNet behind the tool's discrete eps wrapper
//! (`x·c_in` in, the timestep from σ, `x − σ·ε` out) with guidance combined on the denoised
//! latents, or A1111's timestep samplers ([`crate::engine::timesteps`]: DDIM, DDIM CFG++, PLMS,
//! UniPC; the UNet on the latents themselves, guidance combined on the noise predictions), and
//! its 8-bit pixels (truncated). Image-to-image runs too, over the VAE encoder's latents (the
//! posterior's mean): A1111's (the last `int(strength · steps) + 1` sigmas of the schedule, or
//! `sample_img2img`'s timesteps) and ComfyUI's (a KSampler at denoise below 1: the tail of a
//! longer schedule; a KSamplerAdvanced window, and a chain of them; a latent noise mask,
//! `KSamplerX0Inpaint`). A1111's inpainting ([`super::a1111_inpaint`] prepares the picture, mask
//! and overlay; here the latents are blended with the init latents after every call, before every
//! call for its timestep samplers, and once more at the end). An inpainting (9-channel) model gets
//! the tool's mask and masked-picture channels ([`super::concat_conditioning`]). The hires fix:
//! ComfyUI's two-pass graph, A1111's `sample_hr_pass` (a latent upscaler, or its Lanczos picture
//! upscaler, [`super::a1111_upscale`]). Outpainting runs in the diffusers mode only so far.

use std::time::Instant;

use super::a1111_inpaint::{self, Prepared};
use super::a1111_upscale;
use super::concat_conditioning;
use super::grey_fill::grey_fill;
use super::guided_unet::GuidedUnet;
use super::randomness::Randomness;
use super::stages::{
    check_cancel, decode_latents_as, encode_pixels_mode, encode_prompt, needs_guidance, pixels_to_chw, DenoiseRun, Quantize,
    LATENT_CHANNELS,
};
use super::{Output, Progress, SourceImages, StepProgress, Timings};
use crate::api::image_modes::MaskedContent;
use crate::api::{Compat, GenerationSettings, RandnSource, SamplingRange};
use crate::engine::cancel::CancelToken;
use crate::engine::imageops;
use crate::engine::kdiffusion::discrete::DiscreteSchedule;
use crate::engine::kdiffusion::{schedules, BrownianSeeds, Context, Denoiser, Flavor, KSampler, Step};
use crate::engine::model::SdModel;
use crate::engine::noise::brownian::{self, SeededRandn};
use crate::engine::timesteps::{self, EpsModel, TimestepSampler};
use crate::engine::EngineError;

/// Whose k-diffusion a compatibility mode runs (`None`: the diffusers mode).
pub fn flavor(compat: Compat) -> Option<Flavor> {
    match compat {
        Compat::Diffusers => None,
        Compat::A1111 => Some(Flavor::A1111),
        Compat::ComfyUi => Some(Flavor::ComfyUi),
    }
}

/// The model's discrete schedule as `flavor`'s wrapper holds it: SD 1.x's `scaled_linear` betas
/// of an eps model, from the model's scheduler config (what the tools read from the checkpoint's
/// LDM config); anything else is refused with what to do.
fn model_schedule(model: &SdModel, flavor: Flavor) -> Result<DiscreteSchedule, EngineError> {
    let config = &model.scheduler_config;
    let refuse = |what: String| {
        EngineError::InvalidRequest(format!(
            "compat a1111 and comfyui run SD 1.x eps models with scaled_linear betas; this model's scheduler config has {what}; use compat diffusers"
        ))
    };
    let kind = config.beta_schedule.as_deref().unwrap_or("linear");
    if kind != "scaled_linear" {
        return Err(refuse(format!("beta_schedule {kind}")));
    }
    if let Some(p) = config.prediction_type.as_deref().filter(|p| *p != "epsilon") {
        return Err(refuse(format!("prediction_type {p}")));
    }
    if config.trained_betas.is_some() {
        return Err(refuse("trained_betas".into()));
    }
    let (start, end, steps) =
        (config.beta_start.unwrap_or(0.00085), config.beta_end.unwrap_or(0.012), config.num_train_timesteps.unwrap_or(1000));
    if !(2..=10_000).contains(&steps) {
        return Err(refuse(format!("num_train_timesteps {steps}")));
    }
    if !(start > 0.0 && start < end && end < 1.0) {
        return Err(refuse(format!("beta_start {start} and beta_end {end}")));
    }
    Ok(DiscreteSchedule::scaled_linear(flavor, start, end, steps))
}

/// The UNet under guidance as k-diffusion's denoiser `D(x, σ)`.
struct GuidedDenoiser<'a, 'p> {
    unet: GuidedUnet<'a>,
    schedule: &'a DiscreteSchedule,
    calls: usize,
    cancel: &'a CancelToken,
    progress: &'a mut Progress<'p>,
    timings: &'a mut Timings,
    shape: [usize; 4],
    /// The unconditional branch's denoised latents of the last call (guided runs only).
    last_uncond: Option<Vec<f32>>,
}

/// A1111's timestep samplers call the same guided UNet for the noise prediction itself
/// (`CFGDenoiserTimesteps` over `CompVisTimestepsDenoiser`: the latents go in unscaled, guidance
/// combines the noise predictions).
impl EpsModel for GuidedDenoiser<'_, '_> {
    fn eps(&mut self, x: &[f32], t: f64, scale: f64) -> Result<Vec<f32>, EngineError> {
        self.evaluate(x, x, t, |_, outputs| outputs, scale)
    }

    fn last_uncond(&self) -> Option<&[f32]> {
        self.last_uncond.as_deref()
    }
}

/// How a compat run walks the model: a k-diffusion sampler down sigmas, or one of A1111's
/// timestep samplers over timesteps (image-to-image: noised to `alpha`, ᾱ of the timestep after
/// the walked ones).
enum Walk {
    /// `tree`: the SDE samplers' Brownian-tree range when not the walked sigmas'.
    Sigmas {
        sampler: KSampler,
        sigmas: Vec<f32>,
        tree: Option<(f32, f32)>,
    },
    Timesteps {
        sampler: TimestepSampler,
        timesteps: Vec<u32>,
        alpha: Option<f32>,
    },
}

impl Walk {
    /// The UNet evaluations the walk makes.
    fn model_calls(&self) -> usize {
        match self {
            Walk::Sigmas { sampler, sigmas, .. } => sampler.model_calls(sigmas),
            Walk::Timesteps { sampler, timesteps, .. } => sampler.model_calls(timesteps),
        }
    }
}

impl Denoiser for GuidedDenoiser<'_, '_> {
    fn last_uncond(&self) -> Option<&[f32]> {
        self.last_uncond.as_deref()
    }

    fn denoise(&mut self, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError> {
        let x_in = self.schedule.scale_input(x, sigma);
        let t = f64::from(self.schedule.sigma_to_t(sigma));
        let lcm = self.schedule.lcm_scalings(sigma);
        let to_denoised = |x: &[f32], outputs: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            // Each branch denoised as the eps wrapper gives it (`x + ε·c_out`, c_out = −σ), then
            // the branches combined: A1111's `combine_denoised`, ComfyUI's `cfg_function`.
            let mut denoised: Vec<Vec<f32>> =
                outputs.into_iter().map(|eps| x.iter().zip(&eps).map(|(x, e)| x + e * -sigma).collect()).collect();
            // A1111's LCM denoiser scales each branch's result towards the input.
            if let Some((c_skip, c_out)) = lcm {
                for branch in &mut denoised {
                    branch.iter_mut().zip(x).for_each(|(d, x)| *d = c_out * *d + c_skip * x);
                }
            }
            denoised
        };
        self.evaluate(x, &x_in, t, to_denoised, 1.0)
    }
}

impl GuidedDenoiser<'_, '_> {
    /// One guided UNet evaluation of `x` (fed to the UNet as `unet_input` at timestep `t`): the
    /// branches' outputs mapped by `per_branch`, the unconditional one kept, combined at the
    /// request's guidance times `scale`; cancel, timings and progress as every call needs.
    fn evaluate(
        &mut self,
        x: &[f32],
        unet_input: &[f32],
        t: f64,
        per_branch: impl FnOnce(&[f32], Vec<Vec<f32>>) -> Vec<Vec<f32>>,
        scale: f64,
    ) -> Result<Vec<f32>, EngineError> {
        check_cancel(self.cancel)?;
        let started = Instant::now();
        let outputs = per_branch(x, self.unet.branch_outputs(unet_input, t, self.calls)?);
        let (guided, uncond) = self.unet.guide_keeping_uncond(outputs, self.calls, scale);
        self.last_uncond = uncond;
        self.calls += 1;
        self.timings.unet_steps.push(started.elapsed());
        self.progress.step(x, self.shape);
        Ok(guided)
    }
}

/// How the SDE samplers' Brownian trees are seeded: A1111 one tree per image with the image's
/// seed, its nodes drawn from its noise source (`randn_local`); ComfyUI one tree for the batch
/// with the seed, drawn on the CPU.
fn brownian_seeds(settings: &GenerationSettings) -> BrownianSeeds {
    match settings.noise.compat {
        Compat::A1111 => {
            // The trees take the images' seeds (`all_seeds`), not ENSD or the resized seed.
            let seeds = crate::engine::noise::a1111::A1111Seeds::from_settings(settings);
            let randn = match seeds.source {
                RandnSource::Nv => brownian::philox_randn as SeededRandn,
                RandnSource::Cpu => brownian::torch_randn,
            };
            BrownianSeeds {
                entropies: seeds.image_seeds(settings.batch_size as usize).into_iter().map(u128::from).collect(),
                randn,
                range: None,
            }
        }
        _ => BrownianSeeds { entropies: vec![u128::from(settings.seed)], randn: brownian::torch_randn, range: None },
    }
}

/// Text-to-image in `settings.noise.compat` (A1111 or ComfyUI).
pub fn generate(
    model: &mut SdModel,
    settings: &GenerationSettings,
    images: &SourceImages,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    let started = Instant::now();
    let compat = settings.noise.compat;
    let flavor = flavor(compat).expect("called for the a1111 and comfyui modes");
    // The request rules refuse the rest; an image-to-image run is an init image alone or with a
    // mask (ComfyUI's latent noise mask, A1111's inpainting).
    let masked = flavor == Flavor::ComfyUi && settings.mask.is_some();
    let a1111_masked = flavor == Flavor::A1111 && settings.mask.is_some();
    let img2img = settings.init_image.is_some() && settings.outpaint.is_none();
    // The hires fix over text-to-image: ComfyUI's two-pass graph (KSampler -> LatentUpscale ->
    // KSampler), A1111's `sample_hr_pass` (latent upscalers).
    // (A1111's also with its picture upscaler, Lanczos.)
    let two_pass = settings.init_image.is_none() && settings.hires.is_some_and(|h| h.upscaler.is_latent() || flavor == Flavor::A1111);
    if (settings.init_image.is_some() && !img2img) || (settings.hires.is_some() && !two_pass) {
        return Err(EngineError::InvalidRequest(format!("compat {compat} does not run this mode yet; use compat diffusers")));
    }
    // A1111's inpainting prepares the picture it encodes (none: "only masked" with an empty mask,
    // which A1111 runs as image-to-image without a mask).
    let prepared = match (a1111_masked, &images.init, &images.mask) {
        (true, Some(init), Some(mask)) => a1111_inpaint::prepare(
            init,
            mask,
            &a1111_inpaint::Settings {
                size: (settings.width, settings.height),
                blur: settings.mask_blur.unwrap_or(0),
                area: settings.inpaint_area,
                padding: settings.inpaint_padding,
                content: settings.masked_content,
            },
        ),
        (true, _, None) => return Err(EngineError::InvalidRequest("the request names a mask but none was given".into())),
        _ => None,
    };
    let mask_unused = a1111_masked && prepared.is_none();
    let init = match (img2img, &images.init) {
        (true, Some(_)) if prepared.is_some() => prepared.as_ref().map(|p| p.picture.clone()),
        // ComfyUI's VAEEncode takes a picture whatever its size and crops it to multiples of 8
        // (centred); a picture of another size went through ImageScale (Lanczos).
        (true, Some(image)) if flavor == Flavor::ComfyUi && eight_pixel_size(image.dimensions()) == settings.init_size() => {
            Some(image.clone())
        }
        (true, Some(image)) => Some(super::sized_rgb(image, settings.init_size())),
        (true, None) => return Err(EngineError::InvalidRequest("the request names an init image but none was given".into())),
        (false, _) => None,
    };
    // A1111's hires pass conditions an inpainting model at the first pass's size, which its
    // UNet cannot take with the larger latents: A1111 fails there too.
    if flavor == Flavor::A1111 && two_pass && model.unet_in_channels()? != LATENT_CHANNELS {
        return Err(EngineError::InvalidRequest(
            "compat a1111 runs the hires fix with a normal (4-channel) model, not an inpainting model".into(),
        ));
    }
    let schedule = model_schedule(model, flavor)?;
    let steps = settings.steps as usize;
    let timestep_sampler = TimestepSampler::for_sampler(settings.sampler).filter(|_| flavor == Flavor::A1111);
    if let Some(sampler) = timestep_sampler {
        if let Some(hires) = settings.hires.filter(|_| two_pass) {
            return a1111_hires(model, settings, &hires, &schedule, A1111Walk::Timesteps(sampler), started, cancel, progress);
        }
        let walk = match (&init, settings.strength) {
            (Some(_), Some(strength)) => {
                a1111_img2img_walk(&schedule, A1111Walk::Timesteps(sampler), settings, a1111_img2img_steps(steps, strength, false))?
            }
            _ => Walk::Timesteps { sampler, timesteps: timesteps::timesteps(steps), alpha: None },
        };
        let start = Start { init: init.as_ref(), a1111: prepared.as_ref(), ..Start::default() };
        return run_walk(model, settings, &schedule, walk, start, started, cancel, progress).map(|o| Output { mask_unused, ..o });
    }
    let sampler = KSampler::for_sampler(settings.sampler)
        .ok_or_else(|| EngineError::InvalidRequest(format!("sampler {} does not run in compat {compat}", settings.sampler)))?;
    let schedule = schedule.for_sampler(sampler);
    match settings.hires.filter(|_| two_pass) {
        Some(hires) if flavor == Flavor::ComfyUi => {
            return two_passes(model, settings, &hires, &schedule, sampler, started, cancel, progress)
        }
        Some(hires) => return a1111_hires(model, settings, &hires, &schedule, A1111Walk::Sigmas(sampler), started, cancel, progress),
        None => {}
    }
    let walk = match (&init, settings.strength) {
        (Some(_), Some(strength)) if flavor == Flavor::A1111 => {
            a1111_img2img_walk(&schedule, A1111Walk::Sigmas(sampler), settings, a1111_img2img_steps(steps, strength, false))?
        }
        (Some(_), Some(denoise)) => {
            Walk::Sigmas { sampler, sigmas: comfyui_denoised(&schedule, sampler, settings.schedule, steps, denoise)?, tree: None }
        }
        _ => Walk::Sigmas {
            sampler,
            sigmas: schedules::sigmas(&schedule, sampler, settings.schedule, steps).map_err(EngineError::InvalidRequest)?,
            tree: None,
        },
    };
    let walk = match (walk, &settings.sampling_range) {
        (Walk::Sigmas { sampler, sigmas, tree }, Some(range)) => Walk::Sigmas { sampler, sigmas: comfyui_window(sigmas, range)?, tree },
        (walk, _) => walk,
    };
    let mask = match (masked, &images.mask) {
        (false, _) => None,
        (true, Some(mask)) => Some(mask),
        (true, None) => return Err(EngineError::InvalidRequest("the request names a mask but none was given".into())),
    };
    let start = Start { init: init.as_ref(), mask, a1111: prepared.as_ref(), ..Start::default() };
    if !settings.stages.is_empty() {
        return comfyui_chain(model, settings, &schedule, walk, start, started, cancel, progress);
    }
    run_walk(model, settings, &schedule, walk, start, started, cancel, progress).map(|o| Output { mask_unused, ..o })
}

/// ComfyUI's chain of `KSamplerAdvanced` nodes: the request's own window, then each stage over
/// the LATENT the one before returned (its samples over the VAE scale, times the scale again as
/// the next KSampler takes them in), with the stage's own seed, steps, CFG, sampler, schedule
/// and window, the same model and prompts; only the last stage is decoded.
#[allow(clippy::too_many_arguments)]
fn comfyui_chain(
    model: &mut SdModel,
    settings: &GenerationSettings,
    schedule: &DiscreteSchedule,
    first_walk: Walk,
    first_start: Start<'_>,
    started: Instant,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    let mut stages = Vec::with_capacity(settings.stages.len());
    for stage in &settings.stages {
        let sampler = KSampler::for_sampler(stage.sampler)
            .ok_or_else(|| EngineError::InvalidRequest(format!("sampler {} does not run in compat comfyui", stage.sampler)))?;
        let sigmas = schedules::sigmas(schedule, sampler, stage.schedule, stage.steps as usize).map_err(EngineError::InvalidRequest)?;
        let stage_settings = GenerationSettings {
            prompt: stage.prompt.clone().unwrap_or_else(|| settings.prompt.clone()),
            negative_prompt: stage.negative_prompt.clone().unwrap_or_else(|| settings.negative_prompt.clone()),
            seed: stage.seed,
            steps: stage.steps,
            cfg_scale: stage.cfg_scale,
            sampler: stage.sampler,
            schedule: stage.schedule,
            sampling_range: Some(stage.sampling_range),
            stages: Vec::new(),
            init_image: None,
            strength: None,
            ..settings.clone()
        };
        stages.push((stage_settings, Walk::Sigmas { sampler, sigmas: comfyui_window(sigmas, &stage.sampling_range)?, tree: None }));
    }
    let total = first_walk.model_calls() + stages.iter().map(|(_, walk)| walk.model_calls()).sum::<usize>();
    let mut done = first_walk.model_calls();
    let first_settings = GenerationSettings { stages: Vec::new(), ..settings.clone() };
    let first_start = Start { decode: false, calls: Some((0, total)), ..first_start };
    let mut out = run_walk(model, &first_settings, schedule, first_walk, first_start, started, cancel, progress)?;
    let scale = model.vae_facts.scaling_factor;
    let last = stages.len() - 1;
    for (i, (stage_settings, walk)) in stages.into_iter().enumerate() {
        let calls = walk.model_calls();
        let latent = out.latents.iter().map(|v| v / scale * scale).collect();
        let start = Start { latent: Some(latent), decode: i == last, calls: Some((done, total)), ..Start::default() };
        let next = run_walk(model, &stage_settings, schedule, walk, start, started, cancel, progress)?;
        out = joined_passes(out, next, started);
        done += calls;
    }
    Ok(out)
}

/// ComfyUI's KSampler sigmas at `denoise`: below 1, the schedule of int(steps / denoise) steps,
/// its last steps + 1 sigmas; else the whole schedule.
fn comfyui_denoised(
    schedule: &DiscreteSchedule,
    sampler: KSampler,
    kind: crate::api::Schedule,
    steps: usize,
    denoise: f64,
) -> Result<Vec<f32>, EngineError> {
    if denoise > 0.9999 {
        return schedules::sigmas(schedule, sampler, kind, steps).map_err(EngineError::InvalidRequest);
    }
    let all = schedules::sigmas(schedule, sampler, kind, (steps as f64 / denoise) as usize).map_err(EngineError::InvalidRequest)?;
    Ok(all[all.len().saturating_sub(steps + 1)..].to_vec())
}

/// A picture's size cut down to multiples of 8 (what the VAE encodes).
fn eight_pixel_size((width, height): (u32, u32)) -> (u32, u32) {
    (width / 8 * 8, height / 8 * 8)
}

/// ComfyUI's `vae_encode_crop_pixels`: a picture whose sides are not multiples of 8 loses the
/// remainder, half of it (rounded down) before and the rest after; others pass as they are.
fn centre_crop_to_eight(image: &image::RgbImage) -> std::borrow::Cow<'_, image::RgbImage> {
    let (w, h) = image.dimensions();
    let (cw, ch) = eight_pixel_size((w, h));
    if (cw, ch) == (w, h) {
        return std::borrow::Cow::Borrowed(image);
    }
    std::borrow::Cow::Owned(image::imageops::crop_imm(image, (w % 8) / 2, (h % 8) / 2, cw, ch).to_image())
}

/// The sampler of an A1111 run: a k-diffusion one or one of its timestep samplers.
#[derive(Clone, Copy)]
enum A1111Walk {
    Sigmas(KSampler),
    Timesteps(TimestepSampler),
}

/// A1111's `setup_img2img_steps`: `(schedule steps, t_enc)`. Plain image-to-image walks
/// t_enc = int(min(strength, 0.999) · steps) of the schedule of `steps`; with `fixed` (the hires
/// fix's second pass, which names its steps) all `steps` run, t_enc = steps − 1, out of a schedule
/// of int(steps / min(strength, 0.999)).
fn a1111_img2img_steps(steps: usize, strength: f64, fixed: bool) -> (usize, usize) {
    let strength = strength.min(0.999);
    match fixed {
        true if strength > 0.0 => ((steps as f64 / strength) as usize, steps.saturating_sub(1)),
        true => (0, steps.saturating_sub(1)),
        false => (steps, (strength * steps as f64) as usize),
    }
}

/// A1111's `sample_img2img` walk for `(schedule steps, t_enc)`: a k-diffusion sampler over the
/// last t_enc + 1 sigmas of the schedule; a timestep sampler over its first t_enc timesteps, from
/// the latents noised to ᾱ of the next one.
fn a1111_img2img_walk(
    schedule: &DiscreteSchedule,
    sampler: A1111Walk,
    settings: &GenerationSettings,
    (steps, t_enc): (usize, usize),
) -> Result<Walk, EngineError> {
    Ok(match sampler {
        A1111Walk::Sigmas(sampler) => {
            let all = schedules::sigmas(schedule, sampler, settings.schedule, steps).map_err(EngineError::InvalidRequest)?;
            let sigmas = all[steps.saturating_sub(t_enc + 1).min(all.len())..].to_vec();
            if sigmas.len() < 2 {
                return Err(EngineError::InvalidRequest(format!("{steps} steps at this strength leave no step to run")));
            }
            // The SDE samplers' trees span the whole schedule (`create_noise_sampler(x, sigmas, p)`).
            Walk::Sigmas { sampler, sigmas, tree: Some(crate::engine::kdiffusion::sigma_range(&all)) }
        }
        A1111Walk::Timesteps(sampler) => {
            let (timesteps, alpha) = timesteps::img2img(steps, t_enc, &schedule.alphas_cumprod)?;
            Walk::Timesteps { sampler, timesteps, alpha: Some(alpha) }
        }
    })
}

/// A1111's hires fix with a latent upscaler (`sample_hr_pass`): the text-to-image latents
/// resized with `torch.nn.functional.interpolate` (the upscaler's mode, no antialias, in the
/// model's latent space), then image-to-image at the target size from a fresh noise
/// generator for the same seeds, running the hires steps out of int(steps / strength).
#[allow(clippy::too_many_arguments)]
fn a1111_hires(
    model: &mut SdModel,
    settings: &GenerationSettings,
    hires: &crate::api::Hires,
    schedule: &DiscreteSchedule,
    sampler: A1111Walk,
    started: Instant,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    let (first_settings, second_settings) = pass_settings(settings, hires);
    let steps = settings.steps as usize;
    let first_walk = match sampler {
        A1111Walk::Sigmas(sampler) => Walk::Sigmas {
            sampler,
            sigmas: schedules::sigmas(schedule, sampler, settings.schedule, steps).map_err(EngineError::InvalidRequest)?,
            tree: None,
        },
        A1111Walk::Timesteps(sampler) => Walk::Timesteps { sampler, timesteps: timesteps::timesteps(steps), alpha: None },
    };
    let second_steps = a1111_img2img_steps(second_settings.steps as usize, hires.strength, true);
    let second_walk = a1111_img2img_walk(schedule, sampler, &second_settings, second_steps)?;
    let calls = (first_walk.model_calls(), second_walk.model_calls());
    // A picture upscaler works on the first pass's pictures.
    let decode = !hires.upscaler.is_latent();
    let first_start = Start { decode, calls: Some((0, calls.0 + calls.1)), ..Start::default() };
    let first = run_walk(model, &first_settings, schedule, first_walk, first_start, started, cancel, progress)?;
    let [batch, channels, h, w] = first.latent_shape;
    let (th, tw) = (second_settings.height as usize / 8, second_settings.width as usize / 8);
    let scaled = match imageops::resize_latents(hires.upscaler, &first.latents, [batch, channels, h, w], th, tw) {
        Some(scaled) => scaled,
        None => {
            let tiling = settings.vae_tiling.for_compat(settings.noise.compat);
            let target = (second_settings.width, second_settings.height);
            a1111_upscale::upscaled_latents(model, &first.images, target, tiling, cancel)?
        }
    };
    // A1111 counts prompt editing over denoiser calls (twice the steps for second-order samplers).
    let evaluation = |steps: u32| steps * if matches!(sampler, A1111Walk::Sigmas(s) if s.second_order()) { 2 } else { 1 };
    let second_start = Start {
        latent: Some(scaled),
        calls: Some((calls.0, calls.0 + calls.1)),
        first_pass_steps: Some(evaluation(settings.steps)),
        ..Start::default()
    };
    let out = run_walk(model, &second_settings, schedule, second_walk, second_start, started, cancel, progress)?;
    Ok(joined_passes(first, out, started))
}

/// A hires fix's two passes as settings: the first without the fix; the second at the target
/// size, image-to-image at the hires strength with its steps (and, in compat comfyui, its seed;
/// the request rules keep `hires.seed` to that mode).
fn pass_settings(settings: &GenerationSettings, hires: &crate::api::Hires) -> (GenerationSettings, GenerationSettings) {
    let (width, height) = hires.target_size(settings.width, settings.height);
    let second = GenerationSettings {
        seed: hires.seed.unwrap_or(settings.seed),
        steps: hires.steps_or(settings.steps),
        width,
        height,
        strength: Some(hires.strength),
        hires: None,
        ..settings.clone()
    };
    (GenerationSettings { hires: None, ..settings.clone() }, second)
}

/// The second pass's output with the first pass's start noise (the generation's, for
/// --save-noise) and both passes' timings.
fn joined_passes(first: Output, mut out: Output, started: Instant) -> Output {
    (out.initial_noise, out.noise_shape) = (first.initial_noise, first.noise_shape);
    let mut unet_steps = first.timings.unet_steps;
    unet_steps.append(&mut out.timings.unet_steps);
    out.timings.unet_steps = unet_steps;
    out.timings.text_encoding += first.timings.text_encoding;
    out.timings.total = started.elapsed();
    out
}

/// ComfyUI's two-pass graph, its hires fix: KSampler over an empty latent, the LATENT scaled by
/// `LatentUpscale(By)` (its method, in the LATENT space: the samples over the VAE
/// scale, scaled back by the second KSampler), and a second KSampler from its own seed and steps
/// at denoise = the hires strength.
#[allow(clippy::too_many_arguments)]
fn two_passes(
    model: &mut SdModel,
    settings: &GenerationSettings,
    hires: &crate::api::Hires,
    schedule: &DiscreteSchedule,
    sampler: KSampler,
    started: Instant,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    let (first_settings, second_settings) = pass_settings(settings, hires);
    let first_sigmas =
        schedules::sigmas(schedule, sampler, settings.schedule, settings.steps as usize).map_err(EngineError::InvalidRequest)?;
    let second_sigmas = comfyui_denoised(schedule, sampler, settings.schedule, second_settings.steps as usize, hires.strength)?;
    let calls = (sampler.model_calls(&first_sigmas), sampler.model_calls(&second_sigmas));
    let first_start = Start { decode: false, calls: Some((0, calls.0 + calls.1)), ..Start::default() };
    let first = run_walk(
        model,
        &first_settings,
        schedule,
        Walk::Sigmas { sampler, sigmas: first_sigmas, tree: None },
        first_start,
        started,
        cancel,
        progress,
    )?;
    let scale = model.vae_facts.scaling_factor;
    let [batch, channels, h, w] = first.latent_shape;
    let latent: Vec<f32> = first.latents.iter().map(|v| v / scale).collect();
    let (th, tw) = (second_settings.height as usize / 8, second_settings.width as usize / 8);
    let Some(scaled) = imageops::resize_latents(hires.upscaler, &latent, [batch, channels, h, w], th, tw) else {
        return Err(EngineError::InvalidRequest("compat comfyui's hires fix upscales latents, not pictures".into()));
    };
    let second_start =
        Start { latent: Some(scaled.iter().map(|v| v * scale).collect()), calls: Some((calls.0, calls.0 + calls.1)), ..Start::default() };
    let out = run_walk(
        model,
        &second_settings,
        schedule,
        Walk::Sigmas { sampler, sigmas: second_sigmas, tree: None },
        second_start,
        started,
        cancel,
        progress,
    )?;
    Ok(joined_passes(first, out, started))
}

/// What a compat run starts from, and how much of the job's progress it is.
struct Start<'a> {
    init: Option<&'a image::RgbImage>,
    mask: Option<&'a image::GrayImage>,
    /// A1111's inpainting: its latent mask and overlay (`init` is its prepared picture).
    a1111: Option<&'a Prepared>,
    /// Latents (model space, the batch's) handed on from a first pass, in place of an encoded
    /// picture.
    latent: Option<Vec<f32>>,
    /// Whether the final latents are decoded (not for a first pass).
    decode: bool,
    /// UNet calls before this pass and in the whole job; `None`: this pass is the job.
    calls: Option<(usize, usize)>,
    /// A1111's hires pass: the first pass's prompt-editing steps, which this pass's count on
    /// from (`calculate_hr_conds`: `firstpass_steps`, then the hires total steps).
    first_pass_steps: Option<u32>,
}

impl Default for Start<'_> {
    fn default() -> Self {
        Self { init: None, mask: None, a1111: None, latent: None, decode: true, calls: None, first_pass_steps: None }
    }
}

/// ComfyUI's latent noise mask (`SetLatentNoiseMask` -> `KSamplerX0Inpaint`): before every
/// denoiser call the latents outside the mask are put back to the init latents noised to the
/// current sigma, and after it the prediction there is the init latents.
struct LatentNoiseMask<'d> {
    inner: &'d mut dyn Denoiser,
    /// 1 where the picture is repainted, per latent value (`prepare_mask`).
    mask: Vec<f32>,
    latent: Vec<f32>,
    /// The start noise before scaling (`model_k.noise`).
    noise: Vec<f32>,
}

impl Denoiser for LatentNoiseMask<'_> {
    fn denoise(&mut self, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError> {
        let blended: Vec<f32> = (0..x.len())
            .map(|i| {
                let (m, keep) = (self.mask[i], 1.0 - self.mask[i]);
                x[i] * m + (self.noise[i] * sigma + self.latent[i]) * keep
            })
            .collect();
        let out = self.inner.denoise(&blended, sigma)?;
        Ok(out.iter().enumerate().map(|(i, o)| o * self.mask[i] + self.latent[i] * (1.0 - self.mask[i])).collect())
    }

    fn last_uncond(&self) -> Option<&[f32]> {
        self.inner.last_uncond()
    }
}

/// A1111's inpainting blend (`CFGDenoiser.apply_blend`): `latents · nmask + init_latent · mask`,
/// `nmask` 1 where repainted (per latent pixel, over the channels and the batch), `mask = 1 − nmask`.
struct A1111Blend {
    nmask: Vec<f32>,
    init_latent: Vec<f32>,
}

impl A1111Blend {
    fn apply(&self, latents: &[f32]) -> Vec<f32> {
        let plane = self.nmask.len();
        latents
            .iter()
            .zip(&self.init_latent)
            .enumerate()
            .map(|(i, (x, init))| {
                let n = self.nmask[i % plane];
                x * n + init * (1.0 - n)
            })
            .collect()
    }
}

/// A k-diffusion denoiser under A1111's blend: the prediction blended after every call.
struct BlendAfter<'d> {
    inner: &'d mut dyn Denoiser,
    blend: &'d A1111Blend,
}

impl Denoiser for BlendAfter<'_> {
    fn denoise(&mut self, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError> {
        Ok(self.blend.apply(&self.inner.denoise(x, sigma)?))
    }

    fn last_uncond(&self) -> Option<&[f32]> {
        self.inner.last_uncond()
    }
}

/// A timestep sampler's model under A1111's blend (`mask_before_denoising`): the latents going
/// in blended with the clean init latents before every call.
struct BlendBefore<'d> {
    inner: &'d mut dyn EpsModel,
    blend: &'d A1111Blend,
}

impl EpsModel for BlendBefore<'_> {
    fn eps(&mut self, x: &[f32], t: f64, scale: f64) -> Result<Vec<f32>, EngineError> {
        self.inner.eps(&self.blend.apply(x), t, scale)
    }

    fn last_uncond(&self) -> Option<&[f32]> {
        self.inner.last_uncond()
    }
}

/// ComfyUI's `prepare_mask` of a mask picture (values / 255) for latents of `shape`: torch's
/// bilinear resize to the latent size, repeated over the channels and the batch.
fn latent_mask(mask: &image::GrayImage, shape: [usize; 4]) -> Vec<f32> {
    let [batch, channels, h, w] = shape;
    let values: Vec<f32> = mask.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
    let (mw, mh) = (mask.width() as usize, mask.height() as usize);
    let plane = crate::engine::imageops::resize_latents_bilinear(&values, [1, 1, mh, mw], h, w);
    plane.iter().copied().cycle().take(h * w * channels).collect::<Vec<f32>>().repeat(batch)
}

/// ComfyUI's `KSampler.sample` with a `KSamplerAdvanced` window: the schedule cut after
/// `end_at_step` (its last sigma set to 0 unless the leftover noise is kept), then started at
/// `start_at_step`.
fn comfyui_window(mut sigmas: Vec<f32>, range: &SamplingRange) -> Result<Vec<f32>, EngineError> {
    let end = range.end_at_step as usize;
    if end < sigmas.len().saturating_sub(1) {
        sigmas.truncate(end + 1);
        if !range.return_with_leftover_noise {
            *sigmas.last_mut().expect("end + 1 sigmas") = 0.0;
        }
    }
    let start = range.start_at_step as usize;
    if start >= sigmas.len().saturating_sub(1) {
        return Err(EngineError::InvalidRequest(format!(
            "sampling_range.start_at_step {start} leaves no step of the {}-step schedule to run",
            sigmas.len().saturating_sub(1)
        )));
    }
    Ok(sigmas.split_off(start))
}

/// The rest of a compat run, once its walk is planned: conditioning, the start latents, the
/// sampler, the decode.
#[allow(clippy::too_many_arguments)]
fn run_walk(
    model: &mut SdModel,
    settings: &GenerationSettings,
    schedule: &DiscreteSchedule,
    walk: Walk,
    start: Start<'_>,
    started: Instant,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(&StepProgress<'_>),
) -> Result<Output, EngineError> {
    let Start { init, mask, a1111, latent: handed_on, decode, calls, first_pass_steps } = start;
    let compat = settings.noise.compat;
    let flavor = flavor(compat).expect("called for the a1111 and comfyui modes");
    let tiling = settings.vae_tiling.for_compat(compat);
    let steps = settings.steps as usize;
    let shape = [settings.batch_size as usize, LATENT_CHANNELS, settings.height as usize / 8, settings.width as usize / 8];

    // A1111 counts prompt-editing steps over denoiser calls: twice the steps for the samplers its
    // table marks second order.
    let second_order = matches!(&walk, Walk::Sigmas { sampler, .. } if sampler.second_order());
    let evaluation_steps = settings.steps * if second_order { 2 } else { 1 };
    let encode_started = Instant::now();
    let (prompt_steps, hires_steps) = match first_pass_steps {
        Some(first) => (first, Some(evaluation_steps)),
        None => (evaluation_steps, None),
    };
    let text = encode_prompt(model, settings, needs_guidance(settings), prompt_steps, hires_steps, cancel)?;
    let mut timings = Timings { text_encoding: encode_started.elapsed(), ..Timings::default() };

    let mut rng = Randomness::new(settings, shape);
    let mut noise = rng.start_noise(shape.iter().product());
    // KSamplerAdvanced with add_noise disabled starts from the latents alone (zero noise).
    if settings.sampling_range.is_some_and(|r| !r.add_noise) {
        noise.iter_mut().for_each(|n| *n = 0.0);
    }
    let start_scale = match (&walk, flavor) {
        // A1111's timestep samplers start from the noise itself (image-to-image below).
        (Walk::Timesteps { .. }, _) => 1.0,
        (Walk::Sigmas { sigmas, .. }, Flavor::A1111) => sigmas[0],
        // ComfyUI's noise scaling at full denoise: σ₀ at or above the model's σ_max counts as
        // pure noise, scaled by √(1 + σ₀²).
        (Walk::Sigmas { sigmas, .. }, Flavor::ComfyUi) => {
            let sigma0 = sigmas[0];
            let sigma_max = f64::from(schedule.sigma_max());
            let full =
                (sigma_max - f64::from(sigma0)).abs() <= 1e-5 * sigma_max.max(f64::from(sigma0).abs()) || f64::from(sigma0) > sigma_max;
            if full {
                (1.0 + sigma0 * sigma0).sqrt()
            } else {
                sigma0
            }
        }
    };
    let mut x: Vec<f32> = noise.iter().map(|n| n * start_scale).collect();
    // ComfyUI's VAEEncodeForInpaint: the picture grey under the mask, the mask grown.
    let grey = match (settings.masked_content, init, mask) {
        (MaskedContent::Grey, Some(init), Some(mask)) => Some(grey_fill(init, mask, settings.mask_grow)),
        _ => None,
    };
    let mask = grey.as_ref().map(|g| &g.noise_mask).or(mask);
    let init_latent: Option<Vec<f32>> = if let Some(init) = init {
        // The encoder's latents (the posterior's mean), one image repeated over the batch, under
        // the scaled noise (`noise_scaling`: noise · σ + latent); A1111's timestep samplers mix
        // them as `latent · √ᾱ + noise · √(1 − ᾱ)`.
        let init = centre_crop_to_eight(init);
        let (w, h) = (init.width() as usize, init.height() as usize);
        let encode_started = Instant::now();
        let chw = match &grey {
            Some(filled) => std::borrow::Cow::Borrowed(&filled.chw),
            None => std::borrow::Cow::Owned(pixels_to_chw(init.as_raw(), w, h)),
        };
        let latent = encode_pixels_mode(model, &chw, w, h, tiling, cancel)?;
        timings.vae_encode += encode_started.elapsed();
        Some(latent.iter().copied().cycle().take(x.len()).collect())
    } else {
        handed_on
    };
    // A1111's masked contents in the latents: noise (each image's seed's first draw, as
    // `create_random_tensors`) or nothing under the mask, put in with the blend that keeps the
    // init latents outside it; the run blends with the latents so filled.
    let (init_latent, blend) = match (a1111, init_latent) {
        (Some(prepared), Some(latent)) => {
            let keep = A1111Blend { nmask: prepared.latent_mask.clone(), init_latent: latent };
            let under_mask = match settings.masked_content {
                MaskedContent::LatentNoise => {
                    let seeds = crate::engine::noise::a1111::A1111Seeds::from_settings(settings);
                    let numel = keep.init_latent.len() / shape[0];
                    Some(crate::engine::noise::a1111::first_draws(seeds.source, &seeds.image_seeds(shape[0]), numel))
                }
                MaskedContent::LatentNothing => Some(vec![0.0; keep.init_latent.len()]),
                _ => None,
            };
            let filled = under_mask.map_or_else(|| keep.init_latent.clone(), |under| keep.apply(&under));
            (Some(filled.clone()), Some(A1111Blend { init_latent: filled, ..keep }))
        }
        (_, latent) => (latent, None),
    };
    // Image-to-image: from the start latents (an encoded picture, or a first pass's) under the
    // noise.
    let from_latents = init_latent.is_some();
    if let Some(latent) = &init_latent {
        match &walk {
            Walk::Timesteps { alpha: Some(alpha), .. } => x = timesteps::noised(latent, &noise, *alpha),
            _ => x.iter_mut().zip(latent).for_each(|(x, l)| *x += l),
        }
    }
    // An inpainting UNet's extra input: the tool's mask and masked-picture latents.
    let conditioning = if model.unet_in_channels()? == LATENT_CHANNELS {
        Vec::new()
    } else {
        let encode_started = Instant::now();
        let conditioning = match flavor {
            Flavor::A1111 => concat_conditioning::a1111(model, a1111.map(|p| (&p.picture, p.mask.as_slice())), shape, tiling, cancel)?,
            Flavor::ComfyUi => {
                let plane = mask.map(|m| latent_mask(m, [1, 1, shape[2], shape[3]]));
                concat_conditioning::comfyui(plane.as_deref().zip(init_latent.as_deref()), shape)
            }
        };
        timings.vae_encode += encode_started.elapsed();
        conditioning
    };
    let model_calls = walk.model_calls();
    // ComfyUI's latent noise mask needs the init latents and the unscaled start noise (its
    // `ddim`, Euler with random inpainting noise, a draw of its own from seed + 1).
    let inpaint = match (mask, init_latent) {
        (Some(mask), Some(latent)) => {
            let fill = if settings.sampler == crate::api::Sampler::Ddim {
                crate::engine::torch_rng::TorchGenerator::new(settings.seed.wrapping_add(1)).randn(noise.len())
            } else {
                noise.clone()
            };
            Some((latent_mask(mask, shape), latent, fill))
        }
        _ => None,
    };

    let run =
        DenoiseRun { text: &text, cfg_scale: settings.cfg_scale, latent_shape: shape, calls: 0..model_calls, conditioning: &conditioning };
    let (done, total) = calls.unwrap_or((0, model_calls));
    let mut counter = Progress { sink: progress, started, done, total };
    let latents = {
        let unet = GuidedUnet::new(model, &run)?;
        let mut denoiser =
            GuidedDenoiser { unet, schedule, calls: 0, cancel, progress: &mut counter, timings: &mut timings, shape, last_uncond: None };
        match &walk {
            Walk::Timesteps { sampler, timesteps, .. } => {
                let mut on_step = |_: timesteps::Step<'_>| {};
                let mut blended;
                let model: &mut dyn EpsModel = match &blend {
                    Some(blend) => {
                        blended = BlendBefore { inner: &mut denoiser, blend };
                        &mut blended
                    }
                    None => &mut denoiser,
                };
                let mut run = timesteps::Run { model, alphas_cumprod: &schedule.alphas_cumprod, on_step: &mut on_step };
                sampler.sample(x, timesteps, from_latents, &mut run)?
            }
            Walk::Sigmas { sampler, sigmas, tree } => {
                let mut on_step = |_: Step<'_>| {};
                let mut masked;
                let mut blended;
                let model: &mut dyn Denoiser = match (inpaint, &blend) {
                    (Some((mask, latent, noise)), _) => {
                        masked = LatentNoiseMask { inner: &mut denoiser, mask, latent, noise };
                        &mut masked
                    }
                    (None, Some(blend)) => {
                        blended = BlendAfter { inner: &mut denoiser, blend };
                        &mut blended
                    }
                    (None, None) => &mut denoiser,
                };
                let mut cx = Context {
                    model,
                    noise: rng.steps(),
                    on_step: &mut on_step,
                    flavor,
                    brownian: Some(BrownianSeeds { range: *tree, ..brownian_seeds(settings) }),
                    schedule,
                };
                // A1111's text-to-image hands DPM-Solver the model's whole σ range, whatever the
                // schedule (the schedule's first sigma only scales the start noise).
                if flavor == Flavor::A1111 && sampler.takes_sigma_range() && !from_latents {
                    sampler.sample_over_range(x, (schedule.sigma_min(), schedule.sigma_max(), steps), &mut cx)?
                } else {
                    sampler.sample(x, sigmas, &mut cx)?
                }
            }
        }
    };

    // A1111 blends the samples once more after the sampler (`StableDiffusionProcessingImg2Img.sample`).
    let latents = match &blend {
        Some(blend) => blend.apply(&latents),
        None => latents,
    };
    let decode_started = Instant::now();
    let mut decoded = if decode { decode_latents_as(model, &latents, shape, tiling, cancel, Quantize::Truncate)? } else { Vec::new() };
    // A1111's `apply_overlay`: the result pasted back ("only masked") and the kept part on top.
    if let Some(prepared) = a1111 {
        for image in &mut decoded {
            (image.width, image.height, image.rgb) = prepared.finish(&image.rgb);
        }
    }
    timings.vae_decode += decode_started.elapsed();
    timings.total = started.elapsed();
    let (text_embeddings, text_embeddings_shape) = text.first_call_embeddings();
    Ok(Output {
        images: decoded,
        latents,
        latent_shape: shape,
        // (zeros where KSamplerAdvanced adds none, as ComfyUI's noise is then)
        initial_noise: rng.take_initial().map(|mut n| {
            if settings.sampling_range.is_some_and(|r| !r.add_noise) {
                n.iter_mut().for_each(|v| *v = 0.0);
            }
            n
        }),
        noise_shape: shape,
        text_embeddings,
        text_embeddings_shape,
        prompt_notes: text.prompt.notes.clone(),
        embeddings_used: text.prompt.embeddings_used.clone(),
        network_parameters: model.network_parameters(),
        inpainting_conditioning: !conditioning.is_empty(),
        mask_unused: false,
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::a1111_img2img_steps;

    #[test]
    fn a1111_img2img_steps_follow_setup_img2img_steps() {
        // Plain image-to-image: int(min(strength, 0.999) · steps) of the schedule of steps.
        assert_eq!(a1111_img2img_steps(20, 0.5, false), (20, 10));
        assert_eq!(a1111_img2img_steps(20, 1.0, false), (20, 19));
        // The hires fix's pass names its steps: all of them, out of int(steps / strength).
        assert_eq!(a1111_img2img_steps(6, 0.55, true), (10, 5));
        assert_eq!(a1111_img2img_steps(4, 0.7, true), (5, 3));
        assert_eq!(a1111_img2img_steps(10, 1.0, true), (10, 9));
    }
}
