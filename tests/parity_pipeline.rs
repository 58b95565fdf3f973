//! The acceptance bar: Easel's txt2img on `models/tiny-sd` against diffusers'
//! `StableDiffusionPipeline` (float32, CPU, `torch.Generator("cpu").manual_seed(seed)`), for every
//! case in `tests/fixtures/pipeline/cases.json` (made by `models/sdtool reference --all-fixtures`).
//!
//! Per case: text embeddings within 1e-4; the latents after every step within 1e-4, or within 1e-5
//! of that step's largest latent when that is larger (sigma-scaled latents reach ~100, where one
//! float32 ulp is 8e-6, and the UNet's ~1e-6 ONNX-vs-torch difference is multiplied by sigma); the
//! PNG pixels within 1/255 on at least 99.9% of values and never more than 2/255 apart.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};

use common::parity::{check_latents, check_pixels, max_abs_diff, request_of};
use easel::api::request::GenerateRequest;
use easel::engine::model::{Residency, SdModel};
use easel::engine::npy;
use easel::engine::pipeline::txt2img;
use easel::engine::runtime::runtime;
use easel::engine::CancelToken;

const EMBEDDING_TOL: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns a description of every way the case misses the bar (empty when it passes).
fn check_case(model: &mut SdModel, dir: &Path) -> Vec<String> {
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    let resolved = request_of(&settings).resolve(|| unreachable!("fixtures give a seed")).unwrap();
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let out = txt2img(model, &resolved, &CancelToken::new(), &mut |p| steps.push(p.latents.to_vec())).unwrap();
    let mut problems = Vec::new();

    // Text embeddings: the fixture holds the UNet context [uncond×B; cond×B] (or [cond×B]).
    let (emb_shape, emb) = npy::read_f32(dir.join("text_embeddings.npy")).unwrap();
    let per = emb_shape[1] * emb_shape[2];
    let batch = resolved.batch_size as usize;
    let halves = out.text_embeddings.len() / per;
    for h in 0..halves {
        let want = &emb[h * batch * per..h * batch * per + per];
        let got = &out.text_embeddings[h * per..(h + 1) * per];
        let d = max_abs_diff(got, want);
        if d > EMBEDDING_TOL {
            problems.push(format!("text embeddings half {h}: max diff {d:e}"));
        }
    }

    check_latents(dir, &steps, &mut problems);
    check_pixels(dir, &out.images, &mut problems);
    problems
}

#[test]
fn txt2img_matches_diffusers_on_every_fixture_case() {
    let fixtures = root().join("tests/fixtures/pipeline");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "expected the full fixture set, found {} cases", cases.len());
    let mut model = SdModel::load(&root().join("models/tiny-sd"), runtime().unwrap(), 1, Residency::Warm).unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        for problem in check_case(&mut model, &fixtures.join(name)) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

/// Large images run the two halves of classifier-free guidance as separate UNet calls (the
/// attention matrices of one call of twice the batch do not fit in memory at 1024²), and large
/// batches run in slices of images; forced on for every size (one image and one half per call),
/// the split still gives diffusers' images on every guided fixture case, batches of two included.
#[test]
fn guidance_halves_as_separate_unet_calls_give_the_same_images() {
    let fixtures = root().join("tests/fixtures/pipeline");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    let mut model = SdModel::load(&root().join("models/tiny-sd"), runtime().unwrap(), 1, Residency::Warm).unwrap();
    model.split_guidance_tokens = 0;
    let mut failures = Vec::new();
    let mut guided = 0;
    for case in index["cases"].as_array().unwrap() {
        if case["cfg_scale"].as_f64().unwrap_or(7.5) <= 1.0 {
            continue;
        }
        guided += 1;
        let name = case["name"].as_str().unwrap();
        for problem in check_case(&mut model, &fixtures.join(name)) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(guided >= 10, "{guided} guided cases");
    assert!(failures.is_empty(), "split guidance differs from diffusers:\n{}", failures.join("\n"));
}

#[test]
fn low_memory_mode_gives_the_same_image() {
    let dir = root().join("tests/fixtures/pipeline/euler_a");
    let mut model = SdModel::load(&root().join("models/tiny-sd"), runtime().unwrap(), 1, Residency::LowMemory).unwrap();
    assert_eq!(check_case(&mut model, &dir), Vec::<String>::new());
}

#[test]
fn cancel_stops_within_one_step() {
    let mut model = SdModel::load(&root().join("models/tiny-sd"), runtime().unwrap(), 1, Residency::Warm).unwrap();
    let settings = GenerateRequest { prompt: "a".into(), width: Some(64), height: Some(64), steps: Some(10), ..Default::default() }
        .resolve(|| 5)
        .unwrap();
    let cancel = CancelToken::new();
    let mut seen = 0;
    let result = txt2img(&mut model, &settings, &cancel, &mut |p| {
        seen = p.step;
        if p.step == 3 {
            cancel.cancel();
        }
    });
    assert!(matches!(result, Err(easel::engine::EngineError::Cancelled)));
    assert_eq!(seen, 3, "no step ran after the cancel");
}
