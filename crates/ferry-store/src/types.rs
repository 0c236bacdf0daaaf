//! Records and arguments exchanged with a [`crate::Store`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Identifier of a job (returned to callers as `job_uuid`).
pub type JobId = uuid::Uuid;

/// Lifecycle status of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to be claimed by a worker.
    Queued,
    /// Claimed by a worker that holds a lease on it.
    Running,
    /// Rescheduled; becomes claimable again at `next_run_at`.
    Waiting,
    /// Completed (terminal).
    Finished,
    /// Failed (terminal; can be re-run with [`crate::Store::requeue_job`]).
    Failed,
}

impl JobStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Waiting,
        JobStatus::Finished,
        JobStatus::Failed,
    ];

    /// The stored / serialized name (`"queued"`, `"running"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
        }
    }

    /// Parse a name produced by [`JobStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for `Finished` and `Failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobStatus::Finished | JobStatus::Failed)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Job id, chosen by the caller.
    pub id: JobId,
    /// Solution name.
    pub solution: String,
    /// Runbook name.
    pub runbook: String,
    /// Output of the trigger (the event).
    pub trigger_output: Value,
    /// Job context identifier (spec §2.4.6).
    pub context_id: Option<String>,
    /// Jobs sharing a concurrency key run one at a time, in insertion order.
    pub concurrency_key: Option<String>,
    /// Deduplication key, unique per (solution, runbook).
    pub dedup_key: Option<String>,
    /// Initial executor state (opaque JSON).
    pub state: Value,
    /// The version of the solution the job runs with (opaque to the store, e.g.
    /// `sha256:<hex>`); `None` when unknown.
    pub solution_version: Option<String>,
    /// A test job (its event carried the test header, e.g. to a solution in draft mode).
    pub test: bool,
    /// Keys of the key/value store to claim in the same transaction as the insert (e.g. a
    /// webhook's `jti` replay window), see [`crate::Store::insert_job`]. Usually empty.
    pub claims: Vec<KvClaim>,
}

/// A key/value entry written only if its key is absent or expired (as
/// [`crate::Store::kv_put_if_absent`] does), claimed together with a job insert.
#[derive(Clone, Debug, PartialEq)]
pub struct KvClaim {
    /// Namespace.
    pub ns: String,
    /// Key.
    pub key: String,
    /// The value, stored as given (callers encrypt).
    pub value: Value,
    /// How long the claim holds; `None` never expires.
    pub ttl: Option<Duration>,
}

/// Result of [`crate::Store::insert_job`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The job was stored (and its claims made).
    Created,
    /// A job with the same (solution, runbook, dedup_key) exists; nothing was stored but the
    /// claims, which were made.
    Duplicate {
        /// The id of the job that already exists.
        existing: JobId,
    },
    /// A key of [`NewJob::claims`] is held (present and not expired): nothing was stored, no
    /// job and no claim.
    ClaimTaken {
        /// Its position in [`NewJob::claims`].
        index: usize,
        /// The key.
        key: String,
    },
}

/// A stored job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobRecord {
    /// Job id.
    pub id: JobId,
    /// Insertion sequence number (monotonic, global).
    pub seq: i64,
    /// Solution name.
    pub solution: String,
    /// Runbook name.
    pub runbook: String,
    /// Current status.
    pub status: JobStatus,
    /// Output of the trigger.
    pub trigger_output: Value,
    /// Job context identifier.
    pub context_id: Option<String>,
    /// Concurrency key.
    pub concurrency_key: Option<String>,
    /// Executor state as of the last checkpoint.
    pub state: Value,
    /// Error message of the last checkpoint, if any.
    pub error: Option<String>,
    /// Number of times the job has been claimed.
    pub attempts: i64,
    /// When the job was inserted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// First claim (reset by a re-run).
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// For Waiting jobs: when the job becomes claimable again.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The version of the solution the job runs with, as given to
    /// [`crate::Store::insert_job`] (`None` for jobs stored without one).
    pub solution_version: Option<String>,
    /// A test job, as given to [`crate::Store::insert_job`].
    pub test: bool,
}

/// Outcome of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step completed.
    Completed,
    /// The step failed.
    Failed,
    /// The step asked to be run again later.
    Rescheduled,
    /// The step raised the Finish signal.
    Finished,
}

impl StepStatus {
    /// The stored / serialized name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Rescheduled => "rescheduled",
            StepStatus::Finished => "finished",
        }
    }

    /// Parse a name produced by [`StepStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            StepStatus::Completed,
            StepStatus::Failed,
            StepStatus::Rescheduled,
            StepStatus::Finished,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One log line written by a step.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Time of the log call.
    pub at: DateTime<Utc>,
    /// Level (`"info"`, `"warn"`, ...).
    pub level: String,
    /// The message.
    pub message: String,
}

