//! Single-file checkpoints as weights for template graphs (`engine::checkpoint`): the tiny model
//! written as an LDM-layout `.safetensors` (by `models/tooling/ref_checkpoints.py`) and loaded
//! into the weight-free templates (`models/templates/tiny`, by `sdtool template`) gives exactly
//! what the tiny ONNX export gives; other kinds of files are named, pickles and damaged files
//! refused with a message.
#![cfg(feature = "ssr")]

use std::path::{Path, PathBuf};

use easel::engine::checkpoint::{read_template_weights, Checkpoint, CheckpointKind, TemplateInitializer, Unpatched, WeightPatch};
use easel::engine::onnx_model::{spec, GraphBytes, InputData, OnnxModel};
use easel::engine::runtime::runtime;
use easel::engine::torch_rng::TorchGenerator;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/checkpoints").join(name)
}

fn template_session(checkpoint: &Checkpoint, graph: &str) -> OnnxModel {
    placed_session(checkpoint, graph, &Unpatched)
}

/// A session of the tiny template `graph` with the weights placed as `patch` decides: a tensor
/// it changes is converted by Easel and handed over in memory, the others are read by ONNX
/// Runtime from the file.
fn placed_session(checkpoint: &Checkpoint, graph: &str, patch: &dyn WeightPatch) -> OnnxModel {
    // ONNX Runtime must be loaded before tensors are made.
    let rt = runtime().unwrap();
    let dir = root().join("models/templates/tiny").join(graph);
    let weights = read_template_weights(&dir.join("weights.json")).unwrap();
    let supplied = checkpoint.graph_weights(&weights, graph, patch).unwrap();
    let from_file = supplied.file.as_ref().map_or(0, |f| f.placements.len());
    let expected = weights.initializers.iter().filter(|init| !patch.changes(init)).count();
    assert_eq!(from_file, expected, "tensors ONNX Runtime reads from the file itself");
    let path = dir.join("model.onnx");
    OnnxModel::load_with_weights(rt, "template", &path, GraphBytes::File, supplied, 1).unwrap()
}

fn export_session(graph: &str) -> OnnxModel {
    OnnxModel::load(runtime().unwrap(), "export", &root().join("models/tiny-sd").join(graph).join("model.onnx"), 1).unwrap()
}

/// The UNet's noise prediction for fixed random inputs.
fn unet_output(model: &mut OnnxModel) -> Vec<f32> {
    let mut rng = TorchGenerator::new(7);
    let sample = rng.randn(2 * 4 * 8 * 8);
    let context = rng.randn(2 * 77 * 32);
    let (s, t, c) =
        (spec(model, "sample", 0).unwrap(), spec(model, "timestep", 1).unwrap(), spec(model, "encoder_hidden_states", 2).unwrap());
    model
        .run(
            vec![
                (&s, InputData::Float { shape: vec![2, 4, 8, 8], data: &sample }),
                (&t, InputData::Timestep { value: 500.0, batch: 2 }),
                (&c, InputData::Float { shape: vec![2, 77, 32], data: &context }),
            ],
            "out_sample",
        )
        .unwrap()
        .1
}

fn text_output(model: &mut OnnxModel) -> Vec<f32> {
    let ids: Vec<i64> = [49406, 320, 1125, 539, 320, 2368].into_iter().chain(std::iter::repeat_n(49407, 71)).collect();
    let input = spec(model, "input_ids", 0).unwrap();
    model.run(vec![(&input, InputData::Int { shape: vec![1, 77], data: &ids })], "last_hidden_state").unwrap().1
}

fn vae_decoder_output(model: &mut OnnxModel) -> Vec<f32> {
    let latents = TorchGenerator::new(3).randn(4 * 8 * 8);
    let input = spec(model, "latent_sample", 0).unwrap();
    model.run(vec![(&input, InputData::Float { shape: vec![1, 4, 8, 8], data: &latents })], "sample").unwrap().1
}

#[test]
fn an_fp32_ldm_checkpoint_in_the_templates_equals_the_onnx_export_bit_for_bit() {
    let checkpoint = Checkpoint::open(&fixture("tiny-ldm.safetensors")).unwrap();
    assert_eq!(checkpoint.kind(), CheckpointKind::Sd1 { in_channels: 4, context_dim: 32 });
    assert_eq!(unet_output(&mut template_session(&checkpoint, "unet")), unet_output(&mut export_session("unet")));
    assert_eq!(text_output(&mut template_session(&checkpoint, "text_encoder")), text_output(&mut export_session("text_encoder")));
    assert_eq!(
        vae_decoder_output(&mut template_session(&checkpoint, "vae_decoder")),
        vae_decoder_output(&mut export_session("vae_decoder"))
    );
}

