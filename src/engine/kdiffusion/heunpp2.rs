//! Owns Heun++ 2 (ComfyUI's `sample_heunpp2`): Heun's method extended by a third denoiser call
//! two sigmas ahead, the slopes weighted by their sigmas against the first (3 calls per step,
//! 2 on the next-to-last, plain Euler on the last). Deterministic. ComfyUI only.

use super::{step_along, to_d, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let end = sigmas[sigmas.len() - 1];
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = to_d(&x, sigma, &denoised);
        let dt = next - sigma;
        if next == end {
            x = step_along(&x, &d, dt);
            continue;
        }
        let x_2 = step_along(&x, &d, dt);
        let denoised_2 = cx.model.denoise(&x_2, next)?;
        let d_2 = to_d(&x_2, next, &denoised_2);
        let d_prime: Vec<f32> = if sigmas[i + 2] == end {
            let w = 2.0 * sigmas[0];
            let w2 = next / w;
            let w1 = 1.0 - w2;
            d.iter().zip(&d_2).map(|(a, b)| a * w1 + b * w2).collect()
        } else {
            let after = sigmas[i + 2];
            let x_3 = step_along(&x_2, &d_2, after - next);
            let denoised_3 = cx.model.denoise(&x_3, after)?;
            let d_3 = to_d(&x_3, after, &denoised_3);
            let w = 3.0 * sigmas[0];
            let (w2, w3) = (next / w, after / w);
            let w1 = 1.0 - w2 - w3;
            d.iter().zip(&d_2).zip(&d_3).map(|((a, b), c)| w1 * a + w2 * b + w3 * c).collect()
        };
        x = step_along(&x, &d_prime, dt);
    }
    Ok(x)
}
