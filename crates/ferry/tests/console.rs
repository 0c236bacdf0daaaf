//! The web console (`/ui`) through the real binary: login and logout, cookie flags, CSRF, that
//! no page or action is reachable without a session (every route of `ferry_console::ROUTES`),
//! job filters and pagination, the job page of a failed job, re-run, live streams and page
//! weight.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{flaky_downstream, solution, Server, TOKEN};
use ferry_console::{Access, ROUTES};
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use serde_json::json;

/// A client that keeps cookies by hand (so the tests can look at their flags) and never
/// follows redirects.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `Set-Cookie` header that sets `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// The value of the hidden input `name` of the form with this id.
    fn hidden(&self, form_id: &str, name: &str) -> String {
        let form = self
            .body
            .split(&format!("id=\"{form_id}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no form {form_id} in\n{}", self.body));
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let at = form
            .find(&format!("name=\"{name}\" value=\""))
            .unwrap_or_else(|| panic!("no field {name} in form {form_id}"));
        let rest = &form[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.url(""),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header(COOKIE, self.cookie_header())
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.client.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// Log in with `token` through the login form.
    async fn login_with(&mut self, token: &str, extra: &[(&str, &str)]) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.hidden("login-form", "csrf");
        let mut req = self.client.post(format!("{}/ui/login", self.base)).form(&[
            ("token", token),
            ("csrf", csrf.as_str()),
            ("next", "/ui/"),
        ]);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    async fn login(&mut self) {
        let page = self.login_with(TOKEN, &[]).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert!(self.cookies.contains_key("ferry_session"));
    }

    /// The session's CSRF token, read from the logout form of a page.
    async fn csrf(&mut self) -> String {
        let page = self.get("/ui/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.hidden("logout-form", "csrf")
    }
}

const RUNBOOKS: &str = "name: s\ndescription: console tests\n";

fn ok_runbook() -> (&'static str, &'static str) {
    (
        "ok",
        "name: ok\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: say, action: debug.log_message, input: { message: \"n is {{ trigger.body.n }}\" } }\n",
    )
}

fn bad_runbook() -> (&'static str, &'static str) {
    (
        "bad",
        "name: bad\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: before, action: debug.log_message, input: { message: \"about to fail\" } }\n  - { id: stop, action: flow.fail, input: { message: \"broke on {{ trigger.body.n }}\" } }\n",
    )
}

async fn post_event(server: &Server, runbook: &str, n: i64, context: Option<&str>) -> String {
    let mut headers = vec![];
    if let Some(c) = context {
        headers.push(("x-job-context-identifier", c));
    }
    let (code, body) = server
        .post(
            &format!("/inbound/s/{runbook}"),
            &json!({ "n": n }),
            &headers,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["job_uuid"].as_str().unwrap().to_string()
}

fn start(tmp: &tempfile::TempDir, extra: &[&str]) -> Server {
    let sol = solution(tmp.path(), "s", RUNBOOKS, &[ok_runbook(), bad_runbook()]);
    Server::start_with(&tmp.path().join("data"), &[&sol], &[], extra)
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp, &[]);
    let mut b = Browser::new(&server);

    // The login form sets its double-submit cookie with the same flags.
    let form = b.get("/ui/login").await;
    let login_cookie = form.set_cookie("ferry_login").expect("login cookie");
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    assert!(form.body.contains("<form id=\"login-form\""));

    // A wrong token: 401, no session.
    let wrong = b.login_with("not-the-token", &[]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("data-testid=\"login-error\""));
    assert!(wrong.set_cookie("ferry_session").is_none());

    // The login form without its CSRF cookie is refused.
    let mut stranger = Browser::new(&server);
    let refused = stranger
        .post("/ui/login", &[("token", TOKEN), ("csrf", "forged")])
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.set_cookie("ferry_session").is_none());

    // The right token: a session cookie, HttpOnly, SameSite=Strict, not Secure over http.
    let ok = b.login_with(TOKEN, &[]).await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.location(), "/ui/");
    let cookie = ok.set_cookie("ferry_session").expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let overview = b.get("/ui/").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("<h1>Overview</h1>"));
    assert!(overview
        .headers
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap().contains("script-src 'self'")));

    // Behind an https proxy the cookie is Secure.
    let mut proxied = Browser::new(&server);
    let secure = proxied
        .login_with(TOKEN, &[("x-forwarded-proto", "https")])
        .await;
    assert_eq!(secure.status, 303);
    assert!(secure
        .set_cookie("ferry_session")
        .unwrap()
        .contains("; Secure"));

    // Logout needs the CSRF token; with it the session ends.
    let csrf = b.csrf().await;
    let session = b.cookies["ferry_session"].clone();
    let no_csrf = b.post("/ui/logout", &[]).await;
    assert_eq!(no_csrf.status, 403);
    assert_eq!(b.get("/ui/").await.status, 200, "still logged in");
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/ui/login");
    assert!(out
        .set_cookie("ferry_session")
        .unwrap()
        .contains("Max-Age=0"));
    // The old cookie no longer opens anything.
    b.cookies.insert("ferry_session".into(), session);
    let after = b.get("/ui/").await;
    assert_eq!(after.status, 303);
    assert!(after.location().starts_with("/ui/login"));
    // The other session is untouched.
    assert_eq!(proxied.get("/ui/jobs").await.status, 200);
}

