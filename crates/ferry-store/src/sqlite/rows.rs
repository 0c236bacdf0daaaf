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

/// Typed column access, so that one function builds a [`JobRecord`] (and a [`StepRecord`])
/// from a row of SQLite's read pool (sqlx, by column name), from a row the SQLite writer thread
/// returns (rusqlite, by the position in [`JOB_COLS`]) and from a PostgreSQL row.
pub(crate) trait Cols {
    fn int(&self, i: usize, name: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize, name: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize, name: &str) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize, name: &str) -> Result<Option<String>, StoreError>;
    fn uuid(&self, i: usize, name: &str) -> Result<uuid::Uuid, StoreError>;
    /// A JSON document stored as text.
    fn json(&self, i: usize, name: &str) -> Result<Value, StoreError>;
    /// A boolean (an integer 0/1 in SQLite).
    fn flag(&self, i: usize, name: &str) -> Result<bool, StoreError> {
        Ok(self.int(i, name)? != 0)
    }
}

impl Cols for SqliteRow {
    fn int(&self, _: usize, name: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn opt_int(&self, _: usize, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn text(&self, _: usize, name: &str) -> Result<String, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn opt_text(&self, _: usize, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn uuid(&self, _: usize, name: &str) -> Result<uuid::Uuid, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn json(&self, _: usize, name: &str) -> Result<Value, StoreError> {
        json(self.try_get(name)?)
    }
}

impl Cols for rusqlite::Row<'_> {
    fn int(&self, i: usize, _: &str) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize, _: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize, _: &str) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize, _: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn uuid(&self, i: usize, _: &str) -> Result<uuid::Uuid, StoreError> {
        Ok(self.get(i)?)
    }
    fn json(&self, i: usize, _: &str) -> Result<Value, StoreError> {
        json(self.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
    }
}

/// A [`JobRecord`] from a row holding [`JOB_COLS`] (in that order).
pub(crate) fn job_from<R: Cols>(row: &R) -> Result<JobRecord, StoreError> {
    let status = row.text(4, "status")?;
    let status = JobStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {status:?}")))?;
    Ok(JobRecord {
        id: row.uuid(0, "id")?,
        seq: row.int(1, "seq")?,
        solution: row.text(2, "solution")?,
        runbook: row.text(3, "runbook")?,
        status,
        trigger_output: row.json(5, "trigger_output")?,
        context_id: row.opt_text(6, "context_id")?,
        concurrency_key: row.opt_text(7, "concurrency_key")?,
        state: row.json(8, "state")?,
        error: row.opt_text(9, "error")?,
        attempts: row.int(10, "attempts")?,
        created_at: from_ms(row.int(11, "created_at")?)?,
        updated_at: from_ms(row.int(12, "updated_at")?)?,
        started_at: opt_from_ms(row.opt_int(13, "started_at")?)?,
        finished_at: opt_from_ms(row.opt_int(14, "finished_at")?)?,
        next_run_at: opt_from_ms(row.opt_int(15, "next_run_at")?)?,
        solution_version: row.opt_text(16, "solution_version")?,
        test: row.flag(17, "test")?,
    })
}

/// A [`JobRecord`] from a row of the read pool.
pub(crate) fn job_from_row(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    job_from(row)
}

/// A [`StepRecord`] from a row holding [`STEP_COLS`] (read by name).
pub(crate) fn step_from<R: Cols>(row: &R) -> Result<StepRecord, StoreError> {
    let status = row.text(4, "status")?;
    let status = StepStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown step status {status:?}")))?;
    let logs: Vec<LogLine> = serde_json::from_value(row.json(7, "logs")?)?;
    Ok(StepRecord {
        job_id: row.uuid(0, "job_id")?,
        seq: row.int(1, "seq")?,
        step_id: row.text(2, "step_id")?,
        invocation: row.int(3, "invocation")?,
        status,
        input: row.json(5, "input")?,
        outputs: row.json(6, "outputs")?,
        logs,
        error: row.opt_text(8, "error")?,
        started_at: from_us(row.int(9, "started_at")?)?,
        finished_at: from_us(row.int(10, "finished_at")?)?,
    })
}

/// A [`StepRecord`] from a row of the read pool.
pub(crate) fn step_from_row(row: &SqliteRow) -> Result<StepRecord, StoreError> {
    step_from(row)
}
