//! The web console in a real headless Chromium, driven over WebDriver (`chromedriver` +
//! `fantoccini`) against a real `ferry serve`: log in, the runbook diagram, filtering jobs, a
//! failed job with its error, re-running it until it finishes, logging out; and the login form
//! with the keyboard alone.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`;
//! `FERRY_CHROMIUM` / `FERRY_CHROMEDRIVER` name others). Without them each test prints a notice
//! naming what is missing and passes, unless `FERRY_REQUIRE_BROWSER=1` (as in `.ci/run`): then it
//! fails. Each page visited is saved as a PNG under `target/browser-artefacts/<test>/`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::{flaky_downstream, solution, Server, TOKEN};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long any one element or condition is waited for.
const WAIT: Duration = Duration::from_secs(15);

/// WebDriver key codes.
const TAB: char = '\u{e004}';
const ENTER: char = '\u{e007}';
const SHIFT: char = '\u{e008}';

/// Where the browser and its driver are, or what is missing.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let find = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(var) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    let chromium = find("FERRY_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find("FERRY_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => {
            let mut missing = vec![];
            if c.is_none() {
                missing.push("chromium (Debian package `chromium`, or FERRY_CHROMIUM)");
            }
            if d.is_none() {
                missing
                    .push("chromedriver (Debian package `chromium-driver`, or FERRY_CHROMEDRIVER)");
            }
            Err(missing.join(" and "))
        }
    }
}

/// The browser and driver, or `None` after a notice when they are missing and not required.
fn tools_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match browser_tools() {
        Ok(tools) => Some(tools),
        Err(missing) => {
            if std::env::var("FERRY_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("{test}: FERRY_REQUIRE_BROWSER=1 but {missing} not found");
            }
            eprintln!(
                "NOTICE: browser test {test} SKIPPED: {missing} not found \
                 (apt-get install chromium chromium-driver; FERRY_REQUIRE_BROWSER=1 makes this a failure)"
            );
            None
        }
    }
}

