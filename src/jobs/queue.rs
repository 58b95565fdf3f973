//! The queue: one worker thread that runs stored jobs one at a time, in submission order, through
//! a [`JobExecutor`], and the live events that describe what it does.
//!
//! Owns the worker thread, the running job's [`CancelToken`], the event channel and the rules
//! that tie them to the store: an event is sent only after the database says the same thing, so a
//! listener that subscribes and then reads a [`JobQueue::snapshot`] never misses a change.
//!
//! Threading: inference is blocking and long, so the worker is a plain `std::thread`, off the
//! async runtime. Every [`JobQueue`] method except [`JobQueue::subscribe`] touches SQLite (an
//! fsync per commit), so async callers run them in `tokio::task::spawn_blocking`.
//!
//! Locks, in the only order they are ever taken: `Shared::announce`, then `Shared::state` or
//! the store's connection (those two are never held together; the store calls out to nothing).
//! None is held while the executor runs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::broadcast;

use super::base64::base64_encode;
use super::store::{CancelOutcome, JobRecord, JobStore, NewImage, QueuePlace, RecoveryReport, StoreError};
use crate::api::{GenerationSettings, ImageView, JobEvent, JobEventKind, JobStatus};
use crate::engine::CancelToken;

/// Progress is written to the database at most this often (and always on the last step); events
/// go out on every step.
pub const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// When the queue moves, `Queued { position }` events go to this many waiting jobs; those further
/// back learn their position from the snapshot or `GET` until they come within range. Bounds the
/// work per job start to O(this) instead of O(queue length).
pub const POSITION_UPDATE_LIMIT: u32 = 64;

/// Events buffered per subscriber before the slowest one starts missing some
/// (`RecvError::Lagged`; it should then re-read the snapshot).
pub const EVENT_CAPACITY: usize = 1024;

/// How long the worker waits before retrying after the database failed it.
const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What the executor reports after each step. The worker adds the ETA (from the pace of the steps
/// so far), so it is computed in one place for every executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    /// 1-based index of the step just finished; the last report has `step == total`.
    pub step: u32,
    /// Steps in the whole job.
    pub total: u32,
    /// A small PNG of the current latents, if the executor made one.
    pub preview_png: Option<Vec<u8>>,
}

/// Why a job ended without images.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The cancel token fired and the executor stopped.
    #[error("cancelled")]
    Cancelled,
    /// Anything else, in words for the user (stored as the job's `error`).
    #[error("{0}")]
    Failed(String),
}

/// Runs one job; implemented over the engine by the server, and by fakes in tests.
pub trait JobExecutor: Send + 'static {
    /// Runs one job to completion: generate, write the PNGs (temp name then rename), return what
    /// was saved. Progress goes to `progress`; must return `Err(ExecError::Cancelled)` soon after
    /// `cancel` fires. A job that was running when the server stopped is executed again from the
    /// start with the same settings, so files from the earlier try may already exist: overwrite.
    fn execute(&mut self, job: &JobRecord, cancel: &CancelToken, progress: &mut dyn FnMut(JobProgress))
        -> Result<Vec<NewImage>, ExecError>;
}

/// So a boxed executor chosen at run time (engine or fake) can be passed to [`JobQueue::start`].
impl<E: JobExecutor + ?Sized> JobExecutor for Box<E> {
    fn execute(
        &mut self,
        job: &JobRecord,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(JobProgress),
    ) -> Result<Vec<NewImage>, ExecError> {
        (**self).execute(job, cancel, progress)
    }
}

/// The running job's latest step, as the worker last heard it (finer than the database's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiveProgress {
    pub step: u32,
    pub total: u32,
    pub eta_seconds: Option<f64>,
}

/// Why [`JobQueue::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the job worker thread: {0}")]
    SpawnWorker(std::io::Error),
}

/// What [`JobQueue::submit`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The job, with its queue position at the time of the submit.
    pub job: JobRecord,
    /// False when the idempotency key named an existing job, which is returned instead.
    pub created: bool,
}

/// How [`JobQueue::shutdown`] treats the job that is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Cancel it; it goes back to `queued` (its attempt not counted) and runs again from the start
    /// at the next start-up. Quick: one step at most.
    InterruptCurrentJob,
    /// Let it finish and record its result, then stop. Waits as long as the job takes.
    FinishCurrentJob,
}

