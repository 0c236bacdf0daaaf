//! `POST /api/v1/connections/{solution}/{name}/test`: run a connection's test
//! (runtime_model §5.5) and answer `{"status": "success" | "failed" | "error", "message"}`.
//!
//! The answer is 200 whatever the test's outcome (the outcome is in the body); 404 names an
//! unknown solution or connection.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use ferry_engine::ConnectionTestResult;

use crate::error::ApiError;
use crate::AppState;

/// Routes (mounted under `/api/v1`, behind the token check).
pub fn router() -> Router<AppState> {
    Router::new().route("/connections/{solution}/{name}/test", post(test_connection))
}

async fn test_connection(
    State(state): State<AppState>,
    Path((solution, name)): Path<(String, String)>,
) -> Result<Json<ConnectionTestResult>, ApiError> {
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
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("connection '{name}' not found")))
}