/// `target/browser-artefacts/<test>/`, emptied.
fn artefact_dir(test: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("browser-artefacts").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the artefact directory");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A chromedriver process and a WebDriver session (Chromium on a fresh profile). `quit` ends
/// the session, which makes chromedriver quit Chromium; dropping it kills chromedriver.
struct Browser {
    client: Option<Client>,
    driver: Child,
    artefacts: PathBuf,
    shots: usize,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path, artefacts: PathBuf) -> Result<Browser> {
        let profile = tempfile::tempdir()?;
        let port = free_port();
        let log = std::fs::File::create(artefacts.join("chromedriver.log"))?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let mut browser = Browser {
            client: None,
            driver,
            artefacts,
            shots: 0,
            _profile: profile,
        };
        let base = format!("http://127.0.0.1:{port}");
        // Wait for the driver to answer (or to exit).
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = browser.driver.try_wait()? {
                bail!("chromedriver exited with {status}; see chromedriver.log");
            }
            if let Ok(r) = reqwest::get(format!("{base}/status")).await {
                if r.status().is_success() {
                    break;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "chromedriver did not answer on {base}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile_dir = browser._profile.path().display().to_string();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-crash-reporter",
                    "--disable-breakpad",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                    "--hide-scrollbars",
                    format!("--user-data-dir={profile_dir}"),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&base)
            .await
            .context("starting a Chromium session through chromedriver")?;
        browser.client = Some(client);
        Ok(browser)
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    async fn goto(&self, url: &str) -> Result<()> {
        self.c()
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Wait until `css` matches an element.
    async fn wait(&self, css: &str) -> Result<Element> {
        self.c()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting {WAIT:?} for `{css}`"))
    }

    /// Wait until the current URL satisfies `ok`.
    async fn wait_url(&self, what: &str, ok: impl Fn(&url::Url) -> bool) -> Result<url::Url> {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.c().current_url().await?;
            if ok(&url) {
                return Ok(url);
            }
            ensure!(
                Instant::now() < deadline,
                "waited {WAIT:?} for the URL to be {what}; it is {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Click the element `css` once it is there.
    async fn click(&self, css: &str) -> Result<()> {
        self.wait(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking `{css}`"))
    }

    async fn text(&self, css: &str) -> Result<String> {
        Ok(self.wait(css).await?.text().await?)
    }

    async fn count(&self, css: &str) -> Result<usize> {
        Ok(self.c().find_all(Locator::Css(css)).await?.len())
    }

    /// Key presses to whatever has the focus, as a keyboard sends them (`SHIFT` is held
    /// down for the next key only).
    async fn keys(&self, keys: &str) -> Result<()> {
        let mut actions = KeyActions::new("keyboard".into());
        let mut shift = false;
        for k in keys.chars() {
            if k == SHIFT {
                shift = true;
                actions = actions.then(KeyAction::Down { value: SHIFT });
                continue;
            }
            actions = actions
                .then(KeyAction::Down { value: k })
                .then(KeyAction::Up { value: k });
            if shift {
                actions = actions.then(KeyAction::Up { value: SHIFT });
                shift = false;
            }
        }
        self.c().perform_actions(actions).await?;
        Ok(())
    }

    /// The `id` (else the `data-testid`, else the tag) of the focused element.
    async fn focused(&self) -> Result<String> {
        let el = self.c().active_element().await?;
        if let Some(id) = el.attr("id").await?.filter(|s| !s.is_empty()) {
            return Ok(format!("#{id}"));
        }
        if let Some(t) = el.attr("data-testid").await? {
            return Ok(format!("[data-testid={t}]"));
        }
        let text = el.prop("textContent").await?.unwrap_or_default();
        Ok(format!("<{}> {}", el.tag_name().await?, text.trim()))
    }

    /// Save a PNG of the viewport as `NN-<name>.png`.
    async fn shot(&mut self, name: &str) -> Result<PathBuf> {
        self.shots += 1;
        let png = self.c().screenshot().await?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = self.artefacts.join(format!("{:02}-{name}.png", self.shots));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// After a failed step: a screenshot and the page's HTML next to the others.
    async fn save_failure(&mut self) {
        let _ = self.shot("failure").await;
        if let Some(c) = &self.client {
            if let Ok(html) = c.source().await {
                let _ = std::fs::write(self.artefacts.join("failure.html"), html);
            }
        }
    }

    /// End the session (Chromium quits), then the driver.
    async fn quit(mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.close()).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Run `flow` with a browser; on failure save a screenshot and the page, and fail with the
/// error, the artefact directory and the server's log.
async fn with_browser<F>(test: &str, tools: (PathBuf, PathBuf), server: &Server, flow: F)
where
    F: for<'a> FnOnce(&'a mut Browser) -> futures::future::BoxFuture<'a, Result<()>>,
{
    let (chromium, chromedriver) = tools;
    let artefacts = artefact_dir(test);
    let mut browser = match Browser::start(&chromium, &chromedriver, artefacts.clone()).await {
        Ok(b) => b,
        Err(e) => panic!(
            "{test}: {e:#}\nchromedriver log: {}",
            std::fs::read_to_string(artefacts.join("chromedriver.log")).unwrap_or_default()
        ),
    };
    let result = flow(&mut browser).await;
    if let Err(e) = result {
        browser.save_failure().await;
        browser.quit().await;
        panic!(
            "{test}: {e:#}\nartefacts in {}\nserver output:\n{}",
            artefacts.display(),
            server.logs()
        );
    }
    browser.quit().await;
    eprintln!("{test}: screenshots in {}", artefacts.display());
}

/// `sync` fails while the downstream answers 500 (a condition on its answer); `greet`
/// always finishes.
fn console_solution(root: &Path, downstream: &str) -> PathBuf {
    solution(
        root,
        "shop",
        &format!(
            "name: shop\ndescription: browser tests\nconnections:\n  downstream:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {downstream}\n"
        ),
        &[
            (
                "sync",
                r#"name: sync
description: Send an order to the warehouse; fail while the warehouse is down.
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ { id: order, type: integer } ]
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
        - { id: done, action: debug.log_message, input: { message: "order {{ trigger.body.order }} sent, warehouse is up" } }
      false:
        - { id: give_up, action: flow.fail, input: { message: "warehouse answered {{ steps.call.response.status }}" } }
"#,
            ),
            (
                "greet",
                r#"name: greet
description: Greet every name of the event.
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ { id: names, type: string, array: true } ]
steps:
  - id: each_name
    action: flow.loop
    input: { items: "{{ trigger.body.names }}" }
    each:
      - { id: say_hello, action: debug.log_message, input: { message: "hello {{ item.item }}" } }
  - { id: summary, action: debug.log_message, input: { message: "greeted {{ trigger.body.names | length }}" } }
"#,
            ),
        ],
    )
}

async fn post(server: &Server, runbook: &str, body: serde_json::Value) -> String {
    let (code, answer) = server
        .post(&format!("/inbound/shop/{runbook}"), &body, &[])
        .await;
    assert_eq!(code, 200, "{answer}");
    answer["job_uuid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn console_in_chromium_login_diagram_filter_failed_job_rerun_logout() {
    let Some(tools) = tools_or_skip("console_in_chromium") else {
        return;
    };
    let (base, healthy) = flaky_downstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = console_solution(tmp.path(), &base);
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let mut greeted = vec![];
    for names in [json!(["Ada", "Grace"]), json!(["Linus"]), json!([])] {
        greeted.push(post(&server, "greet", json!({ "names": names })).await);
    }
    let failed = post(&server, "sync", json!({ "order": 1 })).await;
    for id in &greeted {
        server
            .wait_job(id, &["finished"], Duration::from_secs(20))
            .await;
    }
    server
        .wait_job(&failed, &["failed"], Duration::from_secs(20))
        .await;
    let ui = server.url("/ui");
    let failed2 = failed.clone();
    let healthy2 = healthy.clone();

    with_browser("console_in_chromium", tools, &server, move |b| {
        Box::pin(async move {
            let failed = failed2;
            // A console page without a session leads to the login form, which comes back to it.
            b.goto(&format!("{ui}/jobs")).await?;
            b.wait("form#login-form").await?;
            let url = b.c().current_url().await?;
            ensure!(url.path() == "/ui/login", "not at the login form: {url}");
            ensure!(
                url.query() == Some("next=%2Fui%2Fjobs"),
                "the login form does not come back to the jobs: {url}"
            );
            b.shot("login").await?;
            let token = b.wait("input#token").await?;
            token.send_keys(TOKEN).await?;
            b.click("[data-testid=login-submit]").await?;
            b.wait("#jobs-table").await?;
            b.wait_url("/ui/jobs", |u| u.path() == "/ui/jobs").await?;
            ensure!(b.text("h1").await? == "Jobs");
            ensure!(b.count("#jobs-rows tr[data-job-id]").await? == 4);
            b.wait("tbody#jobs-rows[data-live-started]").await?;
            b.shot("jobs").await?;

            // The overview, through the navigation.
            b.click("[data-testid=nav-overview]").await?;
            b.wait("#events-chart").await?;
            ensure!(b.count("#events-chart rect.bar").await? == 60);
            let failing = b.text("#failing-runbooks").await?;
            ensure!(failing.contains("shop/sync"), "failing runbooks: {failing}");
            b.shot("overview").await?;

            // The runbook: its diagram with its steps, drawn.
            b.click("[data-testid=nav-solutions]").await?;
            b.wait("#solutions tr[data-solution=shop]").await?;
            b.shot("solutions").await?;
            b.click("#solutions tr[data-solution=shop] a").await?;
            b.wait("#runbooks tr[data-runbook=greet]").await?;
            b.shot("solution").await?;
            b.click("#runbooks tr[data-runbook=sync] a").await?;
            let svg = b.wait("#diagram svg[role=img]").await?;
            let (_, _, width, height) = svg.rectangle().await?;
            ensure!(
                width > 100.0 && height > 100.0,
                "the diagram is {width}×{height}"
            );
            for step in ["call", "check", "done", "give_up"] {
                let node = b.wait(&format!("#diagram g[data-step={step}]")).await?;
                ensure!(node.is_displayed().await?, "step {step} is not shown");
                let (_, _, w, h) = node.rectangle().await?;
                ensure!(w > 10.0 && h > 10.0, "step {step} is drawn {w}×{h}");
            }
            b.shot("runbook").await?;

            // Jobs, filtered to the failed ones.
            b.click("[data-testid=nav-jobs]").await?;
            b.wait("#jobs-filter").await?;
            b.wait("#f-status").await?.select_by_value("failed").await?;
            b.click("[data-testid=apply-filters]").await?;
            b.wait_url("filtered by status", |u| {
                u.query_pairs().any(|(k, v)| k == "status" && v == "failed")
            })
            .await?;
            let deadline = Instant::now() + WAIT;
            loop {
                let all = b.count("#jobs-rows tr[data-job-id]").await?;
                let failed_rows = b.count("#jobs-rows tr[data-status=failed]").await?;
                if all == 1 && failed_rows == 1 {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "the filtered list shows {all} rows, {failed_rows} failed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            b.wait(&format!("#jobs-rows tr[data-job-id='{failed}']"))
                .await?;
            b.shot("jobs-failed").await?;

            // The failed job: its error, the failed step highlighted with its error.
            b.click(&format!("#jobs-rows tr[data-job-id='{failed}'] th a"))
                .await?;
            b.wait("#job-status[data-status=failed]").await?;
            ensure!(b.text("#job-id").await? == failed);
            let error = b.text("#job-error").await?;
            ensure!(
                error.contains("warehouse answered 500"),
                "job error: {error}"
            );
            let step = b.wait("li#step-give_up.step-failed").await?;
            let step_error = step.find(Locator::Css("[data-testid=step-error]")).await?;
            ensure!(
                step_error.is_displayed().await?,
                "the failed step's error is hidden"
            );
            ensure!(step_error.text().await?.contains("warehouse answered 500"));
            let background = step_error.css_value("background-color").await?;
            ensure!(
                background != "rgba(0, 0, 0, 0)",
                "the step error is not highlighted ({background})"
            );
            b.wait("#diagram g[data-step=give_up].failed").await?;
            b.wait("[data-testid=rerun]").await?;
            b.shot("job-failed").await?;

            // The warehouse is back: re-run, and watch the page until the job has finished.
            healthy2.store(true, Ordering::SeqCst);
            b.click("[data-testid=rerun]").await?;
            b.wait("#job-status[data-status=finished]").await?;
            ensure!(b.count("[data-testid=rerun]").await? == 0);
            ensure!(b.count("#job-error").await? == 0);
            b.wait("li#step-done").await?;
            let done = b.text("li#step-done").await?;
            ensure!(done.contains("Run"), "the done step has no run: {done}");
            b.wait("#diagram g[data-step=done].ran").await?;
            b.shot("job-finished").await?;

            // Log out: back at the login form, and a console page sends there again.
            b.click("[data-testid=logout]").await?;
            b.wait("form#login-form").await?;
            b.wait_url("/ui/login", |u| u.path() == "/ui/login").await?;
            b.shot("logged-out").await?;
            b.goto(&format!("{ui}/jobs/{failed}")).await?;
            b.wait("form#login-form").await?;
            let url = b.c().current_url().await?;
            ensure!(
                url.path() == "/ui/login" && url.query().is_some_and(|q| q.starts_with("next=")),
                "a console page after logout: {url}"
            );
            ensure!(b.count("[data-testid=logout]").await? == 0);
            Ok(())
        })
    })
    .await;

    let job = server
        .wait_job(&failed, &["finished"], Duration::from_secs(5))
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(healthy.load(Ordering::SeqCst));
}

#[tokio::test]
async fn login_form_works_with_the_keyboard_alone() {
    let Some(tools) = tools_or_skip("login_with_the_keyboard") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sol = console_solution(tmp.path(), "http://127.0.0.1:9");
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let ui = server.url("/ui");

    with_browser("login_with_the_keyboard", tools, &server, move |b| {
        Box::pin(async move {
            b.goto(&format!("{ui}/login")).await?;
            b.wait("form#login-form").await?;
            // The token field has the focus; before it come the skip link and the brand.
            ensure!(
                b.focused().await? == "#token",
                "focus: {}",
                b.focused().await?
            );
            b.keys(&format!("{SHIFT}{TAB}{SHIFT}{TAB}")).await?;
            let first = b.focused().await?;
            ensure!(first == "<a> Skip to content", "first stop: {first}");
            b.keys(&format!("{TAB}{TAB}")).await?;
            ensure!(b.focused().await? == "#token");
            // The focus is visible (the console's outline).
            let outline = b
                .c()
                .active_element()
                .await?
                .css_value("outline-style")
                .await?;
            ensure!(outline != "none", "no visible focus on the token field");

            // A wrong token, submitted with Enter: an error, still at the form.
            b.keys(&format!("wrong-token{ENTER}")).await?;
            let error = b.text("[data-testid=login-error]").await?;
            ensure!(!error.is_empty());
            b.shot("login-error").await?;

            // Back to the start of the page, Tab to the field, type the token, Tab to the
            // button and back, Enter.
            b.wait("form#login-form").await?;
            b.keys(&format!("{SHIFT}{TAB}{SHIFT}{TAB}")).await?;
            let mut stops = vec![];
            for _ in 0..6 {
                let f = b.focused().await?;
                if f == "#token" {
                    break;
                }
                stops.push(f);
                b.keys(&TAB.to_string()).await?;
            }
            ensure!(
                stops == ["<a> Skip to content", "<a> Ferry"],
                "Tab stops before the token field: {stops:?}"
            );
            b.keys(TOKEN).await?;
            b.keys(&TAB.to_string()).await?;
            ensure!(
                b.focused().await? == "[data-testid=login-submit]",
                "after the token field: {}",
                b.focused().await?
            );
            b.keys(&format!("{SHIFT}{TAB}")).await?;
            ensure!(b.focused().await? == "#token");
            b.shot("login-keyboard").await?;
            b.keys(&ENTER.to_string()).await?;
            b.wait("#events-chart").await?;
            b.wait_url("/ui/", |u| u.path() == "/ui/").await?;
            ensure!(b.text("h1").await? == "Overview");
            ensure!(b.count("[data-testid=logout]").await? == 1);
            b.shot("overview").await?;
            Ok(())
        })
    })
    .await;
}