/// The job queue: the store, the worker thread and the event channel. Put it in an `Arc`; it is
/// `Sync`. Dropping it shuts down with [`ShutdownMode::InterruptCurrentJob`].
pub struct JobQueue {
    /// What the worker thread shares with the callers.
    shared: Arc<Shared>,
    /// The worker thread; taken and joined by [`JobQueue::shutdown`], so it is joined once.
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Everything both sides of the queue use.
struct Shared {
    /// The durable record; the source of truth for every status.
    store: Arc<JobStore>,
    /// Live events for SSE; sending never blocks and nobody listening is fine.
    events: broadcast::Sender<JobEvent>,
    /// Held across "change the store, then send the event" for every event but progress, so
    /// events leave in database order (a job's `queued` before its `started`, no stale position
    /// after a newer one or after `cancelled`) and [`JobQueue::watch`] can read a snapshot that
    /// no such event slips past. Progress events are sent under `state` instead.
    announce: Mutex<()>,
    /// What the worker is doing and what it has been asked to do; held only briefly.
    state: Mutex<WorkerState>,
    /// Wakes the worker when `state` gains work or the shutdown flag.
    wake: Condvar,
}

/// The worker's flags, guarded by [`Shared::state`].
struct WorkerState {
    /// Jobs may be waiting: set by submit (and at start, for jobs left from a previous run),
    /// cleared by the worker just before it looks, so a submit during a look is not lost.
    work_pending: bool,
    /// Set once by shutdown; the worker claims no job after it sees this.
    shutting_down: bool,
    /// The job being executed (from just before it is claimed in the store until the executor
    /// returns), so cancel can reach its token.
    running: Option<RunningJob>,
}

/// The one job in the executor.
struct RunningJob {
    /// Its id, to match cancel requests.
    id: String,
    /// Fired by a user's cancel or by an interrupting shutdown; the executor polls it.
    cancel: CancelToken,
    /// True when a user (not shutdown) fired `cancel`: decides between `cancelled` and a requeue.
    cancelled_by_user: bool,
    /// The latest progress event, with its preview, for late subscribers (the database keeps
    /// only a throttled step count).
    last_progress: Option<JobEventKind>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is a few flags that every writer leaves consistent; a panic elsewhere
    // while it was held must not take the queue down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JobQueue {
    /// Settles the jobs a previous process left running ([`JobStore::recover_at_start`]), then
    /// starts the worker, which begins with whatever is queued.
    pub fn start(store: Arc<JobStore>, executor: impl JobExecutor) -> Result<(Self, RecoveryReport), StartError> {
        let report = store.recover_at_start()?;
        if report != RecoveryReport::default() {
            tracing::warn!(
                requeued = report.requeued,
                cancelled = report.cancelled,
                failed = report.failed,
                "jobs were running when easel last stopped"
            );
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            store,
            events,
            announce: Mutex::new(()),
            state: Mutex::new(WorkerState { work_pending: true, shutting_down: false, running: None }),
            wake: Condvar::new(),
        });
        let worker_shared = Arc::clone(&shared);
        let executor: Box<dyn JobExecutor> = Box::new(executor);
        let worker = std::thread::Builder::new()
            .name("easel-job-worker".into())
            .spawn(move || worker_loop(&worker_shared, executor))
            .map_err(StartError::SpawnWorker)?;
        Ok((Self { shared, worker: Mutex::new(Some(worker)) }, report))
    }

    /// The store, for reads (`get`, `list`, `counts`) and image deletion.
    pub fn store(&self) -> &Arc<JobStore> {
        &self.shared.store
    }

    /// Records a job and wakes the worker. With an `idempotency_key` seen before, returns that
    /// job instead (`created == false`) and sends nothing. Still records after a shutdown: the
    /// job runs at the next start.
    pub fn submit(&self, settings: &GenerationSettings, idempotency_key: Option<&str>) -> Result<Submitted, StoreError> {
        self.submit_placed(settings, idempotency_key, &QueuePlace::Back)
    }

    /// [`Self::submit`] at `place` in the queue; the jobs it goes before hear their new positions.
    pub fn submit_placed(
        &self,
        settings: &GenerationSettings,
        idempotency_key: Option<&str>,
        place: &QueuePlace,
    ) -> Result<Submitted, StoreError> {
        let _announce = lock(&self.shared.announce);
        let (job, created) = self.shared.store.submit_placed(settings, idempotency_key, place)?;
        if created {
            tracing::info!(job = %job.id, position = job.position, "job queued");
            self.shared.emit(&job.id, JobEventKind::Queued { position: job.position.unwrap_or(0) });
            // The jobs it went ahead of moved back one.
            if *place != QueuePlace::Back {
                self.shared.emit_positions();
            }
            lock(&self.shared.state).work_pending = true;
            self.shared.wake.notify_all();
        }
        Ok(Submitted { job, created })
    }

    /// A user's cancel (see [`CancelOutcome`]); `None` if the id is unknown. A queued job is
    /// cancelled now; a running one is stopped by the worker within one step, and its
    /// `cancelled` event follows then. If the executor finishes anyway, the job succeeds.
    pub fn cancel(&self, id: &str) -> Result<Option<CancelOutcome>, StoreError> {
        let _announce = lock(&self.shared.announce);
        let outcome = self.shared.store.cancel(id)?;
        match outcome {
            Some(CancelOutcome::Cancelled) => {
                tracing::info!(job = %id, "queued job cancelled");
                self.shared.emit(id, JobEventKind::Cancelled);
                self.shared.emit_positions();
            }
            Some(CancelOutcome::CancelRequested) => {
                // The worker registers a job here before claiming it in the store, so a job the
                // store saw running is registered unless it has finished since (then the id no
                // longer matches and the flag alone remains, harmlessly).
                let mut state = lock(&self.shared.state);
                if let Some(running) = state.running.as_mut().filter(|r| r.id == id) {
                    tracing::info!(job = %id, "cancelling the running job");
                    running.cancelled_by_user = true;
                    running.cancel.cancel();
                }
            }
            Some(CancelOutcome::AlreadyFinished(_)) | None => {}
        }
        Ok(outcome)
    }

    /// What an SSE stream needs: the job's current state as one event (see
    /// [`JobQueue::snapshot`]) and a receiver of every event after it, with no gap and no
    /// overlap between the two. Forward the receiver's events for `id` until a terminal one
    /// ([`JobEventKind::is_terminal`]); the receiver carries every job's events, so filter. On
    /// `RecvError::Lagged`, call `watch` again. `None` if the id is unknown.
    pub fn watch(&self, id: &str) -> Result<Option<(JobEvent, broadcast::Receiver<JobEvent>)>, StoreError> {
        // Every event but progress is sent under `announce`, progress under `state`: holding both
        // while reading and subscribing puts each event either in the snapshot or in the receiver.
        let _announce = lock(&self.shared.announce);
        let Some(job) = self.shared.store.get(id)? else {
            return Ok(None);
        };
        let state = lock(&self.shared.state);
        let event = snapshot_event(job, &state);
        let receiver = self.shared.events.subscribe();
        Ok(Some((event, receiver)))
    }

