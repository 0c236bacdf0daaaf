//! Async URLs (`xurrent_app.async_urls`, spec §10.5, nested): poll several URLs until each has
//! returned data. Every invocation emits at most one `result` (`{url, body}`) — the first URL,
//! in list order, not done yet that answers with non-blank JSON — whose branch the engine runs
//! before invoking the action again for the rest; while no URL is ready the step is
//! rescheduled after `backoff_time` seconds (`Data not available yet`).
//!
//! The iteration state `{index_to_skip, iteration_count}` is the job's, so polling goes on
//! across reschedules and restarts of `ferry serve`. `iteration_count` counts the invocations
//! that found nothing (429/503 and errors included: the count is kept before polling); at
//! `max_iterations` the step fails `Maximum iterations (<n>) reached without finding data`.
//!
//! Security (issue 9; spec §15 18): the provider's token and `X-Xurrent-Account` are sent only
//! to URLs on the **provider's Xurrent hosts** — the origins of the connection's GraphQL, REST
//! and OAuth endpoints and of the provider account URL — and to the hosts the step lists in
//! `token_hosts`. Any other URL is polled without credentials (a pre-signed download URL needs
//! none).
//!
//! Answers: 429/503 (and 502/504) reschedule after `Retry-After` or 60 s (not
//! `backoff_time`); any other non-200 fails `HTTP Error <status>: '<body>' for URL: '<url>'`;
//! a body that is not JSON fails `JSON Parser Error for URL '<url>': <detail>. Response body:
//! '<body>'`; an empty body or a blank JSON value (`{}`, `[]`, `""`, `null`, `false`) is "not
//! ready".

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::http::{HttpError, HttpResponse};
use ferry_engine::Registry;
use ferry_xurrent::client::{transient, truncate, Call};
use ferry_xurrent::{ConnectionConfig, XurrentClient};
use serde_json::{json, Value};

use crate::action_support::provider;
use crate::connection::{AppSettings, CONNECTOR};

/// The longest part of a response body quoted in a message.
const MAX_QUOTED: usize = 500;

/// Register the action.
pub fn register(r: &mut Registry) {
    r.action(AsyncUrls::new());
}

/// The polling state (spec §10.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollState {
    /// Indices of the URLs that have returned data.
    pub index_to_skip: Vec<u64>,
    /// Invocations that found nothing.
    pub iteration_count: u64,
}

impl PollState {
    /// Read the iteration state (absent or unreadable parts are empty).
    pub fn from_value(v: Option<&Value>) -> PollState {
        let v = v.unwrap_or(&Value::Null);
        PollState {
            index_to_skip: v
                .get("index_to_skip")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default(),
            iteration_count: v
                .get("iteration_count")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        }
    }

    /// The iteration state value (fields in the spec's order).
    pub fn to_value(&self) -> Value {
        json!({"index_to_skip": self.index_to_skip, "iteration_count": self.iteration_count})
    }
}

/// `scheme://host:port` of a URL (the port made explicit), lower case.
pub fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let port = u.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", u.scheme()))
}

/// Whether `url` may receive the provider's credentials: its origin is one of `provider`, or
/// its host (`host` or `host:port`) is listed in `extra`.
pub fn may_send_token(url: &str, provider: &[String], extra: &[String]) -> bool {
    let Some(o) = origin(url) else {
        return false;
    };
    if provider.contains(&o) {
        return true;
    }
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    let with_port = u
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"))
        .unwrap_or_else(|| host.clone());
    extra.iter().any(|e| {
        let e = e.trim().to_ascii_lowercase();
        e == host || e == with_port
    })
}

/// The origins of the provider's Xurrent hosts of a connection config.
pub fn provider_origins(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(c) = ConnectionConfig::from_config(config) {
        for u in [&c.endpoints.graphql, &c.endpoints.rest, &c.endpoints.oauth2] {
            out.extend(origin(u));
        }
    }
    out.extend(origin(&AppSettings::from_config(config).provider_url()));
    out.sort();
    out.dedup();
    out
}

