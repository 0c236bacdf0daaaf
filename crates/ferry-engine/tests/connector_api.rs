//! The connector API through a fake connector registered next to the built-ins: inbound
//! authentication hook, a trigger that answers without a job, the scoped key/value stores
//! (shared across requests, with TTL), custom responses, connection tests and provisioning.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_core::secrets::Secrets;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::connector::{InboundAuth, ProvisionContext, TestContext};
use ferry_engine::executor::{run_job, RunEnd};
use ferry_engine::schemas::{ComputedSchemas, SchemaContext};
use ferry_engine::{
    ConnectionTestResult, Connector, ConnectorSpec, Engine, EngineOptions, InboundRequest,
    IngestOutcome, Parsed, ProvisionKind, ProvisionState, Registry, TestStatus, Trigger,
    TriggerContext, TriggerError, TriggerParse, TriggerResponse, TriggerSpec,
};
use ferry_store::{SqliteStore, Store, StoreOptions};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// A connector with every hook: inbound connections check `x-secret`, outbound ones have a
/// test whose outcome the config chooses.
struct FakeConnector(ConnectorSpec);

#[async_trait]
impl Connector for FakeConnector {
    fn spec(&self) -> &ConnectorSpec {
        &self.0
    }

    async fn authenticate_inbound(&self, auth: &InboundAuth<'_>) -> Result<(), TriggerError> {
        let expected = auth.connection.config["shared_secret"]
            .as_str()
            .unwrap_or_default();
        let expected = auth.reveal(expected)?;
        if auth.request.header("x-secret") != Some(expected.as_str()) {
            return Err(TriggerError::Reject {
                status: 401,
                message: "bad secret".into(),
            });
        }
        Ok(())
    }

    fn has_tester(&self) -> bool {
        true
    }

    async fn test(&self, ctx: &TestContext<'_>) -> ConnectionTestResult {
        match ctx.connection.config["mode"].as_str() {
            Some("ok") => ConnectionTestResult::success("all good"),
            Some("no") => ConnectionTestResult::failed("credentials rejected"),
            _ => ConnectionTestResult::error("cannot reach the system"),
        }
    }
}

/// A trigger that answers `verify` handshakes itself, keeps a replay window of nonces in
/// its own store and a request counter in its connection's store, and fails its first
/// `fail_provisions` provisions.
struct FakeTrigger {
    spec: TriggerSpec,
    provisions: Mutex<HashMap<String, u64>>,
}

#[async_trait]
impl Trigger for FakeTrigger {
    fn spec(&self) -> &TriggerSpec {
        &self.spec
    }

    fn output_schema(&self, _config: &Value) -> Result<Schema, String> {
        Ok(Schema::new(
            "output",
            vec![
                Field::new("event", FieldType::String).required(),
                Field::new("count", FieldType::Integer),
            ],
        ))
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let body: Value = serde_json::from_slice(&ctx.request.body)
            .map_err(|_| TriggerError::bad_request("not JSON"))?;
        let event = body["event"].as_str().unwrap_or_default().to_string();
        if event == "panic" {
            panic!("a bug in the trigger");
        }
        if event == "verify" {
            return Ok(Parsed::Respond(TriggerResponse::text(
                200,
                format!("verified {}", body["challenge"].as_str().unwrap_or("")),
            )));
        }
        if let Some(nonce) = body["nonce"].as_str() {
            let ttl = Duration::from_millis(body["ttl_ms"].as_u64().unwrap_or(60_000));
            if !ctx.kv.put_if_absent(nonce, &json!(true), Some(ttl)).await? {
                return Err(TriggerError::Reject {
                    status: 409,
                    message: "replayed".into(),
                });
            }
        }
        let kv = ctx.connection_kv.as_ref().expect("an inbound connection");
        let count = kv.get("count").await?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
        kv.put("count", &json!(count), None).await?;
        Ok(Parsed::Event(TriggerParse {
            output: json!({ "event": event, "count": count }),
            context_id: None,
            claims: Vec::new(),
        }))
    }

