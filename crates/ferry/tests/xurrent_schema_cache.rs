//! The per-connection schema cache through the real binaries: `ferry serve` against a real
//! `ferry emulator` process.
//!
//! - The first use of a connection introspects once — also when several jobs need the schema
//!   at the same time — and later uses do not (counted from the server's log lines).
//! - `ferry connections refresh-schema` and `POST /api/v1/connections/…/refresh-schema`
//!   introspect again and bump the generation; 404 / 409 for unknown or schema-less
//!   connections.
//! - A failing introspection is negatively cached: the next job fails with the same message
//!   without asking Xurrent again; a refresh asks again.
//! - `ferry validate` checks against the schema cached in `--data` (a field the connection's
//!   Xurrent has but the shipped schema lacks is accepted there, refused offline), and names an
//!   unknown field with `file:line`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const INTROSPECTED: &str = "xurrent: schema introspected and cached";
const REMEMBERED: &str = "xurrent: schema introspection failed; remembered";

fn connection_yaml(base: &str, account: &str) -> String {
    format!(
        "connections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: {account}\n        personal_access_token: {token}\n      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {base}/token\n        rest_endpoint: {base}/v1\n  intake:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: {{ key: x-k, value: plain-inbound-key }}\n",
        token = ferry_emulator::DEFAULT_TOKEN
    )
}

/// A solution `sc` whose runbook `r` creates a request with `input`.
fn solution_with(root: &Path, base: &str, account: &str, input: &str) -> PathBuf {
    let yaml = format!("name: sc\n{}", connection_yaml(base, account));
    let runbook = format!(
        "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ {{ id: subject, type: string }} ]\nsteps:\n  - id: mutate\n    action: xurrent.mutation\n    connection: x\n    input:\n      mutation: requestCreate\n      input:\n{input}"
    );
    solution(root, "sc", &yaml, &[("r", &runbook)])
}

fn count(server: &Server, line: &str) -> usize {
    server.logs().matches(line).count()
}

