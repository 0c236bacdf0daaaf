//! Solution versions and modes in the management API (`docs/releasing.md`):
//! `POST /api/v1/reload` (reload every solution folder, one answer per solution) and
//! `POST /api/v1/solutions/{solution}/promote|demote` (live / draft).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ferry_api as api;
use ferry_engine::versions::{Mode, ModeError, ReloadOutcome, SolutionVersion};

use crate::api::Path;
use crate::error::ApiError;
use crate::AppState;

/// Routes (mounted under `/api/v1`, behind the token check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/reload", post(reload))
        .route("/solutions/{solution}/promote", post(promote))
        .route("/solutions/{solution}/demote", post(demote))
}

/// A version as the API shows it.
pub fn version_view(v: &SolutionVersion) -> api::SolutionVersion {
    api::SolutionVersion {
        id: v.id.clone(),
        git_commit: v.git.as_ref().map(|g| g.commit.clone()),
        git_dirty: v.git.as_ref().map(|g| g.dirty),
        loaded_at: v.loaded_at,
    }
}

/// A mode as the API shows it.
pub fn mode_view(m: Mode) -> api::SolutionMode {
    match m {
        Mode::Draft => api::SolutionMode::Draft,
        Mode::Live => api::SolutionMode::Live,
    }
}

/// Reload every solution folder the server was started with: a changed folder is compiled
/// and checked, and replaces the served version only when it has no problems.
#[utoipa::path(
    post, path = "/api/v1/reload", tag = "solutions",
    responses(
        (status = 200, description = "Per solution: unchanged, reloaded (old → new version) or failed with its problems (the old version keeps serving)", body = api::ReloadReport),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
    )
)]
pub(crate) async fn reload(State(state): State<AppState>) -> Json<api::ReloadReport> {
    let results = state.engine.reload().await;
    Json(api::ReloadReport {
        solutions: results
            .into_iter()
            .map(|r| {
                let (status, version, previous_version, errors) = match r.outcome {
                    ReloadOutcome::Unchanged { version } => {
                        (api::ReloadStatus::Unchanged, version, None, Vec::new())
                    }
                    ReloadOutcome::Reloaded { from, to } => {
                        (api::ReloadStatus::Reloaded, to, Some(from), Vec::new())
                    }
                    ReloadOutcome::Failed { version, errors } => (
                        api::ReloadStatus::Failed,
                        version,
                        None,
                        errors
                            .into_iter()
                            .map(|e| api::ReloadProblem {
                                file: e.file.map(|f| f.display().to_string()),
                                line: e.line.map(|l| l as u64),
                                message: ferry_core::secrets::redact_str(&e.message),
                            })
                            .collect(),
                    ),
                };
                api::ReloadEntry {
                    solution: r.solution,
                    directory: r.directory.display().to_string(),
                    status,
                    version,
                    previous_version,
                    errors,
                }
            })
            .collect(),
    })
}

async fn set_mode(
    state: &AppState,
    solution: &str,
    mode: Mode,
) -> Result<api::ModeChange, ApiError> {
    match state.engine.set_mode(solution, mode).await {
        Ok(previous) => Ok(api::ModeChange {
            solution: solution.to_string(),
            mode: mode_view(mode),
            previous: mode_view(previous),
        }),
        Err(e @ ModeError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ ModeError::Store(_)) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Make a solution live: its triggers accept every event and its schedules fire (from now
/// on). Kept across restarts.
#[utoipa::path(
    post, path = "/api/v1/solutions/{solution}/promote", tag = "solutions",
    params(("solution" = String, Path, description = "Solution name")),
    responses(
        (status = 200, description = "The solution is live", body = api::ModeChange),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution", body = api::ErrorBody),
        (status = 500, description = "The store failed", body = api::ErrorBody),
        (status = 503, description = "The store is unreachable (the database is down); try again after `Retry-After`", body = api::ErrorBody),
    )
)]
pub(crate) async fn promote(
    State(state): State<AppState>,
    Path(solution): Path<String>,
) -> Result<Json<api::ModeChange>, ApiError> {
    Ok(Json(set_mode(&state, &solution, Mode::Live).await?))
}

/// Put a solution in draft mode: its triggers accept only events with the header
/// `x-ferry-test: 1` (others get 403) and its schedules do not fire. Kept across restarts.
#[utoipa::path(
    post, path = "/api/v1/solutions/{solution}/demote", tag = "solutions",
    params(("solution" = String, Path, description = "Solution name")),
    responses(
        (status = 200, description = "The solution is in draft mode", body = api::ModeChange),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution", body = api::ErrorBody),
        (status = 500, description = "The store failed", body = api::ErrorBody),
        (status = 503, description = "The store is unreachable (the database is down); try again after `Retry-After`", body = api::ErrorBody),
    )
)]
pub(crate) async fn demote(
    State(state): State<AppState>,
    Path(solution): Path<String>,
) -> Result<Json<api::ModeChange>, ApiError> {
    Ok(Json(set_mode(&state, &solution, Mode::Draft).await?))
}
