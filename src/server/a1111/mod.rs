//! Owns AUTOMATIC1111's HTTP API under [`PREFIX`] on the main port, so A1111 clients (the
//! `webuiapi` package, open-webui, SillyTavern, Krita and Photoshop plugins, bots) work
//! unchanged. A thin door over the one service: a txt2img or img2img call becomes ordinary Easel
//! jobs (one per `n_iter` batch, in the queue and the gallery, durable), run in compat `a1111`
//! where Easel has A1111's maths for the mode, and the handler waits for them and answers in
//! A1111's shapes. The options A1111 keeps server-side live in [`A1111Door`], persisted in the
//! data dir's `a1111_options.json`.

mod info;
mod lenient;
mod options;
mod plan;
mod tables;
#[cfg(test)]
mod tests;
mod wire;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::AppState;
use crate::api::{FieldError, JobEventKind, JobStatus, JobView};
use crate::jobs::base64::base64_encode;
use crate::model_files::FileKind;
use crate::service::{Easel, ServiceError};
use info::{info_json, job_timestamp_utc, png_info_parameters, progress_response, CallProgress, InfoInput};
use options::{checkpoint_title, find_checkpoint, sd_model_item, vae_matches, A1111Options, EffectiveOptions};
use plan::{plan_img2img, plan_txt2img, Img2ImgUploads, Planned};
use wire::*;

/// Where the A1111 API is mounted on the main port.
pub const PREFIX: &str = "/sdapi/v1";
/// Largest accepted body: img2img carries an init image and a mask as base64.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// The options file in the data dir.
const OPTIONS_FILE: &str = "a1111_options.json";

/// The door's own state: A1111's options, and the calls in flight (what `/progress` reports and
/// `/interrupt` and `/skip` act on).
pub struct A1111Door {
    options: Mutex<A1111Options>,
    path: PathBuf,
    calls: Mutex<Vec<Arc<Mutex<Call>>>>,
}

/// One txt2img / img2img call in flight.
#[derive(Default)]
struct Call {
    progress: CallProgress,
    started: Option<Instant>,
    /// Its jobs, batch order.
    jobs: Vec<String>,
    /// Set by `/interrupt`: the batches not yet finished are cancelled.
    interrupted: bool,
}

impl A1111Door {
    /// Reads the options kept in `data_dir` (a missing or damaged file means A1111's defaults).
    pub fn open(data_dir: &std::path::Path) -> Self {
        let path = data_dir.join(OPTIONS_FILE);
        let options = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { options: Mutex::new(options), path, calls: Mutex::new(Vec::new()) }
    }

    fn options(&self) -> A1111Options {
        self.options.lock().expect("options lock").clone()
    }

