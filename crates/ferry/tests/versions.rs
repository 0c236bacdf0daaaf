//! Solution versions, reloads and draft/live modes end to end through the binary
//! (`docs/releasing.md`): every job records the version it was accepted with, a reload (SIGHUP,
//! `ferry reload`, `POST /api/v1/reload`) swaps in a changed folder without refusing or dropping
//! an event, a broken folder keeps its old version serving, a job finishes on the version it
//! started with (also after a restart), and a draft solution accepts only test events and fires
//! no schedule until it is promoted.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ferry, solution, wait_until, Server, TOKEN};
use serde_json::{json, Value};

fn log_runbook(name: &str, message: &str) -> String {
    format!(
        "name: {name}
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ {{ id: n, type: integer }} ]
steps:
  - id: log
    action: debug.log_message
    input: {{ message: \"{message} n={{{{ trigger.body.n }}}}\" }}
"
    )
}

/// A runbook that waits `seconds` (the job is `waiting` meanwhile) and then logs `message`.
fn waiting_runbook(name: &str, seconds: u32, message: &str) -> String {
    format!(
        "name: {name}
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    body_schema: [ {{ id: n, type: integer }} ]
steps:
  - id: wait
    action: flow.wait
    input: {{ seconds_to_wait: {seconds} }}
  - id: log
    action: debug.log_message
    input: {{ message: \"{message}\" }}
"
    )
}

fn write_runbook(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join("runbooks").join(format!("{file}.yaml")), text).unwrap();
}

async fn api_post(server: &Server, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.url(&format!("/api/v1{path}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("api post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The solution entry of `GET /api/v1/solutions`.
async fn solution_info(server: &Server, name: &str) -> Value {
    let (code, list) = server.api("/solutions").await;
    assert_eq!(code, 200, "{list}");
    list["solutions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no solution {name} in {list}"))
}

async fn version(server: &Server, name: &str) -> String {
    solution_info(server, name).await["version"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Post an event and wait for its job to end; returns the job.
async fn run_event(server: &Server, path: &str, n: i64, headers: &[(&str, &str)]) -> Value {
    let (code, body) = server.post(path, &json!({ "n": n }), headers).await;
    assert_eq!(code, 200, "{body}\n{}", server.logs());
    let id = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&id, &["finished", "failed"], Duration::from_secs(20))
        .await
}

fn log_message(job: &Value, step: &str) -> String {
    common::steps(job, step)
        .last()
        .and_then(|s| s["logs"][0]["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Ferry Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cli(server: &Server, args: &[&str]) -> std::process::Output {
    let url = server.url("");
    let mut all = args.to_vec();
    all.extend_from_slice(&["--server", &url, "--token", TOKEN]);
    ferry(&all, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_record_the_version_which_follows_content_and_git() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let dir = solution(&repo, "v", "name: v\n", &[("r", &log_runbook("r", "one"))]);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);

    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&dir], &[]);
    let info = solution_info(&server, "v").await;
    let v1 = info["version"]["id"].as_str().unwrap().to_string();
    assert_eq!(v1.len(), 16, "{info}");
    assert!(v1.bytes().all(|b| b.is_ascii_hexdigit()), "{info}");
    assert_eq!(info["version"]["git_commit"], head.as_str(), "{info}");
    assert_eq!(info["version"]["git_dirty"], false, "{info}");
    assert_eq!(info["mode"], "live", "{info}");
    assert!(
        server.logs().contains(&format!("version {v1}")),
        "{}",
        server.logs()
    );

    let job = run_event(&server, "/inbound/v/r", 1, &[]).await;
    assert_eq!(job["solution_version"], v1.as_str(), "{job}");
    assert_eq!(job["test"], false, "{job}");
    assert_eq!(job["version"]["git_commit"], head.as_str(), "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let out = cli(&server, &["jobs", "show", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("solution version: {v1} (git {})", &head[..12])),
        "{text}"
    );
    let out = cli(&server, &["jobs", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&v1));

    // A test case does not change the version.
    std::fs::create_dir_all(dir.join("tests/r")).unwrap();
    std::fs::write(dir.join("tests/r/case.yaml"), "event: { body: { n: 1 } }\n").unwrap();
    let out = cli(&server, &["reload"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("v: unchanged ({v1})")), "{text}");

    // An edit is a new version, with the folder's uncommitted changes shown.
    write_runbook(&dir, "r", &log_runbook("r", "two"));
    let out = cli(&server, &["reload"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let info = solution_info(&server, "v").await;
    let v2 = info["version"]["id"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert!(
        text.contains(&format!("v: reloaded {v1} -> {v2}")),
        "{text}"
    );
    assert_eq!(info["version"]["git_dirty"], true, "{info}");
    let job2 = run_event(&server, "/inbound/v/r", 2, &[]).await;
    assert_eq!(job2["solution_version"], v2.as_str());
    assert_eq!(log_message(&job2, "log"), "two n=2");
    // The first job keeps its version.
    let (_, job) = server.api(&format!("/jobs/{id}")).await;
    assert_eq!(job["solution_version"], v1.as_str());

    // Committing changes the commit, not the version; a restart computes the same version.
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    let head2 = git(&repo, &["rev-parse", "HEAD"]);
    server.terminate();
    let server = Server::start(&data, &[&dir], &[]);
    let info = solution_info(&server, "v").await;
    assert_eq!(info["version"]["id"], v2.as_str(), "{info}");
    assert_eq!(info["version"]["git_commit"], head2.as_str(), "{info}");
    assert_eq!(info["version"]["git_dirty"], false, "{info}");
    // Outside a git checkout there is no commit.
    let plain = solution(
        tmp.path(),
        "p",
        "name: p\n",
        &[("r", &log_runbook("r", "p"))],
    );
    let server2 = Server::start(&tmp.path().join("data2"), &[&plain], &[]);
    let info = solution_info(&server2, "p").await;
    assert_eq!(info["version"]["git_commit"], Value::Null, "{info}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_sighup_cli_and_api_and_a_broken_edit_keeps_the_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[("r", &log_runbook("r", "one"))],
    );
    let other = solution(
        tmp.path(),
        "o",
        "name: o\n",
        &[("r", &log_runbook("r", "o"))],
    );
    let server = Server::start(&tmp.path().join("data"), &[&dir, &other], &[]);
    let v1 = version(&server, "s").await;
    let o1 = version(&server, "o").await;

    // SIGHUP.
    write_runbook(&dir, "r", &log_runbook("r", "two"));
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let v2 = wait_until("the SIGHUP reload", &server, || async {
        let v = version(&server, "s").await;
        (v != v1).then_some(v)
    })
    .await;
    assert_eq!(
        log_message(&run_event(&server, "/inbound/s/r", 1, &[]).await, "log"),
        "two n=1"
    );
    assert_eq!(version(&server, "o").await, o1);

    // The API: one answer per solution.
    write_runbook(&dir, "r", &log_runbook("r", "three"));
    let (code, report) = api_post(&server, "/reload").await;
    assert_eq!(code, 200, "{report}");
    let entries = report["solutions"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{report}");
    assert_eq!(entries[0]["solution"], "s");
    assert_eq!(entries[0]["status"], "reloaded");
    assert_eq!(entries[0]["previous_version"], v2.as_str());
    let v3 = entries[0]["version"].as_str().unwrap().to_string();
    assert_eq!(entries[1]["solution"], "o");
    assert_eq!(entries[1]["status"], "unchanged");
    assert_eq!(entries[1]["version"], o1.as_str());
    assert_eq!(
        log_message(&run_event(&server, "/inbound/s/r", 2, &[]).await, "log"),
        "three n=2"
    );

    // A broken edit: reported with file:line, the old version keeps serving.
    let broken = log_runbook("r", "broken").replace("debug.log_message", "debug.no_such_action");
    let step_line = broken
        .lines()
        .position(|l| l.contains("- id: log"))
        .unwrap()
        + 1;
    write_runbook(&dir, "r", &broken);
    let (code, report) = api_post(&server, "/reload").await;
    assert_eq!(code, 200, "{report}");
    let entry = &report["solutions"][0];
    assert_eq!(entry["status"], "failed", "{report}");
    assert_eq!(entry["version"], v3.as_str(), "{report}");
    let problem = &entry["errors"][0];
    assert!(
        problem["file"]
            .as_str()
            .unwrap()
            .ends_with("runbooks/r.yaml"),
        "{report}"
    );
    assert_eq!(problem["line"], step_line, "{report}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("no_such_action"),
        "{report}"
    );
    let out = cli(&server, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("s: FAILED, version {v3} keeps serving")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("runbooks/r.yaml:{step_line}:")),
        "{stderr}"
    );
    let job = run_event(&server, "/inbound/s/r", 3, &[]).await;
    assert_eq!(job["solution_version"], v3.as_str());
    assert_eq!(log_message(&job, "log"), "three n=3");
    assert_eq!(version(&server, "s").await, v3);
    assert!(server
        .logs()
        .contains("reload failed; the old version keeps serving"));

    // Fixed, it reloads.
    write_runbook(&dir, "r", &log_runbook("r", "four"));
    let out = cli(&server, &["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("s: reloaded {v3} -> ")),
        "{stdout}"
    );
    assert_eq!(
        log_message(&run_event(&server, "/inbound/s/r", 4, &[]).await, "log"),
        "four n=4"
    );
    // The OpenAPI document describes the routes and their answers.
    let doc: Value = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/reload",
        "/api/v1/solutions/{solution}/promote",
        "/api/v1/solutions/{solution}/demote",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path} missing");
    }
    for schema in [
        "ReloadReport",
        "ReloadEntry",
        "ModeChange",
        "SolutionVersion",
        "SolutionMode",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let job_props = &doc["components"]["schemas"]["Job"]["properties"];
    assert!(job_props["solution_version"].is_object() && job_props["test"].is_object());
    // The reload needs the token like the rest of the API.
    let resp = reqwest::Client::new()
        .post(server.url("/api/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finishes_on_the_version_it_started_with_also_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "w",
        "name: w\n",
        &[("r", &waiting_runbook("r", 3, "first version"))],
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&dir], &[]);
    let v1 = version(&server, "w").await;
    let (code, body) = server.post("/inbound/w/r", &json!({}), &[]).await;
    assert_eq!(code, 200, "{body}");
    let waiting = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&waiting, &["waiting"], Duration::from_secs(10))
        .await;

    // While it waits, a new version (no wait, another message) serves new events.
    write_runbook(&dir, "r", &waiting_runbook("r", 0, "second version"));
    let (code, report) = api_post(&server, "/reload").await;
    assert_eq!(
        report["solutions"][0]["status"], "reloaded",
        "{code} {report}"
    );
    let v2 = version(&server, "w").await;
    let job = run_event(&server, "/inbound/w/r", 0, &[]).await;
    assert_eq!(job["solution_version"], v2.as_str());
    assert_eq!(log_message(&job, "log"), "second version");
    // The waiting job resumes on its own version.
    let job = server
        .wait_job(&waiting, &["finished", "failed"], Duration::from_secs(20))
        .await;
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["solution_version"], v1.as_str());
    assert_eq!(log_message(&job, "log"), "first version");

    // Across a restart: the version of a waiting job is compiled again from its stored files,
    // although its folder now holds another version.
    write_runbook(&dir, "r", &waiting_runbook("r", 3, "third version"));
    let (_, report) = api_post(&server, "/reload").await;
    assert_eq!(report["solutions"][0]["status"], "reloaded", "{report}");
    let v3 = version(&server, "w").await;
    let (code, body) = server.post("/inbound/w/r", &json!({}), &[]).await;
    assert_eq!(code, 200, "{body}");
    let waiting = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&waiting, &["waiting"], Duration::from_secs(10))
        .await;
    server.terminate();
    write_runbook(&dir, "r", &waiting_runbook("r", 0, "fourth version"));
    let server = Server::start(&data, &[&dir], &[]);
    let v4 = version(&server, "w").await;
    assert_ne!(v3, v4);
    let job = server
        .wait_job(&waiting, &["finished", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(job["status"], "finished", "{job}\n{}", server.logs());
    assert_eq!(job["solution_version"], v3.as_str());
    assert_eq!(log_message(&job, "log"), "third version");
    assert!(
        server
            .logs()
            .contains("compiled an older version of the solution again from its stored files"),
        "{}",
        server.logs()
    );
    let job = run_event(&server, "/inbound/w/r", 0, &[]).await;
    assert_eq!(job["solution_version"], v4.as_str());
    assert_eq!(log_message(&job, "log"), "fourth version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_under_continuous_load_across_reloads_each_become_exactly_one_job() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "load",
        "name: load\n",
        &[("r", &log_runbook("r", "m0"))],
    );
    let server = Arc::new(Server::start(&tmp.path().join("data"), &[&dir], &[]));
    let mut messages: HashMap<String, String> = HashMap::new();
    messages.insert(version(&server, "load").await, "m0".into());

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for t in 0..4i64 {
        let (server, stop, accepted, refused) = (
            server.clone(),
            stop.clone(),
            accepted.clone(),
            refused.clone(),
        );
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = t * 1_000_000;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let resp = client
                    .post(server.url("/inbound/load/r"))
                    .json(&json!({ "n": n }))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 200 => {
                        let body: Value = r.json().await.unwrap();
                        let id = body["job_uuid"].as_str().unwrap().to_string();
                        accepted.lock().unwrap().push((n, id));
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        refused
                            .lock()
                            .unwrap()
                            .push(format!("{n}: {status} {text}"));
                    }
                    Err(e) => refused.lock().unwrap().push(format!("{n}: {e}")),
                }
            }
        }));
    }
    let reloads = 6;
    for i in 1..=reloads {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let message = format!("m{i}");
        write_runbook(&dir, "r", &log_runbook("r", &message));
        let (code, report) = api_post(&server, "/reload").await;
        assert_eq!(code, 200, "{report}");
        assert_eq!(report["solutions"][0]["status"], "reloaded", "{report}");
        messages.insert(
            report["solutions"][0]["version"]
                .as_str()
                .unwrap()
                .to_string(),
            message,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "events refused during reloads: {refused:?}"
    );
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() > 100, "only {} events sent", accepted.len());

    // Every accepted event is exactly one job, and each job ran on the version it recorded.
    let ids: HashSet<String> = accepted.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), accepted.len(), "a job id was answered twice");
    let by_id: HashMap<String, i64> = accepted.iter().map(|(n, id)| (id.clone(), *n)).collect();
    let jobs = wait_until("every job to finish", &server, || async {
        let mut all = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let path = match before {
                None => "/jobs?solution=load&limit=500".to_string(),
                Some(b) => format!("/jobs?solution=load&limit=500&before={b}"),
            };
            let (code, page) = server.api(&path).await;
            assert_eq!(code, 200, "{page}");
            all.extend(page["jobs"].as_array().unwrap().iter().cloned());
            match page["next_before"].as_i64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        let done = all.len() == accepted.len() && all.iter().all(|j| j["status"] == "finished");
        done.then_some(all)
    })
    .await;
    let mut seen_versions = HashSet::new();
    let mut seen = HashSet::new();
    for job in &jobs {
        let id = job["id"].as_str().unwrap();
        let n = by_id
            .get(id)
            .unwrap_or_else(|| panic!("job {id} was never answered to an event"));
        assert_eq!(job["trigger_output"]["body"]["n"], *n);
        assert!(seen.insert(id.to_string()), "job {id} listed twice");
        let v = job["solution_version"].as_str().unwrap().to_string();
        let message = messages
            .get(&v)
            .unwrap_or_else(|| panic!("job {id} has an unknown version {v}"));
        let (_, detail) = server.api(&format!("/jobs/{id}")).await;
        assert_eq!(
            log_message(&detail, "log"),
            format!("{message} n={n}"),
            "{detail}"
        );
        seen_versions.insert(v);
    }
    assert!(
        seen_versions.len() >= 3,
        "events spread over only {} versions",
        seen_versions.len()
    );
    eprintln!(
        "{} events accepted across {reloads} reloads, {} versions, none refused",
        accepted.len(),
        seen_versions.len()
    );
}

