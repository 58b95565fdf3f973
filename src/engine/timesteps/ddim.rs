//! Owns A1111's DDIM (`sd_samplers_timesteps_impl.ddim`) at its default eta of 0: per timestep
//! from the last down to the second, `pred_x0` from the noise prediction, then the latents at
//! the previous timestep along the same noise. Deterministic (at eta 0 the noise A1111 draws
//! is multiplied by 0).

use super::{Alphas, Run, Step};
use crate::engine::EngineError;

pub(super) fn sample(mut x: Vec<f32>, timesteps: &[u32], table: &Alphas, run: &mut Run<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..timesteps.len().saturating_sub(1) {
        let index = timesteps.len() - 1 - i;
        let eps = run.model.eps(&x, f64::from(timesteps[index]), 1.0)?;
        let (next, pred_x0) = table.step(&x, &eps, index);
        x = next;
        (run.on_step)(Step { i, x: &x, pred_x0: &pred_x0 });
    }
    Ok(x)
}
