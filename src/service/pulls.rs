//! Model pulls running in the background for the HTTP API and the UI: start one, watch its
//! progress, list recent ones. A second request for a repo and revision already being pulled
//! joins the running pull instead of starting another. Pulls live in memory: after a restart a
//! repeated pull resumes from the partial files in the hub cache.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::api::{PullState, PullStatus};
use crate::hub::pull::{pull, PullRequest};
use crate::hub::{HubClient, HubError};
use crate::model_registry::ModelRegistry;

/// Finished pulls kept for `GET /api/v1/models/pulls`.
const KEEP_FINISHED: usize = 20;
/// Pulls of different repos that may run at once; another is refused until one ends (joining a
/// running pull of the same repo is always allowed).
pub const MAX_RUNNING_PULLS: usize = 3;

/// Why [`PullManager::start`] did not start a pull.
#[derive(Debug)]
pub enum StartRefused {
    /// The spec or the hub said no.
    Hub(HubError),
    /// [`MAX_RUNNING_PULLS`] are running.
    Busy { running: usize },
}

pub struct PullManager {
    registry: ModelRegistry,
    endpoint: String,
    token: Option<String>,
    pulls: Mutex<VecDeque<Pull>>,
}

/// One pull: its status channel and the handle that stops its task.
struct Pull {
    status: Arc<watch::Sender<PullStatus>>,
    task: tokio::task::AbortHandle,
}

/// What cancelling a pull did.
#[derive(Debug, Clone, PartialEq)]
pub enum PullCancel {
    Cancelled(PullStatus),
    AlreadyFinished(PullStatus),
}

impl PullManager {
    pub fn new(registry: ModelRegistry, endpoint: String, token: Option<String>) -> Self {
        Self { registry, endpoint, token, pulls: Mutex::new(VecDeque::new()) }
    }

    /// Starts pulling `spec` (an alias or `org/name[@revision]`), or returns the pull of the same
    /// repo and revision that is already running. Only a bad spec fails here; everything else
    /// shows up in the status.
    pub fn start(&self, spec: &str) -> Result<PullStatus, StartRefused> {
        let request = PullRequest::parse(spec).map_err(StartRefused::Hub)?;
        let mut pulls = self.pulls.lock().expect("pulls lock");
        if let Some(running) = pulls.iter().find(|p| {
            let s = p.status.borrow();
            !s.finished() && s.repo_id == request.repo_id && s.revision == request.revision
        }) {
            return Ok(running.status.borrow().clone());
        }
        let running = pulls.iter().filter(|p| !p.status.borrow().finished()).count();
        if running >= MAX_RUNNING_PULLS {
            return Err(StartRefused::Busy { running });
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (sender, _) = watch::channel(PullStatus::new(id.clone(), request.repo_id.clone(), request.revision.clone()));
        let sender = Arc::new(sender);
        let first = sender.borrow().clone();
        // Spawned while the lock is held, so a cancel cannot find the pull without its handle.
        let task = tokio::spawn(run(self.registry.clone(), (self.endpoint.clone(), self.token.clone()), request, sender.clone(), id));
        pulls.push_back(Pull { status: sender, task: task.abort_handle() });
        while pulls.len() > KEEP_FINISHED && pulls.front().is_some_and(|p| p.status.borrow().finished()) {
            pulls.pop_front();
        }
        Ok(first)
    }

    /// Stops a running pull. Its partial files stay in the hub cache, so pulling again resumes.
    pub fn cancel(&self, id: &str) -> Option<PullCancel> {
        let pulls = self.pulls.lock().expect("pulls lock");
        let pull = pulls.iter().find(|p| p.status.borrow().id == id)?;
        let current = pull.status.borrow().clone();
        if current.finished() {
            return Some(PullCancel::AlreadyFinished(current));
        }
        pull.task.abort();
        pull.status.send_modify(|s| {
            s.state = PullState::Cancelled;
            s.error = Some("cancelled; the partial download stays in the cache, and pulling again resumes it".into());
        });
        tracing::info!(repo = %current.repo_id, "pull cancelled");
        let cancelled = pull.status.borrow().clone();
        Some(PullCancel::Cancelled(cancelled))
    }

    pub fn get(&self, id: &str) -> Option<PullStatus> {
        self.find(id).map(|p| p.borrow().clone())
    }

    pub fn watch(&self, id: &str) -> Option<watch::Receiver<PullStatus>> {
        self.find(id).map(|p| p.subscribe())
    }

    /// Recent pulls, newest first.
    pub fn list(&self) -> Vec<PullStatus> {
        self.pulls.lock().expect("pulls lock").iter().rev().map(|p| p.status.borrow().clone()).collect()
    }

    /// Pulls still running (for `/metrics`).
    pub fn running(&self) -> usize {
        self.pulls.lock().expect("pulls lock").iter().filter(|p| !p.status.borrow().finished()).count()
    }

    fn find(&self, id: &str) -> Option<Arc<watch::Sender<PullStatus>>> {
        self.pulls.lock().expect("pulls lock").iter().find(|p| p.status.borrow().id == id).map(|p| p.status.clone())
    }
}

async fn run(
    registry: ModelRegistry,
    (endpoint, token): (String, Option<String>),
    request: PullRequest,
    sender: Arc<watch::Sender<PullStatus>>,
    id: String,
) {
    tracing::info!(repo = %request.repo_id, revision = %request.revision, "pull started");
    let report = {
        let sender = sender.clone();
        let id = id.clone();
        Arc::new(move |status: &PullStatus| {
            let status = PullStatus { id: id.clone(), ..status.clone() };
            // A cancel may have ended the pull while a last report was on its way.
            sender.send_if_modified(|current| {
                if current.finished() {
                    return false;
                }
                *current = status;
                true
            });
        })
    };
    let outcome = async {
        let client = Arc::new(HubClient::new(&endpoint, token)?);
        let cache = Arc::new(registry.hub_cache().clone());
        pull(client, cache, &request, report).await
    }
    .await;
    match outcome {
        Ok(pulled) => {
            let (registry, record) = (registry.clone(), pulled.clone());
            let name = tokio::task::spawn_blocking(move || {
                if !record.already_cached {
                    if let Err(e) = registry.record_pull(&record.repo_id, &record.commit) {
                        tracing::warn!("{e}");
                    }
                }
                registry.find(&format!("{}@{}", record.repo_id, record.commit)).map(|m| m.name)
            })
            .await
            .ok()
            .flatten();
            tracing::info!(repo = %pulled.repo_id, downloaded = pulled.downloaded_bytes, offline = pulled.offline, "pull finished");
            sender.send_modify(|s| {
                s.state = PullState::Done;
                s.commit = Some(pulled.commit.clone());
                s.downloaded_bytes = pulled.downloaded_bytes;
                s.model = name;
                if pulled.offline {
                    s.error = Some("the hub could not be reached; using the copy already in the cache".into());
                }
            });
        }
        Err(e) => {
            tracing::warn!(repo = %request.repo_id, "pull failed: {e}");
            sender.send_modify(|s| {
                s.state = PullState::Failed;
                s.error = Some(e.explain(registry.models_dir()));
            });
        }
    }
}
