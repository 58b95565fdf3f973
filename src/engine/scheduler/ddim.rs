//! Owns DDIM with η = 0, diffusers `DDIMScheduler` (`diffusers/schedulers/scheduling_ddim.py`,
//! `set_timesteps`, `step`): predict x0 from ε, then move deterministically to the previous
//! timestep, `x' = sqrt(ᾱ')·x0 + sqrt(1 − ᾱ')·ε`.

use super::sigmas::{np_arange_f64, np_linspace, np_round, Spacing, TrainSchedule};
use super::{ResolvedConfig, Scheduler, SchedulerError};
use crate::engine::torch_rng::TorchGenerator;

pub(crate) struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: i64,
    clip_sample_range: Option<f32>,
    timesteps_int: Vec<i64>,
    timesteps: Vec<f64>,
}

impl Ddim {
    pub(crate) fn new(config: &ResolvedConfig, steps: usize) -> Result<Self, SchedulerError> {
        let train = TrainSchedule::new(&config.betas, config.num_train_timesteps)?;
        let t_train = config.num_train_timesteps as i64;
        let n = steps as i64;
        let timesteps_int: Vec<i64> = match config.spacing {
            Spacing::Linspace => np_linspace(0.0, (t_train - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| np_round(t) as i64)
                .collect(),
            Spacing::Leading => (0..n)
                .rev()
                .map(|i| i * (t_train / n) + config.steps_offset)
                .collect(),
            Spacing::Trailing => {
                np_arange_f64(t_train as f64, 0.0, -(t_train as f64 / steps as f64))
                    .into_iter()
                    .map(|t| np_round(t) as i64 - 1)
                    .collect()
            }
        };
        super::check_timesteps(timesteps_int.iter().copied(), config, steps)?;
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            train.alphas_cumprod[0]
        };
        Ok(Self {
            final_alpha_cumprod,
            alphas_cumprod: train.alphas_cumprod,
            step_ratio: t_train / n,
            clip_sample_range: config.clip_sample_range,
            timesteps: timesteps_int.iter().map(|t| *t as f64).collect(),
            timesteps_int,
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &[f32],
        _rng: &mut TorchGenerator,
    ) -> Vec<f32> {
        let t = self.timesteps_int[index];
        let prev_t = t - self.step_ratio;
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = if prev_t >= 0 {
            self.alphas_cumprod[prev_t as usize]
        } else {
            self.final_alpha_cumprod
        };
        let beta_t = 1.0 - a_t;
        let sqrt_beta_t = beta_t.sqrt();
        let sqrt_a_t = a_t.sqrt();
        // η = 0: `std_dev_t = 0.0 * variance ** 0.5` is 0, so the direction keeps all of 1 − ᾱ'.
        let beta_prev = 1.0 - a_prev;
        let variance = (beta_prev / beta_t) * (1.0 - a_t / a_prev);
        let std_dev_t = 0.0 * variance.sqrt();
        let direction_coeff = (1.0 - a_prev - std_dev_t * std_dev_t).sqrt();
        let sqrt_a_prev = a_prev.sqrt();
        sample
            .iter()
            .zip(model_output)
            .map(|(x, eps)| {
                let mut x0 = (x - sqrt_beta_t * eps) / sqrt_a_t;
                if let Some(range) = self.clip_sample_range {
                    x0 = x0.clamp(-range, range);
                }
                sqrt_a_prev * x0 + direction_coeff * eps
            })
            .collect()
    }
}