    /// A receiver of every job's events from now on. For one job's stream prefer
    /// [`JobQueue::watch`]; with `subscribe` then [`JobQueue::snapshot`], events sent between the
    /// two calls arrive after a snapshot that already includes them.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.shared.events.subscribe()
    }

    /// The job's current state as the event a late subscriber gets first: `queued` with its
    /// position, the latest `progress` (or `started` before the first step), or the terminal
    /// event. `None` if the id is unknown.
    pub fn snapshot(&self, id: &str) -> Result<Option<JobEvent>, StoreError> {
        let Some(job) = self.shared.store.get(id)? else {
            return Ok(None);
        };
        Ok(Some(snapshot_event(job, &lock(&self.shared.state))))
    }

    /// The latest progress of `id` if it is the running job and has finished a step: what
    /// `GET /api/v1/generate/{id}` shows (with the ETA, which the database does not keep).
    /// Memory only; no database access.
    pub fn live_progress(&self, id: &str) -> Option<LiveProgress> {
        let state = lock(&self.shared.state);
        match state.running.as_ref().filter(|r| r.id == id)?.last_progress {
            Some(JobEventKind::Progress { step, total, eta_seconds, .. }) => Some(LiveProgress { step, total, eta_seconds }),
            _ => None,
        }
    }

    /// Stops the worker and waits for it. No new job starts after this; what happens to the
    /// running one depends on `mode`. Submits after shutdown are still recorded (and run at the
    /// next start). Calling it again does nothing.
    pub fn shutdown(&self, mode: ShutdownMode) {
        self.stop_worker(mode);
        let worker = lock(&self.worker).take();
        if let Some(worker) = worker {
            if worker.join().is_err() {
                tracing::error!("the job worker thread panicked");
            }
        }
    }

    /// [`JobQueue::shutdown`] with [`ShutdownMode::InterruptCurrentJob`], waiting at most
    /// `deadline` for the running job to stop (a step of a big image may outlast it). When the
    /// worker is still busy then, its job is handed back in the database here, so the restart
    /// runs it again without counting this attempt, and the worker is left to the process's
    /// end. True when the worker stopped in time.
    pub fn shutdown_within(&self, deadline: Duration) -> bool {
        let running = self.stop_worker(ShutdownMode::InterruptCurrentJob);
        let Some(worker) = lock(&self.worker).take() else { return true };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let panicked = worker.join().is_err();
            let _ = done_tx.send(panicked);
        });
        match done_rx.recv_timeout(deadline) {
            Ok(panicked) => {
                if panicked {
                    tracing::error!("the job worker thread panicked");
                }
                true
            }
            Err(_) => {
                if let Some(id) = running {
                    match self.shared.store.release(&id) {
                        Ok(status) => {
                            tracing::warn!(job = %id, ?status, "the running job did not stop in time; handed back for the next start")
                        }
                        Err(e) => tracing::error!(job = %id, error = %e, "could not hand the running job back"),
                    }
                }
                false
            }
        }
    }

    /// Flags shutdown, fires the running job's cancel in `mode` Interrupt, wakes the worker;
    /// returns the running job's id.
    fn stop_worker(&self, mode: ShutdownMode) -> Option<String> {
        let running = {
            let mut state = lock(&self.shared.state);
            state.shutting_down = true;
            if let (ShutdownMode::InterruptCurrentJob, Some(running)) = (mode, &state.running) {
                running.cancel.cancel();
            }
            state.running.as_ref().map(|r| r.id.clone())
        };
        self.shared.wake.notify_all();
        running
    }
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        self.shutdown(ShutdownMode::InterruptCurrentJob);
    }
}

impl Shared {
    fn emit(&self, job_id: &str, kind: JobEventKind) {
        // An error only means nobody is subscribed right now.
        let _ = self.events.send(JobEvent { job_id: job_id.to_string(), kind });
    }

    /// Sends every waiting job (up to [`POSITION_UPDATE_LIMIT`]) its position after the queue
    /// moved. Only when someone listens: the query is wasted otherwise. Call with
    /// [`Shared::announce`] held.
    fn emit_positions(&self) {
        if self.events.receiver_count() == 0 {
            return;
        }
        match self.store.queued_positions(POSITION_UPDATE_LIMIT) {
            Ok(positions) => {
                for (id, position) in positions {
                    self.emit(&id, JobEventKind::Queued { position });
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read queue positions"),
        }
    }

    fn is_shutting_down(&self) -> bool {
        lock(&self.state).shutting_down
    }

    /// Waits `delay` unless shutdown comes first.
    fn pause(&self, delay: Duration) {
        let state = lock(&self.state);
        let _unused = self.wake.wait_timeout_while(state, delay, |s| !s.shutting_down).unwrap_or_else(PoisonError::into_inner);
    }

    fn finish_running(&self) {
        lock(&self.state).running = None;
    }
}

/// The worker thread: sleep until there may be work, then run queued jobs in order until none
/// is left or shutdown is asked for.
fn worker_loop(shared: &Shared, mut executor: Box<dyn JobExecutor>) {
    loop {
        {
            let mut state = lock(&shared.state);
            while !state.work_pending && !state.shutting_down {
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.shutting_down {
                return;
            }
            state.work_pending = false;
        }
        loop {
            if shared.is_shutting_down() {
                return;
            }
            let next = shared.store.next_queued().and_then(|job| match job {
                Some(job) => run_one(shared, executor.as_mut(), job).map(|()| true),
                None => Ok(false),
            });
            match next {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "the job database failed; retrying");
                    lock(&shared.state).work_pending = true;
                    shared.pause(STORE_RETRY_DELAY);
                    break;
                }
            }
        }
    }
}

/// Claims one job, executes it and records the result. An error means the database failed.
fn run_one(shared: &Shared, executor: &mut dyn JobExecutor, job: JobRecord) -> Result<(), StoreError> {
    let cancel = CancelToken::new();
    {
        let mut state = lock(&shared.state);
        if state.shutting_down {
            return Ok(());
        }
        // Registered before the claim: a cancel that finds the job running finds its token.
        state.running = Some(RunningJob { id: job.id.clone(), cancel: cancel.clone(), cancelled_by_user: false, last_progress: None });
    }
    {
        let _announce = lock(&shared.announce);
        match shared.store.mark_running(&job.id) {
            Ok(true) => {}
            Ok(false) => {
                // Cancelled between the read and the claim.
                shared.finish_running();
                return Ok(());
            }
            Err(e) => {
                shared.finish_running();
                return Err(e);
            }
        }
        shared.emit(&job.id, JobEventKind::Started);
        shared.emit_positions();
    }
    let job = JobRecord { status: JobStatus::Running, position: None, attempts: job.attempts + 1, ..job };
    let id = job.id.as_str();
    tracing::info!(job = %id, attempt = job.attempts, "job started");

    let started = Instant::now();
    let mut sink = ProgressSink::new(shared, id);
    let result = catch_unwind(AssertUnwindSafe(|| executor.execute(&job, &cancel, &mut |p| sink.report(p)))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(ExecError::Failed(format!("the engine crashed while running this job: {message}")))
    });
    let elapsed_s = started.elapsed().as_secs_f64();

