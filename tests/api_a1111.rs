//! AUTOMATIC1111's API (`/sdapi/v1`) over real HTTP against the tiny model, called the way the
//! `webuiapi` package and open-webui call it. The pictures are checked against the ones A1111's
//! own code made for the same settings (`tests/fixtures/compat_images`, recorded by
//! `models/tooling/ref_compat_images.py`), so an A1111 client gets A1111's image.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};

use common::{models_dir, start, temp_dir, TestServer};
use easel::jobs::base64::{base64_decode, base64_encode};
use serde_json::{json, Value};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compat_images").join(case)
}

/// The parity bar: within 1/255 on 99.9% of values, never more than 2/255.
fn assert_same_picture(png: &[u8], want: &Path) {
    let got = image::load_from_memory(png).unwrap().to_rgb8();
    let want = image::open(want).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), want.dimensions());
    let diffs: Vec<u8> = want.as_raw().iter().zip(got.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
    let over_one = diffs.iter().filter(|&&d| d > 1).count();
    let max = diffs.iter().copied().max().unwrap_or(0);
    assert!(max <= 2 && over_one as f64 <= diffs.len() as f64 * 0.001, "max diff {max}/255, {over_one} values off by more than 1");
}

async fn post(client: &reqwest::Client, server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let resp = client.post(server.url(&format!("/sdapi/v1{path}"))).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, server: &TestServer, path: &str) -> Value {
    let resp = client.get(server.url(&format!("/sdapi/v1{path}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn txt2img_gives_a1111s_picture_info_and_parameters() {
    let server = start(models_dir(), temp_dir("a1111-txt2img")).await;
    let client = reqwest::Client::new();
    let case = fixture("a1111_euler_a_automatic_s42_b2");
    let settings: Value = serde_json::from_str(&std::fs::read_to_string(case.join("settings.json")).unwrap()).unwrap();
    // As a webuiapi client sends it: A1111's field names, the CPU noise through override_settings.
    let body = json!({
        "prompt": settings["prompt"], "negative_prompt": settings["negative_prompt"], "seed": 42, "steps": 6,
        "cfg_scale": 7, "width": 64, "height": 64, "batch_size": 2, "sampler_name": "Euler a",
        "override_settings": {"randn_source": "CPU"}, "alwayson_scripts": {}, "send_images": true, "save_images": false,
    });
    let (status, answer) = post(&client, &server, "/txt2img", body).await;
    assert_eq!(status, 200, "{answer}");
    let images = answer["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (i, image) in images.iter().enumerate() {
        let png = base64_decode(image.as_str().unwrap()).unwrap();
        assert_same_picture(&png, &case.join(format!("image_{i}.png")));
    }
    assert_eq!(answer["parameters"]["steps"], 6);
    assert_eq!(answer["parameters"]["seed"], 42);
    let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["all_seeds"], json!([42, 43]));
    assert_eq!(info["sampler_name"], "Euler a");
    assert_eq!(info["steps"], 6);
    let infotexts = info["infotexts"].as_array().unwrap();
    assert!(infotexts[0].as_str().unwrap().contains("Seed: 42,"), "{infotexts:?}");
    assert!(infotexts[1].as_str().unwrap().contains("Seed: 43,"), "{infotexts:?}");
    // Python's json.dumps separators, as A1111's clients parse them.
    assert!(answer["info"].as_str().unwrap().starts_with("{\"prompt\": "), "{}", answer["info"]);

    // The calls are ordinary Easel jobs, in the history.
    let history: Value = client.get(server.url("/api/v1/generate?limit=5")).send().await.unwrap().json().await.unwrap();
    assert_eq!(history["jobs"][0]["request"]["compat"], "a1111", "{history}");

    // PNG Info reads the parameters back.
    let (status, png_info) = post(&client, &server, "/png-info", json!({"image": images[1]})).await;
    assert_eq!(status, 200, "{png_info}");
    assert!(png_info["info"].as_str().unwrap().contains("Sampler: Euler a"), "{png_info}");
    assert_eq!(png_info["parameters"]["Seed"], "43");
    assert_eq!(png_info["parameters"]["Size-1"], "64");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hires_fix_gives_a1111s_picture() {
    let server = start(models_dir(), temp_dir("a1111-hires")).await;
    let client = reqwest::Client::new();
    for (name, sampler, scheduler, upscaler, extra) in [
        ("a1111_hires_latent_euler_a_automatic_s47_b2", "Euler a", "Automatic", "Latent", json!({"randn_source": "CPU"})),
        ("a1111_hires_nearest_exact_dpmpp_2m_karras_s48_nv", "DPM++ 2M", "Karras", "Latent (nearest-exact)", json!({})),
        ("a1111_hires_bicubic_euler_automatic_s49", "Euler", "Automatic", "Latent (bicubic)", json!({"randn_source": "CPU"})),
        ("a1111_hires_nearest_euler_a_automatic_s50_nv", "Euler a", "Automatic", "Latent (nearest)", json!({})),
        ("a1111_hires_bicubic_antialiased_dpmpp_2m_karras_s69_b2", "DPM++ 2M", "Karras", "Latent (bicubic antialiased)", json!({})),
        ("a1111_hires_lanczos_euler_a_automatic_s71_b2", "Euler a", "Automatic", "Lanczos", json!({"randn_source": "CPU"})),
    ] {
        let case = fixture(name);
        let settings: Value = serde_json::from_str(&std::fs::read_to_string(case.join("settings.json")).unwrap()).unwrap();
        let h = &settings["hires"];
        let body = json!({
            "prompt": settings["prompt"], "negative_prompt": settings["negative_prompt"], "seed": settings["seed"], "steps": 6,
            "cfg_scale": 7, "width": 64, "height": 64, "batch_size": settings["batch_size"], "sampler_name": sampler,
            "scheduler": scheduler, "enable_hr": true, "hr_scale": h["scale"], "hr_upscaler": upscaler,
            "hr_second_pass_steps": h["steps"], "denoising_strength": h["strength"], "override_settings": extra,
        });
        let (status, answer) = post(&client, &server, "/txt2img", body).await;
        assert_eq!(status, 200, "{answer}");
        let images = answer["images"].as_array().unwrap();
        assert_eq!(images.len() as u64, settings["batch_size"].as_u64().unwrap());
        for (i, image) in images.iter().enumerate() {
            assert_same_picture(&base64_decode(image.as_str().unwrap()).unwrap(), &case.join(format!("image_{i}.png")));
        }
        let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
        assert!(info["infotexts"][0].as_str().unwrap().contains(&format!("Hires upscaler: {upscaler}")), "{info}");
        let history: Value = client.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
        assert_eq!(history["jobs"][0]["request"]["compat"], "a1111", "{history}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn img2img_gives_a1111s_picture() {
    let server = start(models_dir(), temp_dir("a1111-img2img")).await;
    let client = reqwest::Client::new();
    let case = fixture("a1111_img2img_euler_a_automatic_d06_s16_b2");
    let settings: Value = serde_json::from_str(&std::fs::read_to_string(case.join("settings.json")).unwrap()).unwrap();
    let init = base64_encode(&std::fs::read(case.join("init.png")).unwrap());
    let body = json!({
        "init_images": [format!("data:image/png;base64,{init}")], "denoising_strength": 0.6,
        "prompt": settings["prompt"], "negative_prompt": settings["negative_prompt"], "seed": 16, "steps": 6,
        "width": 64, "height": 64, "batch_size": 2, "sampler_name": "Euler a", "override_settings": {"randn_source": "CPU"},
    });
    let (status, answer) = post(&client, &server, "/img2img", body).await;
    assert_eq!(status, 200, "{answer}");
    for (i, image) in answer["images"].as_array().unwrap().iter().enumerate() {
        assert_same_picture(&base64_decode(image.as_str().unwrap()).unwrap(), &case.join(format!("image_{i}.png")));
    }
    // The init images are not echoed back unless asked for (A1111's include_init_images).
    assert!(answer["parameters"]["init_images"].is_null(), "{}", answer["parameters"]);
    let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["denoising_strength"], 0.6);
    assert!(info["infotexts"][0].as_str().unwrap().contains("Denoising strength: 0.6"), "{info}");

    // No init image: A1111's own 404; text that is not base64: its 500; base64 of something that
    // is not a picture: a 422 at the field, with the reason (A1111 fails with a bare 500 there).
    let (status, answer) = post(&client, &server, "/img2img", json!({"prompt": "x"})).await;
    assert_eq!((status, answer["detail"].as_str()), (404, Some("Init image not found")), "{answer}");
    let (status, answer) = post(&client, &server, "/img2img", json!({"init_images": ["not base64!"]})).await;
    assert_eq!((status, answer["detail"].as_str()), (500, Some("Invalid encoded image")), "{answer}");
    let (status, answer) = post(&client, &server, "/img2img", json!({"init_images": ["bm90IGFuIGltYWdl"]})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "init_images"]), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inpainting_model_gives_a1111s_pictures() {
    let server = start(models_dir(), temp_dir("a1111-inpainting-model")).await;
    let client = reqwest::Client::new();
    let data_url = |path: PathBuf| format!("data:image/png;base64,{}", base64_encode(&std::fs::read(path).unwrap()));
    // Inpainting (whole picture, original content) with the 9-channel model chosen per call.
    let case = fixture("a1111_inpaint_model_whole_original_euler_a_automatic_d075_s62");
    let settings: Value = serde_json::from_str(&std::fs::read_to_string(case.join("settings.json")).unwrap()).unwrap();
    let body = json!({
        "init_images": [data_url(case.join("init.png"))], "mask": data_url(case.join("mask.png")), "mask_blur": 4,
        "inpainting_fill": 1, "inpaint_full_res": false, "denoising_strength": 0.75,
        "prompt": settings["prompt"], "negative_prompt": settings["negative_prompt"], "seed": 62, "steps": 6,
        "width": 64, "height": 64, "sampler_name": "Euler a",
        "override_settings": {"randn_source": "CPU", "sd_model_checkpoint": "tiny-sd-inpaint"},
    });
    let (status, answer) = post(&client, &server, "/img2img", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_same_picture(&base64_decode(answer["images"][0].as_str().unwrap()).unwrap(), &case.join("image_0.png"));
    let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["is_using_inpainting_conditioning"], true, "{info}");
    let infotext = info["infotexts"][0].as_str().unwrap();
    assert!(infotext.contains("Denoising strength: 0.75, Conditional mask weight: 1.0, "), "{infotext}");
    // Text-to-image with it: a mid-grey picture's conditioning.
    let case = fixture("a1111_inpaint_model_txt2img_dpmpp_2m_karras_s64");
    let body = json!({
        "prompt": settings["prompt"], "negative_prompt": settings["negative_prompt"], "seed": 64, "steps": 6,
        "width": 64, "height": 64, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "override_settings": {"randn_source": "CPU", "sd_model_checkpoint": "tiny-sd-inpaint"},
    });
    let (status, answer) = post(&client, &server, "/txt2img", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_same_picture(&base64_decode(answer["images"][0].as_str().unwrap()).unwrap(), &case.join("image_0.png"));
    // A normal model says it did not use one.
    let (status, answer) = post(&client, &server, "/txt2img", json!({"prompt": "a fox", "steps": 2, "width": 64, "height": 64})).await;
    assert_eq!(status, 200, "{answer}");
    let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["is_using_inpainting_conditioning"], false, "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_masked_with_an_empty_mask_is_plain_img2img_as_in_a1111() {
    let server = start(models_dir(), temp_dir("a1111-empty-mask")).await;
    let client = reqwest::Client::new();
    let case = fixture("a1111_img2img_euler_a_automatic_d06_s16_b2");
    let png = |picture: image::DynamicImage| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        picture.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        format!("data:image/png;base64,{}", base64_encode(bytes.get_ref()))
    };
    let init = png(image::open(case.join("init.png")).unwrap());
    let body = |mask: Option<String>| {
        let mut body = json!({"init_images": [init], "denoising_strength": 0.6, "prompt": "a fox", "seed": 16, "steps": 4,
            "width": 64, "height": 64, "sampler_name": "Euler a", "mask_blur": 4, "inpainting_fill": 0, "inpaint_full_res": true});
        if let Some(mask) = mask {
            body["mask"] = json!(mask);
        }
        body
    };
    let blank = png(image::DynamicImage::ImageLuma8(image::GrayImage::new(64, 64)));
    let (status, masked) = post(&client, &server, "/img2img", body(Some(blank))).await;
    assert_eq!(status, 200, "{masked}");
    let (status, plain) = post(&client, &server, "/img2img", body(None)).await;
    assert_eq!(status, 200, "{plain}");
    let pixels = |answer: &Value| {
        let png = base64_decode(answer["images"][0].as_str().unwrap()).unwrap();
        image::load_from_memory(&png).unwrap().to_rgb8().into_raw()
    };
    assert!(pixels(&masked) == pixels(&plain), "an unused mask changes nothing");
    // Only the blur is written, as A1111's init sets it before it finds the mask empty.
    let info: Value = serde_json::from_str(masked["info"].as_str().unwrap()).unwrap();
    let infotext = info["infotexts"][0].as_str().unwrap();
    assert!(infotext.contains("Mask blur: 4") && !infotext.contains("Inpaint area") && !infotext.contains("Masked content"), "{infotext}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_options_and_errors_in_a1111s_shapes() {
    let data = temp_dir("a1111-lists");
    let server = start(models_dir(), data.clone()).await;
    let client = reqwest::Client::new();
    let samplers = get(&client, &server, "/samplers").await;
    let names: Vec<&str> = samplers.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for wanted in ["DPM++ 2M", "Euler a", "DPM++ 2M SDE", "DPM fast", "Restart"] {
        assert!(names.contains(&wanted), "{names:?}");
    }
    let schedulers = get(&client, &server, "/schedulers").await;
    assert_eq!(schedulers[0]["label"], "Automatic");
    let models = get(&client, &server, "/sd-models").await;
    assert!(models.as_array().unwrap().iter().any(|m| m["model_name"] == "tiny-sd"), "{models}");
    let progress = get(&client, &server, "/progress").await;
    assert_eq!(progress["progress"], 0.0);
    assert!(get(&client, &server, "/memory").await["ram"]["total"].as_f64().unwrap() > 0.0);
    // What Easel has none of lists empty, as A1111 with none installed does.
    for path in ["/hypernetworks", "/face-restorers", "/realesrgan-models", "/prompt-styles", "/extensions", "/script-info"] {
        assert_eq!(get(&client, &server, path).await, json!([]), "{path}");
    }
    for path in ["/refresh-embeddings", "/refresh-checkpoints"] {
        assert_eq!(post(&client, &server, path, json!({})).await, (200, Value::Null), "{path}");
    }
    assert_eq!(post(&client, &server, "/unload-checkpoint", json!({})).await, (200, json!({})));

    // Options: set, read back, kept across a restart of the door (in the data dir).
    let options = get(&client, &server, "/options").await;
    assert_eq!(options["CLIP_stop_at_last_layers"], 1);
    assert_eq!(options["randn_source"], "GPU");
    let (status, _) = post(&client, &server, "/options", json!({"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337})).await;
    assert_eq!(status, 200);
    let options = get(&client, &server, "/options").await;
    assert_eq!((options["CLIP_stop_at_last_layers"].as_i64(), options["eta_noise_seed_delta"].as_i64()), (Some(2), Some(31337)));
    let kept: Value = serde_json::from_slice(&std::fs::read(data.join("a1111_options.json")).unwrap()).unwrap();
    assert_eq!(kept["CLIP_stop_at_last_layers"], 2);
    let (status, answer) = post(&client, &server, "/options", json!({"sd_model_checkpoint": "no-such-model"})).await;
    assert_eq!((status, answer["error"].as_str()), (500, Some("RuntimeError")), "{answer}");

    // A wrong type is FastAPI's 422 at the field; a value Easel refuses names the A1111 field.
    let (status, answer) = post(&client, &server, "/txt2img", json!({"prompt": "x", "steps": "many"})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "steps"]));
    assert_eq!(answer["detail"][0]["type"], "type_error.integer");
    let (status, answer) = post(&client, &server, "/txt2img", json!({"prompt": "x", "restore_faces": true})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "restore_faces"]));
    let (status, answer) = post(&client, &server, "/txt2img", json!({"prompt": "x", "script_name": "x/y/z plot"})).await;
    assert_eq!((status, answer["detail"].as_str()), (422, Some("Script 'x/y/z plot' not found")), "{answer}");
    let resp = client.get(server.url("/sdapi/v1/no-such-endpoint")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"detail": "Not Found"}));
}
