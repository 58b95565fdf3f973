//! Pulling models from a hub: a local fake hub on 127.0.0.1 serves `models/tiny-sd` the way the
//! Hugging Face hub does, with faults injected (dropped connection, corrupted byte, 401, 404,
//! unreachable). The cache layout is checked against the real `huggingface_hub` Python client
//! (from `models/.venv`), both ways.
#![cfg(feature = "ssr")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_hub::{self, FakeHub};
use common::{models_dir, temp_dir};
use easel::hub::pull::{pull, PullRequest, Pulled};
use easel::hub::{HubCache, HubClient, HubError};
use easel::model_registry::ModelRegistry;
use serde_json::{json, Value};

const REPO: &str = "easel-test/tiny-sd";

fn request(repo: &str, revision: &str) -> PullRequest {
    PullRequest { repo_id: repo.into(), revision: revision.into(), with_safety_checker: false }
}

async fn pull_from(hub_url: &str, token: Option<&str>, cache: &Path, req: &PullRequest) -> Result<Pulled, HubError> {
    let client = Arc::new(HubClient::new(hub_url, token.map(str::to_string)).unwrap());
    pull(client, Arc::new(HubCache::new(cache)), req, Arc::new(|_: &_| {})).await
}

fn tiny_file(path: &str) -> Vec<u8> {
    std::fs::read(models_dir().join("tiny-sd").join(path)).unwrap()
}

fn registry(data: &Path) -> ModelRegistry {
    ModelRegistry::new(data.join("models"), HubCache::new(data.join("hub")), data, None)
}

