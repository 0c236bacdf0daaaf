//! The group-commit writer: one task owns the write connection and runs every queued write
//! command of a batch in one transaction.
//!
//! Failure isolation: every command performs exactly one writing SQL statement (except the
//! purge of expired entries, whose two deletes are independent and idempotent, and a job insert
//! with key/value claims, see below) (a checkpoint is an INSERT into a view whose trigger does
//! the work; a statement, triggers included, is atomic). SQLite backs out only the failing
//! *statement* on a constraint error and keeps the transaction open, so a command that fails
//! that way (duplicate id, unknown job, ...) fails alone while the rest of the batch commits;
//! this replaces a SAVEPOINT per command at no cost. Any other error (I/O, a failed COMMIT)
//! rolls the whole batch back and every command is retried in its own transaction, so each
//! caller gets its own outcome.
//!
//! A job insert with claims (`NewJob::claims`, e.g. a webhook's `jti`) first claims its keys
//! (an upsert that cannot fail locally), then inserts the job; if the insert fails locally,
//! its claims are deleted again before the next command, so they share the job's fate. Alone,
//! such an insert runs in an explicit transaction. Consecutive inserts of a batch claim all
//! their keys in one multi-row statement (`RETURNING` tells which were made).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use super::rows::{job_cols, job_from_row};
use crate::{InsertOutcome, JobId, JobRecord, StoreError};

pub(crate) use crate::encode::{ClaimRow, InsertRow};

/// A step to append, with JSON already encoded.
pub(crate) struct StepRow {
    pub step_id: String,
    pub invocation: i64,
    pub status: &'static str,
    pub input: String,
    pub outputs: String,
    pub logs: String,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: i64,
}

/// A checkpoint, with JSON already encoded.
pub(crate) struct CheckpointRow {
    pub job_id: JobId,
    pub step: Option<StepRow>,
    pub state: String,
    pub status: &'static str,
    pub terminal: bool,
    pub next_run_at: Option<i64>,
    pub error: Option<String>,
    pub now: i64,
    pub owner: Option<String>,
}

/// A write operation.
pub(crate) enum Op {
    Insert(InsertRow),
    Claim {
        worker: String,
        now: i64,
        lease_until: i64,
    },
    Checkpoint(CheckpointRow),
    Recover {
        now: i64,
    },
    Requeue {
        id: JobId,
        state: String,
        now: i64,
    },
    KvPut {
        ns: String,
        key: String,
        value: String,
        expires_at: Option<i64>,
    },
    /// Insert unless a live (unexpired) value exists.
    KvPutNew {
        ns: String,
        key: String,
        value: String,
        now: i64,
        expires_at: Option<i64>,
    },
    KvDelete {
        ns: String,
        key: String,
    },
    LockAcquire {
        key: String,
        token: String,
        now: i64,
        expires_at: i64,
    },
    LockRelease {
        key: String,
        token: String,
    },
    RenewLease {
        id: JobId,
        worker: String,
        lease_until: i64,
    },
    PurgeFinished {
        before: i64,
        limit: i64,
    },
    /// Delete expired key/value entries and locks (two independent, idempotent deletes).
    Purge {
        now: i64,
    },
}

/// Result of a write operation.
pub(crate) enum Reply {
    Insert(InsertOutcome),
    Claim(Option<Box<JobRecord>>),
    Unit,
    Count(u64),
    Bool(bool),
}

pub(crate) type ReplyTx = oneshot::Sender<Result<Reply, StoreError>>;

/// A message to the writer task.
// Commands are the hot path and Shutdown happens once: boxing commands would cost more.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Cmd(Op, ReplyTx),
    /// Finish the queued commands, close the connection, then acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// Counters kept by the writer task.
#[derive(Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub largest: AtomicU64,
    /// Set by the checkpointer when the WAL is large: the writer then restarts it.
    pub restart_wal: AtomicBool,
}

