//! The trigger pipeline's request type and outcome.

use bytes::Bytes;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::trigger::TriggerResponse;

/// An inbound HTTP request as triggers see it.
#[derive(Clone, Debug, Default)]
pub struct InboundRequest {
    /// HTTP method.
    pub method: String,
    /// The path after `/inbound/{solution}/{runbook}/`, if any.
    pub postfix: Option<String>,
    /// Raw query string.
    pub query: Option<String>,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

/// Header names compare case-insensitively, with `-` and `_` equivalent.
fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let norm = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(x) == norm(y)
        })
}

impl InboundRequest {
    /// A header by name: case-insensitive, and `-`/`_` are equivalent (spec §2.4.1).
    /// Values that are not valid UTF-8 are ignored.
    pub fn header(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.headers.get(name) {
            return v.to_str().ok();
        }
        self.headers
            .iter()
            .find(|(k, _)| same_header(k.as_str(), name))
            .and_then(|(_, v)| v.to_str().ok())
    }

    /// Add a header (used by `ferry run` and tests); invalid names or values are skipped.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            self.headers.append(n, v);
        }
        self
    }

    /// A query parameter's first value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        form_pairs(q)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The query string as an object (repeated keys become arrays).
    pub fn query_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (k, v) in self.query.as_deref().map(form_pairs).unwrap_or_default() {
            match map.get_mut(&k) {
                Some(Value::Array(a)) => a.push(Value::String(v)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(v)]);
                }
                None => {
                    map.insert(k, Value::String(v));
                }
            }
        }
        map
    }
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What happened to an inbound event.
#[derive(Clone, Debug, PartialEq)]
pub enum IngestOutcome {
    /// A job was durably stored.
    Accepted {
        /// The new job.
        job_id: Uuid,
        /// The runbook's custom answer (`respond_with`), if it has one.
        response: Option<TriggerResponse>,
    },
    /// The trigger answered the request itself; no job.
    Responded {
        /// The answer.
        response: TriggerResponse,
    },
    /// The deduplication id was seen before; no new job.
    Duplicate {
        /// The job created for the first event.
        job_id: Uuid,
    },
    /// The event was discarded (no job).
    Discarded {
        /// Why.
        message: String,
    },
    /// The event was rejected.
    Rejected {
        /// HTTP status (4xx; 404 for an unknown runbook).
        status: u16,
        /// Message for `{"error": …}`.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_and_dash_insensitive() {
        let r = InboundRequest {
            query: Some("a=1&b=2&a=3".into()),
            ..Default::default()
        }
        .with_header("optional_header", "x");
        assert_eq!(r.header("Optional-Header"), Some("x"));
        assert_eq!(r.query_param("b").as_deref(), Some("2"));
        assert_eq!(
            Value::Object(r.query_map()),
            serde_json::json!({"a": ["1", "3"], "b": "2"})
        );
    }
}
