//! The outbound connection (`xurrent_connector.md` §2): its config fields, their checks, the
//! per-request authentication (personal access token, or OAuth 2 client credentials through
//! the engine's shared token cache) and the connection test (§2.4).
//!
//! ```yaml
//! connections:
//!   xurrent:
//!     connector: xurrent
//!     direction: outbound
//!     config:
//!       credentials:
//!         account_id: wdc
//!         personal_access_token: "{{ env.XURRENT_TOKEN }}"   # or client_id + client_secret
//!       environment:
//!         stage: Prod          # Prod | QA | Demo
//!         region: us           # au | ch | uk | us
//! ```

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::model::Direction;
use ferry_core::schema::{Field, FieldType};
use ferry_engine::action::{ConnectionRef, Services, Signal};
use ferry_engine::connector::{ConnectionTestResult, Connector, ConnectorSpec, TestContext};
use ferry_engine::oauth2::TokenRequest;
use serde_json::{json, Value};

use crate::client::{Call, XurrentClient, XurrentError};
use crate::endpoints::{Endpoints, Environment};

/// The connector's name (`connector: xurrent`).
pub const CONNECTOR: &str = "xurrent";

/// The message of a test whose connection config cannot be used.
pub const INVALID_CONFIG: &str = "Connection configuration is invalid.";

/// The config fields of an outbound connection (spec §2.1, plus `rest_endpoint`).
pub fn outbound_fields() -> Vec<Field> {
    let enumeration = |values: &[&str]| values.iter().map(|v| json!(v)).collect::<Vec<_>>();
    vec![
        Field::new("credentials", FieldType::Nested)
            .required()
            .with_fields(vec![
                Field::new("account_id", FieldType::String)
                    .hint("The account id, e.g. `wdc` (sent as X-Xurrent-Account)"),
                Field::new("client_id", FieldType::String)
                    .hint("OAuth application client id (not needed with a personal access token)"),
                Field::new("client_secret", FieldType::SecretString),
                Field::new("personal_access_token", FieldType::SecretString)
                    .hint("Wins over client credentials when set"),
            ]),
        Field::new("environment", FieldType::Nested).with_fields(vec![
            Field::new("stage", FieldType::String)
                .enumeration(enumeration(&["Demo", "QA", "Prod"])),
            Field::new("region", FieldType::String)
                .enumeration(enumeration(&["au", "ch", "uk", "us"])),
            Field::new("oauth2_endpoint", FieldType::String)
                .hint("OAuth token URL, e.g. http://127.0.0.1:4780/token for the emulator"),
            Field::new("graphql_endpoint", FieldType::String)
                .hint("GraphQL URL, e.g. http://127.0.0.1:4780/graphql for the emulator"),
            Field::new("rest_endpoint", FieldType::String)
                .hint("REST API base up to /v1, e.g. http://127.0.0.1:4780/v1 for the emulator"),
        ]),
        Field::new("client_rate_limit", FieldType::Boolean)
            .default_value(json!(true))
            .hint("false switches Ferry's client-side limiter off (for `ferry emulator --no-rate-limits`); a 429 still reschedules"),
    ]
}

fn text<'a>(config: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = config;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// Problems of an outbound connection config beyond its schema (for `ferry validate`).
///
/// Credentials: a personal access token, or both `client_id` and `client_secret` (spec A2,
/// A3). `account_id` is required: Ferry has no system account to fall back on (the reference
/// connector's `xurrent_ipaas_account_id`), and an empty `X-Xurrent-Account` would only fail
/// later. Environment: see [`Environment::problems`].
pub fn check_outbound(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if text(config, &["credentials", "account_id"]).is_none() {
        problems
            .push("credentials.account_id is required (the Xurrent account id, e.g. 'wdc')".into());
    }
    if text(config, &["credentials", "personal_access_token"]).is_none() {
        for key in ["client_id", "client_secret"] {
            if text(config, &["credentials", key]).is_none() {
                problems.push(format!(
                    "credentials.{key} is required unless credentials.personal_access_token is set"
                ));
            }
        }
    }
    problems.extend(Environment::problems(config.get("environment")));
    problems
}

/// How a connection authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `Authorization: Bearer <PAT>`; no token endpoint. The value may be sealed.
    PersonalAccessToken(String),
    /// OAuth 2 client credentials; the secret may be sealed.
    ClientCredentials {
        /// Client id.
        client_id: String,
        /// Client secret (sealed at rest).
        client_secret: String,
    },
}

