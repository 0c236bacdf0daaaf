//! Small helpers shared by the pages: headers, time and JSON formatting, query strings.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;

/// The Content-Security-Policy of every console answer: only the console's own scripts,
/// styles and forms; no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every console answer; pages are never cached (assets set their own).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A time as `<time>`: `2026-11-30 10:28:37Z` with the RFC 3339 value in `datetime`.
pub(crate) fn time(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
            (t.format("%Y-%m-%d %H:%M:%SZ"))
        }
    }
}

/// An optional time, `—` when absent.
pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

/// A duration in milliseconds, human sized (`0.42 ms`, `12 ms`, `3.1 s`, `2 min 5 s`).
pub(crate) fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// Largest JSON text shown inline; larger values are cut (the API has them whole).
pub(crate) const MAX_JSON_CHARS: usize = 16 * 1024;

/// A JSON value pretty-printed in `<pre>`, cut at [`MAX_JSON_CHARS`] with a note.
pub(crate) fn json_block(v: &Value, label: &str) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("<{e}>"));
    let (shown, cut) = match text.char_indices().nth(MAX_JSON_CHARS) {
        Some((i, _)) => (&text[..i], true),
        None => (text.as_str(), false),
    };
    html! {
        pre.json aria-label=(label) tabindex="0" { code { (shown) } }
        @if cut {
            p.muted { "Cut at " (MAX_JSON_CHARS / 1024) " KiB; the API shows the whole value." }
        }
    }
}

/// `key=value&…` of the non-empty pairs, URL-encoded.
pub(crate) fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            ser.append_pair(k, v);
        }
    }
    ser.finish()
}

/// A URL path segment, percent-encoded.
pub(crate) fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_ms(0.421), "0.42 ms");
        assert_eq!(duration_ms(12.4), "12 ms");
        assert_eq!(duration_ms(3100.0), "3.1 s");
        assert_eq!(duration_ms(125_000.0), "2 min 5 s");
    }

    #[test]
    fn big_json_is_cut_with_a_note() {
        let big = Value::String("x".repeat(MAX_JSON_CHARS * 2));
        let html = json_block(&big, "input").into_string();
        assert!(html.len() < MAX_JSON_CHARS + 1000);
        assert!(html.contains("Cut at 16 KiB"));
        let small = json_block(&serde_json::json!({"a": "<b>"}), "input").into_string();
        assert!(small.contains("&lt;b&gt;") && !small.contains("Cut at"));
    }

    #[test]
    fn query_strings_leave_out_empty_values() {
        assert_eq!(
            query_string([("status", "failed"), ("solution", ""), ("q", "a b&c")]),
            "status=failed&q=a+b%26c"
        );
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