    async fn provision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let fail = ctx.config["fail_provisions"].as_u64().unwrap_or(0);
        let runbook = ctx.runbook.unwrap_or_default().to_string();
        let url = format!("/inbound/fake-sol/{runbook}");
        if !ctx
            .trigger_url
            .as_deref()
            .is_some_and(|u| u.ends_with(&url))
        {
            return Err(format!("wrong trigger URL {:?}", ctx.trigger_url));
        }
        let attempt = {
            let mut p = self.provisions.lock();
            let n = p.entry(runbook).or_insert(0);
            *n += 1;
            *n
        };
        if attempt <= fail {
            return Err(format!("not yet (attempt {attempt})"));
        }
        Ok(())
    }
}

/// How often `DynamicTrigger` computed its output schema.
static TRIGGER_SCHEMAS: AtomicUsize = AtomicUsize::new(0);

/// A trigger whose output schema comes from its connection (like a webhook whose payload
/// fields are discovered from the other system).
struct DynamicTrigger(TriggerSpec);

#[async_trait]
impl Trigger for DynamicTrigger {
    fn spec(&self) -> &TriggerSpec {
        &self.0
    }

    fn output_schema(&self, _config: &Value) -> Result<Schema, String> {
        Ok(Schema::new("output", vec![]))
    }

    fn computes_output_schema(&self) -> bool {
        true
    }

    async fn compute_output_schema(
        &self,
        ctx: &ferry_engine::schemas::TriggerSchemaContext<'_>,
    ) -> Result<Schema, String> {
        ctx.connection.ok_or("no connection")?;
        TRIGGER_SCHEMAS.fetch_add(1, Ordering::SeqCst);
        let field = ctx.config["level_field"].as_str().unwrap_or("level");
        Ok(Schema::new(
            "output",
            vec![
                Field::new("event", FieldType::String).required(),
                Field::new(field, FieldType::Integer),
            ],
        ))
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let output = serde_json::from_slice(&ctx.request.body)
            .map_err(|_| TriggerError::bad_request("not JSON"))?;
        Ok(Parsed::Event(TriggerParse {
            output,
            context_id: None,
            claims: Vec::new(),
        }))
    }
}

/// How often `FakeQuery` computed its schemas.
static COMPUTED: AtomicUsize = AtomicUsize::new(0);

/// An action whose input and output schemas come from its connection ("introspection") and
/// the queried `object`.
struct FakeQuery(ActionSpec);

#[async_trait]
impl Action for FakeQuery {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    fn computes_schemas(&self) -> bool {
        true
    }

    fn schema_selector(&self, raw_input: &Value) -> Value {
        raw_input.get("object").cloned().unwrap_or(Value::Null)
    }

    async fn compute_schemas(&self, ctx: &SchemaContext<'_>) -> Result<ComputedSchemas, Signal> {
        let connection = ctx.connection.ok_or("no connection")?;
        if connection.config["mode"] != "ok" {
            return Err("introspection failed".into());
        }
        COMPUTED.fetch_add(1, Ordering::SeqCst);
        let object = ctx.selector.as_str().unwrap_or("thing");
        Ok(ComputedSchemas {
            input: vec![
                Field::new("object", FieldType::String).required(),
                Field::new("limit", FieldType::Integer),
            ],
            outputs: vec![Schema::new(
                "output",
                vec![
                    Field::new(&format!("{object}_count"), FieldType::Integer),
                    Field::new("limit", FieldType::Integer),
                ],
            )],
        })
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let object = ctx.input_str("object").unwrap_or_default().to_string();
        Ok(vec![Output::new(
            "output",
            json!({ format!("{object}_count"): "3", "limit": ctx.input["limit"], "undeclared": 1 }),
        )])
    }
}