/// A persisted step invocation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepRecord {
    /// The job the step belongs to.
    pub job_id: JobId,
    /// Per-job sequence number, 1-based. **Assigned by the store** when the step is appended by
    /// [`crate::Store::checkpoint`]; the value passed in is ignored.
    pub seq: i64,
    /// Step (action) identifier within the runbook.
    pub step_id: String,
    /// Iteration number of this step within the job.
    pub invocation: i64,
    /// Outcome.
    pub status: StepStatus,
    /// Resolved input.
    pub input: Value,
    /// Outputs (usually a list).
    pub outputs: Value,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// Error message, for failed steps.
    pub error: Option<String>,
    /// Start of the invocation (stored with microsecond precision).
    pub started_at: DateTime<Utc>,
    /// End of the invocation (stored with microsecond precision).
    pub finished_at: DateTime<Utc>,
}

/// An atomic progress update of a job, see [`crate::Store::checkpoint`].
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The job.
    pub job_id: JobId,
    /// Step to append, if any.
    pub step: Option<StepRecord>,
    /// New executor state.
    pub state: Value,
    /// New status.
    pub status: JobStatus,
    /// Wake-up time; required when `status` is `Waiting`, ignored otherwise.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Error message (replaces the stored one).
    pub error: Option<String>,
    /// The lease owner the checkpoint is written for (the `worker` of
    /// [`crate::Store::claim_job`]). When set, the checkpoint is refused with
    /// [`crate::StoreError::LeaseLost`] unless the job is still running under that owner's
    /// lease, so a worker whose job was taken over can never overwrite the new owner's
    /// progress. `None` writes unconditionally (single-process tools such as `ferry run`).
    pub owner: Option<String>,
}

/// Filter and paging for [`crate::Store::list_jobs`]. Results are newest first: by `seq`, or by
/// (`created_at`, `seq`) when a creation time range (`created_from` / `created_to`) is given
/// (creation times follow `seq` only roughly: clock steps, several nodes).
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only this solution.
    pub solution: Option<String>,
    /// Only this runbook.
    pub runbook: Option<String>,
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this job context identifier.
    pub context_id: Option<String>,
    /// Page size; 0 means the default of 50, values above 500 are capped at 500.
    pub limit: u32,
    /// Paging: only jobs after the job with this seq in the list's order (`seq < before_seq`
    /// without a time range; with one, older in (`created_at`, `seq`) than that job or, if it has
    /// been deleted since, from the nearest older job still stored).
    pub before_seq: Option<i64>,
    /// Only jobs created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_to: Option<DateTime<Utc>>,
}

impl JobFilter {
    /// Default page size.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Maximum page size.
    pub const MAX_LIMIT: u32 = 500;

    /// The page size actually used.
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// How many jobs were created in one minute, see [`crate::Store::jobs_per_minute`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MinuteCount {
    /// Start of the minute (UTC, whole minute).
    pub minute: DateTime<Utc>,
    /// Jobs created in it.
    pub jobs: i64,
}

/// Failed jobs of one runbook, see [`crate::Store::failed_by_runbook`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunbookFailures {
    /// Solution name.
    pub solution: String,
    /// Runbook name.
    pub runbook: String,
    /// Failed jobs.
    pub failed: i64,
}

/// One page of [`crate::Store::list_jobs`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// Pass as `before_seq` to get the next page; `None` on the last page.
    pub next_before_seq: Option<i64>,
}

impl JobPage {
    /// The page of at most `limit` jobs from `jobs`, read with `LIMIT limit + 1`: the extra job
    /// only tells that another page follows.
    pub(crate) fn from_overfetched(mut jobs: Vec<JobRecord>, limit: u32) -> JobPage {
        let more = jobs.len() > limit as usize;
        jobs.truncate(limit as usize);
        let next_before_seq = if more {
            jobs.last().map(|j| j.seq)
        } else {
            None
        };
        JobPage {
            jobs,
            next_before_seq,
        }
    }
}

/// Options of [`crate::SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `synchronous=FULL` (fsync on every commit: durable against power loss) instead of the
    /// default `synchronous=NORMAL` (in WAL mode: durable against process crash / kill -9, the
    /// last commits may be lost on power loss or OS crash).
    pub sync_full: bool,
    /// Maximum number of write commands group-committed in one transaction.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync_full: false,
            max_batch: 512,
        }
    }
}
