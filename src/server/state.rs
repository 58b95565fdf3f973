//! What every handler, server function and SSR render is handed: the service and how pages are
//! rendered.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::config::Settings;
use crate::service::{Easel, StartupError};

#[derive(Clone)]
pub struct AppState {
    /// Where the compiled site (wasm, js, css, assets) lives and how pages are rendered.
    pub leptos_options: LeptosOptions,
    /// The one service every door calls.
    pub easel: Easel,
    /// The A1111 API's own state (its options, its calls in flight).
    pub a1111: Arc<super::a1111::A1111Door>,
    /// The ComfyUI API's own state (its prompts and history, its websocket clients).
    pub comfyui: Arc<super::comfyui::ComfyDoor>,
    /// The event streams open now, against their limits.
    pub streams: Arc<super::stream_limits::StreamLimits>,
}

impl AppState {
    /// Starts the service (see [`Easel::start`]) and pairs it with the site options.
    pub fn start(leptos_options: LeptosOptions, settings: Settings) -> Result<Self, StartupError> {
        let a1111 = Arc::new(super::a1111::A1111Door::open(&settings.data_dir));
        let comfyui = Arc::new(super::comfyui::ComfyDoor::default());
        let streams = Arc::default();
        Ok(Self { leptos_options, easel: Easel::start(settings)?, a1111, comfyui, streams })
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
