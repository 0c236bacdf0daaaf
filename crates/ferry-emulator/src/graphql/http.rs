//! HTTP endpoint of the GraphQL API.

use std::sync::Arc;

use async_graphql_parser::types::{ExecutableDocument, Selection};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::coerce::{coerce_document, coerce_variables};
use super::resolve::Ctx;
use super::state::cache_key;
use super::validate;
use crate::{bearer_token, Emulator};

#[derive(Deserialize)]
struct GqlBody {
    query: Option<String>,
    #[serde(default)]
    variables: Option<Json>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

/// Maximum number of cached introspection answers.
const INTROSPECTION_CACHE_MAX: usize = 32;

/// Whether every operation of the document selects only introspection fields
/// (`__schema`, `__type`, `__typename`) at the top level.
fn introspection_only(doc: &ExecutableDocument) -> bool {
    doc.operations.iter().all(|(_, op)| {
        op.node
            .selection_set
            .node
            .items
            .iter()
            .all(|s| match &s.node {
                Selection::Field(f) => f.node.name.node.starts_with("__"),
                _ => false,
            })
    })
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errors": [ { "message": message } ] })),
    )
        .into_response()
}

/// `POST /` and `POST /graphql`.
pub(crate) async fn graphql(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let info = match emu.authenticate(&headers) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let token = bearer_token(&headers).unwrap_or_default().to_string();
    let status = match emu.check_rate_limit(&token, true) {
        Ok(s) => s,
        Err(limited) => return limited.into_response_with_cost(true),
    };
    let body: GqlBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("Invalid JSON body: {e}")),
    };
    let Some(query) = body.query.filter(|q| !q.trim().is_empty()) else {
        return json_error(StatusCode::BAD_REQUEST, "No query string was present");
    };
    let model = &emu.gql.model;
    let mut variables = body.variables.unwrap_or(Json::Null);
    let mut cost = 1;
    let parsed = async_graphql_parser::parse_query(&query)
        .ok()
        .map(|mut doc| {
            cost = coerce_document(model, &mut doc);
            coerce_variables(model, &doc, &mut variables);
            doc
        });
    let limits = emu.rate_limits();
    let mut rate = status.clone();
    rate.cost = cost;
    rate.cost_remaining = rate.cost_remaining.saturating_sub(cost);
    let ctx = Ctx {
        emu: emu.clone(),
        model: emu.gql.model.clone(),
        account: info.account.clone(),
        person_id: info.person_id.clone(),
        rate,
    };
    let vars = if variables.is_object() {
        async_graphql::Variables::from_json(variables.clone())
    } else {
        async_graphql::Variables::default()
    };
    let cache_key = parsed
        .as_ref()
        .filter(|d| introspection_only(d))
        .map(|_| cache_key(body.operation_name.as_deref(), &vars, &query));
    let cached = cache_key
        .as_ref()
        .and_then(|k| emu.gql.introspection_cache.lock().get(k).cloned());
    let bytes = match cached {
        Some(b) => b,
        None => {
            // Introspection-only: project from the captured universe when possible.
            let projected = match (&cache_key, &parsed, emu.gql.universe()) {
                (Some(_), Some(doc), Some(u)) => {
                    u.answer(doc, body.operation_name.as_deref(), &variables)
                }
                _ => None,
            };
            if let (Some(answer), Some(k)) = (projected, &cache_key) {
                let b = Bytes::from(answer);
                let mut cache = emu.gql.introspection_cache.lock();
                if cache.len() < INTROSPECTION_CACHE_MAX {
                    cache.insert(k.clone(), b.clone());
                }
                drop(cache);
                return finish(&emu, &token, &limits, cost, b);
            }
            if let Some(doc) = &parsed {
                let mut errors = validate::validate(model, doc);
                if errors.is_empty() {
                    errors = validate::validate_variables(
                        model,
                        doc,
                        body.operation_name.as_deref(),
                        &variables,
                    );
                }
                if !errors.is_empty() {
                    tracing::debug!(count = errors.len(), "GraphQL document failed validation");
                    let body = match serde_json::to_vec(&json!({ "errors": errors })) {
                        Ok(b) => Bytes::from(b),
                        Err(e) => {
                            return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
                        }
                    };
                    return finish(&emu, &token, &limits, cost, body);
                }
            }
            let mut req = async_graphql::Request::new(query).variables(vars).data(ctx);
            if let Some(op) = body.operation_name {
                req = req.operation_name(op);
            }
            if let Some(doc) = parsed {
                req.set_parsed_query(doc);
            }
            let resp = emu.gql.schema.execute(req).await;
            let ok = resp.errors.is_empty();
            let bytes = match validate::response_body(&resp) {
                Ok(b) => Bytes::from(b),
                Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            };
            if let (Some(k), true) = (cache_key, ok) {
                let mut cache = emu.gql.introspection_cache.lock();
                if cache.len() < INTROSPECTION_CACHE_MAX {
                    cache.insert(k, bytes.clone());
                }
            }
            bytes
        }
    };
    finish(&emu, &token, &limits, cost, bytes)
}

/// Charge the request's cost and build the JSON response with the rate headers (the
/// request id is added by the `request_id` layer around the whole router).
fn finish(
    emu: &Emulator,
    token: &str,
    limits: &crate::RateLimits,
    cost: u32,
    bytes: Bytes,
) -> Response {
    let charged = emu.limiter.charge(token, limits, cost);
    let mut out = Response::new(axum::body::Body::from(bytes));
    let h = out.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    charged.apply(h, true);
    out
}
