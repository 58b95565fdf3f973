//! `POST /api/v1/uploads`: a picture for image-to-image, inpainting or outpainting, as
//! `multipart/form-data` (the first file part, usually named `file`) or as a raw body with an
//! `image/png`, `image/jpeg` or `image/webp` content type. Answers 201 with the upload's id, width
//! and height; a picture that cannot be read or is too large is a 422 naming `file`; a body over
//! the limit is a 413. `GET /api/v1/uploads/{id}` serves the stored PNG back (immutable: an
//! id is the hash of its content).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiError, AppState};
use crate::api::image_modes::MAX_UPLOAD_BYTES;
use crate::api::FieldError;

/// Room for the multipart framing around the largest accepted picture.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/uploads", post(upload))
        .route("/uploads/{id}", get(stored))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD))
}

async fn stored(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let png = state.easel.upload_png(&id).await?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], png).into_response())
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the upload is larger than {} MB; send a smaller picture", MAX_UPLOAD_BYTES >> 20))
}

async fn upload(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let bytes = if content_type.starts_with("multipart/form-data") {
        let mut multipart =
            Multipart::from_request(request, &state).await.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let mut found = None;
        loop {
            match multipart.next_field().await {
                Ok(Some(field)) if field.file_name().is_some() || field.name() == Some("file") => {
                    found = Some(field.bytes().await.map_err(|e| {
                        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                            too_large()
                        } else {
                            ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
                        }
                    })?);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
            }
        }
        found.ok_or_else(|| {
            ApiError::unprocessable(vec![FieldError::new("file", "the form has no file part; send the picture as a part named \"file\"")])
        })?
    } else if content_type.starts_with("image/") {
        Bytes::from_request(request, &state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(e.status(), e.body_text())
            }
        })?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?} is not supported; send multipart/form-data with a \"file\" part, or image/png, image/jpeg or image/webp"),
        ));
    };
    let upload = state.easel.upload(bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(upload)).into_response())
}
