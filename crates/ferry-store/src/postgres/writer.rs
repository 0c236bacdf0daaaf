//! Group commit of job inserts on PostgreSQL.
//!
//! Writer tasks (several, each with a connection of its own, so that one batch is collected
//! while another commits) take whatever inserts are queued (up to `max_batch`), run them in one
//! transaction and answer each caller only after `COMMIT`. In the batch, first the advisory
//! locks of every concurrency key involved are taken, in one statement and in a fixed order
//! (so batches of several nodes never deadlock on them); then the inserts run in arrival
//! order: consecutive jobs without a concurrency key and without key/value claims as one
//! multi-row `INSERT … SELECT FROM UNNEST(…)`, the others one by one (a keyed job must see the
//! holders of its key; a job with claims makes them first, all or none). Every insert is
//! `ON CONFLICT DO NOTHING`, so a duplicate never aborts the transaction: the rows that were
//! not inserted are then told apart (a duplicate event, or an id that exists).
//!
//! A batch that fails as a whole (a deadlock between nodes, a lost connection, a failed
//! COMMIT) is rolled back; after a database error every insert is retried in its own
//! transaction, so each caller gets its own outcome. Without a database every caller gets the
//! error (the server answers 503).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{InsertOutcome, JobId, StoreError};

pub(crate) use crate::encode::{ClaimRow, InsertRow};

pub(crate) type Reply = oneshot::Sender<Result<InsertOutcome, StoreError>>;

/// A message to the writers.
// Inserts are the hot path and Shutdown happens once: boxing inserts would cost more.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Insert(InsertRow, Reply),
    /// Stop taking new inserts; finish the queued ones.
    Shutdown,
}

/// Counters kept by the writers.
#[derive(Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub largest: AtomicU64,
}

/// Largest number of jobs in one multi-row INSERT.
const MULTI_INSERT_MAX: usize = 512;

/// One writer task: takes batches from the shared queue until it is closed and drained.
pub(crate) async fn run(
    pool: PgPool,
    rx: Arc<Mutex<mpsc::Receiver<Msg>>>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let max_batch = max_batch.max(1);
    loop {
        let mut batch: Vec<(InsertRow, Reply)> = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                None => return,
                Some(Msg::Shutdown) => {
                    rx.close();
                    continue;
                }
                Some(Msg::Insert(row, tx)) => batch.push((row, tx)),
            }
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(Msg::Insert(row, tx)) => batch.push((row, tx)),
                    Ok(Msg::Shutdown) => rx.close(),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len() as u64;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.commands.fetch_add(n, Ordering::Relaxed);
        counters.largest.fetch_max(n, Ordering::Relaxed);
        run_batch(&pool, batch).await;
    }
}

async fn run_batch(pool: &PgPool, batch: Vec<(InsertRow, Reply)>) {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "no database connection for a batch of inserts");
            let msg = e.to_string();
            for (_, tx) in batch {
                let _ = tx.send(Err(unavailable(&msg)));
            }
            return;
        }
    };
    let rows: Vec<&InsertRow> = batch.iter().map(|(r, _)| r).collect();
    match in_transaction(&mut conn, &rows).await {
        Ok(outcomes) => {
            for ((_, tx), res) in batch.into_iter().zip(outcomes) {
                let _ = tx.send(res);
            }
        }
        Err(e) if e.as_database_error().is_some() && batch.len() > 1 => {
            tracing::warn!(error = %e, size = batch.len(), "group commit failed; retrying each insert alone");
            for (row, tx) in batch {
                let res = match in_transaction(&mut conn, &[&row]).await {
                    Ok(mut o) => o.pop().unwrap_or_else(|| {
                        Err(StoreError::Corrupt("an insert got no outcome".into()))
                    }),
                    Err(e) => Err(e.into()),
                };
                let _ = tx.send(res);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "a batch of inserts failed");
            let msg = e.to_string();
            for (_, tx) in batch {
                let _ = tx.send(Err(unavailable(&msg)));
            }
        }
    }
}

