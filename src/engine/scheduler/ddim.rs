//! Owns DDIM with η = 0, diffusers `DDIMScheduler` (`diffusers/schedulers/scheduling_ddim.py`,
//! `set_timesteps`, `step`): predict x0 from ε, then move deterministically to the previous
//! timestep, `x' = sqrt(ᾱ')·x0 + sqrt(1 − ᾱ')·ε`.

use super::config::{clip_sample_range, ClassConfig, ClassDefaults, CommonConfig, SchedulerConfig, Unimplemented};
use super::sigmas::{add_noise_alpha, np_arange_f64, np_linspace, np_round, Spacing, TrainSchedule};
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `DDIMScheduler`'s constructor arguments. Beyond the shared keys it reads `set_alpha_to_one`
/// and `clip_sample`, both true by default (SD files turn both off), and `clip_sample_range`.
pub(crate) struct DdimConfig {
    common: CommonConfig,
    /// ᾱ used after the last step is 1 instead of ᾱ_0.
    set_alpha_to_one: bool,
    /// Clamp the predicted x0 to ±this.
    clip_sample_range: Option<f32>,
}

impl ClassConfig for DdimConfig {
    const SAMPLER: Sampler = Sampler::Ddim;
    const DEFAULTS: ClassDefaults = ClassDefaults { timestep_spacing: Spacing::Leading, ..ClassDefaults::USUAL };
    const UNIMPLEMENTED: &'static [Unimplemented] = &[Unimplemented::ZeroSnrRescaling, Unimplemented::Thresholding];

    fn from_config(common: CommonConfig, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        Ok(Self { common, set_alpha_to_one: c.set_alpha_to_one.unwrap_or(true), clip_sample_range: clip_sample_range(c, true) })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn build(&self, steps: usize, _karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        Ok(Box::new(Ddim::new(self, steps)?))
    }
}

pub(crate) struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: i64,
    clip_sample_range: Option<f32>,
    timesteps_int: Vec<i64>,
    timesteps: Vec<f64>,
}

impl Ddim {
    fn new(config: &DdimConfig, steps: usize) -> Result<Self, SchedulerError> {
        let common = &config.common;
        let train = TrainSchedule::new(&common.betas, common.num_train_timesteps)?;
        let t_train = common.num_train_timesteps as i64;
        let n = steps as i64;
        let timesteps_int: Vec<i64> = match common.spacing {
            Spacing::Linspace => np_linspace(0.0, (t_train - 1) as f64, steps).into_iter().rev().map(|t| np_round(t) as i64).collect(),
            Spacing::Leading => (0..n).rev().map(|i| i * (t_train / n) + common.steps_offset).collect(),
            Spacing::Trailing => {
                np_arange_f64(t_train as f64, 0.0, -(t_train as f64 / steps as f64)).into_iter().map(|t| np_round(t) as i64 - 1).collect()
            }
        };
        common.check_timesteps(timesteps_int.iter().copied(), steps)?;
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { train.alphas_cumprod[0] };
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
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_alpha(original, noise, self.alphas_cumprod[self.timesteps_int[index] as usize])
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}

    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        let t = self.timesteps_int[index];
        let prev_t = t - self.step_ratio;
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = if prev_t >= 0 { self.alphas_cumprod[prev_t as usize] } else { self.final_alpha_cumprod };
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

#[cfg(test)]
mod tests {
    use super::super::config::resolve;
    use super::*;

    #[test]
    fn class_defaults_clip_and_end_on_alpha_one_until_the_file_says_otherwise() {
        let ddim_default: DdimConfig = resolve(&SchedulerConfig::default()).expect("ddim");
        assert!(ddim_default.set_alpha_to_one);
        assert_eq!(ddim_default.clip_sample_range, Some(1.0));
        let ddim_sd: DdimConfig = resolve(&SchedulerConfig::sd15()).expect("ddim");
        assert!(!ddim_sd.set_alpha_to_one);
        assert_eq!(ddim_sd.clip_sample_range, None);
    }
}
