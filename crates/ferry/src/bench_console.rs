//! `ferry bench console`: the web console's jobs list over a store with many jobs.
//!
//! The store is filled in-process (through `Store::insert_job`, group-committed; then some
//! jobs are claimed and ended, half failed and half finished), then a real `ferry serve`
//! with no workers is started on that data directory, logged in to like a browser, and
//! `/ui/jobs` is requested `rounds` times per variant. Figures: the server's own time (the
//! `Server-Timing` header: store query + rendering) and the round trip over loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use ferry_store::{Checkpoint, JobStatus, NewJob, Store};
use futures::StreamExt;
use serde_json::json;

use crate::bench::Server;

const RUNBOOKS: usize = 4;

fn write_solution(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let sol = dir.join("bench");
    std::fs::create_dir_all(sol.join("runbooks"))?;
    std::fs::write(sol.join("solution.yaml"), "name: bench\n")?;
    for r in 0..RUNBOOKS {
        std::fs::write(
            sol.join("runbooks").join(format!("r{r}.yaml")),
            format!(
                "name: r{r}\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ {{ id: n, type: integer }} ]\nsteps:\n  - {{ id: say, action: debug.log_message, input: {{ message: \"{{{{ trigger.body.n }}}}\" }} }}\n"
            ),
        )?;
    }
    Ok(sol)
}

fn new_job(i: usize) -> NewJob {
    NewJob {
        id: uuid::Uuid::new_v4(),
        solution: "bench".into(),
        runbook: format!("r{}", i % RUNBOOKS),
        trigger_output: json!({"body": {"n": i, "subject": "Printer on fire", "requester": "jane@example.com"}}),
        context_id: Some(format!("ctx-{}", i % 1000)),
        concurrency_key: None,
        dedup_key: None,
        state: json!({}),
        claims: Vec::new(),
        solution_version: None,
        test: false,
    }
}

