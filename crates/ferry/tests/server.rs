//! End-to-end tests through `ferry serve`: HTTP ingest, the management API, durability.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const INTAKE: &str = r#"name: intake
trigger:
  connector: json_endpoint
  type: endpoint
  connection: inbound
  config:
    headers:
      - { name: x-source, required: false }
    body_schema:
      - { id: id, type: string }
      - { id: subject, type: string, required: true }
      - { id: priority, type: integer, max: 5 }
      - { id: tags, type: string, array: true }
    deduplication_id: "{{ trigger.body.id }}"
    discard_if: "{{ trigger.body.subject == 'ignore me' }}"
steps:
  - { id: log, action: debug.log_message, input: { message: "got {{ trigger.body.subject }} p{{ trigger.body.priority }}" } }
"#;

fn intake_solution(root: &std::path::Path) -> std::path::PathBuf {
    solution(
        root,
        "demo",
        "name: demo\nenv:\n  KEY: { secret: true, from_env: TEST_INBOUND_KEY }\nconnections:\n  inbound:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: { key: x-api-key, value: \"{{ env.KEY }}\" }\n",
        &[("intake", INTAKE)],
    )
}

const KEY: &str = "k3y-s3cr3t-value";

#[tokio::test]
async fn ingest_validates_dedups_discards_and_records_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = intake_solution(tmp.path());
    let server = Server::start(
        &tmp.path().join("data"),
        &[&sol],
        &[("TEST_INBOUND_KEY", KEY)],
    );
    let auth = [("x-api-key", KEY)];

    // Missing / wrong API key.
    let (code, body) = server
        .post("/inbound/demo/intake", &json!({"subject": "a"}), &[])
        .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("Invalid or missing API key."))
    );
    let (code, _) = server
        .post(
            "/inbound/demo/intake",
            &json!({"subject": "a"}),
            &[("x-api-key", "nope")],
        )
        .await;
    assert_eq!(code, 400);

    // Invalid body: the message names the field.
    let (code, body) = server
        .post("/inbound/demo/intake", &json!({"priority": 2}), &auth)
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Field 'subject' is required."),
        "{body}"
    );
    let (code, body) = server
        .post(
            "/inbound/demo/intake",
            &json!({"subject": "s", "priority": 9}),
            &auth,
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("priority"),
        "{body}"
    );
    // Not JSON.
    let resp = reqwest::Client::new()
        .post(server.url("/inbound/demo/intake"))
        .header("x-api-key", KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "Request body could not be parsed"
    );
    // Unknown runbook.
    let (code, _) = server.post("/inbound/demo/nope", &json!({}), &auth).await;
    assert_eq!(code, 404);

    // Accepted: 200 with job_uuid and header.
    let resp = reqwest::Client::new()
        .post(server.url("/inbound/demo/intake/some/postfix?x=1"))
        .header("x-api-key", KEY)
        .header("X-Source", "tests")
        .json(&json!({"id": "evt-1", "subject": "printer", "priority": "3", "tags": "single", "extra": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = resp
        .headers()
        .get("x-job-uuid")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["job_uuid"], header);
    let job = server
        .wait_job(&header, &["finished"], Duration::from_secs(10))
        .await;
    let out = &job["trigger_output"];
    assert_eq!(out["body"]["priority"], 3);
    assert_eq!(out["body"]["tags"], json!(["single"]));
    assert!(
        out["body"].get("extra").is_none(),
        "unknown fields are dropped"
    );
    assert_eq!(out["url_postfix"], "some/postfix");
    assert_eq!(out["query_params"], json!({"x": "1"}));
    assert_eq!(out["headers"]["x-source"], "tests");
    assert_eq!(job["steps"][0]["logs"][0]["message"], "got printer p3");

    // Duplicate: no new job.
    let (code, body) = server
        .post(
            "/inbound/demo/intake",
            &json!({"id": "evt-1", "subject": "again"}),
            &auth,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["job_uuid"], header);
    assert_eq!(body["result"], "Discarded");

    // Discarded by condition: 200, no job.
    let (code, body) = server
        .post(
            "/inbound/demo/intake",
            &json!({"subject": "ignore me"}),
            &auth,
        )
        .await;
    assert_eq!(code, 200);
    assert!(body.get("job_uuid").is_none());

    let (_, page) = server.api("/jobs?runbook=intake").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    // Secrets never leave the server: not in connections, not in the logs.
    let (_, conns) = server.api("/solutions/demo/connections").await;
    assert!(!conns.to_string().contains(KEY), "{conns}");
    assert!(!server.logs().contains(KEY));
}

#[tokio::test]
async fn management_api_requires_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = intake_solution(tmp.path());
    let server = Server::start(
        &tmp.path().join("data"),
        &[&sol],
        &[("TEST_INBOUND_KEY", KEY)],
    );
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/jobs",
        "/api/v1/solutions",
        "/api/v1/solutions/demo/connections",
    ] {
        let r = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = client
            .get(server.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(server.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let (code, body) = server.api("/jobs?status=bogus").await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("'status'"));
    let (code, body) = server.api("/jobs?limit=0").await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("'limit'"));
    let (code, _) = server.api("/jobs/not-a-uuid").await;
    assert_eq!(code, 400);
    let (code, _) = server.api(&format!("/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(code, 404);
    let (code, sols) = server.api("/solutions").await;
    assert_eq!(code, 200);
    let url = sols["solutions"][0]["runbooks"][0]["trigger"]["url"]
        .as_str()
        .unwrap();
    assert_eq!(url, server.url("/inbound/demo/intake"));
    // Health and metrics are open.
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ferry_events_total"));
}

/// Requests an echo server received: headers and body.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A tiny HTTP server that records requests and answers 429 for the first `fail_first` calls.
async fn echo_server(fail_first: usize) -> (String, Seen) {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let seen = seen2.clone();
        let calls = calls.clone();
        async move {
            let h = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            seen.lock().unwrap().push((h, body));
            if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "slow down".to_string(),
                )
            } else {
                (
                    StatusCode::OK,
                    [("x-echo", "yes")],
                    "{\"ok\":true}".to_string(),
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn http_action_sends_secrets_reschedules_on_429_and_never_shows_the_secret() {
    let (base, seen) = echo_server(1).await;
    let tmp = tempfile::tempdir().unwrap();
    let token = "tok-9f8e7d6c5b4a";
    let sol = solution(
        tmp.path(),
        "calls",
        &format!("name: calls\nenv:\n  API_TOKEN: {{ secret: true, from_env: TEST_API_TOKEN }}\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      bearer: {{ bearer_token: \"{{{{ env.API_TOKEN }}}}\" }}\n"),
        &[(
            "call",
            r#"name: call
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ { id: name, type: string } ]
steps:
  - id: post
    action: http.send_request
    connection: api
    input:
      method: POST
      path: /things
      headers: [ { name: x-secret-echo, value: "{{ env.API_TOKEN }}" }, { name: content-type, value: application/json } ]
      query_parameters: [ { name: q, value: a }, { name: q, value: b } ]
      body: '{"name": "{{ trigger.body.name }}"}'
  - { id: log, action: debug.log_message, input: { message: "status {{ steps.post.response.status }} token {{ env.API_TOKEN }}" } }
"#,
        )],
    );
    let server = Server::start(
        &tmp.path().join("data"),
        &[&sol],
        &[("TEST_API_TOKEN", token)],
    );
    let (code, body) = server
        .post("/inbound/calls/call", &json!({"name": "widget"}), &[])
        .await;
    assert_eq!(code, 200, "{body}");
    let id = body["job_uuid"].as_str().unwrap();
    let job = server
        .wait_job(id, &["finished", "failed"], Duration::from_secs(15))
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");
    let posts = steps(&job, "post");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["status"], "rescheduled");
    assert!(posts[0]["error"]
        .as_str()
        .unwrap()
        .contains("retry after: 1"));
    assert_eq!(posts[1]["outputs"][0]["response"]["status"], 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (headers, body) = &seen[1];
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("authorization").as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(get("x-secret-echo").as_deref(), Some(token));
    assert_eq!(body, r#"{"name": "widget"}"#);
    // The secret is not in the job as the API shows it, nor in the server's output.
    let shown = job.to_string();
    assert!(!shown.contains(token), "{shown}");
    assert!(shown.contains("[secret]"));
    assert!(!server.logs().contains(token));
    // Nor at rest in the database.
    let db = std::fs::read(tmp.path().join("data/ferry.db")).unwrap();
    let wal = std::fs::read(tmp.path().join("data/ferry.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

#[tokio::test]
async fn failed_jobs_can_be_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: ok, type: boolean } ]\nsteps:\n  - { id: stop, action: flow.fail, input: { message: nope } }\n",
        )],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let (_, body) = server.post("/inbound/s/r", &json!({}), &[]).await;
    let id = body["job_uuid"].as_str().unwrap().to_string();
    let job = server
        .wait_job(&id, &["failed"], Duration::from_secs(10))
        .await;
    assert_eq!(job["error"], "nope");
    let client = reqwest::Client::new();
    let r = client
        .post(server.url(&format!("/api/v1/jobs/{id}/rerun")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(server.url(&format!("/api/v1/jobs/{id}/rerun")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let job = server
        .wait_job(&id, &["failed"], Duration::from_secs(10))
        .await;
    assert_eq!(steps(&job, "stop").len(), 2);
    assert_eq!(job["attempts"], 2);
}

#[tokio::test]
async fn per_runbook_concurrency_runs_jobs_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "r",
            "name: r\nconcurrency: per_runbook\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - id: pause\n    action: flow.wait\n    input: { seconds_to_wait: 1 }\n  - { id: log, action: debug.log_message, input: { message: \"{{ trigger.body.n }}\" } }\n",
        )],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, body) = server.post("/inbound/s/r", &json!({"n": n}), &[]).await;
        ids.push(body["job_uuid"].as_str().unwrap().to_string());
    }
    let mut spans = Vec::new();
    for id in &ids {
        let job = server
            .wait_job(id, &["finished"], Duration::from_secs(20))
            .await;
        let first = job["steps"][0]["started_at"].as_str().unwrap().to_string();
        let last = job["finished_at"].as_str().unwrap().to_string();
        spans.push((
            chrono::DateTime::parse_from_rfc3339(&first).unwrap(),
            chrono::DateTime::parse_from_rfc3339(&last).unwrap(),
        ));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "jobs overlapped: {spans:?}");
    }
}

