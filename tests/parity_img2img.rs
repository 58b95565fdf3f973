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
use easel::api::request::{GenerateRequest, GenerationSettings};
use easel::engine::model::{Residency, SdModel};
use easel::engine::pipeline::{generate, txt2img, SourceImages};
use easel::engine::runtime::runtime;
use easel::engine::CancelToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn grey(width: u32, height: u32, value: u8) -> SourceImages {
    SourceImages { init: Some(image::RgbImage::from_pixel(width, height, image::Rgb([value; 3]))), mask: None }
}

fn tiny_model() -> SdModel {
    SdModel::load(&root().join("models/tiny-sd"), runtime().expect("ONNX Runtime"), 1, Residency::Warm).unwrap()
}

/// Every way the case misses the bar (empty when it passes).
fn check_case(model: &mut SdModel, dir: &Path) -> Vec<String> {
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    let request = GenerateRequest { init_image: Some("up_fixture".into()), ..request_of(&case) };
    let settings = request.resolve(|| unreachable!("fixtures give a seed")).unwrap();
    let images = SourceImages { init: Some(image::open(dir.join("init.png")).unwrap().to_rgb8()), mask: None };
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let out = generate(model, &settings, &images, &CancelToken::new(), &mut |p| steps.push(p.latents.to_vec())).unwrap();
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
    let settings = GenerateRequest {
        prompt: "a".into(),
        width: Some(64),
        height: Some(64),
        steps: Some(3),
        seed: Some(1),
        init_image: Some("up_grey".into()),
        strength: Some(0.3),
        ..Default::default()
    }
    .resolve(|| 1)
    .unwrap();
    let err = generate(&mut model, &settings, &grey(64, 64, 128), &CancelToken::new(), &mut |_| {}).err().expect("refused");
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
    let img2img = GenerateRequest { init_image: Some("up_grey".into()), strength: Some(1.0), ..Default::default() };
    let img2img = GenerationSettings { init_image: img2img.init_image, strength: img2img.strength, ..settings.clone() };
    let mut calls = 0;
    generate(&mut model, &img2img, &grey(64, 64, 200), &CancelToken::new(), &mut |_| calls += 1).unwrap();
    let mut txt_calls = 0;
    txt2img(&mut model, &settings, &CancelToken::new(), &mut |_| txt_calls += 1).unwrap();
    assert_eq!((calls, txt_calls), (6, 6));
}
