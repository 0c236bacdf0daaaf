//! The `/_emulator/...` control and inspection API (no authentication: a loopback tool).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{find_record, rec_str, ApiError, RestSettings};
use super::delivery::{self, DeliveryRecord};
use crate::{Emulator, RateLimits, TokenInfo};

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/_emulator/info", get(info))
        .route("/_emulator/seed", post(seed))
        .route("/_emulator/accounts", post(create_account))
        .route(
            "/_emulator/deliveries",
            get(list_deliveries).delete(clear_deliveries),
        )
        .route("/_emulator/deliveries/{id}/resend", post(resend))
        .route("/_emulator/reset", post(reset))
        .route(
            "/_emulator/rate_limits",
            get(get_rate_limits).put(put_rate_limits),
        )
        .route("/_emulator/settings", get(get_settings).put(put_settings))
        .route(
            "/accounts/{account}/webhooks/{id}/verify",
            get(verify_webhook).post(verify_webhook),
        )
}

async fn info(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let account = emu.config.account.clone();
    let accounts: Vec<Value> = emu
        .accounts
        .read()
        .values()
        .map(|a| json!({"id": a.id, "name": a.name, "url": emu.account_url(&a.id)}))
        .collect();
    Json(json!({
        "graphql_url": format!("{}/graphql", emu.base_url),
        "oauth_token_url": format!("{}/token", emu.base_url),
        "oauth_authorize_url": format!("{}/authorize", emu.base_url),
        "introspect_url": format!("{}/introspect", emu.base_url),
        "rest_url": format!("{}/v1", emu.base_url),
        "base_url": emu.base_url,
        "account": account,
        "account_url": emu.account_url(&account),
        "token": emu.config.token,
        "accounts": accounts,
    }))
}

