//! Owns inpainting as diffusers' `StableDiffusionInpaintPipeline` does it: the mask prepared
//! (blurred with Pillow's Gaussian blur when asked, binarised at 50%: white repaints), the
//! masked image (the init image with the repainted pixels set to 0 in [−1, 1]), the mask at
//! latent size (nearest: latent `(i, j)` takes pixel `(8i, 8j)`), and the start latents — in
//! diffusers' order of random draws:
//!
//! - 4-channel UNet: the init image's VAE sample; the noise; the masked image's VAE sample
//!   (diffusers draws it, then never uses it: Easel draws the same count without running the
//!   encoder). Start: pure noise × `init_noise_sigma` at strength
//!   1, otherwise the image latents noised to the first call's level. After every call the known
//!   region is put back: `(1 − m)·noised_init + m·latents`, the init noised to the *next* call's
//!   level (not at all after the last call).
//! - 9-channel inpainting UNet: the init image's VAE sample only when strength < 1; the noise;
//!   the masked image's VAE sample. Mask (1 channel) and masked-image latents (4) follow the
//!   scaled latents in the UNet input; nothing is blended.

use std::time::Instant;

use image::GrayImage;

use super::randomness::Randomness;
use super::stages::{check_cancel, encode_pixels};
use super::{Pass, Timings};
use crate::engine::cancel::CancelToken;
use crate::engine::imageops;
use crate::engine::model::SdModel;
use crate::engine::scheduler::{build_scheduler, Scheduler};
use crate::engine::EngineError;

/// A mask ready to use: binarised per pixel and at latent size.
pub struct Mask {
    pub width: usize,
    pub height: usize,
    /// 1.0 where the pixel is repainted, 0.0 where it is kept.
    pub pixels: Vec<f32>,
    /// The same at latent size, `[h/8, w/8]`.
    pub latent: Vec<f32>,
}

impl Mask {
    /// Blurs `gray` by `blur` pixels (Pillow's `GaussianBlur`, as diffusers' `mask_processor.blur`)
    /// when `blur > 0`, then binarises it at 0.5 (`v / 255 ≥ 0.5`).
    pub fn new(gray: &GrayImage, blur: u32) -> Mask {
        let (width, height) = (gray.width() as usize, gray.height() as usize);
        let blurred = if blur > 0 { imageops::gaussian_blur(gray.as_raw(), width, height, blur as f32) } else { gray.as_raw().clone() };
        let pixels: Vec<f32> = blurred.iter().map(|&v| if f32::from(v) / 255.0 < 0.5 { 0.0 } else { 1.0 }).collect();
        let (lh, lw) = (height / 8, width / 8);
        let latent = (0..lh).flat_map(|i| (0..lw).map(move |j| (i, j))).map(|(i, j)| pixels[8 * i * width + 8 * j]).collect();
        Mask { width, height, pixels, latent }
    }
}

/// The per-call blend of a 4-channel UNet: the known region put back after every call.
pub struct Blend {
    /// A scheduler like the pass's, used only for `add_noise` (which depends on the call index
    /// alone, not on the stepping state).
    scheduler: Box<dyn Scheduler>,
    /// The init image's latents for every image of the batch.
    image_latents: Vec<f32>,
    /// The start noise (the same draw the start latents used).
    noise: Vec<f32>,
    /// The latent mask, `[h, w]`.
    mask: Vec<f32>,
}

impl Blend {
    /// After call `index` of `total`: `latents = (1 − m)·init_at(index + 1) + m·latents`.
    pub fn apply(&self, latents: &mut [f32], index: usize, total: usize) {
        let proper = if index + 1 < total {
            self.scheduler.add_noise(&self.image_latents, &self.noise, index + 1)
        } else {
            self.image_latents.clone()
        };
        let plane = self.mask.len();
        for (i, (latent, known)) in latents.iter_mut().zip(&proper).enumerate() {
            let m = self.mask[i % plane];
            *latent = (1.0 - m) * known + m * *latent;
        }
    }
}

