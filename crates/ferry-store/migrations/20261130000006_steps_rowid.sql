-- Steps move from a WITHOUT ROWID table keyed by (job_id, seq) to an ordinary (rowid) table
-- with a unique index on (job_id, seq). In a WITHOUT ROWID table the whole row is the B-tree key,
-- so every seek that compares against a large row (a step whose output holds a page of 100
-- records spills onto overflow pages) reads all of that row's overflow pages, uncached: with a
-- Query step's page among a job's steps, each checkpoint read about 18 pages that way. Now the
-- index holds only the key and the rows sit in the rowid B-tree, where an append costs a few
-- pages whatever the sizes of the rows before it.
--
-- The checkpoint view's trigger writes to `steps`, so it is dropped first and created again,
-- unchanged, at the end (a table cannot be renamed while a trigger names a missing table).
DROP TRIGGER job_checkpoint_insert;
DROP VIEW job_checkpoint;

CREATE TABLE steps_new (
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
    finished_at INTEGER NOT NULL
);
INSERT INTO steps_new (job_id, seq, step_id, invocation, status, input, outputs, logs, error,
                       started_at, finished_at)
SELECT job_id, seq, step_id, invocation, status, input, outputs, logs, error, started_at,
       finished_at
FROM steps ORDER BY job_id, seq;
DROP TABLE steps;
ALTER TABLE steps_new RENAME TO steps;
CREATE UNIQUE INDEX steps_job_seq ON steps (job_id, seq);

CREATE VIEW job_checkpoint AS SELECT
    NULL AS job_id, NULL AS state, NULL AS status, NULL AS error, NULL AS now, NULL AS next_run_at,
    NULL AS terminal, NULL AS has_step, NULL AS step_id, NULL AS invocation, NULL AS step_status,
    NULL AS input, NULL AS outputs, NULL AS logs, NULL AS step_error, NULL AS started_at,
    NULL AS finished_at, NULL AS owner
WHERE 0;

-- The concurrency-key look-ups are pinned to their partial indexes: without statistics the
-- planner could otherwise walk every job of a status.
CREATE TRIGGER job_checkpoint_insert INSTEAD OF INSERT ON job_checkpoint
BEGIN
    SELECT RAISE(ABORT, 'ferry: job not found')
    WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = NEW.job_id);

    -- Lease fence: a checkpoint written for a lease owner lands only while the job is still
    -- running under that owner's lease (a worker whose job was taken over after its lease
    -- expired must not overwrite the new owner's progress).
    SELECT RAISE(ABORT, 'ferry: lease lost')
    WHERE NEW.owner IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM jobs
                      WHERE id = NEW.job_id AND status = 'running' AND lease_owner = NEW.owner);

    INSERT INTO steps (job_id, seq, step_id, invocation, status, input, outputs, logs, error,
                       started_at, finished_at)
    SELECT NEW.job_id,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE job_id = NEW.job_id),
           NEW.step_id, NEW.invocation, NEW.step_status, NEW.input, NEW.outputs, NEW.logs,
           NEW.step_error, NEW.started_at, NEW.finished_at
    WHERE NEW.has_step;

    UPDATE jobs SET
        state = NEW.state,
        status = NEW.status,
        error = NEW.error,
        updated_at = NEW.now,
        next_run_at = CASE WHEN NEW.status = 'waiting' THEN NEW.next_run_at ELSE NULL END,
        finished_at = CASE WHEN NEW.terminal THEN NEW.now ELSE NULL END,
        blocked = CASE WHEN NEW.terminal THEN 0 ELSE blocked END,
        lease_owner = CASE WHEN NEW.status = 'running' THEN lease_owner ELSE NULL END,
        lease_until = CASE WHEN NEW.status = 'running' THEN lease_until ELSE NULL END
    WHERE id = NEW.job_id;

    UPDATE jobs SET blocked = 0
    WHERE NEW.terminal
      AND seq = (SELECT b.seq FROM jobs AS b INDEXED BY jobs_key_blocked
                 WHERE b.concurrency_key = (SELECT concurrency_key FROM jobs WHERE id = NEW.job_id)
                   AND b.blocked = 1 AND b.status = 'queued'
                 ORDER BY b.seq LIMIT 1)
      AND NOT EXISTS (SELECT 1 FROM jobs AS a INDEXED BY jobs_key_active
                      WHERE a.concurrency_key = (SELECT concurrency_key FROM jobs WHERE id = NEW.job_id)
                        AND a.blocked = 0 AND a.status IN ('queued', 'running', 'waiting'));
END;