#[tokio::test]
async fn sessions_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp, &["--ui-session-ttl", "1s"]);
    let mut b = Browser::new(&server);
    b.login().await;
    assert_eq!(b.get("/ui/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let expired = b.get("/ui/").await;
    assert_eq!(expired.status, 303);
    assert!(expired.location().starts_with("/ui/login"));
}

/// Every route of the console with its path segments filled in with things that exist.
fn concrete(path: &str, job: &str) -> String {
    path.replace("{solution}", "s")
        .replace("{runbook}", "bad")
        .replace("{id}", job)
        .replace("{name}", "console.css")
}

#[tokio::test]
async fn no_console_page_or_action_is_reachable_without_a_session() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp, &[]);
    let job = post_event(&server, "bad", 1, None).await;
    server
        .wait_job(&job, &["failed"], Duration::from_secs(10))
        .await;

    // A logged-out session's cookie, a made-up one and none at all.
    let mut old = Browser::new(&server);
    old.login().await;
    let csrf = old.csrf().await;
    let stale = old.cookies["ferry_session"].clone();
    assert_eq!(old.post("/ui/logout", &[("csrf", &csrf)]).await.status, 303);
    let cookies: [Option<String>; 3] = [None, Some("0".repeat(64)), Some(stale)];

    let mut walked = 0;
    for route in ROUTES {
        let path = concrete(route.path, &job);
        for cookie in &cookies {
            let mut b = Browser::new(&server);
            if let Some(c) = cookie {
                b.cookies.insert("ferry_session".into(), c.clone());
            }
            let page = match route.method {
                "POST" => b.post(&path, &[("csrf", &csrf), ("token", TOKEN)]).await,
                _ => b.get(&path).await,
            };
            match route.access {
                Access::Public => {
                    if route.method == "GET" {
                        assert_eq!(page.status, 200, "{} {path}", route.method);
                    }
                }
                Access::Session => {
                    let redirected_to_login =
                        page.status == 303 && page.location().starts_with("/ui/login");
                    assert!(
                        redirected_to_login || page.status == 401,
                        "{} {path} ({}) answered {} without a session:\n{}",
                        route.method,
                        route.what,
                        page.status,
                        page.body
                    );
                    assert!(
                        page.body.len() < 200,
                        "{path} answered a page:\n{}",
                        page.body
                    );
                }
            }
            walked += 1;
        }
    }
    assert!(walked >= 3 * 12, "walked {walked}");
    // The re-run above never ran: the job is still failed after one attempt.
    let (_, j) = server.api(&format!("/jobs/{job}")).await;
    assert_eq!(j["status"], "failed");
    assert_eq!(j["attempts"], 1);

    // With a session but without its CSRF token, no action runs either.
    let mut b = Browser::new(&server);
    b.login().await;
    for route in ROUTES
        .iter()
        .filter(|r| r.method == "POST" && r.access == Access::Session)
    {
        let path = concrete(route.path, &job);
        for form in [vec![], vec![("csrf", "0".repeat(64))]] {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = b.post(&path, &form).await;
            assert_eq!(page.status, 403, "{path} without the CSRF token");
        }
    }
    let (_, j) = server.api(&format!("/jobs/{job}")).await;
    assert_eq!(j["attempts"], 1);
    assert_eq!(b.get("/ui/").await.status, 200, "still logged in");
}

