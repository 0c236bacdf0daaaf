//! The pure half of a GraphQL call (spec §8): classifying the HTTP answer (reschedule after
//! `Retry-After`, or fail with a message naming the status), reading `data` and `errors`, and
//! the rate-limit metadata from the response headers.

use std::time::{Duration, SystemTime};

use ferry_core::schema::{Field, FieldType};
use serde_json::{json, Value};

/// Delay used when `Retry-After` is absent, not a positive number of seconds and not a future
/// HTTP date.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The longest response body quoted in an error message.
pub const MAX_QUOTED_BODY: usize = 500;

/// What to do with an HTTP answer of the GraphQL endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200: read the body.
    Read,
    /// 429, 502, 503, 504: run the step again after `after`.
    Reschedule {
        /// The delay.
        after: Duration,
        /// `Xurrent API rate limit hit (retry after: 30). '<body>'` and the like.
        message: String,
    },
    /// Any other status: fail the step (no retry).
    Fail(String),
}

fn quote(body: &str) -> String {
    let body = body.trim();
    if body.chars().count() > MAX_QUOTED_BODY {
        let cut: String = body.chars().take(MAX_QUOTED_BODY).collect();
        format!("'{cut}…'")
    } else {
        format!("'{body}'")
    }
}

/// The delay a `Retry-After` value asks for (spec §8.2): a positive number of seconds, or a
/// future HTTP date; anything else (absent, zero, past or unparseable) is 60 s.
pub fn retry_after(header: Option<&str>, now: SystemTime) -> Duration {
    let Some(h) = header.map(str::trim) else {
        return DEFAULT_RETRY_AFTER;
    };
    if !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()) {
        return match h.parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => DEFAULT_RETRY_AFTER,
        };
    }
    match httpdate::parse_http_date(h) {
        Ok(at) => match at.duration_since(now) {
            Ok(d) if !d.is_zero() => d,
            _ => DEFAULT_RETRY_AFTER,
        },
        Err(_) => DEFAULT_RETRY_AFTER,
    }
}

/// Classify an answer of the GraphQL endpoint (spec §8.2/§8.3, with 502 and 504 rescheduled
/// like 503 as the issue asks).
pub fn classify(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
    now: SystemTime,
) -> Outcome {
    let suffix = retry_after_header
        .map(|h| format!(" (retry after: {})", h.trim()))
        .unwrap_or_default();
    let reason = match status {
        200 => return Outcome::Read,
        429 => "rate limit hit",
        502..=504 => "not available",
        _ => {
            return Outcome::Fail(format!(
                "HTTP error from Xurrent GraphQL API: {status} {}",
                quote(body)
            ))
        }
    };
    Outcome::Reschedule {
        after: retry_after(retry_after_header, now),
        message: format!("Xurrent API {reason}{suffix}. {}", quote(body)),
    }
}

/// The `data` of a 200 answer (spec §8.1): GraphQL `errors` fail with
/// `Errors from Xurrent GraphQL API: <errors as compact JSON>` (partial data is discarded); a
/// blank `data` fails with `No data from Xurrent GraphQL API`.
pub fn read_data(response: &Value) -> Result<&Value, crate::Error> {
    if let Some(errs) = response.get("errors").and_then(Value::as_array) {
        if !errs.is_empty() {
            return Err(crate::Error::Graphql(format!(
                "Errors from Xurrent GraphQL API: {}",
                Value::Array(errs.clone())
            )));
        }
    }
    match response.get("data") {
        Some(d) if d.as_object().is_some_and(|m| !m.is_empty()) => Ok(d),
        _ => Err(crate::Error::Graphql(
            "No data from Xurrent GraphQL API".into(),
        )),
    }
}

/// Metadata of a GraphQL answer (spec §8.1): header values passed through as strings, `null`
/// when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`.
    pub ratelimit: [Option<String>; 3],
    /// `x-costlimit-limit`, `x-costlimit-cost`, `x-costlimit-remaining`, `x-costlimit-reset`.
    pub costlimit: [Option<String>; 4],
}

impl ResponseMeta {
    /// Read the headers through `get` (a case-insensitive header lookup).
    pub fn from_headers(get: impl Fn(&str) -> Option<String>) -> ResponseMeta {
        ResponseMeta {
            request_id: get("x-request-id"),
            ratelimit: [
                get("x-ratelimit-limit"),
                get("x-ratelimit-remaining"),
                get("x-ratelimit-reset"),
            ],
            costlimit: [
                get("x-costlimit-limit"),
                get("x-costlimit-cost"),
                get("x-costlimit-remaining"),
                get("x-costlimit-reset"),
            ],
        }
    }

    /// `{ratelimit: {limit, remaining, reset}, costlimit: {limit, cost, remaining, reset},
    /// request_id}` as the Query and Mutation outputs carry it.
    pub fn to_json(&self) -> Value {
        let [l, r, s] = &self.ratelimit;
        let [cl, cc, cr, cs] = &self.costlimit;
        json!({
            "ratelimit": {"limit": l, "remaining": r, "reset": s},
            "costlimit": {"limit": cl, "cost": cc, "remaining": cr, "reset": cs},
            "request_id": self.request_id,
        })
    }
}

