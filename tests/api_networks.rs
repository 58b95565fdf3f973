//! Checkpoints, LoRAs, VAEs and merges over real HTTP, with the files in an AUTOMATIC1111-layout
//! extra models dir: the lists, a generation that names all three (A1111's `Lora hashes`, `VAE`
//! and `Model` in the infotext), and `POST /api/v1/models/merge` with its refusals.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};

use common::{settings, start_with, temp_dir, TestServer};
use serde_json::{json, Value};

/// A1111's Lora hash of `tests/fixtures/lora/style-kohya.safetensors` (recorded in its cases.json).
const STYLE_HASH: &str = "1b296ae41050";

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// An A1111 install's folders holding the tiny checkpoint, a LoRA and a VAE.
fn a1111_install(root: &Path) {
    for (from, to) in [
        ("checkpoints/tiny-ldm.safetensors", "models/Stable-diffusion/tiny-ldm.safetensors"),
        ("lora/style-kohya.safetensors", "models/Lora/style.safetensors"),
        ("checkpoints/vae-standalone-bf16.safetensors", "models/VAE/tiny-vae.safetensors"),
        ("prompts/embeddings/tinystyle.safetensors", "embeddings/tinystyle.safetensors"),
    ] {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture(from), to).unwrap();
    }
}

