//! Owns the later samplers of a ComfyUI `KSamplerAdvanced` chain as a request names them
//! (`stages`): after the request's own window (`sampling_range`), each stage runs over the
//! latents the one before left (with their leftover noise when it kept it), with its own seed,
//! steps, CFG, sampler, schedule, window and prompts (the request's by default), and the same
//! model. The compat comfyui mode runs the chain as ComfyUI runs the nodes one after the other.

use serde::{Deserialize, Serialize};

use super::request::FieldError;
use super::sampling_range::{SamplingRange, SamplingRangeRequest};
use super::{Compat, Sampler, Schedule};

/// The most stages after the request's own sampler.
pub const MAX_STAGES: usize = 4;

/// A stage as a request gives it; absent members take the request's value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// The stage's window (ComfyUI's defaults for absent members).
    #[serde(default)]
    pub sampling_range: SamplingRangeRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_scale: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The stage's own positive prompt (a prompt switch mid-way; the request's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

/// A stage as it runs (and is recorded with the images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub seed: u64,
    pub steps: u32,
    pub cfg_scale: f32,
    pub sampler: Sampler,
    pub schedule: Schedule,
    pub sampling_range: SamplingRange,
    /// The stage's own prompts (`None`: the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

/// What a stage falls back on: the request's own resolved values.
pub struct StageDefaults {
    pub seed: u64,
    pub steps: u32,
    pub cfg_scale: f32,
    pub sampler: Sampler,
    pub schedule: Schedule,
    pub max_steps: u32,
    pub max_cfg_scale: f32,
    pub max_prompt_chars: usize,
    /// Whether the request's prompts are plain text (no combined prompts or conditioning lists),
    /// which a stage's own prompts may replace.
    pub plain_prompts: bool,
}

impl StageRequest {
    /// The stage filled from `defaults` and checked; problems go to `errors` under
    /// `stages[index].<field>`.
    pub fn resolve(&self, index: usize, defaults: &StageDefaults, errors: &mut Vec<FieldError>) -> Option<Stage> {
        let before = errors.len();
        let field = |name: &str| format!("stages[{index}].{name}");
        let steps = self.steps.unwrap_or(defaults.steps);
        if !(1..=defaults.max_steps).contains(&steps) {
            errors.push(FieldError::new(&field("steps"), format!("steps {steps} is outside 1..{}", defaults.max_steps)));
        }
        let cfg_scale = self.cfg_scale.unwrap_or(defaults.cfg_scale);
        if !cfg_scale.is_finite() || !(0.0..=defaults.max_cfg_scale).contains(&cfg_scale) {
            errors.push(FieldError::new(&field("cfg_scale"), format!("cfg_scale {cfg_scale} is outside 0..{}", defaults.max_cfg_scale)));
        }
        let comfyui = Compat::ComfyUi;
        let sampler = match self.sampler.as_deref() {
            None => Some(defaults.sampler),
            Some(name) => Sampler::parse(name).filter(|s| s.runs_in(comfyui)).or_else(|| {
                errors.push(FieldError::new(
                    &field("sampler"),
                    format!("sampler {name:?} does not run in compat comfyui; use one of {}", Sampler::names_in(comfyui)),
                ));
                None
            }),
        };
        let schedule = match self.schedule.as_deref() {
            None => Some(defaults.schedule),
            Some(name) => Schedule::parse(name).filter(|s| s.runs_in(comfyui)).or_else(|| {
                errors.push(FieldError::new(
                    &field("schedule"),
                    format!("schedule {name:?} is not compat comfyui's; use one of {}", Schedule::names_in(comfyui)),
                ));
                None
            }),
        };
        for (name, text) in [("prompt", &self.prompt), ("negative_prompt", &self.negative_prompt)] {
            let Some(text) = text else { continue };
            if !defaults.plain_prompts {
                errors.push(FieldError::new(
                    &field(name),
                    "a stage's own prompts replace plain prompts; the request has combined_prompts or conditioning",
                ));
            } else if text.chars().count() > defaults.max_prompt_chars {
                errors.push(FieldError::new(&field(name), format!("{name} is longer than {} characters", defaults.max_prompt_chars)));
            }
        }
        let mut window_errors = Vec::new();
        let sampling_range = self.sampling_range.resolve(steps, &mut window_errors);
        errors.extend(window_errors.into_iter().map(|e| FieldError { field: field(&e.field), ..e }));
        let stage = Stage {
            seed: self.seed.unwrap_or(defaults.seed),
            steps,
            cfg_scale,
            sampler: sampler?,
            schedule: schedule?,
            sampling_range: sampling_range?,
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
        };
        (errors.len() == before).then_some(stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> StageDefaults {
        StageDefaults {
            seed: 5,
            steps: 20,
            cfg_scale: 7.0,
            sampler: Sampler::Euler,
            schedule: Schedule::Default,
            max_steps: 150,
            max_cfg_scale: 30.0,
            max_prompt_chars: 100,
            plain_prompts: true,
        }
    }

    #[test]
    fn a_stage_takes_the_requests_values_and_names_its_own_fields() {
        let mut errors = Vec::new();
        let range = SamplingRangeRequest { start_at_step: Some(10), add_noise: Some(false), ..Default::default() };
        let stage = StageRequest { sampling_range: range, cfg_scale: Some(5.0), ..Default::default() }.resolve(0, &defaults(), &mut errors);
        let stage = stage.expect("valid");
        assert_eq!((stage.seed, stage.steps, stage.cfg_scale, stage.sampler), (5, 20, 5.0, Sampler::Euler));
        assert_eq!((stage.sampling_range.start_at_step, stage.sampling_range.add_noise), (10, false));
        let bad = StageRequest {
            sampling_range: SamplingRangeRequest { start_at_step: Some(30), ..Default::default() },
            sampler: Some("warp drive".into()),
            ..Default::default()
        };
        assert!(bad.resolve(1, &defaults(), &mut errors).is_none());
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["stages[1].sampler", "stages[1].sampling_range.start_at_step"]);
    }
}
