//! OpenID Connect discovery for webhook policies.
//!
//! A webhook with `openid_connect_discovery` is signed with issuer
//! `<base_url>/accounts/<account>/webhook_policies/<policy name>` (see [`crate::policy`]); its
//! discovery document is at `<issuer>/.well-known/openid-configuration` and the JWKS at
//! `<issuer>/jwks`, on the issuer's host. The account URL `<base_url>/accounts/<account>` also
//! serves a discovery document whose JWKS holds the keys of every policy of the account (an
//! emulator convenience). Served over plain http (the real service uses https).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::common::{rec_bool, rec_str, ApiError};
use crate::{policy, Emulator, Record};

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route(
            "/accounts/{account}/webhook_policies/{name}/.well-known/openid-configuration",
            get(policy_discovery),
        )
        .route(
            "/accounts/{account}/webhook_policies/{name}/jwks",
            get(policy_jwks),
        )
        .route(
            "/accounts/{account}/.well-known/openid-configuration",
            get(account_discovery),
        )
        .route("/accounts/{account}/jwks", get(account_jwks))
}

fn discovery(issuer: &str, algs: Vec<String>) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "id_token_signing_alg_values_supported": algs,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
    })
}

/// The policy an OIDC issuer names: `<account URL>/webhook_policies/<policy name>`.
fn policy(emu: &Emulator, account: &str, name: &str) -> Result<Record, ApiError> {
    if emu.account(account).is_none() {
        return Err(ApiError::not_found());
    }
    policy::find_by_name(emu, account, name).ok_or_else(ApiError::not_found)
}

fn jwk_of(emu: &Emulator, policy: &Record) -> Option<Value> {
    if rec_bool(policy, "disabled") {
        return None;
    }
    let key = policy::ensure_key(emu, policy)?;
    key.jwk(policy::key_id(policy))
}

async fn policy_discovery(
    State(emu): State<Arc<Emulator>>,
    Path((account, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = policy(&emu, &account, &name)?;
    let alg = rec_str(&p, "jwtAlg")
        .unwrap_or("es256")
        .to_ascii_uppercase();
    Ok(Json(discovery(&policy::oidc_issuer(&emu, &p), vec![alg])))
}

async fn policy_jwks(
    State(emu): State<Arc<Emulator>>,
    Path((account, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = policy(&emu, &account, &name)?;
    let keys: Vec<Value> = jwk_of(&emu, &p).into_iter().collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn account_discovery(
    State(emu): State<Arc<Emulator>>,
    Path(account): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if emu.account(&account).is_none() {
        return Err(ApiError::not_found());
    }
    let mut algs: Vec<String> = emu
        .records
        .list(&account, "WebhookPolicy")
        .iter()
        .filter_map(|p| rec_str(p, "jwtAlg").map(str::to_ascii_uppercase))
        .filter(|a| a.starts_with("RS") || a.starts_with("ES"))
        .collect();
    algs.sort();
    algs.dedup();
    Ok(Json(discovery(
        &policy::default_issuer(&emu, &account),
        algs,
    )))
}

async fn account_jwks(
    State(emu): State<Arc<Emulator>>,
    Path(account): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if emu.account(&account).is_none() {
        return Err(ApiError::not_found());
    }
    let keys: Vec<Value> = emu
        .records
        .list(&account, "WebhookPolicy")
        .iter()
        .filter_map(|p| jwk_of(&emu, p))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}
