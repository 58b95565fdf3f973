//! The generation API over real HTTP against the tiny model: ordering, positions, SSE, cancel,
//! idempotency, bad input, and a crash (SIGKILL) in the middle of a job.
#![cfg(feature = "ssr")]

mod common;

use std::time::{Duration, Instant};

use common::{models_dir, start, temp_dir, TestServer};
use serde_json::{json, Value};

async fn submit(client: &reqwest::Client, server: &TestServer, body: Value) -> Value {
    let resp = client.post(server.url("/api/v1/generate")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

async fn wait_until_done(client: &reqwest::Client, url: &str, base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: Value = client.get(format!("{base}{url}")).send().await.unwrap().json().await.unwrap();
        if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn small(prompt: &str, seed: u64) -> Value {
    json!({"prompt": prompt, "seed": seed, "width": 64, "height": 64, "steps": 4, "sampler": "euler"})
}

/// Long enough to cancel while it runs.
fn slow(seed: u64) -> Value {
    json!({"prompt": "slow", "seed": seed, "width": 256, "height": 256, "steps": 150, "sampler": "euler"})
}

#[tokio::test(flavor = "multi_thread")]
async fn five_jobs_finish_in_submission_order_with_positions() {
    let server = start(models_dir(), temp_dir("order")).await;
    let client = reqwest::Client::new();
    // The slow job holds the single worker for far longer than the submits and reads below take,
    // so the five jobs are certainly queued behind it, at positions known in advance.
    let blocker = submit(&client, &server, slow(100)).await;
    let blocker_url = format!("/api/v1/generate/{}", blocker["id"].as_str().unwrap());
    // Every job's events in the order the worker sends them: one broadcast channel, and every
    // event but progress is sent under one lock right after its change committed.
    let mut events = server.state.easel.queue().subscribe();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let sub = submit(&client, &server, small(&format!("job {i}"), i)).await;
        assert_eq!(sub["status"], "queued", "{sub}");
        // Ahead of it: the slow job and the `i` jobs submitted before it.
        assert_eq!(sub["position"], i + 1, "{sub}");
        ids.push(sub["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let job: Value = client.get(server.url(&format!("/api/v1/generate/{id}"))).send().await.unwrap().json().await.unwrap();
        assert_eq!(job["status"], "queued", "{job}");
        assert_eq!(job["position"], i as u64 + 1, "{job}");
    }
    // 200: cancelled while still queued; 202: stopped while running. A 409 would mean it had
    // already finished, and the positions above were read against a moving queue.
    let resp = client.delete(server.url(&blocker_url)).send().await.unwrap();
    assert!([200, 202].contains(&resp.status().as_u16()), "the slow job ended too soon: {}", resp.status());
    for id in &ids {
        let job = wait_until_done(&client, &format!("/api/v1/generate/{id}"), &server.url("")).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let image = &job["images"][0];
        assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(64), Some(64)));
        let png = client.get(server.url(image["url"].as_str().unwrap())).send().await.unwrap();
        assert_eq!(png.status(), 200);
        assert!(png.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        let bytes = png.bytes().await.unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
    // One at a time, in submission order: each job started only after the one before it
    // succeeded. Compared by the order of the worker's events, not by millisecond timestamps,
    // which tie when jobs are this fast.
    let mut order = Vec::new();
    let mut terminal = 0;
    while terminal < ids.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no terminal event for every job; saw {order:?}"))
            .expect("the test fell behind the event channel");
        let Some(index) = ids.iter().position(|id| *id == event.job_id) else { continue };
        if event.kind.is_terminal() {
            terminal += 1;
        }
        if event.kind.name() != "queued" && event.kind.name() != "progress" {
            order.push(format!("{} {index}", event.kind.name()));
        }
    }
    let expected: Vec<String> = (0..ids.len()).flat_map(|i| [format!("started {i}"), format!("succeeded {i}")]).collect();
    assert_eq!(order, expected);
    // History: newest first, paginated.
    let page: Value = client.get(server.url("/api/v1/generate?limit=2")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["jobs"][0]["id"], ids[4].as_str());
    assert_eq!(page["jobs"][1]["id"], ids[3].as_str());
    let next = page["next_before"].as_i64().unwrap();
    let page2: Value =
        client.get(server.url(&format!("/api/v1/generate?limit=2&before={next}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(page2["jobs"][0]["id"], ids[2].as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_gives_byte_identical_png_and_idempotency_key_dedupes() {
    let server = start(models_dir(), temp_dir("idem")).await;
    let client = reqwest::Client::new();
    let body = small("same", 99);
    let first: Value = client
        .post(server.url("/api/v1/generate"))
        .header("Idempotency-Key", "k-1")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let retry = client.post(server.url("/api/v1/generate")).header("Idempotency-Key", "k-1").json(&body).send().await.unwrap();
    assert_eq!(retry.status(), 200, "a retried submit returns the first job");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    let second = submit(&client, &server, body).await;
    let mut images = Vec::new();
    for id in [&first["id"], &second["id"]] {
        let job = wait_until_done(&client, &format!("/api/v1/generate/{}", id.as_str().unwrap()), &server.url("")).await;
        let url = job["images"][0]["url"].as_str().unwrap().to_string();
        images.push(client.get(server.url(&url)).send().await.unwrap().bytes().await.unwrap());
    }
    // The embedded JSON differs only by nothing: same settings, same seed -> same file.
    assert_eq!(images[0], images[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_stream_carries_events_in_order_and_late_subscribers_get_state() {
    let server = start(models_dir(), temp_dir("sse")).await;
    let client = reqwest::Client::new();
    // Behind a slow job, the job is certainly still queued when the stream opens, so the stream
    // must carry its whole life; a stream opened after the start would begin at the latest step.
    let blocker = submit(&client, &server, slow(100)).await;
    let sub = submit(&client, &server, small("sse", 5)).await;
    let id = sub["id"].as_str().unwrap();
    // The handler subscribes before it answers, so once the headers are here nothing is missed.
    let stream = client.get(server.url(&format!("/api/v1/generate/{id}/events"))).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let resp = client.delete(server.url(&format!("/api/v1/generate/{}", blocker["id"].as_str().unwrap()))).send().await.unwrap();
    assert!([200, 202].contains(&resp.status().as_u16()), "the slow job ended too soon: {}", resp.status());
    let text = tokio::time::timeout(Duration::from_secs(120), stream.text()).await.expect("the stream ends").unwrap();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    // queued (its position as the queue moves), then started, one progress per step, succeeded.
    let waiting = names.iter().take_while(|n| **n == "queued").count();
    assert!(waiting >= 1, "{names:?}");
    assert_eq!(names[waiting..], ["started", "progress", "progress", "progress", "progress", "succeeded"], "{text}");
    let steps: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|e| e["event"] == "progress")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4], "{text}");
    // A late subscriber gets the terminal state at once, and the stream ends.
    let late = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(server.url(&format!("/api/v1/generate/{id}/events"))).send().await.unwrap().text(),
    )
    .await
    .unwrap()
    .unwrap();
    let late_names: Vec<&str> = late.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(late_names, ["succeeded"]);
    assert!(late.contains("/outputs/"), "{late}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_a_queued_job_and_a_running_one() {
    let server = start(models_dir(), temp_dir("cancel")).await;
    let client = reqwest::Client::new();
    let running = submit(&client, &server, slow(1)).await;
    let queued = submit(&client, &server, small("behind", 2)).await;
    let running_url = format!("/api/v1/generate/{}", running["id"].as_str().unwrap());
    let queued_url = format!("/api/v1/generate/{}", queued["id"].as_str().unwrap());

    let resp = client.delete(server.url(&queued_url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Wait until the slow job has made progress, then cancel it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Value = client.get(server.url(&running_url)).send().await.unwrap().json().await.unwrap();
        if job["status"] == "running" && job["progress"]["step"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = client.delete(server.url(&running_url)).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let job = wait_until_done(&client, &running_url, &server.url("")).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["progress"]["step"].as_u64().unwrap() < 150);
    let job: Value = client.get(server.url(&queued_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["status"], "cancelled");
    assert!(job["images"].as_array().unwrap().is_empty());
    // Cancelling a finished job is a conflict; an unknown id is 404.
    assert_eq!(client.delete(server.url(&queued_url)).send().await.unwrap().status(), 409);
    assert_eq!(client.delete(server.url("/api/v1/generate/nope")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_right_4xx_with_field_messages() {
    let server = start(models_dir(), temp_dir("bad")).await;
    let client = reqwest::Client::new();
    let huge = "x".repeat(10_001);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 422, "prompt"),
        (json!({"prompt": 5}), 422, "prompt"),
        (json!({"prompt": "a", "steps": "ten"}), 422, "steps"),
        (json!({"prompt": "a", "prompt_syntax": "invokeai"}), 422, "prompt_syntax"),
        (json!({"prompt": "a", "prompt_syntax": 1}), 422, "prompt_syntax"),
        (json!({"prompt": "a", "clip_skip": 0}), 422, "clip_skip"),
        (json!({"prompt": "a", "clip_skip": 13}), 422, "clip_skip"),
        (json!({"prompt": "a", "loras": [{"name": "no-such-lora", "weight": 0.5}]}), 422, "loras"),
        (json!({"prompt": "a", "loras": [{"name": "x", "weight": 50}]}), 422, "loras"),
        (json!({"prompt": "a", "loras": "x"}), 422, "loras"),
        (json!({"prompt": "a <lora:no-such-lora:0.8>"}), 422, "loras"),
        (json!({"prompt": "a <lora:x:lots>"}), 422, "prompt"),
        (json!({"prompt": "a", "vae": "no-such-vae.safetensors"}), 422, "vae"),
        (json!({"prompt": "a", "steps": 0}), 422, "steps"),
        (json!({"prompt": "a", "steps": 151}), 422, "steps"),
        (json!({"prompt": "a", "steps": 2.5}), 422, "steps"),
        (json!({"prompt": "a", "width": 513}), 422, "width"),
        (json!({"prompt": "a", "width": -64}), 422, "width"),
        (json!({"prompt": "a", "height": 4096}), 422, "height"),
        (json!({"prompt": "a", "height": 0}), 422, "height"),
        (json!({"prompt": "a", "cfg_scale": 31}), 422, "cfg_scale"),
        (json!({"prompt": "a", "cfg_scale": -1}), 422, "cfg_scale"),
        (json!({"prompt": "a", "cfg_scale": "high"}), 422, "cfg_scale"),
        (json!({"prompt": "a", "sampler": "k_euler"}), 422, "sampler"),
        (json!({"prompt": "a", "schedule": "cosine"}), 422, "schedule"),
        (json!({"prompt": "a", "sampler": "ddim", "schedule": "karras"}), 422, "schedule"),
        (json!({"prompt": "a", "batch_size": 0}), 422, "batch_size"),
        (json!({"prompt": "a", "batch_size": 100}), 422, "batch_size"),
        (json!({"prompt": "a", "seed": -1}), 422, "seed"),
        (json!({"prompt": "a", "seed": "abc"}), 422, "seed"),
        (json!({"prompt": "a", "model": "../../etc"}), 422, "model"),
        (json!({"prompt": "a", "model": "missing-model"}), 422, "model"),
        (json!({"prompt": "a", "stepz": 3}), 422, "stepz"),
        (json!({"prompt": huge}), 422, "prompt"),
        (json!({"prompt": "a", "negative_prompt": 5}), 422, "negative_prompt"),
        (json!({"prompt": "a", "negative_prompt": huge}), 422, "negative_prompt"),
        (json!(["a"]), 422, "body"),
        (json!({"prompt": "a", "init_image": "../easel.db"}), 422, "init_image"),
        (json!({"prompt": "a", "init_image": "up_nothing_here"}), 422, "init_image"),
        (json!({"prompt": "a", "strength": 0.5}), 422, "strength"),
        (json!({"prompt": "a", "mask": "up_nothing_here"}), 422, "mask"),
        (json!({"prompt": "a", "mask_blur": 4}), 422, "mask_blur"),
        (json!({"prompt": "a", "outpaint": 64}), 422, "outpaint"),
        (json!({"prompt": "a", "outpaint": {"left": 12}}), 422, "outpaint.left"),
        (json!({"prompt": "a", "hires": [2]}), 422, "hires"),
        (json!({"prompt": "a", "hires": {"scale": 9}}), 422, "hires.scale"),
        (json!({"prompt": "a", "hires": {"upscaler": "esrgan"}}), 422, "hires.upscaler"),
        (json!({"prompt": "a", "hires": {"seed": 3}}), 422, "hires.seed"),
        (json!({"prompt": "a", "batch_index": 2}), 422, "batch_index"),
        (json!({"prompt": "a", "combined_prompts": ["b"]}), 422, "combined_prompts"),
        (json!({"prompt": "a", "compat": "comfyui", "prompt_syntax": "comfyui", "combined_prompts": "b"}), 422, "combined_prompts"),
        (json!({"prompt": "a", "conditioning": {"positive": [{"encoding": {"text": "b"}}]}}), 422, "conditioning"),
        (
            json!({"prompt": "a", "compat": "comfyui", "prompt_syntax": "comfyui", "conditioning": {"positive": [{"encoding": {"txt": "b"}}]}}),
            422,
            "conditioning",
        ),
        (
            json!({"prompt": "a", "compat": "comfyui", "prompt_syntax": "comfyui", "width": 128,
                "conditioning": {"positive": [{"encoding": {"text": "b"}, "area": {"x": 128, "y": 0, "width": 64, "height": 64}}]}}),
            422,
            "conditioning",
        ),
        (json!({"prompt": "a", "compat": "comfyui", "batch_index": 64}), 422, "batch_index"),
        (json!({"prompt": "a", "compat": "comfyui", "hires": {"upscaler": "lanczos"}}), 422, "hires.upscaler"),
        (json!({"prompt": "a", "compat": "invokeai"}), 422, "compat"),
        (json!({"prompt": "a", "compat": "a1111", "randn_source": "tpu"}), 422, "randn_source"),
        (json!({"prompt": "a", "randn_source": "cpu"}), 422, "randn_source"),
        (json!({"prompt": "a", "subseed": 5}), 422, "subseed"),
        (json!({"prompt": "a", "compat": "a1111", "subseed_strength": 1.5}), 422, "subseed_strength"),
        (json!({"prompt": "a", "compat": "a1111", "seed_resize_from_w": 5000, "seed_resize_from_h": 512}), 422, "seed_resize_from_w"),
        (json!({"prompt": "a", "compat": "a1111", "seed_resize_from_w": 512}), 422, "seed_resize_from_h"),
        (json!({"prompt": "a", "compat": "comfyui", "eta_noise_seed_delta": 31337}), 422, "eta_noise_seed_delta"),
        (json!({"prompt": "a", "png_text": {"parameters": "forged"}}), 422, "png_text"),
        (json!({"prompt": "a", "png_text": {"workflow": 3}}), 422, "png_text"),
        (json!({"prompt": "a", "vae_tiling": "sometimes"}), 422, "vae_tiling"),
        (json!({"prompt": "a", "vae_tiling": true}), 422, "vae_tiling"),
        (json!({"prompt": "a", "compat": "a1111", "hires": {"scale": 2, "upscaler": "latent-area"}}), 422, "hires.upscaler"),
        (
            json!({"prompt": "a", "compat": "a1111", "width": 64, "height": 40, "hires": {"scale": 1.5, "upscaler": "lanczos"}}),
            422,
            "hires.scale",
        ),
        (json!({"prompt": "a", "compat": "comfyui", "sampler": "pndm"}), 422, "sampler"),
        (json!({"prompt": "a", "sampling_range": {"end_at_step": 4}}), 422, "sampling_range"),
        (json!({"prompt": "a", "stages": [{"sampling_range": {"start_at_step": 4}}]}), 422, "stages"),
        (json!({"prompt": "a", "stages": {"seed": 1}}), 422, "stages"),
        (
            json!({"prompt": "a", "compat": "comfyui", "prompt_syntax": "comfyui", "combined_prompts": ["b"], "sampling_range": {"end_at_step": 4},
                   "stages": [{"sampling_range": {"start_at_step": 4}, "prompt": "c"}]}),
            422,
            "stages[0].prompt",
        ),
        (
            json!({"prompt": "a", "compat": "comfyui", "steps": 8, "sampling_range": {"end_at_step": 4}, "stages": [{"sampling_range": {"start_at_step": 9}}]}),
            422,
            "stages[0].sampling_range.start_at_step",
        ),
        (
            json!({"prompt": "a", "init_image": "up_1", "mask": "up_2", "compat": "comfyui", "masked_content": "latent noise"}),
            422,
            "masked_content",
        ),
        (json!({"prompt": "a", "init_image": "up_1", "mask": "up_2", "masked_content": "grey"}), 422, "masked_content"),
        (json!({"prompt": "a", "init_image": "up_1", "inpaint_area": "only_masked", "compat": "a1111"}), 422, "inpaint_area"),
        (
            json!({"prompt": "a", "init_image": "up_1", "mask": "up_2", "compat": "a1111", "inpaint_area": "only_masked", "inpaint_padding": 257}),
            422,
            "inpaint_padding",
        ),
        (json!({"prompt": "a", "init_image": "up_1", "mask": "up_2", "compat": "comfyui", "mask_grow": 6}), 422, "mask_grow"),
        (
            json!({"prompt": "a", "init_image": "up_1", "mask": "up_2", "compat": "comfyui", "masked_content": "grey", "mask_grow": 65}),
            422,
            "mask_grow",
        ),
        (
            json!({"prompt": "a", "compat": "comfyui", "steps": 6, "sampling_range": {"start_at_step": 6}}),
            422,
            "sampling_range.start_at_step",
        ),
        (json!({"prompt": "a", "compat": "a1111", "sampler": "ddim", "schedule": "karras"}), 422, "schedule"),
        (json!({"prompt": "a", "compat": "comfyui", "schedule": "align_your_steps"}), 422, "schedule"),
        (json!({"prompt": "a", "sampler": "dpm_2"}), 422, "sampler"),
        (json!({"prompt": "a", "compat": "comfyui", "schedule": "kl_optimal", "steps": 1}), 422, "steps"),
    ];
    let mut refused_fields = std::collections::BTreeSet::new();
    for (body, code, field) in &cases {
        let resp = client.post(server.url("/api/v1/generate")).json(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), *code, "{body}");
        let v: Value = resp.json().await.unwrap();
        let fields: Vec<&str> = v["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert!(fields.contains(field), "{body} -> {v}");
        assert!(v["fields"][0]["message"].as_str().unwrap().len() > 5);
        refused_fields.extend(fields.iter().map(|f| f.to_string()));
    }
    // Every field the server documents for a request has a rule the server enforced above, so a
    // field added to the API without its refusal here fails this test.
    let doc: Value = client.get(server.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let documented = doc["components"]["schemas"]["GenerateRequest"]["properties"].as_object().unwrap();
    assert!(!documented.is_empty());
    for field in documented.keys() {
        assert!(refused_fields.contains(field), "no bad value of documented field {field:?} was refused: {refused_fields:?}");
    }
    // Not JSON, wrong content type, too big, unknown ids, traversal.
    let resp =
        client.post(server.url("/api/v1/generate")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client.post(server.url("/api/v1/generate")).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 415);
    let big = format!("{{\"prompt\":\"{}\"}}", "y".repeat(100_000));
    let resp = client.post(server.url("/api/v1/generate")).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    for path in ["/api/v1/generate/unknown", "/api/v1/generate/unknown/events"] {
        assert_eq!(client.get(server.url(path)).send().await.unwrap().status(), 404, "{path}");
    }
    assert_eq!(client.delete(server.url("/api/v1/images/unknown")).send().await.unwrap().status(), 404);
    assert_eq!(client.get(server.url("/api/v1/generate?limit=0")).send().await.unwrap().status(), 422);
    let long_search = format!("/api/v1/generate?q={}", "a".repeat(1_001));
    assert_eq!(client.get(server.url(&long_search)).send().await.unwrap().status(), 422);
    assert_eq!(client.get(server.url("/api/v1/generate?before=x")).send().await.unwrap().status(), 422);
    for traversal in ["/outputs/../easel.db", "/outputs/%2e%2e/easel.db", "/outputs/..%2Feasel.db", "/outputs//etc/passwd"] {
        let status = client.get(server.url(traversal)).send().await.unwrap().status();
        assert!(status == 404 || status == 400, "{traversal}: {status}");
    }
    // Nothing was queued by any of it, and the server still works.
    let page: Value = client.get(server.url("/api/v1/generate")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 0);
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_image_removes_record_and_file() {
    let server = start(models_dir(), temp_dir("delimg")).await;
    let client = reqwest::Client::new();
    let sub = submit(&client, &server, small("delete me", 3)).await;
    let job = wait_until_done(&client, &format!("/api/v1/generate/{}", sub["id"].as_str().unwrap()), &server.url("")).await;
    let image = &job["images"][0];
    let file = server.state.easel.settings().outputs_dir.join(image["url"].as_str().unwrap().trim_start_matches("/outputs/"));
    assert!(file.is_file());
    let resp = client.delete(server.url(&format!("/api/v1/images/{}", image["id"].as_str().unwrap()))).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!file.exists());
}

/// Property test of the request parser: arbitrary JSON never panics, and whatever it accepts
/// passes validation or is rejected with field messages, never anything else.
#[test]
fn request_parser_never_panics_on_arbitrary_json() {
    use easel::api::GenerateRequest;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let fields =
        ["prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler", "schedule", "batch_size", "model", "x"];
    for _ in 0..20_000 {
        let mut object = serde_json::Map::new();
        for _ in 0..(next() % 6) {
            let field = fields[(next() % fields.len() as u64) as usize];
            let value = match next() % 9 {
                0 => json!(null),
                1 => json!(next() % 3000),
                2 => json!(-((next() % 3000) as i64)),
                3 => json!((next() % 10_000) as f64 / 7.0),
                4 => json!("dpmpp_2m"),
                5 => json!("karras"),
                6 => json!([1, 2]),
                7 => json!({"a": 1}),
                _ => json!(u64::MAX - next() % 5),
            };
            object.insert(field.to_string(), value);
        }
        match GenerateRequest::from_json(&Value::Object(object)) {
            Ok(request) => {
                if let Err(errors) = request.resolve(|| 1) {
                    assert!(errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()));
                }
            }
            Err(errors) => assert!(!errors.is_empty()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_jobs_steps_model_loads_and_memory_in_prometheus_format() {
    let server = start(models_dir(), temp_dir("metrics")).await;
    let client = reqwest::Client::new();
    let sub = submit(&client, &server, small("metrics", 3)).await;
    let job = wait_until_done(&client, &format!("/api/v1/generate/{}", sub["id"].as_str().unwrap()), &server.url("")).await;
    assert_eq!(job["status"], "succeeded");

    let resp = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    let value = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // Every sample line is `name{labels} value`, and every family is typed before its samples.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, number) = line.rsplit_once(' ').unwrap();
        assert!(number.parse::<f64>().is_ok(), "{line}");
        let family = series.split('{').next().unwrap();
        let base = family.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        assert!(text.contains(&format!("# TYPE {base} ")) || text.contains(&format!("# TYPE {family} ")), "{line} has no TYPE");
    }
    assert_eq!(value("easel_jobs{status=\"succeeded\"}"), 1.0);
    assert_eq!(value("easel_queue_depth"), 0.0);
    // 4 steps: three measured gaps between step callbacks.
    assert_eq!(value("easel_step_seconds_count"), 3.0);
    assert_eq!(value("easel_step_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert_eq!(value("easel_model_load_seconds_count"), 1.0);
    assert_eq!(value("easel_models_loaded"), 1.0);
    assert!(value("process_resident_memory_bytes") > 10e6);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tiny_sd_a_request_without_model_runs_on_the_model_there_is() {
    let data = temp_dir("api-no-tiny");
    let models = data.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(models_dir().join("tiny-sd"), models.join("oracle-tiny")).unwrap();
    let server = start(models, data.join("data")).await;
    let client = reqwest::Client::new();
    let listed: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!((listed[0]["name"].as_str(), listed[0]["is_default"].as_bool()), (Some("oracle-tiny"), Some(true)), "{listed}");
    let job = submit(&client, &server, small("no tiny", 1)).await;
    let done = wait_until_done(&client, &format!("/api/v1/generate/{}", job["id"].as_str().unwrap()), &server.url("")).await;
    assert_eq!((done["status"].as_str(), done["request"]["model"].as_str()), (Some("succeeded"), Some("oracle-tiny")), "{done}");
}
