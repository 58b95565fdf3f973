//! Owns PLMS, diffusers `PNDMScheduler` with `skip_prk_steps=True`
//! (`diffusers/schedulers/scheduling_pndm.py`, `set_timesteps`, `step_plms`,
//! `_get_prev_sample`): a linear multistep method on ε with a pseudo improved-Euler warm-up,
//! N + 1 UNet calls (the second timestep is evaluated twice).

use super::config::{ClassConfig, ClassDefaults, CommonConfig, SchedulerConfig, Unimplemented};
use super::sigmas::{add_noise_alpha, np_arange_f64, np_linspace, np_round, Spacing, TrainSchedule};
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `PNDMScheduler`'s constructor arguments. Beyond the shared keys it reads `set_alpha_to_one`
/// (default false) and `skip_prk_steps`, which must be true: the Runge–Kutta warm-up
/// (`step_prk`, the class default) is not implemented.
pub(crate) struct PndmConfig {
    common: CommonConfig,
    /// ᾱ used after the last step is 1 instead of ᾱ_0.
    set_alpha_to_one: bool,
}

impl ClassConfig for PndmConfig {
    const SAMPLER: Sampler = Sampler::Pndm;
    const DEFAULTS: ClassDefaults = ClassDefaults { timestep_spacing: Spacing::Leading, ..ClassDefaults::USUAL };
    const UNIMPLEMENTED: &'static [Unimplemented] = &[];

    fn from_config(common: CommonConfig, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        if c.skip_prk_steps != Some(true) {
            let value = c.skip_prk_steps.map_or("absent (default false)".to_string(), |v| v.to_string());
            return Err(SchedulerError::unsupported(
                Self::SAMPLER,
                "skip_prk_steps",
                value,
                "only PLMS (skip_prk_steps true, as in SD 1.x) is implemented",
            ));
        }
        Ok(Self { common, set_alpha_to_one: c.set_alpha_to_one.unwrap_or(false) })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn build(&self, steps: usize, _karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        Ok(Box::new(Pndm::new(self, steps)?))
    }
}

pub(crate) struct Pndm {
    alphas_cumprod: Vec<f32>,
    /// ᾱ used when the previous timestep is below 0.
    final_alpha_cumprod: f32,
    /// `num_train_timesteps // num_inference_steps`.
    step_ratio: i64,
    /// The PLMS call order, as integers and as the f64 the trait hands out.
    plms_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
    /// The last (up to 4) ε, oldest first (`self.ets`).
    ets: Vec<Vec<f32>>,
    /// Calls done so far (`self.counter`).
    counter: usize,
    /// The sample at the first call, reused by the second (warm-up) call.
    cur_sample: Option<Vec<f32>>,
}

impl Pndm {
    fn new(config: &PndmConfig, steps: usize) -> Result<Self, SchedulerError> {
        let common = &config.common;
        let train = TrainSchedule::new(&common.betas, common.num_train_timesteps)?;
        let t_train = common.num_train_timesteps as i64;
        let n = steps as i64;
        // `_timesteps`, ascending.
        let base: Vec<i64> = match common.spacing {
            Spacing::Linspace => np_linspace(0.0, (t_train - 1) as f64, steps).into_iter().map(|t| np_round(t) as i64).collect(),
            Spacing::Leading => (0..n).map(|i| i * (t_train / n) + common.steps_offset).collect(),
            Spacing::Trailing => {
                let ratio = t_train as f64 / steps as f64;
                let mut ts: Vec<i64> = np_arange_f64(t_train as f64, 0.0, -ratio).into_iter().map(|t| np_round(t) as i64 - 1).collect();
                ts.reverse();
                ts
            }
        };
        // `concatenate([ts[:-1], ts[-2:-1], ts[-1:]])[::-1]`
        let len = base.len();
        let mut plms: Vec<i64> = base[..len.saturating_sub(1)].to_vec();
        if len >= 2 {
            plms.push(base[len - 2]);
        }
        plms.extend_from_slice(&base[len.saturating_sub(1)..]);
        plms.reverse();

        // The second (warm-up) call looks one stride ahead of its timestep.
        let warm_up = plms.get(1).map(|t| t + t_train / n);
        common.check_timesteps(plms.iter().copied().chain(warm_up), steps)?;
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { train.alphas_cumprod[0] };
        Ok(Self {
            final_alpha_cumprod,
            alphas_cumprod: train.alphas_cumprod,
            step_ratio: t_train / n,
            timesteps: plms.iter().map(|t| *t as f64).collect(),
            plms_timesteps: plms,
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
        })
    }

    fn alpha_at(&self, t: i64) -> f32 {
        if t >= 0 {
            self.alphas_cumprod[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// PNDM paper eq. (9), `_get_prev_sample`, in float32:
    /// x' = sqrt(ᾱ'/ᾱ)·x − (ᾱ' − ᾱ)·ε / (ᾱ·sqrt(1 − ᾱ') + sqrt(ᾱ(1 − ᾱ)ᾱ')).
    fn prev_sample(&self, sample: &[f32], t: i64, prev_t: i64, eps: &[f32]) -> Vec<f32> {
        let a_t = self.alpha_at(t);
        let a_prev = self.alpha_at(prev_t);
        let beta_t = 1.0 - a_t;
        let beta_prev = 1.0 - a_prev;
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * beta_prev.sqrt() + (a_t * beta_t * a_prev).sqrt();
        let diff = a_prev - a_t;
        sample.iter().zip(eps).map(|(x, e)| sample_coeff * x - diff * e / denom).collect()
    }
}

impl Scheduler for Pndm {
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_alpha(original, noise, self.alpha_at(self.timesteps[index] as i64))
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}

    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        let mut t = self.plms_timesteps[index];
        let mut prev_t = t - self.step_ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.to_vec());
        } else {
            prev_t = t;
            t += self.step_ratio;
        }

        let ets = &self.ets;
        let n = ets.len();
        let combine = |f: &dyn Fn(usize) -> f32| (0..model_output.len()).map(f).collect::<Vec<f32>>();
        let mut x = sample;
        let cur;
        let eps: Vec<f32> = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.to_vec());
            model_output.to_vec()
        } else if n == 1 && self.counter == 1 {
            cur = self.cur_sample.take().unwrap_or_else(|| sample.to_vec());
            x = &cur;
            combine(&|i| (model_output[i] + ets[0][i]) / 2.0)
        } else if n == 2 {
            combine(&|i| (3.0 * ets[1][i] - ets[0][i]) / 2.0)
        } else if n == 3 {
            combine(&|i| (23.0 * ets[2][i] - 16.0 * ets[1][i] + 5.0 * ets[0][i]) / 12.0)
        } else {
            // `(1 / 24) * (...)`: the Python double 1/24 meets a float32 tensor as a float32.
            let one_24 = (1.0f64 / 24.0) as f32;
            combine(&|i| one_24 * (55.0 * ets[3][i] - 59.0 * ets[2][i] + 37.0 * ets[1][i] - 9.0 * ets[0][i]))
        };
        let out = self.prev_sample(x, t, prev_t, &eps);
        self.counter += 1;
        out
    }
}