async fn create(server: &Server, subject: &str) -> Value {
    let (code, body) = server
        .post("/inbound/sc/r", &json!({ "subject": subject }), &[])
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn finish(server: &Server, accepted: &Value) -> Value {
    server
        .wait_job(
            accepted["job_uuid"].as_str().unwrap(),
            &["finished", "failed"],
            Duration::from_secs(30),
        )
        .await
}

async fn refresh_api(server: &Server, solution: &str, connection: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url(&format!(
            "/api/v1/connections/{solution}/{connection}/refresh-schema"
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn refresh_cli(server: &Server, connection: &str, json: bool) -> (i32, String, String) {
    let url = server.url("");
    let mut args = vec![
        "connections",
        "refresh-schema",
        "sc",
        connection,
        "--server",
        &url,
        "--token",
        TOKEN,
    ];
    if json {
        args.push("--json");
    }
    let out = ferry(&args, &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_introspects_once_and_refresh_introspects_again() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution_with(
        tmp.path(),
        &emu.base,
        "wdc",
        "        subject: \"{{ trigger.body.subject }}\"\n",
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);

    // Four jobs at once: one introspection.
    let mut accepted = Vec::new();
    for i in 0..4 {
        accepted.push(create(&server, &format!("first {i}")).await);
    }
    for a in &accepted {
        let job = finish(&server, a).await;
        assert_eq!(job["status"], "finished", "{job:#}\n{}", server.logs());
    }
    assert_eq!(count(&server, INTROSPECTED), 1, "{}", server.logs());
    // Later uses: none.
    let job = finish(&server, &create(&server, "later").await).await;
    assert_eq!(job["status"], "finished", "{job:#}");
    assert_eq!(count(&server, INTROSPECTED), 1, "{}", server.logs());

    // The CLI's refresh: introspects again, bumps the generation.
    // (The CLI blocks this test thread; the server is another process.)
    let (code, stdout, stderr) = refresh_cli(&server, "x", false);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("sc/x: schema refreshed: "), "{stdout}");
    assert!(stdout.contains("(generation 2)"), "{stdout}");
    let (code, stdout, _) = refresh_cli(&server, "x", true);
    assert_eq!(code, 0);
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["generation"], 3, "{summary}");
    assert_eq!(count(&server, INTROSPECTED), 3, "{}", server.logs());

    // The API's refresh answers with the summary.
    let (status, body) = refresh_api(&server, "sc", "x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["solution"], "sc");
    assert_eq!(body["connection"], "x");
    assert_eq!(body["generation"], 4, "{body}");
    assert!(body["types"].as_u64().unwrap() > 100, "{body}");
    assert!(body["duration_ms"].is_u64(), "{body}");
    assert_eq!(count(&server, INTROSPECTED), 4);

    // After a refresh, runs use the new schema without introspecting.
    let job = finish(&server, &create(&server, "after refresh").await).await;
    assert_eq!(job["status"], "finished", "{job:#}");
    assert_eq!(count(&server, INTROSPECTED), 4, "{}", server.logs());

    // Bad targets.
    let (status, body) = refresh_api(&server, "sc", "nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("'nope'"), "{body}");
    let (status, body) = refresh_api(&server, "nope", "x").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("'nope'"), "{body}");
    let (status, body) = refresh_api(&server, "sc", "intake").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("connection 'intake' (json_endpoint inbound) has no schema"),
        "{body}"
    );
    let (code, stdout, stderr) = refresh_cli(&server, "intake", false);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("error (409 Conflict)"), "{stderr}");
    assert!(stderr.contains("has no schema to refresh"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_introspection_is_negatively_cached() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    // The emulator refuses an account the token does not belong to.
    let sol = solution_with(
        tmp.path(),
        &emu.base,
        "not-the-account",
        "        subject: \"{{ trigger.body.subject }}\"\n",
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);

    let first = finish(&server, &create(&server, "one").await).await;
    assert_eq!(first["status"], "failed", "{first:#}");
    let message = first["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("Schema introspection failed: HTTP error from Xurrent GraphQL API: 4"),
        "{message}"
    );
    assert_eq!(count(&server, REMEMBERED), 1, "{}", server.logs());

    // The second job fails with the same cause, without asking the emulator again.
    let second = finish(&server, &create(&server, "two").await).await;
    assert_eq!(second["status"], "failed", "{second:#}");
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("Schema introspection failed: HTTP error from Xurrent GraphQL API: 4"),
        "{second:#}"
    );
    assert_eq!(count(&server, REMEMBERED), 1, "{}", server.logs());
    assert_eq!(count(&server, INTROSPECTED), 0);

    // A refresh asks again (and fails: 502 naming the cause).
    let (status, body) = refresh_api(&server, "sc", "x").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("HTTP error from Xurrent GraphQL API: 4"),
        "{body}"
    );
    assert_eq!(count(&server, REMEMBERED), 2, "{}", server.logs());
    // The token never shows in the logs.
    assert!(!server.logs().contains(ferry_emulator::DEFAULT_TOKEN));
}

/// The emulator's schema with one extra input field the shipped schema does not have.
fn extended_sdl(dir: &Path) -> PathBuf {
    let sdl = ferry_xurrent_schema::SDL.replacen(
        "input RequestCreateInput {\n",
        "input RequestCreateInput {\n  ferryCacheProbe: String\n",
        1,
    );
    assert_ne!(sdl, ferry_xurrent_schema::SDL);
    let path = dir.join("extended.graphql");
    std::fs::write(&path, sdl).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_against_the_cached_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let sdl = extended_sdl(tmp.path());
    let emu = start_emulator_with(&["--schema", sdl.to_str().unwrap()], None);
    // Serve once (a runbook without the field; `ferry serve` checks against the shipped
    // schema): the connection's schema is cached in the data directory.
    let sol = solution_with(
        tmp.path(),
        &emu.base,
        "wdc",
        "        subject: \"{{ trigger.body.subject }}\"\n",
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&sol], &[]);
    let job = finish(&server, &create(&server, "probe").await).await;
    assert_eq!(job["status"], "finished", "{job:#}\n{}", server.logs());
    assert_eq!(count(&server, INTROSPECTED), 1);
    server.terminate();

    // The same solution and connection, now using the field the connection's schema has.
    let sol = solution_with(
        tmp.path(),
        &emu.base,
        "wdc",
        "        subject: \"{{ trigger.body.subject }}\"\n        ferryCacheProbe: probe\n",
    );
    // Offline, the shipped schema does not know the field: file:line.
    let (code, text) = validate(&sol, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("r.yaml:"), "{text}");
    assert!(text.contains("ferryCacheProbe"), "{text}");

    let (code, text) = validate(&sol, &["--data", data.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");

    // `ferry serve` on the same data directory loads it too (its steps are checked against
    // the cached schema, not the shipped one) and the field reaches the emulator.
    let mut server = Server::start(&data, &[&sol], &[]);
    let job = finish(&server, &create(&server, "with probe").await).await;
    assert_eq!(job["status"], "finished", "{job:#}\n{}", server.logs());
    server.terminate();

    // Against the cached schema, an unknown field is still named with file:line.
    std::fs::write(
        sol.join("runbooks/r.yaml"),
        "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: subject, type: string } ]\nsteps:\n  - id: mutate\n    action: xurrent.mutation\n    connection: x\n    input:\n      mutation: requestCreate\n      input:\n        subject: x\n        subjectt: typo\n",
    )
    .unwrap();
    let (code, text) = validate(&sol, &["--data", data.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("r.yaml:"), "{text}");
    assert!(text.contains("subjectt"), "{text}");
    assert!(!text.contains("ferryCacheProbe"), "{text}");
}
