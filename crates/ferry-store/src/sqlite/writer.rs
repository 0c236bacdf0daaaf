//! The group-commit writer: one thread owns the write connection and runs every queued write
//! command of a batch in one transaction.
//!
//! The writer is a plain OS thread that drives SQLite synchronously (rusqlite, over the same
//! `libsqlite3-sys` build as sqlx's read pool): a command costs one hand-off from the caller's
//! task to the thread and one back, not one per statement as with an async driver that runs
//! its own worker thread behind each connection. Statements are prepared once and cached.
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

use rusqlite::types::ToSql;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::rows::{job_cols, job_from};
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

/// A message to the writer thread.
// Commands are the hot path and Shutdown happens once: boxing commands would cost more.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Cmd(Op, ReplyTx),
    /// Finish the queued commands, close the connection, then acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// Counters kept by the writer thread.
#[derive(Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub largest: AtomicU64,
    /// Set by the checkpointer when the WAL is large: the writer then restarts it.
    pub restart_wal: AtomicBool,
}

/// How the write connection is opened.
pub(crate) struct WriterConfig {
    pub path: std::path::PathBuf,
    pub sync_full: bool,
    pub busy_timeout: std::time::Duration,
    pub autocheckpoint_pages: u32,
}

/// Statements kept prepared (the handful of fixed ones plus the multi-row variants).
const STATEMENT_CACHE: usize = 64;

/// Open the write connection with the store's settings (the database exists and is migrated).
pub(crate) fn open(cfg: &WriterConfig) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        &cfg.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(cfg.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "the database could not be put into WAL mode (journal mode {journal})"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = {};",
        if cfg.sync_full { "FULL" } else { "NORMAL" },
        cfg.autocheckpoint_pages
    ))?;
    Ok(conn)
}

/// Under concurrent load (the previous batch held at least [`LINGER_FROM`] commands) the writer
/// waits up to this long for a batch as large as the previous one before it commits: every
/// transaction rewrites the pages that all inserts append to (the jobs table and its
/// time-ordered indexes), so a batch of thirty costs far less per command than ten batches of
/// three. A lone caller (a job's checkpoints one after the other) never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
/// The smallest previous batch that makes the writer wait for more (see [`LINGER`]).
/// Two: a fast writer keeps batches small (about three at 32 callers), so a higher threshold
/// would never be reached once the batches are small.
const LINGER_FROM: usize = 2;
/// How long the writer sleeps between two looks at the queue while it lingers.
const LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(50);

/// The writer thread's body: batches of queued commands, each batch in one transaction, until
/// the queue is closed or a shutdown is asked for.
pub(crate) fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let max_batch = max_batch.max(1);
    let mut batch: Vec<(Op, ReplyTx)> = Vec::with_capacity(max_batch);
    // Size of the previous batch: many commands mean many concurrent callers.
    let mut previous = 0usize;
    loop {
        let mut shutdown = None;
        match rx.blocking_recv() {
            None => break,
            Some(Msg::Shutdown(ack)) => shutdown = Some(ack),
            Some(Msg::Cmd(op, tx)) => {
                batch.push((op, tx));
                let linger = (previous >= LINGER_FROM).then(|| std::time::Instant::now() + LINGER);
                'gather: loop {
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(Msg::Cmd(op, tx)) => batch.push((op, tx)),
                            Ok(Msg::Shutdown(ack)) => {
                                shutdown = Some(ack);
                                break 'gather;
                            }
                            Err(_) => break,
                        }
                    }
                    match linger {
                        Some(until)
                            if batch.len() < previous.min(max_batch)
                                && std::time::Instant::now() < until =>
                        {
                            std::thread::sleep(LINGER_STEP);
                        }
                        _ => break,
                    }
                }
            }
        }
        previous = batch.len();
        if !batch.is_empty() {
            let n = batch.len() as u64;
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.commands.fetch_add(n, Ordering::Relaxed);
            counters.largest.fetch_max(n, Ordering::Relaxed);
            run_batch(&conn, &mut batch);
            if counters.restart_wal.swap(false, Ordering::Relaxed) {
                let t = std::time::Instant::now();
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL restart checkpoint failed");
                }
                tracing::debug!(took = ?t.elapsed(), "WAL restarted");
            }
        }
        if let Some(ack) = shutdown {
            // Refuse whatever arrived after the shutdown request.
            rx.close();
            while let Some(msg) = rx.blocking_recv() {
                if let Msg::Cmd(_, tx) = msg {
                    let _ = tx.send(Err(StoreError::Closed));
                }
            }
            close(conn);
            let _ = ack.send(());
            return;
        }
    }
    close(conn);
}

