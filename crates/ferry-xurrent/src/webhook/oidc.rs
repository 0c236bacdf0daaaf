//! OpenID Connect key discovery for webhook JWTs (spec §3.5, "OIDC key resolver"), hardened
//! as spec §10 recommends:
//!
//! - discovery and JWKS only over `https` (or `http` on loopback when the connection allows
//!   it), from the issuer's own host, without redirects, at most 64 KiB, 2 s to connect and 5 s
//!   in all;
//! - keys are cached for [`KEY_TTL`] in memory and in the inbound connection's key/value store
//!   (shared by every worker), under `oidc_jwks/<sha256(normalised iss)>/<kid>`;
//! - an unknown `kid`, or a signature that fails with a cached key, fetches the keys again, but
//!   never more often than once per [`MIN_REFETCH`] per issuer (fetches are single-flight), so a
//!   flood of bad tokens cannot make Ferry hammer the issuer.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::policy::is_ec;
use super::verify::secure_scheme;
use ferry_engine::Kv;

/// How long a discovered key is trusted before it is fetched again.
pub const KEY_TTL: Duration = Duration::from_secs(3600);
/// The shortest interval between two fetches of one issuer's keys.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// At most this many key fetches per issuer host within [`MIN_REFETCH`] (issuers that differ
/// only in their path share the host's budget).
pub const HOST_BUDGET: usize = 10;
/// Largest discovery document or JWKS accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 65_536;
/// Time allowed to connect to the issuer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for one fetch in all.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no key could be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The token or the issuer's answer is not acceptable (a verification failure).
    #[error("{0}")]
    Invalid(String),
    /// The issuer could not be reached, or the key store failed (try again later).
    #[error("{0}")]
    Unavailable(String),
}

/// `scheme://` + lower-cased host + (`:port` unless default) + path without one trailing `/`;
/// the raw string when it does not parse.
pub fn normalised_issuer(iss: &str) -> String {
    let Ok(u) = Url::parse(iss) else {
        return iss.to_string();
    };
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = match (u.port(), u.port_or_known_default()) {
        (Some(p), _) => format!(":{p}"),
        _ => String::new(),
    };
    let path = u.path();
    let path = path.strip_suffix('/').unwrap_or(path);
    format!("{}://{host}{port}{path}", u.scheme())
}

/// The store key of a discovered key.
pub fn cache_key(iss: &str, kid: &str) -> String {
    let digest = hex::encode(Sha256::digest(normalised_issuer(iss).as_bytes()));
    format!("oidc_jwks/{digest}/{kid}")
}

/// Validate an issuer, discovery or JWKS URL.
pub fn check_url(url: &str, allow_http_loopback: bool) -> Result<Url, String> {
    let u = Url::parse(url).map_err(|_| format!("Invalid OIDC URL: {url}"))?;
    if !secure_scheme(&u, allow_http_loopback) {
        return Err(format!("OIDC URL must use https: {url}"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("OIDC URL must not contain userinfo: {url}"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("OIDC URL missing host: {url}"));
    }
    Ok(u)
}

/// The first JWK of a JWKS that matches the token: same `kid`, `kty` RSA or EC, `use`
/// exactly `sig`, and `alg` absent or equal to the token's.
pub fn select_jwk<'a>(jwks: &'a Value, kid: &str, alg: &str) -> Option<&'a Value> {
    jwks.get("keys")?.as_array()?.iter().find(|k| {
        k.get("kid").and_then(Value::as_str) == Some(kid)
            && matches!(k.get("kty").and_then(Value::as_str), Some("RSA" | "EC"))
            && k.get("use").and_then(Value::as_str) == Some("sig")
            && k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == alg)
    })
}

/// The verification key of a JWK for an algorithm.
pub fn jwk_key(jwk: &Value, alg: Algorithm) -> Result<DecodingKey, String> {
    let s = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("Invalid JWK: '{k}' missing"))
    };
    match s("kty")? {
        "EC" => {
            if !is_ec(alg) {
                return Err("Invalid JWK: an EC key for an RSA algorithm".into());
            }
            let crv = s("crv")?;
            let expected = if alg == Algorithm::ES256 {
                "P-256"
            } else {
                "P-384"
            };
            if crv != expected {
                return Err(format!("Invalid JWK: curve {crv} does not match {alg:?}"));
            }
            DecodingKey::from_ec_components(s("x")?, s("y")?)
                .map_err(|e| format!("Invalid JWK: {e}"))
        }
        "RSA" => {
            if is_ec(alg) {
                return Err("Invalid JWK: an RSA key for an EC algorithm".into());
            }
            DecodingKey::from_rsa_components(s("n")?, s("e")?)
                .map_err(|e| format!("Invalid JWK: {e}"))
        }
        other => Err(format!("Invalid JWK: key type {other}")),
    }
}