/// The writer task body.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let max_batch = max_batch.max(1);
    let mut batch: Vec<(Op, ReplyTx)> = Vec::with_capacity(max_batch);
    loop {
        let mut shutdown = None;
        match rx.recv().await {
            None => break,
            Some(Msg::Shutdown(ack)) => shutdown = Some(ack),
            Some(Msg::Cmd(op, tx)) => {
                batch.push((op, tx));
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Msg::Cmd(op, tx)) => batch.push((op, tx)),
                        Ok(Msg::Shutdown(ack)) => {
                            shutdown = Some(ack);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.commands.fetch_add(n, Ordering::Relaxed);
            counters.largest.fetch_max(n, Ordering::Relaxed);
            run_batch(&mut conn, &mut batch).await;
            if counters.restart_wal.swap(false, Ordering::Relaxed) {
                let t = std::time::Instant::now();
                if let Err(e) = exec_sql(&mut conn, "PRAGMA wal_checkpoint(RESTART)").await {
                    tracing::warn!(error = %e, "WAL restart checkpoint failed");
                }
                tracing::debug!(took = ?t.elapsed(), "WAL restarted");
            }
        }
        if let Some(ack) = shutdown {
            // Refuse whatever arrived after the shutdown request.
            rx.close();
            while let Some(msg) = rx.recv().await {
                if let Msg::Cmd(_, tx) = msg {
                    let _ = tx.send(Err(StoreError::Closed));
                }
            }
            close(conn).await;
            let _ = ack.send(());
            return;
        }
    }
    close(conn).await;
}

async fn close(conn: SqliteConnection) {
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the store's write connection failed");
    }
}

async fn exec_sql(conn: &mut SqliteConnection, sql: &str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(&mut *conn).await?;
    Ok(())
}

/// Run a batch in one transaction and answer every caller.
async fn run_batch(conn: &mut SqliteConnection, batch: &mut Vec<(Op, ReplyTx)>) {
    if batch.len() == 1 {
        if let Some((op, tx)) = batch.pop() {
            let res = run_single(conn, &op).await;
            let _ = tx.send(res);
        }
        return;
    }
    tracing::trace!(size = batch.len(), "group commit");
    let mut results: Vec<Result<Reply, StoreError>> = Vec::new();
    let mut broken: Option<StoreError> = None;
    match exec_sql(conn, "BEGIN IMMEDIATE").await {
        Err(e) => broken = Some(e),
        Ok(()) => {
            match exec_all(conn, batch).await {
                Ok(r) => results = r,
                Err(e) => broken = Some(e),
            }
            if broken.is_none() {
                if let Err(e) = exec_sql(conn, "COMMIT").await {
                    broken = Some(e);
                }
            }

            if broken.is_some() {
                let _ = exec_sql(conn, "ROLLBACK").await;
            }
        }
    }
    if let Some(e) = broken {
        tracing::warn!(error = %e, size = batch.len(), "group commit failed; retrying each command alone");
        for (op, tx) in batch.drain(..) {
            let res = run_isolated(conn, &op).await;
            let _ = tx.send(res);
        }
        return;
    }
    for ((_, tx), res) in batch.drain(..).zip(results) {
        let _ = tx.send(res);
    }
}

/// Largest number of job inserts combined into one multi-row INSERT statement (and of keys
/// claimed by one multi-row upsert).
const MULTI_INSERT_MAX: usize = 64;

/// A command's result, or `Err` for an error that is not local to the command (the batch must
/// then be rolled back).
type Outcome = Result<Result<Reply, StoreError>, StoreError>;

/// Execute every command of a batch inside the open transaction. Returns the per-command results,
/// or the first error that is not local to its command (the batch must then be rolled back).
/// Consecutive job inserts go through [`insert_run`].
async fn exec_all(
    conn: &mut SqliteConnection,
    batch: &[(Op, ReplyTx)],
) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
    let mut results = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let rows: Vec<&InsertRow> = batch[i..]
            .iter()
            .map_while(|(op, _)| match op {
                Op::Insert(r) => Some(r),
                _ => None,
            })
            .collect();
        if rows.is_empty() {
            results.push(exec_local(conn, &batch[i].0).await?);
            i += 1;
        } else {
            i += rows.len();
            results.extend(insert_run(conn, &rows).await?);
        }
    }
    Ok(results)
}

