//! Owns the samplers: the eight diffusers schedulers Easel offers, rebuilt in Rust so that a
//! (model `scheduler_config.json`, sampler, schedule, steps) gives the same timesteps, the same
//! input scaling and the same `step` arithmetic as
//! `<Class>.from_config(pipeline.scheduler.config)` in diffusers, float32 where diffusers is
//! float32.
//!
//! Layout: this file holds the public surface (errors, the [`Scheduler`] trait,
//! [`build_scheduler`]; the names live with [`Sampler`] in `crate::api`); `config.rs` reads
//! `scheduler_config.json` (the keys every class shares, and the rule by which a class takes
//! them); `sigmas.rs` the shared schedule maths; one file per sampler for its own config keys
//! (a [`config::ClassConfig`] that builds it), its `set_timesteps` and its `step`.
//!
//! **Arithmetic:** diffusers keeps samples float32 and does its per-step scalars in float32
//! 0-dim tensors; each `step` below performs the same float32 operations in the same order,
//! so results agree with diffusers to float32 rounding (see `tests/parity_schedulers.rs`).

mod config;
mod ddim;
mod dpmpp_2m;
mod euler;
mod euler_ancestral;
mod heun;
mod lms;
mod pndm;
pub(crate) mod sigmas;
mod unipc;

pub use crate::api::{Sampler, Schedule};
use crate::engine::noise::NoiseSource;
use config::ClassConfig;
pub use config::SchedulerConfig;

/// The diffusers class a sampler reproduces (its parity reference); `None` for the samplers that
/// run only in the a1111 and comfyui modes (`Sampler::runs_in`).
pub fn diffusers_class(sampler: Sampler) -> Option<&'static str> {
    if !sampler.runs_in(crate::api::Compat::Diffusers) {
        return None;
    }
    Some(match sampler {
        Sampler::Pndm => "PNDMScheduler",
        Sampler::Ddim => "DDIMScheduler",
        Sampler::Euler => "EulerDiscreteScheduler",
        Sampler::EulerA => "EulerAncestralDiscreteScheduler",
        Sampler::Heun => "HeunDiscreteScheduler",
        Sampler::Lms => "LMSDiscreteScheduler",
        Sampler::Dpmpp2m => "DPMSolverMultistepScheduler",
        Sampler::Unipc => "UniPCMultistepScheduler",
        _ => return None,
    })
}

/// Errors building a scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler_config.json is not valid: {0}")]
    Json(String),
    #[error("sampler {0} has no karras schedule; use the default schedule, or one of {karras}", karras = Sampler::karras_names())]
    KarrasUnsupported(Sampler),
    #[error("sampler {0} with schedule {1} does not run in compat diffusers; use compat a1111 or comfyui (GET /api/v1/samplers lists what each mode runs)")]
    KDiffusionOnly(Sampler, Schedule),
    #[error("steps {steps} is out of range; use 1 to {max}")]
    Steps { steps: usize, max: usize },
    #[error("scheduler_config.json has {key} = {value}; expected {expected}")]
    InvalidConfig { key: &'static str, value: String, expected: &'static str },
    #[error("steps_offset {steps_offset} with {steps} steps puts timestep {timestep} outside the training range 0 to {max}; use a smaller steps_offset")]
    TimestepOutOfRange { steps_offset: i64, steps: usize, timestep: i64, max: usize },
    #[error("scheduler_config.json has {key} = {value}, which sampler {sampler} does not support; {supported}")]
    Unsupported { key: &'static str, value: String, sampler: Sampler, supported: &'static str },
}

impl SchedulerError {
    /// A key the sampler's class accepts, with a value Easel cannot reproduce.
    pub(crate) fn unsupported(sampler: Sampler, key: &'static str, value: String, supported: &'static str) -> Self {
        Self::Unsupported { key, value, sampler, supported }
    }
}

