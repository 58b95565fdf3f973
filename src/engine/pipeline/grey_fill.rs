//! Owns ComfyUI's `VAEEncodeForInpaint` preparation (masked content "grey"): the picture set to
//! mid grey under the rounded mask before it is encoded, and the noise mask — the rounded mask
//! grown by a box of `grow` pixels — that then masks the latents.

use image::{GrayImage, RgbImage};

use crate::engine::imageops::resize_latents_bilinear;

/// What the encoder and the latent mask get.
pub struct GreyFilled {
    /// The picture as `[3, H, W]` planes in [−1, 1], grey where the mask rounds to 1.
    pub chw: Vec<f32>,
    /// The noise mask at the picture's size: 0 or 255 per pixel.
    pub noise_mask: GrayImage,
}

/// `init` grey under `mask` (mask values / 255, resized to the picture bilinearly when its size
/// differs, as torch's `interpolate` does), and the noise mask grown by `grow` pixels. A picture
/// whose sides are not multiples of 8 is first cut to them, centred, and the resized mask with it,
/// as the node does.
pub fn grey_fill(init: &RgbImage, mask: &GrayImage, grow: u32) -> GreyFilled {
    let (full_w, full_h) = (init.width() as usize, init.height() as usize);
    let values: Vec<f32> = mask.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
    let values = if mask.dimensions() == init.dimensions() {
        values
    } else {
        resize_latents_bilinear(&values, [1, 1, mask.height() as usize, mask.width() as usize], full_h, full_w)
    };
    let (w, h) = (full_w / 8 * 8, full_h / 8 * 8);
    let (x0, y0) = ((full_w % 8) / 2, (full_h % 8) / 2);
    let values: Vec<f32> = (y0..y0 + h).flat_map(|y| values[y * full_w + x0..y * full_w + x0 + w].to_vec()).collect();
    let init = image::imageops::crop_imm(init, x0 as u32, y0 as u32, w as u32, h as u32).to_image();
    // torch's round: halves to even (a value / 255 is never exactly one half; a resized one may be).
    let rounded: Vec<f32> = values.iter().map(|v| v.round_ties_even()).collect();
    // `(pixels − 0.5) · (1 − round(mask)) + 0.5`, in float32 as ComfyUI computes it, then the
    // encoder's `2x − 1`.
    let plane = w * h;
    let mut chw = vec![0.0f32; plane * 3];
    for (i, pixel) in init.as_raw().chunks_exact(3).enumerate() {
        let keep = 1.0 - rounded[i];
        for (c, &value) in pixel.iter().enumerate() {
            let x = (f32::from(value) / 255.0 - 0.5) * keep + 0.5;
            chw[c * plane + i] = 2.0 * x - 1.0;
        }
    }
    let grown = if grow == 0 { rounded } else { grow_box(&rounded, w, h, grow as usize) };
    let noise_mask = grown.iter().map(|&v| if v.round_ties_even() >= 1.0 { 255 } else { 0 }).collect();
    GreyFilled { chw, noise_mask: GrayImage::from_raw(w as u32, h as u32, noise_mask).expect("one value per pixel") }
}

/// ComfyUI's growth of a 0/1 mask: `clamp(conv2d(mask, ones(g, g), padding = ⌈(g − 1)/2⌉), 0, 1)`
/// cropped to the mask's size, i.e. 1 wherever the `g`×`g` window from `p` before the pixel to
/// `g − 1 − p` after it holds a 1 (separable: rows, then columns).
fn grow_box(mask: &[f32], w: usize, h: usize, g: usize) -> Vec<f32> {
    let p = g / 2; // ⌈(g − 1)/2⌉
    let window = |i: usize, n: usize| i.saturating_sub(p)..(i + g - p).min(n);
    let mut rows = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            rows[y * w + x] = if window(x, w).any(|xx| mask[y * w + xx] >= 1.0) { 1.0 } else { 0.0 };
        }
    }
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = if window(y, h).any(|yy| rows[yy * w + x] >= 1.0) { 1.0 } else { 0.0 };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box ComfyUI's conv2d covers, written out by its definition (zero padding `p` on each
    /// side, output `n + 2p − g + 1` cropped to `n`).
    fn conv_reference(mask: &[f32], w: usize, h: usize, g: usize) -> Vec<f32> {
        let p = (g - 1).div_ceil(2) as isize;
        let mut out = vec![0.0; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut sum = 0.0;
                for a in 0..g as isize {
                    for b in 0..g as isize {
                        let (yy, xx) = (y - p + a, x - p + b);
                        if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                            sum += mask[yy as usize * w + xx as usize];
                        }
                    }
                }
                out[y as usize * w + x as usize] = f32::min(sum, 1.0);
            }
        }
        out
    }

    #[test]
    fn growth_is_comfyuis_convolution_for_odd_and_even_boxes() {
        let (w, h) = (11, 7);
        let mut mask = vec![0.0; w * h];
        mask[3 * w + 5] = 1.0;
        mask[6 * w + 10] = 1.0;
        mask[0] = 1.0;
        for g in 1..=6 {
            assert_eq!(grow_box(&mask, w, h, g), conv_reference(&mask, w, h, g), "g = {g}");
        }
        // g = 6: a pixel's window runs from 3 before it to 2 after, so a set pixel grows by 2
        // towards the start and 3 towards the end.
        let mut one = vec![0.0; w * h];
        one[3 * w + 5] = 1.0;
        let grown = grow_box(&one, w, h, 6);
        assert_eq!((grown[3 * w + 3], grown[3 * w + 2], grown[3 * w + 8], grown[3 * w + 9]), (1.0, 0.0, 1.0, 0.0));
        assert_eq!((grown[w + 5], grown[5], grown[6 * w + 5]), (1.0, 0.0, 1.0));
    }

    #[test]
    fn pixels_under_the_rounded_mask_turn_grey() {
        let init = RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 10]));
        let mut mask = GrayImage::new(8, 8);
        mask.put_pixel(0, 0, image::Luma([127]));
        mask.put_pixel(1, 0, image::Luma([128]));
        let filled = grey_fill(&init, &mask, 0);
        // 127/255 rounds to 0 (kept), 128/255 to 1 (grey: 2·0.5 − 1 = 0).
        let plane = 64;
        assert_eq!(filled.chw[0], 1.0);
        assert_eq!([filled.chw[1], filled.chw[plane + 1], filled.chw[2 * plane + 1]], [0.0, 0.0, 0.0]);
        assert_eq!(&filled.noise_mask.as_raw()[..3], &[0, 255, 0]);
    }

    #[test]
    fn a_picture_off_the_eight_pixel_grid_is_cut_centred_with_its_mask() {
        // 11 x 9: columns 1..9 and rows 0..8 stay (remainders 3 and 1, half of each before).
        let init = RgbImage::from_fn(11, 9, |x, y| image::Rgb([x as u8 * 20, y as u8 * 20, 0]));
        let mut mask = GrayImage::new(11, 9);
        mask.put_pixel(1, 0, image::Luma([255]));
        let filled = grey_fill(&init, &mask, 0);
        assert_eq!(filled.noise_mask.dimensions(), (8, 8));
        assert_eq!(&filled.noise_mask.as_raw()[..2], &[255, 0]);
        // The first kept pixel is grey; the next one is column 2 of the picture (red 40).
        assert_eq!(filled.chw[0], 0.0);
        assert_eq!(filled.chw[1], 2.0 * (40.0 / 255.0) - 1.0);
    }
}
