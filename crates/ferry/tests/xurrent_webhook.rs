//! The `xurrent.webhook` trigger through the real `ferry serve` against the real emulator
//! (`ferry emulator`), both as processes on loopback: policies and webhooks created through
//! the emulator's REST API, the `webhook.verify` handshake answered without a job, a mutation
//! in the emulator firing a signed delivery that becomes a job, replays and re-sends that do
//! not run twice, static-PEM and OpenID Connect modes, and rejections that create no job.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

impl Emulator {
    async fn rest(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
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

    async fn graphql(&self, query: &str) -> Value {
        self.rest(
            reqwest::Method::POST,
            "/graphql",
            Some(json!({ "query": query })),
        )
        .await
    }

    async fn deliveries(&self) -> Vec<Value> {
        let v: Value = reqwest::get(format!("{}/_emulator/deliveries", self.base))
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

    /// Wait for a delivery attempt matching `pred` that got an answer.
    async fn wait_delivery(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(d) = self
                .deliveries()
                .await
                .into_iter()
                .find(|d| pred(d) && !d["response_status"].is_null())
            {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no delivery {what}: {:#?}",
                self.deliveries().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Wait until the server's log has `needle` (its output is read by another thread).
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

async fn post_raw(
    server: &Server,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json; charset=utf-8")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn solution_with(
    tmp: &std::path::Path,
    inbound_config: &Value,
    trigger_config: &Value,
) -> std::path::PathBuf {
    solution(
        tmp,
        "xw",
        &format!(
            "name: xw\nconnections:\n  xurrent_in:\n    connector: xurrent\n    direction: inbound\n    config: {inbound_config}\n"
        ),
        &[(
            "hook",
            &format!(
                r#"name: hook
trigger:
  connector: xurrent
  type: webhook
  connection: xurrent_in
  config: {trigger_config}
steps:
  - id: seen
    action: debug.log_message
    input: {{ message: "{{{{ trigger.event }}}} {{{{ trigger.object_id }}}} {{{{ trigger.delivery }}}}" }}
"#
            ),
        )],
    )
}

async fn create_policy(emu: &Emulator) -> Value {
    emu.rest(
        reqwest::Method::POST,
        "/v1/webhook_policies",
        Some(json!({"jwt_alg": "es256"})),
    )
    .await
}

/// Registers a request.create webhook at Ferry and waits until the handshake was answered.
async fn create_webhook(emu: &Emulator, server: &Server, policy: &Value, oidc: bool) -> Value {
    let hook = emu
        .rest(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({
                "event": "request.create",
                "name": "Ferry hook",
                "uri": server.url("/inbound/xw/hook"),
                "webhook_policy_id": policy["id"],
                "openid_connect_discovery": oidc,
            })),
        )
        .await;
    let id = hook["id"].as_u64().expect("webhook id");
    let verify = emu
        .wait_delivery("webhook.verify", |d| {
            d["event"] == "webhook.verify" && d["webhook_id"] == id
        })
        .await;
    assert_eq!(
        verify["response_status"],
        200,
        "{verify:#}\n{}",
        server.logs()
    );
    assert!(
        verify["response_body"]
            .as_str()
            .unwrap()
            .starts_with("Webhook verification handled: Ferry hook ("),
        "{verify:#}"
    );
    assert!(verify["request_body"]
        .as_str()
        .unwrap()
        .starts_with("{\"jwt\":"));
    hook
}

/// A mutation in the emulator fires request.create; returns the delivery and the job.
async fn fire_request(emu: &Emulator, server: &Server, subject: &str) -> (Value, Value) {
    let created = emu
        .graphql(&format!(
            "mutation {{ requestCreate(input: {{subject: \"{subject}\"}}) {{ request {{ id }} errors {{ message }} }} }}"
        ))
        .await;
    let node_id = created["data"]["requestCreate"]["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let delivery = emu
        .wait_delivery("request.create", |d| {
            d["event"] == "request.create" && d["message"]["object_nodeID"] == node_id.as_str()
        })
        .await;
    assert_eq!(
        delivery["response_status"],
        200,
        "{delivery:#}\n{}",
        server.logs()
    );
    let answer: Value = serde_json::from_str(delivery["response_body"].as_str().unwrap()).unwrap();
    let job = server
        .wait_job(
            answer["job_uuid"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}")),
            &["finished", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");
    (delivery, job)
}

fn forged(claims: &Value) -> String {
    let key =
        ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256).unwrap();
    key.sign(None, claims).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn static_pem_policy_handshake_delivery_replay_and_rejections() {
    let emu = start_emulator();
    let policy = create_policy(&emu).await;
    let pem = policy["public_key_pem"]
        .as_str()
        .expect("public_key_pem")
        .to_string();
    let account_url = format!("{}/accounts/wdc", emu.base);
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution_with(
        tmp.path(),
        &json!({
            "policy": {"account_url": account_url, "algorithm": "ES256", "public_key_pem": pem},
            "allow_http_loopback": true,
        }),
        &json!({}),
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);

    // The handshake is answered by the trigger: no job.
    create_webhook(&emu, &server, &policy, false).await;
    assert!(jobs(&server, "hook").await.is_empty());

    // A mutation fires a signed delivery that becomes a job with the spec's output.
    let (delivery, job) = fire_request(&emu, &server, "Printer on fire").await;
    let out = &job["trigger_output"];
    let message = &delivery["message"];
    assert_eq!(out["event"], "request.create");
    assert_eq!(out["delivery"], delivery["delivery"]);
    assert_eq!(out["deduplication_id"], delivery["delivery"]);
    assert_eq!(out["object_id"], message["object_id"]);
    assert!(out["object_id"].is_u64(), "{out}");
    assert_eq!(out["object_nodeID"], message["object_nodeID"]);
    assert_eq!(out["webhook_nodeID"], message["webhook_nodeID"]);
    assert_eq!(out["account"], account_url.as_str());
    assert_eq!(
        out["payload"]["audit_line_id"],
        message["payload"]["audit_line_id"]
    );
    let seen = steps(&job, "seen");
    assert_eq!(seen.len(), 1, "{job:#}");
    assert_eq!(jobs(&server, "hook").await.len(), 1);

    // The very same request again: the JWT's jti was seen → rejected, no job.
    let headers: Vec<(String, String)> = delivery["request_headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "content-type")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = delivery["request_body"].as_str().unwrap().to_string();
    let (code, answer) = post_raw(&server, "/inbound/xw/hook", body, &header_refs).await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (400, Some("Webhook JWT verification failed"))
    );
    wait_log(&server, "JWT ID claim invalid").await;

    // A re-send from the emulator (new JWT, new delivery id, the original as origin) is
    // recognised by its origin delivery id: answered, but it does not run again.
    let resend = reqwest::Client::new()
        .post(format!(
            "{}/_emulator/deliveries/{}/resend",
            emu.base, delivery["id"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status().as_u16(), 202);
    let original = delivery["delivery"].as_str().unwrap().to_string();
    let again = emu
        .wait_delivery("re-send", |d| d["delivery_origin"] == original.as_str())
        .await;
    assert_eq!(again["response_status"], 200, "{again:#}");
    let answer: Value = serde_json::from_str(again["response_body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["result"], "Discarded", "{answer}");
    assert_eq!(answer["job_uuid"], job["id"], "{answer}");
    assert_eq!(jobs(&server, "hook").await.len(), 1);

    // Rejections: each with the spec's status and message, none creates a job.
    let claims = |extra: Value| {
        let mut c = json!({"iss": account_url, "sub": "1", "iat": now(), "nbf": now(),
            "jti": ferry_emulator::policy::random_jti(), "data": message});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let hs256 = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    );
    let cases: Vec<(String, u16, &str)> = vec![
        (
            json!({"jwt": forged(&claims(json!({})))}).to_string(),
            400,
            "Webhook JWT verification failed",
        ),
        (
            json!({"jwt": hs256}).to_string(),
            400,
            "Webhook JWT verification failed",
        ),
        (
            message.to_string(),
            400,
            "Webhook request does not contain jwt property",
        ),
        (
            json!({"jwt": "x".repeat(262_145)}).to_string(),
            400,
            "Webhook body too large",
        ),
        (
            json!({"jwt": "x".repeat(8193)}).to_string(),
            400,
            "Webhook JWT is too large",
        ),
        (
            "{\"invalid\": json".to_string(),
            400,
            "Unable to parse incoming webhook request",
        ),
        (String::new(), 400, "Request has no body"),
    ];
    for (body, status, error) in cases {
        let (code, answer) = post_raw(
            &server,
            "/inbound/xw/hook",
            body,
            &[("x-xurrent-delivery", "d-1")],
        )
        .await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (status, Some(error)),
            "{answer}"
        );
    }
    wait_log(&server, "Unsupported JWT algorithm 'HS256'").await;
    wait_log(&server, "Webhook body too large: ").await;
    wait_log(&server, "Webhook JWT too large: 8193 > 8192").await;
    assert_eq!(jobs(&server, "hook").await.len(), 1);
}

#[tokio::test]
async fn openid_connect_discovery_mode() {
    let emu = start_emulator();
    let policy = create_policy(&emu).await;
    let account_url = format!("{}/accounts/wdc", emu.base);
    let tmp = tempfile::tempdir().unwrap();
    // No policy on the connection: the issuer must fall under the account URL and its keys
    // are discovered.
    let sol = solution_with(
        tmp.path(),
        &json!({"account_url": account_url, "allow_http_loopback": true}),
        &json!({}),
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    create_webhook(&emu, &server, &policy, true).await;
    assert!(jobs(&server, "hook").await.is_empty());
    let (delivery, job) = fire_request(&emu, &server, "Discovered").await;
    assert_eq!(job["trigger_output"]["event"], "request.create");
    assert_eq!(job["trigger_output"]["delivery"], delivery["delivery"]);
    // The token names the policy issuer and a kid.
    let jwt = serde_json::from_str::<Value>(delivery["request_body"].as_str().unwrap()).unwrap()
        ["jwt"]
        .as_str()
        .unwrap()
        .to_string();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        claims["iss"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{account_url}/webhook_policies/")),
        "{claims}"
    );
    // A second event uses the cached key.
    fire_request(&emu, &server, "Cached").await;
    assert_eq!(jobs(&server, "hook").await.len(), 2);

    // A token from another issuer host is refused before any fetch; one signed by a key the
    // issuer does not publish is refused.
    let message = &delivery["message"];
    let other_host = forged(
        &json!({"iss": "http://127.0.0.2:9/accounts/wdc/webhook_policies/x",
        "iat": now(), "nbf": now(), "data": message}),
    );
    let (code, answer) = post_raw(
        &server,
        "/inbound/xw/hook",
        json!({"jwt": other_host}).to_string(),
        &[],
    )
    .await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (400, Some("Webhook JWT verification failed"))
    );
    wait_log(&server, "Invalid issuer 'http://127.0.0.2:9/").await;
    let no_kid =
        forged(&json!({"iss": claims["iss"], "iat": now(), "nbf": now(), "data": message}));
    let (code, answer) = post_raw(
        &server,
        "/inbound/xw/hook",
        json!({"jwt": no_kid}).to_string(),
        &[],
    )
    .await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (400, Some("Webhook JWT verification failed"))
    );
    wait_log(&server, "JWT has no kid header").await;
    assert_eq!(jobs(&server, "hook").await.len(), 2);
}

#[tokio::test]
async fn unsigned_deliveries_need_an_explicit_allowance() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    let body = json!({"event": "request.update", "object_id": "7", "payload": {"status": "assigned", "pet": "Zuzu"},
        "pet": "Zuzu"});
    // Without allow_unsigned: 401, no job.
    let sol = solution_with(
        tmp.path(),
        &json!({"account_url": format!("{}/accounts/wdc", emu.base)}),
        &json!({}),
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let (code, answer) = server
        .post("/inbound/xw/hook", &body, &[("x-xurrent-delivery", "u-1")])
        .await;
    assert_eq!(code, 401, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("Unsigned webhook rejected"));
    assert!(jobs(&server, "hook").await.is_empty());
    drop(server);

    // With it: a job; declared payload fields typed, the rest in raw_payload.
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution_with(
        tmp.path(),
        &json!({"allow_unsigned": true, "allow_http_loopback": true,
            "account_url": format!("{}/accounts/wdc", emu.base)}),
        &json!({"payload_schema": [{"id": "pet", "type": "string"}]}),
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let (code, answer) = server
        .post("/inbound/xw/hook", &body, &[("x-xurrent-delivery", "u-2")])
        .await;
    assert_eq!(code, 200, "{answer}");
    let job = server
        .wait_job(
            answer["job_uuid"].as_str().unwrap(),
            &["finished", "failed"],
            Duration::from_secs(30),
        )
        .await;
    let out = &job["trigger_output"];
    assert_eq!(out["object_id"], 7);
    assert_eq!(out["payload"], json!({"status": "assigned", "pet": "Zuzu"}));
    assert!(out.get("pet").is_none());
    wait_log(
        &server,
        "Ignored unexpected fields in webhook: 'pet' => 'Zuzu'",
    )
    .await;
    // The same delivery again does not run twice.
    let (code, again) = server
        .post("/inbound/xw/hook", &body, &[("x-xurrent-delivery", "u-2")])
        .await;
    assert_eq!(
        (code, &again["result"]),
        (200, &json!("Discarded")),
        "{again}"
    );
    assert_eq!(jobs(&server, "hook").await.len(), 1);
    // Missing event and delivery.
    let (code, answer) = server
        .post("/inbound/xw/hook", &json!({"type": "alert"}), &[])
        .await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (
            400,
            Some("Output invalid: Field 'event' is required. Field 'delivery' is required.")
        )
    );
    // §9 E 51: a handshake whose callback does not answer 200 is rejected with its answer;
    // a callback on another host is not fetched at all.
    let verify = |callback: String| {
        json!({"name": "Mock webhook", "webhook_nodeID": "mocknodeID", "event": "webhook.verify",
            "payload": {"callback": callback}})
    };
    let (code, answer) = server
        .post(
            "/inbound/xw/hook",
            &verify(format!(
                "{}/accounts/wdc/webhooks/999/verify?code=abcd",
                emu.base
            )),
            &[("x-xurrent-delivery", "v-1")],
        )
        .await;
    let error = answer["error"].as_str().unwrap_or_default();
    assert_eq!(code, 400, "{answer}");
    assert!(
        error.starts_with("Unable to verify webhook Mock webhook (mocknodeID).\n404: "),
        "{answer}"
    );
    let (code, answer) = server
        .post(
            "/inbound/xw/hook",
            &verify("http://127.0.0.2:9/steal".into()),
            &[("x-xurrent-delivery", "v-2")],
        )
        .await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        answer["error"],
        "Unable to verify webhook Mock webhook (mocknodeID).\nThe callback http://127.0.0.2:9/steal is not on the account's host 127.0.0.1"
    );
    assert_eq!(jobs(&server, "hook").await.len(), 1);
}

async fn our_webhooks(emu: &Emulator) -> Vec<Value> {
    let all = emu.rest(reqwest::Method::GET, "/v1/webhooks", None).await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == "Ferry xw/hook request.create")
        .cloned()
        .collect()
}

async fn wait_webhook(emu: &Emulator, server: &Server, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hooks = our_webhooks(emu).await;
        if let [h] = hooks.as_slice() {
            if pred(h) {
                return h.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "webhook not as expected: {hooks:#?}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn provisioning_registers_the_webhook_and_a_restart_creates_nothing_new() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution_with(
        tmp.path(),
        &json!({
            "account_url": format!("{}/accounts/wdc", emu.base),
            "allow_http_loopback": true,
            "api": {
                "credentials": {"account_id": "wdc", "personal_access_token": ferry_emulator::DEFAULT_TOKEN},
                "environment": {
                    "rest_endpoint": format!("{}/v1", emu.base),
                    "graphql_endpoint": format!("{}/graphql", emu.base),
                    "oauth2_endpoint": format!("{}/token", emu.base),
                },
            },
        }),
        &json!({"register": {"events": ["request.create"]}}),
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&sol], &[]);
    let url = server.url("/inbound/xw/hook");
    let hook = wait_webhook(&emu, &server, |h| {
        h["uri"] == url.as_str() && h["disabled"] == false
    })
    .await;
    // The handshake went through the trigger, and a mutation runs the runbook.
    let id = hook["id"].as_u64().unwrap();
    emu.wait_delivery("webhook.verify", |d| {
        d["event"] == "webhook.verify" && d["webhook_id"] == id && d["response_status"] == 200
    })
    .await;
    fire_request(&emu, &server, "Provisioned").await;
    let policies = emu
        .rest(reqwest::Method::GET, "/v1/webhook_policies", None)
        .await;
    assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");

    // Stopping the server disables the webhook; a restart (on another port) updates the same
    // webhook and reuses the policy: nothing new is created.
    server.terminate();
    wait_webhook(&emu, &server, |h| h["disabled"] == true).await;
    let server = Server::start(&data, &[&sol], &[]);
    let url2 = server.url("/inbound/xw/hook");
    let again = wait_webhook(&emu, &server, |h| {
        h["uri"] == url2.as_str() && h["disabled"] == false
    })
    .await;
    assert_eq!(again["id"], hook["id"]);
    assert_eq!(again["webhook_policy"]["id"], hook["webhook_policy"]["id"]);
    let policies = emu
        .rest(reqwest::Method::GET, "/v1/webhook_policies", None)
        .await;
    assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");
    // The new URI was verified again, and events reach the new server.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let verified = emu
            .deliveries()
            .await
            .iter()
            .filter(|d| {
                d["event"] == "webhook.verify"
                    && d["webhook_id"] == id
                    && d["response_status"] == 200
            })
            .count();
        if verified >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second verification\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fire_request(&emu, &server, "After restart").await;
}

/// The `jti` replay window is claimed in the same transaction as the job: concurrent
/// deliveries of one token make exactly one job; a discarded event still claims its `jti`; an
/// event rejected after verification leaves no claim behind; a duplicate delivery id keeps the
/// claim of its token. No emulator: the tokens are signed here with a static PEM policy.
#[tokio::test]
async fn replay_window_is_claimed_with_the_job() {
    let key =
        ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256).unwrap();
    let pem = key.public_key_pem.clone().unwrap();
    let iss = "https://wdc.xurrent.com";
    let tmp = tempfile::tempdir().unwrap();
    let trigger = |extra: &str| {
        format!(
            "name: NAME\ntrigger:\n  connector: xurrent\n  type: webhook\n  connection: xurrent_in\n  config: {{ {extra} }}\nsteps:\n  - {{ id: seen, action: debug.log_message, input: {{ message: \"{{{{ trigger.event }}}}\" }} }}\n"
        )
    };
    let sol = solution(
        tmp.path(),
        "xw",
        &format!(
            "name: xw\nconnections:\n  xurrent_in:\n    connector: xurrent\n    direction: inbound\n    config: {}\n",
            json!({"policy": {"account_url": iss, "algorithm": "ES256", "public_key_pem": pem}})
        ),
        &[
            ("hook", &trigger("").replace("NAME", "hook")),
            (
                "skip",
                &trigger("discard_if: \"{{ true }}\"").replace("NAME", "skip"),
            ),
            (
                "bad",
                &trigger("respond_with: { status: \"{{ trigger.object_id }}\" }")
                    .replace("NAME", "bad"),
            ),
        ],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let token = |object_id: u64| {
        let claims = json!({"iss": iss, "sub": "1", "iat": now(), "nbf": now(),
            "jti": ferry_emulator::policy::random_jti(),
            "data": {"webhook_id": 1, "webhook_nodeID": "w1", "account_id": "wdc", "account": iss,
                "name": "hook", "event": "request.update", "object_id": object_id,
                "object_nodeID": format!("req-{object_id}"), "person_id": 6,
                "person_name": "Howard Tanner", "payload": {"status": "assigned"}}});
        json!({ "jwt": key.sign(None, &claims).unwrap() })
    };
    let replayed = (400, Some("Webhook JWT verification failed"));

    // One token delivered 16 times at once, each with its own delivery id: one job.
    let body = token(1);
    let url = server.url("/inbound/xw/hook");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (url, body) = (url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("x-xurrent-delivery", format!("c-{i}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let accepted: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert!(accepted[0].1["job_uuid"].is_string(), "{answers:?}");
    for (status, answer) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, answer["error"].as_str()), replayed, "{answer}");
    }
    assert_eq!(jobs(&server, "hook").await.len(), 1);
    wait_log(&server, "JWT ID claim invalid").await;

    // A discarded event claims its jti all the same: the replay is rejected.
    let body = token(2);
    let (code, answer) = server
        .post("/inbound/xw/skip", &body, &[("x-xurrent-delivery", "s-1")])
        .await;
    assert_eq!((code, answer["result"].as_str()), (200, Some("Discarded")));
    let (code, answer) = server
        .post("/inbound/xw/skip", &body, &[("x-xurrent-delivery", "s-2")])
        .await;
    assert_eq!((code, answer["error"].as_str()), replayed, "{answer}");

    // An event rejected after verification (its answer cannot be built) claims nothing: the
    // same token is rejected the same way again, and is accepted elsewhere; then it is a replay
    // (also where it would be discarded).
    let body = token(999);
    let broken = (
        500,
        Some("respond_with invalid: status: 999 is not an HTTP status (100 to 599)"),
    );
    for delivery in ["b-1", "b-2"] {
        let (code, answer) = server
            .post(
                "/inbound/xw/bad",
                &body,
                &[("x-xurrent-delivery", delivery)],
            )
            .await;
        assert_eq!((code, answer["error"].as_str()), broken, "{answer}");
    }
    assert!(jobs(&server, "bad").await.is_empty());
    let (code, answer) = server
        .post("/inbound/xw/hook", &body, &[("x-xurrent-delivery", "b-3")])
        .await;
    assert_eq!(code, 200, "{answer}");
    for (runbook, delivery) in [("hook", "b-4"), ("skip", "b-5")] {
        let (code, answer) = server
            .post(
                &format!("/inbound/xw/{runbook}"),
                &body,
                &[("x-xurrent-delivery", delivery)],
            )
            .await;
        assert_eq!((code, answer["error"].as_str()), replayed, "{answer}");
    }

    // A duplicate delivery id (a retry with a fresh token) creates no job but claims the
    // token's jti.
    let (code, first) = server
        .post(
            "/inbound/xw/hook",
            &token(4),
            &[("x-xurrent-delivery", "d-4")],
        )
        .await;
    assert_eq!(code, 200, "{first}");
    let retry = token(4);
    let (code, answer) = server
        .post("/inbound/xw/hook", &retry, &[("x-xurrent-delivery", "d-4")])
        .await;
    assert_eq!(
        (code, &answer["job_uuid"]),
        (200, &first["job_uuid"]),
        "{answer}"
    );
    assert_eq!(answer["result"], "Discarded", "{answer}");
    let (code, answer) = server
        .post("/inbound/xw/hook", &retry, &[("x-xurrent-delivery", "d-5")])
        .await;
    assert_eq!((code, answer["error"].as_str()), replayed, "{answer}");
    assert_eq!(jobs(&server, "hook").await.len(), 3);
}
