//! The Webhooks REST API (`/v1/webhooks`) and the Webhook Policies REST API
//! (`/v1/webhook_policies`). Only administrators may use them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::common::{admin_auth, find_record, rec_bool, rec_seq, rec_str, ApiError};
use super::delivery::{self, webhook_event, WebhookState};
use super::events;
use crate::policy::{self, JwtAlg};
use crate::{Emulator, Record};

/// Maximum size of a webhook description in bytes (64 KB).
pub const MAX_DESCRIPTION: usize = 64 * 1024;
/// Maximum length of `source`.
pub const MAX_SOURCE: usize = 30;
/// Maximum length of `sourceID`.
pub const MAX_SOURCE_ID: usize = 128;
/// Maximum size of a policy's `jwt_audience` in bytes (2 KB).
pub const MAX_AUDIENCE: usize = 2 * 1024;

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/v1/webhooks/enabled", get(list_enabled_webhooks))
        .route("/v1/webhooks/disabled", get(list_disabled_webhooks))
        .route(
            "/v1/webhooks/{id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route("/v1/webhooks/{id}/test", post(test_webhook))
        .route(
            "/v1/webhook_policies",
            get(list_policies).post(create_policy),
        )
        .route("/v1/webhook_policies/enabled", get(list_enabled_policies))
        .route("/v1/webhook_policies/disabled", get(list_disabled_policies))
        .route(
            "/v1/webhook_policies/{id}",
            get(get_policy).patch(update_policy).delete(delete_policy),
        )
}

// ---------------------------------------------------------------------------------------------
// JSON representations

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(key.into(), v.clone());
    }
}

/// The REST representation of a webhook record.
pub(crate) fn webhook_json(emu: &Emulator, rec: &Record) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec_seq(rec)));
    m.insert("nodeID".into(), json!(rec_str(rec, "id")));
    let event = webhook_event(rec);
    m.insert(
        "name".into(),
        json!(rec_str(rec, "name").or(event).unwrap_or_default()),
    );
    m.insert("event".into(), json!(event));
    m.insert("uri".into(), json!(rec_str(rec, "uri")));
    m.insert("disabled".into(), json!(rec_bool(rec, "disabled")));
    put_opt(&mut m, "description", rec.get("description"));
    put_opt(&mut m, "mail_exceptions_to", rec.get("mailExceptionsTo"));
    put_opt(&mut m, "source", rec.get("source"));
    put_opt(&mut m, "sourceID", rec.get("sourceID"));
    put_opt(
        &mut m,
        "app_offering_references",
        rec.get("appOfferingReferences"),
    );
    if let Some(pid) = rec_str(rec, "webhookPolicy") {
        if let Some(p) = emu.records.get(pid) {
            m.insert(
                "webhook_policy".into(),
                json!({"id": rec_seq(&p), "nodeID": pid, "name": rec_str(&p, "name")}),
            );
        }
    }
    m.insert(
        "openid_connect_discovery".into(),
        json!(rec_bool(rec, "openidConnectDiscovery")),
    );
    let id = rec_str(rec, "id").unwrap_or_default();
    if let Some(state) = emu.rest.delivery.webhooks.lock().get(id) {
        m.insert("verified".into(), json!(state.pending_code.is_none()));
        if let Some(e) = &state.last_error {
            m.insert("last_error".into(), json!(e));
        }
    } else {
        m.insert("verified".into(), json!(true));
    }
    put_opt(&mut m, "created_at", rec.get("createdAt"));
    put_opt(&mut m, "updated_at", rec.get("updatedAt"));
    Value::Object(m)
}

/// The fields of a webhook in collections (those of the list example of Xurrent's Webhooks API).
const WEBHOOK_COLLECTION_FIELDS: &[&str] = &[
    "id",
    "name",
    "event",
    "uri",
    "disabled",
    "last_error",
    "created_at",
    "updated_at",
];

/// The fields of a webhook policy in collections (as Xurrent lists them).
const POLICY_COLLECTION_FIELDS: &[&str] = &["id", "name", "created_at", "updated_at"];

