//! `GET /api/v1/schedules`: every runbook that runs on a schedule (a `scheduler.schedule`
//! trigger), with its rule, time zone, last tick and next run times (`?count=`, default 5).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ferry_api as api;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::Query;
use crate::error::ApiError;
use crate::AppState;

/// Routes (mounted under `/api/v1`, behind the token check).
pub fn router() -> Router<AppState> {
    Router::new().route("/schedules", get(list_schedules))
}

/// Query parameters of `GET /schedules` (read as text so that a bad value is answered with a
/// message naming the parameter).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SchedulesQuery {
    /// How many next run times to show per schedule (default 5).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    count: Option<String>,
}

/// The scheduled runbooks with their next run times.
#[utoipa::path(
    get, path = "/api/v1/schedules", tag = "schedules",
    params(SchedulesQuery),
    responses(
        (status = 200, description = "The scheduled runbooks", body = api::ScheduleList),
        (status = 400, description = "A parameter is invalid", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
    )
)]
pub(crate) async fn list_schedules(
    State(state): State<AppState>,
    Query(q): Query<SchedulesQuery>,
) -> Result<Json<api::ScheduleList>, ApiError> {
    let count = match q.count.as_deref() {
        // An empty `count=` is refused like any other value that is not a number.
        None => 5,
        Some(c) => match c.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "invalid value for 'count': '{c}' (expected 1..100)"
                )))
            }
        },
    };
    let list = ferry_engine::scheduler::list(&state.engine, count)
        .await
        .map_err(|e| ApiError::Internal(format!("reading schedule positions: {e}")))?;
    Ok(Json(api::ScheduleList {
        schedules: list
            .into_iter()
            .map(|s| api::Schedule {
                paused: state.engine.mode(&s.solution) == ferry_engine::versions::Mode::Draft,
                solution: s.solution,
                runbook: s.runbook,
                description: s.description,
                time_zone: s.time_zone,
                catch_up: s.catch_up.to_string(),
                disabled: s.disabled,
                last_tick: s.last_tick,
                next_runs: s.next_runs,
            })
            .collect(),
    }))
}
