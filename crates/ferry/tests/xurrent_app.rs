//! The Xurrent App Connector's triggers through the real `ferry serve` against the real
//! `ferry emulator`: provisioning creates the provider policy and webhooks and sets the
//! offering's URI templates; a customer installs the App; its secrets arrive, verified, and are
//! stored encrypted (the database bytes never hold them); Installation Changed runs; an
//! automation rule in the customer account calls the Automation Webhook, verified with the
//! customer's policy; suspend / update / uninstall; duplicate deliveries run once; two customers
//! installing at the same moment keep separate secrets; the rejections of spec §14.4–§14.6
//! answer with the spec's status and message and create no job.

mod common;

use common::*;
use serde_json::{json, Value};

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

async fn emu_api(
    emu: &Emulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", emu.base))
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

async fn deliveries(emu: &Emulator) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_emulator/deliveries", emu.base))
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

async fn jobs(server: &Server, runbook: &str) -> Vec<Value> {
    let (_, page) = server
        .api(&format!("/jobs?solution=app&runbook={runbook}"))
        .await;
    page["jobs"].as_array().cloned().unwrap_or_default()
}

/// Wait for `n` finished jobs of a runbook; returns them oldest first, in full.
async fn finished(server: &Server, runbook: &str, n: usize) -> Vec<Value> {
    let list = wait_until(
        &format!("{n} finished '{runbook}' jobs"),
        server,
        || async {
            let js = jobs(server, runbook).await;
            let done = js.iter().filter(|j| j["status"] == "finished").count();
            let failed: Vec<&Value> = js.iter().filter(|j| j["status"] == "failed").collect();
            assert!(failed.is_empty(), "failed jobs: {failed:#?}");
            (done >= n).then_some(js)
        },
    )
    .await;
    let mut out = Vec::new();
    for j in list.iter().rev() {
        let (_, detail) = server
            .api(&format!("/jobs/{}", j["id"].as_str().unwrap()))
            .await;
        out.push(detail);
    }
    out
}

fn connection(emu: &Emulator, rest: &str) -> String {
    format!(
        r#"    connector: xurrent_app
    direction: inbound
    config:
      credentials: {{ account_id: wdc, personal_access_token: "{token}" }}
      environment:
        graphql_endpoint: "{b}/graphql"
        rest_endpoint: "{rest}"
        oauth2_endpoint: "{b}/token"
      account_url_template: "{b}/accounts/{{account}}"
      allow_http_loopback: true
      client_rate_limit: false
"#,
        token = ferry_emulator::DEFAULT_TOKEN,
        b = emu.base,
    )
}

fn runbook(name: &str, kind: &str, config: &str) -> String {
    format!(
        r#"name: {name}
trigger:
  connector: xurrent_app
  type: {kind}
  connection: provider
  config: {config}
steps:
  - id: seen
    action: debug.log_message
    input: {{ message: "{name} {{{{ trigger.app_reference }}}}@{{{{ trigger.customer_account_id }}}} {{{{ trigger.webhook.delivery }}}}" }}
"#
    )
}

fn app_solution(tmp: &std::path::Path, emu: &Emulator) -> std::path::PathBuf {
    let rest = format!("{}/v1", emu.base);
    solution(
        tmp,
        "app",
        &format!("name: app\nconnections:\n  provider:\n{}", connection(emu, &rest)),
        &[
            (
                "secrets",
                // acme's deliveries are discarded, after their secrets were stored.
                &runbook("secrets", "secrets_changed", &format!("{{ app_references: [{REF}], discard_if: \"{{{{ trigger.customer_account_id == 'acme' }}}}\" }}")),
            ),
            (
                "installed",
                &runbook(
                    "installed",
                    "installation_changed",
                    &format!("{{ event: app_instance.create, app_reference: {REF}, configuration_uri_template: \"https://config.example.com/setup?account={{account}}\" }}"),
                ),
            ),
            (
                "updated",
                &runbook(
                    "updated",
                    "installation_changed",
                    // Deliveries by one person are dropped by the discard condition.
                    &format!("{{ event: app_instance.update, app_reference: {REF}, discard_if: \"{{{{ trigger.webhook.person.name == 'Nobody' }}}}\" }}"),
                ),
            ),
            (
                "removed",
                &runbook("removed", "installation_changed", "{ event: app_instance.delete }"),
            ),
            (
                "other",
                &runbook(
                    "other",
                    "installation_changed",
                    "{ event: app_instance.create, app_reference: other_app }",
                ),
            ),
            (
                "rule",
                &runbook(
                    "rule",
                    "automation_webhook",
                    &format!("{{ app_reference: {REF}, payload_schema: [{{id: subject, type: string}}, {{id: count, type: integer}}] }}"),
                ),
            ),
        ],
    )
}

/// A solution whose provider cannot be reached: nothing is provisioned, so it has no policy.
fn unprovisioned_solution(tmp: &std::path::Path, emu: &Emulator) -> std::path::PathBuf {
    solution(
        tmp,
        "app2",
        &format!(
            "name: app2\nconnections:\n  provider:\n{}",
            connection(emu, "http://127.0.0.1:9/v1")
        ),
        &[
            ("secrets", &runbook("secrets", "secrets_changed", "{}")),
            (
                "rule",
                &runbook(
                    "rule",
                    "automation_webhook",
                    "{ app_reference: missing_app }",
                ),
            ),
        ],
    )
}

async fn offering(emu: &Emulator) -> Value {
    let v = emu_api(
        emu,
        reqwest::Method::POST,
        "/graphql",
        Some(json!({"query": "{ appOfferings(first: 5) { nodes { id reference webhookUriTemplate configurationUriTemplate } } }"})),
    )
    .await;
    v["data"]["appOfferings"]["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["reference"] == REF).cloned())
        .unwrap_or(Value::Null)
}

async fn webhooks(emu: &Emulator) -> Vec<Value> {
    let v = emu_api(
        emu,
        reqwest::Method::GET,
        "/v1/webhooks?fields=id,name,event,uri,disabled,verified,webhook_policy,app_offering_references",
        None,
    )
    .await;
    v.as_array().cloned().unwrap_or_default()
}

async fn post_raw(server: &Server, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn forged_jwt(iss: &str, data: &Value) -> String {
    let key =
        ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256).unwrap();
    let now = chrono::Utc::now().timestamp();
    key.sign(
        None,
        &json!({"iss": iss, "iat": now, "nbf": now, "jti": uuid::Uuid::new_v4().simple().to_string(), "data": data}),
    )
    .unwrap()
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

/// The stored secrets of a customer, read with the server's master key (server stopped).
async fn stored(data: &std::path::Path, customer: &str) -> ferry_xurrent_app::CustomerSecrets {
    let secrets = ferry_core::secrets::Secrets::load_or_create(data).unwrap();
    let store = ferry_store::SqliteStore::open(
        &data.join("ferry.db"),
        ferry_store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let kv = ferry_engine::Kv::new(&store, &secrets, "app/provider".into());
    ferry_xurrent_app::CustomerStore::of_solution(&kv, "app")
        .get(REF, customer)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no secrets stored for {customer}"))
}

fn open(data: &std::path::Path, sealed: &Option<String>) -> String {
    let secrets = ferry_core::secrets::Secrets::load_or_create(data).unwrap();
    secrets
        .open(sealed.as_deref().expect("a sealed value"))
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_lifecycle_through_serve_and_the_emulator() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    emu_post(
        &emu,
        "/_emulator/apps/offerings",
        json!({
            "provider": "wdc",
            "offering": {"reference": REF, "name": "Phone", "policyJwtAlg": "es256",
                         "scopes": [{"actions": ["read"], "effect": "allow", "grantType": "client_credentials"}]},
            "automation_rules": [{"name": "Notify", "trigger": "request.create",
                                  "expressions": [{"name": "subject", "value": "request.subject"},
                                                  {"name": "count", "value": "42"}]}],
        }),
    )
    .await;
    let sol = app_solution(tmp.path(), &emu);
    let sol2 = unprovisioned_solution(tmp.path(), &emu);
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&sol, &sol2], &[]);

    // Provisioning: one provider policy, a verified webhook per Secrets Changed / Installation
    // Changed runbook, and the offering's URI templates.
    let hooks = wait_until("the provisioned webhooks", &server, || async {
        let hs = webhooks(&emu).await;
        let ours: Vec<Value> = hs
            .into_iter()
            .filter(|h| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Ferry app/"))
            })
            .collect();
        (ours.len() == 5 && ours.iter().all(|h| h["verified"] == true)).then_some(ours)
    })
    .await;
    let by_name = |n: &str| {
        hooks
            .iter()
            .find(|h| h["name"] == format!("Ferry app/{n}"))
            .cloned()
            .unwrap()
    };
    let secrets_hook = by_name("secrets");
    assert_eq!(secrets_hook["event"], "app_instance.secrets-update");
    assert_eq!(secrets_hook["uri"], server.url("/inbound/app/secrets"));
    assert_eq!(secrets_hook["app_offering_references"], json!([REF]));
    assert_eq!(by_name("installed")["event"], "app_instance.create");
    assert_eq!(by_name("updated")["event"], "app_instance.update");
    assert_eq!(by_name("removed")["event"], "app_instance.delete");
    assert_eq!(by_name("removed")["app_offering_references"], json!([]));
    let policies: Vec<&Value> = hooks.iter().map(|h| &h["webhook_policy"]["id"]).collect();
    assert!(policies.iter().all(|p| *p == policies[0]), "{hooks:#?}");
    let verify_answers: Vec<Value> = deliveries(&emu)
        .await
        .into_iter()
        .filter(|d| d["event"] == "webhook.verify")
        .collect();
    assert!(verify_answers.iter().all(|d| d["response_status"] == 200
        && d["response_body"]
            .as_str()
            .unwrap()
            .starts_with("Webhook verification handled automatically: Ferry app/")));
    let off = wait_until("the offering's URI templates", &server, || async {
        let o = offering(&emu).await;
        (!o["webhookUriTemplate"].is_null() && !o["configurationUriTemplate"].is_null())
            .then_some(o)
    })
    .await;
    assert_eq!(
        off["webhookUriTemplate"],
        format!(
            "{}?customer_account_id={{account}}",
            server.url("/inbound/app/rule")
        )
    );
    assert_eq!(
        off["configurationUriTemplate"],
        "https://config.example.com/setup?account={account}"
    );
    // app2's provider REST API is unreachable, and its App does not exist: both are retried,
    // each with its reason.
    let prov = wait_until("app2's provisioning errors", &server, || async {
        let (_, sol) = server.api("/solutions/app2").await;
        let items = sol["provisioning"].as_array().cloned().unwrap_or_default();
        let failed = |n: &str| {
            items
                .iter()
                .find(|i| i["name"] == n && i["state"] == "failed")
                .map(|i| i["last_error"].as_str().unwrap_or_default().to_string())
        };
        Some((failed("rule")?, failed("secrets")?))
    })
    .await;
    assert_eq!(prov.0, "No App offering found with reference 'missing_app'");
    assert!(
        prov.1.starts_with("Unable to enable Webhook Policy")
            || prov.1.starts_with("Unable to create Webhook Policy"),
        "{prov:?}"
    );
    // The other_app runbook's webhook takes every App: its deliveries are discarded.
    let other_id = by_name("other")["id"].clone();
    emu_api(
        &emu,
        reqwest::Method::PATCH,
        &format!("/v1/webhooks/{other_id}"),
        Some(json!({"app_offering_references": []})),
    )
    .await;

    // Rejections before any customer (spec §14.4, §14.6): each a 400 with the spec's message,
    // and no job.
    for (path, body, message) in [
        (
            "/inbound/app/secrets",
            "",
            "Unable to parse incoming request",
        ),
        (
            "/inbound/app/secrets",
            "{}",
            "Request does not contain jwt property",
        ),
        (
            "/inbound/app2/secrets",
            "{\"jwt\":\"x.y.z\"}",
            "Webhook policy not configured",
        ),
        (
            "/inbound/app/rule",
            "{\"jwt\":\"irrelevant\"}",
            "Missing customer_account_id parameter",
        ),
        (
            "/inbound/app/rule?customer_account_id=",
            "{\"jwt\":\"irrelevant\"}",
            "Missing customer_account_id parameter",
        ),
        (
            "/inbound/app/rule?customer_account_id=widget",
            "{\"jwt\":\"irrelevant\"}",
            "Webhook policy not configured",
        ),
        (
            "/inbound/app2/rule?customer_account_id=widget",
            "",
            "Webhook policy not configured",
        ),
    ] {
        let (status, answer) = post_raw(&server, path, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(message)),
            "{path} {body}"
        );
    }
    let issuer = format!("{}/accounts/wdc", emu.base);
    let forged = forged_jwt(
        &issuer,
        &json!({"event": "app_instance.secrets-update", "payload": {}}),
    );
    let (status, answer) = post_raw(
        &server,
        "/inbound/app/secrets",
        &json!({"jwt": forged}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("Unable to validate request: "),
        "{answer}"
    );
    let wrong_issuer = forged_jwt("https://another.example.com", &json!({"event": "x"}));
    let (status, answer) = post_raw(
        &server,
        "/inbound/app/secrets",
        &json!({"jwt": wrong_issuer}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        format!("Unable to validate request: Unable to decode JWT: Invalid issuer. Expected [\"{issuer}\"], received https://another.example.com")
    );
    for rb in ["secrets", "installed", "rule"] {
        assert!(jobs(&server, rb).await.is_empty(), "{rb} has jobs");
    }

    // Two customers install at the same moment.
    let (widget, acme) = tokio::join!(
        emu_post(
            &emu,
            "/_emulator/apps/install",
            json!({"provider": "wdc", "reference": REF, "customer": "widget",
                   "secrets": {"password": "widget-pass-4711"}}),
        ),
        emu_post(
            &emu,
            "/_emulator/apps/install",
            json!({"provider": "wdc", "reference": REF, "customer": "acme",
                   "secrets": {"password": "acme-pass-0815"}}),
        ),
    );
    let secrets_jobs = finished(&server, "secrets", 1).await;
    assert_eq!(secrets_jobs[0]["context_id"], "phone@widget");
    let acme_secrets = wait_until("acme's discarded secrets delivery", &server, || async {
        deliveries(&emu).await.into_iter().find(|d| {
            d["event"] == "app_instance.secrets-update"
                && d["message"]["payload"]["customer_account_id"] == "acme"
                && !d["response_status"].is_null()
        })
    })
    .await;
    assert_eq!(acme_secrets["response_status"], 200, "{acme_secrets:#}");
    assert!(
        acme_secrets["response_body"]
            .as_str()
            .unwrap()
            .contains("Discarded"),
        "{acme_secrets:#}"
    );
    let out = &secrets_jobs[0]["trigger_output"];
    assert_eq!(out["app_reference"], REF);
    assert_eq!(out["webhook"]["event"], "app_instance.secrets-update");
    assert!(out["webhook"].get("delivery_origin").is_none(), "{out}");
    assert_eq!(out["deduplication_id"], out["webhook"]["delivery"]);
    let installed = finished(&server, "installed", 2).await;
    let inst = installed
        .iter()
        .find(|j| j["context_id"] == "phone@widget")
        .expect("widget's install job");
    let o = &inst["trigger_output"];
    assert_eq!(o["customer_account_id"], "widget");
    assert_eq!(o["app_reference"], REF);
    assert_eq!(o["disabled"], false);
    assert_eq!(o["enabled_by_customer"], true);
    assert_eq!(o["suspended"], false);
    assert_eq!(o["app_offering"]["reference"], REF);
    assert!(o["app_offering"]["id"].is_i64(), "{o}");
    assert!(o["customer_representative"]["name"].is_string(), "{o}");
    assert_eq!(o["webhook"]["event"], "app_instance.create");
    // The other App's runbook got the deliveries too, and discarded them.
    let discarded = wait_until("the other_app discards", &server, || async {
        let ds: Vec<Value> = deliveries(&emu)
            .await
            .into_iter()
            .filter(|d| {
                d["uri"] == server.url("/inbound/app/other")
                    && d["event"] == "app_instance.create"
                    && !d["response_status"].is_null()
            })
            .collect();
        (ds.len() == 2).then_some(ds)
    })
    .await;
    for d in &discarded {
        assert_eq!(d["response_status"], 200);
        assert!(
            d["response_body"]
                .as_str()
                .unwrap()
                .contains("App reference 'phone' is different from 'other_app'."),
            "{d:#}"
        );
    }
    assert!(jobs(&server, "other").await.is_empty());

    for (body, message) in [
        ("", "Unable to parse incoming request"),
        ("{}", "Request does not contain jwt property"),
    ] {
        let (status, answer) = post_raw(
            &server,
            "/inbound/app/rule?customer_account_id=widget",
            body,
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(message)),
            "{body}"
        );
    }
    // An automation rule in the customer account calls the Automation Webhook.
    emu_post(
        &emu,
        "/_emulator/apps/automation_rule",
        json!({"provider": "wdc", "reference": REF, "customer": "widget",
               "payload": {"subject": "Printer on fire", "count": 42, "extra": "pruned"}}),
    )
    .await;
    let rule = finished(&server, "rule", 1).await;
    let o = &rule[0]["trigger_output"];
    assert_eq!(rule[0]["context_id"], "phone@widget");
    assert_eq!(o["customer_account_id"], "widget");
    assert_eq!(o["app_reference"], REF);
    assert_eq!(
        o["payload"],
        json!({"subject": "Printer on fire", "count": 42})
    );
    assert_eq!(o["webhook"]["event"], "automation_rule");
    // The same call for another customer's account id fails verification (another policy).
    let rule_delivery = deliveries(&emu)
        .await
        .into_iter()
        .find(|d| d["event"] == "automation_rule" && d["response_status"] == 200)
        .expect("the automation rule delivery");
    let body = rule_delivery["request_body"].as_str().unwrap().to_string();
    let (status, answer) =
        post_raw(&server, "/inbound/app/rule?customer_account_id=acme", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("Unable to validate request: "),
        "{answer}"
    );
    // Replayed as it was: the JWT was seen already.
    let (status, answer) = post_raw(
        &server,
        "/inbound/app/rule?customer_account_id=widget",
        &body,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            400,
            Some("Unable to validate request: JWT ID claim invalid")
        )
    );
    // Re-sent by Xurrent (a new JWT, the original delivery id): the same job, not a second one.
    let resent = emu_post(
        &emu,
        &format!("/_emulator/deliveries/{}/resend", rule_delivery["id"]),
        json!({}),
    )
    .await;
    let _ = resent;
    wait_until("the re-sent delivery's answer", &server, || async {
        deliveries(&emu).await.into_iter().find(|d| {
            d["event"] == "automation_rule"
                && !d["delivery_origin"].is_null()
                && !d["response_status"].is_null()
        })
    })
    .await;
    assert_eq!(jobs(&server, "rule").await.len(), 1);

    // Suspend, update with new secrets, uninstall.
    emu_post(
        &emu,
        "/_emulator/apps/suspend",
        json!({"provider": "wdc", "reference": REF, "customer": "widget", "comment": "unpaid"}),
    )
    .await;
    let updated = finished(&server, "updated", 1).await;
    assert_eq!(updated[0]["trigger_output"]["suspended"], true);
    assert_eq!(updated[0]["context_id"], "phone@widget");
    emu_post(
        &emu,
        "/_emulator/apps/update",
        json!({"provider": "wdc", "reference": REF, "customer": "widget", "updated": true,
               "secrets": {"api_token": "widget-token-9999"}}),
    )
    .await;
    let updated = finished(&server, "updated", 2).await;
    assert_eq!(
        updated[1]["trigger_output"]["app_offering"]["updated"],
        true
    );
    let secrets_jobs = finished(&server, "secrets", 2).await;
    assert_eq!(secrets_jobs.len(), 2, "acme's delivery made no job");
    emu_post(
        &emu,
        "/_emulator/apps/uninstall",
        json!({"provider": "wdc", "reference": REF, "customer": "widget"}),
    )
    .await;
    let removed = finished(&server, "removed", 1).await;
    assert_eq!(
        removed[0]["trigger_output"]["customer_account_id"],
        "widget"
    );
    assert_eq!(
        removed[0]["trigger_output"]["webhook"]["event"],
        "app_instance.delete"
    );
    assert_eq!(removed[0]["context_id"], "phone@widget");

    // No plaintext secret in the database (WAL included) while the server runs, nor in the
    // API's job views.
    let plain = [
        widget["application"]["client_secret"]
            .as_str()
            .unwrap()
            .to_string(),
        widget["authorization_application"]["client_secret"]
            .as_str()
            .unwrap()
            .to_string(),
        acme["application"]["client_secret"]
            .as_str()
            .unwrap()
            .to_string(),
        "widget-pass-4711".to_string(),
        "acme-pass-0815".to_string(),
        "widget-token-9999".to_string(),
    ];
    let bytes = data_bytes(&data);
    for p in &plain {
        assert!(
            !contains(&bytes, p),
            "'{p}' is in the database in plaintext"
        );
    }
    let (_, all) = server.api("/jobs?solution=app&limit=100").await;
    for p in &plain {
        assert!(!all.to_string().contains(p.as_str()));
    }

    // Deprovisioning (the server stops) disables the webhooks; the policy stays.
    server.terminate();
    let after = webhooks(&emu).await;
    for h in after.iter().filter(|h| {
        h["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Ferry app/"))
    }) {
        assert_eq!(h["disabled"], true, "{h}");
    }
    let bytes = data_bytes(&data);
    for p in &plain {
        assert!(
            !contains(&bytes, p),
            "'{p}' is in the database in plaintext"
        );
    }

    // The stored secrets: each customer its own, merged across deliveries, sealed.
    let w = stored(&data, "widget").await;
    let a = stored(&data, "acme").await;
    let cc = w.client_credentials.clone().unwrap();
    assert_eq!(
        cc.client_id.as_deref(),
        widget["application"]["client_id"].as_str()
    );
    assert_eq!(
        cc.node_id.as_deref(),
        widget["application"]["nodeID"].as_str()
    );
    assert_eq!(open(&data, &cc.client_secret), plain[0]);
    assert_eq!(
        open(&data, &w.authorization_code.clone().unwrap().client_secret),
        plain[1]
    );
    assert_eq!(
        open(&data, &a.client_credentials.clone().unwrap().client_secret),
        plain[2]
    );
    assert_eq!(
        open(&data, &w.secrets.get("password").cloned()),
        "widget-pass-4711"
    );
    assert_eq!(
        open(&data, &w.secrets.get("api_token").cloned()),
        "widget-token-9999"
    );
    assert_eq!(
        open(&data, &a.secrets.get("password").cloned()),
        "acme-pass-0815"
    );
    assert!(!a.secrets.contains_key("api_token"));
    let wp = w.policy.unwrap();
    assert_eq!(wp.algorithm, "ES256");
    assert_eq!(
        wp.issuer.as_deref(),
        Some(format!("{}/accounts/widget", emu.base).as_str())
    );
    assert_eq!(
        wp.public_key_pem.as_str(),
        widget["policy"]["public_key_pem"].as_str().unwrap()
    );
    assert_ne!(a.policy.unwrap().public_key_pem, wp.public_key_pem);
}

