//! The samplers and schedules a request can name: each variant owns its Easel name (the wire and
//! CLI spelling), its AUTOMATIC1111 display name, its default schedule and its parsing. The
//! engine builds its schedulers from these enums; every list shown to users derives from [`Sampler::ALL`].

use serde::{Deserialize, Serialize};

/// A denoising sampler. Serialized as its Easel name (`"dpmpp_2m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sampler {
    /// diffusers `PNDMScheduler` with `skip_prk_steps` (PLMS); N + 1 UNet calls.
    #[serde(rename = "pndm")]
    Pndm,
    /// diffusers `DDIMScheduler`, eta 0.
    #[serde(rename = "ddim")]
    Ddim,
    /// diffusers `EulerDiscreteScheduler`.
    #[serde(rename = "euler")]
    Euler,
    /// diffusers `EulerAncestralDiscreteScheduler`; draws noise every step.
    #[serde(rename = "euler_a")]
    EulerA,
    /// diffusers `HeunDiscreteScheduler`; 2N − 1 UNet calls.
    #[serde(rename = "heun")]
    Heun,
    /// diffusers `LMSDiscreteScheduler` (order 4).
    #[serde(rename = "lms")]
    Lms,
    /// diffusers `DPMSolverMultistepScheduler` (DPM-Solver++ 2M, midpoint).
    #[serde(rename = "dpmpp_2m")]
    Dpmpp2m,
    /// diffusers `UniPCMultistepScheduler` (bh2, order 2).
    #[serde(rename = "unipc")]
    Unipc,
}

impl Sampler {
    /// Every sampler, in the order lists show them.
    pub const ALL: [Sampler; 8] =
        [Sampler::Pndm, Sampler::Ddim, Sampler::Euler, Sampler::EulerA, Sampler::Heun, Sampler::Lms, Sampler::Dpmpp2m, Sampler::Unipc];

    /// What a request gets when it names no sampler.
    pub const DEFAULT: Sampler = Sampler::Dpmpp2m;

