//! The page shell: head with the embedded styles and scripts, the skip link, the main
//! navigation with the logout form, and error pages.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::assets;
use crate::auth::{Session, CSRF_FIELD};

/// Which navigation entry is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nav {
    /// No navigation (login, errors without a session).
    None,
    Overview,
    Solutions,
    Jobs,
}

/// A complete HTML page (200).
pub(crate) fn page(title: &str, nav: Nav, session: Option<&Session>, main: Markup) -> Response {
    html_response(StatusCode::OK, shell(title, nav, session, main))
}

/// An HTML answer with this status.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A page of the console: `<title>` is "`title` · Ferry".
pub(crate) fn shell(title: &str, nav: Nav, session: Option<&Session>, main: Markup) -> Markup {
    let item = |this: Nav, href: &str, label: &str, testid: &str| {
        html! {
            li {
                a href=(href) data-testid=(testid)
                    aria-current=[(nav == this).then_some("page")] { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx must not add inline styles (the Content-Security-Policy forbids them).
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · Ferry" }
                link rel="stylesheet" href=(assets::url("console.css"));
                script src=(assets::url("htmx.min.js")) defer {}
                script src=(assets::url("console.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "Ferry" }
                    @if nav != Nav::None {
                        nav aria-label="Main" {
                            ul {
                                (item(Nav::Overview, "/ui/", "Overview", "nav-overview"))
                                (item(Nav::Solutions, "/ui/solutions", "Solutions", "nav-solutions"))
                                (item(Nav::Jobs, "/ui/jobs", "Jobs", "nav-jobs"))
                            }
                        }
                    }
                    @if let Some(s) = session {
                        form #logout-form method="post" action="/ui/logout" {
                            input type="hidden" name=(CSRF_FIELD) value=(s.csrf);
                            button type="submit" data-testid="logout" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// An error page with a heading and a message (the message names the problem).
pub(crate) fn error_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let main = html! {
        h1 { (heading) }
        p.alert role="alert" data-testid="error-message" { (message) }
        p { a href="/ui/" { "Back to the overview" } }
    };
    html_response(status, shell(heading, Nav::None, None, main))
}

/// An error page inside the console's navigation (for a logged-in session).
pub(crate) fn session_error(
    status: StatusCode,
    session: &Session,
    nav: Nav,
    heading: &str,
    message: &str,
) -> Response {
    let main = html! {
        h1 { (heading) }
        p.alert role="alert" data-testid="error-message" { (message) }
    };
    html_response(status, shell(heading, nav, Some(session), main))
}

/// A status word as a badge (`status-failed` …), with the word itself as text.
pub(crate) fn badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } data-status=(status) { (status) } }
}
