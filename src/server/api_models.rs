//! The model endpoints of REST API v1: list, show, delete, the default model, and background
//! pulls from the Hugging Face hub with progress over SSE. Each handler is one
//! [`crate::service::Easel`] call.

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

use super::{ApiError, AppState};
use crate::api::{AliasView, FieldError, ModelEntry, PullState, PullStatus};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(list))
        .route("/models/aliases", get(aliases))
        .route("/models/default", put(set_default))
        .route("/models/vae", put(set_vae))
        .route("/models/pull", post(start_pull))
        .route("/models/merge", post(merge))
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
        ApiError::unprocessable(vec![FieldError::new("model", format!("send {{\"model\": \"<name>\"}} ({})", e.body_text()))])
    })?;
    Ok(body.model)
}

/// `POST /api/v1/models/merge`: a new checkpoint from two (A1111's checkpoint merger); answers
/// when the file is written.
async fn merge(
    State(state): State<AppState>,
    json: Result<Json<crate::api::networks::MergeSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<crate::api::networks::MergeOutcome>), ApiError> {
    let Json(spec) = json.map_err(|e| ApiError::unprocessable(vec![FieldError::new("body", e.body_text())]))?;
    Ok((StatusCode::CREATED, Json(state.easel.merge_checkpoints(spec).await?)))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<ModelEntry>>, ApiError> {
    Ok(Json(state.easel.models().await?))
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ModelEntry>, ApiError> {
    Ok(Json(state.easel.model(&name).await?))
}

#[derive(Serialize)]
struct Removed {
    name: String,
    freed_bytes: u64,
}

async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Removed>, ApiError> {
    let freed_bytes = state.easel.remove_model(&name).await?;
    Ok(Json(Removed { name, freed_bytes }))
}

async fn set_default(
    State(state): State<AppState>,
    json: Result<Json<ModelBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ModelEntry>, ApiError> {
    let name = body(json)?;
    Ok(Json(state.easel.set_default(&name).await?))
}

/// `{"model": "...", "vae": "..." | null}`: the body of `PUT /api/v1/models/vae`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VaeChoice {
    model: String,
    #[serde(default)]
    vae: Option<String>,
}

async fn set_vae(
    State(state): State<AppState>,
    json: Result<Json<VaeChoice>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ModelEntry>, ApiError> {
    let Json(choice) = json.map_err(|e| {
        ApiError::unprocessable(vec![FieldError::new(
            "model",
            format!("send {{\"model\": \"<name>\", \"vae\": \"<vae>\" or null}} ({})", e.body_text()),
        )])
    })?;
    Ok(Json(state.easel.set_model_vae(&choice.model, choice.vae).await?))
}

async fn aliases(State(state): State<AppState>) -> Json<Vec<AliasView>> {
    Json(state.easel.aliases())
}

async fn start_pull(
    State(state): State<AppState>,
    json: Result<Json<ModelBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let spec = body(json)?;
    let status = state.easel.pull(&spec)?;
    let location = format!("/api/v1/models/pulls/{}", status.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(status)).into_response())
}

async fn pulls(State(state): State<AppState>) -> Json<Vec<PullStatus>> {
    Json(state.easel.pulls())
}

async fn pull_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PullStatus>, ApiError> {
    Ok(Json(state.easel.pull_status(&id)?))
}

async fn cancel_pull(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PullStatus>, ApiError> {
    Ok(Json(state.easel.cancel_pull(&id)?))
}

/// Server-Sent Events for one pull: `progress` events (at most ten a second), then one `done`,
/// `failed` or `cancelled` event, then the stream ends.
async fn pull_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.streams.admit(&extensions)?;
    let receiver = state.easel.watch_pull(&id)?;
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
            PullState::Done => "done",
            PullState::Failed => "failed",
            PullState::Cancelled => "cancelled",
            _ => "progress",
        };
        let event = Event::default().event(name).data(serde_json::to_string(&status).unwrap_or_default());
        Some((Ok(event), (receiver, false, finished)))
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
