-- Schema version 1: jobs and the images they produced.
-- Applied once by `JobStore::open` inside a transaction that also sets `PRAGMA user_version = 1`.
-- Times are unix milliseconds (UTC). Never edit a released migration; add the next file instead.

CREATE TABLE jobs (
    -- Submission order, and the stable cursor of the history list. AUTOINCREMENT so a number is
    -- never reused, even after rows are deleted.
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The public id (a v4 uuid), what URLs and events name.
    id               TEXT    NOT NULL UNIQUE,
    -- The resolved `GenerationSettings` as JSON: exactly what runs, seed included, so a re-run
    -- after a crash makes the same images.
    request          TEXT    NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    progress_step    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    -- A client's `Idempotency-Key`: a retried submit finds the first job instead of adding one.
    idempotency_key  TEXT    UNIQUE,
    -- Runs started, not counting runs handed back by a clean shutdown; bounds crash loops.
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- 1 once a user asked to cancel the running job: the worker stops it, and a crash before it
    -- stopped ends the job as cancelled at the next start instead of running it again.
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1))
);

-- The worker's "next job" and the status counts.
CREATE INDEX jobs_status_seq ON jobs (status, seq);
-- Queue positions: count the active jobs ahead of one. Partial, so it stays as small as the queue.
CREATE INDEX jobs_active_seq ON jobs (seq) WHERE status IN ('queued', 'running');

CREATE TABLE images (
    id          TEXT    PRIMARY KEY,
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    batch_index INTEGER NOT NULL,
    -- Relative to the outputs dir, '/'-separated, no '..' (checked before insert).
    path        TEXT    NOT NULL,
    -- Decimal text: seeds use the whole u64 range, SQLite integers stop at i64::MAX.
    seed        TEXT    NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    -- Hex sha256 of the PNG file as written.
    sha256      TEXT    NOT NULL,
    -- The settings text embedded in the PNG (A1111 "parameters" style).
    infotext    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (job_id, batch_index)
);

CREATE INDEX images_job ON images (job_id, batch_index);