    /// The Easel name: requests, the CLI, the job record.
    pub fn name(self) -> &'static str {
        match self {
            Sampler::Pndm => "pndm",
            Sampler::Ddim => "ddim",
            Sampler::Euler => "euler",
            Sampler::EulerA => "euler_a",
            Sampler::Heun => "heun",
            Sampler::Lms => "lms",
            Sampler::Dpmpp2m => "dpmpp_2m",
            Sampler::Unipc => "unipc",
        }
    }

    /// The name AUTOMATIC1111 shows (and writes as `Sampler` in its infotext).
    pub fn a1111_name(self) -> &'static str {
        match self {
            Sampler::Pndm => "PLMS",
            Sampler::Ddim => "DDIM",
            Sampler::Euler => "Euler",
            Sampler::EulerA => "Euler a",
            Sampler::Heun => "Heun",
            Sampler::Lms => "LMS",
            Sampler::Dpmpp2m => "DPM++ 2M",
            Sampler::Unipc => "UniPC",
        }
    }

    /// The schedule used when the request names none: Karras for DPM++ 2M (as A1111 ≥ 1.9
    /// does), the diffusers class's own spacing otherwise.
    pub fn default_schedule(self) -> Schedule {
        match self {
            Sampler::Dpmpp2m => Schedule::Karras,
            _ => Schedule::Default,
        }
    }

    /// Whether the sampler's diffusers class has `use_karras_sigmas`.
    pub fn supports_karras(self) -> bool {
        matches!(self, Sampler::Euler | Sampler::Heun | Sampler::Lms | Sampler::Dpmpp2m | Sampler::Unipc)
    }

    /// The schedules this sampler can run, default first.
    pub fn schedules(self) -> Vec<Schedule> {
        Schedule::ALL.into_iter().filter(|s| *s == Schedule::Default || self.supports_karras()).collect()
    }

    /// Reads a sampler name: the Easel name (`euler_a`, also `euler-a`) or the A1111 display name
    /// (`Euler a`, `DPM++ 2M`), ignoring ASCII case and surrounding blanks.
    pub fn parse(text: &str) -> Option<Sampler> {
        let wanted = text.trim();
        let dashed = wanted.replace('-', "_");
        Sampler::ALL.into_iter().find(|s| {
            s.name().eq_ignore_ascii_case(wanted) || s.name().eq_ignore_ascii_case(&dashed) || s.a1111_name().eq_ignore_ascii_case(wanted)
        })
    }

    /// The Easel names, comma-separated, for messages that list what is accepted.
    pub fn names() -> String {
        Sampler::ALL.map(Sampler::name).join(", ")
    }

    /// The Easel names of the samplers that have a Karras schedule, comma-separated.
    pub fn karras_names() -> String {
        Sampler::ALL.into_iter().filter(|s| s.supports_karras()).map(Sampler::name).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which σ schedule spaces the steps. Serialized as its name (`"karras"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Schedule {
    /// The diffusers class's own spacing.
    #[serde(rename = "default")]
    Default,
    /// Karras et al. σ (`use_karras_sigmas=True`).
    #[serde(rename = "karras")]
    Karras,
}

impl Schedule {
    pub const ALL: [Schedule; 2] = [Schedule::Default, Schedule::Karras];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Default => "default",
            Schedule::Karras => "karras",
        }
    }

    /// AUTOMATIC1111's `Schedule type` value for it.
    pub fn a1111_name(self) -> &'static str {
        match self {
            Schedule::Default => "Automatic",
            Schedule::Karras => "Karras",
        }
    }

    /// Reads a schedule name, ignoring ASCII case and surrounding blanks.
    pub fn parse(text: &str) -> Option<Schedule> {
        let wanted = text.trim();
        Schedule::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(wanted))
    }

    /// The names, comma-separated, for messages that list what is accepted.
    pub fn names() -> String {
        Schedule::ALL.map(Schedule::name).join(", ")
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse_and_serde() {
        for sampler in Sampler::ALL {
            assert_eq!(Sampler::parse(sampler.name()), Some(sampler));
            assert_eq!(Sampler::parse(sampler.a1111_name()), Some(sampler));
            let json = serde_json::to_string(&sampler).unwrap();
            assert_eq!(json, format!("\"{}\"", sampler.name()));
            assert_eq!(serde_json::from_str::<Sampler>(&json).unwrap(), sampler);
        }
        for schedule in Schedule::ALL {
            assert_eq!(Schedule::parse(schedule.name()), Some(schedule));
            assert_eq!(serde_json::to_string(&schedule).unwrap(), format!("\"{}\"", schedule.name()));
        }
    }

    #[test]
    fn a1111_spellings_and_case_are_accepted_and_strangers_are_not() {
        assert_eq!(Sampler::parse("Euler a"), Some(Sampler::EulerA));
        assert_eq!(Sampler::parse(" DPM++ 2M "), Some(Sampler::Dpmpp2m));
        assert_eq!(Sampler::parse("EULER-A"), Some(Sampler::EulerA));
        assert_eq!(Sampler::parse("k_euler"), None);
        assert_eq!(Schedule::parse("Karras"), Some(Schedule::Karras));
        assert_eq!(Schedule::parse("exponential"), None);
    }

    #[test]
    fn only_sigma_samplers_offer_karras() {
        assert_eq!(Sampler::karras_names(), "euler, heun, lms, dpmpp_2m, unipc");
        assert_eq!(Sampler::Ddim.schedules(), [Schedule::Default]);
        assert_eq!(Sampler::Euler.schedules(), [Schedule::Default, Schedule::Karras]);
        assert!(Sampler::ALL.iter().all(|s| s.supports_karras() || s.default_schedule() == Schedule::Default));
    }
}
