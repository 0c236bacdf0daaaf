//! Retention: the background purge of old finished and failed jobs (with their steps) and of
//! expired connection-store entries.
//!
//! The purge goes through the store's single writer like every other write, in small batches
//! (one short transaction of at most [`RetentionOptions::batch`] jobs each) with a pause between
//! them, so ingest and checkpoints interleave with it and are never held up for long.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::engine::Engine;

/// Settings of [`run_retention`].
#[derive(Clone, Debug)]
pub struct RetentionOptions {
    /// Finished and failed jobs older than this (by `finished_at`) are deleted.
    pub keep: Duration,
    /// Time between two purge rounds.
    pub interval: Duration,
    /// Most jobs deleted by one store command (one transaction).
    pub batch: u32,
    /// Pause between two batches of one round.
    pub pause: Duration,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            keep: Duration::from_secs(30 * 24 * 3600),
            interval: Duration::from_secs(300),
            batch: 200,
            pause: Duration::from_millis(20),
        }
    }
}

/// Purge every `interval` until [`Engine::begin_shutdown`]; the first round runs at once.
/// Failures are logged and retried at the next round.
pub async fn run_retention(engine: Arc<Engine>, opts: RetentionOptions) {
    tracing::info!(
        keep = %humantime::format_duration(opts.keep),
        every = %humantime::format_duration(opts.interval),
        "retention: purging finished and failed jobs"
    );
    loop {
        if engine.is_stopping() {
            return;
        }
        match purge_round(&engine, &opts).await {
            Ok((0, 0)) => {}
            Ok((jobs, entries)) => {
                tracing::info!(jobs, expired_entries = entries, "retention: purged")
            }
            Err(e) => tracing::error!(error = %e, "retention: purge failed; retrying next round"),
        }
        // Sleep until the next round, looking for shutdown every second.
        let next = tokio::time::Instant::now() + opts.interval;
        loop {
            let now = tokio::time::Instant::now();
            if now >= next {
                break;
            }
            if engine.is_stopping() {
                return;
            }
            tokio::time::sleep((next - now).min(Duration::from_secs(1))).await;
        }
    }
}

/// One round: old jobs in batches, then expired key/value entries and locks.
/// Returns (jobs deleted, entries deleted).
pub async fn purge_round(
    engine: &Engine,
    opts: &RetentionOptions,
) -> Result<(u64, u64), ferry_store::StoreError> {
    let keep = chrono::Duration::from_std(opts.keep).unwrap_or(chrono::Duration::MAX);
    let before = Utc::now()
        .checked_sub_signed(keep)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let batch = opts.batch.max(1);
    let mut jobs = 0;
    loop {
        let n = engine.store.purge_finished_jobs(before, batch).await?;
        jobs += n;
        if n < u64::from(batch) || engine.is_stopping() {
            break;
        }
        tokio::time::sleep(opts.pause).await;
    }
    let entries = engine.store.purge_expired().await?;
    Ok((jobs, entries))
}
