//! `GET /ui/solutions`, `/ui/solutions/{solution}` and
//! `/ui/solutions/{solution}/runbooks/{runbook}`: what is loaded, with trigger URLs, the step
//! tree, connections (secrets redacted by the API's own function) and schedules.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use ferry_engine::{CompiledRunbook, CompiledSolution};
use maud::{html, Markup, PreEscaped};

use crate::auth::Session;
use crate::layout::{self, Nav};
use crate::util::{json_block, opt_time, query_string, seg, time};
use crate::{tree, Console};

fn trigger_url(console: &Console, sol: &str, rb: &str) -> String {
    format!(
        "{}/inbound/{}/{}",
        console.app.options.public_url.trim_end_matches('/'),
        seg(sol),
        seg(rb)
    )
}

fn runbook_href(sol: &str, rb: &str) -> String {
    format!("/ui/solutions/{}/runbooks/{}", seg(sol), seg(rb))
}

/// `GET /ui/solutions`.
pub(crate) async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    let solutions = console.app.engine.solutions();
    let main = html! {
        h1 { "Solutions" }
        @if solutions.is_empty() {
            p { "No solutions are loaded." }
        }
        table #solutions data-testid="solutions" {
            caption.visually-hidden { "Loaded solutions" }
            thead { tr {
                th scope="col" { "Solution" } th scope="col" { "Description" }
                th scope="col" { "Version" } th scope="col" { "Mode" }
                th scope="col" { "Runbooks" } th scope="col" { "Connections" }
            } }
            tbody {
                @for sol in &solutions {
                    tr data-solution=(sol.name) {
                        th scope="row" { a href={ "/ui/solutions/" (seg(&sol.name)) } { (sol.name) } }
                        td { (sol.description.as_deref().unwrap_or("")) }
                        td { (version_cell(&served_version(&console, sol))) }
                        td { (mode_badge(&console, sol)) }
                        td {
                            ul.plain {
                                @for rb in sol.runbooks.values() {
                                    li { a href=(runbook_href(&sol.name, &rb.name)) { (rb.name) } " " span.muted { code { (rb.trigger_type) } } }
                                }
                            }
                        }
                        td { (sol.connections.len()) }
                    }
                }
            }
        }
    };
    layout::page("Solutions", Nav::Solutions, Some(&session), main)
}

/// The version a solution is served with, as the API reports it (`Engine::served_version`: the
/// git state as of the last load or reload).
fn served_version(
    console: &Console,
    sol: &CompiledSolution,
) -> ferry_engine::versions::SolutionVersion {
    console
        .app
        .engine
        .served_version(&sol.name)
        .unwrap_or_else(|| sol.version.clone())
}

/// A solution's version: its id, and the git commit it was loaded from (shortened; "with
/// uncommitted changes" when the folder differed from it).
fn version_cell(v: &ferry_engine::versions::SolutionVersion) -> Markup {
    html! {
        code.version data-version=(v.id) { (v.id) }
        @if let Some(git) = &v.git {
            " " span.muted {
                "git " code title=(git.commit) { (git.commit.get(..10).unwrap_or(&git.commit)) }
                @if git.dirty { " with uncommitted changes" }
            }
        }
    }
}

/// How a solution is served, as a badge (`live` or `draft`).
fn mode_badge(console: &Console, sol: &CompiledSolution) -> Markup {
    let mode = console.app.engine.mode(&sol.name).as_str();
    html! { span data-mode=(mode) { (layout::badge(mode)) } }
}

fn not_found(session: &Session, what: String) -> Response {
    layout::session_error(
        StatusCode::NOT_FOUND,
        session,
        Nav::Solutions,
        "Not found",
        &what,
    )
}

fn find(console: &Console, name: &str) -> Option<Arc<CompiledSolution>> {
    console.app.engine.solution(name)
}

async fn schedules_of(
    console: &Console,
    solution: &str,
    runbook: Option<&str>,
) -> Result<Vec<ferry_engine::scheduler::ScheduleStatus>, String> {
    let all = ferry_engine::scheduler::list(&console.app.engine, 5).await?;
    Ok(all
        .into_iter()
        .filter(|s| s.solution == solution && runbook.is_none_or(|r| s.runbook == r))
        .collect())
}

