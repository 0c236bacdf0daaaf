//! Operating `ferry serve`: one server per data directory, job leases, retention, JSON logs with
//! request and job ids, the OpenAPI document. End-to-end through the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const LOG_RUNBOOK: &str = "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: log, action: debug.log_message, input: { message: \"n={{ trigger.body.n }}\" } }\n";

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_exits_and_names_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sol = solution(tmp.path(), "s", "name: s\n", &[("r", LOG_RUNBOOK)]);
    let mut first = Server::start(&data, &[&sol], &[]);

    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg(&sol)
        .env("FERRY_API_TOKEN", TOKEN)
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second server must not start");
    assert!(
        stderr.contains(&format!("pid {}", first.child.id())),
        "the message names the other process: {stderr}"
    );
    assert!(
        stderr.contains(&format!("listening on {}", first.addr)),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Ferry listening"),
        "it never listened"
    );
    // The first server is untouched and still serves.
    let (code, _) = first.post("/inbound/s/r", &json!({"n": 1}), &[]).await;
    assert_eq!(code, 200);

    // Once the first has stopped, the directory is free again.
    first.terminate();
    let again = Server::start(&data, &[&sol], &[]);
    let (code, _) = again.api("/jobs").await;
    assert_eq!(code, 200);
}

/// An HTTP server whose every answer takes `delay`; counts the requests it got.
async fn slow_server(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let calls = calls2.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            "{\"ok\":true}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

#[tokio::test]
async fn a_step_longer_than_the_lease_keeps_its_job_by_renewing_the_lease() {
    // The step takes several leases; other idle workers would take over the job (and call the
    // slow server again) if its lease were not renewed.
    let (base, calls) = slow_server(Duration::from_secs(5)).await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "slow",
        &format!("name: slow\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n"),
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - id: call\n    action: http.send_request\n    connection: api\n    input: { method: GET, path: /slow, timeout_seconds: 60 }\n",
        )],
    );
    let server = Server::start_with(
        &tmp.path().join("data"),
        &[&sol],
        &[],
        &["--lease", "2s", "--workers", "4"],
    );
    let (code, body) = server.post("/inbound/slow/r", &json!({"n": 1}), &[]).await;
    assert_eq!(code, 200, "{body}");
    let id = body["job_uuid"].as_str().unwrap();
    let job = server
        .wait_job(id, &["finished", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");
    assert_eq!(job["attempts"], 1, "claimed once: {job:#}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the step ran once");
    assert_eq!(steps(&job, "call").len(), 1);
    assert!(!server.logs().contains("lease lost"), "{}", server.logs());
}

#[tokio::test]
async fn retention_purges_old_finished_jobs_and_keeps_unfinished_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[
            ("r", LOG_RUNBOOK),
            (
                "w",
                "name: w\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - id: pause\n    action: flow.wait\n    input: { seconds_to_wait: 3600 }\n",
            ),
            (
                "f",
                "name: f\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: boom, action: flow.fail, input: { message: boom } }\n",
            ),
        ],
    );
    let server = Server::start_with(
        &tmp.path().join("data"),
        &[&sol],
        &[],
        &["--retention", "1s", "--retention-interval", "1s"],
    );
    let post = |rb: &'static str| {
        let server = &server;
        async move {
            let (code, body) = server
                .post(&format!("/inbound/s/{rb}"), &json!({"n": 1}), &[])
                .await;
            assert_eq!(code, 200, "{body}");
            body["job_uuid"].as_str().unwrap().to_string()
        }
    };
    let waiting = post("w").await;
    server
        .wait_job(&waiting, &["waiting"], Duration::from_secs(15))
        .await;
    let finished = post("r").await;
    let failed = post("f").await;
    // Both run to their end, then disappear (with their steps) once older than a second.
    for id in [&finished, &failed] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, job) = server.api(&format!("/jobs/{id}")).await;
            if code == 404 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} was not purged: {job:#}\n{}",
                server.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The waiting job stays: only finished and failed jobs are purged.
    let (code, job) = server.api(&format!("/jobs/{waiting}")).await;
    assert_eq!(code, 200);
    assert_eq!(job["status"], "waiting");
    let (_, list) = server.api("/jobs").await;
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [waiting.as_str()]);
}

