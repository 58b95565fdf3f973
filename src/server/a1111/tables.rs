//! Owns A1111's sampler and scheduler lists as `/sdapi/v1` shows them, and how a request's
//! `sampler_name` + `scheduler` resolve (A1111 `sd_samplers.py:get_sampler_and_scheduler`).

use super::wire::*;
use crate::api::{Sampler, Schedule};

// ---------------------------------------------------------------------------------------------
// Samplers and schedulers (spec 2.4, 4.3, 4.4)
// ---------------------------------------------------------------------------------------------

/// One of A1111's samplers: its data (`sd_samplers_*.py`) and Easel's sampler for it.
#[derive(Debug, Clone, PartialEq)]
pub struct A1111Sampler {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub options: &'static [(&'static str, &'static str)],
    /// `None`: Easel has no sampler for it (the door refuses it).
    pub easel: Option<Sampler>,
    /// k-diffusion's (sigma schedules apply); the rest are A1111's timestep samplers.
    pub kdiffusion: bool,
    /// Whether its function takes `eta`, and the default eta A1111 runs it with.
    pub eta: Option<f64>,
}

impl A1111Sampler {
    /// The scheduler `Automatic` means for this sampler (`options["scheduler"]`).
    pub fn default_scheduler(&self) -> Option<&'static str> {
        self.options.iter().find(|(k, _)| *k == "scheduler").map(|(_, v)| *v)
    }
}

const fn kd(
    name: &'static str,
    aliases: &'static [&'static str],
    options: &'static [(&'static str, &'static str)],
    easel: Sampler,
    eta: Option<f64>,
) -> A1111Sampler {
    A1111Sampler { name, aliases, options, easel: Some(easel), kdiffusion: true, eta }
}

/// In `/samplers` order (k-diffusion, then timesteps, then LCM).
pub static A1111_SAMPLERS: [A1111Sampler; 20] = [
    kd("DPM++ 2M", &["k_dpmpp_2m"], &[("scheduler", "karras")], Sampler::Dpmpp2m, None),
    kd(
        "DPM++ SDE",
        &["k_dpmpp_sde"],
        &[("scheduler", "karras"), ("second_order", "True"), ("brownian_noise", "True")],
        Sampler::DpmppSde,
        Some(1.0),
    ),
    kd("DPM++ 2M SDE", &["k_dpmpp_2m_sde"], &[("scheduler", "exponential"), ("brownian_noise", "True")], Sampler::Dpmpp2mSde, Some(1.0)),
    kd(
        "DPM++ 2M SDE Heun",
        &["k_dpmpp_2m_sde_heun"],
        &[("scheduler", "exponential"), ("brownian_noise", "True"), ("solver_type", "heun")],
        Sampler::Dpmpp2mSdeHeun,
        Some(1.0),
    ),
    kd(
        "DPM++ 2S a",
        &["k_dpmpp_2s_a"],
        &[("scheduler", "karras"), ("uses_ensd", "True"), ("second_order", "True")],
        Sampler::Dpmpp2sA,
        Some(1.0),
    ),
    kd(
        "DPM++ 3M SDE",
        &["k_dpmpp_3m_sde"],
        &[("scheduler", "exponential"), ("discard_next_to_last_sigma", "True"), ("brownian_noise", "True")],
        Sampler::Dpmpp3mSde,
        Some(1.0),
    ),
    kd("Euler a", &["k_euler_a", "k_euler_ancestral"], &[("uses_ensd", "True")], Sampler::EulerA, Some(1.0)),
    kd("Euler", &["k_euler"], &[], Sampler::Euler, None),
    kd("LMS", &["k_lms"], &[], Sampler::Lms, None),
    kd("Heun", &["k_heun"], &[("second_order", "True")], Sampler::Heun, None),
    kd(
        "DPM2",
        &["k_dpm_2"],
        &[("scheduler", "karras"), ("discard_next_to_last_sigma", "True"), ("second_order", "True")],
        Sampler::Dpm2,
        None,
    ),
    kd(
        "DPM2 a",
        &["k_dpm_2_a"],
        &[("scheduler", "karras"), ("discard_next_to_last_sigma", "True"), ("uses_ensd", "True"), ("second_order", "True")],
        Sampler::Dpm2A,
        Some(1.0),
    ),
    kd("DPM fast", &["k_dpm_fast"], &[("uses_ensd", "True")], Sampler::DpmFast, Some(1.0)),
    kd("DPM adaptive", &["k_dpm_ad"], &[("uses_ensd", "True")], Sampler::DpmAdaptive, Some(1.0)),
    kd("Restart", &["restart"], &[("scheduler", "karras"), ("second_order", "True")], Sampler::Restart, None),
    A1111Sampler { name: "DDIM", aliases: &["ddim"], options: &[], easel: Some(Sampler::Ddim), kdiffusion: false, eta: Some(0.0) },
    A1111Sampler {
        name: "DDIM CFG++",
        aliases: &["ddim_cfgpp"],
        options: &[],
        easel: Some(Sampler::DdimCfgPp),
        kdiffusion: false,
        eta: Some(0.0),
    },
    A1111Sampler { name: "PLMS", aliases: &["plms"], options: &[], easel: Some(Sampler::Pndm), kdiffusion: false, eta: None },
    A1111Sampler { name: "UniPC", aliases: &["unipc"], options: &[], easel: Some(Sampler::Unipc), kdiffusion: false, eta: None },
    A1111Sampler { name: "LCM", aliases: &["k_lcm"], options: &[], easel: Some(Sampler::Lcm), kdiffusion: true, eta: None },
];

