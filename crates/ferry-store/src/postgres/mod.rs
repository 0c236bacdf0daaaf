//! The PostgreSQL implementation of [`Store`], shared by several `ferry serve` nodes.
//!
//! Job inserts are group-committed by writer tasks (see [`writer`]); every other write is one
//! statement (a checkpoint or a re-run is one call of a PL/pgSQL function) in its own
//! transaction on a pooled connection — PostgreSQL itself shares one WAL flush among the
//! transactions that commit together. Claims take the next runnable job with
//! `FOR UPDATE SKIP LOCKED`, so workers of every node claim in parallel without ever handing out
//! a job twice. Concurrency keys are ordered across nodes by a transaction-scoped advisory lock
//! per key (inserts, re-runs and the key hand-over of a terminal checkpoint take it).
//!
//! Idle workers wake on `LISTEN ferry_jobs`: an insert batch, a re-run, a requeue or a key
//! handed on raises `NOTIFY ferry_jobs` at commit, on whichever node it happened. Connections
//! lost with the database are re-established by the pool and the listener; while the database
//! is unreachable every call fails quickly with [`StoreError::Unavailable`] or a database error
//! (the server answers 503 to new events) and the node recovers by itself.

mod rows;
pub(crate) mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use self::rows::{job_cols, job_from_row, step_from_row, STEP_COLS};
use self::writer::{Counters, InsertRow, Msg};
use crate::sqlite::rows::{dur_ms, from_ms, to_ms, to_us};
use crate::{
    Checkpoint, InsertOutcome, JobFilter, JobId, JobPage, JobRecord, JobStatus, MinuteCount,
    NewJob, RunbookFailures, StepRecord, Store, StoreError, WriterStats,
};

/// The PostgreSQL schema migrations (`crates/ferry-store/migrations-postgres`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations-postgres");

/// Capacity of the insert queue (callers wait when it is full).
const QUEUE_CAPACITY: usize = 16_384;
/// The channel of `LISTEN`/`NOTIFY`.
const CHANNEL: &str = "ferry_jobs";

/// Options of [`PgStore::open`].
#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    /// Apply pending migrations on open (else a database that lacks some is refused, naming
    /// `ferry migrate`). A database with migrations newer than this build is always refused.
    pub migrate: bool,
    /// Largest number of inserts group-committed in one transaction.
    pub max_batch: usize,
    /// Writer tasks (each with its own connection): one collects a batch while another commits.
    pub writers: usize,
    /// Connections of the pool used for reads and the other writes.
    pub pool_size: u32,
    /// How long a call waits for a connection before it fails (the database is unreachable).
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            migrate: true,
            max_batch: 512,
            writers: 2,
            pool_size: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// PostgreSQL-backed [`Store`]. Cloning is cheap and shares the pools and writers.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Claims and lease renewals: `synchronous_commit = off` (see [`PgStore::open`]).
    leases: PgPool,
    writer_pool: PgPool,
    tx: mpsc::Sender<Msg>,
    writers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    listener: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
    closed: AtomicBool,
}

/// Where a database's schema stands relative to this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Highest migration applied to the database (`None`: an empty database).
    pub applied: Option<i64>,
    /// Highest migration this build knows.
    pub known: i64,
    /// Migrations of this build not applied yet.
    pub pending: usize,
}

fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?
        .application_name("ferry")
        .disable_statement_logging())
}

/// Read the migrations applied to the database.
async fn schema_status(pool: &PgPool) -> Result<SchemaStatus, StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let pending = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count();
    Ok(SchemaStatus {
        applied: applied.last().copied(),
        known,
        pending,
    })
}

fn check_not_newer(status: &SchemaStatus) -> Result<(), StoreError> {
    match status.applied {
        Some(applied) if applied > status.known => Err(StoreError::Schema(format!(
            "the database schema is at migration {applied}, newer than this Ferry knows \
             (up to {}): upgrade this node to the version that migrated the database",
            status.known
        ))),
        _ => Ok(()),
    }
}

