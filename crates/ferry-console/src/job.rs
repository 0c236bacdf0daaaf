//! `GET /ui/jobs/{id}`: one job — its facts, the failed step's error, a timing waterfall and
//! the runbook's step tree with each step's runs (input, outputs and logs, secrets redacted
//! by the API's `step_view`); `GET /ui/jobs/{id}/stream` sends the live part again while the
//! job changes; `POST /ui/jobs/{id}/rerun` queues a failed job again (the API's logic).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use ferry_api as api;
use ferry_server::ApiError;
use ferry_store::{JobRecord, StepRecord};
use maud::{html, Markup};

use crate::auth::{Session, CSRF_FIELD};
use crate::layout::{self, Nav};
use crate::util::{duration_ms, json_block, opt_time, seg, time};
use crate::{charts, tree, Console};

/// How often the live stream of a job looks for changes.
const POLL: Duration = Duration::from_millis(500);

/// A stream ends after this long (the browser reconnects by itself).
const STREAM_LIFETIME: Duration = Duration::from_secs(300);

fn parse_id(id: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(id.trim()).map_err(|_| format!("invalid job id '{id}' (expected a UUID)"))
}

async fn load(
    console: &Console,
    id: &str,
) -> Result<(JobRecord, Vec<StepRecord>), (StatusCode, String)> {
    let uuid = parse_id(id).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    let store = &console.app.engine.store;
    let internal = |e: ferry_store::StoreError| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Reading job {uuid} failed: {e}"),
        )
    };
    let job = store
        .get_job(uuid)
        .await
        .map_err(internal)?
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("No job has the id {uuid}.")))?;
    let steps = store.job_steps(uuid).await.map_err(internal)?;
    Ok((job, steps))
}

/// `GET /ui/jobs/{id}`.
pub(crate) async fn page(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let (job, steps) = match load(&console, &id).await {
        Ok(v) => v,
        Err((status, message)) => {
            return layout::session_error(status, &session, Nav::Jobs, "Job not shown", &message)
        }
    };
    let live = !job.status.is_terminal();
    let main = html! {
        nav aria-label="Breadcrumb" { a href="/ui/jobs" { "Jobs" } " / " }
        h1 { "Job " code #job-id data-testid="job-id" { (job.id) } }
        div #job-live data-testid="job-live" data-target="job-live"
            data-live=[live.then(|| format!("/ui/jobs/{}/stream", job.id))] {
            (live_body(&console, &session, &job, &steps))
        }
    };
    layout::page(
        &format!("Job {}", &job.id.to_string()[..8]),
        Nav::Jobs,
        Some(&session),
        main,
    )
}

/// The part of the job page that changes while the job runs.
fn live_body(
    console: &Console,
    session: &Session,
    job: &JobRecord,
    steps: &[StepRecord],
) -> Markup {
    let view = ferry_server::job_view(job);
    let shown: Vec<api::Step> = steps.iter().map(ferry_server::step_view).collect();
    let runbook = console.app.engine.runbook(&job.solution, &job.runbook);
    let mut by_step: HashMap<&str, Vec<&api::Step>> = HashMap::new();
    for s in &shown {
        by_step.entry(s.step_id.as_str()).or_default().push(s);
    }
    let known: Vec<String> = runbook
        .as_ref()
        .map(|(_, rb)| rb.order.clone())
        .unwrap_or_default();
    let orphans: Vec<&api::Step> = shown
        .iter()
        .filter(|s| !known.contains(&s.step_id))
        .collect();
    let status = view.status.as_str();
    html! {
        dl.facts #job-facts {
            dt { "Status" } dd #job-status data-testid="job-status" data-status=(status) { (layout::badge(status)) }
            dt { "Runbook" } dd { a href={ "/ui/solutions/" (seg(&job.solution)) "/runbooks/" (seg(&job.runbook)) } { (job.solution) "/" (job.runbook) } }
            @if let Some(c) = &view.context_id { dt { "Job context id" } dd { code { (c) } } }
            dt { "Created" } dd { (time(view.created_at)) }
            dt { "Started" } dd { (opt_time(view.started_at)) }
            dt { "Ended" } dd { (opt_time(view.finished_at)) }
            @if let Some(t) = view.next_run_at { dt { "Runs again" } dd { (time(t)) } }
            dt { "Attempts" } dd { (view.attempts) }
            dt { "Step runs" } dd { (shown.len()) }
        }
        @if let Some(e) = &view.error {
            div.step-error #job-error data-testid="job-error" {
                strong { "Error: " } (e)
            }
        }
        @if job.status == ferry_store::JobStatus::Failed {
            form #rerun-form method="post" action={ "/ui/jobs/" (job.id) "/rerun" } {
                input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                button type="submit" data-testid="rerun" { "Re-run this job" }
                " "
                span.hint { "Runs the job again from the start with the same event." }
            }
        }
        h2 { "Timing" }
        @if steps.is_empty() {
            p.muted { "No step has run yet." }
        } @else {
            (charts::waterfall(job.started_at.unwrap_or(job.created_at), steps))
        }
        h2 { "Steps" }
        @match &runbook {
            Some((_, rb)) => {
                figure.diagram #diagram data-testid="diagram" {
                    (crate::solutions::diagram(rb, &JobLabels {
                        base: crate::solutions::RunbookLabels { rb },
                        runs: &by_step,
                    }))
                    figcaption.hint { "Steps that failed are outlined red, steps that ran green; their runs follow as a list." }
                }
                (tree::step_tree(
                    &rb.model,
                    &|step| runs(by_step.get(step.id.as_str()).map(Vec::as_slice).unwrap_or(&[])),
                    &|step| by_step.get(step.id.as_str()).and_then(|v| {
                        v.iter().any(|s| s.status == api::StepStatus::Failed).then_some("step-failed")
                    }),
                ))
            }
            None => { p.notice { "Runbook " code { (job.solution) "/" (job.runbook) } " is not loaded; the step runs follow in order." } }
        }
        @if !orphans.is_empty() {
            h3 { "Step runs not in the loaded runbook" }
            (runs(&orphans))
        }
        h2 { "Event" }
        details #trigger-output {
            summary { "Trigger output (secrets redacted)" }
            (json_block(&view.trigger_output, "Trigger output"))
        }
    }
}

