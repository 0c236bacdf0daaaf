//! Login with the management API token, server-side sessions, CSRF tokens, logout.
//!
//! A session is a random 256-bit token in the `ferry_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/ui`, `Secure` when the request came over https). The server keeps
//! only its SHA-256, with the session's CSRF token and expiry; sessions end at logout, at
//! expiry (`--ui-session-ttl` after login) or when the server restarts. Every POST behind a
//! session must carry the session's CSRF token in the form field `csrf` (checked here, in the
//! middleware, before any handler runs). The login form itself is protected by a
//! double-submit token (`ferry_login` cookie = form field).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ferry_engine::connector::constant_time_eq;
use maud::html;
use parking_lot::Mutex;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::layout;
use crate::Console;

/// The session cookie.
pub const SESSION_COOKIE: &str = "ferry_session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "ferry_login";
/// The form field every POST carries its CSRF token in.
pub const CSRF_FIELD: &str = "csrf";

/// Largest form body the console reads (the forms are a few fields).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A logged-in session, handed to handlers as a request extension.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The CSRF token every form of this session carries.
    pub(crate) csrf: String,
    expires_at: Instant,
}

/// The live sessions, by the SHA-256 of their cookie value.
pub(crate) struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Start a session: its cookie value.
    fn create(&self) -> String {
        let token = random_token();
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires_at > now);
        map.insert(
            digest(&token),
            Session {
                csrf: random_token(),
                expires_at: now + self.ttl,
            },
        );
        token
    }

    /// The live session of this cookie value.
    fn get(&self, token: &str) -> Option<Session> {
        let key = digest(token);
        let mut map = self.map.lock();
        match map.get(&key) {
            Some(s) if s.expires_at > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    fn remove(&self, token: &str) {
        self.map.lock().remove(&digest(token));
    }
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request reached us over https (directly or through a proxy that says so), or
/// the server's public URL is https: then cookies get `Secure`.
fn is_https(console: &Console, headers: &HeaderMap) -> bool {
    let header_says = |name: &str, check: &dyn Fn(&str) -> bool| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(check)
    };
    header_says("x-forwarded-proto", &|v| {
        v.split(',')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }) || header_says("forwarded", &|v| {
        v.to_ascii_lowercase()
            .split([';', ','])
            .any(|p| p.trim() == "proto=https")
    }) || console
        .app
        .options
        .public_url
        .to_ascii_lowercase()
        .starts_with("https://")
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where to go after logging in: a console path only (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/") || n.starts_with("/ui?"))
                && !n.contains("://")
                && !n.contains('\\')
                && !n.starts_with("/ui/login")
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

/// The middleware of every [`crate::Access::Session`] route: no live session → the login page
/// (GET) or 401; a POST without the session's CSRF token → 403. Otherwise the request goes on
/// with the [`Session`] as an extension.
pub(crate) async fn require_session(
    State(console): State<Console>,
    request: Request,
    next: Next,
) -> Response {
    let session = cookie(request.headers(), SESSION_COOKIE).and_then(|t| console.sessions.get(t));
    let Some(session) = session else {
        return unauthenticated(&request);
    };
    let (parts, body) = request.into_parts();
    let body = if parts.method == Method::POST {
        let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return layout::error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "The form was larger than the console accepts.",
                )
            }
        };
        let presented = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned());
        let ok = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), session.csrf.as_bytes()));
        if !ok {
            return layout::error_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form did not carry this session's CSRF token (field 'csrf'). \
                 Reload the page and try again.",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    let mut request = Request::from_parts(parts, body);
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn unauthenticated(request: &Request) -> Response {
    let wants_page = request.method() == Method::GET
        && !request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"))
        && !request.uri().path().ends_with("/stream");
    if !wants_page {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Not logged in: log in at /ui/login\n",
        )
            .into_response();
    }
    let here = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/ui/");
    let target = format!(
        "/ui/login?next={}",
        form_urlencoded::byte_serialize(safe_next(Some(here)).as_bytes()).collect::<String>()
    );
    let mut response = Redirect::to(&target).into_response();
    if request.headers().contains_key("hx-request") {
        if let Ok(v) = HeaderValue::from_str(&target) {
            response.headers_mut().insert("hx-redirect", v);
        }
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/login`.
pub(crate) async fn login_form(
    State(console): State<Console>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    login_page(&console, &headers, q.next.as_deref(), StatusCode::OK, None)
}

fn login_page(
    console: &Console,
    headers: &HeaderMap,
    next: Option<&str>,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = random_token();
    let next = safe_next(next);
    let body = html! {
        section.login aria-labelledby="login-title" {
            h1 #login-title { "Log in to Ferry" }
            @if let Some(e) = error {
                p.alert role="alert" data-testid="login-error" { (e) }
            }
            form #login-form method="post" action="/ui/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="token" { "Management API token" }
                input #token type="password" name="token" autocomplete="current-password"
                    required autofocus;
                p.hint { "The token of " code { "FERRY_API_TOKEN" } " or " code { "<data>/api.token" } "." }
                button type="submit" data-testid="login-submit" { "Log in" }
            }
        }
    };
    let mut response = layout::page("Log in", layout::Nav::None, None, body);
    *response.status_mut() = status;
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &csrf,
            "/ui/login",
            3600,
            is_https(console, headers),
        ),
    );
    response
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
    next: Option<String>,
}

/// `POST /ui/login`: the API token (constant-time compare) → a new session.
pub(crate) async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let form_token = form.csrf.as_deref().unwrap_or("");
    if cookie_token.is_empty() || !constant_time_eq(cookie_token.as_bytes(), form_token.as_bytes())
    {
        return login_page(
            &console,
            &headers,
            form.next.as_deref(),
            StatusCode::FORBIDDEN,
            Some("The login form expired (its CSRF token did not match). Please try again."),
        );
    }
    let presented = form.token.as_deref().unwrap_or("").trim();
    let expected = console.app.options.api_token.as_bytes();
    if presented.is_empty() || !constant_time_eq(presented.as_bytes(), expected) {
        tracing::warn!("console: login with a wrong token");
        return login_page(
            &console,
            &headers,
            form.next.as_deref(),
            StatusCode::UNAUTHORIZED,
            Some("That is not the management API token."),
        );
    }
    let token = console.sessions.create();
    let secure = is_https(&console, &headers);
    let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &token,
            "/ui",
            console.sessions.ttl.as_secs(),
            secure,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/ui/login", 0, secure),
    );
    response
}

/// `POST /ui/logout`: end the session (the middleware checked it and its CSRF token).
pub(crate) async fn logout(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        console.sessions.remove(token);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/ui", 0, is_https(&console, &headers)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(
            safe_next(Some("/ui/jobs?status=failed")),
            "/ui/jobs?status=failed"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/ui",
            "/uievil/../x",
            "/ui/login?next=/ui/",
            "/ui\\x",
            "/other",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn sessions_expire_and_can_be_removed() {
        let sessions = Sessions::new(Duration::from_millis(30));
        let a = sessions.create();
        let b = sessions.create();
        assert!(sessions.get(&a).is_some());
        assert_ne!(
            sessions.get(&a).unwrap().csrf,
            sessions.get(&b).unwrap().csrf
        );
        sessions.remove(&a);
        assert!(sessions.get(&a).is_none());
        assert!(sessions.get("not-a-session").is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(sessions.get(&b).is_none());
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
