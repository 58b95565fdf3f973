//! Owns k-diffusion's samplers as AUTOMATIC1111 and ComfyUI run them: a sampler is a loop that
//! calls a denoiser `D(x, σ)` (the UNet behind the tool's discrete-schedule wrapper and
//! classifier-free guidance) down a list of sigmas ([`schedules`]), adding noise from the
//! generation's [`NoiseSource`] where it is ancestral. Each tool carries its own copy of
//! k-diffusion and the copies differ in small ways (what the last step does, when noise is
//! added), so every sampler takes the [`Flavor`] it reproduces.
//!
//! Arithmetic is float32 in the order torch performs it on the tools' float32 tensors (sigmas
//! are float32 0-dim tensors there), so results agree with the tools to float32 rounding
//! (`tests/kdiffusion_parity.rs`). One file per sampler.

mod ddpm;
mod deis;
pub mod discrete;
mod dpm2;
mod dpm2_ancestral;
mod dpm_solver;
mod dpmpp_2m;
mod dpmpp_2m_cfg_pp;
mod dpmpp_2m_sde;
mod dpmpp_2s_ancestral;
mod dpmpp_2s_ancestral_cfg_pp;
mod dpmpp_3m_sde;
mod dpmpp_sde;
mod er_sde;
mod euler;
mod euler_ancestral;
mod euler_ancestral_cfg_pp;
mod gradient_estimation;
mod heun;
mod heunpp2;
mod ipndm;
mod ipndm_v;
mod lcm;
mod lms;
mod res_multistep;
mod restart;
mod sa_solver;
pub mod schedules;
mod seeds;
pub(crate) mod uni_pc;

use super::noise::brownian::{BrownianNoise, SeededRandn};
use super::noise::NoiseSource;
use super::EngineError;
pub use crate::api::{Sampler, Schedule};

/// Whose copy of k-diffusion a sampler follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// crowsonkb's k-diffusion (0.1.1, the commit A1111 pins), with A1111's `to_d`.
    A1111,
    /// ComfyUI's `comfy/k_diffusion/sampling.py`.
    ComfyUi,
}

/// The model as a sampler sees it: `denoise(x, σ)` for the whole batch at one sigma.
pub trait Denoiser {
    fn denoise(&mut self, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError>;
    /// The unconditional branch's denoised latents of the last call (what ComfyUI's post-CFG
    /// hook hands the CFG++ samplers); `None` without guidance, where it is the guided one.
    fn last_uncond(&self) -> Option<&[f32]> {
        None
    }
}

/// What a sampler reports after each of its steps (k-diffusion's `callback`).
pub struct Step<'a> {
    pub i: usize,
    pub sigma: f32,
    /// The latents the step started from.
    pub x: &'a [f32],
    pub denoised: &'a [f32],
}

/// What a sampler runs with.
pub struct Context<'a> {
    pub model: &'a mut dyn Denoiser,
    pub noise: &'a mut dyn NoiseSource,
    pub on_step: &'a mut dyn FnMut(Step<'_>),
    pub flavor: Flavor,
    /// How the SDE samplers' Brownian trees are seeded (`None`: they cannot run).
    pub brownian: Option<BrownianSeeds>,
    /// The model's discrete schedule as the tool holds it (SA-Solver places its stochastic
    /// interval on it).
    pub schedule: &'a discrete::DiscreteSchedule,
}

/// The entropy of each Brownian tree (A1111: one per image, its seed; ComfyUI: one for the
/// batch, the seed) and how a tree node draws its noise.
#[derive(Clone)]
pub struct BrownianSeeds {
    pub entropies: Vec<u128>,
    pub randn: SeededRandn,
    /// The trees' `[σ_min, σ_max]` when not the walked sigmas' (A1111's image-to-image builds
    /// them over the whole schedule, `create_noise_sampler(x, sigmas, p)`, and walks its tail).
    pub range: Option<(f32, f32)>,
}

/// `[σ_min, σ_max]` of a schedule: its smallest positive sigma and its largest.
pub fn sigma_range(sigmas: &[f32]) -> (f32, f32) {
    let lo = sigmas.iter().copied().filter(|s| *s > 0.0).fold(f32::INFINITY, f32::min);
    let hi = sigmas.iter().copied().fold(0.0, f32::max);
    (lo, hi)
}