#[tokio::test]
async fn per_job_context_concurrency_serializes_only_the_same_context() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "r",
            "name: r\nconcurrency: per_job_context\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - id: pause\n    action: flow.wait\n    input: { seconds_to_wait: 1 }\n",
        )],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let mut ids = Vec::new();
    for ctx in ["a", "a", "b"] {
        let (_, body) = server
            .post(
                "/inbound/s/r",
                &json!({"n": 1}),
                &[("x-job-context-identifier", ctx)],
            )
            .await;
        ids.push(body["job_uuid"].as_str().unwrap().to_string());
    }
    let mut spans = Vec::new();
    for id in &ids {
        let job = server
            .wait_job(id, &["finished"], Duration::from_secs(20))
            .await;
        assert!(job["context_id"].is_string());
        let first =
            chrono::DateTime::parse_from_rfc3339(job["steps"][0]["started_at"].as_str().unwrap())
                .unwrap();
        let last =
            chrono::DateTime::parse_from_rfc3339(job["finished_at"].as_str().unwrap()).unwrap();
        spans.push((first, last));
    }
    // Same context: one after the other. Different context: overlaps with the first.
    assert!(
        spans[0].1 <= spans[1].0 || spans[1].1 <= spans[0].0,
        "{spans:?}"
    );
    assert!(
        spans[2].0 < spans[0].1 && spans[0].0 < spans[2].1,
        "context b should not wait for a: {spans:?}"
    );
}