/// The REST representation of a webhook policy record (never with the key).
pub(crate) fn policy_json(rec: &Record) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec_seq(rec)));
    m.insert("nodeID".into(), json!(rec_str(rec, "id")));
    m.insert("name".into(), json!(rec_str(rec, "name")));
    m.insert("jwt_alg".into(), json!(rec_str(rec, "jwtAlg")));
    put_opt(&mut m, "jwt_audience", rec.get("jwtAudience"));
    put_opt(&mut m, "jwt_claim_expires_in", rec.get("jwtClaimExpiresIn"));
    m.insert("disabled".into(), json!(rec_bool(rec, "disabled")));
    put_opt(&mut m, "created_at", rec.get("createdAt"));
    put_opt(&mut m, "updated_at", rec.get("updatedAt"));
    Value::Object(m)
}

/// Paginate a list the Xurrent REST way (`page`, `per_page` ≤ 100, default 25) with the
/// `X-Pagination-*` and `Link` headers.
fn paginate(
    emu: &Emulator,
    path: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let items = select_fields(items, q.get("fields").map(String::as_str));
    let per_page = match q.get("per_page") {
        None => 25,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_request("per_page must be between 1 and 100"))?,
    };
    let page = match q.get("page") {
        None => 1,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_request("page must be a positive integer"))?,
    };
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = Json(Value::Array(slice)).into_response();
    let h = resp.headers_mut();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("x-pagination-per-page", per_page.to_string());
    set("x-pagination-current-page", page.to_string());
    set("x-pagination-total-pages", pages.to_string());
    set("x-pagination-total-entries", total.to_string());
    let url = |p: usize| format!("<{}{path}?page={p}&per_page={per_page}>", emu.base_url);
    let mut links = vec![format!("{}; rel=\"first\"", url(1))];
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
    }
    if page < pages {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
    }
    links.push(format!("{}; rel=\"last\"", url(pages)));
    set("link", links.join(", "));
    Ok(resp)
}

/// Keep only the fields named by `?fields=a,b` (unknown names are ignored); all without it.
fn select_fields(items: Vec<Value>, fields: Option<&str>) -> Vec<Value> {
    let Some(fields) = fields else { return items };
    let wanted: Vec<&str> = fields
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(k, _)| wanted.contains(&k.as_str()))
                    .collect(),
            ),
            other => other,
        })
        .collect()
}

/// A `201 Created` answer with `Location: <base>/v1/<collection>/<id>`.
fn created(emu: &Emulator, collection: &str, body: Value) -> Response {
    let location = format!(
        "{}/v1/{collection}/{}",
        emu.base_url,
        body.get("id").and_then(Value::as_u64).unwrap_or_default()
    );
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!("Invalid JSON: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    All,
    Enabled,
    Disabled,
}

/// List the records of `typename` in the caller's account (administrators only), keep those
/// the predefined filter selects, render each with `render`, and paginate.
fn list_filtered(
    emu: &Emulator,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    typename: &str,
    filter: Filter,
    path: &str,
    render: impl Fn(&crate::Record) -> Value,
) -> Result<Response, ApiError> {
    let auth = admin_auth(emu, headers)?;
    let items: Vec<Value> = emu
        .records
        .list(&auth.account, typename)
        .iter()
        .filter(|r| match filter {
            Filter::All => true,
            Filter::Enabled => !rec_bool(r, "disabled"),
            Filter::Disabled => rec_bool(r, "disabled"),
        })
        .map(render)
        .collect();
    paginate(emu, path, items, q)
}

fn list_webhooks_filtered(
    emu: &Emulator,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    filter: Filter,
    path: &str,
) -> Result<Response, ApiError> {
    // Collections show Xurrent's collection fields unless `?fields=` asks for others.
    let mut q = q.clone();
    q.entry("fields".into())
        .or_insert_with(|| WEBHOOK_COLLECTION_FIELDS.join(","));
    list_filtered(emu, headers, &q, "Webhook", filter, path, |w| {
        webhook_json(emu, w)
    })
}

async fn list_webhooks(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    list_webhooks_filtered(&emu, &headers, &q, Filter::All, "/v1/webhooks")
}

async fn list_enabled_webhooks(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    list_webhooks_filtered(&emu, &headers, &q, Filter::Enabled, "/v1/webhooks/enabled")
}

async fn list_disabled_webhooks(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    list_webhooks_filtered(
        &emu,
        &headers,
        &q,
        Filter::Disabled,
        "/v1/webhooks/disabled",
    )
}

async fn get_webhook(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec = find_record(&emu, &auth.account, "Webhook", &id).ok_or_else(ApiError::not_found)?;
    Ok(Json(webhook_json(&emu, &rec)))
}

fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<Value>, ApiError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Value::Null)),
        Some(Value::String(s)) => Ok(Some(Value::String(s.clone()))),
        Some(_) => Err(ApiError::invalid(format!(
            "Validation failed: {key} must be a string"
        ))),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid(format!(
            "Validation failed: {key} must be a boolean"
        ))),
    }
}

