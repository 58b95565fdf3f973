//! Owns LCM (ComfyUI's and A1111's `sample_lcm`): each step jumps to the denoised latents and,
//! while the next sigma is above 0, noises them back to it with fresh noise. A1111 runs it over
//! its own LCM denoiser ([`super::discrete::DiscreteSchedule::for_sampler`]).

use super::Context;
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        x = denoised;
        if next > 0.0 {
            let noise = cx.noise.draw(x.len());
            for (x, n) in x.iter_mut().zip(noise) {
                *x += n * next;
            }
        }
    }
    Ok(x)
}
