//! Owns UniPC, diffusers `UniPCMultistepScheduler` with its defaults (`solver_type="bh2"`,
//! `solver_order=2`, `predict_x0=True`, `lower_order_final=True`;
//! `diffusers/schedulers/scheduling_unipc_multistep.py`, `step`, `multistep_uni_p_bh_update`,
//! `multistep_uni_c_bh_update`). Each call first corrects the previous step's result with the
//! new model output (UniC), then predicts the next sample (UniP); both in variance-preserving
//! space with the same timesteps and σ as DPM-Solver.

use super::config::{ClassConfig, ClassDefaults, CommonConfig, KarrasBounds, SchedulerConfig, Unimplemented};
use super::dpmpp_2m::{data_prediction, multistep_schedule};
use super::sigmas::{add_noise_vp, vp_alpha_sigma, vp_lambda};
use super::{Sampler, Scheduler, SchedulerError};
use crate::engine::noise::NoiseSource;

/// `UniPCMultistepScheduler`'s constructor arguments. Beyond the shared keys it reads
/// `solver_order` (1 to 3, default 2), `solver_type` (`"bh2"` by default, or `"bh1"`),
/// `lower_order_final` (default true), `disable_corrector` (default none) and the Karras end
/// points; `predict_x0: false` (the noise-prediction form) is refused.
pub(crate) struct UniPcConfig {
    common: CommonConfig,
    solver_order: usize,
    bh1: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    karras_bounds: KarrasBounds,
}

impl ClassConfig for UniPcConfig {
    const SAMPLER: Sampler = Sampler::Unipc;
    const DEFAULTS: ClassDefaults = ClassDefaults::USUAL;
    const UNIMPLEMENTED: &'static [Unimplemented] = &[
        Unimplemented::ZeroSnrRescaling,
        Unimplemented::Thresholding,
        Unimplemented::ExponentialSigmas,
        Unimplemented::BetaSigmas,
        Unimplemented::FlowSigmas,
        Unimplemented::FinalSigmasType,
    ];

    fn from_config(common: CommonConfig, c: &SchedulerConfig) -> Result<Self, SchedulerError> {
        let solver_order = c.solver_order.unwrap_or(2);
        if !(1..=3).contains(&solver_order) {
            return Err(SchedulerError::unsupported(
                Self::SAMPLER,
                "solver_order",
                solver_order.to_string(),
                "unipc supports orders 1 to 3",
            ));
        }
        if c.predict_x0 == Some(false) {
            return Err(SchedulerError::unsupported(
                Self::SAMPLER,
                "predict_x0",
                "false".into(),
                "only the data-prediction (predict_x0) form is implemented",
            ));
        }
        Ok(Self {
            common,
            solver_order,
            bh1: c.solver_type.as_deref() == Some("bh1"),
            lower_order_final: c.lower_order_final.unwrap_or(true),
            disable_corrector: c.disable_corrector.clone().unwrap_or_default(),
            karras_bounds: KarrasBounds::from_config(c),
        })
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn build(&self, steps: usize, karras: bool) -> Result<Box<dyn Scheduler>, SchedulerError> {
        Ok(Box::new(UniPc::new(self, steps, karras)?))
    }
}

pub(crate) struct UniPc {
    sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    solver_order: usize,
    bh1: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    /// Data predictions of the last `solver_order` calls, oldest first.
    model_outputs: Vec<Vec<f32>>,
    lower_order_nums: usize,
    /// The sample the previous predictor started from, for the corrector.
    last_sample: Option<Vec<f32>>,
    /// The order the previous predictor used (the corrector reuses it).
    this_order: usize,
}

impl UniPc {
    fn new(config: &UniPcConfig, steps: usize, karras: bool) -> Result<Self, SchedulerError> {
        let bounds = karras.then_some(config.karras_bounds);
        let (timesteps, sigmas) = multistep_schedule(&config.common, bounds, steps, true)?;
        Ok(Self {
            sigmas,
            timesteps: timesteps.iter().map(|t| *t as f64).collect(),
            solver_order: config.solver_order,
            bh1: config.bh1,
            lower_order_final: config.lower_order_final,
            disable_corrector: config.disable_corrector.clone(),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
            last_sample: None,
            this_order: 0,
        })
    }

