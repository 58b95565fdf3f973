//! The durable record of every job and image: one SQLite database, `<data_dir>/easel.db`.
//!
//! Owns the schema (embedded migrations, applied at open), the job state machine as it is
//! stored (`queued -> running -> succeeded | failed | cancelled`, plus `queued -> cancelled`), and
//! the rules that make it survive crashes ([`JobStore::recover_at_start`]). It knows nothing of
//! threads, the engine or HTTP: [`super::queue`] drives it.
//!
//! Every method is synchronous and short (one statement or one small transaction). Async code
//! calls it through `tokio::task::spawn_blocking`; the worker thread calls it directly.
//!
//! Settings chosen at open, and why:
//! - `journal_mode=WAL`: readers (history, status polls) never wait for the worker's writes, and
//!   a commit is one append to the log instead of a rewrite of pages in place.
//! - `synchronous=FULL`: every commit is fsynced before it returns. With WAL, `NORMAL` already
//!   survives a killed process, but a power cut could lose the last commits, and the promise is
//!   that an accepted job (a `202` already sent) is never lost. The cost is one fsync per commit,
//!   and commits are few: a submit, a start, at most four progress writes a second, a finish.
//! - `foreign_keys=ON`: an image row always names a job that exists.
//! - `busy_timeout=5s`: only matters when another process (the `sqlite3` shell, a backup) holds
//!   a lock; within Easel every call goes through the one connection below.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::api::{image_url, GenerationSettings, ImageView, JobStatus};

/// File name of the database inside the data dir.
pub const DB_FILE_NAME: &str = "easel.db";

/// The most jobs one [`JobStore::list`] page returns, whatever the caller asks for.
pub const MAX_LIST_LIMIT: u32 = 500;

/// How many jobs (by `seq`) one page of a prompt search examines at most. A search that has not
/// found a page's worth among them returns what it found with a cursor below them, so no request
/// scans the whole history; the next page goes on from there.
pub const SEARCH_WINDOW: i64 = 5_000;

/// A job found `running` at start-up this many times (attempts) is failed instead of run again:
/// something in it keeps taking the server down (out of memory, a driver crash), and re-running it
/// forever would keep every job behind it waiting.
pub const MAX_ATTEMPTS: u32 = 3;

/// The schema, one migration per released version; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_jobs_and_images.sql"), include_str!("migrations/0002_queue_order.sql")];

/// Where a new job joins the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueuePlace {
    /// After every queued job.
    Back,
    /// Before every queued job (ComfyUI's `front`).
    Front,
    /// Just before this queued job (ComfyUI's `number`, placed among its prompts); the back when
    /// that job is not queued any more.
    Before(String),
    /// Just after this queued job (a prompt's further jobs); the back when that job is not
    /// queued any more or is the last.
    After(String),
}

/// The number of jobs that run before queued job `j`: the running ones, and the queued ones
/// earlier in run order.
macro_rules! position_of_j {
    () => {
        concat!(
            "((SELECT COUNT(*) FROM jobs a WHERE a.status = 'running') + \
              (SELECT COUNT(*) FROM jobs a WHERE a.status = 'queued' AND (",
            run_order!("a"),
            ") < (",
            run_order!("j"),
            ")))"
        )
    };
}

/// A queued job's run order, the terms of an `ORDER BY` for the `jobs` row aliased `$t` (see
/// migration 0002); in parentheses, a row value to compare.
macro_rules! run_order {
    ($t:literal) => {
        concat!("COALESCE(", $t, ".queue_order, ", $t, ".seq), ", $t, ".seq")
    };
}

/// One job as stored, with its images (empty unless it succeeded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The public id, a v4 uuid.
    pub id: String,
    /// Submission order; also the history cursor (`before`).
    pub seq: i64,
    /// What runs: the resolved request, seed included.
    pub settings: GenerationSettings,
    pub status: JobStatus,
    /// Jobs that run before this one (0 = next), while queued; `None` in every other status.
    /// Computed when read, so it is exact at that moment.
    pub position: Option<u64>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Last step written (1-based; 0 before the first). Written at most every ~250 ms while
    /// running, so it can trail the live events by a few steps.
    pub progress_step: u32,
    pub progress_total: u32,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    /// Runs started, not counting runs handed back by a clean shutdown.
    pub attempts: u32,
    /// A user asked to cancel while it was running; the worker is stopping it.
    pub cancel_requested: bool,
    pub images: Vec<ImageRecord>,
}

/// An image the executor saved, as it hands it to [`JobStore::mark_succeeded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewImage {
    /// Position in the job's batch (0-based).
    pub batch_index: u32,
    /// Relative to the outputs dir, `/`-separated, e.g. `2025-01-31/<job>-0.png`.
    pub path: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// Hex sha256 of the file as written.
    pub sha256: String,
    /// The settings text embedded in the PNG.
    pub infotext: String,
}

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub job_id: String,
    pub batch_index: u32,
    /// Relative to the outputs dir (see [`NewImage::path`]).
    pub path: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
    pub infotext: String,
    pub created_at_ms: i64,
}

/// The wire view of a stored image: its URL under the outputs prefix, without the file path.
impl From<&ImageRecord> for ImageView {
    fn from(image: &ImageRecord) -> Self {
        Self {
            id: image.id.clone(),
            batch_index: image.batch_index,
            url: image_url(&image.path),
            seed: image.seed,
            width: image.width,
            height: image.height,
            infotext: image.infotext.clone(),
        }
    }
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// What [`JobStore::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "status", rename_all = "snake_case")]
pub enum CancelOutcome {
    /// It was queued and is now cancelled; it will never run.
    Cancelled,
    /// It is running; the request is recorded and the worker stops it within one step.
    CancelRequested,
    /// It had already finished with this status; nothing changed.
    AlreadyFinished(JobStatus),
}

/// How many jobs of each status exist (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// What [`JobStore::recover_at_start`] found: jobs a previous run left `running`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// Put back in the queue; they run again from the start with the same settings and seed.
    pub requeued: u64,
    /// A user had asked to cancel them before the stop; now cancelled.
    pub cancelled: u64,
    /// Already started [`MAX_ATTEMPTS`] times; now failed.
    pub failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data dir {path}: {source}")]
    CreateDataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the job database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("the job database {path} refused WAL mode (journal mode is {mode}); put the data dir on a local disk")]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "the job database {path} has schema version {found}, newer than this easel knows ({known}); \
         run a newer easel or use another data dir"
    )]
    SchemaTooNew { path: PathBuf, found: u32, known: u32 },
    #[error("migrating the job database {path} to schema version {version} failed: {source}")]
    Migration { path: PathBuf, version: u32, source: rusqlite::Error },
    #[error("job database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job {id} has a request the database cannot give back: {source}")]
    BadRequestJson { id: String, source: serde_json::Error },
    #[error("job {id} has status {status:?}, which this easel does not know")]
    UnknownStatus { id: String, status: String },
    #[error("image {id} has seed {seed:?}, which is not a u64")]
    BadSeed { id: String, seed: String },
    #[error("job {0} does not exist")]
    JobNotFound(String),
    #[error("job {id} is {status}, not running; its result was not recorded")]
    NotRunning { id: String, status: JobStatus },
    #[error("image path {0:?} must be relative to the outputs dir, '/'-separated, without '..'")]
    InvalidImagePath(String),
}