/// The error every caller of a failed batch gets (the same message, each its own value).
fn unavailable(msg: &str) -> StoreError {
    StoreError::Unavailable(msg.to_string())
}

/// Run the inserts in one transaction; `Err` when the transaction failed as a whole (it is
/// rolled back).
async fn in_transaction(
    conn: &mut PgConnection,
    rows: &[&InsertRow],
) -> Result<Vec<Result<InsertOutcome, StoreError>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let outcomes = insert_all(&mut tx, rows).await?;
    if outcomes
        .iter()
        .any(|o| matches!(o, Ok(InsertOutcome::Created)))
    {
        // Delivered at COMMIT to every node's listener: idle workers wake up.
        sqlx::query("SELECT pg_notify('ferry_jobs', '')")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn insert_all(
    conn: &mut PgConnection,
    rows: &[&InsertRow],
) -> Result<Vec<Result<InsertOutcome, StoreError>>, sqlx::Error> {
    let mut keys: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.concurrency_key.as_deref())
        .collect();
    if !keys.is_empty() {
        keys.sort_unstable();
        keys.dedup();
        // Locked in hash order: the same order on every node.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT ferry_key_lock(k) AS h \
             FROM UNNEST($1::text[]) AS k ORDER BY h) AS s",
        )
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    }
    let mut outcomes: Vec<Option<Result<InsertOutcome, StoreError>>> =
        (0..rows.len()).map(|_| None).collect();
    let mut i = 0;
    while i < rows.len() {
        let simple = rows[i..]
            .iter()
            .take(MULTI_INSERT_MAX)
            .take_while(|r| r.concurrency_key.is_none() && r.claims.is_empty())
            .count();
        if simple >= 2 {
            let part = &rows[i..i + simple];
            let inserted = insert_many(conn, part).await?;
            for (j, row) in part.iter().enumerate() {
                outcomes[i + j] = Some(if inserted.contains(&row.id) {
                    Ok(InsertOutcome::Created)
                } else {
                    not_inserted(conn, row).await?
                });
            }
            i += simple;
        } else {
            outcomes[i] = Some(insert_one(conn, rows[i]).await?);
            i += 1;
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Corrupt("an insert got no outcome".into()))))
        .collect())
}