/// Insert consecutive jobs, each as if alone and in order: first the key/value claims of all of
/// them — one multi-row upsert when each claims at most one key (a key claimed by an earlier
/// insert of the run is held for the later ones), else insert by insert —, then the jobs whose
/// claims were made. Consecutive jobs without a concurrency key are combined into multi-row
/// INSERTs of 2, 4, ... 64 rows (one statement instead of one per job). If such a statement
/// fails for a command-local reason (a duplicate), SQLite backs out the whole statement and its
/// rows are inserted one by one, so each caller gets its own outcome.
async fn insert_run(
    conn: &mut SqliteConnection,
    rows: &[&InsertRow],
) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
    let mut outcomes: Vec<Option<Result<Reply, StoreError>>> =
        (0..rows.len()).map(|_| None).collect();
    // For an insert refused a key that an earlier insert of the run claimed: that one's position.
    let mut claimed_before: Vec<Option<usize>> = vec![None; rows.len()];
    if rows.iter().all(|r| r.claims.len() <= 1) {
        let mut first = HashMap::new();
        let mut claims = Vec::new();
        let mut owners = Vec::new();
        for (j, row) in rows.iter().enumerate() {
            if let Some(c) = row.claims.first() {
                match first.entry((c.ns.as_str(), c.key.as_str())) {
                    Entry::Occupied(o) => {
                        claimed_before[j] = Some(*o.get());
                        outcomes[j] = Some(taken(row, 0));
                    }
                    Entry::Vacant(v) => {
                        v.insert(j);
                        claims.push(c);
                        owners.push(j);
                    }
                }
            }
        }
        if !claims.is_empty() {
            let now = rows.iter().map(|r| r.now).max().unwrap_or_default();
            let made = claim_keys(conn, &claims, now).await?;
            for (j, made) in owners.into_iter().zip(made) {
                if !made {
                    outcomes[j] = Some(taken(rows[j], 0));
                }
            }
        }
    } else {
        let mut made_by = HashMap::new();
        for (j, row) in rows.iter().enumerate() {
            match claim_row(conn, row).await? {
                None => {
                    for c in &row.claims {
                        made_by.insert((c.ns.as_str(), c.key.as_str()), j);
                    }
                }
                Some(index) => {
                    let c = &row.claims[index];
                    claimed_before[j] = made_by.get(&(c.ns.as_str(), c.key.as_str())).copied();
                    outcomes[j] = Some(taken(row, index));
                }
            }
        }
    }
    let pending: Vec<usize> = (0..rows.len()).filter(|&j| outcomes[j].is_none()).collect();
    let mut p = 0;
    while p < pending.len() {
        let run = pending[p..]
            .iter()
            .take(MULTI_INSERT_MAX)
            .take_while(|&&j| rows[j].concurrency_key.is_none())
            .count();
        // Largest power of two that fits, so only a handful of distinct statements exist.
        let chunk = if run >= 2 { 1usize << run.ilog2() } else { 1 };
        let part = &pending[p..p + chunk];
        p += chunk;
        if chunk >= 2 {
            let many: Vec<&InsertRow> = part.iter().map(|&j| rows[j]).collect();
            match insert_many(conn, &many).await {
                Ok(()) => {
                    for &j in part {
                        outcomes[j] = Some(Ok(Reply::Insert(InsertOutcome::Created)));
                    }
                    continue;
                }
                Err(e) if !e.is_command_local() => return Err(e),
                Err(_) => {}
            }
        }
        for &j in part {
            outcomes[j] = Some(insert_one(conn, rows[j]).await?);
        }
    }
    // Rare: an insert that made a claim failed (and released it), so the later inserts of the
    // run refused that key were refused too early. Give them their turn, in order.
    for j in 0..rows.len() {
        if let Some(owner) = claimed_before[j] {
            if matches!(outcomes[owner], Some(Err(_))) {
                outcomes[j] = Some(match claim_row(conn, rows[j]).await? {
                    None => insert_one(conn, rows[j]).await?,
                    Some(index) => taken(rows[j], index),
                });
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Err(StoreError::Corrupt("a job insert got no outcome".into())))
        })
        .collect())
}

/// The answer to an insert refused its claim `index`.
fn taken(row: &InsertRow, index: usize) -> Result<Reply, StoreError> {
    Ok(Reply::Insert(InsertOutcome::ClaimTaken {
        index,
        key: row.claims[index].key.clone(),
    }))
}

/// Make all claims of one insert, or none: returns the position of the first key that is held.
async fn claim_row(
    conn: &mut SqliteConnection,
    row: &InsertRow,
) -> Result<Option<usize>, StoreError> {
    let claims: Vec<&ClaimRow> = row.claims.iter().collect();
    let made = claim_keys(conn, &claims, row.now).await?;
    let Some(index) = made.iter().position(|m| !m) else {
        return Ok(None);
    };
    let held: Vec<&ClaimRow> = claims
        .into_iter()
        .zip(&made)
        .filter_map(|(c, m)| m.then_some(c))
        .collect();
    release_claims(conn, &held).await?;
    Ok(Some(index))
}

