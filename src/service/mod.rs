//! The one service behind every door: [`Easel`] accepts generations, answers for jobs, images,
//! models and pulls, and returns typed [`ServiceError`]s. The REST handlers, the UI's server
//! functions, the A1111 API (and, later, the ComfyUI API) are adapters of a few lines over it that
//! only translate their transport, so every door applies the same limits, idempotency and
//! validation. Blocking work (SQLite, registry scans, ONNX inspection) runs here on tokio's
//! blocking pool, once, so no caller can forget to.
//!
//! Server-only; knows nothing of HTTP or Leptos.

pub mod admission;
pub mod import;
pub mod pulls;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::api::prompt::EmbeddingView;
use crate::api::request::MAX_PROMPT_CHARS;
use crate::api::{
    AliasView, FieldError, GenerateRequest, HistoryPage, ImageView, JobEvent, JobStatus, JobView, ModelEntry, ProgressView, PromptSyntax,
    PromptTokens, PullState, PullStatus, UploadView,
};
use crate::atomic_file::remove_leftover_temp_files;
use crate::config::Settings;
use crate::engine::clip_tokenizer::ClipTokenizer;
use crate::engine::model::Residency;
use crate::engine::runtime::{self, Runtime, RuntimeError};
use crate::hub::HubError;
use crate::job_runner::EngineExecutor;
pub use crate::jobs::QueuePlace;
use crate::jobs::{CancelOutcome, JobQueue, JobRecord, JobStore, LiveProgress, StatusCounts, StoreError};
use crate::metrics::EngineMetrics;
use crate::model_registry::{ModelRegistry, RegistryError};
use crate::uploads::{Derivation, ImageInputError, Uploads};
use pulls::{PullCancel, PullManager, StartRefused};

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Largest history page.
pub const MAX_PAGE: u32 = 100;

/// The longest prompt search (`?q=`) accepted.
pub const MAX_SEARCH_CHARS: usize = 1_000;
/// Most queued and running jobs one [`Easel::active_jobs`] call returns.
pub const MAX_ACTIVE_LISTED: u32 = 500;

/// Everything a door can be told, in domain terms; each door maps it to its transport.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request broke rules; every broken field is named.
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("no job {0}")]
    JobNotFound(String),
    #[error("no image {0}")]
    ImageNotFound(String),
    #[error("no pull {0}")]
    PullNotFound(String),
    #[error("job {id} already finished ({status})")]
    JobAlreadyFinished { id: String, status: JobStatus },
    #[error("pull {id} already ended ({})", state_name(*state))]
    PullAlreadyEnded { id: String, state: PullState },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The hub could not start a pull (a bad name is reported as [`ServiceError::Invalid`]).
    #[error(transparent)]
    Hub(HubError),
    /// The queue holds `limit` waiting jobs already; try again after `retry_after_s`.
    #[error("the queue is full ({queued} jobs waiting, at most {limit}); try again in {retry_after_s} s")]
    QueueFull { queued: u64, limit: u32, retry_after_s: u64 },
    /// A model queued or running jobs use cannot be deleted now.
    #[error("model {name} is used by {jobs} queued or running job(s); wait for them or cancel them, then delete it")]
    ModelInUse { name: String, jobs: usize },
    /// As many pulls as may run at once are running.
    #[error("{running} model pulls are running, the most at once; try again when one ends (in about {retry_after_s} s)")]
    PullsBusy { running: usize, retry_after_s: u64 },
    #[error("the job database is not available: {0}")]
    Store(#[from] StoreError),
    #[error("internal task failed: {0}")]
    Internal(String),
}

