//! The generation endpoints of REST API v1: submit, read, cancel, history, live events (SSE),
//! and image deletion. Handlers only translate HTTP to [`crate::jobs::JobQueue`] calls; every
//! database call runs on the blocking pool.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::jobs::{CancelOutcome, EventImage, JobRecord, JobStatus, StoreError};
use crate::request::{FieldError, GenerateRequest, GenerationSettings};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Largest history page.
pub const MAX_PAGE: u32 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/generate", get(history).post(submit))
        .route("/generate/{id}", get(job).delete(cancel))
        .route("/generate/{id}/events", get(events))
        .route("/images/{id}", delete(delete_image))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct JobView {
    pub id: String,
    pub status: JobStatus,
    pub position: Option<u64>,
    pub progress: ProgressView,
    pub request: GenerationSettings,
    pub images: Vec<EventImage>,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct ProgressView {
    pub step: u32,
    pub total: u32,
    pub eta_seconds: Option<f64>,
}

fn view(state: &AppState, job: JobRecord) -> JobView {
    let live = state.jobs.live_progress(&job.id);
    let progress = match live {
        Some(p) => ProgressView { step: p.step, total: p.total, eta_seconds: p.eta_seconds },
        None => ProgressView { step: job.progress_step, total: job.progress_total, eta_seconds: None },
    };
    JobView {
        images: job.images.iter().map(EventImage::from).collect(),
        id: job.id,
        status: job.status,
        position: job.position,
        progress,
        request: job.settings,
        error: job.error,
        created_at_ms: job.created_at_ms,
        started_at_ms: job.started_at_ms,
        finished_at_ms: job.finished_at_ms,
    }
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!("job store: {e}");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the job database is not available: {e}"))
}

/// Runs blocking job-store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal task failed: {e}")))?
        .map_err(store_error)
}

pub(crate) fn unprocessable(errors: Vec<FieldError>) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "the request has invalid fields");
    e.fields = errors.into_iter().map(|f| FieldError { field: f.field, message: f.message }).collect();
    e
}

/// Validates a request body against the settings rules and the model list. One implementation
/// for both doors: the REST API and the UI's server functions call it.
pub fn resolve_request(state: &AppState, request: &GenerateRequest) -> Result<GenerationSettings, Vec<FieldError>> {
    let mut settings = request.resolve(crate::request::random_seed)?;
    // Aliases and the default resolve now, so the job records the exact model it ran on.
    let entry = state.registry.resolve(settings.model.as_deref()).map_err(|e| vec![FieldError { field: "model".into(), message: e.to_string() }])?;
    settings.model = Some(entry.name);
    Ok(settings)
}

#[derive(Serialize)]
struct Submitted {
    id: String,
    status: JobStatus,
    position: Option<u64>,
}

async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?} is not supported; send application/json"),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}")))?;
    let request = GenerateRequest::from_json(&value).map_err(unprocessable)?;
    let settings = resolve_request(&state, &request).map_err(unprocessable)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_string()),
            _ => {
                let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "the request has invalid fields");
                e.fields.push(FieldError {
                    field: "Idempotency-Key".into(),
                    message: format!("must be 1..{MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
                });
                return Err(e);
            }
        },
    };
    let jobs = state.jobs.clone();
    let submitted = blocking(move || jobs.submit(&settings, key.as_deref())).await?;
    let code = if submitted.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let job = submitted.job;
    let location = format!("/api/v1/generate/{}", job.id);
    let body = Submitted { id: job.id, status: job.status, position: job.position };
    Ok((code, [(header::LOCATION, location)], Json(body)).into_response())
}

async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    let store = state.jobs.store().clone();
    let lookup = id.clone();
    let job = blocking(move || store.get(&lookup)).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    Ok(Json(view(&state, job)))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jobs = state.jobs.clone();
    let lookup = id.clone();
    let outcome = blocking(move || jobs.cancel(&lookup)).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let (code, status) = match outcome {
        CancelOutcome::Cancelled => (StatusCode::OK, "cancelled"),
        CancelOutcome::CancelRequested => (StatusCode::ACCEPTED, "cancelling"),
        CancelOutcome::AlreadyFinished(s) => {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("job {id} already finished ({})", serde_json::to_string(&s).unwrap_or_default().trim_matches('"'))));
        }
    };
    Ok((code, Json(serde_json::json!({ "id": id, "status": status }))).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
    before: Option<String>,
    /// Only jobs whose prompt contains this text (case-insensitive for ASCII).
    q: Option<String>,
}

#[derive(Serialize)]
struct HistoryPage {
    jobs: Vec<JobView>,
    next_before: Option<i64>,
}

async fn history(State(state): State<AppState>, Query(q): Query<HistoryQuery>) -> Result<Json<HistoryPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                errors.push(FieldError { field: "limit".into(), message: format!("limit must be 1..{MAX_PAGE}, got {s:?}") });
                0
            }
        },
    };
    let before = match q.before.as_deref() {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(FieldError { field: "before".into(), message: format!("before must be a cursor from next_before, got {s:?}") });
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    let store = state.jobs.store().clone();
    let prompt = q.q;
    let page = blocking(move || store.list_matching(limit, before, prompt.as_deref())).await?;
    Ok(Json(HistoryPage { jobs: page.jobs.into_iter().map(|j| view(&state, j)).collect(), next_before: page.next_before }))
}

/// Deletes an image's record, then its file; `false` if there is no such image. The one
/// implementation behind `DELETE /api/v1/images/{id}` and the UI's `delete_image`.
pub async fn delete_image_and_file(state: &AppState, id: String) -> Result<bool, ApiError> {
    let store = state.jobs.store().clone();
    let deleted = blocking(move || store.delete_image(&id)).await?;
    let Some(path) = deleted else { return Ok(false) };
    let file = state.settings.outputs_dir.join(path);
    if let Err(e) = tokio::fs::remove_file(&file).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %file.display(), "image record deleted but the file stays: {e}");
        }
    }
    Ok(true)
}

async fn delete_image(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match delete_image_and_file(&state, id.clone()).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!("no image {id}"))),
    }
}

/// Server-Sent Events for one job: its current state first, then every change until it ends.
async fn events(State(state): State<AppState>, Path(id): Path<String>) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let jobs = state.jobs.clone();
    let lookup = id.clone();
    let (first, receiver) = blocking(move || jobs.watch(&lookup)).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let jobs = state.jobs.clone();
    let stream = futures::stream::unfold(
        (Some(first), Some(receiver), false),
        move |(pending, receiver, done)| {
            let jobs = jobs.clone();
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                if let Some(event) = pending {
                    let terminal = event.kind.is_terminal();
                    return Some((Ok(to_sse(&event)), (None, receiver, terminal)));
                }
                let mut receiver = receiver?;
                loop {
                    match receiver.recv().await {
                        Ok(event) if event.job_id == id => {
                            let terminal = event.kind.is_terminal();
                            return Some((Ok(to_sse(&event)), (None, Some(receiver), terminal)));
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Fell behind: resynchronise from the current state.
                            let lookup = id.clone();
                            let watched = tokio::task::spawn_blocking(move || jobs.watch(&lookup)).await.ok()?.ok()??;
                            let (event, fresh) = watched;
                            let terminal = event.kind.is_terminal();
                            return Some((Ok(to_sse(&event)), (None, Some(fresh), terminal)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(event: &crate::jobs::JobEvent) -> Event {
    Event::default().event(event.kind.name()).data(serde_json::to_string(event).unwrap_or_default())
}
