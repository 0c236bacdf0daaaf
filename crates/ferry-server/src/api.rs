//! The management API under `/api/v1` (bearer-token authenticated), its OpenAPI document and
//! `/metrics`.
//!
//! Handlers answer with the shared types of `ferry-api`; [`ApiDoc`] describes them (utoipa), and
//! the document is served at `GET /api/v1/openapi.json` (without a token, so tools can load it).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_api as api;
use ferry_core::secrets::{redact_str, redact_value};
use ferry_engine::{CompiledRunbook, CompiledSolution, Engine};
use ferry_store::{JobFilter, JobRecord, JobStatus, StepRecord, StepStatus};
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// `axum::extract::Path` whose rejection is a JSON [`ApiError`] (400 naming the problem).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub(crate) T);

/// `axum::extract::Query` whose rejection is a JSON [`ApiError`] (400 naming the parameter).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub(crate) T);

/// Routes of `/api/v1`, all behind [`require_token`] except `openapi.json`.
pub fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/solutions", get(list_solutions))
        .route("/solutions/{solution}", get(get_solution))
        .route("/solutions/{solution}/runbooks", get(list_runbooks))
        .route("/solutions/{solution}/runbooks/{runbook}", get(get_runbook))
        .route("/solutions/{solution}/connections", get(list_connections))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/rerun", post(rerun_job))
        .merge(crate::api_connections::router())
        .merge(crate::api_schedules::router())
        .merge(crate::api_versions::router())
        .layer(middleware::from_fn_with_state(state, require_token));
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(protected)
}

/// The OpenAPI description of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry management API",
        description = "Solutions, runbooks, connections and jobs of a running `ferry serve`. \
                       Every route needs `Authorization: Bearer <token>` (the server's API token).",
    ),
    paths(
        list_solutions,
        get_solution,
        list_runbooks,
        get_runbook,
        list_connections,
        list_jobs,
        get_job,
        rerun_job,
        crate::api_connections::test_connection,
        crate::api_connections::refresh_schema,
        crate::api_schedules::list_schedules,
        crate::api_versions::reload,
        crate::api_versions::promote,
        crate::api_versions::demote
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "solutions", description = "Loaded solutions, their runbooks and connections"),
        (name = "jobs", description = "Jobs and their steps"),
        (name = "connections", description = "Connection tests and schema refreshes"),
        (name = "schedules", description = "Scheduled runbooks and their next run times"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The server's API token (FERRY_API_TOKEN or <data>/api.token)",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`.
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    match DOC.get_or_init(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string())) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response(),
        Err(e) => {
            ApiError::Internal(format!("serializing the OpenAPI document: {e}")).into_response()
        }
    }
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

fn runbook_view(state: &AppState, sol: &CompiledSolution, rb: &CompiledRunbook) -> api::Runbook {
    api::Runbook {
        name: rb.name.clone(),
        description: rb.description.clone(),
        trigger: api::TriggerInfo {
            kind: rb.trigger_type.clone(),
            url: trigger_url(state, &sol.name, &rb.name),
            connection: rb.inbound.clone(),
        },
        concurrency: rb.concurrency.map(|c| match c {
            ferry_core::model::Concurrency::PerRunbook => api::Concurrency::PerRunbook,
            ferry_core::model::Concurrency::PerJobContext => api::Concurrency::PerJobContext,
        }),
        steps: rb.order.clone(),
        variables: rb.variables.iter().map(|v| v.id.clone()).collect(),
    }
}

fn solution_view(state: &AppState, sol: &CompiledSolution) -> api::Solution {
    api::Solution {
        name: sol.name.clone(),
        description: sol.description.clone(),
        runbooks: sol
            .runbooks
            .values()
            .map(|rb| runbook_view(state, sol, rb))
            .collect(),
        connections: connections_view(sol),
        provisioning: state
            .engine
            .provisioning(&sol.name)
            .iter()
            .map(provision_view)
            .collect(),
        version: crate::api_versions::version_view(
            &state
                .engine
                .served_version(&sol.name)
                .unwrap_or_else(|| sol.version.clone()),
        ),
        mode: crate::api_versions::mode_view(state.engine.mode(&sol.name)),
        directory: state
            .engine
            .solution_dir(&sol.name)
            .map(|d| d.display().to_string()),
    }
}

/// A provisioning status as the API shows it (its error redacted).
pub fn provision_view(p: &ferry_engine::provision::ProvisionStatus) -> api::ProvisionStatus {
    use ferry_engine::provision::{ProvisionKind as K, ProvisionState as S};
    api::ProvisionStatus {
        kind: match p.kind {
            K::Connection => api::ProvisionKind::Connection,
            K::Trigger => api::ProvisionKind::Trigger,
        },
        name: p.name.clone(),
        state: match p.state {
            S::Pending => api::ProvisionState::Pending,
            S::Provisioned => api::ProvisionState::Provisioned,
            S::Failed => api::ProvisionState::Failed,
            S::Deprovisioned => api::ProvisionState::Deprovisioned,
        },
        attempts: p.attempts,
        last_error: p.last_error.as_deref().map(redact_str),
        updated_at: p.updated_at,
        next_attempt_at: p.next_attempt_at,
    }
}

