//! `GET /ui/jobs`: jobs newest first with filters (status, solution, runbook, time range, job
//! context id), search by id and keyset pagination (`before` = the store's `seq` cursor);
//! `GET /ui/jobs/stream`: the first page's rows again whenever they change (server-sent
//! events), while the page is open.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::{DateTime, NaiveDateTime, Utc};
use ferry_store::{JobFilter, JobPage, JobRecord, JobStatus};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::Session;
use crate::layout::{self, Nav};
use crate::util::{duration_ms, query_string, seg, time};
use crate::Console;

/// Jobs per page.
pub(crate) const PAGE_SIZE: u32 = 50;

/// How often a live stream looks for changes.
const POLL: Duration = Duration::from_secs(1);

/// A stream ends after this long (the browser reconnects by itself).
const STREAM_LIFETIME: Duration = Duration::from_secs(300);

/// The query of `/ui/jobs`, as typed (kept to fill the form again).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct JobsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    solution: String,
    #[serde(default)]
    runbook: String,
    #[serde(default)]
    context_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    id: String,
}

impl JobsQuery {
    /// The filter pairs (not `before`, not `id`) for links.
    fn pairs(&self) -> Vec<(&str, &str)> {
        vec![
            ("status", self.status.trim()),
            ("solution", self.solution.trim()),
            ("runbook", self.runbook.trim()),
            ("context_id", self.context_id.trim()),
            ("from", self.from.trim()),
            ("to", self.to.trim()),
        ]
    }

    /// The store filter, or a message naming the bad field.
    fn filter(&self) -> Result<JobFilter, String> {
        let text = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let status = match self.status.trim() {
            "" => None,
            s => Some(JobStatus::parse(s).ok_or_else(|| {
                format!(
                    "invalid value for 'status': '{s}' (expected one of queued, running, \
                     waiting, finished, failed)"
                )
            })?),
        };
        let before_seq = match self.before.trim() {
            "" => None,
            b => Some(b.parse::<i64>().map_err(|_| {
                format!("invalid value for 'before': '{b}' (expected a page cursor)")
            })?),
        };
        Ok(JobFilter {
            solution: text(&self.solution),
            runbook: text(&self.runbook),
            status,
            context_id: text(&self.context_id),
            limit: PAGE_SIZE,
            before_seq,
            created_from: parse_time("from", &self.from)?,
            created_to: parse_time("to", &self.to)?,
        })
    }
}

/// A time of the filter form: `YYYY-MM-DDTHH:MM[:SS]` (UTC, as `datetime-local` sends it) or
/// RFC 3339.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(d.to_utc()));
    }
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(Some(n.and_utc()));
        }
    }
    Err(format!(
        "invalid value for '{field}': '{t}' (expected a UTC time like 2026-11-30T14:05 or RFC 3339)"
    ))
}

/// `GET /ui/jobs`.
pub(crate) async fn page(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Query(q): Query<JobsQuery>,
) -> Response {
    let fragment = headers
        .get("hx-target")
        .is_some_and(|v| v.as_bytes() == b"jobs-results")
        && !headers.contains_key("hx-history-restore-request");
    let id = q.id.trim();
    if !id.is_empty() {
        match uuid::Uuid::parse_str(id) {
            Ok(uuid) => match console.app.engine.store.get_job(uuid).await {
                Ok(Some(_)) => {
                    let target = format!("/ui/jobs/{uuid}");
                    let mut response = Redirect::to(&target).into_response();
                    if fragment {
                        if let Ok(v) = HeaderValue::from_str(&target) {
                            response.headers_mut().insert("hx-location", v);
                        }
                    }
                    return response;
                }
                Ok(None) => {
                    return render(
                        &console,
                        &session,
                        &q,
                        Err((StatusCode::NOT_FOUND, format!("No job has the id {uuid}."))),
                        false,
                    )
                }
                Err(e) => {
                    return render(
                        &console,
                        &session,
                        &q,
                        Err((
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("Reading the job failed: {e}"),
                        )),
                        false,
                    )
                }
            },
            Err(_) => {
                return render(
                    &console,
                    &session,
                    &q,
                    Err((
                        StatusCode::BAD_REQUEST,
                        format!("invalid value for 'id': '{id}' (expected a job id, a UUID)"),
                    )),
                    false,
                )
            }
        }
    }
    let started = Instant::now();
    let result = match q.filter() {
        Err(m) => Err((StatusCode::BAD_REQUEST, m)),
        Ok(filter) => console
            .app
            .engine
            .store
            .list_jobs(&filter)
            .await
            .map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Listing jobs failed: {e}"),
                )
            }),
    };
    let listed = started.elapsed();
    let mut response = render(&console, &session, &q, result, fragment);
    // The server's time for this page (the store query, then rendering), for `ferry bench
    // console` and the browser's developer tools.
    let timing = format!(
        "store;dur={:.3}, render;dur={:.3}, total;dur={:.3}",
        listed.as_secs_f64() * 1000.0,
        (started.elapsed() - listed).as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    if let Ok(v) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

fn render(
    console: &Console,
    session: &Session,
    q: &JobsQuery,
    result: Result<JobPage, (StatusCode, String)>,
    fragment: bool,
) -> Response {
    let (status, results) = match &result {
        Ok(page) => (StatusCode::OK, results(q, page)),
        Err((status, message)) => (
            *status,
            html! {
                section #jobs-results {
                    p.alert role="alert" data-testid="jobs-error" { (message) }
                }
            },
        ),
    };
    let mut response = if fragment {
        layout::html_response(status, results)
    } else {
        let main = html! {
            h1 { "Jobs" }
            (filter_form(console, q))
            (results)
        };
        let mut r = layout::page("Jobs", Nav::Jobs, Some(session), main);
        *r.status_mut() = status;
        r
    };
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("HX-Request, HX-Target"),
    );
    response
}

