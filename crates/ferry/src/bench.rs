//! `ferry bench`: performance figures of a real `ferry serve` process, driven over loopback.
//!
//! Each benchmark writes a throw-away solution and data directory, starts the current
//! binary as `ferry serve --listen 127.0.0.1:0`, and measures it from this process with a
//! plain HTTP/1.1 client on keep-alive connections.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::Value;

/// Arguments of `ferry bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand)]
enum Which {
    /// JSON endpoint ingest: events/s and latency percentiles (durable before 200).
    Ingest {
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Approximate body size in bytes.
        #[arg(long, default_value_t = 1500)]
        body_bytes: usize,
        /// Job workers in the server while ingesting.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// The store: `sqlite` (each node's own file), a PostgreSQL URL (an empty database),
        /// or `postgres` (a throwaway PostgreSQL server started for the benchmark, fsync on).
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// `ferry serve` nodes sharing the store (PostgreSQL); the connections are spread over
        /// them.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// Claim latency with many queued jobs (the store in-process): fills the store, then times
    /// single claims.
    ClaimLatency {
        /// Queued jobs before the claims are timed.
        #[arg(long, default_value_t = 1_000_000)]
        jobs: usize,
        /// Claims to time.
        #[arg(long, default_value_t = 2_000)]
        claims: usize,
        /// `sqlite`, a PostgreSQL URL (an empty database) or `postgres` (a throwaway server).
        #[arg(long, default_value = "sqlite")]
        store: String,
    },
    /// Latency from event to finished job for a linear runbook of Log actions.
    Runbook {
        /// Steps in the runbook.
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// Jobs to run (sequentially).
        #[arg(long, default_value_t = 200)]
        jobs: usize,
    },
    /// Resident memory when idle and with many queued jobs.
    Memory {
        /// Jobs to queue (the server runs no workers).
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
    },
    /// One job over many records emitted page by page, each running a one-step branch (the
    /// engine in-process on a fresh data directory): time per slice of records, memory, and
    /// checkpoint (state) size, to show that neither grows with the records processed.
    Paging {
        /// Records emitted by `debug.generate_records`.
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Records per page (per invocation of the generating step).
        #[arg(long, default_value_t = 100)]
        page_size: u64,
        /// Records per reported slice.
        #[arg(long, default_value_t = 10_000)]
        slice: u64,
    },
    /// ES256-signed Xurrent webhook deliveries through the `xurrent.webhook` trigger
    /// (verification, the jti replay window in the shared store, a durable job), the engine
    /// in-process: events/s and latency percentiles, and the cost of one verification.
    XurrentWebhook {
        /// Deliveries to ingest.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Concurrent callers (closed loop: each caller sends its next delivery when the
        /// previous one is answered).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Open loop instead: deliveries arrive at this many per second, each independently
        /// of the answers (as webhooks arrive); latency counts from each delivery's scheduled
        /// arrival, so queueing behind a slow answer is included.
        #[arg(long, conflicts_with = "http")]
        rate: Option<u32>,
        /// Through HTTP instead: a `ferry serve` process (no job workers) takes the deliveries
        /// on `POST /inbound/…` over `--concurrency` keep-alive loopback connections from this
        /// process, which shares the machine's cores with it.
        #[arg(long)]
        http: bool,
    },
    /// Introspecting and caching a connection's full Xurrent schema (the emulator's, on a
    /// loopback port) and the cached lookup a step pays, through the connector's schema cache.
    XurrentSchema {
        /// Refreshes (introspect + parse + seal + store) to time.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Cached lookups to time.
        #[arg(long, default_value_t = 100_000)]
        lookups: usize,
    },
    /// The `xurrent.query` action over records of a `ferry emulator` process (limits off), one
    /// job whose one-step branch runs once per record (the engine in-process on a fresh data
    /// directory): records/s, pages, peak memory and checkpointed state size.
    XurrentQuery {
        /// Records to seed into the emulator and query.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        /// Records per page (1–100).
        #[arg(long, default_value_t = 100)]
        page_size: u32,
    },
    /// The web console's jobs list over a store filled with many jobs (`ferry serve` with no
    /// workers on a prepared data directory): server time (its `Server-Timing` header) and
    /// round trip of `/ui/jobs`, unfiltered, per filter and deep in the pages.
    Console {
        /// Jobs to store.
        #[arg(long, default_value_t = 1_000_000)]
        jobs: usize,
        /// Of them, how many to end (half failed, half finished) before measuring.
        #[arg(long, default_value_t = 20_000)]
        ended: usize,
        /// Requests per page variant.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
}

/// Run a benchmark and print its figures.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        Which::Ingest {
            connections,
            seconds,
            body_bytes,
            workers,
            store,
            nodes,
        } => {
            let (url, _pg) = bench_store(&store)?;
            if nodes > 1 && url.is_none() {
                bail!("--nodes above 1 needs a PostgreSQL store (--store postgres or a URL)");
            }
            let dir = tempfile::tempdir()?;
            let sol = write_solution(dir.path(), 1)?;
            let servers = (0..nodes.max(1))
                .map(|i| {
                    let data = dir.path().join(format!("data{i}"));
                    Server::start_node(&data, &sol, workers, url.as_deref())
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = event_body(body_bytes);
            let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
            let server_cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
            let client_cpu0 = cpu_seconds(std::process::id());
            let r = load_many(
                &servers,
                connections,
                Limit::Time(Duration::from_secs(seconds)),
                body,
            )
            .await?;
            let server_cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - server_cpu0;
            let client_cpu = cpu_seconds(std::process::id()) - client_cpu0;
            println!(
                "ingest: {connections} connections, {seconds} s, body {body_bytes} B, {workers} workers, \
                 store {}, {} node(s)",
                if url.is_some() { "PostgreSQL" } else { "SQLite" },
                servers.len()
            );
            r.print();
            println!(
                "  CPU: server {:.2} s ({:.0} µs/event), load generator {:.2} s, in {:.2} s on {} cores",
                server_cpu,
                server_cpu * 1e6 / r.ok.max(1) as f64,
                client_cpu,
                r.elapsed.as_secs_f64(),
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
        Which::Runbook { steps, jobs } => {
            let server = Server::start(steps, 2)?;
            runbook_latency(&server, jobs).await?;
        }
        Which::Memory { jobs } => {
            let server = Server::start(1, 0)?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let idle = rss_kib(server.child.id());
            println!("memory: idle RSS {:.1} MB", idle as f64 / 1024.0);
            let r = load(&server, 50, Limit::Count(jobs), event_body(300)).await?;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let after = rss_kib(server.child.id());
            println!(
                "memory: RSS with {} queued jobs {:.1} MB (ingested at {:.0} events/s)",
                r.ok,
                after as f64 / 1024.0,
                r.rate()
            );
        }
        Which::ClaimLatency {
            jobs,
            claims,
            store,
        } => claim_latency(jobs, claims, &store).await?,
        Which::Paging {
            records,
            page_size,
            slice,
        } => paging(records, page_size, slice).await?,
        Which::XurrentWebhook {
            events,
            concurrency,
            rate,
            http,
        } => crate::bench_xurrent::xurrent_webhook(events, concurrency, rate, http).await?,
        Which::XurrentSchema { rounds, lookups } => {
            crate::bench_schema::xurrent_schema(rounds, lookups).await?
        }
        Which::XurrentQuery { records, page_size } => {
            crate::bench_xurrent::xurrent_query(records, page_size).await?
        }
        Which::Console {
            jobs,
            ended,
            rounds,
        } => crate::bench_console::console(jobs, ended, rounds).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// An in-process engine (default options, the built-in registry) on a fresh data directory
/// `data`, with the solution in `sol` loaded: what the in-process benchmarks run against.
pub(crate) async fn engine_with(
    data: &Path,
    sol: &Path,
) -> anyhow::Result<(
    std::sync::Arc<ferry_engine::Engine>,
    std::sync::Arc<ferry_store::SqliteStore>,
)> {
    let (secrets, store) = crate::serve::open_data(data, false).await?;
    let engine = ferry_engine::Engine::new(
        store.clone() as std::sync::Arc<dyn ferry_store::Store>,
        secrets,
        crate::registry(),
        ferry_engine::EngineOptions::default(),
    );
    engine
        .load_dir(sol)
        .map_err(|d| anyhow::anyhow!("bench solution invalid: {d:?}"))?;
    Ok((engine, store))
}

/// User + system CPU seconds of a process, from /proc (0 where unavailable).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn event_body(bytes: usize) -> Bytes {
    let filler = "x".repeat(bytes.saturating_sub(120));
    Bytes::from(format!(
        r#"{{"id":"evt-1","subject":"Printer on fire","priority":3,"requester":"jane@example.com","payload":"{filler}"}}"#
    ))
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) token: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_solution(dir: &Path, steps: usize) -> anyhow::Result<PathBuf> {
    let sol = dir.join("bench");
    std::fs::create_dir_all(sol.join("runbooks"))?;
    std::fs::write(
        sol.join("solution.yaml"),
        "name: bench\ndescription: Benchmark solution\n",
    )?;
    let mut rb = String::from(
        "name: intake\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema:\n      - { id: id, type: string }\n      - { id: subject, type: string }\n      - { id: priority, type: integer }\n      - { id: requester, type: string }\n      - { id: payload, type: string }\nsteps:\n",
    );
    for i in 0..steps {
        rb.push_str(&format!(
            "  - id: log{i}\n    action: debug.log_message\n    input: {{ message: \"step {i}: {{{{ trigger.body.subject }}}}\" }}\n"
        ));
    }
    std::fs::write(sol.join("runbooks").join("intake.yaml"), rb)?;
    Ok(sol)
}

/// The master key of the benchmark's nodes (they must share one on PostgreSQL).
const BENCH_MASTER_KEY: &str = "3c5e7a9b1d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a3c";

/// The PostgreSQL URL of `--store` (starting a throwaway server for `postgres`), `None` for
/// SQLite. The server, if any, lives as long as the returned guard.
fn bench_store(
    store: &str,
) -> anyhow::Result<(Option<String>, Option<ferry_store::throwaway::Throwaway>)> {
    match store {
        "sqlite" => Ok((None, None)),
        "postgres" => {
            let pg = ferry_store::throwaway::Throwaway::start(true)
                .map_err(|e| anyhow::anyhow!("starting a throwaway PostgreSQL: {e}"))?;
            let url = pg
                .create_database("bench")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((Some(url), Some(pg)))
        }
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok((Some(url.to_string()), None))
        }
        other => bail!("--store {other}: expected sqlite, postgres or a PostgreSQL URL"),
    }
}

impl Server {
    fn start(steps: usize, workers: usize) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let sol = write_solution(dir.path(), steps)?;
        Server::start_in(dir, &sol, workers)
    }

    /// `ferry serve` on `<dir>/data` with the solution `sol`.
    pub(crate) fn start_in(
        dir: tempfile::TempDir,
        sol: &Path,
        workers: usize,
    ) -> anyhow::Result<Server> {
        let mut server = Server::start_node(&dir.path().join("data"), sol, workers, None)?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// `ferry serve` on the data directory `data` with the solution `sol`, on `store` (a
    /// PostgreSQL URL) or its own SQLite file.
    fn start_node(
        data: &Path,
        sol: &Path,
        workers: usize,
        store: Option<&str>,
    ) -> anyhow::Result<Server> {
        let token = "bench-token".to_string();
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            &workers.to_string(),
            "--data",
        ])
        .arg(data)
        .arg(sol);
        if let Some(url) = store {
            // Nodes sharing a PostgreSQL store share the master key.
            cmd.args(["--store", url])
                .env("FERRY_MASTER_KEY", BENCH_MASTER_KEY);
        }
        let mut child = cmd
            .env("FERRY_API_TOKEN", &token)
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting ferry serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("Ferry listening on http://") {
                        break rest.trim().to_string();
                    }
                }
                _ => bail!("ferry serve exited before listening"),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server {
            child,
            addr,
            token,
            _dir: None,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

enum Limit {
    Time(Duration),
    Count(usize),
}

struct LoadResult {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
    fn print(&self) {
        println!(
            "  {} events in {:.2} s = {:.0} events/s; errors {}; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.ok,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.errors,
            self.pct(0.5),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

async fn load(
    server: &Server,
    connections: usize,
    limit: Limit,
    body: Bytes,
) -> anyhow::Result<LoadResult> {
    load_many(std::slice::from_ref(server), connections, limit, body).await
}

/// Closed-loop load over keep-alive connections spread round-robin over `servers`.
async fn load_many(
    servers: &[Server],
    connections: usize,
    limit: Limit,
    body: Bytes,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let deadline = match limit {
        Limit::Time(d) => Some(start + d),
        Limit::Count(_) => None,
    };
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(match limit {
        Limit::Count(n) => n as i64,
        Limit::Time(_) => i64::MAX,
    }));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = servers[c % servers.len()].addr.clone();
        let body = body.clone();
        let remaining = remaining.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if remaining.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) <= 0 {
                    break;
                }
                let req = Request::post(format!("http://{addr}/inbound/bench/intake"))
                    .header("content-type", "application/json")
                    .header("host", addr.as_str())
                    .body(Full::new(body.clone()))?;
                let t = Instant::now();
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let _ = resp.into_body().collect().await?;
                if status.is_success() {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Ok(LoadResult {
        ok: all.len(),
        errors,
        elapsed,
        latencies_us: all,
    })
}

async fn runbook_latency(server: &Server, jobs: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut client_ms = Vec::new();
    let mut server_ms = Vec::new();
    for _ in 0..jobs {
        let t = Instant::now();
        let resp: Value = client
            .post(server.url("/inbound/bench/intake"))
            .json(&serde_json::json!({"id": "1", "subject": "latency", "priority": 1}))
            .send()
            .await?
            .json()
            .await?;
        let id = resp["job_uuid"]
            .as_str()
            .context("no job_uuid")?
            .to_string();
        loop {
            let job: Value = client
                .get(server.url(&format!("/api/v1/jobs/{id}")))
                .bearer_auth(&server.token)
                .send()
                .await?
                .json()
                .await?;
            match job["status"].as_str() {
                Some("finished") => {
                    client_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    let created = chrono::DateTime::parse_from_rfc3339(
                        job["created_at"].as_str().unwrap_or(""),
                    )?;
                    let finished = chrono::DateTime::parse_from_rfc3339(
                        job["finished_at"].as_str().unwrap_or(""),
                    )?;
                    server_ms
                        .push((finished - created).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                    let steps = job["steps"].as_array().map_or(0, Vec::len);
                    if steps == 0 {
                        bail!("job finished without steps");
                    }
                    break;
                }
                Some("failed") => bail!("job failed: {}", job["error"]),
                _ => tokio::time::sleep(Duration::from_micros(500)).await,
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (
            v[v.len() / 2],
            v[(v.len() as f64 * 0.99) as usize].max(v[v.len() - 1].min(v[v.len() - 1])),
        )
    };
    let (c50, _) = med(&mut client_ms);
    let (s50, _) = med(&mut server_ms);
    let s99 = server_ms[((server_ms.len() as f64 - 1.0) * 0.99) as usize];
    println!("runbook: {jobs} jobs, event to finished job");
    println!("  server-side (created_at → finished_at): median {s50:.2} ms, p99 {s99:.2} ms");
    println!("  client-side (POST → observed finished, 0.5 ms polling): median {c50:.2} ms");
    Ok(())
}

/// Fill a store with `jobs` queued jobs, then time `claims` single claims.
async fn claim_latency(jobs: usize, claims: usize, store: &str) -> anyhow::Result<()> {
    use ferry_store::{JobId, NewJob, Store};
    use std::sync::Arc;
    let (url, _pg) = bench_store(store)?;
    let dir = tempfile::tempdir()?;
    let store: crate::serve::OpenStore = match &url {
        Some(u) => {
            crate::serve::OpenStore::open(
                &crate::serve::StoreUrl::Postgres(u.clone()),
                dir.path(),
                false,
            )
            .await?
        }
        None => {
            crate::serve::OpenStore::open(&crate::serve::StoreUrl::Sqlite, dir.path(), false)
                .await?
        }
    };
    let s: Arc<dyn Store> = store.dyn_store();
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (s, next) = (s.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < jobs {
                let job = NewJob {
                    id: JobId::new_v4(),
                    solution: "bench".into(),
                    runbook: "intake".into(),
                    trigger_output: serde_json::json!({"n": 1}),
                    context_id: None,
                    concurrency_key: None,
                    dedup_key: None,
                    state: serde_json::json!({}),
                    solution_version: None,
                    test: false,
                    claims: Vec::new(),
                };
                s.insert_job(job).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "claim latency: {jobs} jobs queued in {:.1} s ({:.0} inserts/s), store {}",
        t.elapsed().as_secs_f64(),
        jobs as f64 / t.elapsed().as_secs_f64(),
        if url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let mut lat = Vec::with_capacity(claims);
    for _ in 0..claims {
        let t = Instant::now();
        let job = s
            .claim_job("bench", chrono::Utc::now(), Duration::from_secs(300))
            .await?;
        lat.push(t.elapsed().as_micros() as u64);
        if job.is_none() {
            bail!("nothing to claim");
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
    println!(
        "  {claims} claims: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    store.close().await;
    Ok(())
}

/// One sample of the paging job's progress.
struct PagingSample {
    at: chrono::DateTime<chrono::Utc>,
    rss_kib: u64,
    /// CPU seconds of this process (engine, store writer and sampler) so far.
    cpu: f64,
    state_bytes: usize,
}

async fn paging(records: u64, page_size: u64, slice: u64) -> anyhow::Result<()> {
    use ferry_engine::executor::{run_job, RunEnd};
    use ferry_engine::Engine;
    use ferry_store::{JobStatus, NewJob, Store};

    if records == 0 || slice == 0 || page_size == 0 {
        bail!("--records, --page-size and --slice must be positive");
    }
    let dir = tempfile::tempdir()?;
    let sol = dir.path().join("paging");
    std::fs::create_dir_all(sol.join("runbooks"))?;
    std::fs::write(sol.join("solution.yaml"), "name: paging\n")?;
    std::fs::write(
        sol.join("runbooks").join("records.yaml"),
        format!(
            "name: records\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    \
             body_schema: [ {{ id: n, type: integer }} ]\nsteps:\n  - id: generate\n    action: debug.generate_records\n    \
             input: {{ count: {records}, page_size: {page_size} }}\n    each:\n      \
             - {{ id: record, action: debug.log_message, input: {{ message: \"{{{{ item.name }}}}\" }} }}\n"
        ),
    )?;
    let (engine, store) = crate::bench::engine_with(&dir.path().join("data"), &sol).await?;
    let (_, rb) = engine
        .runbook("paging", "records")
        .context("bench runbook not loaded")?;
    let id = uuid::Uuid::now_v7();
    store
        .insert_job(NewJob {
            id,
            solution: "paging".into(),
            runbook: "records".into(),
            trigger_output: serde_json::json!({ "body": {} }),
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
    let rss_start = rss_kib(me);
    let started = Instant::now();
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move { run_job(&engine.exec_env(), job).await })
    };
    // Sample memory and the stored state while the job runs.
    let mut samples = Vec::new();
    while !runner.is_finished() {
        let state_bytes = match store.get_job(id).await? {
            Some(j) => serde_json::to_string(&j.state)?.len(),
            None => 0,
        };
        samples.push(PagingSample {
            at: chrono::Utc::now(),
            rss_kib: rss_kib(me),
            cpu: cpu_seconds(me),
            state_bytes,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = runner.await?;
    let elapsed = started.elapsed();
    let rss_end = rss_kib(me);
    if end != RunEnd::Status(JobStatus::Finished) {
        let error = store.get_job(id).await?.and_then(|j| j.error);
        bail!(
            "the paging job ended {end:?}: {}",
            error.unwrap_or_default()
        );
    }

    // Slice boundaries from the step records (microsecond timestamps).
    let steps = store.job_steps(id).await?;
    let first_start = steps.first().map(|s| s.started_at).context("no steps")?;
    let done: Vec<chrono::DateTime<chrono::Utc>> = steps
        .iter()
        .filter(|s| s.step_id == "record")
        .map(|s| s.finished_at)
        .collect();
    if done.len() as u64 != records {
        bail!("{} of {records} records ran their branch", done.len());
    }
    println!(
        "paging: {records} records in pages of {page_size}, a one-step branch per record: {} steps in {:.2} s ({:.0} steps/s)",
        steps.len(),
        elapsed.as_secs_f64(),
        steps.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  records            time    records/s        CPU   state (max)   RSS at end of slice"
    );
    // CPU seconds at the last sample taken before `t`.
    let cpu_at = |t: chrono::DateTime<chrono::Utc>| {
        samples.iter().rfind(|s| s.at <= t).map_or(0.0, |s| s.cpu)
    };
    let mut slice_secs = Vec::new();
    let mut slice_cpu = Vec::new();
    let mut from = first_start;
    let mut lo = 0u64;
    while lo < records {
        let hi = (lo + slice).min(records);
        let to = done[(hi - 1) as usize];
        let secs = (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let in_slice: Vec<&PagingSample> = samples
            .iter()
            .filter(|s| s.at > from && s.at <= to)
            .collect();
        let state = in_slice.iter().map(|s| s.state_bytes).max().unwrap_or(0);
        let rss = in_slice.last().map_or(0, |s| s.rss_kib);
        let cpu = cpu_at(to) - cpu_at(from);
        println!(
            "  {:>7}–{:<7} {:>7.2} s {:>10.0} {:>8.2} s {:>10} B {:>10.1} MB",
            lo,
            hi,
            secs,
            (hi - lo) as f64 / secs.max(1e-9),
            cpu,
            state,
            rss as f64 / 1024.0
        );
        slice_secs.push(secs);
        slice_cpu.push(cpu);
        from = to;
        lo = hi;
    }
    let first = slice_secs.first().copied().unwrap_or(0.0);
    let last = slice_secs.last().copied().unwrap_or(0.0);
    let ratio = last / first.max(1e-9);
    println!(
        "  last/first slice time: {ratio:.2} ({})",
        if ratio <= 1.2 {
            "within the 1.2 bound"
        } else {
            "ABOVE the 1.2 bound"
        }
    );
    if let (Some(first), Some(last)) = (slice_cpu.first(), slice_cpu.last()) {
        println!(
            "  last/first slice CPU: {:.2} (CPU time is less sensitive to other load on the machine)",
            last / first.max(1e-9)
        );
    }
    let middle = done[(records / 2) as usize];
    let rss_middle = samples
        .iter()
        .rfind(|s| s.at <= middle)
        .map_or(rss_start, |s| s.rss_kib);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(rss_end);
    println!(
        "  RSS: start {:.1} MB, middle {:.1} MB, end {:.1} MB, max {:.1} MB",
        rss_start as f64 / 1024.0,
        rss_middle as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );
    let sizes: Vec<usize> = samples.iter().map(|s| s.state_bytes).collect();
    println!(
        "  checkpointed state: {} samples, min {} B, max {} B",
        sizes.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );
    engine.begin_shutdown();
    store.close().await;
    Ok(())
}
