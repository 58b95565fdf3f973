//! Owns DPM++ 2S a (k-diffusion `sample_dpmpp_2s_ancestral`, eta 1): a single-step DPM-Solver++
//! of order 2 down to σ_down through the midpoint in t = −ln σ, then fresh noise times σ_up
//! while σ_next > 0 (both tools).

use super::{add_noise, ancestral_step, step_along, to_d, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let t_of = |sigma: f32| -sigma.ln();
    let sigma_of = |t: f32| (-t).exp();
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let (down, up) = ancestral_step(sigma, next);
        if down == 0.0 {
            let d = to_d(&x, sigma, &denoised);
            x = step_along(&x, &d, down - sigma);
        } else {
            let (t, t_next) = (t_of(sigma), t_of(down));
            let r = 0.5f32;
            let h = t_next - t;
            let s = t + r * h;
            let (ratio_s, towards_s) = (sigma_of(s) / sigma_of(t), (-h * r).exp_m1());
            let x_2: Vec<f32> = x.iter().zip(&denoised).map(|(x, d)| ratio_s * x - towards_s * d).collect();
            let denoised_2 = cx.model.denoise(&x_2, sigma_of(s))?;
            let (ratio, towards) = (sigma_of(t_next) / sigma_of(t), (-h).exp_m1());
            x = x.iter().zip(&denoised_2).map(|(x, d)| ratio * x - towards * d).collect();
        }
        if next > 0.0 {
            add_noise(&mut x, cx.noise, up);
        }
    }
    Ok(x)
}