/// The connections of a solution as the API shows them (secret values redacted).
pub fn connections_view(sol: &CompiledSolution) -> Vec<api::Connection> {
    sol.connections
        .values()
        .map(|c| api::Connection {
            name: c.name.clone(),
            connector: c.connector.clone(),
            direction: sol.directions.get(&c.name).map(|d| match d {
                ferry_core::model::Direction::Inbound => api::Direction::Inbound,
                ferry_core::model::Direction::Outbound => api::Direction::Outbound,
            }),
            config: redact_value(&c.config),
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

/// Every loaded solution with its runbooks and connections.
#[utoipa::path(
    get, path = "/api/v1/solutions", tag = "solutions",
    responses(
        (status = 200, description = "The loaded solutions", body = api::SolutionList),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
    )
)]
async fn list_solutions(State(state): State<AppState>) -> Json<api::SolutionList> {
    Json(api::SolutionList {
        solutions: state
            .engine
            .solutions()
            .iter()
            .map(|s| solution_view(&state, s))
            .collect(),
    })
}

/// One solution.
#[utoipa::path(
    get, path = "/api/v1/solutions/{solution}", tag = "solutions",
    params(("solution" = String, Path, description = "Solution name")),
    responses(
        (status = 200, description = "The solution", body = api::Solution),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution", body = api::ErrorBody),
    )
)]
async fn get_solution(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::Solution>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    Ok(Json(solution_view(&state, &sol)))
}

/// The runbooks of a solution with their trigger URLs.
#[utoipa::path(
    get, path = "/api/v1/solutions/{solution}/runbooks", tag = "solutions",
    params(("solution" = String, Path, description = "Solution name")),
    responses(
        (status = 200, description = "The runbooks", body = api::RunbookList),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution", body = api::ErrorBody),
    )
)]
async fn list_runbooks(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::RunbookList>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    Ok(Json(api::RunbookList {
        runbooks: sol
            .runbooks
            .values()
            .map(|rb| runbook_view(&state, &sol, rb))
            .collect(),
    }))
}

/// One runbook.
#[utoipa::path(
    get, path = "/api/v1/solutions/{solution}/runbooks/{runbook}", tag = "solutions",
    params(
        ("solution" = String, Path, description = "Solution name"),
        ("runbook" = String, Path, description = "Runbook name"),
    ),
    responses(
        (status = 200, description = "The runbook", body = api::Runbook),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution or runbook", body = api::ErrorBody),
    )
)]
async fn get_runbook(
    State(state): State<AppState>,
    Path((name, runbook)): Path<(String, String)>,
) -> Result<Json<api::Runbook>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    let rb = sol.runbooks.get(&runbook).ok_or_else(|| {
        ApiError::NotFound(format!(
            "runbook '{runbook}' not found in solution '{name}'"
        ))
    })?;
    Ok(Json(runbook_view(&state, &sol, rb)))
}

/// The connections of a solution (secret values redacted).
#[utoipa::path(
    get, path = "/api/v1/solutions/{solution}/connections", tag = "solutions",
    params(("solution" = String, Path, description = "Solution name")),
    responses(
        (status = 200, description = "The connections", body = api::ConnectionList),
        (status = 400, description = "A path segment is malformed", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such solution", body = api::ErrorBody),
    )
)]
async fn list_connections(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::ConnectionList>, ApiError> {
    let sol = find_solution(&state.engine, &name)?;
    Ok(Json(api::ConnectionList {
        connections: connections_view(&sol),
    }))
}

/// Query parameters of `GET /jobs`. They are read as text and checked by the handler, so that
/// a bad value is answered with a message naming the parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs of this solution.
    solution: Option<String>,
    /// Only jobs of this runbook.
    runbook: Option<String>,
    /// Only jobs with this status.
    #[param(value_type = Option<api::JobStatus>)]
    status: Option<String>,
    /// Only jobs with this job context identifier.
    context_id: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Paging cursor: `next_before` of the previous page.
    #[param(value_type = Option<i64>)]
    before: Option<String>,
}

fn job_status(s: JobStatus) -> api::JobStatus {
    match s {
        JobStatus::Queued => api::JobStatus::Queued,
        JobStatus::Running => api::JobStatus::Running,
        JobStatus::Waiting => api::JobStatus::Waiting,
        JobStatus::Finished => api::JobStatus::Finished,
        JobStatus::Failed => api::JobStatus::Failed,
    }
}

fn step_status(s: StepStatus) -> api::StepStatus {
    match s {
        StepStatus::Completed => api::StepStatus::Completed,
        StepStatus::Failed => api::StepStatus::Failed,
        StepStatus::Rescheduled => api::StepStatus::Rescheduled,
        StepStatus::Finished => api::StepStatus::Finished,
    }
}

