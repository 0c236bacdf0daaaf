//! The pure steps of webhook JWT verification (spec §3.4–§3.5), in their order: size limits,
//! decoding without verification, the algorithm allow-list, the issuer rule, the timestamp
//! pre-checks, the signature and claims, and the `iat`/`jti` post-checks. No I/O here: the key
//! lookup (static PEM or OpenID Connect, [`super::oidc`]) and the `jti` replay window (the
//! shared key/value store) are done by the trigger between these steps.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use url::Url;

use super::policy::{algorithm, Policy};

/// Largest webhook body accepted, in bytes (256 KiB).
pub const MAX_BODY_BYTES: usize = 262_144;
/// Largest JWT accepted, in bytes (8 KiB).
pub const MAX_JWT_BYTES: usize = 8192;
/// Allowed clock drift for `iat`, `exp` and `nbf`, in seconds.
pub const DRIFT_SECONDS: i64 = 60;
/// Longest `jti` accepted.
pub const MAX_JTI_CHARS: usize = 256;
/// How long a `jti` is remembered (replay window), in seconds.
pub const JTI_WINDOW_SECONDS: u64 = 120;

/// The answer every JWT verification failure gets (the cause goes to the log).
pub const VERIFICATION_FAILED: &str = "Webhook JWT verification failed";

/// A request that is not accepted: the HTTP status and message answered, and the detail
/// logged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({detail})")]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// The answer's message (`{"error": message}`).
    pub message: String,
    /// What the log says.
    pub detail: String,
}

impl Rejection {
    /// A 400 rejection whose log detail is the message itself.
    pub fn plain(message: impl Into<String>) -> Rejection {
        let message = message.into();
        Rejection {
            status: 400,
            detail: message.clone(),
            message,
        }
    }

    /// A 400 rejection with a separate log detail.
    pub fn with_detail(message: impl Into<String>, detail: impl Into<String>) -> Rejection {
        Rejection {
            status: 400,
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// `Webhook JWT verification failed`, logged as `Webhook JWT verification failed: <detail>`.
    pub fn jwt(detail: impl Into<String>) -> Rejection {
        Rejection::with_detail(
            VERIFICATION_FAILED,
            format!("{VERIFICATION_FAILED}: {}", detail.into()),
        )
    }
}

/// Step 3 of §3.4: the body size limit.
pub fn check_body_size(body: &[u8]) -> Result<(), Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::with_detail(
            "Webhook body too large",
            format!("Webhook body too large: {} > {MAX_BODY_BYTES}", body.len()),
        ));
    }
    Ok(())
}

/// Step 1 of §3.5: the JWT size limit.
pub fn check_jwt_size(jwt: &str) -> Result<(), Rejection> {
    if jwt.len() > MAX_JWT_BYTES {
        return Err(Rejection::with_detail(
            "Webhook JWT is too large",
            format!("Webhook JWT too large: {} > {MAX_JWT_BYTES}", jwt.len()),
        ));
    }
    Ok(())
}

/// How the JWT `iss` is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerRule {
    /// `iss` must equal this (the policy's `account_url`).
    Exact(String),
    /// `iss` must fall under this account URL (scheme, host, port and a path prefix).
    Prefix(String),
}

impl IssuerRule {
    /// The rule of a policy and the connection's account URL; `None` when neither is set
    /// (`Webhook configuration error`).
    pub fn of(policy: &Policy, account_url: Option<&str>) -> Option<IssuerRule> {
        match (&policy.account_url, account_url) {
            (Some(exact), _) => Some(IssuerRule::Exact(exact.clone())),
            (None, Some(prefix)) => Some(IssuerRule::Prefix(prefix.to_string())),
            (None, None) => None,
        }
    }
}

/// Whether a URL's host is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a URL uses an acceptable scheme: `https`, or `http` on a loopback host when
/// `allow_http_loopback` is set.
pub fn secure_scheme(url: &Url, allow_http_loopback: bool) -> bool {
    url.scheme() == "https" || (allow_http_loopback && url.scheme() == "http" && is_loopback(url))
}