fn valid_uri(uri: &str) -> bool {
    url::Url::parse(uri)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .unwrap_or(false)
}

/// Validate webhook input (REST field names) and turn it into record fields.
/// `create` requires `event` and `uri`.
fn webhook_fields(
    emu: &Emulator,
    account: &str,
    input: &Map<String, Value>,
    create: bool,
) -> Result<Record, ApiError> {
    let mut f = Record::new();
    let event = match input.get("event") {
        None | Some(Value::Null) if create => {
            return Err(ApiError::invalid("Validation failed: event can't be blank"))
        }
        None => None,
        Some(Value::String(s)) => Some(events::normalize_event(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "Validation failed: event '{s}' is not included in the list of valid events"
            ))
        })?),
        Some(_) => {
            return Err(ApiError::invalid(
                "Validation failed: event must be a string",
            ))
        }
    };
    if let Some(e) = event {
        f.insert("event".into(), json!(events::graphql_event_name(e)));
    }
    match input.get("uri") {
        None | Some(Value::Null) if create => {
            return Err(ApiError::invalid("Validation failed: uri can't be blank"))
        }
        None => {}
        Some(Value::String(s)) if valid_uri(s) => {
            f.insert("uri".into(), json!(s));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "Validation failed: uri must be an absolute http(s) URI",
            ))
        }
    }
    match opt_string(input, "name")? {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            f.insert("name".into(), json!(s));
        }
        Some(_) | None if create => {
            f.insert("name".into(), json!(event.unwrap_or_default()));
        }
        Some(_) => {
            // blank name on update: back to the event name
            let e = event.map(str::to_string);
            f.insert("name".into(), json!(e));
        }
        None => {}
    }
    if let Some(d) = opt_bool(input, "disabled")? {
        f.insert("disabled".into(), json!(d));
    } else if create {
        f.insert("disabled".into(), json!(false));
    }
    if let Some(v) = opt_string(input, "description")? {
        if v.as_str().is_some_and(|s| s.len() > MAX_DESCRIPTION) {
            return Err(ApiError::invalid(
                "Validation failed: description is too long (maximum is 64KB)",
            ));
        }
        f.insert("description".into(), v);
    }
    if let Some(v) = opt_string(input, "mail_exceptions_to")? {
        if let Some(s) = v.as_str() {
            for addr in s.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                let ok = addr
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !addr.contains(' '));
                if !ok {
                    return Err(ApiError::invalid(format!(
                        "Validation failed: mail_exceptions_to contains an invalid email address '{addr}'"
                    )));
                }
            }
        }
        f.insert("mailExceptionsTo".into(), v);
    }
    for (key, field, max) in [
        ("source", "source", MAX_SOURCE),
        ("sourceID", "sourceID", MAX_SOURCE_ID),
    ] {
        if let Some(v) = opt_string(input, key)? {
            if v.as_str().is_some_and(|s| s.chars().count() > max) {
                return Err(ApiError::invalid(format!(
                    "Validation failed: {key} is too long (maximum is {max} characters)"
                )));
            }
            f.insert(field.into(), v);
        }
    }
    match input.get("app_offering_references") {
        None => {}
        Some(Value::Null) => {
            f.insert("appOfferingReferences".into(), json!([]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            f.insert("appOfferingReferences".into(), Value::Array(a.clone()));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "Validation failed: app_offering_references must be an array of strings",
            ))
        }
    }
    let policy = input
        .get("webhook_policy_id")
        .or_else(|| input.get("webhook_policy"));
    match policy {
        None => {}
        Some(Value::Null) => {
            f.insert("webhookPolicy".into(), Value::Null);
        }
        Some(v) => {
            let id = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                Value::Object(o) => match o.get("id") {
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::String(s)) => s.clone(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            let rec = find_record(emu, account, "WebhookPolicy", &id).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Validation failed: webhook_policy '{id}' does not exist"
                ))
            })?;
            f.insert("webhookPolicy".into(), json!(rec_str(&rec, "id")));
        }
    }
    if let Some(b) = opt_bool(input, "openid_connect_discovery")? {
        f.insert("openidConnectDiscovery".into(), json!(b));
    } else if create {
        f.insert("openidConnectDiscovery".into(), json!(false));
    }
    Ok(f)
}

