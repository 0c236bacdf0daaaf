//! `POST /api/v1/connections/{solution}/{name}/test`: run a connection's test
//! (runtime_model §5.5) and answer `{"status": "success" | "failed" | "error", "message"}`.
//!
//! The answer is 200 whatever the test's outcome (the outcome is in the body); 404 names an
//! unknown solution or connection.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ferry_api as api;
use ferry_engine::TestStatus;

use crate::api::Path;
use crate::error::ApiError;
use crate::AppState;

/// Routes (mounted under `/api/v1`, behind the token check).
pub fn router() -> Router<AppState> {
    Router::new().route("/connections/{solution}/{name}/test", post(test_connection))
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
