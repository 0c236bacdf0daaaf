//! The embedded SQLite implementation of [`Store`].

pub(crate) mod rows;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot, Mutex};

use self::rows::{dur_ms, from_ms, job_from_row, step_from_row, to_ms, to_us, JOB_COLS, STEP_COLS};
use self::writer::{CheckpointRow, Counters, InsertRow, Msg, Op, Reply, StepRow, WriterConfig};
use crate::{
    Checkpoint, InsertOutcome, JobFilter, JobId, JobPage, JobRecord, JobStatus, MinuteCount,
    NewJob, RunbookFailures, StepRecord, Store, StoreError, StoreOptions,
};

/// Capacity of the writer's command queue (callers wait when it is full).
const QUEUE_CAPACITY: usize = 16_384;
/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;
/// WAL size (pages) at which the writer checkpoints by itself (a backstop far above
/// [`RESTART_FRAMES`]).
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 131_072;
/// WAL size (bytes, at 4 KiB pages) from which the checkpointer cuts the WAL file back to
/// nothing at the next interval without writes: under load it grows to about
/// [`RESTART_FRAMES`] pages, and need not stay that large once the load is gone. (Not on the
/// writer's path: truncating a large file there held every commit for ≈ 100 ms.)
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// How often the background checkpointer looks for new writes.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);
/// WAL size (frames = pages) from which the writer is asked to restart the WAL. A restart
/// holds the writer for the copy of the last frames and an fsync of the database (3–50 ms
/// measured on the development machine under load), so it is kept rare: under a sustained load of webhooks (about
/// 2.5 frames per job) once every few seconds rather than three times a second, which is what
/// keeps these pauses out of the 99th percentile of the answer times (256 MiB of WAL with
/// 4 KiB pages).
const RESTART_FRAMES: i64 = 65_536;
/// Passive checkpoints run back to back before the writer is asked to restart the WAL.
const CATCH_UP_CHECKPOINTS: usize = 2;
/// Earliest wake-up time of the Waiting jobs.
pub(crate) const NEXT_WAKEUP_SQL: &str =
    "SELECT MIN(next_run_at) FROM jobs INDEXED BY jobs_waiting WHERE status = 'waiting'";
/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite-backed [`Store`] (WAL mode, group-committed writes).
///
/// Durability: with the default `synchronous=NORMAL` a commit survives a crash or `kill -9` of the
/// process; with [`StoreOptions::sync_full`] every commit is fsync'ed and also survives power loss.
///
/// Cloning is cheap and shares the same writer and read pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    read: SqlitePool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    counters: Arc<Counters>,
}

/// Run a passive WAL checkpoint on its own connection whenever there were writes since the
/// last one (passive checkpoints never block the writer or readers), and ask the writer to
/// restart the WAL when it has grown past [`RESTART_FRAMES`].
async fn checkpointer(
    mut conn: SqliteConnection,
    counters: Weak<Counters>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut last = 0;
    // Whether the WAL file grew past WAL_SIZE_LIMIT since it was last cut back.
    let mut file_large = false;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
        }
        let Some(c) = counters.upgrade() else { break };
        let now = c.commands.load(Ordering::Relaxed);
        let restart_pending = c.restart_wal.load(Ordering::Relaxed);
        drop(c);
        if now == last && file_large && !restart_pending {
            // No writes for a whole interval: cut the WAL file back now, off the writer's path
            // (under load that would hold every commit for as long as the file takes to shrink).
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await
            {
                Ok((0, _, _)) => {
                    file_large = false;
                    tracing::debug!("WAL file truncated while idle");
                }
                Ok(_) => {} // busy: try again at the next quiet interval
                Err(e) => tracing::warn!(error = %e, "WAL truncate checkpoint failed"),
            }
            continue;
        }
        // While the writer is about to restart the WAL, stay out of its way.
        if now == last || restart_pending {
            continue;
        }
        last = now;
        // Result row: (busy, frames in the WAL, frames checkpointed).
        let wal_frames =
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await
            {
                Ok((_, frames, _)) => frames,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    continue;
                }
            };
        if wal_frames * 4096 >= WAL_SIZE_LIMIT {
            file_large = true;
        }
        if wal_frames >= RESTART_FRAMES {
            // The restart holds the writer while it copies what the WAL gained since this
            // checkpoint began (under load, that checkpoint's whole run) and syncs the
            // database. Catch up first with back-to-back passive checkpoints, each copying what
            // the one before left, so that only a few milliseconds of frames remain for it.
            for _ in 0..CATCH_UP_CHECKPOINTS {
                if let Err(e) =
                    sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&mut conn)
                        .await
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    break;
                }
            }
            // Nearly everything is copied now: ask the writer to restart the WAL between two
            // batches (cheap there; here it would have to wait for the writer's lock).
            if let Some(c) = counters.upgrade() {
                c.restart_wal.store(true, Ordering::Relaxed);
            }
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the checkpoint connection failed");
    }
}