/// A connection's config, read.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// The account id (`X-Xurrent-Account`).
    pub account_id: String,
    /// The credentials.
    pub credentials: Credentials,
    /// Resolved endpoints.
    pub endpoints: Endpoints,
    /// The environment as configured.
    pub environment: Environment,
    /// Whether requests go through the client-side limiter ([`crate::ratelimit`]); on unless
    /// the config says `client_rate_limit: false`.
    pub client_rate_limit: bool,
}

impl ConnectionConfig {
    /// Read a connection config; the first problem of [`check_outbound`] is the error.
    pub fn from_config(config: &Value) -> Result<ConnectionConfig, String> {
        if let Some(problem) = check_outbound(config).into_iter().next() {
            return Err(format!("Outbound connection invalid: {problem}"));
        }
        let account_id = text(config, &["credentials", "account_id"])
            .unwrap_or_default()
            .to_string();
        let credentials = match text(config, &["credentials", "personal_access_token"]) {
            Some(pat) => Credentials::PersonalAccessToken(pat.to_string()),
            None => Credentials::ClientCredentials {
                client_id: text(config, &["credentials", "client_id"])
                    .unwrap_or_default()
                    .to_string(),
                client_secret: text(config, &["credentials", "client_secret"])
                    .unwrap_or_default()
                    .to_string(),
            },
        };
        let environment = Environment::from_config(config.get("environment"));
        Ok(ConnectionConfig {
            account_id,
            credentials,
            endpoints: Endpoints::resolve(&environment),
            environment,
            client_rate_limit: config
                .get("client_rate_limit")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }

    /// The token request of OAuth client credentials (`None` for a personal access token).
    /// The form is `client_id`, `client_secret`, `grant_type=client_credentials`, sent with
    /// `User-Agent: Xurrent iPaaS` (spec §2.3); the cached token also depends on the account.
    pub fn token_request(&self, services: &Services) -> Result<Option<TokenRequest>, Signal> {
        let Credentials::ClientCredentials {
            client_id,
            client_secret,
        } = &self.credentials
        else {
            return Ok(None);
        };
        let secret = reveal(services, client_secret)?;
        let mut request = TokenRequest::new(
            self.endpoints.oauth2.clone(),
            vec![
                ("client_id", client_id.clone()),
                ("client_secret", secret),
                ("grant_type", "client_credentials".into()),
            ],
        );
        request.cache_extra.push(self.account_id.clone());
        // Spec §2.3 (§9 B12): the token request names the client as the reference does.
        request
            .headers
            .push(("user-agent", crate::webhook::USER_AGENT.to_string()));
        Ok(Some(request))
    }

    /// A key naming the token for the client-side limiter (a hash: no secret in it).
    pub fn limiter_key(&self, services: &Services) -> Result<String, Signal> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.account_id.as_bytes());
        match &self.credentials {
            Credentials::PersonalAccessToken(pat) => {
                h.update(b"\0pat\0");
                h.update(reveal(services, pat)?.as_bytes());
            }
            Credentials::ClientCredentials { client_id, .. } => {
                h.update(b"\0oauth\0");
                h.update(self.endpoints.oauth2.as_bytes());
                h.update([0]);
                h.update(client_id.as_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// The plaintext of a config value that may hold sealed secrets.
pub(crate) fn reveal(services: &Services, value: &str) -> Result<String, Signal> {
    services
        .secrets
        .reveal_in(value)
        .map(|z| z.to_string())
        .map_err(|e| Signal::Fail(format!("Unable to decrypt secret: {e}")))
}

/// The bearer token of a request, and how to evict it when Xurrent rejects it.
pub struct Bearer {
    /// The token (plain text; only for the request).
    pub token: String,
    /// For OAuth: the request it was obtained with (to evict it on a 401).
    pub oauth: Option<TokenRequest>,
}

/// The bearer token of a connection: the PAT, or the cached or fresh OAuth token.
pub async fn bearer(
    services: &Services,
    connection: &ConnectionRef,
    config: &ConnectionConfig,
) -> Result<Bearer, Signal> {
    match &config.credentials {
        Credentials::PersonalAccessToken(pat) => Ok(Bearer {
            token: reveal(services, pat)?,
            oauth: None,
        }),
        Credentials::ClientCredentials { .. } => {
            let request = config
                .token_request(services)?
                .ok_or_else(|| Signal::Fail("no OAuth client credentials".into()))?;
            let token = request.token(services, connection).await?;
            Ok(Bearer {
                token,
                oauth: Some(request),
            })
        }
    }
}

/// The Xurrent connector (connections; the trigger and actions register themselves).
pub struct XurrentConnector(ConnectorSpec);

impl XurrentConnector {
    /// The connector with its outbound connection fields.
    pub fn new() -> XurrentConnector {
        XurrentConnector(
            ConnectorSpec::new(CONNECTOR, "Xurrent (formerly 4me): GraphQL API, webhooks")
                .outbound(outbound_fields()),
        )
    }

    /// The same connector with inbound connection fields (for the webhook trigger).
    pub fn with_inbound(fields: Vec<Field>) -> XurrentConnector {
        XurrentConnector(
            ConnectorSpec::new(CONNECTOR, "Xurrent (formerly 4me): GraphQL API, webhooks")
                .outbound(outbound_fields())
                .inbound(fields),
        )
    }
}

impl Default for XurrentConnector {
    fn default() -> Self {
        XurrentConnector::new()
    }
}

/// Add `X-Xurrent-Account` and `Authorization: Bearer …` (spec §2.3) to a request over an
/// outbound connection with the `xurrent` connection fields (also the App Connector's).
pub async fn authenticate(
    services: &Services,
    connection: &ConnectionRef,
    builder: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, Signal> {
    let config = ConnectionConfig::from_config(&connection.config).map_err(Signal::Fail)?;
    let bearer = bearer(services, connection, &config).await?;
    Ok(builder
        .header("x-xurrent-account", config.account_id.as_str())
        .bearer_auth(bearer.token))
}

#[async_trait]
impl Connector for XurrentConnector {
    fn spec(&self) -> &ConnectorSpec {
        &self.0
    }

    fn check_connection(&self, direction: Direction, config: &Value) -> Vec<String> {
        match direction {
            Direction::Outbound => check_outbound(config),
            Direction::Inbound => crate::webhook::check_inbound(config),
        }
    }

    /// `X-Xurrent-Account` and `Authorization: Bearer …` (spec §2.3).
    async fn authenticate_outbound(
        &self,
        services: &Services,
        connection: &ConnectionRef,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Signal> {
        authenticate(services, connection, builder).await
    }

    fn has_tester(&self) -> bool {
        true
    }

    async fn test(&self, ctx: &TestContext<'_>) -> ConnectionTestResult {
        test_connection(ctx.services, ctx.connection).await
    }

    fn has_schema(&self) -> bool {
        true
    }

    /// Introspect again, replace the cached schema, bump the generation, clear the negative
    /// cache ([`crate::schema_cache::refresh`]).
    async fn refresh_schema(
        &self,
        ctx: &TestContext<'_>,
    ) -> Result<ferry_engine::connector::SchemaRefreshed, String> {
        let r = crate::schema_cache::refresh(ctx.services, ctx.connection)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ferry_engine::connector::SchemaRefreshed {
            types: r.types,
            generation: r.generation,
            duration: r.duration,
        })
    }
}

/// The connection test (spec §2.4): `GET <introspect URL>` with the connection's
/// authentication (one token request for OAuth, none for a PAT), mapped to success / failed /
/// error. Unlike the reference, an answer with `"active": false` is `failed`.
pub async fn test_connection(
    services: &Services,
    connection: &ConnectionRef,
) -> ConnectionTestResult {
    let Ok(config) = ConnectionConfig::from_config(&connection.config) else {
        return ConnectionTestResult::error(INVALID_CONFIG);
    };
    let url = match config.endpoints.introspect() {
        Ok(u) => u,
        Err(e) => return ConnectionTestResult::error(e),
    };
    let client = match XurrentClient::with_config(services, connection, config) {
        Ok(c) => c,
        Err(e) => return ConnectionTestResult::error(e.to_string()),
    };
    let call = Call::get(url)
        .timeout(Duration::from_secs(5))
        .max_wait(Duration::from_secs(2));
    let response = match client.send(call).await {
        Ok(r) => r,
        Err(XurrentError::Fail(m)) if m.starts_with("Authentication to ") => {
            return ConnectionTestResult::failed(m)
        }
        Err(XurrentError::Timeout(_)) => {
            return ConnectionTestResult::error(ferry_engine::connector::TEST_TIMED_OUT)
        }
        Err(e) => return ConnectionTestResult::error(e.to_string()),
    };
    introspection_result(response.status, &response.body)
}

/// Map an introspection answer to a test result (spec §2.4 table).
pub fn introspection_result(status: u16, body: &[u8]) -> ConnectionTestResult {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let unparseable = || {
        ConnectionTestResult::error(format!(
            "Token introspection returned an unparseable response (HTTP {status})."
        ))
    };
    match status {
        200 => {
            let Some(obj) = json.as_ref().and_then(Value::as_object) else {
                return unparseable();
            };
            if obj.get("active") == Some(&Value::Bool(false)) {
                return ConnectionTestResult::failed("Xurrent reports the token as not active.");
            }
            let scopes: Vec<&str> = obj
                .get("scopes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if scopes.is_empty() {
                ConnectionTestResult::failed("Token is valid but has no scopes.")
            } else {
                ConnectionTestResult::success(format!(
                    "Connection successful. Token scopes: {}.",
                    scopes.join(", ")
                ))
            }
        }
        401 | 403 => ConnectionTestResult::failed(format!(
            "Xurrent rejected the credentials (HTTP {status})."
        )),
        400 => match json.as_ref().and_then(Value::as_object) {
            Some(obj) => match obj
                .get("message")
                .and_then(Value::as_str)
                .filter(|m| !m.trim().is_empty())
            {
                Some(m) => ConnectionTestResult::failed(m),
                None => ConnectionTestResult::failed("Xurrent rejected the request (HTTP 400)."),
            },
            None => unparseable(),
        },
        _ => ConnectionTestResult::error(format!(
            "Token introspection failed (HTTP {status}): '{}'",
            crate::client::truncate(&String::from_utf8_lossy(body), 200)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::connector::TestStatus;

    #[test]
    fn credential_rules() {
        let pat = json!({"credentials": {"account_id": "wdc", "personal_access_token": "x"}});
        assert!(check_outbound(&pat).is_empty());
        let oauth = json!({"credentials": {"account_id": "wdc", "client_id": "abc", "client_secret": "def"},
                           "environment": {"stage": "Demo"}});
        assert!(check_outbound(&oauth).is_empty());
        let no_env = json!({"credentials": {"account_id": "wdc", "client_id": "abc", "client_secret": "def"}});
        assert!(check_outbound(&no_env).is_empty());
        let only_account = json!({"credentials": {"account_id": "wdc"}});
        let p = check_outbound(&only_account);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("credentials.client_id"));
        let no_account = json!({"credentials": {"personal_access_token": "x"}});
        assert!(check_outbound(&no_account)[0].contains("account_id"));
        let region_only = json!({"credentials": {"account_id": "wdc", "personal_access_token": "x"},
                                 "environment": {"region": "us"}});
        assert_eq!(check_outbound(&region_only).len(), 1);
    }

    #[test]
    fn the_pat_wins_over_client_credentials() {
        let c = ConnectionConfig::from_config(&json!({"credentials": {
            "account_id": "wdc", "client_id": "abc", "client_secret": "def",
            "personal_access_token": "my-pat-token"}}))
        .unwrap();
        assert!(
            matches!(c.credentials, Credentials::PersonalAccessToken(ref t) if t == "my-pat-token")
        );
        assert_eq!(c.endpoints.graphql, "https://graphql.xurrent.com");
    }

    #[test]
    fn introspection_answers_map_to_test_results() {
        let r = introspection_result(
            200,
            br#"{"active":true,"scopes":["account-administration","cmdb"]}"#,
        );
        assert_eq!(r.status, TestStatus::Success);
        assert_eq!(
            r.message,
            "Connection successful. Token scopes: account-administration, cmdb."
        );
        let r = introspection_result(200, br#"{"active":true,"scopes":[]}"#);
        assert_eq!(
            (r.status, r.message.as_str()),
            (TestStatus::Failed, "Token is valid but has no scopes.")
        );
        let r = introspection_result(401, b"");
        assert_eq!(
            (r.status, r.message.as_str()),
            (
                TestStatus::Failed,
                "Xurrent rejected the credentials (HTTP 401)."
            )
        );
        let r = introspection_result(403, b"");
        assert_eq!(r.message, "Xurrent rejected the credentials (HTTP 403).");
        let r = introspection_result(400, br#"{"message":"Invalid x-xurrent-account header"}"#);
        assert_eq!(
            (r.status, r.message.as_str()),
            (TestStatus::Failed, "Invalid x-xurrent-account header")
        );
        let r = introspection_result(400, b"{}");
        assert_eq!(r.message, "Xurrent rejected the request (HTTP 400).");
        let r = introspection_result(400, b"<html>");
        assert_eq!(
            (r.status, r.message.as_str()),
            (
                TestStatus::Error,
                "Token introspection returned an unparseable response (HTTP 400)."
            )
        );
        let r = introspection_result(500, b"boom");
        assert_eq!(
            (r.status, r.message.as_str()),
            (
                TestStatus::Error,
                "Token introspection failed (HTTP 500): 'boom'"
            )
        );
        for body in [&b"<html>"[..], b"[]"] {
            let r = introspection_result(200, body);
            assert_eq!(
                r.message,
                "Token introspection returned an unparseable response (HTTP 200)."
            );
        }
        let r = introspection_result(200, br#"{"active":false,"scopes":["cmdb"]}"#);
        assert_eq!(r.status, TestStatus::Failed);
    }
}
