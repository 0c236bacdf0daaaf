//! Ferry's web console: server-rendered HTML pages under `/ui`, served by `ferry serve` on the
//! same port as the API (`docs/console.md`).
//!
//! Pages are rendered with `maud` from the engine and the store — the same values the
//! management API shows, secrets redacted by the same functions (`ferry-server`). Every page is
//! complete HTML that reads without JavaScript; a vendored htmx (`assets/`, embedded) swaps the
//! jobs table when filtering or paging, and a small script listens to server-sent events while
//! jobs run. No asset comes from anywhere but the binary.
//!
//! Every route is listed once, in [`ROUTES`]: the router is built from that table, each entry
//! says whether it needs a session, and the tests walk it to prove that no page or action is
//! reachable without one. Sessions are server-side (`auth`), started by logging in with the
//! management API token; every POST carries the session's CSRF token.

mod assets;
mod auth;
mod charts;
mod job;
mod jobs;
mod layout;
mod overview;
mod solutions;
mod tree;
mod util;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::middleware;
use axum::routing::MethodRouter;
use axum::Router;
use ferry_server::AppState;
use indexmap::IndexMap;

pub use auth::{CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE};

/// Settings of the console.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// The store in use, as shown on the overview (e.g. `SQLite (./ferry-data/ferry.db)`).
    pub store: String,
    /// How long a session lasts after logging in.
    pub session_ttl: Duration,
    /// Becomes `true` when the server shuts down: live streams (server-sent events) end so that
    /// the graceful shutdown does not wait for them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Who may reach a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the login form and the static assets.
    Public,
    /// Only a logged-in session (and, for POST, the session's CSRF token).
    Session,
}

/// One route of the console.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path as axum matches it (`{name}` for a segment).
    pub path: &'static str,
    /// Who may reach it.
    pub access: Access,
    /// What it is, for the docs and test messages.
    pub what: &'static str,
    page: Page,
}

#[derive(Clone, Copy, Debug)]
enum Page {
    Root,
    LoginForm,
    Login,
    Logout,
    Overview,
    Solutions,
    Solution,
    Runbook,
    Jobs,
    JobsStream,
    Job,
    JobStream,
    JobRerun,
    Asset,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    what: &'static str,
    page: Page,
) -> Route {
    Route {
        method,
        path,
        access,
        what,
        page,
    }
}

/// Every route of the console, in one place.
pub const ROUTES: &[Route] = &[
    route(
        "GET",
        "/ui",
        Access::Session,
        "redirect to the overview",
        Page::Root,
    ),
    route(
        "GET",
        "/ui/login",
        Access::Public,
        "login form",
        Page::LoginForm,
    ),
    route(
        "POST",
        "/ui/login",
        Access::Public,
        "log in with the API token",
        Page::Login,
    ),
    route(
        "POST",
        "/ui/logout",
        Access::Session,
        "log out",
        Page::Logout,
    ),
    route("GET", "/ui/", Access::Session, "overview", Page::Overview),
    route(
        "GET",
        "/ui/solutions",
        Access::Session,
        "solutions",
        Page::Solutions,
    ),
    route(
        "GET",
        "/ui/solutions/{solution}",
        Access::Session,
        "one solution",
        Page::Solution,
    ),
    route(
        "GET",
        "/ui/solutions/{solution}/runbooks/{runbook}",
        Access::Session,
        "one runbook",
        Page::Runbook,
    ),
    route("GET", "/ui/jobs", Access::Session, "jobs list", Page::Jobs),
    route(
        "GET",
        "/ui/jobs/stream",
        Access::Session,
        "jobs list live rows (server-sent events)",
        Page::JobsStream,
    ),
    route(
        "GET",
        "/ui/jobs/{id}",
        Access::Session,
        "one job",
        Page::Job,
    ),
    route(
        "GET",
        "/ui/jobs/{id}/stream",
        Access::Session,
        "one job live (server-sent events)",
        Page::JobStream,
    ),
    route(
        "POST",
        "/ui/jobs/{id}/rerun",
        Access::Session,
        "re-run a failed job",
        Page::JobRerun,
    ),
    route(
        "GET",
        "/ui/assets/{name}",
        Access::Public,
        "embedded styles and scripts",
        Page::Asset,
    ),
];

/// Shared state of the console's handlers.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) app: AppState,
    pub(crate) sessions: Arc<auth::Sessions>,
    pub(crate) options: Arc<ConsoleOptions>,
}

fn handler(page: Page) -> MethodRouter<Console> {
    use axum::routing::{get, post};
    match page {
        Page::Root => get(|| async { axum::response::Redirect::to("/ui/") }),
        Page::LoginForm => get(auth::login_form),
        Page::Login => post(auth::login),
        Page::Logout => post(auth::logout),
        Page::Overview => get(overview::page),
        Page::Solutions => get(solutions::list),
        Page::Solution => get(solutions::solution),
        Page::Runbook => get(solutions::runbook),
        Page::Jobs => get(jobs::page),
        Page::JobsStream => get(jobs::stream),
        Page::Job => get(job::page),
        Page::JobStream => get(job::stream),
        Page::JobRerun => post(job::rerun),
        Page::Asset => get(assets::serve),
    }
}

/// The console's routes for [`ferry_server::router_with`]: everything under `/ui`.
pub fn routes(options: ConsoleOptions) -> impl FnOnce(AppState) -> Router<AppState> {
    move |app| {
        let console = Console {
            app,
            sessions: Arc::new(auth::Sessions::new(options.session_ttl)),
            options: Arc::new(options),
        };
        build(console)
    }
}

fn build(console: Console) -> Router<AppState> {
    let mut by_path: IndexMap<&'static str, MethodRouter<Console>> = IndexMap::new();
    for r in ROUTES {
        let mut mr = handler(r.page);
        if r.access == Access::Session {
            mr = mr.layer(middleware::from_fn_with_state(
                console.clone(),
                auth::require_session,
            ));
        }
        let entry = by_path.entry(r.path).or_default();
        *entry = std::mem::take(entry).merge(mr);
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    router
        .layer(middleware::from_fn(util::security_headers))
        .with_state(console)
}

/// The methods of [`ROUTES`] as `http` methods (for tests and docs).
pub fn route_method(r: &Route) -> Method {
    match r.method {
        "POST" => Method::POST,
        _ => Method::GET,
    }
}
