//! Owns iPNDM-v (ComfyUI's `sample_ipndm_v`, order 4): iPNDM with coefficients for variable
//! step sizes, from the gaps between the last sigmas; the denoised latents on the last step.
//! Deterministic. ComfyUI only.

use super::{to_d, Context};
use crate::engine::EngineError;

const MAX_ORDER: usize = 4;

/// The multistep coefficients (this slope's, then the earlier ones', newest first) for order
/// `order` at step `i`, in float32 as ComfyUI computes them from the sigmas.
fn coefficients(order: usize, t: &[f32], i: usize) -> Vec<f32> {
    let h_n = t[i + 1] - t[i];
    if order == 1 {
        return vec![1.0];
    }
    let h_n_1 = t[i] - t[i - 1];
    let c1 = (2.0 + h_n / h_n_1) / 2.0;
    let c2 = -(h_n / h_n_1) / 2.0;
    if order == 2 {
        return vec![c1, c2];
    }
    let h_n_2 = t[i - 1] - t[i - 2];
    let temp1 = (1.0 - h_n / (3.0 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2.0;
    if order == 3 {
        return vec![c1 + temp1, c2 - (1.0 + h_n_1 / h_n_2) * temp1, temp1 * h_n_1 / h_n_2];
    }
    let h_n_3 = t[i - 2] - t[i - 3];
    let temp2 = ((1.0 - h_n / (3.0 * (h_n + h_n_1))) / 2.0 + (1.0 - h_n / (2.0 * (h_n + h_n_1))) * h_n / (6.0 * (h_n + h_n_1 + h_n_2)))
        * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2))
        / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3));
    let ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3));
    vec![
        c1 + temp1 + temp2,
        c2 - (1.0 + h_n_1 / h_n_2) * temp1 - (1.0 + (h_n_1 / h_n_2) + ratio) * temp2,
        temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + ratio * (1.0 + h_n_2 / h_n_3)) * temp2,
        -temp2 * ratio * h_n_1 / h_n_2,
    ]
}

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let mut history: Vec<Vec<f32>> = Vec::new();
    for i in 0..sigmas.len().saturating_sub(1) {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = cx.first_call(i, &x, sigma)?;
        let d = to_d(&x, sigma, &denoised);
        if next == 0.0 {
            x = denoised;
        } else {
            let c = coefficients((i + 1).min(MAX_ORDER), sigmas, i);
            let dt = next - sigma;
            x = (0..x.len())
                .map(|j| {
                    let mut sum = c[0] * d[j];
                    for (k, ck) in c.iter().enumerate().skip(1) {
                        sum += ck * history[history.len() - k][j];
                    }
                    x[j] + dt * sum
                })
                .collect();
        }
        if history.len() == MAX_ORDER - 1 {
            history.remove(0);
        }
        history.push(d);
    }
    Ok(x)
}
