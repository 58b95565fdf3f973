//! Owns DPM-Solver++(2M), diffusers `DPMSolverMultistepScheduler` with its defaults
//! (`algorithm_type="dpmsolver++"`, `solver_order=2`, `solver_type="midpoint"`,
//! `final_sigmas_type="zero"`; `diffusers/schedulers/scheduling_dpmsolver_multistep.py`,
//! `set_timesteps`, `convert_model_output`, `dpm_solver_first_order_update`,
//! `multistep_dpm_solver_second_order_update`). Works in variance-preserving space with
//! α = 1/sqrt(σ² + 1), σ_t = σα and λ = ln α − ln σ_t; integer timesteps (Karras t rounded);
//! the first step and the last (σ → 0) are first order.

use super::config::{ClassConfig, ClassDefaults, CommonConfig, KarrasBounds, SchedulerConfig, Unimplemented};
use super::sigmas::{
    add_noise_vp, karras_sigmas, np_arange_f64, np_linspace, np_round, sigma_to_t, vp_alpha_sigma, vp_lambda, BetaSchedule, Spacing,
    TrainSchedule,
};
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `DPMSolverMultistepScheduler`'s constructor arguments. Beyond the shared keys it reads
/// `solver_type` (`"midpoint"` by default, or `"heun"`) and the Karras end points; it refuses
/// what would make it another solver: `solver_order` other than 2, `algorithm_type` other than
/// `"dpmsolver++"` (`"deis"` is accepted: diffusers swaps it for `"dpmsolver++"`), a finite
/// `lambda_min_clipped`, and any `variance_type`.
pub(crate) struct DpmSolverConfig {
    common: CommonConfig,
    /// Use the "heun" second-order formula instead of "midpoint".
    heun: bool,
    karras_bounds: KarrasBounds,
}

impl ClassConfig for DpmSolverConfig {
    const SAMPLER: Sampler = Sampler::Dpmpp2m;
    const DEFAULTS: ClassDefaults = ClassDefaults::USUAL;
    const UNIMPLEMENTED: &'static [Unimplemented] = &[
        Unimplemented::ZeroSnrRescaling,
        Unimplemented::Thresholding,
        Unimplemented::ExponentialSigmas,
        Unimplemented::BetaSigmas,
        Unimplemented::LuLambdas,
        Unimplemented::FlowSigmas,
        Unimplemented::FinalSigmasType,
    ];

    fn from_config(common: CommonConfig, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        let unsupported = |key, value, supported| SchedulerError::unsupported(Self::SAMPLER, key, value, supported);
        if let Some(order) = c.solver_order.filter(|o| *o != 2) {
            return Err(unsupported("solver_order", order.to_string(), "dpmpp_2m is the second-order solver"));
        }
        if let Some(a) = c.algorithm_type.as_deref().filter(|a| !matches!(*a, "dpmsolver++" | "deis")) {
            return Err(unsupported("algorithm_type", format!("{a:?}"), "only \"dpmsolver++\" is implemented"));
        }
        if c.lambda_min_clipped.is_some_and(f64::is_finite) {
            return Err(unsupported("lambda_min_clipped", format!("{:?}", c.lambda_min_clipped), "only -inf is implemented"));
        }
        if let Some(v) = c.variance_type.as_deref() {
            return Err(unsupported("variance_type", format!("{v:?}"), "learned variance is not implemented"));
        }
        Ok(Self { common, heun: c.solver_type.as_deref() == Some("heun"), karras_bounds: KarrasBounds::from_config(c) })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn build(&self, steps: usize, karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        Ok(Box::new(DpmSolverMultistep::new(self, steps, karras)?))
    }
}

pub(crate) struct DpmSolverMultistep {
    /// N + 1 float32 σ, the last 0.
    sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    /// Use the "heun" second-order formula (config `solver_type: "heun"`).
    heun: bool,
    /// The previous step's data prediction x0.
    previous_x0: Option<Vec<f32>>,
}

