//! The Xurrent App Connector's triggers against the spec's own fixtures (`xurrent_app_connector.md`
//! §6.6, §7.6, §8.6, §14.3–§14.6): `ferry serve` provisions a fake provider account on loopback
//! whose webhook policy key is the test's, so the test signs deliveries exactly as the spec's
//! helper does (ES256, `iss`, `aud: public`, `jti`, `data`) and checks the outputs, answers and
//! provisioning errors the emulator cannot produce.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use common::*;
use ferry_emulator::policy::{JwtAlg, PolicyKey};
use serde_json::{json, Value};

const REF: &str = "weu_it_phone";
const DELIVERY: &str = "00c7bb4a-b3ba-4744-8126-1e7ef87ef90a";

#[derive(Default)]
struct Fake {
    provider_pem: String,
    webhooks: Mutex<Vec<Value>>,
    requests: Mutex<Vec<(String, String, Value)>>,
    verify_calls: Mutex<Vec<(String, Option<String>)>>,
}

type S = State<Arc<Fake>>;

fn record(fake: &Fake, method: &str, path: String, body: Value) {
    fake.requests
        .lock()
        .unwrap()
        .push((method.to_string(), path, body));
}

async fn list_webhooks(State(f): S, Path(mode): Path<String>) -> Response {
    record(&f, "GET", format!("/{mode}/v1/webhooks"), Value::Null);
    Json(Value::Array(f.webhooks.lock().unwrap().clone())).into_response()
}

async fn create_webhook(
    State(f): S,
    Path(mode): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    record(&f, "POST", format!("/{mode}/v1/webhooks"), body.clone());
    if mode == "hookrefused" {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "uri taken"})),
        )
            .into_response();
    }
    let mut hooks = f.webhooks.lock().unwrap();
    let mut h = body;
    h["id"] = json!(hooks.len() + 1);
    hooks.push(h.clone());
    (StatusCode::CREATED, Json(h)).into_response()
}

async fn list_enabled(State(f): S, Path((mode, which)): Path<(String, String)>) -> Response {
    record(
        &f,
        "GET",
        format!("/{mode}/v1/webhooks/{which}"),
        Value::Null,
    );
    let hooks = f.webhooks.lock().unwrap().clone();
    let want_disabled = which == "disabled";
    Json(Value::Array(
        hooks
            .into_iter()
            .filter(|h| (h["disabled"] == true) == want_disabled)
            .collect(),
    ))
    .into_response()
}

async fn update_webhook(
    State(f): S,
    Path((mode, id)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    record(
        &f,
        "PATCH",
        format!("/{mode}/v1/webhooks/{id}"),
        body.clone(),
    );
    if mode == "hookupdate" && body["disabled"] == false {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "invalid uri"})),
        )
            .into_response();
    }
    if mode == "nodisable" && body["disabled"] == true {
        return (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response();
    }
    let mut hooks = f.webhooks.lock().unwrap();
    match hooks.iter_mut().find(|h| h["id"] == id) {
        Some(h) => {
            for (k, v) in body.as_object().cloned().unwrap_or_default() {
                h[k] = v;
            }
            Json(h.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

async fn create_policy(State(f): S, Path(mode): Path<String>, Json(body): Json<Value>) -> Response {
    record(&f, "POST", format!("/{mode}/v1/webhook_policies"), body);
    if mode == "limited" {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            "Wait 2 seconds",
        )
            .into_response();
    }
    if mode == "unavailable" {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    if mode == "badpolicy" {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Invalid JWT algorithm: FOO"})),
        )
            .into_response();
    }
    (
        StatusCode::CREATED,
        Json(
            json!({"id": 7, "jwt_alg": "es256", "jwt_audience": "public",
                    "public_key_pem": f.provider_pem}),
        ),
    )
        .into_response()
}

async fn get_policy(State(f): S, Path((mode, id)): Path<(String, String)>) -> Response {
    record(
        &f,
        "GET",
        format!("/{mode}/v1/webhook_policies/{id}"),
        Value::Null,
    );
    match mode.as_str() {
        "policyauth" => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        )
            .into_response(),
        "policyoff" => Json(json!({"id": id, "disabled": true})).into_response(),
        _ => Json(json!({"id": id, "disabled": false})).into_response(),
    }
}

async fn update_policy(
    State(f): S,
    Path((mode, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    record(
        &f,
        "PATCH",
        format!("/{mode}/v1/webhook_policies/{id}"),
        body,
    );
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "permission denied"})),
    )
        .into_response()
}

