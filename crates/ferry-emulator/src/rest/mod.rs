//! The REST half of the emulator: OAuth (`/token`, `/introspect`, `/authorize`), the Webhooks
//! and Webhook Policies REST API (`/v1/webhooks`, `/v1/webhook_policies`), webhook delivery
//! (signed JWT bodies, verification handshake, retries, auto-disable), OpenID Connect discovery,
//! the App Store flows and the `/_emulator/...` control API.
//!
//! All public objects (webhooks, policies, app offerings, app instances) live in the shared
//! [`RecordStore`](crate::RecordStore) under their GraphQL type names, so GraphQL shows the same
//! objects. Private material is kept in record fields whose names start with `_` (never exposed
//! by GraphQL or REST) or in [`RestState`].

pub mod apps;
pub mod control;
pub mod delivery;
pub mod events;
pub mod keys;
pub mod oauth;
pub mod oidc;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Emulator, Record, TokenInfo};

/// Tunable behaviour of the REST half (changed at runtime with `PUT /_emulator/settings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestSettings {
    /// Base interval of delivery retries in milliseconds; retry `n` waits `base * 2^(n-1)`.
    pub delivery_backoff_ms: u64,
    /// Maximum number of retries of one failed delivery (Xurrent: 10).
    pub max_retries: u32,
    /// Consecutive failed attempts after which a webhook is disabled (Xurrent: 20).
    pub disable_after_failures: u32,
    /// Timeout of one delivery request in milliseconds.
    pub delivery_timeout_ms: u64,
    /// Lifetime of OAuth access tokens in seconds.
    pub token_expires_in: u64,
}

impl Default for RestSettings {
    fn default() -> Self {
        RestSettings {
            delivery_backoff_ms: 1000,
            max_retries: 10,
            disable_after_failures: 20,
            delivery_timeout_ms: 10_000,
            token_expires_in: 3600,
        }
    }
}

/// Per-webhook delivery state that is not part of the public record.
#[derive(Clone, Debug, Default)]
pub(crate) struct WebhookState {
    /// Code of the pending verification; `None` once verified.
    pub pending_code: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Last delivery error (status line or network error).
    pub last_error: Option<String>,
}

/// Private state of the REST half, stored in [`Emulator::rest`].
#[derive(Default)]
pub struct RestState {
    pub(crate) settings: RwLock<RestSettings>,
    pub(crate) webhooks: Mutex<HashMap<String, WebhookState>>,
    pub(crate) deliveries: RwLock<Vec<delivery::DeliveryRecord>>,
    pub(crate) next_delivery: AtomicU64,
    pub(crate) oauth: oauth::OauthState,
    pub(crate) key_lock: Mutex<()>,
    listener_started: AtomicBool,
    client: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for RestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestState")
            .field("settings", &*self.settings.read())
            .field("deliveries", &self.deliveries.read().len())
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
        self.deliveries.read().clone()
    }

    /// Forget webhook state, deliveries and OAuth applications (settings are kept).
    pub fn clear(&self) {
        self.webhooks.lock().clear();
        self.deliveries.write().clear();
        self.oauth.clear();
    }

    pub(crate) fn client(&self) -> reqwest::Client {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(delivery::USER_AGENT)
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    /// Is the webhook verified (no pending `webhook.verify` handshake)?
    pub fn webhook_verified(&self, webhook_id: &str) -> bool {
        self.webhooks
            .lock()
            .get(webhook_id)
            .map(|s| s.pending_code.is_none())
            .unwrap_or(true)
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

/// Start the change listener (idempotent). Called by [`router`].
pub fn start(emu: &Arc<Emulator>) {
    if emu.rest.listener_started.swap(true, Ordering::SeqCst) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let rx = emu.changes.subscribe();
            handle.spawn(delivery::listen(Arc::downgrade(emu), rx));
        }
        Err(_) => {
            emu.rest.listener_started.store(false, Ordering::SeqCst);
            tracing::warn!("no Tokio runtime: webhook delivery listener not started");
        }
    }
}

/// Hook for records created outside the REST half (GraphQL mutations): gives a new
/// `WebhookPolicy` its key material before it is stored, so that `webhookPolicyCreate` can
/// answer `publicKeyPem`. Other types are left alone. Without this hook the change listener
/// adds the key shortly after creation, and the public key is not returned through GraphQL.
pub fn prepare_record(typename: &str, fields: &mut Record) {
    if typename != "WebhookPolicy" || fields.contains_key("_signingKey") {
        return;
    }
    let alg = fields
        .get("jwtAlg")
        .and_then(Value::as_str)
        .unwrap_or("es256")
        .to_string();
    match keys::JwtAlg::parse(&alg).and_then(keys::PolicyKey::generate) {
        Ok(key) => {
            fields.insert("jwtAlg".into(), Value::String(key.alg.as_str().into()));
            fields.extend(key.to_fields());
        }
        Err(e) => tracing::warn!(alg = %alg, error = %e, "cannot generate webhook policy key"),
    }
}

/// The URL of an account in the emulator: `<base_url>/accounts/<account>`. It is the `account`
/// of webhook messages and the default JWT issuer.
pub fn account_url(emu: &Emulator, account: &str) -> String {
    format!("{}/accounts/{}", emu.base_url, account)
}

/// An error answer of the REST API: `{"message": "..."}` with a status.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the body.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }
    /// 422 with a validation message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

/// Authenticate a REST request and require the administrator role (401 / 403 otherwise).
pub(crate) fn admin_auth(emu: &Emulator, headers: &HeaderMap) -> Result<TokenInfo, ApiError> {
    let info = emu
        .authenticate(headers)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if !info.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden: only users with the administrator role are authorized to use this API",
        ));
    }
    Ok(info)
}

/// A string field of a record.
pub(crate) fn rec_str<'a>(rec: &'a Record, key: &str) -> Option<&'a str> {
    rec.get(key).and_then(Value::as_str)
}

/// The numeric id (`_seq`) of a record.
pub(crate) fn rec_seq(rec: &Record) -> u64 {
    rec.get("_seq").and_then(Value::as_u64).unwrap_or_default()
}

/// A boolean field of a record (missing or null is false).
pub(crate) fn rec_bool(rec: &Record, key: &str) -> bool {
    rec.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Find a record of `typename` in `account` by REST id (the numeric id) or node id.
pub(crate) fn find_record(
    emu: &Emulator,
    account: &str,
    typename: &str,
    id: &str,
) -> Option<Record> {
    let rec = match id.parse::<u64>() {
        Ok(seq) => emu.records.get_by_seq(account, typename, seq),
        Err(_) => emu.records.get(id),
    }?;
    (rec_str(&rec, "_account") == Some(account) && rec_str(&rec, "__typename") == Some(typename))
        .then_some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_record_adds_policy_keys_only() {
        let mut f = Record::new();
        f.insert("jwtAlg".into(), Value::String("es256".into()));
        prepare_record("WebhookPolicy", &mut f);
        assert!(f["publicKeyPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(keys::PolicyKey::from_fields(&f).is_some());
        let mut other = Record::new();
        prepare_record("Webhook", &mut other);
        assert!(other.is_empty());
    }
}
