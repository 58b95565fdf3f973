//! Owns the samplers: the eight diffusers schedulers Easel offers, rebuilt in Rust so that a
//! (model `scheduler_config.json`, sampler, schedule, steps) gives the same timesteps, the same
//! input scaling and the same `step` arithmetic as
//! `<Class>.from_config(pipeline.scheduler.config)` in diffusers, float32 where diffusers is
//! float32.
//!
//! Layout: this file holds the public surface (names, config, errors, the [`Scheduler`] trait,
//! [`build_scheduler`]) and the config resolution; `sigmas.rs` the shared schedule maths; one
//! file per sampler for its `set_timesteps` and `step`.
//!
//! **Config rule** (diffusers `configuration_utils.py`, `extract_init_dict`): a key present in
//! the model's JSON is passed to the new class when that class accepts it; a key absent from
//! the JSON takes the *new* class's default. So Euler on an old SD 1.5 file (no
//! `timestep_spacing`) spaces `linspace`, while PNDM and DDIM space `leading`. Keys that would
//! select behaviour we do not implement (v-prediction, thresholding, zero-SNR rescaling, …)
//! are refused with an error instead of being silently ignored.
//!
//! **Arithmetic:** diffusers keeps samples float32 and does its per-step scalars in float32
//! 0-dim tensors; each `step` below performs the same float32 operations in the same order,
//! so results agree with diffusers to float32 rounding (see `tests/parity_schedulers.rs`).

mod ddim;
mod dpmpp_2m;
mod euler;
mod euler_ancestral;
mod heun;
mod lms;
mod pndm;
pub(crate) mod sigmas;
mod unipc;

use crate::engine::torch_rng::TorchGenerator;
use sigmas::{BetaSchedule, Spacing};

/// The sampler names the CLI/API accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// `PNDMScheduler` with `skip_prk_steps` (PLMS); N + 1 UNet calls.
    Pndm,
    /// `DDIMScheduler`, eta 0.
    Ddim,
    /// `EulerDiscreteScheduler`.
    Euler,
    /// `EulerAncestralDiscreteScheduler`; draws noise every step.
    EulerA,
    /// `HeunDiscreteScheduler`; 2N − 1 UNet calls.
    Heun,
    /// `LMSDiscreteScheduler` (order 4).
    Lms,
    /// `DPMSolverMultistepScheduler` (DPM-Solver++ 2M, midpoint).
    #[serde(rename = "dpmpp_2m")]
    Dpmpp2m,
    /// `UniPCMultistepScheduler` (bh2, order 2).
    Unipc,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 8] = [
        SamplerKind::Pndm,
        SamplerKind::Ddim,
        SamplerKind::Euler,
        SamplerKind::EulerA,
        SamplerKind::Heun,
        SamplerKind::Lms,
        SamplerKind::Dpmpp2m,
        SamplerKind::Unipc,
    ];

    /// The CLI/API name.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Pndm => "pndm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::Euler => "euler",
            SamplerKind::EulerA => "euler_a",
            SamplerKind::Heun => "heun",
            SamplerKind::Lms => "lms",
            SamplerKind::Dpmpp2m => "dpmpp_2m",
            SamplerKind::Unipc => "unipc",
        }
    }

    /// The AUTOMATIC1111 sampler name (infotext `Sampler:` and `/sdapi/v1/samplers`).
    pub fn a1111_name(self) -> &'static str {
        match self {
            SamplerKind::Pndm => "PLMS",
            SamplerKind::Ddim => "DDIM",
            SamplerKind::Euler => "Euler",
            SamplerKind::EulerA => "Euler a",
            SamplerKind::Heun => "Heun",
            SamplerKind::Lms => "LMS",
            SamplerKind::Dpmpp2m => "DPM++ 2M",
            SamplerKind::Unipc => "UniPC",
        }
    }

    /// The schedule used when the request names none: Karras for DPM++ 2M (as A1111 ≥ 1.9
    /// does), the diffusers default otherwise.
    pub fn default_schedule(self) -> Schedule {
        match self {
            SamplerKind::Dpmpp2m => Schedule::Karras,
            _ => Schedule::Default,
        }
    }

    /// Whether the diffusers class has `use_karras_sigmas`.
    pub fn supports_karras(self) -> bool {
        matches!(
            self,
            SamplerKind::Euler
                | SamplerKind::Heun
                | SamplerKind::Lms
                | SamplerKind::Dpmpp2m
                | SamplerKind::Unipc
        )
    }

    /// The diffusers class this sampler reproduces.
    pub fn diffusers_class(self) -> &'static str {
        match self {
            SamplerKind::Pndm => "PNDMScheduler",
            SamplerKind::Ddim => "DDIMScheduler",
            SamplerKind::Euler => "EulerDiscreteScheduler",
            SamplerKind::EulerA => "EulerAncestralDiscreteScheduler",
            SamplerKind::Heun => "HeunDiscreteScheduler",
            SamplerKind::Lms => "LMSDiscreteScheduler",
            SamplerKind::Dpmpp2m => "DPMSolverMultistepScheduler",
            SamplerKind::Unipc => "UniPCMultistepScheduler",
        }
    }
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = SchedulerError;

    /// Accepts the Easel names and, case-insensitively, the A1111 names ("Euler a", "DPM++ 2M").
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        SamplerKind::ALL
            .into_iter()
            .find(|k| {
                k.name().eq_ignore_ascii_case(wanted)
                    || k.name().eq_ignore_ascii_case(&wanted.replace('-', "_"))
                    || k.a1111_name().eq_ignore_ascii_case(wanted)
            })
            .ok_or_else(|| SchedulerError::UnknownSampler(text.to_string()))
    }
}

