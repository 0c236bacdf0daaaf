//! `ferry bench xurrent-webhook`: ES256-signed Xurrent webhook deliveries through the
//! `xurrent.webhook` trigger — verification, the `jti` replay window in the shared store, and a
//! durable job — with the engine in-process on a fresh data directory (no HTTP layer), or
//! with `--http` through a `ferry serve` process over loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry_emulator::policy::{random_jti, JwtAlg, PolicyKey};
use ferry_engine::{Engine, InboundRequest, IngestOutcome};
use ferry_store::Store;
use ferry_xurrent::webhook::verify::{self, Unverified};
use serde_json::json;

const ISSUER: &str = "https://wdc.xurrent.com";

/// Open loop: delivery `i` is due at `i / rate` seconds; every due delivery is handed to its
/// own task at once (the dispatcher wakes every millisecond), and its latency runs from the
/// time it was due to its answer.
async fn open_loop(
    engine: &Arc<Engine>,
    store: &Arc<ferry_store::SqliteStore>,
    requests: Vec<InboundRequest>,
    rate: u32,
) -> anyhow::Result<()> {
    let events = requests.len();
    let rate = f64::from(rate.max(1));
    let cpu0 = crate::bench::cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(events);
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = requests.into_iter().enumerate().peekable();
    while pending.peek().is_some() {
        ticker.tick().await;
        let now = start.elapsed().as_secs_f64();
        while let Some((i, _)) = pending.peek() {
            let due = *i as f64 / rate;
            if due > now {
                break;
            }
            let Some((_, request)) = pending.next() else {
                break;
            };
            let engine = engine.clone();
            let due_at = start + std::time::Duration::from_secs_f64(due);
            tasks.push(tokio::spawn(async move {
                let outcome = engine.ingest("xw", "hook", request).await;
                let latency = due_at.elapsed().as_micros() as u64;
                let error = (!matches!(outcome, IngestOutcome::Accepted { .. }))
                    .then(|| format!("{outcome:?}"));
                (latency, error)
            }));
        }
    }
    let mut latencies = Vec::with_capacity(events);
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await?;
        latencies.push(l);
        errors.extend(e);
    }
    report(
        store,
        &format!("offered at {rate:.0}/s (open loop)"),
        "latency from arrival",
        Measured {
            latencies,
            errors,
            start,
            cpu0,
        },
    )
}