/// One denoising run of a sampler, built for a fixed number of steps. Indices count UNet calls
/// from 0 in the order of [`Scheduler::timesteps`].
pub trait Scheduler: Send {
    /// Timesteps fed to the UNet, in call order (one per UNet call; Heun has 2N-1, PNDM N+1 as in diffusers).
    fn timesteps(&self) -> &[f64];
    /// Multiplier for the initial noise (diffusers `init_noise_sigma`).
    fn init_noise_sigma(&self) -> f64;
    /// diffusers `scale_model_input` for call `index` (in place).
    fn scale_model_input(&self, sample: &mut [f32], index: usize);
    /// diffusers `step` for call `index`: returns the new sample. Ancestral samplers draw their noise with
    /// `rng.draw(sample.len())` at exactly the point diffusers draws it.
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], rng: &mut dyn NoiseSource) -> Vec<f32>;
    /// diffusers `add_noise(original, noise, t)` for a run that starts at call `index` (img2img:
    /// the pipeline's `set_begin_index(index)`, or the timestep at `index` for the classes
    /// without it): `original` noised to that call's noise level.
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;
    /// UNet calls per inference step (diffusers' class attribute `order`: 2 for Heun, else 1);
    /// img2img skips `order ×` the steps its strength leaves out.
    fn order(&self) -> usize {
        1
    }
}

/// Builds `kind` for `steps` inference steps from the model's scheduler config.
pub fn build_scheduler(
    kind: Sampler,
    schedule: Schedule,
    config: &SchedulerConfig,
    steps: usize,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    if !kind.runs_in(crate::api::Compat::Diffusers) || !schedule.runs_in(crate::api::Compat::Diffusers) {
        return Err(SchedulerError::KDiffusionOnly(kind, schedule));
    }
    match kind {
        Sampler::Pndm => build::<pndm::PndmConfig>(schedule, config, steps),
        Sampler::Ddim => build::<ddim::DdimConfig>(schedule, config, steps),
        Sampler::Euler => build::<euler::EulerConfig>(schedule, config, steps),
        Sampler::EulerA => build::<euler_ancestral::EulerAncestralConfig>(schedule, config, steps),
        Sampler::Heun => build::<heun::HeunConfig>(schedule, config, steps),
        Sampler::Lms => build::<lms::LmsConfig>(schedule, config, steps),
        Sampler::Dpmpp2m => build::<dpmpp_2m::DpmSolverConfig>(schedule, config, steps),
        Sampler::Unipc => build::<unipc::UniPcConfig>(schedule, config, steps),
        // Refused above: the rest run only in the a1111 and comfyui modes.
        _ => Err(SchedulerError::KDiffusionOnly(kind, schedule)),
    }
}