fn filter_form(console: &Console, q: &JobsQuery) -> Markup {
    let solutions = console.app.engine.solutions();
    let mut runbooks: Vec<&str> = solutions
        .iter()
        .flat_map(|s| s.runbooks.keys().map(String::as_str))
        .collect();
    runbooks.sort_unstable();
    runbooks.dedup();
    let status = q.status.trim();
    html! {
        form.filters #jobs-filter role="search" method="get" action="/ui/jobs" aria-label="Filter jobs"
            hx-get="/ui/jobs" hx-target="#jobs-results" hx-swap="outerHTML" hx-push-url="true" {
            label for="f-status" { "Status"
                select #f-status name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for s in JobStatus::ALL {
                        option value=(s.as_str()) selected[status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label for="f-solution" { "Solution"
                select #f-solution name="solution" {
                    option value="" selected[q.solution.trim().is_empty()] { "any" }
                    @for s in &solutions {
                        option value=(s.name) selected[q.solution.trim() == s.name] { (s.name) }
                    }
                }
            }
            label for="f-runbook" { "Runbook"
                input #f-runbook name="runbook" value=(q.runbook) list="runbook-names" size="16";
            }
            datalist #runbook-names { @for r in &runbooks { option value=(r) {} } }
            label for="f-context" { "Job context id"
                input #f-context name="context_id" value=(q.context_id) size="16";
            }
            label for="f-from" { "Created from (UTC)"
                input #f-from type="datetime-local" name="from" value=(q.from);
            }
            label for="f-to" { "Created before (UTC)"
                input #f-to type="datetime-local" name="to" value=(q.to);
            }
            button type="submit" data-testid="apply-filters" { "Filter" }
            a href="/ui/jobs" data-testid="clear-filters" { "Clear" }
        }
        form.filters #job-search role="search" method="get" action="/ui/jobs" aria-label="Find a job by id" {
            label for="f-id" { "Job id"
                input #f-id name="id" value=(q.id) size="38" placeholder="00000000-0000-0000-0000-000000000000";
            }
            button type="submit" data-testid="search-id" { "Open job" }
        }
    }
}

