//! The `xurrent.upload_attachment` action through the real binary (`ferry run`,
//! `ferry validate`) against the real `ferry emulator`: a file is uploaded and a mutation adds
//! a note with it to a request (checked by querying the emulator); the upload carries no Xurrent
//! credentials (the emulator's storage refuses uploads that do); the storage information is
//! cached (the emulator counts `attachmentStorage` resolutions); the size limit and the allowed
//! extensions refuse a file before anything is uploaded (the emulator counts upload requests);
//! the content type comes from the file name; provider `s3` answers are read for their `<Key>`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = ferry_emulator::DEFAULT_TOKEN;

fn upload_solution(root: &Path, base: &str, steps: &str) -> PathBuf {
    let yaml = format!(
        "name: xu\nconnections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: wdc\n        personal_access_token: {TOKEN}\n      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {base}/token\n        rest_endpoint: {base}/v1\n"
    );
    let runbook = format!(
        "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ {{ id: subject, type: string }}, {{ id: text, type: string }}, {{ id: name, type: string }} ]\nsteps:\n{steps}"
    );
    solution(root, "xu", &yaml, &[("r", &runbook)])
}

async fn gql(base: &str, query: &str, variables: Value) -> Value {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v.get("errors").is_none(), "{v}");
    v["data"].clone()
}

