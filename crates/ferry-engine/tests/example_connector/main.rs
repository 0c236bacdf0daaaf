//! The example connector (`acme.rs`, documented in docs/engine.md) against a loopback Acme:
//! connection checks, the connection test, provisioning with a retry, signed events, the
//! handshake answered without a job, the replay window, computed schemas and deprovisioning.

mod acme;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::secrets::Secrets;
use ferry_engine::executor::{run_job, RunEnd};
use ferry_engine::{
    ConnectionTestResult, Engine, EngineOptions, InboundRequest, IngestOutcome, ProvisionKind,
    ProvisionState, Registry, TestStatus,
};
use ferry_store::{JobStatus, SqliteStore, Store, StoreOptions};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// The loopback Acme: its webhooks, and how many registrations it refused.
#[derive(Default)]
struct Acme {
    webhooks: Vec<(String, Value)>,
    refused: usize,
}

type Shared = Arc<Mutex<Acme>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer acme-token")
}

async fn acme() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/me",
            get(|h: HeaderMap| async move {
                if authorized(&h) {
                    (StatusCode::OK, Json(json!({"name": "ferry-bot"})))
                } else {
                    (StatusCode::UNAUTHORIZED, Json(json!({})))
                }
            }),
        )
        .route(
            "/schema/{object}",
            get(|h: HeaderMap, Path(object): Path<String>| async move {
                match (authorized(&h), object.as_str()) {
                    (true, "tickets") => (
                        StatusCode::OK,
                        Json(json!({"fields": [
                            {"id": "subject", "type": "string", "required": true},
                            {"id": "priority", "type": "integer"}
                        ]})),
                    ),
                    _ => (StatusCode::NOT_FOUND, Json(json!({}))),
                }
            }),
        )
        .route(
            "/records/tickets/{id}",
            get(|h: HeaderMap, Path(id): Path<String>| async move {
                assert!(authorized(&h));
                Json(json!({"subject": format!("Ticket {id}: printer on fire"), "priority": "2", "internal": "x"}))
            }),
        )
        .route(
            "/webhooks",
            post(
                |State(s): State<Shared>, h: HeaderMap, Json(body): Json<Value>| async move {
                    let mut s = s.lock().unwrap();
                    // The first registration meets a hiccup: provisioning retries.
                    if !authorized(&h) || s.refused == 0 {
                        s.refused += 1;
                        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
                    }
                    let id = format!("wh-{}", s.webhooks.len() + 1);
                    s.webhooks.push((id.clone(), body));
                    (StatusCode::CREATED, Json(json!({"id": id})))
                },
            ),
        )
        .route(
            "/webhooks/{id}",
            get(|State(s): State<Shared>, Path(id): Path<String>| async move {
                if s.lock().unwrap().webhooks.iter().any(|w| w.0 == id) {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                }
            })
            .delete(|State(s): State<Shared>, Path(id): Path<String>| async move {
                s.lock().unwrap().webhooks.retain(|w| w.0 != id);
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

const RUNBOOK: &str = "name: tickets
trigger:
  connector: acme
  type: event
  connection: acme-in
  config: { events: [ticket.updated] }
steps:
  - id: ticket
    action: acme.get_record
    connection: acme-api
    input: { object: tickets, id: \"{{ trigger.data.ticket_id }}\" }
";

fn signed(body: Value, secret: &str) -> InboundRequest {
    let body = body.to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    InboundRequest {
        method: "POST".into(),
        body: body.into(),
        ..Default::default()
    }
    .with_header(
        "x-acme-signature",
        &hex::encode(mac.finalize().into_bytes()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_connector_end_to_end() {
    let (base, state) = acme().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = tmp.path().join("acme-demo");
    std::fs::create_dir_all(sol.join("runbooks")).unwrap();
    std::fs::write(
        sol.join("solution.yaml"),
        format!(
            "name: acme-demo
env:
  TOKEN: {{ secret: true, value: acme-token }}
  SIGNING: {{ secret: true, value: s1gn }}
connections:
  acme-api:
    connector: acme
    direction: outbound
    config: {{ base_url: \"{base}\", token: \"{{{{ env.TOKEN }}}}\" }}
  acme-stale:
    connector: acme
    direction: outbound
    config: {{ base_url: \"{base}\", token: expired }}
  acme-in:
    connector: acme
    direction: inbound
    config: {{ signing_secret: \"{{{{ env.SIGNING }}}}\", api_url: \"{base}\", token: \"{{{{ env.TOKEN }}}}\" }}
"
        ),
    )
    .unwrap();
    std::fs::write(sol.join("runbooks/tickets.yaml"), RUNBOOK).unwrap();
    // As the binary would add a connector crate: its own registry merged into the built-ins.
    let mut registry = Registry::builtin();
    let mut acme_registry = Registry::new();
    acme::register(&mut acme_registry);
    registry.merge(acme_registry);
    assert!(registry.get_action("acme.get_record").is_some());
    assert!(registry.get_action("http.send_request").is_some());
    let store = Arc::new(
        SqliteStore::open(&tmp.path().join("t.db"), StoreOptions::default())
            .await
            .unwrap(),
    );
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        Arc::new(Secrets::from_master_key(&[5u8; 32])),
        registry,
        EngineOptions::default(),
    );
    engine.load_dir(&sol).unwrap();

    // The connector's own config check, with file:line, like the schema's.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(bad.join("runbooks")).unwrap();
    std::fs::write(
        bad.join("solution.yaml"),
        "name: bad\nconnections:\n  a:\n    connector: acme\n    direction: outbound\n    config: { base_url: \"ftp://x\", token: t }\n",
    )
    .unwrap();
    std::fs::write(
        bad.join("runbooks/r.yaml"),
        "name: r\ntrigger: { connector: json_endpoint, type: endpoint, config: { body_schema: [] } }\nsteps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n",
    )
    .unwrap();
    let diags: Vec<String> = engine
        .load_dir(&bad)
        .err()
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        diags
            .iter()
            .any(|d| d
                .ends_with("solution.yaml:6: Connection 'a': base_url: must be an http(s) URL")),
        "{diags:#?}"
    );

    // Connection tests.
    assert_eq!(
        engine.test_connection("acme-demo", "acme-api").await,
        Some(ConnectionTestResult::success("Connected as ferry-bot"))
    );
    let stale = engine
        .test_connection("acme-demo", "acme-stale")
        .await
        .unwrap();
    assert_eq!(stale.status, TestStatus::Failed);
    assert_eq!(stale.message, "The token was rejected.");

    // Provisioning registers the webhook, after one refused attempt.
    let public = "https://ferry.example.test";
    let tasks = engine.start_provisioning(public);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let trigger = engine
            .provisioning("acme-demo")
            .into_iter()
            .find(|s| s.kind == ProvisionKind::Trigger)
            .unwrap();
        if trigger.state == ProvisionState::Provisioned {
            assert_eq!(trigger.attempts, 2);
            break;
        }
        assert!(Instant::now() < deadline, "{trigger:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let webhooks = state.lock().unwrap().webhooks.clone();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(
        webhooks[0].1,
        json!({"url": format!("{public}/inbound/acme-demo/tickets"), "events": ["ticket.updated"]})
    );
    // Provisioning again (a restart) keeps the registered webhook.
    for t in engine.start_provisioning(public) {
        t.await.unwrap();
    }

    // Unsigned and wrongly signed events are refused.
    let event = json!({"id": "e1", "type": "ticket.updated", "data": {"ticket_id": "42"}});
    let unsigned = InboundRequest {
        body: event.to_string().into(),
        ..Default::default()
    };
    assert!(matches!(
        engine.ingest("acme-demo", "tickets", unsigned).await,
        IngestOutcome::Rejected { status: 401, .. }
    ));
    assert!(matches!(
        engine
            .ingest("acme-demo", "tickets", signed(event.clone(), "other"))
            .await,
        IngestOutcome::Rejected { status: 401, .. }
    ));
    // The handshake is answered by the trigger, without a job.
    let ping = signed(json!({"type": "ping", "challenge": "c-123"}), "s1gn");
    match engine.ingest("acme-demo", "tickets", ping).await {
        IngestOutcome::Responded { response } => assert_eq!(&response.body[..], b"c-123"),
        other => panic!("{other:?}"),
    }
    // An event is accepted once; its redelivery is discarded.
    let IngestOutcome::Accepted { job_id, .. } = engine
        .ingest("acme-demo", "tickets", signed(event.clone(), "s1gn"))
        .await
    else {
        panic!("not accepted")
    };
    assert_eq!(
        engine
            .ingest("acme-demo", "tickets", signed(event, "s1gn"))
            .await,
        IngestOutcome::Discarded {
            message: "event e1 already received".into()
        }
    );

    // The job's step uses the schema computed from Acme's schema endpoint.
    let job = store
        .claim_job("t", chrono::Utc::now(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.id, job_id);
    assert_eq!(
        run_job(&engine.exec_env(), job).await,
        RunEnd::Status(JobStatus::Finished)
    );
    let steps = store.job_steps(job_id).await.unwrap();
    assert_eq!(steps[0].input, json!({"object": "tickets", "id": "42"}));
    assert_eq!(
        steps[0].outputs,
        json!([{"subject": "Ticket 42: printer on fire", "priority": 2}])
    );

    // Deprovisioning deletes the webhook.
    engine.deprovision_all(public).await;
    assert!(state.lock().unwrap().webhooks.is_empty());
    assert!(engine
        .provisioning("acme-demo")
        .iter()
        .all(|s| s.state == ProvisionState::Deprovisioned));
}
