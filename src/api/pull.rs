//! The progress of one model pull, as the server streams it over SSE and the browser and CLI
//! show it. Shared by the server and the wasm build, so it holds data only.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    /// Asking the hub for the file list and each file's metadata.
    Resolving,
    Downloading,
    Done,
    Failed,
    /// Stopped by a user; the partial files stay in the cache for the next pull to resume.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Waiting,
    Downloading,
    Verifying,
    /// Already in the cache (this pull or another tool fetched it before): nothing downloaded.
    Cached,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullFile {
    pub path: String,
    pub size: u64,
    /// Bytes on disk so far (a resumed download starts above zero).
    pub done: u64,
    pub state: FileState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullStatus {
    /// Set by the server for background pulls; empty on the command line.
    pub id: String,
    pub repo_id: String,
    pub revision: String,
    pub commit: Option<String>,
    pub state: PullState,
    pub files: Vec<PullFile>,
    pub total_bytes: u64,
    pub done_bytes: u64,
    /// Bytes fetched over the network by this pull (0 when everything was cached).
    pub downloaded_bytes: u64,
    /// The registry name to put in a generate request, once done.
    pub model: Option<String>,
    /// What went wrong, in words a user can act on.
    pub error: Option<String>,
}

impl PullStatus {
    pub fn new(id: String, repo_id: String, revision: String) -> Self {
        Self {
            id,
            repo_id,
            revision,
            commit: None,
            state: PullState::Resolving,
            files: Vec::new(),
            total_bytes: 0,
            done_bytes: 0,
            downloaded_bytes: 0,
            model: None,
            error: None,
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self.state, PullState::Done | PullState::Failed | PullState::Cancelled)
    }

    /// 0.0 ..= 1.0 over all bytes.
    pub fn fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            if self.state == PullState::Done {
                1.0
            } else {
                0.0
            }
        } else {
            self.done_bytes as f64 / self.total_bytes as f64
        }
    }
}

/// `999 B`, `19.4 MB`, `3.4 GB`: decimal units, as disks and the hub's pages count.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(3_440_000_000), "3.4 GB");
        assert_eq!(human_bytes(19_400_000), "19.4 MB");
    }

    #[test]
    fn fraction_covers_empty_and_finished_pulls() {
        let mut s = PullStatus::new("id".into(), "a/b".into(), "main".into());
        assert_eq!(s.fraction(), 0.0);
        s.total_bytes = 200;
        s.done_bytes = 50;
        assert_eq!(s.fraction(), 0.25);
        s.total_bytes = 0;
        s.state = PullState::Done;
        assert_eq!(s.fraction(), 1.0);
    }
}
