//! `GET /ui/`: events per minute over the last hour, jobs by status, the runbooks that fail
//! most (last 24 h), the provisioning state of connections and triggers, the store in use.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use chrono::{TimeDelta, Utc};
use ferry_api as api;
use maud::html;

use crate::auth::Session;
use crate::layout::{self, Nav};
use crate::util::{opt_time, query_string, seg};
use crate::{charts, Console};

/// `GET /ui/`.
pub(crate) async fn page(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    let store = &console.app.engine.store;
    let now = Utc::now();
    let loaded = tokio::try_join!(
        store.jobs_per_minute(charts::hour_before(now)),
        store.count_by_status(),
        store.failed_by_runbook(now - TimeDelta::hours(24), 10),
    );
    let (minutes, counts, failing) = match loaded {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "console: reading the overview failed");
            return layout::session_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &session,
                Nav::Overview,
                "Overview unavailable",
                &format!("Reading the store failed: {e}"),
            );
        }
    };
    let series = charts::minute_series(&minutes, now, 60);
    let solutions = console.app.engine.solutions();
    let provisioning: Vec<(String, api::ProvisionStatus)> = solutions
        .iter()
        .flat_map(|s| {
            console
                .app
                .engine
                .provisioning(&s.name)
                .iter()
                .map(|p| (s.name.clone(), ferry_server::provision_view(p)))
                .collect::<Vec<_>>()
        })
        .collect();
    let main = html! {
        h1 { "Overview" }
        div.cards {
            section.card aria-labelledby="events-title" data-testid="events" {
                h2 #events-title { "Events per minute" }
                p.hint { "Jobs created per minute over the last hour (UTC)." }
                (charts::events_chart(&series))
            }
            section.card aria-labelledby="status-title" {
                h2 #status-title { "Jobs by status" }
                table #jobs-by-status data-testid="jobs-by-status" {
                    thead { tr { th scope="col" { "Status" } th scope="col" { "Jobs" } } }
                    tbody {
                        @for (status, n) in &counts {
                            tr data-status=(status.as_str()) {
                                td { a href={ "/ui/jobs?" (query_string([("status", status.as_str())])) } { (layout::badge(status.as_str())) } }
                                td.count { (n) }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="store-title" {
                h2 #store-title { "Store" }
                p #store-in-use data-testid="store-in-use" { (console.options.store) }
                p.hint { (solutions.len()) " solution(s) loaded." }
            }
        }
        section aria-labelledby="failing-title" {
            h2 #failing-title { "Runbooks that fail most" }
            p.hint { "Failed jobs created in the last 24 hours." }
            @if failing.is_empty() {
                p #failing-runbooks data-testid="failing-runbooks" { "No failed jobs in the last 24 hours." }
            } @else {
                table #failing-runbooks data-testid="failing-runbooks" {
                    thead { tr { th scope="col" { "Runbook" } th scope="col" { "Failed jobs" } } }
                    tbody {
                        @for f in &failing {
                            tr {
                                td { a href={ "/ui/jobs?" (query_string([("solution", f.solution.as_str()), ("runbook", f.runbook.as_str()), ("status", "failed")])) } {
                                    (f.solution) "/" (f.runbook)
                                } }
                                td.count { (f.failed) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="provisioning-title" {
            h2 #provisioning-title { "Provisioning" }
            p.hint { "Connections and triggers that set themselves up in an external system." }
            @if provisioning.is_empty() {
                p #provisioning data-testid="provisioning" { "Nothing to provision." }
            } @else {
                table #provisioning data-testid="provisioning" {
                    thead { tr {
                        th scope="col" { "Solution" } th scope="col" { "Kind" } th scope="col" { "Name" }
                        th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Last error" }
                        th scope="col" { "Next attempt" }
                    } }
                    tbody {
                        @for (sol, p) in &provisioning {
                            @let state = serde_json::to_value(p.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                            @let kind = serde_json::to_value(p.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                            tr data-state=(state) {
                                td { a href={ "/ui/solutions/" (seg(sol)) } { (sol) } }
                                td { (kind) }
                                td { code { (p.name) } }
                                td { (layout::badge(&state)) }
                                td { (p.attempts) }
                                td { @if let Some(e) = &p.last_error { span.alert { (e) } } }
                                td { (opt_time(p.next_attempt_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page("Overview", Nav::Overview, Some(&session), main)
}
