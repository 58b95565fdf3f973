//! ComfyUI's API on its own port over real HTTP and a websocket, against the tiny model, driven
//! as ComfyUI's API script examples and open-webui drive it: `POST /prompt` with an API-format
//! graph, events on `/ws`, then `/history` and `/view`. The pictures are checked against the ones
//! ComfyUI's own code made for the same graph (`tests/fixtures/compat_images`, recorded by
//! `models/tooling/ref_compat_images.py`).
#![cfg(feature = "ssr")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{models_dir, start, temp_dir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compat_images").join(case)
}

/// A recorded case's request (its settings.json).
fn case_settings(case: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(case.join("settings.json")).unwrap()).unwrap()
}

/// Serves ComfyUI's API for `server`'s state on a port of its own.
async fn comfyui(server: &TestServer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = easel::server::comfyui_app(server.state.clone());
    tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
    addr
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

/// ComfyUI's default text-to-image graph (its script examples' and open-webui's), node ids kept.
fn txt2img_graph(settings: &Value, seed: u64, batch: u64) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 6, "cfg": 7.0, "sampler_name": settings["sampler"],
              "scheduler": settings["schedule"], "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
              "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": settings["prompt"], "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": settings["negative_prompt"], "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    })
}

/// Reads websocket events until the prompt's completion signal (`executing` with node null).
async fn events_until_done<S>(socket: &mut S, prompt_id: &str) -> (Vec<Value>, usize)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let (mut events, mut previews) = (Vec::new(), 0);
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), socket.next()).await.expect("an event").unwrap().unwrap();
        match message {
            Message::Text(text) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                let done = event["type"] == "executing" && event["data"]["node"].is_null() && event["data"]["prompt_id"] == prompt_id;
                events.push(event);
                if done {
                    return (events, previews);
                }
            }
            Message::Binary(bytes) => {
                // Event 1 (a preview), format 2 (PNG).
                assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
                assert_eq!(&bytes[9..12], b"PNG");
                previews += 1;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_txt2img_graph_runs_with_comfyuis_events_history_and_picture() {
    let server = start(models_dir(), temp_dir("comfyui-txt2img")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?clientId=tester")).await.unwrap();
    let hello: Value = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hello["type"], "status");
    assert_eq!(hello["data"]["sid"], "tester");

    let case = fixture("comfyui_euler_ancestral_normal_s42_b2");
    let settings = case_settings(&case);
    let graph = txt2img_graph(&settings, 42, 2);
    let resp = http.post(url("/prompt")).json(&json!({"prompt": graph, "client_id": "tester"})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let prompt_id = answer["prompt_id"].as_str().unwrap().to_string();
    assert_eq!(answer["node_errors"], json!({}));

    let (events, previews) = events_until_done(&mut socket, &prompt_id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind} in {kinds:?}"));
    assert!(
        at("execution_start") < at("progress") && at("progress") < at("executed") && at("executed") < at("execution_success"),
        "{kinds:?}"
    );
    let progress: Vec<&Value> = events.iter().filter(|e| e["type"] == "progress").collect();
    assert_eq!(progress.last().unwrap()["data"]["value"], 6);
    assert_eq!(progress[0]["data"]["node"], "3", "progress is reported on the KSampler");
    assert!(previews >= 1, "live previews arrive as binary frames");
    let executed = events.iter().find(|e| e["type"] == "executed").unwrap();
    assert_eq!(executed["data"]["node"], "9");

    // The history has the outputs; /view serves them; they are ComfyUI's pictures.
    let history: Value = http.get(url(&format!("/history/{prompt_id}"))).send().await.unwrap().json().await.unwrap();
    let entry = &history[&prompt_id];
    assert_eq!(entry["status"]["status_str"], "success", "{history}");
    let images = entry["outputs"]["9"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (i, image) in images.iter().enumerate() {
        let query =
            [("filename", image["filename"].as_str().unwrap()), ("subfolder", image["subfolder"].as_str().unwrap()), ("type", "output")];
        let png = http.get(url("/api/view")).query(&query).send().await.unwrap();
        assert_eq!(png.status(), 200);
        assert_eq!(png.headers()["content-type"], "image/png");
        assert_same_picture(&png.bytes().await.unwrap(), &case.join(format!("image_{i}.png")));
    }
    // It ran as an ordinary Easel job, in the comfyui mode.
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=10")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(jobs["jobs"][0]["request"]["compat"], "comfyui");

    // The same graph again: every node is cached, nothing runs, the same outputs are reported.
    let answer: Value =
        http.post(url("/prompt")).json(&json!({"prompt": graph, "client_id": "tester"})).send().await.unwrap().json().await.unwrap();
    let again = answer["prompt_id"].as_str().unwrap().to_string();
    let (events, _) = events_until_done(&mut socket, &again).await;
    let cached = events.iter().find(|e| e["type"] == "execution_cached").unwrap();
    assert!(cached["data"]["nodes"].as_array().unwrap().contains(&json!("3")), "{cached}");
    let history: Value = http.get(url(&format!("/history/{again}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(history[&again]["outputs"]["9"]["images"].as_array().unwrap().len(), 2);
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=10")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "the cached graph ran no job");
    let queue: Value = http.get(url("/queue")).send().await.unwrap().json().await.unwrap();
    assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
}

#[tokio::test(flavor = "multi_thread")]
async fn front_and_number_place_prompts_in_the_queue_as_comfyui_orders_them() {
    let server = start(models_dir(), temp_dir("comfyui-front")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    // A slow job holds the single worker while the prompts queue behind it.
    let slow = json!({"prompt": "slow", "seed": 1, "width": 256, "height": 256, "steps": 150, "sampler": "euler"});
    let blocker: Value = http.post(server.url("/api/v1/generate")).json(&slow).send().await.unwrap().json().await.unwrap();
    let settings = case_settings(&fixture("comfyui_euler_ancestral_normal_s42_b2"));
    let mut numbers = Vec::new();
    let places = [
        (10, json!({})),
        (11, json!({})),
        (12, json!({"front": true})),
        (13, json!({"number": 0.5})),
        (14, json!({"number": 1000})),
        (15, json!({})),
    ];
    for (seed, place) in places {
        let mut body = json!({"prompt": txt2img_graph(&settings, seed, 1)});
        body.as_object_mut().unwrap().extend(place.as_object().unwrap().clone());
        let answer: Value = http.post(url("/prompt")).json(&body).send().await.unwrap().json().await.unwrap();
        numbers.push(answer["number"].as_f64().unwrap_or_else(|| panic!("{answer}")));
    }
    // ComfyUI's numbers: its counter, minus the counter for front, the client's number as given.
    assert_eq!(numbers, vec![0.0, 1.0, -2.0, 0.5, 1000.0, 3.0]);
    let queue: Value = http.get(url("/queue")).send().await.unwrap().json().await.unwrap();
    let pending: Vec<f64> = queue["queue_pending"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert_eq!(pending, vec![-2.0, 0.0, 0.5, 1.0, 3.0, 1000.0], "{queue}");
    // The jobs run in that order: front first, each numbered one before the prompt numbered above
    // it (the counter's 3 before the client's 1000).
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=10")).send().await.unwrap().json().await.unwrap();
    let mut by_position: Vec<(u64, u64)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "queued")
        .map(|j| (j["position"].as_u64().unwrap(), j["request"]["seed"].as_u64().unwrap()))
        .collect();
    by_position.sort();
    assert_eq!(by_position, vec![(1, 12), (2, 10), (3, 13), (4, 11), (5, 15), (6, 14)], "{jobs}");
    let resp = http.delete(server.url(&format!("/api/v1/generate/{}", blocker["id"].as_str().unwrap()))).send().await.unwrap();
    assert!([200, 202].contains(&resp.status().as_u16()), "the slow job ended too soon: {}", resp.status());
    // A number that is not one is refused.
    let resp = http.post(url("/prompt")).json(&json!({"prompt": txt2img_graph(&settings, 14, 1), "number": "soon"})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ksampler_advanced_graph_runs_its_window_as_comfyui_does() {
    let server = start(models_dir(), temp_dir("comfyui-advanced")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?clientId=adv")).await.unwrap();
    // Steps 6, stopping at step 4 with the leftover noise kept, as ComfyUI ran it.
    let case = fixture("comfyui_advanced_euler_normal_s28_end4_leftover");
    let settings = case_settings(&case);
    let mut graph = txt2img_graph(&settings, 0, 1);
    graph["3"] = json!({"class_type": "KSamplerAdvanced", "inputs": {"add_noise": "enable", "noise_seed": 28, "steps": 6, "cfg": 7.0,
        "sampler_name": settings["sampler"], "scheduler": settings["schedule"], "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0], "start_at_step": 0, "end_at_step": 4, "return_with_leftover_noise": "enable"}});
    let answer: Value =
        http.post(url("/prompt")).json(&json!({"prompt": graph, "client_id": "adv"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["node_errors"], json!({}), "{answer}");
    let prompt_id = answer["prompt_id"].as_str().unwrap().to_string();
    events_until_done(&mut socket, &prompt_id).await;
    let history: Value = http.get(url(&format!("/history/{prompt_id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(history[&prompt_id]["status"]["status_str"], "success", "{history}");
    let image = &history[&prompt_id]["outputs"]["9"]["images"][0];
    let query =
        [("filename", image["filename"].as_str().unwrap()), ("subfolder", image["subfolder"].as_str().unwrap()), ("type", "output")];
    let png = http.get(url("/api/view")).query(&query).send().await.unwrap().bytes().await.unwrap();
    assert_same_picture(&png, &case.join("image_0.png"));
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=10")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"][0]["request"]["sampling_range"]["end_at_step"], 4);

    // Its window must leave a step to run: ComfyUI's node_errors name the node.
    graph["3"]["inputs"]["start_at_step"] = json!(6);
    let refusal = refused(&http, addr, &graph).await;
    assert!(refusal.to_string().contains("start_at_step"), "{refusal}");

    // A chain: dpmpp_2m over steps 0-3 keeping its leftover noise, then euler_ancestral over the
    // rest without fresh noise, CFG 5, its own seed: one job, ComfyUI's picture.
    let case = fixture("comfyui_chain_dpmpp_2m_then_euler_a_karras_s72");
    let settings = case_settings(&case);
    let mut chain = txt2img_graph(&settings, 0, 1);
    chain["3"] = json!({"class_type": "KSamplerAdvanced", "inputs": {"add_noise": "enable", "noise_seed": 72, "steps": 6, "cfg": 7.0,
        "sampler_name": "dpmpp_2m", "scheduler": "karras", "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
        "latent_image": ["5", 0], "start_at_step": 0, "end_at_step": 3, "return_with_leftover_noise": "enable"}});
    chain["21"] = json!({"class_type": "KSamplerAdvanced", "inputs": {"add_noise": "disable", "noise_seed": 172, "steps": 6, "cfg": 5.0,
        "sampler_name": "euler_ancestral", "scheduler": "karras", "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
        "latent_image": ["3", 0], "start_at_step": 3, "end_at_step": 10000, "return_with_leftover_noise": "disable"}});
    chain["8"]["inputs"]["samples"] = json!(["21", 0]);
    let entry = run_graph(&http, addr, &chain).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
    let stage = &jobs["jobs"][0]["request"]["stages"][0];
    assert_eq!(
        (&stage["seed"], &stage["sampler"], &stage["sampling_range"]["start_at_step"]),
        (&json!(172), &json!("euler_a"), &json!(3)),
        "{stage}"
    );
    // A prompt switch: the second sampler with its own positive CLIPTextEncode.
    let case = fixture("comfyui_chain_prompt_switch_euler_normal_s74");
    let settings = case_settings(&case);
    let stage = &settings["stages"][0];
    let mut switch = chain.clone();
    switch["3"]["inputs"].as_object_mut().unwrap().extend(
        json!({"noise_seed": 74, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "end_at_step": 3})
            .as_object()
            .unwrap()
            .clone(),
    );
    switch["21"]["inputs"].as_object_mut().unwrap().extend(
        json!({"noise_seed": 74, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "positive": ["22", 0]})
            .as_object()
            .unwrap()
            .clone(),
    );
    switch["22"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": stage["prompt"], "clip": ["4", 1]}});
    let entry = run_graph(&http, addr, &switch).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // A stage's side built from more than one prompt is named.
    switch["23"] = json!({"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["22", 0], "conditioning_2": ["6", 0]}});
    switch["21"]["inputs"]["positive"] = json!(["23", 0]);
    let refusal = refused(&http, addr, &switch).await;
    assert!(refusal["node_errors"]["21"].is_object(), "{refusal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_scale_before_vae_encode_gives_comfyuis_picture() {
    let server = start(models_dir(), temp_dir("comfyui-image-scale")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    // An 80x56 picture, scaled to 64x64 with lanczos before VAEEncode, as ComfyUI ran it.
    let case = fixture("comfyui_img2img_image_scale_lanczos_euler_normal_d07_s34");
    let settings = case_settings(&case);
    let name = upload(&http, addr, &case.join("init.png")).await;
    let mut graph = txt2img_graph(&settings, 34, 1);
    graph["3"]["inputs"]["denoise"] = json!(0.7);
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["13"] = json!({"class_type": "ImageScale", "inputs": {"image": ["10", 0], "upscale_method": "lanczos", "width": 64,
        "height": 64, "crop": "disabled"}});
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["13", 0], "vae": ["4", 2]}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // Other scaling is named in a node error.
    graph["13"]["inputs"]["upscale_method"] = json!("bicubic");
    let refusal = refused(&http, addr, &graph).await;
    assert!(refusal["node_errors"]["13"].is_object(), "{refusal}");

    // A 70x75 picture straight into VAEEncode: cut to 64x72, centred, as ComfyUI cuts it.
    let case = fixture("comfyui_img2img_crop_euler_normal_d07_s55");
    let settings = case_settings(&case);
    let name = upload(&http, addr, &case.join("init.png")).await;
    let mut graph = txt2img_graph(&settings, 55, 1);
    graph["3"]["inputs"]["denoise"] = json!(0.7);
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // And into VAEEncodeForInpaint with a 77x66 mask: both cut to 72x64.
    let case = fixture("comfyui_inpaint_vae_encode_for_inpaint_crop_euler_normal_s56");
    let settings = case_settings(&case);
    let names = [upload(&http, addr, &case.join("init.png")).await, upload(&http, addr, &case.join("mask.png")).await];
    let mut graph = txt2img_graph(&settings, 56, 1);
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": names[0]}});
    graph["12"] = json!({"class_type": "LoadImageMask", "inputs": {"image": names[1], "channel": "red"}});
    graph["11"] = json!({"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["12", 0],
        "grow_mask_by": 4}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_latent_noise_mask_inpaints_as_comfyui_does() {
    let server = start(models_dir(), temp_dir("comfyui-noise-mask")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let case = fixture("comfyui_inpaint_latent_mask_euler_ancestral_normal_d08_s35_b2");
    let settings = case_settings(&case);
    let names = [upload(&http, addr, &case.join("init.png")).await, upload(&http, addr, &case.join("mask.png")).await];
    // LoadImage -> VAEEncode -> SetLatentNoiseMask (LoadImageMask, red) -> RepeatLatentBatch 2 -> KSampler 0.8.
    let mut graph = txt2img_graph(&settings, 35, 1);
    graph["3"]["inputs"]["denoise"] = json!(0.8);
    graph["3"]["inputs"]["latent_image"] = json!(["12", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": names[0]}});
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    graph["14"] = json!({"class_type": "LoadImageMask", "inputs": {"image": names[1], "channel": "red"}});
    graph["15"] = json!({"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["14", 0]}});
    graph["12"] = json!({"class_type": "RepeatLatentBatch", "inputs": {"samples": ["15", 0], "amount": 2}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_eq!(entry["outputs"]["9"]["images"].as_array().unwrap().len(), 2, "{entry}");
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // The same mask as the alpha channel of a picture (ComfyUI repaints where it is transparent:
    // 1 − alpha) gives the same pictures.
    let dir = temp_dir("comfyui-alpha-mask");
    let alpha = dir.join("alpha.png");
    with_alpha_mask(&case.join("init.png"), &case.join("mask.png")).save(&alpha).unwrap();
    graph["14"]["inputs"] = json!({"image": upload(&http, addr, &alpha).await, "channel": "alpha"});
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // A mask that is a picture, not a mask, is ComfyUI's type error on the node.
    graph["15"]["inputs"]["mask"] = json!(["10", 0]);
    let refusal = refused(&http, addr, &graph).await;
    assert_eq!(refusal["node_errors"]["15"]["errors"][0]["type"], "return_type_mismatch", "{refusal}");
}

/// `init` with `mask` as its transparency (alpha = 255 − mask: transparent where repainted), as
/// a mask painted in ComfyUI's editor is saved.
fn with_alpha_mask(init: &Path, mask: &Path) -> image::RgbaImage {
    let (init, mask) = (image::open(init).unwrap().to_rgb8(), image::open(mask).unwrap().to_luma8());
    image::RgbaImage::from_fn(init.width(), init.height(), |x, y| {
        let [r, g, b] = init.get_pixel(x, y).0;
        image::Rgba([r, g, b, 255 - mask.get_pixel(x, y).0[0]])
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn vae_encode_for_inpaint_with_a_painted_mask_gives_comfyuis_picture() {
    let server = start(models_dir(), temp_dir("comfyui-encode-for-inpaint")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let case = fixture("comfyui_inpaint_vae_encode_for_inpaint_euler_normal_s37");
    let settings = case_settings(&case);
    // The mask painted in ComfyUI's editor: the picture uploaded, then the painting (transparent
    // where it repaints) sent to /upload/mask against it; LoadImage's IMAGE and MASK outputs.
    let original = upload(&http, addr, &case.join("init.png")).await;
    let dir = temp_dir("comfyui-painted");
    let painting = dir.join("painting.png");
    let mask = image::open(case.join("mask.png")).unwrap().to_luma8();
    image::RgbaImage::from_fn(mask.width(), mask.height(), |x, y| image::Rgba([0, 0, 0, 255 - mask.get_pixel(x, y).0[0]]))
        .save(&painting)
        .unwrap();
    let name = upload_mask(&http, addr, &painting, &json!({"filename": original, "subfolder": "", "type": "input"})).await;
    assert_ne!(name, original);
    let mut graph = txt2img_graph(&settings, 37, 1);
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["11"] = json!({"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1],
        "grow_mask_by": 6}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
    let request = &jobs["jobs"][0]["request"];
    assert_eq!((&request["masked_content"], &request["mask_grow"]), (&json!("grey"), &json!(6)), "{request}");
    // The same graph with the 9-channel inpainting model: its mask and masked-picture channels.
    let mut with_inpainting_model = graph.clone();
    with_inpainting_model["4"]["inputs"]["ckpt_name"] = json!("tiny-sd-inpaint");
    with_inpainting_model["3"]["inputs"]["seed"] = json!(65);
    let entry = run_graph(&http, addr, &with_inpainting_model).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &fixture("comfyui_inpaint_model_vae_encode_for_inpaint_euler_normal_s65")).await;
    // grow_mask_by over ComfyUI's limit is its own range error.
    graph["11"]["inputs"]["grow_mask_by"] = json!(65);
    let refusal = refused(&http, addr, &graph).await;
    assert_eq!(refusal["node_errors"]["11"]["errors"][0]["type"], "value_bigger_than_max", "{refusal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outpainting_pad_into_vae_encode_for_inpaint_gives_comfyuis_picture() {
    let server = start(models_dir(), temp_dir("comfyui-outpaint")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    // A 48x40 picture padded to 64x64 with a feathered mask, as ComfyUI's outpainting example does.
    let case = fixture("comfyui_outpaint_pad_vae_encode_for_inpaint_euler_normal_s40");
    let settings = case_settings(&case);
    let name = upload(&http, addr, &case.join("init.png")).await;
    let mut graph = txt2img_graph(&settings, 40, 1);
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["12"] = json!({"class_type": "ImagePadForOutpaint", "inputs": {"image": ["10", 0], "left": 16, "top": 8, "right": 0,
        "bottom": 16, "feathering": 12}});
    graph["11"] = json!({"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["12", 0], "vae": ["4", 2], "mask": ["12", 1],
        "grow_mask_by": 8}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // The pad's grey is not an 8-bit value: a plain VAEEncode of it is named on the pad.
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}});
    let refusal = refused(&http, addr, &graph).await;
    assert!(refusal["node_errors"]["12"].is_object(), "{refusal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pass_graphs_run_as_comfyuis_hires_fix() {
    let server = start(models_dir(), temp_dir("comfyui-two-pass")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    // KSampler -> LatentUpscaleBy (bilinear 1.5) -> KSampler (seed 141, 4 steps, denoise 0.5).
    let case = fixture("comfyui_two_pass_latent_upscale_by_bilinear_euler_normal_s41");
    let settings = case_settings(&case);
    let mut graph = txt2img_graph(&settings, 41, 1);
    graph["20"] = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "bilinear", "scale_by": 1.5}});
    graph["21"] = json!({"class_type": "KSampler", "inputs": {"seed": 141, "steps": 4, "cfg": 7.0, "sampler_name": "euler",
        "scheduler": "normal", "denoise": 0.5, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["20", 0]}});
    graph["8"]["inputs"]["samples"] = json!(["21", 0]);
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
    let hires = &jobs["jobs"][0]["request"]["hires"];
    assert_eq!((&hires["seed"], &hires["steps"], &hires["strength"]), (&json!(141), &json!(4), &json!(0.5)), "{hires}");

    // LatentUpscale (nearest-exact, ComfyUI's default) to 128x128, batch 2, the same seed and steps
    // (crop "center" cuts nothing at the same aspect).
    let case = fixture("comfyui_two_pass_latent_upscale_nearest_exact_dpmpp_2m_karras_s42_b2");
    let settings = case_settings(&case);
    let mut graph = txt2img_graph(&settings, 42, 2);
    graph["20"] = json!({"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "width": 128,
        "height": 128, "crop": "center"}});
    graph["21"] = json!({"class_type": "KSampler", "inputs": {"seed": 42, "steps": 6, "cfg": 7.0, "sampler_name": "dpmpp_2m",
        "scheduler": "karras", "denoise": 0.6, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["20", 0]}});
    graph["8"]["inputs"]["samples"] = json!(["21", 0]);
    let entry = run_graph(&http, addr, &graph).await;
    assert_eq!(entry["outputs"]["9"]["images"].as_array().unwrap().len(), 2, "{entry}");
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;

    // The other methods: bicubic and bislerp (LatentUpscaleBy) and area (LatentUpscale to 96x96).
    for (name, node, method, seed, second) in [
        ("comfyui_two_pass_latent_upscale_by_bicubic_euler_normal_s51", "LatentUpscaleBy", "bicubic", 51, (151, 4, 0.55)),
        ("comfyui_two_pass_latent_upscale_by_bislerp_euler_normal_s70", "LatentUpscaleBy", "bislerp", 70, (170, 4, 0.55)),
        ("comfyui_two_pass_latent_upscale_area_dpmpp_2m_karras_s52", "LatentUpscale", "area", 52, (52, 6, 0.6)),
    ] {
        let case = fixture(name);
        let settings = case_settings(&case);
        let mut graph = txt2img_graph(&settings, seed, 1);
        graph["20"] = match node {
            "LatentUpscaleBy" => json!({"class_type": node, "inputs": {"samples": ["3", 0], "upscale_method": method, "scale_by": 1.5}}),
            _ => {
                json!({"class_type": node, "inputs": {"samples": ["3", 0], "upscale_method": method, "width": 96, "height": 96, "crop": "disabled"}})
            }
        };
        graph["21"] = json!({"class_type": "KSampler", "inputs": {"seed": second.0, "steps": second.1, "cfg": 7.0,
            "sampler_name": settings["sampler"], "scheduler": settings["schedule"], "denoise": second.2, "model": ["4", 0],
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["20", 0]}});
        graph["8"]["inputs"]["samples"] = json!(["21", 0]);
        let entry = run_graph(&http, addr, &graph).await;
        assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    }

    // What one Easel hires fix cannot say is named: another CFG in the second pass, a size the
    // two sides do not share one factor for.
    let mut other_cfg = graph.clone();
    other_cfg["21"]["inputs"]["cfg"] = json!(5.0);
    assert!(refused(&http, addr, &other_cfg).await["node_errors"]["21"].is_object());
    let mut stretched = graph;
    stretched["20"]["inputs"]["width"] = json!(96);
    assert!(refused(&http, addr, &stretched).await["node_errors"]["20"].is_object());
    // With crop "center" that other aspect would be cut: named as the crop.
    stretched["20"]["inputs"]["crop"] = json!("center");
    let refusal = refused(&http, addr, &stretched).await;
    assert!(refusal["node_errors"]["20"]["errors"][0]["message"].as_str().is_some_and(|m| m.contains("crop")), "{refusal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditioning_combine_averages_the_prompts_as_comfyui_does() {
    let server = start(models_dir(), temp_dir("comfyui-combine")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    // ((prompt + snow) + painting) as the positive conditioning, as ComfyUI ran it.
    let case = fixture("comfyui_conditioning_combine_euler_normal_s44");
    let settings = case_settings(&case);
    let mut graph = txt2img_graph(&settings, 44, 1);
    let combined = settings["combined_prompts"].as_array().unwrap();
    graph["20"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": combined[0], "clip": ["4", 1]}});
    graph["21"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": combined[1], "clip": ["4", 1]}});
    graph["22"] = json!({"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["20", 0]}});
    graph["23"] = json!({"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["22", 0], "conditioning_2": ["21", 0]}});
    graph["3"]["inputs"]["positive"] = json!(["23", 0]);
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // Plain prompts stay the request's prompt and combined_prompts.
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"][0]["request"]["combined_prompts"], settings["combined_prompts"]);
    assert!(jobs["jobs"][0]["request"]["conditioning"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn conditioning_areas_concats_and_averages_give_comfyuis_pictures() {
    let server = start(models_dir(), temp_dir("comfyui-conditioning")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let text = |text: &Value| json!({"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}});
    // The prompt combined with an area of another prompt, as ComfyUI ran it (128x96).
    let case = fixture("comfyui_conditioning_set_area_euler_normal_s45");
    let settings = case_settings(&case);
    let boat = &settings["conditioning"]["positive"][1];
    let mut graph = txt2img_graph(&settings, 45, 1);
    graph["5"]["inputs"]["width"] = json!(128);
    graph["5"]["inputs"]["height"] = json!(96);
    graph["20"] = text(&boat["encoding"]["text"]);
    let area = &boat["area"];
    graph["21"] = json!({"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["20", 0], "width": area["width"],
                         "height": area["height"], "x": area["x"], "y": area["y"], "strength": boat["strength"]}});
    graph["22"] = json!({"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["21", 0]}});
    graph["3"]["inputs"]["positive"] = json!(["22", 0]);
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"][0]["request"]["conditioning"], settings["conditioning"]);
    // An area that starts outside the picture is named on its node.
    let mut outside = graph.clone();
    outside["21"]["inputs"]["x"] = json!(128);
    let refusal = refused(&http, addr, &outside).await;
    assert!(refusal["node_errors"]["21"].to_string().contains("starts outside"), "{refusal}");
    // A graph that doubles its conditioning list at every node is refused once past the limits.
    let mut doubling = graph;
    for i in 0..5 {
        let (id, from) = ((30 + i).to_string(), if i == 0 { "6".to_string() } else { (29 + i).to_string() });
        doubling[&id] = json!({"class_type": "ConditioningCombine", "inputs": {"conditioning_1": [from, 0], "conditioning_2": [from, 0]}});
    }
    doubling["3"]["inputs"]["positive"] = json!(["34", 0]);
    assert!(refused(&http, addr, &doubling).await["node_errors"]["33"].is_object());

    // ConditioningConcat of the prompt with a ConditioningAverage; an area on the negative side.
    let case = fixture("comfyui_conditioning_concat_average_dpmpp_2m_karras_s46_b2");
    let settings = case_settings(&case);
    let c = &settings["conditioning"];
    let average = &c["positive"][0]["encoding"]["concat"]["from"]["average"];
    let mut graph = txt2img_graph(&settings, 46, 2);
    graph["5"]["inputs"]["width"] = json!(96);
    graph["5"]["inputs"]["height"] = json!(128);
    graph["20"] = text(&average["to"]["text"]);
    graph["21"] = text(&average["from"]["text"]);
    graph["22"] = json!({"class_type": "ConditioningAverage", "inputs": {"conditioning_to": ["20", 0], "conditioning_from": ["21", 0],
                         "conditioning_to_strength": average["to_strength"]}});
    graph["23"] = json!({"class_type": "ConditioningConcat", "inputs": {"conditioning_to": ["6", 0], "conditioning_from": ["22", 0]}});
    let watermark = &c["negative"][1];
    graph["24"] = text(&watermark["encoding"]["text"]);
    let area = &watermark["area"];
    graph["25"] = json!({"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["24", 0], "width": area["width"],
                         "height": area["height"], "x": area["x"], "y": area["y"], "strength": watermark["strength"]}});
    graph["26"] = json!({"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["7", 0], "conditioning_2": ["25", 0]}});
    graph["3"]["inputs"]["positive"] = json!(["23", 0]);
    graph["3"]["inputs"]["negative"] = json!(["26", 0]);
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn latent_from_batch_gives_those_images_of_the_larger_batch() {
    let server = start(models_dir(), temp_dir("comfyui-from-batch")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    // Images 2 and 3 of a 4-image batch, as ComfyUI ran them.
    let case = fixture("comfyui_latent_from_batch_euler_ancestral_normal_s43_i2_b2");
    let settings = case_settings(&case);
    let mut graph = txt2img_graph(&settings, 43, 4);
    graph["12"] = json!({"class_type": "LatentFromBatch", "inputs": {"samples": ["5", 0], "batch_index": 2, "length": 2}});
    graph["3"]["inputs"]["latent_image"] = json!(["12", 0]);
    let entry = run_graph(&http, addr, &graph).await;
    assert_eq!(entry["outputs"]["9"]["images"].as_array().unwrap().len(), 2, "{entry}");
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    let jobs: Value = http.get(server.url("/api/v1/generate?limit=1")).send().await.unwrap().json().await.unwrap();
    let request = &jobs["jobs"][0]["request"];
    assert_eq!((&request["batch_index"], &request["batch_size"]), (&json!(2), &json!(2)), "{request}");
    // Over an encoded picture it is named.
    let name = upload(&http, addr, &fixture("comfyui_img2img_euler_ancestral_normal_d06_s9_b2").join("init.png")).await;
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    graph["12"]["inputs"]["samples"] = json!(["11", 0]);
    graph.as_object_mut().unwrap().remove("5");
    assert!(refused(&http, addr, &graph).await["node_errors"]["12"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn image_invert_and_scale_by_before_vae_encode_give_comfyuis_picture() {
    let server = start(models_dir(), temp_dir("comfyui-invert-scale-by")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    // An 80x80 picture inverted, then scaled by 0.8 with lanczos to 64x64, as ComfyUI ran it.
    let case = fixture("comfyui_img2img_invert_scale_by_lanczos_euler_a_karras_d07_s39");
    let settings = case_settings(&case);
    let name = upload(&http, addr, &case.join("init.png")).await;
    let mut graph = txt2img_graph(&settings, 39, 1);
    graph["3"]["inputs"]["denoise"] = json!(0.7);
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["12"] = json!({"class_type": "ImageInvert", "inputs": {"image": ["10", 0]}});
    graph["13"] = json!({"class_type": "ImageScaleBy", "inputs": {"image": ["12", 0], "upscale_method": "lanczos", "scale_by": 0.8}});
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["13", 0], "vae": ["4", 2]}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;
    // A factor that misses a multiple of 8 (80 · 0.85 = 68) is a node error on the scale.
    graph["13"]["inputs"]["scale_by"] = json!(0.85);
    let refusal = refused(&http, addr, &graph).await;
    assert!(refusal["node_errors"]["13"]["errors"][0]["message"].as_str().unwrap().contains("multiple of 8"), "{refusal}");
    // A scale before the inversion is named.
    graph["12"]["inputs"]["image"] = json!(["13", 0]);
    graph["13"]["inputs"]["image"] = json!(["10", 0]);
    graph["11"]["inputs"]["pixels"] = json!(["12", 0]);
    let refusal = refused(&http, addr, &graph).await;
    assert!(refusal["node_errors"]["13"].is_object(), "{refusal}");
}

/// A multipart form with one file field, as ComfyUI clients upload pictures.
fn multipart(field: &str, name: &str, bytes: &[u8], texts: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "easel-test-boundary";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n")
            .into_bytes();
    body.extend_from_slice(bytes);
    for (key, value) in [("type", "input")].iter().chain(texts) {
        body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}").as_bytes());
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads a picture as ComfyUI clients do, to `route` (`/upload/image`, or with ComfyUI's
/// `/api` prefix); its name for LoadImage.
async fn upload_to(http: &reqwest::Client, addr: SocketAddr, route: &str, file: &Path) -> Value {
    let name = file.file_name().unwrap().to_str().unwrap();
    let (content_type, body) = multipart("image", name, &std::fs::read(file).unwrap(), &[]);
    let uploaded: Value = http
        .post(format!("http://{addr}{route}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploaded["type"], "input");
    uploaded["name"].clone()
}

/// Sends a mask painting to `/upload/mask` against `original_ref`, as ComfyUI's mask editor
/// does; the masked picture's name.
async fn upload_mask(http: &reqwest::Client, addr: SocketAddr, painting: &Path, original_ref: &Value) -> Value {
    let original_ref = original_ref.to_string();
    let (content_type, body) =
        multipart("image", "clipspace-mask.png", &std::fs::read(painting).unwrap(), &[("original_ref", &original_ref)]);
    let resp = http.post(format!("http://{addr}/upload/mask")).header("content-type", content_type).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let uploaded: Value = resp.json().await.unwrap();
    assert_eq!(uploaded["type"], "input");
    uploaded["name"].clone()
}

async fn upload(http: &reqwest::Client, addr: SocketAddr, file: &Path) -> Value {
    upload_to(http, addr, "/upload/image", file).await
}

/// Queues `graph` and waits for its history entry; returns the entry.
async fn run_graph(http: &reqwest::Client, addr: SocketAddr, graph: &Value) -> Value {
    let answer: Value =
        http.post(format!("http://{addr}/prompt")).json(&json!({"prompt": graph})).send().await.unwrap().json().await.unwrap();
    let prompt_id = answer["prompt_id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
    loop {
        let history: Value = http.get(format!("http://{addr}/history/{prompt_id}")).send().await.unwrap().json().await.unwrap();
        if let Some(entry) = history.get(&prompt_id) {
            return entry.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Queues `graph`, which must be refused with ComfyUI's 400; returns the refusal.
async fn refused(http: &reqwest::Client, addr: SocketAddr, graph: &Value) -> Value {
    let resp = http.post(format!("http://{addr}/prompt")).json(&json!({"prompt": graph})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    resp.json().await.unwrap()
}

/// Checks the pictures of output node `node` in a history entry against the case's images.
async fn assert_outputs_are_the_case(http: &reqwest::Client, addr: SocketAddr, entry: &Value, node: &str, case: &Path) {
    let images = entry["outputs"][node]["images"].as_array().unwrap_or_else(|| panic!("{entry}"));
    assert!(!images.is_empty(), "{entry}");
    for (i, image) in images.iter().enumerate() {
        let query = [("filename", image["filename"].as_str().unwrap()), ("subfolder", image["subfolder"].as_str().unwrap())];
        let png = http.get(format!("http://{addr}/view")).query(&query).send().await.unwrap().bytes().await.unwrap();
        assert_same_picture(&png, &case.join(format!("image_{i}.png")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_img2img_graph_gives_comfyuis_picture_and_bad_graphs_get_node_errors() {
    let server = start(models_dir(), temp_dir("comfyui-img2img")).await;
    let addr = comfyui(&server).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let case = fixture("comfyui_img2img_euler_ancestral_normal_d06_s9_b2");
    let settings = case_settings(&case);
    let name = upload_to(&http, addr, "/api/upload/image", &case.join("init.png")).await;
    // LoadImage -> VAEEncode -> RepeatLatentBatch 2 -> KSampler at denoise 0.6, as recorded.
    let mut graph = txt2img_graph(&settings, 9, 1);
    graph["3"]["inputs"]["denoise"] = json!(0.6);
    graph["3"]["inputs"]["latent_image"] = json!(["12", 0]);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    graph["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    graph["12"] = json!({"class_type": "RepeatLatentBatch", "inputs": {"samples": ["11", 0], "amount": 2}});
    graph.as_object_mut().unwrap().remove("5");
    let entry = run_graph(&http, addr, &graph).await;
    assert_eq!(entry["outputs"]["9"]["images"].as_array().unwrap().len(), 2, "{entry}");
    assert_outputs_are_the_case(&http, addr, &entry, "9", &case).await;

    // Refusals in ComfyUI's shapes.
    let post = |graph: Value| {
        let http = http.clone();
        let url = url("/prompt");
        async move {
            let resp = http.post(url).json(&json!({"prompt": graph})).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let mut unknown = txt2img_graph(&settings, 1, 1);
    unknown["5"]["class_type"] = json!("LatentMagic");
    let (status, answer) = post(unknown).await;
    assert_eq!((status, answer["error"]["type"].as_str()), (400, Some("missing_node_type")), "{answer}");
    let mut bad = txt2img_graph(&settings, 1, 1);
    bad["3"]["inputs"]["sampler_name"] = json!("no_such_sampler");
    bad["3"]["inputs"]["steps"] = json!(0);
    bad["6"]["inputs"].as_object_mut().unwrap().remove("clip");
    let (status, answer) = post(bad).await;
    assert_eq!((status, answer["error"]["type"].as_str()), (400, Some("prompt_outputs_failed_validation")), "{answer}");
    let kinds: Vec<&str> = answer["node_errors"]["3"]["errors"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"value_not_in_list") && kinds.contains(&"value_smaller_than_min"), "{answer}");
    assert_eq!(answer["node_errors"]["6"]["errors"][0]["type"], "required_input_missing", "{answer}");
    assert_eq!(answer["node_errors"]["6"]["dependent_outputs"], json!(["9"]));
    let mut no_output = txt2img_graph(&settings, 1, 1);
    no_output.as_object_mut().unwrap().remove("9");
    let (status, answer) = post(no_output).await;
    assert_eq!((status, answer["error"]["type"].as_str()), (400, Some("prompt_no_outputs")), "{answer}");
    let mut missing_model = txt2img_graph(&settings, 1, 1);
    missing_model["4"]["inputs"]["ckpt_name"] = json!("nope.safetensors");
    let (status, answer) = post(missing_model).await;
    assert_eq!(status, 400);
    assert_eq!(answer["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list", "{answer}");

    // The node list clients read their model lists from.
    let info: Value = http.get(url("/object_info/CheckpointLoaderSimple")).send().await.unwrap().json().await.unwrap();
    assert!(info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0].as_array().unwrap().contains(&json!("tiny-sd")), "{info}");
    let all: Value = http.get(url("/object_info")).send().await.unwrap().json().await.unwrap();
    let samplers = all["KSampler"]["input"]["required"]["sampler_name"][0].as_array().unwrap();
    assert!(samplers.contains(&json!("euler_ancestral")) && samplers.contains(&json!("uni_pc_bh2")), "{samplers:?}");
    let stats: Value = http.get(url("/system_stats")).send().await.unwrap().json().await.unwrap();
    assert!(stats["devices"][0]["name"].is_string());
    // Names that would leave the outputs dir are refused.
    let escape = http.get(url("/view")).query(&[("filename", "../easel.db")]).send().await.unwrap();
    assert_eq!(escape.status(), 400);
    let escape = http.get(url("/view")).query(&[("filename", "x.png"), ("subfolder", "..")]).send().await.unwrap();
    assert_eq!(escape.status(), 403);
}