/// Insert one job whose claims are made; if that fails for a command-local reason, delete the
/// claims again.
async fn insert_one(conn: &mut SqliteConnection, row: &InsertRow) -> Outcome {
    match insert(conn, row).await {
        Ok(outcome) => Ok(Ok(Reply::Insert(outcome))),
        Err(e) if !e.is_command_local() => Err(e),
        Err(e) => {
            let claims: Vec<&ClaimRow> = row.claims.iter().collect();
            release_claims(conn, &claims).await?;
            Ok(Err(e))
        }
    }
}

/// The multi-row claim statement for `n` keys: written where absent or expired; `RETURNING`
/// names the keys written.
fn claim_sql(n: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=MULTI_INSERT_MAX.ilog2())
            .map(|p| {
                format!(
                    "INSERT INTO kv (ns, key, value, expires_at) VALUES {} \
                     ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, \
                     expires_at = excluded.expires_at \
                     WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ? RETURNING ns, key",
                    vec!["(?, ?, ?, ?)"; 1 << p].join(", ")
                )
            })
            .collect()
    });
    all.get(n.ilog2() as usize).map_or("", String::as_str)
}

/// Write each key that is absent or expired at `now` (a key listed twice is claimed once, and
/// both get its result). Returns, per claim, whether it was written.
async fn claim_keys(
    conn: &mut SqliteConnection,
    claims: &[&ClaimRow],
    now: i64,
) -> Result<Vec<bool>, StoreError> {
    let mut position: HashMap<(&str, &str), usize> = HashMap::with_capacity(claims.len());
    let mut unique: Vec<&ClaimRow> = Vec::with_capacity(claims.len());
    let mut slots = Vec::with_capacity(claims.len());
    for c in claims {
        let slot = *position
            .entry((c.ns.as_str(), c.key.as_str()))
            .or_insert_with(|| {
                unique.push(c);
                unique.len() - 1
            });
        slots.push(slot);
    }
    let mut made = vec![false; unique.len()];
    let mut done = 0;
    while done < unique.len() {
        let chunk = (1usize << (unique.len() - done).ilog2()).min(MULTI_INSERT_MAX);
        let mut q = sqlx::query_as::<_, (String, String)>(claim_sql(chunk));
        for c in &unique[done..done + chunk] {
            q = q.bind(&c.ns).bind(&c.key).bind(&c.value).bind(c.expires_at);
        }
        for (ns, key) in q.bind(now).fetch_all(&mut *conn).await? {
            if let Some(&u) = position.get(&(ns.as_str(), key.as_str())) {
                made[u] = true;
            }
        }
        done += chunk;
    }
    Ok(slots.into_iter().map(|u| made[u]).collect())
}

