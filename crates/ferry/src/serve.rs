//! `ferry serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_core::secrets::Secrets;
use ferry_engine::retention::RetentionOptions;
use ferry_engine::{Engine, EngineOptions};
use ferry_store::{PgStore, PgStoreOptions, SqliteStore, Store, StoreOptions};

use crate::datalock::DataDirLock;

/// Arguments of `ferry serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Data directory (database, master key, API token).
    #[arg(long, default_value = "./ferry-data")]
    pub data: PathBuf,
    /// Number of job workers (0: accept events but run no jobs).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Base URL shown for trigger endpoints (default: http://<listen address>).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Largest inbound body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Commit with synchronous=FULL (survives power loss, slower; SQLite only).
    #[arg(long)]
    pub sync_full: bool,
    /// The store: a PostgreSQL URL (`postgres://user@host/db`) shared by several nodes, or
    /// `sqlite` (the default: `<data>/ferry.db`, one node).
    #[arg(long, env = "FERRY_STORE_URL", default_value = "sqlite")]
    pub store: StoreUrl,
    /// How long a claimed job stays with its worker without a renewal (renewed every third of
    /// it while the job runs; a job whose lease expires is taken over by another worker).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub lease: Duration,
    /// Delete finished and failed jobs (and their steps) this long after they ended
    /// (`30d`, `12h`, …; `off` keeps them for ever).
    #[arg(long, default_value = "30d", value_parser = parse_retention)]
    pub retention: Retention,
    /// How often the retention purge runs.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub retention_interval: Duration,
    /// How long a web console session (`/ui`) lasts after logging in.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    pub ui_session_ttl: Duration,
    /// Serve this solution in draft mode the first time it is served on this data directory
    /// (only test events, with `x-ferry-test: 1`; no schedules) until `ferry promote`
    /// (repeatable).
    #[arg(long = "draft", value_name = "SOLUTION")]
    pub draft: Vec<String>,
    /// Solution directories to load (reloaded on SIGHUP and `ferry reload`).
    #[arg(required = true)]
    pub solutions: Vec<PathBuf>,
}

/// A duration such as `30s`, `5m`, `1h 30m`, `30d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration like 30s, 5m, 12h or 30d: {e}"))?;
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

/// The `--retention` setting: keep finished jobs this long, or for ever.
#[derive(Clone, Copy, Debug)]
pub struct Retention(pub Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention, String> {
    match text.trim() {
        "off" | "0" | "never" => Ok(Retention(None)),
        other => parse_duration(other).map(|d| Retention(Some(d))),
    }
}

/// Where `--store` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `<data>/ferry.db`.
    Sqlite,
    /// A PostgreSQL URL.
    Postgres(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<StoreUrl, String> {
        let text = text.trim();
        if text.is_empty() || text == "sqlite" {
            Ok(StoreUrl::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(text.to_string()))
        } else {
            Err("expected `sqlite` or a PostgreSQL URL (postgres://user@host:5432/database)".into())
        }
    }
}

/// The store a server runs on.
#[derive(Clone)]
pub enum OpenStore {
    /// Embedded SQLite.
    Sqlite(Arc<SqliteStore>),
    /// PostgreSQL shared by several nodes.
    Postgres(Arc<PgStore>),
}

impl OpenStore {
    /// Connect (PostgreSQL: migrating unless `migrate` is false) or open `<data>/ferry.db`.
    pub async fn open(url: &StoreUrl, data: &Path, sync_full: bool) -> anyhow::Result<OpenStore> {
        match url {
            StoreUrl::Sqlite => Ok(OpenStore::Sqlite(Arc::new(
                SqliteStore::open(
                    &data.join("ferry.db"),
                    StoreOptions {
                        sync_full,
                        ..StoreOptions::default()
                    },
                )
                .await
                .context("opening the database")?,
            ))),
            StoreUrl::Postgres(url) => Ok(OpenStore::Postgres(Arc::new(
                PgStore::open(url, PgStoreOptions::default())
                    .await
                    .with_context(|| format!("opening the PostgreSQL store {}", redact_url(url)))?,
            ))),
        }
    }

    /// The store as the engine sees it.
    pub fn dyn_store(&self) -> Arc<dyn Store> {
        match self {
            OpenStore::Sqlite(s) => s.clone(),
            OpenStore::Postgres(p) => p.clone(),
        }
    }

    /// Finish pending writes and close the connections.
    pub async fn close(&self) {
        match self {
            OpenStore::Sqlite(s) => s.close().await,
            OpenStore::Postgres(p) => p.close().await,
        }
    }
}

/// A URL with its password replaced by `***` (for messages and logs).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How long a node counts as alive after its last heartbeat (see [`PgStore::join_cluster`]).
const NODE_ALIVE: Duration = Duration::from_secs(15);
/// How often a node on PostgreSQL refreshes its heartbeat.
const NODE_HEARTBEAT: Duration = Duration::from_secs(5);

/// Shared start-up: data dir, secrets and store.
pub async fn open_data(
    data: &Path,
    sync_full: bool,
) -> anyhow::Result<(Arc<Secrets>, Arc<SqliteStore>)> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let secrets = Arc::new(Secrets::load_or_create(data).context("loading the master key")?);
    let store = SqliteStore::open(
        &data.join("ferry.db"),
        StoreOptions {
            sync_full,
            ..StoreOptions::default()
        },
    )
    .await
    .context("opening the database")?;
    Ok((secrets, Arc::new(store)))
}

