//! Owns torch's antialiased latent resize, `interpolate(x, size, mode="bilinear"|"bicubic",
//! align_corners=False, antialias=True)` in float32 (ATen's separable `_upsample_*2d_aa` CPU
//! kernel): A1111's "Latent (antialiased)" and "Latent (bicubic antialiased)" hires upscalers.
//!
//! Per axis and output index `i`: the centre `(i + 0.5)·scale` (`scale = in/out`), a filter
//! (triangle, or Keys' cubic with A = −0.5 as Pillow's) stretched by the scale when shrinking,
//! its taps over the inputs within the support, normalised to sum 1 (so the edges renormalise
//! instead of clamping). The width is resampled first, then the height.

/// The filter of an antialiased resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AaFilter {
    /// The triangle `1 − |x|` (support 1): `mode="bilinear"`.
    Bilinear,
    /// Keys' cubic with A = −0.5 (support 2): `mode="bicubic"`.
    Bicubic,
}

impl AaFilter {
    /// Half the filter's width in input samples at scale 1 (ATen's `interp_size / 2`).
    fn support(self) -> f32 {
        match self {
            AaFilter::Bilinear => 1.0,
            AaFilter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f32) -> f32 {
        let x = x.abs();
        match self {
            AaFilter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            AaFilter::Bicubic => {
                const A: f32 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// One output sample's taps: the first input index and the normalised weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// ATen's `_compute_indices_min_size_weights_aa` for every output index of one axis, with its
/// float32 / double promotions.
fn axis_taps(filter: AaFilter, input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f32 / output as f32;
    let support = if scale >= 1.0 { filter.support() * scale } else { filter.support() };
    let max_taps = (support.ceil() as usize) * 2 + 1;
    let invscale = if scale >= 1.0 { (1.0 / f64::from(scale)) as f32 } else { 1.0 };
    (0..output)
        .map(|i| {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            let first = ((f64::from(center - support) + 0.5) as i64).max(0);
            let end = ((f64::from(center + support) + 0.5) as i64).min(input as i64);
            let count = (end - first).clamp(0, max_taps as i64) as usize;
            let mut weights: Vec<f32> = (0..count)
                .map(|j| {
                    let x = ((j as i64 + first) as f32 - center) as f64 + 0.5;
                    filter.weight((x * f64::from(invscale)) as f32)
                })
                .collect();
            let total: f32 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps { first: first as usize, weights }
        })
        .collect()
}

/// One tap set over `samples` spaced `stride` apart: `Σ sample·weight`, in order, in float32.
fn apply(taps: &Taps, samples: &[f32], stride: usize) -> f32 {
    let mut out = samples[taps.first * stride] * taps.weights[0];
    for (j, w) in taps.weights.iter().enumerate().skip(1) {
        out += samples[(taps.first + j) * stride] * w;
    }
    out
}

/// torch's antialiased `interpolate` of `[batch, channels, h, w]` latents to `out_h` x `out_w`.
pub fn resize_latents_aa(filter: AaFilter, latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    let cols = axis_taps(filter, w, out_w);
    let rows = axis_taps(filter, h, out_h);
    let mut out = Vec::with_capacity(b * c * out_h * out_w);
    for plane in latents.chunks_exact(h * w) {
        // Along the width (each row), unless it keeps its size; then along the height.
        let wide: Vec<f32> = if w == out_w {
            plane.to_vec()
        } else {
            plane.chunks_exact(w).flat_map(|row| cols.iter().map(move |t| apply(t, row, 1))).collect()
        };
        if h == out_h {
            out.extend_from_slice(&wide);
        } else {
            for t in &rows {
                out.extend((0..out_w).map(|x| apply(t, &wide[x..], out_w)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_renormalise_at_the_edges_and_sum_to_one() {
        // 2 -> 4 bilinear: centres 0.25, 0.75, 1.25, 1.75; the first output sees only input 0.
        let taps = axis_taps(AaFilter::Bilinear, 2, 4);
        assert_eq!((taps[0].first, taps[0].weights.as_slice()), (0, &[1.0][..]));
        assert_eq!((taps[1].first, taps[1].weights.as_slice()), (0, &[0.75, 0.25][..]));
        for t in axis_taps(AaFilter::Bicubic, 5, 8).iter().chain(&axis_taps(AaFilter::Bicubic, 8, 3)) {
            assert!((t.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let up = resize_latents_aa(AaFilter::Bilinear, &[0.0, 4.0], [1, 1, 1, 2], 1, 4);
        assert_eq!(up, [0.0, 1.0, 3.0, 4.0]);
    }
}
