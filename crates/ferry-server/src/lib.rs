//! Ferry's HTTP server: inbound trigger endpoints, the management API under `/api/v1`,
//! `/healthz` and `/metrics`.
//!
//! Handlers are thin: they translate HTTP into calls on [`ferry_engine::Engine`] and map
//! [`ApiError`] values to JSON error responses.

mod api;
mod api_connections;
mod api_schedules;
mod api_versions;
mod error;
mod inbound;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use ferry_engine::Engine;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use api::{connections_view, job_detail, job_view, provision_view, rerun, step_view, ApiDoc};
pub use error::ApiError;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Bearer token for `/api/v1`.
    pub api_token: String,
    /// Base URL used to show trigger URLs (e.g. `http://127.0.0.1:8787`).
    pub public_url: String,
    /// Largest inbound body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Settings.
    pub options: Arc<ServerOptions>,
}

/// The complete router.
pub fn router(engine: Arc<Engine>, options: ServerOptions) -> Router {
    router_with(engine, options, |_| Router::new())
}

/// The complete router with more routes on the same state (e.g. the web console under
/// `/ui`), built by `extra` from the shared [`AppState`]; they get the same request id and
/// request span as every other route.
pub fn router_with(
    engine: Arc<Engine>,
    options: ServerOptions,
    extra: impl FnOnce(AppState) -> Router<AppState>,
) -> Router {
    let max_body = options.max_body_bytes;
    let state = AppState {
        engine,
        options: Arc::new(options),
    };
    let inbound = Router::new()
        .route(
            "/inbound/{solution}/{runbook}",
            post(inbound::receive).get(inbound::receive),
        )
        .route(
            "/inbound/{solution}/{runbook}/{*postfix}",
            post(inbound::receive_postfix).get(inbound::receive_postfix),
        )
        .layer(DefaultBodyLimit::max(max_body));
    Router::new()
        .merge(inbound)
        .merge(extra(state.clone()))
        .nest("/api/v1", api::router(state.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(api::metrics))
        .with_state(state)
        // Every request gets an id — the caller's `x-request-id`, or a new UUID — that is
        // answered in `x-request-id` and carried by the `request` span, so every log line
        // written while handling the request names it. (The last layer added runs first.)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The `request` span: request id, method and path.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}