    /// Replaces the options and writes them to disk (atomically).
    fn store(&self, options: A1111Options) -> Result<(), ApiFailure> {
        let bytes = serde_json::to_vec_pretty(&options).map_err(|e| ApiFailure::runtime(e.to_string()))?;
        crate::atomic_file::write_atomically(&self.path, &bytes)
            .map_err(|e| ApiFailure::runtime(format!("cannot write {}: {e}", self.path.display())))?;
        *self.options.lock().expect("options lock") = options;
        Ok(())
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/txt2img", post(txt2img))
        .route("/img2img", post(img2img))
        .route("/options", get(get_options).post(set_options))
        .route("/sd-models", get(sd_models))
        .route("/sd-vae", get(sd_vae))
        .route("/samplers", get(|| async { Json(tables::samplers_list()) }))
        .route("/schedulers", get(|| async { Json(tables::schedulers_list()) }))
        .route("/upscalers", get(|| async { Json(tables::upscalers_list()) }))
        .route("/latent-upscale-modes", get(|| async { Json(tables::latent_upscale_modes()) }))
        .route("/loras", get(loras))
        .route("/embeddings", get(embeddings))
        .route("/scripts", get(|| async { Json(ScriptsList::default()) }))
        .route("/refresh-checkpoints", post(refresh))
        .route("/refresh-vae", post(refresh))
        .route("/refresh-loras", post(refresh))
        .route("/refresh-embeddings", post(refresh))
        // What Easel does not have (hypernetworks, face restorers, RealESRGAN, saved styles,
        // extensions, scripts' arguments): A1111's empty lists, so clients that list them work.
        .route("/hypernetworks", get(empty_list))
        .route("/face-restorers", get(empty_list))
        .route("/realesrgan-models", get(empty_list))
        .route("/prompt-styles", get(empty_list))
        .route("/extensions", get(empty_list))
        .route("/script-info", get(empty_list))
        // Easel loads a model for the job that needs it and frees it itself.
        .route("/unload-checkpoint", post(|| async { Json(json!({})) }))
        .route("/reload-checkpoint", post(|| async { Json(json!({})) }))
        .route("/progress", get(progress))
        .route("/interrupt", post(interrupt))
        .route("/skip", post(skip))
        .route("/png-info", post(png_info))
        .route("/cmd-flags", get(cmd_flags))
        .route("/memory", get(memory))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// An A1111 error answer: the 4-key body, or FastAPI's validation body (422).
enum ApiFailure {
    Error(u16, ErrorBody),
    Validation(ValidationErrorBody),
}

impl ApiFailure {
    fn runtime(message: impl Into<String>) -> Self {
        ApiFailure::Error(500, ErrorBody::exception("RuntimeError", message.into()))
    }

    fn fields(fields: &[FieldError]) -> Self {
        ApiFailure::Validation(refusal_body(fields))
    }
}

impl From<ServiceError> for ApiFailure {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(fields) => ApiFailure::fields(&fields),
            full @ ServiceError::QueueFull { .. } => ApiFailure::Error(503, ErrorBody::exception("HTTPException", full.to_string())),
            other => ApiFailure::runtime(other.to_string()),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        match self {
            ApiFailure::Error(status, body) => {
                (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
            }
            ApiFailure::Validation(body) => (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response(),
        }
    }
}

/// The body as JSON, as FastAPI reads it: no content type or a JSON one.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiFailure> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if !content_type.contains("json") {
        return Err(ApiFailure::Validation(ValidationErrorBody {
            detail: vec![ValidationItem::new(vec![json!("body")], "value is not a valid dict", "type_error.dict")],
        }));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiFailure::Validation(ValidationErrorBody {
            detail: vec![ValidationItem::new(vec![json!("body"), json!(e.column())], "Expecting value", "value_error.jsondecode")],
        })
    })
}

/// The options a call runs with: the stored ones with `override_settings` applied, and the
/// checkpoint and VAE names matched against Easel's lists (unknown ones dropped, as A1111 does).
async fn effective_options(easel: &Easel, stored: &A1111Options) -> Result<EffectiveOptions, ApiFailure> {
    let model = match &stored.sd_model_checkpoint {
        Some(wanted) => {
            let models = easel.models().await?;
            let found = find_checkpoint(&models, wanted).map(|m| m.name.clone());
            if found.is_none() {
                tracing::warn!(checkpoint = %wanted, "A1111 API: no such checkpoint; using the default model");
            }
            found
        }
        None => None,
    };
    let vae = match stored.sd_vae.as_str() {
        "Automatic" | "None" | "" => None,
        wanted => {
            let vaes = easel.weight_files(FileKind::Vae).await?;
            let found = vaes.into_iter().find(|v| vae_matches(&v.name, wanted)).map(|v| v.name);
            if found.is_none() {
                tracing::warn!(vae = %wanted, "A1111 API: no such VAE; using the model's own");
            }
            found
        }
    };
    Ok(EffectiveOptions::new(stored, model, vae))
}

/// A random seed as A1111 draws one.
fn random_u32() -> u32 {
    (crate::api::request::random_seed() & 0xffff_ffff) as u32
}

/// What a finished call gives back.
struct Finished {
    jobs: Vec<JobView>,
}