fn registry() -> Registry {
    let mut r = Registry::builtin();
    r.trigger(DynamicTrigger(TriggerSpec {
        name: "fake.dynamic",
        description: "output schema from the connection",
        config: vec![Field::new("level_field", FieldType::String)],
        connection: Some("fake"),
    }));
    r.action(FakeQuery(ActionSpec {
        name: "fake.query",
        description: "a query with computed schemas",
        input: vec![],
        outputs: vec![Schema::new("output", vec![])],
        nested: false,
        kind: ActionKind::Normal,
        connection: Some("fake"),
    }));
    r.connector(FakeConnector(
        ConnectorSpec::new("fake", "A fake connector for tests")
            .inbound(vec![
                Field::new("shared_secret", FieldType::SecretString).required()
            ])
            .outbound(vec![Field::new("mode", FieldType::String).required()]),
    ));
    r.trigger(FakeTrigger {
        spec: TriggerSpec {
            name: "fake.hook",
            description: "fake webhook",
            config: vec![Field::new("fail_provisions", FieldType::Integer)],
            connection: Some("fake"),
        },
        provisions: Mutex::new(HashMap::new()),
    });
    r
}

const SOLUTION: &str = "name: fake-sol
env:
  SECRET: { secret: true, value: s3cr3t }
connections:
  inb:
    connector: fake
    direction: inbound
    config: { shared_secret: \"{{ env.SECRET }}\" }
  good: { connector: fake, direction: outbound, config: { mode: ok } }
  refused: { connector: fake, direction: outbound, config: { mode: no } }
  broken: { connector: fake, direction: outbound, config: { mode: x } }
";

const HOOK: &str = "name: hook
trigger:
  connector: fake
  type: hook
  connection: inb
  config:
    fail_provisions: 2
steps:
  - { id: log, action: debug.log_message, input: { message: \"{{ trigger.event }}\" } }
";

const ANSWERED: &str = "name: answered
trigger:
  connector: fake
  type: hook
  connection: inb
  config:
    respond_with:
      status: 202
      headers: { x-event: \"{{ trigger.event }}\" }
      body: { job: \"{{ job.id }}\", count: \"{{ trigger.count }}\" }
steps:
  - { id: log, action: debug.log_message, input: { message: \"{{ trigger.event }}\" } }
";

fn query_runbook(connection: &str, input: &str) -> String {
    format!(
        "name: query\ntrigger: {{ connector: fake, type: hook, connection: inb }}\nsteps:\n  - id: q\n    action: fake.query\n    connection: {connection}\n    input: {input}\n"
    )
}

async fn engine(dir: &Path) -> (Arc<Engine>, Arc<SqliteStore>) {
    let sol = dir.join("sol");
    std::fs::create_dir_all(sol.join("runbooks")).unwrap();
    std::fs::write(sol.join("solution.yaml"), SOLUTION).unwrap();
    std::fs::write(sol.join("runbooks/hook.yaml"), HOOK).unwrap();
    std::fs::write(sol.join("runbooks/answered.yaml"), ANSWERED).unwrap();
    std::fs::write(
        sol.join("runbooks/query.yaml"),
        query_runbook("good", "{ object: people, limit: \"{{ '5' }}\" }"),
    )
    .unwrap();
    std::fs::write(
        sol.join("runbooks/dynamic.yaml"),
        "name: dynamic\ntrigger: { connector: fake, type: dynamic, connection: inb, config: { level_field: severity } }\nsteps:\n  - { id: log, action: debug.log_message, input: { message: hi } }\n",
    )
    .unwrap();
    std::fs::write(
        sol.join("runbooks/broken-query.yaml"),
        query_runbook("broken", "{ object: people }").replace("name: query", "name: broken-query"),
    )
    .unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.join("t.db"), StoreOptions::default())
            .await
            .unwrap(),
    );
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        Arc::new(Secrets::from_master_key(&[9u8; 32])),
        registry(),
        EngineOptions::default(),
    );
    if let Err(d) = engine.load_dir(&sol) {
        panic!("{d:?}");
    }
    (engine, store)
}

fn request(body: Value, secret: Option<&str>) -> InboundRequest {
    let r = InboundRequest {
        method: "POST".into(),
        body: body.to_string().into(),
        ..Default::default()
    };
    match secret {
        Some(s) => r.with_header("x-secret", s),
        None => r,
    }
}

async fn job_count(store: &SqliteStore) -> i64 {
    store
        .count_by_status()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn the_connectors_inbound_hook_authenticates_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let out = engine
        .ingest("fake-sol", "hook", request(json!({"event": "a"}), None))
        .await;
    assert_eq!(
        out,
        IngestOutcome::Rejected {
            status: 401,
            message: "bad secret".into()
        }
    );
    let out = engine
        .ingest(
            "fake-sol",
            "hook",
            request(json!({"event": "a"}), Some("wrong")),
        )
        .await;
    assert!(matches!(out, IngestOutcome::Rejected { status: 401, .. }));
    assert_eq!(job_count(&store).await, 0);
    let out = engine
        .ingest(
            "fake-sol",
            "hook",
            request(json!({"event": "a"}), Some("s3cr3t")),
        )
        .await;
    assert!(
        matches!(out, IngestOutcome::Accepted { response: None, .. }),
        "{out:?}"
    );
    // `ferry run` skips inbound authentication.
    let out = engine
        .ingest_trusted("fake-sol", "hook", request(json!({"event": "b"}), None))
        .await;
    assert!(matches!(out, IngestOutcome::Accepted { .. }), "{out:?}");
    assert_eq!(job_count(&store).await, 2);
}

#[tokio::test]
async fn a_trigger_can_answer_without_creating_a_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let out = engine
        .ingest(
            "fake-sol",
            "hook",
            request(
                json!({"event": "verify", "challenge": "abc"}),
                Some("s3cr3t"),
            ),
        )
        .await;
    let IngestOutcome::Responded { response } = out else {
        panic!("expected an answer, got {out:?}");
    };
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"verified abc");
    assert_eq!(job_count(&store).await, 0);
}

#[tokio::test]
async fn trigger_and_connection_stores_are_shared_across_requests_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let send = |body: Value| engine.ingest("fake-sol", "hook", request(body, Some("s3cr3t")));
    let first = send(json!({"event": "e", "nonce": "n1", "ttl_ms": 1500})).await;
    let IngestOutcome::Accepted { job_id, .. } = first else {
        panic!("{first:?}")
    };
    let job = store.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(job.trigger_output, json!({"event": "e", "count": 1}));
    // The same nonce is refused while it is in the window …
    let replay = send(json!({"event": "e", "nonce": "n1", "ttl_ms": 1500})).await;
    assert_eq!(
        replay,
        IngestOutcome::Rejected {
            status: 409,
            message: "replayed".into()
        }
    );
    // … the connection's counter is shared by every request (and the other runbook) …
    let other = engine
        .ingest(
            "fake-sol",
            "answered",
            request(json!({"event": "e"}), Some("s3cr3t")),
        )
        .await;
    assert!(matches!(other, IngestOutcome::Accepted { .. }));
    let second = send(json!({"event": "e", "nonce": "n2"})).await;
    let IngestOutcome::Accepted { job_id, .. } = second else {
        panic!("{second:?}")
    };
    let job = store.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(job.trigger_output["count"], 3);
    // … and accepted again once the entry expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match send(json!({"event": "e", "nonce": "n1", "ttl_ms": 1500})).await {
            IngestOutcome::Accepted { .. } => break,
            IngestOutcome::Rejected { status: 409, .. } if Instant::now() < deadline => {}
            other => panic!("the replay window never expired: {other:?}"),
        }
    }
    // Values are sealed at rest.
    let raw = store
        .kv_get("fake-sol/inb", "count")
        .await
        .unwrap()
        .unwrap();
    assert!(ferry_core::secrets::is_envelope(raw.as_str().unwrap()));
}

