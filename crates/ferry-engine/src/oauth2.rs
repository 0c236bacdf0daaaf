//! OAuth 2 access tokens for outbound connections (spec §5.3), shared by every connector that
//! authenticates with a token endpoint (the `http` connector, the Xurrent connector).
//!
//! A token is cached, sealed, in the connection's key/value store for `expires_in − 5`
//! seconds under a key derived from the token request (URL and form, plus any extra values the
//! connector names, e.g. the account), and fetched by one worker at a time (single-flight lock;
//! the others are rescheduled and then find it cached). A connector that sees the token
//! rejected (HTTP 401) evicts it with [`TokenRequest::evict`] and tries once more.

use std::time::Duration;

use serde_json::{json, Value};

use crate::action::{ConnectionRef, Services, Signal};

/// The OAuth 2 error codes that mean "the customer's credentials are wrong" (RFC 6749 §5.2).
pub const CREDENTIAL_ERRORS: [&str; 4] = [
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "invalid_scope",
];

/// One token request: the token endpoint and the form fields to POST (secrets in plain text:
/// build it right before use and drop it afterwards).
pub struct TokenRequest {
    /// Token endpoint URL.
    pub url: String,
    /// Form fields in order, e.g. `client_id`, `client_secret`, `grant_type`.
    pub form: Vec<(&'static str, String)>,
    /// Values the cached token also depends on without being sent (e.g. the account id).
    pub cache_extra: Vec<String>,
    /// Extra headers of the token request (e.g. a `User-Agent`).
    pub headers: Vec<(&'static str, String)>,
}

impl TokenRequest {
    /// A request to `url` with `form`.
    pub fn new(url: impl Into<String>, form: Vec<(&'static str, String)>) -> TokenRequest {
        TokenRequest {
            url: url.into(),
            form,
            cache_extra: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The key of the cached token: `oauth2_authentication_header_<sha256 of the request>`.
    pub fn cache_key(&self) -> String {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.url.as_bytes());
        for (k, v) in &self.form {
            hasher.update([0]);
            hasher.update(k.as_bytes());
            hasher.update([0]);
            hasher.update(v.as_bytes());
        }
        for extra in &self.cache_extra {
            hasher.update([1]);
            hasher.update(extra.as_bytes());
        }
        format!(
            "oauth2_authentication_header_{}",
            hex::encode(hasher.finalize())
        )
    }

    /// The access token: the cached one, else a fresh one fetched under the single-flight
    /// lock and cached for `expires_in − 5` s (not cached when `expires_in` is absent or ≤ 5).
    pub async fn token(
        &self,
        services: &Services,
        connection: &ConnectionRef,
    ) -> Result<String, Signal> {
        let cache_key = self.cache_key();
        if let Some(Value::String(token)) = services.kv_get(connection, &cache_key).await? {
            return Ok(token);
        }
        let lock = format!("{}/oauth2:{cache_key}:refresh", connection.namespace);
        services
            .with_lock(&lock, Duration::from_secs(60), || async {
                if let Some(Value::String(token)) = services.kv_get(connection, &cache_key).await? {
                    return Ok(token);
                }
                let (token, expires_in) = self.fetch(services).await?;
                if let Some(ttl) = expires_in
                    .filter(|e| *e > 5)
                    .map(|e| Duration::from_secs(e - 5))
                {
                    services
                        .kv_put(connection, &cache_key, &json!(token), Some(ttl))
                        .await?;
                }
                Ok(token)
            })
            .await
    }

    /// Forget the cached token if it is still `rejected` (a token another worker already
    /// replaced is kept). Call it when the API answered 401 with that token.
    pub async fn evict(
        &self,
        services: &Services,
        connection: &ConnectionRef,
        rejected: &str,
    ) -> Result<(), Signal> {
        let cache_key = self.cache_key();
        if let Some(Value::String(cached)) = services.kv_get(connection, &cache_key).await? {
            if cached == rejected {
                services
                    .kv(connection)
                    .delete(&cache_key)
                    .await
                    .map_err(Signal::from)?;
            }
        }
        Ok(())
    }

    /// POST the token request; errors follow spec §5.3 (no secrets, headers or other body
    /// fields appear in messages). Returns the token and `expires_in`.
    pub async fn fetch(&self, services: &Services) -> Result<(String, Option<u64>), Signal> {
        let url = self.url.as_str();
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| url.to_string());
        let mut builder = services
            .http
            .inner()
            .post(url)
            .timeout(Duration::from_secs(20))
            .header("accept", "application/json")
            .form(&self.form);
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .build()
            .map_err(|_| Signal::Fail(format!("URI {url} is invalid.")))?;
        let response = services
            .http
            .execute(request)
            .await
            .map_err(|e| Signal::Fail(format!("Unable to authenticate to {host}: {e}")))?;
        parse_token_response(&host, response.status, &response.body)
    }
}

/// Read a token endpoint's answer: `(access_token, expires_in)` or the failure of spec §5.3
/// (`Authentication to <host> failed: <error>: <description>` for a credentials problem,
/// `Unable to authenticate to <host> (HTTP n)` otherwise).
pub fn parse_token_response(
    host: &str,
    status: u16,
    body: &[u8],
) -> Result<(String, Option<u64>), Signal> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status != 200 {
        let error = body
            .get("error")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let description = body
            .get("error_description")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let credentials_problem = matches!(status, 401 | 403)
            || (status == 400 && error.is_some_and(|e| CREDENTIAL_ERRORS.contains(&e)));
        if credentials_problem {
            let reason = match (error, description) {
                (Some(e), Some(d)) => format!("{e}: {d}"),
                (Some(e), None) => e.to_string(),
                (None, Some(d)) => d.to_string(),
                (None, None) => format!("HTTP {status}"),
            };
            return Err(Signal::Fail(format!(
                "Authentication to {host} failed: {reason}"
            )));
        }
        return Err(Signal::Fail(format!(
            "Unable to authenticate to {host} (HTTP {status})"
        )));
    }
    if !body.is_object() {
        return Err(Signal::Fail(
            "Unable to authenticate, the token response is not JSON".into(),
        ));
    }
    if let Some(t) = body.get("token_type").and_then(Value::as_str) {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(Signal::Fail(format!(
                "Unable to authenticate, unsupported token_type: '{t}'"
            )));
        }
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Signal::Fail("Unable to authenticate, no access_token found".into()))?
        .to_string();
    Ok((token, body.get("expires_in").and_then(Value::as_u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(r: Result<(String, Option<u64>), Signal>) -> String {
        match r {
            Err(Signal::Fail(m)) => m,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn token_responses_are_classified_as_the_spec_says() {
        let host = "oauth.xurrent-test.com";
        assert_eq!(
            parse_token_response(host, 200, br#"{"access_token":"t","expires_in":3600}"#).unwrap(),
            ("t".to_string(), Some(3600))
        );
        assert_eq!(
            fail(parse_token_response(
                host,
                400,
                br#"{"message":"bad request"}"#
            )),
            "Unable to authenticate to oauth.xurrent-test.com (HTTP 400)"
        );
        assert_eq!(
            fail(parse_token_response(
                host,
                400,
                br#"{"error":"invalid_grant","error_description":"Invalid client credentials"}"#
            )),
            "Authentication to oauth.xurrent-test.com failed: invalid_grant: Invalid client credentials"
        );
        assert_eq!(
            fail(parse_token_response(host, 401, b"")),
            "Authentication to oauth.xurrent-test.com failed: HTTP 401"
        );
        assert_eq!(
            fail(parse_token_response(
                host,
                200,
                br#"{"access_token":"token","token_type":"mac"}"#
            )),
            "Unable to authenticate, unsupported token_type: 'mac'"
        );
        assert_eq!(
            fail(parse_token_response(
                host,
                200,
                br#"{"token_type":"bearer"}"#
            )),
            "Unable to authenticate, no access_token found"
        );
    }

    #[test]
    fn the_cache_key_depends_on_url_form_and_extras() {
        let a = TokenRequest::new("https://o/token", vec![("client_id", "a".into())]);
        let mut b = TokenRequest::new("https://o/token", vec![("client_id", "a".into())]);
        assert_eq!(a.cache_key(), b.cache_key());
        b.cache_extra.push("wdc".into());
        assert_ne!(a.cache_key(), b.cache_key());
        let c = TokenRequest::new("https://p/token", vec![("client_id", "a".into())]);
        assert_ne!(a.cache_key(), c.cache_key());
        assert!(a.cache_key().starts_with("oauth2_authentication_header_"));
    }
}
