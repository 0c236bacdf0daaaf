//! The outbound connection against an in-process emulator on a loopback port: PAT and OAuth
//! authentication (token cached, reused, refreshed after expiry, evicted and retried once on a
//! 401), the connection test, 429s as reschedules, the client-side limiter stepping in before
//! Xurrent throttles, and the Webhooks API client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ferry_core::secrets::Secrets;
use ferry_emulator::{Emulator, EmulatorConfig, TokenInfo};
use ferry_engine::action::{ConnectionRef, Services};
use ferry_engine::connector::TestStatus;
use ferry_engine::http::{HttpClient, HttpLimits};
use ferry_store::{SqliteStore, Store, StoreOptions};
use ferry_xurrent::connection::{test_connection, ConnectionConfig};
use ferry_xurrent::{PolicyInput, WebhookInput, WebhooksApi, XurrentClient, XurrentError};
use serde_json::{json, Value};

#[derive(Default)]
struct Counters {
    token_posts: AtomicUsize,
    throttled: AtomicUsize,
}

async fn count(State(c): State<Arc<Counters>>, req: Request, next: Next) -> Response {
    let token_post = req.method() == axum::http::Method::POST && req.uri().path() == "/token";
    let response = next.run(req).await;
    if token_post {
        c.token_posts.fetch_add(1, Ordering::SeqCst);
    }
    if response.status().as_u16() == 429 {
        c.throttled.fetch_add(1, Ordering::SeqCst);
    }
    response
}

struct Env {
    emu: Arc<Emulator>,
    base: String,
    counters: Arc<Counters>,
    services: Services,
    _tmp: tempfile::TempDir,
}