#[tokio::test]
async fn respond_with_answers_an_accepted_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let out = engine
        .ingest(
            "fake-sol",
            "answered",
            request(json!({"event": "created"}), Some("s3cr3t")),
        )
        .await;
    let IngestOutcome::Accepted {
        job_id,
        response: Some(r),
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(r.status, 202);
    assert!(r
        .headers
        .contains(&("x-event".to_string(), "created".to_string())));
    assert!(r
        .headers
        .contains(&("content-type".to_string(), "application/json".to_string())));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json!({"job": job_id.to_string(), "count": 1}));
    assert!(store.get_job(job_id).await.unwrap().is_some());
}

#[tokio::test]
async fn connection_tests_report_success_failed_and_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, _store) = engine(tmp.path()).await;
    let t = |c: &'static str| {
        let engine = engine.clone();
        async move { engine.test_connection("fake-sol", c).await }
    };
    assert_eq!(
        t("good").await,
        Some(ConnectionTestResult::success("all good"))
    );
    assert_eq!(t("refused").await.unwrap().status, TestStatus::Failed);
    let broken = t("broken").await.unwrap();
    assert_eq!(broken.status, TestStatus::Error);
    assert_eq!(broken.message, "cannot reach the system");
    // Inbound connections have no tester (runtime_model §5.5).
    assert_eq!(
        t("inb").await,
        Some(ConnectionTestResult::error(
            "Connector does not provide a config tester."
        ))
    );
    assert_eq!(t("nope").await, None);
    assert_eq!(engine.test_connection("nope", "good").await, None);
}

