//! Owns OpenCV's `cv2.GaussianBlur` on 8-bit single-channel pictures along one axis, bit for bit:
//! how A1111 blurs an inpainting mask (`mask_blur_x` with a `(k, 1)` kernel, then `mask_blur_y`
//! with `(1, k)`, k = 2·int(2.5σ + 0.5) + 1). OpenCV's 8-bit path is exact integer arithmetic:
//! the kernel (`getGaussianKernelBitExact`: e^(−x²/2σ²) normalised in double precision) is
//! turned into 8-bit fixed point with error diffusion (`getGaussianKernelFixedPoint_ED`: each
//! tap rounded half to even with the previous taps' error carried, the centre taking what makes
//! the sum exactly 256), the products summed without rounding, and the sum rounded half up to
//! 8 bits; borders reflect without repeating the edge (`BORDER_REFLECT_101`). The other axis's
//! one-tap kernel is exactly 1.

/// Which way a blur runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Along each row (`ksize = (k, 1)`).
    X,
    /// Along each column (`ksize = (1, k)`).
    Y,
}

/// A1111's kernel size for a blur of `sigma` pixels: `2 · int(2.5 · sigma + 0.5) + 1`.
pub fn a1111_kernel_size(sigma: u32) -> usize {
    2 * (2.5 * f64::from(sigma) + 0.5) as usize + 1
}

/// OpenCV's fixed-point kernel (8 fractional bits, summing to 256) of odd size `n` for `sigma` > 0.
pub fn fixed_kernel(n: usize, sigma: f64) -> Vec<i64> {
    assert!(n % 2 == 1 && sigma > 0.0, "an odd kernel size and a positive sigma");
    let scale = -0.125 / (sigma * sigma);
    let half = (n - 1) / 2;
    // exp(−(2i − (n − 1))² / (8σ²)) for the taps left of the centre, i.e. e^(−d²/2σ²).
    let values: Vec<f64> = (0..half)
        .map(|i| {
            let x = 2 * i as i64 + 1 - n as i64;
            ((x * x) as f64 * scale).exp()
        })
        .collect();
    let sum = values.iter().sum::<f64>() * 2.0 + 1.0;
    let reciprocal = 1.0 / sum;
    let mut kernel = vec![0i64; n];
    let (mut error, mut total) = (0.0f64, 0i64);
    for (i, value) in values.iter().enumerate() {
        let adjusted = value * reciprocal * 256.0 + error;
        let tap = adjusted.round_ties_even() as i64;
        error = adjusted - tap as f64;
        kernel[i] = tap;
        kernel[n - 1 - i] = tap;
        total += tap;
    }
    kernel[half] = 256 - 2 * total;
    kernel
}

/// `BORDER_REFLECT_101`: the index of position `p` on a line of `len` samples.
fn reflect101(mut p: i64, len: i64) -> usize {
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        p = if p < 0 { -p } else { 2 * len - 2 - p };
    }
    p as usize
}

/// `cv2.GaussianBlur` of a `width` × `height` 8-bit picture with kernel size `k` (odd) along
/// `axis` and `sigma` (> 0); `k == 1` leaves it as it is.
pub fn gaussian_blur(pixels: &[u8], width: usize, height: usize, axis: Axis, k: usize, sigma: f64) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height, "image buffer size");
    if k <= 1 || pixels.is_empty() {
        return pixels.to_vec();
    }
    let kernel = fixed_kernel(k, sigma);
    let radius = (k / 2) as i64;
    let (lines, len, step, line_step) = match axis {
        Axis::X => (height, width, 1, width),
        Axis::Y => (width, height, width, 1),
    };
    let mut out = vec![0u8; pixels.len()];
    for line in 0..lines {
        let base = line * line_step;
        for p in 0..len {
            let sum: i64 = kernel
                .iter()
                .enumerate()
                .map(|(i, &w)| i64::from(pixels[base + reflect101(p as i64 - radius + i as i64, len as i64) * step]) * w)
                .sum();
            out[base + p * step] = ((sum + 128) >> 8).min(255) as u8;
        }
    }
    out
}

/// A1111's mask blur: σ = `sigma` along the rows, then along the columns (each skipped at 0).
pub fn a1111_mask_blur(pixels: &[u8], width: usize, height: usize, (sigma_x, sigma_y): (u32, u32)) -> Vec<u8> {
    let mut out = pixels.to_vec();
    if sigma_x > 0 {
        out = gaussian_blur(&out, width, height, Axis::X, a1111_kernel_size(sigma_x), f64::from(sigma_x));
    }
    if sigma_y > 0 {
        out = gaussian_blur(&out, width, height, Axis::Y, a1111_kernel_size(sigma_y), f64::from(sigma_y));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_sum_to_one_in_fixed_point_and_are_symmetric() {
        for sigma in [1u32, 4, 9, 33] {
            let k = a1111_kernel_size(sigma);
            let kernel = fixed_kernel(k, f64::from(sigma));
            assert_eq!(kernel.iter().sum::<i64>(), 256);
            assert!(kernel.iter().eq(kernel.iter().rev()));
        }
        assert_eq!(a1111_kernel_size(4), 21);
    }

    #[test]
    fn flat_lines_stay_flat_and_borders_reflect() {
        let flat = vec![200u8; 7 * 3];
        assert_eq!(gaussian_blur(&flat, 7, 3, Axis::X, 9, 2.0), flat);
        assert_eq!(reflect101(-1, 5), 1);
        assert_eq!(reflect101(5, 5), 3);
        assert_eq!(reflect101(-7, 5), 1);
    }
}
