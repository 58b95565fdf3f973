//! Easel: a local Stable Diffusion platform, one crate compiled twice.
//!
//! Layout, top-down (see ARCHITECTURE.md for the full map):
//! - [`app`]: the Leptos UI, rendered on the server (SSR) and hydrated in the browser (wasm).
//! - [`api`]: the wire types every door speaks, compiled for both builds, and the UI's server functions.
//! - `cli` (server): the `easel` command line, thin glue over the modules below.
//! - `server` (server): the axum router (REST API, SSE, server functions, pages), request tracing.
//! - `service` (server): [`service::Easel`], the one service behind every door; background pulls.
//! - `jobs` (server): the durable queue; `job_runner` (server): the bridge from a job to the engine.
//! - `model_registry`, `hub` (server): every model Easel can run; pulls from the Hugging Face hub.
//! - `engine` (server): the inference engine on ONNX Runtime. Knows nothing of HTTP, SQL or the UI.
//! - `uploads` (server): untrusted pictures decoded within bounds; the uploads folder.
//! - `config`, `logging`, `metrics`, `atomic_file` (server): settings and plumbing.
//!
//! Everything server-only sits behind the `ssr` feature so the `hydrate` (wasm32) build never
//! compiles it. No top-level module imports one that imports it back.

#![recursion_limit = "256"]

pub mod api;
pub mod app;

#[cfg(feature = "ssr")]
pub mod atomic_file;
#[cfg(feature = "ssr")]
pub mod cli;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
pub mod engine;
#[cfg(feature = "ssr")]
pub mod hub;
#[cfg(feature = "ssr")]
pub mod job_runner;
#[cfg(feature = "ssr")]
pub mod jobs;
#[cfg(feature = "ssr")]
pub mod logging;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod model_files;
#[cfg(feature = "ssr")]
pub mod model_registry;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
pub mod uploads;

/// Browser entry point: attaches the server-rendered page to the wasm app.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
