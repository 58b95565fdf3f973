//! Owns ComfyUI's DPM++ 2M CFG++ (`sample_dpmpp_2m_cfg_pp`): DPM++ 2M whose data term mixes the
//! guided prediction with the unconditional ones (this step's and the last). Deterministic.
//! ComfyUI only.

use super::Context;
use crate::engine::EngineError;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let t_of = |sigma: f32| -sigma.ln();
    let mut old_uncond: Option<Vec<f32>> = None;
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let uncond = cx.model.last_uncond().map_or_else(|| denoised.clone(), <[f32]>::to_vec);
        let (t, t_next) = (t_of(sigma), t_of(next));
        let h = t_next - t;
        let keep = (-h).exp();
        x = match old_uncond.as_ref().filter(|_| next != 0.0) {
            None => (0..x.len()).map(|j| denoised[j] + -keep * uncond[j] + keep * x[j]).collect(),
            Some(old) => {
                let r = (t - t_of(sigmas[i - 1])) / h;
                let scale = (-h).exp_m1() * (1.0 / (2.0 * r));
                (0..x.len()).map(|j| denoised[j] + (-keep * uncond[j] - scale * (denoised[j] - old[j])) + keep * x[j]).collect()
            }
        };
        old_uncond = Some(uncond);
    }
    Ok(x)
}