#[tokio::test]
async fn jobs_list_filters_searches_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp, &[]);
    let mut ids = Vec::new();
    for n in 0..60 {
        let runbook = if n % 4 == 0 { "bad" } else { "ok" };
        let context = format!("ctx-{}", n % 3);
        ids.push((
            runbook,
            context.clone(),
            post_event(&server, runbook, n, Some(&context)).await,
        ));
    }
    for (_, _, id) in &ids {
        server
            .wait_job(id, &["failed", "finished"], Duration::from_secs(20))
            .await;
    }
    let mut b = Browser::new(&server);
    b.login().await;
    let row_ids = |body: &str| -> Vec<String> {
        body.split("data-job-id=\"")
            .skip(1)
            .map(|s| s[..36].to_string())
            .collect()
    };

    // Newest first, 50 a page, then the rest through the cursor.
    let first = b.get("/ui/jobs").await;
    assert_eq!(first.status, 200);
    let page1 = row_ids(&first.body);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], ids[59].2);
    assert!(first.body.contains("data-live=\"/ui/jobs/stream"));
    let next = first
        .body
        .split("rel=\"next\" data-testid=\"next-page\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .map(|s| s[..s.find('"').unwrap()].replace("&amp;", "&"))
        .unwrap();
    assert!(next.starts_with("/ui/jobs?before="), "{next}");
    let second = b.get(&next).await;
    let page2 = row_ids(&second.body);
    assert_eq!(page2.len(), 10);
    assert!(!second.body.contains("data-testid=\"next-page\""));
    assert!(second.body.contains("data-testid=\"first-page\""));
    assert!(page1.iter().all(|id| !page2.contains(id)));
    assert_eq!(page2.last(), Some(&ids[0].2));

    // Filters: status, runbook, context id, and together.
    let failed = row_ids(&b.get("/ui/jobs?status=failed").await.body);
    let expected: Vec<String> = ids
        .iter()
        .rev()
        .filter(|(r, _, _)| *r == "bad")
        .map(|(_, _, id)| id.clone())
        .collect();
    assert_eq!(failed, expected);
    let ok = row_ids(&b.get("/ui/jobs?solution=s&runbook=ok&status=").await.body);
    assert_eq!(ok.len(), 45);
    let ctx = row_ids(&b.get("/ui/jobs?context_id=ctx-1&runbook=bad").await.body);
    let expected: Vec<String> = ids
        .iter()
        .rev()
        .filter(|(r, c, _)| *r == "bad" && c == "ctx-1")
        .map(|(_, _, id)| id.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ctx, expected);

    // Time range: nothing is from the future; everything is before it.
    let later = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let none = b.get(&format!("/ui/jobs?from={later}")).await;
    assert_eq!(none.status, 200);
    assert!(row_ids(&none.body).is_empty());
    assert!(none.body.contains("data-testid=\"no-jobs\""));
    assert_eq!(
        row_ids(
            &b.get(&format!("/ui/jobs?to={later}&status=failed"))
                .await
                .body
        )
        .len(),
        15
    );

    // A bad filter value is a 400 naming the field.
    let bad = b.get("/ui/jobs?status=broken").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("&apos;status&apos;") || bad.body.contains("'status'"));
    let bad = b.get("/ui/jobs?from=yesterday").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("from"));

    // Search by id: straight to the job; an unknown id says so; a malformed one names 'id'.
    let (_, _, some) = &ids[7];
    let found = b.get(&format!("/ui/jobs?id={some}")).await;
    assert_eq!(found.status, 303);
    assert_eq!(found.location(), format!("/ui/jobs/{some}"));
    let unknown = b
        .get("/ui/jobs?id=00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(b.get("/ui/jobs?id=nope").await.status, 400);

    // htmx asks for the results only.
    let req = b
        .client
        .get(server.url("/ui/jobs?status=failed"))
        .header("hx-request", "true")
        .header("hx-target", "jobs-results");
    let fragment = b.send(req).await;
    assert_eq!(fragment.status, 200);
    assert!(fragment.body.starts_with("<section id=\"jobs-results\""));
    assert!(!fragment.body.contains("<html"));
    assert_eq!(row_ids(&fragment.body).len(), 15);
}