fn close(conn: Connection) {
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the store's write connection failed");
    }
}

/// Run a statement that returns no rows (prepared once).
fn exec_sql(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Run a batch in one transaction and answer every caller.
fn run_batch(conn: &Connection, batch: &mut Vec<(Op, ReplyTx)>) {
    if batch.len() == 1 {
        if let Some((op, tx)) = batch.pop() {
            let res = run_single(conn, &op);
            let _ = tx.send(res);
        }
        return;
    }
    tracing::trace!(size = batch.len(), "group commit");
    let mut results: Vec<Result<Reply, StoreError>> = Vec::new();
    let mut broken: Option<StoreError> = None;
    match exec_sql(conn, "BEGIN IMMEDIATE") {
        Err(e) => broken = Some(e),
        Ok(()) => {
            match exec_all(conn, batch) {
                Ok(r) => results = r,
                Err(e) => broken = Some(e),
            }
            if broken.is_none() {
                if let Err(e) = exec_sql(conn, "COMMIT") {
                    broken = Some(e);
                }
            }
            if broken.is_some() {
                let _ = exec_sql(conn, "ROLLBACK");
            }
        }
    }
    if let Some(e) = broken {
        tracing::warn!(error = %e, size = batch.len(), "group commit failed; retrying each command alone");
        for (op, tx) in batch.drain(..) {
            let res = run_isolated(conn, &op);
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
fn exec_all(
    conn: &Connection,
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
            results.push(exec_local(conn, &batch[i].0)?);
            i += 1;
        } else {
            i += rows.len();
            results.extend(insert_run(conn, &rows)?);
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
fn insert_run(
    conn: &Connection,
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
            let made = claim_keys(conn, &claims, now)?;
            for (j, made) in owners.into_iter().zip(made) {
                if !made {
                    outcomes[j] = Some(taken(rows[j], 0));
                }
            }
        }
    } else {
        let mut made_by = HashMap::new();
        for (j, row) in rows.iter().enumerate() {
            match claim_row(conn, row)? {
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
            match insert_many(conn, &many) {
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
            outcomes[j] = Some(insert_one(conn, rows[j])?);
        }
    }
    // Rare: an insert that made a claim failed (and released it), so the later inserts of the
    // run refused that key were refused too early. Give them their turn, in order.
    for j in 0..rows.len() {
        if let Some(owner) = claimed_before[j] {
            if matches!(outcomes[owner], Some(Err(_))) {
                outcomes[j] = Some(match claim_row(conn, rows[j])? {
                    None => insert_one(conn, rows[j])?,
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
fn claim_row(conn: &Connection, row: &InsertRow) -> Result<Option<usize>, StoreError> {
    let claims: Vec<&ClaimRow> = row.claims.iter().collect();
    let made = claim_keys(conn, &claims, row.now)?;
    let Some(index) = made.iter().position(|m| !m) else {
        return Ok(None);
    };
    let held: Vec<&ClaimRow> = claims
        .into_iter()
        .zip(&made)
        .filter_map(|(c, m)| m.then_some(c))
        .collect();
    release_claims(conn, &held)?;
    Ok(Some(index))
}

/// Insert one job whose claims are made; if that fails for a command-local reason, delete the
/// claims again.
fn insert_one(conn: &Connection, row: &InsertRow) -> Outcome {
    match insert(conn, row) {
        Ok(outcome) => Ok(Ok(Reply::Insert(outcome))),
        Err(e) if !e.is_command_local() => Err(e),
        Err(e) => {
            let claims: Vec<&ClaimRow> = row.claims.iter().collect();
            release_claims(conn, &claims)?;
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
fn claim_keys(conn: &Connection, claims: &[&ClaimRow], now: i64) -> Result<Vec<bool>, StoreError> {
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
        let mut stmt = conn.prepare_cached(claim_sql(chunk))?;
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk * 4 + 1);
        for c in &unique[done..done + chunk] {
            params.extend([&c.ns as &dyn ToSql, &c.key, &c.value, &c.expires_at]);
        }
        params.push(&now);
        let mut rows = stmt.query(&*params)?;
        while let Some(row) = rows.next()? {
            let ns = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let key = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            if let Some(&u) = position.get(&(ns, key)) {
                made[u] = true;
            }
        }
        done += chunk;
    }
    Ok(slots.into_iter().map(|u| made[u]).collect())
}

/// Delete claims made in this transaction (their job was not stored).
fn release_claims(conn: &Connection, claims: &[&ClaimRow]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("DELETE FROM kv WHERE ns = ?1 AND key = ?2")?;
    for c in claims {
        stmt.execute((&c.ns, &c.key))?;
    }
    Ok(())
}

fn insert_many(conn: &Connection, rows: &[&InsertRow]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(multi_insert_sql(rows.len()))?;
    let mut params: Vec<&dyn ToSql> = Vec::with_capacity(rows.len() * 11);
    for r in rows {
        params.extend([
            &r.id as &dyn ToSql,
            &r.solution,
            &r.runbook,
            &r.trigger_output,
            &r.context_id,
            &r.dedup_key,
            &r.state,
            &r.now,
            &r.now,
            &r.solution_version,
            &r.test,
        ]);
    }
    stmt.execute(&*params)?;
    Ok(())
}

/// Run one writing statement; the number of rows it changed.
fn exec_count<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<u64, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params)? as u64)
}

/// Execute one command (inside the batch transaction, or alone in autocommit mode).
fn exec_op(conn: &Connection, op: &Op) -> Result<Reply, StoreError> {
    match op {
        Op::Insert(row) => insert_run(conn, &[row])?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("a job insert got no outcome".into()))),
        Op::Claim {
            worker,
            now,
            lease_until,
        } => claim(conn, worker, *now, *lease_until).map(|job| Reply::Claim(job.map(Box::new))),
        Op::Checkpoint(cp) => checkpoint(conn, cp).map(|()| Reply::Unit),
        Op::Recover { now } => exec_count(
            conn,
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
             updated_at = ?1 WHERE status = 'running'",
            [now],
        )
        .map(Reply::Count),
        Op::Requeue { id, state, now } => requeue(conn, *id, state, *now).map(|()| Reply::Unit),
        Op::KvPut {
            ns,
            key,
            value,
            expires_at,
        } => exec_count(
            conn,
            "INSERT INTO kv (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (ns, key, value, expires_at),
        )
        .map(|_| Reply::Unit),
        Op::KvPutNew {
            ns,
            key,
            value,
            now,
            expires_at,
        } => exec_count(
            conn,
            "INSERT INTO kv (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at \
             WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?5",
            (ns, key, value, expires_at, now),
        )
        .map(|n| Reply::Bool(n > 0)),
        Op::KvDelete { ns, key } => exec_count(
            conn,
            "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
            (ns, key),
        )
        .map(|_| Reply::Unit),
        Op::LockAcquire {
            key,
            token,
            now,
            expires_at,
        } => exec_count(
            conn,
            "INSERT INTO locks (key, token, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at \
             WHERE locks.expires_at <= ?4 OR locks.token = excluded.token",
            (key, token, expires_at, now),
        )
        .map(|n| Reply::Bool(n > 0)),
        Op::RenewLease {
            id,
            worker,
            lease_until,
        } => exec_count(
            conn,
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND status = 'running' AND lease_owner = ?2",
            (id, worker, lease_until),
        )
        .map(|n| Reply::Bool(n > 0)),
        // Steps go with their job (ON DELETE CASCADE).
        Op::PurgeFinished { before, limit } => exec_count(
            conn,
            "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_finished \
             WHERE status IN ('finished', 'failed') AND finished_at < ?1 \
             ORDER BY finished_at LIMIT ?2)",
            (before, limit),
        )
        .map(Reply::Count),
        Op::Purge { now } => {
            let kv = exec_count(
                conn,
                "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )?;
            let locks = exec_count(conn, "DELETE FROM locks WHERE expires_at <= ?1", [now])?;
            Ok(Reply::Count(kv + locks))
        }
        Op::LockRelease { key, token } => exec_count(
            conn,
            "DELETE FROM locks WHERE key = ?1 AND token = ?2",
            (key, token),
        )
        .map(|n| Reply::Bool(n > 0)),
    }
}

/// Execute one command; `Err` only for errors that are not local to the command.
fn exec_local(conn: &Connection, op: &Op) -> Result<Result<Reply, StoreError>, StoreError> {
    match exec_op(conn, op) {
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

/// Run one command on its own. Every command but a job insert with claims performs a single
/// writing statement, so it runs in autocommit mode: the statement is its own (durable,
/// atomic) transaction. A job insert with claims runs in an explicit transaction.
fn run_single(conn: &Connection, op: &Op) -> Result<Reply, StoreError> {
    match op {
        Op::Insert(row) if !row.claims.is_empty() => run_isolated(conn, op),
        _ => exec_op(conn, op),
    }
}

/// Run one command in an explicit transaction. Used after a failed batch: should the failed
/// batch have left a transaction open, BEGIN fails and the caller gets an error instead of a
/// success that was never committed.
fn run_isolated(conn: &Connection, op: &Op) -> Result<Reply, StoreError> {
    exec_sql(conn, "BEGIN IMMEDIATE")?;
    match exec_op(conn, op) {
        Ok(reply) => match exec_sql(conn, "COMMIT") {
            Ok(()) => Ok(reply),
            Err(e) => {
                let _ = exec_sql(conn, "ROLLBACK");
                Err(e)
            }
        },
        Err(e) => {
            let _ = exec_sql(conn, "ROLLBACK");
            Err(e)
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

fn insert(conn: &Connection, row: &InsertRow) -> Result<InsertOutcome, StoreError> {
    let res = conn.prepare_cached(INSERT_SQL)?.execute((
        &row.id,
        &row.solution,
        &row.runbook,
        &row.trigger_output,
        &row.context_id,
        &row.concurrency_key,
        &row.dedup_key,
        &row.state,
        &row.now,
        &row.solution_version,
        &row.test,
    ));
    match res {
        Ok(_) => Ok(InsertOutcome::Created),
        Err(e) if is_unique_violation(&e) => {
            if let Some(dedup) = &row.dedup_key {
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM jobs WHERE solution = ?1 AND runbook = ?2 AND dedup_key = ?3",
                )?;
                let mut rows = stmt.query((&row.solution, &row.runbook, dedup))?;
                if let Some(r) = rows.next()? {
                    return Ok(InsertOutcome::Duplicate {
                        existing: r.get(0)?,
                    });
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

/// True for a UNIQUE or PRIMARY KEY constraint violation.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error().map(|f| f.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
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

fn claim(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<JobRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(CLAIM_SQL)?;
    let mut rows = stmt.query((worker, lease_until, now))?;
    match rows.next()? {
        Some(row) => job_from(row).map(Some),
        None => Ok(None),
    }
}

/// Message raised by the checkpoint trigger for an unknown job.
const JOB_NOT_FOUND: &str = "ferry: job not found";
/// Message raised by the checkpoint trigger when the writer no longer holds the job's lease.
const LEASE_LOST: &str = "ferry: lease lost";

fn checkpoint(conn: &Connection, cp: &CheckpointRow) -> Result<(), StoreError> {
    // One statement (see the `job_checkpoint` view and its trigger in the migrations).
    let step = cp.step.as_ref();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO job_checkpoint (job_id, state, status, error, now, next_run_at, terminal, \
         has_step, step_id, invocation, step_status, input, outputs, logs, step_error, started_at, \
         finished_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let params: [&dyn ToSql; 18] = [
        &cp.job_id,
        &cp.state,
        &cp.status,
        &cp.error,
        &cp.now,
        &cp.next_run_at,
        &cp.terminal,
        &step.is_some(),
        &step.map(|s| s.step_id.as_str()),
        &step.map(|s| s.invocation),
        &step.map(|s| s.status),
        &step.map(|s| s.input.as_str()),
        &step.map(|s| s.outputs.as_str()),
        &step.map(|s| s.logs.as_str()),
        &step.and_then(|s| s.error.as_deref()),
        &step.map(|s| s.started_at),
        &step.map(|s| s.finished_at),
        &cp.owner.as_deref(),
    ];
    match stmt.execute(params.as_slice()) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains(JOB_NOT_FOUND) => {
            Err(StoreError::NotFound)
        }
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains(LEASE_LOST) => {
            Err(StoreError::LeaseLost)
        }
        Err(e) => Err(e.into()),
    }
}

fn requeue(conn: &Connection, id: JobId, state: &str, now: i64) -> Result<(), StoreError> {
    let sql = "UPDATE jobs SET status = 'queued', state = ?2, error = NULL, started_at = NULL, \
         finished_at = NULL, next_run_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?3, \
         blocked = CASE WHEN concurrency_key IS NULL THEN 0 ELSE EXISTS (SELECT 1 FROM jobs k \
           WHERE k.concurrency_key = jobs.concurrency_key AND k.seq <> jobs.seq AND k.blocked = 0 \
           AND k.status IN ('queued', 'running', 'waiting')) END \
         WHERE id = ?1 AND status = 'failed'";
    if exec_count(conn, sql, (&id, state, now))? > 0 {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached("SELECT status FROM jobs WHERE id = ?1")?;
    let mut rows = stmt.query([&id])?;
    match rows.next()? {
        None => Err(StoreError::NotFound),
        Some(r) => {
            let s: String = r.get(0)?;
            Err(StoreError::Conflict(format!(
                "job {id} is {s}, only failed jobs can be re-run"
            )))
        }
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
