//! Behavioural tests of the stores: every test runs against SQLite (its own temporary
//! directory) and PostgreSQL (its own database on a throwaway server started by this test
//! binary, see `ferry_store::throwaway`; skipped with a notice where PostgreSQL is not
//! installed, unless `FERRY_REQUIRE_POSTGRES=1`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use ferry_store::{
    Checkpoint, InsertOutcome, JobFilter, JobId, JobStatus, KvClaim, LogLine, NewJob, SqliteStore,
    StepRecord, StepStatus, Store, StoreError, StoreOptions,
};
use serde_json::{json, Value};
use tempfile::TempDir;

const LEASE: Duration = Duration::from_secs(60);

mod harness;
use harness::Harness;

fn job(solution: &str, runbook: &str) -> NewJob {
    NewJob {
        id: JobId::new_v4(),
        solution: solution.into(),
        runbook: runbook.into(),
        trigger_output: json!({"event": "x", "n": 1}),
        context_id: None,
        concurrency_key: None,
        dedup_key: None,
        state: json!({"cursor": 0}),
        solution_version: None,
        test: false,
        claims: Vec::new(),
    }
}

fn keyed(key: &str) -> NewJob {
    NewJob {
        concurrency_key: Some(key.into()),
        ..job("s", "r")
    }
}

async fn insert(store: &dyn Store, j: NewJob) -> JobId {
    let id = j.id;
    assert_eq!(
        store.insert_job(j).await.expect("insert"),
        InsertOutcome::Created
    );
    id
}

async fn claim(store: &dyn Store) -> Option<JobId> {
    store
        .claim_job("w1", Utc::now(), LEASE)
        .await
        .expect("claim")
        .map(|j| j.id)
}

fn done(id: JobId, status: JobStatus) -> Checkpoint {
    Checkpoint {
        job_id: id,
        step: None,
        state: json!({"done": true}),
        status,
        next_run_at: None,
        error: None,
        owner: None,
    }
}

fn step(id: JobId, step_id: &str, invocation: i64) -> StepRecord {
    let t = Utc::now();
    StepRecord {
        job_id: id,
        seq: 0,
        step_id: step_id.into(),
        invocation,
        status: StepStatus::Completed,
        input: json!({"in": step_id}),
        outputs: json!([{"out": invocation}]),
        logs: vec![LogLine {
            at: t,
            level: "info".into(),
            message: format!("ran {step_id}"),
        }],
        error: None,
        started_at: t,
        finished_at: t + TimeDelta::milliseconds(3),
    }
}

async fn insert_get_and_fields_round_trip(h: Harness) {
    let store = h.open().await;
    let mut j = job("sol", "rb");
    j.context_id = Some("ctx-1".into());
    let id = insert(&store, j).await;
    let rec = store.get_job(id).await.unwrap().expect("job exists");
    assert_eq!(rec.id, id);
    assert_eq!(rec.solution, "sol");
    assert_eq!(rec.runbook, "rb");
    assert_eq!(rec.status, JobStatus::Queued);
    assert_eq!(rec.trigger_output, json!({"event": "x", "n": 1}));
    assert_eq!(rec.state, json!({"cursor": 0}));
    assert_eq!(rec.context_id.as_deref(), Some("ctx-1"));
    assert_eq!(rec.attempts, 0);
    assert!(rec.started_at.is_none() && rec.finished_at.is_none());
    assert!(store.get_job(JobId::new_v4()).await.unwrap().is_none());
    store.close().await;
}

