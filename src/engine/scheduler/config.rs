//! Owns reading a model's `scheduler_config.json`: the file's keys ([`SchedulerConfig`]), the
//! keys every diffusers class accepts ([`CommonConfig`]), the refusals several classes share
//! ([`Unimplemented`]) and the [`ClassConfig`] contract each sampler file fulfils for its own
//! class's keys, defaults and refusals.
//!
//! **Config rule** (diffusers `configuration_utils.py`, `extract_init_dict`): a key present in
//! the model's JSON is passed to the new class when that class accepts it; a key absent from
//! the JSON takes the *new* class's default. So Euler on an old SD 1.5 file (no
//! `timestep_spacing`) spaces `linspace`, while PNDM and DDIM space `leading`. Keys that would
//! select behaviour we do not implement (v-prediction, thresholding, zero-SNR rescaling, …)
//! are refused with an error instead of being silently ignored.

use super::sigmas::{BetaSchedule, Spacing};
use super::{Sampler, Scheduler, SchedulerError};

/// `scheduler/scheduler_config.json` as read from the model. Every field is optional so that
/// "absent" stays visible (absent keys take the chosen class's default); unknown keys are
/// ignored. Only keys that change what Easel computes are listed.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<String>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<String>,
    pub timestep_spacing: Option<String>,
    pub steps_offset: Option<i64>,
    pub set_alpha_to_one: Option<bool>,
    pub skip_prk_steps: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: Option<f64>,
    pub thresholding: Option<bool>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub interpolation_type: Option<String>,
    pub final_sigmas_type: Option<String>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub use_lu_lambdas: Option<bool>,
    pub use_flow_sigmas: Option<bool>,
    pub solver_order: Option<usize>,
    pub algorithm_type: Option<String>,
    pub solver_type: Option<String>,
    pub lower_order_final: Option<bool>,
    pub predict_x0: Option<bool>,
    pub disable_corrector: Option<Vec<usize>>,
    pub lambda_min_clipped: Option<f64>,
    pub variance_type: Option<String>,
}

impl SchedulerConfig {
    /// Parses the text of a `scheduler_config.json`.
    pub fn from_json(text: &str) -> Result<Self, SchedulerError> {
        serde_json::from_str(text).map_err(|e| SchedulerError::Json(e.to_string()))
    }

    /// The SD 1.5 file (`runwayml/stable-diffusion-v1-5`, diffusers 0.6.0 save).
    pub fn sd15() -> Self {
        Self {
            class_name: Some("PNDMScheduler".into()),
            num_train_timesteps: Some(1000),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            beta_schedule: Some("scaled_linear".into()),
            steps_offset: Some(1),
            set_alpha_to_one: Some(false),
            skip_prk_steps: Some(true),
            clip_sample: Some(false),
            ..Self::default()
        }
    }
}

/// One diffusers class's constructor arguments as `<Class>.from_config` fills them, and the
/// factory of its stateful scheduler. Each sampler file implements it next to its `step`;
/// [`resolve`] applies the rule that is the same for all of them.
pub(crate) trait ClassConfig: Sized {
    /// The sampler this class is (named in refusals).
    const SAMPLER: Sampler;
    /// The class's `__init__` defaults for the shared keys.
    const DEFAULTS: ClassDefaults;
    /// The shared switches the class's `__init__` accepts; Easel refuses their non-default
    /// values. A switch the class does not accept never reaches it, whatever the file says.
    const UNIMPLEMENTED: &'static [Unimplemented];

    /// Reads the class's own keys (its defaults for absent ones, refusing what Easel cannot
    /// reproduce); `common` holds the shared keys, already resolved.
    fn from_config(common: CommonConfig, file: &SchedulerConfig) -> Result<Self, SchedulerError>;

    /// The shared keys, resolved.
    fn common(&self) -> &CommonConfig;

