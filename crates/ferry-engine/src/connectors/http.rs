//! HTTP connector: the Send HTTP Request action (spec §9.4) with outbound
//! authenticators (spec §5.2): API key, basic auth, bearer token, OAuth 2 client credentials.

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::model::Direction;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_core::secrets::SecretsError;
use serde_json::{json, Value};

use crate::action::{
    Action, ActionContext, ActionKind, ActionSpec, ConnectionRef, Output, Services, Signal,
};
use crate::connector::{
    ConnectionTestResult, Connector, ConnectorSpec, TestContext, TEST_TIMED_OUT,
};
use crate::connectors::json_endpoint::{check_placement, placement_in_query, PLACEMENT_HINT};
use crate::http::{retry_after_seconds, HttpError};
use crate::registry::Registry;

/// Register the HTTP connector.
pub fn register(r: &mut Registry) {
    r.connector(HttpConnector::new());
    r.action(SendRequest::new());
}

/// The connector: outbound connections with a base URL and authenticators (spec §5.2).
pub struct HttpConnector(ConnectorSpec);

impl HttpConnector {
    fn new() -> Self {
        HttpConnector(
            ConnectorSpec::new("http", "Call any HTTP API").outbound(vec![
                Field::new("base_url", FieldType::String)
                    .required()
                    .hint("Prefix of every request's URL, e.g. https://api.example.com/v1"),
                Field::new("api_key", FieldType::Nested).with_fields(vec![
                    Field::new("key", FieldType::String).required(),
                    Field::new("value", FieldType::SecretString).required(),
                    Field::new("placement", FieldType::String).hint(PLACEMENT_HINT),
                ]),
                Field::new("basic_auth", FieldType::Nested).with_fields(vec![
                    Field::new("username", FieldType::String).required(),
                    Field::new("password", FieldType::SecretString).required(),
                ]),
                Field::new("bearer", FieldType::Nested).with_fields(vec![Field::new(
                    "bearer_token",
                    FieldType::SecretString,
                )
                .required()]),
                Field::new("bearer_token", FieldType::SecretString)
                    .hint("Shorthand for `bearer: {bearer_token}`"),
                Field::new("oauth2", FieldType::Nested).with_fields(vec![
                    Field::new("grant_type", FieldType::String)
                        .hint("`client_credentials` (default) or `refresh_token`"),
                    Field::new("authorization_url", FieldType::String).required(),
                    Field::new("client_id", FieldType::String).required(),
                    Field::new("client_secret", FieldType::SecretString).required(),
                    Field::new("refresh_token", FieldType::SecretString),
                    Field::new("scope", FieldType::String),
                ]),
            ]),
        )
    }
}

fn grant_type(config: &Value) -> String {
    conf_str(config, &["oauth2", "grant_type"])
        .unwrap_or("client_credentials")
        .trim()
        .to_ascii_lowercase()
        .replace(' ', "_")
}

#[async_trait]
impl Connector for HttpConnector {
    fn spec(&self) -> &ConnectorSpec {
        &self.0
    }

    fn check_connection(&self, _direction: Direction, config: &Value) -> Vec<String> {
        let mut problems = check_placement(config);
        if config.get("oauth2").is_some_and(Value::is_object) {
            match grant_type(config).as_str() {
                "client_credentials" => {}
                "refresh_token" => {
                    if conf_str(config, &["oauth2", "refresh_token"]).is_none() {
                        problems.push(
                            "oauth2.refresh_token is required for the refresh_token grant".into(),
                        );
                    }
                }
                other => problems.push(format!(
                    "oauth2.grant_type: unknown grant_type '{other}' (use client_credentials or refresh_token)"
                )),
            }
        }
        problems
    }

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

