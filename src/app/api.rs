//! The UI's RPC: plain data types shared by the server and the browser, and the server functions
//! the pages call. Each server function is a thin door onto the same services the REST API uses
//! (`crate::server::resolve_request`, the job queue), so both doors behave the same.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

use crate::request::{FieldError, GenerateRequest, GenerationSettings};

/// One image as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRef {
    pub id: String,
    pub url: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// The A1111 parameters text embedded in the PNG.
    pub infotext: String,
}

/// One job as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub position: Option<u64>,
    pub step: u32,
    pub total: u32,
    pub settings: GenerationSettings,
    pub images: Vec<ImageRef>,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub jobs: Vec<JobSummary>,
    /// Cursor for the next (older) page.
    pub next_before: Option<i64>,
}

/// A model the UI can offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub precision: String,
    pub source: String,
    pub size_bytes: u64,
    pub is_default: bool,
    pub aliases: Vec<String>,
    /// Whether Easel may delete it (models dir folders, hub snapshots Easel pulled).
    pub removable: bool,
    pub path: String,
}

/// A short name for a known-good hub repository, offered on the Models page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasSummary {
    pub name: String,
    pub target: String,
    pub description: String,
}

/// What submitting the form gave: a queued job, or the fields to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubmitOutcome {
    Queued { id: String, position: Option<u64>, settings: GenerationSettings },
    Invalid(Vec<FieldError>),
}

#[cfg(feature = "ssr")]
fn state() -> Result<crate::server::AppState, ServerFnError> {
    use_context::<crate::server::AppState>().ok_or_else(|| ServerFnError::new("server state is missing"))
}

/// The server's job-store runner, with its error as a server-function error.
#[cfg(feature = "ssr")]
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::jobs::StoreError> + Send + 'static,
) -> Result<T, ServerFnError> {
    crate::server::blocking(f).await.map_err(|e| ServerFnError::new(e.message))
}

