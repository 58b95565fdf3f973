//! Owns the discrete noise schedule of an SD 1.x model as each tool's k-diffusion wrapper holds
//! it: the 1000 training sigmas `√((1 − ᾱ)/ᾱ)` and their logs, and the maps between a sigma and
//! a (fractional) timestep. A1111 (k-diffusion's `DiscreteEpsDDPMDenoiser` over the LDM model's
//! float32 `alphas_cumprod`) computes the sigmas in float32 and gives the UNet fractional
//! timesteps; ComfyUI (`ModelSamplingDiscrete`) computes them in float64, stores float32, and
//! gives the nearest whole timestep.

use super::Flavor;

/// The training schedule of an SD 1.x model (`scaled_linear` betas).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteSchedule {
    pub flavor: Flavor,
    /// σ for timesteps 0..N (increasing).
    pub sigmas: Vec<f32>,
    pub log_sigmas: Vec<f32>,
    /// ᾱ for timesteps 0..N as the tool's model holds it (float32): what AUTOMATIC1111's
    /// timestep samplers ([`crate::engine::timesteps`]) step with.
    pub alphas_cumprod: Vec<f32>,
    /// Training timesteps per table entry: 1, or [`LCM_STRIDE`] for A1111's LCM denoiser, whose
    /// table holds every 20th timestep (19, 39, …, 999).
    pub timestep_stride: usize,
}

/// A1111's `LCMCompVisDenoiser`: 1000 training timesteps over LCM's 50 original ones.
pub const LCM_STRIDE: usize = 20;

impl DiscreteSchedule {
    /// `betas = linspace(√β_start, √β_end, N)²`, `ᾱ = cumprod(1 − β)` in float64, then each tool's
    /// sigmas.
    pub fn scaled_linear(flavor: Flavor, beta_start: f64, beta_end: f64, steps: usize) -> Self {
        let (a, b) = (beta_start.sqrt(), beta_end.sqrt());
        let mut cumulative = 1.0f64;
        let alphas_cumprod: Vec<f64> = (0..steps)
            .map(|i| {
                let root = if steps > 1 { a + (b - a) * i as f64 / (steps - 1) as f64 } else { a };
                cumulative *= 1.0 - root * root;
                cumulative
            })
            .collect();
        let (sigmas, log_sigmas) = match flavor {
            Flavor::A1111 => {
                let sigmas: Vec<f32> = alphas_cumprod
                    .iter()
                    .map(|&ac| {
                        let ac = ac as f32;
                        ((1.0 - ac) / ac).sqrt()
                    })
                    .collect();
                let logs = sigmas.iter().map(|s| s.ln()).collect();
                (sigmas, logs)
            }
            Flavor::ComfyUi => {
                let wide: Vec<f64> = alphas_cumprod.iter().map(|&ac| ((1.0 - ac) / ac).sqrt()).collect();
                (wide.iter().map(|&s| s as f32).collect(), wide.iter().map(|s| s.ln() as f32).collect())
            }
        };
        Self { flavor, sigmas, log_sigmas, alphas_cumprod: alphas_cumprod.iter().map(|&ac| ac as f32).collect(), timestep_stride: 1 }
    }

    /// SD 1.x's schedule (β from 0.00085 to 0.012 over 1000 steps).
    pub fn sd15(flavor: Flavor) -> Self {
        Self::scaled_linear(flavor, 0.00085, 0.012, 1000)
    }

    /// The table `sampler` runs over: A1111's LCM sampler has its own denoiser
    /// (`LCMCompVisDenoiser`), every other sampler the model's table.
    pub fn for_sampler(&self, sampler: super::KSampler) -> Self {
        if self.flavor == Flavor::A1111 && sampler == super::KSampler::Lcm && self.timestep_stride == 1 {
            self.a1111_lcm()
        } else {
            self.clone()
        }
    }

    /// A1111's LCM table: ᾱ at timesteps `N − 1 − 20·x` for x < 50 (ascending), its sigmas as
    /// k-diffusion computes them from the float32 ᾱ.
    fn a1111_lcm(&self) -> Self {
        let n = self.alphas_cumprod.len();
        let count = n / LCM_STRIDE;
        let alphas_cumprod: Vec<f32> = (0..count).rev().map(|x| self.alphas_cumprod[n - 1 - x * LCM_STRIDE]).collect();
        let sigmas: Vec<f32> = alphas_cumprod.iter().map(|ac| ((1.0 - ac) / ac).sqrt()).collect();
        let log_sigmas = sigmas.iter().map(|s| s.ln()).collect();
        Self { flavor: self.flavor, sigmas, log_sigmas, alphas_cumprod, timestep_stride: LCM_STRIDE }
    }

