//! The samplers and schedules a request can name: each variant owns its Easel name (the wire and
//! CLI spelling), its AUTOMATIC1111 and ComfyUI names, its default schedule, its parsing, and the
//! compatibility modes that run it (diffusers' schedulers in the `diffusers` mode, k-diffusion's
//! samplers in the `a1111` and `comfyui` modes). The engine builds its samplers from these enums;
//! every list shown to users derives from [`Sampler::ALL`] and [`Schedule::ALL`].

use serde::{Deserialize, Serialize};

use super::compat::Compat;

/// The order of A1111's UniPC (its `uni_pc_order` default); it needs at least this many steps.
pub const A1111_UNIPC_ORDER: usize = 3;

/// A denoising sampler. Serialized as its Easel name (`"dpmpp_2m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sampler {
    /// diffusers `PNDMScheduler` with `skip_prk_steps` (PLMS); N + 1 UNet calls.
    #[serde(rename = "pndm")]
    Pndm,
    /// diffusers `DDIMScheduler`, eta 0; A1111's DDIM timestep sampler; ComfyUI's `ddim` (its
    /// Euler).
    #[serde(rename = "ddim")]
    Ddim,
    /// A1111's DDIM CFG++ timestep sampler (eta 0).
    #[serde(rename = "ddim_cfg_pp")]
    DdimCfgPp,
    /// diffusers `EulerDiscreteScheduler`; k-diffusion `sample_euler`.
    #[serde(rename = "euler")]
    Euler,
    /// diffusers `EulerAncestralDiscreteScheduler`; k-diffusion `sample_euler_ancestral`.
    #[serde(rename = "euler_a")]
    EulerA,
    /// diffusers `HeunDiscreteScheduler`; k-diffusion `sample_heun`. 2N − 1 UNet calls.
    #[serde(rename = "heun")]
    Heun,
    /// k-diffusion `sample_dpm_2`; 2N − 1 UNet calls.
    #[serde(rename = "dpm_2")]
    Dpm2,
    /// k-diffusion `sample_dpm_2_ancestral`.
    #[serde(rename = "dpm_2_ancestral")]
    Dpm2A,
    /// diffusers `LMSDiscreteScheduler`; k-diffusion `sample_lms` (order 4).
    #[serde(rename = "lms")]
    Lms,
    /// diffusers `DPMSolverMultistepScheduler` (DPM-Solver++ 2M, midpoint); k-diffusion
    /// `sample_dpmpp_2m`.
    #[serde(rename = "dpmpp_2m")]
    Dpmpp2m,
    /// k-diffusion `sample_dpmpp_2s_ancestral`.
    #[serde(rename = "dpmpp_2s_ancestral")]
    Dpmpp2sA,
    /// k-diffusion `sample_dpmpp_sde` (Brownian-tree noise).
    #[serde(rename = "dpmpp_sde")]
    DpmppSde,
    /// k-diffusion `sample_dpmpp_2m_sde`, midpoint solver (Brownian-tree noise).
    #[serde(rename = "dpmpp_2m_sde")]
    Dpmpp2mSde,
    /// k-diffusion `sample_dpmpp_2m_sde`, Heun solver.
    #[serde(rename = "dpmpp_2m_sde_heun")]
    Dpmpp2mSdeHeun,
    /// k-diffusion `sample_dpmpp_3m_sde` (Brownian-tree noise).
    #[serde(rename = "dpmpp_3m_sde")]
    Dpmpp3mSde,
    /// ComfyUI's `sample_euler_cfg_pp` (CFG++: the slope from the unconditional prediction).
    #[serde(rename = "euler_cfg_pp")]
    EulerCfgPp,
    /// ComfyUI's `sample_euler_ancestral_cfg_pp`.
    #[serde(rename = "euler_ancestral_cfg_pp")]
    EulerACfgPp,
    /// ComfyUI's `sample_dpmpp_2m_cfg_pp`.
    #[serde(rename = "dpmpp_2m_cfg_pp")]
    Dpmpp2mCfgPp,
    /// ComfyUI's `sample_dpmpp_2s_ancestral_cfg_pp`.
    #[serde(rename = "dpmpp_2s_ancestral_cfg_pp")]
    Dpmpp2sACfgPp,
    /// ComfyUI's `sample_gradient_estimation` (Euler with a slope-change correction).
    #[serde(rename = "gradient_estimation")]
    GradientEstimation,
    /// ComfyUI's `sample_gradient_estimation` in its CFG++ form.
    #[serde(rename = "gradient_estimation_cfg_pp")]
    GradientEstimationCfgPp,
    /// ComfyUI's `sample_res_multistep` (second-order exponential multistep).
    #[serde(rename = "res_multistep")]
    ResMultistep,
    /// ComfyUI's `sample_res_multistep_cfg_pp`.
    #[serde(rename = "res_multistep_cfg_pp")]
    ResMultistepCfgPp,
    /// ComfyUI's `sample_res_multistep_ancestral`.
    #[serde(rename = "res_multistep_ancestral")]
    ResMultistepA,
    /// ComfyUI's `sample_res_multistep_ancestral_cfg_pp`.
    #[serde(rename = "res_multistep_ancestral_cfg_pp")]
    ResMultistepACfgPp,
    /// ComfyUI's `sample_heunpp2` (Heun with a third evaluation).
    #[serde(rename = "heunpp2")]
    Heunpp2,
    /// ComfyUI's `sample_ipndm` (order-4 multistep).
    #[serde(rename = "ipndm")]
    Ipndm,
    /// ComfyUI's `sample_ipndm_v` (iPNDM for variable step sizes).
    #[serde(rename = "ipndm_v")]
    IpndmV,
    /// ComfyUI's `sample_ddpm` (ancestral DDPM steps).
    #[serde(rename = "ddpm")]
    Ddpm,
    /// ComfyUI's `sample_lcm` (for latent-consistency models).
    #[serde(rename = "lcm")]
    Lcm,
    /// diffusers `UniPCMultistepScheduler` (bh2, order 2); ComfyUI's `uni_pc_bh2` (order 3).
    #[serde(rename = "unipc")]
    Unipc,
    /// ComfyUI's `sample_deis` (DEIS multistep, order 3, numerically integrated weights).
    #[serde(rename = "deis")]
    Deis,
    /// ComfyUI's `sample_er_sde` (ER-SDE-Solver-3, stochastic).
    #[serde(rename = "er_sde")]
    ErSde,
    /// ComfyUI's `sample_seeds_2` (SEEDS-2, two evaluations a step, stochastic).
    #[serde(rename = "seeds_2")]
    Seeds2,
    /// ComfyUI's `sample_seeds_3` (SEEDS-3, three evaluations a step, stochastic).
    #[serde(rename = "seeds_3")]
    Seeds3,
    /// ComfyUI's `uni_pc` (UniPC with B(h) = h, order 3).
    #[serde(rename = "uni_pc")]
    UnipcBh1,
    /// k-diffusion `sample_dpm_fast` (DPM-Solver, fixed steps of order 3).
    #[serde(rename = "dpm_fast")]
    DpmFast,
    /// k-diffusion `sample_dpm_adaptive` (DPM-Solver-23 with step-size control; the step count
    /// is chosen by the error controller).
    #[serde(rename = "dpm_adaptive")]
    DpmAdaptive,
    /// A1111's Restart sampler (Heun with restarts from 20 steps on).
    #[serde(rename = "restart")]
    Restart,
    /// ComfyUI's `sample_sa_solver` (SA-Solver: stochastic Adams predictor-corrector).
    #[serde(rename = "sa_solver")]
    SaSolver,
    /// ComfyUI's `sample_sa_solver_pece` (SA-Solver evaluating again after each correction).
    #[serde(rename = "sa_solver_pece")]
    SaSolverPece,
}

