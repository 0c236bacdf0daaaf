//! Ferry against the Xurrent emulator, both as real processes: a runbook creates a request
//! through GraphQL with an OAuth client-credentials token, and a webhook from the emulator
//! (verification handshake first) starts another runbook.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn ferry_creates_records_in_the_emulator_and_receives_its_webhooks() {
    let emu = start_emulator();
    let client = reqwest::Client::new();
    let app: Value = client
        .post(format!("{}/_emulator/oauth_applications", emu.base))
        .json(&json!({"account": "wdc"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = app["client_id"].as_str().expect("client_id").to_string();
    let client_secret = app["client_secret"]
        .as_str()
        .expect("client_secret")
        .to_string();

    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "xurrent",
        &format!(
            r#"name: xurrent
env:
  EMULATOR: {base}
  CLIENT_SECRET: {{ secret: true, from_env: TEST_CLIENT_SECRET }}
connections:
  xurrent:
    connector: http
    direction: outbound
    config:
      base_url: {base}
      oauth2:
        authorization_url: {base}/token
        client_id: {client_id}
        client_secret: "{{{{ env.CLIENT_SECRET }}}}"
"#,
            base = emu.base
        ),
        &[
            (
                "create",
                r#"name: create
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ { id: subject, type: string, required: true } ]
steps:
  - id: mutate
    action: http.send_request
    connection: xurrent
    input:
      method: POST
      path: /graphql
      headers:
        - { name: content-type, value: application/json }
        - { name: x-xurrent-account, value: wdc }
      body: '{{ {"query": "mutation($s: String!) { requestCreate(input: {subject: $s}) { request { id subject } errors { path message } } }", "variables": {"s": trigger.body.subject}} | tojson }}'
  - id: check
    action: flow.if_then_else
    input: { condition: "{{ steps.mutate.response.status == 200 and (steps.mutate.response.body | fromjson).data.requestCreate.request.id is defined }}" }
    branches:
      false: [ { id: fail, action: flow.fail, input: { message: "mutation failed: {{ steps.mutate.response.body }}" } } ]
"#,
            ),
            (
                "hook",
                r#"name: hook
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema:
      - { id: event, type: string, required: true }
      - { id: object_id, type: integer }
      - { id: payload, type: hash }
steps:
  - id: kind
    action: flow.case
    input: { expression: "{{ trigger.body.event }}", matches: [webhook.verify] }
    branches:
      webhook.verify:
        - id: verify
          action: http.send_request
          connection: xurrent
          input:
            method: GET
            path: "{{ (trigger.body.payload.callback | replace(env.EMULATOR, '') | split('?'))[0] }}"
            query_parameters: [ { name: code, value: "{{ ((trigger.body.payload.callback | split('code='))[1] | split('&'))[0] }}" } ]
      else:
        - { id: seen, action: debug.log_message, input: { message: "{{ trigger.body.event }} {{ trigger.body.object_id }}" } }
"#,
            ),
        ],
    );
    let server = Server::start(
        &tmp.path().join("data"),
        &[&sol],
        &[("TEST_CLIENT_SECRET", &client_secret)],
    );

    // Register a webhook for request.create pointing at Ferry.
    let hook: Value = client
        .post(format!("{}/v1/webhooks", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"event": "request.create", "uri": server.url("/inbound/xurrent/hook")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(hook["id"].is_number(), "{hook}");

    // The verification handshake reaches Ferry, which GETs the callback.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = server.api("/jobs?runbook=hook&status=finished").await;
        if !page["jobs"].as_array().unwrap().is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let (_, all) = server.api("/jobs").await;
            let deliveries: Value = client
                .get(format!("{}/_emulator/deliveries", emu.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            panic!(
                "no verify job: {all:#}\ndeliveries: {deliveries:#}\n{}",
                server.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Ferry creates a request in the emulator.
    let (code, body) = server
        .post(
            "/inbound/xurrent/create",
            &json!({"subject": "Printer on fire"}),
            &[],
        )
        .await;
    assert_eq!(code, 200);
    let job = server
        .wait_job(
            body["job_uuid"].as_str().unwrap(),
            &["finished", "failed"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");

    // The emulator has it ...
    let found: Value = client
        .post(format!("{}/graphql", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"query": "{ requests(first: 10) { totalCount nodes { subject } } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["data"]["requests"]["nodes"][0]["subject"], "Printer on fire",
        "{found}"
    );

    // ... and its request.create webhook started the hook runbook.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = server.api("/jobs?runbook=hook&status=finished").await;
        let jobs = page["jobs"].as_array().unwrap();
        let created = jobs
            .iter()
            .find(|j| j["trigger_output"]["body"]["event"] == "request.create");
        if let Some(j) = created {
            let (_, full) = server
                .api(&format!("/jobs/{}", j["id"].as_str().unwrap()))
                .await;
            assert_eq!(steps(&full, "seen").len(), 1, "{full:#}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request.create job: {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client secret never shows.
    assert!(!server.logs().contains(&client_secret));
}

#[tokio::test]
async fn emulator_control_sub_commands_drive_the_app_store_flow() {
    let emu = start_emulator();
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/_emulator/apps/offerings", emu.base))
        .json(
            &json!({"offering": {"reference": "phone", "name": "Phone", "policyJwtAlg": "es256"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let url = emu.base.clone();
    let run = |args: Vec<String>| {
        let mut all = vec!["emulator".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        ferry(&refs, &[])
    };
    let app = |action: &str| {
        vec![
            "app",
            action,
            "--url",
            &url,
            "--reference",
            "phone",
            "--customer",
            "widget",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let mut install = app("install");
    install.extend(["--secret".to_string(), "api_key=s3cret".to_string()]);
    let out = run(install);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer.is_object(), "{answer}");
    // Installing twice is refused, and the CLI says so with a non-zero exit.
    let out = run(app("install"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    // The instance exists in the provider account.
    let instances: Value = client
        .post(format!("{}/graphql", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"query": "{ appInstances(first: 5) { nodes { customerAccount { id } suspended } } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nodes = instances["data"]["appInstances"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nodes.len(), 1, "{instances}");
    for action in ["suspend", "update", "uninstall"] {
        let out = run(app(action));
        assert!(
            out.status.success(),
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Seed, deliveries and reset.
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed.yaml");
    std::fs::write(&seed, "records:\n  Request:\n    - subject: Seeded one\n").unwrap();
    let out = run(vec![
        "seed".into(),
        seed.to_string_lossy().into(),
        "--url".into(),
        url.clone(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seeded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seeded["created"], 1, "{seeded}");
    let out = run(vec!["deliveries".into(), "--url".into(), url.clone()]);
    assert!(out.status.success());
    assert!(serde_json::from_slice::<Value>(&out.stdout).is_ok());
    let out = run(vec!["reset".into(), "--url".into(), url.clone()]);
    assert!(out.status.success());
    let after: Value = client
        .post(format!("{}/graphql", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"query": "{ requests(first: 5) { totalCount } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["data"]["requests"]["totalCount"], 0, "{after}");
}
