//! Inbound request validators (spec §5.1): every configured method must pass.
//!
//! An inbound connection's config may hold `api_key: {key, value, placement}` and/or
//! `basic_auth: {username, password}`. Unconfigured methods are skipped; a connection
//! with none accepts every request.

use base64::Engine as _;
use ferry_core::secrets::Secrets;
use serde_json::Value;

use crate::ingest::InboundRequest;
use crate::trigger::TriggerError;

fn conf<'a>(config: &'a Value, a: &str, b: &str) -> Option<&'a str> {
    config.get(a)?.get(b)?.as_str().filter(|s| !s.is_empty())
}

/// Constant-time comparison of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check a request against an inbound connection's validators.
pub fn validate(
    config: &Value,
    request: &InboundRequest,
    secrets: &Secrets,
) -> Result<(), TriggerError> {
    let open = |s: &str| -> Result<String, TriggerError> {
        secrets
            .reveal_in(s)
            .map(|z| z.to_string())
            .map_err(|_| TriggerError::Reject {
                status: 500,
                message: "Inbound connection secret could not be decrypted.".into(),
            })
    };
    if let (Some(key), Some(expected)) = (
        conf(config, "api_key", "key"),
        conf(config, "api_key", "value"),
    ) {
        let expected = open(expected)?;
        let in_query = conf(config, "api_key", "placement").is_some_and(|p| {
            p.eq_ignore_ascii_case("query params") || p.eq_ignore_ascii_case("query")
        });
        let got = if in_query {
            request.query_param(key)
        } else {
            request.header(key).map(str::to_string)
        };
        let ok = got.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
        if !ok {
            return Err(TriggerError::bad_request("Invalid or missing API key."));
        }
    }
    if let Some(username) = conf(config, "basic_auth", "username") {
        let password = open(conf(config, "basic_auth", "password").unwrap_or_default())?;
        let header = request.header("authorization").unwrap_or_default();
        let mut parts = header.splitn(2, char::is_whitespace);
        let scheme = parts.next().unwrap_or_default();
        let rest = parts.next().map(str::trim).unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("basic") || rest.is_empty() {
            return Err(TriggerError::bad_request(
                "Missing basic authentication header.",
            ));
        }
        let invalid = || TriggerError::bad_request("Invalid basic authentication header.");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(invalid)?;
        let ok = constant_time_eq(user.as_bytes(), username.as_bytes())
            & constant_time_eq(pass.as_bytes(), password.as_bytes());
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}
