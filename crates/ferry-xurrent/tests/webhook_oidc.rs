//! OpenID Connect key discovery of the webhook trigger against a loopback issuer (an axum
//! server on 127.0.0.1 serving the discovery document and the JWKS as each test wants): the
//! error paths of spec §9 G 74–77 and 82, caching, and the refetch limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ferry_emulator::policy::{JwtAlg, PolicyKey};
use ferry_xurrent::webhook::oidc::{KeyResolver, OidcError};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

#[derive(Clone)]
struct Issuer {
    discovery: Arc<dyn Fn(&str) -> Response + Send + Sync>,
    jwks: Arc<dyn Fn() -> Response + Send + Sync>,
    hits: Arc<AtomicUsize>,
}

/// Serves `/p/.well-known/openid-configuration` and `/p/jwks`; returns the issuer URL and the
/// hit counter.
async fn issuer(
    discovery: impl Fn(&str) -> Response + Send + Sync + 'static,
    jwks: impl Fn() -> Response + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Issuer {
        discovery: Arc::new(discovery),
        jwks: Arc::new(jwks),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let hits = state.hits.clone();
    let iss = format!("{base}/p");
    let iss2 = iss.clone();
    let s1 = state.clone();
    let s2 = state.clone();
    let app = Router::new()
        .route(
            "/p/.well-known/openid-configuration",
            get(move || {
                let s = s1.clone();
                let iss = iss2.clone();
                async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    (s.discovery)(&iss)
                }
            }),
        )
        .route(
            "/p/jwks",
            get(move || {
                let s = s2.clone();
                async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    (s.jwks)()
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (iss, hits)
}

fn json_response(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn good_discovery(iss: &str) -> Response {
    json_response(json!({ "issuer": iss, "jwks_uri": format!("{iss}/jwks") }))
}

fn key() -> (PolicyKey, Value) {
    let k = PolicyKey::generate(JwtAlg::Es256).unwrap();
    let jwk = k.jwk("test-kid-1").unwrap();
    (k, jwk)
}

async fn resolve(resolver: &KeyResolver, iss: &str, kid: &str) -> Result<(), OidcError> {
    resolver
        .resolve(iss, Some(kid), Algorithm::ES256, None, true, None)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn keys_are_discovered_cached_and_not_refetched_within_the_minimum_interval() {
    let (_k, jwk) = key();
    let (iss, hits) = issuer(good_discovery, move || {
        json_response(json!({"keys": [jwk.clone()]}))
    })
    .await;
    let r = KeyResolver::new();
    resolve(&r, &iss, "test-kid-1").await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Cached: no request.
    resolve(&r, &iss, "test-kid-1").await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // An unknown kid right after a fetch is refused without asking the issuer again, however
    // often it comes.
    for _ in 0..20 {
        let e = resolve(&r, &iss, "unknown").await.unwrap_err();
        assert!(
            matches!(&e, OidcError::Invalid(m) if m.starts_with("Key 'unknown' not found in JWKS")),
            "{e}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Issuers that differ only in their path share the host's budget: after a few fetches the
    // host is left alone for a while.
    let before = r.fetches.load(Ordering::SeqCst);
    let mut unavailable = 0;
    for i in 0..30 {
        if let Err(OidcError::Unavailable(m)) = resolve(&r, &format!("{iss}/flood{i}"), "k").await {
            assert!(m.contains("not fetching again yet"), "{m}");
            unavailable += 1;
        }
    }
    let fetched = r.fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 10, "{fetched} fetches");
    assert!(unavailable >= 20, "{unavailable}");
    // Without http on loopback allowed, the issuer is refused before any request.
    let e = r
        .resolve(
            &format!("{iss}/x"),
            Some("k"),
            Algorithm::ES256,
            None,
            false,
            None,
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, OidcError::Invalid(m) if m.starts_with("OIDC URL must use https")),
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn discovery_and_jwks_failures() {
    // §9 G 74.
    let (iss, _) = issuer(
        |_| StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        || unreachable!(),
    )
    .await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid("OIDC discovery failed: 500".into()))
    );
    let (iss, _) = issuer(good_discovery, || {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
    .await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid("JWKS fetch failed: 500".into()))
    );
    // §9 G 75.
    let (iss, _) = issuer(|_| "{not json".into_response(), || unreachable!()).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid(
            "OIDC discovery failed: response could not be parsed".into()
        ))
    );
    let (iss, _) = issuer(good_discovery, || "{not json".into_response()).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid(
            "JWKS fetch failed: response could not be parsed".into()
        ))
    );
    // §9 G 76: a 65537-byte body (streamed, no Content-Length check possible up front).
    let (iss, _) = issuer(|_| "x".repeat(65_537).into_response(), || unreachable!()).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid("OIDC response too large".into()))
    );
    let (iss, _) = issuer(good_discovery, || " ".repeat(70_000).into_response()).await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid("OIDC response too large".into()))
    );
    // §9 G 77: redirects are not followed.
    let (iss, _) = issuer(
        |_| {
            (
                StatusCode::FOUND,
                [(header::LOCATION, "https://attacker.example/cfg")],
            )
                .into_response()
        },
        || unreachable!(),
    )
    .await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid("OIDC discovery failed: 302".into()))
    );
    // §9 G 82: a JWKS on another host is never fetched.
    let (iss, hits) = issuer(
        |_| json_response(json!({"jwks_uri": "https://attacker.example/keys"})),
        || unreachable!(),
    )
    .await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid(
            "JWKS URI host mismatch: attacker.example != 127.0.0.1".into()
        ))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // §9 G 70.
    let (_k, mut jwk) = key();
    jwk["kid"] = json!("other-kid");
    let (iss, _) = issuer(good_discovery, move || {
        json_response(json!({"keys": [jwk.clone()]}))
    })
    .await;
    assert_eq!(
        resolve(&KeyResolver::new(), &iss, "test-kid-1").await,
        Err(OidcError::Invalid(
            "Key 'test-kid-1' not found in JWKS".into()
        ))
    );
    // An issuer that does not answer is a transient failure, not a verification failure.
    let e = resolve(&KeyResolver::new(), "http://127.0.0.1:1/p", "k")
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Unavailable(_)), "{e}");
}
