//! Owns UniPC as ComfyUI runs it (`comfy/extra_samplers/uni_pc.py`, `sample_unipc`): the
//! multistep unified predictor-corrector of order up to 3 in data-prediction form, over the
//! variance-preserving latent `x / √(1 + σ²)` with the time variable σ itself; the last sigma 0
//! is replaced by 0.001 and the corrector is skipped on the final step. `uni_pc` uses B(h) = h
//! ("bh1"), `uni_pc_bh2` B(h) = eʰ − 1. Deterministic. The step itself ([`update`], over any
//! [`VpTime`]) is shared with A1111's UniPC (`crate::engine::timesteps`), which runs it over
//! continuous time on the model's discrete ᾱ.

use super::{Context, Step};
use crate::engine::EngineError;

/// The B(h) of the corrector and predictor weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Bh1,
    Bh2,
}

/// A variance-preserving noise schedule over UniPC's time variable `t`: `log α(t)`, and from it
/// the noise level and half the log signal-to-noise ratio, as UniPC's `NoiseScheduleVP` computes
/// them (float32).
pub(crate) trait VpTime {
    fn log_alpha(&self, t: f32) -> f32;

    fn alpha(&self, t: f32) -> f32 {
        self.log_alpha(t).exp()
    }

    fn std(&self, t: f32) -> f32 {
        (1.0 - (2.0 * self.log_alpha(t)).exp()).sqrt()
    }

    /// λ = ln α − ln std.
    fn lambda(&self, t: f32) -> f32 {
        let l = self.log_alpha(t);
        l - 0.5 * (1.0 - (2.0 * l).exp()).ln()
    }
}

/// ComfyUI's time variable: σ itself, `log α(σ) = ½ ln(1 / (σ² + 1))`.
struct SigmaTime;

impl VpTime for SigmaTime {
    fn log_alpha(&self, sigma: f32) -> f32 {
        0.5 * (1.0 / (sigma * sigma + 1.0)).ln()
    }
}

fn alpha(sigma: f32) -> f32 {
    SigmaTime.alpha(sigma)
}

fn std(sigma: f32) -> f32 {
    SigmaTime.std(sigma)
}

/// The model as a UniPC step calls it: the data prediction at latents `x` and time `t`.
pub(crate) type DataPrediction<'m> = dyn FnMut(&[f32], f32) -> Result<Vec<f32>, EngineError> + 'm;

/// The data prediction at the variance-preserving latent `x`: the denoiser sees `x·√(σ² + 1)`;
/// its noise estimate turns back into x₀ through α and std, as ComfyUI's wrapper does.
fn data_prediction(cx: &mut Context<'_>, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError> {
    let scale = (sigma * sigma + 1.0).sqrt();
    let input: Vec<f32> = x.iter().map(|v| v * scale).collect();
    let denoised = cx.model.denoise(&input, sigma)?;
    let (a, s) = (alpha(sigma), std(sigma));
    Ok(x.iter()
        .zip(input.iter().zip(&denoised))
        .map(|(x, (i, d))| {
            let eps = (i - d) / sigma;
            (x - s * eps) / a
        })
        .collect())
}

/// Solves the small system `m·r = b` (row-major, n ≤ 3) by Gaussian elimination with partial
/// pivoting in float64, rounded to float32 (torch solves it in float32 with LAPACK).
pub(crate) fn solve(m: &[Vec<f32>], b: &[f32]) -> Vec<f32> {
    let n = b.len();
    let mut a: Vec<Vec<f64>> = (0..n).map(|r| (0..n).map(|c| f64::from(m[r][c])).chain([f64::from(b[r])]).collect()).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in a.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut r = vec![0f64; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|c| a[row][c] * r[c]).sum();
        r[row] = (a[row][n] - tail) / a[row][row];
    }
    r.into_iter().map(|v| v as f32).collect()
}

/// `Σₖ weights[k]·d[k]` per element (torch's `tensordot` over the history axis).
fn weighted_sum(d: &[Vec<f32>], weights: &[f32], numel: usize) -> Vec<f32> {
    (0..numel).map(|j| d.iter().zip(weights).map(|(d, w)| d[j] * w).sum()).collect()
}

/// Where one UniPC step goes: to time `t`, of order `order`, with or without the corrector.
pub(crate) struct Target {
    pub t: f32,
    pub order: usize,
    pub use_corrector: bool,
}