async fn graphql(State(f): S, Path(mode): Path<String>, Json(body): Json<Value>) -> Response {
    record(&f, "POST", format!("/{mode}/graphql"), body.clone());
    let q = body["query"].as_str().unwrap_or_default();
    if q.contains("appOfferingUpdate") {
        return Json(json!({"data": {"appOfferingUpdate": {"appOffering": {"id": "offering-node"}, "errors": []}}}))
            .into_response();
    }
    let wanted = body["variables"]["reference"][0]
        .as_str()
        .unwrap_or_default();
    let nodes = if wanted == REF {
        json!([{"id": "offering-node", "reference": REF, "published": false}])
    } else {
        json!([])
    };
    Json(json!({"data": {"appOfferings": {"nodes": nodes}}})).into_response()
}

async fn verify_callback(
    State(f): S,
    Path((_account, _id)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let code = q.get("code").cloned().unwrap_or_default();
    f.verify_calls.lock().unwrap().push((code.clone(), ua));
    if code == "fail" {
        (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
    } else {
        "verified".into_response()
    }
}

async fn start_fake(provider_pem: String) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        provider_pem,
        ..Fake::default()
    });
    let app = Router::new()
        .route(
            "/{mode}/v1/webhooks",
            get(list_webhooks).post(create_webhook),
        )
        .route(
            "/{mode}/v1/webhooks/{id}",
            patch(update_webhook).get(list_enabled),
        )
        .route("/{mode}/v1/webhook_policies", post(create_policy))
        .route(
            "/{mode}/v1/webhook_policies/{id}",
            get(get_policy).patch(update_policy),
        )
        .route("/{mode}/graphql", post(graphql))
        .route(
            "/accounts/{account}/webhooks/{id}/verify",
            get(verify_callback),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, fake)
}

fn connection(base: &str, mode: &str) -> String {
    format!(
        r#"    connector: xurrent_app
    direction: inbound
    config:
      credentials: {{ account_id: wdc, personal_access_token: "tok" }}
      environment:
        graphql_endpoint: "{base}/{mode}/graphql"
        rest_endpoint: "{base}/{mode}/v1"
        oauth2_endpoint: "{base}/token"
      account_url_template: "{base}/accounts/{{account}}"
      allow_http_loopback: true
      client_rate_limit: false
"#
    )
}

fn runbook(name: &str, kind: &str, config: &str) -> String {
    format!(
        "name: {name}\ntrigger:\n  connector: xurrent_app\n  type: {kind}\n  connection: provider\n  config: {config}\nsteps:\n  - id: seen\n    action: debug.log_message\n    input: {{ message: \"{name}\" }}\n"
    )
}

fn sign(key: &PolicyKey, iss: &str, data: &Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let jti: String = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    key.sign(
        None,
        &json!({"nbf": now, "iat": now, "jti": jti, "sub": "abc", "iss": iss, "aud": "public", "data": data}),
    )
    .unwrap()
}

