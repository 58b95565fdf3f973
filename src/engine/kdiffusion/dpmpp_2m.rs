//! Owns DPM++ 2M (k-diffusion `sample_dpmpp_2m`): the multistep DPM-Solver++ of order 2 in
//! t = −ln σ, using the previous step's denoised latents; first-order on the first and last
//! steps. Deterministic.

use super::Context;
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let t_of = |sigma: f32| -sigma.ln();
    let sigma_of = |t: f32| (-t).exp();
    let mut old: Option<Vec<f32>> = None;
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let (t, t_next) = (t_of(sigma), t_of(next));
        let h = t_next - t;
        let ratio = sigma_of(t_next) / sigma_of(t);
        let towards = (-h).exp_m1();
        x = match old.as_ref().filter(|_| next != 0.0) {
            None => x.iter().zip(&denoised).map(|(x, d)| ratio * x - towards * d).collect(),
            Some(old) => {
                let h_last = t - t_of(sigmas[i - 1]);
                let r = h_last / h;
                let (a, b) = (1.0 + 1.0 / (2.0 * r), 1.0 / (2.0 * r));
                x.iter().zip(denoised.iter().zip(old)).map(|(x, (d, o))| ratio * x - towards * (a * d - b * o)).collect()
            }
        };
        old = Some(denoised);
    }
    Ok(x)
}
