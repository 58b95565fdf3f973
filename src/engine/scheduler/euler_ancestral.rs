//! Owns Euler ancestral, diffusers `EulerAncestralDiscreteScheduler`
//! (`diffusers/schedulers/scheduling_euler_ancestral_discrete.py`): an Euler step to σ_down
//! plus fresh noise of size σ_up, drawn from the generator on **every** step (also the last,
//! where σ_up = 0), as diffusers does.

use super::config::{ClassConfig, ClassDefaults, CommonConfig, SchedulerConfig, Unimplemented};
use super::euler::{scale_by_sigma, SigmaSchedule};
use super::sigmas::add_noise_sigma;
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `EulerAncestralDiscreteScheduler`'s constructor arguments: the shared keys only.
pub(crate) struct EulerAncestralConfig {
    common: CommonConfig,
}

impl ClassConfig for EulerAncestralConfig {
    const SAMPLER: Sampler = Sampler::EulerA;
    const DEFAULTS: ClassDefaults = ClassDefaults::USUAL;
    const UNIMPLEMENTED: &'static [Unimplemented] = &[Unimplemented::ZeroSnrRescaling];

    fn from_config(common: CommonConfig, _c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        Ok(Self { common })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    /// The class has no `use_karras_sigmas`; `build_scheduler` refuses Karras before here.
    fn build(&self, steps: usize, _karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        let schedule = SigmaSchedule::new(&self.common, None, steps)?;
        Ok(Box::new(EulerAncestral::new(schedule)))
    }
}

pub(crate) struct EulerAncestral {
    schedule: SigmaSchedule,
    timesteps: Vec<f64>,
}

impl EulerAncestral {
    fn new(schedule: SigmaSchedule) -> Self {
        let timesteps = schedule.timesteps.iter().map(|t| f64::from(*t)).collect();
        Self { schedule, timesteps }
    }
}

impl Scheduler for EulerAncestral {
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

    /// σ_up = sqrt(σ_to²(σ_from² − σ_to²)/σ_from²), σ_down = sqrt(σ_to² − σ_up²);
    /// x' = x + ((x − x0)/σ)(σ_down − σ) + z·σ_up with z ~ N(0, 1) from `rng`.
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], rng: &mut dyn NoiseSource) -> Vec<f32> {
        let sigma = self.schedule.sigmas[index];
        let sigma_from = sigma;
        let sigma_to = self.schedule.sigmas[index + 1];
        let from2 = sigma_from * sigma_from;
        let to2 = sigma_to * sigma_to;
        let sigma_up = (to2 * (from2 - to2) / from2).sqrt();
        let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma;
        let mut out: Vec<f32> = sample
            .iter()
            .zip(model_output)
            .map(|(x, eps)| {
                let x0 = x - sigma * eps;
                let derivative = (x - x0) / sigma;
                x + derivative * dt
            })
            .collect();
        let noise = rng.draw(sample.len());
        for (x, z) in out.iter_mut().zip(noise) {
            *x += z * sigma_up;
        }
        out
    }
}