impl Sampler {
    /// Every sampler, in the order lists show them.
    pub const ALL: [Sampler; 41] = [
        Sampler::Pndm,
        Sampler::Ddim,
        Sampler::DdimCfgPp,
        Sampler::Euler,
        Sampler::EulerA,
        Sampler::Heun,
        Sampler::Dpm2,
        Sampler::Dpm2A,
        Sampler::Lms,
        Sampler::DpmFast,
        Sampler::DpmAdaptive,
        Sampler::Dpmpp2m,
        Sampler::Dpmpp2sA,
        Sampler::DpmppSde,
        Sampler::Dpmpp2mSde,
        Sampler::Dpmpp2mSdeHeun,
        Sampler::Dpmpp3mSde,
        Sampler::EulerCfgPp,
        Sampler::EulerACfgPp,
        Sampler::Dpmpp2mCfgPp,
        Sampler::Dpmpp2sACfgPp,
        Sampler::GradientEstimation,
        Sampler::GradientEstimationCfgPp,
        Sampler::ResMultistep,
        Sampler::ResMultistepCfgPp,
        Sampler::ResMultistepA,
        Sampler::ResMultistepACfgPp,
        Sampler::Heunpp2,
        Sampler::Ipndm,
        Sampler::IpndmV,
        Sampler::Deis,
        Sampler::ErSde,
        Sampler::Seeds2,
        Sampler::Seeds3,
        Sampler::SaSolver,
        Sampler::SaSolverPece,
        Sampler::Ddpm,
        Sampler::Lcm,
        Sampler::Restart,
        Sampler::Unipc,
        Sampler::UnipcBh1,
    ];

