//! The REST half of the emulator: OAuth (`/token`, `/introspect`, `/authorize`), the Webhooks
//! and Webhook Policies REST API (`/v1/webhooks`, `/v1/webhook_policies`), webhook delivery
//! (signed JWT bodies, verification handshake, retries, auto-disable), OpenID Connect discovery,
//! the App Store flows and the `/_emulator/...` control API.
//!
//! All public objects (webhooks, policies, app offerings, app instances) live in the shared
//! [`RecordStore`](crate::RecordStore) under their GraphQL type names, so GraphQL shows the same
//! objects. Private material is kept in record fields whose names start with `_` (never exposed
//! by GraphQL or REST) or in [`RestState`].
//!
//! Layers, each importing only those below it: [`common`] (errors, settings, record accessors)
//! and [`crate::policy`]; then [`events`] and [`delivery`] (record change → signed delivery,
//! with [`delivery::EventHook`]s for what other parts add); then the API modules [`webhooks`],
//! [`oauth`], [`oidc`] and [`apps`] (which registers its hook); then [`control`]; this module
//! assembles the router.

pub mod apps;
pub mod common;
pub mod control;
pub mod delivery;
pub mod events;
pub mod oauth;
pub mod oidc;
pub mod webhooks;

pub use common::{ApiError, RestSettings};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::Emulator;

/// Private state of the REST half, stored in [`Emulator::rest`].
#[derive(Default)]
pub struct RestState {
    pub(crate) settings: parking_lot::RwLock<RestSettings>,
    pub(crate) delivery: delivery::DeliveryState,
    pub(crate) oauth: oauth::OauthState,
    listener_started: AtomicBool,
}

impl std::fmt::Debug for RestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestState")
            .field("settings", &*self.settings.read())
            .field("deliveries", &self.delivery.deliveries.read().len())
            .finish_non_exhaustive()
    }
}

impl RestState {
    /// Current settings.
    pub fn settings(&self) -> RestSettings {
        self.settings.read().clone()
    }

    /// Replace the settings.
    pub fn set_settings(&self, settings: RestSettings) {
        *self.settings.write() = settings;
    }

    /// All recorded delivery attempts, oldest first.
    pub fn deliveries(&self) -> Vec<delivery::DeliveryRecord> {
        self.delivery.deliveries.read().clone()
    }

    /// Forget webhook state, deliveries and OAuth applications (settings and hooks are kept).
    pub fn clear(&self) {
        self.delivery.clear();
        self.oauth.clear();
    }

    /// Is the webhook verified (no pending `webhook.verify` handshake)?
    pub fn webhook_verified(&self, webhook_id: &str) -> bool {
        self.delivery.webhook_verified(webhook_id)
    }
}

/// The REST routes. Also starts (once per emulator) the background task that turns record
/// changes into webhook deliveries; call it from within a Tokio runtime.
pub fn router(emu: &Arc<Emulator>) -> Router<Arc<Emulator>> {
    start(emu);
    Router::new()
        .merge(
            webhooks::routes().route_layer(axum::middleware::from_fn_with_state(
                emu.clone(),
                rate_limit,
            )),
        )
        .merge(oauth::routes())
        .merge(oidc::routes())
        .merge(apps::routes())
        .merge(control::routes())
}

/// Count REST requests against the token's rate limit (GraphQL burst and cost limits do not
/// apply): `x-ratelimit-*` headers on every answer, `429` with `Retry-After` when exhausted.
async fn rate_limit(
    axum::extract::State(emu): axum::extract::State<Arc<Emulator>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = crate::bearer_token(req.headers()).map(str::to_string) else {
        return next.run(req).await;
    };
    match emu.check_rate_limit(&token, false) {
        Err(limited) => {
            let retry = limited.retry_after;
            let mut resp = ApiError::new(StatusCode::TOO_MANY_REQUESTS, limited.message.clone())
                .into_response();
            limited.status.apply(resp.headers_mut(), false);
            if let Ok(v) = retry.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
            resp
        }
        Ok(status) => {
            let mut resp = next.run(req).await;
            status.apply(resp.headers_mut(), false);
            resp
        }
    }
}

/// Start the change listener (idempotent) after registering the App Store's delivery hook.
/// Called by [`router`].
pub fn start(emu: &Arc<Emulator>) {
    if emu.rest.listener_started.swap(true, Ordering::SeqCst) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            emu.rest
                .delivery
                .register_hook(Arc::new(apps::AppStoreHook));
            let rx = emu.changes.subscribe();
            handle.spawn(delivery::listen(Arc::downgrade(emu), rx));
        }
        Err(_) => {
            emu.rest.listener_started.store(false, Ordering::SeqCst);
            tracing::warn!("no Tokio runtime: webhook delivery listener not started");
        }
    }
}