async fn server(name: &str) -> (TestServer, PathBuf) {
    let dir = temp_dir(name);
    a1111_install(&dir.join("a1111"));
    std::fs::create_dir_all(dir.join("models")).unwrap();
    let mut s = settings(dir.join("models"), dir.join("data"));
    s.extra_models_dirs = vec![dir.join("a1111")];
    (start_with(s).await, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_lora_and_vae_from_an_a1111_folder_generate_with_their_hashes() {
    let (server, _dir) = server("networks-generate").await;
    let client = reqwest::Client::new();
    let loras: Value = client.get(server.url("/api/v1/loras")).send().await.unwrap().json().await.unwrap();
    assert_eq!(loras[0]["name"], "style.safetensors", "{loras}");
    assert_eq!(loras[0]["read_only"], true);
    let vaes: Value = client.get(server.url("/api/v1/vaes")).send().await.unwrap().json().await.unwrap();
    assert_eq!(vaes[0]["name"], "tiny-vae.safetensors", "{vaes}");
    let models: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    assert!(models.as_array().unwrap().iter().any(|m| m["name"] == "tiny-ldm.safetensors"), "{models}");
    let embeddings: Value = client.get(server.url("/api/v1/embeddings")).send().await.unwrap().json().await.unwrap();
    assert_eq!(embeddings[0]["name"], "tinystyle", "the extra dir's embeddings are listed too: {embeddings}");
    // The prompt box's token counter works for a checkpoint model (SD 1.x's tokenizer) and sees them.
    let query = [("text", "a fox, tinystyle"), ("model", "tiny-ldm.safetensors")];
    let counted = client.get(server.url("/api/v1/prompt/tokens")).query(&query).send().await.unwrap();
    assert_eq!(counted.status(), 200, "{:?}", counted.text().await);
    let counted: Value = counted.json().await.unwrap();
    assert!(counted["embeddings"].to_string().contains("tinystyle"), "{counted}");

    let body = json!({"prompt": "a fox <lora:style:0.5>", "prompt_syntax": "a1111", "seed": 3, "width": 64, "height": 64, "steps": 3,
        "model": "tiny-ldm.safetensors", "vae": "tiny-vae"});
    let resp = client.post(server.url("/api/v1/generate")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let job = common::wait_for_job(&client, &server, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let infotext = job["images"][0]["infotext"].as_str().unwrap();
    // The prompt keeps its tag, as A1111 writes it; the LoRA is named by its hash.
    assert!(infotext.starts_with("a fox <lora:style:0.5>\n"), "{infotext}");
    assert!(infotext.contains(&format!("Lora hashes: \"style: {STYLE_HASH}\"")), "{infotext}");
    assert!(infotext.contains("Model: tiny-ldm,") && infotext.contains("VAE: tiny-vae"), "{infotext}");

    // Once used, the lists show A1111's hashes: the checkpoint's short hash (first 10 hex digits
    // of the file's sha256), the LoRA's `Lora hashes` one, the VAE's and the embedding's.
    let sha = |path: PathBuf| format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(path).unwrap()));
    let models: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    let ckpt = models.as_array().unwrap().iter().find(|m| m["name"] == "tiny-ldm.safetensors").unwrap();
    assert_eq!(ckpt["hash"], sha(fixture("checkpoints/tiny-ldm.safetensors"))[..10], "{ckpt}");
    assert!(infotext.contains(&format!("Model hash: {}", &sha(fixture("checkpoints/tiny-ldm.safetensors"))[..10])), "{infotext}");
    let loras: Value = client.get(server.url("/api/v1/loras")).send().await.unwrap().json().await.unwrap();
    assert_eq!(loras[0]["hash"], STYLE_HASH, "{loras}");
    let vaes: Value = client.get(server.url("/api/v1/vaes")).send().await.unwrap().json().await.unwrap();
    assert_eq!(vaes[0]["hash"], sha(fixture("checkpoints/vae-standalone-bf16.safetensors"))[..10], "{vaes}");
    let embeddings: Value = client.get(server.url("/api/v1/embeddings")).send().await.unwrap().json().await.unwrap();
    assert_eq!(embeddings[0]["hash"], sha(fixture("prompts/embeddings/tinystyle.safetensors"))[..12], "{embeddings}");

    // A model's default VAE applies when a request names none, and is recorded in the job's settings.
    let put = |body: Value| client.put(server.url("/api/v1/models/vae")).json(&body).send();
    let resp = put(json!({"model": "tiny-ldm.safetensors", "vae": "tiny-vae"})).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["vae"], "tiny-vae.safetensors");
    assert_eq!(put(json!({"model": "tiny-ldm.safetensors", "vae": "nope"})).await.unwrap().status(), 404);
    let plain = json!({"prompt": "a fox", "seed": 3, "width": 64, "height": 64, "steps": 2, "model": "tiny-ldm.safetensors"});
    let submitted: Value = client.post(server.url("/api/v1/generate")).json(&plain).send().await.unwrap().json().await.unwrap();
    let job = common::wait_for_job(&client, &server, submitted["id"].as_str().unwrap()).await;
    assert_eq!(job["request"]["vae"], "tiny-vae.safetensors", "{job}");
    assert!(job["images"][0]["infotext"].as_str().unwrap().contains("VAE: tiny-vae"), "{job}");
    let resp = put(json!({"model": "tiny-ldm.safetensors", "vae": null})).await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["vae"], Value::Null);
    let submitted: Value = client.post(server.url("/api/v1/generate")).json(&plain).send().await.unwrap().json().await.unwrap();
    let job = common::wait_for_job(&client, &server, submitted["id"].as_str().unwrap()).await;
    assert!(job["request"].get("vae").is_none_or(Value::is_null), "{job}");

    // A name that is not there is refused before anything runs, naming what there is.
    let bad = json!({"prompt": "x", "model": "tiny-ldm.safetensors", "loras": [{"name": "nope"}]});
    let resp = client.post(server.url("/api/v1/generate")).json(&bad).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"loras\"") && text.contains("style.safetensors"), "{text}");
}

