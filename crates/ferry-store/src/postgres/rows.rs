//! Conversions between PostgreSQL rows and records (same conventions as the SQLite store:
//! BIGINT milliseconds, microseconds for step times, JSON as TEXT).

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::sqlite::rows::{from_ms, from_us};
use crate::{JobRecord, JobStatus, LogLine, StepRecord, StepStatus, StoreError};

/// Columns selected for a [`JobRecord`].
macro_rules! pg_job_cols {
    () => {
        "id, seq, solution, runbook, status, trigger_output, context_id, concurrency_key, state, \
         error, attempts, created_at, updated_at, started_at, finished_at, next_run_at, \
         solution_version, test"
    };
}
pub(crate) use pg_job_cols;

/// Columns selected for a [`StepRecord`].
pub(crate) const STEP_COLS: &str =
    "job_id, seq, step_id, invocation, status, input, outputs, logs, error, started_at, finished_at";

fn json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not JSON: {e}")))
}

pub(crate) fn job_from_row(row: &PgRow) -> Result<JobRecord, StoreError> {
    let status: &str = row.try_get("status")?;
    let status = JobStatus::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {status:?}")))?;
    let opt = |name: &str| -> Result<_, StoreError> {
        row.try_get::<Option<i64>, _>(name)?
            .map(from_ms)
            .transpose()
    };
    Ok(JobRecord {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        solution: row.try_get("solution")?,
        runbook: row.try_get("runbook")?,
        status,
        trigger_output: json(row.try_get("trigger_output")?, "a trigger output")?,
        context_id: row.try_get("context_id")?,
        concurrency_key: row.try_get("concurrency_key")?,
        state: json(row.try_get("state")?, "a job state")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
        started_at: opt("started_at")?,
        finished_at: opt("finished_at")?,
        next_run_at: opt("next_run_at")?,
        solution_version: row.try_get("solution_version")?,
        test: row.try_get("test")?,
    })
}

pub(crate) fn step_from_row(row: &PgRow) -> Result<StepRecord, StoreError> {
    let status: &str = row.try_get("status")?;
    let status = StepStatus::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown step status {status:?}")))?;
    let logs: Vec<LogLine> = serde_json::from_str(row.try_get("logs")?)?;
    Ok(StepRecord {
        job_id: row.try_get("job_id")?,
        seq: row.try_get("seq")?,
        step_id: row.try_get("step_id")?,
        invocation: row.try_get("invocation")?,
        status,
        input: json(row.try_get("input")?, "a step input")?,
        outputs: json(row.try_get("outputs")?, "step outputs")?,
        logs,
        error: row.try_get("error")?,
        started_at: from_us(row.try_get("started_at")?)?,
        finished_at: from_us(row.try_get("finished_at")?)?,
    })
}
