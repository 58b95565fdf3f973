//! Owns DPM2 (k-diffusion `sample_dpm_2`): a DPM-Solver-2 step through the log-midpoint
//! σ_mid = exp(lerp(ln σ, ln σ_next, ½)), its slope used for the whole step; the last step (to
//! σ 0) is plain Euler. Deterministic. Both tools drop the next-to-last sigma for it.

use super::{lerp_half, step_along, to_d, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = to_d(&x, sigma, &denoised);
        if next == 0.0 {
            x = step_along(&x, &d, next - sigma);
        } else {
            let mid = lerp_half(sigma.ln(), next.ln()).exp();
            let x_2 = step_along(&x, &d, mid - sigma);
            let denoised_2 = cx.model.denoise(&x_2, mid)?;
            let d_2 = to_d(&x_2, mid, &denoised_2);
            x = step_along(&x, &d_2, next - sigma);
        }
    }
    Ok(x)
}
