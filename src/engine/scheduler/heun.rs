//! Owns Heun, diffusers `HeunDiscreteScheduler`
//! (`diffusers/schedulers/scheduling_heun_discrete.py`): each step is an Euler predictor
//! followed by a trapezoidal corrector, so the UNet is called 2N − 1 times on the interleaved
//! σ list `[σ0, σ1, σ1, σ2, σ2, …, σN−1, σN−1, 0]` (the last step is Euler only).

use super::euler::{scale_by_sigma, SigmaSchedule};
use super::{ResolvedConfig, Scheduler, SchedulerError};
use crate::engine::torch_rng::TorchGenerator;

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
    pub(crate) fn new(
        config: &ResolvedConfig,
        steps: usize,
        karras: bool,
    ) -> Result<Self, SchedulerError> {
        let base = SigmaSchedule::new(config, steps, karras)?;
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
        Ok(Self {
            sigmas,
            timesteps,
            init_noise_sigma: base.init_noise_sigma,
            clip_sample_range: config.clip_sample_range,
            pending: None,
        })
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
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        f64::from(self.init_noise_sigma)
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        scale_by_sigma(sample, self.sigmas[index]);
    }

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &[f32],
        _rng: &mut TorchGenerator,
    ) -> Vec<f32> {
        match self.pending.take() {
            None => {
                // First order: d = (x − x0)/σ̂, dt = σ_next − σ̂, x' = x + d·dt.
                let sigma = self.sigmas[index];
                let sigma_next = self.sigmas[index + 1];
                let sigma_hat = sigma * (0.0 + 1.0);
                let derivative: Vec<f32> = sample
                    .iter()
                    .zip(model_output)
                    .map(|(x, eps)| (x - self.predict_x0(*x, *eps, sigma_hat)) / sigma_hat)
                    .collect();
                let dt = sigma_next - sigma_hat;
                let out = sample
                    .iter()
                    .zip(&derivative)
                    .map(|(x, d)| x + d * dt)
                    .collect();
                self.pending = Some(FirstOrder {
                    derivative,
                    dt,
                    sample: sample.to_vec(),
                });
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
