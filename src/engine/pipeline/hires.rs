//! Owns the hires fix's enlargement between its two passes: the first pass's latents resized by
//! `torch.nn.functional.interpolate(size=…)` in the upscaler's mode (bilinear, nearest-exact,
//! bicubic, legacy nearest, area; `imageops::resize_latents`), or decoded, resized with Pillow's Lanczos and encoded again (one VAE sample per image, drawn
//! from the second pass's generator, as diffusers' img2img does for a batch of images).

use std::time::Instant;

use super::stages::{decode_latents, encode_pixels, pixels_to_chw};
use super::Timings;
use crate::api::{Upscaler, VaeTiling};
use crate::engine::cancel::CancelToken;
use crate::engine::imageops;
use crate::engine::model::SdModel;
use crate::engine::noise::NoiseSource;
use crate::engine::EngineError;

/// The second pass's image latents, `target` shaped, from the first pass's `latents`.
#[allow(clippy::too_many_arguments)]
pub(super) fn enlarge(
    model: &mut SdModel,
    upscaler: Upscaler,
    latents: &[f32],
    shape: [usize; 4],
    target: [usize; 4],
    tiling: VaeTiling,
    rng: &mut dyn NoiseSource,
    cancel: &CancelToken,
    timings: &mut Timings,
) -> Result<Vec<f32>, EngineError> {
    let [_, _, th, tw] = target;
    if let Some(resized) = imageops::resize_latents(upscaler, latents, shape, th, tw) {
        return Ok(resized);
    }
    // The picture upscaler: decode, resize with Lanczos, encode again.
    let decode_started = Instant::now();
    let images = decode_latents(model, latents, shape, tiling, cancel)?;
    timings.vae_decode += decode_started.elapsed();
    let (width, height) = (tw * 8, th * 8);
    let encode_started = Instant::now();
    let mut out = Vec::with_capacity(target.iter().product());
    for image in &images {
        let big = imageops::resize_lanczos(&image.rgb, 3, image.width as usize, image.height as usize, width, height);
        out.extend(encode_pixels(model, &pixels_to_chw(&big, width, height), width, height, tiling, rng, cancel)?);
    }
    timings.vae_encode += encode_started.elapsed();
    Ok(out)
}
