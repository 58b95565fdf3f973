//! The generation endpoints of REST API v1: submit, read, cancel, history, live events (SSE),
//! and image deletion. Each handler translates HTTP to one [`crate::service::Easel`] call and
//! its error to an [`ApiError`].

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
use crate::api::{FieldError, GenerateRequest, HistoryPage, JobStatus, JobView};
use crate::service::{Cancelled, HistoryQuery};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/generate", get(history).post(submit))
        .route("/generate/{id}", get(job).delete(cancel))
        .route("/generate/{id}/events", get(events))
        .route("/images/{id}", delete(delete_image))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The body of a 202 to `POST /generate`.
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
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}")))?;
    let request = GenerateRequest::from_json(&value).map_err(ApiError::unprocessable)?;
    // A header that is not text is passed on as an empty key, which the service refuses by name.
    let key = headers.get("idempotency-key").map(|v| v.to_str().unwrap_or_default().to_string());
    let submitted = state.easel.submit(request, key).await?;
    let code = if submitted.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let job = submitted.job;
    let location = format!("/api/v1/generate/{}", job.id);
    let body = Submitted { id: job.id, status: job.status, position: job.position };
    Ok((code, [(header::LOCATION, location)], Json(body)).into_response())
}

async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    Ok(Json(state.easel.job(&id).await?))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (code, status) = match state.easel.cancel(&id).await? {
        Cancelled::Now => (StatusCode::OK, "cancelled"),
        Cancelled::Requested => (StatusCode::ACCEPTED, "cancelling"),
    };
    Ok((code, Json(serde_json::json!({ "id": id, "status": status }))).into_response())
}

#[derive(Deserialize)]
struct HistoryParams {
    limit: Option<String>,
    before: Option<String>,
    /// Only jobs whose prompt contains this text (case-insensitive for ASCII).
    q: Option<String>,
}

async fn history(State(state): State<AppState>, Query(q): Query<HistoryParams>) -> Result<Json<HistoryPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(s) => s.parse::<u32>().unwrap_or_else(|_| {
            errors.push(FieldError::new("limit", format!("limit must be a whole number, got {s:?}")));
            0
        }),
    };
    let before = match q.before.as_deref() {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(FieldError::new("before", format!("before must be a cursor from next_before, got {s:?}")));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    Ok(Json(state.easel.history(HistoryQuery { limit, before, prompt: q.q }).await?))
}

async fn delete_image(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.easel.delete_image(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Server-Sent Events for one job: its current state first, then every change until it ends.
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.streams.admit(&extensions)?;
    let (first, receiver) = state.easel.watch(&id).await?;
    let easel = state.easel.clone();
    let stream = futures::stream::unfold((Some(first), Some(receiver), false), move |(pending, receiver, done)| {
        let easel = easel.clone();
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
                        let (event, fresh) = easel.watch(&id).await.ok()?;
                        let terminal = event.kind.is_terminal();
                        return Some((Ok(to_sse(&event)), (None, Some(fresh), terminal)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    // Ends when the server stops, so a graceful shutdown does not wait on open streams; holds its
    // place among the open streams until then.
    let stream = futures::StreamExt::take_until(stream, state.easel.stopped());
    let stream = futures::StreamExt::map(stream, move |event| {
        let _held = &permit;
        event
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(event: &crate::api::JobEvent) -> Event {
    Event::default().event(event.kind.name()).data(serde_json::to_string(event).unwrap_or_default())
}
