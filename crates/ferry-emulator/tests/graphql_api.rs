//! GraphQL API tests: a real emulator on 127.0.0.1:0 driven with plain reqwest + JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_emulator::{Emulator, EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use serde_json::{json, Value};

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/xurrent/schema.graphql")
}

struct Server {
    emu: Arc<Emulator>,
    url: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(limits: RateLimits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let config = EmulatorConfig {
        listen: addr,
        schema_path: schema_path(),
        rate_limits: limits,
        ..Default::default()
    };
    let emu = ferry_emulator::build(config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let e = emu.clone();
    tokio::spawn(async move {
        ferry_emulator::serve(e, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server {
        emu,
        url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _stop: tx,
    }
}

impl Server {
    async fn post(&self, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/graphql", self.url))
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        let resp = self.post(json!({ "query": query, "variables": variables })).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Query that must succeed; returns `data`.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let v = self.gql(query, variables).await;
        assert!(v.get("errors").is_none(), "unexpected errors: {v}");
        v["data"].clone()
    }
}

#[tokio::test]
async fn smoke() {
    let s = start(RateLimits::disabled()).await;
    let d = s.data("{ me { id name } account { id name } requests(first: 5) { totalCount nodes { id } } }", json!({})).await;
    println!("{d}");
    assert_eq!(d["me"]["name"], "Emulator Admin");
    assert_eq!(d["account"]["id"], "wdc");
    let _ = &s.emu;
}