/// Open the write connection on a thread of its own and run the group-commit writer there;
/// returns once the connection is open (or with the reason it could not be opened).
async fn spawn_writer(
    cfg: WriterConfig,
    rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    counters: Arc<Counters>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let handle = std::thread::Builder::new()
        .name("ferry-store-writer".into())
        .spawn(move || match writer::open(&cfg) {
            Ok(conn) => {
                let _ = ready_tx.send(Ok(()));
                writer::run(conn, rx, max_batch, counters);
            }
            Err(e) => {
                tracing::error!(path = %cfg.path.display(), error = %e, "opening the store's write connection failed");
                let _ = ready_tx.send(Err(e));
            }
        })?;
    ready_rx.await.map_err(|_| StoreError::Closed)??;
    Ok(handle)
}

/// Group-commit statistics of a [`SqliteStore`] since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Transactions committed by the writer (one per batch).
    pub batches: u64,
    /// Write commands executed.
    pub commands: u64,
    /// Largest batch.
    pub largest_batch: u64,
}

impl SqliteStore {
    /// Open (creating the file and its parent directories if needed) and migrate the database at
    /// `path`, and start the writer thread. Must be called inside a Tokio runtime.
    pub async fn open(path: &Path, opts: StoreOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                tokio::fs::create_dir_all(dir).await?;
            }
        }
        let base = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if opts.sync_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .disable_statement_logging();

        // WAL checkpoints: a background task copies the WAL into the database with passive
        // checkpoints (they never block the writer). Under a sustained load the WAL cannot start
        // over while passive checkpoints lag behind, so once it is large the writer runs a
        // RESTART checkpoint between two batches (only the small un-copied tail is left then).
        // The writer's own auto-checkpoint is a high backstop only.
        let mut conn: SqliteConnection = base.clone().create_if_missing(true).connect().await?;
        sqlx::migrate!().run(&mut conn).await?;
        conn.close().await?;
        let ckpt_conn: SqliteConnection = base.clone().connect().await?;

        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_with(base.pragma("query_only", "ON"))
            .await?;

        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let handle = spawn_writer(
            WriterConfig {
                path: path.to_path_buf(),
                sync_full: opts.sync_full,
                busy_timeout: BUSY_TIMEOUT,
                autocheckpoint_pages: WRITER_AUTOCHECKPOINT_PAGES,
            },
            rx,
            opts.max_batch,
            counters.clone(),
        )
        .await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let ckpt = tokio::spawn(checkpointer(ckpt_conn, Arc::downgrade(&counters), stop_rx));
        tracing::debug!(path = %path.display(), sync_full = opts.sync_full, "store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                tx,
                read,
                writer: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(Some((stop_tx, ckpt))),
                counters,
            }),
        })
    }

    /// Finish the queued writes, stop the writer and close all connections. Later calls fail
    /// with [`StoreError::Closed`]. Idempotent.
    pub async fn close(&self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Shutdown(ack_tx)).await.is_ok() {
            let _ = ack_rx.await;
        }
        if let Some(handle) = self.inner.writer.lock().await.take() {
            // The thread has answered the shutdown (or is gone): joining does not wait long.
            match tokio::task::spawn_blocking(move || handle.join()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!("the store's writer thread panicked"),
                Err(e) => tracing::warn!(error = %e, "joining the store's writer thread failed"),
            }
        }
        if let Some((stop, handle)) = self.inner.checkpointer.lock().await.take() {
            let _ = stop.send(());
            if let Err(e) = handle.await {
                tracing::warn!(error = %e, "store checkpoint task ended abnormally");
            }
        }
        self.inner.read.close().await;
    }

    /// Group-commit statistics (batches committed, commands, largest batch).
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            batches: c.batches.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            largest_batch: c.largest.load(Ordering::Relaxed),
        }
    }

    /// Send a write command and wait for its committed result.
    async fn write(&self, op: Op) -> Result<Reply, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Cmd(op, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn unexpected(reply: &Reply) -> StoreError {
    let kind = match reply {
        Reply::Insert(_) => "insert",
        Reply::Claim(_) => "claim",
        Reply::Unit => "unit",
        Reply::Count(_) => "count",
        Reply::Bool(_) => "bool",
    };
    StoreError::Corrupt(format!("writer answered with an unexpected {kind} reply"))
}

fn now_ms() -> i64 {
    to_ms(Utc::now())
}

impl SqliteStore {
    /// Where a page of a list ordered by creation time continues: the creation time and seq of
    /// the job the cursor names (the previous page's last job) or, if that job has been deleted
    /// since (retention), of the nearest older job still stored; `None` if there is none.
    async fn time_cursor(&self, before_seq: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT created_at, seq FROM jobs WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(before_seq)
        .fetch_optional(&self.inner.read)
        .await?;
        // Jobs strictly before the cursor's job; a stand-in job (the cursor's was deleted) is
        // itself on the page.
        Ok(row.map(|(c, s)| (c, if s == before_seq { s } else { s + 1 })))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        let now = now_ms();
        let row = InsertRow::encode(job, now)?;
        match self.write(Op::Insert(row)).await? {
            Reply::Insert(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<JobRecord>, StoreError> {
        let now = to_ms(now);
        let op = Op::Claim {
            worker: worker.to_owned(),
            now,
            lease_until: now.saturating_add(dur_ms(lease)),
        };
        match self.write(op).await? {
            Reply::Claim(job) => Ok(job.map(|j| *j)),
            other => Err(unexpected(&other)),
        }
    }

    async fn checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        if cp.status == JobStatus::Waiting && cp.next_run_at.is_none() {
            return Err(StoreError::Invalid(
                "a Waiting checkpoint needs next_run_at".into(),
            ));
        }
        let step = match cp.step {
            None => None,
            Some(s) => Some(StepRow {
                step_id: s.step_id,
                invocation: s.invocation,
                status: s.status.as_str(),
                input: serde_json::to_string(&s.input)?,
                outputs: serde_json::to_string(&s.outputs)?,
                logs: serde_json::to_string(&s.logs)?,
                error: s.error,
                started_at: to_us(s.started_at),
                finished_at: to_us(s.finished_at),
            }),
        };
        let row = CheckpointRow {
            job_id: cp.job_id,
            step,
            state: serde_json::to_string(&cp.state)?,
            status: cp.status.as_str(),
            terminal: cp.status.is_terminal(),
            next_run_at: cp.next_run_at.map(to_ms),
            error: cp.error,
            now: now_ms(),
            owner: cp.owner,
        };
        match self.write(Op::Checkpoint(row)).await? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.inner.read)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage, StoreError> {
        let limit = filter.effective_limit();
        // With a time range the page comes newest first by (created_at, seq) straight from the
        // `jobs_created` index (it ends in the rowid, seq): creation times follow seq only
        // roughly (clock steps), so ordering by seq would read the whole range to find a page.
        let by_time = filter.created_from.is_some() || filter.created_to.is_some();
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {JOB_COLS} FROM jobs WHERE 1 = 1"));
        crate::encode::push_job_filters(&mut qb, filter);
        match filter.before_seq {
            None => {}
            Some(b) if !by_time => {
                qb.push(" AND seq < ").push_bind(b);
            }
            Some(b) => match self.time_cursor(b).await? {
                // (created_at, seq) < (c, s), written so the index range ends at c.
                Some((c, s)) => {
                    qb.push(" AND created_at <= ")
                        .push_bind(c)
                        .push(" AND (created_at < ")
                        .push_bind(c)
                        .push(" OR seq < ")
                        .push_bind(s)
                        .push(")");
                }
                None => {
                    return Ok(JobPage {
                        jobs: Vec::new(),
                        next_before_seq: None,
                    })
                }
            },
        }
        qb.push(if by_time {
            " ORDER BY created_at DESC, seq DESC LIMIT "
        } else {
            " ORDER BY seq DESC LIMIT "
        })
        .push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.inner.read).await?;
        let jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JobPage::from_overfetched(jobs, limit))
    }

    async fn job_steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
        let sql = format!("SELECT {STEP_COLS} FROM steps WHERE job_id = ?1 ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn step_outputs(
        &self,
        id: JobId,
        step_id: &str,
        invocation: i64,
    ) -> Result<Option<Value>, StoreError> {
        let outputs: Option<String> = sqlx::query_scalar(
            "SELECT outputs FROM steps WHERE job_id = ?1 AND step_id = ?2 AND invocation = ?3 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(id)
        .bind(step_id)
        .bind(invocation)
        .fetch_optional(&self.inner.read)
        .await?;
        crate::encode::step_outputs(outputs, id, step_id, invocation)
    }

    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        let op = Op::Recover { now: now_ms() };
        match self.write(op).await? {
            Reply::Count(n) => {
                if n > 0 {
                    tracing::info!(jobs = n, "recovered interrupted jobs");
                }
                Ok(n)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn requeue_job(&self, id: JobId, state: Value) -> Result<(), StoreError> {
        let op = Op::Requeue {
            id,
            state: serde_json::to_string(&state)?,
            now: now_ms(),
        };
        match self.write(op).await? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = sqlx::query_scalar(NEXT_WAKEUP_SQL)
            .fetch_one(&self.inner.read)
            .await?;
        ms.map(from_ms).transpose()
    }

    async fn count_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(&self.inner.read)
                .await?;
        crate::encode::status_counts(rows)
    }

    async fn jobs_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT created_at / 60000 AS m, COUNT(*) FROM jobs INDEXED BY jobs_created \
             WHERE created_at >= ?1 GROUP BY m ORDER BY m",
        )
        .bind(to_ms(since))
        .fetch_all(&self.inner.read)
        .await?;
        crate::encode::minute_counts(rows)
    }

    async fn failed_by_runbook(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RunbookFailures>, StoreError> {
        let rows = sqlx::query(
            "SELECT solution, runbook, COUNT(*) AS n FROM jobs \
             WHERE created_at >= ?1 AND status = 'failed' \
             GROUP BY solution, runbook ORDER BY n DESC, solution, runbook LIMIT ?2",
        )
        .bind(to_ms(since))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RunbookFailures {
                    solution: row.try_get(0)?,
                    runbook: row.try_get(1)?,
                    failed: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT value FROM kv WHERE ns = ?1 AND key = ?2 \
             AND (expires_at IS NULL OR expires_at > ?3)",
        )
        .bind(ns)
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.inner.read)
        .await?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    async fn kv_put(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let op = Op::KvPut {
            ns: ns.to_owned(),
            key: key.to_owned(),
            value: serde_json::to_string(value)?,
            expires_at: ttl.map(|t| now_ms().saturating_add(dur_ms(t))),
        };
        match self.write(op).await? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn kv_put_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let op = Op::KvPutNew {
            ns: ns.to_owned(),
            key: key.to_owned(),
            value: serde_json::to_string(value)?,
            now,
            expires_at: ttl.map(|t| now.saturating_add(dur_ms(t))),
        };
        match self.write(op).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        let op = Op::KvDelete {
            ns: ns.to_owned(),
            key: key.to_owned(),
        };
        match self.write(op).await? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let op = Op::LockAcquire {
            key: key.to_owned(),
            token: token.to_owned(),
            now,
            expires_at: now.saturating_add(dur_ms(ttl)),
        };
        match self.write(op).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let op = Op::RenewLease {
            id,
            worker: worker.to_owned(),
            lease_until: now_ms().saturating_add(dur_ms(lease)),
        };
        match self.write(op).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn purge_finished_jobs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let op = Op::PurgeFinished {
            before: to_ms(before),
            limit: i64::from(limit),
        };
        match self.write(op).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        match self.write(Op::Purge { now: now_ms() }).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let op = Op::LockRelease {
            key: key.to_owned(),
            token: token.to_owned(),
        };
        match self.write(op).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }
}