/// Which σ schedule to space the steps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The diffusers class's own spacing.
    Default,
    /// Karras et al. σ (`use_karras_sigmas=True`).
    Karras,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Default => "default",
            Schedule::Karras => "karras",
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Schedule {
    type Err = SchedulerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(Schedule::Default),
            "karras" => Ok(Schedule::Karras),
            _ => Err(SchedulerError::UnknownSchedule(text.to_string())),
        }
    }
}

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

/// Errors building a scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler_config.json is not valid: {0}")]
    Json(String),
    #[error(
        "unknown sampler {0:?}; use one of pndm, ddim, euler, euler_a, heun, lms, dpmpp_2m, unipc"
    )]
    UnknownSampler(String),
    #[error("unknown schedule {0:?}; use \"default\" or \"karras\"")]
    UnknownSchedule(String),
    #[error("sampler {0} has no karras schedule; use the default schedule, or one of euler, heun, lms, dpmpp_2m, unipc")]
    KarrasUnsupported(SamplerKind),
    #[error("steps {steps} is out of range; use 1 to {max}")]
    Steps { steps: usize, max: usize },
    #[error("scheduler_config.json has {key} = {value}; expected {expected}")]
    InvalidConfig {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("steps_offset {steps_offset} with {steps} steps puts timestep {timestep} outside the training range 0 to {max}; use a smaller steps_offset")]
    TimestepOutOfRange {
        steps_offset: i64,
        steps: usize,
        timestep: i64,
        max: usize,
    },
    #[error("scheduler_config.json has {key} = {value}, which sampler {sampler} does not support; {supported}")]
    Unsupported {
        key: &'static str,
        value: String,
        sampler: SamplerKind,
        supported: &'static str,
    },
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
    /// `rng.randn(sample.len())` at exactly the point diffusers draws it.
    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &[f32],
        rng: &mut TorchGenerator,
    ) -> Vec<f32>;
}

/// Builds `kind` for `steps` inference steps from the model's scheduler config.
pub fn build_scheduler(
    kind: SamplerKind,
    schedule: Schedule,
    config: &SchedulerConfig,
    steps: usize,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let resolved = ResolvedConfig::new(kind, config)?;
    if schedule == Schedule::Karras && !kind.supports_karras() {
        return Err(SchedulerError::KarrasUnsupported(kind));
    }
    if steps == 0 || steps > resolved.num_train_timesteps {
        return Err(SchedulerError::Steps {
            steps,
            max: resolved.num_train_timesteps,
        });
    }
    let karras = schedule == Schedule::Karras;
    Ok(match kind {
        SamplerKind::Pndm => Box::new(pndm::Pndm::new(&resolved, steps)?),
        SamplerKind::Ddim => Box::new(ddim::Ddim::new(&resolved, steps)?),
        SamplerKind::Euler => Box::new(euler::Euler::new(&resolved, steps, karras)?),
        SamplerKind::EulerA => Box::new(euler_ancestral::EulerAncestral::new(&resolved, steps)?),
        SamplerKind::Heun => Box::new(heun::Heun::new(&resolved, steps, karras)?),
        SamplerKind::Lms => Box::new(lms::Lms::new(&resolved, steps, karras)?),
        SamplerKind::Dpmpp2m => {
            Box::new(dpmpp_2m::DpmSolverMultistep::new(&resolved, steps, karras)?)
        }
        SamplerKind::Unipc => Box::new(unipc::UniPc::new(&resolved, steps, karras)?),
    })
}

