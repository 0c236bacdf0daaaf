//! The App Store example `examples/xurrent-app`, run as its README says (`ferry validate`,
//! `ferry emulator`, `ferry serve --public-url …` on the example folder as shipped, only
//! `XURRENT_URL` pointing at this test's emulator), through the whole lifecycle of an App:
//!
//! provider solution served (the App Offering files applied) → provider policy and webhooks
//! created and verified in the emulator, the offering's webhook URI set → a customer installs the
//! App → its secrets arrive and are stored encrypted → the Installation Changed runbook runs →
//! a request created in the customer account runs the App's automation rule, which calls the
//! Automation Webhook, verified with the customer's policy → the runbook gets the customer's
//! client-credentials token, reads the App config, adds a note to the request through the
//! customer's GraphQL API with that token and updates the App config → suspend, update (new
//! secrets), uninstall → the delete event is handled. No secret is ever in the database bytes,
//! the jobs API or the logs in plaintext.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

const REF: &str = "triage";
const CUSTOMER: &str = "widget";
const API_KEY: &str = "widget-triage-key-5150-plain";
const NEW_API_KEY: &str = "widget-triage-key-6160-rotated";

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/xurrent-app")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A control call (`/_emulator/…`, no authentication), as the README's `curl`s.
async fn control(base: &str, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("emulator request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// A GraphQL call to `account` with `token`; the `data`, errors refused.
async fn graphql(base: &str, account: &str, token: &str, query: &str, variables: Value) -> Value {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .header("x-xurrent-account", account)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("emulator request")
        .json()
        .await
        .unwrap();
    assert!(v.get("errors").is_none(), "{query}: {v}");
    v["data"].clone()
}

/// The provider's webhooks (REST), as the README's `curl`.
async fn webhooks(base: &str) -> Vec<Value> {
    let v: Value = reqwest::Client::new()
        .get(format!(
            "{base}/v1/webhooks?fields=id,name,event,uri,disabled,verified,webhook_policy,app_offering_references"
        ))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array().cloned().unwrap_or_default()
}

async fn policies(base: &str) -> Vec<Value> {
    let v: Value = reqwest::Client::new()
        .get(format!("{base}/v1/webhook_policies"))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array().cloned().unwrap_or_default()
}

/// Every job of a runbook, in full, oldest first; a failed one fails the test.
async fn jobs(server: &Server, runbook: &str) -> Vec<Value> {
    let (_, page) = server
        .api(&format!(
            "/jobs?solution=triage&runbook={runbook}&limit=100"
        ))
        .await;
    let mut out = Vec::new();
    for j in page["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .rev()
    {
        let (_, detail) = server
            .api(&format!("/jobs/{}", j["id"].as_str().unwrap()))
            .await;
        assert_ne!(detail["status"], "failed", "{detail:#}\n{}", server.logs());
        out.push(detail);
    }
    out
}

/// The first finished job of `runbook` whose trigger output matches `pred`.
async fn finished_job(server: &Server, runbook: &str, pred: impl Fn(&Value) -> bool) -> Value {
    finished_job_after(server, runbook, 0, pred).await
}

/// The same, among the jobs after the first `skip` ones.
async fn finished_job_after(
    server: &Server,
    runbook: &str,
    skip: usize,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(&format!("a finished '{runbook}' job"), server, || async {
        jobs(server, runbook)
            .await
            .into_iter()
            .skip(skip)
            .find(|j| j["status"] == "finished" && pred(&j["trigger_output"]))
    })
    .await
}

/// The messages a step logged.
fn logged(job: &Value, step: &str) -> Vec<String> {
    steps(job, step)
        .iter()
        .flat_map(|s| s["logs"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect()
}

/// The last output of a step.
fn output<'a>(job: &'a Value, step: &str) -> &'a Value {
    let s = steps(job, step);
    &s.last()
        .unwrap_or_else(|| panic!("no step {step} in {job:#}"))["outputs"][0]
}

/// The customer's App Instance as the provider sees it: custom fields by id.
async fn instance(base: &str) -> Option<Value> {
    let d = graphql(
        base,
        "wdc",
        ferry_emulator::DEFAULT_TOKEN,
        "{ appInstances(first: 10) { nodes { id suspended customFields { id value } } } }",
        json!({}),
    )
    .await;
    d["appInstances"]["nodes"].as_array()?.first().cloned()
}

/// A custom field's value as text (`0` and `"0"` alike).
fn custom_field(instance: &Value, id: &str) -> String {
    let v = instance["customFields"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["id"] == id))
        .map(|f| f["value"].clone())
        .unwrap_or(Value::Null);
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The bytes of the data directory (database and WAL), the master key left out.
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

/// The example's own test cases (`examples/xurrent-app/tests/`), as its README says:
/// `ferry test` runs them offline, the App and HTTP steps mocked (the URL points at a closed
/// port).
#[test]
fn the_app_example_cases_pass_offline() {
    let out = ferry(
        &["test", example().to_str().unwrap()],
        &[("XURRENT_URL", "http://127.0.0.1:9")],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("test on_request/a refused note fails the job ... ok"),
        "{text}"
    );
    assert!(
        text.contains("test result: ok. 2 passed; 0 failed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_example_plays_the_whole_lifecycle_against_the_emulator() {
    let (code, text) = validate(&example(), &[]);
    assert_eq!(code, Some(0), "{text}");

    // `ferry emulator --seed examples/xurrent-app/emulator-seed.yaml` (the service instance).
    let seed = example().join("emulator-seed.yaml");
    let emulator = start_emulator_with(&["--seed", seed.to_str().unwrap()], None);
    let base = emulator.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ferry-data");
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let mut server = Server::start_listening(
        &data,
        &[&example()],
        &[("XURRENT_URL", &base)],
        &format!("127.0.0.1:{port}"),
        &["--public-url", &public],
    );

    // 1. Served: the App Offering files were applied before the triggers were provisioned:
    // the offering with its automation rule and UI extension exists in the provider account.
    let offering_query = "{ appOfferings(first: 10) { nodes { id reference name webhookUriTemplate serviceInstance { name } uiExtensionVersion { uiExtension { name } } automationRules(first: 10) { nodes { name trigger } } } } }";
    let offering = graphql(
        &base,
        "wdc",
        ferry_emulator::DEFAULT_TOKEN,
        offering_query,
        json!({}),
    )
    .await["appOfferings"]["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["reference"] == REF).cloned())
        .unwrap_or_else(|| panic!("the offering was not applied\n{}", server.logs()));
    assert_eq!(offering["name"], "Request Triage");
    assert_eq!(
        offering["uiExtensionVersion"]["uiExtension"]["name"], "triage_config",
        "{offering}"
    );
    assert_eq!(
        offering["serviceInstance"]["name"],
        "Request Triage Production"
    );
    assert_eq!(
        offering["automationRules"]["nodes"],
        json!([{"name": "Triage new requests", "trigger": "request.create"}])
    );

    // 2. Provisioned: one provider policy, a verified webhook per Secrets Changed /
    // Installation Changed runbook, the offering's webhook URI pointing at the Automation
    // Webhook trigger.
    let hooks = wait_until("the provisioned webhooks", &server, || async {
        let ours: Vec<Value> = webhooks(&base)
            .await
            .into_iter()
            .filter(|h| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Ferry triage/"))
            })
            .collect();
        (ours.len() == 4
            && ours
                .iter()
                .all(|h| h["verified"] == true && h["disabled"] == false))
        .then_some(ours)
    })
    .await;
    let hook = |runbook: &str| {
        hooks
            .iter()
            .find(|h| h["name"] == format!("Ferry triage/{runbook}"))
            .cloned()
            .unwrap_or_else(|| panic!("no webhook for {runbook}: {hooks:#?}"))
    };
    for (runbook, event) in [
        ("secrets", "app_instance.secrets-update"),
        ("installed", "app_instance.create"),
        ("changed", "app_instance.update"),
        ("removed", "app_instance.delete"),
    ] {
        let h = hook(runbook);
        assert_eq!(h["event"], event, "{h}");
        assert_eq!(h["uri"], format!("{public}/inbound/triage/{runbook}"));
        assert_eq!(h["app_offering_references"], json!([REF]), "{h}");
    }
    let policy_ids: Vec<&Value> = hooks.iter().map(|h| &h["webhook_policy"]["id"]).collect();
    assert!(policy_ids.iter().all(|p| *p == policy_ids[0]), "{hooks:#?}");
    assert_eq!(policies(&base).await.len(), 1);
    wait_until("the offering's webhook URI", &server, || async {
        let o = graphql(
            &base,
            "wdc",
            ferry_emulator::DEFAULT_TOKEN,
            offering_query,
            json!({}),
        )
        .await;
        let found = o["appOfferings"]["nodes"].as_array()?.iter().any(|o| {
            o["reference"] == REF
                && o["webhookUriTemplate"]
                    == format!("{public}/inbound/triage/on_request?customer_account_id={{account}}")
                        .as_str()
        });
        found.then_some(())
    })
    .await;

    // 3. A customer installs the App, with an API key in the UI extension and a note prefix.
    let install = control(
        &base,
        "/_emulator/apps/install",
        json!({"provider": "wdc", "reference": REF, "customer": CUSTOMER,
               "secrets": {"api_key": API_KEY},
               "custom_fields": [{"id": "note_prefix", "value": "Widget triage"}]}),
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

    // 4. The secrets arrive (Secrets Changed job) and 5. Installation Changed runs: it waits for
    // the API key, then starts the counter in the App Instance.
    let context = format!("{REF}@{CUSTOMER}");
    let secrets = finished_job(&server, "secrets", |_| true).await;
    assert_eq!(secrets["context_id"], context.as_str());
    assert_eq!(
        logged(&secrets, "log"),
        [format!("secrets of {REF} stored for customer {CUSTOMER}")]
    );
    let installed = finished_job(&server, "installed", |_| true).await;
    assert_eq!(installed["context_id"], context.as_str());
    let o = &installed["trigger_output"];
    assert_eq!(o["customer_account_id"], CUSTOMER);
    assert_eq!(o["app_reference"], REF);
    assert_eq!(o["webhook"]["event"], "app_instance.create");
    assert_eq!(
        output(&installed, "config")["config"]["api_key"],
        "[secret]"
    );
    let log = logged(&installed, "log");
    assert!(
        log.len() == 1
            && log[0].starts_with(&format!("{CUSTOMER} installed {REF} (representative "))
            && log[0].ends_with("API key received, note prefix 'Widget triage'"),
        "{log:?}"
    );
    assert_eq!(
        custom_field(
            &instance(&base).await.expect("the App Instance"),
            "requests_triaged"
        ),
        "0"
    );

    // 6. A request created in the customer account runs the App's automation rule there; the
    // rule calls the Automation Webhook, signed with the customer's policy.
    let customer_token = control(&base, "/_emulator/tokens", json!({"account": CUSTOMER})).await
        ["token"]
        .as_str()
        .unwrap()
        .to_string();
    let created = graphql(
        &base,
        CUSTOMER,
        &customer_token,
        "mutation { requestCreate(input: {subject: \"Printer on fire\"}) { request { id } } }",
        json!({}),
    )
    .await;
    let request_id = created["requestCreate"]["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let triaged = finished_job(&server, "on_request", |o| {
        o["payload"]["request_id"] == request_id.as_str()
    })
    .await;
    assert_eq!(triaged["context_id"], context.as_str());
    let o = &triaged["trigger_output"];
    assert_eq!(o["customer_account_id"], CUSTOMER);
    assert_eq!(o["webhook"]["event"], "automation_rule");
    assert_eq!(o["payload"]["subject"], "Printer on fire");

    // 7. The runbook got the customer's token (sealed in the step record), read the config,
    // added the note through the customer's GraphQL API and updated the App config.
    let token = output(&triaged, "token");
    assert_eq!(token["client_id"], install["application"]["client_id"]);
    assert_eq!(token["access_token"], "[secret]");
    assert_eq!(token["customer_account_id"], CUSTOMER);
    let config = output(&triaged, "config");
    assert_eq!(config["config"]["api_key"], "[secret]");
    assert_eq!(config["config"]["note_prefix"], "Widget triage");
    assert_eq!(config["config"]["requests_triaged"], 0);
    assert_eq!(output(&triaged, "add-note")["response"]["status"], 200);
    assert!(steps(&triaged, "refused").is_empty(), "{triaged:#}");
    let notes = graphql(
        &base,
        CUSTOMER,
        &customer_token,
        "query($id: ID!) { node(id: $id) { ... on Request { notes { nodes { id text } } } } }",
        json!({"id": request_id}),
    )
    .await;
    let notes = notes["node"]["notes"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let text = notes[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Widget triage: ")
            && text.ends_with(" request \"Printer on fire\", triaged by Ferry."),
        "{text}"
    );
    let log = logged(&triaged, "log");
    assert_eq!(
        log,
        [format!(
            "{CUSTOMER}: note {} added to request {request_id}; 1 request(s) triaged",
            notes[0]["id"].as_str().unwrap()
        )]
    );
    let inst = instance(&base).await.expect("the App Instance");
    assert_eq!(custom_field(&inst, "requests_triaged"), "1", "{inst}");
    assert_eq!(custom_field(&inst, "last_request"), request_id);
    assert_eq!(output(&triaged, "count")["app_instance_id"], inst["id"]);

    // 8. Suspend, then resume: app_instance.update with `suspended`. (The runbooks' own App
    // Instance updates send app_instance.update too: only the jobs after those count.)
    let before = wait_until("the updates made by the runbooks", &server, || async {
        let n = jobs(&server, "changed").await.len();
        (n >= 2).then_some(n)
    })
    .await;
    control(
        &base,
        "/_emulator/apps/suspend",
        json!({"provider": "wdc", "reference": REF, "customer": CUSTOMER, "comment": "unpaid"}),
    )
    .await;
    let suspended =
        finished_job_after(&server, "changed", before, |o| o["suspended"] == true).await;
    assert_eq!(suspended["context_id"], context.as_str());
    assert_eq!(
        logged(&suspended, "log"),
        [format!("{CUSTOMER}: suspended true, disabled false, enabled by customer true, new offering version false")]
    );
    let before = jobs(&server, "changed").await.len();
    control(
        &base,
        "/_emulator/apps/suspend",
        json!({"provider": "wdc", "reference": REF, "customer": CUSTOMER, "suspended": false}),
    )
    .await;
    finished_job_after(&server, "changed", before, |o| o["suspended"] == false).await;

    // 9. Update to a new version of the offering, with a new API key (a further secrets
    // delivery, merged into the stored ones).
    control(
        &base,
        "/_emulator/apps/update",
        json!({"provider": "wdc", "reference": REF, "customer": CUSTOMER, "updated": true,
               "secrets": {"api_key": NEW_API_KEY}}),
    )
    .await;
    let updated = finished_job(&server, "changed", |o| o["app_offering"]["updated"] == true).await;
    assert_eq!(updated["trigger_output"]["suspended"], false);
    wait_until("the second secrets job", &server, || async {
        let js = jobs(&server, "secrets").await;
        (js.iter().filter(|j| j["status"] == "finished").count() == 2).then_some(())
    })
    .await;

    // 10. Uninstall: the delete event is handled.
    control(
        &base,
        "/_emulator/apps/uninstall",
        json!({"provider": "wdc", "reference": REF, "customer": CUSTOMER}),
    )
    .await;
    let removed = finished_job(&server, "removed", |_| true).await;
    assert_eq!(removed["context_id"], context.as_str());
    assert_eq!(
        removed["trigger_output"]["webhook"]["event"],
        "app_instance.delete"
    );
    assert_eq!(
        logged(&removed, "log"),
        [format!("{CUSTOMER} uninstalled {REF}")]
    );
    assert!(instance(&base).await.is_none());

    // Each runbook ran once per event: one install, one triage, two secrets deliveries.
    assert_eq!(jobs(&server, "installed").await.len(), 1);
    assert_eq!(jobs(&server, "on_request").await.len(), 1);
    assert_eq!(jobs(&server, "removed").await.len(), 1);

    // No secret in plaintext: not in the jobs API, the logs, or the database bytes (WAL
    // included), while serving and after the stop.
    let plain = [API_KEY, NEW_API_KEY, cc_secret.as_str(), ac_secret.as_str()];
    let (_, all) = server.api("/jobs?solution=triage&limit=100").await;
    let mut views = all.to_string();
    for j in all["jobs"].as_array().unwrap() {
        views.push_str(
            &server
                .api(&format!("/jobs/{}", j["id"].as_str().unwrap()))
                .await
                .1
                .to_string(),
        );
    }
    for p in plain {
        assert!(!views.contains(p), "'{p}' in the jobs API");
        assert!(
            !contains(&data_bytes(&data), p),
            "'{p}' in the database bytes"
        );
    }
    server.terminate();
    // Stopping the server disables the webhooks; the policy stays.
    for h in webhooks(&base).await.iter().filter(|h| {
        h["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Ferry triage/"))
    }) {
        assert_eq!(h["disabled"], true, "{h}");
    }
    let bytes = data_bytes(&data);
    let logs = server.logs();
    for p in plain {
        assert!(!contains(&bytes, p), "'{p}' in the database bytes");
        assert!(!logs.contains(p), "'{p}' in the logs");
    }

    // The stored secrets, read with the server's master key: sealed, and the latest API key.
    let secrets = ferry_core::secrets::Secrets::load_or_create(&data).unwrap();
    let store = ferry_store::SqliteStore::open(
        &data.join("ferry.db"),
        ferry_store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let kv = ferry_engine::Kv::new(&store, &secrets, "triage/provider".into());
    let stored = ferry_xurrent_app::CustomerStore::of_solution(&kv, "triage")
        .get(REF, CUSTOMER)
        .await
        .unwrap()
        .expect("the customer's stored secrets");
    let open = |sealed: Option<&String>| {
        secrets
            .open(sealed.expect("a sealed value"))
            .unwrap()
            .to_string()
    };
    assert_eq!(open(stored.secrets.get("api_key")), NEW_API_KEY);
    let cc = stored.client_credentials.expect("client credentials");
    assert_eq!(open(cc.client_secret.as_ref()), cc_secret);
    assert!(stored.policy.is_some());
}