async fn env() -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(EmulatorConfig {
        listen: addr,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let counters = Arc::new(Counters::default());
    let app = ferry_emulator::router(emu.clone()).layer(axum::middleware::from_fn_with_state(
        counters.clone(),
        count,
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&tmp.path().join("ferry.db"), StoreOptions::default())
        .await
        .unwrap();
    let services = Services {
        http: HttpClient::new(HttpLimits::default()),
        secrets: Arc::new(Secrets::from_master_key(&[7u8; 32])),
        store: Arc::new(store) as Arc<dyn Store>,
    };
    Env {
        base: format!("http://{addr}"),
        emu,
        counters,
        services,
        _tmp: tmp,
    }
}

impl Env {
    /// A personal access token of the administrator with these scopes (each test its own, so
    /// that the per-token limits of the emulator and of Ferry do not mix).
    fn pat(&self, token: &str, scopes: &[&str]) -> String {
        let account = self.emu.account("wdc").unwrap();
        self.emu.tokens.insert(
            token.to_string(),
            TokenInfo {
                account: "wdc".into(),
                person_id: Some(account.admin_person_id),
                admin: true,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expires_at: None,
                client_id: None,
            },
        );
        token.to_string()
    }

    async fn oauth_app(&self) -> (String, String) {
        let app: Value = reqwest::Client::new()
            .post(format!("{}/_emulator/oauth_applications", self.base))
            .json(&json!({"account": "wdc", "scopes": ["webhook:CRUD", "cmdb"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            app["client_id"].as_str().unwrap().to_string(),
            app["client_secret"].as_str().unwrap().to_string(),
        )
    }

    fn environment(&self) -> Value {
        json!({
            "graphql_endpoint": format!("{}/graphql", self.base),
            "oauth2_endpoint": format!("{}/token", self.base),
            "rest_endpoint": format!("{}/v1", self.base),
        })
    }

    fn connection(&self, name: &str, credentials: Value) -> ConnectionRef {
        ConnectionRef {
            name: name.into(),
            connector: "xurrent".into(),
            config: json!({ "credentials": credentials, "environment": self.environment() }),
            namespace: format!("test/{name}"),
        }
    }

    async fn set(&self, what: &str, body: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/_emulator/{what}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT {what}: {}", r.status());
    }

    /// The OAuth token Ferry has cached for `conn` (read from the sealed connection store).
    async fn cached_token(&self, conn: &ConnectionRef) -> Option<String> {
        let config = ConnectionConfig::from_config(&conn.config).unwrap();
        let request = config.token_request(&self.services).unwrap().unwrap();
        self.services
            .kv_get(conn, &request.cache_key())
            .await
            .unwrap()
            .and_then(|v| v.as_str().map(str::to_string))
    }
}

const ME: &str = "query { me { id name } }";

#[tokio::test]
async fn a_personal_access_token_is_sent_with_the_account_and_no_token_request() {
    let env = env().await;
    let token = env.pat("pat-plain", &["cmdb"]);
    let conn = env.connection(
        "pat",
        json!({"account_id": "wdc", "personal_access_token": token}),
    );
    let client = XurrentClient::new(&env.services, &conn).unwrap();
    let r = client.graphql(ME, None).await.unwrap();
    assert_eq!(r.data["me"]["name"], "Emulator Admin");
    let meta = r.meta.to_json();
    assert!(
        meta["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{meta}"
    );
    assert_eq!(meta["ratelimit"]["limit"], "3600");
    assert_eq!(meta["costlimit"]["limit"], "5000");
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 0);

    // The account header is what the emulator checks the token against.
    let wrong = env.connection(
        "pat-wrong-account",
        json!({"account_id": "someone-else", "personal_access_token": token}),
    );
    let err = XurrentClient::new(&env.services, &wrong)
        .unwrap()
        .graphql(ME, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("HTTP error from Xurrent GraphQL API: 401"),
        "{err}"
    );
}

#[tokio::test]
async fn oauth_tokens_are_cached_reused_refreshed_and_evicted_on_a_401() {
    let env = env().await;
    let (id, secret) = env.oauth_app().await;
    let conn = env.connection(
        "oauth",
        json!({"account_id": "wdc", "client_id": id, "client_secret": secret}),
    );
    let client = XurrentClient::new(&env.services, &conn).unwrap();

    // Cached and reused: two calls, one token request.
    client.graphql(ME, None).await.unwrap();
    client.graphql(ME, None).await.unwrap();
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 1);
    let first = env.cached_token(&conn).await.expect("token cached");

    // Evicted and retried once on a 401: the emulator forgets the token.
    env.emu.tokens.revoke(&first);
    let r = client.graphql(ME, None).await.unwrap();
    assert_eq!(r.data["me"]["name"], "Emulator Admin");
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 2);
    let second = env.cached_token(&conn).await.expect("new token cached");
    assert_ne!(first, second);

    // Refreshed after expiry: tokens that live 7 s are cached for 2 s.
    env.set("settings", json!({"token_expires_in": 7})).await;
    env.emu.tokens.revoke(&second);
    client.graphql(ME, None).await.unwrap(); // 401 → new 7 s token
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 3);
    let short = env.cached_token(&conn).await.expect("short token cached");
    let mut waited = Duration::ZERO;
    while env.cached_token(&conn).await.is_some() {
        assert!(waited < Duration::from_secs(30), "the token never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    client.graphql(ME, None).await.unwrap();
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 4);
    assert_ne!(env.cached_token(&conn).await.unwrap(), short);

    // With expires_in ≤ 5 nothing is cached: every call asks for a token.
    env.set("settings", json!({"token_expires_in": 5})).await;
    let other = env.connection(
        "oauth-short",
        json!({"account_id": "wdc", "client_id": id, "client_secret": secret}),
    );
    let client = XurrentClient::new(&env.services, &other).unwrap();
    client.graphql(ME, None).await.unwrap();
    client.graphql(ME, None).await.unwrap();
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 6);
    assert_eq!(env.cached_token(&other).await, None);

    // A 401 that persists is a failure after exactly one retry.
    let wrong = env.connection(
        "oauth-wrong",
        json!({"account_id": "wdc", "client_id": id, "client_secret": "not-the-secret"}),
    );
    let err = XurrentClient::new(&env.services, &wrong)
        .unwrap()
        .graphql(ME, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Authentication to 127.0.0.1 failed: invalid_client"),
        "{err}"
    );
}

#[tokio::test]
async fn connection_test_results() {
    let env = env().await;
    let (id, secret) = env.oauth_app().await;
    let result = |conn: ConnectionRef| {
        let services = &env.services;
        async move { test_connection(services, &conn).await }
    };
    let r = result(env.connection(
        "t-oauth",
        json!({"account_id": "wdc", "client_id": id, "client_secret": secret}),
    ))
    .await;
    assert_eq!(r.status, TestStatus::Success, "{r:?}");
    assert_eq!(
        r.message,
        "Connection successful. Token scopes: webhook:CRUD, cmdb."
    );
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 1);

    let pat = env.pat("pat-scoped", &["cmdb"]);
    let r = result(env.connection(
        "t-pat",
        json!({"account_id": "wdc", "personal_access_token": pat}),
    ))
    .await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (
            TestStatus::Success,
            "Connection successful. Token scopes: cmdb."
        )
    );
    assert_eq!(env.counters.token_posts.load(Ordering::SeqCst), 1);

    let r = result(env.connection(
        "t-unscoped",
        json!({"account_id": "wdc", "personal_access_token": ferry_emulator::DEFAULT_TOKEN}),
    ))
    .await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (TestStatus::Failed, "Token is valid but has no scopes.")
    );
    let r = result(env.connection(
        "t-bad-pat",
        json!({"account_id": "wdc", "personal_access_token": "nope"}),
    ))
    .await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (
            TestStatus::Failed,
            "Xurrent rejected the credentials (HTTP 401)."
        )
    );
    let r = result(env.connection(
        "t-bad-secret",
        json!({"account_id": "wdc", "client_id": id, "client_secret": "nope"}),
    ))
    .await;
    assert_eq!(r.status, TestStatus::Failed);
    assert!(
        r.message
            .starts_with("Authentication to 127.0.0.1 failed: invalid_client"),
        "{}",
        r.message
    );
    let mut down = env.connection(
        "t-down",
        json!({"account_id": "wdc", "personal_access_token": pat}),
    );
    down.config["environment"]["oauth2_endpoint"] = json!("http://127.0.0.1:9/token");
    let r = result(down).await;
    assert_eq!(r.status, TestStatus::Error, "{r:?}");
    let invalid = ConnectionRef {
        config: json!({"credentials": {"account_id": "wdc"}}),
        ..env.connection("t-invalid", json!({}))
    };
    let r = result(invalid).await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (TestStatus::Error, "Connection configuration is invalid.")
    );
}

