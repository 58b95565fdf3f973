//! Owns DPM++ SDE (k-diffusion `sample_dpmpp_sde`, eta 1, r ½): a stochastic second-order
//! DPM-Solver++ step through the midpoint in t = −ln σ, each half stepping down to its ancestral
//! σ and adding Brownian-tree noise. ComfyUI's copy writes it with half-log-SNR and α factors
//! and returns the denoised latents on the last step; A1111's takes an Euler step there.

use super::{ancestral_step, step_along, to_d, Context, Flavor};
use crate::engine::noise::brownian::BrownianNoise;
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let mut noise: BrownianNoise = cx.brownian(sigmas, x.len())?;
    let r = 0.5f32;
    let fac = 1.0 / (2.0 * r);
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        if next == 0.0 {
            x = match cx.flavor {
                Flavor::A1111 => step_along(&x, &to_d(&x, sigma, &denoised), next - sigma),
                Flavor::ComfyUi => denoised,
            };
            continue;
        }
        let lambda_s = -sigma.ln();
        let lambda_t = -next.ln();
        let h = lambda_t - lambda_s;
        let lambda_s1 = lambda_s + h * r;
        let sigma_of = |l: f32| (-l).exp();
        match cx.flavor {
            Flavor::A1111 => {
                let (sd, su) = ancestral_step(sigma_of(lambda_s), sigma_of(lambda_s1));
                let s_ = -sd.ln();
                let (ratio, towards) = (sigma_of(s_) / sigma_of(lambda_s), (lambda_s - s_).exp_m1());
                let mut x_2: Vec<f32> = x.iter().zip(&denoised).map(|(x, d)| ratio * x - towards * d).collect();
                let n = noise.step(sigma_of(lambda_s), sigma_of(lambda_s1));
                x_2.iter_mut().zip(n).for_each(|(x, n)| *x += n * su);
                let denoised_2 = cx.model.denoise(&x_2, sigma_of(lambda_s1))?;
                let (sd, su) = ancestral_step(sigma_of(lambda_s), sigma_of(lambda_t));
                let t_next_ = -sd.ln();
                let (ratio, towards) = (sigma_of(t_next_) / sigma_of(lambda_s), (lambda_s - t_next_).exp_m1());
                x = (0..x.len()).map(|j| ratio * x[j] - towards * ((1.0 - fac) * denoised[j] + fac * denoised_2[j])).collect();
                let n = noise.step(sigma_of(lambda_s), sigma_of(lambda_t));
                x.iter_mut().zip(n).for_each(|(x, n)| *x += n * su);
            }
            Flavor::ComfyUi => {
                let sigma_s1 = sigma_of(lambda_s1);
                let (alpha_s, alpha_s1, alpha_t) = (sigma * lambda_s.exp(), sigma_s1 * lambda_s1.exp(), next * lambda_t.exp());
                let (sd, su) = ancestral_step(sigma_of(lambda_s), sigma_of(lambda_s1));
                let h_ = -sd.ln() - lambda_s;
                let (ratio, towards) = ((alpha_s1 / alpha_s) * (-h_).exp(), alpha_s1 * (-h_).exp_m1());
                let mut x_2: Vec<f32> = x.iter().zip(&denoised).map(|(x, d)| ratio * x - towards * d).collect();
                let n = noise.step(sigma, sigma_s1);
                x_2.iter_mut().zip(n).for_each(|(x, n)| *x += alpha_s1 * n * su);
                let denoised_2 = cx.model.denoise(&x_2, sigma_s1)?;
                let (sd, su) = ancestral_step(sigma_of(lambda_s), sigma_of(lambda_t));
                let h_ = -sd.ln() - lambda_s;
                let (ratio, towards) = ((alpha_t / alpha_s) * (-h_).exp(), alpha_t * (-h_).exp_m1());
                x = (0..x.len()).map(|j| ratio * x[j] - towards * ((1.0 - fac) * denoised[j] + fac * denoised_2[j])).collect();
                let n = noise.step(sigma, next);
                x.iter_mut().zip(n).for_each(|(x, n)| *x += alpha_t * n * su);
            }
        }
    }
    Ok(x)
}
