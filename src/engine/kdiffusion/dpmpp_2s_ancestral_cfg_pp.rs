//! Owns ComfyUI's DPM++ 2S a CFG++ (`sample_dpmpp_2s_ancestral_cfg_pp`): DPM++ 2S a with the
//! latents moved by the guided minus the unconditional prediction (the latest call's) before each
//! exponential step, then ancestral noise. ComfyUI only.

use super::{add_noise, ancestral_step, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let t_of = |sigma: f32| -sigma.ln();
    let sigma_of = |t: f32| (-t).exp();
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let (down, up) = ancestral_step(sigma, next);
        let uncond = cx.model.last_uncond().map_or_else(|| denoised.clone(), <[f32]>::to_vec);
        if down == 0.0 {
            x = (0..x.len()).map(|j| denoised[j] + (x[j] - uncond[j]) / sigma * down).collect();
        } else {
            let (t, t_next) = (t_of(sigma), t_of(down));
            let h = t_next - t;
            let s = t + 0.5 * h;
            let (ratio, towards) = (sigma_of(s) / sigma_of(t), (-h * 0.5).exp_m1());
            let x_2: Vec<f32> = (0..x.len()).map(|j| ratio * (x[j] + (denoised[j] - uncond[j])) - towards * denoised[j]).collect();
            let denoised_2 = cx.model.denoise(&x_2, sigma_of(s))?;
            // ComfyUI's post-CFG hook has seen the second call by now: its unconditional prediction.
            let uncond_2 = cx.model.last_uncond().map_or_else(|| denoised_2.clone(), <[f32]>::to_vec);
            let (ratio, towards) = (sigma_of(t_next) / sigma_of(t), (-h).exp_m1());
            x = (0..x.len()).map(|j| ratio * (x[j] + (denoised[j] - uncond_2[j])) - towards * denoised_2[j]).collect();
        }
        if next > 0.0 {
            add_noise(&mut x, cx.noise, up);
        }
    }
    Ok(x)
}