#[tokio::test]
async fn retention_keeps_recent_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(tmp.path(), "s", "name: s\n", &[("r", LOG_RUNBOOK)]);
    let server = Server::start_with(
        &tmp.path().join("data"),
        &[&sol],
        &[],
        &["--retention", "1h", "--retention-interval", "1s"],
    );
    let (_, body) = server.post("/inbound/s/r", &json!({"n": 1}), &[]).await;
    let id = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&id, &["finished"], Duration::from_secs(15))
        .await;
    // Several purge rounds pass ("retention: …" is logged at start-up; rounds every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, _) = server.api(&format!("/jobs/{id}")).await;
    assert_eq!(code, 200, "a job finished a moment ago is kept");
}

#[test]
fn bad_durations_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(tmp.path(), "s", "name: s\n", &[("r", LOG_RUNBOOK)]);
    for (flag, value) in [("--retention", "soon"), ("--lease", "0s")] {
        let out = ferry(
            &[
                "serve",
                "--data",
                tmp.path().join("data").to_str().unwrap(),
                flag,
                value,
                sol.to_str().unwrap(),
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_the_job_id() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(tmp.path(), "s", "name: s\n", &[("r", LOG_RUNBOOK)]);
    let log_path = tmp.path().join("stderr.log");
    let mut child = Command::new(bin())
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(tmp.path().join("data"))
        .arg(&sol)
        .env("FERRY_API_TOKEN", TOKEN)
        .env("FERRY_LOG", "info,ferry_server=debug,ferry_engine=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Ferry listening on http://")
                .map(str::to_string)
        })
        .expect("server address");
    std::thread::spawn(move || for _ in lines {});
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{addr}/inbound/s/r"))
        .header("x-request-id", "req-e2e-42")
        .json(&json!({"n": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("x-request-id").unwrap(),
        "req-e2e-42",
        "the request id is answered"
    );
    let job_id = resp.json::<Value>().await.unwrap()["job_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    // Without an incoming id, the server makes one and answers it.
    let resp = client
        .get(format!("http://{addr}/api/v1/jobs/{job_id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let generated = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    // Wait for the job's own log lines.
    let deadline = Instant::now() + Duration::from_secs(30);
    let parsed = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        let parsed: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let job_done = parsed.iter().any(|v| {
            v["span"]["name"] == "job"
                && v["span"]["job"] == job_id.as_str()
                && v["fields"]["message"] == "job run ended"
        });
        if job_done {
            break parsed;
        }
        assert!(Instant::now() < deadline, "no job log line yet:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    // The line that accepted the event names both the request and the job.
    assert!(
        parsed.iter().any(|v| {
            v["fields"]["message"] == "event accepted"
                && v["fields"]["job"] == job_id.as_str()
                && v["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["request_id"] == "req-e2e-42"))
        }),
        "{parsed:#?}"
    );
    // Every line has a level and a timestamp.
    assert!(parsed
        .iter()
        .all(|v| v["level"].is_string() && v["timestamp"].is_string()));
}

#[tokio::test]
async fn the_openapi_document_describes_the_api_and_needs_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(tmp.path(), "s", "name: s\n", &[("r", LOG_RUNBOOK)]);
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let doc: Value = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/api/v1/solutions",
        "/api/v1/solutions/{solution}",
        "/api/v1/solutions/{solution}/runbooks",
        "/api/v1/solutions/{solution}/runbooks/{runbook}",
        "/api/v1/solutions/{solution}/connections",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/rerun",
        "/api/v1/connections/{solution}/{name}/test",
        "/api/v1/connections/{solution}/{name}/refresh-schema",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing: {doc:#}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "Job",
        "JobDetail",
        "Step",
        "ErrorBody",
        "Solution",
        "ProvisionStatus",
        "ConnectionTest",
        "SchemaRefresh",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    // The routes themselves still need the token.
    let code = reqwest::get(server.url("/api/v1/jobs"))
        .await
        .unwrap()
        .status();
    assert_eq!(code, 401);
}
