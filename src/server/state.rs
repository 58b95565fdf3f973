//! Shared server state handed to every handler, server function and SSR render.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::config::Settings;
use crate::engine::runtime::{self, Runtime, RuntimeError};

#[derive(Clone)]
pub struct AppState {
    /// Where the compiled site (wasm, js, css, assets) lives and how pages are rendered.
    pub leptos_options: LeptosOptions,
    /// The effective settings this process started with (read-only).
    pub settings: Arc<Settings>,
    /// The ONNX Runtime, or why it could not be loaded (reported by /api/v1/health and the UI).
    pub runtime: Result<&'static Runtime, RuntimeError>,
}

impl AppState {
    pub fn new(leptos_options: LeptosOptions, settings: Settings) -> Self {
        Self { leptos_options, settings: Arc::new(settings), runtime: runtime::runtime() }
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
