//! Spec §9 scenarios that no other end-to-end test covered (docs/xurrent-scenario-coverage.md),
//! through the real `ferry` binary (`serve`, `run`, `validate`) and the emulator:
//!
//! - E50, E52, E53: the `webhook.verify` callback is fetched with `User-Agent: Xurrent iPaaS`
//!   and answered without a job and without `x-job-uuid`; an accepted event answers
//!   `{"job_uuid"}` with the same `x-job-uuid` header;
//! - F56, F57: a static-PEM policy on the trigger verifies the emulator's signed handshake and
//!   delivery; a policy whose issuer is another account (on the trigger or on the connection)
//!   fails the handshake and creates no job; F58: an invalid connection policy is refused by
//!   `ferry validate`;
//! - G91: a signed delivery with no issuer rule anywhere answers `Webhook configuration error`;
//! - M170 (I121, I123 for the mutation): a throttled mutation step is rescheduled after
//!   `Retry-After` and then succeeds; GraphQL `errors` fail the step with their messages, for the
//!   mutation (an unknown id) and for the Query action (an error only Xurrent finds, injected
//!   in front of the emulator).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use common::*;
use serde_json::{json, Value};

/// A REST or GraphQL call to the emulator as its administrator.
async fn emu_call(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("emulator request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn deliveries(base: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{base}/_emulator/deliveries"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match v {
        Value::Array(a) => a,
        other => other["deliveries"].as_array().cloned().unwrap_or_default(),
    }
}

/// Wait for an answered delivery attempt matching `pred`.
async fn wait_delivery(base: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(d) = deliveries(base)
            .await
            .into_iter()
            .find(|d| pred(d) && !d["response_status"].is_null())
        {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery {what}: {:#?}",
            deliveries(base).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.logs().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no log line {needle:?}:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn jobs(server: &Server, runbook: &str) -> Vec<Value> {
    let (_, page) = server.api(&format!("/jobs?runbook={runbook}")).await;
    page["jobs"].as_array().cloned().unwrap_or_default()
}

/// A webhook runbook `name` on connection `connection` with this trigger config.
fn hook_runbook(name: &str, connection: &str, trigger_config: &Value) -> String {
    format!(
        "name: {name}\ntrigger:\n  connector: xurrent\n  type: webhook\n  connection: {connection}\n  config: {trigger_config}\nsteps:\n  - id: seen\n    action: debug.log_message\n    input: {{ message: \"{{{{ trigger.event }}}} {{{{ trigger.object_id }}}}\" }}\n"
    )
}

/// POST a body; returns the status, the headers and the body text.
async fn post(
    server: &Server,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn e50_e52_e53_handshake_user_agent_and_the_answers() {
    // The account's host: records the verification callback.
    let seen: Arc<parking_lot_free::Seen> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let account = format!("http://{}", listener.local_addr().unwrap());
    let recorded = seen.clone();
    let app = axum::Router::new().route(
        "/webhooks/123/verify",
        axum::routing::get(
            move |headers: axum::http::HeaderMap,
                  axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let recorded = recorded.clone();
                async move {
                    recorded.push(format!(
                        "{} ?{}",
                        headers
                            .get("user-agent")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or(""),
                        query.unwrap_or_default()
                    ));
                    "ok"
                }
            },
        ),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let tmp = tempfile::tempdir().unwrap();
    let inbound =
        json!({"allow_unsigned": true, "allow_http_loopback": true, "account_url": account});
    let sol = solution(
        tmp.path(),
        "xg",
        &format!("name: xg\nconnections:\n  xin:\n    connector: xurrent\n    direction: inbound\n    config: {inbound}\n"),
        &[("hook", &hook_runbook("hook", "xin", &json!({})))],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);

    // E50/E52: the handshake is answered by the trigger itself: 200, the message, no job.
    let verify = json!({"name": "Mock webhook", "webhook_nodeID": "mocknodeID", "event": "webhook.verify",
        "payload": {"callback": format!("{account}/webhooks/123/verify?code=abcd")}});
    let (code, headers, body) = post(
        &server,
        "/inbound/xg/hook",
        verify.to_string(),
        &[("x-xurrent-delivery", "v-1")],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        "Webhook verification handled: Mock webhook (mocknodeID)"
    );
    assert!(headers.get("x-job-uuid").is_none(), "{headers:?}");
    assert!(headers.get("x-request-id").is_some(), "{headers:?}");
    assert_eq!(seen.all(), ["Xurrent iPaaS ?code=abcd"]);
    assert!(jobs(&server, "hook").await.is_empty());

    // E53: an accepted event: {"job_uuid"} and the same id in x-job-uuid.
    let event =
        json!({"event": "request.update", "object_id": 7, "payload": {"status": "assigned"}});
    let (code, headers, body) = post(
        &server,
        "/inbound/xg/hook",
        event.to_string(),
        &[("x-xurrent-delivery", "d-1")],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let id = answer["job_uuid"].as_str().expect("job_uuid");
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
    assert_eq!(headers["x-job-uuid"].to_str().unwrap(), id);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("x-request-id").is_some(), "{headers:?}");
    let job = server
        .wait_job(id, &["finished", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");
}

/// A tiny recorder shared with a handler (no extra dependency).
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Seen(Mutex<Vec<String>>);

    impl Seen {
        pub fn push(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
        pub fn all(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }
}

#[tokio::test]
async fn f56_f57_g91_trigger_policies_wrong_issuers_and_no_issuer_rule() {
    let emu = start_emulator();
    let policy = emu_call(
        &emu.base,
        reqwest::Method::POST,
        "/v1/webhook_policies",
        Some(json!({"jwt_alg": "es256"})),
    )
    .await;
    let pem = policy["public_key_pem"].as_str().expect("pem").to_string();
    let account_url = format!("{}/accounts/wdc", emu.base);
    let another = format!("{}/accounts/another_account", emu.base);
    let static_policy =
        |issuer: &str| json!({"account_url": issuer, "algorithm": "ES256", "public_key_pem": pem});
    let plain = json!({"allow_http_loopback": true});
    let wrong_connection = json!({"allow_http_loopback": true, "policy": static_policy(&another)});
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "xp",
        &format!(
            "name: xp\nconnections:\n  plain:\n    connector: xurrent\n    direction: inbound\n    config: {plain}\n  wrong:\n    connector: xurrent\n    direction: inbound\n    config: {wrong_connection}\n"
        ),
        &[
            (
                "on_trigger",
                &hook_runbook(
                    "on_trigger",
                    "plain",
                    &json!({"policy": static_policy(&account_url)}),
                ),
            ),
            (
                "wrong_trigger",
                &hook_runbook(
                    "wrong_trigger",
                    "plain",
                    &json!({"policy": static_policy(&another)}),
                ),
            ),
            (
                "wrong_connection",
                &hook_runbook("wrong_connection", "wrong", &json!({})),
            ),
            (
                "misconfigured",
                &hook_runbook("misconfigured", "plain", &json!({})),
            ),
        ],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);

    // One request.create webhook per runbook, all signed with the static policy.
    let mut ids = Vec::new();
    for runbook in ["on_trigger", "wrong_trigger", "wrong_connection"] {
        let hook = emu_call(
            &emu.base,
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({
                "event": "request.create",
                "name": format!("Ferry {runbook}"),
                "uri": server.url(&format!("/inbound/xp/{runbook}")),
                "webhook_policy_id": policy["id"],
            })),
        )
        .await;
        ids.push((runbook, hook["id"].as_u64().expect("webhook id")));
    }
    // F57: the trigger's policy verifies the signed handshake.
    for (runbook, id) in &ids {
        let verify = wait_delivery(&emu.base, "webhook.verify", |d| {
            d["event"] == "webhook.verify" && d["webhook_id"] == *id
        })
        .await;
        let body = verify["response_body"].as_str().unwrap_or_default();
        if *runbook == "on_trigger" {
            assert_eq!(verify["response_status"], 200, "{verify:#}");
            assert!(
                body.starts_with("Webhook verification handled: Ferry on_trigger ("),
                "{body}"
            );
        } else {
            // F56 (connection policy) and F57 (trigger policy): another account's issuer.
            assert_eq!(verify["response_status"], 400, "{runbook}: {verify:#}");
            assert_eq!(
                serde_json::from_str::<Value>(body).unwrap()["error"],
                "Webhook JWT verification failed",
                "{runbook}"
            );
        }
    }
    wait_log(
        &server,
        &format!("Invalid issuer. Expected [\"{another}\"], received {account_url}"),
    )
    .await;

    // A mutation fires request.create: a job for the good trigger only.
    let created = emu_call(
        &emu.base,
        reqwest::Method::POST,
        "/graphql",
        Some(json!({"query": "mutation { requestCreate(input: {subject: \"Trigger policy\"}) { request { id } } }"})),
    )
    .await;
    let node_id = created["data"]["requestCreate"]["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let on_trigger = ids[0].1;
    let delivery = wait_delivery(&emu.base, "request.create", |d| {
        d["event"] == "request.create"
            && d["webhook_id"] == on_trigger
            && d["message"]["object_nodeID"] == node_id.as_str()
    })
    .await;
    assert_eq!(delivery["response_status"], 200, "{delivery:#}");
    let answer: Value = serde_json::from_str(delivery["response_body"].as_str().unwrap()).unwrap();
    let job = server
        .wait_job(
            answer["job_uuid"].as_str().unwrap(),
            &["finished", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");
    assert_eq!(job["trigger_output"]["object_nodeID"], node_id.as_str());
    assert_eq!(job["trigger_output"]["account"], account_url.as_str());

    // G91: a signed delivery where neither the policy nor the connection names an issuer.
    let key =
        ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256).unwrap();
    let now = chrono::Utc::now().timestamp();
    let jwt = key
        .sign(
            None,
            &json!({"iss": account_url, "iat": now, "nbf": now, "data": delivery["message"]}),
        )
        .unwrap();
    let (code, _, body) = post(
        &server,
        "/inbound/xp/misconfigured",
        json!({ "jwt": jwt }).to_string(),
        &[("x-xurrent-delivery", "g91")],
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Webhook configuration error"
    );
    wait_log(
        &server,
        "no policy account_url and no account_url on the inbound connection",
    )
    .await;

    for runbook in ["wrong_trigger", "wrong_connection", "misconfigured"] {
        assert!(jobs(&server, runbook).await.is_empty(), "{runbook}");
    }
    assert_eq!(jobs(&server, "on_trigger").await.len(), 1);
}

#[test]
fn f58_an_invalid_connection_policy_is_refused_by_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = json!({"policy": {"account_url": "https://wdc.test.host", "algorithm": "ES256", "public_key_pem": "abc"}});
    let good_pem =
        ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256)
            .unwrap()
            .public_key_pem
            .unwrap();
    let trigger = json!({"policy": {"account_url": "https://wdc.test.host", "algorithm": "ES256", "public_key_pem": good_pem}});
    let sol = solution(
        tmp.path(),
        "xv",
        &format!("name: xv\nconnections:\n  xin:\n    connector: xurrent\n    direction: inbound\n    config: {bad}\n"),
        &[("hook", &hook_runbook("hook", "xin", &trigger))],
    );
    let (code, text) = validate(&sol, &[]);
    assert!(code != Some(0), "{text}");
    assert!(text.contains("solution.yaml:"), "{text}");
    assert!(text.contains("public_key_pem"), "{text}");
}

#[derive(Default)]
struct Throttled(AtomicUsize);

async fn count_429(State(c): State<Arc<Throttled>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status().as_u16() == 429 {
        c.0.fetch_add(1, Ordering::SeqCst);
    }
    response
}

/// Answers a GraphQL request that filters on the `workflow_pending` status with a GraphQL
/// error (HTTP 200, `errors`, no `data`), as Xurrent does for a query it refuses after
/// validation; every other request goes to the emulator.
async fn refuse_workflow_pending(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::builder().status(400).body("body".into()).unwrap();
    };
    if parts.uri.path() == "/graphql" && bytes.windows(16).any(|w| w == b"workflow_pending") {
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(
                json!({"errors": [{"message": "Filter status workflow_pending is not available for this account", "locations": [{"line": 1, "column": 1}], "path": ["requests"]}]})
                    .to_string()
                    .into(),
            )
            .unwrap();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m170_a_throttled_mutation_is_rescheduled_and_graphql_errors_fail() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(ferry_emulator::EmulatorConfig {
        listen: addr,
        ..Default::default()
    })
    .await
    .unwrap();
    let throttled = Arc::new(Throttled::default());
    let app = ferry_emulator::router(emu)
        .layer(axum::middleware::from_fn_with_state(
            throttled.clone(),
            count_429,
        ))
        .layer(axum::middleware::from_fn(refuse_workflow_pending));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let limits = |body: Value| {
        let base = base.clone();
        async move {
            let r = reqwest::Client::new()
                .put(format!("{base}/_emulator/rate_limits"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };

    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: xm\nconnections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: wdc\n        personal_access_token: {token}\n      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {base}/token\n",
        token = ferry_emulator::DEFAULT_TOKEN
    );
    let runbook = "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: subject, type: string }, { id: category, type: string } ]\nsteps:\n  - id: mutate\n    action: xurrent.mutation\n    connection: x\n    input:\n      mutation: requestCreate\n      input:\n        subject: \"{{ trigger.body.subject }}\"\n        category: \"{{ trigger.body.category }}\"\n";
    let update = "name: u\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: id, type: string } ]\nsteps:\n  - id: update\n    action: xurrent.mutation\n    connection: x\n    input:\n      mutation: requestUpdate\n      input: { id: \"{{ trigger.body.id }}\", subject: Renamed }\n";
    let query = "name: q\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: status, type: string } ]\nsteps:\n  - id: find\n    action: xurrent.query\n    connection: x\n    input:\n      object: requests\n      filter: { status: { values: [ \"{{ trigger.body.status }}\" ] } }\n    each:\n      - id: log\n        action: debug.log_message\n        input: { message: \"{{ item.id }}\" }\n";
    let dir = solution(
        tmp.path(),
        "xm",
        &yaml,
        &[("r", runbook), ("u", update), ("q", query)],
    );

    // Every GraphQL request is refused (429, Retry-After: 1) until the limits are lifted.
    limits(json!({"enabled": true, "burst_requests": 0, "burst_window_secs": 1})).await;
    let d = dir.clone();
    let run = tokio::task::spawn_blocking(move || {
        run_json(
            &d,
            "r",
            &json!({"subject": "Throttled at first", "category": "incident"}),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while throttled.0.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the mutation was never throttled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    limits(json!({"enabled": false})).await;
    let (code, job, err) = run.await.unwrap();
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "finished", "{job:#}");
    let attempts = steps(&job, "mutate");
    assert!(attempts.len() >= 3, "{job:#}");
    for a in &attempts[..attempts.len() - 1] {
        assert_eq!(a["status"], "rescheduled", "{a:#}");
        let message = a["error"].as_str().unwrap_or("");
        assert!(
            message.contains("Xurrent API rate limit hit (retry after: 1)"),
            "{a:#}"
        );
    }
    let last = attempts.last().unwrap();
    assert_eq!(last["status"], "completed", "{last:#}");
    assert!(
        last["outputs"].to_string().contains("Throttled at first"),
        "{last:#}"
    );

    // I123 for the mutation: GraphQL errors (an unknown record id, found out only by
    // Xurrent) fail the step with their messages.
    let d = dir.clone();
    let (code, job, _) =
        tokio::task::spawn_blocking(move || run_json(&d, "u", &json!({"id": "no-such-id"})))
            .await
            .unwrap();
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = steps(&job, "update")[0]["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("Errors from Xurrent GraphQL API: ") && error.contains("Not Found"),
        "{job:#}"
    );

    // I123 for the query: a filter Xurrent refuses (GraphQL `errors`, HTTP 200) fails the step
    // with the errors' messages; the branch never runs.
    let d = dir.clone();
    let (code, job, _) = tokio::task::spawn_blocking(move || {
        run_json(&d, "q", &json!({"status": "workflow_pending"}))
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = steps(&job, "find")[0]["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("Errors from Xurrent GraphQL API: ")
            && error.contains("Filter status workflow_pending is not available"),
        "{job:#}"
    );
    assert!(steps(&job, "log").is_empty(), "{job:#}");
}