fn schedules_table(list: &Result<Vec<ferry_engine::scheduler::ScheduleStatus>, String>) -> Markup {
    html! {
        @match list {
            Err(e) => { p.alert role="alert" { "Reading the schedules failed: " (e) } }
            Ok(list) if list.is_empty() => { p #schedules data-testid="schedules" { "No scheduled runbooks." } }
            Ok(list) => { table #schedules data-testid="schedules" {
                thead { tr {
                    th scope="col" { "Runbook" } th scope="col" { "When" } th scope="col" { "Catch up" }
                    th scope="col" { "Last run" } th scope="col" { "Next runs" }
                } }
                tbody {
                    @for s in list {
                        tr data-runbook=(s.runbook) {
                            td { a href=(runbook_href(&s.solution, &s.runbook)) { (s.runbook) } }
                            td { (s.description) @if s.disabled { " " span.badge { "disabled" } } }
                            td { (s.catch_up) }
                            td { (opt_time(s.last_tick)) }
                            td {
                                @if s.next_runs.is_empty() { span.muted { "none" } }
                                ol.plain.next-runs {
                                    @for t in &s.next_runs { li { (time(*t)) } }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn connections_table(sol: &CompiledSolution, only: Option<&[String]>) -> Markup {
    let connections: Vec<_> = ferry_server::connections_view(sol)
        .into_iter()
        .filter(|c| only.is_none_or(|names| names.contains(&c.name)))
        .collect();
    html! {
        @if connections.is_empty() {
            p #connections data-testid="connections" { "No connections." }
        } @else {
            table #connections data-testid="connections" {
                thead { tr {
                    th scope="col" { "Connection" } th scope="col" { "Connector" }
                    th scope="col" { "Direction" } th scope="col" { "Configuration (secrets redacted)" }
                } }
                tbody {
                    @for c in &connections {
                        tr data-connection=(c.name) {
                            th scope="row" { code { (c.name) } }
                            td { (c.connector) }
                            td { (c.direction.and_then(|d| serde_json::to_value(d).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "unused".into())) }
                            td { details { summary { "configuration" } (json_block(&c.config, &format!("Configuration of {}", c.name))) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/solutions/{solution}`.
pub(crate) async fn solution(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let Some(sol) = find(&console, &name) else {
        return not_found(&session, format!("Solution '{name}' is not loaded."));
    };
    let schedules = schedules_of(&console, &sol.name, None).await;
    let provisioning: Vec<_> = console
        .app
        .engine
        .provisioning(&sol.name)
        .iter()
        .map(ferry_server::provision_view)
        .collect();
    let version = served_version(&console, &sol);
    let main = html! {
        nav aria-label="Breadcrumb" { a href="/ui/solutions" { "Solutions" } " / " }
        h1 { "Solution " code { (sol.name) } }
        @if let Some(d) = &sol.description { p { (d) } }
        dl #version-info data-testid="version-info" {
            dt { "Version" } dd { (version_cell(&version)) }
            dt { "Loaded" } dd { (opt_time(version.loaded_at)) }
            dt { "Mode" } dd {
                (mode_badge(&console, &sol))
                @if console.app.engine.mode(&sol.name) == ferry_engine::versions::Mode::Draft {
                    " " span.hint {
                        "Only requests with " code { "x-ferry-test: 1" } " are taken, and schedules do not fire; "
                        code { "ferry promote " (sol.name) } " serves it live."
                    }
                }
            }
        }
        h2 { "Runbooks" }
        table #runbooks data-testid="runbooks" {
            thead { tr {
                th scope="col" { "Runbook" } th scope="col" { "Trigger" } th scope="col" { "Trigger URL" }
                th scope="col" { "Jobs" }
            } }
            tbody {
                @for rb in sol.runbooks.values() {
                    tr data-runbook=(rb.name) {
                        th scope="row" { a href=(runbook_href(&sol.name, &rb.name)) { (rb.name) } }
                        td { code { (rb.trigger_type) } }
                        td { code.trigger-url { (trigger_url(&console, &sol.name, &rb.name)) } }
                        td { a href={ "/ui/jobs?" (query_string([("solution", sol.name.as_str()), ("runbook", rb.name.as_str())])) } { "jobs" } }
                    }
                }
            }
        }
        h2 { "Connections" }
        (connections_table(&sol, None))
        h2 { "Provisioning" }
        @if provisioning.is_empty() {
            p { "Nothing to provision." }
        } @else {
            ul #provisioning data-testid="provisioning" {
                @for p in &provisioning {
                    @let state = serde_json::to_value(p.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                    li { code { (p.name) } " " (layout::badge(&state))
                        @if let Some(e) = &p.last_error { " " span.alert { (e) } } }
                }
            }
        }
        h2 { "Schedules" }
        (schedules_table(&schedules))
    };
    layout::page(&sol.name, Nav::Solutions, Some(&session), main)
}

/// The runbook drawn as SVG by `ferry-diagram`: each step links to its item in the step tree
/// below (the accessible form of the same tree), action types carry their descriptions.
pub(crate) fn diagram(
    rb: &CompiledRunbook,
    labels: &dyn ferry_diagram::Labeller,
) -> PreEscaped<String> {
    PreEscaped(ferry_diagram::render_svg_with(
        &rb.model,
        &ferry_diagram::Options {
            id_prefix: Some(&format!("diagram-{}", rb.name)),
            labeller: Some(labels),
        },
    ))
}

/// The diagram's labels on the runbook page (and the base of the job page's).
pub(crate) struct RunbookLabels<'a> {
    pub(crate) rb: &'a CompiledRunbook,
}

impl ferry_diagram::Labeller for RunbookLabels<'_> {
    fn action_title(&self, action: &str) -> Option<String> {
        self.rb
            .steps
            .values()
            .map(|s| s.action.spec())
            .find(|spec| spec.name == action)
            .map(|spec| spec.description.to_string())
    }

    fn step_href(&self, step_id: &str) -> Option<String> {
        Some(format!("#step-{step_id}"))
    }
}

/// `GET /ui/solutions/{solution}/runbooks/{runbook}`.
pub(crate) async fn runbook(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((name, runbook)): Path<(String, String)>,
) -> Response {
    let Some((sol, rb)) = console.app.engine.runbook(&name, &runbook) else {
        return not_found(
            &session,
            format!("Runbook '{runbook}' of solution '{name}' is not loaded."),
        );
    };
    let schedules = schedules_of(&console, &sol.name, Some(&rb.name)).await;
    let mut used: Vec<String> = rb.inbound.iter().cloned().collect();
    for step in rb.steps.values() {
        if let Some(c) = &step.connection {
            if !used.contains(c) {
                used.push(c.clone());
            }
        }
    }
    let concurrency = rb.concurrency.map(|c| match c {
        ferry_core::model::Concurrency::PerRunbook => "per runbook",
        ferry_core::model::Concurrency::PerJobContext => "per job context",
    });
    let main = html! {
        nav aria-label="Breadcrumb" {
            a href="/ui/solutions" { "Solutions" } " / "
            a href={ "/ui/solutions/" (seg(&sol.name)) } { (sol.name) } " / "
        }
        h1 { "Runbook " code { (rb.name) } }
        @if let Some(d) = &rb.description { p { (d) } }
        dl.facts #runbook-facts {
            dt { "Trigger" } dd { code { (rb.trigger_type) } }
            dt { "Trigger URL" } dd { code #trigger-url data-testid="trigger-url" { (trigger_url(&console, &sol.name, &rb.name)) } }
            @if let Some(c) = &rb.inbound { dt { "Inbound connection" } dd { code { (c) } } }
            dt { "Concurrency" } dd { (concurrency.unwrap_or("none")) }
            @if !rb.variables.is_empty() {
                dt { "Variables" } dd { @for (i, v) in rb.variables.iter().enumerate() { @if i > 0 { ", " } code { (v.id) } } }
            }
            dt { "Defined in" } dd { code { (rb.model.file.display()) } }
            dt { "Jobs" } dd { a href={ "/ui/jobs?" (query_string([("solution", sol.name.as_str()), ("runbook", rb.name.as_str())])) } data-testid="runbook-jobs" { "jobs of this runbook" } }
        }
        h2 #steps-title { "Steps" }
        figure.diagram #diagram data-testid="diagram" {
            (diagram(&rb, &RunbookLabels { rb: &rb }))
            figcaption.hint { "The same steps follow as a list." }
        }
        (tree::step_tree(&rb.model, &|_| html! {}, &|_| None))
        h2 { "Connections" }
        (connections_table(&sol, Some(&used)))
        h2 { "Schedule" }
        (schedules_table(&schedules))
    };
    layout::page(
        &format!("{}/{}", sol.name, rb.name),
        Nav::Solutions,
        Some(&session),
        main,
    )
}
