//! The real `easel` binary: `easel pull` / `easel models` against a local fake hub, and memory
//! over repeated model switches in `easel serve` (one resident model: each switch frees the last).
#![cfg(feature = "ssr")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fake_hub, models_dir, temp_dir};
use serde_json::{json, Value};

const REPO: &str = "easel-test/tiny-sd";

fn easel(data: &Path, hub_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
    command
        .env("HF_ENDPOINT", hub_url)
        .env("HF_HUB_CACHE", data.join("hub"))
        .env("EASEL_DATA_DIR", data)
        .env("EASEL_MODELS_DIR", data.join("models"))
        .env_remove("HF_TOKEN")
        .env_remove("EASEL_DEFAULT_MODEL");
    command
}

async fn run(mut command: Command) -> (bool, String, String) {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_list_show_default_and_remove_from_the_command_line() {
    let hub = fake_hub::start_serving_tiny(REPO, "main").await;
    let data = temp_dir("cli-pull");
    std::fs::create_dir_all(data.join("models")).unwrap();

    let mut pull = easel(&data, &hub.url());
    pull.args(["pull", REPO, "--set-default"]);
    let (ok, stdout, stderr) = run(pull).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("pulled {REPO}")) && stdout.contains("is now the default"), "{stdout}");
    assert!(stderr.contains("unet/model.onnx"), "a line per file without a terminal: {stderr}");

    let mut list = easel(&data, &hub.url());
    list.args(["models", "list"]);
    let (ok, stdout, _) = run(list).await;
    assert!(ok);
    let row = stdout.lines().find(|l| l.contains(REPO)).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.starts_with("* ") && row.contains("float32") && row.contains("pulled from the hub"), "{row}");

    let mut show = easel(&data, &hub.url());
    show.args(["models", "show", REPO]);
    let (ok, stdout, _) = run(show).await;
    assert!(ok && stdout.contains("removable  yes") && stdout.contains("(default)"), "{stdout}");

    // Pulling again over an unreachable hub uses the cache and says so.
    let mut offline = easel(&data, "http://127.0.0.1:1");
    offline.args(["pull", REPO]);
    let (ok, stdout, stderr) = run(offline).await;
    assert!(ok && stderr.contains("could not be reached"), "{stdout}\n{stderr}");

    let mut missing = easel(&data, &hub.url());
    missing.args(["pull", "easel-test/missing"]);
    let (ok, _, stderr) = run(missing).await;
    assert!(!ok && stderr.contains("not found on the hub") && stderr.contains("easel-test/missing"), "{stderr}");

    // `rm` asks first: "n" keeps the model, --yes deletes it.
    let mut keep = easel(&data, &hub.url());
    keep.args(["models", "rm", REPO]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = keep.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"n\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing deleted"));
    assert!(data.join("hub/models--easel-test--tiny-sd").exists());
    let mut rm = easel(&data, &hub.url());
    rm.args(["models", "rm", "--yes", REPO]);
    let (ok, stdout, stderr) = run(rm).await;
    assert!(ok && stdout.contains("freed"), "{stdout}\n{stderr}");
    assert!(!data.join("hub/models--easel-test--tiny-sd").exists());
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn switching_models_twenty_times_does_not_grow_memory() {
    let data = temp_dir("switch-memory");
    let models = data.join("models");
    copy_dir(&models_dir().join("tiny-sd"), &models.join("tiny-a"));
    copy_dir(&models_dir().join("tiny-sd"), &models.join("tiny-b"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["serve", "--port", "0", "--threads", "1", "--log-format", "json", "--log-level", "easel=info,warn"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--models-dir")
        .arg(&models)
        .env("HF_HUB_CACHE", data.join("hub"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().trim_end_matches('/').to_string();
    // Drain the logs as they come (a full pipe would block the server).
    let mut stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).unwrap();
        logs
    });
    let client = reqwest::blocking::Client::new();
    let generate = |model: &str, seed: u64| {
        let body = json!({"prompt": "switch", "seed": seed, "width": 64, "height": 64, "steps": 2, "sampler": "euler", "model": model});
        let sub: Value = client.post(format!("{base}/api/v1/generate")).json(&body).send().unwrap().json().unwrap();
        let url = format!("{base}/api/v1/generate/{}", sub["id"].as_str().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job: Value = client.get(&url).send().unwrap().json().unwrap();
            match job["status"].as_str().unwrap() {
                "succeeded" => return,
                "queued" | "running" => {}
                other => panic!("job {other}: {job}"),
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Warm up: both models loaded and freed a few times, allocator arenas settled.
    for i in 0..6 {
        generate(if i % 2 == 0 { "tiny-a" } else { "tiny-b" }, i);
    }
    let before = rss_bytes(child.id());
    for i in 0..20 {
        generate(if i % 2 == 0 { "tiny-a" } else { "tiny-b" }, 100 + i);
    }
    let after = rss_bytes(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = log_reader.join().unwrap();
    let loads = logs.lines().filter(|l| l.contains("model loaded")).count();
    let unloads = logs.lines().filter(|l| l.contains("model unloaded")).count();
    assert_eq!((loads, unloads), (26, 25), "every job switched model");
    let growth = after as f64 / before as f64 - 1.0;
    println!("RSS after warm-up {:.1} MB, after 20 switches {:.1} MB ({:+.2}%)", before as f64 / 1e6, after as f64 / 1e6, growth * 100.0);
    assert!(growth <= 0.05, "resident memory grew {:.1}% over 20 switches ({before} -> {after} bytes)", growth * 100.0);
}
