//! `easel generate` as a user runs it: image-to-image and inpainting from files on the command
//! line give diffusers' pictures, outpainting grows the canvas; image-to-image from a PNG gives
//! diffusers' picture for the same settings (the `lms_96x64` img2img fixture), sizes itself from
//! the init image, and records the strength in the PNG's A1111 parameters; bad input exits 2
//! naming the flag.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::temp_dir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn easel(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
    command.env("EASEL_DATA_DIR", data).env("EASEL_MODELS_DIR", root().join("models")).arg("generate");
    command
}

/// The `parameters` text chunk of a PNG.
fn parameters(png: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    info.uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .chain(info.utf8_text.iter().map(|t| (t.keyword.clone(), t.get_text().unwrap())))
        .find(|(k, _)| k == "parameters")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[test]
fn init_image_on_the_command_line_gives_diffusers_picture() {
    let case_dir = root().join("tests/fixtures/img2img/lms_96x64");
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(case_dir.join("settings.json")).unwrap()).unwrap();
    let data = temp_dir("cli-img2img");
    let out = data.join("out.png");
    let output = easel(&data)
        .args(["--model", "tiny-sd", "--prompt", case["prompt"].as_str().unwrap()])
        .args(["--seed", &case["seed"].to_string(), "--steps", &case["steps"].to_string(), "--sampler", "lms"])
        .args(["--cfg-scale", &case["cfg_scale"].to_string(), "--strength", &case["strength"].to_string()])
        .arg("--init-image")
        .arg(case_dir.join("init.png"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let got = image::open(&out).unwrap().to_rgb8();
    let want = image::open(case_dir.join("image_0.png")).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), (96, 64), "the size comes from the init image");
    let max = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(max <= 2, "max pixel difference from diffusers {max}/255");
    let text = parameters(&out);
    assert!(text.contains("Denoising strength: 0.7") && text.contains("Size: 96x64"), "{text}");
}

#[test]
fn bad_strength_and_unreadable_images_exit_2_naming_the_flag() {
    let data = temp_dir("cli-img2img-bad");
    let init = root().join("tests/fixtures/img2img/euler_s05/init.png");
    let output =
        easel(&data).args(["--model", "tiny-sd", "--prompt", "x", "--strength", "1.5", "--init-image"]).arg(&init).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("strength 1.5"), "{}", String::from_utf8_lossy(&output.stderr));
    let not_an_image = data.join("notes.png");
    std::fs::write(&not_an_image, b"hello").unwrap();
    let output = easel(&data).args(["--model", "tiny-sd", "--prompt", "x", "--init-image"]).arg(&not_an_image).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("notes.png"), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Inpainting from the command line gives diffusers' picture (the 9-channel `inpaint9_euler_s1`
