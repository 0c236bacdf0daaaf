-- Ferry durable store, initial schema.
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC).
-- JSON documents are stored as TEXT. Job ids are 16-byte UUID BLOBs.

CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB    NOT NULL UNIQUE,
    solution        TEXT    NOT NULL,
    runbook         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'finished', 'failed')),
    trigger_output  TEXT    NOT NULL,
    context_id      TEXT,
    concurrency_key TEXT,
    dedup_key       TEXT,
    state           TEXT    NOT NULL,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- 1 while another non-terminal job with the same concurrency_key holds the key.
    blocked         INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    next_run_at     INTEGER
);

-- Deduplication: one job per (solution, runbook, dedup_key).
CREATE UNIQUE INDEX jobs_dedup ON jobs (solution, runbook, dedup_key) WHERE dedup_key IS NOT NULL;
-- claim_job: the oldest queued job that does not wait for its concurrency key.
CREATE INDEX jobs_ready ON jobs (seq) WHERE status = 'queued' AND blocked = 0;
-- claim_job / next_wakeup: waiting jobs by wake-up time.
CREATE INDEX jobs_waiting ON jobs (next_run_at) WHERE status = 'waiting';
-- Concurrency-key bookkeeping: active holders and the FIFO of blocked jobs.
CREATE INDEX jobs_key_active ON jobs (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND blocked = 0 AND status IN ('queued', 'running', 'waiting');
CREATE INDEX jobs_key_blocked ON jobs (concurrency_key, seq)
    WHERE concurrency_key IS NOT NULL AND blocked = 1;
-- recover_interrupted.
CREATE INDEX jobs_running ON jobs (lease_until) WHERE status = 'running';
-- list_jobs filters (newest first) and count_by_status.
CREATE INDEX jobs_status_seq ON jobs (status, seq);
CREATE INDEX jobs_solution_seq ON jobs (solution, runbook, seq);
CREATE INDEX jobs_context_seq ON jobs (context_id, seq) WHERE context_id IS NOT NULL;

CREATE TABLE steps (
    job_id      BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    step_id     TEXT    NOT NULL,
    invocation  INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    input       TEXT    NOT NULL,
    outputs     TEXT    NOT NULL,
    logs        TEXT    NOT NULL,
    error       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE kv (
    ns         TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;

CREATE TABLE locks (
    key        TEXT    PRIMARY KEY,
    token      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
