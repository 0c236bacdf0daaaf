//! Ferry's durable store.
//!
//! [`Store`] is the storage interface used by the executor and the server: jobs (insert with
//! deduplication, claim with concurrency keys, checkpoints with step records, recovery and re-runs),
//! a namespaced key/value store with TTL and single-flight locks. It is object safe
//! (`Arc<dyn Store>`), so other back ends (PostgreSQL) can be added without touching callers.
//!
//! [`SqliteStore`] is the embedded implementation (SQLite in WAL mode). All writes are
//! **group-committed**: a single writer thread owns the write connection (`rusqlite`), drains
//! every queued write command (up to [`StoreOptions::max_batch`]), runs them in one transaction
//! and answers each caller only after `COMMIT`. Reads use a separate pool of read-only
//! connections (`sqlx`).
//!
//! [`PgStore`] is the PostgreSQL implementation that several `ferry serve` nodes share
//! (claims with `FOR UPDATE SKIP LOCKED`, concurrency keys ordered by advisory locks, idle
//! workers woken by `LISTEN`/`NOTIFY`); [`throwaway`] starts a private PostgreSQL server for
//! tests and benchmarks.
//!
//! Storage conventions: timestamps are INTEGER milliseconds since the Unix epoch (UTC), except
//! the start and end of steps, which are INTEGER microseconds (fast steps take well under a
//! millisecond); JSON values are TEXT, job ids are 16-byte UUID BLOBs.

mod encode;
mod error;
mod postgres;
mod sqlite;
pub mod throwaway;
mod types;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use error::StoreError;
pub use postgres::{PgStore, PgStoreOptions, SchemaStatus, MIGRATOR as PG_MIGRATOR};
pub use sqlite::{SqliteStore, WriterStats};
pub use types::{
    Checkpoint, InsertOutcome, JobFilter, JobId, JobPage, JobRecord, JobStatus, KvClaim, LogLine,
    MinuteCount, NewJob, RunbookFailures, StepRecord, StepStatus, StoreOptions,
};

