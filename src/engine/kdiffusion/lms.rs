//! Owns LMS (k-diffusion `sample_lms`, order 4): a linear multistep method over the last four
//! slopes, weighted by the integrals of their Lagrange basis polynomials between this sigma and
//! the next. k-diffusion integrates them numerically (`scipy.integrate.quad`, exact for these
//! cubic polynomials); they are integrated in closed form here. ComfyUI's copy returns the
//! denoised latents on the last step. Deterministic.

use super::{to_d, Context, Flavor};
use crate::engine::EngineError;

const ORDER: usize = 4;

/// `∫ from t[i] to t[i+1]` of the Lagrange basis polynomial `j` over the nodes `t[i], t[i-1], …`.
fn coefficient(order: usize, t: &[f64], i: usize, j: usize) -> f64 {
    // The polynomial's coefficients, lowest power first.
    let mut poly = vec![1.0f64];
    for k in (0..order).filter(|&k| k != j) {
        let (node, scale) = (t[i - k], t[i - j] - t[i - k]);
        let mut next = vec![0.0; poly.len() + 1];
        for (p, c) in poly.iter().enumerate() {
            next[p + 1] += c / scale;
            next[p] -= c * node / scale;
        }
        poly = next;
    }
    let antiderivative = |x: f64| poly.iter().enumerate().map(|(p, c)| c * x.powi(p as i32 + 1) / (p + 1) as f64).sum::<f64>();
    antiderivative(t[i + 1]) - antiderivative(t[i])
}

pub fn sample(mut x: Vec<f32>, sigmas: &[f32], cx: &mut Context<'_>) -> Result<Vec<f32>, EngineError> {
    let t: Vec<f64> = sigmas.iter().map(|&s| f64::from(s)).collect();
    let mut ds: Vec<Vec<f32>> = Vec::new();
    for i in 0..sigmas.len().saturating_sub(1) {
        let sigma = sigmas[i];
        let denoised = cx.first_call(i, &x, sigma)?;
        ds.push(to_d(&x, sigma, &denoised));
        if ds.len() > ORDER {
            ds.remove(0);
        }
        if cx.flavor == Flavor::ComfyUi && sigmas[i + 1] == 0.0 {
            x = denoised;
            continue;
        }
        let order = (i + 1).min(ORDER);
        let mut sum = vec![0f32; x.len()];
        for (j, d) in (0..order).zip(ds.iter().rev()) {
            let c = coefficient(order, &t, i, j) as f32;
            for (s, d) in sum.iter_mut().zip(d) {
                *s += c * d;
            }
        }
        for (x, s) in x.iter_mut().zip(&sum) {
            *x += s;
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_integrate_the_lagrange_basis() {
        // First order: the basis is 1, so the coefficient is the step length.
        assert!((coefficient(1, &[3.0, 2.0], 0, 0) - -1.0).abs() < 1e-12);
        // Any order: the basis polynomials sum to 1, so the coefficients sum to the step.
        let t = [10.0, 7.0, 4.5, 2.0, 1.0];
        let total: f64 = (0..4).map(|j| coefficient(4, &t, 3, j)).sum();
        assert!((total - (t[4] - t[3])).abs() < 1e-12, "{total}");
    }
}