/// The API token: `FERRY_API_TOKEN`, else `<data>/api.token` (created on first start).
fn api_token(data: &Path) -> anyhow::Result<(String, bool)> {
    if let Ok(t) = std::env::var("FERRY_API_TOKEN") {
        if !t.trim().is_empty() {
            return Ok((t.trim().to_string(), false));
        }
    }
    let path = data.join("api.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok((t.trim().to_string(), false));
        }
    }
    let token = format!("fy_{}", uuid::Uuid::new_v4().simple());
    write_private(&path, &token)?;
    Ok((token, true))
}

/// Write a file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Run the server until Ctrl-C/SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating data directory {}", args.data.display()))?;
    // Before the store is opened: a second server must not recover this one's running jobs.
    let mut lock = DataDirLock::acquire(&args.data)?;
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating data directory {}", args.data.display()))?;
    let secrets = Arc::new(Secrets::load_or_create(&args.data).context("loading the master key")?);
    let fingerprint = secrets.fingerprint();
    let store = OpenStore::open(&args.store, &args.data, args.sync_full).await?;
    // With SQLite this process is the only one on the store (the data directory is locked):
    // every running job was this process's. Several nodes share a PostgreSQL store: a node's
    // jobs are taken over by any node once their leases expire instead.
    if let OpenStore::Sqlite(sqlite) = &store {
        let recovered = sqlite.recover_interrupted().await?;
        if recovered > 0 {
            tracing::info!(recovered, "resuming interrupted jobs");
        }
    }
    let engine = Engine::new(
        store.dyn_store(),
        secrets,
        crate::registry(),
        EngineOptions {
            workers: args.workers,
            lease: args.lease,
            ..EngineOptions::default()
        },
    );
    let schedule_poll = test_clock(&engine);
    let mut failed = false;
    for dir in &args.solutions {
        if let Err(diags) = engine.load_dir_cached(dir).await {
            failed = true;
            for d in diags {
                eprintln!("{d}");
            }
        }
    }
    if failed {
        eprintln!("error: solutions have problems; nothing was started");
        return Ok(ExitCode::from(1));
    }
    if let Err(e) = engine.init_modes(&args.draft).await {
        eprintln!("error: {e}; nothing was started");
        return Ok(ExitCode::from(1));
    }
    // Solutions that keep their Xurrent App Offering as files and ask for it: the account is
    // brought in line before any trigger is provisioned.
    if let Err(e) = crate::xurrent_app::apply_on_serve(&engine).await {
        eprintln!("error: {e:#}; nothing was started");
        return Ok(ExitCode::from(1));
    }
    let (token, generated) = api_token(&args.data)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Nodes sharing a PostgreSQL store must share the master key and the solution versions.
    let mut heartbeat = None;
    let node = format!("{addr}/{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    if let OpenStore::Postgres(pg) = &store {
        let mut hashes = std::collections::BTreeMap::new();
        // The solution versions (content hashes of the folders, docs/releasing.md).
        for sol in engine.solutions() {
            hashes.insert(sol.name.clone(), sol.version.id.clone());
        }
        match pg
            .join_cluster(&node, &fingerprint, &hashes, NODE_ALIVE)
            .await
            .context("registering this node in the database")?
        {
            Ok(()) => {}
            Err(refused) => {
                eprintln!("error: this node is refused: {refused}");
                store.close().await;
                return Ok(ExitCode::from(1));
            }
        }
        let pg = pg.clone();
        let node = node.clone();
        heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(NODE_HEARTBEAT).await;
                if let Err(e) = pg.node_alive(&node).await {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        }));
    }
    lock.record(Some(&addr.to_string()))?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let mut lines = vec![
        format!("Ferry listening on http://{addr}"),
        format!("  web console: {public_url}/ui/"),
    ];
    if generated {
        lines.push(format!(
            "Management API token (saved in {}, shown once): {token}",
            args.data.join("api.token").display()
        ));
    }
    for sol in engine.solutions() {
        let git = sol.version.git.as_ref().map_or(String::new(), |g| {
            let dirty = if g.dirty { ", uncommitted changes" } else { "" };
            format!(", git {}{dirty}", &g.commit[..12])
        });
        lines.push(format!(
            "  solution {}: version {}{git}, {}",
            sol.name,
            sol.version.id,
            engine.mode(&sol.name).as_str()
        ));
        for rb in sol.runbooks.values() {
            // An internal trigger (a schedule) has no inbound endpoint: it is not listed as one.
            if rb.trigger.internal_only() {
                lines.push(format!(
                    "  runbook {}/{}: started by its schedule (ferry schedules list)",
                    sol.name, rb.name
                ));
            } else {
                lines.push(format!(
                    "  trigger {}/{}: POST {public_url}/inbound/{}/{}",
                    sol.name, rb.name, sol.name, rb.name
                ));
            }
        }
    }
    crate::output::banner(&lines);
    let reloader = crate::release::spawn_sighup_reloader(engine.clone());
    let (stop_streams, streams_stopped) = tokio::sync::watch::channel(false);
    let router = ferry_server::router_with(
        engine.clone(),
        ferry_server::ServerOptions {
            api_token: token,
            public_url: public_url.clone(),
            max_body_bytes: args.max_body_bytes,
        },
        ferry_console::routes(ferry_console::ConsoleOptions {
            store: match &args.store {
                StoreUrl::Sqlite => format!("SQLite ({})", args.data.join("ferry.db").display()),
                StoreUrl::Postgres(url) => format!("PostgreSQL ({})", redact_url(url)),
            },
            session_ttl: args.ui_session_ttl,
            shutdown: streams_stopped,
        }),
    );
    let provisioning = engine.start_provisioning(&public_url);
    let workers = (args.workers > 0).then(|| {
        tokio::spawn(ferry_engine::worker::run_workers(
            engine.clone(),
            args.workers,
        ))
    });
    let scheduler = tokio::spawn(ferry_engine::scheduler::run_scheduler(
        engine.clone(),
        schedule_poll,
    ));
    let retention = args.retention.0.map(|keep| {
        tokio::spawn(ferry_engine::retention::run_retention(
            engine.clone(),
            RetentionOptions {
                keep,
                interval: args.retention_interval,
                ..RetentionOptions::default()
            },
        ))
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::shutdown_signal().await;
            // The console's live streams end, so that the shutdown does not wait for them.
            let _ = stop_streams.send(true);
        })
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down: finishing running steps");
    reloader.abort();
    engine.begin_shutdown();
    if let Some(w) = workers {
        let _ = w.await;
    }
    if let Some(r) = retention {
        let _ = r.await;
    }
    let _ = scheduler.await;
    for p in provisioning {
        let _ = p.await;
    }
    engine.deprovision_all(&public_url).await;
    if let Some(h) = heartbeat {
        h.abort();
    }
    if let OpenStore::Postgres(pg) = &store {
        if let Err(e) = pg.leave_cluster(&node).await {
            tracing::warn!(error = %e, "leaving the node list failed");
        }
    }
    store.close().await;
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// Environment variable naming the test clock file of the scheduler (see [`test_clock`]).
pub const TEST_CLOCK_ENV: &str = "FERRY_TEST_CLOCK_FILE";

/// Install the scheduler's test clock when `FERRY_TEST_CLOCK_FILE` names a file holding an
/// RFC 3339 instant — in debug builds only: a release build ignores the variable (with a
/// warning), so production can never run on it by accident. Returns how often the scheduler
/// looks at the clock (100 ms on the test clock, else 1 s).
fn test_clock(engine: &Engine) -> Duration {
    let Some(path) = std::env::var_os(TEST_CLOCK_ENV).filter(|p| !p.is_empty()) else {
        return Duration::from_secs(1);
    };
    if cfg!(debug_assertions) {
        tracing::warn!(
            file = %std::path::Path::new(&path).display(),
            "{TEST_CLOCK_ENV} is set: schedules run on a test clock read from this file"
        );
        engine.set_clock(Arc::new(ferry_engine::scheduler::FileClock::new(
            path.into(),
        )));
        Duration::from_millis(100)
    } else {
        tracing::warn!("{TEST_CLOCK_ENV} is ignored: release builds always use the system clock");
        Duration::from_secs(1)
    }
}
