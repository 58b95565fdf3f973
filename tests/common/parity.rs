//! The parity bar every pipeline fixture is held to, shared by the txt2img and img2img suites:
//! the latents after every scheduler call within 1e-4, or within 1e-5 of that call's largest
//! latent when that is larger (sigma-scaled latents reach ~100, where one float32 ulp is 8e-6, and
//! the UNet's ~1e-6 ONNX-vs-torch difference is multiplied by sigma); the PNG pixels within 1/255
//! on at least 99.9% of values and never more than 2/255 apart.

use std::path::Path;

use easel::api::request::GenerateRequest;
use easel::engine::npy;
use easel::engine::pipeline::DecodedImage;

const LATENT_TOL: f32 = 1e-4;
const LATENT_REL_TOL: f32 = 1e-5;

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The request a fixture's `settings.json` (or case entry) describes.
pub fn request_of(settings: &serde_json::Value) -> GenerateRequest {
    GenerateRequest {
        prompt: settings["prompt"].as_str().unwrap().to_string(),
        negative_prompt: settings["negative_prompt"].as_str().map(str::to_string),
        seed: settings["seed"].as_u64(),
        steps: settings["steps"].as_u64().map(|v| v as u32),
        cfg_scale: settings["cfg_scale"].as_f64().map(|v| v as f32),
        width: settings["width"].as_u64().map(|v| v as u32),
        height: settings["height"].as_u64().map(|v| v as u32),
        sampler: settings["sampler"].as_str().map(str::to_string),
        schedule: settings["schedule"].as_str().map(str::to_string),
        batch_size: settings["batch_size"].as_u64().map(|v| v as u32),
        strength: settings["strength"].as_f64(),
        // diffusers reads prompts literally and cuts them at 77 tokens.
        prompt_syntax: Some("plain".into()),
        ..Default::default()
    }
}

/// Compares the latents reported after each call with the fixture's `latents.npy`
/// (`[calls, B, 4, h, w]`); adds a line to `problems` for the first call over the bar.
pub fn check_latents(dir: &Path, steps: &[Vec<f32>], problems: &mut Vec<String>) {
    check_latents_in(dir, "latents.npy", steps, problems)
}

/// [`check_latents`] against another file of per-call latents (the hires fix's second pass).
pub fn check_latents_in(dir: &Path, file: &str, steps: &[Vec<f32>], problems: &mut Vec<String>) {
    let (shape, latents) = npy::read_f32(dir.join(file)).unwrap();
    if shape[0] != steps.len() {
        problems.push(format!("{file}: {} scheduler calls reported, diffusers made {}", steps.len(), shape[0]));
        return;
    }
    let per_step = latents.len() / shape[0];
    for (i, got) in steps.iter().enumerate() {
        let want = &latents[i * per_step..(i + 1) * per_step];
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let tol = LATENT_TOL.max(LATENT_REL_TOL * scale);
        let d = max_abs_diff(got, want);
        if d > tol {
            problems.push(format!("{file}: latents after call {}: max diff {d:e} over tolerance {tol:e}", i + 1));
            return;
        }
    }
}

/// Compares each image with the fixture's `image_<i>.png`.
pub fn check_pixels(dir: &Path, images: &[DecodedImage], problems: &mut Vec<String>) {
    for image in images {
        let png = dir.join(format!("image_{}.png", image.index));
        let want = image::open(&png).unwrap().to_rgb8();
        assert_eq!((want.width(), want.height()), (image.width, image.height), "{}", png.display());
        let diffs: Vec<u8> = want.as_raw().iter().zip(&image.rgb).map(|(a, b)| a.abs_diff(*b)).collect();
        let off_by_more_than_one = diffs.iter().filter(|&&d| d > 1).count();
        let max = diffs.iter().copied().max().unwrap_or(0);
        if max > 2 || off_by_more_than_one as f64 > diffs.len() as f64 * 0.001 {
            problems.push(format!("image {}: max diff {max}/255, {off_by_more_than_one} values off by >1", image.index));
        }
    }
}
