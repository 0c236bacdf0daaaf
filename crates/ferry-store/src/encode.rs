//! What both stores share around their SQL: a job insert's row (the [`NewJob`] with its JSON
//! encoded once, before it is handed to a writer), a job filter's conditions, and the decoding
//! of status counts, minute counts and step outputs.

use serde_json::Value;
use sqlx::QueryBuilder;

use crate::sqlite::rows::{dur_ms, from_ms, to_ms};
use crate::{JobFilter, JobId, JobStatus, MinuteCount, NewJob, StoreError};

/// A job insert, with JSON already encoded by the caller.
pub(crate) struct InsertRow {
    pub id: JobId,
    pub solution: String,
    pub runbook: String,
    pub trigger_output: String,
    pub context_id: Option<String>,
    pub concurrency_key: Option<String>,
    pub dedup_key: Option<String>,
    pub state: String,
    pub solution_version: Option<String>,
    pub test: bool,
    pub now: i64,
    /// Key/value claims made in the same transaction, before the job.
    pub claims: Vec<ClaimRow>,
}

/// A key/value claim of a job insert, with its value encoded.
pub(crate) struct ClaimRow {
    pub ns: String,
    pub key: String,
    pub value: String,
    pub expires_at: Option<i64>,
}

impl InsertRow {
    /// Encode `job` as inserted at `now` (milliseconds): its JSON documents as text, its claims'
    /// time to live as an expiry. A value that cannot be serialized is an error naming it.
    pub(crate) fn encode(job: NewJob, now: i64) -> Result<InsertRow, StoreError> {
        let claims = job
            .claims
            .into_iter()
            .map(|c| {
                Ok(ClaimRow {
                    value: serde_json::to_string(&c.value)?,
                    ns: c.ns,
                    key: c.key,
                    expires_at: c.ttl.map(|t| now.saturating_add(dur_ms(t))),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(InsertRow {
            id: job.id,
            solution: job.solution,
            runbook: job.runbook,
            trigger_output: serde_json::to_string(&job.trigger_output)?,
            context_id: job.context_id,
            concurrency_key: job.concurrency_key,
            dedup_key: job.dedup_key,
            state: serde_json::to_string(&job.state)?,
            solution_version: job.solution_version,
            test: job.test,
            now,
            claims,
        })
    }
}

/// Append a job filter's equality and creation-time conditions (` AND …`) to a query on
/// `jobs`; the paging condition and the order differ per store and are the caller's.
pub(crate) fn push_job_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, filter: &JobFilter)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'static str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(s) = &filter.solution {
        qb.push(" AND solution = ").push_bind(s.clone());
    }
    if let Some(r) = &filter.runbook {
        qb.push(" AND runbook = ").push_bind(r.clone());
    }
    if let Some(st) = filter.status {
        qb.push(" AND status = ").push_bind(st.as_str());
    }
    if let Some(c) = &filter.context_id {
        qb.push(" AND context_id = ").push_bind(c.clone());
    }
    if let Some(t) = filter.created_from {
        qb.push(" AND created_at >= ").push_bind(to_ms(t));
    }
    if let Some(t) = filter.created_to {
        qb.push(" AND created_at < ").push_bind(to_ms(t));
    }
}

/// Every status with its count, from `(status, count)` rows (statuses without jobs count 0).
pub(crate) fn status_counts(
    rows: impl IntoIterator<Item = (String, i64)>,
) -> Result<Vec<(JobStatus, i64)>, StoreError> {
    let mut counts: Vec<(JobStatus, i64)> = JobStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        let status = JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {status:?}")))?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

/// Jobs per minute from `(minute since the epoch, count)` rows.
pub(crate) fn minute_counts(
    rows: impl IntoIterator<Item = (i64, i64)>,
) -> Result<Vec<MinuteCount>, StoreError> {
    rows.into_iter()
        .map(|(m, jobs)| {
            Ok(MinuteCount {
                minute: from_ms(m * 60_000)?,
                jobs,
            })
        })
        .collect()
}

/// A step record's stored outputs as JSON; text that is not JSON is an error naming the step.
pub(crate) fn step_outputs(
    text: Option<String>,
    id: JobId,
    step_id: &str,
    invocation: i64,
) -> Result<Option<Value>, StoreError> {
    text.map(|o| {
        serde_json::from_str(&o).map_err(|e| {
            StoreError::Corrupt(format!(
                "the outputs of step '{step_id}' (invocation {invocation}) of job {id} \
                 are not JSON: {e}"
            ))
        })
    })
    .transpose()
}
