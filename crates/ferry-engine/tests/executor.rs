//! The executor against a real SQLite store, without an `Engine`: the narrow `ExecEnv` is
//! built by hand. Every way a job could lose or repeat work silently ends in a visible outcome.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::mapping::Expressions;
use ferry_core::schema::Schema;
use ferry_core::secrets::Secrets;
use ferry_engine::action::{
    Action, ActionContext, ActionKind, ActionSpec, Output, Services, Signal,
};
use ferry_engine::executor::{run_job, ExecEnv, ExecLimits, RunEnd, RunbookSource};
use ferry_engine::http::{HttpClient, HttpLimits};
use ferry_engine::metrics::Metrics;
use ferry_engine::{compile_solution, CompiledRunbook, CompiledSolution, Registry};
use ferry_store::{
    Checkpoint, InsertOutcome, JobFilter, JobId, JobPage, JobRecord, JobStatus, NewJob,
    SqliteStore, StepRecord, StepStatus, Store, StoreError, StoreOptions,
};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Raises Finish without writing its message to the log itself.
struct QuietFinish(ActionSpec);

#[async_trait]
impl Action for QuietFinish {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, _ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        Err(Signal::Finish("Nothing left to do".into()))
    }
}

fn registry() -> Registry {
    let mut r = Registry::builtin();
    r.connector(ferry_engine::ConnectorSpec::new("test", "Test actions"));
    r.action(QuietFinish(ActionSpec {
        name: "test.quiet_finish",
        description: "Finish without logging",
        input: vec![],
        outputs: vec![Schema::new("output", vec![])],
        nested: false,
        kind: ActionKind::Normal,
        connection: None,
    }));
    r
}

/// A store that delegates to SQLite, records the size of every checkpointed state, and can be
/// told to refuse checkpoints.
struct Recording {
    inner: SqliteStore,
    /// Refuse every checkpoint once this many were written (negative: never).
    refuse_after: AtomicI64,
    written: AtomicI64,
    /// (branch steps checkpointed so far, encoded state size) per checkpoint.
    sizes: Mutex<Vec<usize>>,
}

#[async_trait]
impl Store for Recording {
    async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        self.inner.insert_job(job).await
    }
    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<JobRecord>, StoreError> {
        self.inner.claim_job(worker, now, lease).await
    }
    async fn checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        let limit = self.refuse_after.load(Ordering::SeqCst);
        if limit >= 0 && self.written.load(Ordering::SeqCst) >= limit {
            return Err(StoreError::Invalid("disk on fire (test)".into()));
        }
        self.sizes
            .lock()
            .push(serde_json::to_string(&cp.state).unwrap().len());
        self.inner.checkpoint(cp).await?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.inner.get_job(id).await
    }
    async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage, StoreError> {
        self.inner.list_jobs(filter).await
    }
    async fn job_steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.job_steps(id).await
    }
    async fn step_outputs(
        &self,
        id: JobId,
        step_id: &str,
        invocation: i64,
    ) -> Result<Option<Value>, StoreError> {
        self.inner.step_outputs(id, step_id, invocation).await
    }
    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        self.inner.recover_interrupted().await
    }
    async fn requeue_job(&self, id: JobId, state: Value) -> Result<(), StoreError> {
        self.inner.requeue_job(id, state).await
    }
    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_wakeup().await
    }
    async fn count_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        self.inner.count_by_status().await
    }
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.inner.kv_get(ns, key).await
    }
    async fn kv_put(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.inner.kv_put(ns, key, value, ttl).await
    }
    async fn kv_put_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.inner.kv_put_if_absent(ns, key, value, ttl).await
    }
    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        self.inner.kv_delete(ns, key).await
    }
    async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.lock_acquire(key, token, ttl).await
    }
    async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        self.inner.lock_release(key, token).await
    }
    async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.renew_lease(id, worker, lease).await
    }
    async fn purge_finished_jobs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.inner.purge_finished_jobs(before, limit).await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }
}

struct Loaded(Arc<CompiledSolution>);

