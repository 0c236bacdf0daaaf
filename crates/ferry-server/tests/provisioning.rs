//! A failing provision in one solution keeps no other solution from serving, and its state
//! and last error show in `GET /api/v1/solutions/{name}`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_core::secrets::Secrets;
use ferry_engine::connector::ProvisionContext;
use ferry_engine::{
    Engine, EngineOptions, Parsed, Registry, Trigger, TriggerContext, TriggerError, TriggerParse,
    TriggerSpec,
};
use ferry_store::{SqliteStore, Store, StoreOptions};
use serde_json::{json, Value};

/// A webhook trigger whose registration is always refused.
struct Unregistrable(TriggerSpec);

#[async_trait]
impl Trigger for Unregistrable {
    fn spec(&self) -> &TriggerSpec {
        &self.0
    }

    fn output_schema(&self, _config: &Value) -> Result<Schema, String> {
        Ok(Schema::new(
            "output",
            vec![Field::new("event", FieldType::String)],
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

    async fn provision(&self, _ctx: &ProvisionContext<'_>) -> Result<(), String> {
        Err("webhook registration refused".into())
    }
}

fn write(dir: &Path, solution: &str, runbook: &str) {
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(dir.join("solution.yaml"), solution).unwrap();
    std::fs::write(dir.join("runbooks/r.yaml"), runbook).unwrap();
}

const TOKEN: &str = "t0ken";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provision_does_not_keep_other_solutions_from_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let step = "steps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n";
    write(
        &tmp.path().join("broken"),
        "name: broken\n",
        &format!("name: r\ntrigger: {{ connector: fake, type: webhook }}\n{step}"),
    );
    write(
        &tmp.path().join("fine"),
        "name: fine\n",
        &format!("name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config: {{ body_schema: [ {{ id: n, type: integer }} ] }}\n{step}"),
    );
    let mut registry = Registry::builtin();
    registry.connector(ferry_engine::ConnectorSpec::new("fake", "fake webhooks"));
    registry.trigger(Unregistrable(TriggerSpec {
        name: "fake.webhook",
        description: "never registers",
        config: vec![],
        connection: None,
    }));
    let store = SqliteStore::open(&tmp.path().join("t.db"), StoreOptions::default())
        .await
        .unwrap();
    let engine = Engine::new(
        Arc::new(store) as Arc<dyn Store>,
        Arc::new(Secrets::from_master_key(&[3u8; 32])),
        registry,
        EngineOptions::default(),
    );
    for d in ["broken", "fine"] {
        engine.load_dir(&tmp.path().join(d)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = ferry_server::router(
        engine.clone(),
        ferry_server::ServerOptions {
            api_token: TOKEN.into(),
            public_url: base.clone(),
            max_body_bytes: 1 << 20,
        },
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let tasks = engine.start_provisioning(&base);
    let client = reqwest::Client::new();
    let solution = |name: &str| {
        let r = client
            .get(format!("{base}/api/v1/solutions/{name}"))
            .bearer_auth(TOKEN)
            .send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };

    // The broken solution's trigger fails (and keeps being retried) …
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sol = solution("broken").await;
        let item = &sol["provisioning"][0];
        if item["state"] == "failed" {
            assert_eq!(item["kind"], "trigger");
            assert_eq!(item["name"], "r");
            assert_eq!(item["last_error"], "webhook registration refused");
            assert!(item["attempts"].as_u64().unwrap() >= 1);
            assert!(item["next_attempt_at"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "never failed: {sol}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // … while the other solution is provisioned and serves.
    let sol = solution("fine").await;
    assert_eq!(sol["provisioning"][0]["state"], "provisioned", "{sol}");
    let r = client
        .post(format!("{base}/inbound/fine/r"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["job_uuid"].is_string(), "{body}");

    engine.begin_shutdown();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("provisioning stops on shutdown")
            .unwrap();
    }
}
