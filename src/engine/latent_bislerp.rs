//! Owns ComfyUI's `bislerp` latent resize (`comfy.utils.bislerp`, its `LatentUpscale`
//! method "bislerp"): a bilinear resize whose two-tap blends are spherical. Along the width, then
//! along the height, each output position takes the two input columns (rows) torch's bilinear
//! resize of the index ramp points it to, and blends the two latent vectors (the channels of one
//! position) by slerp: the directions on the unit sphere, the length blended linearly; a
//! near-parallel pair keeps the first, a near-opposite pair is blended linearly.

use crate::engine::imageops::resize_latents_bilinear;

/// For `new` outputs from `old` positions: each output's first and second input index and the
/// ratio between them, as `generate_bilinear_data` derives them from torch's bilinear resize of
/// the ramps `0..old` and `1..old` (its last entry kept at `old − 1`).
fn taps(old: usize, new: usize) -> Vec<(usize, usize, f32)> {
    let ramp = |start: f32| -> Vec<f32> {
        let mut r: Vec<f32> = (0..old).map(|i| i as f32 + start).collect();
        if start > 0.0 {
            *r.last_mut().expect("a side of at least one") -= 1.0;
        }
        resize_latents_bilinear(&r, [1, 1, 1, old], 1, new)
    };
    let (first, second) = (ramp(0.0), ramp(1.0));
    first.iter().zip(&second).map(|(&a, &b)| (a as i64 as usize, b as i64 as usize, a - a.floor())).collect()
}

/// `slerp(b1, b2, r)` of one pair of channel vectors.
fn slerp(b1: &[f32], b2: &[f32], r: f32, out: &mut [f32]) {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (n1, n2) = (norm(b1), norm(b2));
    let unit = |v: &[f32], n: f32| -> Vec<f32> { v.iter().map(|x| if n == 0.0 { 0.0 } else { x / n }).collect() };
    let (u1, u2) = (unit(b1, n1), unit(b2, n2));
    let dot: f32 = u1.iter().zip(&u2).map(|(a, b)| a * b).sum();
    if dot > 1.0 - 1e-5 {
        out.copy_from_slice(b1);
        return;
    }
    if dot < 1e-5 - 1.0 {
        out.iter_mut().zip(b1.iter().zip(b2)).for_each(|(o, (a, b))| *o = a * (1.0 - r) + b * r);
        return;
    }
    let omega = dot.acos();
    let so = omega.sin();
    let (w1, w2) = (((1.0 - r) * omega).sin() / so, (r * omega).sin() / so);
    let length = n1 * (1.0 - r) + n2 * r;
    for (o, (a, b)) in out.iter_mut().zip(u1.iter().zip(&u2)) {
        *o = (w1 * a + w2 * b) * length;
    }
}

/// `bislerp` of `[batch, channels, h, w]` latents to `out_h` x `out_w`.
pub fn resize_latents_bislerp(latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    let (cols, rows) = (taps(w, out_w), taps(h, out_h));
    let mut out = vec![0.0f32; b * c * out_h * out_w];
    let (mut v1, mut v2, mut blended) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    for (image, done) in latents.chunks_exact(c * h * w).zip(out.chunks_exact_mut(c * out_h * out_w)) {
        // Along the width: [c, h, out_w].
        let mut wide = vec![0.0f32; c * h * out_w];
        for y in 0..h {
            for (x, &(x1, x2, r)) in cols.iter().enumerate() {
                for k in 0..c {
                    v1[k] = image[(k * h + y) * w + x1];
                    v2[k] = image[(k * h + y) * w + x2];
                }
                slerp(&v1, &v2, r, &mut blended);
                for k in 0..c {
                    wide[(k * h + y) * out_w + x] = blended[k];
                }
            }
        }
        // Along the height.
        for (y, &(y1, y2, r)) in rows.iter().enumerate() {
            for x in 0..out_w {
                for k in 0..c {
                    v1[k] = wide[(k * h + y1) * out_w + x];
                    v2[k] = wide[(k * h + y2) * out_w + x];
                }
                slerp(&v1, &v2, r, &mut blended);
                for k in 0..c {
                    done[(k * out_h + y) * out_w + x] = blended[k];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_follow_the_bilinear_ramp_and_slerp_keeps_lengths() {
        // 2 -> 4: positions 0, 0.25, 0.75, 1 (clamped at both ends).
        let t = taps(2, 4);
        assert_eq!(t, [(0, 1, 0.0), (0, 1, 0.25), (0, 1, 0.75), (1, 1, 0.0)]);
        // Orthogonal unit vectors halfway: the unit vector between them.
        let mut out = [0.0; 2];
        slerp(&[1.0, 0.0], &[0.0, 1.0], 0.5, &mut out);
        assert!((out[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6 && (out[0] - out[1]).abs() < 1e-6);
        // Opposite vectors blend linearly; parallel ones keep the first.
        slerp(&[1.0, 0.0], &[-1.0, 0.0], 0.25, &mut out);
        assert_eq!(out, [0.5, 0.0]);
        slerp(&[1.0, 0.0], &[3.0, 0.0], 0.5, &mut out);
        assert_eq!(out, [1.0, 0.0]);
    }
}
