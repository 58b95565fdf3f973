//! Owns Restart (A1111's `restart_sampler`, Xu et al. 2023): Heun steps down a Karras schedule;
//! from 20 steps on, part of the step budget goes to restarts: at σ ≈ 0.1 the latent is pushed
//! back up to σ ≈ 2 with fresh noise and brought down again (once, or twice from 36 steps).
//! Below 20 steps it is Heun on the given sigmas. A1111 only.

use super::schedules::karras;
use super::{add_noise, step_along, to_d, Context};
use crate::engine::EngineError;

/// Index of the sigma nearest to `value` (torch's `argmin(abs(sigmas − value))`: the first of
/// equals).
fn nearest(sigmas: &[f32], value: f32) -> usize {
    let mut best = 0;
    for (i, s) in sigmas.iter().enumerate() {
        if (s - value).abs() < (sigmas[best] - value).abs() {
            best = i;
        }
    }
    best
}

/// The (from, to) pairs the sampler walks, restarts included, and the sigmas they come from.
pub fn step_list(sigmas: &[f32]) -> Vec<(f32, f32)> {
    let steps = sigmas.len().saturating_sub(1);
    let (sigmas, restart) = if steps >= 20 {
        let (restart_steps, restart_times) = if steps >= 36 { (steps / 4, 2) } else { (9, 1) };
        let rebuilt = karras(steps - restart_steps * restart_times, sigmas[sigmas.len() - 2], sigmas[0]);
        (rebuilt, Some((0.1f32, restart_steps + 1, restart_times, 2.0f32)))
    } else {
        (sigmas.to_vec(), None)
    };
    let restart_at = restart.map(|(at, steps, times, max)| (nearest(&sigmas, at), steps, times, max));
    let mut list = Vec::new();
    for i in 0..sigmas.len().saturating_sub(1) {
        list.push((sigmas[i], sigmas[i + 1]));
        if let Some((_, restart_steps, times, max)) = restart_at.filter(|r| r.0 == i + 1) {
            let (min_idx, max_idx) = (i + 1, nearest(&sigmas, max));
            if max_idx < min_idx {
                let mut up = karras(restart_steps, sigmas[min_idx], sigmas[max_idx]);
                up.pop();
                for _ in 0..times {
                    list.extend(up.windows(2).map(|w| (w[0], w[1])));
                }
            }
        }
    }
    list
}

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let mut last_sigma: Option<f32> = None;
    for (step_id, (old, new)) in step_list(sigmas).into_iter().enumerate() {
        match last_sigma {
            Some(last) if last < old => add_noise(&mut x, cx.noise, (old * old - last * last).sqrt()),
            _ => {}
        }
        let denoised = cx.first_call(step_id, &x, old)?;
        let d = to_d(&x, old, &denoised);
        let dt = new - old;
        if new == 0.0 {
            x = step_along(&x, &d, dt);
        } else {
            let x_2 = step_along(&x, &d, dt);
            let denoised_2 = cx.model.denoise(&x_2, new)?;
            let d_2 = to_d(&x_2, new, &denoised_2);
            let d_prime: Vec<f32> = d.iter().zip(&d_2).map(|(a, b)| (a + b) / 2.0).collect();
            x = step_along(&x, &d_prime, dt);
        }
        last_sigma = Some(new);
    }
    Ok(x)
}
