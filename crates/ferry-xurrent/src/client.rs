//! The transport every Xurrent call goes through (`xurrent_connector.md` §8): authentication
//! and `X-Xurrent-Account`, the client-side limiter, the OAuth token evicted and the call
//! retried once on a `401`, and the classification of answers:
//!
//! | answer | outcome |
//! |---|---|
//! | 429 | reschedule after `Retry-After` (seconds or HTTP date; 60 s when absent): `Xurrent API rate limit hit (retry after: …). '<body>'` |
//! | 503, 502, 504 | reschedule the same way: `Xurrent API not available …` |
//! | GraphQL 200 with `errors` | fail: `Errors from Xurrent GraphQL API: <errors as JSON>` |
//! | GraphQL 200 without `data` | fail: `No data from Xurrent GraphQL API` |
//! | GraphQL other status | fail: `HTTP error from Xurrent GraphQL API: <status> '<body>'` |
//! | REST other 4xx/5xx | [`XurrentError::Api`] with the answer's `message` |
//!
//! [`XurrentClient::graphql`] is the GraphQL transport the Query and Mutation actions use;
//! [`XurrentClient::rest`] the REST one of the Webhooks API client.

use std::time::Duration;

use ferry_engine::action::{ConnectionRef, Services, Signal};
use std::time::SystemTime;

use ferry_engine::http::{HttpError, HttpResponse};
use serde_json::{json, Value};

use crate::connection::{bearer, ConnectionConfig};
use crate::ratelimit::{self, Observed};
use crate::transport::{classify, read_data, Outcome, ResponseMeta};

/// Longest wait for the client-side limiter inside a step; a longer one reschedules the step.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);

/// What a Xurrent call can end with besides an answer.
#[derive(Debug, thiserror::Error)]
pub enum XurrentError {
    /// A terminal failure (the step fails with this message).
    #[error("{0}")]
    Fail(String),
    /// Try again after `after` (429, 502, 503, 504, or the client-side limiter).
    #[error("{message}")]
    Reschedule {
        /// Delay.
        after: Duration,
        /// Why.
        message: String,
    },
    /// A REST answer with an error status (other than those that reschedule).
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// `Xurrent API error (HTTP n): <message>`.
        message: String,
    },
    /// The call timed out.
    #[error("{0}")]
    Timeout(String),
}

impl From<Signal> for XurrentError {
    fn from(s: Signal) -> XurrentError {
        match s {
            Signal::Reschedule { after, message } => XurrentError::Reschedule { after, message },
            other => XurrentError::Fail(other.to_string()),
        }
    }
}

impl From<XurrentError> for Signal {
    fn from(e: XurrentError) -> Signal {
        match e {
            XurrentError::Reschedule { after, message } => Signal::Reschedule { after, message },
            other => Signal::Fail(other.to_string()),
        }
    }
}

/// One HTTP call to Xurrent (built by the client, authenticated when sent).
#[derive(Clone, Debug)]
pub struct Call {
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    timeout: Option<Duration>,
    max_wait: Duration,
}

impl Call {
    /// A call with `method` to `url`.
    pub fn new(method: reqwest::Method, url: impl Into<String>) -> Call {
        Call {
            method,
            url: url.into(),
            body: None,
            timeout: None,
            max_wait: MAX_INLINE_WAIT,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Call {
        Call::new(reqwest::Method::GET, url)
    }

    /// With a JSON body.
    pub fn json(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    /// With a total timeout.
    pub fn timeout(mut self, t: Duration) -> Call {
        self.timeout = Some(t);
        self
    }

    /// Longest wait for the limiter before giving up with a reschedule.
    pub fn max_wait(mut self, t: Duration) -> Call {
        self.max_wait = t;
        self
    }
}

/// A successful GraphQL answer.
#[derive(Clone, Debug)]
pub struct GraphqlResponse {
    /// `data` (never null).
    pub data: Value,
    /// Request id and rate-limit headers.
    pub meta: ResponseMeta,
}

/// A Xurrent client over one outbound connection.
pub struct XurrentClient<'a> {
    services: &'a Services,
    connection: &'a ConnectionRef,
    config: ConnectionConfig,
    limiter_key: String,
}

/// Reveal the secrets of a value sent to a connection's GraphQL endpoint (query or mutation
/// variables): host-bound secrets (`Secrets::seal_bound`) open only when that endpoint is one of
/// their hosts; any other refuses with a message naming the binding and the endpoint.
pub fn reveal_for_graphql(
    services: &Services,
    connection: &ConnectionRef,
    value: &Value,
) -> Result<Value, String> {
    let config = ConnectionConfig::from_config(&connection.config)?;
    let endpoint = url::Url::parse(&config.endpoints.graphql)
        .map_err(|_| format!("URI {} is invalid.", config.endpoints.graphql))?;
    services
        .secrets
        .reveal_value_for(value, &endpoint)
        .map_err(|e| match e {
            ferry_core::secrets::SecretsError::HostBound { .. } => {
                format!("Refused to send a secret: {e}")
            }
            e => format!("Unable to decrypt a secret: {e}"),
        })
}

impl<'a> XurrentClient<'a> {
    /// A client for `connection` (its config must be a valid Xurrent outbound config).
    pub fn new(
        services: &'a Services,
        connection: &'a ConnectionRef,
    ) -> Result<XurrentClient<'a>, XurrentError> {
        let config =
            ConnectionConfig::from_config(&connection.config).map_err(XurrentError::Fail)?;
        XurrentClient::with_config(services, connection, config)
    }

    /// A client with an already read config.
    pub fn with_config(
        services: &'a Services,
        connection: &'a ConnectionRef,
        config: ConnectionConfig,
    ) -> Result<XurrentClient<'a>, XurrentError> {
        let limiter_key = config.limiter_key(services)?;
        Ok(XurrentClient {
            services,
            connection,
            config,
            limiter_key,
        })
    }