fn results(q: &JobsQuery, page: &JobPage) -> Markup {
    let filters = query_string(q.pairs());
    let live = q.before.trim().is_empty();
    let next = page.next_before_seq.map(|b| {
        let b = b.to_string();
        let mut pairs = q.pairs();
        pairs.push(("before", b.as_str()));
        format!("/ui/jobs?{}", query_string(pairs))
    });
    html! {
        section #jobs-results aria-label="Jobs" {
            @if page.jobs.is_empty() {
                p #no-jobs data-testid="no-jobs" { "No jobs match." }
            }
            table #jobs-table data-testid="jobs-table" {
                caption.visually-hidden { "Jobs, newest first" }
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Runbook" } th scope="col" { "Status" }
                    th scope="col" { "Context" } th scope="col" { "Created" } th scope="col" { "Duration" }
                    th scope="col" { "Error" }
                } }
                tbody #jobs-rows data-live=[live.then(|| format!("/ui/jobs/stream?{filters}"))]
                    data-target="jobs-rows" {
                    (rows(&page.jobs))
                }
            }
            nav.pager aria-label="Pages" {
                @if !q.before.trim().is_empty() {
                    a href={ "/ui/jobs?" (filters) } data-testid="first-page"
                        hx-get={ "/ui/jobs?" (filters) } hx-target="#jobs-results" hx-swap="outerHTML" hx-push-url="true" { "Newest jobs" }
                }
                @if let Some(next) = &next {
                    a href=(next) rel="next" data-testid="next-page"
                        hx-get=(next) hx-target="#jobs-results" hx-swap="outerHTML" hx-push-url="true" { "Older jobs" }
                }
            }
        }
    }
}

/// The rows of the jobs table.
pub(crate) fn rows(jobs: &[JobRecord]) -> Markup {
    html! {
        @for job in jobs {
            @let id = job.id.to_string();
            tr data-job-id=(id) data-status=(job.status.as_str()) {
                th scope="row" { a href={ "/ui/jobs/" (id) } title=(id) { code { (&id[..8]) } } }
                td { a href={ "/ui/solutions/" (seg(&job.solution)) "/runbooks/" (seg(&job.runbook)) } { (job.solution) "/" (job.runbook) } }
                td { (layout::badge(job.status.as_str())) }
                td { @if let Some(c) = &job.context_id { code { (c) } } }
                td { (time(job.created_at)) }
                td { @if let (Some(s), Some(f)) = (job.started_at, job.finished_at) {
                    (duration_ms((f - s).num_microseconds().unwrap_or(0) as f64 / 1000.0))
                } }
                td.error { @if let Some(e) = &job.error {
                    @let e = ferry_core::secrets::redact_str(e);
                    @if e.chars().count() > 120 { (e.chars().take(119).collect::<String>()) "…" } @else { (e) }
                } }
            }
        }
    }
}

struct StreamState {
    console: Console,
    filter: JobFilter,
    last: String,
    first: bool,
    until: Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// `GET /ui/jobs/stream`: `rows` events with the first page's rows whenever they change.
pub(crate) async fn stream(State(console): State<Console>, Query(q): Query<JobsQuery>) -> Response {
    let mut filter = match q.filter() {
        Ok(f) => f,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    filter.before_seq = None;
    let state = StreamState {
        shutdown: console.options.shutdown.clone(),
        console,
        filter,
        last: String::new(),
        first: true,
        until: Instant::now() + STREAM_LIFETIME,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
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
            match st.console.app.engine.store.list_jobs(&st.filter).await {
                Ok(page) => {
                    let html = rows(&page.jobs).into_string();
                    if html != st.last {
                        st.last.clone_from(&html);
                        let event = Event::default().event("rows").data(html);
                        return Some((Ok::<_, Infallible>(event), st));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "console: live jobs list failed");
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_fields_are_checked_and_named() {
        let q = JobsQuery {
            status: "failed".into(),
            solution: " s ".into(),
            from: "2026-11-30T10:05".into(),
            to: "2026-11-30T11:00:00Z".into(),
            before: "42".into(),
            ..Default::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.status, Some(JobStatus::Failed));
        assert_eq!(f.solution.as_deref(), Some("s"));
        assert_eq!(f.runbook, None);
        assert_eq!(f.before_seq, Some(42));
        assert_eq!(
            f.created_from.unwrap().to_rfc3339(),
            "2026-11-30T10:05:00+00:00"
        );
        assert_eq!(
            f.created_to.unwrap().to_rfc3339(),
            "2026-11-30T11:00:00+00:00"
        );
        for (q, field) in [
            (
                JobsQuery {
                    status: "done".into(),
                    ..Default::default()
                },
                "'status'",
            ),
            (
                JobsQuery {
                    before: "x".into(),
                    ..Default::default()
                },
                "'before'",
            ),
            (
                JobsQuery {
                    from: "yesterday".into(),
                    ..Default::default()
                },
                "'from'",
            ),
            (
                JobsQuery {
                    to: "2026-13-01T00:00".into(),
                    ..Default::default()
                },
                "'to'",
            ),
        ] {
            let e = q.filter().unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