/// The diagram's labels on the job page: the runbook page's, and a class per step that ran
/// (`ran`) or failed (`failed`).
struct JobLabels<'a> {
    base: crate::solutions::RunbookLabels<'a>,
    runs: &'a HashMap<&'a str, Vec<&'a api::Step>>,
}

impl ferry_diagram::Labeller for JobLabels<'_> {
    fn action_title(&self, action: &str) -> Option<String> {
        self.base.action_title(action)
    }

    fn step_href(&self, step_id: &str) -> Option<String> {
        self.base.step_href(step_id)
    }

    fn step_class(&self, step_id: &str) -> Option<String> {
        let runs = self.runs.get(step_id)?;
        Some(
            if runs.iter().any(|s| s.status == api::StepStatus::Failed) {
                "failed"
            } else {
                "ran"
            }
            .to_string(),
        )
    }
}

/// The runs of one step, each collapsible with its input, outputs and logs.
fn runs(runs: &[&api::Step]) -> Markup {
    html! {
        @if !runs.is_empty() {
            ol.runs {
                @for s in runs {
                    @let failed = s.status == api::StepStatus::Failed;
                    li class=[failed.then_some("step-failed")] {
                        details.run data-seq=(s.seq) data-step=(s.step_id) data-status=(s.status.as_str())
                            data-testid={ "run-" (s.seq) } open[failed] {
                            summary {
                                "Run " (s.seq) " · invocation " (s.invocation) " · "
                                (layout::badge(s.status.as_str())) " · " (duration_ms(s.duration_ms))
                            }
                            @if let Some(e) = &s.error {
                                div.step-error data-testid="step-error" { strong { "Error: " } (e) }
                            }
                            h4 { "Input" }
                            (json_block(&s.input, &format!("Input of run {}", s.seq)))
                            h4 { "Outputs" }
                            (json_block(&s.outputs, &format!("Outputs of run {}", s.seq)))
                            h4 { "Logs" }
                            @if s.logs.is_empty() {
                                p.muted { "No log lines." }
                            } @else {
                                ol.logs {
                                    @for l in &s.logs {
                                        li { (time(l.at)) " " code { (l.level) } " " (l.message) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

struct StreamState {
    console: Console,
    session: Session,
    id: String,
    seen: Option<(String, DateTime<Utc>, usize)>,
    first: bool,
    ended: bool,
    until: Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// `GET /ui/jobs/{id}/stream`: a `job` event with the live part of the page whenever the job
/// changes; `end` once it has ended.
pub(crate) async fn stream(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    if let Err(m) = parse_id(&id) {
        return (StatusCode::BAD_REQUEST, m).into_response();
    }
    let state = StreamState {
        shutdown: console.options.shutdown.clone(),
        console,
        session,
        id,
        seen: None,
        first: true,
        ended: false,
        until: Instant::now() + STREAM_LIFETIME,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            if !st.first {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = st.shutdown.changed() => return None,
                }
            }
            st.first = false;
            if *st.shutdown.borrow() || Instant::now() > st.until {
                return None;
            }
            let (job, steps) = match load(&st.console, &st.id).await {
                Ok(v) => v,
                Err((_, message)) => {
                    tracing::warn!(%message, "console: live job stream");
                    return None;
                }
            };
            let key = (job.status.as_str().to_string(), job.updated_at, steps.len());
            if st.seen.as_ref() == Some(&key) {
                continue;
            }
            st.seen = Some(key);
            let html = live_body(&st.console, &st.session, &job, &steps).into_string();
            // After the last state of an ended job the stream ends, and `end` follows.
            st.ended = job.status.is_terminal();
            return Some((
                Ok::<_, Infallible>(Event::default().event("job").data(html)),
                st,
            ));
        }
    });
    let with_end = futures::StreamExt::chain(
        events,
        futures::stream::once(async {
            Ok::<_, Infallible>(Event::default().event("end").data(""))
        }),
    );
    Sse::new(with_end)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /ui/jobs/{id}/rerun` (session and CSRF token checked by the middleware).
pub(crate) async fn rerun(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let (job, _) = match load(&console, &id).await {
        Ok(v) => v,
        Err((status, message)) => {
            return layout::session_error(status, &session, Nav::Jobs, "Not re-run", &message)
        }
    };
    match ferry_server::rerun(&console.app.engine, &job).await {
        Ok(()) => Redirect::to(&format!("/ui/jobs/{}", job.id)).into_response(),
        Err(e) => {
            let status = match &e {
                ApiError::Conflict(_) => StatusCode::CONFLICT,
                ApiError::NotFound(_) => StatusCode::NOT_FOUND,
                ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let message = match &e {
                ApiError::Internal(detail) => {
                    tracing::error!(%detail, "console: re-run failed");
                    format!("Re-running the job failed: {detail}")
                }
                other => other.to_string(),
            };
            layout::session_error(status, &session, Nav::Jobs, "Not re-run", &message)
        }
    }
}