/// Fill the store; returns the creation times of the first and last job.
async fn fill(
    data: &Path,
    jobs: usize,
    ended: usize,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let (_secrets, store) = crate::serve::open_data(data, false).await?;
    let started = Instant::now();
    let first = Utc::now();
    let mut inserted = 0usize;
    let mut results = futures::stream::iter(0..jobs)
        .map(|i| {
            let store = store.clone();
            async move { store.insert_job(new_job(i)).await }
        })
        .buffer_unordered(1024);
    while let Some(r) = results.next().await {
        r.context("inserting a job")?;
        inserted += 1;
        if inserted.is_multiple_of(200_000) {
            println!(
                "  {inserted} jobs stored ({:.0} jobs/s)",
                inserted as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let last = Utc::now();
    println!(
        "console: stored {jobs} jobs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ending = Instant::now();
    for n in 0..ended {
        let Some(job) = store
            .claim_job("bench", Utc::now(), Duration::from_secs(600))
            .await?
        else {
            break;
        };
        let failed = n % 2 == 0;
        store
            .checkpoint(Checkpoint {
                job_id: job.id,
                step: None,
                state: json!({}),
                status: if failed {
                    JobStatus::Failed
                } else {
                    JobStatus::Finished
                },
                next_run_at: None,
                error: failed.then(|| format!("bench failure {n}")),
                owner: None,
            })
            .await?;
    }
    println!(
        "console: ended {ended} jobs (half failed) in {:.1} s",
        ending.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok((first, last))
}

/// Log in through the form like a browser: the session cookie.
async fn login(client: &reqwest::Client, server: &Server) -> anyhow::Result<String> {
    let form = client.get(server.url("/ui/login")).send().await?;
    let login_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("ferry_login="))
        .and_then(|v| v.split(';').next())
        .context("no login cookie")?
        .to_string();
    let body = form.text().await?;
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("no CSRF field in the login form")?
        .to_string();
    let resp = client
        .post(server.url("/ui/login"))
        .header("cookie", format!("ferry_login={login_cookie}"))
        .form(&[("token", server.token.as_str()), ("csrf", &csrf)])
        .send()
        .await?;
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("ferry_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .context("login failed: no session cookie")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn server_total(resp: &reqwest::Response) -> Option<f64> {
    let timing = resp.headers().get("server-timing")?.to_str().ok()?;
    timing
        .split(',')
        .find_map(|p| p.trim().strip_prefix("total;dur="))
        .and_then(|v| v.parse().ok())
}

/// Run the benchmark.
pub(crate) async fn console(jobs: usize, ended: usize, rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sol = write_solution(dir.path())?;
    let (first, last) = fill(&dir.path().join("data"), jobs, ended.min(jobs)).await?;
    let server = Server::start_in(dir, &sol, 0)?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let session = login(&client, &server).await?;
    let span = last - first;
    let at = |percent: i32| {
        (first + span * percent / 100)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let (from, to) = (at(45), at(55));
    let middle = (jobs / 2).to_string();
    let variants: Vec<(&str, String)> = vec![
        ("newest 50", "/ui/jobs".into()),
        ("page in the middle", format!("/ui/jobs?before={middle}")),
        ("status=failed", "/ui/jobs?status=failed".into()),
        ("status=queued", "/ui/jobs?status=queued".into()),
        ("solution", "/ui/jobs?solution=bench".into()),
        (
            "solution+runbook",
            "/ui/jobs?solution=bench&runbook=r2".into(),
        ),
        (
            "runbook+status=failed",
            "/ui/jobs?runbook=r1&status=failed".into(),
        ),
        ("context id", "/ui/jobs?context_id=ctx-321".into()),
        (
            "time range (10% window)",
            format!("/ui/jobs?from={from}&to={to}"),
        ),
        (
            "time range (50% window)",
            format!("/ui/jobs?from={}&to={}", at(25), at(75)),
        ),
        (
            "created since the middle",
            format!("/ui/jobs?from={}", at(50)),
        ),
        (
            "created before the middle",
            format!("/ui/jobs?to={}", at(50)),
        ),
        ("runbook alone", "/ui/jobs?runbook=r3".into()),
        ("no match (context)", "/ui/jobs?context_id=none".into()),
    ];
    println!(
        "console: /ui/jobs over {jobs} jobs, {rounds} requests per variant (ms: server median / p95 / max, round trip median)"
    );
    let mut worst = 0.0f64;
    for (name, path) in &variants {
        let mut server_ms = Vec::new();
        let mut trip_ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let resp = client
                .get(server.url(path))
                .header("cookie", format!("ferry_session={session}"))
                .send()
                .await?;
            let status = resp.status();
            let total = server_total(&resp);
            let body = resp.bytes().await?;
            trip_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("{path} answered {status}");
            }
            bytes = body.len();
            server_ms.push(total.context("no Server-Timing header")?);
        }
        server_ms.sort_by(f64::total_cmp);
        trip_ms.sort_by(f64::total_cmp);
        worst = worst.max(pct(&server_ms, 0.5));
        println!(
            "  {name:<26} {:>7.1} / {:>7.1} / {:>7.1}   {:>7.1}   ({} KB)",
            pct(&server_ms, 0.5),
            pct(&server_ms, 0.95),
            server_ms.last().copied().unwrap_or(0.0),
            pct(&trip_ms, 0.5),
            bytes / 1024
        );
    }
    println!("console: slowest median server time {worst:.1} ms");
    // The overview reads the whole store's activity (per minute, per status, failing runbooks).
    let mut trips = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let resp = client
            .get(server.url("/ui/"))
            .header("cookie", format!("ferry_session={session}"))
            .send()
            .await?;
        let status = resp.status();
        resp.bytes().await?;
        trips.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("/ui/ answered {status}");
        }
    }
    trips.sort_by(f64::total_cmp);
    println!(
        "console: overview round trip median {:.1} ms, p95 {:.1} ms (all {jobs} jobs created in the last hour)",
        pct(&trips, 0.5),
        pct(&trips, 0.95)
    );
    Ok(())
}