const SCHEDULED: &str = "name: tick
trigger:
  connector: scheduler
  type: schedule
  config:
    schedule: { frequency: minutely }
steps:
  - id: log
    action: debug.log_message
    input: { message: \"tick {{ trigger.scheduled_for }}\" }
";

async fn tick_jobs(server: &Server) -> Vec<String> {
    let (code, page) = server.api("/jobs?solution=d&runbook=tick").await;
    assert_eq!(code, 200, "{page}");
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            j["trigger_output"]["scheduled_for"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_solution_takes_only_test_events_and_fires_no_schedule_until_promoted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "d",
        "name: d\n",
        &[("r", &log_runbook("r", "d")), ("tick", SCHEDULED)],
    );
    let clock = tmp.path().join("clock");
    std::fs::write(&clock, "2026-06-01T10:00:30Z").unwrap();
    let clock_env = [("FERRY_TEST_CLOCK_FILE", clock.to_str().unwrap())];
    let data = tmp.path().join("data");
    let mut server = Server::start_with(&data, &[&dir], &clock_env, &["--draft", "d"]);
    assert_eq!(solution_info(&server, "d").await["mode"], "draft");
    assert!(server.logs().contains("DRAFT mode"), "{}", server.logs());

    // Without the test header: refused, naming why.
    let (code, body) = server.post("/inbound/d/r", &json!({"n": 1}), &[]).await;
    assert_eq!(code, 403, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("draft mode") && error.contains("x-ferry-test: 1"),
        "{error}"
    );
    let (code, body) = server
        .post(
            "/inbound/d/r",
            &json!({"n": 1}),
            &[("x-ferry-test", "maybe")],
        )
        .await;
    assert_eq!(code, 400, "{body}");
    // With it: a test job.
    let job = run_event(&server, "/inbound/d/r", 2, &[("x-ferry-test", "1")]).await;
    assert_eq!(job["status"], "finished");
    assert_eq!(job["test"], true, "{job}");
    let out = cli(&server, &["jobs", "show", job["id"].as_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("test job"));

    // Schedules do not fire in draft (and are shown as paused).
    let (_, list) = server.api("/schedules").await;
    assert_eq!(list["schedules"][0]["paused"], true, "{list}");
    let out = cli(&server, &["schedules", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("paused: the solution is in draft mode"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(&clock, "2026-06-01T10:05:30Z").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        tick_jobs(&server).await,
        Vec::<String>::new(),
        "{}",
        server.logs()
    );

    // Promote: live from now on (no tick of the draft period runs).
    let out = cli(&server, &["promote", "d"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("d: draft -> live"), "{text}");
    wait_until("the schedule to start", &server, || async {
        server
            .logs()
            .contains("schedule started: the solution is live")
            .then_some(())
    })
    .await;
    std::fs::write(&clock, "2026-06-01T10:06:30Z").unwrap();
    wait_until("the first tick after promotion", &server, || async {
        (!tick_jobs(&server).await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(tick_jobs(&server).await, vec!["2026-06-01T10:06:00Z"]);
    let job = run_event(&server, "/inbound/d/r", 3, &[]).await;
    assert_eq!(job["test"], false);
    let (_, list) = server.api("/schedules").await;
    assert_eq!(list["schedules"][0]["paused"], false, "{list}");

    // Live survives a restart, even one that still says --draft.
    server.terminate();
    let mut server = Server::start_with(&data, &[&dir], &clock_env, &["--draft", "d"]);
    assert_eq!(solution_info(&server, "d").await["mode"], "live");
    assert!(
        server.logs().contains("--draft is ignored"),
        "{}",
        server.logs()
    );
    run_event(&server, "/inbound/d/r", 4, &[]).await;

    // Demote: draft again, also after a restart without --draft.
    let (code, change) = api_post(&server, "/solutions/d/demote").await;
    assert_eq!(code, 200, "{change}");
    assert_eq!(
        change,
        json!({"solution": "d", "mode": "draft", "previous": "live"})
    );
    let (code, _) = server.post("/inbound/d/r", &json!({"n": 5}), &[]).await;
    assert_eq!(code, 403);
    server.terminate();
    let server = Server::start_with(&data, &[&dir], &clock_env, &[]);
    assert_eq!(solution_info(&server, "d").await["mode"], "draft");
    let (code, _) = server.post("/inbound/d/r", &json!({"n": 6}), &[]).await;
    assert_eq!(code, 403);
    let (code, body) = api_post(&server, "/solutions/nope/promote").await;
    assert_eq!(code, 404, "{body}");
    let out = cli(&server, &["promote", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    // An unknown name for --draft stops the start.
    let out = ferry(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            tmp.path().join("data3").to_str().unwrap(),
            "--draft",
            "nope",
            dir.to_str().unwrap(),
        ],
        &[("FERRY_API_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--draft nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_follow_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "d",
        "name: d\n",
        &[("r", &log_runbook("r", "d"))],
    );
    let clock = tmp.path().join("clock");
    std::fs::write(&clock, "2026-06-01T10:00:30Z").unwrap();
    let clock_env = [("FERRY_TEST_CLOCK_FILE", clock.to_str().unwrap())];
    let server = Server::start_with(&tmp.path().join("data"), &[&dir], &clock_env, &[]);
    // Added by a reload: it starts at once.
    write_runbook(&dir, "tick", SCHEDULED);
    let (_, report) = api_post(&server, "/reload").await;
    assert_eq!(report["solutions"][0]["status"], "reloaded", "{report}");
    wait_until("the added schedule to start", &server, || async {
        server.logs().contains("schedule started").then_some(())
    })
    .await;
    let (_, list) = server.api("/schedules?count=1").await;
    assert_eq!(list["schedules"][0]["runbook"], "tick", "{list}");
    std::fs::write(&clock, "2026-06-01T10:01:30Z").unwrap();
    wait_until("a tick of the added schedule", &server, || async {
        (tick_jobs(&server).await.len() == 1).then_some(())
    })
    .await;
    // Removed by a reload: it stops.
    std::fs::remove_file(dir.join("runbooks/tick.yaml")).unwrap();
    let (_, report) = api_post(&server, "/reload").await;
    assert_eq!(report["solutions"][0]["status"], "reloaded", "{report}");
    wait_until("the schedule to stop", &server, || async {
        server
            .logs()
            .contains("the old rule no longer fires")
            .then_some(())
    })
    .await;
    std::fs::write(&clock, "2026-06-01T10:05:30Z").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tick_jobs(&server).await.len(), 1, "{}", server.logs());
    let (_, list) = server.api("/schedules").await;
    assert_eq!(list["schedules"], json!([]), "{list}");
}

/// The webhooks named after the `hook` runbook of solution `xw` in the emulator.
async fn emulator_hooks(emu: &common::Emulator) -> Vec<Value> {
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/webhooks", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .send()
        .await
        .expect("emulator");
    assert!(resp.status().is_success());
    let all: Value = resp.json().await.unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == "Ferry xw/hook request.create")
        .cloned()
        .collect()
}

/// The emulator's delivery attempts that got an answer.
async fn emulator_deliveries(emu: &common::Emulator) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_emulator/deliveries", emu.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = match v {
        Value::Array(a) => a,
        other => other["deliveries"].as_array().cloned().unwrap_or_default(),
    };
    all.into_iter()
        .filter(|d| !d["response_status"].is_null())
        .collect()
}

/// Create a request in the emulator; returns the answer to its `request.create` delivery.
async fn emulator_request(emu: &common::Emulator, server: &Server, subject: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/graphql", emu.base))
        .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
        .header("x-xurrent-account", "wdc")
        .json(&json!({ "query": format!(
            "mutation {{ requestCreate(input: {{subject: \"{subject}\"}}) {{ request {{ id }} }} }}"
        ) }))
        .send()
        .await
        .unwrap();
    let created: Value = resp.json().await.unwrap();
    let node = created["data"]["requestCreate"]["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    wait_until("the request.create delivery", server, || async {
        emulator_deliveries(emu).await.into_iter().find(|d| {
            d["event"] == "request.create" && d["message"]["object_nodeID"] == node.as_str()
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_follows_a_reload_xurrent_webhook_registered_and_disabled() {
    let emu = common::start_emulator();
    let tmp = tempfile::tempdir().unwrap();
    let inbound = json!({
        "account_url": format!("{}/accounts/wdc", emu.base),
        "allow_http_loopback": true,
        "api": {
            "credentials": {"account_id": "wdc", "personal_access_token": ferry_emulator::DEFAULT_TOKEN},
            "environment": {
                "rest_endpoint": format!("{}/v1", emu.base),
                "graphql_endpoint": format!("{}/graphql", emu.base),
                "oauth2_endpoint": format!("{}/token", emu.base),
            },
        },
    });
    let dir = solution(
        tmp.path(),
        "xw",
        &format!(
            "name: xw\nconnections:\n  xurrent_in:\n    connector: xurrent\n    direction: inbound\n    config: {inbound}\n"
        ),
        &[("r", &log_runbook("r", "plain"))],
    );
    // In draft mode: provisioning and the webhook's handshake work, events are refused.
    let server = Server::start_with(&tmp.path().join("data"), &[&dir], &[], &["--draft", "xw"]);
    assert!(emulator_hooks(&emu).await.is_empty());

    // A runbook with a registered Xurrent webhook, added by a reload: the webhook is created.
    write_runbook(
        &dir,
        "hook",
        "name: hook
trigger:
  connector: xurrent
  type: webhook
  connection: xurrent_in
  config: { register: { events: [request.create] } }
steps:
  - id: seen
    action: debug.log_message
    input: { message: \"{{ trigger.event }}\" }
",
    );
    let (_, report) = api_post(&server, "/reload").await;
    assert_eq!(report["solutions"][0]["status"], "reloaded", "{report}");
    let url = server.url("/inbound/xw/hook");
    let hook = wait_until("the webhook to be registered", &server, || async {
        emulator_hooks(&emu)
            .await
            .into_iter()
            .find(|h| h["uri"] == url.as_str() && h["disabled"] == false)
    })
    .await;
    let info = solution_info(&server, "xw").await;
    let trigger = info["provisioning"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "trigger" && p["name"] == "hook")
        .cloned()
        .unwrap_or_else(|| panic!("{info}"));
    assert_eq!(trigger["state"], "provisioned", "{info}");
    let id = hook["id"].clone();
    wait_until("the handshake answered in draft mode", &server, || async {
        emulator_deliveries(&emu).await.into_iter().find(|d| {
            d["event"] == "webhook.verify" && d["webhook_id"] == id && d["response_status"] == 200
        })
    })
    .await;
    let refused = emulator_request(&emu, &server, "In draft").await;
    assert_eq!(refused["response_status"], 403, "{refused:#}");
    assert!(
        refused["response_body"]
            .as_str()
            .unwrap()
            .contains("draft mode"),
        "{refused:#}"
    );
    let (code, _) = api_post(&server, "/solutions/xw/promote").await;
    assert_eq!(code, 200);
    let accepted = emulator_request(&emu, &server, "Live").await;
    assert_eq!(accepted["response_status"], 200, "{accepted:#}");
    let answer: Value = serde_json::from_str(accepted["response_body"].as_str().unwrap()).unwrap();
    let job = server
        .wait_job(
            answer["job_uuid"].as_str().unwrap(),
            &["finished", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["test"], false);

    // The runbook removed by a reload: its webhook is deprovisioned (disabled).
    std::fs::remove_file(dir.join("runbooks/hook.yaml")).unwrap();
    let (_, report) = api_post(&server, "/reload").await;
    assert_eq!(report["solutions"][0]["status"], "reloaded", "{report}");
    wait_until("the webhook to be disabled", &server, || async {
        emulator_hooks(&emu)
            .await
            .into_iter()
            .find(|h| h["id"] == hook["id"] && h["disabled"] == true)
    })
    .await;
    // The server logs the outcome after the Webhooks API call returns, so the emulator can show
    // the disabled webhook a moment before the log line is written.
    wait_until("the deprovisioning to be logged", &server, || async {
        server
            .logs()
            .contains("deprovisioned: the reloaded solution no longer has it")
            .then_some(())
    })
    .await;
    let info = solution_info(&server, "xw").await;
    assert!(
        !info["provisioning"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "hook"),
        "{info}"
    );
}

/// On a PostgreSQL store (a throwaway server; skipped with a notice where PostgreSQL is not
/// installed, unless `FERRY_REQUIRE_POSTGRES=1`): a waiting job resumes on its version after a
/// restart with another version in the folder (its files come from the database), and the mode
/// is kept in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_modes_live_in_a_postgresql_store_too() {
    let Some(pg) = ferry_store::throwaway::for_test(
        "versions_and_modes_live_in_a_postgresql_store_too",
        false,
    ) else {
        return;
    };
    let url = pg.create_database("versions").expect("database");
    let key = [(
        "FERRY_MASTER_KEY",
        "5e1a9c2e1b4d6f8a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f5a7c9e0b2d4f6a",
    )];
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "w",
        "name: w\n",
        &[("r", &waiting_runbook("r", 3, "first version"))],
    );
    let data = tmp.path().join("data");
    let mut server = Server::start_with(&data, &[&dir], &key, &["--store", &url, "--draft", "w"]);
    assert_eq!(solution_info(&server, "w").await["mode"], "draft");
    let v1 = version(&server, "w").await;
    let (code, body) = server
        .post("/inbound/w/r", &json!({}), &[("x-ferry-test", "1")])
        .await;
    assert_eq!(code, 200, "{body}");
    let waiting = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&waiting, &["waiting"], Duration::from_secs(10))
        .await;
    let (code, _) = api_post(&server, "/solutions/w/promote").await;
    assert_eq!(code, 200);
    server.terminate();
    write_runbook(&dir, "r", &waiting_runbook("r", 0, "second version"));
    let server = Server::start_with(&data, &[&dir], &key, &["--store", &url, "--draft", "w"]);
    assert_eq!(solution_info(&server, "w").await["mode"], "live");
    let v2 = version(&server, "w").await;
    assert_ne!(v1, v2);
    let job = server
        .wait_job(&waiting, &["finished", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(job["status"], "finished", "{job}\n{}", server.logs());
    assert_eq!(job["solution_version"], v1.as_str());
    assert_eq!(job["test"], true);
    assert_eq!(log_message(&job, "log"), "first version");
    let job = run_event(&server, "/inbound/w/r", 0, &[]).await;
    assert_eq!(job["solution_version"], v2.as_str());
    assert_eq!(log_message(&job, "log"), "second version");
}

/// A job whose version cannot be compiled again (it needs an environment variable the restarted
/// server does not have) fails, naming the version and the cause; it never runs on another
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_version_cannot_be_compiled_again_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "e",
        "name: e\nenv:\n  K: { from_env: FERRY_VERSIONS_TEST_K }\n",
        &[("r", &waiting_runbook("r", 3, "first version"))],
    );
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[&dir], &[("FERRY_VERSIONS_TEST_K", "k")]);
    let v1 = version(&server, "e").await;
    let (code, body) = server.post("/inbound/e/r", &json!({}), &[]).await;
    assert_eq!(code, 200, "{body}");
    let waiting = body["job_uuid"].as_str().unwrap().to_string();
    server
        .wait_job(&waiting, &["waiting"], Duration::from_secs(10))
        .await;
    server.terminate();
    std::fs::write(dir.join("solution.yaml"), "name: e\n").unwrap();
    write_runbook(&dir, "r", &waiting_runbook("r", 0, "second version"));
    let server = Server::start(&data, &[&dir], &[]);
    let job = server
        .wait_job(&waiting, &["finished", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("Version {v1} of solution 'e' is not available"))
            && error.contains("FERRY_VERSIONS_TEST_K"),
        "{error}"
    );
    assert!(common::steps(&job, "log").is_empty(), "{job}");
    assert!(server
        .logs()
        .contains("the solution version of a job is not available"));
}