#[tokio::test]
async fn a_429_is_a_reschedule_after_retry_after() {
    let env = env().await;
    env.set(
        "rate_limits",
        json!({"enabled": true, "burst_requests": 1, "burst_window_secs": 30}),
    )
    .await;
    let token = env.pat("pat-burst", &[]);
    let conn = env.connection(
        "burst",
        json!({"account_id": "wdc", "personal_access_token": token}),
    );
    let client = XurrentClient::new(&env.services, &conn).unwrap();
    client.graphql(ME, None).await.unwrap();
    match client.graphql(ME, None).await {
        Err(XurrentError::Reschedule { after, message }) => {
            assert!(after >= Duration::from_secs(1), "{after:?}");
            assert!(after <= Duration::from_secs(30), "{after:?}");
            assert!(
                message.starts_with("Xurrent API rate limit hit (retry after: "),
                "{message}"
            );
            // As an action's signal: a reschedule, not a failure.
            let signal: ferry_engine::Signal = XurrentError::Reschedule { after, message }.into();
            assert!(matches!(signal, ferry_engine::Signal::Reschedule { .. }));
        }
        other => panic!("expected a reschedule, got {other:?}"),
    }
    assert_eq!(env.counters.throttled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_client_side_limiter_slows_down_before_xurrent_throttles() {
    let env = env().await;
    // 5 requests per hour: after a few, the budget left is below the reserve and the next
    // request would have to wait longer than a step may: the step is rescheduled by Ferry
    // itself, and the emulator never answers 429.
    env.set(
        "rate_limits",
        json!({"enabled": true, "requests_per_window": 5, "window_secs": 3600}),
    )
    .await;
    let token = env.pat("pat-hourly", &[]);
    let conn = env.connection(
        "hourly",
        json!({"account_id": "wdc", "personal_access_token": token}),
    );
    let client = XurrentClient::new(&env.services, &conn).unwrap();
    let mut sent = 0;
    let outcome = loop {
        match client.graphql(ME, None).await {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= 5, "the limiter never stepped in");
    };
    match outcome {
        XurrentError::Reschedule { after, message } => {
            assert!(after > Duration::from_secs(10), "{after:?}");
            assert!(message.contains("rate budget"), "{message}");
        }
        other => panic!("expected the limiter's reschedule, got {other:?}"),
    }
    assert!(sent >= 1, "{sent}");
    assert_eq!(env.counters.throttled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_webhooks_api_client_round_trips() {
    let env = env().await;
    let (id, secret) = env.oauth_app().await;
    let conn = env.connection(
        "api",
        json!({"account_id": "wdc", "client_id": id, "client_secret": secret}),
    );
    let api = WebhooksApi::new(&env.services, &conn).unwrap();
    let policy = api
        .create_policy(&PolicyInput {
            jwt_alg: Some("es256".into()),
            jwt_audience: Some("ferry".into()),
            ..PolicyInput::default()
        })
        .await
        .unwrap();
    assert!(policy["public_key_pem"]
        .as_str()
        .is_some_and(|p| p.contains("PUBLIC KEY")));
    let policy_id = policy["id"].to_string();
    let created = api
        .create_webhook(&WebhookInput {
            event: Some("request.create".into()),
            uri: Some("http://127.0.0.1:9/hook".into()),
            name: Some("Ferry test".into()),
            webhook_policy_id: Some(policy_id.clone()),
            ..WebhookInput::default()
        })
        .await
        .unwrap();
    let webhook_id = created["id"].to_string();
    let list = api
        .list_webhooks(ferry_xurrent::ListFilter::Enabled)
        .await
        .unwrap();
    let listed = list
        .iter()
        .find(|w| w["id"] == json!(webhook_id.parse::<u64>().unwrap()))
        .expect("listed");
    assert_eq!(listed["webhook_policy"]["id"].to_string(), policy_id);
    let updated = api
        .update_webhook(
            &webhook_id,
            &WebhookInput {
                disabled: Some(true),
                ..WebhookInput::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated["disabled"], true);
    assert!(api
        .list_webhooks(ferry_xurrent::ListFilter::Enabled)
        .await
        .unwrap()
        .iter()
        .all(|w| w["id"] != json!(webhook_id.parse::<u64>().unwrap())));
    api.test_webhook(&webhook_id).await.unwrap();
    api.delete_webhook(&webhook_id).await.unwrap();
    let gone = api.webhook(&webhook_id).await.unwrap_err();
    assert!(ferry_xurrent::webhooks_api::is_not_found(&gone), "{gone}");
    api.delete_policy(&policy_id).await.unwrap();
    assert!(api
        .list_policies(ferry_xurrent::ListFilter::All)
        .await
        .unwrap()
        .iter()
        .all(|p| p["id"] != json!(policy_id.parse::<u64>().unwrap())));
    // Invalid input names the field.
    let err = api
        .create_webhook(&WebhookInput {
            event: Some("no.such-event".into()),
            uri: Some("http://127.0.0.1:9/hook".into()),
            ..WebhookInput::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, XurrentError::Api { status: 422, message } if message.contains("Validation failed") && message.contains("event")),
        "{err}"
    );
}
