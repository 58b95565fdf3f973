//! The engine's error type: what can go wrong between a model folder and a finished image.

use std::path::PathBuf;

use super::execution::ExecutionError;
use super::runtime::RuntimeError;
use super::scheduler::SchedulerError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The device or precision asked for is not available (the message has the fix).
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    #[error("{path} is not a Stable Diffusion model in the diffusers ONNX layout: missing {}", .missing.join(", "))]
    NotAModel { path: PathBuf, missing: Vec<String> },
    /// A model name that selects nothing; the message lists what is available.
    #[error("{0}")]
    UnknownModel(String),
    #[error("cannot read {path}: {message}")]
    ReadFile { path: PathBuf, message: String },
    #[error("cannot load the tokenizer in {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// A checkpoint, VAE or LoRA file that cannot fill the model (the message names file and fix).
    #[error("{0}")]
    Weights(String),
    #[error("cannot load ONNX model {path}: {message}")]
    LoadSession { path: PathBuf, message: String },
    #[error("the {model} model does not look like Stable Diffusion's: {message}")]
    UnexpectedModelIo { model: &'static str, message: String },
    #[error("running the {model} model failed: {message}")]
    Inference { model: &'static str, message: String },
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("cancelled")]
    Cancelled,
    #[error("cannot encode the PNG: {0}")]
    Png(String),
}