impl RunbookSource for Loaded {
    fn runbook(
        &self,
        solution: &str,
        runbook: &str,
    ) -> Option<(Arc<CompiledSolution>, Arc<CompiledRunbook>)> {
        (self.0.name == solution)
            .then(|| self.0.runbooks.get(runbook).cloned())
            .flatten()
            .map(|r| (self.0.clone(), r))
    }
}

/// Everything `ExecEnv` borrows.
struct Harness {
    store: Arc<Recording>,
    services: Services,
    exprs: Expressions,
    metrics: Metrics,
    stopping: AtomicBool,
    notify: Notify,
    loaded: Loaded,
    limits: ExecLimits,
    _tmp: tempfile::TempDir,
}

fn write_solution(dir: &Path, runbooks: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(dir.join("solution.yaml"), "name: t\n").unwrap();
    for (name, steps) in runbooks {
        let text = format!(
            "name: {name}\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    \
             body_schema:\n      - {{ id: items, type: string, array: true }}\nsteps:\n{steps}"
        );
        std::fs::write(dir.join("runbooks").join(format!("{name}.yaml")), text).unwrap();
    }
}

impl Harness {
    async fn new(runbooks: &[(&str, &str)]) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sol");
        write_solution(&dir, runbooks);
        let inner = SqliteStore::open(&tmp.path().join("t.db"), StoreOptions::default())
            .await
            .unwrap();
        let store = Arc::new(Recording {
            inner,
            refuse_after: AtomicI64::new(-1),
            written: AtomicI64::new(0),
            sizes: Mutex::new(Vec::new()),
        });
        let secrets = Arc::new(Secrets::from_master_key(&[3u8; 32]));
        let exprs = Expressions::new();
        let solution = ferry_core::loader::load_solution(&dir).unwrap();
        let compiled = compile_solution(&solution, &registry(), &exprs, &secrets)
            .unwrap_or_else(|d| panic!("{d:?}"));
        Harness {
            services: Services {
                http: HttpClient::new(HttpLimits::default()),
                secrets,
                store: store.clone() as Arc<dyn Store>,
            },
            store,
            exprs,
            metrics: Metrics::default(),
            stopping: AtomicBool::new(false),
            notify: Notify::new(),
            loaded: Loaded(Arc::new(compiled)),
            limits: ExecLimits::default(),
            _tmp: tmp,
        }
    }

    fn env(&self) -> ExecEnv<'_> {
        ExecEnv {
            runbooks: &self.loaded,
            store: &*self.store,
            services: &self.services,
            exprs: &self.exprs,
            metrics: &self.metrics,
            limits: self.limits.clone(),
            stopping: &self.stopping,
            notify: &self.notify,
            lease_owner: None,
            mocks: None,
        }
    }

    /// Insert a job with `state` and claim it.
    async fn claim(&self, runbook: &str, items: Value, state: Value) -> JobRecord {
        let id = uuid::Uuid::now_v7();
        self.store
            .insert_job(NewJob {
                id,
                solution: "t".into(),
                runbook: runbook.into(),
                trigger_output: json!({ "body": { "items": items } }),
                context_id: None,
                concurrency_key: None,
                dedup_key: None,
                state,
                solution_version: None,
                test: false,
                claims: Vec::new(),
            })
            .await
            .unwrap();
        self.reclaim(id).await
    }

    async fn reclaim(&self, id: JobId) -> JobRecord {
        let job = self
            .store
            .claim_job("w", Utc::now(), Duration::from_secs(60))
            .await
            .unwrap()
            .expect("a runnable job");
        assert_eq!(job.id, id);
        job
    }

    async fn job(&self, id: JobId) -> (JobRecord, Vec<StepRecord>) {
        (
            self.store.get_job(id).await.unwrap().unwrap(),
            self.store.job_steps(id).await.unwrap(),
        )
    }
}

const TWO_LOGS: &str = "  - { id: a, action: debug.log_message, input: { message: one } }\n  \
                        - { id: b, action: debug.log_message, input: { message: two } }\n";

