//! Owns Euler, diffusers `EulerDiscreteScheduler`
//! (`diffusers/schedulers/scheduling_euler_discrete.py`), and the σ-space set-up shared by
//! the k-diffusion-style samplers (Euler, Euler a, Heun, LMS): float32 timesteps, σ
//! interpolated linearly from the training table (or Karras σ mapped back to fractional t),
//! a final σ of 0, `init_noise_sigma` and the `x / sqrt(σ² + 1)` input scaling.

use super::config::{ClassConfig, ClassDefaults, CommonConfig, KarrasBounds, SchedulerConfig, Unimplemented};
use super::sigmas::{add_noise_sigma, karras_sigmas, np_arange_f64, np_linspace, np_round, sigma_to_t, Spacing, TrainSchedule};
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `EulerDiscreteScheduler`'s constructor arguments. Beyond the shared keys it accepts
/// `interpolation_type`, of which only the default `"linear"` is implemented, and reads the
/// Karras end points from the file.
pub(crate) struct EulerConfig {
    common: CommonConfig,
    karras_bounds: KarrasBounds,
}

impl ClassConfig for EulerConfig {
    const SAMPLER: Sampler = Sampler::Euler;
    const DEFAULTS: ClassDefaults = ClassDefaults::USUAL;
    const UNIMPLEMENTED: &'static [Unimplemented] =
        &[Unimplemented::ZeroSnrRescaling, Unimplemented::ExponentialSigmas, Unimplemented::BetaSigmas, Unimplemented::FinalSigmasType];

    fn from_config(common: CommonConfig, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        if let Some(t) = c.interpolation_type.as_deref().filter(|t| *t != "linear") {
            return Err(SchedulerError::unsupported(
                Self::SAMPLER,
                "interpolation_type",
                format!("{t:?}"),
                "only \"linear\" is implemented",
            ));
        }
        Ok(Self { common, karras_bounds: KarrasBounds::from_config(c) })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn build(&self, steps: usize, karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        let schedule = SigmaSchedule::new(&self.common, karras.then_some(self.karras_bounds), steps)?;
        Ok(Box::new(Euler::new(schedule)))
    }
}

/// The σ-space schedule of Euler, Euler a, Heun and LMS for N steps.
pub(super) struct SigmaSchedule {
    /// N float32 timesteps (what the UNet sees).
    pub timesteps: Vec<f32>,
    /// N + 1 float32 σ, the last one 0.
    pub sigmas: Vec<f32>,
    /// `init_noise_sigma`: σ_max, or sqrt(σ_max² + 1) with `leading` spacing.
    pub init_noise_sigma: f32,
}

impl SigmaSchedule {
    /// `set_timesteps` of the four σ-space classes: spacing as float32, σ by `np.interp` in
    /// float64; with Karras (`karras` is `Some`), σ from `_convert_to_karras` over the *spaced*
    /// σ range (or the bounds the file pins) and t from `_sigma_to_t`.
    pub(super) fn new(config: &CommonConfig, karras: Option<KarrasBounds>, steps: usize) -> Result<Self, SchedulerError> {
        let train = TrainSchedule::new(&config.betas, config.num_train_timesteps)?;
        let t_train = config.num_train_timesteps;
        let mut timesteps: Vec<f32> = match config.spacing {
            Spacing::Linspace => np_linspace(0.0, (t_train - 1) as f64, steps).into_iter().rev().map(|t| t as f32).collect(),
            Spacing::Leading => {
                let ratio = t_train / steps;
                (0..steps).rev().map(|i| (i * ratio) as f32 + config.steps_offset as f32).collect()
            }
            Spacing::Trailing => {
                np_arange_f64(t_train as f64, 0.0, -(t_train as f64 / steps as f64)).into_iter().map(|t| np_round(t) as f32 - 1.0).collect()
            }
        };
        let mut sigmas: Vec<f64> = timesteps.iter().map(|t| train.interp_sigma(f64::from(*t))).collect();
        if let Some(bounds) = karras {
            let sigma_min = bounds.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let sigma_max = bounds.sigma_max.unwrap_or(sigmas[0]);
            sigmas = karras_sigmas(sigma_min, sigma_max, steps);
            let log_sigmas = train.log_sigmas();
            timesteps = sigmas.iter().map(|s| sigma_to_t(*s, &log_sigmas) as f32).collect();
        }
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(0.0);
        let max = TrainSchedule::max_of(&sigmas);
        let init_noise_sigma = match config.spacing {
            Spacing::Linspace | Spacing::Trailing => max,
            Spacing::Leading => (max * max + 1.0).sqrt(),
        };
        Ok(Self { timesteps, sigmas, init_noise_sigma })
    }
}

/// `sample / ((σ² + 1) ** 0.5)` in float32.
pub(super) fn scale_by_sigma(sample: &mut [f32], sigma: f32) {
    let scale = (sigma * sigma + 1.0).sqrt();
    for x in sample {
        *x /= scale;
    }
}

pub(crate) struct Euler {
    schedule: SigmaSchedule,
    timesteps: Vec<f64>,
}

impl Euler {
    fn new(schedule: SigmaSchedule) -> Self {
        let timesteps = schedule.timesteps.iter().map(|t| f64::from(*t)).collect();
        Self { schedule, timesteps }
    }
}

impl Scheduler for Euler {
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.schedule.sigmas[index])
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        f64::from(self.schedule.init_noise_sigma)
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        scale_by_sigma(sample, self.schedule.sigmas[index]);
    }

    /// `step` with `s_churn = 0` (γ = 0, so σ̂ = σ and no noise is drawn):
    /// x0 = x − σ̂ε, d = (x − x0)/σ̂, x' = x + d·(σ_next − σ̂).
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        let sigma = self.schedule.sigmas[index];
        let sigma_hat = sigma * (0.0 + 1.0);
        let dt = self.schedule.sigmas[index + 1] - sigma_hat;
        sample
            .iter()
            .zip(model_output)
            .map(|(x, eps)| {
                let x0 = x - sigma_hat * eps;
                let derivative = (x - x0) / sigma_hat;
                x + derivative * dt
            })
            .collect()
    }
}