/// The job database. One connection, used by one caller at a time.
///
/// Why one connection behind a mutex rather than a pool: every call is a short statement, so
/// callers wait microseconds at most; a single writer can never meet `SQLITE_BUSY` from its own
/// siblings; and read-then-write transactions (idempotent submit, cancel) need no retry logic.
pub struct JobStore {
    /// The connection; the mutex serialises callers (worker thread, `spawn_blocking` tasks).
    conn: Mutex<Connection>,
    /// The database file, for log and error messages.
    path: PathBuf,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Every column of a job, and its queue position when queued (running jobs, and queued ones
/// earlier in run order).
const JOB_SELECT: &str = concat!(
    "SELECT j.seq, j.id, j.request, j.status, j.created_at, j.started_at, j.finished_at, \
     j.progress_step, j.progress_total, j.error, j.idempotency_key, j.attempts, j.cancel_requested, \
     CASE WHEN j.status = 'queued' THEN ",
    position_of_j!(),
    " END FROM jobs j"
);

const IMAGE_SELECT: &str = "SELECT id, job_id, batch_index, path, seed, width, height, sha256, infotext, created_at FROM images";

/// A job row before its JSON and status are checked (row closures can only return sqlite errors).
struct RawJob {
    seq: i64,
    id: String,
    request: String,
    status: String,
    created_at_ms: i64,
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    progress_step: u32,
    progress_total: u32,
    error: Option<String>,
    idempotency_key: Option<String>,
    attempts: u32,
    cancel_requested: bool,
    position: Option<u64>,
}

impl RawJob {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get(0)?,
            id: row.get(1)?,
            request: row.get(2)?,
            status: row.get(3)?,
            created_at_ms: row.get(4)?,
            started_at_ms: row.get(5)?,
            finished_at_ms: row.get(6)?,
            progress_step: row.get(7)?,
            progress_total: row.get(8)?,
            error: row.get(9)?,
            idempotency_key: row.get(10)?,
            attempts: row.get(11)?,
            cancel_requested: row.get(12)?,
            position: row.get(13)?,
        })
    }
}

struct RawImage {
    record: ImageRecord,
    seed: String,
}

fn image_from_row(row: &Row<'_>) -> rusqlite::Result<RawImage> {
    Ok(RawImage {
        seed: row.get(4)?,
        record: ImageRecord {
            id: row.get(0)?,
            job_id: row.get(1)?,
            batch_index: row.get(2)?,
            path: row.get(3)?,
            seed: 0,
            width: row.get(5)?,
            height: row.get(6)?,
            sha256: row.get(7)?,
            infotext: row.get(8)?,
            created_at_ms: row.get(9)?,
        },
    })
}

fn finish_image(raw: RawImage) -> Result<ImageRecord, StoreError> {
    let mut record = raw.record;
    record.seed = raw.seed.parse().map_err(|_| StoreError::BadSeed { id: record.id.clone(), seed: raw.seed })?;
    Ok(record)
}

/// Milliseconds since the unix epoch; 0 if the clock is before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// An image path must stay inside the outputs dir whatever joins it, so deleting it later is safe.
fn check_image_path(path: &str) -> Result<(), StoreError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains(['\\', ':', '\0'])
        || path.split('/').any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(StoreError::InvalidImagePath(path.to_string()));
    }
    Ok(())
}

