//! Shared server state handed to every handler, server function and SSR render, and the start-up
//! sequence that builds it (data dir lock, job database, worker).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::config::Settings;
use crate::engine::model::Residency;
use crate::engine::runtime::{self, Runtime, RuntimeError};
use crate::job_runner::{remove_leftover_temp_files, EngineExecutor};
use crate::jobs::{JobQueue, JobStore};
use crate::model_registry::ModelRegistry;
use crate::server::pulls::PullManager;

#[derive(Clone)]
pub struct AppState {
    /// Where the compiled site (wasm, js, css, assets) lives and how pages are rendered.
    pub leptos_options: LeptosOptions,
    /// The effective settings this process started with (read-only).
    pub settings: Arc<Settings>,
    /// The ONNX Runtime, or why it could not be loaded (reported by /api/v1/health and the UI).
    pub runtime: Result<&'static Runtime, RuntimeError>,
    /// The durable queue and its worker; every generation goes through it.
    pub jobs: Arc<JobQueue>,
    /// Every model that can be named in a request, and the default.
    pub registry: ModelRegistry,
    /// Model downloads running in the background.
    pub pulls: Arc<PullManager>,
    /// Step and model-load times the worker records, for `/metrics`.
    pub engine_metrics: Arc<crate::metrics::EngineMetrics>,
    /// Held open for the process lifetime: its exclusive lock keeps a second server off this data dir.
    _data_dir_lock: Arc<std::fs::File>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot use data dir {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("another Easel server is already using data dir {0}; stop it or pass a different --data-dir")]
    DataDirInUse(PathBuf),
    #[error("cannot open the job database: {0}")]
    Jobs(String),
}

fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartupError> {
    use fs4::fs_std::FileExt;
    let fail = |e: std::io::Error| StartupError::DataDir { path: dir.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("easel.lock")).map_err(fail)?;
    match file.try_lock_exclusive() {
        Ok(true) => Ok(file),
        Ok(false) => Err(StartupError::DataDirInUse(dir.to_path_buf())),
        Err(e) => Err(fail(e)),
    }
}

impl AppState {
    /// Locks the data dir, opens the job database (recovering jobs a crash left running), cleans
    /// half-written images, and starts the worker.
    pub fn start(leptos_options: LeptosOptions, settings: Settings) -> Result<Self, StartupError> {
        let lock = lock_data_dir(&settings.data_dir)?;
        std::fs::create_dir_all(&settings.outputs_dir)
            .map_err(|e| StartupError::DataDir { path: settings.outputs_dir.clone(), message: e.to_string() })?;
        // The fallback models dir inside the data dir is Easel's to create; a configured one is not
        // (a typo should show up as an unhealthy server, not as a new empty folder).
        if settings.models_dir == settings.data_dir.join("models") {
            if let Err(e) = std::fs::create_dir_all(&settings.models_dir) {
                tracing::warn!("cannot create models dir {}: {e}", settings.models_dir.display());
            }
        }
        let removed = remove_leftover_temp_files(&settings.outputs_dir);
        if removed > 0 {
            tracing::info!(removed, "removed half-written images left by an earlier crash");
        }
        let store = JobStore::open(&settings.data_dir).map_err(|e| StartupError::Jobs(e.to_string()))?;
        let registry = ModelRegistry::from_settings(&settings);
        let executor = EngineExecutor::new(
            registry.clone(),
            settings.outputs_dir.clone(),
            settings.threads,
            if settings.low_memory { Residency::LowMemory } else { Residency::Warm },
            settings.resident_models,
        );
        let engine_metrics = executor.metrics.clone();
        let (jobs, recovery) = JobQueue::start(Arc::new(store), executor).map_err(|e| StartupError::Jobs(e.to_string()))?;
        tracing::info!(?recovery, "job queue started");
        let pulls = Arc::new(PullManager::new(registry.clone(), settings.hub_endpoint.clone(), settings.hub_token.clone()));
        Ok(Self {
            leptos_options,
            settings: Arc::new(settings),
            runtime: runtime::runtime(),
            jobs: Arc::new(jobs),
            pulls,
            engine_metrics,
            registry,
            _data_dir_lock: Arc::new(lock),
        })
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