#[test]
fn an_fp16_checkpoint_loads_and_its_ema_copies_are_ignored() {
    let checkpoint = Checkpoint::open(&fixture("tiny-ldm-fp16.safetensors")).unwrap();
    let got = unet_output(&mut template_session(&checkpoint, "unet"));
    let want = unet_output(&mut export_session("unet"));
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    // fp16 rounding of the weights only; the negated EMA copies would change the sign of a layer.
    assert!(diff / scale < 1e-2, "relative difference {}", diff / scale);
}

/// Every tensor converted by Easel (read, cast to f32, transposed) and handed over in memory.
struct AllConvertedByEasel;

impl WeightPatch for AllConvertedByEasel {
    fn changes(&self, _: &TemplateInitializer) -> bool {
        true
    }

    fn delta(&self, _: &TemplateInitializer) -> Option<Vec<f32>> {
        None
    }
}

/// The transposed (`nn.Linear`) weights converted by Easel and written into the graph, the rest
/// read by ONNX Runtime from the file: the mix a LoRA makes.
struct LinearsConvertedByEasel;

impl WeightPatch for LinearsConvertedByEasel {
    fn changes(&self, init: &TemplateInitializer) -> bool {
        init.transpose
    }

    fn delta(&self, _: &TemplateInitializer) -> Option<Vec<f32>> {
        None
    }
}