#[tokio::test]
async fn rescheduled_step_wakes_up_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: before, action: debug.log_message, input: { message: before } }\n  - id: pause\n    action: flow.wait\n    input: { seconds_to_wait: 2 }\n  - { id: after, action: debug.log_message, input: { message: after } }\n",
        )],
    );
    let mut server = Server::start(&data, &[&sol], &[]);
    let (_, body) = server.post("/inbound/s/r", &json!({"n": 1}), &[]).await;
    let id = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&id, &["waiting"], Duration::from_secs(10))
        .await;
    server.kill9();
    let server = Server::start(&data, &[&sol], &[]);
    let job = server
        .wait_job(&id, &["finished"], Duration::from_secs(15))
        .await;
    assert_eq!(step_order(&job), ["before", "pause", "pause", "after"]);
}

#[tokio::test]
async fn every_acknowledged_event_survives_kill_9_during_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: \"{{ trigger.body.n }}\" } }\n  - { id: b, action: debug.log_message, input: { message: b } }\n",
        )],
    );
    let mut server = Server::start(&data, &[&sol], &[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = server.url("/inbound/s/r");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let acked = acked.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..400 {
                match client
                    .post(&url)
                    .json(&json!({"n": t * 1000 + n}))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        if let Ok(v) = r.json::<Value>().await {
                            if let Some(id) = v["job_uuid"].as_str() {
                                acked.lock().unwrap().push(id.to_string());
                            }
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    // Let some events through, then kill the server hard in the middle of the stream.
    let start = std::time::Instant::now();
    while acked.lock().unwrap().len() < 200 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} events acknowledged",
        acked.len()
    );
    let server = Server::start(&data, &[&sol], &[]);
    for id in &acked {
        let job = server
            .wait_job(id, &["finished", "failed"], Duration::from_secs(60))
            .await;
        assert_eq!(job["status"], "finished", "{job}");
        assert_eq!(steps(&job, "b").len(), 1, "{job}");
    }
}

#[tokio::test]
async fn graceful_shutdown_then_restart_finishes_queued_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: a } }\n",
        )],
    );
    let mut server = Server::start_with(&data, &[&sol], &[], &["--workers", "0"]);
    let mut ids = Vec::new();
    for n in 0..20 {
        let (_, body) = server.post("/inbound/s/r", &json!({"n": n}), &[]).await;
        ids.push(body["job_uuid"].as_str().unwrap().to_string());
    }
    let (_, job) = server.api(&format!("/jobs/{}", ids[0])).await;
    assert_eq!(job["status"], "queued");
    server.terminate();
    assert!(server.child.try_wait().unwrap().is_some());
    let server = Server::start(&data, &[&sol], &[]);
    for id in &ids {
        server
            .wait_job(id, &["finished"], Duration::from_secs(20))
            .await;
    }
}

