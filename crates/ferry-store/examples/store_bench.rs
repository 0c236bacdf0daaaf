//! Store benchmark: `cargo run --release -p ferry-store --example store_bench [-- SECONDS]`.
//!
//! 1. 50 concurrent tasks insert jobs with a 1.5 KB trigger output for SECONDS (default 3):
//!    inserts/s and latency percentiles (each insert is acknowledged after COMMIT).
//! 2. `claim_job` on a store holding 100,000 queued jobs: time per claim.
//! 3. `claim_job` when 50,000 of 100,000 queued jobs share one concurrency key (all but one of
//!    them blocked): claims must skip the blocked jobs through the index.
//! 4. A 40-step job: 40 sequential checkpoints, each appending a step record.
//!
//! A second argument `full` opens every store with `sync_full` (fsync on each commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_store::{
    Checkpoint, JobId, JobStatus, LogLine, NewJob, SqliteStore, StepRecord, StepStatus, Store,
    StoreOptions,
};
use serde_json::{json, Value};

const TASKS: usize = 50;

fn opts() -> StoreOptions {
    StoreOptions {
        sync_full: std::env::args().nth(2).is_some_and(|a| a == "full"),
        ..StoreOptions::default()
    }
}

fn payload() -> Value {
    // About 1.5 KB of JSON once serialized.
    let items: Vec<Value> = (0..9)
        .map(|i| {
            json!({
                "id": i,
                "subject": format!("Request {i}: printer on floor 3 is out of toner again"),
                "status": "assigned",
                "team": "Service Desk",
                "note": "The quick brown fox jumps over the lazy dog."
            })
        })
        .collect();
    json!({"event": "request.update", "account": "widget", "items": items})
}

fn new_job(trigger_output: &Value) -> NewJob {
    NewJob {
        id: JobId::now_v7(),
        solution: "bench".into(),
        runbook: "ingest".into(),
        trigger_output: trigger_output.clone(),
        context_id: None,
        concurrency_key: None,
        dedup_key: None,
        state: json!({}),
        solution_version: None,
        test: false,
        claims: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(label: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{label}: n={} p50={:.3} ms p99={:.3} ms p99.9={:.3} ms max={:.3} ms",
        lat.len(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 0.999)),
        ms(lat.last().copied().unwrap_or_default()),
    );
}

async fn insert_phase(dir: &std::path::Path, secs: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(SqliteStore::open(&dir.join("ingest.db"), opts()).await?);
    let body = payload();
    println!(
        "insert: {TASKS} tasks, trigger_output {} bytes, {secs} s",
        serde_json::to_string(&body)?.len()
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let job = new_job(&body);
                let t = Instant::now();
                store.insert_job(job).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, ferry_store::StoreError>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let elapsed = start.elapsed();
    let stats = store.writer_stats();
    println!(
        "insert: {} jobs in {:.2} s = {:.0} inserts/s; {} transactions, avg batch {:.1}, largest {}",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        stats.batches,
        stats.commands as f64 / stats.batches.max(1) as f64,
        stats.largest_batch
    );
    summary("insert latency", all);
    let wal = std::fs::metadata(dir.join("ingest.db-wal")).map_or(0, |m| m.len());
    println!("insert: WAL file {:.1} MB after the run", wal as f64 / 1e6);
    store.close().await;
    Ok(())
}

async fn claim_phase(
    dir: &std::path::Path,
    name: &str,
    keyed: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    const JOBS: usize = 100_000;
    let store = Arc::new(SqliteStore::open(&dir.join(name), opts()).await?);
    let body = json!({"n": 1, "text": "small trigger output"});
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..JOBS / TASKS {
                let mut job = new_job(&body);
                if keyed && i < JOBS / TASKS / 2 {
                    job.concurrency_key = Some("one-key".into());
                }
                store.insert_job(job).await?;
            }
            Ok::<_, ferry_store::StoreError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let what = if keyed {
        "100k queued, 50k behind one key"
    } else {
        "100k queued"
    };
    println!(
        "claim: filled {JOBS} queued jobs ({what}) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut lat = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        let job = store
            .claim_job("bench", Utc::now(), Duration::from_secs(60))
            .await?;
        lat.push(t.elapsed());
        if job.is_none() {
            return Err("queue unexpectedly empty".into());
        }
    }
    summary(&format!("claim latency ({what})"), lat);
    store.close().await;
    Ok(())
}

async fn checkpoint_phase(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open(&dir.join("steps.db"), opts()).await?;
    let mut totals = Vec::new();
    let mut per_cp = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        let job = new_job(&json!({"event": "x"}));
        let id = job.id;
        store.insert_job(job).await?;
        store
            .claim_job("bench", Utc::now(), Duration::from_secs(60))
            .await?
            .ok_or("no job to claim")?;
        for i in 0..40 {
            let now = Utc::now();
            let cp = Checkpoint {
                job_id: id,
                step: Some(StepRecord {
                    job_id: id,
                    seq: 0,
                    step_id: format!("log_{i}"),
                    invocation: 0,
                    status: StepStatus::Completed,
                    input: json!({"message": format!("step {i}")}),
                    outputs: json!([{}]),
                    logs: vec![LogLine {
                        at: now,
                        level: "info".into(),
                        message: format!("step {i}"),
                    }],
                    error: None,
                    started_at: now,
                    finished_at: now,
                }),
                state: json!({"next": i + 1}),
                status: if i == 39 {
                    JobStatus::Finished
                } else {
                    JobStatus::Running
                },
                next_run_at: None,
                error: None,
                owner: Some("bench".into()),
            };
            let t = Instant::now();
            store.checkpoint(cp).await?;
            per_cp.push(t.elapsed());
        }
        totals.push(t0.elapsed());
    }
    summary("checkpoint round trip (idle store)", per_cp);
    summary("40-step job: insert + claim + 40 checkpoints", totals);
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::TempDir::new()?;
    insert_phase(dir.path(), secs).await?;
    claim_phase(dir.path(), "claim.db", false).await?;
    claim_phase(dir.path(), "claim_keyed.db", true).await?;
    checkpoint_phase(dir.path()).await?;
    Ok(())
}
