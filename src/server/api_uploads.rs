//! `POST /api/v1/uploads`: a picture for image-to-image, inpainting or outpainting, as
//! `multipart/form-data` (the first file part, usually named `file`) or as a raw body with an
//! `image/png`, `image/jpeg` or `image/webp` content type. Answers 201 with the upload's id, width
//! and height; a picture that cannot be read or is too large is a 422 naming `file`; a body over
//! the limit is a 413. `GET /api/v1/uploads/{id}` serves the stored PNG back (immutable: an
//! id is the hash of its content). `POST /api/v1/import` reads the generation settings out of a
//! PNG, a ComfyUI workflow or an A1111 infotext (same body forms, nothing stored).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiError, AppState};
use crate::api::image_modes::MAX_UPLOAD_BYTES;
use crate::api::FieldError;
use crate::service::import::MAX_IMPORT_BYTES;

/// Room for the multipart framing around the largest accepted picture.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    let uploads = Router::new()
        .route("/uploads", post(upload))
        .route("/uploads/{id}", get(stored))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD));
    let import =
        Router::new().route("/import", post(import)).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_BYTES + MULTIPART_OVERHEAD));
    uploads.merge(import)
}

async fn stored(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let png = state.easel.upload_png(&id).await?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], png).into_response())
}

async fn upload(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let bytes = file_body(&state, request, &["image/"], "image/png, image/jpeg or image/webp", MAX_UPLOAD_BYTES).await?;
    let upload = state.easel.upload(bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(upload)).into_response())
}

/// `POST /api/v1/import`: the generation settings a PNG (Easel's, A1111's, ComfyUI's), a ComfyUI
/// workflow JSON (API or UI format) or an A1111 infotext holds, for the form. Nothing is stored.
async fn import(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let raw = ["image/png", "application/json", "text/plain", "application/octet-stream"];
    let bytes = file_body(&state, request, &raw, "image/png, application/json or text/plain", MAX_IMPORT_BYTES).await?;
    Ok(Json(state.easel.import_settings(bytes.to_vec()).await?).into_response())
}

/// The file of a request: the first file part (or the part named `file`) of a multipart form,
/// or the raw body when its content type starts with one of `raw`; at most `max` bytes.
async fn file_body(state: &AppState, request: Request, raw: &[&str], raw_names: &str, max: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the file is larger than {} MB; send a smaller one", max >> 20));
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart =
            Multipart::from_request(request, state).await.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        loop {
            match multipart.next_field().await {
                Ok(Some(field)) if field.file_name().is_some() || field.name() == Some("file") => {
                    return field.bytes().await.map_err(|e| {
                        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                            too_large()
                        } else {
                            ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
                        }
                    });
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
            }
        }
        Err(ApiError::unprocessable(vec![FieldError::new("file", "the form has no file part; send the file as a part named \"file\"")]))
    } else if raw.iter().any(|r| content_type.starts_with(r)) {
        Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(e.status(), e.body_text())
            }
        })
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?} is not supported; send multipart/form-data with a \"file\" part, or {raw_names}"),
        ))
    }
}
