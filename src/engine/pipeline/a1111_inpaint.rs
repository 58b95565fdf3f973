//! Owns A1111's inpainting of a normal (4-channel) model, pixel for pixel what
//! `StableDiffusionProcessingImg2Img.init` and `apply_overlay` do with a mask: the mask blurred
//! by OpenCV ([`cv_blur`]); "whole picture" (the picture and mask resized to the processing
//! size, the overlay mask doubled) or "only masked" (the mask's bounding box, padded, grown to
//! the processing aspect and cut out, resized with `resize_image(2)`, pasted back at the end
//! into the full-size picture with `resize_image(1)`); the masked content filled (`fill`: the
//! kept part blurred into the hole, [`pil_alpha::fill`]); the latent mask (the mask resized
//! bicubically to the latent size, rounded); and the overlay, the original picture over the kept
//! part, composited on every result. The latent blend, the fill's latent noise and the run
//! itself live in [`super::ksampling`].

use image::{GrayImage, RgbImage};

use crate::api::image_modes::{InpaintArea, MaskedContent};
use crate::engine::imageops::{self, Filter};
use crate::engine::{cv_blur, pil_alpha};

/// The inpainting settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The processing size (`p.width`, `p.height`).
    pub size: (u32, u32),
    /// `mask_blur` (σ of OpenCV's blur along each axis; 0: none).
    pub blur: u32,
    pub area: InpaintArea,
    /// `inpaint_full_res_padding`.
    pub padding: u32,
    pub content: MaskedContent,
}

/// What the run needs, from the init picture and the mask.
pub struct Prepared {
    /// What the VAE encodes: the processing size.
    pub picture: RgbImage,
    /// `nmask`: 1 where the latents are repainted, `[h/8 · w/8]` (rounded to 0 or 1).
    pub latent_mask: Vec<f32>,
    /// The mask at the processing size (blurred, cut out and resized as the picture), 8-bit: what
    /// an inpainting model's conditioning is made from.
    pub mask: Vec<u8>,
    overlay: Vec<u8>,
    overlay_size: (u32, u32),
    /// "Only masked": where the result goes in the full picture, `(x, y, width, height)`.
    paste_to: Option<(i64, i64, u32, u32)>,
}

/// A rectangle `[x1, y1, x2, y2)` in pixels.
type Region = [i64; 4];

/// Pillow's `getbbox()` of an 8-bit picture: the box around its non-zero pixels.
fn bounding_box(mask: &GrayImage) -> Option<Region> {
    let (w, h) = mask.dimensions();
    let mut found: Option<Region> = None;
    for y in 0..h {
        for x in 0..w {
            if mask.get_pixel(x, y)[0] != 0 {
                let (x, y) = (i64::from(x), i64::from(y));
                found = Some(match found {
                    None => [x, y, x + 1, y + 1],
                    Some([x1, y1, x2, y2]) => [x1.min(x), y1.min(y), x2.max(x + 1), y2.max(y + 1)],
                });
            }
        }
    }
    found
}

/// `masking.get_crop_region_v2`: the bounding box grown by `pad` on every side, within the picture.
fn crop_region(mask: &GrayImage, pad: u32) -> Option<Region> {
    let [x1, y1, x2, y2] = bounding_box(mask)?;
    let pad = i64::from(pad);
    let (w, h) = (i64::from(mask.width()), i64::from(mask.height()));
    Some(if pad > 0 { [(x1 - pad).max(0), (y1 - pad).max(0), (x2 + pad).min(w), (y2 + pad).min(h)] } else { [x1, y1, x2, y2] })
}