/// Step 2c: the issuer check, before any key lookup. Prefix mode requires the same scheme
/// (`https`, or `http` on loopback when allowed), no userinfo, the same host and port, and the
/// account URL's path as a prefix ending at a `/` boundary.
pub fn check_issuer(rule: &IssuerRule, iss: &str, allow_http_loopback: bool) -> Result<(), String> {
    match rule {
        IssuerRule::Exact(expected) => {
            if iss == expected {
                Ok(())
            } else {
                Err(format!(
                    "Unable to decode JWT: Invalid issuer. Expected [\"{expected}\"], received {iss}"
                ))
            }
        }
        IssuerRule::Prefix(prefix) => {
            let p = Url::parse(prefix)
                .map_err(|_| format!("Invalid issuer: cannot parse '{prefix}'"))?;
            let i = Url::parse(iss).map_err(|_| format!("Invalid issuer: cannot parse '{iss}'"))?;
            let prefix_path = p.path().trim_end_matches('/');
            let path_ok = i.path() == prefix_path
                || i.path().starts_with(&format!("{prefix_path}/"))
                || (prefix_path.is_empty() && i.path() == "/");
            let ok = secure_scheme(&p, allow_http_loopback)
                && i.scheme() == p.scheme()
                && i.username().is_empty()
                && i.password().is_none()
                && p.username().is_empty()
                && i.host_str() == p.host_str()
                && i.port_or_known_default() == p.port_or_known_default()
                && path_ok;
            if ok {
                Ok(())
            } else {
                Err(format!("Invalid issuer '{iss}'"))
            }
        }
    }
}

/// A JWT decoded without verification (step 2a).
#[derive(Clone, Debug)]
pub struct Unverified<'a> {
    /// The header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `<header>.<payload>`, what the signature covers.
    pub signing_input: &'a str,
    /// The signature part (base64url).
    pub signature: &'a str,
}

fn decode_part(part: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| format!("Unable to decode JWT: Invalid segment encoding: {e}"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("Unable to decode JWT: Invalid segment: not a JSON object".into()),
        Err(e) => Err(format!(
            "Unable to decode JWT: Invalid segment encoding: {e}"
        )),
    }
}

impl<'a> Unverified<'a> {
    /// Step 2a: split and decode the header and the claims.
    pub fn decode(token: &'a str) -> Result<Unverified<'a>, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("Unable to decode JWT: Not enough or too many segments".into());
        };
        let header = decode_part(h)?;
        let claims = decode_part(p)?;
        Ok(Unverified {
            header,
            claims,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature: s,
        })
    }

    /// A header value as text.
    pub fn header_str(&self, key: &str) -> Option<&str> {
        self.header.get(key).and_then(Value::as_str)
    }

    /// The `iss` claim (empty when absent).
    pub fn iss(&self) -> &str {
        self.claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The `kid` header, when not blank.
    pub fn kid(&self) -> Option<&str> {
        self.header_str("kid").filter(|k| !k.trim().is_empty())
    }

    fn number(&self, claim: &str) -> Option<i64> {
        match self.claims.get(claim)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Step 2b: the effective algorithm: the policy's, else the header's. Either way the header's
/// `alg` must be on the allow-list (`none` and `HS*` never are) and equal the policy's.
pub fn effective_algorithm(policy: &Policy, jwt: &Unverified<'_>) -> Result<Algorithm, String> {
    let header_alg = jwt.header_str("alg").unwrap_or_default();
    let Some(alg) = algorithm(header_alg) else {
        return Err(format!("Unsupported JWT algorithm '{header_alg}'"));
    };
    if let Some(configured) = &policy.algorithm {
        if !configured.eq_ignore_ascii_case(header_alg) {
            return Err(format!(
                "Expected a different algorithm: the policy says {configured}, the token {header_alg}"
            ));
        }
    }
    Ok(alg)
}

/// Step 2d: the timestamp pre-checks (60 s drift), before any key lookup.
pub fn check_times(jwt: &Unverified<'_>, now: i64) -> Result<(), String> {
    if jwt
        .number("exp")
        .is_some_and(|exp| exp < now - DRIFT_SECONDS)
    {
        return Err("JWT has expired".into());
    }
    if jwt
        .number("nbf")
        .is_some_and(|nbf| nbf > now + DRIFT_SECONDS)
    {
        return Err("JWT not yet valid".into());
    }
    if jwt
        .number("iat")
        .is_some_and(|iat| iat > now + DRIFT_SECONDS)
    {
        return Err(format!("Issued At claim too far from current time {now}"));
    }
    Ok(())
}

/// Step 2f: the signature, then the audience. (`exp`/`nbf` were checked in step 2d with the
/// same 60 s drift as `iat`; the exact issuer in step 2c.)
pub fn check_signature(
    jwt: &Unverified<'_>,
    alg: Algorithm,
    key: &DecodingKey,
) -> Result<(), String> {
    match jsonwebtoken::crypto::verify(jwt.signature, jwt.signing_input.as_bytes(), key, alg) {
        Ok(true) => Ok(()),
        Ok(false) => Err("Signature verification failed".into()),
        Err(e) => Err(format!("Signature verification failed: {e}")),
    }
}

/// Step 2f (claims): when the policy has an audience, `aud` (a string or a list) must
/// contain it.
pub fn check_audience(jwt: &Unverified<'_>, audience: Option<&str>) -> Result<(), String> {
    let Some(expected) = audience else {
        return Ok(());
    };
    let ok = match jwt.claims.get("aud") {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Invalid audience. Expected {expected}"))
    }
}

/// Step 2g: `|iat − now| ≤ 60 s`, and the `jti` length. Returns the `jti` for the replay
/// window, when there is one.
pub fn post_checks(jwt: &Unverified<'_>, now: i64) -> Result<Option<String>, String> {
    if let Some(iat) = jwt.number("iat") {
        if (iat - now).abs() > DRIFT_SECONDS {
            return Err(format!("Issued At claim too far from current time {now}"));
        }
    }
    match jwt.claims.get("jti") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let jti = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if jti.chars().count() > MAX_JTI_CHARS {
                return Err("JWT ID claim too long".into());
            }
            Ok(Some(jti))
        }
    }
}

