//! The Xurrent schema is part of the binary: `ferry emulator` starts with no schema file on
//! disk, and `ferry xurrent schema --from-url …` prints the SDL of a live (here: emulated)
//! endpoint, with clear errors for answers it cannot use.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{json, Value};

fn xurrent_schema(url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "xurrent",
        "schema",
        "--from-url",
        url,
        "--token",
        "ferry-emulator-token",
        "--account",
        "wdc",
    ];
    args.extend_from_slice(extra);
    ferry(&args, &[])
}

#[tokio::test]
async fn emulator_starts_with_no_schema_file_on_disk() {
    let empty = tempfile::tempdir().unwrap();
    let emu = start_emulator_with(&["--no-rate-limits"], Some(empty.path()));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/graphql", emu.base))
        .bearer_auth("ferry-emulator-token")
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({"query": "mutation { requestCreate(input: {subject: \"From a fresh clone\"}) { request { id subject } errors { message } } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        created["data"]["requestCreate"]["request"]["subject"], "From a fresh clone",
        "{created}"
    );
    let listed: Value = client
        .post(format!("{}/graphql", emu.base))
        .bearer_auth("ferry-emulator-token")
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({"query": "{ requests(first: 5) { nodes { subject } } __type(name: \"WebhookEvent\") { kind } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"]["requests"]["nodes"][0]["subject"], "From a fresh clone",
        "{listed}"
    );
    assert_eq!(listed["data"]["__type"]["kind"], "ENUM", "{listed}");
}

#[test]
fn schema_from_the_emulator_has_the_embedded_types_and_wire_values() {
    let empty = tempfile::tempdir().unwrap();
    let emu = start_emulator_with(&["--no-rate-limits"], Some(empty.path()));
    let out = xurrent_schema(&format!("{}/graphql", emu.base), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let sdl = String::from_utf8(out.stdout).expect("utf-8 SDL");
    let printed = ferry_xurrent_schema::type_names(&sdl).expect("printed SDL parses");
    let embedded = ferry_xurrent_schema::type_names(ferry_xurrent_schema::SDL).unwrap();
    assert_eq!(embedded.len(), 1125);
    let missing: BTreeSet<_> = embedded.difference(&printed).collect();
    let extra: BTreeSet<_> = printed.difference(&embedded).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(
        ferry_xurrent_schema::wire_values(&sdl).unwrap(),
        ferry_xurrent_schema::wire_values(ferry_xurrent_schema::SDL).unwrap()
    );
    // The emulator serves the embedded SDL, so the round trip gives back the vendored file
    // byte for byte, less its leading comment lines.
    let vendored: String = ferry_xurrent_schema::SDL
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        sdl == vendored,
        "printed SDL differs from the vendored file"
    );
    assert!(stderr.contains("1125 types read from"), "{stderr}");

    // Without re-attaching, introspection alone carries no applied directive.
    let out = xurrent_schema(&format!("{}/graphql", emu.base), &["--no-wire-values"]);
    assert!(out.status.success());
    let sdl = String::from_utf8(out.stdout).unwrap();
    assert!(ferry_xurrent_schema::wire_values(&sdl).unwrap().is_empty());
}

#[test]
fn schema_command_rejects_a_wrong_token_with_the_status() {
    let empty = tempfile::tempdir().unwrap();
    let emu = start_emulator_with(&["--no-rate-limits"], Some(empty.path()));
    let out = ferry(
        &[
            "xurrent",
            "schema",
            "--from-url",
            &format!("{}/graphql", emu.base),
            "--token",
            "wrong",
            "--account",
            "wdc",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing printed on standard output");
    assert!(stderr.contains("answered HTTP 401"), "{stderr}");
}

/// A one-shot HTTP server on 127.0.0.1 answering every connection with `response`.
fn stub(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&response);
        }
    });
    format!("http://{addr}/graphql")
}

fn http_response(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn schema_command_explains_answers_it_cannot_use() {
    let html = stub(http_response("text/html", "<html>login</html>"));
    let out = xurrent_schema(&html, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("did not answer JSON"), "{stderr}");
    assert!(stderr.contains("<html>login</html>"), "{stderr}");

    let errors = stub(http_response(
        "application/json",
        r#"{"errors":[{"message":"Field '__schema' doesn't exist on type 'Query'"}]}"#,
    ));
    let out = xurrent_schema(&errors, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("GraphQL errors: Field '__schema' doesn't exist on type 'Query'"),
        "{stderr}"
    );

    let big = stub(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            3 * 1024 * 1024
        )
        .into_bytes(),
    );
    let out = xurrent_schema(&big, &["--max-size-mib", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("more than the limit"), "{stderr}");

    // A server that accepts but never answers: the timeout ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", silent.local_addr().unwrap());
    let out = xurrent_schema(&url, &["--timeout", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("did not answer within 1 s"), "{stderr}");
    drop(silent);

    let out = xurrent_schema("ftp://127.0.0.1/", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an http or https URL"));
}

/// A server whose stdout is closed before it prints its start-up lines keeps serving
/// (`println!` used to panic with "failed printing to stdout: Broken pipe").
#[tokio::test]
async fn emulator_keeps_serving_when_its_stdout_is_closed() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let empty = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["emulator", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(empty.path())
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emulator");
    // Nobody will ever read the banner.
    drop(child.stdout.take());
    let emu = Emulator {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..300 {
        let sent = client
            .post(format!("{}/graphql", emu.base))
            .bearer_auth("ferry-emulator-token")
            .header("X-Xurrent-Account", "wdc")
            .json(&json!({"query": "{ me { name } }"}))
            .send()
            .await;
        if let Ok(resp) = sent {
            answered = Some(resp.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answered, Some(reqwest::StatusCode::OK));
    let mut emu = emu;
    assert!(
        emu.child.try_wait().unwrap().is_none(),
        "the emulator exited after its stdout was closed"
    );
}