impl JobStore {
    /// Opens (creating if needed) `<data_dir>/easel.db` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDataDir { path: data_dir.to_path_buf(), source })?;
        Self::open_file(&data_dir.join(DB_FILE_NAME))
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path: path.to_path_buf(), mode });
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A panic while it was held cannot leave it mid-transaction (an unfinished
    /// `Transaction` rolls back when dropped), so a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a queued job, or, when `idempotency_key` was seen before, returns that key's job
    /// unchanged with `created == false`.
    ///
    /// The earlier job is returned even if the settings differ: a retry of a request without a
    /// seed resolves to a different random seed, so comparing would reject honest retries.
    pub fn submit(&self, settings: &GenerationSettings, idempotency_key: Option<&str>) -> Result<(JobRecord, bool), StoreError> {
        self.submit_placed(settings, idempotency_key, &QueuePlace::Back)
    }

    /// [`Self::submit`] at `place` in the queue.
    pub fn submit_placed(
        &self,
        settings: &GenerationSettings,
        idempotency_key: Option<&str>,
        place: &QueuePlace,
    ) -> Result<(JobRecord, bool), StoreError> {
        let request = serde_json::to_string(settings).map_err(|source| StoreError::BadRequestJson { id: "(new)".into(), source })?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(key) = idempotency_key {
            let existing: Option<String> =
                tx.query_row("SELECT id FROM jobs WHERE idempotency_key = ?1", [key], |r| r.get(0)).optional()?;
            if let Some(id) = existing {
                let job = load_job(&tx, &id)?.ok_or(StoreError::JobNotFound(id))?;
                return Ok((job, false));
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let queue_order = queue_order_at(&tx, place)?;
        tx.execute(
            "INSERT INTO jobs (id, request, status, created_at, idempotency_key, queue_order) VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
            params![id, request, now_ms(), idempotency_key, queue_order],
        )?;
        let job = load_job(&tx, &id)?.ok_or_else(|| StoreError::JobNotFound(id.clone()))?;
        tx.commit()?;
        Ok((job, true))
    }

    /// Records a job that ran outside the queue (`easel generate`): added as running, then
    /// succeeded with its images (files already written), so history and the gallery show it like
    /// any other. A crash between the two leaves a running job, which the next server start runs.
    pub fn record_finished(
        &self,
        id: &str,
        settings: &GenerationSettings,
        created_at_ms: i64,
        images: &[NewImage],
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let request = serde_json::to_string(settings).map_err(|source| StoreError::BadRequestJson { id: id.to_string(), source })?;
        self.conn().execute(
            "INSERT INTO jobs (id, request, status, created_at, started_at, attempts) VALUES (?1, ?2, 'running', ?3, ?3, 1)",
            params![id, request, created_at_ms],
        )?;
        self.mark_succeeded(id, images)
    }

    /// The job with this id, with its images and queue position.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        load_job(&self.conn(), id)
    }

    /// History, newest first: at most `limit` jobs (clamped to 1..=[`MAX_LIST_LIMIT`]) with a
    /// `seq` below `before` (all when `None`). The cursor is `seq`, which never changes, so pages
    /// neither skip nor repeat jobs while new ones arrive.
    pub fn list(&self, limit: u32, before: Option<i64>) -> Result<JobPage, StoreError> {
        self.list_matching(limit, before, None)
    }

    /// [`Self::list`] restricted to jobs whose prompt contains `prompt` (ASCII case-insensitive),
    /// searched in the database, so the filter covers the whole history and not one page. Each
    /// page examines at most [`SEARCH_WINDOW`] jobs: a page may then hold fewer matches than
    /// `limit` (even none) and still carry a cursor to go on.
    pub fn list_matching(&self, limit: u32, before: Option<i64>, prompt: Option<&str>) -> Result<JobPage, StoreError> {
        self.list_matching_within(limit, before, prompt, SEARCH_WINDOW)
    }

    fn list_matching_within(&self, limit: u32, before: Option<i64>, prompt: Option<&str>, window: i64) -> Result<JobPage, StoreError> {
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        let conn = self.conn();
        // One extra row tells whether an older page exists, so the last page has no cursor.
        let fetch = i64::from(limit) + 1;
        let prompt = prompt.map(str::trim).filter(|p| !p.is_empty());
        // A search looks at the `window` sequence numbers below the cursor (gaps left by deleted
        // jobs only make it look at fewer).
        let floor = match prompt {
            Some(_) => {
                let top = match before {
                    Some(b) => b,
                    None => conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", [], |r| r.get::<_, i64>(0))?,
                };
                Some(top.saturating_sub(window.max(1)))
            }
            None => None,
        };
        let mut stmt = conn.prepare_cached(&format!(
            "{JOB_SELECT} WHERE (?1 IS NULL OR j.seq < ?1) AND (?4 IS NULL OR j.seq >= ?4) \
             AND (?2 IS NULL OR instr(lower(json_extract(j.request, '$.prompt')), lower(?2)) > 0) \
             ORDER BY j.seq DESC LIMIT ?3"
        ))?;
        let raws: Vec<RawJob> = stmt.query_map(params![before, prompt, fetch, floor], RawJob::from_row)?.collect::<Result<_, _>>()?;
        let more = raws.len() > limit as usize;
        let jobs = raws.into_iter().take(limit as usize).map(|raw| finish_job(&conn, raw)).collect::<Result<Vec<_>, _>>()?;
        let next_before = if more {
            jobs.last().map(|j| j.seq)
        } else {
            // The window ran out before the history did: go on below it.
            match floor {
                Some(floor) if conn.query_row("SELECT EXISTS(SELECT 1 FROM jobs WHERE seq < ?1)", [floor], |r| r.get::<_, bool>(0))? => {
                    Some(floor)
                }
                _ => None,
            }
        };
        Ok(JobPage { jobs, next_before })
    }

    /// Jobs that run before this one (0 = next) if it is queued; `None` otherwise or if unknown.
    pub fn position(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let position = self
            .conn()
            .query_row(concat!("SELECT ", position_of_j!(), " FROM jobs j WHERE j.id = ?1 AND j.status = 'queued'"), [id], |r| r.get(0))
            .optional()?;
        Ok(position)
    }

    /// The first `limit` queued jobs in run order with their positions, for position updates.
    pub fn queued_positions(&self, limit: u32) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT j.id, j.status FROM jobs j WHERE j.status IN ('queued', 'running') ORDER BY j.status = 'queued', ",
            run_order!("j"),
            " LIMIT ?1"
        ))?;
        // A running job counts as ahead of every queued one; limit + 1 covers it.
        let rows = stmt.query_map([i64::from(limit) + 1], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut positions = Vec::new();
        for (ahead, row) in rows.enumerate() {
            let (id, status) = row?;
            if status == "queued" && positions.len() < limit as usize {
                positions.push((id, ahead as u64));
            }
        }
        Ok(positions)
    }

    /// Every queued or running job, in run order (the running one first), at most `limit`.
    pub fn active(&self, limit: u32) -> Result<Vec<JobRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{JOB_SELECT} WHERE j.status IN ('queued', 'running') ORDER BY j.status = 'queued', {} LIMIT ?1",
            run_order!("j")
        ))?;
        let raws: Vec<RawJob> = stmt.query_map([i64::from(limit)], RawJob::from_row)?.collect::<Result<_, _>>()?;
        raws.into_iter().map(|raw| finish_job(&conn, raw)).collect()
    }

    /// The queued job that runs next (first in run order).
    /// A queued row whose request cannot be read (written by a newer Easel, or damaged) is
    /// failed with the reason, and the next one is taken: one bad row never wedges the queue.
    pub fn next_queued(&self) -> Result<Option<JobRecord>, StoreError> {
        let conn = self.conn();
        loop {
            let raw = conn
                .query_row(&format!("{JOB_SELECT} WHERE j.status = 'queued' ORDER BY {} LIMIT 1", run_order!("j")), [], RawJob::from_row)
                .optional()?;
            let Some(raw) = raw else { return Ok(None) };
            let id = raw.id.clone();
            match finish_job(&conn, raw) {
                Err(e @ (StoreError::BadRequestJson { .. } | StoreError::UnknownStatus { .. })) => {
                    tracing::error!(job = %id, error = %e, "a queued job cannot be read; failing it");
                    conn.execute(
                        "UPDATE jobs SET status = 'failed', finished_at = ?2, error = ?3 WHERE id = ?1 AND status = 'queued'",
                        params![id, now_ms(), format!("this job's settings cannot be read by this Easel ({e}); submit it again")],
                    )?;
                }
                other => return other.map(Some),
            }
        }
    }

    /// `queued -> running`. False when the job is not queued any more (cancelled meanwhile), in
    /// which case nothing changed and the caller must not run it: this guarded update is what
    /// makes "claim the job" atomic.
    pub fn mark_running(&self, id: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE jobs SET status = 'running', started_at = ?2, finished_at = NULL, attempts = attempts + 1, \
             progress_step = 0, progress_total = 0, error = NULL \
             WHERE id = ?1 AND status = 'queued'",
            params![id, now_ms()],
        )?;
        Ok(changed == 1)
    }

    /// Records progress of a running job (ignored if it is not running).
    pub fn update_progress(&self, id: &str, step: u32, total: u32) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET progress_step = ?2, progress_total = ?3 WHERE id = ?1 AND status = 'running'",
            params![id, step, total],
        )?;
        Ok(())
    }

    /// `running -> succeeded` and the image rows, in one transaction: either both are recorded
    /// or neither (a full disk leaves the job `running`, for the caller to fail or a restart to
    /// re-run). Call only after the files are on disk under their final names.
    pub fn mark_succeeded(&self, id: &str, images: &[NewImage]) -> Result<Vec<ImageRecord>, StoreError> {
        for image in images {
            check_image_path(&image.path)?;
        }
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let status = load_status(&tx, id)?.ok_or_else(|| StoreError::JobNotFound(id.to_string()))?;
        if status != JobStatus::Running {
            return Err(StoreError::NotRunning { id: id.to_string(), status });
        }
        let mut records = Vec::with_capacity(images.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO images (id, job_id, batch_index, path, seed, width, height, sha256, infotext, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for image in images {
                let record = ImageRecord {
                    id: uuid::Uuid::new_v4().to_string(),
                    job_id: id.to_string(),
                    batch_index: image.batch_index,
                    path: image.path.clone(),
                    seed: image.seed,
                    width: image.width,
                    height: image.height,
                    sha256: image.sha256.clone(),
                    infotext: image.infotext.clone(),
                    created_at_ms: now,
                };
                insert.execute(params![
                    record.id,
                    record.job_id,
                    record.batch_index,
                    record.path,
                    record.seed.to_string(),
                    record.width,
                    record.height,
                    record.sha256,
                    record.infotext,
                    record.created_at_ms,
                ])?;
                records.push(record);
            }
        }
        tx.execute("UPDATE jobs SET status = 'succeeded', finished_at = ?2, error = NULL WHERE id = ?1", params![id, now])?;
        tx.commit()?;
        Ok(records)
    }

    /// `running -> failed` with the message a user will read. False if it was not running.
    pub fn mark_failed(&self, id: &str, error: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?2, error = ?3 WHERE id = ?1 AND status = 'running'",
            params![id, now_ms(), error],
        )?;
        Ok(changed == 1)
    }

    /// `running -> cancelled`, once the worker has stopped it. False if it was not running.
    pub fn mark_cancelled(&self, id: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1 AND status = 'running'",
            params![id, now_ms()],
        )?;
        Ok(changed == 1)
    }

    /// Hands a running job back after a clean shutdown stopped it: `queued` again without
    /// counting the attempt, or `cancelled` if a user had asked for that. Returns the new status
    /// (`None` if it was not running).
    pub fn release(&self, id: &str) -> Result<Option<JobStatus>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?2 \
             WHERE id = ?1 AND status = 'running' AND cancel_requested = 1",
            params![id, now_ms()],
        )?;
        let status = if changed == 1 {
            Some(JobStatus::Cancelled)
        } else {
            let changed = tx.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL, progress_step = 0, progress_total = 0, \
                 attempts = MAX(attempts - 1, 0) WHERE id = ?1 AND status = 'running'",
                [id],
            )?;
            (changed == 1).then_some(JobStatus::Queued)
        };
        tx.commit()?;
        Ok(status)
    }

    /// A user's cancel: a queued job is cancelled at once; a running one is flagged (the caller
    /// must also fire its cancel token); a finished one is left alone. `None` if unknown.
    pub fn cancel(&self, id: &str) -> Result<Option<CancelOutcome>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(status) = load_status(&tx, id)? else {
            return Ok(None);
        };
        let outcome = match status {
            JobStatus::Queued => {
                tx.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1", params![id, now_ms()])?;
                CancelOutcome::Cancelled
            }
            JobStatus::Running => {
                tx.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", [id])?;
                CancelOutcome::CancelRequested
            }
            finished => CancelOutcome::AlreadyFinished(finished),
        };
        tx.commit()?;
        Ok(Some(outcome))
    }

    /// The image with this id.
    pub fn image(&self, image_id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let raw = self.conn().query_row(&format!("{IMAGE_SELECT} WHERE id = ?1"), [image_id], image_from_row).optional()?;
        raw.map(finish_image).transpose()
    }

    /// Forgets an image and returns its path (relative to the outputs dir) so the caller can
    /// delete the file; `None` if unknown. Row first, file second: a crash in between leaves an
    /// orphan file, never a row pointing at nothing.
    pub fn delete_image(&self, image_id: &str) -> Result<Option<String>, StoreError> {
        let path = self.conn().query_row("DELETE FROM images WHERE id = ?1 RETURNING path", [image_id], |r| r.get(0)).optional()?;
        Ok(path)
    }

    /// How many jobs have each status.
    /// Jobs waiting in the queue (one index range, cheap enough for every submission).
    pub fn queued_count(&self) -> Result<u64, StoreError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM jobs WHERE status = 'queued'", [], |r| r.get(0))?)
    }

    pub fn counts(&self) -> Result<StatusCounts, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        let mut counts = StatusCounts::default();
        for row in rows {
            let (status, n) = row?;
            match JobStatus::parse(&status) {
                Some(JobStatus::Queued) => counts.queued = n,
                Some(JobStatus::Running) => counts.running = n,
                Some(JobStatus::Succeeded) => counts.succeeded = n,
                Some(JobStatus::Failed) => counts.failed = n,
                Some(JobStatus::Cancelled) => counts.cancelled = n,
                None => return Err(StoreError::UnknownStatus { id: "(count)".into(), status }),
            }
        }
        Ok(counts)
    }

    /// Settles the jobs a previous process left `running` (it crashed or was killed): they go
    /// back to `queued` and run again from the start, same settings and seed, in their original
    /// order. Exceptions: a job a user had asked to cancel becomes `cancelled`, and one already
    /// started [`MAX_ATTEMPTS`] times becomes `failed`. Call once, before any worker starts.
    pub fn recover_at_start(&self) -> Result<RecoveryReport, StoreError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cancelled =
            tx.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?1 WHERE status = 'running' AND cancel_requested = 1", [now])?;
        let failed = tx.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?1, \
             error = 'the server stopped while running this job ' || attempts || \
                     ' times; it is not retried again (look in the server log for a crash or an out-of-memory kill)' \
             WHERE status = 'running' AND attempts >= ?2",
            params![now, MAX_ATTEMPTS],
        )?;
        let requeued = tx.execute(
            "UPDATE jobs SET status = 'queued', started_at = NULL, progress_step = 0, progress_total = 0 \
             WHERE status = 'running'",
            [],
        )?;
        tx.commit()?;
        Ok(RecoveryReport { requeued: requeued as u64, cancelled: cancelled as u64, failed: failed as u64 })
    }
}

