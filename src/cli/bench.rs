//! `easel bench`: times one generation stage by stage (text encoding, VAE encoding, each UNet
//! call, VAE decode, total) in any mode — txt2img, img2img, inpaint, hires — and reports the
//! process's peak resident memory. Prints numbers; asserts nothing. The image modes start from a
//! synthetic picture (and a mask of its right half). `scripts/bench.sh` runs it beside
//! diffusers' Python pipelines to make the comparison table.

use std::time::Instant;

use clap::Args;

use clap::ValueEnum;
use image::{GrayImage, RgbImage};

use crate::api::image_modes::HiresRequest;
use crate::api::request::GenerateRequest;
use crate::engine::model::{Residency, SdModel};
use crate::engine::pipeline::{generate, SourceImages};
use crate::engine::{runtime, CancelToken};

/// What `easel bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    Txt2img,
    Img2img,
    Inpaint,
    /// Text-to-image at `--size`, then the hires fix to `--hires-scale` times it.
    Hires,
    /// The VAE decoder alone on seeded random latents of a `--size` picture (with
    /// `--low-memory`, only the decoder's session is created: the peak is the decode's).
    Decode,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model folder or checkpoint file, or a model name or alias from `easel models list`
    /// [default: the default model].
    #[arg(long)]
    pub model: Option<String>,
    /// Image size (square).
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
    #[arg(long, default_value = "euler")]
    pub sampler: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value = "txt2img")]
    pub mode: BenchMode,
    /// img2img / inpaint strength; the hires fix's second-pass strength.
    #[arg(long, default_value_t = 0.75)]
    pub strength: f64,
    #[arg(long, default_value_t = 2.0)]
    pub hires_scale: f64,
    /// latent or lanczos.
    #[arg(long, default_value = "latent")]
    pub hires_upscaler: String,
    #[arg(long, default_value = "a photograph of an astronaut riding a horse")]
    pub prompt: String,
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// a1111, comfyui or plain.
    #[arg(long, default_value = "a1111")]
    pub prompt_syntax: String,
    #[arg(long, default_value_t = 1)]
    pub clip_skip: u32,
    /// auto, on or off: the VAE over large pictures in tiles.
    #[arg(long, default_value = "auto")]
    pub vae_tiling: String,
}

/// A picture with smooth and sharp parts, and a mask of its right half.
fn synthetic_images(size: u32) -> SourceImages {
    let init = RgbImage::from_fn(size, size, |x, y| {
        let disc = (x as i64 - size as i64 / 2).pow(2) + (y as i64 - size as i64 / 3).pow(2) < (size as i64 / 5).pow(2);
        if disc {
            image::Rgb([230, 200, 40])
        } else {
            image::Rgb([(x * 255 / size) as u8, (y * 255 / size) as u8, 120])
        }
    });
    let mask = GrayImage::from_fn(size, size, |x, _| image::Luma([if x >= size / 2 { 255 } else { 0 }]));
    SourceImages { init: Some(init), mask: Some(mask) }
}

