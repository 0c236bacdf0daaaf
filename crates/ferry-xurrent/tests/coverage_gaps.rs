//! Spec §9 scenarios that no other test covered (docs/xurrent-scenario-coverage.md), against
//! servers on 127.0.0.1 that record what Ferry sends:
//!
//! - B12, B21–B23: the exact token request (body, `Accept`, `Content-Type`), the headers of
//!   the authenticated call, and token caching by `expires_in` (3600 → cached; 5 → not cached;
//!   absent → fetched every time);
//! - C33: a connection test whose introspection call gets no answer ends as "timed out";
//! - G66–G68: discovered keys are written to the inbound connection's store under
//!   `oidc_jwks/<sha256(issuer)>/<kid>`, a key in the store is used without any request, and
//!   another issuer's entry is left alone;
//! - G76: oversized discovery documents and JWKS, with and without `Content-Length`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_core::secrets::Secrets;
use ferry_emulator::policy::{JwtAlg, PolicyKey};
use ferry_engine::action::{ConnectionRef, Services};
use ferry_engine::connector::TestStatus;
use ferry_engine::http::{HttpClient, HttpLimits};
use ferry_engine::Kv;
use ferry_store::{SqliteStore, Store, StoreOptions};
use ferry_xurrent::connection::test_connection;
use ferry_xurrent::webhook::oidc::{cache_key, KeyResolver, OidcError};
use ferry_xurrent::XurrentClient;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// What the recording server saw.
#[derive(Default)]
struct Seen {
    /// Token requests: (headers, body).
    token: Mutex<Vec<(HeaderMap, String)>>,
    /// GraphQL requests: headers.
    graphql: Mutex<Vec<HeaderMap>>,
    /// Token answers still to give, in order (the last one repeats).
    answers: Mutex<Vec<Value>>,
}

async fn token(State(s): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    s.token.lock().push((headers, body));
    let mut answers = s.answers.lock();
    let answer = if answers.len() > 1 {
        answers.remove(0)
    } else {
        answers[0].clone()
    };
    axum::Json(answer).into_response()
}

async fn graphql(State(s): State<Arc<Seen>>, headers: HeaderMap) -> Response {
    s.graphql.lock().push(headers);
    axum::Json(json!({"data": {"me": {"id": "1"}}})).into_response()
}

