-- Ferry durable store on PostgreSQL, initial schema (several `ferry serve` nodes share it).
-- Same conventions as the SQLite schema: timestamps are BIGINT milliseconds since the Unix epoch
-- (UTC), except the start and end of steps (BIGINT microseconds); JSON documents are TEXT (they
-- are written and read whole, never queried); job ids are UUIDs.

CREATE TABLE jobs (
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              UUID    NOT NULL UNIQUE,
    solution        TEXT    NOT NULL,
    runbook         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'finished', 'failed')),
    trigger_output  TEXT    NOT NULL,
    context_id      TEXT,
    concurrency_key TEXT,
    dedup_key       TEXT,
    state           TEXT    NOT NULL,
    error           TEXT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    -- true while another non-terminal job with the same concurrency_key holds the key. Changed
    -- only under the key's advisory lock (ferry_key_lock), so that nodes agree on the holder.
    blocked         BOOLEAN NOT NULL DEFAULT false,
    lease_owner     TEXT,
    lease_until     BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    next_run_at     BIGINT,
    -- The version of the solution the job runs with (`sha256:<hex>`, `+git:<commit>` when
    -- known), and whether it is a test job; as in the SQLite schema.
    solution_version TEXT,
    test            BOOLEAN NOT NULL DEFAULT false
);