/// Submits every batch of `planned`, in order, then waits for them, keeping `/progress` told.
async fn run_call(door: &A1111Door, easel: &Easel, planned: &Planned, what: &str) -> Result<Finished, ApiFailure> {
    let call = Arc::new(Mutex::new(Call { started: Some(Instant::now()), ..Call::default() }));
    {
        let mut c = call.lock().expect("call lock");
        c.progress.job = what.to_string();
        c.progress.job_count = planned.n_iter;
        c.progress.job_timestamp = job_timestamp_utc(now_ms());
    }
    door.calls.lock().expect("calls lock").push(call.clone());
    let result = run_batches(easel, planned, &call).await;
    door.calls.lock().expect("calls lock").retain(|c| !Arc::ptr_eq(c, &call));
    result
}

async fn run_batches(easel: &Easel, planned: &Planned, call: &Arc<Mutex<Call>>) -> Result<Finished, ApiFailure> {
    let mut ids = Vec::with_capacity(planned.n_iter as usize);
    for k in 0..planned.n_iter {
        match easel.submit(planned.batch(k), None).await {
            Ok(submitted) => ids.push(submitted.job.id),
            Err(e) => {
                // Nothing half-submitted stays behind.
                for id in &ids {
                    let _ = easel.cancel(id).await;
                }
                return Err(e.into());
            }
        }
        call.lock().expect("call lock").jobs = ids.clone();
    }
    let mut jobs = Vec::with_capacity(ids.len());
    for (k, id) in ids.iter().enumerate() {
        let interrupted = {
            let mut c = call.lock().expect("call lock");
            c.progress.job_no = k as u32;
            c.progress.sampling_step = 0;
            c.interrupted
        };
        if interrupted {
            let _ = easel.cancel(id).await;
        }
        jobs.push(wait_for(easel, id, call).await?);
    }
    Ok(Finished { jobs })
}

/// Follows one job's events until it ends, mirroring its progress into `call`.
async fn wait_for(easel: &Easel, id: &str, call: &Arc<Mutex<Call>>) -> Result<JobView, ApiFailure> {
    let stopped = easel.stopped();
    tokio::pin!(stopped);
    loop {
        let (current, mut events) = easel.watch(id).await?;
        if terminal(&current.kind) {
            return Ok(easel.job(id).await?);
        }
        loop {
            let received = tokio::select! {
                received = events.recv() => received,
                () = &mut stopped => {
                    let message = "the server is stopping; the job is kept and runs again at the next start";
                    return Err(ApiFailure::Error(503, ErrorBody::exception("HTTPException", message.to_string())));
                }
            };
            match received {
                Ok(event) if event.job_id == id => {
                    if let JobEventKind::Progress { step, total, preview_png_base64, .. } = &event.kind {
                        let mut c = call.lock().expect("call lock");
                        c.progress.sampling_step = *step;
                        c.progress.sampling_steps = *total;
                        if preview_png_base64.is_some() {
                            c.progress.preview_png_base64.clone_from(preview_png_base64);
                        }
                    }
                    if terminal(&event.kind) {
                        return Ok(easel.job(id).await?);
                    }
                }
                Ok(_) => {}
                // Behind the channel: read the job's state again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(easel.job(id).await?),
            }
        }
    }
}