async fn create_webhook(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let input = parse_body(&body)?;
    let fields = webhook_fields(&emu, &auth.account, &input, true)?;
    // The change listener sees the creation before any later change and starts the
    // `webhook.verify` handshake, so no event reaches the webhook before it is verified.
    let rec = emu.create_record(&auth.account, "Webhook", fields, auth.person_id.clone());
    // Report the webhook as unverified right away. `or_insert_with` keeps the state when the
    // listener already started the handshake (an empty code never matches a callback).
    if let Some(id) = rec_str(&rec, "id") {
        emu.rest
            .delivery
            .webhooks
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| WebhookState {
                pending_code: Some(String::new()),
                ..Default::default()
            });
    }
    Ok(created(&emu, "webhooks", webhook_json(&emu, &rec)))
}

async fn update_webhook(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec = find_record(&emu, &auth.account, "Webhook", &id).ok_or_else(ApiError::not_found)?;
    let input = parse_body(&body)?;
    let mut fields = webhook_fields(&emu, &auth.account, &input, false)?;
    // A blank name falls back to the (possibly new) event.
    if fields.get("name").is_some_and(Value::is_null) {
        let ev = fields
            .get("event")
            .and_then(Value::as_str)
            .and_then(events::normalize_event)
            .or_else(|| webhook_event(&rec));
        fields.insert("name".into(), json!(ev));
    }
    let node_id = rec_str(&rec, "id").unwrap_or_default().to_string();
    let after = emu
        .update_record(&node_id, fields, auth.person_id.clone())
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(webhook_json(&emu, &after)))
}

async fn delete_webhook(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec = find_record(&emu, &auth.account, "Webhook", &id).ok_or_else(ApiError::not_found)?;
    emu.delete_record(
        rec_str(&rec, "id").unwrap_or_default(),
        auth.person_id.clone(),
    )
    .ok_or_else(ApiError::not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_webhook(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec = find_record(&emu, &auth.account, "Webhook", &id).ok_or_else(ApiError::not_found)?;
    let event = webhook_event(&rec).unwrap_or("automation_rule");
    let typename = event
        .split('.')
        .next()
        .map(type_for_noun)
        .unwrap_or("Webhook");
    let object_node = crate::encode_node_id(&auth.account, typename, 12345);
    let message = delivery::build_message(
        &emu,
        &rec,
        event,
        Some((12345, &object_node)),
        auth.person_id.as_deref(),
        json!({}),
    );
    let mut fake = Record::new();
    fake.insert("_account".into(), json!(auth.account));
    fake.insert("__typename".into(), json!(typename));
    fake.insert("_seq".into(), json!(12345));
    let link = delivery::object_link(&emu, &fake);
    delivery::spawn_delivery(emu.clone(), rec, event.to_string(), message, link, None);
    Ok(StatusCode::NO_CONTENT)
}

fn type_for_noun(noun: &str) -> &'static str {
    const TYPES: &[&str] = &[
        "AppInstance",
        "Broadcast",
        "ConfigurationItem",
        "Contract",
        "FirstLineSupportAgreement",
        "KnowledgeArticle",
        "Organization",
        "OutOfOfficePeriod",
        "Person",
        "Problem",
        "Product",
        "Project",
        "ProjectTask",
        "Release",
        "Request",
        "Risk",
        "Service",
        "ServiceInstance",
        "ServiceOffering",
        "ServiceLevelAgreement",
        "Task",
        "Team",
        "TimeEntry",
        "Workflow",
    ];
    TYPES
        .iter()
        .copied()
        .find(|t| events::noun_for_type(t) == Some(noun))
        .unwrap_or("Webhook")
}

// ---------------------------------------------------------------------------------------------
// Webhook policies

fn list_policies_filtered(
    emu: &Emulator,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    filter: Filter,
    path: &str,
) -> Result<Response, ApiError> {
    // Collections show Xurrent's collection fields unless `?fields=` asks for others.
    let mut q = q.clone();
    q.entry("fields".into())
        .or_insert_with(|| POLICY_COLLECTION_FIELDS.join(","));
    list_filtered(
        emu,
        headers,
        &q,
        policy::TYPENAME,
        filter,
        path,
        policy_json,
    )
}

async fn list_policies(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    list_policies_filtered(&emu, &headers, &q, Filter::All, "/v1/webhook_policies")
}

async fn list_enabled_policies(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    list_policies_filtered(
        &emu,
        &headers,
        &q,
        Filter::Enabled,
        "/v1/webhook_policies/enabled",
    )
}

async fn list_disabled_policies(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    list_policies_filtered(
        &emu,
        &headers,
        &q,
        Filter::Disabled,
        "/v1/webhook_policies/disabled",
    )
}

async fn get_policy(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec =
        find_record(&emu, &auth.account, policy::TYPENAME, &id).ok_or_else(ApiError::not_found)?;
    Ok(Json(policy_json(&rec)))
}

/// Validate the mutable policy fields (audience, expiry, disabled).
fn policy_fields(input: &Map<String, Value>, f: &mut Record) -> Result<(), ApiError> {
    if let Some(v) = opt_string(input, "jwt_audience")? {
        if v.as_str().is_some_and(|s| s.len() > MAX_AUDIENCE) {
            return Err(ApiError::invalid(
                "Validation failed: jwt_audience is too long (maximum is 2KB)",
            ));
        }
        f.insert("jwtAudience".into(), v);
    }
    match input.get("jwt_claim_expires_in") {
        None => {}
        Some(Value::Null) => {
            f.insert("jwtClaimExpiresIn".into(), Value::Null);
        }
        Some(v) => {
            let secs = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Validation failed: jwt_claim_expires_in must be a number of seconds",
                    )
                })?;
            f.insert("jwtClaimExpiresIn".into(), json!(secs));
        }
    }
    if let Some(d) = opt_bool(input, "disabled")? {
        f.insert("disabled".into(), json!(d));
    }
    Ok(())
}