/// A token endpoint and a GraphQL endpoint on 127.0.0.1; returns the base URL.
async fn recorder(seen: Arc<Seen>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/token", post(token))
        .route("/graphql", post(graphql))
        .with_state(seen);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn services(tmp: &tempfile::TempDir) -> Services {
    let store = SqliteStore::open(&tmp.path().join("ferry.db"), StoreOptions::default())
        .await
        .unwrap();
    Services {
        http: HttpClient::new(HttpLimits::default()),
        secrets: Arc::new(Secrets::from_master_key(&[7u8; 32])),
        store: Arc::new(store) as Arc<dyn Store>,
    }
}

/// The spec's "OAuth test config" (account `wdc`, client `abc`/`def`) with endpoints at `base`.
fn oauth_connection(name: &str, base: &str) -> ConnectionRef {
    ConnectionRef {
        name: name.into(),
        connector: "xurrent".into(),
        config: json!({
            "credentials": {"account_id": "wdc", "client_id": "abc", "client_secret": "def"},
            "environment": {
                "graphql_endpoint": format!("{base}/graphql"),
                "oauth2_endpoint": format!("{base}/token"),
            },
        }),
        namespace: format!("gaps/{name}"),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Two GraphQL calls over a fresh connection whose token endpoint gives `answers` in turn;
/// returns the number of token requests and the `Authorization` of each call.
async fn two_calls(services: &Services, name: &str, answers: Vec<Value>) -> (usize, Vec<String>) {
    let seen = Arc::new(Seen::default());
    *seen.answers.lock() = answers;
    let base = recorder(seen.clone()).await;
    let conn = oauth_connection(name, &base);
    let client = XurrentClient::new(services, &conn).unwrap();
    for _ in 0..2 {
        let r = client.graphql("query { me { id } }", None).await.unwrap();
        assert_eq!(r.data["me"]["id"], "1");
    }
    let auth = seen
        .graphql
        .lock()
        .iter()
        .map(|h| header(h, "authorization").to_string())
        .collect();
    let posts = seen.token.lock().len();
    (posts, auth)
}

#[tokio::test]
async fn b12_the_token_request_and_the_authenticated_call_are_exactly_as_specified() {
    let tmp = tempfile::tempdir().unwrap();
    let services = services(&tmp).await;
    let seen = Arc::new(Seen::default());
    *seen.answers.lock() = vec![json!({"access_token": "test-token", "token_type": "bearer"})];
    let base = recorder(seen.clone()).await;
    let conn = oauth_connection("b12", &base);
    let client = XurrentClient::new(&services, &conn).unwrap();
    client.graphql("query { me { id } }", None).await.unwrap();

    let tokens = seen.token.lock();
    assert_eq!(tokens.len(), 1, "exactly one token request");
    let (headers, body) = &tokens[0];
    assert_eq!(
        body,
        "client_id=abc&client_secret=def&grant_type=client_credentials"
    );
    assert_eq!(header(headers, "accept"), "application/json");
    assert_eq!(
        header(headers, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(header(headers, "user-agent"), "Xurrent iPaaS");
    let calls = seen.graphql.lock();
    assert_eq!(calls.len(), 1);
    assert_eq!(header(&calls[0], "x-xurrent-account"), "wdc");
    assert_eq!(header(&calls[0], "authorization"), "Bearer test-token");
}

#[tokio::test]
async fn b21_b23_tokens_are_cached_by_expires_in() {
    let tmp = tempfile::tempdir().unwrap();
    let services = services(&tmp).await;
    // B21: expires_in 3600 → one token request, both calls carry it.
    let (posts, auth) = two_calls(
        &services,
        "b21",
        vec![json!({"access_token": "cached", "token_type": "bearer", "expires_in": 3600})],
    )
    .await;
    assert_eq!(posts, 1);
    assert_eq!(auth, ["Bearer cached", "Bearer cached"]);
    // B22: a token that lives 5 s is not cached; the second call gets the next one.
    let (posts, auth) = two_calls(
        &services,
        "b22",
        vec![
            json!({"access_token": "1", "token_type": "bearer", "expires_in": 5}),
            json!({"access_token": "2", "token_type": "bearer", "expires_in": 3600}),
        ],
    )
    .await;
    assert_eq!(posts, 2);
    assert_eq!(auth, ["Bearer 1", "Bearer 2"]);
    // B23: without expires_in every call fetches a token.
    let (posts, auth) = two_calls(
        &services,
        "b23",
        vec![
            json!({"access_token": "1", "token_type": "bearer"}),
            json!({"access_token": "2", "token_type": "bearer"}),
        ],
    )
    .await;
    assert_eq!(posts, 2);
    assert_eq!(auth, ["Bearer 1", "Bearer 2"]);
}

#[tokio::test]
async fn c33_a_connection_test_without_an_answer_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let services = services(&tmp).await;
    // Accepts connections and reads, but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let conn = ConnectionRef {
        name: "c33".into(),
        connector: "xurrent".into(),
        config: json!({
            "credentials": {"account_id": "wdc", "personal_access_token": "my-pat-token"},
            "environment": {
                "graphql_endpoint": format!("{base}/graphql"),
                "oauth2_endpoint": format!("{base}/token"),
            },
        }),
        namespace: "gaps/c33".into(),
    };
    let started = Instant::now();
    let r = test_connection(&services, &conn).await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (TestStatus::Error, "The connection test timed out.")
    );
    // The engine's limit for a connection test (issue 8: "within 10 s").
    assert!(started.elapsed() < ferry_engine::connector::TEST_TIMEOUT);
}

/// An issuer on 127.0.0.1 serving `/p/.well-known/openid-configuration` and `/p/jwks`.
async fn issuer(
    discovery: impl Fn(&str) -> Response + Send + Sync + 'static,
    jwks: impl Fn() -> Response + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let iss = format!("http://{}/p", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let (h1, h2) = (hits.clone(), hits.clone());
    let iss2 = iss.clone();
    let discovery = Arc::new(discovery);
    let jwks = Arc::new(jwks);
    let app = Router::new()
        .route(
            "/p/.well-known/openid-configuration",
            get(move || {
                h1.fetch_add(1, Ordering::SeqCst);
                let r = discovery(&iss2);
                async move { r }
            }),
        )
        .route(
            "/p/jwks",
            get(move || {
                h2.fetch_add(1, Ordering::SeqCst);
                let r = jwks();
                async move { r }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (iss, hits)
}

fn good_discovery(iss: &str) -> Response {
    axum::Json(json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")})).into_response()
}

/// A body of `n` bytes sent in chunks, without `Content-Length`.
fn streamed(n: usize) -> Response {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..n.div_ceil(4096))
        .map(|i| Ok(bytes::Bytes::from(vec![b' '; 4096.min(n - i * 4096)])))
        .collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}

async fn resolve(
    r: &KeyResolver,
    iss: &str,
    kid: &str,
    kv: Option<&Kv<'_>>,
) -> Result<(), OidcError> {
    r.resolve(iss, Some(kid), Algorithm::ES256, kv, true, None)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn g66_g68_discovered_keys_live_in_the_connection_store() {
    let key = PolicyKey::generate(JwtAlg::Es256).unwrap();
    let jwk = key.jwk("test-kid-1").unwrap();
    let served = jwk.clone();
    let (iss, hits) = issuer(good_discovery, move || {
        axum::Json(json!({"keys": [served.clone()]})).into_response()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&tmp.path().join("ferry.db"), StoreOptions::default())
        .await
        .unwrap();
    let secrets = Secrets::from_master_key(&[9u8; 32]);
    let kv = Kv::new(&store, &secrets, "connection/s/xurrent_in".into());

    // G68: garbage under another issuer's digest.
    let other = cache_key(
        "https://other.test.host/webhook_policies/policy",
        "test-kid-1",
    );
    kv.put(&other, &json!("not a key"), None).await.unwrap();

    // G66: discovery writes the key under the issuer's digest (Ferry keeps the JWK and its
    // fetch time, not a PEM).
    resolve(&KeyResolver::new(), &iss, "test-kid-1", Some(&kv))
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let mine = cache_key(&iss, "test-kid-1");
    assert!(mine.starts_with("oidc_jwks/"), "{mine}");
    let entry = kv.get(&mine).await.unwrap().expect("key stored");
    assert_eq!(entry["jwk"]["kid"], "test-kid-1");
    assert_eq!(entry["jwk"]["x"], jwk["x"]);
    assert!(entry["fetched_at"].as_u64().is_some(), "{entry}");
    assert_eq!(kv.get(&other).await.unwrap(), Some(json!("not a key")));

    // G67: another resolver (a restart, or another worker) finds it in the store: no request.
    resolve(&KeyResolver::new(), &iss, "test-kid-1", Some(&kv))
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A trailing `/` on the issuer names the same entry (G87).
    resolve(
        &KeyResolver::new(),
        &format!("{iss}/"),
        "test-kid-1",
        Some(&kv),
    )
    .await
    .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn g76_oversized_documents_with_and_without_content_length() {
    let too_large = Err(OidcError::Invalid("OIDC response too large".into()));
    // With Content-Length 65537.
    let (iss, _) = issuer(
        |_| ([(header::CONTENT_LENGTH, "65537")], "x".repeat(65_537)).into_response(),
        || unreachable!(),
    )
    .await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "k", None).await,
        too_large
    );
    // 65537 bytes streamed, without Content-Length: discovery, then the JWKS.
    let (iss, _) = issuer(|_| streamed(65_537), || unreachable!()).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "k", None).await,
        too_large
    );
    let (iss, hits) = issuer(good_discovery, || streamed(65_537)).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "k", None).await,
        too_large
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Exactly the limit is fine (it is then not JSON, so it fails to parse instead).
    let (iss, _) = issuer(good_discovery, || streamed(65_536)).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "k", None).await,
        Err(OidcError::Invalid(
            "JWKS fetch failed: response could not be parsed".into()
        ))
    );
}

#[test]
fn a10_the_outbound_config_schema_shape() {
    let fields = ferry_xurrent::connection::outbound_fields();
    let ids = |f: &[ferry_core::schema::Field]| f.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    // `client_rate_limit` (Ferry's client-side limiter switch) follows the spec's two fields.
    assert_eq!(
        ids(&fields),
        ["credentials", "environment", "client_rate_limit"]
    );
    let (credentials, environment) = (&fields[0], &fields[1]);
    assert!(credentials.required);
    assert_eq!(
        ids(&credentials.fields),
        [
            "account_id",
            "client_id",
            "client_secret",
            "personal_access_token"
        ]
    );
    // The secrets are secret strings; the account id an optional plain string at the schema
    // level (`ferry validate` requires it, see A4).
    assert!(!credentials.fields[0].required);
    assert_eq!(
        credentials.fields[0].ty,
        ferry_core::schema::FieldType::String
    );
    for secret in [&credentials.fields[2], &credentials.fields[3]] {
        assert_eq!(secret.ty, ferry_core::schema::FieldType::SecretString);
    }
    assert!(!environment.required);
    assert_eq!(
        ids(&environment.fields),
        [
            "stage",
            "region",
            "oauth2_endpoint",
            "graphql_endpoint",
            "rest_endpoint"
        ]
    );
}