async fn deliver(server: &Server, path: &str, jwt: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "xurrent/1.0 (https://developer.xurrent.com/v1/webhooks)",
        )
        .header("x-xurrent-delivery", DELIVERY)
        .body(json!({ "jwt": jwt }).to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn wait_for<F: Fn() -> bool>(what: &str, server: &Server, f: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn job(server: &Server, answer: &str) -> Value {
    let v: Value = serde_json::from_str(answer).unwrap_or_else(|_| panic!("{answer}"));
    let id = v["job_uuid"].as_str().unwrap_or_else(|| panic!("{answer}"));
    server
        .wait_job(id, &["finished", "failed"], Duration::from_secs(30))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_fixtures_through_serve() {
    let provider = PolicyKey::generate(JwtAlg::Es256).unwrap();
    let customer = PolicyKey::generate(JwtAlg::Es256).unwrap();
    let (base, fake) = start_fake(provider.public_key_pem.clone().unwrap()).await;
    let iss = format!("{base}/accounts/wdc");
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "spec",
        &format!("name: spec\nconnections:\n  provider:\n{}", connection(&base, "ok")),
        &[
            ("secrets", &runbook("secrets", "secrets_changed", "{}")),
            (
                "installed",
                &runbook(
                    "installed",
                    "installation_changed",
                    &format!("{{ event: app_instance.create, app_reference: {REF} }}"),
                ),
            ),
            (
                "installed_any",
                &runbook("installed_any", "installation_changed", "{ event: app_instance.create }"),
            ),
            (
                "installed_discard",
                &runbook(
                    "installed_discard",
                    "installation_changed",
                    "{ event: app_instance.create, discard_if: \"{{ trigger.webhook.person.name == 'Tom Katers' }}\" }",
                ),
            ),
            (
                "rule",
                &runbook(
                    "rule",
                    "automation_webhook",
                    &format!("{{ app_reference: {REF}, payload_schema: [{{id: foo, type: string}}, {{id: bar, type: integer}}] }}"),
                ),
            ),
        ],
    );
    let broken = solution(
        tmp.path(),
        "broken",
        &format!(
            "name: broken\nconnections:\n  provider:\n{}",
            connection(&base, "badpolicy")
        ),
        &[(
            "secrets",
            &runbook(
                "secrets",
                "secrets_changed",
                "{ app_references: [foo, bar] }",
            ),
        )],
    );
    let nodisable = solution(
        tmp.path(),
        "nodisable",
        &format!(
            "name: nodisable\nconnections:\n  provider:\n{}",
            connection(&base, "nodisable")
        ),
        &[(
            "secrets",
            &runbook(
                "secrets",
                "secrets_changed",
                "{ app_references: [foo, bar] }",
            ),
        )],
    );
    let limited = solution(
        tmp.path(),
        "limited",
        &format!(
            "name: limited\nconnections:\n  provider:\n{}",
            connection(&base, "limited")
        ),
        &[("secrets", &runbook("secrets", "secrets_changed", "{}"))],
    );
    let unavailable = solution(
        tmp.path(),
        "unavailable",
        &format!(
            "name: unavailable\nconnections:\n  provider:\n{}",
            connection(&base, "unavailable")
        ),
        &[("secrets", &runbook("secrets", "secrets_changed", "{}"))],
    );
    let hookrefused = solution(
        tmp.path(),
        "hookrefused",
        &format!(
            "name: hookrefused\nconnections:\n  provider:\n{}",
            connection(&base, "hookrefused")
        ),
        &[("secrets", &runbook("secrets", "secrets_changed", "{}"))],
    );
    // A webhook of that name exists already (disabled): provisioning updates it, which fails.
    fake.webhooks.lock().unwrap().push(json!({
        "id": 1000, "name": "Ferry hookupdate/secrets", "disabled": true,
        "event": "app_instance.secrets-update", "uri": "https://old.example/hook"
    }));
    let hookupdate = solution(
        tmp.path(),
        "hookupdate",
        &format!(
            "name: hookupdate\nconnections:\n  provider:\n{}",
            connection(&base, "hookupdate")
        ),
        &[("secrets", &runbook("secrets", "secrets_changed", "{}"))],
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(
        &data,
        &[
            &sol,
            &broken,
            &nodisable,
            &limited,
            &unavailable,
            &hookrefused,
            &hookupdate,
        ],
        &[],
    );

    // §14.3 43/45, §14.5 74/80, §14.6 91: what provisioning sends.
    wait_for("provisioning", &server, || {
        let r = fake.requests.lock().unwrap();
        r.iter()
            .filter(|(m, p, _)| m == "POST" && p == "/ok/v1/webhooks")
            .count()
            == 4
            && r.iter().any(|(_, p, b)| {
                p == "/ok/graphql"
                    && b["query"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("appOfferingUpdate")
            })
            && r.iter()
                .any(|(m, p, _)| m == "POST" && p == "/nodisable/v1/webhooks")
    })
    .await;
    let requests = fake.requests.lock().unwrap().clone();
    let policy_creates = requests
        .iter()
        .filter(|(m, p, _)| m == "POST" && p == "/ok/v1/webhook_policies")
        .collect::<Vec<_>>();
    assert_eq!(policy_creates.len(), 1, "{requests:#?}");
    assert_eq!(policy_creates[0].2, json!({"jwt_alg": "es256"}));
    let created = |name: &str| {
        requests
            .iter()
            .find(|(m, p, b)| m == "POST" && p == "/ok/v1/webhooks" && b["name"] == name)
            .map(|(_, _, b)| b.clone())
            .unwrap_or_else(|| panic!("no webhook {name}: {requests:#?}"))
    };
    assert_eq!(
        created("Ferry spec/secrets"),
        json!({"event": "app_instance.secrets-update", "uri": server.url("/inbound/spec/secrets"),
               "name": "Ferry spec/secrets", "description": "DO NOT DELETE!\n\nUsed by Ferry.",
               "disabled": false, "webhook_policy_id": 7, "app_offering_references": []})
    );
    assert_eq!(
        created("Ferry spec/installed")["app_offering_references"],
        json!([REF])
    );
    assert_eq!(
        created("Ferry spec/installed")["event"],
        "app_instance.create"
    );
    assert_eq!(
        created("Ferry spec/installed_any")["app_offering_references"],
        json!([])
    );
    let update = requests
        .iter()
        .find(|(_, p, b)| {
            p == "/ok/graphql"
                && b["query"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("appOfferingUpdate")
        })
        .unwrap();
    assert_eq!(
        update.2["variables"],
        json!({"input": {"id": "offering-node",
               "webhookUriTemplate": format!("{}?customer_account_id={{account}}", server.url("/inbound/spec/rule"))}})
    );
    let lookup = requests
        .iter()
        .find(|(_, p, b)| {
            p == "/ok/graphql"
                && b["query"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("appOfferings(")
        })
        .unwrap();
    assert_eq!(lookup.2["variables"], json!({"reference": [REF]}));
    // §14.3 44, §14.2 37/38: the policy create is refused or rate limited; provisioning
    // reports it and retries.
    let provision_error = |solution: &'static str| {
        let server = &server;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (_, s) = server.api(&format!("/solutions/{solution}")).await;
                let item = s["provisioning"]
                    .as_array()
                    .and_then(|a| a.iter().find(|i| i["name"] == "secrets").cloned())
                    .unwrap_or(Value::Null);
                if item["state"] == "failed" {
                    return item["last_error"].as_str().unwrap_or_default().to_string();
                }
                assert!(Instant::now() < deadline, "{s}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        provision_error("limited").await,
        "Unable to create Webhook Policy: Xurrent API rate limit hit (retry after: 2). 'Wait 2 seconds'"
    );
    assert_eq!(
        provision_error("unavailable").await,
        "Unable to create Webhook Policy: Xurrent API not available. 'Service Unavailable'"
    );
    // §14.2 35: the existing webhook cannot be enabled (updated); the error names it.
    let error = provision_error("hookupdate").await;
    assert!(
        error.starts_with("Unable to enable Webhook 'Ferry hookupdate/secrets': ")
            && error.contains("invalid uri"),
        "{error}"
    );
    // §14.2 36: the policy is made, the webhook create is refused; the error names the webhook.
    let error = provision_error("hookrefused").await;
    assert!(
        error.starts_with("Unable to create Webhook 'Ferry hookrefused/secrets': ")
            && error.contains("uri taken"),
        "{error}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let (_, s) = server.api("/solutions/broken").await;
        let item = s["provisioning"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == "secrets").cloned())
            .unwrap_or(Value::Null);
        if item["state"] == "failed" {
            break item["last_error"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        error.starts_with("Unable to create Webhook Policy: ")
            && error.contains("Invalid JWT algorithm: FOO"),
        "{error}"
    );

    // §14.4 57/58: the handshake.
    let verify = |code: &str| {
        json!({"name": "Mock webhook", "webhook_nodeID": "mocknodeID", "event": "webhook.verify",
               "payload": {"callback": format!("{base}/accounts/wdc/webhooks/123/verify?code={code}")}})
    };
    let (status, body) = deliver(
        &server,
        "/inbound/spec/secrets",
        &sign(&provider, &iss, &verify("abcd")),
        &[],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "Webhook verification handled automatically: Mock webhook (mocknodeID)"
        )
    );
    assert_eq!(
        fake.verify_calls.lock().unwrap().clone(),
        [("abcd".to_string(), Some("Xurrent iPaaS".to_string()))]
    );
    let (status, body) = deliver(
        &server,
        "/inbound/spec/installed",
        &sign(&provider, &iss, &verify("fail")),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Unable to verify webhook Mock webhook (mocknodeID).\n500: error"
    );

    // §6.6, §14.4 60/62–64/66: a secrets delivery and a second one that adds a secret.
    let secrets = |payload: Value| {
        json!({"name": "Mock webhook", "webhook_nodeID": "mocknodeID", "event": "app_instance.secrets-update",
               "person_id": 123, "person_nodeID": "XYZ", "person_name": "Tom Katers", "payload": payload})
    };
    let first = secrets(json!({
        "app_offering": {"reference": REF, "id": 2, "nodeID": "dGVzdC5ob3N0L0FwcE9mZmVyaW5nLzI"},
        "customer_account_id": "wdc",
        "application": {"nodeID": "app-node", "client_id": "H3lzClient", "client_secret": "7IocSecret-plain"},
        "authorization_application": {"nodeID": "auth-node", "client_id": "AuthClient", "client_secret": "AuthSecret-plain"},
        "policy": {"nodeID": "dGVzdC5ob3N0L1dlYmhvb2tQb2xpY3kvMQ", "audience": null, "algorithm": "es256",
                   "public_key": customer.public_key_pem.clone().unwrap()},
        "secrets": {"password": "foo-plain"}
    }));
    let (status, body) = deliver(
        &server,
        "/inbound/spec/secrets",
        &sign(&provider, &iss, &first),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let j = job(&server, &body).await;
    assert_eq!(j["context_id"], format!("{REF}@wdc"));
    assert_eq!(
        j["trigger_output"],
        json!({"customer_account_id": "wdc", "app_reference": REF,
               "webhook": {"event": "app_instance.secrets-update", "delivery": DELIVERY,
                           "person": {"id": 123, "nodeID": "XYZ", "name": "Tom Katers"}},
               "deduplication_id": DELIVERY})
    );
    let second = secrets(
        json!({"app_offering": {"reference": REF}, "customer_account_id": "wdc",
                                "secrets": {"secret": "bar-plain"}}),
    );
    let (status, body) = deliver(
        &server,
        "/inbound/spec/secrets",
        &sign(&provider, &iss, &second),
        &[("x-xurrent-delivery", "second-delivery")],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // §7.6, §14.5 83–88: Installation Changed.
    let sample = json!({
        "app_offering": {"reference": REF, "id": 2, "nodeID": "dGVzdC5ob3N0L0FwcE9mZmVyaW5nLzI", "updated": true},
        "customer_account_id": "wdc", "disabled": false, "enabled_by_customer": true, "suspended": false,
        "customer_representative": {"id": 568, "disabled": false, "name": "Tom Waters",
            "account": {"id": "widget", "name": "Widget International"}, "sourceID": "87123",
            "nodeID": "eHVycmVudC1kZXYuY29tL1BlcnNvbi81Njg"}
    });
    let message = |payload: &Value| {
        json!({"event": "app_instance.create", "person_id": 5689, "person_nodeID": "AeHV",
               "person_name": "Tom Katers", "payload": payload})
    };
    let (status, body) = deliver(
        &server,
        "/inbound/spec/installed",
        &sign(&provider, &iss, &message(&sample)),
        &[("x-xurrent-delivery-origin", "origin_delivery")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let j = job(&server, &body).await;
    assert_eq!(j["context_id"], format!("{REF}@wdc"));
    let mut expected = sample.clone();
    expected["app_reference"] = json!(REF);
    expected["webhook"] = json!({"event": "app_instance.create", "delivery": DELIVERY,
        "delivery_origin": "origin_delivery", "person": {"id": 5689, "nodeID": "AeHV", "name": "Tom Katers"}});
    expected["deduplication_id"] = json!("origin_delivery");
    assert_eq!(j["trigger_output"], expected);
    let (status, body) = deliver(
        &server,
        "/inbound/spec/installed_any",
        &sign(&provider, &iss, &message(&sample)),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        job(&server, &body).await["context_id"],
        format!("{REF}@wdc")
    );
    let (status, body) = deliver(
        &server,
        "/inbound/spec/installed_discard",
        &sign(&provider, &iss, &message(&sample)),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["result"],
        "Discarded"
    );
    let mut foo = sample.clone();
    foo["app_offering"]["reference"] = json!("foo");
    let (status, body) = deliver(
        &server,
        "/inbound/spec/installed",
        &sign(&provider, &iss, &message(&foo)),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        format!("App reference 'foo' is different from '{REF}'.")
    );
    let mut no_customer = sample.clone();
    no_customer
        .as_object_mut()
        .unwrap()
        .remove("customer_account_id");
    let (status, body) = deliver(
        &server,
        "/inbound/spec/installed_any",
        &sign(&provider, &iss, &message(&no_customer)),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("Output invalid: "),
        "{body}"
    );

    // §8.6, §14.6 95–97: Automation Webhook, verified with the customer's policy.
    let (status, body) = deliver(
        &server,
        "/inbound/spec/rule?customer_account_id=wdc",
        &sign(&customer, &iss, &verify("rule")),
        &[],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "Webhook verification handled automatically: Mock webhook (mocknodeID)"
        )
    );
    let call = json!({"name": "Mock webhook", "webhook_nodeID": "mocknodeID", "event": "app_instance.create",
        "person_id": 123, "person_nodeID": "ABC", "person_name": "Tom Katers",
        "payload": {"app_offering": {"reference": REF}, "customer_account_id": "wdc", "foo": "data from the AR", "bar": 42}});
    let (status, body) = deliver(
        &server,
        "/inbound/spec/rule?customer_account_id=wdc",
        &sign(&customer, &iss, &call),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let j = job(&server, &body).await;
    assert_eq!(j["context_id"], format!("{REF}@wdc"));
    assert_eq!(
        j["trigger_output"],
        json!({"app_reference": REF, "customer_account_id": "wdc",
               "payload": {"foo": "data from the AR", "bar": 42},
               "webhook": {"event": "app_instance.create", "delivery": DELIVERY,
                           "person": {"id": 123, "nodeID": "ABC", "name": "Tom Katers"}},
               "deduplication_id": DELIVERY})
    );
    // The provider's key does not sign for the customer.
    let (status, body) = deliver(
        &server,
        "/inbound/spec/rule?customer_account_id=wdc",
        &sign(&provider, &iss, &call),
        &[("x-xurrent-delivery", "another")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("Unable to validate request: "), "{body}");

    // §14.3 51/53: deprovisioning disables the webhook, and reports an error it gets.
    server.terminate();
    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests.iter().any(|(m, p, b)| m == "PATCH"
            && p.starts_with("/ok/v1/webhooks/")
            && b == &json!({"disabled": true})),
        "{requests:#?}"
    );
    let logs = server.logs();
    assert!(
        logs.contains("deprovision failed") && logs.contains("Unable to disable Webhook: "),
        "{logs}"
    );

    // The stored record: both secrets, the applications and the customer policy, sealed.
    let secrets = ferry_core::secrets::Secrets::load_or_create(&data).unwrap();
    let store = ferry_store::SqliteStore::open(
        &data.join("ferry.db"),
        ferry_store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let kv = ferry_engine::Kv::new(&store, &secrets, "spec/provider".into());
    let rec = ferry_xurrent_app::CustomerStore::of_solution(&kv, "spec")
        .get(REF, "wdc")
        .await
        .unwrap()
        .unwrap();
    let open = |s: &Option<String>| secrets.open(s.as_deref().unwrap()).unwrap().to_string();
    let cc = rec.client_credentials.clone().unwrap();
    assert_eq!(
        (cc.node_id.as_deref(), cc.client_id.as_deref()),
        (Some("app-node"), Some("H3lzClient"))
    );
    assert_eq!(open(&cc.client_secret), "7IocSecret-plain");
    assert_eq!(
        open(&rec.authorization_code.clone().unwrap().client_secret),
        "AuthSecret-plain"
    );
    assert_eq!(open(&rec.secrets.get("password").cloned()), "foo-plain");
    assert_eq!(open(&rec.secrets.get("secret").cloned()), "bar-plain");
    let p = rec.policy.unwrap();
    assert_eq!(p.id.as_deref(), Some("dGVzdC5ob3N0L1dlYmhvb2tQb2xpY3kvMQ"));
    assert_eq!(p.algorithm, "ES256");
    assert_eq!(p.issuer.as_deref(), Some(iss.as_str()));
    assert_eq!(p.audience, None);
    assert_eq!(p.public_key_pem, customer.public_key_pem.clone().unwrap());
    drop(store);
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(&data).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "master.key") {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    for plain in [
        "7IocSecret-plain",
        "AuthSecret-plain",
        "foo-plain",
        "bar-plain",
    ] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} in plaintext"
        );
    }
}

/// The Secrets Changed runbook's provisioning state and last error, once it is `want`.
async fn provisioning(server: &Server, solution: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, s) = server.api(&format!("/solutions/{solution}")).await;
        let item = s["provisioning"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == "secrets").cloned())
            .unwrap_or(Value::Null);
        if item["state"] == want {
            return item["last_error"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "{s}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spec §14.2 33/34 over Ferry's REST provisioning: the provider policy stored by an earlier
/// start cannot be read back (401) or cannot be enabled again (422); provisioning fails with
/// `Unable to enable Webhook Policy: …` and the cause.
#[tokio::test]
async fn a_stored_policy_that_cannot_be_enabled_fails_provisioning() {
    let provider = PolicyKey::generate(JwtAlg::Es256).unwrap();
    let (base, fake) = start_fake(provider.public_key_pem.clone().unwrap()).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let write = |mode: &str| {
        solution(
            tmp.path(),
            "stored",
            &format!(
                "name: stored\nconnections:\n  provider:\n{}",
                connection(&base, mode)
            ),
            &[("secrets", &runbook("secrets", "secrets_changed", "{}"))],
        )
    };
    // First start: the policy is created and stored.
    let sol = write("ok");
    let server = Server::start(&data, &[&sol], &[]);
    assert_eq!(provisioning(&server, "stored", "provisioned").await, "");
    drop(server);
    // The policy cannot be read back.
    let sol = write("policyauth");
    let server = Server::start(&data, &[&sol], &[]);
    let error = provisioning(&server, "stored", "failed").await;
    assert!(
        error.starts_with("Unable to enable Webhook Policy: ") && error.contains("Unauthorized"),
        "{error}"
    );
    drop(server);
    // The policy is disabled and enabling it is refused.
    let sol = write("policyoff");
    let server = Server::start(&data, &[&sol], &[]);
    let error = provisioning(&server, "stored", "failed").await;
    assert!(
        error.starts_with("Unable to enable Webhook Policy: ")
            && error.contains("permission denied"),
        "{error}"
    );
    let requests = fake.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|(m, p, b)| m == "PATCH"
        && p == "/policyoff/v1/webhook_policies/7"
        && b["disabled"] == json!(false)));
    // No second policy was created for the stored one.
    assert_eq!(
        requests
            .iter()
            .filter(|(m, p, _)| m == "POST" && p.ends_with("/v1/webhook_policies"))
            .count(),
        1
    );
}
