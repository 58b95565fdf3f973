//! Initial and sampler noise of the A1111 and ComfyUI compatibility modes (`engine::noise`)
//! against arrays recorded by running A1111's `modules/rng.py` / `rng_philox.py` and ComfyUI's
//! `comfy/sample.py` / `comfy/k_diffusion/sampling.py` themselves
//! (`models/tooling/ref_noise.py` → `tests/fixtures/noise/`), within 1e-6.
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::engine::noise::a1111::{A1111Seeds, ImageRng, RandnSource};
use easel::engine::noise::comfyui::{prepare_noise, NoiseSampler};
use easel::engine::noise::philox::PhiloxGenerator;
use easel::engine::npy;
use easel::engine::torch_rng::TorchGenerator;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/noise")
}

/// Easel's draws for one recorded case, concatenated in the recorded order.
fn draws(case: &Value) -> Vec<f32> {
    let shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let numel: usize = shape.iter().product();
    let kinds: Vec<&str> = case["draws"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let seed = case["seed"].as_u64().unwrap();
    let source = match case["randn_source"].as_str() {
        Some("cpu") => RandnSource::Cpu,
        _ => RandnSource::Nv,
    };
    match case["tool"].as_str().unwrap() {
        "a1111" if kinds == ["randn_local"] => match source {
            RandnSource::Nv => PhiloxGenerator::new(seed).randn(numel),
            RandnSource::Cpu => TorchGenerator::new(seed).randn(numel),
        },
        "a1111" => {
            let seeds = A1111Seeds {
                source,
                seed,
                subseed: case["subseed"].as_u64().map(|s| (s, case["subseed_strength"].as_f64().unwrap() as f32)),
                resize_from: case["seed_resize_from"]
                    .as_array()
                    .map_or((0, 0), |hw| (hw[1].as_u64().unwrap() as u32, hw[0].as_u64().unwrap() as u32)),
                eta_noise_seed_delta: case["eta_noise_seed_delta"].as_u64().unwrap_or(0),
            };
            let recorded: Vec<u64> = case["seeds"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(seeds.image_seeds(shape[0]), recorded, "A1111's seeds for {}", case["name"]);
            let mut rng = ImageRng::new(seeds, shape[0], [shape[1], shape[2], shape[3]]);
            let mut out = rng.first();
            for kind in &kinds[1..] {
                assert_eq!(*kind, "next");
                out.extend(rng.step_noise());
            }
            out
        }
        "comfyui" if kinds[0] == "prepare_noise" => {
            let indices: Option<Vec<usize>> =
                case["batch_inds"].as_array().map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect());
            prepare_noise(seed, shape[0], numel / shape[0], indices.as_deref())
        }
        "comfyui" => {
            let offset = case["noise_sampler_seed_offset"].as_u64().unwrap_or(0);
            let mut sampler = NoiseSampler::new(seed + offset, numel);
            kinds.iter().flat_map(|_| sampler.step_noise()).collect()
        }
        other => panic!("unknown tool {other}"),
    }
}

#[test]
fn a1111_and_comfyui_noise_equal_the_tools_own() {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the fixture lists every case");
    let mut failures = Vec::new();
    for case in cases {
        let (_, want) = npy::read_f32(dir().join(case["file"].as_str().unwrap())).unwrap();
        let got = draws(case);
        assert_eq!(got.len(), want.len(), "{}", case["name"]);
        let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if diff > 1e-6 {
            failures.push(format!("{}: max difference {diff:e}", case["name"]));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
