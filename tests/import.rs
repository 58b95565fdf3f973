//! Importing settings from files other tools wrote (`POST /api/v1/import`, what the Generate
//! form's Import uses): an A1111 PNG, a ComfyUI PNG and a UI-format workflow JSON, written by
//! `models/tooling/make_import_fixtures.py` as those tools write them. Each gives settings in the
//! matching mode, and generating with them gives the tool's own picture
//! (tests/fixtures/compat_images, recorded from A1111's and ComfyUI's code).
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};

use common::{models_dir, start, temp_dir, wait_for_job, TestServer};
use serde_json::{json, Value};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

async fn import(client: &reqwest::Client, server: &TestServer, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = client.post(server.url("/api/v1/import")).header("content-type", content_type).body(body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Runs imported settings as a request (a job's settings are a valid request) and returns the PNG.
async fn generate(client: &reqwest::Client, server: &TestServer, settings: &Value) -> Vec<u8> {
    let mut request = settings.clone();
    request.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    let resp = client.post(server.url("/api/v1/generate")).json(&request).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{request}");
    let job: Value = resp.json().await.unwrap();
    let job = wait_for_job(client, server, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    client.get(server.url(job["images"][0]["url"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap().to_vec()
}

/// The parity bar: within 1/255 on 99.9% of values, never more than 2/255.
fn assert_same_picture(png: &[u8], want: &Path) {
    let got = image::load_from_memory(png).unwrap().to_rgb8();
    let want = image::open(want).unwrap().to_rgb8();
    let diffs: Vec<u8> = want.as_raw().iter().zip(got.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
    let over_one = diffs.iter().filter(|&&d| d > 1).count();
    let max = diffs.iter().copied().max().unwrap_or(0);
    assert!(max <= 2 && over_one as f64 <= diffs.len() as f64 * 0.001, "max diff {max}/255, {over_one} values off by more than 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_a1111_png_fills_every_setting_in_the_a1111_mode_and_gives_a1111s_picture() {
    let server = start(models_dir(), temp_dir("import-a1111")).await;
    let client = reqwest::Client::new();
    let (status, imported) = import(&client, &server, "image/png", std::fs::read(fixture("import/a1111.png")).unwrap()).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["source"], "a1111");
    let s = &imported["settings"];
    assert_eq!((s["prompt"].as_str(), s["negative_prompt"].as_str()), (Some("a red fox in the snow, (watercolor:1.2)"), Some("blurry")));
    assert_eq!((s["steps"].as_u64(), s["seed"].as_u64(), s["width"].as_u64()), (Some(6), Some(7), Some(64)));
    assert_eq!((s["sampler"].as_str(), s["schedule"].as_str()), (Some("dpmpp_2m"), Some("karras")));
    assert_eq!((s["compat"].as_str(), s["randn_source"].as_str()), (Some("a1111"), Some("nv")));
    assert!(imported["notes"][0].as_str().unwrap().contains("Denoising strength"), "{imported}");
    let png = generate(&client, &server, s).await;
    assert_same_picture(&png, &fixture("compat_images/a1111_dpmpp_2m_karras_s7_nv/image_0.png"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_comfyui_png_and_a_ui_format_workflow_give_comfyuis_picture() {
    let server = start(models_dir(), temp_dir("import-comfyui")).await;
    let client = reqwest::Client::new();
    let (status, from_png) = import(&client, &server, "image/png", std::fs::read(fixture("import/comfyui.png")).unwrap()).await;
    assert_eq!(status, 200, "{from_png}");
    assert_eq!(from_png["source"], "comfyui");
    let (status, from_json) =
        import(&client, &server, "application/json", std::fs::read(fixture("import/workflow_ui.json")).unwrap()).await;
    assert_eq!(status, 200, "{from_json}");
    assert_eq!(from_json["source"], "comfyui");
    assert_eq!(from_json["settings"]["seed"], 7, "the primitive node's seed, not the widget's stale one");
    assert_eq!(from_png["settings"], from_json["settings"], "the API graph and the UI workflow say the same");
    let s = &from_png["settings"];
    assert_eq!((s["compat"].as_str(), s["prompt_syntax"].as_str()), (Some("comfyui"), Some("comfyui")));
    let png = generate(&client, &server, s).await;
    assert_same_picture(&png, &fixture("compat_images/comfyui_dpmpp_2m_karras_s7/image_0.png"));
    // An Easel PNG gives back exactly the settings it was made with.
    let (status, own) = import(&client, &server, "image/png", png).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["source"], "easel");
    let mut recorded = s.clone();
    recorded["model"] = json!("tiny-sd");
    assert_eq!(own["settings"], recorded);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_without_usable_settings_are_refused_with_the_reason() {
    let server = start(models_dir(), temp_dir("import-refused")).await;
    let client = reqwest::Client::new();
    let mut workflow: Value = serde_json::from_slice(&std::fs::read(fixture("import/workflow_ui.json")).unwrap()).unwrap();
    workflow["nodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 20, "type": "IPAdapterApply", "mode": 0, "inputs": [], "widgets_values": [1.0]}));
    let (status, answer) = import(&client, &server, "application/json", workflow.to_string().into_bytes()).await;
    assert_eq!(status, 422, "{answer}");
    let message = answer["fields"][0]["message"].as_str().unwrap();
    assert!(message.contains("nodes Easel does not run: IPAdapterApply"), "{message}");
    let plain = image::RgbImage::new(8, 8);
    let mut png = Vec::new();
    plain.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let (status, answer) = import(&client, &server, "image/png", png).await;
    assert_eq!(status, 422);
    assert!(answer["fields"][0]["message"].as_str().unwrap().contains("carries no settings"), "{answer}");
    let (status, _) = import(&client, &server, "application/zip", vec![1, 2, 3]).await;
    assert_eq!(status, 415);
}
