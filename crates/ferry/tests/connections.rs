//! Connections through the real binary: `ferry connections test` (exit codes and output for
//! success / failed / error), `POST /api/v1/connections/{solution}/{name}/test` (token, 404,
//! result JSON), the http connector's basic auth on the wire, and `respond_with`.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

/// A loopback API that wants `Authorization: Basic admin:12345`; it records what it got.
async fn protected_api() -> (String, Arc<Mutex<Vec<String>>>) {
    use base64::Engine as _;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:12345")
    );
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen2.clone();
        let expected = expected.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            seen.lock().unwrap().push(auth.clone());
            if auth == expected {
                (axum::http::StatusCode::OK, "welcome")
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, "who are you")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn connections_test(server: &Server, solution: &str, connection: &str) -> (i32, String, String) {
    let out = ferry(
        &[
            "connections",
            "test",
            solution,
            connection,
            "--server",
            &server.url(""),
            "--token",
            TOKEN,
        ],
        &[],
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_tests_through_the_cli_and_the_api() {
    let (base, seen) = protected_api().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "calls",
        &format!(
            "name: calls\nenv:\n  PW: {{ secret: true, from_env: TEST_CONN_PW }}\nconnections:\n  good:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      basic_auth: {{ username: admin, password: \"{{{{ env.PW }}}}\" }}\n  refused:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      basic_auth: {{ username: admin, password: wrong-pw }}\n  down:\n    connector: http\n    direction: outbound\n    config: {{ base_url: \"http://127.0.0.1:9\" }}\n  intake:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: {{ key: x-k, value: plain-inbound-key }}\n"
        ),
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n",
        )],
    );
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[&sol], &[("TEST_CONN_PW", "12345")]);

    let (code, out, err) =
        tokio::task::block_in_place(|| connections_test(&server, "calls", "good"));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!("calls/good: success: GET {base} answered HTTP 200")
    );
    // reqwest's basic-auth helper put the right header on the wire.
    assert!(seen.lock().unwrap().iter().any(|a| a.starts_with("Basic ")));

    let (code, out, err) =
        tokio::task::block_in_place(|| connections_test(&server, "calls", "refused"));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out.trim(),
        "calls/refused: failed: The credentials were rejected (HTTP 401)."
    );

    let (code, out, err) =
        tokio::task::block_in_place(|| connections_test(&server, "calls", "down"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.starts_with("calls/down: error: "), "{out}");

    let (code, out, _) =
        tokio::task::block_in_place(|| connections_test(&server, "calls", "intake"));
    assert_eq!(code, 2);
    assert_eq!(
        out.trim(),
        "calls/intake: error: Connector does not provide a config tester."
    );

    let (code, out, err) =
        tokio::task::block_in_place(|| connections_test(&server, "calls", "nope"));
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("connection 'nope' not found in solution 'calls'"),
        "{err}"
    );

    // The API: token required, 404 for unknown names, the result as JSON.
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/connections/calls/good/test");
    let r = client.post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(server.url("/api/v1/connections/nope/good/test"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "solution 'nope' not found");
    let r = client.post(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "message": format!("GET {base} answered HTTP 200")})
    );
    let r = client
        .post(server.url("/api/v1/connections/calls/refused/test"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "failed");

    // Secrets stay out of the logs and of the connections API.
    let (_, sol_json) = server.api("/solutions/calls").await;
    assert!(!sol_json.to_string().contains("12345"), "{sol_json}");
    assert!(!sol_json.to_string().contains("wrong-pw"), "{sol_json}");
    assert!(
        !sol_json.to_string().contains("plain-inbound-key"),
        "{sol_json}"
    );
    assert!(!server.logs().contains("12345"));
    // Connections and triggers without provisioning hooks are provisioned at once.
    let prov = sol_json["provisioning"].as_array().unwrap();
    assert_eq!(prov.len(), 5, "{sol_json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_with_shapes_the_answer_to_an_accepted_event() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "answers",
        "name: answers\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: pet, type: string } ]\n    respond_with:\n      status: 201\n      headers: { x-pet: \"{{ trigger.body.pet }}\" }\n      body: \"thanks for {{ trigger.body.pet }}, job {{ job.id }}\"\nsteps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n",
        )],
    );
    std::fs::write(
        sol.join("runbooks/bad.yaml"),
        "name: bad\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: code, type: integer } ]\n    respond_with: { status: \"{{ trigger.body.code }}\" }\nsteps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n",
    )
    .unwrap();
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    // An answer that cannot be built rejects the event before a job is stored.
    let (status, body) = server
        .post("/inbound/answers/bad", &json!({"code": 999}), &[])
        .await;
    assert_eq!(status, 500);
    assert_eq!(
        body["error"],
        "respond_with invalid: status: 999 is not an HTTP status (100 to 599)"
    );
    let (_, jobs) = server.api("/jobs?runbook=bad").await;
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    let (status, _) = server
        .post("/inbound/answers/bad", &json!({"code": 202}), &[])
        .await;
    assert_eq!(status, 202);

    let r = reqwest::Client::new()
        .post(server.url("/inbound/answers/r"))
        .json(&json!({"pet": "dog"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["x-pet"], "dog");
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let job_id = r.headers()["x-job-uuid"].to_str().unwrap().to_string();
    assert_eq!(
        r.text().await.unwrap(),
        format!("thanks for dog, job {job_id}")
    );
    let job = server
        .wait_job(&job_id, &["finished"], std::time::Duration::from_secs(30))
        .await;
    assert_eq!(job["trigger_output"]["body"]["pet"], "dog");
}