    /// `GET <base_url>` with the connection's authentication: a status below 400 passes,
    /// 401/403 is `failed` (credentials rejected), other 4xx/5xx `failed` with the status;
    /// a network problem is `error`.
    async fn test(&self, ctx: &TestContext<'_>) -> ConnectionTestResult {
        let services = ctx.services;
        let Some(base) = conf_str(&ctx.connection.config, &["base_url"]) else {
            return ConnectionTestResult::error("Connection configuration is invalid.");
        };
        let url = match reveal(services, base) {
            Ok(u) => u,
            Err(e) => return ConnectionTestResult::error(e.to_string()),
        };
        let Ok(parsed) = url::Url::parse(&url) else {
            return ConnectionTestResult::error(format!(
                "URI {} is invalid.",
                ferry_core::secrets::redact_str(base)
            ));
        };
        let builder = services
            .http
            .inner()
            .get(parsed)
            .timeout(Duration::from_secs(8));
        let builder = match ctx.authenticate(builder).await {
            Ok(b) => b,
            Err(Signal::Fail(m)) => return ConnectionTestResult::failed(m),
            Err(other) => return ConnectionTestResult::error(other.to_string()),
        };
        let request = match builder.build() {
            Ok(r) => r,
            Err(e) => return ConnectionTestResult::error(format!("Invalid request: {e}")),
        };
        match services.http.execute(request).await {
            Ok(r) if r.status < 400 => {
                ConnectionTestResult::success(format!("GET {base} answered HTTP {}", r.status))
            }
            Ok(r) if r.status == 401 || r.status == 403 => ConnectionTestResult::failed(format!(
                "The credentials were rejected (HTTP {}).",
                r.status
            )),
            Ok(r) => ConnectionTestResult::failed(format!("GET {base} answered HTTP {}", r.status)),
            Err(HttpError::Timeout(_)) => ConnectionTestResult::error(TEST_TIMED_OUT),
            Err(e) => ConnectionTestResult::error(e.to_string()),
        }
    }
}