    fn lambda_at(&self, index: usize) -> f32 {
        let (alpha, sigma) = vp_alpha_sigma(self.sigmas[index]);
        vp_lambda(alpha, sigma)
    }

    /// The shared set-up of both updates for a step from σ[`from`] to σ[`to`] whose older
    /// points are σ[`older[k]`]: returns α_t, σ_t/σ_s0, hh = −h, the ratios r_k, the
    /// coefficients `h_phi_1` and `B_h`, and b.
    fn coefficients(&self, from: usize, to: usize, older: &[usize], order: usize) -> Coefficients {
        let (alpha_t, sigma_t) = vp_alpha_sigma(self.sigmas[to]);
        let (alpha_s0, sigma_s0) = vp_alpha_sigma(self.sigmas[from]);
        let lambda_t = vp_lambda(alpha_t, sigma_t);
        let lambda_s0 = vp_lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let mut rks: Vec<f32> = older.iter().map(|si| (self.lambda_at(*si) - lambda_s0) / h).collect();
        rks.push(1.0);
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial_i: u64 = 1;
        let b_h = if self.bh1 { hh } else { hh.exp_m1() };
        let mut rows = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            rows.push(rks.iter().map(|r| pow_int(*r, i - 1)).collect::<Vec<f32>>());
            b.push(h_phi_k * factorial_i as f32 / b_h);
            factorial_i *= i as u64 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / factorial_i as f64) as f32;
        }
        Coefficients { alpha_t, ratio: sigma_t / sigma_s0, rks, h_phi_1, b_h, rows, b }
    }
}

struct Coefficients {
    alpha_t: f32,
    /// σ_t / σ_s0.
    ratio: f32,
    rks: Vec<f32>,
    h_phi_1: f32,
    b_h: f32,
    /// R[i][k] = r_k^i.
    rows: Vec<Vec<f32>>,
    b: Vec<f32>,
}

/// `torch.pow(x, n)` for the small integer powers used here (0 → 1, 1 → x, 2 → x·x, 3 → x·x·x).
fn pow_int(x: f32, n: usize) -> f32 {
    match n {
        0 => 1.0,
        1 => x,
        2 => x * x,
        3 => x * x * x,
        _ => x.powi(n as i32),
    }
}

/// `torch.linalg.solve` for the tiny systems here: LU with partial pivoting, float32, rows
/// scaled by the pivot's reciprocal as LAPACK `sgetrf2` does.
fn solve(rows: &[Vec<f32>], b: &[f32]) -> Vec<f32> {
    let n = b.len();
    let mut a: Vec<Vec<f32>> = rows.iter().map(|r| r[..n].to_vec()).collect();
    let mut x = b.to_vec();
    for col in 0..n {
        let pivot = (col..n).fold(col, |best, r| if a[r][col].abs() > a[best][col].abs() { r } else { best });
        a.swap(col, pivot);
        x.swap(col, pivot);
        let inv = 1.0 / a[col][col];
        for r in col + 1..n {
            let l = a[r][col] * inv;
            let (upper, lower) = a.split_at_mut(r);
            for (target, pivot_value) in lower[0][col + 1..].iter_mut().zip(&upper[col][col + 1..]) {
                *target -= l * pivot_value;
            }
            x[r] -= l * x[col];
        }
    }
    for col in (0..n).rev() {
        x[col] /= a[col][col];
        for r in 0..col {
            x[r] -= x[col] * a[r][col];
        }
    }
    x
}

impl Scheduler for UniPc {
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_vp(original, noise, self.sigmas[index])
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}

    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut dyn NoiseSource) -> Vec<f32> {
        let x0 = data_prediction(sample, model_output, self.sigmas[index]);
        let use_corrector = index > 0 && !self.disable_corrector.contains(&(index - 1)) && self.last_sample.is_some();
        let corrected;
        let sample = match (use_corrector, self.last_sample.as_deref()) {
            (true, Some(last)) => {
                corrected = self.correct(&x0, last, sample, index);
                &corrected[..]
            }
            _ => sample,
        };

        self.model_outputs.push(x0);
        if self.model_outputs.len() > self.solver_order {
            self.model_outputs.remove(0);
        }
        let remaining = self.timesteps.len() - index;
        let this_order = if self.lower_order_final { self.solver_order.min(remaining) } else { self.solver_order };
        self.this_order = this_order.min(self.lower_order_nums + 1);
        self.last_sample = Some(sample.to_vec());
        let out = self.predict(sample, index);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        out
    }
}

