//! The model endpoints of REST API v1: list, show, delete, the default model, and background
//! pulls from the Hugging Face hub with progress over SSE. Registry calls touch the disk, so
//! they run on the blocking pool.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::api_jobs::unprocessable;
use super::{ApiError, AppState};
use crate::hub::HubError;
use crate::model_registry::{ModelEntry, RegistryError};
use crate::pull_status::PullStatus;
use crate::request::FieldError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(list))
        .route("/models/aliases", get(aliases))
        .route("/models/default", put(set_default))
        .route("/models/pull", post(start_pull))
        .route("/models/pulls", get(pulls))
        .route("/models/pulls/{id}", get(pull_status).delete(cancel_pull))
        .route("/models/pulls/{id}/events", get(pull_events))
        .route("/models/{*name}", get(show).delete(remove))
}

/// `{"model": "..."}`: the body of pull and set-default.
#[derive(Deserialize)]
struct ModelBody {
    model: String,
}

fn body(json: Result<Json<ModelBody>, axum::extract::rejection::JsonRejection>) -> Result<String, ApiError> {
    let Json(body) = json.map_err(|e| {
        unprocessable(vec![FieldError { field: "model".into(), message: format!("send {{\"model\": \"<name>\"}} ({})", e.body_text()) }])
    })?;
    Ok(body.model)
}

fn registry_error(e: RegistryError) -> ApiError {
    let status = match e {
        RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
        RegistryError::NotOwned { .. } | RegistryError::DefaultFixed { .. } => StatusCode::CONFLICT,
        RegistryError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

async fn on_registry<T: Send + 'static>(state: &AppState, f: impl FnOnce(&crate::model_registry::ModelRegistry) -> Result<T, RegistryError> + Send + 'static) -> Result<T, ApiError> {
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || f(&registry))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal task failed: {e}")))?
        .map_err(registry_error)
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<ModelEntry>>, ApiError> {
    on_registry(&state, |r| Ok(r.list())).await.map(Json)
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ModelEntry>, ApiError> {
    on_registry(&state, move |r| r.resolve(Some(&name))).await.map(Json)
}

#[derive(Serialize)]
struct Removed {
    name: String,
    freed_bytes: u64,
}

async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Removed>, ApiError> {
    on_registry(&state, move |r| {
        let freed_bytes = r.remove(&name)?;
        Ok(Removed { name, freed_bytes })
    })
    .await
    .map(Json)
}

async fn set_default(State(state): State<AppState>, json: Result<Json<ModelBody>, axum::extract::rejection::JsonRejection>) -> Result<Json<ModelEntry>, ApiError> {
    let name = body(json)?;
    on_registry(&state, move |r| r.set_default(&name)).await.map(Json)
}

#[derive(Serialize)]
struct AliasView {
    name: &'static str,
    repo_id: &'static str,
    revision: &'static str,
    description: &'static str,
}

async fn aliases() -> Json<Vec<AliasView>> {
    Json(
        crate::hub::pull::ALIASES
            .iter()
            .map(|a| AliasView { name: a.name, repo_id: a.repo_id, revision: a.revision, description: a.description })
            .collect(),
    )
}

async fn start_pull(State(state): State<AppState>, json: Result<Json<ModelBody>, axum::extract::rejection::JsonRejection>) -> Result<Response, ApiError> {
    let spec = body(json)?;
    let status = state.pulls.start(&spec).map_err(|e| match e {
        HubError::BadName { .. } => unprocessable(vec![FieldError { field: "model".into(), message: e.to_string() }]),
        other => ApiError::new(StatusCode::BAD_GATEWAY, other.to_string()),
    })?;
    let location = format!("/api/v1/models/pulls/{}", status.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(status)).into_response())
}

async fn pulls(State(state): State<AppState>) -> Json<Vec<PullStatus>> {
    Json(state.pulls.list())
}

async fn pull_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PullStatus>, ApiError> {
    state.pulls.get(&id).map(Json).ok_or_else(|| ApiError::not_found(format!("no pull {id}")))
}

async fn cancel_pull(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PullStatus>, ApiError> {
    use crate::server::pulls::PullCancel;
    match state.pulls.cancel(&id) {
        Some(PullCancel::Cancelled(status)) => Ok(Json(status)),
        Some(PullCancel::AlreadyFinished(status)) => Err(ApiError::new(StatusCode::CONFLICT, format!("pull {id} already ended ({:?})", status.state).to_lowercase())),
        None => Err(ApiError::not_found(format!("no pull {id}"))),
    }
}

/// Server-Sent Events for one pull: `progress` events (at most ten a second), then one `done`,
/// `failed` or `cancelled` event, then the stream ends.
async fn pull_events(State(state): State<AppState>, Path(id): Path<String>) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let receiver = state.pulls.watch(&id).ok_or_else(|| ApiError::not_found(format!("no pull {id}")))?;
    let stream = futures::stream::unfold((receiver, true, false), |(mut receiver, first, done)| async move {
        if done {
            return None;
        }
        if !first && receiver.changed().await.is_err() {
            return None;
        }
        let status = receiver.borrow_and_update().clone();
        let finished = status.finished();
        let name = match status.state {
            crate::pull_status::PullState::Done => "done",
            crate::pull_status::PullState::Failed => "failed",
            crate::pull_status::PullState::Cancelled => "cancelled",
            _ => "progress",
        };
        let event = Event::default().event(name).data(serde_json::to_string(&status).unwrap_or_default());
        Some((Ok(event), (receiver, false, finished)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