/// Refuses integer timesteps that would index past the ᾱ table (diffusers would raise an
/// `IndexError`, or silently wrap a negative index).
pub(crate) fn check_timesteps(
    timesteps: impl IntoIterator<Item = i64>,
    config: &ResolvedConfig,
    steps: usize,
) -> Result<(), SchedulerError> {
    let max = config.num_train_timesteps - 1;
    match timesteps.into_iter().find(|t| *t < 0 || *t > max as i64) {
        Some(timestep) => Err(SchedulerError::TimestepOutOfRange {
            steps_offset: config.steps_offset,
            steps,
            timestep,
            max,
        }),
        None => Ok(()),
    }
}

/// The constructor arguments a diffusers class ends up with for a given JSON: file values for
/// keys the class accepts, the class's own defaults for the rest.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedConfig {
    pub num_train_timesteps: usize,
    pub betas: BetaSchedule,
    pub spacing: Spacing,
    pub steps_offset: i64,
    /// PNDM/DDIM: ᾱ used after the last step is 1 instead of ᾱ_0.
    pub set_alpha_to_one: bool,
    /// DDIM/Heun: clamp the predicted x0 to ±this.
    pub clip_sample_range: Option<f32>,
    /// Karras end points from the config (Euler, Heun, DPM-Solver, UniPC read them).
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    /// DPM-Solver: use the "heun" second-order formula instead of "midpoint".
    pub dpm_heun: bool,
    /// UniPC settings.
    pub unipc_order: usize,
    pub unipc_bh1: bool,
    pub unipc_lower_order_final: bool,
    pub unipc_disable_corrector: Vec<usize>,
}

impl ResolvedConfig {
    pub(crate) fn new(kind: SamplerKind, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        use SamplerKind::*;
        let unsupported = |key: &'static str, value: String, supported: &'static str| {
            SchedulerError::Unsupported {
                key,
                value,
                sampler: kind,
                supported,
            }
        };

        // Keys every one of the eight classes accepts.
        let num_train_timesteps = c.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(SchedulerError::InvalidConfig {
                key: "num_train_timesteps",
                value: num_train_timesteps.to_string(),
                expected: "at least 2 (SD 1.5 uses 1000)",
            });
        }
        let (default_start, default_end) = if kind == Heun {
            (0.00085, 0.012)
        } else {
            (0.0001, 0.02)
        };
        let start = c.beta_start.unwrap_or(default_start);
        let end = c.beta_end.unwrap_or(default_end);
        let betas = match (
            &c.trained_betas,
            c.beta_schedule.as_deref().unwrap_or("linear"),
        ) {
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
            return Err(unsupported(
                "prediction_type",
                format!("{p:?}"),
                "only \"epsilon\" models (SD 1.x) are supported",
            ));
        }
        let default_spacing = if matches!(kind, Pndm | Ddim) {
            "leading"
        } else {
            "linspace"
        };
        let spacing = Spacing::parse(c.timestep_spacing.as_deref().unwrap_or(default_spacing))?;
        let steps_offset = c.steps_offset.unwrap_or(0);

