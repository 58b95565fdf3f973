//! Engine measurements the `/metrics` endpoint exports: denoising step times and model load
//! times as histograms, and how many models are loaded. The job runner records into one shared
//! [`EngineMetrics`]; the HTTP layer renders it with the queue's counts in the Prometheus text
//! format ([`render`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A fixed-bucket histogram (cumulative buckets are computed when rendered).
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Default)]
struct HistogramState {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, state: Mutex::new(HistogramState { counts: vec![0; bounds.len() + 1], ..Default::default() }) }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        let mut s = self.state.lock().expect("histogram lock");
        s.counts[bucket] += 1;
        s.sum += value;
        s.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.state.lock().expect("histogram lock").count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().expect("histogram lock");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += s.counts[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", s.count, s.sum, s.count);
    }
}

/// Step times span a tiny model on a fast CPU (milliseconds) to SD 1.5 at 512 px on two cores (~10 s).
const STEP_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0];
const LOAD_BOUNDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

pub struct EngineMetrics {
    /// Seconds per denoising step (the UNet call(s) and the scheduler update).
    pub step_seconds: Histogram,
    /// Seconds to create a model's sessions.
    pub model_load_seconds: Histogram,
    /// Models whose sessions are loaded now.
    pub models_loaded: AtomicU64,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            step_seconds: Histogram::new(STEP_BOUNDS),
            model_load_seconds: Histogram::new(LOAD_BOUNDS),
            models_loaded: AtomicU64::new(0),
        }
    }
}

/// What the HTTP layer adds to the engine's numbers.
pub struct ProcessSnapshot {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub pulls_running: usize,
    pub event_streams_open: usize,
    pub resident_memory_bytes: Option<u64>,
}

/// Resident memory of this process (Linux `/proc`; `None` elsewhere).
pub fn resident_memory_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// Peak resident memory of this process (`VmHWM`; Linux only).
pub fn peak_resident_memory_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The Prometheus text exposition (format 0.0.4).
pub fn render(engine: &EngineMetrics, process: &ProcessSnapshot) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    let _ = writeln!(
        out,
        "# HELP easel_build_info Easel and ONNX Runtime versions.\n# TYPE easel_build_info gauge\neasel_build_info{{version=\"{}\",onnxruntime=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::engine::runtime::ORT_VERSION
    );
    gauge(&mut out, "easel_queue_depth", "Jobs waiting to run.", process.queued.to_string());
    let _ = writeln!(out, "# HELP easel_jobs Jobs in the job database by status.\n# TYPE easel_jobs gauge");
    for (status, n) in [
        ("queued", process.queued),
        ("running", process.running),
        ("succeeded", process.succeeded),
        ("failed", process.failed),
        ("cancelled", process.cancelled),
    ] {
        let _ = writeln!(out, "easel_jobs{{status=\"{status}\"}} {n}");
    }
    engine.step_seconds.render(&mut out, "easel_step_seconds", "Seconds per denoising step.");
    engine.model_load_seconds.render(&mut out, "easel_model_load_seconds", "Seconds to load a model's sessions.");
    gauge(&mut out, "easel_models_loaded", "Models whose sessions are loaded.", engine.models_loaded.load(Ordering::Relaxed).to_string());
    gauge(&mut out, "easel_model_pulls_running", "Model downloads in progress.", process.pulls_running.to_string());
    gauge(&mut out, "easel_event_streams_open", "Server-sent event streams open.", process.event_streams_open.to_string());
    if let Some(bytes) = process.resident_memory_bytes {
        gauge(&mut out, "process_resident_memory_bytes", "Resident memory size in bytes.", bytes.to_string());
    }
    out
}

/// Physical memory, from `/proc/meminfo` (Linux); `None` elsewhere.
pub fn total_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory this process may use: the machine's, or less where its cgroup (v2 `memory.max` of
/// its group or any parent; v1 `memory.limit_in_bytes`) or its address-space limit (`ulimit -v`,
/// `prlimit --as`) caps it — a container's or a unit's limit is what an oversized job would hit.
pub fn memory_limit_bytes() -> Option<u64> {
    let total = total_memory_bytes()?;
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroups = read("/proc/self/cgroup").map(|text| cgroup_limits(&text, &|p| read(&p))).unwrap_or_default();
    let address_space = read("/proc/self/limits").and_then(|text| address_space_limit(&text));
    Some(cgroups.into_iter().chain(address_space).fold(total, u64::min))
}

/// The memory limits of the cgroups `/proc/self/cgroup` names, read through `read` (a path under
/// `/sys/fs/cgroup` to its text): v2's `memory.max` of the group and each parent, v1's
/// `memory.limit_in_bytes` (huge values there mean none).
fn cgroup_limits(self_cgroup: &str, read: &dyn Fn(String) -> Option<String>) -> Vec<u64> {
    let mut limits = Vec::new();
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
            continue;
        }
        if controllers.is_empty() {
            let mut dir = path.trim_end_matches('/').to_string();
            loop {
                if let Some(limit) = read(format!("/sys/fs/cgroup{dir}/memory.max")).and_then(|t| t.trim().parse::<u64>().ok()) {
                    limits.push(limit);
                }
                match dir.rfind('/') {
                    Some(i) if !dir.is_empty() => dir.truncate(i),
                    _ => break,
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let text = read(format!("/sys/fs/cgroup/memory{}/memory.limit_in_bytes", path.trim_end_matches('/')));
            if let Some(limit) = text.and_then(|t| t.trim().parse::<u64>().ok()).filter(|l| *l < 1 << 60) {
                limits.push(limit);
            }
        }
    }
    limits
}

/// The soft `Max address space` of `/proc/self/limits`, when it is not unlimited.
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_come_from_cgroups_and_the_address_space_limit() {
        let files = |path: String| -> Option<String> {
            match path.as_str() {
                "/sys/fs/cgroup/user.slice/job.scope/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/user.slice/memory.max" => Some("4294967296\n".into()),
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" => Some("2147483648\n".into()),
                "/sys/fs/cgroup/memory/unlimited/memory.limit_in_bytes" => Some("9223372036854771712\n".into()),
                _ => None,
            }
        };
        assert_eq!(cgroup_limits("0::/user.slice/job.scope\n", &files), vec![4294967296]);
        assert_eq!(cgroup_limits("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", &files), vec![2147483648]);
        assert_eq!(cgroup_limits("4:cpu,memory:/unlimited\n0::/../etc\n", &files), Vec::<u64>::new());
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         3000000000           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(3_000_000_000));
        assert_eq!(address_space_limit(&limits.replace("3000000000", "unlimited")), None);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "t", "help");
        assert!(out.contains("t_bucket{le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("t_bucket{le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("t_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("t_sum 3.65\nt_count 4\n"), "{out}");
    }
}