    /// The scheduler for `steps` inference steps (diffusers `set_timesteps`), on Karras σ
    /// when `karras` (classes without `use_karras_sigmas` never see `true`).
    fn build(&self, steps: usize, karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError>;
}

/// Resolves the file for class `C`: the shared keys, then the shared switches `C` accepts,
/// then `C`'s own keys, so a file with several refused keys names the same one every time.
pub(crate) fn resolve<C: ClassConfig>(file: &SchedulerConfig) -> Result<C, SchedulerError> {
    let common = CommonConfig::resolve(C::SAMPLER, file, C::DEFAULTS)?;
    Unimplemented::refuse(C::SAMPLER, file, C::UNIMPLEMENTED)?;
    C::from_config(common, file)
}

/// A class's `__init__` defaults for the shared keys whose defaults differ between classes.
/// The others are the same everywhere: `num_train_timesteps=1000`, `beta_schedule="linear"`,
/// `trained_betas=None`, `prediction_type="epsilon"`, `steps_offset=0`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassDefaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub timestep_spacing: Spacing,
}

impl ClassDefaults {
    /// What most classes declare: `beta_start=0.0001`, `beta_end=0.02`,
    /// `timestep_spacing="linspace"`.
    pub(crate) const USUAL: Self = Self { beta_start: 0.0001, beta_end: 0.02, timestep_spacing: Spacing::Linspace };
}

/// The keys every one of the eight classes accepts, resolved: file values where present, the
/// class's defaults otherwise.
#[derive(Debug, Clone)]
pub(crate) struct CommonConfig {
    pub num_train_timesteps: usize,
    pub betas: BetaSchedule,
    pub spacing: Spacing,
    pub steps_offset: i64,
}

impl CommonConfig {
    /// Reads `num_train_timesteps`, the betas (`trained_betas` wins over `beta_schedule`,
    /// `beta_start`, `beta_end`), `prediction_type` (only `epsilon`), `timestep_spacing` and
    /// `steps_offset`.
    pub(crate) fn resolve(sampler: Sampler, c: &SchedulerConfig, defaults: ClassDefaults) -> Result<Self, SchedulerError> {
        let num_train_timesteps = c.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(SchedulerError::InvalidConfig {
                key: "num_train_timesteps",
                value: num_train_timesteps.to_string(),
                expected: "at least 2 (SD 1.5 uses 1000)",
            });
        }
        let start = c.beta_start.unwrap_or(defaults.beta_start);
        let end = c.beta_end.unwrap_or(defaults.beta_end);
        let betas = match (&c.trained_betas, c.beta_schedule.as_deref().unwrap_or("linear")) {
            (Some(values), _) => BetaSchedule::Trained(values.clone()),
            (None, "linear") => BetaSchedule::Linear { start, end },
            (None, "scaled_linear") => BetaSchedule::ScaledLinear { start, end },
            (None, "squaredcos_cap_v2") => BetaSchedule::SquaredCosCapV2,
            (None, other) => {
                return Err(SchedulerError::InvalidConfig {
                    key: "beta_schedule",
                    value: format!("{other:?}"),
                    expected: "\"linear\", \"scaled_linear\" or \"squaredcos_cap_v2\"",
                })
            }
        };
        if let Some(p) = c.prediction_type.as_deref().filter(|p| *p != "epsilon") {
            return Err(SchedulerError::unsupported(
                sampler,
                "prediction_type",
                format!("{p:?}"),
                "only \"epsilon\" models (SD 1.x) are supported",
            ));
        }
        let spacing = match c.timestep_spacing.as_deref() {
            Some(text) => Spacing::parse(text)?,
            None => defaults.timestep_spacing,
        };
        Ok(Self { num_train_timesteps, betas, spacing, steps_offset: c.steps_offset.unwrap_or(0) })
    }

    /// Refuses integer timesteps that would index past the ᾱ table (diffusers would raise an
    /// `IndexError`, or silently wrap a negative index).
    pub(crate) fn check_timesteps(&self, timesteps: impl IntoIterator<Item = i64>, steps: usize) -> Result<(), SchedulerError> {
        let max = self.num_train_timesteps - 1;
        match timesteps.into_iter().find(|t| *t < 0 || *t > max as i64) {
            Some(timestep) => Err(SchedulerError::TimestepOutOfRange { steps_offset: self.steps_offset, steps, timestep, max }),
            None => Ok(()),
        }
    }
}

