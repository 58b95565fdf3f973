//! Admission control over real HTTP: a picture larger than the server can make is refused up
//! front with a 422 naming the limit (every door), and a full queue answers 503 with
//! Retry-After; the server keeps serving.
#![cfg(feature = "ssr")]

mod common;

use common::{models_dir, settings, start_with, temp_dir};
use easel::service::admission::{derived_max_pixels, QUEUE_FULL_RETRY_AFTER_S};
use serde_json::{json, Value};

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value, Option<String>) {
    let resp = client.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test(flavor = "multi_thread")]
async fn pictures_over_the_pixel_limit_are_refused_with_the_limit_named() {
    let mut s = settings(models_dir(), temp_dir("admission-pixels"));
    s.max_pixels = Some(96 * 96);
    let server = start_with(s).await;
    let client = reqwest::Client::new();
    let (status, body, _) =
        post(&client, server.url("/api/v1/generate"), json!({"prompt": "a", "width": 128, "height": 96, "steps": 1})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "width", "{body}");
    let message = body["fields"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("128x96 is 12288 pixels") && message.contains("at most 9216") && message.contains("--max-pixels"),
        "{message}"
    );
    // A hires pass counts at its target size.
    let (status, body, _) = post(
        &client,
        server.url("/api/v1/generate"),
        json!({"prompt": "a", "width": 64, "height": 64, "steps": 1, "hires": {"scale": 2.0}}),
    )
    .await;
    assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("hires.scale")), "{body}");
    // Batches are not multiplied: they run in slices.
    let (status, body, _) =
        post(&client, server.url("/api/v1/generate"), json!({"prompt": "a", "width": 96, "height": 96, "steps": 1, "batch_size": 8})).await;
    assert_eq!(status, 202, "{body}");
    // A1111's door refuses the same way, in its shape.
    let (status, body, _) =
        post(&client, server.url("/sdapi/v1/txt2img"), json!({"prompt": "a", "width": 128, "height": 128, "steps": 1})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("--max-pixels"), "{body}");
    // Still serving.
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_configured_limit_the_machines_memory_decides() {
    let server = start_with(settings(models_dir(), temp_dir("admission-derived"))).await;
    let client = reqwest::Client::new();
    let body = json!({"prompt": "a", "width": 2048, "height": 2048, "batch_size": 8, "steps": 1});
    let (status, answer, _) = post(&client, server.url("/api/v1/generate"), body).await;
    let model: Value = client.get(server.url("/api/v1/models/tiny-sd")).send().await.unwrap().json().await.unwrap();
    let total = easel::metrics::total_memory_bytes().expect("/proc/meminfo");
    let limit = derived_max_pixels(total, model["size_bytes"].as_u64().unwrap());
    if 2048 * 2048 > limit {
        assert_eq!(status, 422, "{answer}");
        assert!(answer["fields"][0]["message"].as_str().unwrap().contains("GB of memory"), "{answer}");
    } else {
        assert_eq!(status, 202, "a machine with {total} bytes fits 2048² ({limit} pixels): {answer}");
        let id = answer["id"].as_str().unwrap();
        client.delete(server.url(&format!("/api/v1/generate/{id}"))).send().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_with_retry_after_and_takes_jobs_again_once_it_drains() {
    let mut s = settings(models_dir(), temp_dir("admission-queue"));
    s.max_queue = 2;
    let server = start_with(s).await;
    let client = reqwest::Client::new();
    let submit = |side: u32, steps: u32| {
        post(&client, server.url("/api/v1/generate"), json!({"prompt": "q", "width": side, "height": side, "steps": steps}))
    };
    // One long job runs; two wait; the next is refused.
    let (status, first, _) = submit(512, 150).await;
    assert_eq!(status, 202, "{first}");
    let first = first["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let job: Value = client.get(server.url(&format!("/api/v1/generate/{first}"))).send().await.unwrap().json().await.unwrap();
        if job["status"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (status, job, _) = submit(64, 1).await;
        assert_eq!(status, 202, "{job}");
        waiting.push(job["id"].as_str().unwrap().to_string());
    }
    let (status, body, retry) = submit(64, 1).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some(QUEUE_FULL_RETRY_AFTER_S.to_string().as_str()));
    assert!(body["error"].as_str().unwrap().contains("queue is full (2 jobs waiting, at most 2)"), "{body}");
    // A1111's door says the same with a 503.
    let (status, _, _) =
        post(&client, server.url("/sdapi/v1/txt2img"), json!({"prompt": "a", "width": 64, "height": 64, "steps": 1})).await;
    assert_eq!(status, 503);
    // Health still answers; once a waiting job is cancelled there is room again.
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
    client.delete(server.url(&format!("/api/v1/generate/{}", waiting[0]))).send().await.unwrap();
    let (status, body, _) = submit(64, 1).await;
    assert_eq!(status, 202, "{body}");
    client.delete(server.url(&format!("/api/v1/generate/{first}"))).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_hold_more_than_its_share_of_event_streams() {
    use easel::server::MAX_STREAMS_PER_CLIENT;
    let server = start_with(settings(models_dir(), temp_dir("admission-streams"))).await;
    let client = reqwest::Client::new();
    let (status, job, _) =
        post(&client, server.url("/api/v1/generate"), json!({"prompt": "long", "width": 512, "height": 512, "steps": 150})).await;
    assert_eq!(status, 202, "{job}");
    let events = server.url(&format!("/api/v1/generate/{}/events", job["id"].as_str().unwrap()));
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS_PER_CLIENT {
        let resp = client.get(&events).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    let refused = client.get(&events).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("easel_event_streams_open {MAX_STREAMS_PER_CLIENT}")), "{metrics}");
    // Everything else still answers; a closed stream frees its place.
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        let resp = client.get(&events).send().await.unwrap();
        if resp.status() == 200 {
            again = Some(resp);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the place of a closed stream was not freed");
    client.delete(server.url(&format!("/api/v1/generate/{}", job["id"].as_str().unwrap()))).send().await.unwrap();
}

/// A client that stops sending its body is answered with a 4xx after the body timeout and the
/// server goes on serving others meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_trickles_its_body_is_answered_after_the_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_with(settings(models_dir(), temp_dir("admission-slowbody"))).await;
    let mut slow = tokio::net::TcpStream::connect(server.url("").trim_start_matches("http://")).await.unwrap();
    slow.write_all(
        b"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": ",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
    let mut buf = [0u8; 512];
    let limit = std::time::Duration::from_secs(easel::server::BODY_READ_TIMEOUT_S + 15);
    let read = tokio::time::timeout(limit, slow.read(&mut buf)).await;
    let n = read.unwrap_or_else(|_| panic!("the half-sent body was still being waited for after {limit:?}")).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(started.elapsed() >= std::time::Duration::from_secs(easel::server::BODY_READ_TIMEOUT_S - 1));
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
}

/// A client that sends its headers slower than the header timeout is dropped; others are served
/// meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_loris_client_is_dropped_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_with(settings(models_dir(), temp_dir("admission-slowloris"))).await;
    let mut slow = tokio::net::TcpStream::connect(server.url("").trim_start_matches("http://")).await.unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/api/v1/health")).send().await.unwrap().status(), 200);
    let mut buf = Vec::new();
    let limit = std::time::Duration::from_secs(easel::server::HEADER_READ_TIMEOUT_S + 10);
    let read = tokio::time::timeout(limit, slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the half-sent request was still open after {limit:?}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(easel::server::HEADER_READ_TIMEOUT_S - 1));
    assert!(buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf));
}
