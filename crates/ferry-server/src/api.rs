//! The management API under `/api/v1` (bearer-token authenticated) and `/metrics`.

use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::secrets::redact_value;
use ferry_engine::{CompiledRunbook, CompiledSolution, Engine};
use ferry_store::{JobFilter, JobRecord, JobStatus, StepRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// Routes of `/api/v1`, all behind [`require_token`].
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/solutions", get(list_solutions))
        .route("/solutions/{solution}", get(get_solution))
        .route("/solutions/{solution}/runbooks", get(list_runbooks))
        .route("/solutions/{solution}/runbooks/{runbook}", get(get_runbook))
        .route("/solutions/{solution}/connections", get(list_connections))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/rerun", post(rerun_job))
        .merge(crate::api_connections::router())
        .layer(middleware::from_fn_with_state(state, require_token))
}

/// Reject requests without the right `Authorization: Bearer` token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let ok = presented.is_some_and(|p| {
        ferry_engine::connector::constant_time_eq(p.as_bytes(), state.options.api_token.as_bytes())
    });
    if ok {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

fn trigger_url(state: &AppState, sol: &str, rb: &str) -> String {
    format!(
        "{}/inbound/{sol}/{rb}",
        state.options.public_url.trim_end_matches('/')
    )
}

fn runbook_json(state: &AppState, sol: &CompiledSolution, rb: &CompiledRunbook) -> Value {
    json!({
        "name": rb.name,
        "description": rb.description,
        "trigger": { "type": rb.trigger_type, "url": trigger_url(state, &sol.name, &rb.name), "connection": rb.inbound },
        "concurrency": rb.concurrency.map(|c| format!("{c:?}")),
        "steps": rb.order,
        "variables": rb.variables.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
    })
}

fn solution_json(state: &AppState, sol: &CompiledSolution) -> Value {
    json!({
        "name": sol.name,
        "description": sol.description,
        "runbooks": sol.runbooks.values().map(|rb| runbook_json(state, sol, rb)).collect::<Vec<_>>(),
        "connections": connections_json(sol),
        "provisioning": state.engine.provisioning(&sol.name),
    })
}

fn connections_json(sol: &CompiledSolution) -> Vec<Value> {
    sol.connections
        .values()
        .map(|c| {
            json!({
                "name": c.name,
                "connector": c.connector,
                "direction": sol.directions.get(&c.name).map(|d| d.as_str()),
                "config": redact_value(&c.config),
            })
        })
        .collect()
}

fn find_solution(
    engine: &Engine,
    name: &str,
) -> Result<std::sync::Arc<CompiledSolution>, ApiError> {
    engine
        .solution(name)
        .ok_or_else(|| ApiError::NotFound(format!("solution '{name}' not found")))
}

async fn list_solutions(State(state): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = state
        .engine
        .solutions()
        .iter()
        .map(|s| solution_json(&state, s))
        .collect();
    Json(json!({ "solutions": list }))
}

async fn get_solution(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    Ok(Json(solution_json(&state, &sol)))
}

async fn list_runbooks(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    let list: Vec<Value> = sol
        .runbooks
        .values()
        .map(|rb| runbook_json(&state, &sol, rb))
        .collect();
    Ok(Json(json!({ "runbooks": list })))
}

async fn get_runbook(
    State(state): State<AppState>,
    Path((name, runbook)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    let rb = sol.runbooks.get(&runbook).ok_or_else(|| {
        ApiError::NotFound(format!(
            "runbook '{runbook}' not found in solution '{name}'"
        ))
    })?;
    Ok(Json(runbook_json(&state, &sol, rb)))
}

async fn list_connections(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    Ok(Json(json!({ "connections": connections_json(&sol) })))
}

/// Query parameters of `GET /jobs`.
#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    solution: Option<String>,
    runbook: Option<String>,
    status: Option<String>,
    context_id: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// A job as the API shows it (secrets redacted).
pub fn job_json(job: &JobRecord) -> Value {
    json!({
        "id": job.id,
        "solution": job.solution,
        "runbook": job.runbook,
        "status": job.status,
        "context_id": job.context_id,
        "error": job.error.as_deref().map(ferry_core::secrets::redact_str),
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "next_run_at": job.next_run_at,
        "trigger_output": redact_value(&job.trigger_output),
    })
}

/// A step record as the API shows it (secrets redacted).
pub fn step_json(step: &StepRecord) -> Value {
    let duration_ms = (step.finished_at - step.started_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0;
    json!({
        "seq": step.seq,
        "step_id": step.step_id,
        "invocation": step.invocation,
        "status": step.status,
        "input": redact_value(&step.input),
        "outputs": redact_value(&step.outputs),
        "logs": step.logs.iter().map(|l| json!({
            "at": l.at, "level": l.level, "message": ferry_core::secrets::redact_str(&l.message)
        })).collect::<Vec<_>>(),
        "error": step.error.as_deref().map(ferry_core::secrets::redact_str),
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_ms": duration_ms,
    })
}

async fn list_jobs(
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid value for 'status': '{s}' (expected one of queued, running, waiting, finished, failed)"
            ))
        })?),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 50,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "invalid value for 'limit': '{l}' (expected 1..500)"
                )))
            }
        },
    };
    let before_seq = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid value for 'before': '{b}' (expected a cursor from next_before)"
            ))
        })?),
    };
    let filter = JobFilter {
        solution: q.solution,
        runbook: q.runbook,
        status,
        context_id: q.context_id,
        limit,
        before_seq,
    };
    let page = state.engine.store.list_jobs(&filter).await?;
    Ok(Json(json!({
        "jobs": page.jobs.iter().map(job_json).collect::<Vec<_>>(),
        "next_before": page.next_before_seq,
    })))
}

/// The job with this id (400 for a malformed id, 404 for an unknown one).
async fn find_job(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    let id = Uuid::parse_str(id)
        .map_err(|_| ApiError::BadRequest(format!("invalid job id '{id}' (expected a UUID)")))?;
    state
        .engine
        .store
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job '{id}' not found")))
}

async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = find_job(&state, &id).await?;
    let id = job.id;
    let steps = state.engine.store.job_steps(id).await?;
    let mut value = job_json(&job);
    value["steps"] = Value::Array(steps.iter().map(step_json).collect());
    Ok(Json(value))
}

async fn rerun_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = find_job(&state, &id).await?;
    let id = job.id;
    if job.status != JobStatus::Failed {
        return Err(ApiError::Conflict(format!(
            "only failed jobs can be re-run; job '{id}' is {}",
            job.status.as_str()
        )));
    }
    let (_, rb) = state
        .engine
        .runbook(&job.solution, &job.runbook)
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "runbook '{}/{}' is not loaded",
                job.solution, job.runbook
            ))
        })?;
    state
        .engine
        .store
        .requeue_job(id, Engine::initial_state(&rb))
        .await?;
    state.engine.notify.notify_one();
    Ok(Json(json!({ "id": id, "status": "queued" })))
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let counts = state
        .engine
        .store
        .count_by_status()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect::<Vec<_>>();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.engine.metrics.render(&counts),
    )
        .into_response()
}
