//! Owns Euler a (k-diffusion `sample_euler_ancestral`, eta 1): an Euler step down to σ_down, then
//! fresh noise times σ_up. ComfyUI's copy returns the denoised latents when σ_down is 0 and adds
//! the noise in the same expression as the step; A1111's adds it only while σ_next > 0.

use super::{add_noise, ancestral_step, step_along, to_d, Context, Flavor};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let (down, up) = ancestral_step(sigma, next);
        match cx.flavor {
            Flavor::ComfyUi if down == 0.0 => x = denoised,
            Flavor::ComfyUi => {
                let d = to_d(&x, sigma, &denoised);
                x = step_along(&x, &d, down - sigma);
                add_noise(&mut x, cx.noise, up);
            }
            Flavor::A1111 => {
                let d = to_d(&x, sigma, &denoised);
                x = step_along(&x, &d, down - sigma);
                if next > 0.0 {
                    add_noise(&mut x, cx.noise, up);
                }
            }
        }
    }
    Ok(x)
}
