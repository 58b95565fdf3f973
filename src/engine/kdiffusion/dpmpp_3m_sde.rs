//! Owns DPM++ 3M SDE (k-diffusion `sample_dpmpp_3m_sde`, eta 1): the multistep DPM-Solver++ of
//! order 3 as an SDE (order 2, then 3 once two earlier steps exist), with Brownian-tree noise.
//! ComfyUI's copy writes it with half-log-SNR and α factors; A1111 drops the next-to-last sigma.

use super::{Context, Flavor};
use crate::engine::noise::brownian::BrownianNoise;
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let mut noise: BrownianNoise = cx.brownian(sigmas, x.len())?;
    let eta = 1.0f32;
    let (mut d_1, mut d_2): (Option<Vec<f32>>, Option<Vec<f32>>) = (None, None);
    let (mut h, mut h_1, mut h_2): (f32, Option<f32>, Option<f32>) = (0.0, None, None);
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        if next == 0.0 {
            x = denoised.clone();
        } else {
            let (t, s) = (-sigma.ln(), -next.ln());
            h = s - t;
            let h_eta = h * (eta + 1.0);
            let c = -(-h_eta).exp_m1();
            let alpha_t = match cx.flavor {
                Flavor::A1111 => 1.0,
                Flavor::ComfyUi => next * s.exp(),
            };
            let first_x = match cx.flavor {
                Flavor::A1111 => (-h_eta).exp(),
                Flavor::ComfyUi => next / sigma * (-h * eta).exp(),
            };
            let first_d = match cx.flavor {
                Flavor::A1111 => c,
                Flavor::ComfyUi => alpha_t * c,
            };
            x = x.iter().zip(&denoised).map(|(x, d)| first_x * x + first_d * d).collect();
            let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
            let scaled = |phi: f32| if cx.flavor == Flavor::A1111 { phi } else { alpha_t * phi };
            match (&d_1, &d_2, h_1, h_2) {
                (Some(p1), Some(p2), Some(h1), Some(h2)) => {
                    let (r0, r1) = (h1 / h, h2 / h);
                    let phi_3 = phi_2 / h_eta - 0.5;
                    let (a, b) = (scaled(phi_2), scaled(phi_3));
                    for j in 0..x.len() {
                        let d1_0 = (denoised[j] - p1[j]) / r0;
                        let d1_1 = (p1[j] - p2[j]) / r1;
                        let d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1);
                        let d2 = (d1_0 - d1_1) / (r0 + r1);
                        x[j] = x[j] + a * d1 - b * d2;
                    }
                }
                (Some(p1), _, Some(h1), _) => {
                    let r = h1 / h;
                    let a = scaled(phi_2);
                    for j in 0..x.len() {
                        x[j] += a * ((denoised[j] - p1[j]) / r);
                    }
                }
                _ => {}
            }
            let spread = (-(-2.0 * h * eta).exp_m1()).sqrt();
            let n = noise.step(sigma, next);
            x.iter_mut().zip(n).for_each(|(x, n)| *x += n * next * spread);
        }
        d_2 = d_1.take();
        d_1 = Some(denoised);
        h_2 = h_1;
        h_1 = Some(h);
    }
    Ok(x)
}
