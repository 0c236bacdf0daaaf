//! What every module of the REST half shares: the error answer, administrator authentication,
//! record field accessors and the runtime settings. Depends only on the record store.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
    /// How long the `webhook.verify` callback URL stays valid, in seconds (its `expires_at`).
    pub verification_expires_in: u64,
}

impl Default for RestSettings {
    fn default() -> Self {
        RestSettings {
            delivery_backoff_ms: 1000,
            max_retries: 10,
            disable_after_failures: 20,
            delivery_timeout_ms: 10_000,
            token_expires_in: 3600,
            verification_expires_in: 86_400,
        }
    }
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
