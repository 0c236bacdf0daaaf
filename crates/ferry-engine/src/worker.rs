//! Workers: claim runnable jobs from the store and run them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::engine::Engine;
use crate::executor::{run_job, RunEnd};

/// Run `n` workers until [`Engine::begin_shutdown`] is called. Each finishes (or
/// checkpoints) its current step before returning.
pub async fn run_workers(engine: Arc<Engine>, n: usize) {
    let mut handles = Vec::new();
    for i in 0..n.max(1) {
        let engine = engine.clone();
        handles.push(tokio::spawn(async move {
            worker(engine, format!("w{i}")).await
        }));
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
                let id = job.id;
                let end = run_job(&engine.exec_env(), job).await;
                tracing::debug!(job = %id, ?end, "job run ended");
                if end == RunEnd::Interrupted && engine.is_stopping() {
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
                tokio::select! {
                    _ = engine.notify.notified() => {}
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
