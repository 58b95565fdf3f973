//! Owns DPM++ 2M SDE (k-diffusion `sample_dpmpp_2m_sde`, eta 1): the multistep DPM-Solver++ of
//! order 2 as an SDE, with Brownian-tree noise, its second-order correction by the `midpoint`
//! or `heun` rule (A1111's "DPM++ 2M SDE" and "DPM++ 2M SDE Heun"). ComfyUI's copy writes it
//! with half-log-SNR and α factors.

use super::{Context, Flavor};
use crate::engine::noise::brownian::BrownianNoise;
use crate::engine::EngineError;

/// How the second-order term is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solver {
    Midpoint,
    Heun,
}

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, solver: Solver) -> Result<Vec<f32>, EngineError> {
    let mut noise: BrownianNoise = cx.brownian(sigmas, x.len())?;
    let eta = 1.0f32;
    let (mut old, mut h_last): (Option<Vec<f32>>, Option<f32>) = (None, None);
    let mut h = 0.0f32;
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        if next == 0.0 {
            x = denoised.clone();
        } else {
            let (t, s) = (-sigma.ln(), -next.ln());
            h = s - t;
            // The step's first-order part, then the correction's scale, per flavor.
            let (first_x, first_d, correction) = match cx.flavor {
                Flavor::A1111 => {
                    let eta_h = eta * h;
                    let c = -(-h - eta_h).exp_m1();
                    let correction = match solver {
                        Solver::Midpoint => 0.5 * c,
                        Solver::Heun => c / (-h - eta_h) + 1.0,
                    };
                    (next / sigma * (-eta_h).exp(), c, correction)
                }
                Flavor::ComfyUi => {
                    let h_eta = h * (eta + 1.0);
                    let alpha_t = next * s.exp();
                    let c = -(-h_eta).exp_m1();
                    let correction = match solver {
                        Solver::Midpoint => 0.5 * alpha_t * c,
                        Solver::Heun => alpha_t * (c / (-h_eta) + 1.0),
                    };
                    (next / sigma * (-h * eta).exp(), alpha_t * c, correction)
                }
            };
            x = x.iter().zip(&denoised).map(|(x, d)| first_x * x + first_d * d).collect();
            if let (Some(old), Some(h_last)) = (&old, h_last) {
                let r = h_last / h;
                let scale = correction * (1.0 / r);
                for ((x, d), o) in x.iter_mut().zip(&denoised).zip(old) {
                    *x += scale * (d - o);
                }
            }
            let spread = (-(-2.0 * h * eta).exp_m1()).sqrt();
            let n = noise.step(sigma, next);
            x.iter_mut().zip(n).for_each(|(x, n)| *x += n * next * spread);
        }
        old = Some(denoised);
        h_last = Some(h);
    }
    Ok(x)
}
