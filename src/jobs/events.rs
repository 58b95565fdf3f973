//! What the job system tells listeners: one [`JobEvent`] per change of a job, in the JSON shape
//! the SSE stream sends (`{"job_id": ..., "event": "progress", "step": 3, ...}`).
//!
//! Events are a live feed, not a record: the database is the record, and
//! [`super::JobQueue::snapshot`] turns it into the event a late listener needs first.

use serde::{Deserialize, Serialize};

use super::store::ImageRecord;

/// Where the outputs dir is served; an image's URL is this plus its relative path.
pub const OUTPUTS_URL_PREFIX: &str = "/outputs/";

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
    /// ahead of it moves (a job starts or a queued one is cancelled), for the first
    /// [`super::queue::POSITION_UPDATE_LIMIT`] waiting jobs.
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
    Succeeded { images: Vec<EventImage> },
    /// Finished without images; `error` says why in words for the user.
    Failed { error: String },
    /// Stopped at a user's request.
    Cancelled,
}

impl JobEventKind {
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

/// An image as events and the REST API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventImage {
    pub id: String,
    pub batch_index: u32,
    /// Where `GET /outputs/...` serves it.
    pub url: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
}

impl From<&ImageRecord> for EventImage {
    fn from(image: &ImageRecord) -> Self {
        Self {
            id: image.id.clone(),
            batch_index: image.batch_index,
            url: format!("{OUTPUTS_URL_PREFIX}{}", image.path),
            seed: image.seed,
            width: image.width,
            height: image.height,
        }
    }
}

/// Standard base64 with padding (RFC 4648 section 4), for previews inside JSON.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let group = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // Three bytes make four 6-bit symbols; a short chunk makes fewer and `=` fills the rest.
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(group >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        // RFC 4648 section 10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64_encode(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn events_serialize_with_their_name_in_the_event_field() {
        let event = JobEvent {
            job_id: "j1".into(),
            kind: JobEventKind::Progress { step: 3, total: 20, eta_seconds: Some(1.5), preview_png_base64: None },
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"job_id":"j1","event":"progress","step":3,"total":20,"eta_seconds":1.5}"#
        );
        let cancelled = JobEvent { job_id: "j1".into(), kind: JobEventKind::Cancelled };
        assert_eq!(serde_json::to_string(&cancelled).unwrap(), r#"{"job_id":"j1","event":"cancelled"}"#);
        let queued = JobEvent { job_id: "j2".into(), kind: JobEventKind::Queued { position: 0 } };
        let json = serde_json::to_string(&queued).unwrap();
        assert_eq!(json, r#"{"job_id":"j2","event":"queued","position":0}"#);
        assert_eq!(serde_json::from_str::<JobEvent>(&json).unwrap(), queued);
        assert_eq!(queued.kind.name(), "queued");
        assert!(!queued.kind.is_terminal() && cancelled.kind.is_terminal());
    }

    #[test]
    fn event_images_link_under_outputs() {
        let record = ImageRecord {
            id: "i".into(),
            job_id: "j".into(),
            batch_index: 1,
            path: "2025-01-31/j-1.png".into(),
            seed: 9,
            width: 512,
            height: 768,
            sha256: String::new(),
            infotext: String::new(),
            created_at_ms: 0,
        };
        let image = EventImage::from(&record);
        assert_eq!(image.url, "/outputs/2025-01-31/j-1.png");
        assert_eq!((image.seed, image.width, image.height, image.batch_index), (9, 512, 768, 1));
    }
}