async fn list_jobs_filters_and_pages_newest_first(h: Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut j = job(if i % 2 == 0 { "a" } else { "b" }, "rb");
        j.context_id = Some(format!("c{}", i % 3));
        ids.push(insert(&store, j).await);
    }
    // Page through everything, 3 at a time.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_jobs(&JobFilter {
                limit: 3,
                before_seq: before,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.jobs.len() <= 3);
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_before_seq {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let a = store
        .list_jobs(&JobFilter {
            solution: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.jobs.len(), 4);
    assert!(a.jobs.iter().all(|j| j.solution == "a"));
    assert_eq!(a.next_before_seq, None);
    assert!(a.jobs.windows(2).all(|w| w[0].seq > w[1].seq));

    let c0 = store
        .list_jobs(&JobFilter {
            context_id: Some("c0".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(c0.jobs.len(), 3); // i = 0, 3, 6

    // Status filter after a claim.
    let claimed = claim(&store).await.unwrap();
    assert_eq!(claimed, ids[0], "oldest first");
    let running = store
        .list_jobs(&JobFilter {
            status: Some(JobStatus::Running),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        running.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.len(), 5);
    assert!(counts.contains(&(JobStatus::Queued, 6)));
    assert!(counts.contains(&(JobStatus::Running, 1)));
    assert!(counts.contains(&(JobStatus::Failed, 0)));
    store.close().await;
}

async fn dedup_key_is_unique_per_solution_and_runbook(h: Harness) {
    let store = h.open().await;
    let mut first = job("s", "r");
    first.dedup_key = Some("evt-1".into());
    let first_id = insert(&store, first.clone()).await;

    let mut again = first.clone();
    again.id = JobId::new_v4();
    assert_eq!(
        store.insert_job(again.clone()).await.unwrap(),
        InsertOutcome::Duplicate { existing: first_id }
    );
    assert!(store.get_job(again.id).await.unwrap().is_none());

    // Same key in another runbook is a different job.
    let mut other = again.clone();
    other.runbook = "r2".into();
    insert(&store, other).await;

    // Reusing an id is a conflict, not a duplicate.
    let mut same_id = job("s", "r");
    same_id.id = first_id;
    assert!(matches!(
        store.insert_job(same_id).await,
        Err(StoreError::Conflict(_))
    ));
    store.close().await;
}

async fn claim_is_fifo_and_marks_running_with_lease(h: Harness) {
    let store = h.open().await;
    assert!(claim(&store).await.is_none());
    let a = insert(&store, job("s", "r")).await;
    let b = insert(&store, job("s", "r")).await;
    let now = Utc::now();
    let got = store.claim_job("w7", now, LEASE).await.unwrap().unwrap();
    assert_eq!(got.id, a);
    assert_eq!(got.status, JobStatus::Running);
    assert_eq!(got.attempts, 1);
    assert!(got.started_at.is_some());
    assert_eq!(claim(&store).await, Some(b));
    assert_eq!(claim(&store).await, None);
    store.close().await;
}

async fn concurrency_key_serializes_jobs(h: Harness) {
    let store = h.open().await;
    let k1 = insert(&store, keyed("K")).await;
    let k2 = insert(&store, keyed("K")).await;
    let k3 = insert(&store, keyed("K")).await;
    let other = insert(&store, keyed("L")).await;

    assert_eq!(claim(&store).await, Some(k1));
    // k2 waits for k1; the job with another key is runnable.
    assert_eq!(claim(&store).await, Some(other));
    assert_eq!(claim(&store).await, None);

    // k1 rescheduled: it keeps holding the key.
    let mut cp = done(k1, JobStatus::Waiting);
    cp.next_run_at = Some(Utc::now() + TimeDelta::hours(1));
    store.checkpoint(cp).await.unwrap();
    assert_eq!(claim(&store).await, None);

    // Claim k1 again by pretending it is later, then finish it: k2 becomes runnable, not k3.
    let later = Utc::now() + TimeDelta::hours(2);
    let again = store.claim_job("w1", later, LEASE).await.unwrap().unwrap();
    assert_eq!(again.id, k1);
    assert_eq!(again.attempts, 2);
    assert_eq!(claim(&store).await, None);
    store
        .checkpoint(done(k1, JobStatus::Finished))
        .await
        .unwrap();
    assert_eq!(claim(&store).await, Some(k2));
    assert_eq!(claim(&store).await, None);
    store.checkpoint(done(k2, JobStatus::Failed)).await.unwrap();
    assert_eq!(claim(&store).await, Some(k3));
    store.close().await;
}

async fn waiting_job_is_claimable_only_after_next_run_at(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    assert_eq!(claim(&store).await, Some(id));
    let wake = Utc::now() + TimeDelta::seconds(30);
    let mut cp = done(id, JobStatus::Waiting);
    cp.next_run_at = Some(wake);
    store.checkpoint(cp).await.unwrap();

    let rec = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Waiting);
    assert_eq!(
        rec.next_run_at.map(|t| t.timestamp_millis()),
        Some(wake.timestamp_millis())
    );
    assert_eq!(
        store
            .next_wakeup()
            .await
            .unwrap()
            .map(|t| t.timestamp_millis()),
        Some(wake.timestamp_millis())
    );
    assert!(store
        .claim_job("w", wake - TimeDelta::milliseconds(1), LEASE)
        .await
        .unwrap()
        .is_none());
    let got = store.claim_job("w", wake, LEASE).await.unwrap().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.next_run_at, None);
    assert_eq!(store.next_wakeup().await.unwrap(), None);

    // A Waiting checkpoint without a wake-up time is rejected.
    assert!(matches!(
        store.checkpoint(done(id, JobStatus::Waiting)).await,
        Err(StoreError::Invalid(_))
    ));
    store.close().await;
}

async fn checkpoint_persists_steps_and_state(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    claim(&store).await.unwrap();
    for (i, name) in ["fetch", "map", "post"].iter().enumerate() {
        store
            .checkpoint(Checkpoint {
                job_id: id,
                step: Some(step(id, name, i as i64)),
                state: json!({"after": name}),
                status: JobStatus::Running,
                next_run_at: None,
                error: None,
                owner: None,
            })
            .await
            .unwrap();
        let rec = store.get_job(id).await.unwrap().unwrap();
        assert_eq!(rec.state, json!({"after": name}));
        assert_eq!(rec.status, JobStatus::Running);
    }
    let mut last = done(id, JobStatus::Failed);
    last.error = Some("boom".into());
    let mut failed_step = step(id, "post", 3);
    failed_step.status = StepStatus::Failed;
    failed_step.error = Some("boom".into());
    last.step = Some(failed_step);
    store.checkpoint(last).await.unwrap();

    let steps = store.job_steps(id).await.unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(
        steps.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(steps[1].step_id, "map");
    assert_eq!(steps[1].input, json!({"in": "map"}));
    assert_eq!(steps[1].outputs, json!([{"out": 1}]));
    assert_eq!(steps[1].logs.len(), 1);
    assert_eq!(steps[1].logs[0].message, "ran map");
    assert_eq!(steps[3].status, StepStatus::Failed);
    assert_eq!(steps[3].error.as_deref(), Some("boom"));

    let rec = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("boom"));
    assert!(rec.finished_at.is_some());

    // Unknown job: NotFound, with and without a step; nothing is stored.
    let ghost = JobId::new_v4();
    assert!(matches!(
        store.checkpoint(done(ghost, JobStatus::Finished)).await,
        Err(StoreError::NotFound)
    ));
    let mut with_step = done(ghost, JobStatus::Running);
    with_step.step = Some(step(ghost, "x", 0));
    assert!(matches!(
        store.checkpoint(with_step).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.job_steps(ghost).await.unwrap().is_empty());
    store.close().await;
}

async fn recover_interrupted_requeues_running_jobs_keeping_state(h: Harness) {
    let store = h.open().await;
    let expired = insert(&store, job("s", "r")).await;
    let live = insert(&store, job("s", "r")).await;
    let queued = insert(&store, job("s", "r")).await;
    let got = store
        .claim_job("w", Utc::now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, expired);
    assert_eq!(claim(&store).await, Some(live));
    let mut cp = done(expired, JobStatus::Running);
    cp.state = json!({"step": 5});
    store.checkpoint(cp).await.unwrap();

    // Start-up of the only process: every Running job goes back to the queue, state kept.
    assert_eq!(store.recover_interrupted().await.unwrap(), 2);
    let rec = store.get_job(expired).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Queued);
    assert_eq!(rec.state, json!({"step": 5}));
    assert_eq!(
        store.get_job(live).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    assert_eq!(
        store.get_job(queued).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    assert_eq!(store.recover_interrupted().await.unwrap(), 0);
    // The recovered job is claimed again, oldest first.
    let again = store
        .claim_job("w", Utc::now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, expired);
    assert_eq!(again.attempts, 2);
    store.close().await;
}

async fn requeue_only_failed_jobs(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, keyed("K")).await;
    let next = insert(&store, keyed("K")).await;
    assert!(matches!(
        store.requeue_job(id, json!({})).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.requeue_job(JobId::new_v4(), json!({})).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(claim(&store).await, Some(id));
    let mut cp = done(id, JobStatus::Failed);
    cp.error = Some("bad".into());
    store.checkpoint(cp).await.unwrap();
    // The key passed on to `next`, which is now running.
    assert_eq!(claim(&store).await, Some(next));

    store.requeue_job(id, json!({"fresh": true})).await.unwrap();
    let rec = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Queued);
    assert_eq!(rec.state, json!({"fresh": true}));
    assert_eq!(rec.error, None);
    assert_eq!(rec.finished_at, None);
    // It waits for `next` to release the key.
    assert_eq!(claim(&store).await, None);
    store
        .checkpoint(done(next, JobStatus::Finished))
        .await
        .unwrap();
    assert_eq!(claim(&store).await, Some(id));
    store.close().await;
}

async fn step_outputs_reads_the_latest_record_of_an_invocation(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    assert_eq!(claim(&store).await, Some(id));
    let checkpoint = |record: StepRecord, status: JobStatus| Checkpoint {
        step: Some(record),
        ..done(id, status)
    };
    let mut first = step(id, "loop", 1);
    first.outputs = json!([{"branch": "record", "output": {"run": 1}}]);
    store
        .checkpoint(checkpoint(first, JobStatus::Failed))
        .await
        .unwrap();
    // A re-run starts the invocations over; its record of invocation 1 is the one read.
    store.requeue_job(id, json!({})).await.unwrap();
    assert_eq!(claim(&store).await, Some(id));
    let mut again = step(id, "loop", 1);
    again.outputs = json!([{"branch": "record", "output": {"run": 2}}]);
    store
        .checkpoint(checkpoint(again, JobStatus::Running))
        .await
        .unwrap();
    store
        .checkpoint(checkpoint(step(id, "other", 1), JobStatus::Running))
        .await
        .unwrap();
    assert_eq!(
        store.step_outputs(id, "loop", 1).await.unwrap(),
        Some(json!([{"branch": "record", "output": {"run": 2}}]))
    );
    assert_eq!(store.step_outputs(id, "loop", 2).await.unwrap(), None);
    assert_eq!(
        store
            .step_outputs(JobId::new_v4(), "loop", 1)
            .await
            .unwrap(),
        None
    );
    store.close().await;
}

async fn kv_put_get_delete_and_ttl(h: Harness) {
    let store = h.open().await;
    store
        .kv_put("conn:1", "token", &json!({"v": "abc"}), None)
        .await
        .unwrap();
    store
        .kv_put(
            "conn:1",
            "short",
            &json!(1),
            // Long enough to be read back on a loaded machine, short enough to wait for.
            Some(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.kv_get("conn:1", "token").await.unwrap(),
        Some(json!({"v": "abc"}))
    );
    assert_eq!(store.kv_get("conn:2", "token").await.unwrap(), None);
    assert_eq!(
        store.kv_get("conn:1", "short").await.unwrap(),
        Some(json!(1))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.kv_get("conn:1", "short").await.unwrap(), None);
    // Overwrite, then delete.
    store
        .kv_put("conn:1", "token", &json!("new"), None)
        .await
        .unwrap();
    assert_eq!(
        store.kv_get("conn:1", "token").await.unwrap(),
        Some(json!("new"))
    );
    store.kv_delete("conn:1", "token").await.unwrap();
    assert_eq!(store.kv_get("conn:1", "token").await.unwrap(), None);
    store.kv_delete("conn:1", "absent").await.unwrap();
    // purge_expired removes the expired entry (and an expired lock), nothing else.
    store
        .kv_put(
            "conn:1",
            "keep",
            &json!(true),
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(store
        .lock_acquire("l", "t", Duration::from_millis(1))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.purge_expired().await.unwrap(), 2);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        store.kv_get("conn:1", "keep").await.unwrap(),
        Some(json!(true))
    );
    store.close().await;
}

async fn locks_contend_expire_and_release_by_owner_only(h: Harness) {
    let store = h.open().await;
    let ttl = Duration::from_secs(60);
    assert!(store.lock_acquire("k", "t1", ttl).await.unwrap());
    assert!(!store.lock_acquire("k", "t2", ttl).await.unwrap());
    assert!(store.lock_acquire("other", "t2", ttl).await.unwrap());
    assert!(!store.lock_release("k", "t2").await.unwrap());
    assert!(!store.lock_acquire("k", "t2", ttl).await.unwrap());
    assert!(store.lock_release("k", "t1").await.unwrap());
    assert!(!store.lock_release("k", "t1").await.unwrap());
    assert!(store.lock_acquire("k", "t2", ttl).await.unwrap());

    // Expiry.
    assert!(store
        .lock_acquire("e", "t1", Duration::from_millis(40))
        .await
        .unwrap());
    assert!(!store.lock_acquire("e", "t2", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.lock_acquire("e", "t2", ttl).await.unwrap());
    // The previous owner can no longer release it.
    assert!(!store.lock_release("e", "t1").await.unwrap());
    assert!(store.lock_release("e", "t2").await.unwrap());
    store.close().await;
}

async fn group_commit_many_concurrent_inserts_with_failures_isolated(h: Harness) {
    let store = Arc::new(h.open().await);
    let taken = insert(&*store, job("s", "r")).await;
    let mut handles = Vec::new();
    for i in 0..2000usize {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut j = job("s", "r");
            // Every 50th insert reuses an existing id and must fail alone.
            if i % 50 == 0 {
                j.id = taken;
            }
            let id = j.id;
            (i, id, store.insert_job(j).await)
        }));
    }
    let mut ok = Vec::new();
    let mut failed = 0;
    for h in handles {
        let (i, id, res) = h.await.unwrap();
        if i % 50 == 0 {
            assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
            failed += 1;
        } else {
            assert_eq!(res.unwrap(), InsertOutcome::Created);
            ok.push(id);
        }
    }
    assert_eq!(failed, 40);
    assert_eq!(ok.len(), 1960);
    let stats = store.writer_stats();
    assert_eq!(stats.commands, 2001);
    // With 2,000 concurrent callers the writer must have grouped commands.
    assert!(stats.batches < stats.commands, "{stats:?}");
    assert!(stats.largest_batch > 1);
    store.close().await;
    drop(store);

    // Everything acknowledged is there after reopening.
    let store = h.open().await;
    for id in &ok {
        assert!(store.get_job(*id).await.unwrap().is_some(), "job {id} lost");
    }
    let counts = store.count_by_status().await.unwrap();
    assert!(counts.contains(&(JobStatus::Queued, 1961)));
    store.close().await;
}

async fn concurrent_claims_never_hand_out_a_job_twice(h: Harness) {
    let store = Arc::new(h.open().await);
    for _ in 0..200 {
        insert(&*store, job("s", "r")).await;
    }
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = store
                .claim_job(&format!("w{w}"), Utc::now(), LEASE)
                .await
                .unwrap()
            {
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 200);
    assert_eq!(all.len(), 200);
    store.close().await;
}

async fn data_survives_close_and_reopen(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    claim(&store).await.unwrap();
    let mut cp = done(id, JobStatus::Running);
    cp.step = Some(step(id, "a", 0));
    store.checkpoint(cp).await.unwrap();
    store.kv_put("ns", "k", &json!([1, 2]), None).await.unwrap();
    store.close().await;
    assert!(matches!(
        store.insert_job(job("s", "r")).await,
        Err(StoreError::Closed)
    ));

    let store = h.open().await;
    let rec = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Running);
    assert_eq!(rec.state, json!({"done": true}));
    assert_eq!(store.job_steps(id).await.unwrap().len(), 1);
    assert_eq!(store.kv_get("ns", "k").await.unwrap(), Some(json!([1, 2])));
    assert_eq!(store.recover_interrupted().await.unwrap(), 1);
    store.close().await;
}

async fn usable_as_trait_object(h: Harness) {
    let store: Arc<dyn Store> = h.open().await.into_dyn();
    let j = job("s", "r");
    let id = j.id;
    store.insert_job(j).await.unwrap();
    assert_eq!(store.get_job(id).await.unwrap().unwrap().id, id);
}

async fn concurrent_duplicates_resolve_to_one_job(h: Harness) {
    let store = Arc::new(h.open().await);
    let mut handles = Vec::new();
    for i in 0..300usize {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut j = if i % 3 == 0 {
                keyed("K")
            } else {
                job("s", "r")
            };
            // One event delivered 100 times, mixed with 200 distinct events.
            if i % 3 == 1 {
                j.dedup_key = Some("same-event".into());
            } else {
                j.dedup_key = Some(format!("event-{i}"));
            }
            let id = j.id;
            (i, id, store.insert_job(j).await.unwrap())
        }));
    }
    let mut created_same = Vec::new();
    let mut dup_targets = Vec::new();
    for h in handles {
        let (i, id, outcome) = h.await.unwrap();
        match (i % 3 == 1, outcome) {
            (true, InsertOutcome::Created) => created_same.push(id),
            (true, InsertOutcome::Duplicate { existing }) => dup_targets.push(existing),
            (true, other) => panic!("event {i}: {other:?}"),
            (false, InsertOutcome::Created) => {}
            (false, other) => panic!("distinct event {i} not created: {other:?}"),
        }
    }
    assert_eq!(created_same.len(), 1);
    assert_eq!(dup_targets.len(), 99);
    assert!(dup_targets.iter().all(|e| *e == created_same[0]));
    let counts = store.count_by_status().await.unwrap();
    assert!(counts.contains(&(JobStatus::Queued, 201)));
    // Keyed jobs still run one at a time.
    let mut keyed_running = 0;
    while let Some(j) = store.claim_job("w", Utc::now(), LEASE).await.unwrap() {
        if j.concurrency_key.is_some() {
            keyed_running += 1;
        }
    }
    assert_eq!(keyed_running, 1);
    store.close().await;
}