const LOOP: &str = "  - id: each\n    action: flow.loop\n    input: { items: \"{{ trigger.body.items }}\" }\n    \
                    each:\n      - { id: log, action: debug.log_message, input: { message: \"{{ item.item }}\" } }\n  \
                    - { id: after, action: debug.log_message, input: { message: done } }\n";

fn step_ids(steps: &[StepRecord]) -> Vec<&str> {
    steps.iter().map(|s| s.step_id.as_str()).collect()
}

#[tokio::test]
async fn a_job_whose_state_cannot_be_read_fails_instead_of_starting_over() {
    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    // Step `a` already ran; the stored position is garbage.
    let bad = json!({"stack": [{"frame": "chain", "key": "", "index": "second"}], "step_seq": 1});
    let job = h.claim("r", json!([]), bad.clone()).await;
    let end = run_job(&h.env(), job.clone()).await;
    assert_eq!(end, RunEnd::Status(JobStatus::Failed));
    let (stored, steps) = h.job(job.id).await;
    assert_eq!(stored.status, JobStatus::Failed);
    let error = stored.error.unwrap();
    assert!(
        error.starts_with("Job state could not be read: ")
            && error.ends_with("the job was stopped instead of starting over"),
        "{error}"
    );
    // Nothing ran again, and the state is kept for inspection.
    assert!(steps.is_empty(), "{:?}", step_ids(&steps));
    assert_eq!(stored.state, bad);
}

#[tokio::test]
async fn a_job_whose_state_does_not_match_its_runbook_fails() {
    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    let other = json!({"stack": [{"frame": "chain", "key": "", "index": 1},
        {"frame": "chain", "key": "check/true", "index": 0}], "step_seq": 2});
    let job = h.claim("r", json!([]), other).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Failed)
    );
    let (stored, steps) = h.job(job.id).await;
    assert!(
        stored
            .error
            .unwrap()
            .contains("does not match the runbook (was it changed since the job started?): unknown chain 'check/true'")
    );
    assert!(steps.is_empty());
}

#[tokio::test]
async fn outputs_too_large_for_the_state_fail_the_step_that_emitted_them() {
    let mut h = Harness::new(&[("r", LOOP)]).await;
    h.limits.max_state_bytes = 4_000;
    let items: Vec<String> = (0..5)
        .map(|i| format!("{i}{}", "x".repeat(1_000)))
        .collect();
    let job = h.claim("r", json!(items), json!({})).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Failed)
    );
    let (stored, steps) = h.job(job.id).await;
    let error = stored.error.unwrap();
    assert!(
        error.starts_with("The step's outputs are larger than the job state limit of 4000 bytes")
            && error.contains("emit them page by page"),
        "{error}"
    );
    // The step is on record as failed; no branch ran.
    assert_eq!(step_ids(&steps), ["each"]);
    assert_eq!(steps[0].status, StepStatus::Failed);
}

#[tokio::test]
async fn a_state_too_large_to_save_fails_the_job_with_the_step_that_produced_it() {
    let mut h = Harness::new(&[("r", LOOP)]).await;
    // The loop's outputs fit, but the state with the first (large) item as the current output
    // of `each` does not.
    h.limits.max_state_bytes = 3_100;
    let items = vec![format!("0{}", "x".repeat(3_000)), "1".to_string()];
    let job = h.claim("r", json!(items), json!({})).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Failed)
    );
    let (stored, steps) = h.job(job.id).await;
    let error = stored.error.unwrap();
    assert!(
        error.starts_with("Job state could not be saved: it would be ")
            && error.contains("more than the limit of 3100 bytes")
            && error.ends_with("(after step 'log')"),
        "{error}"
    );
    // The steps that ran are on record; nothing after them ran.
    assert_eq!(step_ids(&steps), ["each", "log"]);
    assert_eq!(steps[1].status, StepStatus::Completed);
    // Not saved as null: the last state that could be saved stays.
    assert_eq!(stored.state, json!({}));
}

