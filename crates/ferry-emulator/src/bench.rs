//! Micro-benchmark of the GraphQL half: start-up time of [`crate::build`] with the full
//! schema, introspection latency, and simple connection queries per second over loopback.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{EmulatorConfig, RateLimits};

/// The connector's full introspection query (xurrent_connector.md §4.1).
pub const INTROSPECTION_QUERY: &str = crate::graphql::CONNECTOR_INTROSPECTION_QUERY;

/// The simple connection query of the throughput test.
pub const SIMPLE_QUERY: &str = "{ requests(first: 10) { nodes { id subject } } }";

/// Concurrent clients of the throughput test.
pub const CLIENTS: usize = 8;

/// Benchmark failure.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// HTTP failure.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The emulator answered something unexpected.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// Building or binding the emulator failed.
    #[error("setup: {0}")]
    Setup(String),
}

/// Measured figures.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Time of `build()` (SDL parse + dynamic schema), when measured.
    pub startup: Option<Duration>,
    /// First introspection query with the connector's exact text (pre-computed at start-up).
    pub introspection_first: Duration,
    /// An introspection the server has not seen before (executed, not cached).
    pub introspection_uncached: Duration,
    /// In-process execution of an introspection (no HTTP, no cache), when measured.
    pub introspection_execute: Option<Duration>,
    /// In-process JSON serialization of that answer, when measured.
    pub introspection_serialize: Option<Duration>,
    /// In-process projection from the captured universe plus serialization, when measured.
    pub introspection_project: Option<Duration>,
    /// Median of the following introspection queries.
    pub introspection_median: Duration,
    /// Size of the introspection answer in bytes.
    pub introspection_bytes: usize,
    /// Simple connection queries sent.
    pub queries: usize,
    /// Wall time of the throughput test.
    pub elapsed: Duration,
}

impl BenchReport {
    /// Queries per second of the throughput test.
    pub fn queries_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.queries as f64 / s
        } else {
            0.0
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.startup {
            writeln!(
                f,
                "start-up (build, full schema): {:8.1} ms   (target <= 1000 ms)",
                ms(s)
            )?;
        }
        writeln!(
            f,
            "introspection, first:         {:8.1} ms   (target <= 50 ms, {} KiB)",
            ms(self.introspection_first),
            self.introspection_bytes / 1024
        )?;
        writeln!(
            f,
            "introspection, median warm:   {:8.1} ms",
            ms(self.introspection_median)
        )?;
        writeln!(
            f,
            "introspection, uncached:      {:8.1} ms   (new query text, over HTTP)",
            ms(self.introspection_uncached)
        )?;
        if let (Some(e), Some(s)) = (self.introspection_execute, self.introspection_serialize) {
            writeln!(
                f,
                "  in-process async-graphql:   {:8.1} ms execute + {:.1} ms serialize",
                ms(e),
                ms(s)
            )?;
        }
        if let Some(p) = self.introspection_project {
            writeln!(
                f,
                "  in-process projection:      {:8.1} ms (projection + serialize)",
                ms(p)
            )?;
        }
        write!(
            f,
            "simple connection queries:    {:8.0} /s   (target >= 2000 /s; {} queries, {} clients, {:.2} s)",
            self.queries_per_sec(),
            self.queries,
            CLIENTS,
            self.elapsed.as_secs_f64()
        )
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    account: &str,
    query: &str,
) -> Result<bytes::Bytes, BenchError> {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .header("X-Xurrent-Account", account)
        .json(&json!({ "query": query }))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        return Err(BenchError::Unexpected(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(body)
}

/// Run introspection and throughput measurements against a running emulator at `base_url`
/// (its rate limits should be disabled). `n` is the number of simple queries.
pub async fn run(
    base_url: &str,
    token: &str,
    account: &str,
    n: usize,
) -> Result<BenchReport, BenchError> {
    let url = format!("{}/graphql", base_url.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut report = BenchReport::default();

    let mut times = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        let body = post(&client, &url, token, account, INTROSPECTION_QUERY).await?;
        let d = t.elapsed();
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| BenchError::Unexpected(e.to_string()))?;
        if v["data"]["__schema"]["types"]
            .as_array()
            .is_none_or(|t| t.len() < 1000)
        {
            return Err(BenchError::Unexpected(
                "introspection returned too few types".into(),
            ));
        }
        if i == 0 {
            report.introspection_first = d;
            report.introspection_bytes = body.len();
        } else {
            times.push(d);
        }
    }
    times.sort();
    // A variant of the text that is not cached yet: measures real execution.
    let t = Instant::now();
    post(
        &client,
        &url,
        token,
        account,
        &format!("query Uncached {INTROSPECTION_QUERY}"),
    )
    .await?;
    report.introspection_uncached = t.elapsed();
    report.introspection_median = times.get(times.len() / 2).copied().unwrap_or_default();

    // Warm-up, then the timed run.
    post(&client, &url, token, account, SIMPLE_QUERY).await?;
    let per_client = n.div_ceil(CLIENTS).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let url = url.clone();
        let token = token.to_string();
        let account = account.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..per_client {
                post(&client, &url, &token, &account, SIMPLE_QUERY).await?;
            }
            Ok::<usize, BenchError>(per_client)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| BenchError::Unexpected(e.to_string()))??;
    }
    report.elapsed = start.elapsed();
    report.queries = total;
    Ok(report)
}

/// Build an emulator from `schema_path` (`None`: the embedded SDL) timing start-up, seed 100
/// requests, serve it on 127.0.0.1 with rate limits disabled and run [`run`] against it.
pub async fn run_local(schema_path: Option<PathBuf>, n: usize) -> Result<BenchReport, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let config = EmulatorConfig {
        listen: addr,
        schema_path,
        rate_limits: RateLimits::disabled(),
        ..Default::default()
    };
    let token = config.token.clone();
    let account = config.account.clone();
    let t = Instant::now();
    let emu = crate::build(config)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let startup = t.elapsed();
    let t = Instant::now();
    let resp = emu
        .gql
        .schema
        .execute(async_graphql::Request::new(format!(
            "query InProcess {INTROSPECTION_QUERY}"
        )))
        .await;
    let execute = t.elapsed();
    let t = Instant::now();
    let projected =
        async_graphql_parser::parse_query(format!("query Projected {INTROSPECTION_QUERY}"))
            .ok()
            .and_then(|doc| emu.gql.universe()?.answer(&doc, None, &Value::Null));
    let project = t.elapsed();
    if projected.is_none() {
        return Err(BenchError::Unexpected(
            "introspection projection failed".into(),
        ));
    }
    let t = Instant::now();
    let size = serde_json::to_vec(&resp).map(|b| b.len()).unwrap_or(0);
    let serialize = t.elapsed();
    if size == 0 || !resp.errors.is_empty() {
        return Err(BenchError::Unexpected(
            "in-process introspection failed".into(),
        ));
    }
    let requests: Vec<Value> = (0..100)
        .map(|i| json!({ "subject": format!("Benchmark request {i}"), "status": "assigned" }))
        .collect();
    emu.seed_from_value(&account, &json!({ "records": { "Request": requests } }))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(emu, listener, async {
        let _ = rx.await;
    }));
    let result = run(&format!("http://{addr}"), &token, &account, n).await;
    let _ = tx.send(());
    let _ = server.await;
    let mut report = result?;
    report.startup = Some(startup);
    report.introspection_execute = Some(execute);
    report.introspection_serialize = Some(serialize);
    report.introspection_project = Some(project);
    Ok(report)
}
