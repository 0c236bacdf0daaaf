//! The `xurrent.mutation` action through the real binary (`ferry run`, `ferry validate`)
//! against an emulator on a loopback port: a `requestCreate` step creates the request in the
//! emulator and outputs it; payload errors fail the job with their messages joined by `; `;
//! an unknown mutation name is a `ferry validate` error with `file:line`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

async fn emulator() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(ferry_emulator::EmulatorConfig {
        listen: addr,
        ..Default::default()
    })
    .await
    .unwrap();
    let app = ferry_emulator::router(emu);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn mutation_solution(root: &Path, base: &str, step_input: &str) -> PathBuf {
    mutation_solution_with_env(root, base, step_input, "")
}

/// `env` is the solution's `env:` section (empty: none).
fn mutation_solution_with_env(root: &Path, base: &str, step_input: &str, env: &str) -> PathBuf {
    let yaml = format!(
        "name: xm\n{env}connections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: wdc\n        personal_access_token: {token}\n      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {base}/token\n        rest_endpoint: {base}/v1\n",
        token = ferry_emulator::DEFAULT_TOKEN
    );
    let runbook = format!(
        "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ {{ id: subject, type: string }}, {{ id: team, type: string }} ]\nsteps:\n  - id: mutate\n    action: xurrent.mutation\n    connection: x\n    input:\n{step_input}  - id: after\n    action: debug.log_message\n    input: {{ message: \"created {{{{ steps.mutate.request.id }}}}\" }}\n"
    );
    solution(root, "xm", &yaml, &[("r", &runbook)])
}

fn run(dir: &Path, event: &Value) -> (i32, Value, String) {
    let (code, job, err) = run_json(dir, "r", event);
    (code, job, err)
}

async fn emulator_requests(base: &str) -> Vec<Value> {
    let found: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"query": "{ requests(first: 100) { nodes { id subject } } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    found["data"]["requests"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no requests in {found}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_create_creates_the_request_in_the_emulator() {
    let base = emulator().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp.path(),
        &base,
        "      mutation: requestCreate\n      input:\n        subject: \"{{ trigger.body.subject }}\"\n        category: incident\n",
    );
    let before = emulator_requests(&base).await.len();
    let (code, job, err) = tokio::task::spawn_blocking(move || {
        run(&dir, &json!({"subject": "Mutation through Ferry"}))
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "finished", "{job:#}");
    let out = &steps(&job, "mutate")[0]["outputs"][0];
    let id = out["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job:#}"));
    assert_eq!(
        out["request"]["subject"], "Mutation through Ferry",
        "{out:#}"
    );
    // The answer's `x-request-id` header is part of the output.
    assert!(
        out["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{out:#}"
    );

    let requests = emulator_requests(&base).await;
    assert_eq!(requests.len(), before + 1);
    let created = requests
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("request {id} not in the emulator: {requests:?}"));
    assert_eq!(created["subject"], "Mutation through Ferry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_errors_fail_the_job_with_their_messages() {
    let base = emulator().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp.path(),
        &base,
        "      mutation: requestCreate\n      input:\n        subject: \"{{ trigger.body.subject }}\"\n        teamId: \"{{ trigger.body.team }}\"\n",
    );
    let before = emulator_requests(&base).await.len();
    let (code, job, err) = tokio::task::spawn_blocking(move || {
        run(&dir, &json!({"subject": "  ", "team": "no-such-team"}))
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Mutation error: "), "{error}");
    assert!(error.contains("Subject can't be blank"), "{error}");
    assert!(
        error.contains("; Not Found: no record with id 'no-such-team'"),
        "{error}"
    );
    assert!(steps(&job, "after").is_empty(), "{job:#}");
    assert_eq!(emulator_requests(&base).await.len(), before);
}

/// A secret variable in the input is sealed in the job but sent in plain text to Xurrent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_in_the_input_are_sent_decrypted() {
    let base = emulator().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = mutation_solution_with_env(
        tmp.path(),
        &base,
        "      mutation: requestCreate\n      input:\n        subject: \"{{ env.SUBJECT }}\"\n",
        "env:\n  SUBJECT: { secret: true, from_env: TEST_MUTATION_SUBJECT }\n",
    );
    let event = tmp.path().join("event.json");
    std::fs::write(&event, b"{}").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        ferry(
            &[
                "run",
                dir.to_str().unwrap(),
                "--runbook",
                "r",
                "--event",
                event.to_str().unwrap(),
                "--json",
            ],
            &[("TEST_MUTATION_SUBJECT", "Secret subject 7f3a")],
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = emulator_requests(&base).await;
    assert!(
        requests
            .iter()
            .any(|r| r["subject"] == "Secret subject 7f3a"),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r["subject"].as_str().is_some_and(|s| s.contains("fsec1."))),
        "{requests:?}"
    );
}