/// Delete claims made in this transaction (their job was not stored).
async fn release_claims(
    conn: &mut SqliteConnection,
    claims: &[&ClaimRow],
) -> Result<(), StoreError> {
    for c in claims {
        sqlx::query("DELETE FROM kv WHERE ns = ?1 AND key = ?2")
            .bind(&c.ns)
            .bind(&c.key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Execute one command; `Err` only for errors that are not local to the command.
async fn exec_local(
    conn: &mut SqliteConnection,
    op: &Op,
) -> Result<Result<Reply, StoreError>, StoreError> {
    match exec_op(conn, op).await {
        Err(e) if !e.is_command_local() => Err(e),
        r => Ok(r),
    }
}

/// The multi-row INSERT statement for `n` jobs without a concurrency key.
fn multi_insert_sql(n: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=MULTI_INSERT_MAX.ilog2())
            .map(|p| {
                let rows = vec!["(?, ?, ?, 'queued', ?, ?, NULL, ?, ?, 0, 0, ?, ?, ?, ?)"; 1 << p];
                format!(
                    "INSERT INTO jobs (id, solution, runbook, status, trigger_output, context_id, \
                     concurrency_key, dedup_key, state, attempts, blocked, created_at, updated_at, \
                     solution_version, test) \
                     VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    all.get(n.ilog2() as usize).map_or("", String::as_str)
}

async fn insert_many(conn: &mut SqliteConnection, rows: &[&InsertRow]) -> Result<(), StoreError> {
    let mut q = sqlx::query(multi_insert_sql(rows.len()));
    for r in rows {
        q = q
            .bind(r.id)
            .bind(&r.solution)
            .bind(&r.runbook)
            .bind(&r.trigger_output)
            .bind(&r.context_id)
            .bind(&r.dedup_key)
            .bind(&r.state)
            .bind(r.now)
            .bind(r.now)
            .bind(&r.solution_version)
            .bind(r.test);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Run one command on its own. Every command but a job insert with claims performs a single
/// writing statement, so it runs in autocommit mode: the statement is its own (durable,
/// atomic) transaction. A job insert with claims runs in an explicit transaction.
async fn run_single(conn: &mut SqliteConnection, op: &Op) -> Result<Reply, StoreError> {
    match op {
        Op::Insert(row) if !row.claims.is_empty() => run_isolated(conn, op).await,
        _ => exec_op(conn, op).await,
    }
}

/// Run one command in an explicit transaction. Used after a failed batch: should the failed
/// batch have left a transaction open, BEGIN fails and the caller gets an error instead of a
/// success that was never committed.
async fn run_isolated(conn: &mut SqliteConnection, op: &Op) -> Result<Reply, StoreError> {
    exec_sql(conn, "BEGIN IMMEDIATE").await?;
    match exec_op(conn, op).await {
        Ok(reply) => match exec_sql(conn, "COMMIT").await {
            Ok(()) => Ok(reply),
            Err(e) => {
                let _ = exec_sql(conn, "ROLLBACK").await;
                Err(e)
            }
        },
        Err(e) => {
            let _ = exec_sql(conn, "ROLLBACK").await;
            Err(e)
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

/// Execute one command (inside the batch transaction, or alone in autocommit mode).
async fn exec_op(conn: &mut SqliteConnection, op: &Op) -> Result<Reply, StoreError> {
    match op {
        Op::Insert(row) => insert_run(conn, &[row])
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("a job insert got no outcome".into()))),
        Op::Claim {
            worker,
            now,
            lease_until,
        } => claim(conn, worker, *now, *lease_until)
            .await
            .map(|job| Reply::Claim(job.map(Box::new))),
        Op::Checkpoint(cp) => checkpoint(conn, cp).await.map(|()| Reply::Unit),
        Op::Recover { now } => {
            let res = sqlx::query(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
                 updated_at = ?1 WHERE status = 'running'",
            )
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Count(res.rows_affected()))
        }
        Op::Requeue { id, state, now } => {
            requeue(conn, *id, state, *now).await.map(|()| Reply::Unit)
        }
        Op::KvPut {
            ns,
            key,
            value,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO kv (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )
            .bind(ns)
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Unit)
        }
        Op::KvPutNew {
            ns,
            key,
            value,
            now,
            expires_at,
        } => {
            let res = sqlx::query(
                "INSERT INTO kv (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at \
                 WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?5",
            )
            .bind(ns)
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Bool(res.rows_affected() > 0))
        }
        Op::KvDelete { ns, key } => {
            sqlx::query("DELETE FROM kv WHERE ns = ?1 AND key = ?2")
                .bind(ns)
                .bind(key)
                .execute(&mut *conn)
                .await?;
            Ok(Reply::Unit)
        }
        Op::LockAcquire {
            key,
            token,
            now,
            expires_at,
        } => {
            let res = sqlx::query(
                "INSERT INTO locks (key, token, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at \
                 WHERE locks.expires_at <= ?4 OR locks.token = excluded.token",
            )
            .bind(key)
            .bind(token)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Bool(res.rows_affected() > 0))
        }
        Op::RenewLease {
            id,
            worker,
            lease_until,
        } => {
            let res = sqlx::query(
                "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND status = 'running' AND lease_owner = ?2",
            )
            .bind(id)
            .bind(worker)
            .bind(lease_until)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Bool(res.rows_affected() > 0))
        }
        Op::PurgeFinished { before, limit } => {
            // Steps go with their job (ON DELETE CASCADE).
            let res = sqlx::query(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_finished \
                 WHERE status IN ('finished', 'failed') AND finished_at < ?1 \
                 ORDER BY finished_at LIMIT ?2)",
            )
            .bind(before)
            .bind(limit)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Count(res.rows_affected()))
        }
        Op::Purge { now } => {
            let kv =
                sqlx::query("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1")
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            let locks = sqlx::query("DELETE FROM locks WHERE expires_at <= ?1")
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(Reply::Count(kv.rows_affected() + locks.rows_affected()))
        }
        Op::LockRelease { key, token } => {
            let res = sqlx::query("DELETE FROM locks WHERE key = ?1 AND token = ?2")
                .bind(key)
                .bind(token)
                .execute(&mut *conn)
                .await?;
            Ok(Reply::Bool(res.rows_affected() > 0))
        }
    }
}

/// Insert one job; `blocked` is set when an active job holds its concurrency key
/// (index `jobs_key_active`).
const INSERT_SQL: &str = "INSERT INTO jobs (id, solution, runbook, status, trigger_output, context_id, concurrency_key, \
         dedup_key, state, attempts, blocked, created_at, updated_at, solution_version, test) \
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, 0, \
         CASE WHEN ?6 IS NULL THEN 0 ELSE EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_key_active \
         WHERE concurrency_key = ?6 \
         AND blocked = 0 AND status IN ('queued', 'running', 'waiting')) END, ?9, ?9, ?10, ?11)";

async fn insert(conn: &mut SqliteConnection, row: &InsertRow) -> Result<InsertOutcome, StoreError> {
    let res = sqlx::query(INSERT_SQL)
        .bind(row.id)
        .bind(&row.solution)
        .bind(&row.runbook)
        .bind(&row.trigger_output)
        .bind(&row.context_id)
        .bind(&row.concurrency_key)
        .bind(&row.dedup_key)
        .bind(&row.state)
        .bind(row.now)
        .bind(&row.solution_version)
        .bind(row.test)
        .execute(&mut *conn)
        .await;
    match res {
        Ok(_) => Ok(InsertOutcome::Created),
        Err(e) if is_unique_violation(&e) => {
            if let Some(dedup) = &row.dedup_key {
                let existing: Option<JobId> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE solution = ?1 AND runbook = ?2 AND dedup_key = ?3",
                )
                .bind(&row.solution)
                .bind(&row.runbook)
                .bind(dedup)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(existing) = existing {
                    return Ok(InsertOutcome::Duplicate { existing });
                }
            }
            Err(StoreError::Conflict(format!(
                "job {} already exists",
                row.id
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Claim: a due Waiting job (earliest first), else a Running job whose lease expired (its
/// worker or node is gone or stalled; earliest expiry first), else the oldest Queued job that
/// holds or needs no concurrency key. Each sub-select is served by a partial index
/// (`jobs_waiting`, `jobs_running`, `jobs_ready`). A re-claimed Running job keeps its state and
/// its concurrency key; the new lease owner replaces the old one, whose renewals then fail.
const CLAIM_SQL: &str = concat!(
    "UPDATE jobs SET status = 'running', lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, \
     started_at = COALESCE(started_at, ?3), updated_at = ?3, next_run_at = NULL \
     WHERE seq = COALESCE( \
       (SELECT seq FROM jobs INDEXED BY jobs_waiting WHERE status = 'waiting' AND next_run_at <= ?3 \
        ORDER BY next_run_at LIMIT 1), \
       (SELECT seq FROM jobs INDEXED BY jobs_running WHERE status = 'running' AND lease_until < ?3 \
        ORDER BY lease_until LIMIT 1), \
       (SELECT seq FROM jobs INDEXED BY jobs_ready WHERE status = 'queued' AND blocked = 0 \
        ORDER BY seq LIMIT 1)) \
     RETURNING ",
    job_cols!()
);

async fn claim(
    conn: &mut SqliteConnection,
    worker: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<JobRecord>, StoreError> {
    let row = sqlx::query(CLAIM_SQL)
        .bind(worker)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(job_from_row).transpose()
}

/// Message raised by the checkpoint trigger for an unknown job.
const JOB_NOT_FOUND: &str = "ferry: job not found";
/// Message raised by the checkpoint trigger when the writer no longer holds the job's lease.
const LEASE_LOST: &str = "ferry: lease lost";

async fn checkpoint(conn: &mut SqliteConnection, cp: &CheckpointRow) -> Result<(), StoreError> {
    // One statement (see the `job_checkpoint` view and its trigger in the migrations).
    let step = cp.step.as_ref();
    let res = sqlx::query(
        "INSERT INTO job_checkpoint (job_id, state, status, error, now, next_run_at, terminal, \
         has_step, step_id, invocation, step_status, input, outputs, logs, step_error, started_at, \
         finished_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(cp.job_id)
    .bind(&cp.state)
    .bind(cp.status)
    .bind(&cp.error)
    .bind(cp.now)
    .bind(cp.next_run_at)
    .bind(cp.terminal)
    .bind(step.is_some())
    .bind(step.map(|s| s.step_id.as_str()))
    .bind(step.map(|s| s.invocation))
    .bind(step.map(|s| s.status))
    .bind(step.map(|s| s.input.as_str()))
    .bind(step.map(|s| s.outputs.as_str()))
    .bind(step.map(|s| s.logs.as_str()))
    .bind(step.and_then(|s| s.error.as_deref()))
    .bind(step.map(|s| s.started_at))
    .bind(step.map(|s| s.finished_at))
    .bind(cp.owner.as_deref())
    .execute(&mut *conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.message().contains(JOB_NOT_FOUND)) =>
        {
            Err(StoreError::NotFound)
        }
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.message().contains(LEASE_LOST)) =>
        {
            Err(StoreError::LeaseLost)
        }
        Err(e) => Err(e.into()),
    }
}

async fn requeue(
    conn: &mut SqliteConnection,
    id: JobId,
    state: &str,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "UPDATE jobs SET status = 'queued', state = ?2, error = NULL, started_at = NULL, \
         finished_at = NULL, next_run_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?3, \
         blocked = CASE WHEN concurrency_key IS NULL THEN 0 ELSE EXISTS (SELECT 1 FROM jobs k \
           WHERE k.concurrency_key = jobs.concurrency_key AND k.seq <> jobs.seq AND k.blocked = 0 \
           AND k.status IN ('queued', 'running', 'waiting')) END \
         WHERE id = ?1 AND status = 'failed'";
    let res = sqlx::query(sql)
        .bind(id)
        .bind(state)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if res.rows_affected() > 0 {
        return Ok(());
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match status {
        None => Err(StoreError::NotFound),
        Some(s) => Err(StoreError::Conflict(format!(
            "job {id} is {s}, only failed jobs can be re-run"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    /// The query plan of a statement, one detail line per row.
    async fn plan(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
        sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.3)
            .collect()
    }

    /// The hot statements must never scan the jobs table (claim stays O(log n) with 100,000
    /// queued jobs).
    #[tokio::test]
    async fn hot_statements_use_indexes() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::migrate!().run(&mut conn).await.unwrap();
        let claim = plan(&mut conn, super::CLAIM_SQL).await;
        assert!(
            claim.iter().any(|l| l.contains("jobs_waiting")),
            "{claim:?}"
        );
        assert!(claim.iter().any(|l| l.contains("jobs_ready")), "{claim:?}");
        assert!(
            claim.iter().any(|l| l.contains("jobs_running")),
            "{claim:?}"
        );
        let insert = plan(&mut conn, super::INSERT_SQL).await;
        assert!(
            insert.iter().any(|l| l.contains("jobs_key_active")),
            "{insert:?}"
        );
        for (name, lines) in [("claim", &claim), ("insert", &insert)] {
            // A full table scan or a sort would be O(n); walking a partial index in order for
            // LIMIT 1 is fine.
            assert!(
                !lines
                    .iter()
                    .any(|l| l == "SCAN jobs" || l.contains("TEMP B-TREE")),
                "{name}: {lines:?}"
            );
        }
        // The key hand-over done by the checkpoint trigger.
        let release = plan(
            &mut conn,
            "SELECT b.seq FROM jobs AS b INDEXED BY jobs_key_blocked WHERE b.concurrency_key = 'k' \
             AND b.blocked = 1 AND b.status = 'queued' ORDER BY b.seq LIMIT 1",
        )
        .await;
        assert!(
            release.iter().all(|l| !l.contains("TEMP B-TREE")),
            "{release:?}"
        );
        let wake = plan(&mut conn, super::super::NEXT_WAKEUP_SQL).await;
        assert!(wake.iter().any(|l| l.contains("jobs_waiting")), "{wake:?}");
    }
}