/// What an inpainting pass starts from.
pub struct Setup {
    pub start: Vec<f32>,
    /// The extra UNet channels per image (`[batch, 5, h, w]`) for a 9-channel UNet; empty for 4.
    pub conditioning: Vec<f32>,
    pub blend: Option<Blend>,
}

/// Prepares the start of an inpainting pass over the init image `chw` (`[3, H, W]` in [−1, 1]).
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    model: &mut SdModel,
    chw: &[f32],
    mask: &Mask,
    pass: &Pass,
    strength: f64,
    rng: &mut Randomness,
    cancel: &CancelToken,
    timings: &mut Timings,
) -> Result<Setup, EngineError> {
    check_cancel(cancel)?;
    let (width, height) = (mask.width, mask.height);
    let plane = width * height;
    if chw.len() != 3 * plane {
        return Err(EngineError::InvalidRequest(format!("the mask is {width}x{height}, the init image is not")));
    }
    let inpainting_unet = model.unet_in_channels()? == 9;
    let strength_max = strength == 1.0;
    let n: usize = pass.shape.iter().product();
    let batch = pass.shape[0];
    let mut encode = |model: &mut SdModel, pixels: &[f32], rng: &mut Randomness| -> Result<Vec<f32>, EngineError> {
        let started = Instant::now();
        let latents = encode_pixels(model, pixels, width, height, pass.vae_tiling, rng.vae(), cancel);
        timings.vae_encode += started.elapsed();
        latents
    };
    let image_latents = if !inpainting_unet || !strength_max {
        let one = encode(model, chw, rng)?;
        Some(one.iter().copied().cycle().take(n).collect::<Vec<f32>>())
    } else {
        None
    };
    let noise = rng.start_noise(n);
    let start = match &image_latents {
        Some(latents) if !strength_max => pass.scheduler.add_noise(latents, &noise, pass.begin),
        _ => {
            let sigma = pass.scheduler.init_noise_sigma() as f32;
            noise.iter().map(|x| x * sigma).collect()
        }
    };
    if !inpainting_unet {
        // diffusers encodes the masked image here and never uses it with a 4-channel UNet; only
        // its posterior draw matters to the stream, so draw the same count without running the
        // encoder (an export that samples inside the graph draws nothing).
        if model.vae_encoder()?.output_name("latent_parameters")? == "latent_parameters" {
            rng.vae().draw(mask.latent.len() * pass.shape[1]);
        }
        let scheduler = build_scheduler(pass.sampler, pass.schedule, &model.scheduler_config, pass.steps as usize)?;
        let image_latents = image_latents.expect("4-channel inpainting encodes the init image");
        let blend = Blend { scheduler, image_latents, noise, mask: mask.latent.clone() };
        return Ok(Setup { start, conditioning: Vec::new(), blend: Some(blend) });
    }
    let masked: Vec<f32> = chw.iter().enumerate().map(|(i, &x)| x * (1.0 - mask.pixels[i % plane])).collect();
    let masked_latents = encode(model, &masked, rng)?;
    let mut conditioning = Vec::with_capacity(batch * 5 * mask.latent.len());
    for _ in 0..batch {
        conditioning.extend_from_slice(&mask.latent);
        conditioning.extend_from_slice(&masked_latents);
    }
    Ok(Setup { start, conditioning, blend: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_binarises_at_half_and_samples_every_eighth_pixel_for_latents() {
        let mut gray = GrayImage::new(16, 16);
        for (x, y, p) in gray.enumerate_pixels_mut() {
            p.0 = [if x >= 8 {
                128
            } else if y >= 8 {
                127
            } else {
                0
            }];
        }
        let mask = Mask::new(&gray, 0);
        assert_eq!(mask.pixels[8], 1.0);
        assert_eq!(mask.pixels[8 * 16], 0.0);
        assert_eq!(mask.latent, vec![0.0, 1.0, 0.0, 1.0]);
        assert!(mask.pixels.contains(&1.0));
        assert!(Mask::new(&GrayImage::new(8, 8), 4).pixels.iter().all(|&m| m == 0.0));
    }
}