/// `masking.expand_crop_region`: the region grown along one axis to the processing aspect ratio,
/// shifted back inside the picture.
fn expand_crop_region(region: Region, (pw, ph): (u32, u32), (iw, ih): (u32, u32)) -> Region {
    let [mut x1, mut y1, mut x2, mut y2] = region;
    let (iw, ih) = (i64::from(iw), i64::from(ih));
    let ratio_crop = (x2 - x1) as f64 / (y2 - y1) as f64;
    let ratio_processing = f64::from(pw) / f64::from(ph);
    // One axis at a time, as the Python does it (the differences are never negative).
    let grow = |lo: &mut i64, hi: &mut i64, desired: f64, limit: i64| {
        let diff = (desired - (*hi - *lo) as f64) as i64;
        *lo -= diff.div_euclid(2);
        *hi += diff - diff.div_euclid(2);
        if *hi >= limit {
            let over = *hi - limit;
            *hi -= over;
            *lo -= over;
        }
        if *lo < 0 {
            *hi -= *lo;
            *lo = 0;
        }
        if *hi >= limit {
            *hi = limit;
        }
    };
    if ratio_crop > ratio_processing {
        grow(&mut y1, &mut y2, (x2 - x1) as f64 / ratio_processing, ih);
    } else {
        grow(&mut x1, &mut x2, (y2 - y1) as f64 * ratio_processing, iw);
    }
    [x1, y1, x2, y2]
}

/// `Image.crop(region)`: outside the picture is zero.
fn crop(pixels: &[u8], channels: usize, (w, h): (u32, u32), [x1, y1, x2, y2]: Region) -> Vec<u8> {
    let (cw, ch) = ((x2 - x1).max(0) as usize, (y2 - y1).max(0) as usize);
    let mut out = vec![0u8; cw * ch * channels];
    for y in 0..ch {
        let sy = y1 + y as i64;
        if !(0..i64::from(h)).contains(&sy) {
            continue;
        }
        for x in 0..cw {
            let sx = x1 + x as i64;
            if (0..i64::from(w)).contains(&sx) {
                let from = (sy as usize * w as usize + sx as usize) * channels;
                out[(y * cw + x) * channels..][..channels].copy_from_slice(&pixels[from..from + channels]);
            }
        }
    }
    out
}

/// `Image.paste(src, (x, y))` of a picture with the same channels, clipped to `dst`.
fn paste(dst: &mut [u8], (dw, dh): (usize, usize), src: &[u8], (sw, sh): (usize, usize), channels: usize, (x, y): (i64, i64)) {
    for row in 0..sh {
        let dy = y + row as i64;
        if !(0..dh as i64).contains(&dy) {
            continue;
        }
        for col in 0..sw {
            let dx = x + col as i64;
            if (0..dw as i64).contains(&dx) {
                let to = (dy as usize * dw + dx as usize) * channels;
                dst[to..to + channels].copy_from_slice(&src[(row * sw + col) * channels..][..channels]);
            }
        }
    }
}