async fn seed(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("seed body must be UTF-8 JSON or YAML"))?;
    let doc = crate::parse_seed_text(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let account = q
        .get("account")
        .cloned()
        .or_else(|| {
            doc.get("account")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| emu.config.account.clone());
    emu.ensure_account(&account, &account);
    let summary = emu
        .seed_from_value(&account, &doc)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(
        json!({"account": account, "created": summary.created, "refs": summary.refs}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccountInput {
    id: String,
    name: Option<String>,
}

async fn create_account(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: AccountInput =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if input.id.is_empty()
        || !input
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid(
            "id must be non-empty and contain only letters, digits, '-' and '_'",
        ));
    }
    let name = input.name.unwrap_or_else(|| input.id.clone());
    let a = emu.ensure_account(&input.id, &name);
    Ok(Json(json!({
        "id": a.id, "name": a.name, "admin_person_id": a.admin_person_id,
        "url": emu.account_url(&a.id),
    })))
}

async fn list_deliveries(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Vec<DeliveryRecord>> {
    let list = emu
        .rest
        .deliveries()
        .into_iter()
        .filter(|d| {
            q.get("webhook").is_none_or(|w| {
                d.webhook_node_id == *w || w.parse::<u64>().ok() == Some(d.webhook_id)
            })
        })
        .filter(|d| q.get("event").is_none_or(|e| d.event == *e))
        .filter(|d| q.get("account").is_none_or(|a| d.account == *a))
        .filter(|d| q.get("delivery").is_none_or(|x| d.delivery == *x))
        .collect();
    Json(list)
}

async fn clear_deliveries(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.rest.delivery.deliveries.write().clear();
    StatusCode::NO_CONTENT
}

async fn resend(
    State(emu): State<Arc<Emulator>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    let d = emu
        .rest
        .deliveries()
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(ApiError::not_found)?;
    let webhook = emu
        .records
        .get(&d.webhook_node_id)
        .ok_or_else(ApiError::not_found)?;
    let link = d.request_headers.get("link").cloned().unwrap_or_default();
    delivery::spawn_delivery(
        emu.clone(),
        webhook,
        d.event,
        d.message,
        link,
        Some(d.delivery),
    );
    Ok(StatusCode::ACCEPTED)
}

/// Reset the emulator to its start state: all accounts, records, tokens, uploaded attachments,
/// OAuth applications, webhook state and deliveries are dropped; the default account, its token, the configured
/// rate limits and the seed file are applied again. Settings are kept.
pub fn reset_emulator(emu: &Emulator) -> Result<(), crate::EmulatorError> {
    let ids: Vec<String> = emu.accounts.read().keys().cloned().collect();
    for id in &ids {
        emu.records.clear_account(id);
        emu.tokens.revoke_account(id);
    }
    emu.accounts.write().clear();
    emu.attachments.clear();
    emu.rest.clear();
    emu.set_rate_limits(emu.config.rate_limits.clone());
    let account = emu.ensure_account(&emu.config.account, &emu.config.account);
    emu.tokens.insert(
        emu.config.token.clone(),
        TokenInfo {
            account: account.id.clone(),
            person_id: Some(account.admin_person_id.clone()),
            admin: true,
            scopes: Vec::new(),
            expires_at: None,
            client_id: None,
        },
    );
    if let Some(seed) = emu.config.seed.clone() {
        emu.seed_from_file(&account.id, &seed)?;
    }
    Ok(())
}

async fn reset(State(emu): State<Arc<Emulator>>) -> Result<StatusCode, ApiError> {
    reset_emulator(&emu)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_rate_limits(State(emu): State<Arc<Emulator>>) -> Json<RateLimits> {
    Json(emu.rate_limits())
}

async fn put_rate_limits(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<RateLimits>, ApiError> {
    // Start from the current limits so that a partial body changes only what it names.
    let mut current = serde_json::to_value(emu.rate_limits())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let patch: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("body must be a JSON object"));
    };
    if let Some(obj) = current.as_object_mut() {
        obj.extend(patch);
    }
    let limits: RateLimits =
        serde_json::from_value(current).map_err(|e| ApiError::invalid(e.to_string()))?;
    emu.set_rate_limits(limits.clone());
    Ok(Json(limits))
}

async fn get_settings(State(emu): State<Arc<Emulator>>) -> Json<RestSettings> {
    Json(emu.rest.settings())
}

async fn put_settings(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<RestSettings>, ApiError> {
    let mut current = serde_json::to_value(emu.rest.settings())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let patch: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("body must be a JSON object"));
    };
    if let Some(obj) = current.as_object_mut() {
        obj.extend(patch);
    }
    let settings: RestSettings =
        serde_json::from_value(current).map_err(|e| ApiError::invalid(e.to_string()))?;
    emu.rest.set_settings(settings.clone());
    Ok(Json(settings))
}

/// The `webhook.verify` callback (`GET` or `POST`): the code must be the pending one and not
/// expired (`422` otherwise); an unknown account or webhook gets `404`.
async fn verify_webhook(
    State(emu): State<Arc<Emulator>>,
    Path((account, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if id.parse::<u64>().is_err() {
        return Err(ApiError::not_found());
    }
    let webhook = find_record(&emu, &account, "Webhook", &id).ok_or_else(ApiError::not_found)?;
    let node_id = rec_str(&webhook, "id").unwrap_or_default().to_string();
    let code = q.get("code").cloned().unwrap_or_default();
    let mut states = emu.rest.delivery.webhooks.lock();
    let state = states.entry(node_id.clone()).or_default();
    match &state.pending_code {
        None => Ok(Json(json!({"message": "Webhook already verified"}))),
        Some(expected) if !code.is_empty() && *expected == code => {
            if state
                .pending_expires_at
                .is_some_and(|exp| chrono::Utc::now().timestamp() > exp)
            {
                return Err(ApiError::invalid("Verification code expired"));
            }
            state.pending_code = None;
            state.pending_expires_at = None;
            tracing::info!(webhook = %node_id, "webhook verified");
            Ok(Json(json!({
                "message": format!("Webhook '{}' verified", rec_str(&webhook, "name").unwrap_or_default())
            })))
        }
        Some(_) => Err(ApiError::invalid("Invalid verification code")),
    }
}