#[test]
fn validate_names_an_unknown_mutation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp.path(),
        "http://127.0.0.1:9",
        "      mutation: requestCreat\n      input: { subject: x }\n",
    );
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("r.yaml:"), "{text}");
    assert!(
        text.contains("unknown mutation 'requestCreat' (did you mean 'requestCreate'?)"),
        "{text}"
    );

    let good = mutation_solution(
        &tmp.path().join("good"),
        "http://127.0.0.1:9",
        "      mutation: requestCreate\n      input: { subject: x }\n",
    );
    let (code, text) = validate(&good, &[]);
    assert_eq!(code, Some(0), "{text}");
}

/// The input given by individual fields (`subject:` next to `mutation:`), merged with
/// `input`; a key given both ways fails the step and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_create_by_individual_fields() {
    let base = emulator().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp.path(),
        &base,
        "      mutation: requestCreate\n      subject: \"{{ trigger.body.subject }}\"\n      input:\n        category: rfc\n",
    );
    let (code, job, err) = tokio::task::spawn_blocking(move || {
        run(&dir, &json!({"subject": "Fields form through Ferry"}))
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}\n{job:#}");
    let id = steps(&job, "mutate")[0]["outputs"][0]["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job:#}"))
        .to_string();
    let found: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"query": "query($id: ID!) { node(id: $id) { ... on Request { subject category } } }", "variables": {"id": id}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["data"]["node"],
        json!({"subject": "Fields form through Ferry", "category": "rfc"}),
        "{found}"
    );

    // Only individual fields, the required `id` null at run time (`ferry validate` cannot know):
    // the merged input is checked before anything is sent.
    let tmp2 = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp2.path(),
        &base,
        "      mutation: requestUpdate\n      id: \"{{ trigger.body.team }}\"\n      note: hello\n",
    );
    let before = emulator_requests(&base).await.len();
    let (code, job, err) = tokio::task::spawn_blocking(move || run(&dir, &json!({})))
        .await
        .unwrap();
    assert_ne!(code, 0, "{err}\n{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Input invalid: "), "{error}");
    assert!(error.contains("'id' is required"), "{error}");
    assert_eq!(emulator_requests(&base).await.len(), before);

    // Given twice: the step fails naming the key, nothing is created.
    let tmp3 = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp3.path(),
        &base,
        "      mutation: requestCreate\n      subject: \"{{ trigger.body.subject }}\"\n      input: \"{{ {'subject': 'other'} }}\"\n",
    );
    let (code, job, err) = tokio::task::spawn_blocking(move || run(&dir, &json!({"subject": "x"})))
        .await
        .unwrap();
    assert_ne!(code, 0, "{err}\n{job:#}");
    assert_eq!(
        job["error"],
        "Input invalid: input field 'subject' is given twice: as a step input and inside `input`; give it once",
        "{job:#}"
    );
    assert_eq!(emulator_requests(&base).await.len(), before);
}

#[test]
fn validate_checks_individual_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = mutation_solution(
        tmp.path(),
        "http://127.0.0.1:9",
        "      mutation: requestUpdate\n      notte: x\n      category: bug\n",
    );
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("r.yaml:"), "{text}");
    assert!(
        text.contains(
            "unknown input field 'notte' for mutation 'requestUpdate' (did you mean 'note'?)"
        ),
        "{text}"
    );
    assert!(text.contains("input.category: invalid value"), "{text}");
    assert!(
        text.contains("input: missing required key 'id' for RequestUpdateInput"),
        "{text}"
    );

    let twice = mutation_solution(
        &tmp.path().join("twice"),
        "http://127.0.0.1:9",
        "      mutation: requestCreate\n      subject: x\n      input: { subject: y }\n",
    );
    let (code, text) = validate(&twice, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("input field 'subject' is given twice"),
        "{text}"
    );

    let good = mutation_solution(
        &tmp.path().join("good"),
        "http://127.0.0.1:9",
        "      mutation: requestCreate\n      subject: x\n      input: { category: incident }\n",
    );
    let (code, text) = validate(&good, &[]);
    assert_eq!(code, Some(0), "{text}");
}
