//! Owns Heun (k-diffusion `sample_heun`, Karras et al. Algorithm 2 without churn): an Euler
//! step, a second denoiser call at its end, and the step redone with the mean of the two
//! slopes; the last step (to σ 0) is plain Euler. Deterministic.

use super::{step_along, to_d, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = to_d(&x, sigma, &denoised);
        let dt = next - sigma;
        if next == 0.0 {
            x = step_along(&x, &d, dt);
        } else {
            let x_2 = step_along(&x, &d, dt);
            let denoised_2 = cx.model.denoise(&x_2, next)?;
            let d_2 = to_d(&x_2, next, &denoised_2);
            let d_prime: Vec<f32> = d.iter().zip(&d_2).map(|(a, b)| (a + b) / 2.0).collect();
            x = step_along(&x, &d_prime, dt);
        }
    }
    Ok(x)
}
