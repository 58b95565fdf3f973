//! The one JSON error shape every API failure is returned in: `{error, fields?}` plus a status,
//! and the mapping from the service's domain errors to it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::FieldError;
use crate::model_registry::RegistryError;
use crate::service::ServiceError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Sent as `Retry-After` (seconds) with a 503.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), fields: Vec::new(), retry_after_s: None }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 422 naming every bad field.
    pub fn unprocessable(fields: Vec<FieldError>) -> Self {
        Self { fields, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "the request has invalid fields") }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::Invalid(fields) => return Self::unprocessable(fields.clone()),
            ServiceError::JobNotFound(_) | ServiceError::ImageNotFound(_) | ServiceError::PullNotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::JobAlreadyFinished { .. } | ServiceError::PullAlreadyEnded { .. } | ServiceError::ModelInUse { .. } => {
                StatusCode::CONFLICT
            }
            ServiceError::Registry(RegistryError::NotFound { .. } | RegistryError::NoFile { .. }) => StatusCode::NOT_FOUND,
            ServiceError::Registry(RegistryError::NotOwned { .. } | RegistryError::DefaultFixed { .. }) => StatusCode::CONFLICT,
            ServiceError::Registry(RegistryError::Io { .. }) | ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceError::Hub(_) => StatusCode::BAD_GATEWAY,
            ServiceError::PullsBusy { retry_after_s, .. } => {
                return Self { retry_after_s: Some(*retry_after_s), ..Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()) }
            }
            ServiceError::QueueFull { retry_after_s, .. } => {
                return Self { retry_after_s: Some(*retry_after_s), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()) }
            }
            ServiceError::Store(_) => {
                tracing::error!("job store: {e}");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self::new(status, e.to_string())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: &self.message, fields: &self.fields };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
