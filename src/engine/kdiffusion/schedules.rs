//! Owns the sigma schedules each tool offers, computed as that tool computes them (float32 where
//! its tensors are float32): A1111's "Schedule type" list (`modules/sd_schedulers.py`, with
//! "Automatic" resolved per sampler) and ComfyUI's `scheduler` list (`comfy/samplers.py`). Every
//! list ends with σ = 0 except A1111's KL Optimal, which ends at σ_min as A1111's does.

use super::discrete::DiscreteSchedule;
use super::{Flavor, KSampler, Schedule};

/// torch's `linspace` in float32: the step in float32, the first half counted from the start,
/// the second from the end.
pub fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { start + step * i as f32 } else { end - step * (n - 1 - i) as f32 }).collect()
}

fn with_zero(mut sigmas: Vec<f32>) -> Vec<f32> {
    sigmas.push(0.0);
    sigmas
}

/// k-diffusion's `get_sigmas_karras` (ρ = 7), as both tools call it with the model's σ range.
pub fn karras(n: usize, sigma_min: f32, sigma_max: f32) -> Vec<f32> {
    let rho = 7.0f64;
    let (min_inv, max_inv) = (f64::from(sigma_min).powf(1.0 / rho), f64::from(sigma_max).powf(1.0 / rho));
    let span = (min_inv - max_inv) as f32;
    with_zero(linspace_f32(0.0, 1.0, n).into_iter().map(|r| (max_inv as f32 + r * span).powf(rho as f32)).collect())
}

/// k-diffusion's `get_sigmas_exponential`: evenly spaced in ln σ.
pub fn exponential(n: usize, sigma_min: f32, sigma_max: f32) -> Vec<f32> {
    let (hi, lo) = (f64::from(sigma_max).ln() as f32, f64::from(sigma_min).ln() as f32);
    with_zero(linspace_f32(hi, lo, n).into_iter().map(f32::exp).collect())
}

/// k-diffusion's `get_sigmas_polyexponential` at ρ = 1 (A1111's default).
fn polyexponential(n: usize, sigma_min: f32, sigma_max: f32) -> Vec<f32> {
    let (lmax, lmin) = (f64::from(sigma_max).ln(), f64::from(sigma_min).ln());
    let (span, base) = ((lmax - lmin) as f32, lmin as f32);
    with_zero(linspace_f32(1.0, 0.0, n).into_iter().map(|r| (r * span + base).exp()).collect())
}

/// The sigmas at timesteps evenly spaced from the last to the first (`get_sigmas`, ComfyUI's
/// `normal`), or the same over `n + 1` points without the last (`sgm`).
fn timesteps_spaced(model: &DiscreteSchedule, n: usize, sgm: bool) -> Vec<f32> {
    let (start, end) = (model.sigma_to_t(model.sigma_max()), model.sigma_to_t(model.sigma_min()));
    let ts = if sgm {
        let mut ts = linspace_f32(start, end, n + 1);
        ts.pop();
        ts
    } else {
        linspace_f32(start, end, n)
    };
    with_zero(ts.into_iter().map(|t| model.t_to_sigma(t)).collect())
}

/// Every `N/n`-th training sigma from the top (`simple`).
fn simple(model: &DiscreteSchedule, n: usize) -> Vec<f32> {
    let len = model.sigmas.len();
    let stride = len as f64 / n as f64;
    with_zero((0..n).map(|x| model.sigmas[len - 1 - (x as f64 * stride) as usize]).collect())
}

/// Training sigmas 1, 1 + N/n, … from the top (`ddim` / `ddim_uniform`).
fn ddim(model: &DiscreteSchedule, n: usize, leading_zero: bool) -> Vec<f32> {
    let len = model.sigmas.len();
    let stride = (len / n).max(1);
    let mut sigmas: Vec<f32> = if leading_zero { vec![0.0] } else { Vec::new() };
    sigmas.extend((1..len).step_by(stride).map(|x| model.sigmas[x]));
    sigmas.reverse();
    if !leading_zero {
        sigmas.push(0.0);
    }
    sigmas
}