const METHODS: [&str; 8] = [
    "HEAD", "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// Send HTTP Request.
pub struct SendRequest(ActionSpec);

impl SendRequest {
    fn new() -> Self {
        let pair = |pattern: &str| {
            vec![
                Field::new("name", FieldType::String)
                    .required()
                    .pattern(pattern),
                Field::new("value", FieldType::String),
            ]
        };
        SendRequest(ActionSpec {
            name: "http.send_request",
            description: "Send an HTTP request through an outbound `http` connection",
            input: vec![
                Field::new("method", FieldType::String)
                    .required()
                    .enumeration(METHODS.iter().map(|m| json!(m)).collect()),
                Field::new("path", FieldType::String)
                    .pattern(r"\A[A-Za-z0-9\-._~!$&'()*+,;=:@%/]+\z"),
                Field::new("headers", FieldType::Nested)
                    .array()
                    .with_fields(pair(r"\A[A-Za-z0-9\-_]+\z"))
                    .default_value(json!([])),
                Field::new("query_parameters", FieldType::Nested)
                    .array()
                    .with_fields(pair(r"\A[A-Za-z0-9\-_\[\]]+\z"))
                    .default_value(json!([])),
                Field::new("body", FieldType::Binary),
                Field::new("timeout_seconds", FieldType::Integer)
                    .min(1.0)
                    .max(300.0),
            ],
            outputs: vec![Schema::new(
                "output",
                vec![Field::new("response", FieldType::Nested).with_fields(vec![
                    Field::new("status", FieldType::Integer).required(),
                    Field::new("headers", FieldType::Nested)
                        .array()
                        .with_fields(vec![
                            Field::new("name", FieldType::String).required(),
                            Field::new("value", FieldType::String),
                        ]),
                    Field::new("body", FieldType::Binary),
                ])],
            )],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some("http"),
        })
    }
}

/// Join a base URL and a path with exactly one `/` between them.
pub fn join_url(base: &str, path: &str) -> String {
    if path.is_empty() {
        return base.to_string();
    }
    match (base.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{base}{}", &path[1..]),
        (false, false) => format!("{base}/{path}"),
        _ => format!("{base}{path}"),
    }
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let name = p.get("name")?.as_str()?.to_string();
                    let value = match p.get("value") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    };
                    Some((name, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn reveal(services: &Services, s: &str) -> Result<String, Signal> {
    services
        .secrets
        .reveal_in(s)
        .map(|z| z.to_string())
        .map_err(reveal_error)
}

/// Reveal a value sent to `destination`: host-bound secrets open only for their hosts.
fn reveal_for(services: &Services, s: &str, destination: &url::Url) -> Result<String, Signal> {
    services
        .secrets
        .reveal_in_for(s, destination)
        .map(|z| z.to_string())
        .map_err(reveal_error)
}

fn reveal_error(e: SecretsError) -> Signal {
    match e {
        SecretsError::HostBound { .. } => Signal::Fail(format!("Refused to send a secret: {e}")),
        e => Signal::Fail(format!("Unable to decrypt secret: {e}")),
    }
}

fn conf_str<'a>(config: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = config;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// Apply the configured outbound authenticators to a request.
pub async fn authenticate(
    services: &Services,
    connection: &ConnectionRef,
    mut builder: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, Signal> {
    let c = &connection.config;
    if let (Some(key), Some(value)) = (
        conf_str(c, &["api_key", "key"]),
        conf_str(c, &["api_key", "value"]),
    ) {
        let value = reveal(services, value)?;
        let in_query = placement_in_query(conf_str(c, &["api_key", "placement"])) == Some(true);
        builder = if in_query {
            builder.query(&[(key, value.as_str())])
        } else {
            builder.header(key, value)
        };
    }
    if let Some(user) = conf_str(c, &["basic_auth", "username"]) {
        let password = reveal(
            services,
            conf_str(c, &["basic_auth", "password"]).unwrap_or_default(),
        )?;
        builder = builder.basic_auth(user, Some(password));
    }
    if let Some(token) = conf_str(c, &["bearer", "bearer_token"]).or(conf_str(c, &["bearer_token"]))
    {
        let token = reveal(services, token)?;
        builder = builder.bearer_auth(token);
    }
    if c.get("oauth2").is_some_and(Value::is_object) {
        let token = oauth2_token(services, connection).await?;
        builder = builder.bearer_auth(token);
    }
    Ok(builder)
}

/// OAuth 2 token (spec §5.3): client-credentials or refresh-token grant, through the shared
/// [`crate::oauth2::TokenRequest`] (cached, sealed, for `expires_in − 5` s; single flight).
async fn oauth2_token(services: &Services, connection: &ConnectionRef) -> Result<String, Signal> {
    let c = &connection.config;
    let url = conf_str(c, &["oauth2", "authorization_url"]).ok_or_else(|| {
        Signal::Fail(
            "Outbound connection invalid: Field 'oauth2.authorization_url' is required.".into(),
        )
    })?;
    let grant = grant_type(c);
    let mut form: Vec<(&'static str, String)> = vec![
        (
            "client_id",
            conf_str(c, &["oauth2", "client_id"])
                .unwrap_or_default()
                .to_string(),
        ),
        (
            "client_secret",
            reveal(
                services,
                conf_str(c, &["oauth2", "client_secret"]).unwrap_or_default(),
            )?,
        ),
    ];
    match grant.as_str() {
        "client_credentials" => form.push(("grant_type", "client_credentials".into())),
        "refresh_token" => {
            let refresh = conf_str(c, &["oauth2", "refresh_token"]).ok_or_else(|| {
                Signal::Fail(
                    "Outbound connection invalid: Field 'oauth2.refresh_token' is required.".into(),
                )
            })?;
            form.push(("refresh_token", reveal(services, refresh)?));
            form.push(("grant_type", "refresh_token".into()));
        }
        other => return Err(Signal::Fail(format!("Unknown grant_type: {other}"))),
    }
    if let Some(scope) = conf_str(c, &["oauth2", "scope"]) {
        form.push(("scope", scope.trim().to_string()));
    }
    crate::oauth2::TokenRequest::new(url, form)
        .token(services, connection)
        .await
}

#[async_trait]
impl Action for SendRequest {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = ctx
            .connection
            .ok_or_else(|| Signal::Fail("An outbound `http` connection is required.".into()))?;
        let services = ctx.services;
        let base = conf_str(&connection.config, &["base_url"]).ok_or_else(|| {
            Signal::Fail("Outbound connection invalid: Field 'base_url' is required.".into())
        })?;
        let method = ctx.input_str("method").unwrap_or("GET").to_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Signal::Fail(format!("Invalid HTTP method {method}")))?;
        let path = ctx.input_str("path").unwrap_or_default();
        let url = reveal(services, &join_url(base, path))?;
        let parsed =
            url::Url::parse(&url).map_err(|_| Signal::Fail(format!("URI {url} is invalid.")))?;

        let mut builder = services
            .http
            .inner()
            .request(method.clone(), parsed.clone());
        // Repeated headers are joined, repeated query names use `name[]`.
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in pairs(ctx.input.get("headers")) {
            let value = reveal_for(services, &value, &parsed)?;
            match headers
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(&name))
            {
                Some(h) => {
                    h.1.push_str(", ");
                    h.1.push_str(&value);
                }
                None => headers.push((name, value)),
            }
        }
        let query = pairs(ctx.input.get("query_parameters"));
        let mut query_out: Vec<(String, String)> = Vec::new();
        for (name, value) in &query {
            let repeated = query.iter().filter(|(n, _)| n == name).count() > 1;
            let key = if repeated {
                format!("{name}[]")
            } else {
                name.clone()
            };
            query_out.push((key, reveal_for(services, value, &parsed)?));
        }
        builder = authenticate(services, connection, builder).await?;
        if !query_out.is_empty() {
            builder = builder.query(&query_out);
        }
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = ctx.input.get("body").and_then(Value::as_str) {
            builder = builder.body(reveal_for(services, body, &parsed)?);
        }
        if let Some(t) = ctx.input.get("timeout_seconds").and_then(Value::as_u64) {
            builder = builder.timeout(Duration::from_secs(t.min(300)));
        }
        let request = builder
            .build()
            .map_err(|e| Signal::Fail(format!("Invalid request: {e}")))?;
        ctx.log(format!(
            "{method} {}",
            ferry_core::secrets::redact_str(&url)
        ));
        let response = services
            .http
            .execute(request)
            .await
            .map_err(|e| Signal::Fail(e.to_string()))?;
        ctx.log(format!("Response status {}", response.status));
        if response.status == 429 || response.status == 503 {
            let raw = response.header("retry-after").map(str::to_string);
            let seconds = retry_after_seconds(raw.as_deref(), 60);
            let what = if response.status == 429 {
                "rate limit hit"
            } else {
                "not available"
            };
            let suffix = raw
                .map(|r| format!(" (retry after: {r})"))
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&response.body);
            let message = format!("HTTP API {what}{suffix}. '{}'", truncate(&body, 200));
            ctx.log(message.clone());
            return Err(Signal::Reschedule {
                after: Duration::from_secs(seconds),
                message,
            });
        }
        let headers: Vec<Value> = response
            .headers
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        let body = String::from_utf8_lossy(&response.body).to_string();
        Ok(vec![Output::new(
            "output",
            json!({ "response": { "status": response.status, "headers": headers, "body": body } }),
        )])
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_joining() {
        assert_eq!(join_url("http://a", "b"), "http://a/b");
        assert_eq!(join_url("http://a/", "/b"), "http://a/b");
        assert_eq!(join_url("http://a/", "b"), "http://a/b");
        assert_eq!(join_url("http://a", "/b"), "http://a/b");
        assert_eq!(join_url("http://a", ""), "http://a");
    }
}