#[tokio::test]
async fn a_failed_job_shows_its_error_and_a_rerun_finishes_it() {
    let (base, healthy) = flaky_downstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "s",
        &format!("name: s\nconnections:\n  downstream:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n"),
        &[(
            "sync",
            r#"name: sync
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ { id: n, type: integer } ]
steps:
  - id: call
    action: http.send_request
    connection: downstream
    input: { method: GET, path: /status }
  - id: check
    action: flow.if_then_else
    input: { condition: "{{ steps.call.response.status == 200 }}" }
    branches:
      true:
        - { id: done, action: debug.log_message, input: { message: "downstream is up" } }
      false:
        - { id: give_up, action: flow.fail, input: { message: "downstream answered {{ steps.call.response.status }}" } }
"#,
        )],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let (_, body) = server.post("/inbound/s/sync", &json!({"n": 1}), &[]).await;
    let id = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&id, &["failed"], Duration::from_secs(10))
        .await;

    let mut b = Browser::new(&server);
    b.login().await;
    let page = b.get(&format!("/ui/jobs/{id}")).await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    // The job's error at the top, the failed step highlighted in the tree with its error.
    assert!(body.contains("data-testid=\"job-error\""));
    assert!(body.contains("downstream answered 500"));
    let give_up = body
        .split("<li id=\"step-give_up\"")
        .nth(1)
        .expect("give_up in the step tree");
    assert!(
        body.contains("id=\"step-give_up\" class=\"step-failed\""),
        "{body}"
    );
    assert!(
        give_up.contains("data-testid=\"step-error\""),
        "{}",
        &give_up[..give_up.len().min(3000)]
    );
    assert!(give_up[..give_up.find("</li>").unwrap()].contains("downstream answered 500"));
    // Inputs, outputs and logs are there, collapsible; the waterfall has a bar per run.
    assert!(body.contains("<details class=\"run\""));
    assert!(body.contains("Response status 500"), "the call's log line");
    assert!(body.matches("data-step=\"").count() >= 3, "{body}");
    assert!(body.contains("id=\"waterfall\""));
    assert_eq!(
        body.split("<svg class=\"waterfall\" id=\"waterfall\"")
            .nth(1)
            .unwrap()
            .split("</svg>")
            .next()
            .unwrap()
            .matches("<rect")
            .count(),
        3
    );
    // A failed job offers the re-run button; it is not live (the job has ended).
    assert!(body.contains("data-testid=\"rerun\""));
    assert!(!body.contains("data-live="));

    // The downstream is back: re-run from the page.
    healthy.store(true, Ordering::SeqCst);
    let csrf = page.hidden("rerun-form", "csrf");
    let rerun = b
        .post(&format!("/ui/jobs/{id}/rerun"), &[("csrf", &csrf)])
        .await;
    assert_eq!(rerun.status, 303, "{}", rerun.body);
    assert_eq!(rerun.location(), format!("/ui/jobs/{id}"));
    let job = server
        .wait_job(&id, &["finished", "failed"], Duration::from_secs(10))
        .await;
    assert_eq!(job["status"], "finished", "{job}");
    let page = b.get(&format!("/ui/jobs/{id}")).await;
    assert!(page
        .body
        .contains("data-testid=\"job-status\" data-status=\"finished\""));
    assert!(!page.body.contains("data-testid=\"rerun\""));
    assert!(page.body.contains("downstream is up"));
    // Re-running a job that has not failed is refused, naming why.
    let again = b
        .post(&format!("/ui/jobs/{id}/rerun"), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("only failed jobs can be re-run"));
}

#[tokio::test]
async fn a_running_job_streams_its_page_until_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[(
            "slow",
            "name: slow\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: first, action: debug.log_message, input: { message: one } }\n  - { id: pause, action: flow.wait, input: { seconds_to_wait: 1 } }\n  - { id: last, action: debug.log_message, input: { message: two } }\n",
        )],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let mut b = Browser::new(&server);
    b.login().await;
    let (_, body) = server.post("/inbound/s/slow", &json!({"n": 1}), &[]).await;
    let id = body["job_uuid"].as_str().unwrap().to_string();
    let page = b.get(&format!("/ui/jobs/{id}")).await;
    assert!(page
        .body
        .contains(&format!("data-live=\"/ui/jobs/{id}/stream\"")));
    let list = b.get("/ui/jobs").await;
    assert!(list.body.contains(&id));

    let resp = b
        .client
        .get(server.url(&format!("/ui/jobs/{id}/stream")))
        .header(COOKIE, b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text())
        .await
        .expect("the stream ends once the job has ended")
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert!(events.len() >= 2, "{text}");
    assert_eq!(events.last(), Some(&"end"));
    assert!(events[..events.len() - 1].iter().all(|e| *e == "job"));
    let last_job = text.rsplit("event: job").next().unwrap();
    assert!(last_job.contains("data-status=\"finished\""), "{last_job}");

    // The jobs list's stream sends the rows (the job, finished).
    let resp = b
        .client
        .get(server.url("/ui/jobs/stream?runbook=slow"))
        .header(COOKIE, b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut seen = String::new();
    while !(seen.contains("event: rows") && seen.contains(&id)) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("a rows event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("data-status=\"finished\""), "{seen}");
}

