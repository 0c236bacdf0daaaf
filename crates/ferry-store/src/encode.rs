//! What both stores write for a job insert: the [`NewJob`] with its JSON encoded once, before
//! it is handed to a writer.

use crate::sqlite::rows::dur_ms;
use crate::{JobId, NewJob, StoreError};

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
