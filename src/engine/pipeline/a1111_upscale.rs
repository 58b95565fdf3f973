//! Owns the picture step of A1111's hires fix with a picture upscaler (`sample_hr_pass` without a
//! latent mode): each first-pass picture (8-bit, truncated) through `images.resize_image(0,
//! picture, width, height, upscaler_name="Lanczos")`, i.e. `UpscalerLanczos.upscale` (Pillow's
//! Lanczos by the scale, then to the scaled size cut to multiples of 8 when that differs) and a
//! last Lanczos resize to the target when the sizes still differ; then encoded again (the
//! posterior's mean, one picture at a time as `images_tensor_to_samples` does for a batch).

use super::stages::{encode_pixels_mode, pixels_to_chw};
use super::DecodedImage;
use crate::api::VaeTiling;
use crate::engine::cancel::CancelToken;
use crate::engine::imageops::resize_lanczos;
use crate::engine::model::SdModel;
use crate::engine::EngineError;

/// `resize_image(0, picture, width, height, "Lanczos")` of an RGB picture of `size`.
pub fn lanczos_upscaler(rgb: &[u8], size: (u32, u32), target: (u32, u32)) -> Vec<u8> {
    let resize = |picture: &[u8], (w, h): (u32, u32), (tw, th): (u32, u32)| {
        resize_lanczos(picture, 3, w as usize, h as usize, tw as usize, th as usize)
    };
    let mut picture = rgb.to_vec();
    let mut at = size;
    // `scale = max(w / im.width, h / im.height)` in Python floats; the upscaler only above 1.
    let scale = (f64::from(target.0) / f64::from(size.0)).max(f64::from(target.1) / f64::from(size.1));
    if scale > 1.0 {
        // `Upscaler.upscale`: the destination `int((side * scale) // 8 * 8)`, then up to three
        // rounds of `UpscalerLanczos.do_upscale`, each to `(int(width * scale), int(height * scale))`,
        // until the picture covers the destination (a round that keeps the size ends them).
        let dest = |side: u32| ((f64::from(side) * scale / 8.0).floor() * 8.0) as u32;
        let dest = (dest(size.0), dest(size.1));
        for _ in 0..3 {
            let to = ((f64::from(at.0) * scale) as u32, (f64::from(at.1) * scale) as u32);
            if (at.0 >= dest.0 && at.1 >= dest.1) || to == at {
                break;
            }
            picture = resize(&picture, at, to);
            at = to;
        }
        if at != dest {
            picture = resize(&picture, at, dest);
            at = dest;
        }
    }
    if at != target {
        picture = resize(&picture, at, target);
    }
    picture
}

/// The latents of the hires pass for a picture upscaler: the first pass's pictures upscaled to
/// `target` and encoded again, `[batch, 4, h/8, w/8]`.
pub fn upscaled_latents(
    model: &mut SdModel,
    pictures: &[DecodedImage],
    target: (u32, u32),
    tiling: VaeTiling,
    cancel: &CancelToken,
) -> Result<Vec<f32>, EngineError> {
    let (width, height) = (target.0 as usize, target.1 as usize);
    let mut latents = Vec::new();
    for picture in pictures {
        let upscaled = lanczos_upscaler(&picture.rgb, (picture.width, picture.height), target);
        latents.extend(encode_pixels_mode(model, &pixels_to_chw(&upscaled, width, height), width, height, tiling, cancel)?);
    }
    Ok(latents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lanczos_upscaler_resizes_as_a1111s_rounds_do() {
        let rgb: Vec<u8> = (0..16 * 8 * 3).map(|v| (v * 7 % 251) as u8).collect();
        // By 2 to multiples of 8: one resize.
        let once = resize_lanczos(&rgb, 3, 16, 8, 32, 16);
        assert_eq!(lanczos_upscaler(&rgb, (16, 8), (32, 16)), once);
        // 16 x 8 to 40 x 20 (scale 2.5): do_upscale to 40 x 20, cut to the multiples of 8 (40 x
        // 16), then back to the target.
        let up = resize_lanczos(&rgb, 3, 16, 8, 40, 20);
        let stepped = resize_lanczos(&resize_lanczos(&up, 3, 40, 20, 40, 16), 3, 40, 16, 40, 20);
        assert_eq!(lanczos_upscaler(&rgb, (16, 8), (40, 20)), stepped);
        // To 21 x 10 (scale 1.3125) the multiples of 8 are no larger than the picture: the
        // upscaler does nothing and the last resize does it all.
        assert_eq!(lanczos_upscaler(&rgb, (16, 8), (21, 10)), resize_lanczos(&rgb, 3, 16, 8, 21, 10));
    }
}