#[tokio::test]
async fn every_page_weighs_at_most_150_kb_with_its_scripts_and_styles() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp, &[]);
    let mut last = String::new();
    for n in 0..60 {
        last = post_event(&server, if n % 2 == 0 { "bad" } else { "ok" }, n, Some("c")).await;
    }
    server
        .wait_job(&last, &["finished", "failed"], Duration::from_secs(20))
        .await;
    let failed = {
        let (_, list) = server.api("/jobs?status=failed&limit=1").await;
        list["jobs"][0]["id"].as_str().unwrap().to_string()
    };
    let mut b = Browser::new(&server);
    b.login().await;
    let mut assets: HashMap<String, usize> = HashMap::new();
    for path in [
        "/ui/login".to_string(),
        "/ui/".to_string(),
        "/ui/solutions".to_string(),
        "/ui/solutions/s".to_string(),
        "/ui/solutions/s/runbooks/bad".to_string(),
        "/ui/jobs".to_string(),
        format!("/ui/jobs/{failed}"),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        let mut total = page.body.len();
        let mut seen = 0;
        for part in page.body.split("/ui/assets/").skip(1) {
            let url =
                format!("/ui/assets/{}", &part[..part.find('"').unwrap()]).replace("&amp;", "&");
            let size = match assets.get(&url) {
                Some(s) => *s,
                None => {
                    let a = b.get(&url).await;
                    assert_eq!(a.status, 200, "{url}");
                    assets.insert(url.clone(), a.body.len());
                    a.body.len()
                }
            };
            total += size;
            seen += 1;
        }
        assert_eq!(seen, 3, "{path}: a stylesheet and two scripts");
        assert!(total <= 150 * 1024, "{path} weighs {total} bytes");
        println!("{path}: {total} bytes");
    }
}

