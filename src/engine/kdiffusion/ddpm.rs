//! Owns DDPM (ComfyUI's `sample_ddpm`): the ancestral DDPM posterior step in the variance-
//! preserving latents `x / √(1 + σ²)`, with fresh noise while the next sigma is above 0.
//! ComfyUI only.

use super::Context;
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let eps: Vec<f32> = x.iter().zip(&denoised).map(|(x, d)| (x - d) / sigma).collect();
        let scale_in = (1.0 + sigma * sigma).sqrt();
        let alpha_cumprod = 1.0 / (sigma * sigma + 1.0);
        let alpha_cumprod_prev = 1.0 / (next * next + 1.0);
        let alpha = alpha_cumprod / alpha_cumprod_prev;
        let (keep, remove) = ((1.0 / alpha).sqrt(), (1.0 - alpha_cumprod).sqrt());
        let mut mu: Vec<f32> = x.iter().zip(&eps).map(|(x, e)| keep * (x / scale_in - (1.0 - alpha) * e / remove)).collect();
        if next > 0.0 {
            let spread = ((1.0 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt();
            let noise = cx.noise.draw(mu.len());
            for (m, n) in mu.iter_mut().zip(noise) {
                *m += spread * n;
            }
        }
        if next != 0.0 {
            let scale_out = (1.0 + next * next).sqrt();
            mu.iter_mut().for_each(|m| *m *= scale_out);
        }
        x = mu;
    }
    Ok(x)
}
