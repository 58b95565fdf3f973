//! The HTTP layer: the axum router (REST API v1, server functions, SSR pages, static files),
//! request tracing, and the serve loop with graceful shutdown. It translates HTTP to calls on the
//! one service, [`crate::service::Easel`] (in [`AppState`]); it holds no generation logic of its own.

mod a1111;
mod api_jobs;
mod api_models;
mod api_uploads;
mod api_v1;
mod auth;
mod browser_headers;
mod comfyui;
mod error;
mod openapi;
mod origin_guard;
mod request_trace;
mod site;
mod state;
mod stream_limits;

pub use stream_limits::{MAX_STREAMS, MAX_STREAMS_PER_CLIENT};

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};

pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use site::{leptos_options, site_root, SiteRoot};
pub use state::AppState;

use crate::app::{shell, App};

/// The whole HTTP surface for one [`AppState`]. Kept apart from [`serve`] so tests can drive it.
pub fn app(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let leptos_options = state.leptos_options.clone();
    Router::new()
        .nest("/api/v1", api_v1::router())
        .nest(a1111::PREFIX, a1111::router())
        .route("/metrics", axum::routing::get(metrics))
        .route("/api/{*rest}", axum::routing::any(api_v1::not_found))
        .nest_service(
            crate::api::OUTPUTS_URL_PREFIX,
            outputs_service(&state.easel.settings().outputs_dir, state.easel.settings().api_token.is_some()),
        )
        .leptos_routes_with_context(
            &state,
            routes,
            {
                let easel = state.easel.clone();
                move || provide_context(easel.clone())
            },
            move || shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin_guard::guard))
        .layer(axum::middleware::from_fn(browser_headers::add))
        .layer(axum::middleware::from_fn(request_trace::trace_request))
        .with_state(state)
}

/// ComfyUI's API, for its own listener (`--comfyui-port`): the same state, the same host,
/// origin and token rules as the main port.
pub fn comfyui_app(state: AppState) -> Router {
    Router::new()
        .merge(comfyui::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin_guard::guard))
        .layer(axum::middleware::from_fn(browser_headers::add))
        .layer(axum::middleware::from_fn(request_trace::trace_request))
        .with_state(state)
}

/// `GET /metrics`: Prometheus text format (queue depth, jobs by status, step and model-load time
/// histograms, loaded models, running pulls, resident memory).
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let counts = state.easel.status_counts().await?;
    let snapshot = crate::metrics::ProcessSnapshot {
        queued: counts.queued,
        running: counts.running,
        succeeded: counts.succeeded,
        failed: counts.failed,
        cancelled: counts.cancelled,
        pulls_running: state.easel.pulls_running(),
        event_streams_open: state.streams.open(),
        resident_memory_bytes: crate::metrics::resident_memory_bytes(),
    };
    let body = crate::metrics::render(state.easel.engine_metrics(), &snapshot);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// Generated images. File names are unique per job and never rewritten with other content, so
/// browsers may cache them for good; only privately (no shared cache) when a token guards them.
/// `ServeDir` refuses `..` and absolute paths.
fn outputs_service(dir: &std::path::Path, private: bool) -> axum::routing::MethodRouter {
    use axum::http::{header, HeaderValue};
    let files = tower::ServiceBuilder::new()
        .map_response(move |mut response: axum::http::Response<_>| {
            if response.status().is_success() {
                let forever = HeaderValue::from_static(if private {
                    "private, max-age=31536000, immutable"
                } else {
                    "public, max-age=31536000, immutable"
                });
                response.headers_mut().insert(header::CACHE_CONTROL, forever);
            }
            response
        })
        .service(tower_http::services::ServeDir::new(dir));
    axum::routing::get_service(files)
}

/// Binds `addr`, serves until `shutdown` resolves, then lets in-flight requests finish.
/// `on_bound` receives the real address (useful with port 0).
pub async fn serve(
    state: AppState,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    serve_on(listener, state, shutdown).await
}

/// Serves on a listener bound earlier (the CLI binds before it starts the job worker, so a port
/// in use stops Easel before any job can start).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_connections(listener, app(state), shutdown).await
}

/// Seconds a client has to send a request's headers (a slow-loris client is dropped after it).
pub const HEADER_READ_TIMEOUT_S: u64 = 10;
/// Seconds a client has to send a request's whole body once its headers are in (a client that
/// trickles a body is answered and dropped after it). The largest body, a 20 MiB upload, needs
/// about 6 Mbit/s to arrive in time.
pub const BODY_READ_TIMEOUT_S: u64 = 30;
/// Connections served at once; further ones wait in the listen backlog until one closes.
pub const MAX_CONNECTIONS: usize = 2048;

/// axum::serve's loop with what it does not offer: header and body read timeouts and a cap on
/// open connections. Each request carries its peer address (`ConnectInfo`, for per-client limits).
/// When `shutdown` resolves, no connection is accepted and the open ones are let finish.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(HEADER_READ_TIMEOUT_S));
    // A body read that outlasts its time fails the handler's extractor (the client gets a 4xx).
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_secs(BODY_READ_TIMEOUT_S)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer address wraps the router as one service: `Router::layer` would rebuild every
        // route per connection (about 370 KB each, kept by the allocator: 1,000 connections at
        // once held 360 MB).
        let service = tower::Layer::layer(&axum::Extension(axum::extract::ConnectInfo(peer)), router.clone());
        let service = hyper_util::service::TowerToHyperService::new(service);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
