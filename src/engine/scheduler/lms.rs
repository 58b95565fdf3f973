//! Owns LMS, diffusers `LMSDiscreteScheduler`
//! (`diffusers/schedulers/scheduling_lms_discrete.py`): a linear multistep method of order up
//! to 4 on the σ-space derivative, each coefficient the integral of a Lagrange basis
//! polynomial over [σ_i, σ_{i+1}].
//!
//! diffusers integrates with `scipy.integrate.quad`, evaluating the polynomial in float32
//! torch arithmetic. For a polynomial of degree ≤ 3 QUADPACK's adaptive routine accepts its
//! first 21-point Gauss–Kronrod estimate, so [`lms_coefficient`] evaluates that same rule
//! (QUADPACK `dqk21` nodes, weights and summation order) on the same float32 integrand.

use super::config::{ClassConfig, ClassDefaults, CommonConfig, KarrasBounds, SchedulerConfig, Unimplemented};
use super::euler::{scale_by_sigma, SigmaSchedule};
use super::sigmas::add_noise_sigma;
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

const MAX_ORDER: usize = 4;

/// `LMSDiscreteScheduler`'s constructor arguments: the shared keys only.
pub(crate) struct LmsConfig {
    common: CommonConfig,
}

impl ClassConfig for LmsConfig {
    const SAMPLER: Sampler = Sampler::Lms;
    const DEFAULTS: ClassDefaults = ClassDefaults::USUAL;
    const UNIMPLEMENTED: &'static [Unimplemented] = &[Unimplemented::ExponentialSigmas, Unimplemented::BetaSigmas];

    fn from_config(common: CommonConfig, _c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        Ok(Self { common })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    /// LMS's `_convert_to_karras` always spans the spaced σ range: it never looks up the
    /// file's `sigma_min`/`sigma_max`.
    fn build(&self, steps: usize, karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        let bounds = karras.then_some(KarrasBounds::default());
        let schedule = SigmaSchedule::new(&self.common, bounds, steps)?;
        Ok(Box::new(Lms::new(schedule)))
    }
}

pub(crate) struct Lms {
    schedule: SigmaSchedule,
    timesteps: Vec<f64>,
    /// The last (up to 4) derivatives, oldest first.
    derivatives: Vec<Vec<f32>>,
}

impl Lms {
    fn new(schedule: SigmaSchedule) -> Self {
        let timesteps = schedule.timesteps.iter().map(|t| f64::from(*t)).collect();
        Self { schedule, timesteps, derivatives: Vec::new() }
    }
}

impl Scheduler for Lms {
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.schedule.sigmas[index])
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        f64::from(self.schedule.init_noise_sigma)
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        scale_by_sigma(sample, self.schedule.sigmas[index]);
    }

    /// d = (x − x0)/σ with x0 = x − σε; x' = x + Σ_j c_j·d_{i−j}.
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        let sigma = self.schedule.sigmas[index];
        let derivative: Vec<f32> = sample
            .iter()
            .zip(model_output)
            .map(|(x, eps)| {
                let x0 = x - sigma * eps;
                (x - x0) / sigma
            })
            .collect();
        self.derivatives.push(derivative);
        if self.derivatives.len() > MAX_ORDER {
            self.derivatives.remove(0);
        }
        let order = (index + 1).min(MAX_ORDER);
        // `sum(coeff * d for coeff, d in zip(coeffs, reversed(derivatives)))`: newest first,
        // each Python-float coefficient applied as float32.
        let coeffs: Vec<f32> = (0..order).map(|j| lms_coefficient(&self.schedule.sigmas, order, index, j) as f32).collect();
        let mut out = sample.to_vec();
        let mut sum = vec![0.0f32; sample.len()];
        for (coeff, d) in coeffs.iter().zip(self.derivatives.iter().rev()) {
            for (s, v) in sum.iter_mut().zip(d) {
                *s += coeff * v;
            }
        }
        for (x, s) in out.iter_mut().zip(&sum) {
            *x += s;
        }
        out
    }
}

/// diffusers `get_lms_coefficient(order, t, current_order)`: ∫ from σ_t to σ_{t+1} of
/// Π_{k≠current} (τ − σ_{t−k})/(σ_{t−current} − σ_{t−k}) dτ, the product in float32.
fn lms_coefficient(sigmas: &[f32], order: usize, t: usize, current: usize) -> f64 {
    let basis = |tau: f64| -> f64 {
        if order == 1 {
            return 1.0; // the Python `prod = 1.0` never meets a tensor
        }
        let tau = tau as f32;
        let mut prod = 1.0f32;
        for k in (0..order).filter(|k| *k != current) {
            prod *= (tau - sigmas[t - k]) / (sigmas[t - current] - sigmas[t - k]);
        }
        f64::from(prod)
    };
    gauss_kronrod_21(basis, f64::from(sigmas[t]), f64::from(sigmas[t + 1]))
}

/// QUADPACK `dqk21`: the 21-point Kronrod estimate of ∫_a^b f.
#[allow(clippy::excessive_precision)]
fn gauss_kronrod_21(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    // Abscissae on [0, 1] (odd positions 1, 3, … are the 10-point Gauss nodes) and weights.
    const XGK: [f64; 11] = [
        0.995657163025808080735527280689003,
        0.973906528517171720077964012084452,
        0.930157491355708226001207180059508,
        0.865063366688984510732096688423493,
        0.780817726586416897063717578345042,
        0.679409568299024406234327365114874,
        0.562757134668604683339000099272694,
        0.433395394129247190799265943165784,
        0.294392862701460198131126603103866,
        0.148874338981631210884826001129720,
        0.0,
    ];
    const WGK: [f64; 11] = [
        0.011694638867371874278064396062192,
        0.032558162307964727478818972459390,
        0.054755896574351996031381300244580,
        0.075039674810919952767043140916190,
        0.093125454583697605535065465083366,
        0.109387158802297641899210590325805,
        0.123491976262065851077958109831074,
        0.134709217311473325928054001771707,
        0.142775938577060080797094273138717,
        0.147739104901338491374841515972068,
        0.149445554002916905664936468389821,
    ];
    let centre = 0.5 * (a + b);
    let half = 0.5 * (b - a);
    let mut result = WGK[10] * f(centre);
    // Gauss nodes first (Fortran xgk(2), xgk(4), …), then the Kronrod extensions.
    for j in (1..10).step_by(2).chain((0..10).step_by(2)) {
        let offset = half * XGK[j];
        result += WGK[j] * (f(centre - offset) + f(centre + offset));
    }
    result * half
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_kronrod_integrates_cubics_exactly() {
        let f = |x: f64| 2.0 * x * x * x - x + 0.5;
        // ∫_1^3 = [x⁴/2 − x²/2 + x/2] = (40.5 − 4.5 + 1.5) − (0.5 − 0.5 + 0.5) = 37
        assert!((gauss_kronrod_21(f, 1.0, 3.0) - 37.0).abs() < 1e-12);
        assert!((gauss_kronrod_21(f, 3.0, 1.0) + 37.0).abs() < 1e-12);
    }

    #[test]
    fn first_order_coefficient_is_the_interval() {
        let sigmas = [14.6f32, 9.0, 0.0];
        assert!((lms_coefficient(&sigmas, 1, 0, 0) - (9.0 - 14.6f32 as f64)).abs() < 1e-12);
    }
}
