//! Owns A1111's DDIM CFG++ (`sd_samplers_timesteps_impl.ddim_cfgpp`, eta 0): DDIM with guidance at
//! 1/12.5 of the requested scale for `pred_x0`, and the step to the previous timestep along the
//! unconditional noise prediction instead of the guided one.

use super::{Alphas, Run, Step};
use crate::engine::EngineError;

/// A1111's `cond_scale_miltiplier` for CFG++ (maps CFG 0–12.5 onto 0–1).
const SCALE: f64 = 1.0 / 12.5;

pub(super) fn sample(mut x: Vec<f32>, timesteps: &[u32], table: &Alphas, run: &mut Run<'_>) -> Result<Vec<f32>, EngineError> {
    for i in 0..timesteps.len().saturating_sub(1) {
        let index = timesteps.len() - 1 - i;
        let eps = run.model.eps(&x, f64::from(timesteps[index]), SCALE)?;
        let uncond = run.model.last_uncond().map(<[f32]>::to_vec).unwrap_or_else(|| eps.clone());
        let (next, pred_x0) = table.step_towards(&x, &eps, &uncond, index);
        x = next;
        (run.on_step)(Step { i, x: &x, pred_x0: &pred_x0 });
    }
    Ok(x)
}
