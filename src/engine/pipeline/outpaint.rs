//! Owns outpainting: the canvas grown around the init image (the new area filled by extending
//! the nearest edge pixel plus seeded noise, so a strength below 1 starts from plausible colour),
//! the mask that repaints exactly the new area, and the soft seam: after decoding, the original
//! is pasted back with an alpha that ramps from 0 at the old border to 1 over `2 × mask_blur`
//! pixels inside it, so the original stays pixel-exact away from the border and the new area
//! meets it without a hard edge.

use image::{GrayImage, RgbImage};

use crate::api::Outpaint;

/// Largest change the fill noise makes to an extended pixel, in 8-bit levels.
const FILL_NOISE: i32 = 24;

/// The grown canvas and its mask (255 = the new area).
pub struct Canvas {
    pub rgb: RgbImage,
    pub mask: GrayImage,
}

/// SplitMix64: a small seeded generator for the fill noise, separate from the torch generator
/// so outpainting does not shift the diffusion noise.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Grows `init` by `o` on each side.
pub fn extend(init: &RgbImage, o: &Outpaint, seed: u64) -> Canvas {
    let (w, h) = init.dimensions();
    let (cw, ch) = (w + o.left + o.right, h + o.top + o.bottom);
    let mut rgb = RgbImage::new(cw, ch);
    let mut mask = GrayImage::new(cw, ch);
    let mut state = seed ^ 0x6F75_7470_6169_6E74; // "outpaint"
    for y in 0..ch {
        for x in 0..cw {
            let inside = (o.left..o.left + w).contains(&x) && (o.top..o.top + h).contains(&y);
            let sx = x.clamp(o.left, o.left + w - 1) - o.left;
            let sy = y.clamp(o.top, o.top + h - 1) - o.top;
            let mut pixel = *init.get_pixel(sx, sy);
            if !inside {
                for v in pixel.0.iter_mut() {
                    let jitter = (splitmix(&mut state) % (2 * FILL_NOISE as u64 + 1)) as i32 - FILL_NOISE;
                    *v = (i32::from(*v) + jitter).clamp(0, 255) as u8;
                }
                mask.put_pixel(x, y, image::Luma([255]));
            }
            rgb.put_pixel(x, y, pixel);
        }
    }
    Canvas { rgb, mask }
}

/// Pastes `original` back into the decoded canvas `rgb` (`width` wide) at its place, blending
/// over `2 × blur` pixels from each extended border (a hard paste when `blur` is 0).
pub fn paste_original(rgb: &mut [u8], width: u32, original: &RgbImage, o: &Outpaint, blur: u32) {
    let (w, h) = original.dimensions();
    let seam = 2 * blur;
    for y in 0..h {
        for x in 0..w {
            // Distance to the nearest border that was extended.
            let mut d = u32::MAX;
            if o.left > 0 {
                d = d.min(x);
            }
            if o.right > 0 {
                d = d.min(w - 1 - x);
            }
            if o.top > 0 {
                d = d.min(y);
            }
            if o.bottom > 0 {
                d = d.min(h - 1 - y);
            }
            let alpha = if seam == 0 || d >= seam { 1.0 } else { (d as f32 + 0.5) / seam as f32 };
            let at = (((y + o.top) * width + x + o.left) * 3) as usize;
            for (c, &known) in original.get_pixel(x, y).0.iter().enumerate() {
                let made = f32::from(rgb[at + c]);
                rgb[at + c] = (alpha * f32::from(known) + (1.0 - alpha) * made).round() as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_grows_masks_only_the_new_area_and_extends_edges() {
        let init = RgbImage::from_pixel(16, 8, image::Rgb([100, 150, 200]));
        let o = Outpaint { left: 8, right: 0, top: 0, bottom: 16 };
        let c = extend(&init, &o, 7);
        assert_eq!(c.rgb.dimensions(), (24, 24));
        assert_eq!(c.mask.get_pixel(8, 0).0, [0]);
        assert_eq!(c.mask.get_pixel(7, 0).0, [255]);
        assert_eq!(c.mask.get_pixel(10, 8).0, [255]);
        assert_eq!(c.rgb.get_pixel(8, 0).0, [100, 150, 200]);
        let fill = c.rgb.get_pixel(0, 20).0;
        assert!(fill.iter().zip([100, 150, 200]).all(|(&v, e)| (i32::from(v) - e).abs() <= FILL_NOISE), "{fill:?}");
        assert_eq!(extend(&init, &o, 7).rgb, c.rgb, "seeded");
    }

    #[test]
    fn paste_keeps_the_original_inside_and_ramps_at_the_border() {
        let original = RgbImage::from_pixel(16, 16, image::Rgb([200, 200, 200]));
        let o = Outpaint { left: 8, ..Default::default() };
        let mut canvas = vec![0u8; 24 * 16 * 3];
        paste_original(&mut canvas, 24, &original, &o, 4);
        let at = |x: usize, y: usize| canvas[(y * 24 + x) * 3];
        assert_eq!(at(7, 3), 0, "the new area is untouched");
        assert!(at(8, 3) > 0 && at(8, 3) < 50, "{}", at(8, 3));
        assert!(at(12, 3) > at(9, 3));
        assert_eq!(at(16, 3), 200);
        assert_eq!(at(23, 15), 200, "no ramp at sides that were not extended");
    }
}
