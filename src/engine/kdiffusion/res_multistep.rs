//! Owns ComfyUI's RES multistep sampler (`res_multistep`: the second-order exponential
//! multistep of arXiv 2308.02157), plain (eta 0) and ancestral (eta 1), each also in its CFG++
//! form (the data term from the unconditional prediction). ComfyUI only.

use super::{ancestral_step, Context};
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, ancestral: bool, cfg_pp: bool) -> Result<Vec<f32>, EngineError> {
    let t_of = |sigma: f32| -sigma.ln();
    let phi1 = |t: f32| t.exp_m1() / t;
    let phi2 = |t: f32| (phi1(t) - 1.0) / t;
    let zero_nan = |v: f32| if v.is_nan() { 0.0 } else { v };
    let (mut old_down, mut old_denoised): (f32, Option<Vec<f32>>) = (0.0, None);
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let (down, up) = if ancestral { ancestral_step(sigma, next) } else { (next, 0.0) };
        let uncond = if cfg_pp { cx.model.last_uncond().map_or_else(|| denoised.clone(), <[f32]>::to_vec) } else { denoised.clone() };
        match old_denoised.as_ref().filter(|_| down != 0.0) {
            None => {
                x = if cfg_pp {
                    (0..x.len()).map(|j| denoised[j] + (x[j] - uncond[j]) / sigma * down).collect()
                } else {
                    let dt = down - sigma;
                    (0..x.len()).map(|j| x[j] + (x[j] - denoised[j]) / sigma * dt).collect()
                };
            }
            Some(old) => {
                let (t, t_old, t_next, t_prev) = (t_of(sigma), t_of(old_down), t_of(down), t_of(sigmas[i - 1]));
                let h = t_next - t;
                let c2 = (t_prev - t_old) / h;
                let (p1, p2) = (phi1(-h), phi2(-h));
                let (b1, b2) = (zero_nan(p1 - p2 / c2), zero_nan(p2 / c2));
                let keep = (-h).exp();
                if cfg_pp {
                    for j in 0..x.len() {
                        x[j] += denoised[j] - uncond[j];
                    }
                }
                let data = if cfg_pp { &uncond } else { &denoised };
                x = (0..x.len()).map(|j| keep * x[j] + h * (b1 * data[j] + b2 * old[j])).collect();
            }
        }
        if next > 0.0 {
            let noise = cx.noise.draw(x.len());
            x.iter_mut().zip(noise).for_each(|(x, n)| *x += n * up);
        }
        old_denoised = Some(uncond);
        old_down = down;
    }
    Ok(x)
}
