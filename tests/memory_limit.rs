//! Admission under a memory limit: the real `easel` binary started under an address-space limit
//! (`prlimit --as`, as a container's or a unit's limit would cap it) refuses a request whose work
//! cannot fit in that limit — not in the machine's memory — with a 422 that names the limit, and
//! goes on serving: a small job still runs to its image under the same limit.
#![cfg(feature = "ssr")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// 3 GB of address space: the tiny model's server peaks near 0.7 GB of it.
const LIMIT_BYTES: u64 = 3_000_000_000;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_oversized_request_under_a_memory_limit_is_refused_and_the_server_goes_on() {
    let data = std::env::temp_dir().join(format!("easel-memory-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    // prlimit is util-linux's (essential on Debian): the limit is set before easel starts.
    let mut child = Command::new("prlimit")
        .arg(format!("--as={LIMIT_BYTES}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_easel"))
        .args(["serve", "--port", "0", "--threads", "1", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--models-dir")
        .arg(&models)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("prlimit (util-linux) runs easel under the limit");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = KillOnDrop(child);
    let base = line.trim().rsplit(' ').next().unwrap().trim_end_matches('/').to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let client = reqwest::blocking::Client::new();
    let generate = |body: Value| client.post(format!("{base}/api/v1/generate")).json(&body).send().unwrap();

    // 2048x2048 x 8 and even 512x512 need more than 3 GB by the admission estimate; on this
    // machine's whole memory 512x512 would be admitted.
    for body in [
        json!({"prompt": "huge", "width": 2048, "height": 2048, "batch_size": 8, "steps": 4}),
        json!({"prompt": "large", "width": 512, "height": 512, "steps": 4}),
    ] {
        let resp = generate(body.clone());
        assert_eq!(resp.status(), 422, "{body}");
        let error: Value = resp.json().unwrap();
        let message = error["fields"][0]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(error["fields"][0]["field"], "width", "{error}");
        assert!(message.contains("3.0 GB of memory this server may use"), "{message}");
    }
    let health: Value = client.get(format!("{base}/api/v1/health")).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "ready", "{health}");

    // A picture that fits runs to its image under the same limit.
    let resp = generate(json!({"prompt": "small", "width": 64, "height": 64, "steps": 4, "seed": 1}));
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: Value = client.get(format!("{base}/api/v1/generate/{id}")).send().unwrap().json().unwrap();
        match job["status"].as_str().unwrap() {
            "succeeded" => {
                assert_eq!(job["images"].as_array().map(Vec::len), Some(1), "{job}");
                break;
            }
            "failed" | "cancelled" => panic!("the small job did not run under the limit: {job}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the small job did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
