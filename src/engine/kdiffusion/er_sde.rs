//! Owns ER-SDE-Solver-3 (ComfyUI's `sample_er_sde`, VP form, up to three stages): an extended
//! reverse-time SDE stepped in λ = σ/α with ComfyUI's noise scaler `x·(e^(x^0.3) + 10)`, the
//! stage-2/3 corrections from finite differences of earlier predictions with their integrals
//! taken over 200 points; fresh noise every step. ComfyUI only.

use super::Context;
use crate::engine::EngineError;

const MAX_STAGE: usize = 3;
const POINTS: usize = 200;

fn noise_scaler(x: f32) -> f32 {
    x * (x.powf(0.3).exp() + 10.0)
}

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    // λ = exp(−(−ln σ)): σ/α of an eps model, through its half-log-SNR.
    let er_lambdas: Vec<f32> = sigmas.iter().map(|s| (-(-s.ln())).exp()).collect();
    let mut old_denoised: Option<Vec<f32>> = None;
    let mut old_denoised_d: Option<Vec<f32>> = None;
    for i in 0..sigmas.len().saturating_sub(1) {
        let denoised = cx.first_call(i, &x, sigmas[i])?;
        let stage = MAX_STAGE.min(i + 1);
        if sigmas[i + 1] == 0.0 {
            x = denoised.clone();
        } else {
            let (lambda_s, lambda_t) = (er_lambdas[i], er_lambdas[i + 1]);
            let alpha_s = sigmas[i] / lambda_s;
            let alpha_t = sigmas[i + 1] / lambda_t;
            let r_alpha = alpha_t / alpha_s;
            let (scaled_t, scaled_s) = (noise_scaler(lambda_t), noise_scaler(lambda_s));
            let r = scaled_t / scaled_s;
            let (keep, towards) = (r_alpha * r, alpha_t * (1.0 - r));
            x = x.iter().zip(&denoised).map(|(x, d)| keep * x + towards * d).collect();
            if stage >= 2 {
                let old = old_denoised.as_ref().expect("a previous prediction from step 2 on");
                let dt = lambda_t - lambda_s;
                let step = -dt / POINTS as f32;
                let positions: Vec<f32> = (0..POINTS).map(|k| lambda_t + k as f32 * step).collect();
                let scaled: Vec<f32> = positions.iter().map(|&p| noise_scaler(p)).collect();
                let s = scaled.iter().map(|v| f64::from(1.0 / v)).sum::<f64>() as f32 * step;
                let gap = lambda_s - er_lambdas[i - 1];
                let denoised_d: Vec<f32> = denoised.iter().zip(old).map(|(d, o)| (d - o) / gap).collect();
                let coef = alpha_t * (dt + s * scaled_t);
                x = x.iter().zip(&denoised_d).map(|(x, d)| x + coef * d).collect();
                if stage >= 3 {
                    let old_d = old_denoised_d.as_ref().expect("a previous difference from step 3 on");
                    let s_u = positions.iter().zip(&scaled).map(|(p, v)| f64::from((p - lambda_s) / v)).sum::<f64>() as f32 * step;
                    let gap = (lambda_s - er_lambdas[i - 2]) / 2.0;
                    let coef = alpha_t * ((dt * dt) / 2.0 + s_u * scaled_t);
                    x = x.iter().zip(denoised_d.iter().zip(old_d)).map(|(x, (d, o))| x + coef * ((d - o) / gap)).collect();
                }
                old_denoised_d = Some(denoised_d);
            }
            let spread = (lambda_t * lambda_t - lambda_s * lambda_s * (r * r)).sqrt();
            let spread = if spread.is_nan() { 0.0 } else { spread };
            let noise = cx.noise.draw(x.len());
            x.iter_mut().zip(noise).for_each(|(x, n)| *x += alpha_t * n * spread);
        }
        old_denoised = Some(denoised);
    }
    Ok(x)
}
