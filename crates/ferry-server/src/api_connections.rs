//! `POST /api/v1/connections/{solution}/{name}/test`: run a connection's test
//! (runtime_model §5.5) and answer `{"status": "success" | "failed" | "error", "message"}`.
//!
//! The answer is 200 whatever the test's outcome (the outcome is in the body); 404 names an
//! unknown solution or connection.
//!
//! `POST /api/v1/connections/{solution}/{name}/refresh-schema`: fetch the connection's schema
//! again (a Xurrent introspection), replacing the cached one; 200 with a summary, 404 for an
//! unknown solution or connection, 409 for a connection without a schema, 502 when fetching
//! failed (the message names the cause).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ferry_api as api;
use ferry_engine::{RefreshError, TestStatus};

use crate::api::Path;
use crate::error::ApiError;
use crate::AppState;

/// Routes (mounted under `/api/v1`, behind the token check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connections/{solution}/{name}/test", post(test_connection))
        .route(
            "/connections/{solution}/{name}/refresh-schema",
            post(refresh_schema),
        )
}

/// Fetch a connection's schema again (introspection) and replace the cached one.
#[utoipa::path(
    post, path = "/api/v1/connections/{solution}/{name}/refresh-schema", tag = "connections",
    params(
        ("solution" = String, Path, description = "Solution name"),
        ("name" = String, Path, description = "Connection name"),
    ),
    responses(
        (status = 200, description = "The schema was fetched and cached", body = api::SchemaRefresh),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution or connection", body = api::ErrorBody),
        (status = 409, description = "The connection has no schema (not an outbound xurrent connection)", body = api::ErrorBody),
        (status = 502, description = "Fetching the schema failed (the message names the cause)", body = api::ErrorBody),
    )
)]
pub(crate) async fn refresh_schema(
    State(state): State<AppState>,
    Path((solution, name)): Path<(String, String)>,
) -> Result<Json<api::SchemaRefresh>, ApiError> {
    match state.engine.refresh_schema(&solution, &name).await {
        Ok(r) => Ok(Json(api::SchemaRefresh {
            solution,
            connection: name,
            types: r.types as u64,
            generation: r.generation,
            duration_ms: r.duration.as_millis() as u64,
        })),
        Err(RefreshError::NotFound(m)) => Err(ApiError::NotFound(m)),
        Err(RefreshError::NoSchema(m)) => Err(ApiError::Conflict(m)),
        Err(RefreshError::Failed(m)) => Err(ApiError::BadGateway(m)),
    }
}

/// Run a connection's test (success / failed / error, within 10 s).
#[utoipa::path(
    post, path = "/api/v1/connections/{solution}/{name}/test", tag = "connections",
    params(
        ("solution" = String, Path, description = "Solution name"),
        ("name" = String, Path, description = "Connection name"),
    ),
    responses(
        (status = 200, description = "The test ran (its outcome is in the body)", body = api::ConnectionTest),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution or connection", body = api::ErrorBody),
    )
)]
pub(crate) async fn test_connection(
    State(state): State<AppState>,
    Path((solution, name)): Path<(String, String)>,
) -> Result<Json<api::ConnectionTest>, ApiError> {
    let sol = state
        .engine
        .solution(&solution)
        .ok_or_else(|| ApiError::NotFound(format!("solution '{solution}' not found")))?;
    if !sol.connections.contains_key(&name) {
        return Err(ApiError::NotFound(format!(
            "connection '{name}' not found in solution '{solution}'"
        )));
    }
    state
        .engine
        .test_connection(&solution, &name)
        .await
        .map(|r| {
            Json(api::ConnectionTest {
                status: match r.status {
                    TestStatus::Success => api::TestStatus::Success,
                    TestStatus::Failed => api::TestStatus::Failed,
                    TestStatus::Error => api::TestStatus::Error,
                },
                message: r.message,
            })
        })
        .ok_or_else(|| ApiError::NotFound(format!("connection '{name}' not found")))
}