/// Switches that several classes accept and whose non-default values select behaviour Easel
/// does not implement. Each class lists the ones its `__init__` takes
/// ([`ClassConfig::UNIMPLEMENTED`]). Keys only one class has live in that class's file, except
/// `use_lu_lambdas` (DPM-Solver's), kept with the other σ-schedule switches it is worded like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unimplemented {
    /// `rescale_betas_zero_snr: true`.
    ZeroSnrRescaling,
    /// `thresholding: true`.
    Thresholding,
    /// `use_exponential_sigmas: true`.
    ExponentialSigmas,
    /// `use_beta_sigmas: true`.
    BetaSigmas,
    /// `use_lu_lambdas: true`.
    LuLambdas,
    /// `use_flow_sigmas: true`.
    FlowSigmas,
    /// `final_sigmas_type` other than `"zero"`.
    FinalSigmasType,
}

impl Unimplemented {
    /// The order they are checked in, whatever order a class lists them in.
    const ORDER: [Self; 7] = [
        Self::ZeroSnrRescaling,
        Self::Thresholding,
        Self::ExponentialSigmas,
        Self::BetaSigmas,
        Self::LuLambdas,
        Self::FlowSigmas,
        Self::FinalSigmasType,
    ];

    /// Refuses the first of the `accepted` switches that the file turns on.
    pub(crate) fn refuse(sampler: Sampler, c: &SchedulerConfig, accepted: &[Self]) -> Result<(), SchedulerError> {
        for switch in Self::ORDER.into_iter().filter(|s| accepted.contains(s)) {
            if let Some((key, value, supported)) = switch.turned_on(c) {
                return Err(SchedulerError::unsupported(sampler, key, value, supported));
            }
        }
        Ok(())
    }

    /// The key, its value and what Easel supports instead, when the file turns this on.
    fn turned_on(self, c: &SchedulerConfig) -> Option<(&'static str, String, &'static str)> {
        const SCHEDULES: &str = "only the default and karras schedules are implemented";
        let flag = |key, value: Option<bool>, supported| (value == Some(true)).then(|| (key, "true".to_string(), supported));
        match self {
            Self::ZeroSnrRescaling => {
                flag("rescale_betas_zero_snr", c.rescale_betas_zero_snr, "zero-terminal-SNR rescaling is not implemented")
            }
            Self::Thresholding => flag("thresholding", c.thresholding, "dynamic thresholding is not implemented"),
            Self::ExponentialSigmas => flag("use_exponential_sigmas", c.use_exponential_sigmas, SCHEDULES),
            Self::BetaSigmas => flag("use_beta_sigmas", c.use_beta_sigmas, SCHEDULES),
            Self::LuLambdas => flag("use_lu_lambdas", c.use_lu_lambdas, SCHEDULES),
            Self::FlowSigmas => flag("use_flow_sigmas", c.use_flow_sigmas, SCHEDULES),
            Self::FinalSigmasType => c
                .final_sigmas_type
                .as_deref()
                .filter(|t| *t != "zero")
                .map(|t| ("final_sigmas_type", format!("{t:?}"), "only \"zero\" is implemented")),
        }
    }
}

/// `clip_sample` (default per class) and `clip_sample_range` (default 1.0), which DDIM and Heun
/// accept: the bound to clamp the predicted x0 to, or `None` when not clipping.
pub(crate) fn clip_sample_range(c: &SchedulerConfig, clip_by_default: bool) -> Option<f32> {
    let clip = c.clip_sample.unwrap_or(clip_by_default);
    clip.then(|| c.clip_sample_range.unwrap_or(1.0) as f32)
}

/// Karras σ end points pinned by the file. No class's `__init__` takes them, but diffusers
/// copies unknown keys into `config` too, so `sigma_min`/`sigma_max` reach every
/// `_convert_to_karras` that looks them up (all but LMS's). Unset ends come from the schedule.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KarrasBounds {
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
}

impl KarrasBounds {
    pub(crate) fn from_config(c: &SchedulerConfig) -> Self {
        Self { sigma_min: c.sigma_min, sigma_max: c.sigma_max }
    }
}