#[cfg(feature = "ssr")]
fn summary(job: crate::jobs::JobRecord) -> JobSummary {
    JobSummary {
        images: job
            .images
            .iter()
            .map(|i| ImageRef {
                id: i.id.clone(),
                url: format!("/outputs/{}", i.path),
                seed: i.seed,
                width: i.width,
                height: i.height,
                infotext: i.infotext.clone(),
            })
            .collect(),
        status: serde_json::to_value(job.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        id: job.id,
        position: job.position,
        step: job.progress_step,
        total: job.progress_total,
        settings: job.settings,
        error: job.error,
        created_at_ms: job.created_at_ms,
        started_at_ms: job.started_at_ms,
        finished_at_ms: job.finished_at_ms,
    }
}

#[server(prefix = "/api/ui", endpoint = "submit", input = Json)]
pub async fn submit_generation(request: GenerateRequest) -> Result<SubmitOutcome, ServerFnError> {
    let state = state()?;
    let settings = match crate::server::resolve_request(&state, &request) {
        Ok(s) => s,
        Err(fields) => return Ok(SubmitOutcome::Invalid(fields)),
    };
    let jobs = state.jobs.clone();
    let queued = settings.clone();
    let submitted = blocking(move || jobs.submit(&queued, None)).await?;
    Ok(SubmitOutcome::Queued { id: submitted.job.id, position: submitted.job.position, settings })
}

#[server(prefix = "/api/ui", endpoint = "history", input = Json)]
pub async fn list_history(limit: u32, before: Option<i64>, prompt: Option<String>) -> Result<HistoryPage, ServerFnError> {
    let state = state()?;
    let store = state.jobs.store().clone();
    let page = blocking(move || store.list_matching(limit.clamp(1, 100), before, prompt.as_deref())).await?;
    Ok(HistoryPage { jobs: page.jobs.into_iter().map(summary).collect(), next_before: page.next_before })
}

/// Queued and running jobs in run order (the Queue page, and the job cards a reload restores).
#[server(prefix = "/api/ui", endpoint = "active_jobs", input = Json)]
pub async fn list_active_jobs() -> Result<Vec<JobSummary>, ServerFnError> {
    let store = state()?.jobs.store().clone();
    Ok(blocking(move || store.active(500)).await?.into_iter().map(summary).collect())
}

#[server(prefix = "/api/ui", endpoint = "job", input = Json)]
pub async fn get_job(id: String) -> Result<Option<JobSummary>, ServerFnError> {
    let store = state()?.jobs.store().clone();
    Ok(blocking(move || store.get(&id)).await?.map(summary))
}

#[server(prefix = "/api/ui", endpoint = "cancel", input = Json)]
pub async fn cancel_job(id: String) -> Result<(), ServerFnError> {
    let jobs = state()?.jobs.clone();
    blocking(move || jobs.cancel(&id)).await?;
    Ok(())
}

#[server(prefix = "/api/ui", endpoint = "delete_image", input = Json)]
pub async fn delete_image(id: String) -> Result<(), ServerFnError> {
    crate::server::delete_image_and_file(&state()?, id).await.map_err(|e| ServerFnError::new(e.message))?;
    Ok(())
}

#[server(prefix = "/api/ui", endpoint = "models", input = Json)]
pub async fn list_models() -> Result<Vec<ModelSummary>, ServerFnError> {
    let registry = state()?.registry.clone();
    let models = tokio::task::spawn_blocking(move || registry.list()).await.map_err(ServerFnError::new)?;
    Ok(models
        .into_iter()
        .map(|m| ModelSummary {
            name: m.name,
            precision: m.precision,
            source: m.source,
            size_bytes: m.size_bytes,
            is_default: m.is_default,
            aliases: m.aliases,
            removable: m.removable,
            path: m.path.display().to_string(),
        })
        .collect())
}

#[server(prefix = "/api/ui", endpoint = "model_aliases", input = Json)]
pub async fn model_aliases() -> Result<Vec<AliasSummary>, ServerFnError> {
    Ok(crate::hub::pull::ALIASES
        .iter()
        .map(|a| AliasSummary { name: a.name.into(), target: format!("{}@{}", a.repo_id, a.revision), description: a.description.into() })
        .collect())
}

/// Starts a background pull; `Err` carries a message for the form (a bad name).
#[server(prefix = "/api/ui", endpoint = "pull_model", input = Json)]
pub async fn pull_model(model: String) -> Result<Result<crate::pull_status::PullStatus, String>, ServerFnError> {
    Ok(state()?.pulls.start(&model).map_err(|e| e.to_string()))
}

/// Stops a running pull (no-op when it already ended).
#[server(prefix = "/api/ui", endpoint = "cancel_pull", input = Json)]
pub async fn cancel_pull(id: String) -> Result<(), ServerFnError> {
    state()?.pulls.cancel(&id);
    Ok(())
}

#[server(prefix = "/api/ui", endpoint = "model_pulls", input = Json)]
pub async fn list_pulls() -> Result<Vec<crate::pull_status::PullStatus>, ServerFnError> {
    Ok(state()?.pulls.list())
}

#[server(prefix = "/api/ui", endpoint = "set_default_model", input = Json)]
pub async fn set_default_model(name: String) -> Result<(), ServerFnError> {
    let registry = state()?.registry.clone();
    tokio::task::spawn_blocking(move || registry.set_default(&name)).await.map_err(ServerFnError::new)?.map_err(ServerFnError::new)?;
    Ok(())
}

/// Deletes a model Easel owns; returns the bytes freed.
#[server(prefix = "/api/ui", endpoint = "delete_model", input = Json)]
pub async fn delete_model(name: String) -> Result<u64, ServerFnError> {
    let registry = state()?.registry.clone();
    tokio::task::spawn_blocking(move || registry.remove(&name)).await.map_err(ServerFnError::new)?.map_err(ServerFnError::new)
}
