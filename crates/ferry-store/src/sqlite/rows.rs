//! Conversions between rows and records.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::{JobRecord, JobStatus, LogLine, StepRecord, StepStatus, StoreError};

/// Columns selected for a [`JobRecord`] (a macro so that it can be used in `concat!`).
macro_rules! job_cols {
    () => {
        "id, seq, solution, runbook, status, trigger_output, context_id, concurrency_key, state, \
         error, attempts, created_at, updated_at, started_at, finished_at, next_run_at, \
         solution_version, test"
    };
}
pub(crate) use job_cols;

/// Columns selected for a [`JobRecord`].
pub(crate) const JOB_COLS: &str = job_cols!();

/// Columns selected for a [`StepRecord`].
pub(crate) const STEP_COLS: &str =
    "job_id, seq, step_id, invocation, status, input, outputs, logs, error, started_at, finished_at";

/// Milliseconds since the epoch.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Saturating conversion of a duration to milliseconds.
pub(crate) fn dur_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Microseconds since the epoch (step start and end times).
pub(crate) fn to_us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_us(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {us} µs")))
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {ms}")))
}

fn opt_from_ms(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_ms).transpose()
}

fn json(text: &str) -> Result<Value, StoreError> {
    Ok(serde_json::from_str(text)?)
}

pub(crate) fn job_from_row(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let status = JobStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {status:?}")))?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        solution: row.try_get("solution")?,
        runbook: row.try_get("runbook")?,
        status,
        trigger_output: json(row.try_get("trigger_output")?)?,
        context_id: row.try_get("context_id")?,
        concurrency_key: row.try_get("concurrency_key")?,
        state: json(row.try_get("state")?)?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
        started_at: opt_from_ms(row.try_get("started_at")?)?,
        finished_at: opt_from_ms(row.try_get("finished_at")?)?,
        next_run_at: opt_from_ms(row.try_get("next_run_at")?)?,
        solution_version: row.try_get("solution_version")?,
        test: row.try_get::<i64, _>("test")? != 0,
    })
}

pub(crate) fn step_from_row(row: &SqliteRow) -> Result<StepRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let status = StepStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown step status {status:?}")))?;
    let logs: Vec<LogLine> = serde_json::from_str(row.try_get("logs")?)?;
    Ok(StepRecord {
        job_id: row.try_get("job_id")?,
        seq: row.try_get("seq")?,
        step_id: row.try_get("step_id")?,
        invocation: row.try_get("invocation")?,
        status,
        input: json(row.try_get("input")?)?,
        outputs: json(row.try_get("outputs")?)?,
        logs,
        error: row.try_get("error")?,
        started_at: from_us(row.try_get("started_at")?)?,
        finished_at: from_us(row.try_get("finished_at")?)?,
    })
}