impl Context<'_> {
    /// The step's first denoiser call at `sigma`, reported to `on_step` (k-diffusion's callback).
    fn first_call(&mut self, i: usize, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError> {
        let denoised = self.model.denoise(x, sigma)?;
        (self.on_step)(Step { i, sigma, x, denoised: &denoised });
        Ok(denoised)
    }

    /// The Brownian-tree noise of an SDE sampler over `sigmas` (on `[σ_min > 0, σ_max]`).
    fn brownian(&self, sigmas: &[f32], numel: usize) -> Result<BrownianNoise, EngineError> {
        let seeds = self.brownian.as_ref().ok_or_else(|| EngineError::InvalidRequest("this sampler needs Brownian-tree seeds".into()))?;
        let (lo, hi) = seeds.range.unwrap_or_else(|| sigma_range(sigmas));
        Ok(BrownianNoise::new(lo, hi, numel, &seeds.entropies, seeds.randn))
    }
}

/// The k-diffusion samplers Easel runs (their names live with [`Sampler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KSampler {
    Euler,
    EulerAncestral,
    Heun,
    Dpm2,
    Dpm2Ancestral,
    Lms,
    Dpmpp2m,
    Dpmpp2sAncestral,
    Heunpp2,
    Ipndm,
    Ddpm,
    Lcm,
    DpmppSde,
    Dpmpp2mSde,
    Dpmpp2mSdeHeun,
    Dpmpp3mSde,
    EulerCfgPp,
    EulerAncestralCfgPp,
    Dpmpp2mCfgPp,
    Dpmpp2sAncestralCfgPp,
    IpndmV,
    GradientEstimation,
    GradientEstimationCfgPp,
    ResMultistep,
    ResMultistepCfgPp,
    ResMultistepAncestral,
    ResMultistepAncestralCfgPp,
    DpmFast,
    DpmAdaptive,
    Restart,
    UniPc,
    UniPcBh2,
    Deis,
    ErSde,
    Seeds2,
    Seeds3,
    SaSolver,
    SaSolverPece,
}

impl KSampler {
    /// The k-diffusion sampler a request's sampler names, if k-diffusion has it.
    pub fn for_sampler(sampler: Sampler) -> Option<KSampler> {
        Some(match sampler {
            Sampler::Euler => KSampler::Euler,
            Sampler::EulerA => KSampler::EulerAncestral,
            Sampler::Heun => KSampler::Heun,
            Sampler::Dpm2 => KSampler::Dpm2,
            Sampler::Dpm2A => KSampler::Dpm2Ancestral,
            Sampler::Lms => KSampler::Lms,
            Sampler::Dpmpp2m => KSampler::Dpmpp2m,
            Sampler::Dpmpp2sA => KSampler::Dpmpp2sAncestral,
            Sampler::Heunpp2 => KSampler::Heunpp2,
            Sampler::Ipndm => KSampler::Ipndm,
            Sampler::Ddpm => KSampler::Ddpm,
            Sampler::Lcm => KSampler::Lcm,
            Sampler::DpmppSde => KSampler::DpmppSde,
            Sampler::Dpmpp2mSde => KSampler::Dpmpp2mSde,
            Sampler::Dpmpp2mSdeHeun => KSampler::Dpmpp2mSdeHeun,
            Sampler::Dpmpp3mSde => KSampler::Dpmpp3mSde,
            Sampler::EulerCfgPp => KSampler::EulerCfgPp,
            Sampler::EulerACfgPp => KSampler::EulerAncestralCfgPp,
            Sampler::Dpmpp2mCfgPp => KSampler::Dpmpp2mCfgPp,
            Sampler::Dpmpp2sACfgPp => KSampler::Dpmpp2sAncestralCfgPp,
            Sampler::IpndmV => KSampler::IpndmV,
            Sampler::GradientEstimation => KSampler::GradientEstimation,
            Sampler::GradientEstimationCfgPp => KSampler::GradientEstimationCfgPp,
            Sampler::ResMultistep => KSampler::ResMultistep,
            Sampler::ResMultistepCfgPp => KSampler::ResMultistepCfgPp,
            Sampler::ResMultistepA => KSampler::ResMultistepAncestral,
            Sampler::ResMultistepACfgPp => KSampler::ResMultistepAncestralCfgPp,
            Sampler::DpmFast => KSampler::DpmFast,
            Sampler::DpmAdaptive => KSampler::DpmAdaptive,
            Sampler::Restart => KSampler::Restart,
            Sampler::UnipcBh1 => KSampler::UniPc,
            Sampler::Deis => KSampler::Deis,
            Sampler::ErSde => KSampler::ErSde,
            Sampler::Seeds2 => KSampler::Seeds2,
            Sampler::Seeds3 => KSampler::Seeds3,
            Sampler::SaSolver => KSampler::SaSolver,
            Sampler::SaSolverPece => KSampler::SaSolverPece,
            Sampler::Unipc => KSampler::UniPcBh2,
            // ComfyUI's `ddim` runs its Euler sampler (text-to-image: the same).
            Sampler::Ddim => KSampler::Euler,
            // A1111's timestep samplers (`crate::engine::timesteps`).
            Sampler::Pndm | Sampler::DdimCfgPp => return None,
        })
    }