/// One UniPC step from `t_prev.last()` to `target.t`: the predictor (unless there is no
/// history), then, with the corrector, the model at the predicted point and the corrected
/// latent. Returns the latent and the model output at the predicted point (for the history).
pub(crate) fn update(
    model: &mut DataPrediction<'_>,
    time: &dyn VpTime,
    x: &[f32],
    (model_prev, t_prev): (&[Vec<f32>], &[f32]),
    Target { t, order, use_corrector }: Target,
    variant: Variant,
) -> Result<(Vec<f32>, Option<Vec<f32>>), EngineError> {
    let numel = x.len();
    let t_prev_0 = t_prev[t_prev.len() - 1];
    let m0 = &model_prev[model_prev.len() - 1];
    let (lambda_prev_0, lambda_t) = (time.lambda(t_prev_0), time.lambda(t));
    let (sigma_prev_0, sigma_t) = (time.std(t_prev_0), time.std(t));
    let alpha_t = time.log_alpha(t).exp();
    let h = lambda_t - lambda_prev_0;

    let mut rks = Vec::with_capacity(order);
    let mut d1s: Vec<Vec<f32>> = Vec::new();
    for i in 1..order {
        let t_i = t_prev[t_prev.len() - 1 - i];
        let m_i = &model_prev[model_prev.len() - 1 - i];
        let rk = (time.lambda(t_i) - lambda_prev_0) / h;
        rks.push(rk);
        d1s.push(m_i.iter().zip(m0).map(|(a, b)| (a - b) / rk).collect());
    }
    rks.push(1.0);

    let hh = -h;
    let h_phi_1 = hh.exp_m1();
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial = 1u32;
    let b_h = match variant {
        Variant::Bh1 => hh,
        Variant::Bh2 => hh.exp_m1(),
    };
    let mut r_rows: Vec<Vec<f32>> = Vec::with_capacity(order);
    let mut b = Vec::with_capacity(order);
    for i in 1..=order {
        r_rows.push(rks.iter().map(|r| r.powi(i as i32 - 1)).collect());
        b.push(h_phi_k * factorial as f32 / b_h);
        factorial *= i as u32 + 1;
        h_phi_k = h_phi_k / hh - (1.0 / f64::from(factorial)) as f32;
    }

    let rhos_p = match order {
        _ if d1s.is_empty() => Vec::new(),
        2 => vec![0.5],
        _ => {
            let sub: Vec<Vec<f32>> = r_rows[..order - 1].iter().map(|row| row[..order - 1].to_vec()).collect();
            solve(&sub, &b[..order - 1])
        }
    };

    let (ratio, towards) = (sigma_t / sigma_prev_0, alpha_t * h_phi_1);
    let x_t_: Vec<f32> = x.iter().zip(m0).map(|(x, m)| ratio * x - towards * m).collect();
    let step = alpha_t * b_h;
    let mut x_t = if d1s.is_empty() {
        x_t_.iter().map(|v| v - step * 0.0).collect::<Vec<f32>>()
    } else {
        let pred_res = weighted_sum(&d1s, &rhos_p, numel);
        x_t_.iter().zip(&pred_res).map(|(v, p)| v - step * p).collect()
    };
    if !use_corrector {
        return Ok((x_t, None));
    }
    let rhos_c = if order == 1 { vec![0.5] } else { solve(&r_rows, &b) };
    let model_t = model(&x_t, t)?;
    let rho_last = rhos_c[rhos_c.len() - 1];
    let corr_res = (!d1s.is_empty()).then(|| weighted_sum(&d1s, &rhos_c[..rhos_c.len() - 1], numel));
    x_t = (0..numel)
        .map(|j| {
            let d1_t = model_t[j] - m0[j];
            let corr = corr_res.as_ref().map_or(0.0, |c| c[j]);
            x_t_[j] - step * (corr + rho_last * d1_t)
        })
        .collect();
    Ok((x_t, Some(model_t)))
}

pub fn sample(x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>, variant: Variant) -> Result<Vec<f32>, EngineError> {
    let mut timesteps = sigmas.to_vec();
    if timesteps.len() < 2 {
        return Ok(x);
    }
    if let Some(last) = timesteps.last_mut().filter(|s| **s == 0.0) {
        *last = 0.001;
    }
    let steps = timesteps.len() - 1;
    let order = 3.min(timesteps.len().saturating_sub(2));
    let scale = (1.0 + timesteps[0] * timesteps[0]).sqrt();
    let mut x: Vec<f32> = x.iter().map(|v| v / scale).collect();

    let mut model_prev: Vec<Vec<f32>> = Vec::new();
    let mut t_prev: Vec<f32> = Vec::new();
    for step_index in 0..steps {
        if step_index == 0 {
            model_prev.push(data_prediction(cx, &x, timesteps[0])?);
            t_prev.push(timesteps[0]);
        } else if step_index < order {
            let t = timesteps[step_index];
            let target = Target { t, order: step_index, use_corrector: true };
            let (next, model_x) = update(&mut |x, t| data_prediction(cx, x, t), &SigmaTime, &x, (&model_prev, &t_prev), target, variant)?;
            x = next;
            let model_x = match model_x {
                Some(m) => m,
                None => data_prediction(cx, &x, t)?,
            };
            model_prev.push(model_x);
            t_prev.push(t);
        } else {
            let last = if step_index == steps - 1 { step_index + 1 } else { step_index };
            for (step, &t) in timesteps.iter().enumerate().take(last + 1).skip(step_index) {
                let target = Target { t, order: order.min(steps + 1 - step), use_corrector: step != steps };
                let (next, model_x) =
                    update(&mut |x, t| data_prediction(cx, x, t), &SigmaTime, &x, (&model_prev, &t_prev), target, variant)?;
                x = next;
                model_prev.rotate_left(1);
                t_prev.rotate_left(1);
                *t_prev.last_mut().expect("a history") = t;
                if step < steps {
                    let model_x = match model_x {
                        Some(m) => m,
                        None => data_prediction(cx, &x, t)?,
                    };
                    *model_prev.last_mut().expect("a history") = model_x;
                } else {
                    // ComfyUI shifts the history without a new entry: the newest stays in place.
                    let n = model_prev.len();
                    if n >= 2 {
                        model_prev[n - 1] = model_prev[n - 2].clone();
                    }
                }
            }
        }
        let denoised = &model_prev[model_prev.len() - 1];
        (cx.on_step)(Step { i: step_index, sigma: timesteps[step_index], x: &x, denoised });
    }
    let a = alpha(timesteps[steps]);
    Ok(x.into_iter().map(|v| v / a).collect())
}
