//! Owns DPM2 a (k-diffusion `sample_dpm_2_ancestral`, eta 1): a DPM-Solver-2 step down to
//! σ_down, then fresh noise times σ_up. A1111's copy draws (and adds, times σ_up = 0) noise on
//! the last step too; ComfyUI's adds noise only after a second-order step.

use super::{add_noise, ancestral_step, lerp_half, step_along, to_d, Context, Flavor};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let (down, up) = ancestral_step(sigma, next);
        let d = to_d(&x, sigma, &denoised);
        let second_order = down != 0.0;
        if second_order {
            let mid = lerp_half(sigma.ln(), down.ln()).exp();
            let x_2 = step_along(&x, &d, mid - sigma);
            let denoised_2 = cx.model.denoise(&x_2, mid)?;
            let d_2 = to_d(&x_2, mid, &denoised_2);
            x = step_along(&x, &d_2, down - sigma);
        } else {
            x = step_along(&x, &d, down - sigma);
        }
        if second_order || cx.flavor == Flavor::A1111 {
            add_noise(&mut x, cx.noise, up);
        }
    }
    Ok(x)
}