#[tokio::test]
async fn a_failing_provision_is_retried_with_backoff_until_it_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, _store) = engine(tmp.path()).await;
    let state = |engine: &Engine| {
        engine
            .provisioning("fake-sol")
            .into_iter()
            .find(|s| s.kind == ProvisionKind::Trigger && s.name == "hook")
            .unwrap()
    };
    assert_eq!(state(&engine).state, ProvisionState::Pending);
    let tasks = engine.start_provisioning("http://127.0.0.1:1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_failure = None;
    loop {
        let s = state(&engine);
        if s.state == ProvisionState::Failed {
            saw_failure = s.last_error.clone();
        }
        if s.state == ProvisionState::Provisioned {
            assert_eq!(s.attempts, 3);
            assert_eq!(s.last_error, None);
            break;
        }
        assert!(Instant::now() < deadline, "never provisioned: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failure = saw_failure.expect("the failed state was visible");
    assert!(failure.starts_with("not yet (attempt "), "{failure}");
    for t in tasks {
        t.await.unwrap();
    }
    // Every connection and the other trigger provisioned on the first attempt.
    for s in engine.provisioning("fake-sol") {
        assert_eq!(s.state, ProvisionState::Provisioned, "{s:?}");
    }
    engine.deprovision_all("http://127.0.0.1:1").await;
    for s in engine.provisioning("fake-sol") {
        assert_eq!(s.state, ProvisionState::Deprovisioned, "{s:?}");
    }
}

#[tokio::test]
async fn unknown_and_missing_connection_config_keys_are_load_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = tmp.path().join("bad");
    std::fs::create_dir_all(sol.join("runbooks")).unwrap();
    std::fs::write(
        sol.join("solution.yaml"),
        "name: bad\nconnections:\n  out:\n    connector: fake\n    direction: outbound\n    config:\n      mood: ok\n",
    )
    .unwrap();
    std::fs::write(
        sol.join("runbooks/r.yaml"),
        "name: r\ntrigger: { connector: json_endpoint, type: endpoint, config: { body_schema: [] } }\nsteps:\n  - { id: log, action: debug.log_message, input: { message: hi } }\n",
    )
    .unwrap();
    let store = Arc::new(
        SqliteStore::open(&tmp.path().join("t.db"), StoreOptions::default())
            .await
            .unwrap(),
    );
    let engine = Engine::new(
        store as Arc<dyn Store>,
        Arc::new(Secrets::from_master_key(&[9u8; 32])),
        registry(),
        EngineOptions::default(),
    );
    let diags = engine.load_dir(&sol).err().expect("load errors");
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter().any(|d| d.ends_with(
            "solution.yaml:7: Connection 'out': unknown config key 'mood' for an outbound 'fake' connection (allowed: mode)"
        )),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|d| d.contains("Connection 'out': config invalid: Field 'mode' is required.")),
        "{text:#?}"
    );
}

