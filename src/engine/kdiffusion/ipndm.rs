//! Owns iPNDM (ComfyUI's `sample_ipndm`, order 4): an Adams–Bashforth multistep over the last
//! slopes (1, 2, 3 then 4 of them), returning the denoised latents on the last step.
//! Deterministic. ComfyUI only.

use super::{to_d, Context};
use crate::engine::EngineError;

const MAX_ORDER: usize = 4;

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let mut history: Vec<Vec<f32>> = Vec::new();
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = to_d(&x, sigma, &denoised);
        let dt = next - sigma;
        let order = (i + 1).min(MAX_ORDER);
        let h = |k: usize| &history[history.len() - k];
        x = if next == 0.0 {
            denoised
        } else {
            match order {
                1 => x.iter().zip(&d).map(|(x, d)| x + dt * d).collect(),
                2 => x.iter().zip(d.iter().zip(h(1))).map(|(x, (d, b1))| x + dt * (3.0 * d - b1) / 2.0).collect(),
                3 => (0..x.len()).map(|j| x[j] + dt * (23.0 * d[j] - 16.0 * h(1)[j] + 5.0 * h(2)[j]) / 12.0).collect(),
                _ => (0..x.len()).map(|j| x[j] + dt * (55.0 * d[j] - 59.0 * h(1)[j] + 37.0 * h(2)[j] - 9.0 * h(3)[j]) / 24.0).collect(),
            }
        };
        if history.len() == MAX_ORDER - 1 {
            history.remove(0);
        }
        history.push(d);
    }
    Ok(x)
}