    /// Whether `flavor`'s tool computes one sigma more for this sampler and drops the
    /// next-to-last (both for DPM2 and DPM2 a; A1111 also for DPM++ 3M SDE, ComfyUI for UniPC).
    pub fn discards_penultimate_sigma(self, flavor: Flavor) -> bool {
        matches!(self, KSampler::Dpm2 | KSampler::Dpm2Ancestral)
            || (flavor == Flavor::A1111 && self == KSampler::Dpmpp3mSde)
            || (flavor == Flavor::ComfyUi && matches!(self, KSampler::UniPc | KSampler::UniPcBh2))
    }

    /// Whether the sampler reads only the ends and the count of its sigma list (DPM-Solver);
    /// A1111 then gives it the model's whole σ range in text-to-image.
    pub fn takes_sigma_range(self) -> bool {
        matches!(self, KSampler::DpmFast | KSampler::DpmAdaptive)
    }

    /// The schedule A1111's "Automatic" gives this sampler (its sampler table's `scheduler`
    /// option, else the model's own timesteps).
    pub fn a1111_automatic(self) -> Schedule {
        match self {
            KSampler::Euler
            | KSampler::EulerAncestral
            | KSampler::Heun
            | KSampler::Lms
            | KSampler::Heunpp2
            | KSampler::Ipndm
            | KSampler::Ddpm
            | KSampler::Lcm
            | KSampler::EulerCfgPp
            | KSampler::EulerAncestralCfgPp
            | KSampler::Dpmpp2mCfgPp
            | KSampler::Dpmpp2sAncestralCfgPp
            | KSampler::IpndmV
            | KSampler::GradientEstimation
            | KSampler::GradientEstimationCfgPp
            | KSampler::ResMultistep
            | KSampler::ResMultistepCfgPp
            | KSampler::ResMultistepAncestral
            | KSampler::ResMultistepAncestralCfgPp
            | KSampler::DpmFast
            | KSampler::DpmAdaptive
            | KSampler::UniPc
            | KSampler::UniPcBh2
            | KSampler::Deis
            | KSampler::ErSde
            | KSampler::Seeds2
            | KSampler::Seeds3
            | KSampler::SaSolver
            | KSampler::SaSolverPece => Schedule::Uniform,
            KSampler::Dpm2
            | KSampler::Dpm2Ancestral
            | KSampler::Dpmpp2m
            | KSampler::Dpmpp2sAncestral
            | KSampler::DpmppSde
            | KSampler::Restart => Schedule::Karras,
            KSampler::Dpmpp2mSde | KSampler::Dpmpp2mSdeHeun | KSampler::Dpmpp3mSde => Schedule::Exponential,
        }
    }

