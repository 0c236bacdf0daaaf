//! The example solution `examples/xurrent`, run exactly as its README says: `ferry validate`,
//! then `ferry emulator` and `ferry serve --public-url …` on the example directory as
//! processes on loopback. The trigger registers its webhook policy and webhook in the emulator;
//! a `requestCreate` mutation in the emulator fires a signed (OpenID Connect) webhook; the job
//! queries the request, uploads a report and adds a note carrying it; the note and its
//! attachment are then found in the emulator; a re-delivery of the event does not run twice.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/xurrent")
}

#[test]
fn the_example_validates() {
    let (code, text) = validate(&example(), &[]);
    assert_eq!(code, Some(0), "{text}");
}

/// A REST or GraphQL call to the emulator as its administrator (the README's `curl`s).
async fn emu(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
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

async fn deliveries(base: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{base}/_emulator/deliveries"))
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

/// Wait for an answered delivery attempt matching `pred`.
async fn wait_delivery(
    base: &str,
    server: &Server,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(d) = deliveries(base)
            .await
            .into_iter()
            .find(|d| pred(d) && !d["response_status"].is_null())
        {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery {what}: {:#?}\n{}",
            deliveries(base).await,
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn jobs(server: &Server) -> Vec<Value> {
    let (_, page) = server.api("/jobs?runbook=on_request").await;
    page["jobs"].as_array().cloned().unwrap_or_default()
}

/// The notes of a request, with their attachments (the README's last `curl`).
async fn notes(base: &str, request_id: &str) -> Vec<Value> {
    let v = emu(
        base,
        reqwest::Method::POST,
        "/graphql",
        Some(json!({
            "query": "query($id: ID!) { node(id: $id) { ... on Request { notes { nodes { text textAttachments { nodes { filename size key } } } } } } }",
            "variables": {"id": request_id},
        })),
    )
    .await;
    v["data"]["node"]["notes"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no notes in {v}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_against_the_emulator() {
    let emulator = start_emulator();
    let base = emulator.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let server = Server::start_listening(
        &tmp.path().join("ferry-data"),
        &[&example()],
        &[("XURRENT_URL", &base)],
        &format!("127.0.0.1:{port}"),
        &["--public-url", &public],
    );

    // Provisioning: one policy and one webhook, pointing at the public URL, verified through
    // the trigger's handshake.
    let uri = format!("{public}/inbound/xurrent/on_request");
    let deadline = Instant::now() + Duration::from_secs(60);
    let hook = loop {
        let hooks = emu(&base, reqwest::Method::GET, "/v1/webhooks", None).await;
        if let Some(h) = hooks.as_array().unwrap().iter().find(|h| {
            h["name"] == "Ferry xurrent/on_request request.create"
                && h["uri"] == uri.as_str()
                && h["disabled"] == false
        }) {
            break h.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the webhook was not registered: {hooks:#}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(hook["event"], "request.create");
    let policies = emu(&base, reqwest::Method::GET, "/v1/webhook_policies", None).await;
    assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");
    let hook_id = hook["id"].as_u64().unwrap();
    let verify = wait_delivery(&base, &server, "webhook.verify", |d| {
        d["event"] == "webhook.verify" && d["webhook_id"] == hook_id
    })
    .await;
    assert_eq!(verify["response_status"], 200, "{verify:#}");
    assert!(jobs(&server).await.is_empty());

    event_runs_the_runbook(&base, &server, hook_id, true).await;
}

/// A request created in the emulator fires the signed webhook `hook_id`; the job queries the
/// request, uploads the report and adds the note, which is then found in the emulator; a
/// re-delivery does not run again.
async fn event_runs_the_runbook(base: &str, server: &Server, hook_id: u64, oidc: bool) {
    let base = base.to_string();
    let created = emu(
        &base,
        reqwest::Method::POST,
        "/graphql",
        Some(json!({"query": "mutation { requestCreate(input: {subject: \"Printer on fire\"}) { request { id } } }"})),
    )
    .await;
    let request = &created["data"]["requestCreate"]["request"];
    let node_id = request["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let delivery = wait_delivery(&base, server, "request.create", |d| {
        d["event"] == "request.create"
            && d["webhook_id"] == hook_id
            && d["message"]["object_nodeID"] == node_id.as_str()
    })
    .await;
    assert_eq!(
        delivery["response_status"],
        200,
        "{delivery:#}\n{}",
        server.logs()
    );
    // Signed: through OpenID Connect discovery the token's header names the key (`kid`); with
    // a static key it does not.
    let body: Value = serde_json::from_str(delivery["request_body"].as_str().unwrap()).unwrap();
    let jwt = body["jwt"].as_str().unwrap_or_else(|| panic!("{body}"));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"].is_string(), oidc, "{header}");
    let answer: Value = serde_json::from_str(delivery["response_body"].as_str().unwrap()).unwrap();
    let job_id = answer["job_uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string();
    let job = server
        .wait_job(&job_id, &["finished", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "finished", "{job:#}\n{}", server.logs());
    assert_eq!(job["trigger_output"]["object_nodeID"], node_id.as_str());
    let request_id = job["trigger_output"]["object_id"].to_string();
    // The steps in order (the query may be invoked once more to find that nothing is left).
    let order = step_order(&job);
    assert_eq!(
        order[..5],
        [
            "log-event",
            "find-request",
            "upload-report",
            "add-note",
            "log-note"
        ],
        "{job:#}"
    );
    assert!(order[5..].iter().all(|s| s == "find-request"), "{order:?}");

    // The step outputs: the queried record, the storage key, the note.
    let upload = steps(&job, "upload-report");
    assert_eq!(upload.len(), 1, "{job:#}");
    // The report is made from the queried record.
    let content = upload[0]["input"]["file_content"].to_string();
    assert!(
        content.contains("Printer on fire (status assigned)"),
        "{:#}",
        upload[0]
    );
    let upload_out = &upload[0]["outputs"][0];
    let file_name = format!("ferry-report-{request_id}.txt");
    assert_eq!(
        upload_out["file_name"],
        file_name.as_str(),
        "{upload_out:#}"
    );
    let key = upload_out["storage_key"]
        .as_str()
        .expect("storage_key")
        .to_string();
    let size = upload_out["size"].as_u64().expect("size");
    let note_step = steps(&job, "add-note");
    assert_eq!(note_step.len(), 1, "{job:#}");
    let log = steps(&job, "log-note")[0]["logs"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        log.starts_with("note ")
            && log.contains(&format!(
                "added to request {request_id} with {file_name} ({size} bytes)"
            )),
        "{log}"
    );

    // The note with its attachment exists in the emulator.
    let found = notes(&base, &node_id).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0]["text"],
        "Ferry checked this request; the report is attached."
    );
    let attachments = found[0]["textAttachments"]["nodes"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{found:#?}");
    assert_eq!(attachments[0]["filename"], file_name.as_str());
    assert_eq!(attachments[0]["size"], size);
    assert_eq!(attachments[0]["key"], key.as_str());

    // A re-delivery (the emulator re-sends it: new JWT and delivery id, the original as its
    // origin) is answered but does not run again: one job, one note.
    let resend = reqwest::Client::new()
        .post(format!(
            "{base}/_emulator/deliveries/{}/resend",
            delivery["id"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status().as_u16(), 202);
    let original = delivery["delivery"].as_str().unwrap().to_string();
    let again = wait_delivery(&base, server, "re-send", |d| {
        d["delivery_origin"] == original.as_str()
    })
    .await;
    assert_eq!(again["response_status"], 200, "{again:#}");
    let answer: Value = serde_json::from_str(again["response_body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["result"], "Discarded", "{answer}");
    assert_eq!(answer["job_uuid"], job_id.as_str(), "{answer}");
    assert_eq!(jobs(server).await.len(), 1);
    assert_eq!(notes(&base, &node_id).await.len(), 1);
}

/// `ferry xurrent …` over the example's outbound connection; returns the JSON it printed.
fn xurrent_cli(dir: &std::path::Path, base: &str, args: &[&str]) -> Value {
    let mut all = vec!["xurrent"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--solution",
        dir.to_str().unwrap(),
        "--connection",
        "xurrent",
        "--json",
    ]);
    let out = ferry(&all, &[("XURRENT_URL", base)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ferry {all:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The README's variant "A static public key instead of discovery": the example without
/// `register:`, the policy and the webhook created with `ferry xurrent …`, and the policy's
/// public key on the inbound connection. The same event then runs the same runbook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_with_a_static_public_key() {
    let emulator = start_emulator();
    let base = emulator.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("xurrent");
    copy_dir(&example(), &dir);

    // The policy, created through the example's outbound connection (prints the key once).
    let policy = xurrent_cli(
        &dir,
        &base,
        &["webhook-policies", "create", "--jwt-alg", "es256"],
    );
    let pem = policy["public_key_pem"].as_str().expect("public_key_pem");
    // Leave out `register:`; put the key on the inbound connection.
    let runbook = dir.join("runbooks/on_request.yaml");
    let text = std::fs::read_to_string(&runbook).unwrap();
    let register = "    register: { events: [request.create], policy: es256 }\n";
    assert!(text.contains(register), "{text}");
    std::fs::write(&runbook, text.replace(register, "    {}\n")).unwrap();
    let solution = dir.join("solution.yaml");
    let text = std::fs::read_to_string(&solution).unwrap();
    let anchor = "      allow_http_loopback: true\n      api:\n";
    assert!(text.contains(anchor), "{text}");
    let policy_yaml = format!(
        "      allow_http_loopback: true\n      policy:\n        account_url: {base}/accounts/wdc\n        algorithm: ES256\n        public_key_pem: {}\n      api:\n",
        json!(pem)
    );
    std::fs::write(&solution, text.replace(anchor, &policy_yaml)).unwrap();
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, Some(0), "{text}");

    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let server = Server::start_listening(
        &tmp.path().join("ferry-data"),
        &[&dir],
        &[("XURRENT_URL", &base)],
        &format!("127.0.0.1:{port}"),
        &["--public-url", &public],
    );
    let hook = xurrent_cli(
        &dir,
        &base,
        &[
            "webhooks",
            "create",
            "--event",
            "request.create",
            "--name",
            "Ferry example (static key)",
            "--uri",
            &format!("{public}/inbound/xurrent/on_request"),
            "--policy",
            &policy["id"].to_string(),
        ],
    );
    let hook_id = hook["id"].as_u64().expect("webhook id");
    let verify = wait_delivery(&base, &server, "webhook.verify", |d| {
        d["event"] == "webhook.verify" && d["webhook_id"] == hook_id
    })
    .await;
    assert_eq!(verify["response_status"], 200, "{verify:#}");
    // Nothing was registered by the server itself.
    let hooks = emu(&base, reqwest::Method::GET, "/v1/webhooks", None).await;
    assert_eq!(hooks.as_array().unwrap().len(), 1, "{hooks}");
    event_runs_the_runbook(&base, &server, hook_id, false).await;
}