/// The key of a `jti` in the replay window.
pub fn jti_key(jti: &str) -> String {
    format!("jwt/jti/{jti}")
}

/// The message replay gives (the second sighting of a `jti` within the window).
pub const JTI_REPLAYED: &str = "JWT ID claim invalid";

/// Step 3: the webhook is the verified payload's `data` object.
pub fn webhook_of(jwt: Unverified<'_>) -> Result<Value, String> {
    match jwt.claims.get("data") {
        Some(Value::Object(_)) => {
            let mut claims = jwt.claims;
            Ok(claims.remove("data").unwrap_or(Value::Null))
        }
        _ => Err("the verified JWT has no 'data' object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_emulator::policy::{JwtAlg, PolicyKey};
    use serde_json::json;

    const NOW: i64 = 1_780_000_000;

    fn key() -> PolicyKey {
        PolicyKey::generate(JwtAlg::Es256).unwrap()
    }

    fn token(key: &PolicyKey, claims: Value) -> String {
        key.sign(None, &claims).unwrap()
    }

    fn std_claims() -> Value {
        json!({"iss": "https://wdc.test.host", "sub": "abc", "iat": NOW, "nbf": NOW,
               "jti": "a".repeat(64), "data": {"event": "problem.update"}})
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn handmade(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn body_and_token_size_limits() {
        // §9 G 92.
        assert!(check_body_size(&vec![b'x'; MAX_BODY_BYTES]).is_ok());
        let e = check_body_size(&vec![b'x'; 262_145 + 10]).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "Webhook body too large")
        );
        assert_eq!(e.detail, "Webhook body too large: 262155 > 262144");
        assert!(check_jwt_size(&"x".repeat(8192)).is_ok());
        let e = check_jwt_size(&"x".repeat(8193)).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "Webhook JWT is too large")
        );
        assert_eq!(e.detail, "Webhook JWT too large: 8193 > 8192");
    }

    #[test]
    fn only_rsa_and_ec_algorithms_are_accepted() {
        let none = handmade(json!({"alg": "none", "typ": "JWT"}), std_claims());
        let jwt = Unverified::decode(&none).unwrap();
        assert_eq!(
            effective_algorithm(&Policy::default(), &jwt).unwrap_err(),
            "Unsupported JWT algorithm 'none'"
        );
        // §9 G 85.
        let hs = handmade(json!({"alg": "HS256", "typ": "JWT"}), std_claims());
        let jwt = Unverified::decode(&hs).unwrap();
        assert_eq!(
            effective_algorithm(&Policy::default(), &jwt).unwrap_err(),
            "Unsupported JWT algorithm 'HS256'"
        );
        // A policy algorithm does not let another header algorithm through.
        let policy = Policy {
            algorithm: Some("ES256".into()),
            ..Policy::default()
        };
        assert!(effective_algorithm(&policy, &jwt).is_err());
        // §9 G 84.
        let k = key();
        let t = token(&k, std_claims());
        let jwt = Unverified::decode(&t).unwrap();
        assert_eq!(
            effective_algorithm(&Policy::default(), &jwt),
            Ok(Algorithm::ES256)
        );
        let rs = handmade(json!({"alg": "RS384"}), std_claims());
        assert_eq!(
            effective_algorithm(&Policy::default(), &Unverified::decode(&rs).unwrap()),
            Ok(Algorithm::RS384)
        );
    }

    #[test]
    fn malformed_tokens_do_not_decode() {
        assert_eq!(
            Unverified::decode("abc").unwrap_err(),
            "Unable to decode JWT: Not enough or too many segments"
        );
        assert!(Unverified::decode("a.b.c.d").is_err());
        assert!(Unverified::decode("!!.??.x")
            .unwrap_err()
            .starts_with("Unable to decode JWT"));
    }

    #[test]
    fn exact_issuer_rule() {
        // §9 F 56, G 83.
        let rule = IssuerRule::Exact("https://wdc.test.host".into());
        assert!(check_issuer(&rule, "https://wdc.test.host", false).is_ok());
        assert_eq!(
            check_issuer(&rule, "https://another_account.test.host", false).unwrap_err(),
            "Unable to decode JWT: Invalid issuer. Expected [\"https://wdc.test.host\"], received https://another_account.test.host"
        );
        let rule = IssuerRule::Exact("https://wdc.test.host/webhook_policies/policy".into());
        assert!(check_issuer(
            &rule,
            "https://wdc.test.host/webhook_policies/policy/other",
            false
        )
        .is_err());
    }

    #[test]
    fn prefix_issuer_rule_rejects_lookalikes() {
        // §9 G 78–80, 88–90.
        let rule = IssuerRule::Prefix("https://wdc.test.host".into());
        assert!(check_issuer(&rule, "https://wdc.test.host/webhook_policies/p", false).is_ok());
        assert!(check_issuer(&rule, "https://wdc.test.host", false).is_ok());
        for bad in [
            "https://wdc.test.host@evil.com/policy",
            "https://wdc.test.host.evil.com/policy",
            "http://wdc.test.host/policy",
            "https://wdc.test.host:8443/policy",
            "https://other.test.host/policy",
        ] {
            assert_eq!(
                check_issuer(&rule, bad, false).unwrap_err(),
                format!("Invalid issuer '{bad}'"),
                "{bad}"
            );
        }
        // A path prefix ends at a `/` boundary (spec §10.22).
        let rule = IssuerRule::Prefix("https://wdc.test.host/webhook_policies".into());
        assert!(check_issuer(&rule, "https://wdc.test.host/webhook_policiesX", false).is_err());
        assert!(check_issuer(&rule, "https://wdc.test.host/webhook_policies/x", false).is_ok());
        assert_eq!(
            check_issuer(&rule, "not a url", false).unwrap_err(),
            "Invalid issuer: cannot parse 'not a url'"
        );
    }

    #[test]
    fn http_issuers_only_on_loopback_and_only_when_allowed() {
        let rule = IssuerRule::Prefix("http://127.0.0.1:4780/accounts/wdc".into());
        let iss = "http://127.0.0.1:4780/accounts/wdc/webhook_policies/abc";
        assert!(check_issuer(&rule, iss, false).is_err());
        assert!(check_issuer(&rule, iss, true).is_ok());
        let remote = IssuerRule::Prefix("http://wdc.test.host".into());
        assert!(check_issuer(&remote, "http://wdc.test.host/p", true).is_err());
    }

    #[test]
    fn timestamp_pre_checks() {
        let k = key();
        let check = |claims: Value| {
            let t = token(&k, claims);
            check_times(&Unverified::decode(&t).unwrap(), NOW)
        };
        assert!(check(std_claims()).is_ok());
        // §9 G 86.
        assert_eq!(
            check(with(std_claims(), "exp", json!(NOW - 3600))).unwrap_err(),
            "JWT has expired"
        );
        assert!(check(with(std_claims(), "exp", json!(NOW - 59))).is_ok());
        // §9 F 64.
        assert_eq!(
            check(with(std_claims(), "nbf", json!(NOW + 61))).unwrap_err(),
            "JWT not yet valid"
        );
        assert_eq!(
            check(with(std_claims(), "iat", json!(NOW + 3600))).unwrap_err(),
            format!("Issued At claim too far from current time {NOW}")
        );
    }

    #[test]
    fn iat_window_and_jti_length() {
        let k = key();
        let post = |claims: Value| {
            let t = token(&k, claims);
            post_checks(&Unverified::decode(&t).unwrap(), NOW)
        };
        assert_eq!(post(std_claims()), Ok(Some("a".repeat(64))));
        // §9 F 61.
        for iat in [NOW - 120, NOW + 120] {
            assert_eq!(
                post(with(std_claims(), "iat", json!(iat))).unwrap_err(),
                format!("Issued At claim too far from current time {NOW}")
            );
        }
        // §9 F 64: iat = nbf = now − 30 s is fine.
        let c = with(
            with(std_claims(), "iat", json!(NOW - 30)),
            "nbf",
            json!(NOW - 30),
        );
        assert!(post(c.clone()).is_ok());
        let t = token(&k, c);
        assert!(check_times(&Unverified::decode(&t).unwrap(), NOW).is_ok());
        // §9 F 63.
        assert_eq!(
            post(with(std_claims(), "jti", json!("j".repeat(257)))).unwrap_err(),
            "JWT ID claim too long"
        );
        assert_eq!(jti_key("abc"), "jwt/jti/abc");
    }

    #[test]
    fn signature_and_audience() {
        let k = key();
        let pem = k.public_key_pem.clone().unwrap();
        let dk = DecodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let t = token(&k, with(std_claims(), "aud", json!("foo")));
        let jwt = Unverified::decode(&t).unwrap();
        assert!(check_signature(&jwt, Algorithm::ES256, &dk).is_ok());
        // §9 F 60.
        assert!(check_audience(&jwt, Some("foo")).is_ok());
        assert!(check_audience(&jwt, None).is_ok());
        let t2 = token(&k, with(std_claims(), "aud", json!("foo2")));
        assert!(check_audience(&Unverified::decode(&t2).unwrap(), Some("foo")).is_err());
        let t3 = token(&k, with(std_claims(), "aud", json!(["bar", "foo"])));
        assert!(check_audience(&Unverified::decode(&t3).unwrap(), Some("foo")).is_ok());
        // §9 F 65: another key's signature does not verify.
        let other = key();
        let forged = token(&other, std_claims());
        assert!(
            check_signature(&Unverified::decode(&forged).unwrap(), Algorithm::ES256, &dk).is_err()
        );
        // A tampered payload does not verify either.
        let parts: Vec<&str> = t.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(with(std_claims(), "aud", json!("evil")).to_string()),
            parts[2]
        );
        assert!(check_signature(
            &Unverified::decode(&tampered).unwrap(),
            Algorithm::ES256,
            &dk
        )
        .is_err());
    }

    #[test]
    fn the_webhook_is_the_data_claim() {
        let k = key();
        let t = token(&k, std_claims());
        assert_eq!(
            webhook_of(Unverified::decode(&t).unwrap()).unwrap(),
            json!({"event": "problem.update"})
        );
        let t = token(&k, with(std_claims(), "data", json!("x")));
        assert!(webhook_of(Unverified::decode(&t).unwrap()).is_err());
    }

    #[test]
    fn issuer_rule_needs_a_policy_account_url_or_an_account() {
        assert_eq!(IssuerRule::of(&Policy::default(), None), None);
        assert_eq!(
            IssuerRule::of(&Policy::default(), Some("https://a.x")),
            Some(IssuerRule::Prefix("https://a.x".into()))
        );
        let p = Policy {
            account_url: Some("https://b.x".into()),
            ..Policy::default()
        };
        assert_eq!(
            IssuerRule::of(&p, Some("https://a.x")),
            Some(IssuerRule::Exact("https://b.x".into()))
        );
    }
}
