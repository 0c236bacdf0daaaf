//! The embedded assets: the console's stylesheet and script, and the vendored htmx 2
//! (`assets/htmx.min.js`, 0BSD, its license in `assets/htmx.LICENSE`). Nothing is loaded from
//! anywhere else.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// `(name, content type, bytes)` of every asset.
pub(crate) const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/htmx.min.js"),
    ),
    (
        "htmx.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/htmx.LICENSE"),
    ),
];

/// The URL of an asset with a content hash, so that a new binary's assets are never mixed
/// with cached old ones.
pub(crate) fn url(name: &str) -> String {
    static HASHES: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let hashes = HASHES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(n, _, bytes)| (*n, hex::encode(&Sha256::digest(bytes)[..6])))
            .collect()
    });
    match hashes.iter().find(|(n, _)| *n == name) {
        Some((_, h)) => format!("/ui/assets/{name}?v={h}"),
        None => format!("/ui/assets/{name}"),
    }
}

/// `GET /ui/assets/{name}`.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => {
            let mut response = (*bytes).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            response
        }
        None => (StatusCode::NOT_FOUND, format!("no asset '{name}'\n")).into_response(),
    }
}
