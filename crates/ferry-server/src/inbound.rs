//! `POST /inbound/{solution}/{runbook}[/{postfix…}]`: the trigger endpoints.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_engine::{InboundRequest, IngestOutcome, TriggerResponse};
use serde_json::json;

use crate::AppState;

/// Without a postfix.
pub async fn receive(
    State(state): State<AppState>,
    Path((solution, runbook)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, solution, runbook, None, method, query, headers, body).await
}

/// With a postfix.
pub async fn receive_postfix(
    State(state): State<AppState>,
    Path((solution, runbook, postfix)): Path<(String, String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        state,
        solution,
        runbook,
        Some(postfix),
        method,
        query,
        headers,
        body,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    state: AppState,
    solution: String,
    runbook: String,
    postfix: Option<String>,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = InboundRequest {
        method: method.to_string(),
        postfix,
        query,
        headers,
        body,
    };
    match state.engine.ingest(&solution, &runbook, request).await {
        IngestOutcome::Accepted {
            job_id,
            response: None,
        } => {
            tracing::debug!(job = %job_id, "event accepted");
            let id = job_id.to_string();
            let body = format!("{{\"job_uuid\":\"{id}\"}}");
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-job-uuid", v);
            }
            response
        }
        IngestOutcome::Accepted {
            job_id,
            response: Some(custom),
        } => {
            let mut response = trigger_response(custom);
            if let Ok(v) = HeaderValue::from_str(&job_id.to_string()) {
                response.headers_mut().insert("x-job-uuid", v);
            }
            response
        }
        IngestOutcome::Responded { response } => trigger_response(response),
        IngestOutcome::Duplicate { job_id } => Json(json!({
            "result": "Discarded",
            "reason": "duplicate deduplication_id",
            "job_uuid": job_id.to_string(),
        }))
        .into_response(),
        IngestOutcome::Discarded { message } => {
            Json(json!({ "result": "Discarded", "reason": message })).into_response()
        }
        IngestOutcome::Rejected { status, message } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = (status, Json(json!({ "error": message }))).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// An answer chosen by a trigger or by `respond_with` (headers were checked when it was built;
/// an invalid one is skipped with a log line).
fn trigger_response(r: TriggerResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut response = (status, r.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in r.headers {
        match (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => tracing::warn!(header = %name, "skipping an invalid response header"),
        }
    }
    response
}