/// The pixels of a finished job's first image.
async fn first_image(client: &reqwest::Client, server: &TestServer, body: &Value) -> image::RgbImage {
    let resp = client.post(server.url("/api/v1/generate")).json(body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let job = common::wait_for_job(client, server, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let png = client.get(server.url(job["images"][0]["url"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
    image::load_from_memory(&png).unwrap().to_rgb8()
}

/// A ComfyUI install (`models/checkpoints`, `models/loras`, `models/vae`, `models/embeddings`) as
/// an extra models dir: its files are found under the names ComfyUI shows, and its checkpoint
/// generates exactly the picture of the ONNX folder it was written from.
#[tokio::test(flavor = "multi_thread")]
async fn a_comfyui_folder_is_read_and_its_checkpoint_equals_the_onnx_folder() {
    let dir = temp_dir("networks-comfyui");
    let comfy = dir.join("ComfyUI");
    for (from, to) in [
        ("checkpoints/tiny-ldm.safetensors", "models/checkpoints/sd1/tiny-ldm.safetensors"),
        ("lora/style-kohya.safetensors", "models/loras/style.safetensors"),
        ("checkpoints/vae-standalone-bf16.safetensors", "models/vae/tiny-vae.safetensors"),
        ("prompts/embeddings/tinystyle.safetensors", "models/embeddings/tinystyle.safetensors"),
    ] {
        let to = comfy.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture(from), to).unwrap();
    }
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::os::unix::fs::symlink(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd"), dir.join("models/tiny-sd")).unwrap();
    let mut s = settings(dir.join("models"), dir.join("data"));
    s.extra_models_dirs = vec![comfy];
    let server = start_with(s).await;
    let client = reqwest::Client::new();
    let list = |path: &'static str| {
        let (client, url) = (client.clone(), server.url(path));
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let models = list("/api/v1/models").await;
    let names: Vec<&str> = models.as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(names.contains(&"sd1/tiny-ldm.safetensors") && names.contains(&"tiny-sd"), "{models}");
    assert_eq!(list("/api/v1/loras").await[0]["name"], "style.safetensors");
    assert_eq!(list("/api/v1/vaes").await[0]["name"], "tiny-vae.safetensors");
    assert_eq!(list("/api/v1/embeddings").await[0]["name"], "tinystyle");

    let request =
        |model: &str| json!({"prompt": "a lighthouse, tinystyle", "seed": 11, "width": 64, "height": 64, "steps": 3, "model": model});
    let from_folder = first_image(&client, &server, &request("tiny-sd")).await;
    let from_comfyui = first_image(&client, &server, &request("sd1/tiny-ldm.safetensors")).await;
    assert!(from_folder == from_comfyui, "the checkpoint in the ComfyUI folder must give the ONNX folder's pixels");
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_writes_a_new_checkpoint_and_refuses_bad_requests_by_field() {
    let (server, dir) = server("networks-merge").await;
    let client = reqwest::Client::new();
    let merge = |body: Value| {
        let (client, url) = (client.clone(), server.url("/api/v1/models/merge"));
        async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let ok = json!({"a": "tiny-ldm.safetensors", "b": "tiny-ldm", "alpha": 0.5, "name": "half and half"});
    let (status, out) = merge(ok.clone()).await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["name"], "half and half.safetensors");
    assert!(out["merged"].as_u64().unwrap() > 100 && out["tensors"].as_u64() >= out["merged"].as_u64(), "{out}");
    assert!(dir.join("models/checkpoints/half and half.safetensors").is_file());
    let models: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    assert!(models.as_array().unwrap().iter().any(|m| m["name"] == "half and half.safetensors"), "{models}");

    for (body, field) in [
        (ok.clone(), "name"), // exists, no overwrite
        (json!({"a": "tiny-ldm", "b": "tiny-ldm", "name": "../escape"}), "name"),
        (json!({"a": "nope", "b": "tiny-ldm", "name": "x"}), "a"),
        (json!({"a": "tiny-ldm", "b": "tiny-ldm", "mode": "add-difference", "name": "x"}), "base"),
        (json!({"a": "tiny-ldm", "b": "tiny-ldm", "alpha": 7, "name": "x"}), "alpha"),
        (json!({"a": "tiny-ldm", "b": "tiny-ldm", "mode": "mix", "name": "x"}), "mode"),
    ] {
        let (status, out) = merge(body.clone()).await;
        assert_eq!(status, 422, "{body} -> {out}");
        assert!(out["fields"].as_array().unwrap().iter().any(|f| f["field"] == field), "{body} -> {out}");
    }
    let (status, out) = merge(json!({"a": "tiny-ldm", "b": "tiny-ldm", "alpha": 0.25, "name": "half and half", "overwrite": true})).await;
    assert_eq!(status, 201, "{out}");
}
