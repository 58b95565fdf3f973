//! Owns DPM-Solver (k-diffusion's `DPMSolver`: `sample_dpm_fast` and `sample_dpm_adaptive`):
//! single-step solvers of order 1–3 in t = −ln σ between σ_max and σ_min, on their own time
//! grid (fast: ⌊n/3⌋ + 1 evenly spaced steps of order 3, 3, …, then 2/1; adaptive: a PID
//! step-size controller comparing the order-2 and order-3 results). The sampler reads only the
//! first sigma, the last non-zero one and the count of the list it gets. Ancestral at `eta` > 0
//! (A1111 passes eta 1, ComfyUI 0 but still draws the noise).

use super::{ancestral_step, Context, Step};
use crate::engine::EngineError;

fn t_of(sigma: f32) -> f32 {
    -sigma.ln()
}

fn sigma_of(t: f32) -> f32 {
    (-t).exp()
}

/// The range and count a sigma list gives DPM-Solver, as ComfyUI reads them (σ_min is the last
/// non-zero sigma); `None` for a list of fewer than two sigmas, which the tools return unchanged.
pub fn range(sigmas: &[f32]) -> Option<(f32, f32, usize)> {
    let n = sigmas.len().checked_sub(1).filter(|n| *n > 0)?;
    let last = sigmas[n];
    let sigma_min = if last == 0.0 { sigmas[n - 1] } else { last };
    Some((sigma_min, sigmas[0], n))
}

/// The solver's state for one run: the model, its cached ε at the step's points, the callback.
struct Solver<'a, 'b> {
    cx: &'a mut Context<'b>,
}

impl Solver<'_, '_> {
    /// ε(x, t) = (x − D(x, σ(t))) / σ(t).
    fn eps(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>, EngineError> {
        let sigma = sigma_of(t);
        let denoised = self.cx.model.denoise(x, sigma)?;
        Ok(x.iter().zip(&denoised).map(|(x, d)| (x - d) / sigma).collect())
    }

    /// `x − coef·ε` per element.
    fn minus(x: &[f32], coef: f32, eps: &[f32]) -> Vec<f32> {
        x.iter().zip(eps).map(|(x, e)| x - coef * e).collect()
    }

    fn step_1(x: &[f32], t: f32, t_next: f32, eps: &[f32]) -> Vec<f32> {
        let h = t_next - t;
        Self::minus(x, sigma_of(t_next) * h.exp_m1(), eps)
    }

    /// The second-order step; `eps_r1` is computed here unless cached (the adaptive solver's
    /// order-3 step at r1 = ⅓ shares it).
    fn step_2(
        &mut self,
        x: &[f32],
        t: f32,
        t_next: f32,
        r1: f64,
        eps: &[f32],
        eps_r1: &mut Option<Vec<f32>>,
    ) -> Result<Vec<f32>, EngineError> {
        let h = t_next - t;
        let r1_f = r1 as f32;
        if eps_r1.is_none() {
            let s1 = t + r1_f * h;
            let u1 = Self::minus(x, sigma_of(s1) * (r1_f * h).exp_m1(), eps);
            *eps_r1 = Some(self.eps(&u1, s1)?);
        }
        let eps_r1 = eps_r1.as_ref().expect("just computed");
        let (a, b) = (sigma_of(t_next) * h.exp_m1(), sigma_of(t_next) / (2.0 * r1) as f32 * h.exp_m1());
        Ok((0..x.len()).map(|j| x[j] - a * eps[j] - b * (eps_r1[j] - eps[j])).collect())
    }

    fn step_3(&mut self, x: &[f32], t: f32, t_next: f32, eps: &[f32], eps_r1: &mut Option<Vec<f32>>) -> Result<Vec<f32>, EngineError> {
        let (r1, r2) = ((1.0f64 / 3.0) as f32, (2.0f64 / 3.0) as f32);
        let h = t_next - t;
        let (s1, s2) = (t + r1 * h, t + r2 * h);
        if eps_r1.is_none() {
            let u1 = Self::minus(x, sigma_of(s1) * (r1 * h).exp_m1(), eps);
            *eps_r1 = Some(self.eps(&u1, s1)?);
        }
        let eps_r1 = eps_r1.as_ref().expect("just computed");
        let (a2, b2) = (sigma_of(s2) * (r2 * h).exp_m1(), sigma_of(s2) * 2.0 * ((r2 * h).exp_m1() / (r2 * h) - 1.0));
        let u2: Vec<f32> = (0..x.len()).map(|j| x[j] - a2 * eps[j] - b2 * (eps_r1[j] - eps[j])).collect();
        let eps_r2 = self.eps(&u2, s2)?;
        let (a, b) = (sigma_of(t_next) * h.exp_m1(), sigma_of(t_next) / r2 * (h.exp_m1() / h - 1.0));
        Ok((0..x.len()).map(|j| x[j] - a * eps[j] - b * (eps_r2[j] - eps[j])).collect())
    }

    /// Where an ancestral step with `eta` lands (t′ ≤ t_end) and the noise it adds.
    fn ancestral(t: f32, t_next: f32, t_end: f32, eta: f32) -> (f32, f32) {
        if eta == 0.0 {
            return (t_next, 0.0);
        }
        let (down, _) = ancestral_step_eta(sigma_of(t), sigma_of(t_next), eta);
        let landed = t_end.min(t_of(down));
        let (s_next, s_landed) = (sigma_of(t_next), sigma_of(landed));
        (landed, (s_next * s_next - s_landed * s_landed).sqrt())
    }
}

/// k-diffusion's `get_ancestral_step` at any eta.
fn ancestral_step_eta(from: f32, to: f32, eta: f32) -> (f32, f32) {
    if eta == 1.0 {
        return ancestral_step(from, to);
    }
    let up = eta * (to * to * (from * from - to * to) / (from * from)).sqrt();
    let up = if to < up { to } else { up };
    ((to * to - up * up).sqrt(), up)
}

/// `x + su·noise`, the noise drawn even when `su` is 0 (the generators advance as the tools').
fn add_noise(cx: &mut Context<'_>, x: &mut [f32], su: f32) {
    let noise = cx.noise.draw(x.len());
    for (x, n) in x.iter_mut().zip(noise) {
        *x += su * n;
    }
}

/// `sample_dpm_fast` with `n` model evaluations from σ_max down to σ_min (`n` ≥ 1).
pub fn sample_fast(
    mut x: Vec<f32>,
    (sigma_min, sigma_max, nfe): (f32, f32, usize),
    cx: &mut Context<'_>,
    eta: f32,
) -> Result<Vec<f32>, EngineError> {
    let (t_start, t_end) = (t_of(sigma_max), t_of(sigma_min));
    let m = nfe / 3 + 1;
    let ts = super::schedules::linspace_f32(t_start, t_end, m + 1);
    let orders: Vec<usize> = if nfe % 3 == 0 {
        std::iter::repeat_n(3, m.saturating_sub(2)).chain([2, 1]).collect()
    } else {
        std::iter::repeat_n(3, m - 1).chain([nfe % 3]).collect()
    };
    let mut solver = Solver { cx };
    for (i, &order) in orders.iter().enumerate() {
        let (t, t_next) = (ts[i], ts[i + 1]);
        let (t_next_, su) = Solver::ancestral(t, t_next, t_end, eta);
        let eps = solver.eps(&x, t)?;
        let sigma = sigma_of(t);
        let denoised: Vec<f32> = x.iter().zip(&eps).map(|(x, e)| x - sigma * e).collect();
        (solver.cx.on_step)(Step { i, sigma, x: &x, denoised: &denoised });
        let mut eps_r1 = None;
        x = match order {
            1 => Solver::step_1(&x, t, t_next_, &eps),
            2 => solver.step_2(&x, t, t_next_, 0.5, &eps, &mut eps_r1)?,
            _ => solver.step_3(&x, t, t_next_, &eps, &mut eps_r1)?,
        };
        add_noise(solver.cx, &mut x, su);
    }
    Ok(x)
}

/// The PID step-size controller of `sample_dpm_adaptive` at its defaults (p 0, i 1, d 0).
struct StepSizeController {
    h: f64,
    order: f64,
}

impl StepSizeController {
    const ACCEPT_SAFETY: f64 = 0.81;