#[test]
fn a_second_secrets_changed_runbook_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = r#"    connector: xurrent_app
    direction: inbound
    config:
      credentials: { account_id: wdc, personal_access_token: x }
"#;
    let sol = solution(
        tmp.path(),
        "two",
        &format!("name: two\nconnections:\n  provider:\n{conn}"),
        &[
            ("a_secrets", &runbook("a_secrets", "secrets_changed", "{}")),
            (
                "b_secrets",
                &runbook("b_secrets", "secrets_changed", "{ app_references: [x] }"),
            ),
        ],
    );
    let (code, text) = validate(&sol, &[]);
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("b_secrets.yaml:2")
            && text.contains("Runbook 'b_secrets' is a second 'xurrent_app.secrets_changed' runbook: a solution has exactly one (the first is runbook 'a_secrets' at ")
            && text.contains("a_secrets.yaml:2"),
        "{text}"
    );
    // `ferry serve` refuses it as well.
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data"))
        .arg(&sol)
        .env("FERRY_API_TOKEN", TOKEN)
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("is a second 'xurrent_app.secrets_changed' runbook"),
        "{text}"
    );
    // One is fine.
    std::fs::remove_file(sol.join("runbooks/b_secrets.yaml")).unwrap();
    let (code, text) = validate(&sol, &[]);
    assert_eq!(code, Some(0), "{text}");
}