fn blank(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The action.
pub struct AsyncUrls(ActionSpec);

impl Default for AsyncUrls {
    fn default() -> Self {
        AsyncUrls::new()
    }
}

impl AsyncUrls {
    /// The action.
    pub fn new() -> AsyncUrls {
        AsyncUrls(ActionSpec {
            name: "xurrent_app.async_urls",
            description: "Poll URLs until each returns data; runs the result branch once per URL",
            input: vec![
                Field::new("urls", FieldType::String)
                    .array()
                    .label("URLs")
                    .hint("Array of URLs to poll for data. Each URL will be checked in sequence.")
                    .default_value(json!([])),
                Field::new("backoff_time", FieldType::Integer)
                    .label("Backoff Time")
                    .hint("Time after which the job will be rescheduled")
                    .default_value(json!(60))
                    .min(1.0),
                Field::new("max_iterations", FieldType::Integer)
                    .label("Max Iterations")
                    .hint("Maximum number of times the job can be rescheduled")
                    .default_value(json!(1000))
                    .min(1.0),
                Field::new("token_hosts", FieldType::String)
                    .array()
                    .label("Token hosts")
                    .hint("Hosts (host or host:port) besides the provider's Xurrent hosts that may receive the provider's token; URLs elsewhere are polled without credentials"),
            ],
            outputs: vec![Schema::new(
                "result",
                vec![
                    Field::new("url", FieldType::String).label("URL").required(),
                    Field::new("body", FieldType::Hash)
                        .label("Body")
                        .hint("Parsed JSON response from the URL")
                        .required(),
                ],
            )],
            nested: true,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn get(
    ctx: &ActionContext<'_>,
    client: Option<&XurrentClient<'_>>,
    url: &str,
) -> Result<HttpResponse, Signal> {
    match client {
        Some(c) => c.send(Call::get(url)).await.map_err(Signal::from),
        None => {
            let request = ctx
                .services
                .http
                .inner()
                .get(url)
                .header("accept", "application/json")
                .build()
                .map_err(|_| Signal::Fail(format!("URI {url} is invalid.")))?;
            match ctx.services.http.execute(request).await {
                Ok(r) => Ok(r),
                Err(HttpError::Timeout(_)) => {
                    Err(Signal::Fail(format!("Request to URL '{url}' timed out")))
                }
                Err(e) => Err(Signal::Fail(format!("Request to URL '{url}' failed: {e}"))),
            }
        }
    }
}

#[async_trait]
impl Action for AsyncUrls {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = provider(ctx)?;
        let urls = strings(ctx.input.get("urls"));
        let backoff = ctx
            .input
            .get("backoff_time")
            .and_then(Value::as_u64)
            .unwrap_or(60)
            .max(1);
        let max = ctx
            .input
            .get("max_iterations")
            .and_then(Value::as_u64)
            .unwrap_or(1000);
        let extra_hosts = strings(ctx.input.get("token_hosts"));
        let mut state = PollState::from_value(ctx.iteration.as_ref());
        if state.iteration_count >= max {
            ctx.iteration = None;
            return Err(Signal::Fail(format!(
                "Maximum iterations ({max}) reached without finding data"
            )));
        }
        state.iteration_count += 1;
        if urls.is_empty() {
            ctx.iteration = None;
            return Ok(Vec::new());
        }
        // Kept before polling: a reschedule or an error below keeps the increment.
        ctx.iteration = Some(state.to_value());
        let origins = provider_origins(&connection.config);
        let client = XurrentClient::new(ctx.services, connection).map_err(Signal::from)?;
        for (index, url) in urls.iter().enumerate() {
            let index = index as u64;
            if state.index_to_skip.contains(&index) {
                continue;
            }
            let with_token = may_send_token(url, &origins, &extra_hosts);
            if !with_token {
                ctx.log(format!(
                    "polling {url} without the provider's credentials (not a provider Xurrent host nor in token_hosts)"
                ));
            }
            let response = get(ctx, with_token.then_some(&client), url).await?;
            if let Some(e) = transient(&response) {
                return Err(Signal::from(e));
            }
            let body = String::from_utf8_lossy(&response.body).to_string();
            if response.status != 200 {
                return Err(Signal::Fail(format!(
                    "HTTP Error {}: '{}' for URL: '{url}'",
                    response.status,
                    truncate(body.trim(), MAX_QUOTED)
                )));
            }
            if body.trim().is_empty() {
                continue;
            }
            let parsed: Value = serde_json::from_str(&body).map_err(|e| {
                Signal::Fail(format!(
                    "JSON Parser Error for URL '{url}': {e}. Response body: '{}'",
                    truncate(&body, MAX_QUOTED)
                ))
            })?;
            if blank(&parsed) {
                continue;
            }
            state.index_to_skip.push(index);
            if state.index_to_skip.len() >= urls.len() {
                ctx.iteration = None;
            } else {
                state.iteration_count -= 1;
                ctx.iteration = Some(state.to_value());
            }
            return Ok(vec![Output::new(
                "result",
                json!({"url": url, "body": parsed}),
            )]);
        }
        Err(Signal::Reschedule {
            after: Duration::from_secs(backoff),
            message: "Data not available yet".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_provider_hosts_or_listed_ones() {
        let config = json!({"credentials": {"account_id": "wdc", "personal_access_token": "x"},
                            "environment": {"stage": "Prod"}});
        let origins = provider_origins(&config);
        assert!(
            may_send_token("https://graphql.xurrent.com/x", &origins, &[]),
            "{origins:?}"
        );
        assert!(may_send_token(
            "https://api.xurrent.com/v1/exports/1",
            &origins,
            &[]
        ));
        assert!(may_send_token(
            "https://wdc.xurrent.com/exports/1",
            &origins,
            &[]
        ));
        assert!(!may_send_token(
            "https://api1.example.com/data",
            &origins,
            &[]
        ));
        assert!(
            !may_send_token("http://api.xurrent.com/v1", &origins, &[]),
            "scheme counts"
        );
        assert!(!may_send_token(
            "https://api.xurrent.com.evil.io/",
            &origins,
            &[]
        ));
        assert!(may_send_token(
            "https://api1.example.com/data",
            &origins,
            &["API1.example.com".into()]
        ));
        assert!(may_send_token(
            "http://127.0.0.1:8080/data",
            &origins,
            &["127.0.0.1:8080".into()]
        ));
        assert!(!may_send_token(
            "http://127.0.0.1:8081/data",
            &origins,
            &["127.0.0.1:8080".into()]
        ));
        assert!(!may_send_token(
            "not a url",
            &origins,
            &["not a url".into()]
        ));
    }

    #[test]
    fn blank_bodies_are_not_ready() {
        for v in [json!({}), json!([]), json!(""), json!(null), json!(false)] {
            assert!(blank(&v), "{v}");
        }
        for v in [
            json!({"a": 1}),
            json!([1]),
            json!("x"),
            json!(0),
            json!(true),
        ] {
            assert!(!blank(&v), "{v}");
        }
    }

    #[test]
    fn state_round_trips_in_spec_order() {
        let s = PollState {
            index_to_skip: vec![0, 1],
            iteration_count: 1,
        };
        let v = s.to_value();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["index_to_skip", "iteration_count"]);
        assert_eq!(PollState::from_value(Some(&v)), s);
        assert_eq!(PollState::from_value(None), PollState::default());
    }
}