    /// The connection's config.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Send a call with the connection's authentication. With OAuth, a `401` evicts the
    /// cached token and the call is sent once more with a fresh one. Any status is returned;
    /// only network problems, timeouts and authentication failures are errors.
    pub async fn send(&self, call: Call) -> Result<HttpResponse, XurrentError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reserved = if self.config.client_rate_limit {
                ratelimit::reserve(&self.limiter_key, call.max_wait)
            } else {
                Ok(Duration::ZERO)
            };
            match reserved {
                Ok(wait) if wait.is_zero() => {}
                Ok(wait) => {
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "xurrent.ratelimit.wait");
                    tokio::time::sleep(wait).await;
                }
                Err(after) => {
                    return Err(XurrentError::Reschedule {
                        after,
                        message: format!(
                            "Xurrent rate budget of this connection is used up; waiting {} s before the next request.",
                            after.as_secs()
                        ),
                    })
                }
            }
            let bearer = bearer(self.services, self.connection, &self.config).await?;
            let mut builder = self
                .services
                .http
                .inner()
                .request(call.method.clone(), &call.url)
                .header("x-xurrent-account", self.config.account_id.as_str())
                .header("accept", "application/json")
                .bearer_auth(&bearer.token);
            if let Some(body) = &call.body {
                builder = builder.json(body);
            }
            if let Some(t) = call.timeout {
                builder = builder.timeout(t);
            }
            let request = builder
                .build()
                .map_err(|_| XurrentError::Fail(format!("URI {} is invalid.", call.url)))?;
            let response = match self.services.http.execute(request).await {
                Ok(r) => r,
                Err(HttpError::Timeout(url)) => {
                    return Err(XurrentError::Timeout(format!("request to {url} timed out")))
                }
                Err(e) => return Err(XurrentError::Fail(e.to_string())),
            };
            ratelimit::observe(
                &self.limiter_key,
                &Observed::from_headers(|n| response.header(n)),
            );
            if response.status == 401 && attempt == 1 {
                if let Some(request) = &bearer.oauth {
                    tracing::info!(
                        connection = %self.connection.name,
                        "xurrent: token rejected (HTTP 401); fetching a new one and retrying once"
                    );
                    request
                        .evict(self.services, self.connection, &bearer.token)
                        .await?;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// POST a GraphQL document (`{query, variables}`) to the connection's GraphQL endpoint and
    /// classify the answer (spec §8). The query's whitespace runs are collapsed.
    pub async fn graphql(
        &self,
        query: &str,
        variables: Option<Value>,
    ) -> Result<GraphqlResponse, XurrentError> {
        let mut body = json!({ "query": collapse_whitespace(query) });
        if let Some(v) = variables {
            body["variables"] = v;
        }
        let call =
            Call::new(reqwest::Method::POST, self.config.endpoints.graphql.clone()).json(body);
        let response = self.send(call).await?;
        graphql_result(&response)
    }

    /// A REST call relative to the connection's REST base (`<rest>/<path>`); 2xx answers are
    /// returned, error statuses classified (see the module docs).
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<HttpResponse, XurrentError> {
        let url = self.config.endpoints.rest_url(path);
        let mut call = Call::new(method.clone(), url);
        if let Some(b) = body {
            call = call.json(b);
        }
        let response = self.send(call).await?;
        if let Some(e) = transient(&response) {
            return Err(e);
        }
        if !(200..300).contains(&response.status) {
            let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
            let detail = parsed
                .as_ref()
                .and_then(|v| {
                    v.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            v.get("errors").and_then(Value::as_array).map(|a| {
                                a.iter()
                                    .filter_map(|e| e.get("message").and_then(Value::as_str))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            })
                        })
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    truncate(String::from_utf8_lossy(&response.body).trim(), 200).to_string()
                });
            return Err(XurrentError::Api {
                status: response.status,
                message: format!(
                    "Xurrent API error (HTTP {}) on {method} {path}: {detail}",
                    response.status
                ),
            });
        }
        Ok(response)
    }
}

/// A 429, 502, 503 or 504 answer as a reschedule (spec §8.2; 502/504 added by the issue),
/// through [`classify`].
pub fn transient(response: &HttpResponse) -> Option<XurrentError> {
    if !matches!(response.status, 429 | 502..=504) {
        return None;
    }
    let body = String::from_utf8_lossy(&response.body);
    match classify(
        response.status,
        response.header("retry-after"),
        &body,
        SystemTime::now(),
    ) {
        Outcome::Reschedule { after, message } => Some(XurrentError::Reschedule { after, message }),
        _ => None,
    }
}