-- Deduplication: one job per (solution, runbook, dedup_key), across every node.
CREATE UNIQUE INDEX jobs_dedup ON jobs (solution, runbook, dedup_key) WHERE dedup_key IS NOT NULL;
-- claim_job: the oldest queued job that does not wait for its concurrency key.
CREATE INDEX jobs_ready ON jobs (seq) WHERE status = 'queued' AND NOT blocked;
-- claim_job / next_wakeup: waiting jobs by wake-up time.
CREATE INDEX jobs_waiting ON jobs (next_run_at) WHERE status = 'waiting';
-- claim_job: running jobs whose lease expired (their node died or stalled).
CREATE INDEX jobs_running ON jobs (lease_until) WHERE status = 'running';
-- Concurrency-key bookkeeping: active holders and the FIFO of blocked jobs.
CREATE INDEX jobs_key_active ON jobs (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND NOT blocked AND status IN ('queued', 'running', 'waiting');
CREATE INDEX jobs_key_blocked ON jobs (concurrency_key, seq)
    WHERE concurrency_key IS NOT NULL AND blocked;
-- list_jobs filters (newest first), count_by_status and retention.
CREATE INDEX jobs_status_seq ON jobs (status, seq);
CREATE INDEX jobs_solution_seq ON jobs (solution, runbook, seq);
CREATE INDEX jobs_context_seq ON jobs (context_id, seq) WHERE context_id IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('finished', 'failed');
-- list_jobs time-range filters and the web console's aggregates.
CREATE INDEX jobs_created ON jobs (created_at);

CREATE TABLE steps (
    job_id      UUID    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    step_id     TEXT    NOT NULL,
    invocation  BIGINT  NOT NULL,
    status      TEXT    NOT NULL,
    input       TEXT    NOT NULL,
    outputs     TEXT    NOT NULL,
    logs        TEXT    NOT NULL,
    error       TEXT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE kv (
    ns         TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (ns, key)
);
CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE locks (
    key        TEXT   PRIMARY KEY,
    token      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

-- What every node sharing the database must agree on: the master key's fingerprint and the
-- content hashes of the loaded solutions. A node that disagrees refuses to start.
CREATE TABLE cluster (
    name       TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    node       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The advisory lock of a concurrency key (transaction scoped). Inserts, re-runs and the key
-- hand-over of a terminal checkpoint take it, so jobs of one key are ordered the same on all
-- nodes.
CREATE FUNCTION ferry_key_lock(k TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hashtextextended(k, 7001) $$;

-- Hand a concurrency key to its next blocked job when no job holds it. Returns whether a job
-- was unblocked (the caller's transaction holds the key's advisory lock).
CREATE FUNCTION ferry_release_key(k TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql
AS $$
DECLARE
    n BIGINT;
BEGIN
    IF EXISTS (SELECT 1 FROM jobs WHERE concurrency_key = k AND NOT blocked
               AND status IN ('queued', 'running', 'waiting')) THEN
        RETURN false;
    END IF;
    UPDATE jobs SET blocked = false
    WHERE seq = (SELECT b.seq FROM jobs b WHERE b.concurrency_key = k AND b.blocked
                 AND b.status = 'queued' ORDER BY b.seq LIMIT 1);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;

-- A checkpoint in one call (one transaction, one round trip): the lease fence, the step
-- appended with the next seq of the job, the job updated and, for a terminal status, its
-- concurrency key handed on. Returns 0 when written, 1 for an unknown job, 2 when the writer
-- no longer holds the job's lease (nothing is written then).
CREATE FUNCTION ferry_checkpoint(
    p_job UUID, p_state TEXT, p_status TEXT, p_error TEXT, p_now BIGINT, p_next_run_at BIGINT,
    p_terminal BOOLEAN, p_owner TEXT, p_has_step BOOLEAN, p_step_id TEXT, p_invocation BIGINT,
    p_step_status TEXT, p_input TEXT, p_outputs TEXT, p_logs TEXT, p_step_error TEXT,
    p_started_at BIGINT, p_finished_at BIGINT)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    cur_status TEXT;
    cur_owner TEXT;
    k TEXT;
BEGIN
    SELECT status, lease_owner, concurrency_key INTO cur_status, cur_owner, k
    FROM jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 1;
    END IF;
    IF p_owner IS NOT NULL AND (cur_status <> 'running' OR cur_owner IS DISTINCT FROM p_owner) THEN
        RETURN 2;
    END IF;
    IF p_has_step THEN
        INSERT INTO steps (job_id, seq, step_id, invocation, status, input, outputs, logs, error,
                           started_at, finished_at)
        VALUES (p_job, (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE job_id = p_job),
                p_step_id, p_invocation, p_step_status, p_input, p_outputs, p_logs, p_step_error,
                p_started_at, p_finished_at);
    END IF;
    UPDATE jobs SET
        state = p_state,
        status = p_status,
        error = p_error,
        updated_at = p_now,
        next_run_at = CASE WHEN p_status = 'waiting' THEN p_next_run_at ELSE NULL END,
        finished_at = CASE WHEN p_terminal THEN p_now ELSE NULL END,
        blocked = CASE WHEN p_terminal THEN false ELSE blocked END,
        lease_owner = CASE WHEN p_status = 'running' THEN lease_owner ELSE NULL END,
        lease_until = CASE WHEN p_status = 'running' THEN lease_until ELSE NULL END
    WHERE id = p_job;
    IF p_terminal AND k IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(ferry_key_lock(k));
        IF ferry_release_key(k) THEN
            PERFORM pg_notify('ferry_jobs', '');
        END IF;
    END IF;
    IF p_status = 'queued' THEN
        PERFORM pg_notify('ferry_jobs', '');
    END IF;
    RETURN 0;
END
$$;

-- Re-run a failed job (under its key's lock): 0 done, 1 unknown job, 2 not failed.
CREATE FUNCTION ferry_requeue(p_job UUID, p_state TEXT, p_now BIGINT) RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    cur_status TEXT;
    k TEXT;
BEGIN
    SELECT status, concurrency_key INTO cur_status, k FROM jobs WHERE id = p_job;
    IF NOT FOUND THEN
        RETURN 1;
    END IF;
    IF k IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(ferry_key_lock(k));
    END IF;
    UPDATE jobs SET status = 'queued', state = p_state, error = NULL, started_at = NULL,
        finished_at = NULL, next_run_at = NULL, lease_owner = NULL, lease_until = NULL,
        updated_at = p_now,
        blocked = k IS NOT NULL AND EXISTS (SELECT 1 FROM jobs a WHERE a.concurrency_key = k
            AND a.id <> p_job AND NOT a.blocked AND a.status IN ('queued', 'running', 'waiting'))
    WHERE id = p_job AND status = 'failed';
    IF NOT FOUND THEN
        RETURN 2;
    END IF;
    PERFORM pg_notify('ferry_jobs', '');
    RETURN 0;
END
$$;

-- The nodes serving from this database: each refreshes `last_seen` while it runs. A node
-- starting with other solution versions than a live node is refused.
CREATE TABLE nodes (
    node       TEXT   PRIMARY KEY,
    solutions  TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
