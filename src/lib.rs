//! Easel: a local Stable Diffusion platform, one crate compiled twice.
//!
//! Layout (see ARCHITECTURE.md for the full map):
//! - [`app`]: the Leptos UI, rendered on the server (SSR) and hydrated in the browser (wasm).
//! - `config` (server): settings and their precedence (defaults < file < env < flags).
//! - `engine` (server): the inference engine on ONNX Runtime. Knows nothing of HTTP or the UI.
//! - `hub` (server): pulling models from the Hugging Face hub into its shared cache.
//! - `model_registry` (server): every model Easel can run (models dir + hub cache), the default.
//! - `server` (server): the axum router, REST API, request tracing.
//! - `cli` (server): the `easel` command line, thin glue over the modules above.
//!
//! Everything server-only sits behind the `ssr` feature so the `hydrate` (wasm32) build never
//! compiles it.

#![recursion_limit = "256"]

pub mod app;
pub mod pull_status;
pub mod request;

#[cfg(feature = "ssr")]
pub mod bench_cmd;
#[cfg(feature = "ssr")]
pub mod cli;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
pub mod doctor;
#[cfg(feature = "ssr")]
pub mod engine;
#[cfg(feature = "ssr")]
pub mod generate_cmd;
#[cfg(feature = "ssr")]
pub mod job_runner;
#[cfg(feature = "ssr")]
pub mod hub;
#[cfg(feature = "ssr")]
pub mod jobs;
#[cfg(feature = "ssr")]
pub mod logging;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod models_cmd;
#[cfg(feature = "ssr")]
pub mod model_registry;
#[cfg(feature = "ssr")]
pub mod server;

/// Browser entry point: attaches the server-rendered page to the wasm app.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