/// Run one event through `runbook` and return the job with its steps.
async fn run_event(engine: &Engine, store: &SqliteStore, runbook: &str) -> (RunEnd, Value) {
    let out = engine
        .ingest(
            "fake-sol",
            runbook,
            request(json!({"event": "go"}), Some("s3cr3t")),
        )
        .await;
    let IngestOutcome::Accepted { job_id, .. } = out else {
        panic!("{out:?}")
    };
    let job = store
        .claim_job("t", chrono::Utc::now(), Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a runnable job");
    assert_eq!(job.id, job_id);
    let end = run_job(&engine.exec_env(), job).await;
    let job = store.get_job(job_id).await.unwrap().unwrap();
    let steps = store.job_steps(job_id).await.unwrap();
    (
        end,
        json!({
            "error": job.error,
            "input": steps.first().map(|s| s.input.clone()),
            "outputs": steps.first().map(|s| s.outputs.clone()),
        }),
    )
}

#[tokio::test]
async fn computed_schemas_are_cached_and_used_by_the_executor_and_offline_validation() {
    use ferry_store::JobStatus;
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let secrets = engine.services.secrets.clone();
    let sol = engine.solution("fake-sol").unwrap();
    let problems =
        |d: &[Result<ferry_core::loader::Diagnostic, ferry_core::loader::Diagnostic>]| {
            d.iter()
                .map(|r| match r {
                    Ok(w) => format!("W {w}"),
                    Err(e) => format!("E {e}"),
                })
                .collect::<Vec<_>>()
        };
    // Nothing cached yet: validation says so instead of skipping silently.
    let before = ferry_engine::schemas::check_cached(store.as_ref(), &secrets, &sol).await;
    let before = problems(&before);
    assert!(
        before.iter().any(|d| d.starts_with("W ")
            && d.ends_with("query.yaml:4: warning: Step 'q': the schema of 'fake.query' is computed from its connection and is not cached; its input was not checked (serve the solution once, or run it, to fill the cache)")),
        "{before:#?}"
    );
    let computed_before = COMPUTED.load(Ordering::SeqCst);

    // The executor computes the schema once, resolves input and output with it …
    let (end, step) = run_event(&engine, &store, "query").await;
    assert_eq!(end, RunEnd::Status(JobStatus::Finished), "{step}");
    assert_eq!(step["input"], json!({"object": "people", "limit": 5}));
    assert_eq!(step["outputs"], json!([{"people_count": 3, "limit": 5}]));
    // … and a second job uses the cache.
    let (end, _) = run_event(&engine, &store, "query").await;
    assert_eq!(end, RunEnd::Status(JobStatus::Finished));
    assert_eq!(COMPUTED.load(Ordering::SeqCst), computed_before + 1);

    // A schema that cannot be computed fails the step, naming the cause.
    let (end, step) = run_event(&engine, &store, "broken-query").await;
    assert_eq!(end, RunEnd::Status(JobStatus::Failed));
    assert_eq!(
        step["error"],
        "Schema could not be computed: introspection failed"
    );

    // Offline validation now checks the step's input against the cached schema.
    let after = ferry_engine::schemas::check_cached(store.as_ref(), &secrets, &sol).await;
    let after = problems(&after);
    // (only the step whose connection cannot compute it is still uncached)
    let steps: Vec<_> = after.iter().filter(|d| d.contains("Step ")).collect();
    assert_eq!(steps.len(), 1, "{after:#?}");
    assert!(
        steps[0].contains("broken-query.yaml:4: warning:"),
        "{after:#?}"
    );
    let sol2 = tmp.path().join("sol2");
    std::fs::create_dir_all(sol2.join("runbooks")).unwrap();
    std::fs::write(
        sol2.join("solution.yaml"),
        SOLUTION.replace("name: fake-sol", "name: fake-sol2"),
    )
    .unwrap();
    std::fs::write(
        sol2.join("runbooks/query.yaml"),
        query_runbook("good", "{ object: people, limt: 5 }"),
    )
    .unwrap();
    let sol2 = engine
        .load_dir(&sol2)
        .expect("compile does not check computed inputs");
    let typo = ferry_engine::schemas::check_cached(store.as_ref(), &secrets, &sol2).await;
    let typo = problems(&typo);
    assert!(
        typo.iter().any(|d| d.starts_with("E ")
            && d.ends_with("query.yaml:4: Step 'q': unknown input field 'limt' for action 'fake.query' (fields: object, limit)")),
        "{typo:#?}"
    );
}

#[tokio::test]
async fn a_computed_trigger_output_schema_is_cached_and_resolves_events() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let secrets = engine.services.secrets.clone();
    let sol = engine.solution("fake-sol").unwrap();
    let warnings =
        |d: Vec<Result<ferry_core::loader::Diagnostic, ferry_core::loader::Diagnostic>>| {
            d.into_iter()
                .filter_map(|r| r.ok().map(|w| w.to_string()))
                .filter(|w| w.contains("trigger 'fake.dynamic'"))
                .collect::<Vec<_>>()
        };
    let before =
        warnings(ferry_engine::schemas::check_cached(store.as_ref(), &secrets, &sol).await);
    assert_eq!(before.len(), 1, "{before:#?}");
    assert!(
        before[0].ends_with("dynamic.yaml:2: warning: the output schema of trigger 'fake.dynamic' is computed from its connection and is not cached; expressions over `trigger` were not checked against it"),
        "{before:#?}"
    );
    let computed_before = TRIGGER_SCHEMAS.load(Ordering::SeqCst);
    let mut outputs = Vec::new();
    for body in [
        json!({"event": "a", "severity": "7", "extra": true}),
        json!({"event": "b", "severity": 1}),
    ] {
        let out = engine
            .ingest("fake-sol", "dynamic", request(body, Some("s3cr3t")))
            .await;
        let IngestOutcome::Accepted { job_id, .. } = out else {
            panic!("{out:?}")
        };
        outputs.push(store.get_job(job_id).await.unwrap().unwrap().trigger_output);
    }
    // Coerced and pruned by the computed schema, computed once.
    assert_eq!(
        outputs,
        vec![
            json!({"event": "a", "severity": 7}),
            json!({"event": "b", "severity": 1})
        ]
    );
    assert_eq!(TRIGGER_SCHEMAS.load(Ordering::SeqCst), computed_before + 1);
    // A required field of the computed schema is enforced.
    let out = engine
        .ingest(
            "fake-sol",
            "dynamic",
            request(json!({"severity": 2}), Some("s3cr3t")),
        )
        .await;
    assert_eq!(
        out,
        IngestOutcome::Rejected {
            status: 400,
            message: "Output invalid: Field 'event' is required.".into()
        }
    );
    let after = warnings(ferry_engine::schemas::check_cached(store.as_ref(), &secrets, &sol).await);
    assert!(after.is_empty(), "{after:#?}");
}

#[tokio::test]
async fn a_panicking_trigger_answers_500_and_the_engine_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, store) = engine(tmp.path()).await;
    let out = engine
        .ingest(
            "fake-sol",
            "hook",
            request(json!({"event": "panic"}), Some("s3cr3t")),
        )
        .await;
    assert_eq!(
        out,
        IngestOutcome::Rejected {
            status: 500,
            message: "The trigger failed unexpectedly.".into()
        }
    );
    let out = engine
        .ingest(
            "fake-sol",
            "hook",
            request(json!({"event": "ok"}), Some("s3cr3t")),
        )
        .await;
    assert!(matches!(out, IngestOutcome::Accepted { .. }), "{out:?}");
    assert_eq!(job_count(&store).await, 1);
}