    /// Runs the sampler from `x` down `sigmas` (the last is normally 0).
    pub fn sample(self, x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
        match self {
            KSampler::Euler => euler::sample(x, sigmas, cx),
            KSampler::EulerAncestral => euler_ancestral::sample(x, sigmas, cx),
            KSampler::Heun => heun::sample(x, sigmas, cx),
            KSampler::Dpm2 => dpm2::sample(x, sigmas, cx),
            KSampler::Dpm2Ancestral => dpm2_ancestral::sample(x, sigmas, cx),
            KSampler::Lms => lms::sample(x, sigmas, cx),
            KSampler::Dpmpp2m => dpmpp_2m::sample(x, sigmas, cx),
            KSampler::Dpmpp2sAncestral => dpmpp_2s_ancestral::sample(x, sigmas, cx),
            KSampler::Heunpp2 => heunpp2::sample(x, sigmas, cx),
            KSampler::Ipndm => ipndm::sample(x, sigmas, cx),
            KSampler::Ddpm => ddpm::sample(x, sigmas, cx),
            KSampler::Lcm => lcm::sample(x, sigmas, cx),
            KSampler::DpmppSde => dpmpp_sde::sample(x, sigmas, cx),
            KSampler::Dpmpp2mSde => dpmpp_2m_sde::sample(x, sigmas, cx, dpmpp_2m_sde::Solver::Midpoint),
            KSampler::Dpmpp2mSdeHeun => dpmpp_2m_sde::sample(x, sigmas, cx, dpmpp_2m_sde::Solver::Heun),
            KSampler::Dpmpp3mSde => dpmpp_3m_sde::sample(x, sigmas, cx),
            KSampler::EulerCfgPp => euler_ancestral_cfg_pp::sample(x, sigmas, cx, false),
            KSampler::EulerAncestralCfgPp => euler_ancestral_cfg_pp::sample(x, sigmas, cx, true),
            KSampler::Dpmpp2mCfgPp => dpmpp_2m_cfg_pp::sample(x, sigmas, cx),
            KSampler::Dpmpp2sAncestralCfgPp => dpmpp_2s_ancestral_cfg_pp::sample(x, sigmas, cx),
            KSampler::IpndmV => ipndm_v::sample(x, sigmas, cx),
            KSampler::GradientEstimation => gradient_estimation::sample(x, sigmas, cx, false),
            KSampler::GradientEstimationCfgPp => gradient_estimation::sample(x, sigmas, cx, true),
            KSampler::ResMultistep => res_multistep::sample(x, sigmas, cx, false, false),
            KSampler::ResMultistepCfgPp => res_multistep::sample(x, sigmas, cx, false, true),
            KSampler::ResMultistepAncestral => res_multistep::sample(x, sigmas, cx, true, false),
            KSampler::ResMultistepAncestralCfgPp => res_multistep::sample(x, sigmas, cx, true, true),
            // A1111 passes its `eta_ancestral` (1); ComfyUI leaves k-diffusion's 0.
            KSampler::DpmFast | KSampler::DpmAdaptive => match dpm_solver::range(sigmas) {
                Some(range) => self.sample_over_range(x, range, cx),
                None => Ok(x),
            },
            KSampler::Restart => restart::sample(x, sigmas, cx),
            KSampler::UniPc => uni_pc::sample(x, sigmas, cx, uni_pc::Variant::Bh1),
            KSampler::UniPcBh2 => uni_pc::sample(x, sigmas, cx, uni_pc::Variant::Bh2),
            KSampler::Deis => deis::sample(x, sigmas, cx),
            KSampler::ErSde => er_sde::sample(x, sigmas, cx),
            KSampler::Seeds2 => seeds::sample(x, sigmas, cx, 2),
            KSampler::Seeds3 => seeds::sample(x, sigmas, cx, 3),
            KSampler::SaSolver | KSampler::SaSolverPece => {
                // ComfyUI's `get_tau_interval_func(percent_to_sigma(0.2), percent_to_sigma(0.8))`.
                let interval = (cx.schedule.percent_to_sigma(0.2), cx.schedule.percent_to_sigma(0.8));
                sa_solver::sample(x, sigmas, cx, self == KSampler::SaSolverPece, interval)
            }
        }
    }

    /// Runs DPM-Solver (fast or adaptive) from σ_max down to σ_min, `range` = (σ_min, σ_max, n);
    /// the samplers that take a sigma list refuse.
    pub fn sample_over_range(self, x: Vec<f32>, range: (f32, f32, usize), cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
        let eta = self.dpm_solver_eta(cx.flavor);
        match self {
            KSampler::DpmFast => dpm_solver::sample_fast(x, range, cx, eta),
            KSampler::DpmAdaptive => dpm_solver::sample_adaptive(x, range, cx, eta),
            _ => Err(EngineError::InvalidRequest(format!("{self:?} takes a sigma list, not a range"))),
        }
    }

