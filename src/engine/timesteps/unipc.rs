//! Owns A1111's UniPC (`sd_samplers_timesteps_impl.unipc` over its copy of the UniPC authors'
//! `uni_pc.py`, with A1111's defaults: B(h) = h, order 3, "time uniform" steps, lower orders at
//! the end): multistep UniPC in data-prediction form over continuous time `t ∈ (0, 1]`, where
//! `log α(t)` runs piecewise linearly through `½ ln ᾱ` of the training timesteps
//! (`NoiseScheduleVP('discrete')`), the UNet getting the fractional timestep `(t − 1/N)·1000`.
//! It walks `len(timesteps)` steps of A1111's timestep list from t = 1 (image-to-image: from
//! just above the last walked timestep) to t = 1/N; the step itself is
//! [`crate::engine::kdiffusion::uni_pc::update`], shared with ComfyUI's UniPC.

use super::{Run, Step};
use crate::api::A1111_UNIPC_ORDER as ORDER;
use crate::engine::kdiffusion::schedules::linspace_f32;
use crate::engine::kdiffusion::uni_pc::{update, Target, Variant, VpTime};
use crate::engine::EngineError;

/// `NoiseScheduleVP('discrete', alphas_cumprod)`: knots `t_n = (n + 1)/N` (float32
/// `linspace(0, 1, N + 1)[1:]`) at `½ ln ᾱ_n`, linear between them and beyond the ends.
struct DiscreteVp {
    t_array: Vec<f32>,
    log_alpha: Vec<f32>,
}

impl DiscreteVp {
    fn new(alphas_cumprod: &[f32]) -> Self {
        let n = alphas_cumprod.len();
        Self { t_array: linspace_f32(0.0, 1.0, n + 1)[1..].to_vec(), log_alpha: alphas_cumprod.iter().map(|a| 0.5 * a.ln()).collect() }
    }

    fn total_n(&self) -> usize {
        self.t_array.len()
    }
}

impl VpTime for DiscreteVp {
    /// `interpolate_fn`: the segment whose left knot is the last at or below `t` (the first or
    /// last segment outside the knots).
    fn log_alpha(&self, t: f32) -> f32 {
        let last = self.t_array.len() - 2;
        let k = self.t_array.iter().rposition(|&x| x <= t).unwrap_or(0).min(last);
        let (sx, ex, sy, ey) = (self.t_array[k], self.t_array[k + 1], self.log_alpha[k], self.log_alpha[k + 1]);
        sy + (t - sx) * (ey - sy) / (ex - sx)
    }
}

/// Runs A1111's UniPC over `steps = timesteps.len()` steps (image-to-image: `img2img`, starting
/// just above the last of `timesteps`).
pub(super) fn sample(mut x: Vec<f32>, timesteps: &[u32], img2img: bool, run: &mut Run<'_>) -> Result<Vec<f32>, EngineError> {
    let vp = DiscreteVp::new(run.alphas_cumprod);
    let steps = timesteps.len();
    if steps < ORDER {
        return Err(EngineError::InvalidRequest(format!(
            "A1111's UniPC needs at least {ORDER} steps to walk (it fails below that); this request walks {steps}: use more steps or a higher strength"
        )));
    }
    let first_t = 1.0 / vp.total_n() as f32;
    let t_start = match (img2img, timesteps.last()) {
        (true, Some(&t)) => t as f32 / 1000.0 + 0.001,
        _ => 1.0,
    };
    let times = linspace_f32(t_start, first_t, steps + 1);
    let model = &mut *run.model;
    let mut predict = |x: &[f32], t: f32| -> Result<Vec<f32>, EngineError> {
        let noise = model.eps(x, f64::from((t - first_t) * 1000.0), 1.0)?;
        let (alpha, std) = (vp.alpha(t), vp.std(t));
        Ok(x.iter().zip(&noise).map(|(x, n)| (x - std * n) / alpha).collect())
    };

    let mut model_prev = vec![predict(&x, times[0])?];
    let mut t_prev = vec![times[0]];
    let mut report = |i: usize, x: &[f32], model_x: Option<&[f32]>| (run.on_step)(Step { i, x, pred_x0: model_x.unwrap_or(x) });
    for (init_order, &t) in times.iter().enumerate().take(ORDER).skip(1) {
        let target = Target { t, order: init_order, use_corrector: true };
        let (next, model_x) = update(&mut predict, &vp, &x, (&model_prev, &t_prev), target, Variant::Bh1)?;
        x = next;
        let model_x = match model_x {
            Some(m) => m,
            None => predict(&x, t)?,
        };
        report(init_order - 1, &x, Some(&model_x));
        model_prev.push(model_x);
        t_prev.push(t);
    }
    for (step, &t) in times.iter().enumerate().skip(ORDER) {
        let target = Target { t, order: ORDER.min(steps + 1 - step), use_corrector: step != steps };
        let (next, model_x) = update(&mut predict, &vp, &x, (&model_prev, &t_prev), target, Variant::Bh1)?;
        x = next;
        report(step - 1, &x, model_x.as_deref());
        model_prev.rotate_left(1);
        t_prev.rotate_left(1);
        *t_prev.last_mut().expect("a history") = t;
        let n = model_prev.len();
        if step < steps {
            // The newest prediction replaces the oldest, now last; none is needed after the last step.
            model_prev[n - 1] = match model_x {
                Some(m) => m,
                None => predict(&x, t)?,
            };
        } else {
            model_prev[n - 1] = model_prev[n - 2].clone();
        }
    }
    Ok(x)
}