fn terminal(kind: &JobEventKind) -> bool {
    matches!(kind, JobEventKind::Succeeded { .. } | JobEventKind::Failed { .. } | JobEventKind::Cancelled)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The images, `info` and `parameters` of a finished call, in A1111's response shape.
async fn respond<P: serde::Serialize>(
    easel: &Easel,
    common: &CommonParams,
    planned: &Planned,
    finished: Finished,
    parameters: P,
    started_ms: i64,
) -> Result<Response, ApiFailure> {
    if let Some(failed) = finished.jobs.iter().find(|j| j.status == JobStatus::Failed) {
        return Err(ApiFailure::runtime(failed.error.clone().unwrap_or_else(|| "the job failed".into())));
    }
    let mut images = Vec::new();
    for job in &finished.jobs {
        let mut own = job.images.clone();
        own.sort_by_key(|i| i.batch_index);
        images.extend(own);
    }
    let mut encoded = Vec::new();
    if common.send_images.unwrap_or(true) {
        for image in &images {
            encoded.push(base64_encode(&easel.image_png(&image.id).await?));
        }
    }
    let first = finished.jobs.first().ok_or_else(|| ApiFailure::runtime("no batch ran"))?;
    let version = format!("easel-{}", env!("CARGO_PKG_VERSION"));
    let info = info_json(&InfoInput {
        common,
        planned,
        settings: &first.request,
        images: &images,
        job_timestamp: &job_timestamp_utc(started_ms),
        // A1111's flag for an inpainting model, read back from the infotext as the model is.
        is_using_inpainting_conditioning: images.first().is_some_and(|i| {
            crate::engine::infotext::infotext_pairs(&i.infotext).iter().any(|(k, _)| k == crate::engine::infotext::CONDITIONAL_MASK_WEIGHT)
        }),
        version: Some(&version),
    });
    Ok(Json(ImageResponse { images: encoded, parameters, info }).into_response())
}

/// Applies a call's `override_settings`; keeps them when it asks not to restore them.
fn call_options(door: &A1111Door, common: &CommonParams) -> Result<(A1111Options, bool), ApiFailure> {
    let stored = door.options();
    let overrides = common.override_settings.clone().unwrap_or_default();
    let applied = stored.with(&overrides, "override_settings.").map_err(|f| ApiFailure::fields(&f))?;
    let keep = !overrides.is_empty() && common.override_settings_restore_afterwards == Some(false);
    Ok((applied, keep))
}

async fn txt2img(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiFailure> {
    let started_ms = now_ms();
    let value = json_body(&headers, &body)?;
    let request: Txt2ImgRequest = parse_body(&value).map_err(ApiFailure::Validation)?;
    if let Some(refusal) = script_refusal(&request.common) {
        return Err(ApiFailure::Error(422, refusal));
    }
    let door = &state.a1111;
    let (options, keep) = call_options(door, &request.common)?;
    let effective = effective_options(&state.easel, &options).await?;
    let planned = plan_txt2img(&request, &effective, random_u32).map_err(|f| ApiFailure::fields(&f))?;
    let finished = run_call(door, &state.easel, &planned, "txt2img").await?;
    if keep {
        door.store(options)?;
    }
    respond(&state.easel, &request.common, &planned, finished, &request, started_ms).await
}

async fn img2img(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiFailure> {
    let started_ms = now_ms();
    let value = json_body(&headers, &body)?;
    let request: Img2ImgRequest = parse_body(&value).map_err(ApiFailure::Validation)?;
    if let Some(refusal) = script_refusal(&request.common) {
        return Err(ApiFailure::Error(422, refusal));
    }
    let init = match init_image(&request) {
        InitImage::Missing => return Err(ApiFailure::Error(404, ErrorBody::http(404, "Init image not found"))),
        InitImage::Refused(field) => return Err(ApiFailure::fields(&[field])),
        InitImage::One(text) => text,
    };
    let easel = &state.easel;
    let init_bytes = decode_image_data(init).map_err(|e| ApiFailure::Error(500, e.body()))?;
    let init_upload = easel.upload(init_bytes).await.map_err(|e| upload_failure(e, "init_images"))?;
    let mask = match request.mask.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(text) => {
            let bytes = decode_image_data(text).map_err(|e| ApiFailure::Error(500, e.body()))?;
            let bytes = binary_mask(&bytes, request.invert_mask()).map_err(|m| ApiFailure::fields(&[FieldError::new("mask", m)]))?;
            Some(easel.upload(bytes).await.map_err(|e| upload_failure(e, "mask"))?.id)
        }
    };
    let uploads = Img2ImgUploads { init_image: init_upload.id, init_size: (init_upload.width, init_upload.height), mask };
    let door = &state.a1111;
    let (options, keep) = call_options(door, &request.common)?;
    let effective = effective_options(easel, &options).await?;
    let planned = plan_img2img(&request, &uploads, &effective, random_u32).map_err(|f| ApiFailure::fields(&f))?;
    let finished = run_call(door, easel, &planned, "img2img").await?;
    if keep {
        door.store(options)?;
    }
    respond(easel, &request.common, &planned, finished, request.echo(), started_ms).await
}

/// An upload refused for its content is a field error on the A1111 field that carried it.
fn upload_failure(e: ServiceError, field: &str) -> ApiFailure {
    match e {
        ServiceError::Invalid(fields) => {
            let renamed: Vec<FieldError> = fields.into_iter().map(|f| FieldError::new(field, f.message)).collect();
            ApiFailure::fields(&renamed)
        }
        other => other.into(),
    }
}

/// A1111's `create_binary_mask` (a picture with transparency: its alpha above 128 repaints;
/// otherwise the picture as grey), inverted for `inpainting_mask_invert`, as a grey PNG.
fn binary_mask(bytes: &[u8], invert: bool) -> Result<Vec<u8>, String> {
    let image = crate::uploads::decode(bytes).map_err(|e| e.to_string())?;
    let transparent = image.color().has_alpha() && image.to_rgba8().pixels().any(|p| p.0[3] != 255);
    let mut mask = crate::uploads::to_mask(&image);
    if transparent {
        mask.pixels_mut().for_each(|p| p.0[0] = if p.0[0] > 128 { 255 } else { 0 });
    }
    if invert {
        image::imageops::invert(&mut mask);
    }
    let mut out = Vec::new();
    mask.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(out)
}

async fn get_options(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let options = state.a1111.options();
    let models = state.easel.models().await?;
    let model = match &options.sd_model_checkpoint {
        Some(wanted) => find_checkpoint(&models, wanted),
        None => None,
    }
    .or_else(|| models.iter().find(|m| m.is_default));
    let title = model.map(checkpoint_title);
    Ok(Json(options.to_json(title.as_deref(), None)).into_response())
}

async fn set_options(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiFailure> {
    let value = json_body(&headers, &body)?;
    let Value::Object(changes) = value else {
        return Err(ApiFailure::Validation(ValidationErrorBody {
            detail: vec![ValidationItem::new(vec![json!("body")], "value is not a valid dict", "type_error.dict")],
        }));
    };
    let next = state.a1111.options().with(&changes, "").map_err(|f| ApiFailure::fields(&f))?;
    if let Some(wanted) = changes.get("sd_model_checkpoint").and_then(Value::as_str) {
        let models = state.easel.models().await?;
        let Some(found) = find_checkpoint(&models, wanted) else {
            return Err(ApiFailure::runtime(format!("model {wanted:?} not found")));
        };
        // The UI follows an A1111 model switch, as A1111's own UI would.
        if let Err(e) = state.easel.set_default(&found.name).await {
            tracing::warn!(model = %found.name, "A1111 API: the default model stays: {e}");
        }
    }
    state.a1111.store(next)?;
    Ok(Json(Value::Null).into_response())
}

async fn sd_models(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let models = state.easel.models().await?;
    Ok(Json(models.iter().map(|m| sd_model_item(m, None)).collect::<Vec<_>>()).into_response())
}

async fn sd_vae(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let vaes = state.easel.weight_files(FileKind::Vae).await?;
    let items: Vec<SdVaeItem> = vaes.into_iter().map(|v| SdVaeItem { model_name: v.name.clone(), filename: v.name }).collect();
    Ok(Json(items).into_response())
}

async fn loras(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let loras = state.easel.weight_files(FileKind::Lora).await?;
    let items: Vec<LoraItem> = loras
        .into_iter()
        .map(|l| {
            let stem = l.name.rsplit('/').next().unwrap_or(&l.name);
            let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s).to_string();
            LoraItem { alias: stem.clone(), name: stem, path: l.name, metadata: Map::new() }
        })
        .collect();
    Ok(Json(items).into_response())
}

async fn embeddings(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let found = state.easel.embeddings().await?;
    let mut out = EmbeddingsResponse::default();
    for e in found {
        out.loaded.insert(e.name, EmbeddingItem { step: None, sd_checkpoint: None, sd_checkpoint_name: None, shape: 768, vectors: 1 });
    }
    Ok(Json(out).into_response())
}

/// The model and file lists are read fresh on every call, so a refresh has nothing to do.
async fn refresh() -> Json<Value> {
    Json(Value::Null)
}

async fn empty_list() -> Json<Vec<Value>> {
    Json(Vec::new())
}

async fn progress(State(state): State<AppState>, uri: axum::http::Uri) -> Json<ProgressResponse> {
    let skip_image = uri.query().unwrap_or("").split('&').any(|p| p.eq_ignore_ascii_case("skip_current_image=true"));
    let oldest = state.a1111.calls.lock().expect("calls lock").first().cloned();
    let snapshot = oldest.map(|call| {
        let c = call.lock().expect("call lock");
        let mut p = c.progress.clone();
        p.elapsed_seconds = c.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        p.interrupted = c.interrupted;
        p
    });
    Json(progress_response(snapshot.as_ref(), skip_image))
}

/// A1111's interrupt: every call in flight stops (its running and later batches are cancelled).
async fn interrupt(State(state): State<AppState>) -> Json<Value> {
    let calls: Vec<_> = state.a1111.calls.lock().expect("calls lock").clone();
    for call in calls {
        let jobs = {
            let mut c = call.lock().expect("call lock");
            c.interrupted = true;
            c.jobs.clone()
        };
        for id in jobs {
            let _ = state.easel.cancel(&id).await;
        }
    }
    Json(Value::Null)
}

/// A1111's skip: the batch running now is dropped, the call goes on with the next one.
async fn skip(State(state): State<AppState>) -> Json<Value> {
    let calls: Vec<_> = state.a1111.calls.lock().expect("calls lock").clone();
    for call in calls {
        let (jobs, current) = {
            let mut c = call.lock().expect("call lock");
            c.progress.skipped = true;
            (c.jobs.clone(), c.progress.job_no as usize)
        };
        if let Some(id) = jobs.get(current) {
            let _ = state.easel.cancel(id).await;
        }
    }
    Json(Value::Null)
}

async fn png_info(headers: HeaderMap, body: Bytes) -> Result<Response, ApiFailure> {
    let value = json_body(&headers, &body)?;
    let request: PngInfoRequest = parse_body(&value).map_err(ApiFailure::Validation)?;
    let Some(text) = request.image.filter(|t| !t.trim().is_empty()) else {
        return Err(ApiFailure::Validation(ValidationErrorBody {
            detail: vec![ValidationItem::new(vec![json!("body"), json!("image")], "field required", "value_error.missing")],
        }));
    };
    let bytes = decode_image_data(&text).map_err(|e| ApiFailure::Error(500, e.body()))?;
    let chunks = crate::engine::png_meta::read_text_chunks(&bytes).unwrap_or_default();
    let mut items = Map::new();
    let mut parameters_text = String::new();
    for (key, value) in chunks {
        if key == "parameters" {
            parameters_text = value;
        } else {
            items.insert(key, Value::String(value));
        }
    }
    let parameters = if parameters_text.is_empty() { Map::new() } else { png_info_parameters(&parameters_text) };
    Ok(Json(PngInfoResponse { info: parameters_text, items, parameters }).into_response())
}

async fn cmd_flags(State(state): State<AppState>) -> Json<Value> {
    let s = state.easel.settings();
    Json(json!({
        "api": true,
        "nowebui": false,
        "listen": !s.host.is_loopback(),
        "port": s.port,
        "data_dir": Value::Null,
        "ckpt_dir": Value::Null,
        "lowvram": s.low_memory,
        "medvram": false,
        "no_half": true,
        "precision": "full",
        "use_cpu": ["all"],
        "skip_torch_cuda_test": true,
        "api_auth": Value::Null,
        "disable_safe_unpickle": false,
    }))
}

async fn memory() -> Json<MemoryResponse> {
    Json(MemoryResponse::new(crate::metrics::resident_memory_bytes(), crate::metrics::total_memory_bytes()))
}