/// Classify a GraphQL answer (spec §8.1–8.3) with [`classify`] and [`read_data`].
pub fn graphql_result(response: &HttpResponse) -> Result<GraphqlResponse, XurrentError> {
    let body = String::from_utf8_lossy(&response.body);
    match classify(
        response.status,
        response.header("retry-after"),
        &body,
        SystemTime::now(),
    ) {
        Outcome::Read => {}
        Outcome::Reschedule { after, message } => {
            return Err(XurrentError::Reschedule { after, message })
        }
        Outcome::Fail(message) => return Err(XurrentError::Fail(message)),
    }
    let parsed: Value = serde_json::from_slice(&response.body).map_err(|_| {
        XurrentError::Fail(format!(
            "Xurrent GraphQL API answered with something else than JSON: '{}'",
            truncate(body.trim(), 200)
        ))
    })?;
    let data = read_data(&parsed)
        .map_err(|e| XurrentError::Fail(e.to_string()))?
        .clone();
    Ok(GraphqlResponse {
        data,
        meta: ResponseMeta::from_headers(|n| response.header(n).map(str::to_string)),
    })
}

/// Collapse every whitespace run to one space (spec §4.1).
pub fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
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

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    fn reschedule(r: Result<GraphqlResponse, XurrentError>) -> (u64, String) {
        match r {
            Err(XurrentError::Reschedule { after, message }) => (after.as_secs(), message),
            other => panic!("expected a reschedule, got {other:?}"),
        }
    }

    fn fail(r: Result<GraphqlResponse, XurrentError>) -> String {
        match r {
            Err(XurrentError::Fail(m)) => m,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn throttling_and_unavailability_reschedule_after_retry_after() {
        let (after, message) = reschedule(graphql_result(&response(
            429,
            &[("retry-after", "30")],
            "Too Many Requests",
        )));
        assert_eq!(after, 30);
        assert_eq!(
            message,
            "Xurrent API rate limit hit (retry after: 30). 'Too Many Requests'"
        );
        let (after, message) = reschedule(graphql_result(&response(503, &[], "down")));
        assert_eq!(after, 60);
        assert_eq!(message, "Xurrent API not available. 'down'");
        for status in [502, 504] {
            let (after, message) = reschedule(graphql_result(&response(
                status,
                &[("retry-after", "5")],
                "",
            )));
            assert_eq!(after, 5);
            assert!(
                message.starts_with("Xurrent API not available (retry after: 5)."),
                "{message}"
            );
        }
        // An HTTP date in the future: the seconds until then.
        let date = httpdate_in(Duration::from_secs(90));
        let (after, _) = reschedule(graphql_result(&response(
            429,
            &[("retry-after", &date)],
            "",
        )));
        assert!((80..=90).contains(&after), "{after}");
        // A date in the past, or garbage: 60 s.
        let (after, _) = reschedule(graphql_result(&response(
            429,
            &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
            "",
        )));
        assert_eq!(after, 60);
    }

    fn httpdate_in(d: Duration) -> String {
        httpdate::fmt_http_date(std::time::SystemTime::now() + d)
    }

    #[test]
    fn graphql_errors_and_empty_data_fail_the_step() {
        assert_eq!(
            fail(graphql_result(&response(
                200,
                &[],
                r#"{"data":{"me":null},"errors":[{"message":"Not authorized"}]}"#
            ))),
            r#"Errors from Xurrent GraphQL API: [{"message":"Not authorized"}]"#
        );
        assert_eq!(
            fail(graphql_result(&response(200, &[], r#"{"data":null}"#))),
            "No data from Xurrent GraphQL API"
        );
        assert_eq!(
            fail(graphql_result(&response(401, &[], "Unauthorized"))),
            "HTTP error from Xurrent GraphQL API: 401 'Unauthorized'"
        );
    }

    #[test]
    fn metadata_comes_from_the_headers_as_strings() {
        let r = graphql_result(&response(
            200,
            &[
                ("x-request-id", "req-test-123"),
                ("x-ratelimit-limit", "3600"),
                ("x-ratelimit-remaining", "3599"),
                ("x-ratelimit-reset", "60"),
                ("x-costlimit-limit", "5000"),
                ("x-costlimit-cost", "12"),
                ("x-costlimit-remaining", "4988"),
                ("x-costlimit-reset", "60"),
            ],
            r#"{"data":{"me":{"id":"1"}}}"#,
        ))
        .unwrap();
        assert_eq!(r.data["me"]["id"], "1");
        assert_eq!(
            r.meta.to_json(),
            json!({"request_id": "req-test-123",
                   "ratelimit": {"limit": "3600", "remaining": "3599", "reset": "60"},
                   "costlimit": {"limit": "5000", "cost": "12", "remaining": "4988", "reset": "60"}})
        );
        assert_eq!(
            collapse_whitespace(" query {\n  me { id }\n}"),
            "query { me { id } }"
        );
    }
}
