//! Uploads and the image-to-image modes over real HTTP against the tiny models: multipart and
//! raw uploads, refusals with the field named (not an image, too many pixels, too many bytes,
//! a decompression bomb), then an inpainting job from uploads, an outpainting job, a hires job and
//! "send to img2img" from a generated image's gallery id — each run to success, with the size and
//! the A1111 infotext keys checked.
#![cfg(feature = "ssr")]

mod common;

use std::io::Cursor;

use common::{models_dir, start, temp_dir, TestServer};
use serde_json::{json, Value};

fn png(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(f(x, y)));
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn multipart(name: &str, filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "easel-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(client: &reqwest::Client, server: &TestServer, bytes: &[u8]) -> reqwest::Response {
    let (content_type, body) = multipart("file", "picture.png", bytes);
    client.post(server.url("/api/v1/uploads")).header("content-type", content_type).body(body).send().await.unwrap()
}

async fn run_job(client: &reqwest::Client, server: &TestServer, body: Value) -> Value {
    let resp = client.post(server.url("/api/v1/generate")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    common::wait_for_job(client, server, &id).await
}

/// A PNG whose header claims 20000x20000 pixels: the decoder must refuse it from the header.
fn bomb_header() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 20_000, 20_000);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    // One compressed stream of zero rows would be ~19 KB; the header alone is enough to refuse.
    writer.write_image_data(&[]).ok();
    drop(writer);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_stored_by_content_and_bad_pictures_are_refused_by_field() {
    let server = start(models_dir(), temp_dir("uploads")).await;
    let client = reqwest::Client::new();
    let picture = png(40, 24, |x, y| [x as u8 * 6, y as u8 * 10, 90]);
    let resp = upload(&client, &server, &picture).await;
    assert_eq!(resp.status(), 201);
    let first: Value = resp.json().await.unwrap();
    assert_eq!((first["width"].as_u64(), first["height"].as_u64()), (Some(40), Some(24)), "{first}");
    let raw = client.post(server.url("/api/v1/uploads")).header("content-type", "image/png").body(picture.clone()).send().await.unwrap();
    assert_eq!(raw.status(), 201);
    assert_eq!(raw.json::<Value>().await.unwrap()["id"], first["id"], "the same picture gets the same id");
    // Served back as the stored PNG (the UI shows an earlier job's init image from it).
    let served = client.get(server.url(&format!("/api/v1/uploads/{}", first["id"].as_str().unwrap()))).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    let back = image::load_from_memory(&served.bytes().await.unwrap()).unwrap().to_rgb8();
    assert_eq!(back.as_raw(), image::load_from_memory(&picture).unwrap().to_rgb8().as_raw());
    for unknown in ["up_0000", "..%2F..%2Feasel.db", "easel"] {
        let resp = client.get(server.url(&format!("/api/v1/uploads/{unknown}"))).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{unknown}");
    }

    for (what, bytes) in [("text", b"not a picture".to_vec()), ("bomb", bomb_header()), ("too many pixels", png(4097, 8, |_, _| [0; 3]))] {
        let resp = upload(&client, &server, &bytes).await;
        assert_eq!(resp.status(), 422, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], "file", "{what}: {body}");
    }
    let huge = vec![0u8; 21 << 20];
    assert_eq!(upload(&client, &server, &huge).await.status(), 413);
    // The server answers 413 before reading the rest of the body and closes that connection; a
    // pooled client could pick the closed connection for its next request (a broken pipe, seen
    // on a loaded CI machine), so the requests after it use a fresh client.
    let client = reqwest::Client::new();
    let wrong = client.post(server.url("/api/v1/uploads")).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(wrong.status(), 415);
    let unknown = client
        .post(server.url("/api/v1/generate"))
        .json(&json!({"prompt": "a", "init_image": "up_0000", "steps": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 422);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "init_image", "{body}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_image_mode_runs_from_uploads_and_gallery_images() {
    let server = start(models_dir(), temp_dir("image-modes")).await;
    let client = reqwest::Client::new();
    let init: Value = upload(&client, &server, &png(64, 64, |x, y| [x as u8 * 4, y as u8 * 4, 128])).await.json().await.unwrap();
    let mask: Value = upload(&client, &server, &png(64, 64, |x, _| if x >= 32 { [255; 3] } else { [0; 3] })).await.json().await.unwrap();

    let base = json!({"prompt": "a lighthouse", "seed": 7, "steps": 4, "sampler": "euler"});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let inpaint = run_job(&client, &server, with(json!({"init_image": init["id"], "mask": mask["id"], "strength": 1.0}))).await;
    assert_eq!(inpaint["status"], "succeeded", "{inpaint}");
    let image = &inpaint["images"][0];
    assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(64), Some(64)));
    let infotext = image["infotext"].as_str().unwrap();
    assert!(infotext.contains("Denoising strength: 1.0") && infotext.contains("Mask blur: 4"), "{infotext}");

    let nine = run_job(&client, &server, with(json!({"model": "tiny-sd-inpaint", "init_image": init["id"], "mask": mask["id"]}))).await;
    assert_eq!(nine["status"], "succeeded", "{nine}");

    let outpaint = run_job(&client, &server, with(json!({"init_image": init["id"], "outpaint": {"left": 16, "bottom": 8}}))).await;
    assert_eq!(outpaint["status"], "succeeded", "{outpaint}");
    assert_eq!((outpaint["images"][0]["width"].as_u64(), outpaint["images"][0]["height"].as_u64()), (Some(80), Some(72)));

    let hires = run_job(
        &client,
        &server,
        with(json!({"width": 64, "height": 64, "hires": {"scale": 1.5, "strength": 0.5, "upscaler": "lanczos"}})),
    )
    .await;
    assert_eq!(hires["status"], "succeeded", "{hires}");
    assert_eq!(hires["images"][0]["width"].as_u64(), Some(96));
    let infotext = hires["images"][0]["infotext"].as_str().unwrap();
    assert!(infotext.contains("Size: 64x64") && infotext.contains("Hires upscale: 1.5, Hires upscaler: Lanczos"), "{infotext}");

    // "Send to img2img": a generated image's gallery id is a valid init image; the job keeps a
    // copy, so deleting the image afterwards does not break it.
    let gallery_id = hires["images"][0]["id"].as_str().unwrap().to_string();
    let resp =
        client.post(server.url("/api/v1/generate")).json(&with(json!({"init_image": gallery_id, "strength": 0.5}))).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let job_id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(client.delete(server.url(&format!("/api/v1/images/{gallery_id}"))).send().await.unwrap().status(), 204);
    let job = common::wait_for_job(&client, &server, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["request"]["init_image"].as_str().unwrap().starts_with("up_"), "{job}");
    assert_eq!(job["images"][0]["width"].as_u64(), Some(96), "the init image set the size");
    drop(server);
}
