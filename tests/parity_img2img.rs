//! Image-to-image against diffusers: Easel's `img2img` on `models/tiny-sd` and diffusers'
//! `StableDiffusionImg2ImgPipeline` (float32, CPU, `torch.Generator("cpu").manual_seed(seed)`) on
//! the same init image, for every case in `tests/fixtures/img2img/cases.json` (made by
//! `models/sdtool reference img2img tests/fixtures/img2img`): every sampler family's `add_noise`
//! and late start, two strengths, a non-square image, a batch of two.
//!
//! The bar is the txt2img suite's: the latents after every scheduler call within 1e-4 (or 1e-5 of
//! the step's largest latent when larger), the PNG pixels within 1/255 on 99.9% of values and
//! never more than 2/255 apart.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};

use common::parity::{check_latents, check_pixels, request_of};
use easel::api::request::GenerateRequest;
use easel::engine::model::{Residency, SdModel};
use easel::engine::pipeline::{img2img, txt2img, InitImage};
use easel::engine::runtime::runtime;
use easel::engine::CancelToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_model() -> SdModel {
    SdModel::load(&root().join("models/tiny-sd"), runtime().expect("ONNX Runtime"), 1, Residency::Warm).unwrap()
}

/// Every way the case misses the bar (empty when it passes).
fn check_case(model: &mut SdModel, dir: &Path) -> Vec<String> {
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    let settings = request_of(&case).resolve(|| unreachable!("fixtures give a seed")).unwrap();
    let init = image::open(dir.join("init.png")).unwrap().to_rgb8();
    let init = InitImage { width: init.width(), height: init.height(), rgb: init.as_raw() };
    let strength = case["strength"].as_f64().unwrap();
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let out = img2img(model, &settings, &init, strength, &CancelToken::new(), &mut |p| steps.push(p.latents.to_vec())).unwrap();
    let mut problems = Vec::new();
    check_latents(dir, &steps, &mut problems);
    check_pixels(dir, &out.images, &mut problems);
    problems
}

#[test]
fn img2img_matches_diffusers_on_every_fixture_case() {
    let fixtures = root().join("tests/fixtures/img2img");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "the fixture index lists {} cases", cases.len());
    let mut model = tiny_model();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        for problem in check_case(&mut model, &fixtures.join(name)) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "img2img differs from diffusers:\n{}", failures.join("\n"));
}

/// A strength that leaves no step to run is refused with a message naming both numbers, not run
/// as a no-op.
#[test]
fn a_strength_that_denoises_nothing_is_refused() {
    let mut model = tiny_model();
    let settings =
        GenerateRequest { prompt: "a".into(), width: Some(64), height: Some(64), steps: Some(3), seed: Some(1), ..Default::default() }
            .resolve(|| 1)
            .unwrap();
    let rgb = vec![128u8; 64 * 64 * 3];
    let init = InitImage { width: 64, height: 64, rgb: &rgb };
    let err = img2img(&mut model, &settings, &init, 0.3, &CancelToken::new(), &mut |_| {}).err().expect("refused");
    assert!(err.to_string().contains("0.3") && err.to_string().contains("3 steps"), "{err}");
}

/// At strength 1.0 every scheduler call runs; the result is not txt2img's image (the noised image
/// latents are the start, not pure noise), but the number of calls is the same.
#[test]
fn strength_one_runs_every_call_of_the_schedule() {
    let mut model = tiny_model();
    let settings = GenerateRequest {
        prompt: "a".into(),
        width: Some(64),
        height: Some(64),
        steps: Some(6),
        seed: Some(3),
        sampler: Some("euler".into()),
        ..Default::default()
    }
    .resolve(|| 1)
    .unwrap();
    let rgb = vec![200u8; 64 * 64 * 3];
    let init = InitImage { width: 64, height: 64, rgb: &rgb };
    let mut calls = 0;
    img2img(&mut model, &settings, &init, 1.0, &CancelToken::new(), &mut |_| calls += 1).unwrap();
    let mut txt_calls = 0;
    txt2img(&mut model, &settings, &CancelToken::new(), &mut |_| txt_calls += 1).unwrap();
    assert_eq!((calls, txt_calls), (6, 6));
}