#[tokio::test]
async fn the_finish_message_is_in_the_step_log() {
    let h = Harness::new(&[
        (
            "quiet",
            "  - { id: stop, action: test.quiet_finish }\n  - { id: never, action: debug.log_message, input: { message: x } }\n",
        ),
        (
            "flow",
            "  - { id: stop, action: flow.finish, input: { message: \"Early exit\" } }\n",
        ),
    ])
    .await;
    let job = h.claim("quiet", json!([]), json!({})).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Finished)
    );
    let (stored, steps) = h.job(job.id).await;
    assert_eq!(stored.error, None);
    assert_eq!(step_ids(&steps), ["stop"]);
    assert_eq!(steps[0].status, StepStatus::Finished);
    let messages: Vec<&str> = steps[0].logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["Nothing left to do"]);

    // An action that logs its message itself does not get it twice.
    let job = h.claim("flow", json!([]), json!({})).await;
    run_job(&h.env(), job.clone()).await;
    let (_, steps) = h.job(job.id).await;
    let messages: Vec<&str> = steps[0].logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["Early exit"]);
}

#[tokio::test]
async fn a_job_of_a_runbook_that_is_not_loaded_fails() {
    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    let job = h.claim("gone", json!([]), json!({})).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Failed)
    );
    let (stored, _) = h.job(job.id).await;
    assert_eq!(
        stored.error.as_deref(),
        Some("Runbook 't/gone' is not loaded; the job cannot run")
    );
}

#[tokio::test]
async fn a_refused_checkpoint_is_never_reported_as_written() {
    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    h.store.refuse_after.store(0, Ordering::SeqCst);
    // The failure of a job that cannot run is not claimed to be recorded when it was not.
    let job = h.claim("gone", json!([]), json!({})).await;
    assert_eq!(run_job(&h.env(), job.clone()).await, RunEnd::Interrupted);
    assert_eq!(h.job(job.id).await.0.status, JobStatus::Running);
}

#[tokio::test]
async fn after_a_refused_checkpoint_the_job_resumes_without_repeating_completed_steps() {
    let h = Harness::new(&[("r", LOOP)]).await;
    // Three steps are checkpointed (each, log a, log b), the fourth (log c) is refused.
    h.store.refuse_after.store(3, Ordering::SeqCst);
    let job = h.claim("r", json!(["a", "b", "c", "d"]), json!({})).await;
    assert_eq!(run_job(&h.env(), job.clone()).await, RunEnd::Interrupted);
    assert_eq!(h.job(job.id).await.0.status, JobStatus::Running);

    // The lease expires (here: recovery at start-up) and the job resumes.
    h.store.refuse_after.store(-1, Ordering::SeqCst);
    assert_eq!(h.store.recover_interrupted().await.unwrap(), 1);
    let job = h.reclaim(job.id).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Finished)
    );
    let (_, steps) = h.job(job.id).await;
    assert_eq!(
        step_ids(&steps),
        ["each", "log", "log", "log", "log", "after"]
    );
    let logged: Vec<&str> = steps[1..5]
        .iter()
        .map(|s| s.logs[0].message.as_str())
        .collect();
    // `c` ran twice (at least once), but only its second run is on record; nothing else repeated.
    assert_eq!(logged, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn shutdown_puts_the_job_back_in_the_queue_with_its_position() {
    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    h.stopping.store(true, Ordering::SeqCst);
    let job = h.claim("r", json!([]), json!({})).await;
    assert_eq!(run_job(&h.env(), job.clone()).await, RunEnd::Interrupted);
    let (stored, steps) = h.job(job.id).await;
    assert_eq!(stored.status, JobStatus::Queued);
    assert!(steps.is_empty());
    assert_eq!(stored.state["stack"][0]["frame"], "chain");
}

#[tokio::test]
async fn a_paging_action_keeps_only_its_current_page_in_the_state() {
    let h = Harness::new(&[(
        "r",
        "  - id: gen\n    action: debug.generate_records\n    input: { count: 2000, page_size: 20 }\n    \
         each:\n      - { id: log, action: debug.log_message, input: { message: \"{{ item.name }}\" } }\n  \
         - { id: after, action: debug.log_message, input: { message: done } }\n",
    )])
    .await;
    let job = h.claim("r", json!([]), json!({})).await;
    assert_eq!(
        run_job(&h.env(), job.clone()).await,
        RunEnd::Status(JobStatus::Finished)
    );
    let (_, steps) = h.job(job.id).await;
    // 100 pages of 20 records: each page is one `gen` step and 20 `log` steps, in order.
    assert_eq!(steps.len(), 100 * 21 + 1);
    let logged: Vec<String> = steps
        .iter()
        .filter(|s| s.step_id == "log")
        .map(|s| s.logs[0].message.clone())
        .collect();
    let expected: Vec<String> = (0..2000).map(|i| format!("record-{i}")).collect();
    assert_eq!(logged, expected);
    let gens: Vec<i64> = steps
        .iter()
        .filter(|s| s.step_id == "gen")
        .map(|s| s.invocation)
        .collect();
    assert_eq!(gens, (1..=100).collect::<Vec<_>>());

    // The checkpoints of page 50 and page 100 are no larger than those of page 1: the state
    // holds the rest of the current page and a cursor, not the records already processed.
    let sizes = h.store.sizes.lock().clone();
    // One checkpoint per step, and the final one.
    assert_eq!(sizes.len(), steps.len() + 1);
    let page_max = |p: usize| *sizes[(p - 1) * 21..p * 21].iter().max().unwrap();
    let first = page_max(1);
    for p in [50, 100] {
        let later = page_max(p);
        assert!(
            later as f64 <= first as f64 * 1.25,
            "page {p}: {later} bytes, page 1: {first} bytes"
        );
    }
    // Nor does the state hold the rest of the page: within a page its size only varies with
    // the current record (the outputs stay in the `gen` step's record).
    let page = &sizes[1..21];
    let spread = page.iter().max().unwrap() - page.iter().min().unwrap();
    assert!(spread <= 16, "{page:?}");
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).to_string()
    }
}

