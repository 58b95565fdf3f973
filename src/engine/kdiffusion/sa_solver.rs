//! Owns SA-Solver (ComfyUI's `sample_sa_solver` / `sample_sa_solver_pece`, its defaults: predictor
//! order 3, corrector order 4, stochastic with τ = 1 between 20% and 80% of the model's noise
//! range): stochastic Adams predictor-corrector steps in λ = −ln σ whose weights integrate the
//! Lagrange basis through the previous data predictions against `e^{(1 + τ²)λ}`; the PECE form
//! evaluates the model again at each corrected point. Fresh noise in the stochastic interval.
//! ComfyUI only.

use super::schedules::ln_gamma;
use super::uni_pc::solve;
use super::Context;
use crate::engine::EngineError;

const PREDICTOR_ORDER: usize = 3;
const CORRECTOR_ORDER: usize = 4;

/// `(1 + τ²)·∫ₛᵗ e^{(1+τ²)(x − t)} xᵖ dx` for p < `order`, by ComfyUI's recursion over p
/// (float32, its operation order).
fn exponential_coeffs(s: f32, t: f32, order: usize, tau: f32) -> Vec<f32> {
    let tau_mul = 1.0 + tau * tau;
    let h = t - s;
    let decay = (-tau_mul * h).exp();
    let terms: Vec<f32> = (0..order).map(|p| t.powf(p as f32) - s.powf(p as f32) * decay).collect();
    let log_factorial: Vec<f32> = (0..order).map(|p| ln_gamma(p as f64 + 1.0) as f32).collect();
    let log_tau = f64::from(tau_mul).ln() as f32;
    (0..order)
        .map(|row| {
            let mut acc = 0f32;
            for (col, term) in terms.iter().enumerate().take(row + 1) {
                let depth = (row - col) as f32;
                let mut coeff = log_factorial[row] - log_factorial[col];
                if tau > 0.0 {
                    coeff -= depth * log_tau;
                }
                let sign = if (row - col) % 2 == 0 { 1.0 } else { -1.0 };
                acc += coeff.exp() * sign * term;
            }
            acc
        })
        .collect()
}

/// The b coefficients of one predictor or corrector step from λ_s to λ_t over the predictions
/// at `lambdas` (`compute_stochastic_adams_b_coeffs`, not the simple order-2 form).
fn b_coeffs(sigma_next: f32, lambdas: &[f32], lambda_s: f32, lambda_t: f32, tau: f32) -> Vec<f32> {
    let integrals = exponential_coeffs(lambda_s, lambda_t, lambdas.len(), tau);
    // Σⱼ λⱼⁱ·lⱼ = eᵢ: the transposed Vandermonde system (`torch.vander(...).T`).
    let vandermonde: Vec<Vec<f32>> = (0..lambdas.len()).map(|i| lambdas.iter().map(|l| l.powi(i as i32)).collect()).collect();
    let lagrange = solve(&vandermonde, &integrals);
    let alpha_t = sigma_next * lambda_t.exp();
    lagrange.into_iter().map(|l| alpha_t * l).collect()
}

/// `Σₖ b[k]·preds[k]` per element.
fn combine(preds: &[&Vec<f32>], b: &[f32], numel: usize) -> Vec<f32> {
    (0..numel).map(|j| preds.iter().zip(b).map(|(p, b)| p[j] * b).sum()).collect()
}

/// Runs SA-Solver down `sigmas`; `pece` evaluates the model again after each correction.
/// `interval` is the σ range where the solver is stochastic (τ = 1), ComfyUI's
/// `percent_to_sigma(0.2)` down to `percent_to_sigma(0.8)`.
pub fn sample(x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, pece: bool, interval: (f32, f32)) -> Result<Vec<f32>, EngineError> {
    if sigmas.len() <= 1 {
        return Ok(x);
    }
    let numel = x.len();
    let lambdas: Vec<f32> = sigmas.iter().map(|s| -s.ln()).collect();
    let tau_of = |sigma: f32| if interval.0 >= sigma && sigma >= interval.1 { 1.0f32 } else { 0.0 };
    let lower_order_to_end = sigmas[sigmas.len() - 1] == 0.0;
    let (mut x, mut x_pred) = (x.clone(), x);
    let (mut h, mut tau) = (0f32, 0f32);
    let mut noise: Option<Vec<f32>> = None;
    let mut preds: Vec<Vec<f32>> = Vec::new();
    for i in 0..sigmas.len() - 1 {
        let denoised = cx.first_call(i, &x_pred, sigmas[i])?;
        preds.push(denoised);
        if preds.len() > CORRECTOR_ORDER.max(PREDICTOR_ORDER) {
            preds.remove(0);
        }
        let mut predictor_order = PREDICTOR_ORDER.min(preds.len());
        let mut corrector_order = if i == 0 || (sigmas[i + 1] == 0.0 && !pece) { 0 } else { CORRECTOR_ORDER.min(preds.len()) };
        if lower_order_to_end {
            predictor_order = predictor_order.min(sigmas.len() - 2 - i);
            corrector_order = corrector_order.min(sigmas.len() - 1 - i);
        }
        // Corrector
        if corrector_order == 0 {
            x = x_pred.clone();
        } else {
            let b = b_coeffs(sigmas[i], &lambdas[i + 1 - corrector_order..=i], lambdas[i - 1], lambdas[i], tau);
            let used: Vec<&Vec<f32>> = preds[preds.len() - corrector_order..].iter().collect();
            let corr = combine(&used, &b, numel);
            let keep = sigmas[i] / sigmas[i - 1] * (-(tau * tau) * h).exp();
            x = x.iter().zip(&corr).map(|(x, c)| keep * x + c).collect();
            if let Some(n) = noise.as_ref().filter(|_| tau > 0.0) {
                x.iter_mut().zip(n).for_each(|(x, n)| *x += n);
            }
            if pece {
                let again = cx.model.denoise(&x, sigmas[i])?;
                *preds.last_mut().expect("a prediction") = again;
            }
        }
        // Predictor
        if sigmas[i + 1] == 0.0 {
            x = preds.last().expect("a prediction").clone();
        } else {
            tau = tau_of(sigmas[i + 1]);
            let b = b_coeffs(sigmas[i + 1], &lambdas[i + 1 - predictor_order..=i], lambdas[i], lambdas[i + 1], tau);
            let used: Vec<&Vec<f32>> = preds[preds.len() - predictor_order..].iter().collect();
            let pred = combine(&used, &b, numel);
            h = lambdas[i + 1] - lambdas[i];
            let keep = sigmas[i + 1] / sigmas[i] * (-(tau * tau) * h).exp();
            x_pred = x.iter().zip(&pred).map(|(x, p)| keep * x + p).collect();
            if tau > 0.0 {
                let spread = (-(-2.0 * tau * tau * h).exp_m1()).sqrt();
                let fresh: Vec<f32> = cx.noise.draw(numel).into_iter().map(|n| n * sigmas[i + 1] * spread).collect();
                x_pred.iter_mut().zip(&fresh).for_each(|(x, n)| *x += n);
                noise = Some(fresh);
            }
        }
    }
    Ok(x)
}
