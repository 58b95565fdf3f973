//! The wire: every type that crosses between Easel and its clients, defined once and compiled for
//! both builds (the server and the browser's wasm). The REST API, the UI's server functions
//! (`app::rpc`), the SSE streams and the CLI all speak these types.
//!
//! - [`sampler`]: [`Sampler`] and [`Schedule`], which own their names and their parsing.
//! - [`request`]: [`GenerateRequest`] (what arrives), [`GenerationSettings`] (what runs and is
//!   recorded), the validation rules and their limits, [`FieldError`].
//! - [`image_modes`]: the image-to-image part of a request (init image, mask, strength,
//!   [`Outpaint`], [`Hires`] and its [`Upscaler`]), its defaults and limits.
//! - [`job`]: [`JobStatus`], [`JobView`], [`ImageView`], [`HistoryPage`], [`JobEvent`].
//! - [`model`]: [`ModelEntry`] and [`AliasView`].
//! - [`networks`]: [`LoraRef`] (a LoRA and its weights), A1111's `<lora:…>` prompt tags, the VAE choice.
//! - [`prompt`]: [`PromptSyntax`], CLIP skip, and [`PromptTokens`] (the prompt box's token counter).
//! - [`pull`]: [`PullStatus`], the progress of a model download.
//! - [`conditioning`]: [`conditioning::Conditioning`], ComfyUI's conditioning lists (combine, concat, average, areas).
//! - [`comfy`]: ComfyUI's graph and workflow formats, checked and translated into requests.
//! - [`import`]: [`import::ImportedSettings`], what a dropped PNG or workflow gives the form.
//!
//! **Invariant:** plain data and its rules only. Nothing here reaches a database, a model or the
//! network, and nothing here imports another Easel module: every other module may import `api`.

pub mod comfy;
pub mod compat;
pub mod conditioning;
pub mod execution;
pub mod image_modes;
pub mod import;
pub mod job;
pub mod model;
pub mod networks;
pub mod prompt;
pub mod pull;
pub mod request;
pub mod sampler;
pub mod sampling_range;
pub mod stages;
pub mod vae_tiling;

pub use compat::{Compat, NoiseSettings, RandnSource};
pub use execution::{Device, Precision};
pub use image_modes::{Hires, HiresRequest, Outpaint, UploadView, Upscaler};
pub use job::{image_url, HistoryPage, ImageView, JobEvent, JobEventKind, JobStatus, JobView, ProgressView, OUTPUTS_URL_PREFIX};
pub use model::{AliasView, ModelEntry, ModelLocation};
pub use networks::LoraRef;
pub use prompt::{PromptSyntax, PromptTokens};
pub use pull::{FileState, PullFile, PullState, PullStatus};
pub use request::{FieldError, GenerateRequest, GenerationSettings};
pub use sampler::{Sampler, Schedule, A1111_UNIPC_ORDER};
pub use sampling_range::{SamplingRange, SamplingRangeRequest};
pub use stages::{Stage, StageRequest};
pub use vae_tiling::VaeTiling;