/// Resolves class `C` from the file, checks the request against it, and builds it.
fn build<C: ClassConfig>(schedule: Schedule, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let class: C = config::resolve(config)?;
    if schedule == Schedule::Karras && !C::SAMPLER.supports_karras() {
        return Err(SchedulerError::KarrasUnsupported(C::SAMPLER));
    }
    let max = class.common().num_train_timesteps;
    if steps == 0 || steps > max {
        return Err(SchedulerError::Steps { steps, max });
    }
    class.build(steps, schedule == Schedule::Karras)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::torch_rng::TorchGenerator;
    use sigmas::Spacing;

    #[test]
    fn absent_keys_take_the_new_class_defaults() {
        fn spacing<C: ClassConfig>(c: &SchedulerConfig) -> Spacing {
            config::resolve::<C>(c).expect("resolve").common().spacing
        }
        let c = SchedulerConfig::sd15();
        assert_eq!(spacing::<euler::EulerConfig>(&c), Spacing::Linspace);
        assert_eq!(spacing::<ddim::DdimConfig>(&c), Spacing::Leading);
        assert_eq!(spacing::<pndm::PndmConfig>(&c), Spacing::Leading);
        let mut newer = c.clone();
        newer.timestep_spacing = Some("leading".into());
        assert_eq!(spacing::<euler::EulerConfig>(&newer), Spacing::Leading);
    }

    #[test]
    fn refuses_a_switch_only_where_the_class_accepts_it() {
        let mut c = SchedulerConfig::sd15();
        c.thresholding = Some(true);
        let err = build_scheduler(Sampler::Ddim, Schedule::Default, &c, 10).err().expect("ddim accepts thresholding");
        assert!(err.to_string().contains("thresholding"), "{err}");
        assert!(build_scheduler(Sampler::Euler, Schedule::Default, &c, 10).is_ok());
    }

    #[test]
    fn parses_the_sd15_file_and_ignores_unknown_keys() {
        let text = r#"{"_class_name":"PNDMScheduler","_diffusers_version":"0.6.0","beta_end":0.012,
            "beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,
            "set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null,
            "clip_sample":false}"#;
        assert_eq!(SchedulerConfig::from_json(text).expect("parse"), SchedulerConfig::sd15());
        assert!(SchedulerConfig::from_json("{").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let c = SchedulerConfig::sd15();
        let err = build_scheduler(Sampler::EulerA, Schedule::Karras, &c, 10).err().expect("karras");
        assert!(err.to_string().contains("euler_a"), "{err}");
        let err = build_scheduler(Sampler::Euler, Schedule::Default, &c, 0).err().expect("0 steps");
        assert!(err.to_string().contains("steps 0"), "{err}");
        let mut v = c.clone();
        v.prediction_type = Some("v_prediction".into());
        let err = build_scheduler(Sampler::Ddim, Schedule::Default, &v, 10).err().expect("v-pred");
        assert!(err.to_string().contains("v_prediction"), "{err}");
        let mut offset = c.clone();
        offset.steps_offset = Some(500);
        let err = build_scheduler(Sampler::Ddim, Schedule::Default, &offset, 2).err().expect("offset");
        assert!(err.to_string().contains("steps_offset 500"), "{err}");
        let mut s = c.clone();
        s.timestep_spacing = Some("uniform".into());
        let err = build_scheduler(Sampler::Euler, Schedule::Default, &s, 10).err().expect("spacing");
        assert!(err.to_string().contains("\"uniform\""), "{err}");
    }

    #[test]
    fn k_diffusion_samplers_and_schedules_are_refused_by_name() {
        let c = SchedulerConfig::sd15();
        let err = build_scheduler(Sampler::Dpm2, Schedule::Default, &c, 10).err().expect("k-diffusion only").to_string();
        assert!(err.contains("dpm_2") && err.contains("compat a1111"), "{err}");
        assert!(build_scheduler(Sampler::Euler, Schedule::SgmUniform, &c, 10).is_err());
    }

    #[test]
    fn every_sampler_runs_and_counts_its_calls() {
        let c = SchedulerConfig::sd15();
        for kind in Sampler::ALL.into_iter().filter(|s| s.runs_in(crate::api::Compat::Diffusers)) {
            let schedules: &[Schedule] = if kind.supports_karras() { &[Schedule::Default, Schedule::Karras] } else { &[Schedule::Default] };
            for &schedule in schedules {
                let steps = 7;
                let mut s = build_scheduler(kind, schedule, &c, steps).expect("build");
                let calls = s.timesteps().len();
                let expected = match kind {
                    Sampler::Pndm => steps + 1,
                    Sampler::Heun => 2 * steps - 1,
                    _ => steps,
                };
                assert_eq!(calls, expected, "{kind} {schedule}");
                let mut rng = TorchGenerator::new(0);
                let init = s.init_noise_sigma() as f32;
                let mut x: Vec<f32> = rng.draw(64).into_iter().map(|v| v * init).collect();
                for i in 0..calls {
                    let mut input = x.clone();
                    s.scale_model_input(&mut input, i);
                    let eps: Vec<f32> = input.iter().map(|v| v * 0.9).collect();
                    x = s.step(&eps, i, &x, &mut rng);
                    assert!(x.iter().all(|v| v.is_finite()), "{kind} {schedule} call {i}");
                }
            }
        }
    }
}
