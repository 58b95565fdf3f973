//! Owns SEEDS-2 and SEEDS-3 (ComfyUI's `sample_seeds_2` / `sample_seeds_3`, stochastic explicit
//! exponential derivative-free solvers in data prediction, eta 1): two or three model
//! evaluations a step at fractions of the step in λ = −ln σ, with SDE noise carried between the
//! stages; the last step (to σ 0) takes the prediction. ComfyUI only.

use super::Context;
use crate::engine::EngineError;

/// torch's `lerp` with a scalar weight (float32): from the start below ½, from the end above.
fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    if weight.abs() < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (1.0 - weight)
    }
}

/// `(e^h − 1 − h) / h` (h·φ₂(h)).
fn h_phi_2(h: f32) -> f32 {
    (h.exp_m1() - h) / h
}

/// `a·x − b·d` per element.
fn combine(x: &[f32], a: f32, b: f32, d: &[f32]) -> Vec<f32> {
    x.iter().zip(d).map(|(x, d)| a * x - b * d).collect()
}

/// `x + noise·σ` per element.
fn add_scaled(x: &mut [f32], noise: &[f32], sigma: f32) {
    x.iter_mut().zip(noise).for_each(|(x, n)| *x += n * sigma);
}

/// `noise·e^f + √(−expm1(2f))·fresh`: the stage's noise carried to the next stage.
fn carry(noise: &mut [f32], factor: f32, fresh: Vec<f32>) {
    let (keep, add) = (factor.exp(), (-(factor * 2.0).exp_m1()).sqrt());
    noise.iter_mut().zip(fresh).for_each(|(n, f)| *n = *n * keep + add * f);
}

/// `stages` is 2 (SEEDS-2, r = ½) or 3 (SEEDS-3, r = ⅓, ⅔).
pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, stages: usize) -> Result<Vec<f32>, EngineError> {
    let eta = 1.0f32;
    let lambda_of = |s: f32| -s.ln();
    let sigma_of = |l: f32| (-l).exp();
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        if next == 0.0 {
            x = denoised;
            continue;
        }
        let (lambda_s, lambda_t) = (lambda_of(sigma), lambda_of(next));
        let h = lambda_t - lambda_s;
        let h_eta = h * (eta + 1.0);
        let alpha_t = next * lambda_t.exp();
        let numel = x.len();
        if stages == 2 {
            let r = 0.5f32;
            let lambda_1 = lerp(lambda_s, lambda_t, r);
            let sigma_1 = sigma_of(lambda_1);
            let alpha_1 = sigma_1 * lambda_1.exp();
            let mut x_2 = combine(&x, sigma_1 / sigma * (-r * h * eta).exp(), alpha_1 * (-r * h_eta).exp_m1(), &denoised);
            let fresh = cx.noise.draw(numel);
            let c = (-((-2.0 * r) * h * eta).exp_m1()).sqrt();
            let mut noise: Vec<f32> = fresh.iter().map(|n| c * n).collect();
            add_scaled(&mut x_2, &noise, sigma_1);
            let denoised_2 = cx.model.denoise(&x_2, sigma_1)?;
            // torch.lerp(denoised, denoised_2, 1 / (2r) = 1)
            let denoised_d: Vec<f32> = denoised.iter().zip(&denoised_2).map(|(a, b)| lerp(*a, *b, 1.0)).collect();
            x = combine(&x, next / sigma * (-h * eta).exp(), alpha_t * (-h_eta).exp_m1(), &denoised_d);
            let fresh = cx.noise.draw(numel);
            carry(&mut noise, (r - 1.0) * h * eta, fresh);
            add_scaled(&mut x, &noise, next);
        } else {
            let (r_1, r_2) = ((1.0f64 / 3.0) as f32, (2.0f64 / 3.0) as f32);
            let lambda_1 = lerp(lambda_s, lambda_t, r_1);
            let lambda_2 = lerp(lambda_s, lambda_t, r_2);
            let (sigma_1, sigma_2) = (sigma_of(lambda_1), sigma_of(lambda_2));
            let (alpha_1, alpha_2) = (sigma_1 * lambda_1.exp(), sigma_2 * lambda_2.exp());
            let mut x_2 = combine(&x, sigma_1 / sigma * (-r_1 * h * eta).exp(), alpha_1 * (-r_1 * h_eta).exp_m1(), &denoised);
            let fresh = cx.noise.draw(numel);
            let c = (-(((-2.0f64 / 3.0) as f32) * h * eta).exp_m1()).sqrt();
            let mut noise: Vec<f32> = fresh.iter().map(|n| c * n).collect();
            add_scaled(&mut x_2, &noise, sigma_1);
            let denoised_2 = cx.model.denoise(&x_2, sigma_1)?;

            let a3_2 = 2.0 * h_phi_2(-r_2 * h_eta);
            let a3_1 = (-r_2 * h_eta).exp_m1() - a3_2;
            let keep = sigma_2 / sigma * (-r_2 * h * eta).exp();
            let mut x_3: Vec<f32> = (0..numel).map(|j| keep * x[j] - alpha_2 * (a3_1 * denoised[j] + a3_2 * denoised_2[j])).collect();
            let fresh = cx.noise.draw(numel);
            carry(&mut noise, ((1.0f64 / 3.0 - 2.0 / 3.0) as f32) * h * eta, fresh);
            add_scaled(&mut x_3, &noise, sigma_2);
            let denoised_3 = cx.model.denoise(&x_3, sigma_2)?;

            let b3 = h_phi_2(-h_eta) / r_2;
            let b1 = (-h_eta).exp_m1() - b3;
            let keep = next / sigma * (-h * eta).exp();
            x = (0..numel).map(|j| keep * x[j] - alpha_t * (b1 * denoised[j] + b3 * denoised_3[j])).collect();
            let fresh = cx.noise.draw(numel);
            carry(&mut noise, ((2.0f64 / 3.0 - 1.0) as f32) * h * eta, fresh);
            add_scaled(&mut x, &noise, next);
        }
    }
    Ok(x)
}