/// fixture); outpainting grows the canvas and keeps the original away from the seam.
#[test]
fn mask_and_outpaint_on_the_command_line() {
    let case_dir = root().join("tests/fixtures/inpaint/inpaint9_euler_s1");
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(case_dir.join("settings.json")).unwrap()).unwrap();
    let data = temp_dir("cli-inpaint");
    let out = data.join("inpainted.png");
    let output = easel(&data)
        .args(["--model", "tiny-sd-inpaint", "--prompt", case["prompt"].as_str().unwrap()])
        .args(["--seed", &case["seed"].to_string(), "--steps", &case["steps"].to_string(), "--sampler", "euler"])
        .args(["--cfg-scale", &case["cfg_scale"].to_string(), "--strength", "1", "--mask-blur", "0"])
        .arg("--init-image")
        .arg(case_dir.join("init.png"))
        .arg("--mask")
        .arg(case_dir.join("mask.png"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let got = image::open(&out).unwrap().to_rgb8();
    let want = image::open(case_dir.join("image_0.png")).unwrap().to_rgb8();
    let max = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(max <= 2, "max pixel difference from diffusers {max}/255");
    assert!(parameters(&out).contains("Mask blur: 0"), "{}", parameters(&out));

    let grown = data.join("outpainted.png");
    let output = easel(&data)
        .args(["--model", "tiny-sd", "--prompt", "a meadow", "--seed", "3", "--steps", "4", "--sampler", "euler"])
        .args(["--outpaint", "left=16,bottom=8", "--mask-blur", "2"])
        .arg("--init-image")
        .arg(case_dir.join("init.png"))
        .arg("-o")
        .arg(&grown)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let grown = image::open(&grown).unwrap().to_rgb8();
    let init = image::open(case_dir.join("init.png")).unwrap().to_rgb8();
    assert_eq!(grown.dimensions(), (init.width() + 16, init.height() + 8));
    // Beyond the 4-pixel seam the original is pasted back exactly.
    for (x, y) in [(10u32, 10u32), (40, 20), (60, 50)] {
        assert_eq!(grown.get_pixel(x + 16, y), init.get_pixel(x, y), "({x}, {y})");
    }
}

#[test]
fn image_mode_flags_that_conflict_or_overflow_exit_2_naming_the_field() {
    let data = temp_dir("cli-modes-bad");
    let init = root().join("tests/fixtures/inpaint/euler_s1/init.png");
    let mask = root().join("tests/fixtures/inpaint/euler_s1/mask.png");
    let cases: [(&[&str], &str); 3] = [
        (&["--outpaint", "left=64", "--mask"], "not both"),
        (&["--outpaint", "left=12"], "outpaint.left 12"),
        (&["--hires-scale", "9"], "hires"),
    ];
    for (args, expect) in cases {
        let mut command = easel(&data);
        command.args(["--model", "tiny-sd", "--prompt", "x", "--init-image"]).arg(&init).args(args);
        if args.last() == Some(&"--mask") {
            command.arg(&mask);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// `--save-embeddings` writes `[branches x batch, tokens, hidden]`: the negative prompt's first,
/// each compared on its own tokens with A1111's conditioning (recorded by
/// `tooling.ref_prompts`); an embedding comes from `--embedding`.
#[test]
fn save_embeddings_writes_a1111_conditioning_for_each_half() {
    let fixtures = root().join("tests/fixtures/prompts");
    for (case, embedding) in [("a1111_negative_longer", None), ("a1111_embedding_pt", Some("tinyneg.pt"))] {
        let dir = fixtures.join("conditioning").join(case);
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
        let data = temp_dir(&format!("cli-save-embeddings-{case}"));
        let saved = data.join("cond.npy");
        let mut command = easel(&data);
        command
            .args(["--model", "tiny-sd", "--prompt", s["prompt"].as_str().unwrap()])
            .args(["--negative-prompt", s["negative_prompt"].as_str().unwrap()])
            .args(["--steps", "2", "--width", "64", "--height", "64", "--batch-size", "2", "--seed", "1"])
            .arg("--save-embeddings")
            .arg(&saved)
            .arg("-o")
            .arg(data.join("out.png"));
        if let Some(file) = embedding {
            command.arg("--embedding").arg(fixtures.join("embeddings").join(file));
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let (shape, got) = easel::engine::npy::read_f32(&saved).unwrap();
        let (_, uncond) = easel::engine::npy::read_f32(dir.join("uncond_e20.npy")).unwrap();
        let (_, cond) = easel::engine::npy::read_f32(dir.join("cond_p0_e20.npy")).unwrap();
        let tokens = uncond.len().max(cond.len()) / 32;
        assert_eq!(shape, [4, tokens, 32], "{case}: uncond x 2, cond x 2");
        let row = tokens * 32;
        for (image, want) in [(0, &uncond), (1, &uncond), (2, &cond), (3, &cond)] {
            let half = &got[image * row..image * row + want.len()];
            let d = half.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(d < 1e-4, "{case} row {image}: max difference {d:e}");
        }
    }
}

/// A models dir whose only model is the tiny one under another name (no `tiny-sd`).
fn models_without_tiny_sd(data: &Path) -> PathBuf {
    let models = data.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(root().join("models/tiny-sd"), models.join("oracle-tiny")).unwrap();
    models
}

#[test]
fn a_generation_into_the_outputs_dir_is_a_job_in_the_gallery_and_commands_share_their_flags() {
    let data = temp_dir("cli-record");
    let models = models_without_tiny_sd(&data);
    let easel = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
        command.env("EASEL_DATA_DIR", &data).env_remove("EASEL_MODELS_DIR").env_remove("EASEL_DEFAULT_MODEL").args(args);
        command.arg("--models-dir").arg(&models);
        command.output().unwrap()
    };
    let generate = ["generate", "--prompt", "recorded fox", "--steps", "2", "--width", "64", "--height", "64", "--seed", "5"];

    // No --model, no tiny-sd: the default is the model there is.
    let out = easel(&generate);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(written.starts_with(data.join("outputs")) && written.is_file(), "{written:?}");
    let store = easel::jobs::JobStore::open(&data).unwrap();
    let jobs = store.list(10, None).unwrap().jobs;
    assert_eq!(jobs.len(), 1, "the generation is recorded as one job");
    let job = &jobs[0];
    assert_eq!((job.status.as_str(), job.settings.model.as_deref()), ("succeeded", Some("oracle-tiny")));
    assert_eq!(job.images.len(), 1);
    assert_eq!(data.join("outputs").join(&job.images[0].path), written);
    assert!(job.images[0].infotext.contains("Seed: 5"), "{}", job.images[0].infotext);

    let out = easel(&[&generate[..], &["--no-record"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).is_file());
    assert_eq!(store.list(10, None).unwrap().jobs.len(), 1, "--no-record adds no job");

    // The same --models-dir after a nested subcommand, and the default marked.
    let out = easel(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "oracle-tiny");
    assert_eq!(list[0]["is_default"], true);

    // `easel bench` measures the default model and says which.
    let out = easel(&["bench", "--steps", "1", "--size", "64"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("measuring model oracle-tiny"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--compat` and A1111's seed flags: the start noise `--save-noise` writes equals what A1111's and
/// ComfyUI's own functions drew for the same seeds (`tests/fixtures/noise`, recorded by
/// `models/tooling/ref_noise.py`), and the PNG's parameters name them as A1111 does.
#[test]
fn compat_modes_draw_the_tools_own_start_noise() {
    let fixtures = root().join("tests/fixtures/noise");
    let data = temp_dir("cli-compat");
    let cases: [(&str, &[&str]); 5] = [
        ("a1111_nv_first_s1234", &["--seed", "1234", "--compat", "a1111"]),
        ("a1111_cpu_first_s4294967303", &["--seed", "4294967303", "--compat", "a1111", "--randn-source", "cpu"]),
        ("a1111_nv_subseed99_str0p3", &["--seed", "1234", "--compat", "a1111", "--subseed", "99", "--subseed-strength", "0.3"]),
        ("a1111_cpu_resize_48x40", &["--seed", "1234", "--compat", "a1111", "--randn-source", "cpu", "--seed-resize-from", "40x48"]),
        ("comfyui_prepare_noise_s42", &["--seed", "42", "--compat", "comfyui"]),
    ];
    for (case, flags) in cases {
        let (noise, out) = (data.join(format!("{case}.npy")), data.join(format!("{case}.png")));
        let output = easel(&data)
            .args(["--model", "tiny-sd", "--prompt", "a fox", "--steps", "2", "--width", "64", "--height", "64", "--batch-size", "2"])
            .args(flags)
            .arg("--save-noise")
            .arg(&noise)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(output.status.success(), "{case}: {}", String::from_utf8_lossy(&output.stderr));
        let (shape, got) = easel::engine::npy::read_f32(&noise).unwrap();
        assert_eq!(shape, [2, 4, 8, 8], "{case}");
        let (_, recorded) = easel::engine::npy::read_f32(fixtures.join(format!("{case}.npy"))).unwrap();
        let diff = got.iter().zip(&recorded).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-6, "{case}: start noise differs from the tool's by {diff:e}");
        // A batch written to `-o NAME.png` becomes NAME-0.png, NAME-1.png.
        let text = parameters(&data.join(format!("{case}-0.png")));
        if case.starts_with("a1111") {
            assert!(text.contains("Compat: a1111"), "{case}: {text}");
        }
        if case.contains("subseed") {
            assert!(text.contains("Variation seed: 99, Variation seed strength: 0.3"), "{text}");
        }
        // A1111 seeds image i with seed + i (with a variation seed, the subseed moves instead)
        // and says so in that image's parameters.
        let second = parameters(&data.join(format!("{case}-1.png")));
        if case == "a1111_nv_first_s1234" {
            assert!(text.contains("Seed: 1234,") && second.contains("Seed: 1235,"), "{text}\n{second}");
        }
        if case.contains("subseed") {
            assert!(second.contains("Seed: 1234,") && second.contains("Variation seed: 100,"), "{second}");
        }
    }
    // A1111's settings need its mode.
    let output = easel(&data).args(["--model", "tiny-sd", "--prompt", "x", "--subseed", "3"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("compat a1111"), "{}", String::from_utf8_lossy(&output.stderr));
}

/// `--device` and `--precision`: a provider this ONNX Runtime build lacks, or a precision the
/// model's graphs are not, exits 2 with the reason and the fix; `doctor` lists every device.
#[test]
fn devices_and_precisions_the_machine_cannot_run_exit_2_with_the_fix() {
    let data = temp_dir("cli-device");
    // The CPU build of ONNX Runtime, named outright: a CUDA build that `setup-onnxruntime.sh
    // --gpu` put on this machine would otherwise be chosen for --device cuda.
    let cpu_build = easel::engine::runtime::find_library().unwrap();
    let run = |extra: &[&str]| {
        let mut command = easel(&data);
        command.env("ORT_DYLIB_PATH", &cpu_build).args(["--model", "tiny-sd", "--prompt", "x", "--steps", "1"]);
        command.args(extra).output().unwrap()
    };
    // The CPU build has no CUDA provider.
    let output = run(&["--device", "cuda:1", "-o", "/dev/null"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--device cuda:1") && stderr.contains("CUDAExecutionProvider") && stderr.contains("--gpu"), "{stderr}");
    // The tiny model's graphs are float32.
    let output = run(&["--precision", "int8", "-o", "/dev/null"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--precision int8") && stderr.contains("fp32") && stderr.contains("--quantize int8"), "{stderr}");
    let output = run(&["--device", "tpu"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cuda:N"));
    // fp32 on the CPU is the model as it is, and is recorded in the image.
    let out = data.join("fp32.png");
    let output = run(&["--device", "cpu", "--precision", "fp32", "-o", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let chunks = easel::engine::png_meta::read_text_chunks(&std::fs::read(&out).unwrap()).unwrap();
    let easel_chunk = chunks.into_iter().find(|(k, _)| k == "easel").unwrap().1;
    let provenance: serde_json::Value = serde_json::from_str(&easel_chunk).unwrap();
    assert_eq!((provenance["device"].as_str(), provenance["precision"].as_str()), (Some("cpu"), Some("fp32")), "{provenance}");

    let doctor = Command::new(env!("CARGO_BIN_EXE_easel"))
        .env("EASEL_DATA_DIR", &data)
        .env("ORT_DYLIB_PATH", &cpu_build)
        .arg("doctor")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(report.contains("cpu        available (CPUExecutionProvider)"), "{report}");
    for kind in ["cuda", "openvino", "coreml", "directml"] {
        assert!(report.contains(&format!("{kind:<10} not available: ")), "{kind}: {report}");
    }
}