/// One of A1111's schedulers (`sd_schedulers.py:schedulers`) and Easel's schedule for it.
#[derive(Debug, Clone, PartialEq)]
pub struct A1111Scheduler {
    pub name: &'static str,
    pub label: &'static str,
    pub aliases: &'static [&'static str],
    pub default_rho: f64,
    pub need_inner_model: bool,
    pub easel: Schedule,
}

const fn sch(name: &'static str, label: &'static str, default_rho: f64, need_inner_model: bool, easel: Schedule) -> A1111Scheduler {
    A1111Scheduler { name, label, aliases: &[], default_rho, need_inner_model, easel }
}

/// In `/schedulers` order; the first is Automatic.
pub static A1111_SCHEDULERS: [A1111Scheduler; 12] = [
    sch("automatic", "Automatic", -1.0, false, Schedule::Default),
    sch("uniform", "Uniform", -1.0, true, Schedule::Uniform),
    sch("karras", "Karras", 7.0, false, Schedule::Karras),
    sch("exponential", "Exponential", -1.0, false, Schedule::Exponential),
    sch("polyexponential", "Polyexponential", 1.0, false, Schedule::Polyexponential),
    A1111Scheduler {
        name: "sgm_uniform",
        label: "SGM Uniform",
        aliases: &["SGMUniform"],
        default_rho: -1.0,
        need_inner_model: true,
        easel: Schedule::SgmUniform,
    },
    sch("kl_optimal", "KL Optimal", -1.0, false, Schedule::KlOptimal),
    sch("align_your_steps", "Align Your Steps", -1.0, false, Schedule::AlignYourSteps),
    sch("simple", "Simple", -1.0, true, Schedule::Simple),
    sch("normal", "Normal", -1.0, true, Schedule::Normal),
    sch("ddim", "DDIM", -1.0, true, Schedule::DdimUniform),
    sch("beta", "Beta", -1.0, true, Schedule::Beta),
];

