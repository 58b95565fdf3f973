//! Owns the numbers every scheduler shares: the training noise schedule (betas,
//! `alphas_cumprod`, the σ table), the three timestep spacings, Karras σ and σ → t
//! conversion, plus exact copies of the few numpy/torch primitives whose rounding shows in
//! diffusers' tables (`torch.linspace`, `np.linspace`, `np.arange`, `np.interp`, `round`).
//!
//! dtype rules reproduced here, all from the diffusers `scheduling_*.py` constructors and
//! `set_timesteps`: betas are a float32 `torch.linspace` (squared for `scaled_linear`);
//! `alphas_cumprod` is torch's CPU `cumprod` (float64 running product, each entry stored as
//! float32); the σ table `sqrt((1 − ᾱ)/ᾱ)` is float32; interpolated and Karras σ are numpy
//! float64 and are stored as float32 at the end.

use super::SchedulerError;

/// How inference timesteps are spread over the training range (diffusers `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

impl Spacing {
    pub(crate) fn parse(text: &str) -> Result<Self, SchedulerError> {
        match text {
            "linspace" => Ok(Self::Linspace),
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            other => Err(SchedulerError::InvalidConfig {
                key: "timestep_spacing",
                value: format!("{other:?}"),
                expected: "\"linspace\", \"leading\" or \"trailing\"",
            }),
        }
    }
}

/// diffusers `beta_schedule`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BetaSchedule {
    Linear { start: f64, end: f64 },
    ScaledLinear { start: f64, end: f64 },
    SquaredCosCapV2,
    Trained(Vec<f64>),
}

/// The training-time noise schedule of a scheduler instance.
#[derive(Debug, Clone)]
pub(crate) struct TrainSchedule {
    /// ᾱ_t for t = 0..T, float32 as diffusers stores it.
    pub alphas_cumprod: Vec<f32>,
    /// σ_t = sqrt((1 − ᾱ_t)/ᾱ_t), ascending in t, float32.
    pub sigmas: Vec<f32>,
}

impl TrainSchedule {
    pub(crate) fn new(betas: &BetaSchedule, num_train_timesteps: usize) -> Result<Self, SchedulerError> {
        let betas: Vec<f32> = match betas {
            BetaSchedule::Linear { start, end } => torch_linspace_f32(*start as f32, *end as f32, num_train_timesteps),
            // `torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=float32) ** 2`
            BetaSchedule::ScaledLinear { start, end } => {
                torch_linspace_f32(start.powf(0.5) as f32, end.powf(0.5) as f32, num_train_timesteps).into_iter().map(|b| b * b).collect()
            }
            BetaSchedule::SquaredCosCapV2 => betas_for_cosine_alpha_bar(num_train_timesteps),
            BetaSchedule::Trained(values) => {
                if values.len() != num_train_timesteps {
                    return Err(SchedulerError::InvalidConfig {
                        key: "trained_betas",
                        value: format!("a list of {} values", values.len()),
                        expected: "one beta per training timestep (num_train_timesteps of them)",
                    });
                }
                values.iter().map(|b| *b as f32).collect()
            }
        };
        // torch's CPU cumprod accumulates float in double (`acc_type<float>` is double).
        let mut running = 1.0f64;
        let alphas_cumprod: Vec<f32> = betas
            .iter()
            .map(|beta| {
                running *= f64::from(1.0 - beta);
                running as f32
            })
            .collect();
        let sigmas = alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        Ok(Self { alphas_cumprod, sigmas })
    }

    /// `np.log(sigmas)` of the float32 table, kept float32 (numpy keeps the dtype).
    pub(crate) fn log_sigmas(&self) -> Vec<f32> {
        self.sigmas.iter().map(|s| numpy_simd_log_f32(*s)).collect()
    }

    /// `np.interp(t, arange(T), sigmas)` in float64.
    pub(crate) fn interp_sigma(&self, t: f64) -> f64 {
        np_interp_unit_grid(t, &self.sigmas)
    }

    /// The float32 largest σ of a final σ list (diffusers `sigmas.max()`).
    pub(crate) fn max_of(sigmas: &[f32]) -> f32 {
        sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// `betas_for_alpha_bar(T)` with the cosine transform (float64 maths, stored as float32).
fn betas_for_cosine_alpha_bar(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `torch.linspace(start, end, steps, dtype=float32)` on CPU: float32 step, the first half
/// counted up from `start` and the second half down from `end`
/// (pytorch `aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp`). The x86 build contracts
/// `start + step * i` into one fused multiply–add, reproduced with `mul_add`.
pub(crate) fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - i - 1) as f32, end) })
                .collect()
        }
    }
}

