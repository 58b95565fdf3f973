//! Owns what an inpainting (9-channel) UNet takes after the latents in the A1111 and ComfyUI
//! modes: one mask channel and four channels of masked-picture latents per image, made the way
//! each tool makes them.
//!
//! - A1111 (`inpainting_image_conditioning`): with a mask, the processing-size mask / 255
//!   rounded, the prepared picture in [−1, 1] times `1 − mask` (its `inpainting_mask_weight` 1),
//!   VAE-encoded (the posterior's mean, as Easel encodes every A1111 picture), and the mask at
//!   latent size by nearest (pixel `(8i, 8j)`). Without one (text-to-image, image-to-image, an
//!   empty "only masked" mask): a mask of ones and the encoding of a mid-grey picture (zeros).
//! - ComfyUI (`BaseModel.concat_cond` after `set_inpaint`): with a latent noise mask, that mask
//!   (bilinear at latent size) rounded and the sampled latent itself (for `VAEEncodeForInpaint`
//!   the grey-filled picture's); without one, ones and the latent of a mid-grey picture as four
//!   constants.

use image::RgbImage;

use super::stages::{encode_pixels_mode, pixels_to_chw, LATENT_CHANNELS};
use crate::api::VaeTiling;
use crate::engine::cancel::CancelToken;
use crate::engine::model::SdModel;
use crate::engine::EngineError;

/// ComfyUI's `blank_inpaint_image_like`: a mid-grey picture's latents, one value per channel.
const COMFYUI_BLANK_LATENT: [f32; LATENT_CHANNELS] = [0.8223, -0.6876, 0.6364, 0.1380];

/// One image's extra channels (`[5, h, w]`) repeated for the batch of `shape`.
fn for_batch(mask: &[f32], latents: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let mut one = Vec::with_capacity(mask.len() + latents.len());
    one.extend_from_slice(mask);
    one.extend_from_slice(latents);
    one.repeat(shape[0])
}

/// A1111's conditioning for latents of `shape` (`[batch, 4, h/8, w/8]`): `masked` is the
/// prepared picture and its mask (8-bit, processing size); `None` when there is no mask.
pub fn a1111(
    model: &mut SdModel,
    masked: Option<(&RgbImage, &[u8])>,
    shape: [usize; 4],
    tiling: VaeTiling,
    cancel: &CancelToken,
) -> Result<Vec<f32>, EngineError> {
    let [_, _, lh, lw] = shape;
    let (w, h) = (lw * 8, lh * 8);
    let (mask, chw): (Vec<f32>, Vec<f32>) = match masked {
        Some((picture, mask)) => {
            let (pw, ph) = (picture.width() as usize, picture.height() as usize);
            if (pw, ph) != (w, h) || mask.len() != w * h {
                return Err(EngineError::InvalidRequest(format!(
                    "the inpainting picture is {pw}x{ph} and its mask {} values; the run is {w}x{h}",
                    mask.len()
                )));
            }
            let rounded: Vec<f32> = mask.iter().map(|&v| (f32::from(v) / 255.0).round_ties_even()).collect();
            let mut chw = pixels_to_chw(picture.as_raw(), w, h);
            let plane = w * h;
            for channel in chw.chunks_exact_mut(plane) {
                channel.iter_mut().zip(&rounded).for_each(|(x, m)| *x *= 1.0 - m);
            }
            let small = (0..lh).flat_map(|i| (0..lw).map(move |j| (i, j))).map(|(i, j)| rounded[8 * i * w + 8 * j]).collect();
            (small, chw)
        }
        None => (vec![1.0; lh * lw], vec![0.0; 3 * w * h]),
    };
    let latents = encode_pixels_mode(model, &chw, w, h, tiling, cancel)?;
    Ok(for_batch(&mask, &latents, shape))
}

/// ComfyUI's conditioning for latents of `shape`: `masked` is the noise mask at latent size
/// (`[h/8 · w/8]`, before rounding) and the batch's sampled latents; `None` when there is no
/// noise mask.
pub fn comfyui(masked: Option<(&[f32], &[f32])>, shape: [usize; 4]) -> Vec<f32> {
    let [batch, channels, lh, lw] = shape;
    let plane = lh * lw;
    match masked {
        Some((mask, latents)) => {
            let mask: Vec<f32> = mask.iter().map(|v| v.round_ties_even()).collect();
            let image = channels * plane;
            let mut out = Vec::with_capacity(batch * (1 + channels) * plane);
            for one in latents.chunks_exact(image).take(batch) {
                out.extend_from_slice(&mask);
                out.extend_from_slice(one);
            }
            out
        }
        None => {
            let blank: Vec<f32> = COMFYUI_BLANK_LATENT.iter().flat_map(|&v| std::iter::repeat_n(v, plane)).collect();
            for_batch(&vec![1.0; plane], &blank, shape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfyui_rounds_the_mask_and_keeps_each_images_latents() {
        let shape = [2, LATENT_CHANNELS, 1, 2];
        let latents: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = comfyui(Some((&[0.5, 0.51], &latents)), shape);
        assert_eq!(out.len(), 2 * (1 + LATENT_CHANNELS) * 2);
        // Half rounds to even (torch.round); each image's own latents follow its mask.
        assert_eq!(&out[..4], &[0.0, 1.0, 0.0, 1.0]);
        assert_eq!(&out[10..14], &[0.0, 1.0, 8.0, 9.0]);
        let blank = comfyui(None, [1, LATENT_CHANNELS, 1, 1]);
        assert_eq!(blank, [1.0, 0.8223, -0.6876, 0.6364, 0.1380]);
    }
}