pub fn run(args: &BenchArgs, settings: &crate::config::Settings) -> anyhow::Result<()> {
    let rt = runtime::runtime_for(settings.device)?;
    rt.set_execution(settings.device, settings.precision)?;
    let (dir, name) = crate::cli::generate::resolve_model_dir(args.model.as_deref(), settings)?;
    eprintln!("measuring model {name} ({})", dir.display());
    let residency = if settings.low_memory { Residency::LowMemory } else { Residency::Warm };
    let load_started = Instant::now();
    let mut model = SdModel::load(&dir, rt, settings.threads, residency)?;
    let load_s = load_started.elapsed().as_secs_f64();
    let image_mode = matches!(args.mode, BenchMode::Img2img | BenchMode::Inpaint);
    let resolved = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: Some(args.negative_prompt.clone()),
        prompt_syntax: Some(args.prompt_syntax.clone()),
        clip_skip: Some(args.clip_skip),
        seed: Some(0),
        steps: Some(args.steps),
        width: Some(args.size),
        height: Some(args.size),
        sampler: Some(args.sampler.clone()),
        init_image: image_mode.then(|| "up_bench".to_string()),
        mask: (args.mode == BenchMode::Inpaint).then(|| "up_bench_mask".to_string()),
        strength: image_mode.then_some(args.strength),
        hires: (args.mode == BenchMode::Hires).then(|| HiresRequest {
            scale: Some(args.hires_scale),
            strength: Some(args.strength),
            steps: None,
            upscaler: Some(args.hires_upscaler.clone()),
            seed: None,
        }),
        vae_tiling: Some(args.vae_tiling.clone()),
        ..Default::default()
    }
    .resolve(|| 0)
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if args.mode == BenchMode::Decode {
        return bench_decode(&mut model, &resolved, args, settings, load_s);
    }
    let images = if image_mode { synthetic_images(args.size) } else { SourceImages::default() };
    let out = generate(&mut model, &resolved, &images, &CancelToken::new(), &mut |_| {})?;
    let t = &out.timings;
    let steps: Vec<f64> = t.unet_steps.iter().map(|d| d.as_secs_f64()).collect();
    let unet_mean = steps.iter().sum::<f64>() / steps.len().max(1) as f64;
    let peak = crate::metrics::peak_resident_memory_bytes().unwrap_or(0) as f64 / 1e9;
    // Resident after the run: what a warm server holds for this model (the peak includes load).
    let resident = crate::metrics::resident_memory_bytes().unwrap_or(0) as f64 / 1e9;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "impl": "easel", "mode": format!("{:?}", args.mode).to_lowercase(), "model": model.name,
                "size": args.size, "output_size": resolved.output_size().0, "steps": args.steps, "unet_calls": steps.len(),
                "threads": settings.threads, "low_memory": settings.low_memory, "load_s": load_s,
                "text_encoding_s": t.text_encoding.as_secs_f64(), "vae_encode_s": t.vae_encode.as_secs_f64(), "unet_step_s": unet_mean,
                "unet_steps_s": steps, "vae_decode_s": t.vae_decode.as_secs_f64(),
                "total_s": t.total.as_secs_f64(), "peak_rss_gb": peak, "rss_after_gb": resident,
            })
        );
    } else {
        println!(
            "{:?}: model {} {}x{} -> {}, {} steps ({} UNet calls), {} threads{}",
            args.mode,
            model.name,
            args.size,
            args.size,
            resolved.output_size().0,
            args.steps,
            steps.len(),
            settings.threads,
            if settings.low_memory { ", low memory" } else { "" }
        );
        println!("load            {load_s:8.3} s");
        println!("text encoding   {:8.3} s", t.text_encoding.as_secs_f64());
        println!("vae encode      {:8.3} s", t.vae_encode.as_secs_f64());
        println!("unet per call   {unet_mean:8.3} s (sum {:.3} s)", steps.iter().sum::<f64>());
        println!("vae decode      {:8.3} s", t.vae_decode.as_secs_f64());
        println!("total           {:8.3} s (excluding load)", t.total.as_secs_f64());
        println!("peak RSS        {peak:8.2} GB");
        println!("RSS after run   {resident:8.2} GB");
    }
    Ok(())
}

/// `--mode decode`: one VAE decode of a `--size` picture's worth of seeded normal latents.
fn bench_decode(
    model: &mut SdModel,
    resolved: &crate::api::GenerationSettings,
    args: &BenchArgs,
    settings: &crate::config::Settings,
    load_s: f64,
) -> anyhow::Result<()> {
    let side = args.size as usize / 8;
    let latents = crate::engine::torch_rng::TorchGenerator::new(0).randn(4 * side * side);
    let tiling = resolved.vae_tiling.for_compat(resolved.noise.compat);
    let tiles = crate::engine::pipeline::stages::vae_tiles_for(model, tiling, args.size as usize, args.size as usize);
    let started = Instant::now();
    crate::engine::pipeline::stages::decode_latents(model, &latents, [1, 4, side, side], tiling, &CancelToken::new())?;
    let decode_s = started.elapsed().as_secs_f64();
    let peak = crate::metrics::peak_resident_memory_bytes().unwrap_or(0) as f64 / 1e9;
    let tile = tiles.map_or("whole".to_string(), |t| format!("tiles of {} px", t * 8));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "impl": "easel", "mode": "decode", "model": model.name, "size": args.size, "vae_tiling": tiling.name(),
                "tiles": tile, "threads": settings.threads, "low_memory": settings.low_memory, "load_s": load_s,
                "vae_decode_s": decode_s, "peak_rss_gb": peak,
            })
        );
    } else {
        println!("Decode: model {} {}x{} ({tile}), {} threads", model.name, args.size, args.size, settings.threads);
        println!("vae decode      {decode_s:8.3} s");
        println!("peak RSS        {peak:8.2} GB");
    }
    Ok(())
}