    /// What a request gets when it names no sampler.
    pub const DEFAULT: Sampler = Sampler::Dpmpp2m;

    /// The Easel name: requests, the CLI, the job record.
    pub fn name(self) -> &'static str {
        match self {
            Sampler::Pndm => "pndm",
            Sampler::Ddim => "ddim",
            Sampler::DdimCfgPp => "ddim_cfg_pp",
            Sampler::Euler => "euler",
            Sampler::EulerA => "euler_a",
            Sampler::Heun => "heun",
            Sampler::Dpm2 => "dpm_2",
            Sampler::Dpm2A => "dpm_2_ancestral",
            Sampler::Lms => "lms",
            Sampler::Dpmpp2m => "dpmpp_2m",
            Sampler::Dpmpp2sA => "dpmpp_2s_ancestral",
            Sampler::DpmppSde => "dpmpp_sde",
            Sampler::Dpmpp2mSde => "dpmpp_2m_sde",
            Sampler::Dpmpp2mSdeHeun => "dpmpp_2m_sde_heun",
            Sampler::Dpmpp3mSde => "dpmpp_3m_sde",
            Sampler::EulerCfgPp => "euler_cfg_pp",
            Sampler::EulerACfgPp => "euler_ancestral_cfg_pp",
            Sampler::Dpmpp2mCfgPp => "dpmpp_2m_cfg_pp",
            Sampler::Dpmpp2sACfgPp => "dpmpp_2s_ancestral_cfg_pp",
            Sampler::GradientEstimation => "gradient_estimation",
            Sampler::GradientEstimationCfgPp => "gradient_estimation_cfg_pp",
            Sampler::ResMultistep => "res_multistep",
            Sampler::ResMultistepCfgPp => "res_multistep_cfg_pp",
            Sampler::ResMultistepA => "res_multistep_ancestral",
            Sampler::ResMultistepACfgPp => "res_multistep_ancestral_cfg_pp",
            Sampler::Heunpp2 => "heunpp2",
            Sampler::Ipndm => "ipndm",
            Sampler::IpndmV => "ipndm_v",
            Sampler::Ddpm => "ddpm",
            Sampler::Lcm => "lcm",
            Sampler::Unipc => "unipc",
            Sampler::UnipcBh1 => "uni_pc",
            Sampler::Deis => "deis",
            Sampler::ErSde => "er_sde",
            Sampler::Seeds2 => "seeds_2",
            Sampler::Seeds3 => "seeds_3",
            Sampler::DpmFast => "dpm_fast",
            Sampler::DpmAdaptive => "dpm_adaptive",
            Sampler::Restart => "restart",
            Sampler::SaSolver => "sa_solver",
            Sampler::SaSolverPece => "sa_solver_pece",
        }
    }

    /// The name AUTOMATIC1111 shows (and writes as `Sampler` in its infotext); Easel's name for
    /// the ComfyUI samplers A1111 does not have.
    pub fn a1111_name(self) -> &'static str {
        match self {
            Sampler::Pndm => "PLMS",
            Sampler::Ddim => "DDIM",
            Sampler::DdimCfgPp => "DDIM CFG++",
            Sampler::Euler => "Euler",
            Sampler::EulerA => "Euler a",
            Sampler::Heun => "Heun",
            Sampler::Dpm2 => "DPM2",
            Sampler::Dpm2A => "DPM2 a",
            Sampler::Lms => "LMS",
            Sampler::Dpmpp2m => "DPM++ 2M",
            Sampler::Dpmpp2sA => "DPM++ 2S a",
            Sampler::DpmppSde => "DPM++ SDE",
            Sampler::Dpmpp2mSde => "DPM++ 2M SDE",
            Sampler::Dpmpp2mSdeHeun => "DPM++ 2M SDE Heun",
            Sampler::Dpmpp3mSde => "DPM++ 3M SDE",
            Sampler::Lcm => "LCM",
            Sampler::DpmFast => "DPM fast",
            Sampler::DpmAdaptive => "DPM adaptive",
            Sampler::Restart => "Restart",
            Sampler::Heunpp2
            | Sampler::Ipndm
            | Sampler::IpndmV
            | Sampler::Ddpm
            | Sampler::EulerCfgPp
            | Sampler::EulerACfgPp
            | Sampler::Dpmpp2mCfgPp
            | Sampler::Dpmpp2sACfgPp
            | Sampler::GradientEstimation
            | Sampler::GradientEstimationCfgPp
            | Sampler::ResMultistep
            | Sampler::ResMultistepCfgPp
            | Sampler::ResMultistepA
            | Sampler::ResMultistepACfgPp
            | Sampler::UnipcBh1
            | Sampler::Deis
            | Sampler::ErSde
            | Sampler::Seeds2
            | Sampler::Seeds3
            | Sampler::SaSolver
            | Sampler::SaSolverPece => self.name(),
            Sampler::Unipc => "UniPC",
        }
    }

    /// ComfyUI's `sampler_name`, where ComfyUI has the sampler: Easel's name, but for the two it
    /// spells otherwise.
    pub fn comfyui_name(self) -> Option<&'static str> {
        match self {
            Sampler::Pndm | Sampler::Restart | Sampler::DdimCfgPp => None,
            Sampler::EulerA => Some("euler_ancestral"),
            Sampler::Unipc => Some("uni_pc_bh2"),
            _ => Some(self.name()),
        }
    }

    /// Whether `compat` runs this sampler: diffusers' schedulers in the diffusers mode,
    /// k-diffusion's samplers in the A1111 and ComfyUI modes.
    pub fn runs_in(self, compat: Compat) -> bool {
        let kdiffusion = matches!(
            self,
            Sampler::Euler
                | Sampler::EulerA
                | Sampler::Heun
                | Sampler::Dpm2
                | Sampler::Dpm2A
                | Sampler::Lms
                | Sampler::Dpmpp2m
                | Sampler::Dpmpp2sA
                | Sampler::DpmppSde
                | Sampler::Dpmpp2mSde
                | Sampler::Dpmpp2mSdeHeun
                | Sampler::Dpmpp3mSde
                | Sampler::DpmFast
                | Sampler::DpmAdaptive
        );
        let comfyui_only = matches!(
            self,
            Sampler::Heunpp2
                | Sampler::Ipndm
                | Sampler::IpndmV
                | Sampler::Ddpm
                | Sampler::Lcm
                | Sampler::GradientEstimation
                | Sampler::ResMultistep
                | Sampler::ResMultistepA
                | Sampler::UnipcBh1
                | Sampler::Deis
                | Sampler::ErSde
                | Sampler::Seeds2
                | Sampler::Seeds3
                | Sampler::SaSolver
                | Sampler::SaSolverPece
        ) || self.cfg_pp();
        match compat {
            Compat::Diffusers => !kdiffusion_only(self) && !comfyui_only && self != Sampler::DdimCfgPp,
            // A1111's LCM runs k-diffusion's loop over its own LCM denoiser.
            Compat::A1111 => kdiffusion || matches!(self, Sampler::Restart | Sampler::Lcm) || self.a1111_timesteps(),
            // ComfyUI's `ddim` is its Euler sampler (with random inpainting noise); its
            // `uni_pc_bh2` is Easel's `unipc`.
            Compat::ComfyUi => kdiffusion || comfyui_only || matches!(self, Sampler::Ddim | Sampler::Unipc),
        }
    }

    /// Whether A1111 runs it as one of its timestep samplers (`sd_samplers_timesteps.py`: DDIM,
    /// DDIM CFG++, PLMS, UniPC), which step by the model's own timesteps whatever the schedule.
    pub fn a1111_timesteps(self) -> bool {
        matches!(self, Sampler::Ddim | Sampler::DdimCfgPp | Sampler::Pndm | Sampler::Unipc)
    }

    /// Whether it is one of ComfyUI's CFG++ samplers, which read the unconditional prediction
    /// (so guidance runs even at CFG 1).
    pub fn cfg_pp(self) -> bool {
        matches!(
            self,
            Sampler::EulerCfgPp
                | Sampler::EulerACfgPp
                | Sampler::Dpmpp2mCfgPp
                | Sampler::Dpmpp2sACfgPp
                | Sampler::GradientEstimationCfgPp
                | Sampler::ResMultistepCfgPp
                | Sampler::ResMultistepACfgPp
        )
    }

    /// The samplers `compat` runs, by Easel name, comma-separated.
    pub fn names_in(compat: Compat) -> String {
        Sampler::ALL.into_iter().filter(|s| s.runs_in(compat)).map(Sampler::name).collect::<Vec<_>>().join(", ")
    }

    /// The schedule used when the request names none: in the diffusers mode Karras for DPM++ 2M
    /// (as A1111 ≥ 1.9 does) and the class's own spacing otherwise; in the other modes the
    /// tool's own default (A1111's Automatic, ComfyUI's first scheduler).
    pub fn default_schedule(self, compat: Compat) -> Schedule {
        match (compat, self) {
            (Compat::Diffusers, Sampler::Dpmpp2m) => Schedule::Karras,
            _ => Schedule::Default,
        }
    }

    /// Whether the sampler's diffusers class has `use_karras_sigmas`.
    pub fn supports_karras(self) -> bool {
        matches!(self, Sampler::Euler | Sampler::Heun | Sampler::Lms | Sampler::Dpmpp2m | Sampler::Unipc)
    }

    /// The schedules this sampler can run in `compat`, default first.
    pub fn schedules(self, compat: Compat) -> Vec<Schedule> {
        Schedule::ALL
            .into_iter()
            .filter(|s| s.runs_in(compat) && (compat != Compat::Diffusers || *s == Schedule::Default || self.supports_karras()))
            // A1111's timestep samplers walk the model's own timesteps.
            .filter(|s| compat != Compat::A1111 || !self.a1111_timesteps() || *s == Schedule::Default)
            .collect()
    }

    /// Reads a sampler name: the Easel name (`euler_a`, also `euler-a`), the A1111 display name
    /// (`Euler a`, `DPM++ 2M`) or ComfyUI's (`euler_ancestral`), ignoring ASCII case and blanks.
    pub fn parse(text: &str) -> Option<Sampler> {
        let wanted = text.trim();
        let dashed = wanted.replace('-', "_");
        Sampler::ALL.into_iter().find(|s| {
            s.name().eq_ignore_ascii_case(wanted)
                || s.name().eq_ignore_ascii_case(&dashed)
                || s.a1111_name().eq_ignore_ascii_case(wanted)
                || s.comfyui_name().is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        })
    }

    /// The Easel names, comma-separated, for messages that list what is accepted.
    pub fn names() -> String {
        Sampler::ALL.map(Sampler::name).join(", ")
    }

    /// The Easel names of the samplers that have a Karras schedule in the diffusers mode.
    pub fn karras_names() -> String {
        Sampler::ALL
            .into_iter()
            .filter(|s| s.supports_karras() && s.runs_in(Compat::Diffusers))
            .map(Sampler::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// k-diffusion's samplers diffusers has no class for.
fn kdiffusion_only(sampler: Sampler) -> bool {
    matches!(
        sampler,
        Sampler::Dpm2
            | Sampler::Dpm2A
            | Sampler::Dpmpp2sA
            | Sampler::DpmppSde
            | Sampler::Dpmpp2mSde
            | Sampler::Dpmpp2mSdeHeun
            | Sampler::Dpmpp3mSde
            | Sampler::DpmFast
            | Sampler::DpmAdaptive
            | Sampler::Restart
    )
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which σ schedule spaces the steps. Serialized as its name (`"karras"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Schedule {
    /// The sampler's own: the diffusers class's spacing; A1111's "Automatic"; ComfyUI's first
    /// scheduler (`simple`).
    #[serde(rename = "default")]
    Default,
    /// Karras et al. σ (`use_karras_sigmas=True`; k-diffusion `get_sigmas_karras`, ρ = 7).
    #[serde(rename = "karras")]
    Karras,
    /// Evenly spaced in ln σ.
    #[serde(rename = "exponential")]
    Exponential,
    /// A1111's polynomial in ln σ (ρ = 1).
    #[serde(rename = "polyexponential")]
    Polyexponential,
    /// The model's timesteps evenly spaced over n + 1 points, the last dropped.
    #[serde(rename = "sgm_uniform")]
    SgmUniform,
    /// tan of evenly spaced angles between atan σ_max and atan σ_min.
    #[serde(rename = "kl_optimal")]
    KlOptimal,
    /// NVIDIA's Align Your Steps sigmas for SD 1.5, resampled to the step count (A1111).
    #[serde(rename = "align_your_steps")]
    AlignYourSteps,
    /// Every (1000 / steps)-th training sigma from the top.
    #[serde(rename = "simple")]
    Simple,
    /// The model's timesteps evenly spaced, first to last.
    #[serde(rename = "normal")]
    Normal,
    /// A1111's "Uniform": k-diffusion's `get_sigmas` (the model's timesteps evenly spaced).
    #[serde(rename = "uniform")]
    Uniform,
    /// Training sigmas at evenly spaced timesteps from 1 (A1111's "DDIM", ComfyUI's
    /// `ddim_uniform`).
    #[serde(rename = "ddim_uniform")]
    DdimUniform,
    /// ComfyUI's linear then quadratic schedule (from Mochi).
    #[serde(rename = "linear_quadratic")]
    LinearQuadratic,
    /// Timesteps at the quantiles of a Beta(0.6, 0.6) distribution ("Beta Sampling is All You
    /// Need").
    #[serde(rename = "beta")]
    Beta,
}

impl Schedule {
    pub const ALL: [Schedule; 13] = [
        Schedule::Default,
        Schedule::Karras,
        Schedule::Exponential,
        Schedule::Polyexponential,
        Schedule::SgmUniform,
        Schedule::KlOptimal,
        Schedule::AlignYourSteps,
        Schedule::Simple,
        Schedule::Normal,
        Schedule::Uniform,
        Schedule::DdimUniform,
        Schedule::LinearQuadratic,
        Schedule::Beta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Default => "default",
            Schedule::Karras => "karras",
            Schedule::Exponential => "exponential",
            Schedule::Polyexponential => "polyexponential",
            Schedule::SgmUniform => "sgm_uniform",
            Schedule::KlOptimal => "kl_optimal",
            Schedule::AlignYourSteps => "align_your_steps",
            Schedule::Simple => "simple",
            Schedule::Normal => "normal",
            Schedule::Uniform => "uniform",
            Schedule::DdimUniform => "ddim_uniform",
            Schedule::LinearQuadratic => "linear_quadratic",
            Schedule::Beta => "beta",
        }
    }

    /// AUTOMATIC1111's `Schedule type` label, where A1111 has the schedule.
    pub fn a1111_label(self) -> Option<&'static str> {
        Some(match self {
            Schedule::Default => "Automatic",
            Schedule::Karras => "Karras",
            Schedule::Exponential => "Exponential",
            Schedule::Polyexponential => "Polyexponential",
            Schedule::SgmUniform => "SGM Uniform",
            Schedule::KlOptimal => "KL Optimal",
            Schedule::AlignYourSteps => "Align Your Steps",
            Schedule::Simple => "Simple",
            Schedule::Normal => "Normal",
            Schedule::Uniform => "Uniform",
            Schedule::DdimUniform => "DDIM",
            Schedule::Beta => "Beta",
            Schedule::LinearQuadratic => return None,
        })
    }

    /// AUTOMATIC1111's `Schedule type` value (the infotext writes `Automatic` for the default).
    pub fn a1111_name(self) -> &'static str {
        self.a1111_label().unwrap_or(self.name())
    }

    /// ComfyUI's scheduler name, where ComfyUI has the schedule (`default` is its `simple`).
    pub fn comfyui_name(self) -> Option<&'static str> {
        Some(match self {
            Schedule::Default | Schedule::Simple => "simple",
            Schedule::Karras => "karras",
            Schedule::Exponential => "exponential",
            Schedule::SgmUniform => "sgm_uniform",
            Schedule::KlOptimal => "kl_optimal",
            Schedule::Normal => "normal",
            Schedule::DdimUniform => "ddim_uniform",
            Schedule::LinearQuadratic => "linear_quadratic",
            Schedule::Beta => "beta",
            Schedule::Polyexponential | Schedule::AlignYourSteps | Schedule::Uniform => return None,
        })
    }

    /// Whether `compat` has this schedule.
    pub fn runs_in(self, compat: Compat) -> bool {
        match compat {
            Compat::Diffusers => matches!(self, Schedule::Default | Schedule::Karras),
            Compat::A1111 => self.a1111_label().is_some(),
            Compat::ComfyUi => self.comfyui_name().is_some(),
        }
    }

    /// The schedules `compat` has, by Easel name, comma-separated.
    pub fn names_in(compat: Compat) -> String {
        Schedule::ALL.into_iter().filter(|s| s.runs_in(compat)).map(Schedule::name).collect::<Vec<_>>().join(", ")
    }

    /// Reads a schedule name: Easel's, A1111's label (`SGM Uniform`, `Automatic`) or ComfyUI's,
    /// ignoring ASCII case and surrounding blanks.
    pub fn parse(text: &str) -> Option<Schedule> {
        let wanted = text.trim();
        if wanted.eq_ignore_ascii_case("automatic") {
            return Some(Schedule::Default);
        }
        Schedule::ALL.into_iter().find(|s| {
            s.name().eq_ignore_ascii_case(wanted)
                || s.a1111_label().is_some_and(|l| l.eq_ignore_ascii_case(wanted) && *s != Schedule::Default)
                || (*s != Schedule::Default && s.comfyui_name().is_some_and(|n| n.eq_ignore_ascii_case(wanted)))
        })
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
        assert_eq!(Schedule::parse("SGM Uniform"), Some(Schedule::SgmUniform));
        assert_eq!(Schedule::parse("Automatic"), Some(Schedule::Default));
        assert_eq!(Schedule::parse("DDIM"), Some(Schedule::DdimUniform));
        assert_eq!(Sampler::parse("euler_ancestral"), Some(Sampler::EulerA));
        assert_eq!(Schedule::parse("cosine"), None);
    }

    #[test]
    fn only_sigma_samplers_offer_karras() {
        assert_eq!(Sampler::karras_names(), "euler, heun, lms, dpmpp_2m, unipc");
        assert_eq!(Sampler::Ddim.schedules(Compat::Diffusers), [Schedule::Default]);
        assert_eq!(Sampler::Euler.schedules(Compat::Diffusers), [Schedule::Default, Schedule::Karras]);
        assert!(Sampler::ALL.iter().all(|s| s.supports_karras() || s.default_schedule(Compat::Diffusers) == Schedule::Default));
        // k-diffusion's samplers run every schedule their tool has.
        assert_eq!(Sampler::Dpm2.schedules(Compat::A1111).len(), 12);
        assert!(!Sampler::Dpm2.runs_in(Compat::Diffusers) && !Sampler::Pndm.runs_in(Compat::ComfyUi));
        // A1111's timestep samplers take no schedule; DDIM CFG++ is A1111's alone.
        assert_eq!(Sampler::Pndm.schedules(Compat::A1111), [Schedule::Default]);
        assert_eq!(Sampler::Ddim.schedules(Compat::A1111), [Schedule::Default]);
        assert!(Sampler::DdimCfgPp.runs_in(Compat::A1111) && !Sampler::DdimCfgPp.runs_in(Compat::Diffusers));
        assert!(!Sampler::DdimCfgPp.runs_in(Compat::ComfyUi));
    }
}