struct Cached {
    key: Arc<DecodingKey>,
    fetched: Instant,
}

/// Resolves and caches OpenID Connect keys (one per trigger type, shared by every event).
#[derive(Default)]
pub struct KeyResolver {
    keys: Mutex<HashMap<String, Cached>>,
    last_fetch: Mutex<HashMap<String, Instant>>,
    host_fetches: Mutex<HashMap<String, Vec<Instant>>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Number of HTTP fetches made (discovery and JWKS), for tests and metrics.
    pub fetches: std::sync::atomic::AtomicU64,
}

/// A resolved key and when it was fetched (to recognise a newer one after a refetch).
#[derive(Clone)]
pub struct Resolved {
    /// The key.
    pub key: Arc<DecodingKey>,
    /// When it was fetched.
    pub fetched: Instant,
}

impl KeyResolver {
    /// A resolver with empty caches.
    pub fn new() -> KeyResolver {
        KeyResolver::default()
    }

    fn client(&self) -> Result<reqwest::Client, OidcError> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(TOTAL_TIMEOUT)
                    .user_agent("Ferry (Xurrent webhook OIDC)")
                    .build()
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| OidcError::Unavailable(format!("OIDC HTTP client: {e}")))
    }

    fn memory(&self, key: &str) -> Option<Resolved> {
        let keys = self.keys.lock();
        let c = keys.get(key)?;
        (c.fetched.elapsed() < KEY_TTL).then(|| Resolved {
            key: c.key.clone(),
            fetched: c.fetched,
        })
    }

    /// The key for a token of issuer `iss` with header `kid` and algorithm `alg`.
    ///
    /// `stale` names a key that failed to verify the token's signature: it is not used again,
    /// and the keys are fetched once more (subject to [`MIN_REFETCH`]).
    pub async fn resolve(
        &self,
        iss: &str,
        kid: Option<&str>,
        alg: Algorithm,
        kv: Option<&Kv<'_>>,
        allow_http_loopback: bool,
        stale: Option<Instant>,
    ) -> Result<Resolved, OidcError> {
        let kid = kid.ok_or_else(|| {
            OidcError::Invalid("JWT has no kid header and no public key configured".into())
        })?;
        let key = cache_key(iss, kid);
        let fresh = |r: &Resolved| stale.is_none_or(|s| r.fetched > s);
        if let Some(r) = self.memory(&key).filter(fresh) {
            return Ok(r);
        }
        if stale.is_none() {
            if let Some(r) = self.stored_key(&key, alg, kv).await? {
                return Ok(r);
            }
        }
        check_url(iss, allow_http_loopback).map_err(OidcError::Invalid)?;
        // Single flight per issuer: whoever waited re-checks the cache first.
        let flight = self
            .flights
            .lock()
            .entry(normalised_issuer(iss))
            .or_default()
            .clone();
        let _guard = flight.lock().await;
        if let Some(r) = self.memory(&key).filter(fresh) {
            return Ok(r);
        }
        let issuer = normalised_issuer(iss);
        {
            let mut last = self.last_fetch.lock();
            if let Some(at) = last.get(&issuer) {
                if at.elapsed() < MIN_REFETCH {
                    return Err(OidcError::Invalid(if stale.is_some() {
                        format!("Signature verification failed (the keys of {issuer} were fetched {} s ago; not again before {} s)", at.elapsed().as_secs(), MIN_REFETCH.as_secs())
                    } else {
                        format!("Key '{kid}' not found in JWKS (the keys of {issuer} were fetched {} s ago; not again before {} s)", at.elapsed().as_secs(), MIN_REFETCH.as_secs())
                    }));
                }
            }
            let host = Url::parse(iss)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_default();
            let mut hosts = self.host_fetches.lock();
            if hosts.len() > 10_000 {
                hosts.retain(|_, v| v.iter().any(|t| t.elapsed() < MIN_REFETCH));
            }
            let recent = hosts.entry(host.clone()).or_default();
            recent.retain(|t| t.elapsed() < MIN_REFETCH);
            if recent.len() >= HOST_BUDGET {
                return Err(OidcError::Unavailable(format!(
                    "{} key fetches from {host} in the last {} s; not fetching again yet",
                    recent.len(),
                    MIN_REFETCH.as_secs()
                )));
            }
            recent.push(Instant::now());
            if last.len() > 10_000 {
                last.retain(|_, t| t.elapsed() < MIN_REFETCH);
                self.flights.lock().retain(|_, f| Arc::strong_count(f) > 1);
            }
            last.insert(issuer, Instant::now());
        }
        let jwk = self.discover(iss, kid, alg, allow_http_loopback).await?;
        let decoding = jwk_key(&jwk, alg).map_err(OidcError::Invalid)?;
        let fetched = Instant::now();
        if let Some(kv) = kv {
            let entry = json!({"jwk": jwk, "fetched_at": unix_now()});
            kv.put(&key, &entry, Some(KEY_TTL))
                .await
                .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        }
        let resolved = Resolved {
            key: Arc::new(decoding),
            fetched,
        };
        self.keys.lock().insert(
            key,
            Cached {
                key: resolved.key.clone(),
                fetched,
            },
        );
        Ok(resolved)
    }

    async fn stored_key(
        &self,
        key: &str,
        alg: Algorithm,
        kv: Option<&Kv<'_>>,
    ) -> Result<Option<Resolved>, OidcError> {
        let Some(kv) = kv else { return Ok(None) };
        let Some(entry) = kv
            .get(key)
            .await
            .map_err(|e| OidcError::Unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        let age = unix_now().saturating_sub(entry["fetched_at"].as_u64().unwrap_or(0));
        if age >= KEY_TTL.as_secs() {
            return Ok(None);
        }
        // An entry that no longer makes a key (e.g. written for another algorithm) is ignored
        // and fetched again.
        let Ok(decoding) = jwk_key(&entry["jwk"], alg) else {
            return Ok(None);
        };
        let fetched = Instant::now()
            .checked_sub(Duration::from_secs(age))
            .unwrap_or_else(Instant::now);
        let resolved = Resolved {
            key: Arc::new(decoding),
            fetched,
        };
        self.keys.lock().insert(
            key.to_string(),
            Cached {
                key: resolved.key.clone(),
                fetched,
            },
        );
        Ok(Some(resolved))
    }

    async fn discover(
        &self,
        iss: &str,
        kid: &str,
        alg: Algorithm,
        allow_http_loopback: bool,
    ) -> Result<Value, OidcError> {
        let issuer = check_url(iss, allow_http_loopback).map_err(OidcError::Invalid)?;
        let well_known = format!(
            "{}/.well-known/openid-configuration",
            iss.strip_suffix('/').unwrap_or(iss)
        );
        let doc = self
            .fetch_json(&well_known, "OIDC discovery failed")
            .await?;
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| OidcError::Invalid("OIDC discovery document missing jwks_uri".into()))?;
        let jwks_url = check_url(jwks_uri, allow_http_loopback).map_err(OidcError::Invalid)?;
        if jwks_url.host_str() != issuer.host_str()
            || jwks_url.port_or_known_default() != issuer.port_or_known_default()
        {
            return Err(OidcError::Invalid(format!(
                "JWKS URI host mismatch: {} != {}",
                jwks_url.host_str().unwrap_or_default(),
                issuer.host_str().unwrap_or_default()
            )));
        }
        let jwks = self.fetch_json(jwks_uri, "JWKS fetch failed").await?;
        let alg_name = format!("{alg:?}");
        select_jwk(&jwks, kid, &alg_name)
            .cloned()
            .ok_or_else(|| OidcError::Invalid(format!("Key '{kid}' not found in JWKS")))
    }

    async fn fetch_json(&self, url: &str, label: &str) -> Result<Value, OidcError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .client()?
            .get(url)
            .send()
            .await
            .map_err(|e| OidcError::Unavailable(format!("{label}: {url}: {e}")))?;
        if response.url().as_str() != url {
            return Err(OidcError::Invalid(format!(
                "OIDC fetch redirected ({url} -> {})",
                response.url()
            )));
        }
        let status = response.status().as_u16();
        if status != 200 {
            return Err(OidcError::Invalid(format!("{label}: {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(OidcError::Invalid("OIDC response too large".into()));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| OidcError::Unavailable(format!("{label}: {url}: {e}")))?;
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(OidcError::Invalid("OIDC response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|_| OidcError::Invalid(format!("{label}: response could not be parsed")))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_normalise_for_the_cache_key() {
        assert_eq!(
            normalised_issuer("https://WDC.test.host/webhook_policies/policy/"),
            "https://wdc.test.host/webhook_policies/policy"
        );
        assert_eq!(
            normalised_issuer("https://wdc.test.host:443/p"),
            "https://wdc.test.host/p"
        );
        assert_eq!(
            normalised_issuer("http://127.0.0.1:4780/a"),
            "http://127.0.0.1:4780/a"
        );
        // §9 G 66, 87: the digest of the canonical issuer.
        let digest = hex::encode(Sha256::digest(
            b"https://wdc.test.host/webhook_policies/policy",
        ));
        assert_eq!(
            cache_key(
                "https://wdc.test.host/webhook_policies/policy/",
                "test-kid-1"
            ),
            format!("oidc_jwks/{digest}/test-kid-1")
        );
    }

    #[test]
    fn oidc_urls_must_be_https_without_userinfo() {
        // §9 G 81, 82.
        assert!(check_url("https://wdc.test.host/p", false).is_ok());
        assert_eq!(
            check_url("http://wdc.test.host/policy", false).unwrap_err(),
            "OIDC URL must use https: http://wdc.test.host/policy"
        );
        assert_eq!(
            check_url("https://u:p@wdc.test.host/p", false).unwrap_err(),
            "OIDC URL must not contain userinfo: https://u:p@wdc.test.host/p"
        );
        assert_eq!(check_url("::", false).unwrap_err(), "Invalid OIDC URL: ::");
        assert!(check_url("http://127.0.0.1:1/p", false).is_err());
        assert!(check_url("http://127.0.0.1:1/p", true).is_ok());
        assert!(check_url("http://example.com/p", true).is_err());
    }

    #[test]
    fn jwk_selection_rules() {
        let ec = json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "test-kid-1", "use": "sig"});
        let jwks = json!({"keys": [ec.clone()]});
        assert_eq!(select_jwk(&jwks, "test-kid-1", "ES256"), Some(&ec));
        // §9 G 70.
        assert!(select_jwk(
            &json!({"keys": [{"kty": "EC", "kid": "other-kid", "use": "sig"}]}),
            "test-kid-1",
            "ES256"
        )
        .is_none());
        // §9 G 71.
        assert!(select_jwk(
            &json!({"keys": [{"kty": "oct", "kid": "test-kid-1", "use": "sig", "k": "aaaa"}]}),
            "test-kid-1",
            "ES256"
        )
        .is_none());
        // §9 G 72.
        assert!(select_jwk(
            &json!({"keys": [{"kty": "EC", "kid": "test-kid-1", "use": "enc"}]}),
            "test-kid-1",
            "ES256"
        )
        .is_none());
        assert!(select_jwk(
            &json!({"keys": [{"kty": "EC", "kid": "test-kid-1"}]}),
            "test-kid-1",
            "ES256"
        )
        .is_none());
        // §9 G 73.
        assert!(select_jwk(
            &json!({"keys": [{"kty": "EC", "kid": "test-kid-1", "use": "sig", "alg": "RS256"}]}),
            "test-kid-1",
            "ES256"
        )
        .is_none());
        assert!(select_jwk(&json!({}), "k", "ES256").is_none());
    }

    #[test]
    fn jwks_make_keys_of_the_right_family() {
        let key =
            ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256)
                .unwrap();
        let jwk = key.public_jwk.clone().unwrap();
        assert!(jwk_key(&jwk, Algorithm::ES256).is_ok());
        assert!(jwk_key(&jwk, Algorithm::ES384)
            .err()
            .unwrap()
            .contains("curve"));
        assert!(jwk_key(&jwk, Algorithm::RS256).is_err());
        assert!(
            jwk_key(&json!({"kty": "EC", "crv": "P-256"}), Algorithm::ES256)
                .err()
                .unwrap()
                .starts_with("Invalid JWK")
        );
    }
}