impl PgStore {
    /// Apply the pending migrations to the database at `url` (what `ferry migrate` does; nodes
    /// starting at once are serialized by sqlx's migration lock). Refuses a database whose
    /// schema is newer than this build. Returns the schema status before migrating.
    pub async fn migrate(url: &str) -> Result<SchemaStatus, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect_options(url)?)
            .await?;
        let before = schema_status(&pool).await?;
        check_not_newer(&before)?;
        MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(before)
    }

    /// Connect to the database at `url`, check (and with [`PgStoreOptions::migrate`] apply)
    /// its migrations, and start the writers and the listener. Must be called inside a Tokio
    /// runtime.
    pub async fn open(url: &str, opts: PgStoreOptions) -> Result<PgStore, StoreError> {
        let options = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.pool_size.max(2))
            .min_connections(0)
            .acquire_timeout(opts.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            // A connection is tested when it goes back to the pool (sqlx pings it then), so a
            // broken one never comes out again; a second test on the way out would only add a
            // round trip to every call.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let status = schema_status(&pool).await?;
        check_not_newer(&status)?;
        if status.pending > 0 {
            if opts.migrate {
                MIGRATOR.run(&pool).await?;
            } else {
                return Err(StoreError::Schema(format!(
                    "the database lacks {} migration(s) of this Ferry: run `ferry migrate` first",
                    status.pending
                )));
            }
        }
        // Claims and lease renewals do not wait for their commit to be flushed: should the
        // database crash before it is, the claim is simply undone (the job is queued again, its
        // first worker's renewals and checkpoints are refused by the lease fence), and any later
        // flushed commit — a checkpoint of the job — flushes it first (the WAL is one sequence).
        // Everything acknowledged to a client (inserts) and every checkpoint waits for its flush.
        let leases = PgPoolOptions::new()
            .max_connections((opts.pool_size / 2).max(2))
            .min_connections(0)
            .acquire_timeout(opts.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .test_before_acquire(false)
            .connect_with(options.clone().options([("synchronous_commit", "off")]))
            .await?;
        let writers = opts.writers.max(1);
        let writer_pool = PgPoolOptions::new()
            .max_connections(writers as u32)
            .min_connections(0)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(Counters::default());
        let handles = (0..writers)
            .map(|_| {
                tokio::spawn(writer::run(
                    writer_pool.clone(),
                    rx.clone(),
                    opts.max_batch,
                    counters.clone(),
                ))
            })
            .collect();
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = oneshot::channel();
        let listener = tokio::spawn(listen(pool.clone(), wake.clone(), stop_rx));
        tracing::debug!("PostgreSQL store opened");
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                leases,
                writer_pool,
                tx,
                writers: Mutex::new(handles),
                listener: Mutex::new(Some((stop_tx, listener))),
                wake,
                counters,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Finish the queued inserts, stop the writers and the listener and close all connections.
    /// Later calls fail with [`StoreError::Closed`]. Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.inner.tx.send(Msg::Shutdown).await;
        for handle in self.inner.writers.lock().await.drain(..) {
            if let Err(e) = handle.await {
                tracing::warn!(error = %e, "store writer task ended abnormally");
            }
        }
        if let Some((stop, handle)) = self.inner.listener.lock().await.take() {
            let _ = stop.send(());
            let _ = handle.await;
        }
        self.inner.writer_pool.close().await;
        self.inner.leases.close().await;
        self.inner.pool.close().await;
    }

    /// Group-commit statistics of the inserts (batches committed, inserts, largest batch).
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            batches: c.batches.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            largest_batch: c.largest.load(Ordering::Relaxed),
        }
    }

    /// The schema status of the database (see [`SchemaStatus`]).
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        schema_status(&self.inner.pool).await
    }

    /// Check that this node agrees with the database on what every node must share, and
    /// register it as a live node. `key_fingerprint` (of the master key, never the key) is
    /// recorded by the first node and must match ever after; `solutions` (name → content hash)
    /// must match every node seen alive within `alive` (nodes started later with new versions
    /// are refused while an old one runs; once all have stopped, the new versions are taken).
    /// Returns a message naming the difference when this node is refused.
    pub async fn join_cluster(
        &self,
        node: &str,
        key_fingerprint: &str,
        solutions: &std::collections::BTreeMap<String, String>,
        alive: Duration,
    ) -> Result<Result<(), String>, StoreError> {
        let now = to_ms(Utc::now());
        let mut tx = self.inner.pool.begin().await?;
        // One node joins at a time.
        sqlx::query("SELECT pg_advisory_xact_lock(7002)")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO cluster (name, value, node, updated_at) \
             VALUES ('master_key_fingerprint', $1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(key_fingerprint)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (stored, by): (String, String) =
            sqlx::query_as("SELECT value, node FROM cluster WHERE name = 'master_key_fingerprint'")
                .fetch_one(&mut *tx)
                .await?;
        if stored != key_fingerprint {
            return Ok(Err(format!(
                "this node's master key (fingerprint {key_fingerprint}) is not the one the \
                 database was set up with (fingerprint {stored}, by node {by}): every node must \
                 use the same master key (FERRY_MASTER_KEY or <data>/master.key)"
            )));
        }
        let mine = serde_json::to_string(solutions)?;
        let others: Vec<(String, String)> = sqlx::query_as(
            "SELECT node, solutions FROM nodes WHERE node <> $1 AND last_seen >= $2",
        )
        .bind(node)
        .bind(now - dur_ms(alive))
        .fetch_all(&mut *tx)
        .await?;
        for (other, theirs) in others {
            let theirs: std::collections::BTreeMap<String, String> = serde_json::from_str(&theirs)?;
            if &theirs != solutions {
                let mut diffs = Vec::new();
                for (name, hash) in solutions {
                    match theirs.get(name) {
                        None => diffs.push(format!("'{name}' is not loaded there")),
                        Some(h) if h != hash => {
                            diffs.push(format!("'{name}' is {hash} here, {h} there"))
                        }
                        Some(_) => {}
                    }
                }
                for name in theirs.keys().filter(|n| !solutions.contains_key(*n)) {
                    diffs.push(format!("'{name}' is loaded there but not here"));
                }
                return Ok(Err(format!(
                    "node {other}, running on this database, serves other solution versions: \
                     {}. Every node must load the same solutions; stop the other nodes first \
                     to roll out new versions",
                    diffs.join("; ")
                )));
            }
        }
        sqlx::query(
            "INSERT INTO nodes (node, solutions, started_at, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (node) DO UPDATE SET solutions = excluded.solutions, \
             started_at = excluded.started_at, last_seen = excluded.last_seen",
        )
        .bind(node)
        .bind(&mine)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Refresh this node's `last_seen` (a heartbeat while it serves).
    pub async fn node_alive(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE nodes SET last_seen = $2 WHERE node = $1")
            .bind(node)
            .bind(to_ms(Utc::now()))
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    /// Remove this node from the live nodes (on a clean shutdown).
    pub async fn leave_cluster(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE node = $1")
            .bind(node)
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }
}

/// `LISTEN ferry_jobs` until stopped, waking the idle workers on every notification. A lost
/// connection is re-established (notifications sent meanwhile are lost, so the workers are
/// woken then too, and look for themselves).
async fn listen(pool: PgPool, wake: Arc<Notify>, mut stop: oneshot::Receiver<()>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = tokio::select! {
            _ = &mut stop => return,
            l = PgListener::connect_with(&pool) => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        wake.notify_waiters();
        loop {
            tokio::select! {
                _ = &mut stop => return,
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => wake.notify_waiters(),
                    Ok(None) => {
                        // The connection was lost: try_recv re-connects (and LISTENs again)
                        // on its next call.
                        tracing::warn!("LISTEN connection lost; re-connecting");
                        wake.notify_waiters();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; re-connecting");
                        wake.notify_waiters();
                        break;
                    }
                },
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn now_ms() -> i64 {
    to_ms(Utc::now())
}

/// Claim: a due Waiting job (earliest first), else a Running job whose lease expired, else the
/// oldest Queued job that holds or needs no concurrency key — each found through its partial
/// index and locked with `SKIP LOCKED` (a row another claim has locked is passed over). The
/// three sub-selects are evaluated lazily, in order, by COALESCE.
const CLAIM_SQL: &str = concat!(
    "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $2, \
     attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3, \
     next_run_at = NULL \
     WHERE seq = COALESCE( \
       (SELECT seq FROM jobs WHERE status = 'waiting' AND next_run_at <= $3 \
        ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED), \
       (SELECT seq FROM jobs WHERE status = 'running' AND lease_until < $3 \
        ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED), \
       (SELECT seq FROM jobs WHERE status = 'queued' AND NOT blocked \
        ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)) \
     RETURNING ",
    job_cols!()
);

/// Map errors of a pooled call: a closed store is [`StoreError::Closed`]; no connection in
/// time, a broken connection, or the server ending connections (SQLSTATE class 08, and 57P01–03:
/// shutting down or starting up) is [`StoreError::Unavailable`].
fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed,
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("no database connection (timed out)".into())
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("database connection: {e}")),
        sqlx::Error::Database(d)
            if d.code().is_some_and(|c| {
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
            }) =>
        {
            StoreError::Unavailable(format!("database connection: {}", d.message()))
        }
        other => StoreError::Db(other),
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        let now = now_ms();
        let row = InsertRow::encode(job, now)?;
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Insert(row, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<JobRecord>, StoreError> {
        let now = to_ms(now);
        let row = sqlx::query(CLAIM_SQL)
            .bind(worker)
            .bind(now.saturating_add(dur_ms(lease)))
            .bind(now)
            .fetch_optional(&self.inner.leases)
            .await
            .map_err(db)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        if cp.status == JobStatus::Waiting && cp.next_run_at.is_none() {
            return Err(StoreError::Invalid(
                "a Waiting checkpoint needs next_run_at".into(),
            ));
        }
        let step = cp.step.as_ref();
        let enc = |v: &Value| serde_json::to_string(v);
        let input = step.map(|s| enc(&s.input)).transpose()?;
        let outputs = step.map(|s| enc(&s.outputs)).transpose()?;
        let logs = step.map(|s| serde_json::to_string(&s.logs)).transpose()?;
        let code: i32 = sqlx::query_scalar(
            "SELECT ferry_checkpoint($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17, $18)",
        )
        .bind(cp.job_id)
        .bind(serde_json::to_string(&cp.state)?)
        .bind(cp.status.as_str())
        .bind(&cp.error)
        .bind(now_ms())
        .bind(cp.next_run_at.map(to_ms))
        .bind(cp.status.is_terminal())
        .bind(cp.owner.as_deref())
        .bind(step.is_some())
        .bind(step.map(|s| s.step_id.as_str()))
        .bind(step.map(|s| s.invocation))
        .bind(step.map(|s| s.status.as_str()))
        .bind(input)
        .bind(outputs)
        .bind(logs)
        .bind(step.and_then(|s| s.error.as_deref()))
        .bind(step.map(|s| to_us(s.started_at)))
        .bind(step.map(|s| to_us(s.finished_at)))
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db)?;
        match code {
            0 => Ok(()),
            1 => Err(StoreError::NotFound),
            2 => Err(StoreError::LeaseLost),
            other => Err(StoreError::Corrupt(format!(
                "ferry_checkpoint answered {other}"
            ))),
        }
    }

    async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage, StoreError> {
        let limit = filter.effective_limit();
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(concat!("SELECT ", job_cols!(), " FROM jobs WHERE true"));
        crate::encode::push_job_filters(&mut qb, filter);
        // With a time range the page comes newest first by (created_at, seq) straight from the
        // `jobs_created_seq` index: creation times follow seq only roughly (clock steps, several
        // nodes), so ordering by seq would read the whole range to find a page.
        let by_time = filter.created_from.is_some() || filter.created_to.is_some();
        match filter.before_seq {
            None => {}
            Some(b) if !by_time => {
                qb.push(" AND seq < ").push_bind(b);
            }
            // Jobs before the cursor's job (the previous page's last) in (created_at, seq)
            // order or, if it has been deleted since (retention), from the nearest older job
            // still stored, that one included; no such job: an empty page.
            Some(b) => {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT created_at, seq FROM jobs WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(b)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(db)?;
                let Some((c, s)) = row else {
                    return Ok(JobPage {
                        jobs: Vec::new(),
                        next_before_seq: None,
                    });
                };
                let s = if s == b { s } else { s + 1 };
                qb.push(" AND (created_at, seq) < (")
                    .push_bind(c)
                    .push(", ")
                    .push_bind(s)
                    .push(")");
            }
        }
        qb.push(if by_time {
            " ORDER BY created_at DESC, seq DESC LIMIT "
        } else {
            " ORDER BY seq DESC LIMIT "
        })
        .push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.inner.pool).await.map_err(db)?;
        let jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JobPage::from_overfetched(jobs, limit))
    }

    async fn job_steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
        let sql = format!("SELECT {STEP_COLS} FROM steps WHERE job_id = $1 ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        rows.iter().map(step_from_row).collect()
    }

    async fn step_outputs(
        &self,
        id: JobId,
        step_id: &str,
        invocation: i64,
    ) -> Result<Option<Value>, StoreError> {
        let outputs: Option<String> = sqlx::query_scalar(
            "SELECT outputs FROM steps WHERE job_id = $1 AND step_id = $2 AND invocation = $3 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(id)
        .bind(step_id)
        .bind(invocation)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?;
        crate::encode::step_outputs(outputs, id, step_id, invocation)
    }

    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "WITH r AS (UPDATE jobs SET status = 'queued', lease_owner = NULL, \
             lease_until = NULL, updated_at = $1 WHERE status = 'running' RETURNING 1) \
             SELECT COUNT(*) AS n, pg_notify('ferry_jobs', '') FROM r",
        )
        .bind(now_ms())
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db)?;
        let n: i64 = res.try_get("n")?;
        if n > 0 {
            tracing::info!(jobs = n, "recovered interrupted jobs");
        }
        Ok(n as u64)
    }

    async fn requeue_job(&self, id: JobId, state: Value) -> Result<(), StoreError> {
        let code: i32 = sqlx::query_scalar("SELECT ferry_requeue($1, $2, $3)")
            .bind(id)
            .bind(serde_json::to_string(&state)?)
            .bind(now_ms())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db)?;
        match code {
            0 => Ok(()),
            1 => Err(StoreError::NotFound),
            _ => {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.inner.pool)
                        .await
                        .map_err(db)?;
                match status {
                    None => Err(StoreError::NotFound),
                    Some(s) => Err(StoreError::Conflict(format!(
                        "job {id} is {s}, only failed jobs can be re-run"
                    ))),
                }
            }
        }
    }

    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_run_at) FROM jobs WHERE status = 'waiting'")
                .fetch_one(&self.inner.pool)
                .await
                .map_err(db)?;
        ms.map(from_ms).transpose()
    }

    async fn count_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(db)?;
        crate::encode::status_counts(rows)
    }

    async fn jobs_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT created_at / 60000 AS m, COUNT(*) FROM jobs WHERE created_at >= $1 \
             GROUP BY m ORDER BY m",
        )
        .bind(to_ms(since))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?;
        crate::encode::minute_counts(rows)
    }

    async fn failed_by_runbook(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RunbookFailures>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT solution, runbook, COUNT(*) AS n FROM jobs \
             WHERE created_at >= $1 AND status = 'failed' \
             GROUP BY solution, runbook ORDER BY n DESC, solution, runbook LIMIT $2",
        )
        .bind(to_ms(since))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(solution, runbook, failed)| RunbookFailures {
                solution,
                runbook,
                failed,
            })
            .collect())
    }

    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT value FROM kv WHERE ns = $1 AND key = $2 \
             AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(ns)
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    async fn kv_put(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kv (ns, key, value, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, \
             expires_at = excluded.expires_at",
        )
        .bind(ns)
        .bind(key)
        .bind(serde_json::to_string(value)?)
        .bind(ttl.map(|t| now_ms().saturating_add(dur_ms(t))))
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn kv_put_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let res = sqlx::query(writer::KV_PUT_NEW_SQL)
            .bind(ns)
            .bind(key)
            .bind(serde_json::to_string(value)?)
            .bind(ttl.map(|t| now.saturating_add(dur_ms(t))))
            .bind(now)
            .execute(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected() > 0)
    }

    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM kv WHERE ns = $1 AND key = $2")
            .bind(ns)
            .bind(key)
            .execute(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let res = sqlx::query(
            "INSERT INTO locks (key, token, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET token = excluded.token, \
             expires_at = excluded.expires_at \
             WHERE locks.expires_at <= $4 OR locks.token = excluded.token",
        )
        .bind(key)
        .bind(token)
        .bind(now.saturating_add(dur_ms(ttl)))
        .bind(now)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(res.rows_affected() > 0)
    }

    async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM locks WHERE key = $1 AND token = $2")
            .bind(key)
            .bind(token)
            .execute(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected() > 0)
    }

    async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE jobs SET lease_until = $3 \
             WHERE id = $1 AND status = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(now_ms().saturating_add(dur_ms(lease)))
        .execute(&self.inner.leases)
        .await
        .map_err(db)?;
        Ok(res.rows_affected() > 0)
    }

    async fn purge_finished_jobs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // Steps go with their job (ON DELETE CASCADE).
        let res = sqlx::query(
            "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs \
             WHERE status IN ('finished', 'failed') AND finished_at < $1 \
             ORDER BY finished_at LIMIT $2)",
        )
        .bind(to_ms(before))
        .bind(i64::from(limit))
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(res.rows_affected())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "WITH a AS (DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= $1 \
             RETURNING 1), b AS (DELETE FROM locks WHERE expires_at <= $1 RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM a) + (SELECT COUNT(*) FROM b)",
        )
        .bind(now_ms())
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(n as u64)
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        Some(self.inner.wake.clone())
    }
}
