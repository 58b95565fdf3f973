//! Owns ComfyUI's CFG++ Euler samplers (`sample_euler_ancestral_cfg_pp`, and `sample_euler_cfg_pp`
//! at eta 0): the step's slope taken from the unconditional prediction, the step itself from the
//! guided one, with ancestral noise at eta 1. ComfyUI only.

use super::{ancestral_step, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, ancestral: bool) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        if next == 0.0 {
            x = denoised;
            continue;
        }
        let uncond = cx.model.last_uncond().map_or_else(|| denoised.clone(), <[f32]>::to_vec);
        let (alpha_s, alpha_t) = (sigma * (-sigma.ln()).exp(), next * (-next.ln()).exp());
        let d: Vec<f32> = x.iter().zip(&uncond).map(|(x, u)| (x - alpha_s * u) / sigma).collect();
        let (down, up) = if ancestral { ancestral_step(sigma / alpha_s, next / alpha_t) } else { (next / alpha_t, 0.0) };
        let down = alpha_t * down;
        x = denoised.iter().zip(&d).map(|(den, d)| alpha_t * den + down * d).collect();
        if ancestral {
            let noise = cx.noise.draw(x.len());
            x.iter_mut().zip(noise).for_each(|(x, n)| *x += alpha_t * n * up);
        }
    }
    Ok(x)
}