fn state_name(state: PullState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Why [`Easel::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot use data dir {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("another Easel server is already using data dir {0}; stop it or pass a different --data-dir")]
    DataDirInUse(PathBuf),
    #[error("cannot open the job database: {0}")]
    Jobs(String),
    #[error(transparent)]
    Execution(#[from] crate::engine::execution::ExecutionError),
}

/// What a submit did.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The job, with its queue position at the time of the submit.
    pub job: JobView,
    /// False when the idempotency key named an existing job, which is returned instead.
    pub created: bool,
}

/// What a cancel did to a job that had not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued and will never run.
    Now,
    /// It is running; the worker stops it within one step and sends `cancelled` then.
    Requested,
}

/// Which page of history to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    /// 1..=[`MAX_PAGE`] jobs.
    pub limit: u32,
    /// `next_before` of the previous page.
    pub before: Option<i64>,
    /// Only jobs whose prompt contains this text (case-insensitive for ASCII).
    pub prompt: Option<String>,
}

/// The running Easel: settings, the job queue and its worker, the model registry, pulls.
/// Cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Easel {
    /// The effective settings this process started with (read-only).
    settings: Arc<Settings>,
    /// The ONNX Runtime, or why it could not be loaded (reported by health checks and the UI).
    runtime: Result<&'static Runtime, RuntimeError>,
    /// The durable queue and its worker; every generation goes through it.
    jobs: Arc<JobQueue>,
    /// Every model that can be named in a request, and the default.
    registry: ModelRegistry,
    /// Model downloads running in the background.
    pulls: Arc<PullManager>,
    /// Step and model-load times the worker records, for `/metrics`.
    engine_metrics: Arc<EngineMetrics>,
    /// Pictures uploaded for image-to-image requests.
    uploads: Uploads,
    /// Held open for the process lifetime: its exclusive lock keeps a second server off this data dir.
    _data_dir_lock: Arc<std::fs::File>,
    tokenizers: TokenizerCache,
    /// True once the process is stopping: streams to clients end, waiting calls give up.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
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

/// Runs blocking work (SQLite, the file system) on tokio's blocking pool.
async fn blocking<T: Send + 'static, E: Into<ServiceError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ServiceError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(ServiceError::Internal(e.to_string())),
    }
}

/// The tokenizer and text width of the model the token counter last asked about (loading a
/// tokenizer takes ~50 ms, reading a checkpoint's header for its width a few more; the prompt box
/// asks on every pause in typing).
#[derive(Clone, Default)]
struct TokenizerCache(Arc<std::sync::Mutex<Option<CachedTokenizer>>>);

/// A model's path, its tokenizer and its text encoder's width.
type CachedTokenizer = (PathBuf, Arc<ClipTokenizer>, usize);

impl TokenizerCache {
    fn get(&self, model: &std::path::Path) -> Result<(Arc<ClipTokenizer>, usize), crate::engine::EngineError> {
        let mut slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((path, tokenizer, width)) = slot.as_ref() {
            if path == model {
                return Ok((tokenizer.clone(), *width));
            }
        }
        // A checkpoint file (or a folder without one) uses SD 1.x's tokenizer, as its model does.
        let folder = model.join("tokenizer");
        let tokenizer = Arc::new(if folder.is_dir() { ClipTokenizer::load(&folder)? } else { crate::engine::templates::sd1_tokenizer()? });
        let width = crate::engine::model::text_hidden_size(model);
        *slot = Some((model.to_path_buf(), tokenizer.clone(), width));
        Ok((tokenizer, width))
    }
}

/// Every textual-inversion file prompts may name: the models dir's `embeddings/` first, then each
/// extra models dir's; a name found earlier wins. Sorted by name.
fn embedding_files(registry: &ModelRegistry) -> Vec<crate::engine::prompt::embeddings::EmbeddingFile> {
    let mut found = std::collections::BTreeMap::new();
    for dir in registry.embeddings_dirs() {
        for file in crate::engine::prompt::embeddings::scan_dir(&dir) {
            found.entry(file.name.clone()).or_insert(file);
        }
    }
    found.into_values().collect()
}

/// An upload the store kept, or why not: an unknown source upload is
/// [`ServiceError::ImageNotFound`], a failed write an internal error, anything else a field
/// error on `field`.
fn stored_upload(stored: Result<crate::uploads::Upload, ImageInputError>, field: &str) -> Result<UploadView, ServiceError> {
    match stored {
        Ok(u) => Ok(UploadView { id: u.id, width: u.width, height: u.height }),
        Err(ImageInputError::Unknown(id)) => Err(ServiceError::ImageNotFound(id)),
        Err(ImageInputError::Io { path, message }) => {
            Err(ServiceError::Internal(format!("cannot store the upload in {}: {message}", path.display())))
        }
        Err(e) => Err(ServiceError::Invalid(vec![FieldError::new(field, e.to_string())])),
    }
}

/// The upload id for an image a request names: an upload as it is, or a generated image (its
/// gallery id) copied into the uploads so the job keeps its input if the image is deleted.
/// `Err(None)` when `id` is not an image id at all (the request rules report that).
fn image_as_upload(uploads: &Uploads, store: &JobStore, outputs: &std::path::Path, id: &str) -> Result<String, Option<String>> {
    if !crate::api::image_modes::is_image_id(id) {
        return Err(None);
    }
    if uploads.contains(id) {
        return Ok(id.to_string());
    }
    let missing = || Some(format!("no uploaded or generated image {id:?}; upload it with POST /api/v1/uploads"));
    let record = store.image(id).ok().flatten().ok_or_else(missing)?;
    let bytes = std::fs::read(outputs.join(&record.path)).map_err(|_| missing())?;
    uploads.store(&bytes).map(|u| u.id).map_err(|e| Some(e.to_string()))
}

/// A stored job as the wire shows it; `live` is the worker's in-memory progress when it runs.
fn job_view(job: JobRecord, live: Option<LiveProgress>) -> JobView {
    let progress = match live {
        Some(p) => ProgressView { step: p.step, total: p.total, eta_seconds: p.eta_seconds },
        None => ProgressView { step: job.progress_step, total: job.progress_total, eta_seconds: None },
    };
    JobView {
        images: job.images.iter().map(ImageView::from).collect(),
        id: job.id,
        status: job.status,
        position: job.position,
        progress,
        request: job.settings,
        error: job.error,
        created_at_ms: job.created_at_ms,
        started_at_ms: job.started_at_ms,
        finished_at_ms: job.finished_at_ms,
    }
}

impl Easel {
    /// Locks the data dir, opens the job database (recovering jobs a crash left running), cleans
    /// half-written images, and starts the worker.
    pub fn start(settings: Settings) -> Result<Self, StartupError> {
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
        // A device this ONNX Runtime cannot run on is refused at start, not at the first job.
        // (A missing library is reported by health and each job instead, with its fix.)
        if let Ok(rt) = runtime::runtime_for(settings.device) {
            rt.set_execution(settings.device, settings.precision)?;
        }
        let store = JobStore::open(&settings.data_dir).map_err(|e| StartupError::Jobs(e.to_string()))?;
        let registry = ModelRegistry::from_settings(&settings);
        if let Some(problem) = registry.default_problem() {
            tracing::warn!("{problem}");
        }
        let uploads = Uploads::new(&settings.data_dir);
        let executor = EngineExecutor::new(
            registry.clone(),
            uploads.clone(),
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
            settings: Arc::new(settings),
            runtime: runtime::runtime(),
            jobs: Arc::new(jobs),
            pulls,
            engine_metrics,
            registry,
            uploads,
            _data_dir_lock: Arc::new(lock),
            tokenizers: TokenizerCache::default(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
        })
    }

    /// Stops the service within `deadline`: streams to clients end (see [`Easel::stopped`]),
    /// no new job starts, and the running one is interrupted and handed back to the queue
    /// without counting the attempt, so the next start runs it again. True when the worker
    /// stopped within the deadline.
    pub async fn stop(&self, deadline: std::time::Duration) -> bool {
        self.stopping.send_replace(true);
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || jobs.shutdown_within(deadline)).await.unwrap_or(false)
    }

    /// Resolves once [`Easel::stop`] was called: streams and long waits end with it.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.stopping.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn runtime(&self) -> &Result<&'static Runtime, RuntimeError> {
        &self.runtime
    }

    pub fn engine_metrics(&self) -> &EngineMetrics {
        &self.engine_metrics
    }

    /// The job queue itself, for shutdown and tests.
    pub fn queue(&self) -> &Arc<JobQueue> {
        &self.jobs
    }

    fn view(&self, job: JobRecord) -> JobView {
        let live = self.jobs.live_progress(&job.id);
        job_view(job, live)
    }

    /// Validates `request` (settings rules, the model list, the idempotency key), resolves its
    /// defaults, seed and model, and queues it; with a key already used, returns that job.
    pub async fn submit(&self, request: GenerateRequest, idempotency_key: Option<String>) -> Result<Submitted, ServiceError> {
        self.submit_placed(request, idempotency_key, QueuePlace::Back).await
    }

    /// [`Self::submit`] at `place` in the queue (ComfyUI's `front` and `number`).
    pub async fn submit_placed(
        &self,
        mut request: GenerateRequest,
        idempotency_key: Option<String>,
        place: QueuePlace,
    ) -> Result<Submitted, ServiceError> {
        let mut errors = Vec::new();
        if request.init_image.is_some() || request.mask.is_some() {
            let (uploads, store, outputs) = (self.uploads.clone(), self.jobs.store().clone(), self.settings.outputs_dir.clone());
            let (resolved, image_errors) = blocking(move || {
                let mut errors = Vec::new();
                let mut request = request;
                for (field, id) in [("init_image", &mut request.init_image), ("mask", &mut request.mask)] {
                    if let Some(given) = id.as_mut() {
                        match image_as_upload(&uploads, &store, &outputs, given) {
                            Ok(upload) => *given = upload,
                            Err(Some(message)) => errors.push(FieldError::new(field, message)),
                            Err(None) => {} // not an id at all: resolve names it
                        }
                    }
                }
                if let Some(Ok((w, h))) = request.init_image.as_deref().map(|id| uploads.size(id)) {
                    request.size_from_image(w, h);
                }
                Ok::<_, ServiceError>((request, errors))
            })
            .await?;
            request = resolved;
            errors.extend(image_errors);
        }
        let mut settings = match request.resolve(crate::api::request::random_seed) {
            Ok(s) => Some(s),
            Err(fields) => {
                errors.extend(fields);
                None
            }
        };
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                errors.push(FieldError::new("Idempotency-Key", format!("must be 1..{MAX_IDEMPOTENCY_KEY} printable ASCII characters")));
            }
        }
        let mut model_bytes = None;
        if let Some(s) = settings.as_mut() {
            // Aliases and the default resolve now, so the job records the exact model it runs on.
            let registry = self.registry.clone();
            let wanted = s.model.clone();
            let (loras, vae) = (s.all_loras(), s.vae.clone());
            let (entry, file_errors, default_vae) = blocking(move || {
                // LoRA and VAE names are checked now, so a typo is a 422, not a failed job.
                let mut errors = Vec::new();
                for lora in &loras {
                    if let Err(e) = registry.find_file(crate::model_files::FileKind::Lora, &lora.name) {
                        errors.push(FieldError::new("loras", e.to_string()));
                    }
                }
                if let Some(Err(e)) = vae.as_deref().map(|v| registry.find_file(crate::model_files::FileKind::Vae, v)) {
                    errors.push(FieldError::new("vae", e.to_string()));
                }
                let entry = registry.resolve(wanted.as_deref());
                // The model's own default VAE, when the request names none and the file is still there.
                let default_vae = match (&vae, &entry) {
                    (None, Ok(entry)) => entry.vae.clone().filter(|v| match registry.find_file(crate::model_files::FileKind::Vae, v) {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(model = %entry.name, vae = %v, error = %e, "the model's default VAE is gone; using its own");
                            false
                        }
                    }),
                    _ => None,
                };
                Ok::<_, ServiceError>((entry, errors, default_vae))
            })
            .await?;
            errors.extend(file_errors);
            match entry {
                Ok(entry) => {
                    model_bytes = Some(entry.size_bytes);
                    s.model = Some(entry.name);
                    if s.vae.is_none() {
                        s.vae = default_vae;
                    }
                }
                Err(e) => errors.push(FieldError::new("model", e.to_string())),
            }
        }
        if let (Some(s), Some(bytes)) = (settings.as_ref(), model_bytes) {
            let limit = admission::PixelLimit::new(self.settings.max_pixels, crate::metrics::memory_limit_bytes(), bytes);
            errors.extend(limit.and_then(|l| l.check(s)));
        }
        let Some(settings) = settings.filter(|_| errors.is_empty()) else { return Err(ServiceError::Invalid(errors)) };
        self.check_queue_room().await?;
        let jobs = self.jobs.clone();
        let submitted = blocking(move || jobs.submit_placed(&settings, idempotency_key.as_deref(), &place)).await?;
        Ok(Submitted { created: submitted.created, job: self.view(submitted.job) })
    }

    /// The file lists a ComfyUI graph may name, as ComfyUI names them.
    pub async fn comfy_lists(&self) -> Result<crate::api::comfy::nodes::Lists, ServiceError> {
        use crate::model_files::FileKind;
        let checkpoints = self.models().await?.into_iter().map(|m| m.name).collect();
        let loras = self.weight_files(FileKind::Lora).await?.into_iter().map(|f| f.name).collect();
        let vaes = self.weight_files(FileKind::Vae).await?.into_iter().map(|f| f.name).collect();
        Ok(crate::api::comfy::nodes::Lists { checkpoints, loras, vaes })
    }

    /// The generation settings a dropped file holds (see [`import::read_settings`]); a file
    /// without usable settings is [`ServiceError::Invalid`] on `file`.
    pub async fn import_settings(&self, bytes: Vec<u8>) -> Result<crate::api::import::ImportedSettings, ServiceError> {
        let lists = self.comfy_lists().await?;
        blocking(move || import::read_settings(&bytes, &lists).map_err(ServiceError::Invalid)).await
    }

    /// [`ServiceError::QueueFull`] when `max_queue` jobs are waiting already.
    async fn check_queue_room(&self) -> Result<(), ServiceError> {
        let store = self.jobs.store().clone();
        let queued = blocking(move || store.queued_count()).await?;
        let limit = self.settings.max_queue;
        if queued >= u64::from(limit) {
            tracing::warn!(queued, limit, "queue full: submission refused");
            return Err(ServiceError::QueueFull { queued, limit, retry_after_s: admission::QUEUE_FULL_RETRY_AFTER_S });
        }
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<JobView, ServiceError> {
        let store = self.jobs.store().clone();
        let lookup = id.to_string();
        let job = blocking(move || store.get(&lookup)).await?.ok_or_else(|| ServiceError::JobNotFound(id.to_string()))?;
        Ok(self.view(job))
    }

    /// A page of history, newest first.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, ServiceError> {
        if !(1..=MAX_PAGE).contains(&query.limit) {
            let message = format!("limit must be 1..{MAX_PAGE}, got {}", query.limit);
            return Err(ServiceError::Invalid(vec![FieldError::new("limit", message)]));
        }
        if let Some(q) = query.prompt.as_deref().filter(|q| q.chars().count() > MAX_SEARCH_CHARS) {
            let message = format!("q is {} characters; search with at most {MAX_SEARCH_CHARS}", q.chars().count());
            return Err(ServiceError::Invalid(vec![FieldError::new("q", message)]));
        }
        let store = self.jobs.store().clone();
        let page = blocking(move || store.list_matching(query.limit, query.before, query.prompt.as_deref())).await?;
        Ok(HistoryPage { jobs: page.jobs.into_iter().map(|j| self.view(j)).collect(), next_before: page.next_before })
    }

    /// Queued and running jobs in run order.
    pub async fn active_jobs(&self) -> Result<Vec<JobView>, ServiceError> {
        let store = self.jobs.store().clone();
        let jobs = blocking(move || store.active(MAX_ACTIVE_LISTED)).await?;
        Ok(jobs.into_iter().map(|j| self.view(j)).collect())
    }

    /// A user's cancel; a job that already finished is an error naming its status.
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, ServiceError> {
        let jobs = self.jobs.clone();
        let lookup = id.to_string();
        match blocking(move || jobs.cancel(&lookup)).await? {
            Some(CancelOutcome::Cancelled) => Ok(Cancelled::Now),
            Some(CancelOutcome::CancelRequested) => Ok(Cancelled::Requested),
            Some(CancelOutcome::AlreadyFinished(status)) => Err(ServiceError::JobAlreadyFinished { id: id.to_string(), status }),
            None => Err(ServiceError::JobNotFound(id.to_string())),
        }
    }

    /// A job's current state as one event, and a receiver of every later event of every job
    /// (filter by id; on `Lagged`, watch again). See [`JobQueue::watch`].
    pub async fn watch(&self, id: &str) -> Result<(JobEvent, broadcast::Receiver<JobEvent>), ServiceError> {
        let jobs = self.jobs.clone();
        let lookup = id.to_string();
        blocking(move || jobs.watch(&lookup)).await?.ok_or_else(|| ServiceError::JobNotFound(id.to_string()))
    }

    /// Keeps an uploaded picture (PNG, JPEG or WebP) for image-to-image requests and returns its
    /// id; a picture that cannot be read or is too large is a field error on `file`.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<UploadView, ServiceError> {
        let uploads = self.uploads.clone();
        stored_upload(blocking(move || Ok::<_, ServiceError>(uploads.store(&bytes))).await?, "file")
    }

    /// Stores a picture derived from upload `id` (see [`Derivation`]); the new upload.
    pub async fn derive_upload(&self, id: &str, how: Derivation) -> Result<UploadView, ServiceError> {
        let (uploads, source) = (self.uploads.clone(), id.to_string());
        stored_upload(blocking(move || Ok::<_, ServiceError>(uploads.derive(&source, how))).await?, "image")
    }

    /// Keeps `original` (a picture's bytes) with the alpha of `mask` (a painted mask's bytes) as
    /// a new upload (ComfyUI's `/upload/mask`); unreadable or mismatched pictures are a field
    /// error on `image`.
    pub async fn upload_with_alpha(&self, original: Vec<u8>, mask: Vec<u8>) -> Result<UploadView, ServiceError> {
        let uploads = self.uploads.clone();
        stored_upload(blocking(move || Ok::<_, ServiceError>(uploads.store_with_alpha_of(&original, &mask))).await?, "image")
    }

    /// An upload's id and size; unknown ids are [`ServiceError::ImageNotFound`].
    pub async fn upload_view(&self, id: &str) -> Result<UploadView, ServiceError> {
        let (uploads, lookup) = (self.uploads.clone(), id.to_string());
        let size = blocking(move || Ok::<_, ServiceError>(uploads.size(&lookup).ok())).await?;
        let (width, height) = size.ok_or_else(|| ServiceError::ImageNotFound(id.to_string()))?;
        Ok(UploadView { id: id.to_string(), width, height })
    }

    /// An upload's PNG bytes (to show it again); unknown ids are [`ServiceError::ImageNotFound`].
    pub async fn upload_png(&self, id: &str) -> Result<Vec<u8>, ServiceError> {
        let (uploads, lookup) = (self.uploads.clone(), id.to_string());
        blocking(move || Ok::<_, ServiceError>(uploads.png(&lookup).ok())).await?.ok_or_else(|| ServiceError::ImageNotFound(id.to_string()))
    }

    /// A generated image's PNG bytes, as written (metadata included); unknown ids and files gone
    /// from disk are [`ServiceError::ImageNotFound`].
    pub async fn image_png(&self, id: &str) -> Result<Vec<u8>, ServiceError> {
        let store = self.jobs.store().clone();
        let lookup = id.to_string();
        let record = blocking(move || store.image(&lookup)).await?.ok_or_else(|| ServiceError::ImageNotFound(id.to_string()))?;
        tokio::fs::read(self.settings.outputs_dir.join(&record.path)).await.map_err(|_| ServiceError::ImageNotFound(id.to_string()))
    }

    /// Job counts by status (for `/metrics`).
    pub async fn status_counts(&self) -> Result<StatusCounts, ServiceError> {
        let store = self.jobs.store().clone();
        blocking(move || store.counts()).await
    }

    /// Deletes an image's record, then its file.
    pub async fn delete_image(&self, id: &str) -> Result<(), ServiceError> {
        let store = self.jobs.store().clone();
        let lookup = id.to_string();
        let path = blocking(move || store.delete_image(&lookup)).await?.ok_or_else(|| ServiceError::ImageNotFound(id.to_string()))?;
        let file = self.settings.outputs_dir.join(path);
        if let Err(e) = tokio::fs::remove_file(&file).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %file.display(), "image record deleted but the file stays: {e}");
            }
        }
        Ok(())
    }

    async fn on_registry<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ModelRegistry) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let registry = self.registry.clone();
        blocking(move || f(&registry)).await
    }

    /// Every runnable model (scans the models dir and the hub cache, inspects ONNX headers).
    pub async fn models(&self) -> Result<Vec<ModelEntry>, ServiceError> {
        self.on_registry(|r| Ok(r.list())).await
    }

    /// The model a name (folder, `org/name[@rev]`, alias) selects.
    pub async fn model(&self, name: &str) -> Result<ModelEntry, ServiceError> {
        let name = name.to_string();
        self.on_registry(move |r| r.resolve(Some(&name))).await
    }

    pub async fn set_default(&self, name: &str) -> Result<ModelEntry, ServiceError> {
        let name = name.to_string();
        self.on_registry(move |r| r.set_default(&name)).await
    }

    /// Makes `vae` (a VAE file name; `None`: the model's own) the VAE `model` uses when a request
    /// names none.
    pub async fn set_model_vae(&self, model: &str, vae: Option<String>) -> Result<ModelEntry, ServiceError> {
        let model = model.to_string();
        self.on_registry(move |r| {
            r.set_vae(&model, vae.as_deref().map(str::trim).filter(|v| !crate::api::networks::MODEL_OWN_VAE.contains(v)))
        })
        .await
    }

    /// Deletes a model Easel owns and returns the bytes freed; refused while a queued or running
    /// job uses it (deleting the files under a running job would fail it, or a queued one later).
    pub async fn remove_model(&self, name: &str) -> Result<u64, ServiceError> {
        let entry = self.model(name).await?;
        let store = self.jobs.store().clone();
        // Every active job (the queue cap bounds them), not just the first page the UI lists.
        let users = blocking(move || store.active(u32::MAX)).await?;
        let using = users.iter().filter(|j| j.settings.model.as_deref() == Some(entry.name.as_str())).count();
        if using > 0 {
            return Err(ServiceError::ModelInUse { name: entry.name, jobs: using });
        }
        let name = entry.name;
        self.on_registry(move |r| r.remove(&name)).await
    }

    /// How `text` is cut into chunks and tokens in `syntax` (default a1111) by the named (or
    /// default) model's tokenizer: the prompt box's token counter.
    pub async fn prompt_tokens(&self, text: String, syntax: Option<String>, model: Option<String>) -> Result<PromptTokens, ServiceError> {
        let mut errors = Vec::new();
        let syntax = match syntax.as_deref() {
            None | Some("") => Some(PromptSyntax::DEFAULT),
            Some(name) => PromptSyntax::parse(name).or_else(|| {
                errors.push(FieldError::new("syntax", format!("unknown syntax {name:?}; use one of {}", PromptSyntax::names())));
                None
            }),
        };
        if text.chars().count() > MAX_PROMPT_CHARS {
            errors.push(FieldError::new("text", format!("text is longer than {MAX_PROMPT_CHARS} characters")));
        }
        let (Some(syntax), true) = (syntax, errors.is_empty()) else { return Err(ServiceError::Invalid(errors)) };
        let (registry, tokenizers) = (self.registry.clone(), self.tokenizers.clone());
        blocking(move || -> Result<PromptTokens, ServiceError> {
            let entry = registry.resolve(model.as_deref())?;
            let (tokenizer, dim) = tokenizers.get(&entry.path).map_err(|e| ServiceError::Internal(e.to_string()))?;
            let files = embedding_files(&registry);
            crate::engine::prompt::tokens_view(&tokenizer, &files, dim, &text, syntax).map_err(|e| match e {
                crate::engine::EngineError::InvalidRequest(message) => ServiceError::Invalid(vec![FieldError::new("text", message)]),
                other => ServiceError::Internal(other.to_string()),
            })
        })
        .await
    }

    /// The LoRA or VAE files requests may name (`kind`: Lora or Vae).
    pub async fn weight_files(
        &self,
        kind: crate::model_files::FileKind,
    ) -> Result<Vec<crate::api::networks::WeightsFileView>, ServiceError> {
        self.on_registry(move |registry| {
            Ok(registry
                .files(kind)
                .into_iter()
                .map(|f| {
                    let hash = match kind {
                        crate::model_files::FileKind::Lora => crate::engine::lora::known_short_hash(&f.path),
                        _ => crate::engine::file_hash::known_sha256_from(&f.path, 0).map(|h| h[..10].to_string()),
                    };
                    crate::api::networks::WeightsFileView { name: f.name, size_bytes: f.size_bytes, read_only: f.extra, hash }
                })
                .collect())
        })
        .await
    }

    /// Merges two checkpoints into `checkpoints/NAME.safetensors` in the models dir (A1111's
    /// checkpoint merger, see [`crate::engine::merge`]); names are looked up in the checkpoint
    /// lists, the work runs on the blocking pool.
    pub async fn merge_checkpoints(
        &self,
        spec: crate::api::networks::MergeSpec,
    ) -> Result<crate::api::networks::MergeOutcome, ServiceError> {
        use crate::engine::merge::{merge, MergeError, MergeMode, MergeRequest};
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let registry = self.registry.clone();
        blocking(move || {
            let find = |field: &str, name: &str| {
                registry.find_file(crate::model_files::FileKind::Checkpoint, name.trim()).map(|f| f.path).map_err(|e| {
                    ServiceError::Invalid(vec![FieldError::new(field, e.to_string())])
                })
            };
            let request = MergeRequest {
                a: find("a", &spec.a)?,
                b: find("b", &spec.b)?,
                c: spec.base.as_deref().filter(|b| !b.trim().is_empty()).map(|b| find("base", b)).transpose()?,
                mode: if spec.mode == crate::api::networks::MERGE_MODES[1] { MergeMode::AddDifference } else { MergeMode::WeightedSum },
                multiplier: spec.alpha,
                output: registry.models_dir().join(crate::model_files::FileKind::Checkpoint.easel_folder()).join(spec.file_name()),
                overwrite: spec.overwrite,
            };
            let started = std::time::Instant::now();
            let report = merge(&request).map_err(|e| {
                let field = match &e {
                    MergeError::Exists(_) => "name",
                    MergeError::InpaintingB { .. } => "b",
                    MergeError::Base => "base",
                    MergeError::Multiplier(_) => "alpha",
                    MergeError::Write { .. } => return ServiceError::Internal(e.to_string()),
                    _ => "a",
                };
                ServiceError::Invalid(vec![FieldError::new(field, e.to_string())])
            })?;
            tracing::info!(output = %report.output.display(), merged = report.merged, seconds = started.elapsed().as_secs_f64(), "checkpoints merged");
            Ok::<_, ServiceError>(crate::api::networks::MergeOutcome {
                name: spec.file_name(),
                size_bytes: report.bytes,
                tensors: report.tensors,
                merged: report.merged,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
        .await
    }

    /// The textual-inversion embeddings prompts may name (see [`embedding_files`]).
    pub async fn embeddings(&self) -> Result<Vec<EmbeddingView>, ServiceError> {
        self.on_registry(|registry| {
            Ok(embedding_files(registry)
                .into_iter()
                .map(|f| {
                    let bytes = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
                    // Files a prompt could load are small: hashed once here, then cached.
                    let readable = bytes <= crate::engine::prompt::embeddings::MAX_EMBEDDING_BYTES;
                    let hash = readable.then(|| crate::engine::file_hash::cached_sha256_from(&f.path, 0).ok()).flatten();
                    EmbeddingView {
                        hash: hash.map(|h| h[..12].to_string()),
                        bytes,
                        file: f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                        name: f.name,
                    }
                })
                .collect())
        })
        .await
    }

    /// The short names `pull` accepts.
    pub fn aliases(&self) -> Vec<AliasView> {
        crate::hub::pull::ALIASES
            .iter()
            .map(|a| AliasView {
                name: a.name.into(),
                repo_id: a.repo_id.into(),
                revision: a.revision.into(),
                description: a.description.into(),
            })
            .collect()
    }

    /// Starts a background pull of `spec` (an alias or `org/name[@revision]`), or joins the one
    /// already running for that repo and revision.
    pub fn pull(&self, spec: &str) -> Result<PullStatus, ServiceError> {
        self.pulls.start(spec).map_err(|e| match e {
            StartRefused::Hub(e @ HubError::BadName { .. }) => ServiceError::Invalid(vec![FieldError::new("model", e.to_string())]),
            StartRefused::Hub(other) => ServiceError::Hub(other),
            StartRefused::Busy { running } => ServiceError::PullsBusy { running, retry_after_s: admission::PULLS_BUSY_RETRY_AFTER_S },
        })
    }

    /// Recent pulls, newest first.
    pub fn pulls(&self) -> Vec<PullStatus> {
        self.pulls.list()
    }

    pub fn pull_status(&self, id: &str) -> Result<PullStatus, ServiceError> {
        self.pulls.get(id).ok_or_else(|| ServiceError::PullNotFound(id.to_string()))
    }

    /// Stops a running pull; its partial files stay for the next pull to resume.
    pub fn cancel_pull(&self, id: &str) -> Result<PullStatus, ServiceError> {
        match self.pulls.cancel(id) {
            Some(PullCancel::Cancelled(status)) => Ok(status),
            Some(PullCancel::AlreadyFinished(status)) => Err(ServiceError::PullAlreadyEnded { id: id.to_string(), state: status.state }),
            None => Err(ServiceError::PullNotFound(id.to_string())),
        }
    }

    pub fn watch_pull(&self, id: &str) -> Result<watch::Receiver<PullStatus>, ServiceError> {
        self.pulls.watch(id).ok_or_else(|| ServiceError::PullNotFound(id.to_string()))
    }

    /// Pulls still running (for `/metrics`).
    pub fn pulls_running(&self) -> usize {
        self.pulls.running()
    }
}
