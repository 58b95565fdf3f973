//! A generation job on the wire: its status, the one view of a job and of an image that the REST
//! API, the server functions and the browser all use, the history page, and the live
//! [`JobEvent`]s the SSE stream sends (`{"job_id": ..., "event": "progress", "step": 3, ...}`).

use serde::{Deserialize, Serialize};

use super::request::GenerationSettings;

/// Where the outputs dir is served; an image's URL is this, a slash, and its relative path.
pub const OUTPUTS_URL_PREFIX: &str = "/outputs";

/// The URL of the image stored at `relative_path` (relative to the outputs dir, `/`-separated).
pub fn image_url(relative_path: &str) -> String {
    format!("{OUTPUTS_URL_PREFIX}/{relative_path}")
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Succeeded, failed or cancelled: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generated image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageView {
    pub id: String,
    /// Position in the job's batch (0-based).
    pub batch_index: u32,
    /// Where `GET /outputs/...` serves it (see [`image_url`]).
    pub url: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// The A1111 parameters text embedded in the PNG.
    pub infotext: String,
}

/// How far a job has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    /// Steps done (1-based once the first finished; 0 before).
    pub step: u32,
    pub total: u32,
    /// Time the remaining steps should take at the pace so far, while running.
    pub eta_seconds: Option<f64>,
}

/// One job: what `GET /api/v1/generate/{id}` returns and every page of the UI shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub status: JobStatus,
    /// Jobs that run before this one (0 = next), while queued.
    pub position: Option<u64>,
    pub progress: ProgressView,
    /// The settings it runs with: every default filled in and the seed chosen.
    pub request: GenerationSettings,
    /// Empty unless it succeeded.
    pub images: Vec<ImageView>,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// One change to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: String,
    #[serde(flatten)]
    pub kind: JobEventKind,
}

/// What changed. Serialized with its name in `event`, the rest of the fields beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEventKind {
    /// Waiting; `position` jobs run before it (0 = next). Sent on submit and whenever the queue
    /// ahead of it moves (a job starts or a queued one is cancelled), for the first waiting jobs.
    Queued { position: u64 },
    /// The worker claimed it.
    Started,
    /// A step finished. `step` is 1-based and reaches `total`; `eta_seconds` is the time the
    /// remaining steps should take at the pace so far (absent until two steps were timed);
    /// `preview_png_base64` is a small preview when the executor made one.
    Progress {
        step: u32,
        total: u32,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        eta_seconds: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        preview_png_base64: Option<String>,
    },
    /// Finished; its images are on disk and recorded.
    Succeeded { images: Vec<ImageView> },
    /// Finished without images; `error` says why in words for the user.
    Failed { error: String },
    /// Stopped at a user's request.
    Cancelled,
}

impl JobEventKind {
    /// Every event name, as in the JSON `event` field and the SSE `event:` line.
    pub const NAMES: [&'static str; 6] = ["queued", "started", "progress", "succeeded", "failed", "cancelled"];
    /// The names after which nothing more is sent for a job.
    pub const TERMINAL_NAMES: [&'static str; 3] = ["succeeded", "failed", "cancelled"];

    /// The event's name, as in its JSON `event` field (and the SSE `event:` line).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Started => "started",
            Self::Progress { .. } => "progress",
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// After this event nothing more is sent for the job; a stream can end.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded { .. } | Self::Failed { .. } | Self::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_name_in_the_event_field() {
        let event = JobEvent {
            job_id: "j1".into(),
            kind: JobEventKind::Progress { step: 3, total: 20, eta_seconds: Some(1.5), preview_png_base64: None },
        };
        assert_eq!(serde_json::to_string(&event).unwrap(), r#"{"job_id":"j1","event":"progress","step":3,"total":20,"eta_seconds":1.5}"#);
        let cancelled = JobEvent { job_id: "j1".into(), kind: JobEventKind::Cancelled };
        assert_eq!(serde_json::to_string(&cancelled).unwrap(), r#"{"job_id":"j1","event":"cancelled"}"#);
        let queued = JobEvent { job_id: "j2".into(), kind: JobEventKind::Queued { position: 0 } };
        let json = serde_json::to_string(&queued).unwrap();
        assert_eq!(json, r#"{"job_id":"j2","event":"queued","position":0}"#);
        assert_eq!(serde_json::from_str::<JobEvent>(&json).unwrap(), queued);
        assert!(!queued.kind.is_terminal() && cancelled.kind.is_terminal());
    }

    #[test]
    fn every_event_name_is_listed_and_terminal_ones_marked() {
        let image = ImageView {
            id: "i".into(),
            batch_index: 0,
            url: image_url("d/j-0.png"),
            seed: 1,
            width: 8,
            height: 8,
            infotext: String::new(),
        };
        let kinds = [
            JobEventKind::Queued { position: 1 },
            JobEventKind::Started,
            JobEventKind::Progress { step: 1, total: 2, eta_seconds: None, preview_png_base64: None },
            JobEventKind::Succeeded { images: vec![image] },
            JobEventKind::Failed { error: "x".into() },
            JobEventKind::Cancelled,
        ];
        let names: Vec<&str> = kinds.iter().map(JobEventKind::name).collect();
        assert_eq!(names, JobEventKind::NAMES);
        let terminal: Vec<&str> = kinds.iter().filter(|k| k.is_terminal()).map(JobEventKind::name).collect();
        assert_eq!(terminal, JobEventKind::TERMINAL_NAMES);
        for kind in kinds {
            let json = serde_json::to_value(JobEvent { job_id: "j".into(), kind: kind.clone() }).unwrap();
            assert_eq!(json["event"], kind.name());
        }
    }

    #[test]
    fn image_urls_sit_under_the_outputs_prefix() {
        assert_eq!(image_url("2025-01-31/j-1.png"), "/outputs/2025-01-31/j-1.png");
        assert_eq!(JobStatus::parse("running"), Some(JobStatus::Running));
        assert_eq!(serde_json::to_string(&JobStatus::Cancelled).unwrap(), r#""cancelled""#);
    }
}
