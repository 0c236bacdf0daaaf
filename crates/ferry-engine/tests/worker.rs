//! The worker loop against a real SQLite store: a job whose lease is taken over by another
//! worker is abandoned at once, without another checkpoint.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use ferry_core::schema::Schema;
use ferry_core::secrets::Secrets;
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::{Engine, EngineOptions, InboundRequest, IngestOutcome, Registry};
use ferry_store::{JobStatus, SqliteStore, Store, StoreOptions};
use serde_json::json;

/// What the slow action saw.
#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    completed: AtomicBool,
    cancelled: AtomicBool,
}

/// Sets `cancelled` when the action's future is dropped before it completed.
struct DropGuard(Arc<Seen>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.0.completed.load(Ordering::SeqCst) {
            self.0.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

/// An action that takes a few seconds.
struct Slow(ActionSpec, Arc<Seen>);

#[async_trait]
impl Action for Slow {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, _ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        self.1.started.fetch_add(1, Ordering::SeqCst);
        let _guard = DropGuard(self.1.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        self.1.completed.store(true, Ordering::SeqCst);
        Ok(vec![Output::new("output", json!({}))])
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_abandons_the_run_without_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let sol = dir.path().join("sol");
    std::fs::create_dir_all(sol.join("runbooks")).unwrap();
    std::fs::write(sol.join("solution.yaml"), "name: s\n").unwrap();
    std::fs::write(
        sol.join("runbooks/r.yaml"),
        "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: slow, action: test.slow, input: {} }\n",
    )
    .unwrap();
    let seen = Arc::new(Seen::default());
    let mut registry = Registry::builtin();
    registry.connector(ferry_engine::ConnectorSpec::new("test", "Test actions"));
    registry.action(Slow(
        ActionSpec {
            name: "test.slow",
            description: "takes a while",
            input: vec![],
            outputs: vec![Schema::new("output", vec![])],
            nested: false,
            kind: ActionKind::Normal,
            connection: None,
        },
        seen.clone(),
    ));
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("t.db"), StoreOptions::default())
            .await
            .unwrap(),
    );
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        Arc::new(Secrets::from_master_key(&[7u8; 32])),
        registry,
        EngineOptions {
            workers: 1,
            lease: Duration::from_millis(600),
            ..EngineOptions::default()
        },
    );
    engine.load_dir(&sol).unwrap();
    let request = InboundRequest {
        method: "POST".into(),
        body: json!({"n": 1}).to_string().into(),
        ..Default::default()
    };
    let IngestOutcome::Accepted { job_id, .. } = engine.ingest_trusted("s", "r", request).await
    else {
        panic!("event not accepted");
    };
    let workers = tokio::spawn(ferry_engine::worker::run_workers(engine.clone(), 1));
    wait_for("the step to start", || {
        seen.started.load(Ordering::SeqCst) == 1
    })
    .await;

    // Another worker (another node, say) takes the job over, as it would once the lease had
    // expired: a claim as of an hour from now sees the lease as over.
    let taken = store
        .claim_job(
            "thief",
            Utc::now() + chrono::TimeDelta::hours(1),
            Duration::from_secs(3600),
        )
        .await
        .unwrap()
        .expect("the running job is claimable once its lease is over");
    assert_eq!(taken.id, job_id);

    // The first worker's next renewal fails: it drops the run at once.
    wait_for("the step to be cancelled", || {
        seen.cancelled.load(Ordering::SeqCst)
    })
    .await;
    assert!(!seen.completed.load(Ordering::SeqCst));
    let job = store.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Running, "still the thief's");
    assert_eq!(job.attempts, 2);
    assert!(
        store.job_steps(job_id).await.unwrap().is_empty(),
        "the abandoned run wrote no step"
    );
    // It did not run the job again either (the thief holds the lease for an hour).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen.started.load(Ordering::SeqCst), 1);

    engine.begin_shutdown();
    workers.await.unwrap();
    store.close().await;
}
