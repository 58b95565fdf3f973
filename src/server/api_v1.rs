//! REST API v1 handlers (`/api/v1/...`): JSON in, JSON out, errors as [`ApiError`].

use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::api::prompt::EmbeddingView;
use crate::api::{PromptTokens, Sampler, Schedule};
use crate::config::Settings;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/config", get(config))
        .route("/samplers", get(samplers))
        .route("/schedules", get(schedules))
        .route("/prompt/tokens", get(prompt_tokens))
        .route("/embeddings", get(embeddings))
        .route("/loras", get(loras))
        .route("/vaes", get(vaes))
        .merge(super::api_models::router())
        .route("/openapi.json", get(|| async { Json(super::openapi::document()) }))
        .merge(super::api_jobs::router())
        .merge(super::api_uploads::router())
        .fallback(not_found)
}

/// Liveness is implied by answering; readiness needs ONNX Runtime loaded and the models dir readable.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    onnxruntime: Check,
    models_dir: Check,
}

#[derive(Serialize)]
struct Check {
    ok: bool,
    detail: String,
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    // Health answers without a token; with one configured it names no file system path (the
    // config endpoint, behind the token, shows them).
    let paths = state.easel.settings().api_token.is_none();
    let onnxruntime = match state.easel.runtime() {
        Ok(rt) if paths => Check { ok: true, detail: format!("{} at {}", rt.version, rt.library.display()) },
        Ok(rt) => Check { ok: true, detail: rt.version.to_string() },
        Err(_) if !paths => Check { ok: false, detail: "the ONNX Runtime library did not load; see the server's log".into() },
        Err(e) => Check { ok: false, detail: e.to_string() },
    };
    let dir = &state.easel.settings().models_dir;
    let models_dir = match std::fs::read_dir(dir) {
        Ok(_) if paths => Check { ok: true, detail: dir.display().to_string() },
        Ok(_) => Check { ok: true, detail: "readable".into() },
        Err(e) if paths => Check { ok: false, detail: format!("cannot read models dir {}: {e}", dir.display()) },
        Err(_) => Check { ok: false, detail: "the models dir cannot be read; see the server's log".into() },
    };
    let ready = onnxruntime.ok && models_dir.ok;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Health { status: if ready { "ready" } else { "unavailable" }, version: env!("CARGO_PKG_VERSION"), onnxruntime, models_dir };
    (code, Json(body))
}

/// The effective settings. There are no secrets among them yet; when there are, they are redacted here.
async fn config(State(state): State<AppState>) -> Json<Settings> {
    Json(state.easel.settings().clone())
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no API endpoint at {}; see /api/v1/openapi.json", uri.path()))
}

#[derive(Serialize)]
struct SamplerInfo {
    name: Sampler,
    /// The name AUTOMATIC1111 shows for it.
    a1111_name: &'static str,
    /// ComfyUI's `sampler_name`, where ComfyUI has it.
    comfyui_name: Option<&'static str>,
    /// Its default schedule and schedules in the first mode that runs it (the diffusers mode
    /// for diffusers' samplers, as this list gave them before compatibility modes).
    default_schedule: Schedule,
    schedules: Vec<Schedule>,
    /// Per compatibility mode that runs it: its default schedule and every schedule it can run.
    modes: Vec<SamplerMode>,
}

#[derive(Serialize)]
struct SamplerMode {
    compat: crate::api::Compat,
    default_schedule: Schedule,
    schedules: Vec<Schedule>,
}

/// `GET /api/v1/samplers`: every sampler with both tools' names, and which schedules each
/// compatibility mode runs it with.
async fn samplers() -> Json<Vec<SamplerInfo>> {
    Json(
        Sampler::ALL
            .into_iter()
            .map(|sampler| {
                let modes: Vec<SamplerMode> = crate::api::Compat::ALL
                    .into_iter()
                    .filter(|c| sampler.runs_in(*c))
                    .map(|compat| SamplerMode {
                        compat,
                        default_schedule: sampler.default_schedule(compat),
                        schedules: sampler.schedules(compat),
                    })
                    .collect();
                SamplerInfo {
                    name: sampler,
                    a1111_name: sampler.a1111_name(),
                    comfyui_name: sampler.comfyui_name(),
                    default_schedule: modes.first().map_or(Schedule::Default, |m| m.default_schedule),
                    schedules: modes.first().map(|m| m.schedules.clone()).unwrap_or_default(),
                    modes,
                }
            })
            .collect(),
    )
}

#[derive(Serialize)]
struct ScheduleInfo {
    name: Schedule,
    /// A1111's `Schedule type` label and ComfyUI's scheduler name, where the tool has it.
    a1111_name: Option<&'static str>,
    comfyui_name: Option<&'static str>,
}

/// `GET /api/v1/schedules`: every schedule with both tools' names.
async fn schedules() -> Json<Vec<ScheduleInfo>> {
    Json(
        Schedule::ALL
            .into_iter()
            .map(|name| ScheduleInfo { name, a1111_name: name.a1111_label(), comfyui_name: name.comfyui_name() })
            .collect(),
    )
}

#[derive(Deserialize)]
struct TokensParams {
    #[serde(default)]
    text: String,
    syntax: Option<String>,
    model: Option<String>,
}

/// `GET /api/v1/prompt/tokens?text=&syntax=&model=`: the prompt's chunks, tokens and weights.
async fn prompt_tokens(State(state): State<AppState>, Query(q): Query<TokensParams>) -> Result<Json<PromptTokens>, ApiError> {
    Ok(Json(state.easel.prompt_tokens(q.text, q.syntax, q.model).await?))
}

/// `GET /api/v1/loras`: the LoRA files requests may name in `loras` or `<lora:NAME:W>`.
async fn loras(State(state): State<AppState>) -> Result<Json<Vec<crate::api::networks::WeightsFileView>>, ApiError> {
    Ok(Json(state.easel.weight_files(crate::model_files::FileKind::Lora).await?))
}

/// `GET /api/v1/vaes`: the VAE files requests may name in `vae`.
async fn vaes(State(state): State<AppState>) -> Result<Json<Vec<crate::api::networks::WeightsFileView>>, ApiError> {
    Ok(Json(state.easel.weight_files(crate::model_files::FileKind::Vae).await?))
}

/// `GET /api/v1/embeddings`: the textual-inversion embeddings prompts can use.
async fn embeddings(State(state): State<AppState>) -> Result<Json<Vec<EmbeddingView>>, ApiError> {
    Ok(Json(state.easel.embeddings().await?))
}