/// The metadata output fields appended to every Query and Mutation output (spec §5.2):
/// `ratelimit` (`limit`, `remaining`, `reset`), `costlimit` (`limit`, `cost`, `remaining`,
/// `reset`), all integers (the header strings coerce), and `request_id`.
pub fn metadata_fields() -> Vec<Field> {
    let ints = |names: &[&str]| {
        names
            .iter()
            .map(|n| Field::new(n, FieldType::Integer).label(&crate::humanize(n)))
            .collect::<Vec<_>>()
    };
    vec![
        Field::new("ratelimit", FieldType::Nested)
            .label("Rate limit")
            .with_fields(ints(&["limit", "remaining", "reset"])),
        Field::new("costlimit", FieldType::Nested)
            .label("Cost limit")
            .with_fields(ints(&["limit", "cost", "remaining", "reset"])),
        Field::new("request_id", FieldType::String).label("Request ID"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn o189_backoff_defaults_and_messages() {
        assert_eq!(
            classify(429, None, "slow down", now()),
            Outcome::Reschedule {
                after: Duration::from_secs(60),
                message: "Xurrent API rate limit hit. 'slow down'".into()
            }
        );
        assert_eq!(
            classify(429, Some("120"), "Rate limited", now()),
            Outcome::Reschedule {
                after: Duration::from_secs(120),
                message: "Xurrent API rate limit hit (retry after: 120). 'Rate limited'".into()
            }
        );
        let ahead = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        assert_eq!(retry_after(Some(&ahead), now()), Duration::from_secs(90));
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(90));
        assert_eq!(retry_after(Some(&past), now()), Duration::from_secs(60));
        assert_eq!(
            retry_after(Some("not-a-date"), now()),
            Duration::from_secs(60)
        );
        assert_eq!(retry_after(Some("0"), now()), Duration::from_secs(60));
        let Outcome::Reschedule { after, message } = classify(503, Some("60"), "down", now())
        else {
            panic!("503 reschedules")
        };
        assert_eq!(after, Duration::from_secs(60));
        assert_eq!(
            message,
            "Xurrent API not available (retry after: 60). 'down'"
        );
        assert!(matches!(
            classify(502, None, "", now()),
            Outcome::Reschedule { .. }
        ));
        assert!(matches!(
            classify(504, None, "", now()),
            Outcome::Reschedule { .. }
        ));
    }

    #[test]
    fn other_statuses_fail_naming_the_status() {
        assert_eq!(
            classify(401, None, "Unauthorized", now()),
            Outcome::Fail("HTTP error from Xurrent GraphQL API: 401 'Unauthorized'".into())
        );
        let Outcome::Fail(m) = classify(500, None, &"x".repeat(2000), now()) else {
            panic!()
        };
        assert!(m.len() < 600, "{}", m.len());
        assert_eq!(classify(200, None, "", now()), Outcome::Read);
    }

    #[test]
    fn read_data_errors_and_blank_data() {
        let err = read_data(&json!({"errors": [{"message": "Not authorized"}], "data": {"x": 1}}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Errors from Xurrent GraphQL API: [{"message":"Not authorized"}]"#
        );
        let err = read_data(&json!({"data": null})).unwrap_err();
        assert_eq!(err.to_string(), "No data from Xurrent GraphQL API");
        assert_eq!(
            read_data(&json!({"data": {"me": {"id": 1}}, "errors": []})).unwrap(),
            &json!({"me": {"id": 1}})
        );
    }

    #[test]
    fn metadata_resolves_against_its_fields() {
        let meta = ResponseMeta::from_headers(|h| match h {
            "x-ratelimit-limit" => Some("3600".into()),
            "x-request-id" => Some("req-1".into()),
            _ => None,
        });
        let schema = ferry_core::schema::Schema::new("meta", metadata_fields());
        let v = schema.resolve(&meta.to_json(), None).unwrap();
        assert_eq!(v["ratelimit"]["limit"], 3600);
        assert_eq!(v["request_id"], "req-1");
    }

    #[test]
    fn o188_rate_limit_headers() {
        let all: HashMap<&str, &str> = [
            ("x-request-id", "req-test-123"),
            ("x-ratelimit-limit", "3600"),
            ("x-ratelimit-remaining", "3599"),
            ("x-ratelimit-reset", "60"),
            ("x-costlimit-limit", "5000"),
            ("x-costlimit-cost", "12"),
            ("x-costlimit-remaining", "4988"),
            ("x-costlimit-reset", "60"),
        ]
        .into_iter()
        .collect();
        let meta = ResponseMeta::from_headers(|h| all.get(h).map(|v| v.to_string()));
        let v = meta.to_json();
        assert_eq!(v["ratelimit"]["limit"], "3600");
        assert_eq!(v["ratelimit"]["remaining"], "3599");
        assert_eq!(v["costlimit"]["cost"], "12");
        assert_eq!(v["costlimit"]["remaining"], "4988");
        assert_eq!(v["request_id"], "req-test-123");
        let none = ResponseMeta::from_headers(|_| None).to_json();
        assert_eq!(
            none,
            json!({"ratelimit": {"limit": null, "remaining": null, "reset": null},
                   "costlimit": {"limit": null, "cost": null, "remaining": null, "reset": null},
                   "request_id": null})
        );
        // Partial, and cost headers independent of rate-limit headers.
        let partial = ResponseMeta::from_headers(|h| (h == "x-costlimit-cost").then(|| "7".into()));
        let v = partial.to_json();
        assert_eq!(v["costlimit"]["cost"], "7");
        assert!(v["ratelimit"]["limit"].is_null());
        assert!(v["costlimit"]["limit"].is_null());
    }
}
