//! Prompts over real HTTP: the token counter endpoint, the embeddings list, and jobs whose
//! prompts use A1111's syntax, CLIP skip, an embedding from the models dir, or broken syntax
//! (which A1111 tolerates, so a job never fails on its prompt).
#![cfg(feature = "ssr")]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{start, temp_dir};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A models dir with the tiny model and an `embeddings/` folder holding the fixture embeddings.
fn models_with_embeddings(name: &str) -> PathBuf {
    let dir = temp_dir(name).join("models");
    std::fs::create_dir_all(dir.join("embeddings")).unwrap();
    std::os::unix::fs::symlink(root().join("models/tiny-sd"), dir.join("tiny-sd")).unwrap();
    for file in ["tinyneg.pt", "tinystyle.safetensors", "evil.pt"] {
        std::fs::copy(root().join("tests/fixtures/prompts/embeddings").join(file), dir.join("embeddings").join(file)).unwrap();
    }
    dir
}

async fn tokens(client: &reqwest::Client, base: &str, text: &str, syntax: Option<&str>) -> (u16, Value) {
    let mut query = vec![("text", text)];
    if let Some(s) = syntax {
        query.push(("syntax", s));
    }
    let resp = client.get(format!("{base}/api/v1/prompt/tokens")).query(&query).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn run_job(client: &reqwest::Client, base: &str, body: Value) -> Value {
    let resp = client.post(format!("{base}/api/v1/generate")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let job: Value = resp.json().await.unwrap();
    let url = format!("{base}/api/v1/generate/{}", job["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_counter_counts_chunks_per_syntax_and_names_bad_input() {
    let server = start(models_with_embeddings("tokens"), temp_dir("tokens-data")).await;
    let client = reqwest::Client::new();
    let base = server.url("");

    let (status, short) = tokens(&client, &base, "a lighthouse at dawn", None).await;
    assert_eq!(status, 200, "{short}");
    assert_eq!(
        (short["syntax"].as_str(), short["token_count"].as_u64(), short["chunks"].as_array().map(Vec::len)),
        (Some("a1111"), Some(4), Some(1))
    );
    assert_eq!(short["chunks"][0]["tokens"][1]["text"], "lighthouse</w>");

    // 100 tokens: A1111 makes two chunks (75 + 25); plain keeps 75 and says 25 are dropped.
    let long = "red ".repeat(100);
    let (_, a1111) = tokens(&client, &base, &long, Some("a1111")).await;
    assert_eq!((a1111["token_count"].as_u64(), a1111["chunks"].as_array().unwrap().len()), (Some(100), 2));
    let (_, plain) = tokens(&client, &base, &long, Some("plain")).await;
    assert_eq!((plain["token_count"].as_u64(), plain["truncated"].as_u64()), (Some(75), Some(25)));

    // Weights show per token; an embedding counts its vectors and is named.
    let (_, weighted) = tokens(&client, &base, "(red:1.5) tinyneg", None).await;
    assert_eq!(weighted["chunks"][0]["tokens"][0]["weight"].as_f64(), Some(1.5), "{weighted}");
    assert_eq!(weighted["token_count"].as_u64(), Some(4), "1 + 3 vectors: {weighted}");
    assert_eq!(weighted["embeddings"], json!(["tinyneg"]));
    let (_, comfy) = tokens(&client, &base, "embedding:tinystyle cat", Some("comfyui")).await;
    assert_eq!(comfy["token_count"].as_u64(), Some(3), "{comfy}");

    let (status, bad) = tokens(&client, &base, "x", Some("invokeai")).await;
    assert_eq!(status, 422, "{bad}");
    assert!(bad.to_string().contains("syntax") && bad.to_string().contains("a1111"), "{bad}");

    let list: Value = client.get(server.url("/api/v1/embeddings")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["evil", "tinyneg", "tinystyle"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_a1111_syntax_clip_skip_embeddings_and_broken_prompts() {
    let server = start(models_with_embeddings("prompt-jobs"), temp_dir("prompt-jobs-data")).await;
    let client = reqwest::Client::new();
    let base = server.url("");
    let long_negative = "blurry, ".repeat(60);
    let cases = [
        json!({"prompt": "(red:1.3) cat [dog:bird:0.5] AND a hat :0.5", "negative_prompt": long_negative, "clip_skip": 2}),
        json!({"prompt": "tinyneg, a cat BREAK tinystyle", "prompt_syntax": "a1111"}),
        json!({"prompt": "((((x:abc) [unbalanced \\", "negative_prompt": "evil"}),
        json!({"prompt": "(cat:1.2) embedding:tinystyle embedding:missing", "prompt_syntax": "comfyui", "clip_skip": 2}),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut body = json!({"seed": i, "width": 64, "height": 64, "steps": 2, "sampler": "euler"});
        body.as_object_mut().unwrap().extend(case.as_object().unwrap().clone());
        let job = run_job(&client, &base, body).await;
        assert_eq!(job["status"], "succeeded", "case {i}: {job}");
        assert_eq!(job["request"]["prompt_syntax"], case.get("prompt_syntax").cloned().unwrap_or(json!("a1111")), "{job}");
        if i == 1 {
            // The embeddings used are named with A1111's short file hash, in first-use order.
            let png = client.get(server.url(job["images"][0]["url"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
            let hash = |file: &str| {
                use sha2::{Digest, Sha256};
                let bytes = std::fs::read(root().join("tests/fixtures/prompts/embeddings").join(file)).unwrap();
                format!("{:x}", Sha256::digest(&bytes))[..12].to_string()
            };
            let want = format!("TI hashes: \"tinyneg: {}, tinystyle: {}\"", hash("tinyneg.pt"), hash("tinystyle.safetensors"));
            assert!(String::from_utf8_lossy(&png).contains(&want), "no {want} in the PNG text");
        }
    }

    // The infotext records CLIP skip as A1111 writes it.
    let job = run_job(&client, &base, json!({"prompt": "a cat", "seed": 9, "width": 64, "height": 64, "steps": 2, "clip_skip": 2})).await;
    let url = job["images"][0]["url"].as_str().unwrap();
    let png = client.get(server.url(url)).send().await.unwrap().bytes().await.unwrap();
    let text = String::from_utf8_lossy(&png);
    assert!(text.contains("Clip skip: 2"), "no Clip skip in the PNG text");

    // Out-of-range values are field errors.
    let resp = client
        .post(server.url("/api/v1/generate"))
        .json(&json!({"prompt": "a", "clip_skip": 0, "prompt_syntax": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    let fields: Vec<&str> = body["fields"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"clip_skip") && fields.contains(&"prompt_syntax"), "{body}");
}