/// Integer timesteps and σ of the multistep solvers (DPM-Solver, UniPC): N + 1 spaced points
/// with the last dropped; Karras σ use the whole training table's range, and their fractional
/// t is rounded when `round_karras_t` (UniPC always; DPM-Solver unless `squaredcos_cap_v2`,
/// where the int64 cast truncates instead).
pub(super) fn multistep_schedule(
    config: &CommonConfig,
    karras: Option<KarrasBounds>,
    steps: usize,
    round_karras_t: bool,
) -> Result<(Vec<i64>, Vec<f32>), SchedulerError> {
    let train = TrainSchedule::new(&config.betas, config.num_train_timesteps)?;
    let t_train = config.num_train_timesteps;
    // `lambda_min_clipped = -inf` keeps every training step: last_timestep = T.
    let last_timestep = t_train as f64;
    let mut timesteps: Vec<i64> = match config.spacing {
        Spacing::Linspace => {
            let mut ts: Vec<i64> = np_linspace(0.0, last_timestep - 1.0, steps + 1).into_iter().rev().map(|t| np_round(t) as i64).collect();
            ts.pop();
            ts
        }
        Spacing::Leading => {
            let ratio = t_train / (steps + 1);
            (1..=steps).rev().map(|i| (i * ratio) as i64 + config.steps_offset).collect()
        }
        Spacing::Trailing => {
            np_arange_f64(last_timestep, 0.0, -(t_train as f64 / steps as f64)).into_iter().map(|t| np_round(t) as i64 - 1).collect()
        }
    };
    let sigmas: Vec<f64> = if let Some(bounds) = karras {
        let sigma_min = bounds.sigma_min.unwrap_or(f64::from(train.sigmas[0]));
        let sigma_max = bounds.sigma_max.unwrap_or(f64::from(train.sigmas[t_train - 1]));
        let sigmas = karras_sigmas(sigma_min, sigma_max, steps);
        let log_sigmas = train.log_sigmas();
        timesteps = sigmas
            .iter()
            .map(|s| {
                let t = sigma_to_t(*s, &log_sigmas);
                (if round_karras_t { np_round(t) } else { t.trunc() }) as i64
            })
            .collect();
        sigmas
    } else {
        timesteps.iter().map(|t| train.interp_sigma(*t as f64)).collect()
    };
    let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
    sigmas.push(0.0);
    Ok((timesteps, sigmas))
}

/// `convert_model_output` for ε models: x0 = (x − σ_t ε)/α.
pub(super) fn data_prediction(sample: &[f32], eps: &[f32], sigma: f32) -> Vec<f32> {
    let (alpha_t, sigma_t) = vp_alpha_sigma(sigma);
    sample.iter().zip(eps).map(|(x, e)| (x - sigma_t * e) / alpha_t).collect()
}

impl DpmSolverMultistep {
    fn new(config: &DpmSolverConfig, steps: usize, karras: bool) -> Result<Self, SchedulerError> {
        let round_karras_t = config.common.betas != BetaSchedule::SquaredCosCapV2;
        let bounds = karras.then_some(config.karras_bounds);
        let (timesteps, sigmas) = multistep_schedule(&config.common, bounds, steps, round_karras_t)?;
        Ok(Self { sigmas, timesteps: timesteps.iter().map(|t| *t as f64).collect(), heun: config.heun, previous_x0: None })
    }
}

impl Scheduler for DpmSolverMultistep {
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_vp(original, noise, self.sigmas[index])
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}

    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        let x0 = data_prediction(sample, model_output, self.sigmas[index]);
        // `final_sigmas_type == "zero"` makes the last step first order.
        let last = index == self.timesteps.len() - 1;
        let (alpha_t, sigma_t) = vp_alpha_sigma(self.sigmas[index + 1]);
        let (alpha_s0, sigma_s0) = vp_alpha_sigma(self.sigmas[index]);
        let lambda_t = vp_lambda(alpha_t, sigma_t);
        let lambda_s0 = vp_lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let ratio = sigma_t / sigma_s0;
        let phi = alpha_t * ((-h).exp() - 1.0);

        let out = match self.previous_x0.as_deref() {
            Some(m1) if !last => {
                // Second order: r0 = h_prev/h, D1 = (m0 − m1)/r0;
                // midpoint x' = (σ_t/σ_s0)x − φ·D0 − ½φ·D1 with φ = α_t(e^{−h} − 1).
                let (alpha_s1, sigma_s1) = vp_alpha_sigma(self.sigmas[index - 1]);
                let lambda_s1 = vp_lambda(alpha_s1, sigma_s1);
                let h_0 = lambda_s0 - lambda_s1;
                let r0 = h_0 / h;
                let inv_r0 = 1.0 / r0;
                let d1_coeff = if self.heun { alpha_t * (((-h).exp() - 1.0) / h + 1.0) } else { 0.5 * phi };
                sample
                    .iter()
                    .zip(&x0)
                    .zip(m1)
                    .map(|((x, m0), m1)| {
                        let d1 = inv_r0 * (m0 - m1);
                        if self.heun {
                            ratio * x - phi * m0 + d1_coeff * d1
                        } else {
                            ratio * x - phi * m0 - d1_coeff * d1
                        }
                    })
                    .collect()
            }
            // First order: x' = (σ_t/σ_s)x − α_t(e^{−h} − 1)·x0.
            _ => sample.iter().zip(&x0).map(|(x, m0)| ratio * x - phi * m0).collect(),
        };
        self.previous_x0 = Some(x0);
        out
    }
}