/// A1111's `images.resize_image(mode, im, width, height)` with no upscaler (Pillow's Lanczos) for
/// an `L` or `RGB` picture (`channels` 1 or 3; an `L` picture comes out of modes 1 and 2 as `RGB`
/// with equal channels in A1111, which is the same picture for every later use here):
/// 0 stretches; 1 covers the target keeping the aspect (centred, the excess cut off); 2 fits
/// inside it (centred) and fills the two bands left over with the picture's edge rows or columns
/// stretched (Pillow's bicubic over an empty box).
pub fn resize_image(mode: u8, pixels: &[u8], channels: usize, (iw, ih): (u32, u32), (width, height): (u32, u32)) -> Vec<u8> {
    let lanczos =
        |w: u32, h: u32| imageops::resize(pixels, channels, (iw as usize, ih as usize), (w as usize, h as usize), Filter::Lanczos, None);
    if mode == 0 {
        return lanczos(width, height);
    }
    let ratio = f64::from(width) / f64::from(height);
    let src_ratio = f64::from(iw) / f64::from(ih);
    // The other side at the picture's aspect, in integers as Python's `//` gives it.
    let fit_w = (u64::from(iw) * u64::from(height) / u64::from(ih)) as u32;
    let fit_h = (u64::from(ih) * u64::from(width) / u64::from(iw)) as u32;
    let width_first = if mode == 1 { ratio > src_ratio } else { ratio < src_ratio };
    let height_first = if mode == 1 { ratio <= src_ratio } else { ratio >= src_ratio };
    let src_w = if width_first { width } else { fit_w };
    let src_h = if height_first { height } else { fit_h };
    let resized = lanczos(src_w, src_h);
    let (tw, th) = (width as usize, height as usize);
    let mut res = vec![0u8; tw * th * channels];
    let at = (i64::from(width / 2) - i64::from(src_w / 2), i64::from(height / 2) - i64::from(src_h / 2));
    paste(&mut res, (tw, th), &resized, (src_w as usize, src_h as usize), channels, at);
    if mode == 2 {
        let edge = |size: (u32, u32), region: [f32; 4]| {
            imageops::resize(
                &resized,
                channels,
                (src_w as usize, src_h as usize),
                (size.0 as usize, size.1 as usize),
                Filter::Bicubic,
                Some(region),
            )
        };
        let (sw, sh) = (src_w as f32, src_h as f32);
        if ratio < src_ratio {
            let fill = height / 2 - src_h / 2;
            if fill > 0 {
                let band = (tw, fill as usize);
                paste(&mut res, (tw, th), &edge((width, fill), [0.0, 0.0, width as f32, 0.0]), band, channels, (0, 0));
                let bottom = edge((width, fill), [0.0, sh, width as f32, sh]);
                paste(&mut res, (tw, th), &bottom, band, channels, (0, i64::from(fill + src_h)));
            }
        } else if ratio > src_ratio {
            let fill = width / 2 - src_w / 2;
            if fill > 0 {
                let band = (fill as usize, th);
                paste(&mut res, (tw, th), &edge((fill, height), [0.0, 0.0, 0.0, height as f32]), band, channels, (0, 0));
                let right = edge((fill, height), [sw, 0.0, sw, height as f32]);
                paste(&mut res, (tw, th), &right, band, channels, (i64::from(fill + src_w), 0));
            }
        }
    }
    res
}

/// The overlay: the picture's kept part (`RGBa` pasted through the inverted overlay mask), as
/// `RGBA`.
fn overlay(rgb: &[u8], mask: &[u8]) -> Vec<u8> {
    let mut out = pil_alpha::kept_part(rgb, mask);
    pil_alpha::unpremultiply(&mut out);
    out
}

/// `init` (any size) and `mask` (its size; white repaints, already binary and inverted as asked)
/// for a run at `settings.size`. `None`: "only masked" with an empty mask, which A1111 runs as
/// plain image-to-image (the picture resized, no mask).
pub fn prepare(init: &RgbImage, mask: &GrayImage, settings: &Settings) -> Option<Prepared> {
    let (width, height) = settings.size;
    let mask_size = mask.dimensions();
    let blurred = cv_blur::a1111_mask_blur(mask.as_raw(), mask_size.0 as usize, mask_size.1 as usize, (settings.blur, settings.blur));
    let blurred = GrayImage::from_raw(mask_size.0, mask_size.1, blurred).expect("same size");
    // The overlay is the picture's kept part: at the init picture's size under the blurred mask
    // ("only masked"), or at the processing size under the doubled mask ("whole").
    let (picture, image_mask, overlay, overlay_size, paste_to) = match settings.area {
        InpaintArea::OnlyMasked => {
            let region = crop_region(&blurred, settings.padding)?;
            let region = expand_crop_region(region, settings.size, mask_size);
            let [x1, y1, x2, y2] = region;
            let crop_size = ((x2 - x1) as u32, (y2 - y1) as u32);
            let mask_crop = crop(blurred.as_raw(), 1, mask_size, region);
            let image_mask = resize_image(2, &mask_crop, 1, crop_size, settings.size);
            // A mask of another size than the init picture is resized to it (mode 0) first.
            let overlay_mask = if mask_size == init.dimensions() {
                blurred.as_raw().clone()
            } else {
                resize_image(0, blurred.as_raw(), 1, mask_size, init.dimensions())
            };
            let image_crop = crop(init.as_raw(), 3, init.dimensions(), region);
            let picture = resize_image(2, &image_crop, 3, crop_size, settings.size);
            let overlay = overlay(init.as_raw(), &overlay_mask);
            (picture, image_mask, overlay, init.dimensions(), Some((x1, y1, crop_size.0, crop_size.1)))
        }
        InpaintArea::Whole => {
            let image_mask = resize_image(0, blurred.as_raw(), 1, mask_size, settings.size);
            let doubled: Vec<u8> = image_mask.iter().map(|&v| (f32::from(v) * 2.0).min(255.0) as u8).collect();
            let picture = resize_image(0, init.as_raw(), 3, init.dimensions(), settings.size);
            let overlay = overlay(&picture, &doubled);
            (picture, image_mask, overlay, settings.size, None)
        }
    };
    // Every masked content but "original" starts from the filled picture.
    let picture = match settings.content {
        MaskedContent::Original => picture,
        _ => pil_alpha::fill(&picture, &image_mask, width as usize, height as usize),
    };
    // `latent_mask.convert('RGB').resize((w/8, h/8))`: Pillow's bicubic; then / 255, rounded.
    let (lw, lh) = (width as usize / 8, height as usize / 8);
    let small = imageops::resize(&image_mask, 1, (width as usize, height as usize), (lw, lh), Filter::Bicubic, None);
    let latent_mask = small.iter().map(|&v| (f32::from(v) / 255.0).round_ties_even()).collect();
    Some(Prepared {
        picture: RgbImage::from_raw(width, height, picture).expect("processing size"),
        latent_mask,
        mask: image_mask,
        overlay,
        overlay_size,
        paste_to,
    })
}

