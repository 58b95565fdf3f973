//! Owns Euler (k-diffusion `sample_euler`, Karras et al. Algorithm 2 without churn): one
//! denoiser call per step, `x += (x − D(x, σ)) / σ · (σ_next − σ)`. Deterministic; A1111's copy
//! draws an unused noise tensor every step (churn 0), which changes nothing here.

use super::{step_along, to_d, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let sigma = sigmas[i];
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = to_d(&x, sigma, &denoised);
        x = step_along(&x, &d, sigmas[i + 1] - sigma);
    }
    Ok(x)
}
