//! The job system: every accepted generation, stored durably and run one at a time.
//!
//! Layout:
//! - [`store`]: the SQLite database (`<data_dir>/easel.db`): schema and migrations, the job state
//!   machine as stored, crash recovery. Synchronous; no threads.
//! - [`queue`]: the worker thread that runs queued jobs in submission order through a
//!   [`JobExecutor`] (the engine, supplied by the server), cancellation, shutdown.
//! - [`base64`]: the encoding of preview PNGs inside events.
//!
//! The events it sends ([`crate::api::JobEvent`]) and a job's status ([`crate::api::JobStatus`])
//! are wire types, defined once in [`crate::api`].
//!
//! **Invariant:** the job system knows nothing of HTTP or the engine's insides: it stores
//! [`GenerationSettings`](crate::api::GenerationSettings), hands them to a [`JobExecutor`],
//! and records the images it reports. **Invariant:** the database is the truth; an event is sent
//! only after the change it announces has committed.
//!
//! Durability, in short: a job is in the database before its submit returns; it is `succeeded`
//! only after the executor has returned (its PNGs are on disk) and the transaction that records
//! its images has committed; a job found `running` at start-up runs again from the start with
//! the same seed ([`JobStore::recover_at_start`], called by [`JobQueue::start`]).

pub mod base64;
pub mod queue;
pub mod store;

pub use queue::{ExecError, JobExecutor, JobProgress, JobQueue, LiveProgress, ShutdownMode, StartError, Submitted};
pub use store::{CancelOutcome, ImageRecord, JobPage, JobRecord, JobStore, NewImage, QueuePlace, RecoveryReport, StatusCounts, StoreError};