    /// ComfyUI's `ModelSamplingDiscrete.percent_to_sigma`: the sigma at timestep
    /// `(1 − percent)·999` (float32), above every sigma at 0 and 0 at 1.
    pub fn percent_to_sigma(&self, percent: f64) -> f32 {
        if percent <= 0.0 {
            return 999_999_999.9;
        }
        if percent >= 1.0 {
            return 0.0;
        }
        self.t_to_sigma(((1.0 - percent) * 999.0) as f32)
    }

    /// A1111's LCM boundary-condition scalings at `sigma` (`get_scaled_out`, σ_data = 0.5): the
    /// denoised latents become `c_out · denoised + c_skip · x`. `None` for other tables.
    pub fn lcm_scalings(&self, sigma: f32) -> Option<(f32, f32)> {
        (self.timestep_stride > 1).then(|| {
            let scaled = self.sigma_to_t(sigma) * 10.0;
            let c_skip = 0.25 / (scaled * scaled + 0.25);
            let c_out = scaled / (scaled * scaled + 0.25).sqrt();
            (c_skip, c_out)
        })
    }

    pub fn sigma_min(&self) -> f32 {
        self.sigmas[0]
    }

    pub fn sigma_max(&self) -> f32 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// The timestep the UNet gets at `sigma`: A1111's fractional log-linear interpolation
    /// between the neighbouring table entries, or ComfyUI's nearest entry in log space.
    pub fn sigma_to_t(&self, sigma: f32) -> f32 {
        let log_sigma = sigma.ln();
        // A1111's LCM: the nearest entry, as a training timestep.
        if self.timestep_stride > 1 {
            return (self.nearest_entry(log_sigma) * self.timestep_stride + self.timestep_stride - 1) as f32;
        }
        match self.flavor {
            Flavor::ComfyUi => self.nearest_entry(log_sigma) as f32,
            Flavor::A1111 => {
                let last = self.log_sigmas.len() - 1;
                // The last entry at or below ln σ (k-diffusion: argmax of the cumulative count).
                let low = self.log_sigmas.iter().rposition(|&l| log_sigma - l >= 0.0).unwrap_or(0).min(last - 1);
                let (lo, hi) = (self.log_sigmas[low], self.log_sigmas[low + 1]);
                let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
                (1.0 - w) * low as f32 + w * (low + 1) as f32
            }
        }
    }

    /// The table entry nearest `log_sigma` in log space (the first of equals: torch's `argmin`).
    fn nearest_entry(&self, log_sigma: f32) -> usize {
        let mut best = 0;
        for (i, l) in self.log_sigmas.iter().enumerate() {
            if (log_sigma - l).abs() < (log_sigma - self.log_sigmas[best]).abs() {
                best = i;
            }
        }
        best
    }

    /// The sigma at a fractional timestep: log-linear between the neighbouring entries
    /// (ComfyUI clamps `t` to the table first).
    pub fn t_to_sigma(&self, t: f32) -> f32 {
        let last = (self.sigmas.len() - 1) as f32;
        let t = match self.flavor {
            // A1111's LCM: from a training timestep back to a table position.
            _ if self.timestep_stride > 1 => {
                let stride = self.timestep_stride as f32;
                ((t - (stride - 1.0)) / stride).clamp(0.0, last)
            }
            Flavor::ComfyUi => t.clamp(0.0, last),
            Flavor::A1111 => t,
        };
        let (low, high, w) = (t.floor() as usize, t.ceil() as usize, t - t.floor());
        ((1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()
    }
}

/// The UNet input scaling of k-diffusion's eps wrapper: `c_in = 1 / √(σ² + 1)`.
pub fn c_in(sigma: f32) -> f32 {
    1.0 / (sigma * sigma + 1.0).sqrt()
}

impl DiscreteSchedule {
    /// The UNet's input at `sigma`: A1111 (k-diffusion) multiplies by [`c_in`], ComfyUI
    /// (`EPS.calculate_input`) divides by `√(σ² + 1)`.
    pub fn scale_input(&self, x: &[f32], sigma: f32) -> Vec<f32> {
        match self.flavor {
            Flavor::A1111 => {
                let scale = c_in(sigma);
                x.iter().map(|v| v * scale).collect()
            }
            Flavor::ComfyUi => {
                let norm = (sigma * sigma + 1.0).sqrt();
                x.iter().map(|v| v / norm).collect()
            }
        }
    }
}