/// Run the benchmark: `events` deliveries from `concurrency` concurrent callers, or (with
/// `rate`) arriving at `rate` per second whatever the answers.
pub async fn xurrent_webhook(
    events: usize,
    concurrency: usize,
    rate: Option<u32>,
    http: bool,
) -> anyhow::Result<()> {
    let key = PolicyKey::generate(JwtAlg::Es256)?;
    let pem = key.public_key_pem.clone().context("no public key")?;

    // The cost of one ES256 verification (decode + signature), single-threaded.
    let now = chrono::Utc::now().timestamp();
    let sample = key.sign(None, &claims(now, 0))?;
    let decoding = jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes())?;
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        let jwt = Unverified::decode(&sample).map_err(anyhow::Error::msg)?;
        verify::check_signature(&jwt, jsonwebtoken::Algorithm::ES256, &decoding)
            .map_err(anyhow::Error::msg)?;
    }
    println!(
        "xurrent-webhook: ES256 decode + verify {:.1} µs (single thread, {n} tokens)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    let dir = tempfile::tempdir()?;
    let sol = dir.path().join("xw");
    std::fs::create_dir_all(sol.join("runbooks"))?;
    std::fs::write(
        sol.join("solution.yaml"),
        format!(
            "name: xw\nconnections:\n  xurrent_in:\n    connector: xurrent\n    direction: inbound\n    config:\n      \
             policy: {{ account_url: \"{ISSUER}\", algorithm: ES256, public_key_pem: {} }}\n",
            serde_json::to_string(&pem)?
        ),
    )?;
    std::fs::write(
        sol.join("runbooks").join("hook.yaml"),
        "name: hook\ntrigger:\n  connector: xurrent\n  type: webhook\n  connection: xurrent_in\n\
         steps:\n  - { id: log, action: debug.log_message, input: { message: \"{{ trigger.event }}\" } }\n",
    )?;
    if http {
        let server = crate::bench::Server::start_in(dir, &sol, 0)?;
        return over_http(&server, &key, events, concurrency).await;
    }
    let (engine, store) = crate::bench::engine_with(&dir.path().join("data"), &sol).await?;

    // Sign every delivery before measuring (each with its own jti and delivery id).
    let now = chrono::Utc::now().timestamp();
    let mut requests = Vec::with_capacity(events);
    for i in 0..events {
        let jwt = key.sign(None, &claims(now, i))?;
        let request = InboundRequest {
            method: "POST".into(),
            body: bytes::Bytes::from(json!({ "jwt": jwt }).to_string()),
            ..InboundRequest::default()
        }
        .with_header("content-type", "application/json; charset=utf-8")
        .with_header("x-xurrent-delivery", &uuid::Uuid::new_v4().to_string());
        requests.push(request);
    }
    if let Some(rate) = rate {
        return open_loop(&engine, &store, requests, rate).await;
    }
    let per_task = events.div_ceil(concurrency.max(1));
    let mut chunks = Vec::new();
    let mut rest = requests;
    while !rest.is_empty() {
        let tail = rest.split_off(per_task.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let cpu0 = crate::bench::cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(chunk.len());
            let mut errors = Vec::new();
            for request in chunk {
                let t = Instant::now();
                let outcome = engine.ingest("xw", "hook", request).await;
                latencies.push(t.elapsed().as_micros() as u64);
                if !matches!(outcome, IngestOutcome::Accepted { .. }) {
                    errors.push(format!("{outcome:?}"));
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    report(
        &store,
        &format!("from {concurrency} concurrent callers"),
        "latency",
        Measured {
            latencies,
            errors,
            start,
            cpu0,
        },
    )?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// `--http`: the deliveries, signed beforehand, posted to a `ferry serve` process over
/// `concurrency` keep-alive loopback connections (closed loop); latency per request, the
/// server's CPU and this process's CPU (the load generator) reported apart.
async fn over_http(
    server: &crate::bench::Server,
    key: &PolicyKey,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Full};

    let now = chrono::Utc::now().timestamp();
    let mut deliveries = Vec::with_capacity(events);
    for i in 0..events {
        let body =
            bytes::Bytes::from(json!({ "jwt": key.sign(None, &claims(now, i))? }).to_string());
        deliveries.push((body, uuid::Uuid::new_v4().to_string()));
    }
    let per_conn = events.div_ceil(concurrency.max(1));
    let server_cpu0 = crate::bench::cpu_seconds(server.child.id());
    let own_cpu0 = crate::bench::cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut rest = deliveries;
    while !rest.is_empty() {
        let tail = rest.split_off(per_conn.min(rest.len()));
        let chunk = std::mem::replace(&mut rest, tail);
        let addr = server.addr.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(chunk.len());
            let mut errors = Vec::new();
            for (body, delivery) in chunk {
                let req = hyper::Request::post(format!("http://{addr}/inbound/xw/hook"))
                    .header("host", addr.as_str())
                    .header("content-type", "application/json; charset=utf-8")
                    .header("x-xurrent-delivery", delivery)
                    .body(Full::new(body))?;
                let t = Instant::now();
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let answer = resp.into_body().collect().await?.to_bytes();
                latencies.push(t.elapsed().as_micros() as u64);
                if status != hyper::StatusCode::OK {
                    errors.push(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await??;
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed();
    let server_cpu = crate::bench::cpu_seconds(server.child.id()) - server_cpu0;
    let own_cpu = crate::bench::cpu_seconds(std::process::id()) - own_cpu0;
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let ok = latencies.len() - errors.len();
    println!(
        "xurrent-webhook: {ok} ES256-signed deliveries over HTTP from {concurrency} keep-alive connections verified, replay-checked and stored as jobs by `ferry serve` in {:.2} s = {:.0} events/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    println!(
        "xurrent-webhook: CPU (user + system): server {server_cpu:.2} s = {:.0} µs per event, load generator {own_cpu:.2} s = {:.0} µs per event, on {} cores",
        server_cpu * 1e6 / events.max(1) as f64,
        own_cpu * 1e6 / events.max(1) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Some(first) = errors.first() {
        bail!(
            "{} deliveries were not accepted, e.g. {first}",
            errors.len()
        );
    }
    Ok(())
}

/// What one run collected: every delivery's latency (µs), the refusals, and the clocks.
struct Measured {
    latencies: Vec<u64>,
    errors: Vec<String>,
    start: Instant,
    cpu0: f64,
}

/// Print a run's events/s, latency percentiles, writer transactions and CPU per event; fail
/// when a delivery was not accepted.
fn report(
    store: &ferry_store::SqliteStore,
    mode: &str,
    latency: &str,
    mut m: Measured,
) -> anyhow::Result<()> {
    let elapsed = m.start.elapsed();
    let cpu = crate::bench::cpu_seconds(std::process::id()) - m.cpu0;
    let events = m.latencies.len();
    m.latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((events as f64 - 1.0) * p).round() as usize;
        m.latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let ok = events - m.errors.len();
    println!(
        "xurrent-webhook: {ok} ES256-signed deliveries {mode} verified, replay-checked and stored as jobs in {:.2} s = {:.0} events/s; {latency} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    let w = store.writer_stats();
    println!(
        "xurrent-webhook: store writer {} commands in {} transactions (largest {}); process CPU (user + system, all threads) {:.2} s = {:.0} µs per event, {:.2} cores busy on average",
        w.commands,
        w.batches,
        w.largest_batch,
        cpu,
        cpu * 1e6 / events.max(1) as f64,
        cpu / elapsed.as_secs_f64(),
    );
    if let Some(first) = m.errors.first() {
        bail!(
            "{} deliveries were not accepted, e.g. {first}",
            m.errors.len()
        );
    }
    Ok(())
}

fn claims(now: i64, i: usize) -> serde_json::Value {
    json!({
        "iss": ISSUER, "sub": "1", "iat": now, "nbf": now, "jti": random_jti(),
        "data": {
            "webhook_id": 1, "webhook_nodeID": "NG1lLm5ldC9XZWJob29rLzE", "account_id": "wdc",
            "account": ISSUER, "name": "bench", "event": "request.update", "object_id": i,
            "object_nodeID": format!("req-{i}"), "person_id": 6, "person_name": "Howard Tanner",
            "payload": {"status": "assigned", "audit_line_id": i}
        }
    })
}

/// A `ferry emulator` child process (this binary), killed when dropped.
struct EmulatorProcess {
    child: std::process::Child,
    base: String,
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EmulatorProcess {
    /// `ferry emulator --listen 127.0.0.1:0 --no-rate-limits`, once it listens.
    fn start() -> anyhow::Result<EmulatorProcess> {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().context("locating the ferry binary")?;
        let mut child = Command::new(exe)
            .args(["emulator", "--listen", "127.0.0.1:0", "--no-rate-limits"])
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting ferry emulator")?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("Xurrent emulator listening on ") {
                        break rest.trim().to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    bail!("ferry emulator exited before listening");
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(EmulatorProcess { child, base })
    }
}

/// `ferry bench xurrent-query`: seed `records` people into an emulator process (limits off),
/// then run one job whose `xurrent.query` step (per-record mode) pages through them and runs a
/// one-step branch (`debug.log_message`) per record; the engine in-process on a fresh data
/// directory, memory and checkpointed state sampled while it runs.
pub async fn xurrent_query(records: usize, page_size: u32) -> anyhow::Result<()> {
    use ferry_engine::executor::{run_job, RunEnd};
    use ferry_store::{JobStatus, NewJob};

    if records == 0 || !(1..=100).contains(&page_size) {
        bail!("--records must be positive and --page-size within 1–100");
    }
    let emu = EmulatorProcess::start()?;
    let http = reqwest::Client::new();
    let seed_start = Instant::now();
    let people: Vec<serde_json::Value> = (0..records)
        .map(|i| {
            json!({"name": format!("Bench person {i:06}"), "source": "bench",
                   "sourceID": i.to_string(), "primaryEmail": format!("p{i}@bench.example")})
        })
        .collect();
    for chunk in people.chunks(5_000) {
        let answer: serde_json::Value = http
            .post(format!("{}/_emulator/seed", emu.base))
            .json(&json!({"records": {"Person": chunk}}))
            .send()
            .await?
            .json()
            .await?;
        if answer["created"] != json!(chunk.len()) {
            bail!("seeding the emulator failed: {answer}");
        }
    }
    drop(people);
    println!(
        "xurrent-query: seeded {records} people into the emulator in {:.2} s",
        seed_start.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let sol = dir.path().join("xq");
    std::fs::create_dir_all(sol.join("runbooks"))?;
    std::fs::write(
        sol.join("solution.yaml"),
        format!(
            "name: xq\nconnections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      \
             credentials: {{ account_id: wdc, personal_access_token: {token} }}\n      \
             environment: {{ graphql_endpoint: \"{base}/graphql\", oauth2_endpoint: \"{base}/token\", rest_endpoint: \"{base}/v1\" }}\n      \
             client_rate_limit: false\n",
            token = ferry_emulator::DEFAULT_TOKEN,
            base = emu.base
        ),
    )?;
    std::fs::write(
        sol.join("runbooks").join("q.yaml"),
        format!(
            "name: q\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ {{ id: n, type: integer }} ]\n\
             steps:\n  - id: query\n    action: xurrent.query\n    connection: x\n    \
             input: {{ object: people, page_size: {page_size}, filter: {{ source: {{ values: [bench] }} }} }}\n    each:\n      \
             - {{ id: record, action: debug.log_message, input: {{ message: \"{{{{ item.name }}}}\" }} }}\n"
        ),
    )?;
    let (engine, store) = crate::bench::engine_with(&dir.path().join("data"), &sol).await?;
    let (_, rb) = engine
        .runbook("xq", "q")
        .context("bench runbook not loaded")?;
    // The steady state of a server: the connection's schema is cached (the first job after
    // start-up, or `ferry connections refresh-schema`, introspects it once an hour; that cost
    // is `ferry bench xurrent-schema`'s figure), so the run below measures the records.
    let warm = Instant::now();
    engine
        .refresh_schema("xq", "x")
        .await
        .map_err(|e| anyhow::anyhow!("introspecting the emulator's schema failed: {e}"))?;
    println!(
        "xurrent-query: the connection's schema introspected and cached in {:.0} ms (not part of the run)",
        warm.elapsed().as_secs_f64() * 1000.0
    );
    let id = uuid::Uuid::now_v7();
    store
        .insert_job(NewJob {
            id,
            solution: "xq".into(),
            runbook: "q".into(),
            trigger_output: json!({ "body": {} }),
            context_id: None,
            concurrency_key: None,
            dedup_key: None,
            state: Engine::initial_state(&rb),
            solution_version: None,
            test: false,
            claims: Vec::new(),
        })
        .await?;
    let job = store
        .claim_job("bench", chrono::Utc::now(), Duration::from_secs(3600))
        .await?
        .context("the bench job was not claimable")?;

    let me = std::process::id();
    let rss_start = crate::bench::rss_kib(me);
    let cpu_start = crate::bench::cpu_seconds(me);
    let emu_cpu_start = crate::bench::cpu_seconds(emu.child.id());
    let started = Instant::now();
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move { run_job(&engine.exec_env(), job).await })
    };
    let mut rss = Vec::new();
    let mut state_max = 0usize;
    while !runner.is_finished() {
        if let Some(j) = store.get_job(id).await? {
            state_max = state_max.max(serde_json::to_string(&j.state)?.len());
        }
        rss.push(crate::bench::rss_kib(me));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = runner.await?;
    let elapsed = started.elapsed();
    let cpu = crate::bench::cpu_seconds(me) - cpu_start;
    let emu_cpu = crate::bench::cpu_seconds(emu.child.id()) - emu_cpu_start;
    if end != RunEnd::Status(JobStatus::Finished) {
        let error = store.get_job(id).await?.and_then(|j| j.error);
        bail!("the query job ended {end:?}: {}", error.unwrap_or_default());
    }
    let steps = store.job_steps(id).await?;
    let branch_runs = steps.iter().filter(|s| s.step_id == "record").count();
    let pages = steps.iter().filter(|s| s.step_id == "query").count();
    if branch_runs != records {
        bail!("{branch_runs} of {records} records ran their branch");
    }
    // RSS over the run, in quarters: flat memory shows as similar figures.
    let quarter = |q: usize| {
        let i = (rss.len().saturating_sub(1) * q) / 4;
        rss.get(i).copied().unwrap_or(rss_start) as f64 / 1024.0
    };
    println!(
        "xurrent-query: {records} records in {pages} pages of {page_size}, a one-step branch per record: {:.2} s = {:.0} records/s ({} steps)",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        steps.len()
    );
    println!(
        "  CPU: ferry {cpu:.2} s ({:.0} µs/record), emulator {emu_cpu:.2} s, on {} cores",
        cpu * 1e6 / records as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  RSS: start {:.1} MB, 25% {:.1} MB, 50% {:.1} MB, 75% {:.1} MB, end {:.1} MB, peak {:.1} MB; checkpointed state max {state_max} B",
        rss_start as f64 / 1024.0,
        quarter(1),
        quarter(2),
        quarter(3),
        quarter(4),
        rss.iter().copied().max().unwrap_or(rss_start) as f64 / 1024.0,
    );
    engine.begin_shutdown();
    store.close().await;
    Ok(())
}