        // Keys only some classes accept; the others never see them.
        let accepts = |classes: &[SamplerKind]| classes.contains(&kind);
        if accepts(&[Ddim, Euler, EulerA, Dpmpp2m, Unipc]) && c.rescale_betas_zero_snr == Some(true)
        {
            return Err(unsupported(
                "rescale_betas_zero_snr",
                "true".into(),
                "zero-terminal-SNR rescaling is not implemented",
            ));
        }
        if accepts(&[Ddim, Dpmpp2m, Unipc]) && c.thresholding == Some(true) {
            return Err(unsupported(
                "thresholding",
                "true".into(),
                "dynamic thresholding is not implemented",
            ));
        }
        if kind == Pndm && c.skip_prk_steps != Some(true) {
            let value = c
                .skip_prk_steps
                .map_or("absent (default false)".to_string(), |v| v.to_string());
            return Err(unsupported(
                "skip_prk_steps",
                value,
                "only PLMS (skip_prk_steps true, as in SD 1.x) is implemented",
            ));
        }
        let set_alpha_to_one = match kind {
            Pndm => c.set_alpha_to_one.unwrap_or(false),
            Ddim => c.set_alpha_to_one.unwrap_or(true),
            _ => false,
        };
        let clip_sample_range = match kind {
            Ddim | Heun => {
                let clip = c.clip_sample.unwrap_or(kind == Ddim);
                clip.then(|| c.clip_sample_range.unwrap_or(1.0) as f32)
            }
            _ => None,
        };
        for (key, flag, classes) in [
            (
                "use_exponential_sigmas",
                c.use_exponential_sigmas,
                &[Euler, Heun, Lms, Dpmpp2m, Unipc][..],
            ),
            (
                "use_beta_sigmas",
                c.use_beta_sigmas,
                &[Euler, Heun, Lms, Dpmpp2m, Unipc][..],
            ),
            ("use_lu_lambdas", c.use_lu_lambdas, &[Dpmpp2m][..]),
            ("use_flow_sigmas", c.use_flow_sigmas, &[Dpmpp2m, Unipc][..]),
        ] {
            if flag == Some(true) && accepts(classes) {
                return Err(unsupported(
                    key,
                    "true".into(),
                    "only the default and karras schedules are implemented",
                ));
            }
        }
        if accepts(&[Euler, Dpmpp2m, Unipc]) {
            if let Some(t) = c.final_sigmas_type.as_deref().filter(|t| *t != "zero") {
                return Err(unsupported(
                    "final_sigmas_type",
                    format!("{t:?}"),
                    "only \"zero\" is implemented",
                ));
            }
        }
        if kind == Euler {
            if let Some(t) = c.interpolation_type.as_deref().filter(|t| *t != "linear") {
                return Err(unsupported(
                    "interpolation_type",
                    format!("{t:?}"),
                    "only \"linear\" is implemented",
                ));
            }
        }
        // diffusers copies unknown keys into the config too, so `sigma_min`/`sigma_max` reach
        // every `_convert_to_karras` that looks them up (all but LMS's).
        let (sigma_min, sigma_max) = if kind == Lms {
            (None, None)
        } else {
            (c.sigma_min, c.sigma_max)
        };

        let mut dpm_heun = false;
        if kind == Dpmpp2m {
            if let Some(order) = c.solver_order.filter(|o| *o != 2) {
                return Err(unsupported(
                    "solver_order",
                    order.to_string(),
                    "dpmpp_2m is the second-order solver",
                ));
            }
            if let Some(a) = c
                .algorithm_type
                .as_deref()
                .filter(|a| !matches!(*a, "dpmsolver++" | "deis"))
            {
                return Err(unsupported(
                    "algorithm_type",
                    format!("{a:?}"),
                    "only \"dpmsolver++\" is implemented",
                ));
            }
            dpm_heun = c.solver_type.as_deref() == Some("heun");
            if c.lambda_min_clipped.is_some_and(f64::is_finite) {
                return Err(unsupported(
                    "lambda_min_clipped",
                    format!("{:?}", c.lambda_min_clipped),
                    "only -inf is implemented",
                ));
            }
            if let Some(v) = c.variance_type.as_deref() {
                return Err(unsupported(
                    "variance_type",
                    format!("{v:?}"),
                    "learned variance is not implemented",
                ));
            }
        }
        let (mut unipc_order, mut unipc_bh1, mut unipc_lower_order_final) = (2, false, true);
        let mut unipc_disable_corrector = Vec::new();
        if kind == Unipc {
            unipc_order = c.solver_order.unwrap_or(2);
            if !(1..=3).contains(&unipc_order) {
                return Err(unsupported(
                    "solver_order",
                    unipc_order.to_string(),
                    "unipc supports orders 1 to 3",
                ));
            }
            unipc_bh1 = c.solver_type.as_deref() == Some("bh1");
            unipc_lower_order_final = c.lower_order_final.unwrap_or(true);
            if c.predict_x0 == Some(false) {
                return Err(unsupported(
                    "predict_x0",
                    "false".into(),
                    "only the data-prediction (predict_x0) form is implemented",
                ));
            }
            unipc_disable_corrector = c.disable_corrector.clone().unwrap_or_default();
        }

