//! The UNet's attention runs fused into ONNX Runtime's `MultiHeadAttention` whichever way the
//! model is loaded (an ONNX folder, a checkpoint through its template, with a LoRA), and the
//! fused UNet gives the unfused UNet's output. The parity suites (txt2img, img2img, LoRA,
//! checkpoints against diffusers) run through the fused UNet too.
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::engine::model::{Residency, SdModel};
use easel::engine::onnx_model::{spec, InputData, OnnxModel};
use easel::engine::runtime::runtime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(unet: &mut OnnxModel) -> Vec<f32> {
    let sample = spec(unet, "sample", 0).unwrap();
    let timestep = spec(unet, "timestep", 1).unwrap();
    let hidden = spec(unet, "encoder_hidden_states", 2).unwrap();
    let width = hidden.dims[2] as usize;
    let latents: Vec<f32> = (0..2 * 4 * 8 * 8).map(|i| ((i as f32) * 0.37).sin()).collect();
    let text: Vec<f32> = (0..2 * 77 * width).map(|i| ((i as f32) * 0.11).cos()).collect();
    let inputs = vec![
        (&sample, InputData::Float { shape: vec![2, 4, 8, 8], data: &latents }),
        (&timestep, InputData::Timestep { value: 500.0, batch: 2 }),
        (&hidden, InputData::Float { shape: vec![2, 77, width], data: &text }),
    ];
    unet.run(inputs, "out_sample").unwrap().1
}

#[test]
fn the_unet_runs_fused_from_every_source_and_equals_the_unfused_graph() {
    let rt = runtime().unwrap();
    let mut folder = SdModel::load(&root().join("models/tiny-sd"), rt, 1, Residency::Warm).unwrap();
    let fused = {
        let mut unet = folder.unet().unwrap();
        assert_eq!(unet.fused_attention, 32, "an ONNX folder");
        run(&mut unet)
    };
    let path = root().join("models/tiny-sd/unet/model.onnx");
    let mut plain = OnnxModel::load(rt, "unet", &path, 1).unwrap();
    assert_eq!(plain.fused_attention, 0);
    let unfused = run(&mut plain);
    let worst = fused.iter().zip(&unfused).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "fused and unfused UNets differ by {worst:e}");

    let mut checkpoint =
        SdModel::load(&root().join("tests/fixtures/checkpoints/tiny-ldm.safetensors"), rt, 1, Residency::LowMemory).unwrap();
    assert_eq!(checkpoint.unet().unwrap().fused_attention, 32, "a checkpoint through its template");
}
