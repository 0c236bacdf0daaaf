//! Workers: claim runnable jobs from the store and run them, renewing each job's lease while it
//! runs.
//!
//! A claimed job is leased to its worker for [`EngineOptions::lease`](crate::EngineOptions).
//! While the job runs, a renewal task extends the lease every third of that period. A job whose
//! lease expires (its worker, or the whole process, stalled or died) is claimed again by any
//! worker and resumes from its last checkpoint. Should a renewal find the lease taken over by
//! another worker (or fail for longer than the lease), the run is abandoned at once — the step in
//! flight is cancelled and nothing more is checkpointed — because the new owner now runs the job.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ferry_store::{JobId, JobRecord, JobStatus, Store};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use crate::engine::Engine;
use crate::executor::{run_job, RunEnd};

/// Run `n` workers until [`Engine::begin_shutdown`] is called. Each finishes (or
/// checkpoints) its current step before returning.
pub async fn run_workers(engine: Arc<Engine>, n: usize) {
    let mut handles = Vec::new();
    // Lease owners must be unique across processes sharing a store, not only within one.
    let run = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..n.max(1) {
        let engine = engine.clone();
        let name = format!("w{i}-{}", &run[..12]);
        handles.push(tokio::spawn(async move { worker(engine, name).await }));
    }
    for h in handles {
        let _ = h.await;
    }
}

async fn worker(engine: Arc<Engine>, name: String) {
    let mut backoff = Duration::from_millis(50);
    while !engine.is_stopping() {
        let claimed = engine
            .store
            .claim_job(&name, Utc::now(), engine.options.lease)
            .await;
        match claimed {
            Ok(Some(job)) => {
                backoff = Duration::from_millis(50);
                // Every log line of the run carries the job's id.
                let span = tracing::info_span!(
                    "job",
                    job = %job.id,
                    solution = %job.solution,
                    runbook = %job.runbook,
                    attempt = job.attempts,
                    worker = %name,
                );
                let end = run_leased(&engine, &name, job).instrument(span).await;
                if end == Some(RunEnd::Interrupted) && engine.is_stopping() {
                    break;
                }
            }
            Ok(None) => {
                let wait = match engine.store.next_wakeup().await {
                    Ok(Some(at)) => (at - Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(Duration::from_secs(1)),
                    _ => Duration::from_secs(1),
                };
                if wait.is_zero() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                // Woken by this process's inserts, by the store when another process made a
                // job runnable (PostgreSQL: LISTEN/NOTIFY), or at the next poll.
                let shared = engine.store.wakeups();
                let from_store = async {
                    match &shared {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = engine.notify.notified() => {}
                    _ = from_store => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "claiming a job failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Run a claimed job while a renewal task keeps its lease. `None` when the lease was lost and
/// the run abandoned.
async fn run_leased(engine: &Arc<Engine>, worker: &str, job: JobRecord) -> Option<RunEnd> {
    let id = job.id;
    let (lost_tx, mut lost_rx) = oneshot::channel();
    let renewer = tokio::spawn(
        renew_lease(
            engine.store.clone(),
            id,
            worker.to_string(),
            engine.options.lease,
            lost_tx,
        )
        .in_current_span(),
    );
    // A job of an older solution version runs on that version (compiled again if needed).
    engine.prepare_job(&job).await;
    let mut env = engine.exec_env();
    env.lease_owner = Some(worker);
    let end = tokio::select! {
        biased;
        end = run_job(&env, job) => Some(end),
        Ok(reason) = &mut lost_rx => {
            tracing::error!(
                reason = %reason,
                "job lease lost: abandoning the run without further checkpoints; \
                 the job resumes from its last checkpoint under its new owner"
            );
            None
        }
    };
    renewer.abort();
    if let Some(end) = &end {
        tracing::debug!(?end, "job run ended");
    }
    end
}

/// Extend the job's lease every third of `lease` until aborted. Sends on `lost` (and ends) when
/// the lease is held by someone else, or when renewals have failed for longer than the lease.
async fn renew_lease(
    store: Arc<dyn Store>,
    id: JobId,
    worker: String,
    lease: Duration,
    lost: oneshot::Sender<String>,
) {
    let every = (lease / 3).max(Duration::from_millis(50));
    // The claim itself leased the job until about now + lease.
    let mut held_until = Instant::now() + lease;
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let asked = Instant::now();
        match store.renew_lease(id, &worker, lease).await {
            Ok(true) => {
                held_until = asked + lease;
                tracing::trace!("lease renewed");
            }
            Ok(false) => {
                // Not (or no longer) Running under this worker. If the executor has already
                // moved the job on (finished, failed, waiting, queued), nothing is lost.
                match store.get_job(id).await {
                    Ok(Some(job)) if job.status != JobStatus::Running => return,
                    Ok(None) => {
                        let _ = lost.send("the job no longer exists".into());
                        return;
                    }
                    Ok(Some(_)) => {
                        let _ = lost.send("another worker has claimed it".into());
                        return;
                    }
                    Err(e) => {
                        let _ =
                            lost.send(format!("renewal refused and the job is unreadable: {e}"));
                        return;
                    }
                }
            }
            Err(e) if Instant::now() >= held_until => {
                let _ = lost.send(format!("renewals failed for longer than the lease: {e}"));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the job's lease failed; retrying");
            }
        }
    }
}