        Ok(Self {
            num_train_timesteps,
            betas,
            spacing,
            steps_offset,
            set_alpha_to_one,
            clip_sample_range,
            sigma_min,
            sigma_max,
            dpm_heun,
            unipc_order,
            unipc_bh1,
            unipc_lower_order_final,
            unipc_disable_corrector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in SamplerKind::ALL {
            assert_eq!(kind.name().parse::<SamplerKind>().expect("name"), kind);
            assert_eq!(
                kind.a1111_name()
                    .parse::<SamplerKind>()
                    .expect("a1111 name"),
                kind
            );
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(
                serde_json::from_str::<SamplerKind>(&json).expect("deserialize"),
                kind
            );
        }
        assert_eq!(
            "euler-a".parse::<SamplerKind>().expect("dash"),
            SamplerKind::EulerA
        );
        let err = "k_euler".parse::<SamplerKind>().expect_err("unknown");
        assert!(err.to_string().contains("dpmpp_2m"), "{err}");
        assert_eq!(
            "Karras".parse::<Schedule>().expect("schedule"),
            Schedule::Karras
        );
        assert!("exponential".parse::<Schedule>().is_err());
    }

    #[test]
    fn absent_keys_take_the_new_class_defaults() {
        let c = SchedulerConfig::sd15();
        assert_eq!(
            ResolvedConfig::new(SamplerKind::Euler, &c)
                .expect("euler")
                .spacing,
            Spacing::Linspace
        );
        assert_eq!(
            ResolvedConfig::new(SamplerKind::Ddim, &c)
                .expect("ddim")
                .spacing,
            Spacing::Leading
        );
        let mut newer = c.clone();
        newer.timestep_spacing = Some("leading".into());
        assert_eq!(
            ResolvedConfig::new(SamplerKind::Euler, &newer)
                .expect("euler")
                .spacing,
            Spacing::Leading
        );
        // DDIM's own defaults clip and use ᾱ = 1 at the end; the SD file turns both off.
        let ddim_default =
            ResolvedConfig::new(SamplerKind::Ddim, &SchedulerConfig::default()).expect("ddim");
        assert!(ddim_default.set_alpha_to_one);
        assert_eq!(ddim_default.clip_sample_range, Some(1.0));
        let ddim_sd = ResolvedConfig::new(SamplerKind::Ddim, &c).expect("ddim");
        assert!(!ddim_sd.set_alpha_to_one);
        assert_eq!(ddim_sd.clip_sample_range, None);
    }

    #[test]
    fn parses_the_sd15_file_and_ignores_unknown_keys() {
        let text = r#"{"_class_name":"PNDMScheduler","_diffusers_version":"0.6.0","beta_end":0.012,
            "beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,
            "set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null,
            "clip_sample":false}"#;
        assert_eq!(
            SchedulerConfig::from_json(text).expect("parse"),
            SchedulerConfig::sd15()
        );
        assert!(SchedulerConfig::from_json("{").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let c = SchedulerConfig::sd15();
        let err = build_scheduler(SamplerKind::EulerA, Schedule::Karras, &c, 10)
            .err()
            .expect("karras");
        assert!(err.to_string().contains("euler_a"), "{err}");
        let err = build_scheduler(SamplerKind::Euler, Schedule::Default, &c, 0)
            .err()
            .expect("0 steps");
        assert!(err.to_string().contains("steps 0"), "{err}");
        let mut v = c.clone();
        v.prediction_type = Some("v_prediction".into());
        let err = build_scheduler(SamplerKind::Ddim, Schedule::Default, &v, 10)
            .err()
            .expect("v-pred");
        assert!(err.to_string().contains("v_prediction"), "{err}");
        let mut offset = c.clone();
        offset.steps_offset = Some(500);
        let err = build_scheduler(SamplerKind::Ddim, Schedule::Default, &offset, 2)
            .err()
            .expect("offset");
        assert!(err.to_string().contains("steps_offset 500"), "{err}");
        let mut s = c.clone();
        s.timestep_spacing = Some("uniform".into());
        let err = build_scheduler(SamplerKind::Euler, Schedule::Default, &s, 10)
            .err()
            .expect("spacing");
        assert!(err.to_string().contains("\"uniform\""), "{err}");
    }

    #[test]
    fn every_sampler_runs_and_counts_its_calls() {
        let c = SchedulerConfig::sd15();
        for kind in SamplerKind::ALL {
            let schedules: &[Schedule] = if kind.supports_karras() {
                &[Schedule::Default, Schedule::Karras]
            } else {
                &[Schedule::Default]
            };
            for &schedule in schedules {
                let steps = 7;
                let mut s = build_scheduler(kind, schedule, &c, steps).expect("build");
                let calls = s.timesteps().len();
                let expected = match kind {
                    SamplerKind::Pndm => steps + 1,
                    SamplerKind::Heun => 2 * steps - 1,
                    _ => steps,
                };
                assert_eq!(calls, expected, "{kind} {schedule}");
                let mut rng = TorchGenerator::new(0);
                let init = s.init_noise_sigma() as f32;
                let mut x: Vec<f32> = rng.randn(64).into_iter().map(|v| v * init).collect();
                for i in 0..calls {
                    let mut input = x.clone();
                    s.scale_model_input(&mut input, i);
                    let eps: Vec<f32> = input.iter().map(|v| v * 0.9).collect();
                    x = s.step(&eps, i, &x, &mut rng);
                    assert!(
                        x.iter().all(|v| v.is_finite()),
                        "{kind} {schedule} call {i}"
                    );
                }
            }
        }
    }
}
