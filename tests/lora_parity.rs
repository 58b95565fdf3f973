//! LoRAs at run time against diffusers: every case in `tests/fixtures/lora/cases.json` (made by
//! `models/sdtool reference lora`: diffusers' `load_lora_weights` + `set_adapters` on the tiny torch
//! model) run on the tiny model as an ONNX folder (patched initializers) and as a checkpoint file
//! (patched template weights): the final latents within the pipeline parity bar (1e-4, or 1e-5 of
//! the largest latent), the text conditioning within 1e-4, the pixels within 1/255 on 99.9% of
//! values. Also: weight 0 equals no LoRA exactly, the infotext's `Lora hashes`, and LoRAs that do
//! not fit are refused before anything is built.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};

use common::parity::{check_pixels, max_abs_diff, request_of};
use easel::engine::lora::LoraCache;
use easel::engine::model::{Residency, SdModel};
use easel::engine::npy;
use easel::engine::pipeline::txt2img;
use easel::engine::runtime::runtime;
use easel::engine::CancelToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/lora")
}

fn lora_files(settings: &serde_json::Value) -> Vec<(PathBuf, f32, f32)> {
    settings["loras"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|l| {
                    let file = fixtures().join(l["file"].as_str().unwrap());
                    let unet = l["unet_weight"].as_f64().unwrap() as f32;
                    (file, unet, l["text_encoder_weight"].as_f64().map_or(unet, |w| w as f32))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one case; returns every way it misses the bar, and the final latents.
fn check_case(model: &mut SdModel, cache: &mut LoraCache, dir: &Path) -> (Vec<String>, Vec<f32>) {
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    model.use_networks(cache, &lora_files(&settings), None).unwrap();
    let resolved = request_of(&settings).resolve(|| unreachable!("fixtures give a seed")).unwrap();
    let out = txt2img(model, &resolved, &CancelToken::new(), &mut |_| {}).unwrap();
    let mut problems = Vec::new();
    let (_, want) = npy::read_f32(dir.join("latents.npy")).unwrap();
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let d = max_abs_diff(&out.latents, &want);
    if d > 1e-4f32.max(1e-5 * scale) {
        problems.push(format!("final latents: max diff {d:e}"));
    }
    let (_, emb) = npy::read_f32(dir.join("text_embeddings.npy")).unwrap();
    if emb.len() == out.text_embeddings.len() {
        let d = max_abs_diff(&out.text_embeddings, &emb);
        if d > 1e-4 {
            problems.push(format!("text embeddings: max diff {d:e}"));
        }
    } else {
        problems.push(format!("text embeddings: {} values, diffusers {}", out.text_embeddings.len(), emb.len()));
    }
    check_pixels(dir, &out.images, &mut problems);
    (problems, out.latents)
}

fn cases() -> Vec<String> {
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    cases["cases"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn loras_on_an_onnx_folder_and_on_a_checkpoint_equal_diffusers() {
    let rt = runtime().unwrap();
    let names = cases();
    assert!(names.len() >= 6, "{names:?}");
    let mut failures = Vec::new();
    for (label, path) in
        [("onnx folder", root().join("models/tiny-sd")), ("checkpoint", root().join("tests/fixtures/checkpoints/tiny-ldm.safetensors"))]
    {
        let mut model = SdModel::load(&path, rt, 1, Residency::Warm).unwrap();
        let mut cache = LoraCache::default();
        let mut none = None;
        for name in &names {
            let (problems, latents) = check_case(&mut model, &mut cache, &fixtures().join(name));
            failures.extend(problems.into_iter().map(|p| format!("{label} {name}: {p}")));
            if name == "none" {
                none = Some(latents);
            } else if name == "style_0" {
                assert_eq!(Some(&latents), none.as_ref(), "{label}: weight 0 must equal no LoRA exactly");
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn lora_hashes_are_a1111s_and_bad_loras_are_refused_by_name() {
    let rt = runtime().unwrap();
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    let hash_of = |file: &str| {
        cases["files"].as_array().unwrap().iter().find(|f| f["file"] == file).unwrap()["a1111_lora_hash"].as_str().unwrap().to_string()
    };
    let mut model = SdModel::load(&root().join("tests/fixtures/checkpoints/tiny-ldm.safetensors"), rt, 1, Residency::LowMemory).unwrap();
    let mut cache = LoraCache::default();
    let two = [(fixtures().join("style-kohya.safetensors"), 0.8, 0.8), (fixtures().join("detail-kohya.safetensors"), 0.6, 0.6)];
    model.use_networks(&mut cache, &two, None).unwrap();
    let want = format!("style: {}, detail: {}", hash_of("style-kohya.safetensors"), hash_of("detail-kohya.safetensors"));
    assert_eq!(model.network_parameters(), vec![("Lora hashes", want)]);

    let sdxl = model.use_networks(&mut cache, &[(fixtures().join("sdxl-lora-keys.safetensors"), 1.0, 1.0)], None).unwrap_err().to_string();
    assert!(sdxl.contains("SDXL"), "{sdxl}");
    // A checkpoint is not a LoRA.
    let checkpoint = root().join("tests/fixtures/checkpoints/tiny-ldm-fp16.safetensors");
    let not_lora = model.use_networks(&mut cache, &[(checkpoint, 1.0, 1.0)], None).unwrap_err().to_string();
    assert!(not_lora.contains("not a LoRA"), "{not_lora}");
    // A refused set leaves the previous one in place.
    assert_eq!(model.loras().entries.len(), 2);
}