/// Consecutive jobs without concurrency key or claims, as one statement. Returns the ids
/// inserted.
async fn insert_many(
    conn: &mut PgConnection,
    rows: &[&InsertRow],
) -> Result<std::collections::HashSet<JobId>, sqlx::Error> {
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut solutions = Vec::with_capacity(n);
    let mut runbooks = Vec::with_capacity(n);
    let mut outputs = Vec::with_capacity(n);
    let mut contexts = Vec::with_capacity(n);
    let mut dedups = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut nows = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut tests = Vec::with_capacity(n);
    for r in rows {
        versions.push(r.solution_version.as_deref());
        tests.push(r.test);
        ids.push(r.id);
        solutions.push(r.solution.as_str());
        runbooks.push(r.runbook.as_str());
        outputs.push(r.trigger_output.as_str());
        contexts.push(r.context_id.as_deref());
        dedups.push(r.dedup_key.as_deref());
        states.push(r.state.as_str());
        nows.push(r.now);
    }
    let inserted: Vec<JobId> = sqlx::query_scalar(
        "INSERT INTO jobs (id, solution, runbook, status, trigger_output, context_id, dedup_key, \
         state, created_at, updated_at, solution_version, test) \
         SELECT id, solution, runbook, 'queued', trigger_output, context_id, dedup_key, state, \
         now, now, solution_version, test FROM UNNEST($1::uuid[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::text[], $10::bool[]) \
         WITH ORDINALITY AS t(id, solution, runbook, trigger_output, context_id, dedup_key, state, \
         now, solution_version, test, ord) \
         ORDER BY ord \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&solutions)
    .bind(&runbooks)
    .bind(&outputs)
    .bind(&contexts)
    .bind(&dedups)
    .bind(&states)
    .bind(&nows)
    .bind(&versions)
    .bind(&tests)
    .fetch_all(&mut *conn)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// One job: its claims first (all or none), then the job, whose `blocked` flag says whether
/// an active job holds its concurrency key (the key's advisory lock is held).
async fn insert_one(
    conn: &mut PgConnection,
    row: &InsertRow,
) -> Result<Result<InsertOutcome, StoreError>, sqlx::Error> {
    if !row.claims.is_empty() {
        if let Some(index) = claim_all(conn, row).await? {
            return Ok(Ok(InsertOutcome::ClaimTaken {
                index,
                key: row.claims[index].key.clone(),
            }));
        }
    }
    let inserted: Option<JobId> = sqlx::query_scalar(
        "INSERT INTO jobs (id, solution, runbook, status, trigger_output, context_id, \
         concurrency_key, dedup_key, state, blocked, created_at, updated_at, solution_version, \
         test) \
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, \
         $6::text IS NOT NULL AND EXISTS (SELECT 1 FROM jobs WHERE concurrency_key = $6 \
         AND NOT blocked AND status IN ('queued', 'running', 'waiting')), $9, $9, $10, $11) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
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
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(Ok(InsertOutcome::Created));
    }
    let outcome = not_inserted(conn, row).await?;
    if outcome.is_err() && !row.claims.is_empty() {
        // The job is not stored: neither are its claims.
        release(conn, row.claims.iter()).await?;
    }
    Ok(outcome)
}

/// Why a row was not inserted: a job with its dedup key exists (a duplicate), else its id is
/// taken (a conflict).
async fn not_inserted(
    conn: &mut PgConnection,
    row: &InsertRow,
) -> Result<Result<InsertOutcome, StoreError>, sqlx::Error> {
    if let Some(dedup) = &row.dedup_key {
        let existing: Option<JobId> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE solution = $1 AND runbook = $2 AND dedup_key = $3",
        )
        .bind(&row.solution)
        .bind(&row.runbook)
        .bind(dedup)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(existing) = existing {
            return Ok(Ok(InsertOutcome::Duplicate { existing }));
        }
    }
    Ok(Err(StoreError::Conflict(format!(
        "job {} already exists",
        row.id
    ))))
}

/// Make every claim of `row`, or none: returns the position of the first key that is held.
async fn claim_all(conn: &mut PgConnection, row: &InsertRow) -> Result<Option<usize>, sqlx::Error> {
    let mut made: Vec<&ClaimRow> = Vec::new();
    for (index, c) in row.claims.iter().enumerate() {
        // A key listed twice is held by this very insert.
        let again = made.iter().any(|m| m.ns == c.ns && m.key == c.key);
        if again {
            continue;
        }
        if claim_key(conn, c, row.now).await? {
            made.push(c);
        } else {
            release(conn, made.into_iter()).await?;
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Write a key/value entry where its key is absent or expired at `now`. Returns whether it was
/// written. (Shared with `kv_put_if_absent`.)
pub(crate) async fn claim_key(
    conn: &mut PgConnection,
    c: &ClaimRow,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(KV_PUT_NEW_SQL)
        .bind(&c.ns)
        .bind(&c.key)
        .bind(&c.value)
        .bind(c.expires_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Insert unless a live (unexpired) value exists.
pub(crate) const KV_PUT_NEW_SQL: &str =
    "INSERT INTO kv (ns, key, value, expires_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at \
     WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5";

async fn release<'a>(
    conn: &mut PgConnection,
    claims: impl Iterator<Item = &'a ClaimRow>,
) -> Result<(), sqlx::Error> {
    let (ns, keys): (Vec<&str>, Vec<&str>) =
        claims.map(|c| (c.ns.as_str(), c.key.as_str())).unzip();
    if ns.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM kv WHERE (ns, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))")
        .bind(&ns)
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
