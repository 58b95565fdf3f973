//! The UI's RPC: the server functions the pages call, under `/api/ui/*`. Each is an adapter of a
//! few lines over [`crate::service::Easel`], so the UI and the REST API apply the same rules;
//! only the error's transport differs (a field list for the form, a message otherwise).

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

use crate::api::networks::{MergeOutcome, MergeSpec, WeightsFileView, WeightsKind};
use crate::api::prompt::EmbeddingView;
use crate::api::{AliasView, FieldError, GenerateRequest, HistoryPage, JobView, ModelEntry, PromptTokens, PullStatus};

/// What submitting the form gave: a queued job, or the fields to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubmitOutcome {
    Queued(Box<JobView>),
    Invalid(Vec<FieldError>),
}

#[cfg(feature = "ssr")]
fn easel() -> Result<crate::service::Easel, ServerFnError> {
    use_context::<crate::service::Easel>().ok_or_else(|| ServerFnError::new("server state is missing"))
}

#[cfg(feature = "ssr")]
fn to_server_error(e: crate::service::ServiceError) -> ServerFnError {
    ServerFnError::new(e)
}

#[server(prefix = "/api/ui", endpoint = "submit", input = Json)]
pub async fn submit_generation(request: GenerateRequest) -> Result<SubmitOutcome, ServerFnError> {
    match easel()?.submit(request, None).await {
        Ok(submitted) => Ok(SubmitOutcome::Queued(Box::new(submitted.job))),
        Err(crate::service::ServiceError::Invalid(fields)) => Ok(SubmitOutcome::Invalid(fields)),
        Err(e) => Err(to_server_error(e)),
    }
}

#[server(prefix = "/api/ui", endpoint = "history", input = Json)]
pub async fn list_history(limit: u32, before: Option<i64>, prompt: Option<String>) -> Result<HistoryPage, ServerFnError> {
    let query = crate::service::HistoryQuery { limit, before, prompt };
    easel()?.history(query).await.map_err(to_server_error)
}

/// Queued and running jobs in run order (the Queue page, and the job cards a reload restores).
#[server(prefix = "/api/ui", endpoint = "active_jobs", input = Json)]
pub async fn list_active_jobs() -> Result<Vec<JobView>, ServerFnError> {
    easel()?.active_jobs().await.map_err(to_server_error)
}

#[server(prefix = "/api/ui", endpoint = "cancel", input = Json)]
pub async fn cancel_job(id: String) -> Result<(), ServerFnError> {
    easel()?.cancel(&id).await.map(drop).map_err(to_server_error)
}

#[server(prefix = "/api/ui", endpoint = "delete_image", input = Json)]
pub async fn delete_image(id: String) -> Result<(), ServerFnError> {
    easel()?.delete_image(&id).await.map_err(to_server_error)
}

#[server(prefix = "/api/ui", endpoint = "models", input = Json)]
pub async fn list_models() -> Result<Vec<ModelEntry>, ServerFnError> {
    easel()?.models().await.map_err(to_server_error)
}

/// The token counter under the prompt box; `Err` carries a message (a bad syntax name).
#[server(prefix = "/api/ui", endpoint = "prompt_tokens", input = Json)]
pub async fn count_prompt_tokens(
    text: String,
    syntax: String,
    model: Option<String>,
) -> Result<Result<PromptTokens, String>, ServerFnError> {
    match easel()?.prompt_tokens(text, Some(syntax), model).await {
        Ok(tokens) => Ok(Ok(tokens)),
        Err(crate::service::ServiceError::Invalid(fields)) => Ok(Err(fields.into_iter().map(|f| f.message).collect::<Vec<_>>().join("; "))),
        Err(e) => Ok(Err(e.to_string())),
    }
}

#[server(prefix = "/api/ui", endpoint = "embeddings", input = Json)]
pub async fn list_embeddings() -> Result<Vec<EmbeddingView>, ServerFnError> {
    easel()?.embeddings().await.map_err(to_server_error)
}

/// Sets the VAE `model` uses by default (`None`: its own).
#[server(prefix = "/api/ui", endpoint = "set_model_vae", input = Json)]
pub async fn set_model_vae(model: String, vae: Option<String>) -> Result<(), ServerFnError> {
    easel()?.set_model_vae(&model, vae).await.map(drop).map_err(to_server_error)
}

/// The checkpoint, LoRA or VAE files the pickers offer.
#[server(prefix = "/api/ui", endpoint = "weight_files", input = Json)]
pub async fn list_weight_files(kind: WeightsKind) -> Result<Vec<WeightsFileView>, ServerFnError> {
    easel()?.weight_files(kind.into()).await.map_err(to_server_error)
}

/// Merges two checkpoints; a refusal comes back as the fields to fix.
#[server(prefix = "/api/ui", endpoint = "merge_checkpoints", input = Json)]
pub async fn merge_checkpoints(spec: MergeSpec) -> Result<Result<MergeOutcome, Vec<FieldError>>, ServerFnError> {
    match easel()?.merge_checkpoints(spec).await {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(crate::service::ServiceError::Invalid(fields)) => Ok(Err(fields)),
        Err(e) => Err(to_server_error(e)),
    }
}

#[server(prefix = "/api/ui", endpoint = "model_aliases", input = Json)]
pub async fn model_aliases() -> Result<Vec<AliasView>, ServerFnError> {
    Ok(easel()?.aliases())
}

/// Starts a background pull; `Err` carries a message for the form (a bad name).
#[server(prefix = "/api/ui", endpoint = "pull_model", input = Json)]
pub async fn pull_model(model: String) -> Result<Result<PullStatus, String>, ServerFnError> {
    Ok(easel()?.pull(&model).map_err(|e| match e {
        crate::service::ServiceError::Invalid(fields) => fields.into_iter().map(|f| f.message).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }))
}

/// Stops a running pull (no-op when it already ended).
#[server(prefix = "/api/ui", endpoint = "cancel_pull", input = Json)]
pub async fn cancel_pull(id: String) -> Result<(), ServerFnError> {
    match easel()?.cancel_pull(&id) {
        Ok(_) | Err(crate::service::ServiceError::PullAlreadyEnded { .. }) => Ok(()),
        Err(e) => Err(to_server_error(e)),
    }
}

#[server(prefix = "/api/ui", endpoint = "model_pulls", input = Json)]
pub async fn list_pulls() -> Result<Vec<PullStatus>, ServerFnError> {
    Ok(easel()?.pulls())
}

#[server(prefix = "/api/ui", endpoint = "set_default_model", input = Json)]
pub async fn set_default_model(name: String) -> Result<(), ServerFnError> {
    easel()?.set_default(&name).await.map(drop).map_err(to_server_error)
}

/// Deletes a model Easel owns; returns the bytes freed.
#[server(prefix = "/api/ui", endpoint = "delete_model", input = Json)]
pub async fn delete_model(name: String) -> Result<u64, ServerFnError> {
    easel()?.remove_model(&name).await.map_err(to_server_error)
}
