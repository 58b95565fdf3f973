//! Owns Heun, diffusers `HeunDiscreteScheduler`
//! (`diffusers/schedulers/scheduling_heun_discrete.py`): each step is an Euler predictor
//! followed by a trapezoidal corrector, so the UNet is called 2N − 1 times on the interleaved
//! σ list `[σ0, σ1, σ1, σ2, σ2, …, σN−1, σN−1, 0]` (the last step is Euler only).

use super::config::{clip_sample_range, ClassConfig, ClassDefaults, CommonConfig, KarrasBounds, SchedulerConfig, Unimplemented};
use super::euler::{scale_by_sigma, SigmaSchedule};
use super::sigmas::add_noise_sigma;
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `HeunDiscreteScheduler`'s constructor arguments. Unlike the other classes it defaults to
/// SD's betas (`beta_start=0.00085`, `beta_end=0.012`); beyond the shared keys it reads
/// `clip_sample` (default false) with `clip_sample_range`, and the Karras end points.
pub(crate) struct HeunConfig {
    common: CommonConfig,
    /// Clamp the predicted x0 to ±this.
    clip_sample_range: Option<f32>,
    karras_bounds: KarrasBounds,
}

impl ClassConfig for HeunConfig {
    const SAMPLER: Sampler = Sampler::Heun;
    const DEFAULTS: ClassDefaults = ClassDefaults { beta_start: 0.00085, beta_end: 0.012, ..ClassDefaults::USUAL };
    const UNIMPLEMENTED: &'static [Unimplemented] = &[Unimplemented::ExponentialSigmas, Unimplemented::BetaSigmas];

    fn from_config(common: CommonConfig, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        Ok(Self { common, clip_sample_range: clip_sample_range(c, false), karras_bounds: KarrasBounds::from_config(c) })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn build(&self, steps: usize, karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        let base = SigmaSchedule::new(&self.common, karras.then_some(self.karras_bounds), steps)?;
        Ok(Box::new(Heun::new(base, self.clip_sample_range)))
    }
}

pub(crate) struct Heun {
    /// Interleaved σ, 2N entries.
    sigmas: Vec<f32>,
    /// Interleaved timesteps, 2N − 1 entries.
    timesteps: Vec<f64>,
    init_noise_sigma: f32,
    clip_sample_range: Option<f32>,
    /// Between the two calls of a step: the first derivative, dt and the sample it started from.
    pending: Option<FirstOrder>,
}

struct FirstOrder {
    derivative: Vec<f32>,
    dt: f32,
    sample: Vec<f32>,
}

impl Heun {
    fn new(base: SigmaSchedule, clip_sample_range: Option<f32>) -> Self {
        let n = base.sigmas.len();
        let mut sigmas = vec![base.sigmas[0]];
        for s in &base.sigmas[1..n - 1] {
            sigmas.extend([*s, *s]);
        }
        sigmas.push(base.sigmas[n - 1]);
        let mut timesteps = vec![f64::from(base.timesteps[0])];
        for t in &base.timesteps[1..] {
            timesteps.extend([f64::from(*t), f64::from(*t)]);
        }
        Self { sigmas, timesteps, init_noise_sigma: base.init_noise_sigma, clip_sample_range, pending: None }
    }

    fn predict_x0(&self, x: f32, eps: f32, sigma: f32) -> f32 {
        let x0 = x - sigma * eps;
        match self.clip_sample_range {
            Some(range) => x0.clamp(-range, range),
            None => x0,
        }
    }
}

impl Scheduler for Heun {
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }

    fn order(&self) -> usize {
        2
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        f64::from(self.init_noise_sigma)
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        scale_by_sigma(sample, self.sigmas[index]);
    }

    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        match self.pending.take() {
            None => {
                // First order: d = (x − x0)/σ̂, dt = σ_next − σ̂, x' = x + d·dt.
                let sigma = self.sigmas[index];
                let sigma_next = self.sigmas[index + 1];
                let sigma_hat = sigma * (0.0 + 1.0);
                let derivative: Vec<f32> =
                    sample.iter().zip(model_output).map(|(x, eps)| (x - self.predict_x0(*x, *eps, sigma_hat)) / sigma_hat).collect();
                let dt = sigma_next - sigma_hat;
                let out = sample.iter().zip(&derivative).map(|(x, d)| x + d * dt).collect();
                self.pending = Some(FirstOrder { derivative, dt, sample: sample.to_vec() });
                out
            }
            Some(first) => {
                // Second order at σ_next: average the two derivatives, restart from the saved x.
                let sigma_next = self.sigmas[index];
                sample
                    .iter()
                    .zip(model_output)
                    .zip(first.derivative.iter().zip(&first.sample))
                    .map(|((x, eps), (d1, x_start))| {
                        let d2 = (x - self.predict_x0(*x, *eps, sigma_next)) / sigma_next;
                        let d = (d1 + d2) / 2.0;
                        x_start + d * first.dt
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::resolve;
    use super::super::sigmas::BetaSchedule;
    use super::*;

    #[test]
    fn absent_betas_default_to_sd_values_unlike_the_other_classes() {
        let heun: HeunConfig = resolve(&SchedulerConfig::default()).expect("heun");
        let sd_betas = BetaSchedule::Linear { start: 0.00085, end: 0.012 };
        assert_eq!(heun.common.betas, sd_betas);
        assert_eq!(heun.clip_sample_range, None);
    }
}
