//! The Xurrent App Connector's actions (spec §10) through the real `ferry serve` against the
//! real `ferry emulator`:
//!
//! - an Installation Changed job reads the App config (rescheduling until the customer's secret
//!   and a required custom field arrive), gets the customer's client-credentials application
//!   and an access token of the customer's account, the authorization-code application,
//!   updates the App Instance and calls the customer's GraphQL API with the token; customer
//!   and App come from the trigger; secrets are scanned for in the database bytes, the step
//!   records and the logs;
//! - Async URLs polls URLs that become ready at different times, across reschedules and a
//!   restart of `ferry serve`; the provider's token goes only to a host the runbook allows.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REF: &str = "phone";

async fn emu_post(emu: &Emulator, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", emu.base))
        .json(&body)
        .send()
        .await
        .expect("emulator request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn provider_graphql(emu: &Emulator, query: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/graphql", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("emulator request");
    resp.json().await.unwrap()
}

async fn jobs(server: &Server, solution: &str, runbook: &str) -> Vec<Value> {
    let (_, page) = server
        .api(&format!("/jobs?solution={solution}&runbook={runbook}"))
        .await;
    page["jobs"].as_array().cloned().unwrap_or_default()
}

async fn job(server: &Server, id: &str) -> Value {
    server.api(&format!("/jobs/{id}")).await.1
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn data_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.file_name().is_some_and(|n| n != "master.key") {
            bytes.extend(std::fs::read(p).unwrap());
        }
    }
    bytes
}

fn open(data: &std::path::Path, sealed: &Value) -> String {
    let secrets = ferry_core::secrets::Secrets::load_or_create(data).unwrap();
    secrets
        .open(sealed.as_str().expect("a sealed value"))
        .unwrap()
        .to_string()
}

/// Open a host-bound secret for a request to `url`; the generic `open` must refuse it.
fn open_for(data: &std::path::Path, sealed: &Value, url: &str) -> String {
    let secrets = ferry_core::secrets::Secrets::load_or_create(data).unwrap();
    let sealed = sealed.as_str().expect("a sealed value");
    let refused = secrets.open(sealed).unwrap_err().to_string();
    assert!(
        refused.starts_with("this secret may only be sent to "),
        "{refused}"
    );
    secrets
        .open_for(sealed, &reqwest::Url::parse(url).unwrap())
        .unwrap()
        .to_string()
}

/// A loopback HTTP server that records every byte it receives (and answers 200).
async fn recording_server() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                if let Ok(n) = sock.read(&mut buf).await {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (base, seen)
}

fn provider_connection(emu: &Emulator, direction: &str) -> String {
    format!(
        r#"    connector: xurrent_app
    direction: {direction}
    config:
      credentials: {{ account_id: wdc, personal_access_token: "{token}" }}
      environment:
        graphql_endpoint: "{b}/graphql"
        rest_endpoint: "{b}/v1"
        oauth2_endpoint: "{b}/token"
      account_url_template: "{b}/accounts/{{account}}"
      allow_http_loopback: true
      client_rate_limit: false
"#,
        token = ferry_emulator::DEFAULT_TOKEN,
        b = emu.base,
    )
}

