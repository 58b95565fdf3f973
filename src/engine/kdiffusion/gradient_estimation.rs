//! Owns ComfyUI's gradient-estimation sampler (`sample_gradient_estimation`, γ = 2): Euler steps
//! corrected by γ − 1 times the change of the slope since the last step; its CFG++ form takes
//! the slope from the unconditional prediction. Deterministic. ComfyUI only.

use super::{to_d, Context};
use crate::engine::EngineError;

const GAMMA: f32 = 2.0;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, cfg_pp: bool) -> Result<Vec<f32>, EngineError> {
    let mut old_d: Option<Vec<f32>> = None;
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = match cx.model.last_uncond().filter(|_| cfg_pp) {
            Some(uncond) => to_d(&x, sigma, uncond),
            None => to_d(&x, sigma, &denoised),
        };
        let dt = next - sigma;
        if next == 0.0 {
            x = denoised;
        } else {
            x = if cfg_pp {
                denoised.iter().zip(&d).map(|(den, d)| den + d * next).collect()
            } else {
                x.iter().zip(&d).map(|(x, d)| x + d * dt).collect()
            };
            if let Some(old) = &old_d {
                for ((x, d), o) in x.iter_mut().zip(&d).zip(old) {
                    *x += (GAMMA - 1.0) * (d - o) * dt;
                }
            }
        }
        old_d = Some(d);
    }
    Ok(x)
}