impl Prepared {
    /// `apply_overlay` on one decoded result (the processing size): "only masked" pastes it back
    /// into an empty picture of the init's size (`uncrop`), then the overlay goes on top.
    pub fn finish(&self, decoded: &[u8]) -> (u32, u32, Vec<u8>) {
        let (ow, oh) = self.overlay_size;
        let mut base = match self.paste_to {
            Some((x, y, w, h)) => {
                let (pw, ph) = (self.picture.width(), self.picture.height());
                let fitted = resize_image(1, decoded, 3, (pw, ph), (w, h));
                let mut base = vec![0u8; ow as usize * oh as usize * 4];
                paste(&mut base, (ow as usize, oh as usize), &pil_alpha::opaque(&fitted), (w as usize, h as usize), 4, (x, y));
                base
            }
            None => pil_alpha::opaque(decoded),
        };
        pil_alpha::alpha_composite(&mut base, &self.overlay);
        (ow, oh, pil_alpha::drop_alpha(&base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_regions_follow_masking_py() {
        let mut mask = GrayImage::new(64, 48);
        for (x, y) in [(10, 20), (30, 25)] {
            mask.put_pixel(x, y, image::Luma([9]));
        }
        assert_eq!(bounding_box(&mask), Some([10, 20, 31, 26]));
        assert_eq!(crop_region(&mask, 4), Some([6, 16, 35, 30]));
        assert_eq!(crop_region(&GrayImage::new(4, 4), 4), None);
        // 29 x 14 to a square: the height grows by 15, 7 above and 8 below.
        assert_eq!(expand_crop_region([6, 16, 35, 30], (512, 512), (64, 48)), [6, 9, 35, 38]);
        // Pushed back inside the picture at the bottom.
        assert_eq!(expand_crop_region([0, 40, 20, 48], (512, 512), (64, 48)), [0, 28, 20, 48]);
    }

    #[test]
    fn resize_image_mode_2_fills_the_bands_with_the_edges() {
        // A 4 x 2 picture into 4 x 4: one band row above and below, the edge rows extrapolated
        // by the bicubic over an empty box (weights 1.125 and -0.125).
        let pixels = [10, 20, 30, 40, 50, 60, 70, 80];
        let out = resize_image(2, &pixels, 1, (4, 2), (4, 4));
        assert_eq!(out, [5, 15, 25, 35, 10, 20, 30, 40, 50, 60, 70, 80, 55, 65, 75, 85]);
    }
}
