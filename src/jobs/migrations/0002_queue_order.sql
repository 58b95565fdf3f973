-- Schema version 2: a queued job's place when it joined somewhere other than the back of the
-- queue (ComfyUI's `front` and `number`). Jobs run in the order of COALESCE(queue_order, seq),
-- then seq; NULL (every job before this version, and every job sent to the back) is its seq.
ALTER TABLE jobs ADD COLUMN queue_order REAL;

-- The worker's next job and queue positions, in run order. Partial, as small as the queue.
CREATE INDEX jobs_queued_order ON jobs (COALESCE(queue_order, seq), seq) WHERE status = 'queued';
