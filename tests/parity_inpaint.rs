//! Inpainting against diffusers: Easel's `generate` with a mask on `models/tiny-sd` (4-channel
//! UNet) and `models/tiny-sd-inpaint` (9-channel inpainting UNet) against diffusers'
//! `StableDiffusionInpaintPipeline` (float32, CPU, `torch.Generator("cpu").manual_seed(seed)`),
//! for every case in `tests/fixtures/inpaint/cases.json` (made by `models/sdtool reference
//! inpaint`): both UNet kinds, strength 1 and below, a blurred mask, a batch of two, a
//! non-square 9-channel case and an all-black mask. The bar is the txt2img suite's.
#![cfg(feature = "ssr")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::parity::{check_latents, check_pixels, request_of};
use easel::api::request::GenerateRequest;
use easel::api::VaeTiling;
use easel::engine::model::{Residency, SdModel};
use easel::engine::pipeline::{decode_latents, encode_pixels, generate, pixels_to_chw, SourceImages};
use easel::engine::runtime::runtime;
use easel::engine::torch_rng::TorchGenerator;
use easel::engine::CancelToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> SdModel {
    SdModel::load(&root().join("models").join(name), runtime().expect("ONNX Runtime"), 1, Residency::Warm).unwrap()
}

fn check_case(model: &mut SdModel, dir: &Path) -> Vec<String> {
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    let request = GenerateRequest {
        init_image: Some("up_init".into()),
        mask: Some("up_mask".into()),
        mask_blur: Some(case["mask_blur"].as_u64().unwrap() as u32),
        ..request_of(&case)
    };
    let settings = request.resolve(|| unreachable!("fixtures give a seed")).unwrap();
    let images = SourceImages {
        init: Some(image::open(dir.join("init.png")).unwrap().to_rgb8()),
        mask: Some(image::open(dir.join("mask.png")).unwrap().to_luma8()),
    };
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let out = match generate(model, &settings, &images, &CancelToken::new(), &mut |p| steps.push(p.latents.to_vec())) {
        Ok(out) => out,
        Err(e) => return vec![format!("failed: {e}")],
    };
    let mut problems = Vec::new();
    check_latents(dir, &steps, &mut problems);
    check_pixels(dir, &out.images, &mut problems);
    problems
}

#[test]
fn inpainting_matches_diffusers_on_every_fixture_case() {
    let fixtures = root().join("tests/fixtures/inpaint");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "the fixture index lists {} cases", cases.len());
    let mut models: HashMap<String, SdModel> = HashMap::new();
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model_name = case["model"].as_str().unwrap().to_string();
        let model = models.entry(model_name.clone()).or_insert_with(|| load(&model_name));
        kinds.insert(model.unet_in_channels().unwrap());
        for problem in check_case(model, &fixtures.join(name)) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), [4, 9], "both UNet kinds are covered");
    assert!(failures.is_empty(), "inpainting differs from diffusers:\n{}", failures.join("\n"));
}

/// With nothing to repaint, a 4-channel inpaint returns the init image's VAE round trip: the
/// known latents are put back after the last call without noise, so the output is the decoded
/// VAE sample (the first draw of the run) and nothing the UNet made.
#[test]
fn an_all_black_mask_returns_the_vae_round_trip() {
    let mut model = load("tiny-sd");
    let init = image::open(root().join("tests/fixtures/inpaint/euler_s1/init.png")).unwrap().to_rgb8();
    let (w, h) = init.dimensions();
    let settings = GenerateRequest {
        prompt: "anything at all".into(),
        seed: Some(5),
        steps: Some(4),
        width: Some(w),
        height: Some(h),
        sampler: Some("euler".into()),
        init_image: Some("up_init".into()),
        mask: Some("up_mask".into()),
        mask_blur: Some(0),
        strength: Some(1.0),
        ..Default::default()
    }
    .resolve(|| 1)
    .unwrap();
    let images = SourceImages { init: Some(init.clone()), mask: Some(image::GrayImage::new(w, h)) };
    let out = generate(&mut model, &settings, &images, &CancelToken::new(), &mut |_| {}).unwrap();

    let mut rng = TorchGenerator::new(5);
    let cancel = CancelToken::new();
    let latents = encode_pixels(
        &mut model,
        &pixels_to_chw(init.as_raw(), w as usize, h as usize),
        w as usize,
        h as usize,
        VaeTiling::Off,
        &mut rng,
        &cancel,
    )
    .unwrap();
    let round_trip = decode_latents(&mut model, &latents, [1, 4, h as usize / 8, w as usize / 8], VaeTiling::Off, &cancel).unwrap();
    assert_eq!(out.images[0].rgb, round_trip[0].rgb);
}

/// An inpainting model also does text-to-image (inpainting everything, as A1111 allows), and
/// refuses only the hires fix, saying why.
#[test]
fn an_inpainting_model_does_text_to_image_and_refuses_hires() {
    let mut model = load("tiny-sd-inpaint");
    let request =
        GenerateRequest { prompt: "a".into(), seed: Some(1), steps: Some(3), width: Some(64), height: Some(64), ..Default::default() };
    let settings = request.clone().resolve(|| 1).unwrap();
    let out = generate(&mut model, &settings, &SourceImages::default(), &CancelToken::new(), &mut |_| {}).unwrap();
    assert_eq!((out.images[0].width, out.images[0].height), (64, 64));
    let distinct: std::collections::BTreeSet<u8> = out.images[0].rgb.iter().copied().collect();
    assert!(distinct.len() > 16, "a flat image: {} distinct values", distinct.len());
    let hires = GenerateRequest { hires: Some(Default::default()), ..request }.resolve(|| 1).unwrap();
    let err = generate(&mut model, &hires, &SourceImages::default(), &CancelToken::new(), &mut |_| {}).err().expect("refused");
    assert!(err.to_string().contains("hires fix needs a normal"), "{err}");
}
