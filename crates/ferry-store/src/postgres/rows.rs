//! Conversions between PostgreSQL rows and records: the SQLite store's columns and record
//! builders (`job_from`, `step_from`) over PostgreSQL's column types (BIGINT milliseconds,
//! microseconds for step times, JSON as TEXT, BOOLEAN flags).

use sqlx::postgres::PgRow;
use sqlx::Row;

pub(crate) use crate::sqlite::rows::{job_cols, STEP_COLS};
use crate::sqlite::rows::{job_from, step_from, Cols};
use crate::{JobRecord, StepRecord, StoreError};

fn json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("column {what} is not JSON: {e}")))
}

/// Columns are read by name; JSON is TEXT, booleans are BOOLEAN.
impl Cols for PgRow {
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
    fn json(&self, _: usize, name: &str) -> Result<serde_json::Value, StoreError> {
        json(self.try_get(name)?, name)
    }
    fn flag(&self, _: usize, name: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(name)?)
    }
}

/// A [`JobRecord`] from a row holding [`JOB_COLS`](crate::sqlite::rows::JOB_COLS).
pub(crate) fn job_from_row(row: &PgRow) -> Result<JobRecord, StoreError> {
    job_from(row)
}

/// A [`StepRecord`] from a row holding [`STEP_COLS`].
pub(crate) fn step_from_row(row: &PgRow) -> Result<StepRecord, StoreError> {
    step_from(row)
}