    // Unregistered as its result is recorded, under `announce`: a cancel now waits and then finds
    // the job finished; `watch` sees it running with its progress or finished, never between.
    let announce = lock(&shared.announce);
    let cancelled_by_user = lock(&shared.state).running.take().is_some_and(|r| r.cancelled_by_user);
    let recorded = match result {
        Ok(images) => match shared.store.mark_succeeded(id, &images) {
            Ok(records) => {
                tracing::info!(job = %id, images = records.len(), elapsed_s, "job succeeded");
                shared.emit(id, JobEventKind::Succeeded { images: records.iter().map(ImageView::from).collect() });
                Ok(())
            }
            Err(e) => {
                let error = format!("the images were saved but could not be recorded: {e}");
                fail(shared, id, &error)
            }
        },
        Err(ExecError::Cancelled) if !cancelled_by_user && shared.is_shutting_down() => {
            // Interrupted by shutdown, not by a user: hand it back to the queue for next time.
            match shared.store.release(id) {
                Ok(Some(JobStatus::Cancelled)) => {
                    shared.emit(id, JobEventKind::Cancelled);
                    Ok(())
                }
                Ok(_) => {
                    tracing::info!(job = %id, "job interrupted by shutdown; it runs again at the next start");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Err(ExecError::Cancelled) => {
            if !cancelled_by_user {
                tracing::warn!(job = %id, "the executor reported a cancel nobody asked for");
            }
            match shared.store.mark_cancelled(id) {
                Ok(_) => {
                    tracing::info!(job = %id, elapsed_s, "job cancelled");
                    shared.emit(id, JobEventKind::Cancelled);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Err(ExecError::Failed(error)) => fail(shared, id, &error),
    };
    drop(announce);
    recorded
}

/// The event that describes `job` now: its stored status, refined by the worker's latest
/// progress (with ETA and preview) while it runs.
fn snapshot_event(job: JobRecord, state: &WorkerState) -> JobEvent {
    let kind = match job.status {
        JobStatus::Queued => JobEventKind::Queued { position: job.position.unwrap_or(0) },
        JobStatus::Running => {
            let live = state.running.as_ref().filter(|r| r.id == job.id).and_then(|r| r.last_progress.clone());
            live.unwrap_or(if job.progress_step > 0 {
                JobEventKind::Progress { step: job.progress_step, total: job.progress_total, eta_seconds: None, preview_png_base64: None }
            } else {
                JobEventKind::Started
            })
        }
        JobStatus::Succeeded => JobEventKind::Succeeded { images: job.images.iter().map(ImageView::from).collect() },
        JobStatus::Failed => JobEventKind::Failed { error: job.error.unwrap_or_else(|| "failed".into()) },
        JobStatus::Cancelled => JobEventKind::Cancelled,
    };
    JobEvent { job_id: job.id, kind }
}

/// Records a failure and tells listeners. If even that write fails, the listeners still hear it,
/// and the job, still `running` in the database, runs again at the next start.
fn fail(shared: &Shared, id: &str, error: &str) -> Result<(), StoreError> {
    tracing::warn!(job = %id, error, "job failed");
    let written = shared.store.mark_failed(id, error);
    shared.emit(id, JobEventKind::Failed { error: error.to_string() });
    written.map(|_| ())
}

/// Turns executor reports into events (every step) and database writes (throttled), and
/// computes the ETA.
struct ProgressSink<'a> {
    /// Where events, state and the store live.
    shared: &'a Shared,
    /// The job reporting.
    job_id: &'a str,
    /// The first report's step and time: the ETA uses the pace since then, which leaves out the
    /// work before the first step (loading, text encoding).
    first: Option<(u32, Instant)>,
    /// When progress was last written to the database.
    last_write: Option<Instant>,
}

impl<'a> ProgressSink<'a> {
    fn new(shared: &'a Shared, job_id: &'a str) -> Self {
        Self { shared, job_id, first: None, last_write: None }
    }

    fn report(&mut self, progress: JobProgress) {
        let now = Instant::now();
        let eta_seconds = match self.first {
            Some((first_step, first_at)) if progress.step > first_step => {
                let per_step = now.duration_since(first_at).as_secs_f64() / f64::from(progress.step - first_step);
                Some(per_step * f64::from(progress.total.saturating_sub(progress.step)))
            }
            Some(_) => None,
            None => {
                self.first = Some((progress.step, now));
                None
            }
        };
        let kind = JobEventKind::Progress {
            step: progress.step,
            total: progress.total,
            eta_seconds,
            preview_png_base64: progress.preview_png.as_deref().map(base64_encode),
        };
        if should_write_progress(self.last_write, now, progress.step, progress.total) {
            self.last_write = Some(now);
            if let Err(e) = self.shared.store.update_progress(self.job_id, progress.step, progress.total) {
                tracing::warn!(job = %self.job_id, error = %e, "could not record progress");
            }
        }
        // Remembered and sent under one lock, so `JobQueue::watch` sees each step in exactly one
        // of the two.
        let mut state = lock(&self.shared.state);
        if let Some(running) = state.running.as_mut() {
            running.last_progress = Some(kind.clone());
        }
        self.shared.emit(self.job_id, kind);
    }
}

/// The first report, the last step, and otherwise at most one write per
/// [`PROGRESS_WRITE_INTERVAL`].
fn should_write_progress(last_write: Option<Instant>, now: Instant, step: u32, total: u32) -> bool {
    match last_write {
        None => true,
        Some(_) if step >= total => true,
        Some(last) => now.duration_since(last) >= PROGRESS_WRITE_INTERVAL,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::store::tests::{settings, TempDir};
    use super::*;

    /// How the fake behaves, chosen by the job's prompt.
    const BLOCK: &str = "block"; // runs until cancelled
    const FAIL: &str = "fail"; // fails after one step
    const PANIC: &str = "panic"; // panics after one step

    /// What every fake executor saw, shared with the test.
    #[derive(Default)]
    struct Calls {
        /// Prompts in the order the executor started them.
        started: Mutex<Vec<String>>,
        /// Executions in progress now, and the most ever at once.
        active: AtomicUsize,
        max_active: AtomicUsize,
        /// Executions per job id.
        per_job: Mutex<HashMap<String, usize>>,
    }

    /// Sleeps a little per step, reports progress with a tiny preview, writes no files.
    struct FakeExecutor {
        calls: Arc<Calls>,
        step_delay: Duration,
        /// Whether the `BLOCK` prompt blocks (false: it runs like any other job).
        blocking: bool,
    }

    impl FakeExecutor {
        fn new(calls: &Arc<Calls>) -> Self {
            Self { calls: Arc::clone(calls), step_delay: Duration::from_millis(2), blocking: true }
        }
    }

    impl JobExecutor for FakeExecutor {
        fn execute(
            &mut self,
            job: &JobRecord,
            cancel: &CancelToken,
            progress: &mut dyn FnMut(JobProgress),
        ) -> Result<Vec<NewImage>, ExecError> {
            let active = self.calls.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.calls.max_active.fetch_max(active, Ordering::SeqCst);
            lock(&self.calls.started).push(job.settings.prompt.clone());
            *lock(&self.calls.per_job).entry(job.id.clone()).or_default() += 1;
            let result = self.run(job, cancel, progress);
            self.calls.active.fetch_sub(1, Ordering::SeqCst);
            result
        }
    }

    impl FakeExecutor {
        fn run(&self, job: &JobRecord, cancel: &CancelToken, progress: &mut dyn FnMut(JobProgress)) -> Result<Vec<NewImage>, ExecError> {
            let total = job.settings.steps;
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut step = 0;
            loop {
                if cancel.is_cancelled() {
                    return Err(ExecError::Cancelled);
                }
                std::thread::sleep(self.step_delay);
                if self.blocking && job.settings.prompt == BLOCK {
                    if Instant::now() > deadline {
                        return Err(ExecError::Failed("the test never cancelled".into()));
                    }
                    progress(JobProgress { step: 1, total, preview_png: None });
                    continue;
                }
                step += 1;
                progress(JobProgress { step, total, preview_png: Some(vec![1, 2, 3]) });
                match job.settings.prompt.as_str() {
                    FAIL => return Err(ExecError::Failed("out of memory: 64x64 needs 1 GiB".into())),
                    PANIC => panic!("index out of bounds"),
                    _ => {}
                }
                if step == total {
                    break;
                }
            }
            Ok((0..job.settings.batch_size)
                .map(|i| NewImage {
                    batch_index: i,
                    path: format!("2025-01-31/{}-{i}.png", job.id),
                    seed: job.settings.seed + u64::from(i),
                    width: job.settings.width,
                    height: job.settings.height,
                    sha256: "00".repeat(32),
                    infotext: job.settings.prompt.clone(),
                })
                .collect())
        }
    }

    fn open(dir: &TempDir, calls: &Arc<Calls>) -> JobQueue {
        let boxed: Box<dyn JobExecutor> = Box::new(FakeExecutor::new(calls));
        let store = Arc::new(JobStore::open(&dir.0).unwrap());
        JobQueue::start(store, boxed).unwrap().0
    }

    fn open_with(dir: &TempDir, executor: FakeExecutor) -> JobQueue {
        let store = Arc::new(JobStore::open(&dir.0).unwrap());
        JobQueue::start(store, executor).unwrap().0
    }

    fn submit(queue: &JobQueue, prompt: &str) -> JobRecord {
        queue.submit(&settings(prompt, 1), None).unwrap().job
    }

    /// Polls the store until the job has `status` (panics after 10 s).
    fn wait_for(queue: &JobQueue, id: &str, status: JobStatus) -> JobRecord {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let job = queue.store().get(id).unwrap().unwrap();
            if job.status == status {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} stayed {} instead of becoming {status}", job.status);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The events for `id` until its terminal one (panics after 10 s).
    fn events_until_terminal(rx: &mut broadcast::Receiver<JobEvent>, id: &str) -> Vec<JobEventKind> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut kinds = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no terminal event for {id}; got {kinds:?}");
            match rx.try_recv() {
                Ok(event) if event.job_id == id => {
                    let terminal = event.kind.is_terminal();
                    kinds.push(event.kind);
                    if terminal {
                        return kinds;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("event channel: {e}"),
            }
        }
    }

    #[test]
    fn five_jobs_finish_in_submission_order_one_at_a_time() {
        let dir = TempDir::new("five");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let jobs: Vec<JobRecord> = (0..5).map(|i| submit(&queue, &format!("job {i}"))).collect();
        let done: Vec<JobRecord> = jobs.iter().map(|j| wait_for(&queue, &j.id, JobStatus::Succeeded)).collect();

        let prompts: Vec<String> = (0..5).map(|i| format!("job {i}")).collect();
        assert_eq!(*lock(&calls.started), prompts);
        assert_eq!(calls.max_active.load(Ordering::SeqCst), 1, "never two jobs at once");
        for pair in done.windows(2) {
            assert!(pair[0].finished_at_ms <= pair[1].started_at_ms, "{pair:?}");
        }
        for job in &done {
            assert_eq!((job.images.len(), job.attempts, job.progress_step, job.progress_total), (1, 1, 4, 4));
            assert_eq!(job.images[0].path, format!("2025-01-31/{}-0.png", job.id));
        }
        assert_eq!(queue.store().counts().unwrap().succeeded, 5);
    }

    #[test]
    fn a_job_sends_queued_started_progress_and_succeeded_in_order() {
        let dir = TempDir::new("events");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let mut rx = queue.subscribe();
        let job = submit(&queue, "a cat");
        let kinds = events_until_terminal(&mut rx, &job.id);

        assert_eq!(kinds[0], JobEventKind::Queued { position: 0 });
        assert_eq!(kinds[1], JobEventKind::Started);
        let steps: Vec<u32> = kinds[2..6]
            .iter()
            .map(|k| match k {
                JobEventKind::Progress { step, total: 4, preview_png_base64: Some(p), .. } if p == "AQID" => *step,
                other => panic!("expected progress, got {other:?}"),
            })
            .collect();
        assert_eq!(steps, [1, 2, 3, 4]);
        assert!(matches!(kinds[2], JobEventKind::Progress { eta_seconds: None, .. }), "no pace after one step");
        assert!(matches!(kinds[5], JobEventKind::Progress { eta_seconds: Some(eta), .. } if eta == 0.0));
        let JobEventKind::Succeeded { images } = &kinds[6] else { panic!("{:?}", kinds[6]) };
        assert_eq!(images[0].url, format!("/outputs/2025-01-31/{}-0.png", job.id));
        assert_eq!(kinds.len(), 7);
    }

    #[test]
    fn waiting_jobs_hear_their_positions_as_the_queue_moves() {
        let dir = TempDir::new("positions");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let mut rx = queue.subscribe();
        let first = submit(&queue, BLOCK);
        wait_for(&queue, &first.id, JobStatus::Running);
        let second = submit(&queue, "second");
        let third = submit(&queue, "third");
        assert_eq!((second.position, third.position), (Some(1), Some(2)));

        queue.cancel(&first.id).unwrap();
        let kinds = events_until_terminal(&mut rx, &third.id);
        // Submitted behind two; one ahead once `second` runs; then its own turn.
        let expected = [JobEventKind::Queued { position: 2 }, JobEventKind::Queued { position: 1 }, JobEventKind::Started];
        assert_eq!(kinds[..3], expected, "{kinds:?}");
        assert!(matches!(kinds.last(), Some(JobEventKind::Succeeded { .. })));
    }

    #[test]
    fn cancelling_a_running_job_stops_it_within_a_step() {
        let dir = TempDir::new("cancel-running");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let mut rx = queue.subscribe();
        let job = submit(&queue, BLOCK);
        wait_for(&queue, &job.id, JobStatus::Running);
        let next = submit(&queue, "next");

        assert_eq!(queue.cancel(&job.id).unwrap(), Some(CancelOutcome::CancelRequested));
        let kinds = events_until_terminal(&mut rx, &job.id);
        assert_eq!(kinds.last(), Some(&JobEventKind::Cancelled));
        let cancelled = wait_for(&queue, &job.id, JobStatus::Cancelled);
        assert!(cancelled.images.is_empty() && cancelled.finished_at_ms.is_some());
        // The queue goes on.
        wait_for(&queue, &next.id, JobStatus::Succeeded);
        assert_eq!(queue.cancel(&job.id).unwrap(), Some(CancelOutcome::AlreadyFinished(JobStatus::Cancelled)));
        assert_eq!(queue.cancel("no-such-job").unwrap(), None);
    }

    #[test]
    fn cancelling_a_queued_job_means_it_never_runs() {
        let dir = TempDir::new("cancel-queued");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let blocker = submit(&queue, BLOCK);
        wait_for(&queue, &blocker.id, JobStatus::Running);
        let victim = submit(&queue, "victim");
        let after = submit(&queue, "after");
        let mut rx = queue.subscribe();

        assert_eq!(queue.cancel(&victim.id).unwrap(), Some(CancelOutcome::Cancelled));
        assert_eq!(events_until_terminal(&mut rx, &victim.id), [JobEventKind::Cancelled]);
        assert_eq!(queue.store().position(&after.id).unwrap(), Some(1));
        queue.cancel(&blocker.id).unwrap();
        wait_for(&queue, &after.id, JobStatus::Succeeded);
        assert_eq!(*lock(&calls.started), [BLOCK, "after"]);
        assert_eq!(queue.store().get(&victim.id).unwrap().unwrap().status, JobStatus::Cancelled);
    }

    #[test]
    fn a_failing_executor_marks_the_job_failed_with_its_message() {
        let dir = TempDir::new("fail");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let mut rx = queue.subscribe();
        let failing = submit(&queue, FAIL);
        let next = submit(&queue, "next");
        let kinds = events_until_terminal(&mut rx, &failing.id);
        let message = "out of memory: 64x64 needs 1 GiB";
        assert_eq!(kinds.last(), Some(&JobEventKind::Failed { error: message.into() }));
        let job = wait_for(&queue, &failing.id, JobStatus::Failed);
        assert_eq!(job.error.as_deref(), Some(message));
        wait_for(&queue, &next.id, JobStatus::Succeeded);
    }

    #[test]
    fn a_panicking_executor_fails_the_job_and_the_worker_goes_on() {
        let dir = TempDir::new("panic");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let panicking = submit(&queue, PANIC);
        let next = submit(&queue, "next");
        let job = wait_for(&queue, &panicking.id, JobStatus::Failed);
        let error = job.error.unwrap();
        assert!(error.contains("crashed") && error.contains("index out of bounds"), "{error}");
        wait_for(&queue, &next.id, JobStatus::Succeeded);
    }

    #[test]
    fn a_late_subscriber_gets_the_current_state_first() {
        let dir = TempDir::new("snapshot");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let running = submit(&queue, BLOCK);
        wait_for(&queue, &running.id, JobStatus::Running);
        let queued = submit(&queue, "queued");
        let deadline = Instant::now() + Duration::from_secs(10);
        let progress = loop {
            match queue.snapshot(&running.id).unwrap().unwrap().kind {
                kind @ JobEventKind::Progress { .. } => break kind,
                JobEventKind::Started => assert!(Instant::now() < deadline, "no progress"),
                other => panic!("{other:?}"),
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(matches!(progress, JobEventKind::Progress { step: 1, total: 4, .. }), "{progress:?}");
        assert_eq!(queue.snapshot(&queued.id).unwrap().unwrap().kind, JobEventKind::Queued { position: 1 });
        assert_eq!(queue.snapshot("nope").unwrap(), None);

        queue.cancel(&running.id).unwrap();
        wait_for(&queue, &queued.id, JobStatus::Succeeded);
        assert_eq!(queue.snapshot(&running.id).unwrap().unwrap().kind, JobEventKind::Cancelled);
        let JobEventKind::Succeeded { images } = queue.snapshot(&queued.id).unwrap().unwrap().kind else { panic!("not succeeded") };
        assert_eq!(images.len(), 1);
        let failed = submit(&queue, FAIL);
        wait_for(&queue, &failed.id, JobStatus::Failed);
        assert!(matches!(queue.snapshot(&failed.id).unwrap().unwrap().kind, JobEventKind::Failed { .. }));
    }

    #[test]
    fn watch_joins_the_snapshot_and_the_live_events_without_a_gap_or_a_repeat() {
        let dir = TempDir::new("watch");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let mut long = settings("long", 1);
        long.steps = 200;
        let job = queue.submit(&long, None).unwrap().job;
        let (first, mut rx) = loop {
            let (event, rx) = queue.watch(&job.id).unwrap().unwrap();
            if matches!(event.kind, JobEventKind::Progress { step: 3.., .. }) {
                break (event, rx);
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let JobEventKind::Progress { step: seen, .. } = first.kind else { unreachable!() };
        let kinds = events_until_terminal(&mut rx, &job.id);
        let steps: Vec<u32> = kinds
            .iter()
            .filter_map(|k| match k {
                JobEventKind::Progress { step, .. } => Some(*step),
                _ => None,
            })
            .collect();
        let expected: Vec<u32> = (seen + 1..=200).collect();
        assert_eq!(steps, expected, "every later step exactly once, in order");
        assert!(matches!(kinds.last(), Some(JobEventKind::Succeeded { .. })));
        assert_eq!(kinds.len(), steps.len() + 1);
        assert!(queue.watch("nope").unwrap().is_none());
    }

    #[test]
    fn a_repeated_idempotency_key_returns_the_first_job_and_runs_it_once() {
        let dir = TempDir::new("idempotent");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let first = queue.submit(&settings("a", 1), Some("retry-me")).unwrap();
        let second = queue.submit(&settings("a", 2), Some("retry-me")).unwrap();
        assert!(first.created && !second.created);
        assert_eq!(first.job.id, second.job.id);
        wait_for(&queue, &first.job.id, JobStatus::Succeeded);
        assert_eq!(lock(&calls.per_job)[&first.job.id], 1);
        assert_eq!(queue.store().counts().unwrap().succeeded, 1);
    }

    #[test]
    fn a_job_interrupted_by_shutdown_runs_again_after_restart_and_succeeds_once() {
        let dir = TempDir::new("restart");
        let calls = Arc::new(Calls::default());
        let (interrupted, waiting) = {
            let queue = open(&dir, &calls);
            let interrupted = submit(&queue, BLOCK);
            wait_for(&queue, &interrupted.id, JobStatus::Running);
            let waiting = submit(&queue, "waiting");
            (interrupted, waiting)
            // Dropped mid-job: the worker is interrupted and joined.
        };
        let store = JobStore::open(&dir.0).unwrap();
        let job = store.get(&interrupted.id).unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0), "handed back, attempt not counted");
        assert_eq!(store.get(&waiting.id).unwrap().unwrap().status, JobStatus::Queued);
        drop(store);

        // This time the job is allowed to finish.
        let queue = open_with(&dir, FakeExecutor { blocking: false, ..FakeExecutor::new(&calls) });
        let done = wait_for(&queue, &interrupted.id, JobStatus::Succeeded);
        wait_for(&queue, &waiting.id, JobStatus::Succeeded);
        assert_eq!(done.images.len(), 1);
        assert_eq!(lock(&calls.per_job)[&interrupted.id], 2, "once before the restart, once after");
        assert_eq!(lock(&calls.per_job)[&waiting.id], 1);
        assert_eq!(*lock(&calls.started), [BLOCK, BLOCK, "waiting"], "the interrupted job keeps its place");
        assert_eq!(queue.store().counts().unwrap().succeeded, 2);
    }

    #[test]
    fn a_step_longer_than_the_shutdown_deadline_is_handed_back_without_counting_the_attempt() {
        let dir = TempDir::new("deadline");
        let calls = Arc::new(Calls::default());
        let queue = open_with(&dir, FakeExecutor { step_delay: Duration::from_millis(1500), ..FakeExecutor::new(&calls) });
        let job = submit(&queue, BLOCK);
        wait_for(&queue, &job.id, JobStatus::Running);
        // Running in the database comes before the executor starts: wait until it is inside its
        // first (1.5 s) step, past the cancel check before it.
        while lock(&calls.started).is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        assert!(!queue.shutdown_within(Duration::from_millis(100)), "the worker is mid-step");
        assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
        let row = queue.store().get(&job.id).unwrap().unwrap();
        assert_eq!((row.status, row.attempts), (JobStatus::Queued, 0), "handed back, attempt not counted");
        // A worker that stops in time is joined.
        let dir = TempDir::new("deadline-ok");
        let queue = open_with(&dir, FakeExecutor::new(&calls));
        let job = submit(&queue, BLOCK);
        wait_for(&queue, &job.id, JobStatus::Running);
        assert!(queue.shutdown_within(Duration::from_secs(10)));
        assert_eq!(queue.store().get(&job.id).unwrap().unwrap().status, JobStatus::Queued);
    }

    #[test]
    fn a_job_left_running_by_a_crash_runs_again_with_the_same_seed_and_succeeds_once() {
        let dir = TempDir::new("crash");
        let id = {
            // What a SIGKILL leaves: claimed in the database, no worker, no release.
            let store = JobStore::open(&dir.0).unwrap();
            let (job, _) = store.submit(&settings("crashed", 1234), None).unwrap();
            assert!(store.mark_running(&job.id).unwrap());
            store.update_progress(&job.id, 2, 4).unwrap();
            job.id
        };
        let calls = Arc::new(Calls::default());
        let store = Arc::new(JobStore::open(&dir.0).unwrap());
        let (queue, report) = JobQueue::start(store, FakeExecutor::new(&calls)).unwrap();
        assert_eq!(report, RecoveryReport { requeued: 1, cancelled: 0, failed: 0 });
        let done = wait_for(&queue, &id, JobStatus::Succeeded);
        assert_eq!((done.attempts, done.images.len(), done.images[0].seed), (2, 1, 1234));
        assert_eq!(lock(&calls.per_job)[&id], 1);
        drop(queue);
        // And a second restart finds nothing to recover and runs nothing.
        let store = Arc::new(JobStore::open(&dir.0).unwrap());
        let (queue, report) = JobQueue::start(store, FakeExecutor::new(&calls)).unwrap();
        assert_eq!(report, RecoveryReport::default());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(lock(&calls.per_job)[&id], 1);
        assert_eq!(queue.store().counts().unwrap().succeeded, 1);
    }

    #[test]
    fn shutdown_can_let_the_running_job_finish_and_leaves_the_rest_queued() {
        let dir = TempDir::new("finish");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let mut slow = settings("slow", 1);
        slow.steps = 50;
        let running = queue.submit(&slow, None).unwrap().job;
        wait_for(&queue, &running.id, JobStatus::Running);
        let waiting = submit(&queue, "waiting");
        queue.shutdown(ShutdownMode::FinishCurrentJob);
        let store = queue.store();
        assert_eq!(store.get(&running.id).unwrap().unwrap().status, JobStatus::Succeeded);
        assert_eq!(store.get(&waiting.id).unwrap().unwrap().status, JobStatus::Queued);
        // Submits after shutdown are kept for the next start.
        let later = submit(&queue, "later");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(store.get(&later.id).unwrap().unwrap().status, JobStatus::Queued);
        queue.shutdown(ShutdownMode::InterruptCurrentJob);
    }

    #[test]
    fn the_queue_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<JobQueue>();
        shareable::<JobStore>();
    }

    #[test]
    fn live_progress_names_only_the_running_job() {
        let dir = TempDir::new("live");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let running = submit(&queue, BLOCK);
        let queued = submit(&queue, "queued");
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.live_progress(&running.id).is_none() {
            assert!(Instant::now() < deadline, "no live progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        let live = queue.live_progress(&running.id).unwrap();
        assert_eq!((live.step, live.total), (1, 4));
        assert_eq!(queue.live_progress(&queued.id), None);
        queue.cancel(&running.id).unwrap();
        wait_for(&queue, &running.id, JobStatus::Cancelled);
        assert_eq!(queue.live_progress(&running.id), None);
    }

    #[test]
    fn an_idle_queue_shuts_down_at_once() {
        let dir = TempDir::new("idle");
        let calls = Arc::new(Calls::default());
        let queue = open(&dir, &calls);
        let started = Instant::now();
        drop(queue);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn progress_is_written_on_the_first_and_last_step_and_otherwise_every_interval() {
        let t0 = Instant::now();
        assert!(should_write_progress(None, t0, 1, 20));
        assert!(!should_write_progress(Some(t0), t0 + Duration::from_millis(100), 2, 20));
        assert!(should_write_progress(Some(t0), t0 + PROGRESS_WRITE_INTERVAL, 3, 20));
        assert!(should_write_progress(Some(t0), t0 + Duration::from_millis(1), 20, 20));
    }
}
