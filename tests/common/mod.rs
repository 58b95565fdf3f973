//! Shared by the HTTP integration tests: a real server on 127.0.0.1:0 with its own data dir.
#![allow(dead_code)]

pub mod fake_hub;
pub mod parity;

use std::net::SocketAddr;
use std::path::PathBuf;

use easel::config::{Settings, SettingsLayer};
use easel::server::{leptos_options, serve, AppState};

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls the job `id` until it has ended (two minutes at most) and returns its view.
pub async fn wait_for_job(client: &reqwest::Client, server: &TestServer, id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job: serde_json::Value = client.get(server.url(&format!("/api/v1/generate/{id}"))).send().await.unwrap().json().await.unwrap();
        if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("easel-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// A server on the given models dir, with its own hub cache (`<data_dir>/hub`) so the user's
/// Hugging Face cache is never touched.
pub async fn start(models_dir: PathBuf, data_dir: PathBuf) -> TestServer {
    start_with(settings(models_dir, data_dir)).await
}

pub fn settings(models_dir: PathBuf, data_dir: PathBuf) -> Settings {
    let flags = SettingsLayer {
        port: Some(0),
        hub_cache: Some(data_dir.join("hub")),
        models_dir: Some(models_dir),
        data_dir: Some(data_dir),
        threads: Some(1),
        ..Default::default()
    };
    Settings::resolve(SettingsLayer::default(), flags, None).unwrap()
}

pub async fn start_with(settings: Settings) -> TestServer {
    let addr = SocketAddr::new(settings.host, settings.port);
    let state = AppState::start(leptos_options(addr), settings).unwrap();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    tokio::spawn(async move {
        serve(served, addr, |a| bound_tx.send(a).unwrap(), async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    TestServer { addr: bound_rx.await.unwrap(), state, stop: Some(stop_tx) }
}