/// `GET /samplers`: A1111's samplers Easel runs, in A1111's order.
pub fn samplers_list() -> Vec<SamplerItem> {
    A1111_SAMPLERS
        .iter()
        .filter(|s| s.easel.is_some())
        .map(|s| SamplerItem {
            name: s.name.into(),
            aliases: s.aliases.iter().map(|a| a.to_string()).collect(),
            options: s.options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
        .collect()
}

/// `GET /schedulers`.
pub fn schedulers_list() -> Vec<SchedulerItem> {
    A1111_SCHEDULERS
        .iter()
        .map(|s| SchedulerItem {
            name: s.name.into(),
            label: s.label.into(),
            aliases: (!s.aliases.is_empty()).then(|| s.aliases.iter().map(|a| a.to_string()).collect()),
            default_rho: Some(s.default_rho),
            need_inner_model: Some(s.need_inner_model),
        })
        .collect()
}

/// `GET /upscalers`: the two pixel upscalers the hires fix can use (`None` is a plain Lanczos
/// resize in A1111's `images.resize_image`).
pub fn upscalers_list() -> Vec<UpscalerItem> {
    ["None", "Lanczos"]
        .into_iter()
        .map(|name| UpscalerItem { name: name.into(), model_name: None, model_path: None, model_url: None, scale: Some(4.0) })
        .collect()
}

/// `GET /latent-upscale-modes`.
pub fn latent_upscale_modes() -> Vec<LatentUpscaleModeItem> {
    crate::api::Upscaler::ALL
        .into_iter()
        .filter(|u| u.is_latent() && u.in_a1111())
        .map(|u| LatentUpscaleModeItem { name: u.a1111_name().into() })
        .collect()
}

/// A sampler and scheduler as a request resolves them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerChoice {
    pub sampler: &'static A1111Sampler,
    /// The schedule that runs (A1111's `p.scheduler`; Automatic = the sampler's default).
    pub scheduler: &'static A1111Scheduler,
    /// False when the name matched nothing and A1111's fallback (its first sampler) was taken;
    /// the handler logs it.
    pub known: bool,
}

impl SamplerChoice {
    /// Easel's `schedule`: `None` for Automatic or the sampler's own default, and for A1111's
    /// timestep samplers, which ignore the scheduler.
    pub fn easel_schedule(&self) -> Option<&'static str> {
        if !self.sampler.kdiffusion {
            return None;
        }
        let automatic = self.scheduler.name == "automatic" || self.sampler.default_scheduler() == Some(self.scheduler.name);
        (!automatic).then(|| self.scheduler.easel.name())
    }

    /// The `Schedule type` A1111 records in `extra_generation_params`: the label of the schedule
    /// a k-diffusion sampler actually ran (none for Automatic without a default).
    pub fn schedule_label(&self) -> Option<&'static str> {
        if !self.sampler.kdiffusion {
            return None;
        }
        if self.scheduler.name != "automatic" {
            return Some(self.scheduler.label);
        }
        let default = self.sampler.default_scheduler()?;
        A1111_SCHEDULERS.iter().find(|s| s.name == default).map(|s| s.label)
    }
}

pub(super) fn find_scheduler(text: &str) -> Option<&'static A1111Scheduler> {
    let t = text.trim();
    A1111_SCHEDULERS
        .iter()
        .find(|s| s.name == t || s.label == t)
        .or_else(|| {
            A1111_SCHEDULERS.iter().find(|s| {
                s.name.eq_ignore_ascii_case(t) || s.label.eq_ignore_ascii_case(t) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(t))
            })
        })
        .or_else(|| Schedule::parse(t).and_then(|e| A1111_SCHEDULERS.iter().find(|s| s.easel == e)))
}

fn find_sampler(name: &str) -> Option<&'static A1111Sampler> {
    A1111_SAMPLERS
        .iter()
        .find(|s| s.name == name)
        .or_else(|| {
            A1111_SAMPLERS.iter().find(|s| s.name.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
        })
        .or_else(|| Sampler::parse(name).and_then(|e| A1111_SAMPLERS.iter().find(|s| s.easel == Some(e))))
}

/// `sd_samplers.py:get_sampler_and_scheduler` as the API handler uses it: the name from
/// `sampler_name`, else `sampler_index`, else A1111's first sampler; a trailing scheduler label,
/// name or alias (`"DPM++ 2M Karras"`) split off; an explicit `scheduler` wins over that suffix;
/// unknown names fall back silently (sampler: the first one; scheduler: Automatic).
pub fn resolve_sampler(sampler_name: Option<&str>, sampler_index: Option<&str>, scheduler: Option<&str>) -> SamplerChoice {
    fn non_empty(s: Option<&str>) -> Option<&str> {
        s.map(str::trim).filter(|s| !s.is_empty())
    }
    let mut name = non_empty(sampler_name).or(non_empty(sampler_index)).unwrap_or(A1111_SAMPLERS[0].name);
    let mut from_suffix = None;
    for candidate in &A1111_SCHEDULERS {
        let options = [candidate.label, candidate.name].into_iter().chain(candidate.aliases.iter().copied());
        for option in options {
            if let Some(rest) = name.strip_suffix(option).and_then(|r| r.strip_suffix(' ')) {
                from_suffix = Some(candidate);
                name = rest;
                break;
            }
        }
    }
    let found = find_sampler(name);
    let scheduler = match non_empty(scheduler) {
        Some(text) => find_scheduler(text).unwrap_or(&A1111_SCHEDULERS[0]),
        None => from_suffix.unwrap_or(&A1111_SCHEDULERS[0]),
    };
    SamplerChoice { sampler: found.unwrap_or(&A1111_SAMPLERS[0]), scheduler, known: found.is_some() }
}
