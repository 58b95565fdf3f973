//! Owns DEIS (ComfyUI's `sample_deis`, "tab" mode, order up to 3): a multistep method whose
//! weights for the current and the two previous slopes are integrals of Lagrange polynomials
//! against the exponential integrator's kernel, taken numerically over 10,000 points in the VP
//! time of an EDM-style mapping of σ. The last step (to σ 0) is Euler. Deterministic. ComfyUI
//! only.

use super::schedules::linspace_f32;
use super::{to_d, Context};
use crate::engine::EngineError;

const MAX_ORDER: usize = 3;
/// Points of the numerical integral of each weight.
const POINTS: usize = 10_000;

/// The VP time of each sigma and the schedule's β₀ and β₁ (DEIS's `edm2t` with ε = 1e-3 and the
/// EDM range σ ∈ [0.002, 80]), in float32.
fn vp_times(sigmas: &[f32]) -> (Vec<f32>, f32, f32) {
    let (epsilon, sigma_min, sigma_max) = (1e-3f32, 0.002f32, 80f32);
    let log_min = (sigma_min * sigma_min + 1.0).ln();
    let log_max = (sigma_max * sigma_max + 1.0).ln();
    let beta_d = 2.0 * (log_min / epsilon - log_max) / (epsilon - 1.0);
    let beta_min = log_max - 0.5 * beta_d;
    let t = sigmas.iter().map(|s| ((beta_min * beta_min + 2.0 * beta_d * (s * s + 1.0).ln()).sqrt() - beta_min) / beta_d).collect();
    (t, beta_min, beta_d + beta_min)
}

/// The weights of each step (empty for the first-order ones).
fn coefficients(sigmas: &[f32]) -> Vec<Vec<f32>> {
    let (t, beta_0, beta_1) = vp_times(sigmas);
    (0..t.len().saturating_sub(1))
        .map(|i| {
            let order = (i + 1).min(MAX_ORDER);
            if order == 1 {
                return Vec::new();
            }
            let (t_cur, t_next) = (t[i], t[i + 1]);
            let taus = linspace_f32(t_cur, t_next, POINTS);
            let dtau = (t_next - t_cur) / POINTS as f32;
            let prev: Vec<f32> = (0..order).map(|k| t[i - k]).collect();
            // −½ · d ln α / dτ / √(α (1 − α)), α(τ) = exp(−½ τ² (β₁ − β₀) − τ β₀).
            let integrand: Vec<f32> = taus
                .iter()
                .map(|&tau| {
                    let alpha = (-0.5 * (tau * tau) * (beta_1 - beta_0) - tau * beta_0).exp();
                    // The derivative as torch's autograd forms it: through ln and exp
                    // (g = α⁻¹·α), then the two terms of the exponent.
                    let g = (1.0 / alpha) * alpha;
                    let d_log_alpha = g * (beta_1 - beta_0) * -0.5 * (2.0 * tau) + -g * beta_0;
                    -0.5 * d_log_alpha / (alpha * (1.0 - alpha)).sqrt()
                })
                .collect();
            (0..order)
                .map(|j| {
                    let sum: f64 = taus
                        .iter()
                        .zip(&integrand)
                        .map(|(&tau, &w)| {
                            let mut poly = 1f32;
                            for (k, &p) in prev.iter().enumerate() {
                                if k != j {
                                    poly *= (tau - p) / (prev[j] - p);
                                }
                            }
                            f64::from(w * poly)
                        })
                        .sum();
                    sum as f32 * dtau
                })
                .collect()
        })
        .collect()
}

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let coeffs = coefficients(sigmas);
    let mut history: Vec<Vec<f32>> = Vec::new();
    for i in 0..sigmas.len().saturating_sub(1) {
        let (t_cur, t_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, t_cur)?;
        let d = to_d(&x, t_cur, &denoised);
        let order = if t_next <= 0.0 { 1 } else { (i + 1).min(MAX_ORDER) };
        x = if order == 1 {
            let dt = t_next - t_cur;
            x.iter().zip(&d).map(|(x, d)| x + dt * d).collect()
        } else {
            let c = &coeffs[i];
            (0..x.len())
                .map(|j| {
                    let mut v = x[j] + c[0] * d[j];
                    for (k, ck) in c.iter().enumerate().skip(1) {
                        v += ck * history[history.len() - k][j];
                    }
                    v
                })
                .collect()
        };
        if history.len() == MAX_ORDER - 1 {
            history.remove(0);
        }
        history.push(d);
    }
    Ok(x)
}