/// `GET /_emulator/attachments`: files and the counters.
async fn storage_state(base: &str) -> Value {
    reqwest::get(format!("{base}/_emulator/attachments"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn storage_settings(base: &str, patch: Value) {
    let r = reqwest::Client::new()
        .put(format!("{base}/_emulator/attachment_storage"))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn run(dir: PathBuf, event: Value) -> (i32, Value, String) {
    tokio::task::spawn_blocking(move || run_json(&dir, "r", &event))
        .await
        .unwrap()
}

const UPLOAD_THEN_NOTE: &str = r#"  - id: request
    action: xurrent.mutation
    connection: x
    input:
      mutation: requestCreate
      input: { subject: "{{ trigger.body.subject }}" }
  - id: upload
    action: xurrent.upload_attachment
    connection: x
    input:
      file_name: hello.txt
      file_content: "{{ trigger.body.text }}"
  - id: upload_bytes
    action: xurrent.upload_attachment
    connection: x
    input:
      file_name: pixel.png
      file_content_base64: "AAEC/w=="
  - id: note
    action: xurrent.mutation
    connection: x
    input:
      mutation: requestUpdate
      id: "{{ steps.request.request.id }}"
      note: See the files
      noteAttachments:
        - { key: "{{ steps.upload.storage_key }}" }
        - { key: "{{ steps.upload_bytes.storage_key }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_a_note_with_the_attachment_on_a_request() {
    let emu = start_emulator();
    let base = emu.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = upload_solution(tmp.path(), &base, UPLOAD_THEN_NOTE);
    let (code, job, err) = run(
        dir,
        json!({"subject": "Printer on fire", "text": "hello attachment ✓"}),
    )
    .await;
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "finished", "{job:#}");

    let up = &steps(&job, "upload")[0]["outputs"][0];
    let key = up["storage_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{up:#}"));
    assert_eq!(up["file_name"], "hello.txt");
    assert_eq!(up["size"], "hello attachment ✓".len());
    // No content type given: derived from the file name.
    assert_eq!(up["content_type"], "text/plain", "{up:#}");
    assert_eq!(up["provider"], "local");
    // The first upload asked Xurrent for the storage: the answer's request id.
    assert!(
        up["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{up:#}"
    );
    let bytes = &steps(&job, "upload_bytes")[0]["outputs"][0];
    assert_eq!(bytes["size"], 4);
    assert_eq!(bytes["content_type"], "image/png");
    // The second one used the cached storage information: no GraphQL request, no request id.
    assert!(bytes["request_id"].is_null(), "{bytes:#}");

    // The emulator saw one attachmentStorage query for two uploads (cached 60 s), and the
    // uploads carried no Xurrent credentials (its storage refuses those, see below).
    let state = storage_state(&base).await;
    assert_eq!(state["storage_queries"], 1, "{state:#}");
    assert_eq!(state["upload_requests"], 2, "{state:#}");
    let prefix = |k: &str| k.rsplit_once('/').map(|(p, _)| p.to_string());
    assert_eq!(
        prefix(key),
        prefix(bytes["storage_key"].as_str().unwrap()),
        "both uploads used the same storage policy"
    );

    // The note with both attachments is on the request.
    let request_id = steps(&job, "request")[0]["outputs"][0]["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = gql(
        &base,
        "query($id: ID!) { node(id: $id) { ... on Request { notes { nodes { text textAttachments { nodes { key filename size expiringUrl } } } } } } }",
        json!({"id": request_id}),
    )
    .await;
    let notes = d["node"]["notes"]["nodes"].as_array().unwrap();
    let note = notes
        .iter()
        .find(|n| n["text"] == "See the files")
        .unwrap_or_else(|| panic!("{d:#}"));
    let atts = note["textAttachments"]["nodes"].as_array().unwrap();
    assert_eq!(atts.len(), 2, "{note:#}");
    assert_eq!(atts[0]["key"], key);
    assert_eq!(atts[0]["filename"], "hello.txt");
    assert_eq!(atts[0]["size"], "hello attachment ✓".len());
    assert_eq!(atts[1]["filename"], "pixel.png");
    assert_eq!(atts[1]["size"], 4);
    // The storage kept the content types sent with the files.
    let files = storage_state(&base).await["files"].clone();
    let content_type = |k: &Value| {
        files
            .as_array()
            .unwrap()
            .iter()
            .find(|f| &f["key"] == k)
            .map(|f| f["content_type"].clone())
    };
    assert_eq!(content_type(&atts[0]["key"]), Some(json!("text/plain")));
    assert_eq!(content_type(&atts[1]["key"]), Some(json!("image/png")));
    let body = reqwest::get(atts[0]["expiringUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], "hello attachment ✓".as_bytes());
    let body = reqwest::get(atts[1]["expiringUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &[0u8, 1, 2, 255]);

    // The storage does refuse an upload with Xurrent credentials, so the uploads above
    // carried none.
    let storage = gql(
        &base,
        "{ attachmentStorage { uploadUri providerParameters } }",
        json!({}),
    )
    .await;
    let mut form = reqwest::multipart::Form::new().text("Content-Type", "text/plain");
    for (k, v) in storage["attachmentStorage"]["providerParameters"]
        .as_object()
        .unwrap()
    {
        form = form.text(k.clone(), v.as_str().unwrap_or_default().to_string());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
    );
    let refused = reqwest::Client::new()
        .post(storage["attachmentStorage"]["uploadUri"].as_str().unwrap())
        .bearer_auth(TOKEN)
        .header("x-xurrent-account", "wdc")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_and_extensions_refuse_the_file_before_uploading() {
    let emu = start_emulator();
    let base = emu.base.clone();
    storage_settings(
        &base,
        json!({"size_limit": 10, "allowed_extensions": ["pdf", "txt"]}),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let steps_yaml = "  - id: upload\n    action: xurrent.upload_attachment\n    connection: x\n    input:\n      file_name: \"{{ trigger.body.name }}\"\n      file_content: \"{{ trigger.body.text }}\"\n";
    let dir = upload_solution(tmp.path(), &base, steps_yaml);

    // 11 bytes against a limit of 10.
    let (code, job, err) = run(
        dir.clone(),
        json!({"name": "big.txt", "text": "12345678901"}),
    )
    .await;
    assert_ne!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert_eq!(
        error,
        "File 'big.txt' is 11 bytes, larger than the attachment storage's size limit of 10 bytes (sizeLimit); nothing was uploaded",
        "{job:#}"
    );

    // An extension the storage does not list.
    let (code, job, err) = run(dir.clone(), json!({"name": "tool.exe", "text": "MZ"})).await;
    assert_ne!(code, 0, "{err}\n{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert_eq!(
        error,
        "File 'tool.exe' has the extension 'exe', which the attachment storage does not accept (allowedExtensions: pdf, txt); nothing was uploaded",
        "{job:#}"
    );

    // Neither file reached the storage.
    let state = storage_state(&base).await;
    assert_eq!(state["upload_requests"], 0, "{state:#}");
    assert_eq!(state["files"], json!([]), "{state:#}");

    // Within the limits the same runbook uploads.
    let (code, job, err) = run(dir, json!({"name": "ok.TXT", "text": "0123456789"})).await;
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(storage_state(&base).await["upload_requests"], 1);
    let out = &steps(&job, "upload")[0]["outputs"][0];
    assert_eq!(out["size"], 10);
    assert_eq!(out["content_type"], "text/plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_answers_give_the_key_and_an_explicit_content_type_is_kept() {
    let emu = start_emulator();
    let base = emu.base.clone();
    storage_settings(&base, json!({"provider": "s3"})).await;
    let tmp = tempfile::tempdir().unwrap();
    let steps_yaml = "  - id: upload\n    action: xurrent.upload_attachment\n    connection: x\n    input:\n      file_name: report.pdf\n      file_content: binary-content-here\n      content_type: application/x-custom\n";
    let dir = upload_solution(tmp.path(), &base, steps_yaml);
    let (code, job, err) = run(dir, json!({})).await;
    assert_eq!(code, 0, "{err}\n{job:#}");
    let out = &steps(&job, "upload")[0]["outputs"][0];
    assert_eq!(out["provider"], "s3");
    assert_eq!(out["size"], 19);
    assert_eq!(out["content_type"], "application/x-custom");
    let key = out["storage_key"].as_str().unwrap();
    assert!(key.ends_with("/report.pdf"), "{key}");
    let files = storage_state(&base).await["files"].clone();
    assert_eq!(files[0]["key"], key, "{files:#}");
    assert_eq!(files[0]["content_type"], "application/x-custom");
}

/// Storage information from the cache whose policy the storage no longer accepts: the upload
/// is refused (403), the information fetched once more and the upload retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_with_cached_storage_info_fetches_it_again() {
    let emu = start_emulator();
    let base = emu.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = upload_solution(
        tmp.path(),
        &base,
        "  - id: first\n    action: xurrent.upload_attachment\n    connection: x\n    input: { file_name: a.txt, file_content: one }\n  - id: rotate\n    action: http.send_request\n    connection: emu\n    input: { method: POST, path: /_emulator/attachment_storage/rotate_key }\n  - id: second\n    action: xurrent.upload_attachment\n    connection: x\n    input: { file_name: b.txt, file_content: two }\n",
    );
    // The runbook also calls the emulator's control API over an `http` connection.
    let yaml = std::fs::read_to_string(dir.join("solution.yaml")).unwrap();
    std::fs::write(
        dir.join("solution.yaml"),
        format!("{yaml}  emu:\n    connector: http\n    direction: outbound\n    config: {{ base_url: \"{base}\" }}\n"),
    )
    .unwrap();
    let (code, job, err) = run(dir, json!({})).await;
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(
        steps(&job, "rotate")[0]["outputs"][0]["response"]["status"],
        204
    );
    let second = &steps(&job, "second")[0]["outputs"][0];
    assert!(
        second["storage_key"]
            .as_str()
            .is_some_and(|k| k.ends_with("/b.txt")),
        "{second:#}"
    );
    // Fetched again: the second output carries the new answer's request id.
    assert!(second["request_id"].as_str().is_some(), "{second:#}");
    let state = storage_state(&base).await;
    assert_eq!(state["storage_queries"], 2, "{state:#}");
    assert_eq!(state["upload_requests"], 3, "{state:#}");
    assert_eq!(state["files"].as_array().unwrap().len(), 2, "{state:#}");
}

#[test]
fn validate_wants_exactly_one_file_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = upload_solution(
        tmp.path(),
        "http://127.0.0.1:9",
        "  - id: upload\n    action: xurrent.upload_attachment\n    connection: x\n    input:\n      file_name: a.txt\n",
    );
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("r.yaml:"), "{text}");
    assert!(
        text.contains(
            "the file is missing: give `file_content` (text) or `file_content_base64` (Base64)"
        ),
        "{text}"
    );
    let good = upload_solution(
        &tmp.path().join("good"),
        "http://127.0.0.1:9",
        "  - id: upload\n    action: xurrent.upload_attachment\n    connection: x\n    input:\n      file_name: a.txt\n      file_content: hi\n",
    );
    let (code, text) = validate(&good, &[]);
    assert_eq!(code, Some(0), "{text}");
}
