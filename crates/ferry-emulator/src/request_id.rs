//! `X-Request-Id` on every answer, and `X-Runtime` on REST answers: one middleware layer
//! around the whole router, so both halves (and the fallback) get it.
//!
//! GraphQL answers (`POST /` and `POST /graphql`) carry an id in the `Root=1-<8 hex>-<24 hex>`
//! form of the load balancer in front of Xurrent's GraphQL endpoint (seconds since the epoch,
//! then 96 random bits). REST answers carry a UUID, as a Rails application does, and
//! `X-Runtime` in seconds with six decimals. A client-sent `X-Request-Id` is not echoed.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;

/// Whether a request goes to the GraphQL endpoint.
fn is_graphql(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/" | "/graphql")
}

/// A GraphQL request id: `Root=1-` + epoch seconds (8 hex digits) + `-` + 24 random hex digits.
pub(crate) fn graphql_request_id(epoch_secs: u64, random: u128) -> String {
    format!(
        "Root=1-{:08x}-{:024x}",
        epoch_secs & 0xffff_ffff,
        random & ((1u128 << 96) - 1)
    )
}

/// `X-Runtime`: seconds with six decimals.
pub(crate) fn runtime_header(elapsed: std::time::Duration) -> String {
    format!("{:.6}", elapsed.as_secs_f64())
}

/// The middleware: see the module documentation.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let graphql = is_graphql(req.method(), req.uri().path());
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let id = if graphql {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        graphql_request_id(secs, rand::thread_rng().gen())
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    if !graphql {
        if let Ok(v) = HeaderValue::from_str(&runtime_header(started.elapsed())) {
            headers.insert("x-runtime", v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_ids_have_the_root_form() {
        let id = graphql_request_id(0x6724_d1ff, 0x7cd1_94bc_58f7_ba46_520a_72f5);
        assert_eq!(id, "Root=1-6724d1ff-7cd194bc58f7ba46520a72f5");
        // Out-of-range inputs are cut to the field widths.
        let id = graphql_request_id(u64::MAX, u128::MAX);
        assert_eq!(id, format!("Root=1-ffffffff-{}", "f".repeat(24)));
        let id = graphql_request_id(1, 1);
        assert_eq!(id, format!("Root=1-00000001-{}1", "0".repeat(23)));
    }

    #[test]
    fn only_posts_to_the_graphql_paths_are_graphql() {
        assert!(is_graphql(&Method::POST, "/"));
        assert!(is_graphql(&Method::POST, "/graphql"));
        assert!(!is_graphql(&Method::GET, "/graphql"));
        assert!(!is_graphql(&Method::POST, "/v1/webhooks"));
        assert!(!is_graphql(&Method::POST, "/graphql/x"));
    }

    #[test]
    fn runtime_has_six_decimals() {
        assert_eq!(
            runtime_header(std::time::Duration::from_micros(12_345)),
            "0.012345"
        );
    }
}