#[tokio::test]
async fn the_log_names_the_job_and_the_cause() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    let job = h.claim("r", json!([]), json!({"stack": 5})).await;
    run_job(&h.env(), job.clone()).await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("job failed before it could run"))
        .unwrap_or_else(|| panic!("no failure line in: {text}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&job.id.to_string()), "{line}");
    assert!(line.contains("Job state could not be read"), "{line}");

    h.store.refuse_after.store(0, Ordering::SeqCst);
    let job = h.claim("r", json!([]), json!({})).await;
    assert_eq!(run_job(&h.env(), job.clone()).await, RunEnd::Interrupted);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("checkpoint failed"))
        .unwrap_or_else(|| panic!("no checkpoint line in: {text}"));
    assert!(
        line.contains("ERROR")
            && line.contains(&job.id.to_string())
            && line.contains("disk on fire"),
        "{line}"
    );
}

#[tokio::test]
async fn a_run_whose_lease_belongs_to_another_worker_writes_nothing() {
    let h = Harness::new(&[("r", TWO_LOGS)]).await;
    // The harness claims as worker "w"; this run believes it is "w-old" (its lease was taken
    // over while it was busy): not a single step or state of it may land.
    let job = h.claim("r", json!([]), json!({})).await;
    let mut env = h.env();
    env.lease_owner = Some("w-old");
    assert_eq!(run_job(&env, job.clone()).await, RunEnd::Interrupted);
    let (stored, steps) = h.job(job.id).await;
    assert_eq!(stored.status, JobStatus::Running);
    assert!(steps.is_empty(), "steps of a lost lease were written");
    assert_eq!(stored.state, job.state);
    // The owner of the lease runs it to the end.
    env.lease_owner = Some("w");
    assert_eq!(
        run_job(&env, job.clone()).await,
        RunEnd::Status(JobStatus::Finished)
    );
    assert_eq!(step_ids(&h.job(job.id).await.1), ["a", "b"]);
}
