//! Owns ComfyUI's `KSamplerAdvanced` window as a request names it (`sampling_range`): of the
//! `steps`-step schedule, run only the steps from `start_at_step` to `end_at_step`, starting
//! from fresh noise or not (`add_noise`), and either finishing at σ = 0 or stopping with the
//! remaining noise left in (`return_with_leftover_noise`). The compat comfyui mode runs it as
//! ComfyUI's `KSampler.sample` does.

use serde::{Deserialize, Serialize};

/// The largest step number ComfyUI's node accepts (its `end_at_step` default: "to the end").
pub const MAX_RANGE_STEP: u32 = 10_000;

/// The window as a request gives it; absent members take ComfyUI's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRangeRequest {
    /// The first step to run (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_step: Option<u32>,
    /// The step to stop at (default 10000: the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at_step: Option<u32>,
    /// Whether the run starts from fresh noise (default true; false for a second pass over
    /// latents that still hold noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_noise: Option<bool>,
    /// Whether a run that stops before the end keeps its remaining noise (default false: the
    /// last step goes to σ = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_with_leftover_noise: Option<bool>,
}

/// The window as it runs (and is recorded with the images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingRange {
    pub start_at_step: u32,
    pub end_at_step: u32,
    pub add_noise: bool,
    pub return_with_leftover_noise: bool,
}

impl SamplingRangeRequest {
    /// ComfyUI's defaults filled in, and each value checked against `steps` (the window must
    /// leave at least one step to run: ComfyUI returns the latents untouched otherwise).
    pub fn resolve(&self, steps: u32, errors: &mut Vec<super::request::FieldError>) -> Option<SamplingRange> {
        use super::request::FieldError;
        let range = SamplingRange {
            start_at_step: self.start_at_step.unwrap_or(0),
            end_at_step: self.end_at_step.unwrap_or(MAX_RANGE_STEP),
            add_noise: self.add_noise.unwrap_or(true),
            return_with_leftover_noise: self.return_with_leftover_noise.unwrap_or(false),
        };
        let before = errors.len();
        for (field, value) in [("sampling_range.start_at_step", range.start_at_step), ("sampling_range.end_at_step", range.end_at_step)] {
            if value > MAX_RANGE_STEP {
                errors.push(FieldError::new(field, format!("{field} {value} is over {MAX_RANGE_STEP}")));
            }
        }
        let last = range.end_at_step.min(steps);
        if errors.len() == before && range.start_at_step >= last {
            errors.push(FieldError::new(
                "sampling_range.start_at_step",
                format!(
                    "start_at_step {} leaves no step to run (end_at_step {}, steps {steps}); start below both",
                    range.start_at_step, range.end_at_step
                ),
            ));
        }
        (errors.len() == before).then_some(range)
    }
}