async fn due_waiting_jobs_are_claimed_before_queued_ones(h: Harness) {
    let store = h.open().await;
    let early = insert(&store, job("s", "r")).await;
    assert_eq!(claim(&store).await, Some(early));
    let mut cp = done(early, JobStatus::Waiting);
    cp.next_run_at = Some(Utc::now() - TimeDelta::seconds(1));
    store.checkpoint(cp).await.unwrap();
    let queued = insert(&store, job("s", "r")).await;
    assert_eq!(claim(&store).await, Some(early));
    assert_eq!(claim(&store).await, Some(queued));
    store.close().await;
}

async fn acknowledged_writes_are_on_disk_without_close(h: Harness) {
    let first = h.open().await;
    let id = insert(&first, job("s", "r")).await;
    first.kv_put("ns", "k", &json!("v"), None).await.unwrap();
    // Abandon the first store without closing it (its connections stay open, nothing is
    // flushed on shutdown); a second store on the same database must see every acknowledged
    // write.
    std::mem::forget(first);
    let second = h.open().await;
    assert!(second.get_job(id).await.unwrap().is_some());
    assert_eq!(second.kv_get("ns", "k").await.unwrap(), Some(json!("v")));
    second.close().await;
}

#[test]
fn status_names_round_trip() {
    for s in JobStatus::ALL {
        assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    assert_eq!(JobStatus::parse("done"), None);
    assert!(JobStatus::Finished.is_terminal() && JobStatus::Failed.is_terminal());
    assert!(!JobStatus::Waiting.is_terminal());
    for s in [
        StepStatus::Completed,
        StepStatus::Failed,
        StepStatus::Rescheduled,
        StepStatus::Finished,
    ] {
        assert_eq!(StepStatus::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    assert_eq!(JobFilter::default().effective_limit(), 50);
    let big = JobFilter {
        limit: 10_000,
        ..Default::default()
    };
    assert_eq!(big.effective_limit(), 500);
}

async fn list_jobs_filters_by_creation_time_and_counts_recent_activity(h: Harness) {
    let store = h.open().await;
    let start = Utc::now() - TimeDelta::milliseconds(5);
    let old = insert(&store, job("s", "a")).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cut = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let failed_a = insert(&store, job("s", "a")).await;
    let failed_b1 = insert(&store, job("s", "b")).await;
    let failed_b2 = insert(&store, job("s", "b")).await;
    let ids = |page: ferry_store::JobPage| page.jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    let after = store
        .list_jobs(&JobFilter {
            created_from: Some(cut),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(after), vec![failed_b2, failed_b1, failed_a]);
    let before = store
        .list_jobs(&JobFilter {
            created_to: Some(cut),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(before), vec![old]);
    let window = store
        .list_jobs(&JobFilter {
            created_from: Some(start),
            created_to: Some(cut),
            runbook: Some("b".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(window.jobs.is_empty());
    // Both ways of reading a time range (walking seq down when few jobs are newer than the
    // range, else the created_at index) give the same exact pages.
    let everything = Utc::now() + TimeDelta::hours(1);
    for (from, to, expected) in [
        (
            None,
            Some(everything),
            vec![failed_b2, failed_b1, failed_a, old],
        ),
        (
            Some(start),
            Some(everything),
            vec![failed_b2, failed_b1, failed_a, old],
        ),
        (Some(start), Some(cut), vec![old]),
        (
            Some(cut),
            Some(everything),
            vec![failed_b2, failed_b1, failed_a],
        ),
        (Some(everything), Some(everything), vec![]),
        (None, Some(start - TimeDelta::hours(1)), vec![]),
    ] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .list_jobs(&JobFilter {
                    created_from: from,
                    created_to: to,
                    limit: 2,
                    before_seq: before,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page.jobs.iter().map(|j| j.id));
            match page.next_before_seq {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{from:?}..{to:?}");
    }

    for id in [old, failed_a, failed_b1, failed_b2] {
        assert_eq!(claim(&store).await, Some(id));
        let status = if id == old {
            JobStatus::Finished
        } else {
            JobStatus::Failed
        };
        store.checkpoint(done(id, status)).await.unwrap();
    }
    let minutes = store.jobs_per_minute(start).await.unwrap();
    assert_eq!(minutes.iter().map(|m| m.jobs).sum::<i64>(), 4);
    assert!(minutes.windows(2).all(|w| w[0].minute < w[1].minute));
    assert!(minutes
        .iter()
        .all(|m| m.minute.timestamp() % 60 == 0 && m.minute <= Utc::now()));
    assert!(store
        .jobs_per_minute(Utc::now() + TimeDelta::seconds(1))
        .await
        .unwrap()
        .is_empty());
    let failing = store.failed_by_runbook(start, 10).await.unwrap();
    let failing: Vec<(String, i64)> = failing.into_iter().map(|f| (f.runbook, f.failed)).collect();
    assert_eq!(failing, vec![("b".to_string(), 2), ("a".to_string(), 1)]);
    let top = store.failed_by_runbook(start, 1).await.unwrap();
    assert_eq!(top.len(), 1);
    // Only failures of jobs created since the given time count.
    let recent = store.failed_by_runbook(cut, 10).await.unwrap();
    assert_eq!(recent.len(), 2);
    store.close().await;
}

/// Child half of `acknowledged_inserts_survive_kill_9`: only active when the parent sets
/// `FERRY_STORE_KILL_CHILD` (the store, see `Harness::spec`). Inserts jobs forever, printing
/// each id once `insert_job` returned.
#[test]
fn kill_9_child() {
    let Ok(spec) = std::env::var("FERRY_STORE_KILL_CHILD") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(harness::open_spec(&spec).await);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let j = job("s", "r");
                    let id = j.id;
                    store.insert_job(j).await.unwrap();
                    println!("ACK {id}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

async fn acknowledged_inserts_survive_kill_9(h: Harness) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_9_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("FERRY_STORE_KILL_CHILD", h.spec())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        let mut ids = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                ids.push(id.parse::<JobId>().unwrap());
                if ids.len() == 500 {
                    break;
                }
            }
        }
        ids
    });
    // Never hang the suite: a child that stops printing fails the test after a minute.
    let acked = tokio::time::timeout(Duration::from_secs(60), reader).await;
    child.kill().unwrap(); // SIGKILL while inserts are in flight
    let acked = acked.expect("child stalled").unwrap();
    child.wait().unwrap();
    assert_eq!(acked.len(), 500);
    let store = h.open().await;
    for id in &acked {
        assert!(
            store.get_job(*id).await.unwrap().is_some(),
            "acknowledged job {id} lost"
        );
    }
    store.close().await;
}

async fn renew_lease_only_for_the_owner_of_a_running_job(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    assert!(
        !store.renew_lease(id, "w1", LEASE).await.unwrap(),
        "not running yet"
    );
    // Claimed with a lease that is already over...
    let past = Utc::now() - TimeDelta::minutes(5);
    store.claim_job("w1", past, LEASE).await.unwrap().unwrap();
    assert!(
        !store.renew_lease(id, "w2", LEASE).await.unwrap(),
        "other worker"
    );
    // ...renewed by its owner, so no other worker can claim it.
    assert!(store.renew_lease(id, "w1", LEASE).await.unwrap());
    assert!(store
        .claim_job("w2", Utc::now(), LEASE)
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn purge_finished_jobs_removes_old_terminal_jobs_and_their_steps(h: Harness) {
    let store = h.open().await;
    let mut finished = Vec::new();
    for _ in 0..3 {
        let id = insert(&store, job("s", "r")).await;
        claim(&store).await.unwrap();
        let mut cp = done(id, JobStatus::Finished);
        cp.step = Some(step(id, "a", 0));
        store.checkpoint(cp).await.unwrap();
        finished.push(id);
    }
    let queued = insert(&store, job("s", "r")).await;
    // Nothing finished before an hour ago.
    let hour_ago = Utc::now() - TimeDelta::hours(1);
    assert_eq!(store.purge_finished_jobs(hour_ago, 100).await.unwrap(), 0);
    let later = Utc::now() + TimeDelta::seconds(1);
    assert_eq!(store.purge_finished_jobs(later, 2).await.unwrap(), 2);
    assert_eq!(store.purge_finished_jobs(later, 2).await.unwrap(), 1);
    for id in &finished {
        assert!(store.get_job(*id).await.unwrap().is_none());
        assert!(store.job_steps(*id).await.unwrap().is_empty());
    }
    assert!(store.get_job(queued).await.unwrap().is_some());
    store.close().await;
}

async fn step_times_keep_microseconds(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    claim(&store).await.unwrap();
    let mut s = step(id, "fast", 1);
    // A 37 µs step: with millisecond storage it would read back as 0 ms (or 1 ms).
    let start = chrono::DateTime::from_timestamp_micros(1_764_460_800_123_456).unwrap();
    s.started_at = start;
    s.finished_at = start + TimeDelta::microseconds(37);
    store
        .checkpoint(Checkpoint {
            step: Some(s),
            ..done(id, JobStatus::Running)
        })
        .await
        .unwrap();
    let steps = store.job_steps(id).await.unwrap();
    assert_eq!(steps[0].started_at, start);
    assert_eq!(
        (steps[0].finished_at - steps[0].started_at).num_microseconds(),
        Some(37)
    );
    store.close().await;
}

/// `kv_put_if_absent` writes only when the key is absent or expired (a replay window: the
/// first writer wins, a second write of the same key is refused until the entry expires).
async fn kv_put_if_absent_is_check_and_set_with_expiry(h: Harness) {
    let store = h.open().await;
    let ttl = Some(Duration::from_secs(2));
    assert!(store
        .kv_put_if_absent("ns", "jti-1", &json!(1), ttl)
        .await
        .unwrap());
    assert!(!store
        .kv_put_if_absent("ns", "jti-1", &json!(2), ttl)
        .await
        .unwrap());
    assert_eq!(store.kv_get("ns", "jti-1").await.unwrap(), Some(json!(1)));
    // Another namespace is independent.
    assert!(store
        .kv_put_if_absent("other", "jti-1", &json!(3), None)
        .await
        .unwrap());
    // A value without expiry is never replaced.
    assert!(!store
        .kv_put_if_absent("other", "jti-1", &json!(4), None)
        .await
        .unwrap());
    // Once expired, the key can be taken again.
    let mut taken = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if store
            .kv_put_if_absent("ns", "jti-1", &json!(5), None)
            .await
            .unwrap()
        {
            taken = true;
            break;
        }
    }
    assert!(taken, "the expired entry was never replaced");
    assert_eq!(store.kv_get("ns", "jti-1").await.unwrap(), Some(json!(5)));
    store.close().await;
}

async fn a_running_job_whose_lease_expired_is_claimed_again_with_its_state(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    // w1 claims it; its lease ends one second after a claim time in the past.
    let past = Utc::now() - TimeDelta::minutes(5);
    let first = store
        .claim_job("w1", past, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.attempts, 1);
    // w1 checkpointed some progress before it went silent.
    let mut cp = done(id, JobStatus::Running);
    cp.state = json!({"cursor": 7});
    cp.step = Some(step(id, "a", 0));
    store.checkpoint(cp).await.unwrap();
    // w2 finds it: the lease is over.
    let again = store
        .claim_job("w2", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("expired lease is claimable");
    assert_eq!(again.id, id);
    assert_eq!(again.status, JobStatus::Running);
    assert_eq!(again.attempts, 2);
    assert_eq!(
        again.state,
        json!({"cursor": 7}),
        "resumes from its checkpoint"
    );
    // w1 has lost it: its renewal fails; w2 now holds it.
    assert!(!store.renew_lease(id, "w1", LEASE).await.unwrap());
    assert!(store.renew_lease(id, "w2", LEASE).await.unwrap());
    // Nothing else to claim: the job is leased by w2 until well after now.
    assert!(store
        .claim_job("w3", Utc::now(), LEASE)
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn a_renewed_lease_is_not_stolen(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    // Claimed with a lease that would be over by now...
    let past = Utc::now() - TimeDelta::minutes(5);
    store
        .claim_job("w1", past, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    // ...but its owner renews it before anyone else looks.
    assert!(store.renew_lease(id, "w1", LEASE).await.unwrap());
    assert!(
        store
            .claim_job("w2", Utc::now(), LEASE)
            .await
            .unwrap()
            .is_none(),
        "a renewed lease must not be claimed by another worker"
    );
    assert_eq!(
        store.get_job(id).await.unwrap().unwrap().attempts,
        1,
        "claimed once"
    );
    store.close().await;
}

async fn a_checkpoint_from_a_worker_whose_job_was_taken_over_is_refused(h: Harness) {
    let store = h.open().await;
    let id = insert(&store, job("s", "r")).await;
    // w1 claims with a lease that is already over; w2 takes the job over.
    let past = Utc::now() - TimeDelta::minutes(5);
    store
        .claim_job("w1", past, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    store
        .claim_job("w2", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("the expired lease is claimed again");
    let by = |owner: &str, state: Value| Checkpoint {
        step: Some(step(id, "late", 1)),
        state,
        owner: Some(owner.to_string()),
        ..done(id, JobStatus::Running)
    };
    // The old owner's late checkpoint must not land: neither its step nor its state.
    let refused = store.checkpoint(by("w1", json!({"by": "w1"}))).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost)),
        "expected LeaseLost, got {refused:?}"
    );
    assert!(store.job_steps(id).await.unwrap().is_empty());
    let rec = store.get_job(id).await.unwrap().unwrap();
    assert_ne!(rec.state, json!({"by": "w1"}));
    assert_eq!(rec.status, JobStatus::Running);
    // The new owner's checkpoint lands, and so does an unowned one (`ferry run`).
    store
        .checkpoint(by("w2", json!({"by": "w2"})))
        .await
        .unwrap();
    assert_eq!(
        store.get_job(id).await.unwrap().unwrap().state,
        json!({"by": "w2"})
    );
    // Once the job has ended, even its last owner cannot write to it any more.
    store
        .checkpoint(Checkpoint {
            owner: Some("w2".into()),
            ..done(id, JobStatus::Finished)
        })
        .await
        .unwrap();
    let after_end = store.checkpoint(by("w2", json!({"by": "late"}))).await;
    assert!(matches!(after_end, Err(StoreError::LeaseLost)));
    store.close().await;
}

async fn an_expired_lease_keeps_its_concurrency_key(h: Harness) {
    let store = h.open().await;
    let a = insert(&store, keyed("k")).await;
    let b = insert(&store, keyed("k")).await;
    let past = Utc::now() - TimeDelta::minutes(5);
    let first = store
        .claim_job("w1", past, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, a);
    // The expired job is taken over; the second job of the key still waits for it.
    assert_eq!(claim(&store).await, Some(a));
    assert_eq!(claim(&store).await, None);
    store
        .checkpoint(done(a, JobStatus::Finished))
        .await
        .unwrap();
    assert_eq!(claim(&store).await, Some(b));
    store.close().await;
}

fn kv_claim(key: &str, ttl: Option<Duration>) -> KvClaim {
    KvClaim {
        ns: "conn".into(),
        key: key.into(),
        value: json!(key),
        ttl,
    }
}

fn claiming(keys: &[&str]) -> NewJob {
    NewJob {
        claims: keys
            .iter()
            .map(|k| kv_claim(k, Some(Duration::from_secs(120))))
            .collect(),
        ..job("s", "r")
    }
}

async fn job_count(store: &dyn Store) -> i64 {
    store
        .count_by_status()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

async fn insert_claims_keys_in_the_same_transaction(h: Harness) {
    let store = h.open().await;
    insert(&store, claiming(&["jti-1"])).await;
    assert_eq!(
        store.kv_get("conn", "jti-1").await.unwrap(),
        Some(json!("jti-1"))
    );
    // The key is held: no job, no claim.
    assert_eq!(
        store
            .insert_job(claiming(&["jti-2", "jti-1"]))
            .await
            .unwrap(),
        InsertOutcome::ClaimTaken {
            index: 1,
            key: "jti-1".into()
        }
    );
    assert_eq!(job_count(&store).await, 1);
    assert_eq!(store.kv_get("conn", "jti-2").await.unwrap(), None);
    // A key written by kv_put_if_absent is held the same way, and vice versa.
    assert!(store
        .kv_put_if_absent("conn", "jti-3", &json!(1), None)
        .await
        .unwrap());
    assert!(matches!(
        store.insert_job(claiming(&["jti-3"])).await.unwrap(),
        InsertOutcome::ClaimTaken { index: 0, .. }
    ));
    assert!(!store
        .kv_put_if_absent("conn", "jti-1", &json!(1), None)
        .await
        .unwrap());
    // A duplicate job makes its claims.
    let first = JobId::new_v4();
    insert(
        &store,
        NewJob {
            id: first,
            dedup_key: Some("delivery-1".into()),
            ..claiming(&["jti-4"])
        },
    )
    .await;
    assert_eq!(
        store
            .insert_job(NewJob {
                dedup_key: Some("delivery-1".into()),
                ..claiming(&["jti-5"])
            })
            .await
            .unwrap(),
        InsertOutcome::Duplicate { existing: first }
    );
    assert!(store.kv_get("conn", "jti-5").await.unwrap().is_some());
    // A job that cannot be stored (its id exists) leaves no claim behind.
    let res = store
        .insert_job(NewJob {
            id: first,
            ..claiming(&["jti-6", "jti-7"])
        })
        .await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    assert_eq!(store.kv_get("conn", "jti-6").await.unwrap(), None);
    assert_eq!(store.kv_get("conn", "jti-7").await.unwrap(), None);
    insert(&store, claiming(&["jti-6", "jti-7"])).await;
    // An expired claim can be made again.
    let short = NewJob {
        claims: vec![kv_claim("jti-8", Some(Duration::from_millis(100)))],
        ..job("s", "r")
    };
    insert(&store, short.clone()).await;
    let mut again = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = NewJob {
            id: JobId::new_v4(),
            ..short.clone()
        };
        if store.insert_job(next).await.unwrap() == InsertOutcome::Created {
            again = true;
            break;
        }
    }
    assert!(again, "the expired claim was never made again");
    store.close().await;
}

async fn concurrent_inserts_claiming_one_key_store_exactly_one_job(h: Harness) {
    let store = Arc::new(h.open().await);
    let taken = insert(&*store, job("s", "r")).await;
    // First one key per insert (claimed in one statement per batch), then with some inserts
    // claiming two keys (claimed insert by insert).
    for (round, two_keys) in [("a", false), ("b", true)] {
        let mut handles = Vec::new();
        // 20 keys, each claimed by 25 concurrent inserts; some carry a concurrency key; one in
        // eleven reuses a job id and must fail without keeping its claim.
        for i in 0..500usize {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let key = format!("{round}-{}", i % 20);
                let mut j = if two_keys && i % 7 == 0 {
                    claiming(&[&key, &format!("{round}-extra-{i}")])
                } else {
                    claiming(&[&key])
                };
                if i % 5 == 0 {
                    j.concurrency_key = Some("K".into());
                }
                if i % 11 == 3 {
                    j.id = taken;
                }
                (i, key, store.insert_job(j).await)
            }));
        }
        let mut created = std::collections::HashMap::new();
        for h in handles {
            let (i, key, res) = h.await.unwrap();
            match res {
                Ok(InsertOutcome::Created) => *created.entry(key).or_insert(0) += 1,
                Ok(InsertOutcome::ClaimTaken { index: 0, key: k }) => assert_eq!(k, key),
                Err(StoreError::Conflict(_)) => assert_eq!(i % 11, 3),
                other => panic!("insert {i}: {other:?}"),
            }
        }
        // Every key claimed by exactly one stored job (a failed insert released its claim, so
        // another insert could make it).
        assert_eq!(created.len(), 20, "{round}: {created:?}");
        assert!(created.values().all(|n| *n == 1), "{round}: {created:?}");
        for i in 0..20 {
            let key = format!("{round}-{i}");
            assert!(store.kv_get("conn", &key).await.unwrap().is_some(), "{key}");
        }
    }
    assert_eq!(job_count(&*store).await, 41);
    store.close().await;
}

/// After a load has grown the WAL file past 64 MiB, the first quiet interval cuts it back
/// (off the writer's path), so the disk is not kept busy by a file the load no longer needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_wal_file_is_cut_back_once_writes_stop() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(&dir.path().join("data/ferry.db"), StoreOptions::default())
        .await
        .expect("open store");
    let wal = dir.path().join("data/ferry.db-wal");
    let big = "x".repeat(32 * 1024);
    // The largest size seen: on a loaded machine a pause between two inserts can already let
    // the checkpointer cut the file back before the loop ends.
    let mut grown = 0;
    for _ in 0..2_500 {
        let mut j = job("s", "r");
        j.trigger_output = json!({ "big": big });
        insert(&store, j).await;
        grown = grown.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(
        grown > 64 * 1024 * 1024,
        "the WAL grew to {grown} bytes only"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if len < 1024 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL file is still {len} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing was lost.
    assert_eq!(
        store
            .count_by_status()
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum::<i64>(),
        2_500
    );
    store.close().await;
}

async fn solution_version_and_test_flag_round_trip_on_every_insert_path(h: Harness) {
    let store = Arc::new(h.open().await);
    // A job stored without a version reads back as None / not a test.
    let plain = insert(&*store, job("s", "r")).await;
    // Concurrent inserts are group-committed as multi-row INSERTs (no concurrency key) and
    // single INSERTs (with one): each keeps its own version and test flag.
    let mut handles = Vec::new();
    for i in 0..300usize {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut j = if i % 3 == 0 {
                keyed(&format!("k{}", i % 7))
            } else {
                job("s", "r")
            };
            j.solution_version = Some(format!("sha256:{i:04}"));
            j.test = i % 2 == 1;
            let id = j.id;
            assert_eq!(store.insert_job(j).await.unwrap(), InsertOutcome::Created);
            (i, id)
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    assert!(store.writer_stats().largest_batch > 1);
    for (i, id) in &ids {
        let rec = store.get_job(*id).await.unwrap().expect("job");
        assert_eq!(
            rec.solution_version,
            Some(format!("sha256:{i:04}")),
            "job {i}"
        );
        assert_eq!(rec.test, i % 2 == 1, "job {i}");
    }
    let rec = store.get_job(plain).await.unwrap().expect("job");
    assert_eq!((rec.solution_version, rec.test), (None, false));
    // list_jobs and claim_job carry them too.
    let page = store
        .list_jobs(&JobFilter {
            limit: 500,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.iter().filter(|j| j.test).count(), 150);
    let claimed = store
        .claim_job("w1", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("a job");
    assert_eq!(claimed.id, plain);
    let claimed = store
        .claim_job("w1", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("a job");
    assert!(claimed.solution_version.is_some());
    store.close().await;
}

/// Creation times follow seq only roughly (a clock step back, several nodes): a page of a time
/// range is ordered by (created_at, seq), newest first, and paging through it with the seq
/// cursor yields every job of the range exactly once, also when the cursor's job was deleted.
async fn list_jobs_pages_a_time_range_by_creation_time_exactly(h: Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(insert(&store, job("s", "a")).await);
    }
    let mut seqs = Vec::new();
    for id in &ids {
        seqs.push(store.get_job(*id).await.unwrap().unwrap().seq);
    }
    store.close().await;
    // Creation times (ms) of the jobs in seq order: not monotonic, with ties.
    let created = [1_000i64, 3_000, 2_000, 2_000, 5_000, 4_000, 2_000];
    let set = |seq: i64, ms: i64| format!("UPDATE jobs SET created_at = {ms} WHERE seq = {seq}");
    match &h {
        Harness::Sqlite(dir) => {
            use sqlx::Connection;
            let url = format!("sqlite:{}", dir.path().join("data/ferry.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            for (seq, ms) in seqs.iter().zip(created) {
                sqlx::query(&set(*seq, ms))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            conn.close().await.unwrap();
        }
        Harness::Postgres(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for (seq, ms) in seqs.iter().zip(created) {
                sqlx::query(&set(*seq, ms))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            conn.close().await.unwrap();
        }
    }
    let store = h.open().await;
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
    let page_through = |from: Option<i64>, to: Option<i64>, first: Option<i64>| {
        let store = &store;
        async move {
            let mut seen = Vec::new();
            let mut before = first;
            loop {
                let page = store
                    .list_jobs(&JobFilter {
                        created_from: from.map(at),
                        created_to: to.map(at),
                        limit: 2,
                        before_seq: before,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert!(page.jobs.len() <= 2);
                seen.extend(page.jobs.iter().map(|j| j.id));
                match page.next_before_seq {
                    Some(b) => before = Some(b),
                    None => break,
                }
            }
            seen
        }
    };
    let j = |i: usize| ids[i];
    // [2000, 5000): newest first by creation time, ties newest seq first.
    assert_eq!(
        page_through(Some(2_000), Some(5_000), None).await,
        vec![j(5), j(1), j(6), j(3), j(2)]
    );
    assert_eq!(
        page_through(None, Some(2_001), None).await,
        vec![j(6), j(3), j(2), j(0)]
    );
    assert_eq!(
        page_through(Some(3_000), None, None).await,
        vec![j(4), j(5), j(1)]
    );
    assert!(page_through(Some(6_000), None, None).await.is_empty());
    // Without a time range the list stays in seq order.
    let all = store.list_jobs(&JobFilter::default()).await.unwrap();
    let rev: Vec<_> = ids.iter().rev().copied().collect();
    assert_eq!(all.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), rev);
    // The cursor's job deleted since: the list goes on from the nearest older job still stored.
    store.close().await;
    let delete = format!("DELETE FROM jobs WHERE seq = {}", seqs[6]);
    match &h {
        Harness::Sqlite(dir) => {
            use sqlx::Connection;
            let url = format!("sqlite:{}", dir.path().join("data/ferry.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(&delete).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Harness::Postgres(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(&delete).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
    let store = h.open().await;
    let page = store
        .list_jobs(&JobFilter {
            created_from: Some(at(2_000)),
            created_to: Some(at(5_000)),
            before_seq: Some(seqs[6]),
            ..Default::default()
        })
        .await
        .unwrap();
    // Stand-in: job 5 (4000 ms), itself included.
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![j(5), j(1), j(3), j(2)]
    );
    store.close().await;
}

both_stores!(
    acknowledged_writes_are_on_disk_without_close,
    acknowledged_inserts_survive_kill_9,
    insert_get_and_fields_round_trip,
    list_jobs_filters_and_pages_newest_first,
    dedup_key_is_unique_per_solution_and_runbook,
    claim_is_fifo_and_marks_running_with_lease,
    concurrency_key_serializes_jobs,
    waiting_job_is_claimable_only_after_next_run_at,
    checkpoint_persists_steps_and_state,
    recover_interrupted_requeues_running_jobs_keeping_state,
    requeue_only_failed_jobs,
    step_outputs_reads_the_latest_record_of_an_invocation,
    kv_put_get_delete_and_ttl,
    locks_contend_expire_and_release_by_owner_only,
    group_commit_many_concurrent_inserts_with_failures_isolated,
    concurrent_claims_never_hand_out_a_job_twice,
    data_survives_close_and_reopen,
    usable_as_trait_object,
    concurrent_duplicates_resolve_to_one_job,
    due_waiting_jobs_are_claimed_before_queued_ones,
    renew_lease_only_for_the_owner_of_a_running_job,
    purge_finished_jobs_removes_old_terminal_jobs_and_their_steps,
    step_times_keep_microseconds,
    kv_put_if_absent_is_check_and_set_with_expiry,
    a_running_job_whose_lease_expired_is_claimed_again_with_its_state,
    a_renewed_lease_is_not_stolen,
    a_checkpoint_from_a_worker_whose_job_was_taken_over_is_refused,
    an_expired_lease_keeps_its_concurrency_key,
    insert_claims_keys_in_the_same_transaction,
    concurrent_inserts_claiming_one_key_store_exactly_one_job,
    solution_version_and_test_flag_round_trip_on_every_insert_path,
    list_jobs_filters_by_creation_time_and_counts_recent_activity,
    list_jobs_pages_a_time_range_by_creation_time_exactly,
);

/// PostgreSQL: a database that lacks migrations is refused unless the store may migrate it
/// (`ferry migrate` does so explicitly), and one migrated by a newer Ferry is always refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_is_checked_against_this_build() {
    use ferry_store::{PgStore, PgStoreOptions};
    let Some(Harness::Postgres(url)) =
        Harness::postgres("postgres_schema_is_checked_against_this_build")
    else {
        return;
    };
    let no_migrate = PgStoreOptions {
        migrate: false,
        ..PgStoreOptions::default()
    };
    match PgStore::open(&url, no_migrate.clone()).await {
        Err(StoreError::Schema(m)) => assert!(m.contains("ferry migrate"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("an empty database was accepted without migrations"),
    }
    let before = PgStore::migrate(&url).await.expect("migrate");
    assert_eq!(before.applied, None);
    assert!(before.pending > 0);
    let store = PgStore::open(&url, no_migrate.clone())
        .await
        .expect("migrated");
    let status = store.schema_status().await.unwrap();
    assert_eq!((status.applied, status.pending), (Some(status.known), 0));
    store.close().await;
    // A migration this build does not know, as a newer Ferry would have left it.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000001, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for opts in [no_migrate, PgStoreOptions::default()] {
        match PgStore::open(&url, opts).await {
            Err(StoreError::Schema(m)) => assert!(m.contains("newer"), "{m}"),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a database with a newer schema was accepted"),
        }
    }
    assert!(matches!(
        PgStore::migrate(&url).await,
        Err(StoreError::Schema(_))
    ));
}

/// PostgreSQL: a job stored through one store (node) wakes the idle workers of another at once
/// (LISTEN/NOTIFY), and so does a concurrency key handed on by a terminal checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_other_nodes_through_notify() {
    let Some(h) = Harness::postgres("postgres_wakes_other_nodes_through_notify") else {
        return;
    };
    let a = h.open().await;
    let b = h.open().await;
    let wake = b.wakeups().expect("PostgreSQL raises wake-ups");
    assert!(a.wakeups().is_some());
    // Let b's listener connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let woken = wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let first = insert(&a, keyed("K")).await;
    let second = insert(&a, keyed("K")).await;
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("the insert on node a did not wake node b");
    assert_eq!(claim(&b).await, Some(first));
    assert_eq!(claim(&b).await, None, "the second job waits for its key");
    let woken = wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    a.checkpoint(done(first, JobStatus::Finished))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("the key handed on did not wake node b");
    assert_eq!(claim(&b).await, Some(second));
    a.close().await;
    b.close().await;
}