/// The `queue_order` of a job joining at `place`: none at the back; one below the first queued
/// job's at the front; halfway between the named job's and its neighbour on that side (one
/// below it when nothing is before it; the back when nothing is after it).
/// Halving runs out of float64 after ~50 placements between the same two jobs; a tie then runs
/// in submission order.
fn queue_order_at(conn: &Connection, place: &QueuePlace) -> Result<Option<f64>, StoreError> {
    let order = "COALESCE(queue_order, seq)";
    Ok(match place {
        QueuePlace::Back => None,
        QueuePlace::Front => conn
            .query_row(&format!("SELECT MIN({order}) FROM jobs WHERE status = 'queued'"), [], |r| r.get::<_, Option<f64>>(0))?
            .map(|m| m - 1.0),
        QueuePlace::Before(id) | QueuePlace::After(id) => {
            let at: Option<(f64, i64)> = conn
                .query_row(&format!("SELECT {order}, seq FROM jobs WHERE id = ?1 AND status = 'queued'"), [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((at, seq)) = at else { return Ok(None) };
            let before = matches!(place, QueuePlace::Before(_));
            let (pick, compare) = if before { ("MAX", "<") } else { ("MIN", ">") };
            let neighbour: Option<f64> = conn.query_row(
                &format!("SELECT {pick}({order}) FROM jobs WHERE status = 'queued' AND ({order}, seq) {compare} (?1, ?2)"),
                params![at, seq],
                |r| r.get(0),
            )?;
            match (neighbour, before) {
                (Some(n), _) => Some((n + at) / 2.0),
                (None, true) => Some(at - 1.0),
                (None, false) => None,
            }
        }
    })
}

/// Applies the migrations the database lacks, each in its own exclusive transaction together
/// with its `user_version` bump, so a crash mid-migration leaves the previous version intact and
/// two processes opening at once cannot both apply one.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as u32;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > known {
            return Err(StoreError::SchemaTooNew { path: path.to_path_buf(), found: version, known });
        }
        if version == known {
            return Ok(());
        }
        let next = version + 1;
        let err = |source| StoreError::Migration { path: path.to_path_buf(), version: next, source };
        tx.execute_batch(MIGRATIONS[version as usize]).map_err(err)?;
        tx.pragma_update(None, "user_version", next).map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(db = %path.display(), version = next, "job database migrated");
    }
}