/// Files the pipeline needs from tiny-sd (everything but the README, PyTorch weights and
/// `easel-model.json`, which the hub repo layout does not include in the wanted set).
fn expected_files() -> Vec<String> {
    let mut files: Vec<String> =
        fake_hub::read_folder(&models_dir().join("tiny-sd")).into_keys().filter(|f| f != "easel-model.json").collect();
    files.sort();
    files
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = fake_hub::read_folder(dir).into_keys().collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_pull_links_a_verified_snapshot_and_a_second_pull_downloads_nothing() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-clean");
    let pulled = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap();

    assert_eq!(snapshot_files(&pulled.dir), expected_files(), "only the pipeline's files");
    for file in expected_files() {
        assert_eq!(std::fs::read(pulled.dir.join(&file)).unwrap(), tiny_file(&file), "{file}");
        assert!(std::fs::symlink_metadata(pulled.dir.join(&file)).unwrap().file_type().is_symlink());
    }
    let cache = HubCache::new(data.join("hub"));
    assert_eq!(cache.read_ref(REPO, "main").as_deref(), Some(pulled.commit.as_str()));
    assert_eq!(hub.state.served("README.md") + hub.state.served("unet/diffusion_pytorch_model.bin"), 0);
    let served = hub.state.total_served();
    assert_eq!(served, pulled.downloaded_bytes, "every byte downloaded once");
    // tiny-sd's two VAE config.json files are identical: one blob, fetched once.
    assert_eq!(pulled.total_bytes - pulled.downloaded_bytes, tiny_file("vae_encoder/config.json").len() as u64);
    assert!(!pulled.already_cached);

    let again = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap();
    assert_eq!(again.downloaded_bytes, 0);
    assert!(again.already_cached);
    assert_eq!(hub.state.total_served(), served, "the second pull fetched no content");

    let entry = registry(&data).find(REPO).expect("the pulled model is registered");
    assert_eq!((entry.precision.as_str(), entry.path.as_path()), ("float32", pulled.dir.as_path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_resumes_where_it_stopped() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-resume");
    let unet = tiny_file("unet/model.onnx");
    // Within one pull: the first try is cut at 1 MB, the retry asks for the rest.
    hub.state.faults.lock().unwrap().drop_after = Some(("unet/model.onnx".into(), 1_000_000, 1));
    let pulled = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap();
    assert_eq!(std::fs::read(pulled.dir.join("unet/model.onnx")).unwrap(), unet);
    let starts = hub.state.content_requests("unet/model.onnx");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 0);
    assert!(starts[1] > 0 && starts[1] <= 1_000_000, "resumed from byte {}", starts[1]);
    let served = hub.state.served("unet/model.onnx");
    assert!(served <= unet.len() as u64 + 1_000_000 - starts[1], "bytes sent twice: {served} for {}", unet.len());

    // Across pulls: every try of the first pull is cut, so it fails and leaves the partial file;
    // the next pull continues from it.
    let data = temp_dir("pull-resume-2");
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    hub.state.faults.lock().unwrap().drop_after = Some(("unet/model.onnx".into(), 500_000, 100));
    let err = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap_err();
    assert!(matches!(err, HubError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("run the pull again to resume"), "{err}");
    assert!(registry(&data).find(REPO).is_none(), "a failed pull registers nothing");
    hub.state.faults.lock().unwrap().drop_after = None;
    let before = hub.state.served("unet/model.onnx");
    let pulled = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap();
    let last_start = *hub.state.content_requests("unet/model.onnx").last().unwrap();
    assert!(last_start > 0, "the second pull resumed");
    assert_eq!(hub.state.served("unet/model.onnx") - before, unet.len() as u64 - last_start);
    assert_eq!(std::fs::read(pulled.dir.join("unet/model.onnx")).unwrap(), unet);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_byte_fails_the_checksum_and_nothing_is_registered() {
    for file in ["unet/model.onnx", "model_index.json"] {
        // An LFS file (sha256) and a small git file (blob sha1).
        let hub = fake_hub::start_serving_tiny(REPO, "main").await;
        let data = temp_dir(&format!("pull-corrupt-{}", file.len()));
        hub.state.faults.lock().unwrap().corrupt = Some(file.into());
        let err = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap_err();
        assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains(file) && err.to_string().contains("discarded"), "{err}");
        let cache = HubCache::new(data.join("hub"));
        assert!(!cache.repo_dir(REPO).join("snapshots").exists(), "no snapshot is linked");
        assert!(cache.read_ref(REPO, "main").is_none());
        assert!(registry(&data).find(REPO).is_none());
        // The corrupt file is gone (other downloads cut short by the failure keep their partial
        // files for the next pull to resume).
        use sha2::Digest;
        let bytes = tiny_file(file);
        let etag = if bytes.len() >= 100_000 {
            format!("{:x}", sha2::Sha256::digest(&bytes))
        } else {
            let mut h = sha1::Sha1::new();
            h.update(format!("blob {}\0", bytes.len()).as_bytes());
            h.update(&bytes);
            format!("{:x}", h.finalize())
        };
        assert!(!cache.blob_path(REPO, &etag).exists() && !cache.incomplete_path(REPO, &etag).exists(), "{file} discarded");
    }
}

/// A file the hub sends without a checksum (an etag that is neither a sha256 nor a git sha1) is not
/// kept: the pull fails naming it and nothing is registered.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_without_a_checksum_is_refused() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-no-checksum");
    hub.state.faults.lock().unwrap().no_checksum = Some("model_index.json".into());
    let err = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap_err();
    assert!(matches!(err, HubError::ChecksumMissing { .. }), "{err}");
    assert!(err.to_string().contains("model_index.json") && err.to_string().contains("cannot be verified"), "{err}");
    assert!(registry(&data).find(REPO).is_none());
}

/// A server that sends more bytes than the file's size is cut off: the download is discarded
/// (never written past the size), nothing registered; the next, honest pull succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_download_longer_than_its_size_is_cut_and_discarded() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-oversize");
    let file = "unet/model.onnx";
    hub.state.faults.lock().unwrap().oversize = Some((file.into(), 5 << 20));
    let err = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap_err();
    assert!(err.to_string().contains("more than its") && err.to_string().contains(file), "{err}");
    let cache = HubCache::new(data.join("hub"));
    let bytes = tiny_file(file);
    use sha2::Digest;
    let etag = format!("{:x}", sha2::Sha256::digest(&bytes));
    assert!(!cache.incomplete_path(REPO, &etag).exists() && !cache.blob_path(REPO, &etag).exists(), "discarded");
    assert!(registry(&data).find(REPO).is_none());
    hub.state.faults.lock().unwrap().oversize = None;
    let pulled = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap();
    assert_eq!(std::fs::read(pulled.dir.join(file)).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_another_process_is_downloading_is_waited_for_not_written_twice() {
    use fs4::fs_std::FileExt;
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-lock");
    let cache = HubCache::new(data.join("hub"));
    use sha2::Digest;
    let etag = format!("{:x}", sha2::Sha256::digest(tiny_file("unet/model.onnx")));
    // Hold the lock huggingface_hub would hold while it downloads the UNet.
    let lock_path = cache.lock_path(REPO, &etag);
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    lock.lock_exclusive().unwrap();
    let (url, root) = (hub.url(), data.join("hub"));
    let pulling = tokio::spawn(async move { pull_from(&url, None, &root, &request(REPO, "main")).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!pulling.is_finished(), "the pull waits for the lock");
    assert_eq!(hub.state.served("unet/model.onnx"), 0);
    // The other process finishes the file, then lets go.
    // (huggingface_hub makes the blobs folder itself; the pull may not have made it yet.)
    let blob = cache.blob_path(REPO, &etag);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(blob, tiny_file("unet/model.onnx")).unwrap();
    drop(lock);
    let pulled = pulling.await.unwrap().unwrap();
    assert_eq!(hub.state.served("unet/model.onnx"), 0, "not downloaded again");
    assert_eq!(std::fs::read(pulled.dir.join("unet/model.onnx")).unwrap(), tiny_file("unet/model.onnx"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_repo_needs_the_token() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    hub.state.faults.lock().unwrap().token = Some("hf_secret".into());
    let data = temp_dir("pull-401");
    let err = pull_from(&hub.url(), None, &data.join("hub"), &request(REPO, "main")).await.unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { had_token: false, .. }), "{err}");
    assert!(err.to_string().contains("set HF_TOKEN"), "{err}");
    let err = pull_from(&hub.url(), Some("hf_wrong"), &data.join("hub"), &request(REPO, "main")).await.unwrap_err();
    assert!(err.to_string().contains("refused access"), "{err}");
    pull_from(&hub.url(), Some("hf_secret"), &data.join("hub"), &request(REPO, "main")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_repos_revisions_and_files_are_named() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-404");
    let cache = data.join("hub");
    let err = pull_from(&hub.url(), None, &cache, &request("easel-test/nope", "main")).await.unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }) && err.to_string().contains("easel-test/nope"), "{err}");
    let err = pull_from(&hub.url(), None, &cache, &request(REPO, "v2")).await.unwrap_err();
    assert!(err.to_string().contains("revision v2"), "{err}");
    hub.state.faults.lock().unwrap().hidden = Some("vae_decoder/model.onnx".into());
    let err = pull_from(&hub.url(), None, &cache, &request(REPO, "main")).await.unwrap_err();
    assert!(err.to_string().contains("vae_decoder/model.onnx"), "{err}");
    assert!(registry(&data).find(REPO).is_none());

    // A repository that is not an ONNX export at all.
    hub.state.repos.lock().unwrap().get_mut(REPO).unwrap().files.retain(|f, _| !f.starts_with("unet/"));
    hub.state.faults.lock().unwrap().hidden = None;
    let err = pull_from(&hub.url(), None, &cache, &request(REPO, "main")).await.unwrap_err();
    assert!(matches!(err, HubError::NotAModel { .. }), "{err}");
    assert!(err.to_string().contains("unet/model.onnx") && err.to_string().contains("sdtool convert"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_hub_says_so_and_falls_back_to_the_cache() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-offline");
    let cache = data.join("hub");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead = format!("http://{closed}");
    let err = pull_from(&dead, None, &cache, &request(REPO, "main")).await.unwrap_err();
    assert!(err.to_string().contains(&format!("could not reach the hub at {dead}")) && err.to_string().contains("HF_ENDPOINT"), "{err}");
    let online = pull_from(&hub.url(), None, &cache, &request(REPO, "main")).await.unwrap();
    let offline = pull_from(&dead, None, &cache, &request(REPO, "main")).await.unwrap();
    assert!(offline.offline);
    assert_eq!(offline.dir, online.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_over_the_api_with_progress_then_generate_with_the_pulled_model() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-api");
    let mut settings = common::settings(models_dir(), data.clone());
    settings.hub_endpoint = hub.url();
    let server = common::start_with(settings).await;
    let client = reqwest::Client::new();

    let bad = client.post(server.url("/api/v1/models/pull")).json(&json!({"model": "not a repo"})).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "model", "{body}");

    let resp = client.post(server.url("/api/v1/models/pull")).json(&json!({"model": REPO})).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let started: Value = resp.json().await.unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let events = tokio::time::timeout(
        Duration::from_secs(60),
        client.get(server.url(&format!("/api/v1/models/pulls/{id}/events"))).send().await.unwrap().text(),
    )
    .await
    .expect("the event stream ends when the pull does")
    .unwrap();
    let names: Vec<&str> = events.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.last(), Some(&"done"), "{events}");
    assert!(names.iter().filter(|n| **n == "progress").count() >= 1, "{names:?}");
    let last: Value = serde_json::from_str(events.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap()).unwrap();
    assert_eq!(last["model"], REPO);
    assert_eq!(last["done_bytes"], last["total_bytes"]);

    let models: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    let pulled = models.as_array().unwrap().iter().find(|m| m["name"] == REPO).expect("listed");
    assert_eq!(pulled["location"], "hub_cache");
    assert_eq!(pulled["removable"], true);
    let shown: Value = client.get(server.url(&format!("/api/v1/models/{REPO}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["repo_id"], REPO);

    // The same seed on the pulled copy and on the bundled folder gives the same pixels.
    assert_eq!(generate_pixels(&client, &server, REPO, 11).await, generate_pixels(&client, &server, "tiny-sd", 11).await);

    let set = client.put(server.url("/api/v1/models/default")).json(&json!({"model": REPO})).send().await.unwrap();
    assert_eq!(set.status(), 200);
    // Not while a job uses it: a long job on the pulled model, then a delete.
    let long = json!({"prompt": "in use", "width": 512, "height": 512, "steps": 150, "model": REPO});
    let busy: Value = client.post(server.url("/api/v1/generate")).json(&long).send().await.unwrap().json().await.unwrap();
    let refused = client.delete(server.url(&format!("/api/v1/models/{REPO}"))).send().await.unwrap();
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("used by 1 queued or running job"), "{body}");
    client.delete(server.url(&format!("/api/v1/generate/{}", busy["id"].as_str().unwrap()))).send().await.unwrap();
    common::wait_for_job(&client, &server, busy["id"].as_str().unwrap()).await;
    let deleted = client.delete(server.url(&format!("/api/v1/models/{REPO}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = client.get(server.url(&format!("/api/v1/models/{REPO}"))).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let models: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    let default: Vec<&Value> = models.as_array().unwrap().iter().filter(|m| m["is_default"] == true).collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["name"], "tiny-sd", "deleting the default falls back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_can_be_cancelled_and_the_next_pull_resumes_it() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    hub.state.faults.lock().unwrap().slow = true;
    let data = temp_dir("pull-cancel");
    let mut settings = common::settings(models_dir(), data.clone());
    settings.hub_endpoint = hub.url();
    let server = common::start_with(settings).await;
    let client = reqwest::Client::new();
    let started: Value =
        client.post(server.url("/api/v1/models/pull")).json(&json!({"model": REPO})).send().await.unwrap().json().await.unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let status_url = server.url(&format!("/api/v1/models/pulls/{id}"));
    // Wait until some bytes are on disk, then cancel.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = client.get(&status_url).send().await.unwrap().json().await.unwrap();
        if status["done_bytes"].as_u64().unwrap_or(0) > 3_000_000 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = client.delete(&status_url).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let events = client.get(server.url(&format!("/api/v1/models/pulls/{id}/events"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(events.lines().filter_map(|l| l.strip_prefix("event: ")).collect::<Vec<_>>(), ["cancelled"]);
    assert_eq!(client.delete(&status_url).send().await.unwrap().status(), 409, "already ended");
    let models: Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    assert!(!models.as_array().unwrap().iter().any(|m| m["name"] == REPO), "a cancelled pull registers nothing");
    // The served byte count stops growing once the tasks are aborted. Bytes already in the
    // loopback socket buffers (megabytes) may still drain after the cancel, so wait for it to
    // settle (two samples 500 ms apart) rather than for a fixed time, on a busy machine too.
    let settle_deadline = Instant::now() + Duration::from_secs(15);
    let mut served = hub.state.total_served();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = hub.state.total_served();
        if now == served {
            break;
        }
        assert!(Instant::now() < settle_deadline, "downloads did not stop after the cancel: {served} -> {now} bytes served");
        served = now;
    }
    let repo_bytes = hub.state.total_file_bytes();
    assert!(served < repo_bytes, "the cancelled pull stopped before the whole repo ({served} of {repo_bytes} bytes) was served");

    hub.state.faults.lock().unwrap().slow = false;
    let again: Value =
        client.post(server.url("/api/v1/models/pull")).json(&json!({"model": REPO})).send().await.unwrap().json().await.unwrap();
    let id = again["id"].as_str().unwrap();
    let events = client.get(server.url(&format!("/api/v1/models/pulls/{id}/events"))).send().await.unwrap().text().await.unwrap();
    assert!(events.contains("event: done"), "{events}");
    let resumed = hub.state.requests.lock().unwrap().iter().any(|(_, start)| *start > 0);
    assert!(resumed, "the second pull resumed a partial file with a Range request");
}

/// Runs a small job on `model` and returns its image's RGB pixels (the PNG metadata names the
/// model, so pixels are what two copies of one model must share).
async fn generate_pixels(client: &reqwest::Client, server: &common::TestServer, model: &str, seed: u64) -> Vec<u8> {
    let body = json!({"prompt": "same pixels", "seed": seed, "width": 64, "height": 64, "steps": 3, "sampler": "euler", "model": model});
    let sub: Value = client.post(server.url("/api/v1/generate")).json(&body).send().await.unwrap().json().await.unwrap();
    let job = common::wait_for_job(client, server, sub["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["request"]["model"], model);
    let png = client.get(server.url(job["images"][0]["url"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
    image::load_from_memory(&png).unwrap().to_rgb8().into_raw()
}

/// The pipeline's files for `models/tiny-sd` with the UNet's weights moved into an external
/// `unet/weights.pb`, as the fp32 SD 1.5 exports on the hub store them (made with `onnx`).
async fn tiny_with_external_weights(dir: &Path) {
    let (python, tiny, dir) = (python(), models_dir().join("tiny-sd"), dir.to_path_buf());
    let script = "import onnx, shutil, sys\n\
        src, dst = sys.argv[1], sys.argv[2]\n\
        shutil.copytree(src, dst)\n\
        m = onnx.load(dst + '/unet/model.onnx')\n\
        onnx.save_model(m, dst + '/unet/model.onnx', save_as_external_data=True, all_tensors_to_one_file=True, location='weights.pb', size_threshold=0)\n";
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).args(["-c", script]).arg(&tiny).arg(&dir).output().unwrap())
            .await
            .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_with_external_weights_runs_from_the_linked_snapshot() {
    let data = temp_dir("pull-external");
    let folder = data.join("tiny-external");
    tiny_with_external_weights(&folder).await;
    assert!(std::fs::metadata(folder.join("unet/weights.pb")).unwrap().len() > 1_000_000);
    assert!(std::fs::metadata(folder.join("unet/model.onnx")).unwrap().len() < tiny_file("unet/model.onnx").len() as u64 / 2);
    let hub = fake_hub::start_serving(&folder, REPO, "main").await;
    let mut settings = common::settings(models_dir(), data.clone());
    settings.hub_endpoint = hub.url();
    let server = common::start_with(settings).await;
    let client = reqwest::Client::new();
    let started: Value =
        client.post(server.url("/api/v1/models/pull")).json(&json!({"model": REPO})).send().await.unwrap().json().await.unwrap();
    let events = client
        .get(server.url(&format!("/api/v1/models/pulls/{}/events", started["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: done"), "{events}");
    let snapshot = HubCache::new(data.join("hub")).snapshot_dir(REPO, &format!("{}c0ff", "c0ffee".repeat(6)));
    assert!(std::fs::symlink_metadata(snapshot.join("unet/weights.pb")).unwrap().file_type().is_symlink());
    // ONNX Runtime finds the external weights through the snapshot's symlink; same pixels as the
    // bundled folder.
    assert_eq!(generate_pixels(&client, &server, REPO, 5).await, generate_pixels(&client, &server, "tiny-sd", 5).await);
}

/// The Python client of the hub, from the model tooling's venv (built by the test command's setup).
fn python() -> PathBuf {
    let python = models_dir().join(".venv/bin/python");
    assert!(python.is_file(), "{} is missing: run `models/sdtool --help` once to build the tooling venv", python.display());
    python
}

async fn run_python(hub: &FakeHub, cache: &Path, script: &str) -> String {
    let (python, endpoint, cache, script) = (python(), hub.url(), cache.to_path_buf(), script.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", &script])
            .env("HF_ENDPOINT", endpoint)
            .env("HF_HUB_CACHE", cache)
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_XET", "1")
            .env_remove("HF_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_is_shared_with_huggingface_hub_both_ways() {
    // Python's huggingface_hub downloads first; Easel finds the model and fetches nothing.
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-python");
    let cache = data.join("hub");
    let patterns = r#"["model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "unet/*.onnx", "unet/*.json", "vae_decoder/*", "vae_encoder/*"]"#;
    let printed = run_python(
        &hub,
        &cache,
        &format!("from huggingface_hub import snapshot_download\nprint(snapshot_download('{REPO}', allow_patterns={patterns}))"),
    )
    .await;
    let python_dir = PathBuf::from(printed.trim());
    let found = registry(&data).find(REPO).expect("a model another tool downloaded is found");
    assert_eq!(found.path, python_dir);
    assert!(!found.removable, "Easel does not delete what another tool downloaded");
    let served = hub.state.total_served();
    let pulled = pull_from(&hub.url(), None, &cache, &request(REPO, "main")).await.unwrap();
    assert_eq!((pulled.downloaded_bytes, hub.state.total_served()), (0, served), "nothing fetched again");
    assert!(pulled.already_cached);

    // Easel downloads first; Python finds every file offline, with the same bytes.
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("pull-python-2");
    let cache = data.join("hub");
    let pulled = pull_from(&hub.url(), None, &cache, &request(REPO, "main")).await.unwrap();
    let script = format!(
        "import hashlib\nfrom huggingface_hub import snapshot_download, hf_hub_download\n\
         d = snapshot_download('{REPO}', local_files_only=True)\nprint(d)\n\
         print(hashlib.sha256(open(hf_hub_download('{REPO}', 'unet/model.onnx', local_files_only=True), 'rb').read()).hexdigest())"
    );
    let printed = run_python(&hub, &cache, &script).await;
    let mut lines = printed.lines();
    assert_eq!(PathBuf::from(lines.next().unwrap()), pulled.dir);
    use sha2::Digest;
    assert_eq!(lines.next().unwrap(), format!("{:x}", sha2::Sha256::digest(tiny_file("unet/model.onnx"))));
}

/// At most `MAX_RUNNING_PULLS` pulls of different repos run at once: the next gets 429 with
/// Retry-After until one ends; asking again for a running one joins it.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_are_capped_with_429() {
    use easel::service::pulls::MAX_RUNNING_PULLS;
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let repos: Vec<String> = (0..=MAX_RUNNING_PULLS).map(|i| format!("easel-test/copy-{i}")).collect();
    {
        let mut served = hub.state.repos.lock().unwrap();
        let files = served[REPO].files.clone();
        for repo in &repos {
            served.insert(repo.clone(), fake_hub::Repo { commit: "ab".repeat(20), revisions: vec!["main".into()], files: files.clone() });
        }
    }
    hub.state.faults.lock().unwrap().slow = true;
    let mut settings = common::settings(models_dir(), temp_dir("pull-cap"));
    settings.hub_endpoint = hub.url();
    let server = common::start_with(settings).await;
    let client = reqwest::Client::new();
    let pull = |repo: String| {
        let (client, url) = (client.clone(), server.url("/api/v1/models/pull"));
        async move {
            let resp = client.post(url).json(&json!({"model": repo})).send().await.unwrap();
            let (status, retry) = (resp.status().as_u16(), resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()));
            (status, retry, resp.json::<Value>().await.unwrap())
        }
    };
    let mut ids = Vec::new();
    for repo in &repos[..MAX_RUNNING_PULLS] {
        let (status, _, body) = pull(repo.clone()).await;
        assert!(status == 200 || status == 202, "{status} {body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, retry, body) = pull(repos[MAX_RUNNING_PULLS].clone()).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some(), "Retry-After");
    assert!(body["error"].as_str().unwrap().contains("model pulls are running"), "{body}");
    // Joining a running pull is not a new one.
    let (status, _, joined) = pull(repos[0].clone()).await;
    assert!(status == 200 || status == 202, "{joined}");
    assert_eq!(joined["id"], ids[0]);
    // One ends (cancelled): there is room again.
    assert_eq!(client.delete(server.url(&format!("/api/v1/models/pulls/{}", ids[0]))).send().await.unwrap().status(), 200);
    let (status, _, body) = pull(repos[MAX_RUNNING_PULLS].clone()).await;
    assert!(status == 200 || status == 202, "{body}");
    ids.push(body["id"].as_str().unwrap().to_string());
    for id in &ids[1..] {
        client.delete(server.url(&format!("/api/v1/models/pulls/{id}"))).send().await.unwrap();
    }
}