async fn create_policy(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let input = parse_body(&body)?;
    let alg = match input.get("jwt_alg") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Validation failed: jwt_alg can't be blank",
            ))
        }
        Some(Value::String(s)) => JwtAlg::parse(s).map_err(|_| {
            ApiError::invalid(format!(
                "Validation failed: jwt_alg '{s}' is not included in the list"
            ))
        })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "Validation failed: jwt_alg must be a string",
            ))
        }
    };
    let mut fields = Record::new();
    policy_fields(&input, &mut fields)?;
    let (rec, key) = policy::create(&emu, &auth.account, alg, fields, auth.person_id)
        .await
        .map_err(|e| ApiError::invalid(format!("Validation failed: {e}")))?;
    let mut out = policy_json(&rec);
    if let Some(obj) = out.as_object_mut() {
        obj.insert("public_key_pem".into(), json!(key.public_key_pem));
    }
    Ok(created(&emu, "webhook_policies", out))
}

async fn update_policy(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec =
        find_record(&emu, &auth.account, policy::TYPENAME, &id).ok_or_else(ApiError::not_found)?;
    let input = parse_body(&body)?;
    if let Some(v) = input.get("jwt_alg") {
        let same = v
            .as_str()
            .and_then(|s| JwtAlg::parse(s).ok())
            .map(|a| Some(a.as_str()) == rec_str(&rec, "jwtAlg"))
            .unwrap_or(false);
        if !same {
            return Err(ApiError::invalid(
                "Validation failed: jwt_alg cannot be changed; create a new policy",
            ));
        }
    }
    let mut fields = Record::new();
    policy_fields(&input, &mut fields)?;
    let after = emu
        .update_record(
            rec_str(&rec, "id").unwrap_or_default(),
            fields,
            auth.person_id,
        )
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(policy_json(&after)))
}

async fn delete_policy(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = admin_auth(&emu, &headers)?;
    let rec =
        find_record(&emu, &auth.account, policy::TYPENAME, &id).ok_or_else(ApiError::not_found)?;
    emu.delete_record(rec_str(&rec, "id").unwrap_or_default(), auth.person_id)
        .ok_or_else(ApiError::not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_validation() {
        assert!(valid_uri("https://example.com/hook"));
        assert!(valid_uri("http://127.0.0.1:9/x"));
        assert!(!valid_uri("ftp://example.com"));
        assert!(!valid_uri("not a uri"));
    }

    #[test]
    fn noun_to_type() {
        assert_eq!(type_for_noun("ci"), "ConfigurationItem");
        assert_eq!(type_for_noun("request"), "Request");
        assert_eq!(type_for_noun("automation_rule"), "Webhook");
    }
}