/// A1111's `Align Your Steps` for SD 1.5: NVIDIA's 11 sigmas, log-linearly resampled to `n`.
fn align_your_steps(n: usize) -> Vec<f32> {
    const SD15: [f64; 11] = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029];
    if n == SD15.len() {
        return with_zero(SD15.iter().map(|&s| s as f32).collect());
    }
    // np.interp over ln σ reversed (increasing), at n evenly spaced points, reversed back.
    let ys: Vec<f64> = SD15.iter().rev().map(|s| s.ln()).collect();
    let step = 1.0 / (ys.len() - 1) as f64;
    let resampled: Vec<f64> = (0..n)
        .map(|i| {
            let x = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
            let k = ((x / step).floor() as usize).min(ys.len() - 2);
            let (x0, x1) = (k as f64 * step, (k + 1) as f64 * step);
            (ys[k] + (ys[k + 1] - ys[k]) * (x - x0) / (x1 - x0)).exp()
        })
        .collect();
    with_zero(resampled.into_iter().rev().map(|s| s as f32).collect())
}

/// A1111's `KL Optimal`: `tan` of angles evenly spaced from `atan σ_max` to `atan σ_min`, n + 1
/// of them, no final 0.
fn kl_optimal_a1111(n: usize, sigma_min: f32, sigma_max: f32) -> Vec<f32> {
    let (a_min, a_max) = (sigma_min.atan(), sigma_max.atan());
    (0..=n)
        .map(|i| {
            let f = i as f32 / n as f32;
            (f * a_min + (1.0 - f) * a_max).tan()
        })
        .collect()
}

/// ComfyUI's `kl_optimal`: the same over n points, then 0.
fn kl_optimal_comfyui(n: usize, sigma_min: f32, sigma_max: f32) -> Vec<f32> {
    let (a_min, a_max) = (f64::from(sigma_min).atan() as f32, f64::from(sigma_max).atan() as f32);
    with_zero(
        (0..n)
            .map(|i| {
                let f = i as f32 / (n as f32 - 1.0);
                (f * a_min + (1.0 - f) * a_max).tan()
            })
            .collect(),
    )
}

/// ComfyUI's `linear_quadratic` (threshold noise 0.025, half the steps linear), scaled by σ_max.
fn linear_quadratic(n: usize, sigma_max: f32) -> Vec<f32> {
    let schedule: Vec<f64> = if n == 1 {
        vec![1.0, 0.0]
    } else {
        let threshold = 0.025f64;
        let linear_steps = n / 2;
        let mut s: Vec<f64> = (0..linear_steps).map(|i| i as f64 * threshold / linear_steps as f64).collect();
        let step_diff = linear_steps as f64 - threshold * n as f64;
        let quadratic_steps = (n - linear_steps) as f64;
        let quadratic = step_diff / (linear_steps as f64 * quadratic_steps * quadratic_steps);
        let linear = threshold / linear_steps as f64 - 2.0 * step_diff / (quadratic_steps * quadratic_steps);
        let constant = quadratic * (linear_steps * linear_steps) as f64;
        s.extend((linear_steps..n).map(|i| quadratic * (i * i) as f64 + linear * i as f64 + constant));
        s.push(1.0);
        s.into_iter().map(|x| 1.0 - x).collect()
    };
    schedule.into_iter().map(|x| x as f32 * sigma_max).collect()
}