#[tokio::test]
async fn basic_auth_inbound_and_the_jobs_cli() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "b",
        "name: b\nenv:\n  PW: { secret: true, from_env: TEST_BASIC_PW }\nconnections:\n  in:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      basic_auth: { username: hook, password: \"{{ env.PW }}\" }\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  connection: in\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: \"n={{ trigger.body.n }}\" } }\n",
        )],
    );
    let server = Server::start(
        &tmp.path().join("data"),
        &[&sol],
        &[("TEST_BASIC_PW", "pa55:word")],
    );
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let (code, body) = server.post("/inbound/b/r", &json!({"n": 1}), &[]).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("Missing basic authentication header."))
    );
    let (code, body) = server
        .post(
            "/inbound/b/r",
            &json!({"n": 1}),
            &[("authorization", &basic("hook", "nope"))],
        )
        .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("Invalid basic authentication header."))
    );
    let (code, body) = server
        .post(
            "/inbound/b/r",
            &json!({"n": 1}),
            &[("authorization", "Basic %%%")],
        )
        .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("Invalid basic authentication header."))
    );
    let (code, body) = server
        .post(
            "/inbound/b/r",
            &json!({"n": 7}),
            &[("authorization", &basic("hook", "pa55:word"))],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let id = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&id, &["finished"], Duration::from_secs(10))
        .await;

    let url = server.url("");
    let out = ferry(&["jobs", "list", "--server", &url, "--token", TOKEN], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&id) && text.contains("finished"), "{text}");
    let out = ferry(
        &[
            "jobs", "show", &id, "--server", &url, "--token", TOKEN, "--json",
        ],
        &[],
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["steps"][0]["logs"][0]["message"], "n=7");
    let out = ferry(
        &["jobs", "show", &id, "--server", &url, "--token", TOKEN],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("n=7"));
    let out = ferry(&["jobs", "list", "--server", &url, "--token", "wrong"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