/// `np.linspace(start, stop, num)` in float64 (endpoint included, last value exactly `stop`).
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut out: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| i as f64 / (num - 1) as f64 * (stop - start) + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    out[num - 1] = stop;
    out
}

/// `np.arange(start, stop, step)` for a float step: length `ceil((stop − start)/step)`, first
/// two values `start` and `start + step`, the rest `start + i·delta` with
/// `delta = (start + step) − start` (numpy's `DOUBLE_fill`).
pub(crate) fn np_arange_f64(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let second = start + step;
    let delta = second - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// `np.round`: halves go to the even neighbour.
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// `np.interp(x, arange(len(fp)), fp)` with numpy's arithmetic: exact grid points return the
/// table value, otherwise `slope·(x − j) + fp[j]`; outside the grid the end values.
pub(crate) fn np_interp_unit_grid(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return f64::from(fp[0]);
    }
    if x >= last as f64 {
        return f64::from(fp[last]);
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return f64::from(fp[j]);
    }
    let slope = f64::from(fp[j + 1]) - f64::from(fp[j]);
    slope * (x - j as f64) + f64::from(fp[j])
}

/// `np.log` of a float32 array as numpy computes it on x86-64 with AVX2/FMA3 or AVX-512
/// (`numpy/_core/src/umath/loops_exponent_log.dispatch.c.src`, `simd_log_FLOAT`): a rational
/// minimax approximation of log(1 + x) on the mantissa, every step a fused multiply–add. It is
/// off from the correctly rounded log by up to ~4 ulp, which shows in Karras timesteps; this is
/// the numpy that diffusers runs on for SD users. Only positive normal inputs occur here.
#[allow(clippy::excessive_precision)]
pub(crate) fn numpy_simd_log_f32(value: f32) -> f32 {
    const P: [f32; 6] = [
        0.000000000000000000000e+00,
        9.999999999999998702752e-01,
        2.112677543073053063722e+00,
        1.480000633576506585156e+00,
        3.808837741388407920751e-01,
        2.589979117907922693523e-02,
    ];
    const Q: [f32; 6] = [
        1.000000000000000000000e+00,
        2.612677543073109236779e+00,
        2.453006071784736363091e+00,
        9.864942958519418960339e-01,
        1.546476374983906719538e-01,
        5.875095403124574342950e-03,
    ];
    const LN_2: f32 = std::f32::consts::LN_2;
    const SQRT1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    if !(value.is_finite() && value >= f32::MIN_POSITIVE) {
        return value.ln(); // 0, negatives, subnormals, inf, NaN: never a σ
    }
    let bits = value.to_bits();
    let mut exponent = ((bits >> 23) as i32 - 126) as f32;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | (126 << 23)); // [0.5, 1)
    if m <= SQRT1_2 {
        m += m;
        exponent -= 1.0;
    }
    let x = m - 1.0;
    let num = P[5].mul_add(x, P[4]).mul_add(x, P[3]).mul_add(x, P[2]).mul_add(x, P[1]).mul_add(x, P[0]);
    let den = Q[5].mul_add(x, Q[4]).mul_add(x, Q[3]).mul_add(x, Q[2]).mul_add(x, Q[1]).mul_add(x, Q[0]);
    exponent.mul_add(LN_2, num / den)
}

/// diffusers `_sigma_to_t`: the fractional training timestep of σ, log-linear between the two
/// neighbouring table entries. `log_sigmas` is the float32 `np.log(sigmas)`; under numpy 2
/// promotion `low − log σ` is float64 but `low − high` stays float32.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // argmax of the cumulative count of `log σ − log_sigmas[i] >= 0` is the last i where it
    // holds (the table ascends, so those i form a prefix), or 0 when there is none.
    let low_idx = log_sigmas.iter().rposition(|ls| log_sigma - f64::from(*ls) >= 0.0).unwrap_or(0);
    let low_idx = low_idx.min(log_sigmas.len() - 2);
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    let w = ((f64::from(low) - log_sigma) / f64::from(low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// Karras et al. (2022) σ with ρ = 7 (diffusers `_convert_to_karras`, float64).
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n).into_iter().map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho)).collect()
}

/// `_sigma_to_alpha_sigma_t` for variance-preserving samplers: α = 1/sqrt(σ² + 1) and
/// σ_t = σ·α, in float32.
/// diffusers `add_noise` of the σ (variance-exploding) schedulers: `x0 + n·σ` in float32.
pub(crate) fn add_noise_sigma(original: &[f32], noise: &[f32], sigma: f32) -> Vec<f32> {
    original.iter().zip(noise).map(|(x, n)| x + n * sigma).collect()
}

