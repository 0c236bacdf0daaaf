-- A checkpoint as ONE statement: inserting a row into this view runs the trigger below, which
-- appends the step (if any), updates the job and, for a terminal status, hands the job's
-- concurrency key to the next blocked job. A single statement is atomic, so a checkpoint needs
-- no explicit transaction and fails without a trace.
CREATE VIEW job_checkpoint AS SELECT
    NULL AS job_id, NULL AS state, NULL AS status, NULL AS error, NULL AS now, NULL AS next_run_at,
    NULL AS terminal, NULL AS has_step, NULL AS step_id, NULL AS invocation, NULL AS step_status,
    NULL AS input, NULL AS outputs, NULL AS logs, NULL AS step_error, NULL AS started_at,
    NULL AS finished_at
WHERE 0;

-- The concurrency-key look-ups are pinned to their partial indexes: without statistics the
-- planner could otherwise walk every job of a status.
CREATE TRIGGER job_checkpoint_insert INSTEAD OF INSERT ON job_checkpoint
BEGIN
    SELECT RAISE(ABORT, 'ferry: job not found')
    WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = NEW.job_id);

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