fn step_output<'a>(job: &'a Value, id: &str) -> &'a Value {
    let s = steps(job, id);
    let last = s
        .iter()
        .rev()
        .find(|s| s["status"] == "succeeded" || s["status"] == "finished")
        .or(s.last())
        .unwrap_or_else(|| panic!("no step {id} in {job:#}"));
    match &last["outputs"] {
        Value::Array(a) if a.len() == 1 => &a[0],
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_actions_through_serve_and_the_emulator() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    emu_post(
        &emu,
        "/_emulator/apps/offerings",
        json!({
            "provider": "wdc",
            "offering": {"reference": REF, "name": "Phone", "policyJwtAlg": "es256",
                         "scopes": [{"actions": ["read"], "effect": "allow", "grantType": "client_credentials"}]},
        }),
    )
    .await;
    let installed = r#"name: installed
trigger:
  connector: xurrent_app
  type: installation_changed
  connection: provider
  config: { event: app_instance.create, app_reference: phone }
steps:
  - id: config
    action: xurrent_app.retrieve_app_config
    connection: provider_out
    input:
      reschedule_after: 1
      config_schema:
        - { id: password, type: secret_string, required: true }
        - { id: region, type: string, required: true }
        - { id: bounces, type: integer }
        - { id: absent, type: string }
  - id: token
    action: xurrent_app.client_credentials_token
    connection: provider_out
  - id: code
    action: xurrent_app.authorization_code_token
    connection: provider_out
  - id: explicit
    action: xurrent_app.client_credentials_token
    connection: provider_out
    input: { customer_account_id: widget, app_reference: phone, fetch_access_token: false }
  - id: other
    action: xurrent_app.client_credentials_token
    connection: provider_out
    input: { app_reference: not_installed }
  - id: update
    action: xurrent_app.update_app_config
    connection: provider_out
    input:
      custom_fields:
        - { id: region, value: "{{ steps.config.config.region }}" }
        - { id: status, value: configured }
      suspension: { suspended: true, comment: "Wait for it..." }
  - id: me
    action: http.send_request
    connection: customer_api
    input:
      method: POST
      path: /graphql
      headers:
        - { name: content-type, value: application/json }
        - { name: authorization, value: "Bearer {{ steps.token.access_token }}" }
        - { name: x-xurrent-account, value: "{{ steps.token.customer_account_id }}" }
      body: '{"query": "{ me { id name } }"}'
"#;
    let secrets_rb = r#"name: secrets
trigger:
  connector: xurrent_app
  type: secrets_changed
  connection: provider
  config: { app_references: [phone] }
steps:
  - { id: seen, action: debug.log_message, input: { message: "secrets of {{ trigger.customer_account_id }}" } }
"#;
    // Spec 125/129: the instance's statuses as they are, the customer and App from the input.
    let status_rb = r#"name: status
trigger:
  connector: json_endpoint
  type: endpoint
  config: { body_schema: [ { id: n, type: integer } ] }
steps:
  - id: cfg
    action: xurrent_app.retrieve_app_config
    connection: provider_out
    input:
      customer_account_id: widget
      app_reference: phone
      config_schema: [ { id: optional_field, type: string }, { id: password, type: secret_string } ]
"#;
    // Issue 9, Security: the customer's token and client secret are bound to the customer's
    // Xurrent hosts; a request anywhere else fails the step and sends nothing.
    let leak_rb = r#"name: leak
trigger:
  connector: json_endpoint
  type: endpoint
  config: { body_schema: [ { id: what, type: string } ] }
steps:
  - id: token
    action: xurrent_app.client_credentials_token
    connection: provider_out
    input: { customer_account_id: widget, app_reference: phone }
  - id: leak
    action: http.send_request
    connection: elsewhere
    input:
      method: POST
      path: /collect
      headers:
        - { name: authorization, value: "{% if trigger.body.what == 'token' %}Bearer {{ steps.token.access_token }}{% else %}none{% endif %}" }
      body: "{% if trigger.body.what == 'secret' %}{{ steps.token.client_secret }}{% else %}none{% endif %}"
"#;
    let (elsewhere, elsewhere_seen) = recording_server().await;
    let sol = solution(
        tmp.path(),
        "app",
        &format!(
            "name: app\nconnections:\n  provider:\n{}  provider_out:\n{}  customer_api:\n    connector: http\n    direction: outbound\n    config: {{ base_url: \"{}\" }}\n  elsewhere:\n    connector: http\n    direction: outbound\n    config: {{ base_url: \"{}\" }}\n",
            provider_connection(&emu, "inbound"),
            provider_connection(&emu, "outbound"),
            emu.base,
            elsewhere,
        ),
        &[
            ("secrets", secrets_rb),
            ("installed", installed),
            ("status", status_rb),
            ("leak", leak_rb),
        ],
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&sol], &[]);
    // Provisioned: the webhooks exist (their names start with "Ferry app/").
    wait_until("provisioning", &server, || async {
        let (_, s) = server.api("/solutions/app").await;
        let items = s["provisioning"].as_array().cloned().unwrap_or_default();
        (items.len() >= 2
            && items
                .iter()
                .all(|i| i["state"] == "provisioned" || i["state"] == "done" || i["state"] == "ok"))
        .then_some(())
    })
    .await;

    // The customer installs the App without the required `region` custom field.
    const PASSWORD: &str = "widget-pass-4711-plain";
    let install = emu_post(
        &emu,
        "/_emulator/apps/install",
        json!({"provider": "wdc", "reference": REF, "customer": "widget",
               "secrets": {"password": PASSWORD},
               "custom_fields": [{"id": "bounces", "value": "42"}]}),
    )
    .await;
    let cc_secret = install["application"]["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let ac_secret = install["authorization_application"]["client_secret"]
        .as_str()
        .unwrap()
        .to_string();

    // Retrieve App Config reschedules until `region` is there.
    let id = wait_until("a rescheduled config step", &server, || async {
        let js = jobs(&server, "app", "installed").await;
        let j = js.first()?;
        let id = j["id"].as_str()?.to_string();
        let detail = job(&server, &id).await;
        steps(&detail, "config")
            .iter()
            .any(|s| {
                s["status"] == "rescheduled"
                    && s["error"] == "Required fields not available yet: region"
            })
            .then_some(id)
    })
    .await;
    emu_post(
        &emu,
        "/_emulator/apps/update",
        json!({"provider": "wdc", "reference": REF, "customer": "widget",
               "custom_fields": [{"id": "bounces", "value": "42"}, {"id": "region", "value": "eu-west"}]}),
    )
    .await;
    let done = server
        .wait_job(&id, &["finished"], Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "finished", "{done:#}\n{}", server.logs());

    // The API shows secrets as "[secret]"; the step records hold them sealed.
    let config = step_output(&done, "config");
    assert_eq!(config["config"]["password"], "[secret]", "{config}");
    assert_eq!(config["config"]["region"], "eu-west");
    assert_eq!(config["config"]["bounces"], 42);
    assert_eq!(config["config"]["absent"], Value::Null);
    assert_eq!(config["disabled"], false);
    assert_eq!(config["enabled_by_customer"], true);
    assert_eq!(config["suspended"], false);
    assert_eq!(config["suspension_comment"], Value::Null);
    let token = step_output(&done, "token");
    assert_eq!(token["client_id"], install["application"]["client_id"]);
    assert_eq!(
        token["oauth_application_nodeID"],
        install["application"]["nodeID"]
    );
    assert_eq!(token["customer_account_id"], "widget");
    assert_eq!(token["client_secret"], "[secret]");
    assert_eq!(token["access_token"], "[secret]");
    let code = step_output(&done, "code");
    assert_eq!(
        code["client_id"],
        install["authorization_application"]["client_id"]
    );
    assert_eq!(code["client_secret"], "[secret]");
    let explicit = step_output(&done, "explicit");
    assert_eq!(explicit["client_id"], token["client_id"]);
    assert_eq!(explicit["access_token"], Value::Null, "no token fetched");
    let other = step_output(&done, "other");
    assert_eq!(other["client_id"], Value::Null, "{other}");
    assert_eq!(other["client_secret"], Value::Null);
    assert_eq!(other["access_token"], Value::Null);

    // The customer's GraphQL API answered the call made with the token.
    let me = step_output(&done, "me");
    assert_eq!(me["response"]["status"], 200, "{me}");
    assert!(
        me["response"]["body"]
            .as_str()
            .unwrap()
            .contains("\"me\":{"),
        "{me}"
    );

    // Update App Config changed the instance.
    let update = step_output(&done, "update");
    let inst = provider_graphql(
        &emu,
        "{ appInstances(first: 5) { nodes { id suspended suspensionComment customFields { id value } } } }",
    )
    .await;
    let node = &inst["data"]["appInstances"]["nodes"][0];
    assert_eq!(update["app_instance_id"], node["id"], "{inst}");
    assert_eq!(node["suspended"], true);
    assert_eq!(node["suspensionComment"], "Wait for it...");
    let cf = node["customFields"].to_string();
    assert!(cf.contains("configured") && cf.contains("eu-west"), "{cf}");

    // Spec 125: a disabled, suspended instance, read by a runbook without App trigger.
    emu_post(
        &emu,
        "/_emulator/apps/update",
        json!({"provider": "wdc", "reference": REF, "customer": "widget",
               "disabled": true, "enabled_by_customer": false}),
    )
    .await;
    let (status, created) = server.post("/inbound/app/status", &json!({}), &[]).await;
    assert!(status < 300, "{status} {created}");
    let sid = created["job_uuid"].as_str().unwrap().to_string();
    let status_job = server
        .wait_job(&sid, &["finished", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(
        step_output(&status_job, "cfg"),
        &json!({"config": {"optional_field": null, "password": "[secret]"}, "disabled": true,
                "enabled_by_customer": false, "suspended": true,
                "suspension_comment": "Wait for it..."}),
        "{status_job:#}"
    );

    // The bound token and client secret: the step fails naming the binding and the
    // destination; the other loopback server receives nothing.
    let emu_origin = emu.base.trim_end_matches('/').to_string();
    for what in ["token", "secret"] {
        let (status, created) = server
            .post("/inbound/app/leak", &json!({"what": what}), &[])
            .await;
        assert!(status < 300, "{status} {created}");
        let lid = created["job_uuid"].as_str().unwrap().to_string();
        let leak_job = server
            .wait_job(&lid, &["finished", "failed"], Duration::from_secs(30))
            .await;
        assert_eq!(leak_job["status"], "failed", "{leak_job:#}");
        let leak_steps = steps(&leak_job, "leak");
        let error = leak_steps
            .last()
            .and_then(|s| s["error"].as_str())
            .unwrap_or_else(|| panic!("no error on the leak step: {leak_job:#}"))
            .to_string();
        assert!(
            error.contains(&format!(
                "this secret may only be sent to {emu_origin}, not {elsewhere}"
            )),
            "{what}: {error}"
        );
    }
    assert!(
        elsewhere_seen.lock().unwrap().is_empty(),
        "the other server received a request"
    );

    // Every secret: sealed in the step records, never in plain text in the database bytes,
    // the API's step records or the logs.
    let records = done.to_string();
    server.terminate();
    let logs = server.logs();
    let sealed = stored_outputs(&data, &id).await;
    let pw = &sealed["config"]["config"]["password"];
    assert_eq!(open(&data, pw), PASSWORD);
    // Bound to the customer's hosts (all on the emulator here): open only for a request there.
    let graphql = format!("{}/graphql", emu.base);
    assert_eq!(
        open_for(&data, &sealed["token"]["client_secret"], &graphql),
        cc_secret
    );
    assert_eq!(
        open_for(&data, &sealed["code"]["client_secret"], &graphql),
        ac_secret
    );
    let access = open_for(&data, &sealed["token"]["access_token"], &graphql);
    assert!(!access.is_empty());
    let bytes = data_bytes(&data);
    for plain in [
        PASSWORD,
        cc_secret.as_str(),
        ac_secret.as_str(),
        access.as_str(),
    ] {
        assert!(!contains(&bytes, plain), "{plain} in the database bytes");
        assert!(!records.contains(plain), "{plain} in the step records");
        assert!(!logs.contains(plain), "{plain} in the logs");
    }
}

/// The last outputs of each step of a job, as stored (server stopped).
async fn stored_outputs(data: &std::path::Path, id: &str) -> Value {
    use ferry_store::Store as _;
    let store = ferry_store::SqliteStore::open(
        &data.join("ferry.db"),
        ferry_store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let id: ferry_store::JobId = id.parse().unwrap();
    let mut out = serde_json::Map::new();
    for s in store.job_steps(id).await.unwrap() {
        if let Some(first) = s.outputs.as_array().and_then(|a| a.first()) {
            out.insert(s.step_id.clone(), first.clone());
        }
    }
    Value::Object(out)
}

/// A tiny HTTP server: `GET /<name>` answers `{}` until `<name>` has been polled `ready_after`
/// times, then its data; it records the credentials of every request.
/// One request: path, `Authorization` and `X-Xurrent-Account` headers.
type Seen = (String, Option<String>, Option<String>);

#[derive(Clone, Default)]
struct Polled {
    ready_after: Arc<Mutex<HashMap<String, usize>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Polled {
    fn polls(&self, name: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == name)
            .count()
    }
}

async fn serve_polled(state: Polled) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !contains(&buf, "\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let header = |n: &str| {
                    head.lines()
                        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{n}:")))
                        .map(|l| l[n.len() + 1..].trim().to_string())
                };
                let (auth, account) = (header("authorization"), header("x-xurrent-account"));
                let n = {
                    let mut seen = state.seen.lock().unwrap();
                    seen.push((path.clone(), auth, account));
                    seen.iter().filter(|(p, _, _)| *p == path).count()
                };
                let ready = state
                    .ready_after
                    .lock()
                    .unwrap()
                    .get(&path)
                    .is_some_and(|after| n > *after);
                let (status, body) = match path.as_str() {
                    "missing" => ("404 Not Found", "Not Found".to_string()),
                    "broken" => ("200 OK", "invalid json {".to_string()),
                    _ if ready => (
                        "200 OK",
                        json!({"result": format!("data of {path}"), "polls": n}).to_string(),
                    ),
                    _ => ("200 OK", "{}".to_string()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_urls_across_reschedules_and_a_restart() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    // A URL on the provider's own Xurrent host (the emulator): its REST API answers only with
    // the provider's token.
    let policy: Value = reqwest::Client::new()
        .post(format!("{}/v1/webhook_policies", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"jwt_alg": "es256"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let policy_url = format!("{}/v1/webhook_policies/{}", emu.base, policy["id"]);
    let (open_host, trusted) = (Polled::default(), Polled::default());
    let open_addr = serve_polled(open_host.clone()).await;
    let trusted_addr = serve_polled(trusted.clone()).await;
    // first: ready at once; second (trusted host): after 2 polls; third: after 6 polls.
    open_host
        .ready_after
        .lock()
        .unwrap()
        .extend([("first".to_string(), 0), ("third".to_string(), 6)]);
    trusted
        .ready_after
        .lock()
        .unwrap()
        .insert("second".into(), 2);
    let poll = format!(
        r#"name: poll
trigger:
  connector: json_endpoint
  type: endpoint
  config: {{ body_schema: [ {{ id: n, type: integer }} ] }}
steps:
  - id: urls
    action: xurrent_app.async_urls
    connection: provider
    input:
      urls: [ "http://{open_addr}/first", "http://{trusted_addr}/second", "http://{open_addr}/third" ]
      backoff_time: 1
      max_iterations: 50
      token_hosts: [ "{trusted_addr}" ]
    branches:
      result:
        - {{ id: got, action: debug.log_message, input: {{ message: "got {{{{ steps.urls.url }}}} {{{{ steps.urls.body.result }}}}" }} }}
  - {{ id: after, action: debug.log_message, input: {{ message: "all done" }} }}
"#
    );
    let limited = format!(
        r#"name: limited
trigger:
  connector: json_endpoint
  type: endpoint
  config: {{ body_schema: [ {{ id: n, type: integer }} ] }}
steps:
  - id: urls
    action: xurrent_app.async_urls
    connection: provider
    input: {{ urls: [ "http://{open_addr}/never" ], backoff_time: 1, max_iterations: 2 }}
    branches:
      result: [ {{ id: got, action: debug.log_message, input: {{ message: "never" }} }} ]
"#
    );
    let endpoint = |name: &str, steps: &str| {
        format!("name: {name}\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config: {{ body_schema: [ {{ id: n, type: integer }} ] }}\nsteps:\n{steps}")
    };
    let unknown = endpoint(
        "unknown",
        r#"  - id: empty
    action: xurrent_app.async_urls
    connection: provider
    input: { urls: [] }
    branches: { result: [ { id: never, action: debug.log_message, input: { message: never } } ] }
  - id: cfg
    action: xurrent_app.retrieve_app_config
    connection: provider
    input: { customer_account_id: nobody, app_reference: nothing, config_schema: [ { id: s, type: secret_string } ] }
  - id: upd
    action: xurrent_app.update_app_config
    connection: provider
    input: { customer_account_id: nobody, app_reference: nothing, disabled: true }
"#,
    );
    let provider_host = endpoint(
        "provider_host",
        &format!("  - id: p\n    action: xurrent_app.async_urls\n    connection: provider\n    input: {{ urls: [ \"{policy_url}\" ] }}\n    branches: {{ result: [ {{ id: got, action: debug.log_message, input: {{ message: \"{{{{ steps.p.body.id }}}}\" }} }} ] }}\n"),
    );
    let notyet = endpoint(
        "notyet",
        r#"  - id: cfg
    action: xurrent_app.retrieve_app_config
    connection: provider
    input: { customer_account_id: nobody, app_reference: nothing, config_schema: [ { id: s, type: secret_string, required: true }, { id: t, type: secret_string, required: true } ] }
"#,
    );
    let http404 = endpoint(
        "http404",
        &format!("  - id: p\n    action: xurrent_app.async_urls\n    connection: provider\n    input: {{ urls: [ \"http://{open_addr}/missing\" ] }}\n    branches: {{ result: [ {{ id: never, action: debug.log_message, input: {{ message: never }} }} ] }}\n"),
    );
    let badjson = endpoint(
        "badjson",
        &format!("  - id: p\n    action: xurrent_app.async_urls\n    connection: provider\n    input: {{ urls: [ \"http://{open_addr}/broken\" ] }}\n    branches: {{ result: [ {{ id: never, action: debug.log_message, input: {{ message: never }} }} ] }}\n"),
    );
    let sol = solution(
        tmp.path(),
        "polling",
        &format!(
            "name: polling\nconnections:\n  provider:\n{}",
            provider_connection(&emu, "outbound")
        ),
        &[
            ("poll", &poll),
            ("limited", &limited),
            ("unknown", &unknown),
            ("notyet", &notyet),
            ("provider_host", &provider_host),
            ("http404", &http404),
            ("badjson", &badjson),
        ],
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&sol], &[]);
    let (status, created) = server
        .post("/inbound/polling/poll", &json!({"n": 1}), &[])
        .await;
    assert!(status < 300, "{status} {created}");
    let (status, _) = server
        .post("/inbound/polling/limited", &json!({}), &[])
        .await;
    assert!(status < 300);

    // Wait for the first result and a reschedule, then restart `ferry serve`.
    let id = wait_until("the first result and a reschedule", &server, || async {
        let js = jobs(&server, "polling", "poll").await;
        let id = js.first()?["id"].as_str()?.to_string();
        let detail = job(&server, &id).await;
        let got = steps(&detail, "got").len();
        let waits = steps(&detail, "urls")
            .iter()
            .filter(|s| s["status"] == "rescheduled" && s["error"] == "Data not available yet")
            .count();
        (got >= 1 && waits >= 1).then_some(id)
    })
    .await;
    server.terminate();
    let polls_before = open_host.polls("third");
    let mut server = Server::start(&data, &[&sol], &[]);
    let done = server
        .wait_job(&id, &["finished", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "finished", "{done:#}\n{}", server.logs());
    let got: Vec<String> = steps(&done, "got")
        .iter()
        .map(|s| {
            s["input"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        got,
        [
            format!("got http://{open_addr}/first data of first"),
            format!("got http://{trusted_addr}/second data of second"),
            format!("got http://{open_addr}/third data of third"),
        ],
        "{done:#}"
    );
    assert_eq!(steps(&done, "after").len(), 1);
    // Each URL is polled until ready, never after: first once, second 3 times, third 7 times
    // (across the restart).
    assert_eq!(open_host.polls("first"), 1);
    assert_eq!(trusted.polls("second"), 3);
    assert_eq!(open_host.polls("third"), 7);
    assert!(
        polls_before < 7,
        "the restart happened before the third URL was ready"
    );
    // The provider's token went to the host the runbook allows, and nowhere else.
    let token = format!("Bearer {}", ferry_emulator::DEFAULT_TOKEN);
    for (path, auth, account) in trusted.seen.lock().unwrap().iter() {
        assert_eq!(auth.as_deref(), Some(token.as_str()), "{path}");
        assert_eq!(account.as_deref(), Some("wdc"));
    }
    for (path, auth, account) in open_host.seen.lock().unwrap().iter() {
        assert_eq!((auth, account), (&None, &None), "{path} got credentials");
    }

    // max_iterations 2: two reschedules, then the spec's failure.
    let limited_jobs = jobs(&server, "polling", "limited").await;
    let lid = limited_jobs[0]["id"].as_str().unwrap().to_string();
    let failed = server
        .wait_job(&lid, &["failed"], Duration::from_secs(30))
        .await;
    assert_eq!(
        failed["error"], "Maximum iterations (2) reached without finding data",
        "{failed:#}"
    );
    assert_eq!(open_host.polls("never"), 2);

    // Spec 149, 130, 134, 127, 144, 146.
    let run = |rb: &'static str| {
        let server = &server;
        async move {
            let (status, created) = server
                .post(&format!("/inbound/polling/{rb}"), &json!({}), &[])
                .await;
            assert!(status < 300, "{rb}: {status} {created}");
            created["job_uuid"].as_str().unwrap().to_string()
        }
    };
    let unknown_id = run("unknown").await;
    let j = server
        .wait_job(&unknown_id, &["failed"], Duration::from_secs(30))
        .await;
    assert_eq!(
        j["error"], "App instance nothing not found for customer nobody",
        "{j:#}"
    );
    assert_eq!(steps(&j, "empty")[0]["outputs"], json!([]));
    assert!(steps(&j, "never").is_empty());
    assert_eq!(
        step_output(&j, "cfg"),
        &json!({"config": {}, "disabled": null, "enabled_by_customer": null, "suspended": null, "suspension_comment": null})
    );
    let notyet_id = run("notyet").await;
    let first = wait_until("a not-yet reschedule", &server, || async {
        let j = job(&server, &notyet_id).await;
        steps(&j, "cfg").first().map(|s| (*s).clone())
    })
    .await;
    assert_eq!(first["status"], "rescheduled");
    assert_eq!(first["error"], "Required secrets not available yet: s, t");
    let ph = run("provider_host").await;
    let j = server
        .wait_job(&ph, &["finished", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(j["status"], "finished", "{j:#}");
    assert_eq!(
        steps(&j, "got")[0]["input"]["message"],
        policy["id"].to_string()
    );
    let id404 = run("http404").await;
    let j = server
        .wait_job(&id404, &["failed"], Duration::from_secs(30))
        .await;
    assert_eq!(
        j["error"],
        format!("HTTP Error 404: 'Not Found' for URL: 'http://{open_addr}/missing'")
    );
    let bad = run("badjson").await;
    let j = server
        .wait_job(&bad, &["failed"], Duration::from_secs(30))
        .await;
    let e = j["error"].as_str().unwrap();
    assert!(
        e.starts_with(&format!(
            "JSON Parser Error for URL 'http://{open_addr}/broken': "
        )) && e.ends_with(". Response body: 'invalid json {'"),
        "{e}"
    );
    server.terminate();
}