impl UniPc {
    /// UniP (`multistep_uni_p_bh_update`), order `self.this_order`:
    /// x' = (σ_t/σ_s0)x − α_t·h_phi_1·m0 − α_t·B_h·Σ ρ_k D1_k with D1_k = (m_k − m0)/r_k.
    fn predict(&self, x: &[f32], index: usize) -> Vec<f32> {
        let order = self.this_order;
        let outputs = &self.model_outputs;
        let m0 = &outputs[outputs.len() - 1];
        let older: Vec<usize> = (1..order).map(|i| index - i).collect();
        let c = self.coefficients(index, index + 1, &older, order);
        let d1s: Vec<Vec<f32>> = (1..order)
            .map(|i| {
                let mi = &outputs[outputs.len() - 1 - i];
                mi.iter().zip(m0).map(|(a, b)| (a - b) / c.rks[i - 1]).collect()
            })
            .collect();
        let rhos: Vec<f32> = match order {
            1 => Vec::new(),
            2 => vec![0.5],
            _ => {
                let k = order - 1;
                let rows: Vec<Vec<f32>> = c.rows[..k].iter().map(|r| r[..k].to_vec()).collect();
                solve(&rows, &c.b[..k])
            }
        };
        let first = c.alpha_t * c.h_phi_1;
        let last = c.alpha_t * c.b_h;
        (0..x.len())
            .map(|e| {
                let x_t_ = c.ratio * x[e] - first * m0[e];
                if d1s.is_empty() {
                    x_t_
                } else {
                    x_t_ - last * weighted_sum(&rhos, &d1s, e)
                }
            })
            .collect()
    }

    /// UniC (`multistep_uni_c_bh_update`) with the previous predictor's order: corrects
    /// `this_sample` using the new data prediction `model_t`.
    fn correct(&self, model_t: &[f32], last_sample: &[f32], this_sample: &[f32], index: usize) -> Vec<f32> {
        let order = self.this_order;
        let outputs = &self.model_outputs;
        let m0 = &outputs[outputs.len() - 1];
        let older: Vec<usize> = (1..order).map(|i| index - (i + 1)).collect();
        let c = self.coefficients(index - 1, index, &older, order);
        let d1s: Vec<Vec<f32>> = (1..order)
            .map(|i| {
                let mi = &outputs[outputs.len() - 1 - i];
                mi.iter().zip(m0).map(|(a, b)| (a - b) / c.rks[i - 1]).collect()
            })
            .collect();
        let rhos = if order == 1 { vec![0.5] } else { solve(&c.rows, &c.b) };
        let rho_last = rhos[rhos.len() - 1];
        let first = c.alpha_t * c.h_phi_1;
        let last = c.alpha_t * c.b_h;
        debug_assert_eq!(this_sample.len(), last_sample.len());
        (0..last_sample.len())
            .map(|e| {
                let x_t_ = c.ratio * last_sample[e] - first * m0[e];
                let d1_t = model_t[e] - m0[e];
                let corr = if d1s.is_empty() { 0.0 } else { weighted_sum(&rhos[..rhos.len() - 1], &d1s, e) };
                x_t_ - last * (corr + rho_last * d1_t)
            })
            .collect()
    }
}

/// `einsum("k,bkc...->bc...", rhos, D1s)` at one element.
fn weighted_sum(rhos: &[f32], d1s: &[Vec<f32>], e: usize) -> f32 {
    let mut acc = rhos[0] * d1s[0][e];
    for (rho, d) in rhos.iter().zip(d1s).skip(1) {
        acc += rho * d[e];
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_handles_pivoting() {
        let rows = vec![vec![1.0f32, 1.0], vec![-2.0, 1.0]];
        let x = solve(&rows, &[3.0, 0.0]);
        assert!((x[0] - 1.0).abs() < 1e-6 && (x[1] - 2.0).abs() < 1e-6, "{x:?}");
    }
}