/// A job as the API shows it (secrets redacted).
pub fn job_view(job: &JobRecord) -> api::Job {
    api::Job {
        id: job.id,
        solution: job.solution.clone(),
        runbook: job.runbook.clone(),
        status: job_status(job.status),
        context_id: job.context_id.clone(),
        error: job.error.as_deref().map(redact_str),
        attempts: job.attempts,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        next_run_at: job.next_run_at,
        trigger_output: redact_value(&job.trigger_output),
        solution_version: job.solution_version.clone(),
        test: job.test,
    }
}

/// A step record as the API shows it (secrets redacted).
pub fn step_view(step: &StepRecord) -> api::Step {
    let duration_ms = (step.finished_at - step.started_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0;
    api::Step {
        seq: step.seq,
        step_id: step.step_id.clone(),
        invocation: step.invocation,
        status: step_status(step.status),
        input: redact_value(&step.input),
        outputs: redact_value(&step.outputs),
        logs: step
            .logs
            .iter()
            .map(|l| api::StepLog {
                at: l.at,
                level: l.level.clone(),
                message: redact_str(&l.message),
            })
            .collect(),
        error: step.error.as_deref().map(redact_str),
        started_at: step.started_at,
        finished_at: step.finished_at,
        duration_ms,
    }
}

/// A job with its steps as the API shows it.
pub fn job_detail(job: &JobRecord, steps: &[StepRecord]) -> api::JobDetail {
    api::JobDetail {
        job: job_view(job),
        steps: steps.iter().map(step_view).collect(),
        version: None,
    }
}

/// Jobs, newest first, with filters and paging.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = api::JobList),
        (status = 400, description = "A parameter is invalid (the message names it)", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 500, description = "The store failed", body = api::ErrorBody),
        (status = 503, description = "The store is unreachable (the database is down); try again after `Retry-After`", body = api::ErrorBody),
    )
)]
async fn list_jobs(
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<api::JobList>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid value for 'status': '{s}' (expected one of queued, running, waiting, finished, failed)"
            ))
        })?),
    };
    let limit = match q.limit.as_deref() {
        None => JobFilter::DEFAULT_LIMIT,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=JobFilter::MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "invalid value for 'limit': '{l}' (expected 1..500)"
                )))
            }
        },
    };
    let before_seq = match q.before.as_deref() {
        None => None,
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
        ..JobFilter::default()
    };
    let page = state.engine.store.list_jobs(&filter).await?;
    Ok(Json(api::JobList {
        jobs: page.jobs.iter().map(job_view).collect(),
        next_before: page.next_before_seq,
    }))
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

/// One job with every step (input, outputs, logs, error, timing).
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job and its steps", body = api::JobDetail),
        (status = 400, description = "The id is not a UUID", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such job", body = api::ErrorBody),
        (status = 500, description = "The store failed", body = api::ErrorBody),
        (status = 503, description = "The store is unreachable (the database is down); try again after `Retry-After`", body = api::ErrorBody),
    )
)]
async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::JobDetail>, ApiError> {
    let job = find_job(&state, &id).await?;
    let steps = state.engine.store.job_steps(job.id).await?;
    let mut detail = job_detail(&job, &steps);
    if let Some(v) = &job.solution_version {
        detail.version = state
            .engine
            .version_info(&job.solution, v)
            .await
            .map(|v| crate::api_versions::version_view(&v));
    }
    Ok(Json(detail))
}

/// Run a failed job again from the start.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/rerun", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job is queued again", body = api::Rerun),
        (status = 400, description = "The id is not a UUID", body = api::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = api::ErrorBody),
        (status = 404, description = "No such job", body = api::ErrorBody),
        (status = 409, description = "The job is not failed, or its runbook is not loaded", body = api::ErrorBody),
        (status = 500, description = "The store failed", body = api::ErrorBody),
        (status = 503, description = "The store is unreachable (the database is down); try again after `Retry-After`", body = api::ErrorBody),
    )
)]
async fn rerun_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::Rerun>, ApiError> {
    let job = find_job(&state, &id).await?;
    rerun(&state.engine, &job).await?;
    Ok(Json(api::Rerun {
        id: job.id,
        status: api::JobStatus::Queued,
    }))
}

/// Queue a failed job again from the start with a fresh state of its runbook and wake a
/// worker: 409 when the job is not failed or its runbook is not loaded.
pub async fn rerun(engine: &Engine, job: &JobRecord) -> Result<(), ApiError> {
    let id = job.id;
    if job.status != JobStatus::Failed {
        return Err(ApiError::Conflict(format!(
            "only failed jobs can be re-run; job '{id}' is {}",
            job.status.as_str()
        )));
    }
    let (_, rb) = engine.runbook(&job.solution, &job.runbook).ok_or_else(|| {
        ApiError::Conflict(format!(
            "runbook '{}/{}' is not loaded",
            job.solution, job.runbook
        ))
    })?;
    engine
        .store
        .requeue_job(id, Engine::initial_state(&rb))
        .await?;
    engine.notify.notify_one();
    Ok(())
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let counts = match state.engine.store.count_by_status().await {
        Ok(counts) => counts
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), n))
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: counting jobs by status failed");
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("counting jobs failed: {e}\n"),
            )
                .into_response();
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.engine.metrics.render(&counts),
    )
        .into_response()
}
