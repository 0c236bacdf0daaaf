//! Ferry's HTTP server: inbound trigger endpoints, the management API under `/api/v1`,
//! `/healthz` and `/metrics`.
//!
//! Handlers are thin: they translate HTTP into calls on [`ferry_engine::Engine`] and map
//! [`ApiError`] values to JSON error responses.

mod api;
mod api_connections;
mod error;
mod inbound;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use ferry_engine::Engine;

pub use api::{job_json, step_json};
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
        .nest("/api/v1", api::router(state.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(api::metrics))
        .with_state(state)
}
