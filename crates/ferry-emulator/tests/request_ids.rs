//! Every answer carries `X-Request-Id`: GraphQL answers in the `Root=1-…` form, REST answers a
//! UUID plus `X-Runtime`. Driven over HTTP with plain reqwest.

use std::collections::HashSet;

use ferry_emulator::{EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use regex::Regex;
use serde_json::json;

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(EmulatorConfig {
        listen: addr,
        rate_limits: RateLimits::disabled(),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::spawn(ferry_emulator::serve(emu, listener, std::future::pending()));
    format!("http://{addr}")
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn graphql_answers_carry_root_style_request_ids() {
    let base = start().await;
    let client = reqwest::Client::new();
    let root = Regex::new(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$").unwrap();
    let mut seen = HashSet::new();
    for (path, query) in [
        ("/graphql", "{ me { id } }"),
        ("/", "{ me { id } }"),
        ("/graphql", "{ nope }"),
    ] {
        let resp = client
            .post(format!("{base}{path}"))
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = header(&resp, "x-request-id").expect("x-request-id");
        assert!(root.is_match(&id), "{path} {query}: {id}");
        assert!(seen.insert(id), "request ids are unique");
        assert_eq!(
            header(&resp, "x-runtime"),
            None,
            "GraphQL answers have no X-Runtime"
        );
    }
    // Refused before reaching GraphQL (no token): still an id.
    let resp = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let id = header(&resp, "x-request-id").expect("x-request-id on 401");
    assert!(root.is_match(&id), "{id}");
}

#[tokio::test]
async fn rest_answers_carry_request_id_and_runtime() {
    let base = start().await;
    let client = reqwest::Client::new();
    let uuid = Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        .unwrap();
    let runtime = Regex::new(r"^[0-9]+\.[0-9]{6}$").unwrap();
    let listed = client
        .get(format!("{base}/v1/webhooks"))
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "wdc")
        .send()
        .await
        .unwrap();
    let unauthorized = client
        .get(format!("{base}/v1/webhooks"))
        .send()
        .await
        .unwrap();
    let missing = client
        .get(format!("{base}/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    let info = client
        .get(format!("{base}/_emulator/info"))
        .send()
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for (what, resp, status) in [
        ("list", &listed, 200),
        ("unauthorized", &unauthorized, 401),
        ("unknown path", &missing, 404),
        ("control", &info, 200),
    ] {
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let id = header(resp, "x-request-id").unwrap_or_else(|| panic!("{what}: x-request-id"));
        assert!(uuid.is_match(&id), "{what}: {id}");
        assert!(seen.insert(id), "request ids are unique");
        let rt = header(resp, "x-runtime").unwrap_or_else(|| panic!("{what}: x-runtime"));
        assert!(runtime.is_match(&rt), "{what}: {rt}");
    }
}