fn provider_solution(
    tmp: &std::path::Path,
    emu: &Emulator,
    references: &str,
    installed_event: &str,
) -> std::path::PathBuf {
    let rest = format!("{}/v1", emu.base);
    solution(
        tmp,
        "app",
        &format!(
            "name: app\nconnections:\n  provider:\n{}",
            connection(emu, &rest)
        ),
        &[
            (
                "secrets",
                &runbook(
                    "secrets",
                    "secrets_changed",
                    &format!("{{ app_references: {references} }}"),
                ),
            ),
            (
                "installed",
                &runbook(
                    "installed",
                    "installation_changed",
                    &format!("{{ event: {installed_event}, app_reference: {REF} }}"),
                ),
            ),
            (
                "removed",
                &runbook(
                    "removed",
                    "installation_changed",
                    "{ event: app_instance.delete }",
                ),
            ),
            (
                "rule",
                &runbook("rule", "automation_webhook", "{ app_reference: oidc_app }"),
            ),
        ],
    )
}

async fn ours(emu: &Emulator) -> Vec<Value> {
    webhooks(emu)
        .await
        .into_iter()
        .filter(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Ferry app/"))
        })
        .collect()
}

/// Spec §14.3 47–50, §14.5 76–79: a restart updates the same webhooks in place (new URI,
/// references, event) and reuses the policy; a policy or webhook deleted meanwhile is created
/// again, and every webhook moves to the new policy, which then verifies the deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_updates_in_place_and_repairs_what_is_gone() {
    let emu = start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    emu_post(
        &emu,
        "/_emulator/apps/offerings",
        json!({"provider": "wdc", "offering": {"reference": REF, "name": "Phone"}}),
    )
    .await;
    // Its customers sign with their policy's own issuer (OpenID Connect discovery), which the
    // secrets delivery names (spec §14.4 65).
    emu_post(
        &emu,
        "/_emulator/apps/offerings",
        json!({"provider": "wdc",
               "offering": {"reference": "oidc_app", "name": "OIDC", "openidConnectDiscovery": true},
               "automation_rules": [{"name": "Ping", "trigger": "request.create",
                                     "expressions": [{"name": "kind", "value": "'ping'"}]}]}),
    )
    .await;
    let data = tmp.path().join("data");
    let sol = provider_solution(tmp.path(), &emu, &format!("[{REF}]"), "app_instance.create");
    let mut server = Server::start(&data, &[&sol], &[]);
    let first = wait_until("the first webhooks", &server, || async {
        let hs = ours(&emu).await;
        (hs.len() == 3 && hs.iter().all(|h| h["verified"] == true)).then_some(hs)
    })
    .await;
    let find = |hs: &[Value], n: &str| {
        hs.iter()
            .find(|h| h["name"] == format!("Ferry app/{n}"))
            .cloned()
            .unwrap_or_else(|| panic!("no webhook {n}: {hs:#?}"))
    };
    let old_policy = find(&first, "secrets")["webhook_policy"]["id"].clone();
    // A webhook deleted in Xurrent while served: deprovisioning the others is not disturbed
    // (spec §14.3 52), and the next start creates it again.
    emu_api(
        &emu,
        reqwest::Method::DELETE,
        &format!("/v1/webhooks/{}", find(&first, "removed")["id"]),
        None,
    )
    .await;
    server.terminate();
    let stopped = ours(&emu).await;
    assert_eq!(stopped.len(), 2, "{stopped:#?}");
    assert!(
        stopped.iter().all(|h| h["disabled"] == true),
        "{stopped:#?}"
    );
    assert!(
        !server.logs().contains("deprovision failed"),
        "{}",
        server.logs()
    );

    // Meanwhile the policy is deleted in Xurrent, and the config changes.
    emu_api(
        &emu,
        reqwest::Method::DELETE,
        &format!("/v1/webhook_policies/{old_policy}"),
        None,
    )
    .await;
    let sol = provider_solution(
        tmp.path(),
        &emu,
        &format!("[{REF}, oidc_app]"),
        "app_instance.update",
    );
    let server = Server::start(&data, &[&sol], &[]);
    let url = server.url("/inbound/app/secrets");
    let second = wait_until("the updated webhooks", &server, || async {
        let hs = ours(&emu).await;
        (hs.len() == 3
            && hs
                .iter()
                .all(|h| h["verified"] == true && h["disabled"] == false)
            && hs.iter().any(|h| h["uri"] == url.as_str()))
        .then_some(hs)
    })
    .await;
    let secrets = find(&second, "secrets");
    assert_eq!(secrets["id"], find(&first, "secrets")["id"]);
    assert_eq!(secrets["uri"], url);
    assert_eq!(secrets["app_offering_references"], json!([REF, "oidc_app"]));
    let installed = find(&second, "installed");
    assert_eq!(installed["id"], find(&first, "installed")["id"]);
    assert_eq!(installed["event"], "app_instance.update");
    assert_eq!(installed["uri"], server.url("/inbound/app/installed"));
    let removed = find(&second, "removed");
    assert_ne!(removed["id"], find(&first, "removed")["id"]);
    let new_policy = secrets["webhook_policy"]["id"].clone();
    assert_ne!(new_policy, old_policy);
    assert!(
        second
            .iter()
            .all(|h| h["webhook_policy"]["id"] == new_policy),
        "{second:#?}"
    );
    let policies = emu_api(&emu, reqwest::Method::GET, "/v1/webhook_policies", None).await;
    assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");

    // The new policy verifies the deliveries.
    emu_post(
        &emu,
        "/_emulator/apps/install",
        json!({"provider": "wdc", "reference": REF, "customer": "widget"}),
    )
    .await;
    let jobs = finished(&server, "secrets", 1).await;
    assert_eq!(jobs[0]["context_id"], "phone@widget");
    let installed = emu_post(
        &emu,
        "/_emulator/apps/install",
        json!({"provider": "wdc", "reference": "oidc_app", "customer": "widget"}),
    )
    .await;
    let issuer = installed["policy"]["issuer"]
        .as_str()
        .expect("a custom issuer")
        .to_string();
    assert_ne!(issuer, format!("{}/accounts/widget", emu.base));
    finished(&server, "secrets", 2).await;
    emu_post(
        &emu,
        "/_emulator/apps/automation_rule",
        json!({"provider": "wdc", "reference": "oidc_app", "customer": "widget"}),
    )
    .await;
    let rule = finished(&server, "rule", 1).await;
    assert_eq!(rule[0]["context_id"], "oidc_app@widget");
    assert_eq!(
        rule[0]["trigger_output"]["payload"],
        json!({"kind": "ping"})
    );
    // A restart without changes creates and changes nothing but the URI.
    let ids: Vec<Value> = second.iter().map(|h| h["id"].clone()).collect();
    drop(server);
    let server = Server::start(&data, &[&sol], &[]);
    let url = server.url("/inbound/app/secrets");
    let third = wait_until("the webhooks after the third start", &server, || async {
        let hs = ours(&emu).await;
        (hs.iter().any(|h| h["uri"] == url.as_str())
            && hs
                .iter()
                .all(|h| h["verified"] == true && h["disabled"] == false))
        .then_some(hs)
    })
    .await;
    let mut again: Vec<Value> = third.iter().map(|h| h["id"].clone()).collect();
    let mut ids = ids;
    again.sort_by_key(|v| v.to_string());
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(again, ids);
    let policies = emu_api(&emu, reqwest::Method::GET, "/v1/webhook_policies", None).await;
    assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");
}