/// The sigmas `model`'s tool runs `sampler` down for `steps` steps with `schedule`, as that
/// tool computes them (A1111's `Automatic` resolved per sampler, ComfyUI's default being
/// `simple`); both tools drop the next-to-last sigma for DPM2 and DPM2 a. An error names a
/// schedule the tool does not have.
pub fn sigmas(model: &DiscreteSchedule, sampler: KSampler, schedule: Schedule, steps: usize) -> Result<Vec<f32>, String> {
    let discard = sampler.discards_penultimate_sigma(model.flavor);
    let n = steps + usize::from(discard);
    let (lo, hi) = (model.sigma_min(), model.sigma_max());
    let unknown = || format!("{} has no {schedule} schedule", if model.flavor == Flavor::A1111 { "A1111" } else { "ComfyUI" });
    let mut sigmas = match model.flavor {
        Flavor::A1111 => match if schedule == Schedule::Default { sampler.a1111_automatic() } else { schedule } {
            Schedule::Uniform | Schedule::Normal => timesteps_spaced(model, n, false),
            Schedule::Karras => karras(n, lo, hi),
            Schedule::Exponential => exponential(n, lo, hi),
            Schedule::Polyexponential => polyexponential(n, lo, hi),
            Schedule::SgmUniform => timesteps_spaced(model, n, true),
            Schedule::KlOptimal => kl_optimal_a1111(n, lo, hi),
            Schedule::AlignYourSteps => align_your_steps(n),
            Schedule::Simple => simple(model, n),
            Schedule::DdimUniform => ddim(model, n, false),
            Schedule::Beta => beta_a1111(n, lo, hi),
            Schedule::Default | Schedule::LinearQuadratic => return Err(unknown()),
        },
        Flavor::ComfyUi => match schedule {
            Schedule::Default | Schedule::Simple => simple(model, n),
            Schedule::Normal => timesteps_spaced(model, n, false),
            Schedule::Karras => karras(n, lo, hi),
            Schedule::Exponential => exponential(n, lo, hi),
            Schedule::SgmUniform => timesteps_spaced(model, n, true),
            Schedule::DdimUniform => ddim(model, n, true),
            Schedule::LinearQuadratic => linear_quadratic(n, hi),
            Schedule::KlOptimal => kl_optimal_comfyui(n, lo, hi),
            Schedule::Beta => beta_comfyui(model, n),
            Schedule::Polyexponential | Schedule::AlignYourSteps | Schedule::Uniform => return Err(unknown()),
        },
    };
    if discard && sigmas.len() >= 2 {
        sigmas.remove(sigmas.len() - 2);
    }
    if sigmas.iter().any(|s| !s.is_finite()) {
        return Err(format!("the {schedule} schedule has no finite sigmas for {steps} steps; use more steps or another schedule"));
    }
    Ok(sigmas)
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; about 1e-15 relative).
pub(super) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let sum = C[1..].iter().enumerate().fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized incomplete beta function `I_x(a, b)` (continued fraction, modified Lentz).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    let front = (a * x.ln() + b * (1.0 - x).ln() - (ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b))).exp() / a;
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = if d.abs() < tiny { tiny } else { d };
    d = 1.0 / d;
    let mut f = d;
    for m in 1..500 {
        let m = f64::from(m);
        for numerator in
            [m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)), -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))]
        {
            d = 1.0 + numerator * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = 1.0 + numerator / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-16 {
            break;
        }
    }
    front * f
}

/// scipy's `stats.beta.ppf(p, a, b)`: the `x` with `I_x(a, b) = p`, by bisection to float64
/// resolution.
fn beta_ppf(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if incomplete_beta(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The Beta schedule's α and β (both tools' default 0.6).
const BETA_SHAPE: (f64, f64) = (0.6, 0.6);

/// A1111's `Beta`: σ_min + ppf(1 − i/(n−1)) · (σ_max − σ_min), then 0.
fn beta_a1111(n: usize, sigma_min: f32, sigma_max: f32) -> Vec<f32> {
    let (lo, hi) = (f64::from(sigma_min), f64::from(sigma_max));
    let points = (0..n).map(|i| if n > 1 { 1.0 - i as f64 / (n - 1) as f64 } else { 1.0 });
    with_zero(points.map(|p| (lo + beta_ppf(p, BETA_SHAPE.0, BETA_SHAPE.1) * (hi - lo)) as f32).collect())
}

/// ComfyUI's `beta`: training sigmas at `rint(ppf(1 − i/n) · (N − 1))`, repeats dropped, then 0.
fn beta_comfyui(model: &DiscreteSchedule, n: usize) -> Vec<f32> {
    let last = (model.sigmas.len() - 1) as f64;
    let mut sigmas = Vec::with_capacity(n + 1);
    let mut previous = None;
    for i in 0..n {
        let t = (beta_ppf(1.0 - i as f64 / n as f64, BETA_SHAPE.0, BETA_SHAPE.1) * last).round_ties_even();
        if previous != Some(t) {
            sigmas.push(model.sigmas[t as usize]);
        }
        previous = Some(t);
    }
    with_zero(sigmas)
}