/// diffusers `add_noise` of the DDPM-family schedulers (PNDM, DDIM): `√ᾱ_t·x0 + √(1−ᾱ_t)·n`, with
/// ᾱ_t the float32 `alphas_cumprod[t]` (`** 0.5` is a square root in torch).
pub(crate) fn add_noise_alpha(original: &[f32], noise: &[f32], alpha_cumprod: f32) -> Vec<f32> {
    let (a, b) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
    original.iter().zip(noise).map(|(x, n)| a * x + b * n).collect()
}

/// diffusers `add_noise` of the multistep solvers (DPM-Solver, UniPC): σ turned into the VP
/// pair (α_t, σ_t) by [`vp_alpha_sigma`], then `α_t·x0 + σ_t·n`.
pub(crate) fn add_noise_vp(original: &[f32], noise: &[f32], sigma: f32) -> Vec<f32> {
    let (alpha_t, sigma_t) = vp_alpha_sigma(sigma);
    original.iter().zip(noise).map(|(x, n)| alpha_t * x + sigma_t * n).collect()
}

pub(crate) fn vp_alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = ln α − ln σ_t (float32, `torch.log`).
pub(crate) fn vp_lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> TrainSchedule {
        TrainSchedule::new(&BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 }, 1000).expect("schedule")
    }

    #[test]
    fn sd15_table_matches_the_reference_values() {
        // sd-numerics §1.3 (float64 values; float32 tables agree to ~1e-6 relative).
        let s = sd15();
        assert!((s.alphas_cumprod[0] - 0.99915).abs() < 1e-6);
        assert!((s.alphas_cumprod[999] - 0.004_660_1).abs() < 1e-6);
        assert!((s.sigmas[0] - 0.029_167_2).abs() < 1e-6);
        assert!((s.sigmas[999] - 14.614_641).abs() < 1e-4);
    }

    #[test]
    fn sd15_alphas_cumprod_match_diffusers_bit_for_bit() {
        // Written by models/tooling/ref_schedulers.py from PNDMScheduler(SD 1.5 config).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schedulers/sd15_alphas_cumprod.npy");
        let (_, expected) = crate::engine::npy::read_f32(path).expect("fixture");
        let ours = sd15().alphas_cumprod;
        let differing: Vec<usize> = (0..1000).filter(|i| ours[*i].to_bits() != expected[*i].to_bits()).collect();
        assert!(differing.is_empty(), "{} entries differ, first at {:?}", differing.len(), differing.first());
    }

    #[test]
    fn numpy_helpers_behave_like_numpy() {
        assert_eq!(np_linspace(0.0, 999.0, 1), vec![0.0]);
        assert_eq!(np_linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        assert_eq!(np_arange_f64(1000.0, 0.0, -1000.0 / 4.0), vec![1000.0, 750.0, 500.0, 250.0]);
        assert_eq!(np_round(0.5), 0.0);
        assert_eq!(np_round(1.5), 2.0);
        assert_eq!(np_round(62.5), 62.0);
        let fp = [1.0f32, 3.0, 7.0];
        assert_eq!(np_interp_unit_grid(0.5, &fp), 2.0);
        assert_eq!(np_interp_unit_grid(2.0, &fp), 7.0);
        assert_eq!(np_interp_unit_grid(-1.0, &fp), 1.0);
    }

    #[test]
    fn sigma_to_t_inverts_the_table_at_grid_points() {
        let s = sd15();
        let logs = s.log_sigmas();
        for t in [0usize, 1, 500, 998, 999] {
            let back = sigma_to_t(f64::from(s.sigmas[t]), &logs);
            assert!((back - t as f64).abs() < 1e-3, "t {t} -> {back}");
        }
    }

    #[test]
    fn numpy_log_is_within_a_few_ulp_of_libm() {
        for i in 1..20_000 {
            let x = i as f32 * 0.001_37;
            let (ours, exact) = (numpy_simd_log_f32(x), x.ln());
            assert!((ours - exact).abs() <= 4.0 * f32::EPSILON * exact.abs().max(1.0), "{x}: {ours} vs {exact}");
        }
    }

    #[test]
    fn karras_ends_at_the_given_sigmas() {
        let k = karras_sigmas(0.029_167_2, 14.614_641, 20);
        assert_eq!(k.len(), 20);
        assert!((k[0] - 14.614_641).abs() < 1e-9);
        assert!((k[19] - 0.029_167_2).abs() < 1e-9);
        // sd-numerics §3.8 example, second value.
        assert!((k[1] - 11.7254).abs() < 1e-3);
    }
}