/// The durable storage interface of Ferry.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Durably insert a job (group-committed); returns only after COMMIT.
    ///
    /// Claims first: every key of [`NewJob::claims`] is written in the same transaction, only if
    /// it is absent or expired (the check-and-set of [`Store::kv_put_if_absent`]); if one is held,
    /// nothing is stored — no job, no claim — and [`InsertOutcome::ClaimTaken`] names it.
    /// Concurrent inserts claiming the same key: exactly one makes the claim.
    ///
    /// Deduplication: if a job with the same (solution, runbook, dedup_key) exists, nothing is
    /// stored but the claims and [`InsertOutcome::Duplicate`] names the existing job. Inserting
    /// an id that already exists is a [`StoreError::Conflict`]; on any error the claims are not
    /// kept either.
    async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError>;

    /// Claim the next runnable job and mark it Running with a lease (`lease_until = now + lease`).
    ///
    /// Runnable: Waiting with `next_run_at <= now` (earliest first), then Running with an expired
    /// lease (`lease_until < now`: its worker stopped renewing; it resumes from its last
    /// checkpoint under the new owner), otherwise the oldest Queued job that does not wait for
    /// its concurrency key. Jobs sharing a concurrency key run one at a
    /// time in insertion order; a Waiting or Running job keeps holding its key. Increments
    /// `attempts`, sets `started_at` on the first claim and clears `next_run_at`.
    /// Returns `None` if nothing is runnable.
    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<JobRecord>, StoreError>;

    /// In one transaction: append the step record (if any; its `seq` is assigned by the store as
    /// the next number for the job) and update the job's state, status, next_run_at and error.
    /// `finished_at` is set when the new status is terminal, which also releases the concurrency
    /// key to the next job; Waiting, Queued and terminal statuses clear the lease.
    /// Group-committed. [`StoreError::NotFound`] for an unknown job, [`StoreError::Invalid`] for
    /// a Waiting checkpoint without `next_run_at`.
    async fn checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError>;

    /// Fetch one job.
    async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// List jobs, newest first, with filters and paging (see [`JobFilter`]).
    async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage, StoreError>;

    /// All steps of a job in order.
    async fn job_steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError>;

    /// The `outputs` of the latest step record of invocation `invocation` of step `step_id` of
    /// a job (`None` when there is no such record). The executor reads the outputs of a nested
    /// step back from its record when a job resumes inside that step's branches (a re-run keeps
    /// the earlier run's records, whose invocation numbers repeat: the latest is the current
    /// run's). The default reads every step of the job; stores override it with a lookup.
    async fn step_outputs(
        &self,
        id: JobId,
        step_id: &str,
        invocation: i64,
    ) -> Result<Option<Value>, StoreError> {
        Ok(self
            .job_steps(id)
            .await?
            .into_iter()
            .rev()
            .find(|s| s.step_id == step_id && s.invocation == invocation)
            .map(|s| s.outputs))
    }

    /// Put every Running job back to Queued, keeping its state so the executor resumes from the
    /// last checkpoint. For the start-up of the only process using the store (the SQLite data
    /// directory is locked to one server); with several processes, jobs of a dead one are taken
    /// over through their expired leases by [`Store::claim_job`] instead. Returns how many.
    async fn recover_interrupted(&self) -> Result<u64, StoreError>;

    /// Reset a Failed job to Queued with the given fresh state (re-run); clears error,
    /// started_at, finished_at and next_run_at and keeps the step history.
    /// [`StoreError::Conflict`] if the job is not Failed, [`StoreError::NotFound`] if unknown.
    async fn requeue_job(&self, id: JobId, state: Value) -> Result<(), StoreError>;

    /// Earliest `next_run_at` among Waiting jobs (the scheduler sleeps until then).
    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Number of jobs per status, for every status (zeros included), in [`JobStatus::ALL`] order.
    async fn count_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError>;

    /// Jobs created per minute since `since` (the web console's events chart): one entry per
    /// minute that has jobs, oldest first. The default pages through [`Store::list_jobs`]
    /// (`created_from`); stores override it with one aggregate query.
    async fn jobs_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError> {
        let mut counts = std::collections::BTreeMap::<i64, i64>::new();
        for job in jobs_since(self, since, None).await? {
            *counts
                .entry(job.created_at.timestamp().div_euclid(60))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(m, jobs)| {
                DateTime::from_timestamp(m * 60, 0)
                    .map(|minute| MinuteCount { minute, jobs })
                    .ok_or_else(|| StoreError::Corrupt(format!("minute {m} out of range")))
            })
            .collect()
    }

    /// The runbooks with the most failed jobs among the jobs created since `since`, most
    /// failures first (ties by name), at most `limit`. The default pages through
    /// [`Store::list_jobs`]; stores override it with one aggregate query.
    async fn failed_by_runbook(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RunbookFailures>, StoreError> {
        let mut counts = std::collections::BTreeMap::<(String, String), i64>::new();
        for job in jobs_since(self, since, Some(JobStatus::Failed)).await? {
            *counts.entry((job.solution, job.runbook)).or_default() += 1;
        }
        let mut list: Vec<RunbookFailures> = counts
            .into_iter()
            .map(|((solution, runbook), failed)| RunbookFailures {
                solution,
                runbook,
                failed,
            })
            .collect();
        list.sort_by_key(|f| std::cmp::Reverse(f.failed));
        list.truncate(limit);
        Ok(list)
    }

    /// Read a value of the connection store; expired values read as `None`.
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Value>, StoreError>;

    /// Write a value (stored as given; callers encrypt). `ttl` of `None` never expires.
    async fn kv_put(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError>;

    /// Write a value only if the key is absent or expired (an atomic check-and-set, e.g. for
    /// a replay window). Returns whether the value was written.
    async fn kv_put_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;

    /// Delete a value (no error if absent).
    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), StoreError>;

    /// Single-flight lock (spec §2.10): succeeds if the key is free, expired, or already held by
    /// the same `token` (which extends it). Returns whether the lock is now held by `token`.
    async fn lock_acquire(&self, key: &str, token: &str, ttl: Duration)
        -> Result<bool, StoreError>;

    /// Release a lock; only the owner token can. Returns whether a lock was released.
    async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError>;

    /// Extend the lease of a Running job held by `worker` to `now + lease` (a heartbeat for long
    /// steps). Returns false if the job is not Running or is leased by another worker.
    async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Retention: delete up to `limit` Finished/Failed jobs (with their steps) that finished
    /// before `before`, oldest first. Returns how many jobs were deleted; call again while it
    /// returns `limit`.
    async fn purge_finished_jobs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Delete expired key/value entries and locks. Expired entries already read as absent; this
    /// reclaims their space (call it periodically). Returns how many rows were deleted.
    async fn purge_expired(&self) -> Result<u64, StoreError>;

    /// A signal raised when jobs may have become runnable through another process sharing the
    /// store (PostgreSQL: `LISTEN`/`NOTIFY`), so that idle workers wake at once instead of at
    /// their next poll. `None` (the default): only this process's own inserts make jobs
    /// runnable, and the engine wakes its workers itself.
    fn wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// Every job created since `since` (optionally of one status), through [`Store::list_jobs`]
/// pages: the fallback of the aggregate queries.
async fn jobs_since<S: Store + ?Sized>(
    store: &S,
    since: DateTime<Utc>,
    status: Option<JobStatus>,
) -> Result<Vec<JobRecord>, StoreError> {
    let mut all = Vec::new();
    let mut filter = JobFilter {
        status,
        created_from: Some(since),
        limit: JobFilter::MAX_LIMIT,
        ..JobFilter::default()
    };
    loop {
        let page = store.list_jobs(&filter).await?;
        all.extend(page.jobs);
        match page.next_before_seq {
            Some(b) => filter.before_seq = Some(b),
            None => return Ok(all),
        }
    }
}
