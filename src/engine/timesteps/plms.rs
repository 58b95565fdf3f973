//! Owns A1111's PLMS (`sd_samplers_timesteps_impl.plms`): DDIM's update driven by a
//! pseudo-linear-multistep noise estimate. The first step is a pseudo improved Euler step (a
//! second model call at the next timestep, the two predictions averaged); later steps use
//! Adams–Bashforth of order 2, 3 and then 4 over the predictions kept so far.

use super::{Alphas, Run, Step};
use crate::engine::EngineError;

pub(super) fn sample(mut x: Vec<f32>, timesteps: &[u32], table: &Alphas, run: &mut Run<'_>) -> Result<Vec<f32>, EngineError> {
    let mut old: Vec<Vec<f32>> = Vec::new();
    for i in 0..timesteps.len().saturating_sub(1) {
        let index = timesteps.len() - 1 - i;
        let eps = run.model.eps(&x, f64::from(timesteps[index]), 1.0)?;
        let prime: Vec<f32> = match old.len() {
            0 => {
                let (ahead, _) = table.step(&x, &eps, index);
                let next = run.model.eps(&ahead, f64::from(timesteps[index.saturating_sub(1)]), 1.0)?;
                eps.iter().zip(&next).map(|(e, n)| (e + n) / 2.0).collect()
            }
            1 => eps.iter().zip(&old[0]).map(|(e, o1)| (3.0 * e - o1) / 2.0).collect(),
            2 => eps.iter().zip(&old[1]).zip(&old[0]).map(|((e, o1), o2)| (23.0 * e - 16.0 * o1 + 5.0 * o2) / 12.0).collect(),
            _ => eps
                .iter()
                .zip(&old[old.len() - 1])
                .zip(&old[old.len() - 2])
                .zip(&old[old.len() - 3])
                .map(|(((e, o1), o2), o3)| (55.0 * e - 59.0 * o1 + 37.0 * o2 - 9.0 * o3) / 24.0)
                .collect(),
        };
        let (next, pred_x0) = table.step(&x, &prime, index);
        old.push(eps);
        if old.len() >= 4 {
            old.remove(0);
        }
        x = next;
        (run.on_step)(Step { i, x: &x, pred_x0: &pred_x0 });
    }
    Ok(x)
}