fn load_status(conn: &Connection, id: &str) -> Result<Option<JobStatus>, StoreError> {
    let name: Option<String> = conn.query_row("SELECT status FROM jobs WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    name.map(|status| JobStatus::parse(&status).ok_or_else(|| StoreError::UnknownStatus { id: id.to_string(), status })).transpose()
}

fn load_job(conn: &Connection, id: &str) -> Result<Option<JobRecord>, StoreError> {
    let raw = conn.prepare_cached(&format!("{JOB_SELECT} WHERE j.id = ?1"))?.query_row([id], RawJob::from_row).optional()?;
    raw.map(|raw| finish_job(conn, raw)).transpose()
}

fn load_images(conn: &Connection, job_id: &str) -> Result<Vec<ImageRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("{IMAGE_SELECT} WHERE job_id = ?1 ORDER BY batch_index"))?;
    let raws = stmt.query_map([job_id], image_from_row)?.collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(finish_image).collect()
}

fn finish_job(conn: &Connection, raw: RawJob) -> Result<JobRecord, StoreError> {
    let status =
        JobStatus::parse(&raw.status).ok_or_else(|| StoreError::UnknownStatus { id: raw.id.clone(), status: raw.status.clone() })?;
    let settings = serde_json::from_str(&raw.request).map_err(|source| StoreError::BadRequestJson { id: raw.id.clone(), source })?;
    let images = if status == JobStatus::Succeeded { load_images(conn, &raw.id)? } else { Vec::new() };
    Ok(JobRecord {
        id: raw.id,
        seq: raw.seq,
        settings,
        status,
        position: raw.position,
        created_at_ms: raw.created_at_ms,
        started_at_ms: raw.started_at_ms,
        finished_at_ms: raw.finished_at_ms,
        progress_step: raw.progress_step,
        progress_total: raw.progress_total,
        error: raw.error,
        idempotency_key: raw.idempotency_key,
        attempts: raw.attempts,
        cancel_requested: raw.cancel_requested,
        images,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh temporary directory, removed when dropped.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("easel-jobs-{tag}-{}", uuid::Uuid::new_v4()));
            fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    impl JobStore {
        /// Status and error of a row, read without decoding its request.
        fn get_raw_status(&self, id: &str) -> (String, String) {
            self.conn()
                .query_row("SELECT status, COALESCE(error, '') FROM jobs WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        }
    }

    pub(crate) fn settings(prompt: &str, seed: u64) -> GenerationSettings {
        GenerationSettings {
            prompt: prompt.to_string(),
            negative_prompt: String::new(),
            seed,
            steps: 4,
            cfg_scale: 7.5,
            width: 64,
            height: 64,
            sampler: crate::api::Sampler::Euler,
            schedule: crate::api::Schedule::Default,
            batch_size: 1,
            model: None,
            init_image: None,
            mask: None,
            mask_blur: None,
            strength: None,
            outpaint: None,
            hires: None,
            prompt_syntax: crate::api::PromptSyntax::Plain,
            clip_skip: 1,
            loras: Vec::new(),
            vae: None,
            noise: Default::default(),
            png_text: Default::default(),
            vae_tiling: Default::default(),
            sampling_range: None,
            stages: Vec::new(),
            masked_content: Default::default(),
            mask_grow: 0,
            inpaint_area: Default::default(),
            inpaint_padding: 0,
            batch_index: None,
            combined_prompts: Vec::new(),
            conditioning: None,
        }
    }

    fn image(index: u32, seed: u64) -> NewImage {
        NewImage {
            batch_index: index,
            path: format!("2025-01-31/job-{index}.png"),
            seed,
            width: 64,
            height: 64,
            sha256: "ab".repeat(32),
            infotext: "a cat\nSteps: 4".into(),
        }
    }

    fn submit(store: &JobStore, prompt: &str) -> JobRecord {
        store.submit(&settings(prompt, 1), None).unwrap().0
    }

    #[test]
    fn fresh_database_is_migrated_and_reopens_without_reapplying() {
        let dir = TempDir::new("migrate");
        let store = JobStore::open(&dir.0.join("nested")).unwrap();
        let conn = store.conn();
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as u32);
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
        let fk: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert!(fk);
        drop(conn);
        let id = submit(&store, "kept").id;
        drop(store);

        let store = JobStore::open(&dir.0.join("nested")).unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap().settings.prompt, "kept");
        assert!(dir.0.join("nested").join(DB_FILE_NAME).exists());
    }

    #[test]
    fn active_lists_running_then_queued_in_run_order_and_nothing_finished() {
        let dir = TempDir::new("active");
        let store = JobStore::open(&dir.0).unwrap();
        let ids: Vec<String> = ["one", "two", "three", "four"].iter().map(|p| submit(&store, p).id).collect();
        assert!(store.mark_running(&ids[0]).unwrap());
        store.mark_succeeded(&ids[0], &[image(0, 1)]).unwrap();
        assert!(store.mark_running(&ids[1]).unwrap());
        store.cancel(&ids[3]).unwrap();
        let active: Vec<(String, JobStatus)> = store.active(10).unwrap().into_iter().map(|j| (j.id, j.status)).collect();
        assert_eq!(active, vec![(ids[1].clone(), JobStatus::Running), (ids[2].clone(), JobStatus::Queued)]);
        assert_eq!(store.active(1).unwrap().len(), 1);
    }

    #[test]
    fn jobs_placed_at_the_front_before_or_after_another_run_there() {
        let dir = TempDir::new("placed");
        let store = JobStore::open(&dir.0).unwrap();
        let running = submit(&store, "running").id;
        assert!(store.mark_running(&running).unwrap());
        let [a, b, c] = ["a", "b", "c"].map(|p| submit(&store, p).id);
        let placed = |prompt: &str, place: QueuePlace| store.submit_placed(&settings(prompt, 1), None, &place).unwrap().0;
        let d = placed("d", QueuePlace::Front);
        assert_eq!(d.position, Some(1), "only the running job is ahead");
        let e = placed("e", QueuePlace::Before(c.clone())).id;
        let f = placed("f", QueuePlace::After(d.id.clone())).id;
        let g = placed("g", QueuePlace::After(c.clone())).id;
        let h = placed("h", QueuePlace::Before("not-a-job".into())).id;
        let order: Vec<String> = store.active(20).unwrap().into_iter().map(|j| j.settings.prompt).collect();
        assert_eq!(order, vec!["running", "d", "f", "a", "b", "e", "c", "g", "h"]);
        // Positions agree with the order, one by one and in the position updates.
        for (i, id) in [&d.id, &f, &a, &b, &e, &c, &g, &h].into_iter().enumerate() {
            assert_eq!(store.position(id).unwrap(), Some(i as u64 + 1), "{}", store.get(id).unwrap().unwrap().settings.prompt);
            assert_eq!(store.get(id).unwrap().unwrap().position, Some(i as u64 + 1));
        }
        let positions: Vec<u64> = store.queued_positions(20).unwrap().into_iter().map(|(_, p)| p).collect();
        assert_eq!(positions, (1..=8).collect::<Vec<_>>());
        store.mark_succeeded(&running, &[image(0, 1)]).unwrap();
        assert_eq!(store.next_queued().unwrap().unwrap().id, d.id);
        // Ahead of everything queued, even of a job placed at the front before.
        let i = placed("i", QueuePlace::Front).id;
        assert_eq!(store.next_queued().unwrap().unwrap().id, i);
    }

    #[test]
    fn a_version_1_database_keeps_its_queue_order_when_migrated() {
        let dir = TempDir::new("migrate-order");
        let path = dir.0.join(DB_FILE_NAME);
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            for (i, prompt) in ["first", "second"].iter().enumerate() {
                let request = serde_json::to_string(&settings(prompt, 1)).unwrap();
                tx.execute(
                    "INSERT INTO jobs (id, request, status, created_at) VALUES (?1, ?2, 'queued', ?3)",
                    params![format!("old-{i}"), request, now_ms()],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let store = JobStore::open(&dir.0).unwrap();
        let front = store.submit_placed(&settings("front", 1), None, &QueuePlace::Front).unwrap().0.id;
        let order: Vec<String> = store.active(10).unwrap().into_iter().map(|j| j.settings.prompt).collect();
        assert_eq!(order, vec!["front", "first", "second"]);
        assert_eq!(store.position("old-1").unwrap(), Some(2));
        assert_eq!(store.next_queued().unwrap().unwrap().id, front);
    }

    #[test]
    fn list_matching_searches_prompts_across_pages() {
        let dir = TempDir::new("matching");
        let store = JobStore::open(&dir.0).unwrap();
        for n in 0..30 {
            submit(&store, &if n % 10 == 0 { format!("A Red Fox {n}") } else { format!("lighthouse {n}") });
        }
        let page = store.list_matching(2, None, Some("red fox")).unwrap();
        let prompts: Vec<&str> = page.jobs.iter().map(|j| j.settings.prompt.as_str()).collect();
        assert_eq!(prompts, ["A Red Fox 20", "A Red Fox 10"]);
        let rest = store.list_matching(2, page.next_before, Some("red fox")).unwrap();
        assert_eq!(rest.jobs.iter().map(|j| j.settings.prompt.as_str()).collect::<Vec<_>>(), ["A Red Fox 0"]);
        assert_eq!(rest.next_before, None);
        assert_eq!(store.list_matching(100, None, Some("  ")).unwrap().jobs.len(), 30, "a blank filter matches all");
        assert!(store.list_matching(10, None, Some("%")).unwrap().jobs.is_empty(), "no wildcard characters");
    }

    #[test]
    fn a_prompt_search_examines_a_bounded_window_per_page() {
        let dir = TempDir::new("window");
        let store = JobStore::open(&dir.0).unwrap();
        for n in 0..30 {
            submit(&store, &if n < 2 { format!("old fox {n}") } else { format!("lighthouse {n}") });
        }
        // Windows of 10 jobs: the first two pages find nothing but go on; the third finds both.
        let mut before = None;
        let mut pages = Vec::new();
        loop {
            let page = store.list_matching_within(5, before, Some("fox"), 10).unwrap();
            pages.push(page.jobs.iter().map(|j| j.settings.prompt.clone()).collect::<Vec<_>>());
            match page.next_before {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, vec![vec![], vec![], vec!["old fox 1".to_string(), "old fox 0".to_string()]]);
        // Without a filter nothing changes: pages are full.
        assert_eq!(store.list_matching_within(5, None, None, 10).unwrap().jobs.len(), 5);
    }

    #[test]
    fn database_from_a_newer_easel_is_refused() {
        let dir = TempDir::new("too-new");
        drop(JobStore::open(&dir.0).unwrap());
        let conn = Connection::open(dir.0.join(DB_FILE_NAME)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = JobStore::open(&dir.0).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("newer easel"), "{err}");
    }

    #[test]
    fn submit_stores_the_settings_and_an_idempotency_key_returns_the_first_job() {
        let dir = TempDir::new("submit");
        let store = JobStore::open(&dir.0).unwrap();
        let (job, created) = store.submit(&settings("a cat", u64::MAX), Some("key-1")).unwrap();
        assert!(created);
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.settings, settings("a cat", u64::MAX));
        assert_eq!((job.position, job.attempts, job.progress_step), (Some(0), 0, 0));
        assert_eq!(job.idempotency_key.as_deref(), Some("key-1"));
        assert_eq!(uuid::Uuid::parse_str(&job.id).unwrap().get_version_num(), 4);

        // A retry (here with another random seed) finds the first job.
        let (again, created) = store.submit(&settings("a cat", 5), Some("key-1")).unwrap();
        assert!(!created);
        assert_eq!(again, job);
        let (other, created) = store.submit(&settings("a cat", 5), Some("key-2")).unwrap();
        assert!(created && other.id != job.id);
        // Jobs without a key never collide.
        assert_ne!(submit(&store, "x").id, submit(&store, "x").id);
        assert_eq!(store.counts().unwrap().queued, 4);
    }

    #[test]
    fn jobs_run_in_submission_order_and_positions_count_the_jobs_ahead() {
        let dir = TempDir::new("order");
        let store = JobStore::open(&dir.0).unwrap();
        let ids: Vec<String> = (0..4).map(|i| submit(&store, &format!("job {i}")).id).collect();
        let positions: Vec<Option<u64>> = ids.iter().map(|id| store.position(id).unwrap()).collect();
        assert_eq!(positions, [Some(0), Some(1), Some(2), Some(3)]);

        let first = store.next_queued().unwrap().unwrap();
        assert_eq!(first.id, ids[0]);
        assert!(store.mark_running(&first.id).unwrap());
        assert!(!store.mark_running(&first.id).unwrap(), "a job is claimed once");
        // The running job is still ahead of everyone queued.
        assert_eq!(store.position(&ids[0]).unwrap(), None);
        assert_eq!(store.position(&ids[1]).unwrap(), Some(1));
        assert_eq!(store.get(&ids[3]).unwrap().unwrap().position, Some(3));
        assert_eq!(store.next_queued().unwrap().unwrap().id, ids[1]);

        // Cancelling a queued job moves the ones behind it up.
        assert_eq!(store.cancel(&ids[2]).unwrap(), Some(CancelOutcome::Cancelled));
        assert_eq!(store.position(&ids[3]).unwrap(), Some(2));
        let expect = vec![(ids[1].clone(), 1), (ids[3].clone(), 2)];
        assert_eq!(store.queued_positions(10).unwrap(), expect);
        assert_eq!(store.queued_positions(1).unwrap(), expect[..1]);

        store.mark_succeeded(&ids[0], &[]).unwrap();
        assert_eq!(store.position(&ids[1]).unwrap(), Some(0));
        assert_eq!(store.position("no-such-job").unwrap(), None);
    }

    #[test]
    fn a_job_moves_through_its_states_and_records_its_images() {
        let dir = TempDir::new("lifecycle");
        let store = JobStore::open(&dir.0).unwrap();
        let id = submit(&store, "a cat").id;
        assert!(store.mark_running(&id).unwrap());
        store.update_progress(&id, 2, 4).unwrap();
        let running = store.get(&id).unwrap().unwrap();
        assert_eq!((running.status, running.progress_step, running.progress_total), (JobStatus::Running, 2, 4));
        assert_eq!(running.attempts, 1);
        assert!(running.started_at_ms.is_some() && running.finished_at_ms.is_none());

        let records = store.mark_succeeded(&id, &[image(0, u64::MAX), image(1, 7)]).unwrap();
        let done = store.get(&id).unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Succeeded);
        assert!(done.finished_at_ms.is_some());
        assert_eq!(done.images, records);
        assert_eq!(done.images[0].seed, u64::MAX, "the full u64 range survives the database");
        assert_eq!(store.image(&records[1].id).unwrap().unwrap(), records[1]);

        // A result can be recorded once, and only for a running job.
        let err = store.mark_succeeded(&id, &[image(0, 1)]).unwrap_err();
        assert!(matches!(err, StoreError::NotRunning { status: JobStatus::Succeeded, .. }), "{err}");
        assert!(!store.mark_failed(&id, "late").unwrap());
        assert_eq!(store.get(&id).unwrap().unwrap().images.len(), 2);

        assert_eq!(store.delete_image(&records[0].id).unwrap().as_deref(), Some("2025-01-31/job-0.png"));
        assert_eq!(store.delete_image(&records[0].id).unwrap(), None);
        assert_eq!(store.get(&id).unwrap().unwrap().images, records[1..]);

        let failing = submit(&store, "b").id;
        store.mark_running(&failing).unwrap();
        assert!(store.mark_failed(&failing, "out of memory: the model needs 4 GiB").unwrap());
        let failed = store.get(&failing).unwrap().unwrap();
        assert_eq!((failed.status, failed.error.as_deref()), (JobStatus::Failed, Some("out of memory: the model needs 4 GiB")));
        let counts = store.counts().unwrap();
        assert_eq!((counts.succeeded, counts.failed, counts.queued, counts.running), (1, 1, 0, 0));
    }

    #[test]
    fn image_paths_that_could_leave_the_outputs_dir_are_refused_and_nothing_is_recorded() {
        let dir = TempDir::new("paths");
        let store = JobStore::open(&dir.0).unwrap();
        let id = submit(&store, "a").id;
        store.mark_running(&id).unwrap();
        for bad in ["", "/etc/passwd", "../x.png", "a/../../x.png", "a//b.png", "C:/x.png", "a\\..\\x.png", "./x.png"] {
            let mut img = image(0, 1);
            img.path = bad.to_string();
            let err = store.mark_succeeded(&id, &[image(1, 1), img]).unwrap_err();
            assert!(matches!(err, StoreError::InvalidImagePath(_)), "{bad:?}: {err}");
        }
        let job = store.get(&id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Running);
        let n: u64 = store.conn().query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_failed_image_insert_rolls_back_the_whole_result() {
        let dir = TempDir::new("rollback");
        let store = JobStore::open(&dir.0).unwrap();
        let id = submit(&store, "a").id;
        store.mark_running(&id).unwrap();
        // Two images with the same batch index break UNIQUE (job_id, batch_index) on the second.
        assert!(store.mark_succeeded(&id, &[image(0, 1), image(0, 2)]).is_err());
        let job = store.get(&id).unwrap().unwrap();
        assert_eq!((job.status, job.images.len()), (JobStatus::Running, 0));
        let n: u64 = store.conn().query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn cancel_stops_a_queued_job_flags_a_running_one_and_leaves_a_finished_one() {
        let dir = TempDir::new("cancel");
        let store = JobStore::open(&dir.0).unwrap();
        let queued = submit(&store, "q").id;
        let running = submit(&store, "r").id;
        let finished = submit(&store, "f").id;
        store.mark_running(&finished).unwrap();
        store.mark_succeeded(&finished, &[]).unwrap();
        store.mark_running(&running).unwrap();

        assert_eq!(store.cancel(&queued).unwrap(), Some(CancelOutcome::Cancelled));
        let job = store.get(&queued).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Cancelled);
        assert!(job.finished_at_ms.is_some());
        assert!(!store.mark_running(&queued).unwrap(), "a cancelled job is never claimed");
        assert_eq!(store.cancel(&queued).unwrap(), Some(CancelOutcome::AlreadyFinished(JobStatus::Cancelled)));

        assert_eq!(store.cancel(&running).unwrap(), Some(CancelOutcome::CancelRequested));
        let job = store.get(&running).unwrap().unwrap();
        assert_eq!((job.status, job.cancel_requested), (JobStatus::Running, true));
        assert!(store.mark_cancelled(&running).unwrap());
        assert_eq!(store.get(&running).unwrap().unwrap().status, JobStatus::Cancelled);

        assert_eq!(store.cancel(&finished).unwrap(), Some(CancelOutcome::AlreadyFinished(JobStatus::Succeeded)));
        assert_eq!(store.cancel("nope").unwrap(), None);
    }

    #[test]
    fn recover_at_start_requeues_running_jobs_in_their_order() {
        let dir = TempDir::new("recover");
        let (a, b, c, cancelled) = {
            let store = JobStore::open(&dir.0).unwrap();
            let a = submit(&store, "a").id;
            let b = submit(&store, "b").id;
            let c = submit(&store, "c").id;
            let cancelled = submit(&store, "cancel me").id;
            store.mark_running(&a).unwrap();
            store.update_progress(&a, 3, 4).unwrap();
            store.mark_running(&cancelled).unwrap();
            store.cancel(&cancelled).unwrap();
            (a, b, c, cancelled)
            // Dropped while `a` runs: what a killed process leaves behind.
        };
        let store = JobStore::open(&dir.0).unwrap();
        let report = store.recover_at_start().unwrap();
        assert_eq!(report, RecoveryReport { requeued: 1, cancelled: 1, failed: 0 });
        let job = store.get(&a).unwrap().unwrap();
        assert_eq!((job.status, job.progress_step, job.position), (JobStatus::Queued, 0, Some(0)));
        assert_eq!(job.settings.seed, 1, "the same settings run again");
        assert_eq!(store.get(&b).unwrap().unwrap().position, Some(1));
        assert_eq!(store.get(&c).unwrap().unwrap().position, Some(2));
        assert_eq!(store.get(&cancelled).unwrap().unwrap().status, JobStatus::Cancelled);
        assert_eq!(store.next_queued().unwrap().unwrap().id, a);
        assert_eq!(store.recover_at_start().unwrap(), RecoveryReport::default());
    }

    #[test]
    fn a_job_that_keeps_killing_the_server_is_failed_not_rerun_forever() {
        let dir = TempDir::new("crash-loop");
        let store = JobStore::open(&dir.0).unwrap();
        let id = submit(&store, "poison").id;
        for attempt in 1..=MAX_ATTEMPTS {
            assert!(store.mark_running(&id).unwrap());
            let report = store.recover_at_start().unwrap();
            if attempt < MAX_ATTEMPTS {
                assert_eq!(report.requeued, 1, "attempt {attempt}");
            } else {
                assert_eq!(report, RecoveryReport { requeued: 0, cancelled: 0, failed: 1 });
            }
        }
        let job = store.get(&id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert!(job.error.unwrap().contains("3 times"));
    }

    #[test]
    fn a_queued_row_that_cannot_be_read_is_failed_and_the_next_one_runs() {
        let dir = TempDir::new("bad-row");
        let store = JobStore::open(&dir.0).unwrap();
        let bad = submit(&store, "from the future").id;
        let good = submit(&store, "fine").id;
        store.conn().execute("UPDATE jobs SET request = '{\"prompt\": 3}' WHERE id = ?1", [&bad]).unwrap();
        assert_eq!(store.next_queued().unwrap().unwrap().id, good);
        let failed = store.get_raw_status(&bad);
        assert_eq!(failed.0, "failed");
        assert!(failed.1.contains("cannot be read"), "{}", failed.1);
    }

    #[test]
    fn release_after_a_clean_shutdown_requeues_without_counting_the_attempt() {
        let dir = TempDir::new("release");
        let store = JobStore::open(&dir.0).unwrap();
        let id = submit(&store, "a").id;
        store.mark_running(&id).unwrap();
        assert_eq!(store.release(&id).unwrap(), Some(JobStatus::Queued));
        let job = store.get(&id).unwrap().unwrap();
        assert_eq!((job.status, job.attempts, job.started_at_ms), (JobStatus::Queued, 0, None));
        assert_eq!(store.release(&id).unwrap(), None);
        store.mark_running(&id).unwrap();
        store.cancel(&id).unwrap();
        assert_eq!(store.release(&id).unwrap(), Some(JobStatus::Cancelled));
    }

    #[test]
    fn list_pages_newest_first_with_a_stable_cursor() {
        let dir = TempDir::new("list");
        let store = JobStore::open(&dir.0).unwrap();
        let ids: Vec<String> = (0..7).map(|i| submit(&store, &format!("{i}")).id).collect();
        let first = store.list(3, None).unwrap();
        let page_ids: Vec<&str> = first.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(page_ids, [&ids[6], &ids[5], &ids[4]]);
        // A job submitted between pages does not shift the next page.
        submit(&store, "late");
        let second = store.list(3, first.next_before).unwrap();
        let page_ids: Vec<&str> = second.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(page_ids, [&ids[3], &ids[2], &ids[1]]);
        let last = store.list(3, second.next_before).unwrap();
        assert_eq!(last.jobs.len(), 1);
        assert_eq!(last.jobs[0].id, ids[0]);
        assert_eq!(last.next_before, None, "no cursor on the last page");
        // An exactly full last page has no cursor either.
        assert_eq!(store.list(1, Some(last.jobs[0].seq + 1)).unwrap().next_before, None);
        let oldest = store.get(&ids[0]).unwrap().unwrap().seq;
        assert!(store.list(10, Some(oldest)).unwrap().jobs.is_empty(), "nothing is older than the first job");
        assert_eq!(store.list(0, None).unwrap().jobs.len(), 1, "limit is clamped to at least 1");
        assert_eq!(store.list(u32::MAX, None).unwrap().jobs.len(), 8);
    }
}