/// `tiny-ldm.safetensors` with every float32 tensor truncated to bfloat16 (its upper 16 bits, as
/// torch's `.bfloat16()` does for these values up to rounding: any bfloat16 file will do here).
fn bf16_copy() -> PathBuf {
    let bytes = std::fs::read(fixture("tiny-ldm.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let (mut out_header, mut out_data) = (serde_json::Map::new(), Vec::new());
    for (key, entry) in header {
        if key == "__metadata__" {
            continue;
        }
        let [start, end] = [0, 1].map(|i| entry["data_offsets"][i].as_u64().unwrap() as usize);
        let converted: Vec<u8> = match entry["dtype"].as_str().unwrap() {
            "F32" => data[start..end].chunks_exact(4).flat_map(|c| [c[2], c[3]]).collect(),
            _ => data[start..end].to_vec(),
        };
        let dtype = if entry["dtype"] == "F32" { "BF16" } else { entry["dtype"].as_str().unwrap() };
        let offsets = [out_data.len(), out_data.len() + converted.len()];
        out_header.insert(key, serde_json::json!({"dtype": dtype, "shape": entry["shape"], "data_offsets": offsets}));
        out_data.extend(converted);
    }
    let header = serde_json::to_vec(&out_header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(out_data);
    let path = std::env::temp_dir().join(format!("easel-bf16-{}.safetensors", std::process::id()));
    std::fs::write(&path, file).unwrap();
    path
}

/// ONNX Runtime reads stored tensors from the file and converts them with folded nodes (cast,
/// reshape, transpose); the result must be exactly what converting them in Rust gives, for
/// float16 and bfloat16 files, in every graph kind (the UNet's and text encoder's transposed
/// linear weights, the VAE's reshaped attention weights).
#[test]
fn weights_read_from_the_file_by_onnx_runtime_equal_weights_converted_by_easel() {
    let bf16 = bf16_copy();
    for path in [fixture("tiny-ldm-fp16.safetensors"), bf16.clone()] {
        let checkpoint = Checkpoint::open(&path).unwrap();
        let name = path.display();
        let unet = |patch: &dyn WeightPatch| unet_output(&mut placed_session(&checkpoint, "unet", patch));
        assert_eq!(unet(&Unpatched), unet(&AllConvertedByEasel), "UNet, {name}");
        assert_eq!(unet(&Unpatched), unet(&LinearsConvertedByEasel), "UNet, patched tensors in the graph, {name}");
        let text = |patch: &dyn WeightPatch| text_output(&mut placed_session(&checkpoint, "text_encoder", patch));
        assert_eq!(text(&Unpatched), text(&AllConvertedByEasel), "text encoder, {name}");
        assert_eq!(text(&Unpatched), text(&LinearsConvertedByEasel), "text encoder, patched tensors in the graph, {name}");
        let vae = |patch: &dyn WeightPatch| vae_decoder_output(&mut placed_session(&checkpoint, "vae_decoder", patch));
        assert_eq!(vae(&Unpatched), vae(&AllConvertedByEasel), "VAE decoder, {name}");
    }
    let _ = std::fs::remove_file(bf16);
}

#[test]
fn other_kinds_of_files_are_named_and_bad_ones_refused() {
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let kind = Checkpoint::open(&fixture(file)).unwrap().kind();
        let want = match (case["classify"]["family"].as_str().unwrap(), case["classify"]["in_channels"].as_u64()) {
            ("sd1", Some(c)) => format!("{:?}", CheckpointKind::Sd1 { in_channels: c as usize, context_dim: 0 }),
            ("sd2", _) => "Sd2".into(),
            ("sdxl", _) => "Sdxl".into(),
            ("vae-only", _) => "Vae".into(),
            _ => "Lora".into(),
        };
        let got = match &kind {
            CheckpointKind::Sd1 { in_channels, .. } => format!("{:?}", CheckpointKind::Sd1 { in_channels: *in_channels, context_dim: 0 }),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{file}");
    }

    let dir = std::env::temp_dir().join(format!("easel-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let pickle = Checkpoint::open(&write("model.ckpt", b"PK\x03\x04")).err().unwrap().to_string();
    assert!(pickle.contains("pickle") && pickle.contains("sdtool convert"), "{pickle}");
    let disguised = Checkpoint::open(&write("model.safetensors", b"\x80\x02}q\x00.")).err().unwrap().to_string();
    assert!(disguised.contains("pickle"), "{disguised}");
    let full = std::fs::read(fixture("tiny-ldm-fp16.safetensors")).unwrap();
    let truncated = Checkpoint::open(&write("truncated.safetensors", &full[..full.len() / 2])).err().unwrap().to_string();
    assert!(truncated.contains("truncated or damaged"), "{truncated}");
    // A header that claims a tensor larger than the file.
    let header = br#"{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}"#;
    let mut lying = (header.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(header);
    lying.extend_from_slice(&[0; 16]);
    assert!(Checkpoint::open(&write("lying.safetensors", &lying)).is_err());
    // A checkpoint without the graph's tensors names the missing key.
    runtime().unwrap();
    let lora = Checkpoint::open(&fixture("lora-kohya.safetensors")).unwrap();
    let dir_unet = root().join("models/templates/tiny/unet");
    let weights = read_template_weights(&dir_unet.join("weights.json")).unwrap();
    let missing = lora.graph_weights(&weights, "unet", &Unpatched).err().unwrap().to_string();
    assert!(missing.contains("model.diffusion_model."), "{missing}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// Whole generations: the checkpoint file as a model (compiled-in templates, SD 1.x tokenizer and
/// scheduler) against the ONNX folder it was written from; txt2img and img2img (the VAE encoder).
#[test]
fn a_checkpoint_file_is_a_model_that_generates_what_the_onnx_folder_generates() {
    use easel::api::request::GenerateRequest;
    use easel::engine::model::{Residency, SdModel};
    use easel::engine::pipeline::txt2img;
    use easel::engine::CancelToken;
    let rt = runtime().unwrap();
    let request = GenerateRequest {
        prompt: "a watercolor painting of a lighthouse".into(),
        negative_prompt: Some("blurry".into()),
        seed: Some(42),
        steps: Some(4),
        width: Some(64),
        height: Some(64),
        sampler: Some("euler_a".into()),
        ..Default::default()
    }
    .resolve(|| 0)
    .unwrap();
    let run = |model: &mut SdModel| {
        let mut latents = Vec::new();
        let out = txt2img(model, &request, &CancelToken::new(), &mut |p| latents.push(p.latents.to_vec())).unwrap();
        (latents, out.images[0].rgb.clone())
    };
    let mut folder = SdModel::load(&root().join("models/tiny-sd"), rt, 1, Residency::Warm).unwrap();
    let mut file = SdModel::load(&fixture("tiny-ldm.safetensors"), rt, 1, Residency::LowMemory).unwrap();
    assert_eq!(file.name, "tiny-ldm.safetensors");
    assert_eq!(file.unet_in_channels().unwrap(), 4);
    let (want, got) = (run(&mut folder), run(&mut file));
    assert_eq!(got.0, want.0, "latents after every step");
    assert_eq!(got.1, want.1, "pixels");
}
