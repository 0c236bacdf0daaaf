//! The two stores under one test: `both_stores!(test, …)` runs each `async fn test(h: Harness)`
//! once on SQLite (module `sqlite`) and once on PostgreSQL (module `postgres`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_store::{
    Checkpoint, InsertOutcome, JobFilter, JobId, JobPage, JobRecord, JobStatus, MinuteCount,
    NewJob, RunbookFailures, StepRecord, StoreError,
};
use serde_json::Value;

use ferry_store::throwaway::{self, Throwaway, Unavailable};
use ferry_store::{PgStore, PgStoreOptions, SqliteStore, Store, StoreOptions, WriterStats};
use tempfile::TempDir;

/// Where a test's store lives.
pub enum Harness {
    Sqlite(TempDir),
    Postgres(String),
}

/// The throwaway PostgreSQL server of this test binary (one per process: each test gets a
/// database of its own; the server's watchdog removes it when the process is gone).
fn server() -> &'static Result<Throwaway, Unavailable> {
    static PG: OnceLock<Result<Throwaway, Unavailable>> = OnceLock::new();
    PG.get_or_init(|| Throwaway::start(false))
}

impl Harness {
    pub fn sqlite() -> Harness {
        Harness::Sqlite(TempDir::new().expect("temporary directory"))
    }

    /// A fresh database, or `None` (after a notice) where PostgreSQL cannot run.
    pub fn postgres(test: &str) -> Option<Harness> {
        match server() {
            Ok(pg) => {
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                match pg.create_database(&name) {
                    Ok(url) => Some(Harness::Postgres(url)),
                    Err(e) => panic!("{test}: {e}"),
                }
            }
            Err(e) => throwaway::skip_or_fail(test, e),
        }
    }

    /// Open (or re-open) the test's store.
    pub async fn open(&self) -> TestStore {
        match self {
            Harness::Sqlite(dir) => TestStore::Sqlite(
                SqliteStore::open(&dir.path().join("data/ferry.db"), StoreOptions::default())
                    .await
                    .expect("open SQLite store"),
            ),
            Harness::Postgres(url) => TestStore::Postgres(
                PgStore::open(url, PgStoreOptions::default())
                    .await
                    .expect("open PostgreSQL store"),
            ),
        }
    }

    /// How a child process opens the same store (`sqlite:<path>` or the PostgreSQL URL).
    pub fn spec(&self) -> String {
        match self {
            Harness::Sqlite(dir) => {
                format!("sqlite:{}", dir.path().join("data/ferry.db").display())
            }
            Harness::Postgres(url) => url.clone(),
        }
    }
}

/// Open the store a [`Harness::spec`] names.
pub async fn open_spec(spec: &str) -> TestStore {
    match spec.strip_prefix("sqlite:") {
        Some(path) => TestStore::Sqlite(
            SqliteStore::open(std::path::Path::new(path), StoreOptions::default())
                .await
                .expect("open SQLite store"),
        ),
        None => TestStore::Postgres(
            PgStore::open(spec, PgStoreOptions::default())
                .await
                .expect("open PostgreSQL store"),
        ),
    }
}

/// Either store, usable as `dyn Store` plus the calls the tests need from each.
pub enum TestStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl TestStore {
    fn inner(&self) -> &dyn Store {
        match self {
            TestStore::Sqlite(s) => s,
            TestStore::Postgres(p) => p,
        }
    }
}

#[async_trait::async_trait]
impl Store for TestStore {
    async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        self.inner().insert_job(job).await
    }
    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<JobRecord>, StoreError> {
        self.inner().claim_job(worker, now, lease).await
    }
    async fn checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        self.inner().checkpoint(cp).await
    }
    async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.inner().get_job(id).await
    }
    async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage, StoreError> {
        self.inner().list_jobs(filter).await
    }
    async fn job_steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
        self.inner().job_steps(id).await
    }
    async fn step_outputs(
        &self,
        id: JobId,
        step_id: &str,
        invocation: i64,
    ) -> Result<Option<Value>, StoreError> {
        self.inner().step_outputs(id, step_id, invocation).await
    }
    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        self.inner().recover_interrupted().await
    }
    async fn requeue_job(&self, id: JobId, state: Value) -> Result<(), StoreError> {
        self.inner().requeue_job(id, state).await
    }
    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner().next_wakeup().await
    }
    async fn count_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        self.inner().count_by_status().await
    }
    async fn jobs_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError> {
        self.inner().jobs_per_minute(since).await
    }
    async fn failed_by_runbook(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RunbookFailures>, StoreError> {
        self.inner().failed_by_runbook(since, limit).await
    }
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.inner().kv_get(ns, key).await
    }
    async fn kv_put(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.inner().kv_put(ns, key, value, ttl).await
    }
    async fn kv_put_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.inner().kv_put_if_absent(ns, key, value, ttl).await
    }
    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        self.inner().kv_delete(ns, key).await
    }
    async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner().lock_acquire(key, token, ttl).await
    }
    async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        self.inner().lock_release(key, token).await
    }
    async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.inner().renew_lease(id, worker, lease).await
    }
    async fn purge_finished_jobs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.inner().purge_finished_jobs(before, limit).await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner().purge_expired().await
    }
    fn wakeups(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner().wakeups()
    }
}

impl TestStore {
    pub async fn close(&self) {
        match self {
            TestStore::Sqlite(s) => s.close().await,
            TestStore::Postgres(p) => p.close().await,
        }
    }

    pub fn writer_stats(&self) -> WriterStats {
        match self {
            TestStore::Sqlite(s) => s.writer_stats(),
            TestStore::Postgres(p) => p.writer_stats(),
        }
    }

    pub fn into_dyn(self) -> Arc<dyn Store> {
        match self {
            TestStore::Sqlite(s) => Arc::new(s),
            TestStore::Postgres(p) => Arc::new(p),
        }
    }
}

/// Run each listed `async fn name(h: Harness)` on both stores.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Harness::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(h) = super::Harness::postgres(stringify!($name)) {
                        super::$name(h).await
                    }
                }
            )*
        }
    };
}