    /// Scales h by the limited inverse error and says whether the step is accepted.
    fn propose(&mut self, error: f64) -> bool {
        let inv_error = 1.0 / (error + 1e-8);
        // factor = errs[0]^(1/order) · errs[1]^(−0) · errs[2]^0
        let factor = inv_error.powf(1.0 / self.order);
        let factor = 1.0 + (factor - 1.0).atan();
        self.h *= factor;
        factor >= Self::ACCEPT_SAFETY
    }
}

/// `sample_dpm_adaptive` at order 3 with k-diffusion's tolerances (rtol 0.05, atol 0.0078,
/// h_init 0.05).
pub fn sample_adaptive(
    mut x: Vec<f32>,
    (sigma_min, sigma_max, _): (f32, f32, usize),
    cx: &mut Context<'_>,
    eta: f32,
) -> Result<Vec<f32>, EngineError> {
    let (t_start, t_end) = (t_of(sigma_max), t_of(sigma_min));
    let (atol, rtol) = (0.0078f32, 0.05f32);
    let mut pid = StepSizeController { h: 0.05, order: if eta != 0.0 { 1.5 } else { 3.0 } };
    let mut s = t_start;
    let mut x_prev = x.clone();
    let root_numel = (x.len() as f64).sqrt();
    let mut attempts = 0;
    let mut solver = Solver { cx };
    while s < t_end - 1e-5 {
        let t = t_end.min(s + pid.h as f32);
        let (t_, su) = Solver::ancestral(s, t, t_end, eta);
        let eps = solver.eps(&x, s)?;
        let sigma = sigma_of(s);
        let denoised: Vec<f32> = x.iter().zip(&eps).map(|(x, e)| x - sigma * e).collect();
        let mut eps_r1 = None;
        let x_low = solver.step_2(&x, s, t_, 1.0 / 3.0, &eps, &mut eps_r1)?;
        let x_high = solver.step_3(&x, s, t_, &eps, &mut eps_r1)?;
        let sum_sq: f64 = (0..x.len())
            .map(|j| {
                let delta = atol.max(rtol * x_low[j].abs().max(x_prev[j].abs()));
                f64::from((x_low[j] - x_high[j]) / delta).powi(2)
            })
            .sum();
        let error = (sum_sq.sqrt() as f32) / root_numel as f32;
        if pid.propose(f64::from(error)) {
            x_prev = x_low;
            x = x_high;
            add_noise(solver.cx, &mut x, su);
            s = t;
        }
        (solver.cx.on_step)(Step { i: attempts, sigma, x: &x, denoised: &denoised });
        attempts += 1;
    }
    Ok(x)
}
