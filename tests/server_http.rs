//! The HTTP skeleton over real TCP: health, effective config, JSON 404s, request ids.
#![cfg(feature = "ssr")]

use std::net::SocketAddr;
use std::path::PathBuf;

use easel::config::{Settings, SettingsLayer};
use easel::server::{leptos_options, serve, AppState};

struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("easel-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(models_dir: PathBuf, data_dir: PathBuf) -> TestServer {
    let flags = SettingsLayer {
        port: Some(0),
        models_dir: Some(models_dir),
        data_dir: Some(data_dir),
        threads: Some(1),
        ..Default::default()
    };
    let settings = Settings::resolve(SettingsLayer::default(), flags, None).unwrap();
    let addr = SocketAddr::new(settings.host, settings.port);
    let state = AppState::new(leptos_options(addr), settings);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(state, addr, |a| bound_tx.send(a).unwrap(), async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    TestServer { addr: bound_rx.await.unwrap(), stop: Some(stop_tx) }
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

#[tokio::test]
async fn health_is_ready_with_runtime_and_models_dir() {
    let server = start(models_dir(), temp_dir("health")).await;
    let resp = reqwest::get(format!("http://{}/api/v1/health", server.addr)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["onnxruntime"]["ok"], true);
    assert_eq!(body["models_dir"]["ok"], true);
}

#[tokio::test]
async fn health_is_503_when_models_dir_is_unreadable() {
    let server = start(PathBuf::from("/nonexistent/easel-models"), temp_dir("health503")).await;
    let resp = reqwest::get(format!("http://{}/api/v1/health", server.addr)).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert!(body["models_dir"]["detail"].as_str().unwrap().contains("/nonexistent/easel-models"), "{body}");
}

#[tokio::test]
async fn config_returns_effective_settings() {
    let data = temp_dir("config");
    let server = start(models_dir(), data.clone()).await;
    let body: serde_json::Value =
        reqwest::get(format!("http://{}/api/v1/config", server.addr)).await.unwrap().json().await.unwrap();
    assert_eq!(body["host"], "127.0.0.1");
    assert_eq!(body["threads"], 1);
    assert_eq!(body["data_dir"], data.to_str().unwrap());
    assert_eq!(body["outputs_dir"], data.join("outputs").to_str().unwrap());
    assert_eq!(body["log_format"], "text");
}

#[tokio::test]
async fn unknown_api_paths_get_a_json_404() {
    let server = start(models_dir(), temp_dir("404")).await;
    for path in ["/api/v1/nope", "/api/v2/anything", "/api/v1/health/extra"] {
        let resp = reqwest::get(format!("http://{}{path}", server.addr)).await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(path), "{body}");
    }
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let server = start(models_dir(), temp_dir("reqid")).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/health", server.addr);
    let generated = client.get(&url).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let echoed = client.get(&url).header("x-request-id", "client-42").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-42");
    let replaced = client.get(&url).header("x-request-id", "bad id with spaces").send().await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn home_page_is_server_rendered() {
    let server = start(models_dir(), temp_dir("ssr")).await;
    let html = reqwest::get(format!("http://{}/", server.addr)).await.unwrap().text().await.unwrap();
    assert!(html.contains("<h1>Generate</h1>") && html.contains("Gallery"), "{html}");
}