    /// The eta DPM-Solver runs with: A1111's `eta_ancestral` option (1), ComfyUI's k-diffusion
    /// default (0).
    fn dpm_solver_eta(self, flavor: Flavor) -> f32 {
        match flavor {
            Flavor::A1111 => 1.0,
            Flavor::ComfyUi => 0.0,
        }
    }

    /// Whether A1111's sampler table marks it `second_order` (prompt editing then counts twice the
    /// steps, as A1111's denoiser steps once per call).
    pub fn second_order(self) -> bool {
        matches!(
            self,
            KSampler::Heun | KSampler::Dpm2 | KSampler::Dpm2Ancestral | KSampler::Dpmpp2sAncestral | KSampler::DpmppSde | KSampler::Restart
        )
    }

    /// How many denoiser calls a run down `sigmas` makes (for progress).
    pub fn model_calls(self, sigmas: &[f32]) -> usize {
        let steps = sigmas.len().saturating_sub(1);
        let second = |i: usize| match self {
            KSampler::Heun | KSampler::Dpm2 | KSampler::DpmppSde => sigmas[i + 1] != 0.0,
            KSampler::Dpm2Ancestral | KSampler::Dpmpp2sAncestral | KSampler::Dpmpp2sAncestralCfgPp => {
                ancestral_step(sigmas[i], sigmas[i + 1]).0 != 0.0
            }
            _ => false,
        };
        match self {
            KSampler::DpmFast => return dpm_solver::range(sigmas).map_or(0, |(_, _, n)| n),
            // The error controller decides; k-diffusion's defaults take about three calls per
            // requested step on SD 1.x, which is what progress assumes.
            KSampler::DpmAdaptive => return 3 * steps,
            KSampler::Restart => {
                return restart::step_list(sigmas).iter().map(|&(_, to)| if to == 0.0 { 1 } else { 2 }).sum();
            }
            KSampler::Seeds2 | KSampler::Seeds3 => {
                let per_step = if self == KSampler::Seeds2 { 2 } else { 3 };
                return (0..steps).map(|i| if sigmas[i + 1] == 0.0 { 1 } else { per_step }).sum();
            }
            // PECE evaluates again after every correction (each step but the first).
            KSampler::SaSolverPece => return (2 * steps).saturating_sub(1),
            _ => {}
        }
        if self == KSampler::Heunpp2 {
            // Three calls a step, two on the next-to-last, one on the last.
            let end = sigmas[sigmas.len() - 1];
            return (0..steps)
                .map(|i| {
                    if sigmas[i + 1] == end {
                        1
                    } else if sigmas[i + 2] == end {
                        2
                    } else {
                        3
                    }
                })
                .sum();
        }
        steps + (0..steps).filter(|&i| second(i)).count()
    }
}

/// k-diffusion's `to_d`: `(x - denoised) / σ`.
fn to_d(x: &[f32], sigma: f32, denoised: &[f32]) -> Vec<f32> {
    x.iter().zip(denoised).map(|(x, d)| (x - d) / sigma).collect()
}

/// `x + d * dt`.
fn step_along(x: &[f32], d: &[f32], dt: f32) -> Vec<f32> {
    x.iter().zip(d).map(|(x, d)| x + d * dt).collect()
}

/// k-diffusion's `get_ancestral_step` at eta 1: how far to step down (σ_down) and how much noise
/// to add (σ_up), in float32.
fn ancestral_step(sigma_from: f32, sigma_to: f32) -> (f32, f32) {
    let up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) / (sigma_from * sigma_from)).sqrt();
    let up = if sigma_to < up { sigma_to } else { up };
    let down = (sigma_to * sigma_to - up * up).sqrt();
    (down, up)
}

/// torch's `lerp(start, end, 0.5)` (its second branch, taken at weight 0.5).
fn lerp_half(start: f32, end: f32) -> f32 {
    end - (end - start) * 0.5
}

/// `x + noise * σ_up` (`s_noise` is 1), the noise drawn for the whole batch.
fn add_noise(x: &mut [f32], noise: &mut dyn NoiseSource, up: f32) {
    let drawn = noise.draw(x.len());
    for (x, n) in x.iter_mut().zip(drawn) {
        *x += n * up;
    }
}