#[tokio::test]
async fn overview_and_runbook_pages_show_what_is_loaded_and_what_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "tok-console-5e3a9c";
    let sol = solution(
        tmp.path(),
        "s",
        "name: s\nenv:\n  API_TOKEN: { secret: true, from_env: TEST_CONSOLE_TOKEN }\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config:\n      base_url: http://127.0.0.1:9\n      bearer: { bearer_token: \"{{ env.API_TOKEN }}\" }\n",
        &[
            bad_runbook(),
            (
                "call",
                "name: call\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - id: check\n    action: flow.if_then_else\n    input: { condition: \"{{ trigger.body.n > 1 }}\" }\n    branches:\n      true:\n        - { id: post, action: http.send_request, connection: api, input: { method: GET, path: /x } }\n      false:\n        - { id: small, action: debug.log_message, input: { message: small } }\n",
            ),
            (
                "nightly",
                "name: nightly\ntrigger:\n  connector: scheduler\n  type: schedule\n  config:\n    schedule:\n      frequency: daily\n      time_of_day: \"02:30\"\n      time_zone: Europe/Amsterdam\nsteps:\n  - { id: say, action: debug.log_message, input: { message: tick } }\n",
            ),
        ],
    );
    let server = Server::start(
        &tmp.path().join("data"),
        &[&sol],
        &[("TEST_CONSOLE_TOKEN", secret)],
    );
    let mut last = String::new();
    for n in 0..3 {
        last = post_event(&server, "bad", n, None).await;
    }
    server
        .wait_job(&last, &["failed"], Duration::from_secs(10))
        .await;
    let mut b = Browser::new(&server);
    b.login().await;

    let overview = b.get("/ui/").await.body;
    let chart = overview
        .split("<svg class=\"chart\" id=\"events-chart\"")
        .nth(1)
        .unwrap()
        .split("</svg>")
        .next()
        .unwrap();
    assert_eq!(chart.matches("<rect").count(), 60);
    assert!(chart.contains("3 events in the last 60 minutes"), "{chart}");
    assert!(overview.contains("<tr data-status=\"failed\">"));
    let failed_row = overview
        .split("<tr data-status=\"failed\">")
        .nth(1)
        .unwrap();
    assert!(failed_row[..failed_row.find("</tr>").unwrap()].contains(">3<"));
    let failing = overview.split(" id=\"failing-runbooks\"").nth(1).unwrap();
    assert!(
        failing.contains("s/bad") && failing.contains(">3<"),
        "{failing}"
    );
    assert!(overview.contains("id=\"store-in-use\""));
    assert!(overview.contains("SQLite ("));

    let runbook = b.get("/ui/solutions/s/runbooks/call").await;
    assert_eq!(runbook.status, 200);
    let body = &runbook.body;
    assert!(body.contains(&format!(
        "<code id=\"trigger-url\" data-testid=\"trigger-url\">{}</code>",
        server.url("/inbound/s/call")
    )));
    // The diagram, and the tree with both branches nested under their step.
    assert!(body.contains("<figure class=\"diagram\" id=\"diagram\""));
    assert!(body.contains("<svg"));
    let tree = body.split(" id=\"step-tree\"").nth(1).unwrap();
    let check = tree.split("<li id=\"step-check\"").nth(1).unwrap();
    assert!(check.contains("data-branch=\"true\""));
    assert!(check.contains("<li id=\"step-post\""));
    assert!(check.contains("<li id=\"step-small\""));
    // The connection it uses, its secret redacted.
    assert!(body.contains("data-connection=\"api\""));
    assert!(body.contains("[secret]"));
    assert!(!body.contains(secret));

    // The version the solution is served at, and its mode, as the API reports them.
    let (code, list) = server.api("/solutions").await;
    assert_eq!(code, 200, "{list}");
    let version = list["solutions"][0]["version"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(version.len(), 16, "{list}");
    let solutions = b.get("/ui/solutions").await.body;
    let row = solutions.split("<tr data-solution=\"s\">").nth(1).unwrap();
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(&format!("data-version=\"{version}\"")),
        "{row}"
    );
    assert!(row.contains("data-mode=\"live\""), "{row}");

    let solution_page = b.get("/ui/solutions/s").await.body;
    assert!(!solution_page.contains(secret));
    let info = solution_page.split(" id=\"version-info\"").nth(1).unwrap();
    let info = &info[..info.find("</dl>").unwrap()];
    assert!(
        info.contains(&format!("data-version=\"{version}\"")),
        "{info}"
    );
    assert!(info.contains("data-mode=\"live\""), "{info}");
    assert!(info.contains("<time datetime="), "loaded at: {info}");
    // Demoted to draft: the badge says so, with what draft means and how to go live again.
    let demoted = reqwest::Client::new()
        .post(server.url("/api/v1/solutions/s/demote"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), StatusCode::OK);
    let draft_page = b.get("/ui/solutions/s").await.body;
    let info = draft_page.split(" id=\"version-info\"").nth(1).unwrap();
    let info = &info[..info.find("</dl>").unwrap()];
    assert!(info.contains("data-mode=\"draft\""), "{info}");
    assert!(info.contains("x-ferry-test: 1"), "{info}");
    assert!(info.contains("ferry promote s"), "{info}");
    assert!(b
        .get("/ui/solutions")
        .await
        .body
        .contains("data-mode=\"draft\""));
    let schedules = solution_page.split(" id=\"schedules\"").nth(1).unwrap();
    assert!(
        schedules.contains("data-runbook=\"nightly\""),
        "{schedules}"
    );
    assert_eq!(
        schedules
            .split("</table>")
            .next()
            .unwrap()
            .matches("<time")
            .count(),
        5,
        "five next runs: {schedules}"
    );
    assert_eq!(b.get("/ui/solutions/nope").await.status, 404);
    assert_eq!(b.get("/ui/solutions/s/runbooks/nope").await.status, 404);
    assert_eq!(b.get("/ui/jobs/not-a-uuid").await.status, 400);
    assert_eq!(
        b.get("/ui/jobs/00000000-0000-0000-0000-000000000000")
            .await
            .status,
        404
    );
    assert!(!server.logs().contains(secret));
}
