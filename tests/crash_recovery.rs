//! Durability: the real `easel` binary is killed with SIGKILL while a job runs, then started again
//! on the same data dir. Every accepted job must end `succeeded`, with its image on disk and in
//! the database, and none run to completion twice.
#![cfg(feature = "ssr")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Starts `easel serve` on a free port and returns the child and its base URL.
fn spawn_server(data_dir: &Path) -> (Child, String) {
    spawn_server_with(data_dir, &[])
}

fn spawn_server_with(data_dir: &Path, extra: &[&str]) -> (Child, String) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["serve", "--port", "0", "--threads", "1", "--log-level", "warn"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--models-dir")
        .arg(&models)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().trim_end_matches('/').to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

/// A server process killed when the test ends, passing or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Value {
    client.get(url).send().unwrap().json().unwrap()
}

#[test]
fn sigkill_during_a_job_loses_nothing_and_runs_nothing_twice() {
    let data = std::env::temp_dir().join(format!("easel-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let client = reqwest::blocking::Client::new();

    let (mut server, base) = spawn_server(&data);
    let bodies = [
        json!({"prompt": "interrupted", "seed": 11, "width": 256, "height": 256, "steps": 60, "sampler": "euler"}),
        json!({"prompt": "waiting one", "seed": 12, "width": 64, "height": 64, "steps": 4}),
        json!({"prompt": "waiting two", "seed": 13, "width": 64, "height": 64, "steps": 4, "batch_size": 2}),
    ];
    let ids: Vec<String> = bodies
        .iter()
        .map(|b| {
            let resp = client.post(format!("{base}/api/v1/generate")).json(b).send().unwrap();
            assert_eq!(resp.status(), 202);
            resp.json::<Value>().unwrap()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = get(&client, &format!("{base}/api/v1/generate/{}", ids[0]));
        if job["status"] == "running" && job["progress"]["step"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "first job never got going: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill().unwrap(); // SIGKILL: no shutdown code runs.
    server.wait().unwrap();

    let (mut server, base) = spawn_server(&data);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut jobs = Vec::new();
    for id in &ids {
        loop {
            let job = get(&client, &format!("{base}/api/v1/generate/{id}"));
            match job["status"].as_str().unwrap() {
                "succeeded" => {
                    jobs.push(job);
                    break;
                }
                "queued" | "running" => {}
                other => panic!("job {id} ended {other}: {job}"),
            }
            assert!(Instant::now() < deadline, "{job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let outputs = data.join("outputs");
    for (job, body) in jobs.iter().zip(&bodies) {
        let images = job["images"].as_array().unwrap();
        assert_eq!(images.len() as u64, body.get("batch_size").and_then(Value::as_u64).unwrap_or(1), "{job}");
        for image in images {
            let file = outputs.join(image["url"].as_str().unwrap().trim_start_matches("/outputs/"));
            assert!(file.is_file(), "{}", file.display());
            assert_eq!(image["seed"], body["seed"]);
        }
    }
    // Exactly the expected files: no duplicates from the interrupted run, no temp files left.
    let mut files = Vec::new();
    for day in std::fs::read_dir(&outputs).unwrap() {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            files.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|f| f.ends_with(".png")), "{files:?}");
    let history = get(&client, &format!("{base}/api/v1/generate?limit=10"));
    assert_eq!(history["jobs"].as_array().unwrap().len(), 3, "no duplicate jobs");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// SIGTERM with a job running, its SSE stream and an A1111 call open: the process exits within
/// `--shutdown-timeout`, the streams end, and after a restart the job runs again with its
/// interrupted attempt not counted.
#[test]
fn sigterm_with_open_streams_exits_within_the_deadline_and_the_job_runs_again_uncounted() {
    let data = std::env::temp_dir().join(format!("easel-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let client = reqwest::blocking::Client::new();
    let (server, base) = spawn_server_with(&data, &["--shutdown-timeout", "5"]);
    let mut server = KillOnDrop(server);
    let body = json!({"prompt": "stopped", "seed": 5, "width": 256, "height": 256, "steps": 80, "sampler": "euler"});
    let job: Value = client.post(format!("{base}/api/v1/generate")).json(&body).send().unwrap().json().unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&client, &format!("{base}/api/v1/generate/{id}"))["progress"]["step"].as_u64().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // An SSE stream and a blocking A1111 call, both open when the signal comes.
    let sse = {
        let url = format!("{base}/api/v1/generate/{id}/events");
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
            client.get(url).send().map(|r| r.text().unwrap_or_default()).unwrap_or_default()
        })
    };
    let a1111 = {
        let url = format!("{base}/sdapi/v1/txt2img");
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
            client.post(url).json(&json!({"prompt": "waits", "width": 64, "height": 64, "steps": 2})).send().map(|r| r.status().as_u16())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(15), "still running 15 s after SIGTERM (deadline 5 s)");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(7), "exited {took:?} after SIGTERM; the deadline is 5 s");
    let events = sse.join().unwrap();
    assert!(events.contains("event: progress") && !events.contains("event: succeeded"), "{events}");
    // The A1111 call got an answer (503: stopping) or its connection closed; it did not hang.
    let _ = a1111.join().unwrap();

    let (server, base) = spawn_server(&data);
    let server = KillOnDrop(server);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = get(&client, &format!("{base}/api/v1/generate/{id}"));
        if job["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline && job["status"] != "failed", "{job}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    let record = easel::jobs::JobStore::open(&data).unwrap().get(&id).unwrap().unwrap();
    assert_eq!(record.attempts, 1, "the interrupted attempt is not counted");
    let _ = std::fs::remove_dir_all(&data);
}
