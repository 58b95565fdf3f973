//! `easel bench`: times one text-to-image run stage by stage (text encoding, each UNet call, VAE
//! decode, total) and reports the process's peak resident memory. Prints numbers; asserts nothing.
//! `scripts/bench.sh` runs it beside diffusers' Python pipelines to make the comparison table.

use std::time::Instant;

use clap::Args;

use crate::api::request::GenerateRequest;
use crate::engine::model::{Residency, SdModel};
use crate::engine::pipeline::txt2img;
use crate::engine::{runtime, CancelToken};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model folder, or a model name or alias from `easel models list`.
    #[arg(long, default_value = "tiny-sd")]
    pub model: String,
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
}

pub fn run(args: &BenchArgs, settings: &crate::config::Settings) -> anyhow::Result<()> {
    let rt = runtime::runtime()?;
    let (dir, _) = crate::cli::generate::resolve_model_dir(Some(&args.model), settings)?;
    let residency = if settings.low_memory { Residency::LowMemory } else { Residency::Warm };
    let load_started = Instant::now();
    let mut model = SdModel::load(&dir, rt, settings.threads, residency)?;
    let load_s = load_started.elapsed().as_secs_f64();
    let resolved = GenerateRequest {
        prompt: "a photograph of an astronaut riding a horse".into(),
        seed: Some(0),
        steps: Some(args.steps),
        width: Some(args.size),
        height: Some(args.size),
        sampler: Some(args.sampler.clone()),
        ..Default::default()
    }
    .resolve(|| 0)
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let out = txt2img(&mut model, &resolved, &CancelToken::new(), &mut |_| {})?;
    let t = &out.timings;
    let steps: Vec<f64> = t.unet_steps.iter().map(|d| d.as_secs_f64()).collect();
    let unet_mean = steps.iter().sum::<f64>() / steps.len().max(1) as f64;
    let peak = crate::metrics::peak_resident_memory_bytes().unwrap_or(0) as f64 / 1e9;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "impl": "easel", "model": model.name, "size": args.size, "steps": args.steps,
                "threads": settings.threads, "low_memory": settings.low_memory, "load_s": load_s,
                "text_encoding_s": t.text_encoding.as_secs_f64(), "unet_step_s": unet_mean,
                "unet_steps_s": steps, "vae_decode_s": t.vae_decode.as_secs_f64(),
                "total_s": t.total.as_secs_f64(), "peak_rss_gb": peak,
            })
        );
    } else {
        println!(
            "model {} {}x{} {} steps, {} threads{}",
            model.name,
            args.size,
            args.size,
            args.steps,
            settings.threads,
            if settings.low_memory { ", low memory" } else { "" }
        );
        println!("load            {load_s:8.3} s");
        println!("text encoding   {:8.3} s", t.text_encoding.as_secs_f64());
        println!("unet per step   {unet_mean:8.3} s");
        println!("vae decode      {:8.3} s", t.vae_decode.as_secs_f64());
        println!("total           {:8.3} s (excluding load)", t.total.as_secs_f64());
        println!("peak RSS        {peak:8.2} GB");
    }
    Ok(())
}
