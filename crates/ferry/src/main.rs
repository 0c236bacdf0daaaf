//! `ferry`: the command-line entry point.

mod allocator;
mod api_client;
mod bench;
mod bench_console;
mod bench_schema;
mod bench_xurrent;
mod connections;
mod datalock;
mod emulator_cli;
mod jobs;
mod output;
mod release;
mod run;
mod schedules;
mod serve;
mod test_cmd;
mod xurrent_app;
mod xurrent_cli;
mod xurrent_webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ferry: a self-hosted integration engine for Xurrent.
#[derive(Parser)]
#[command(name = "ferry", version, about)]
struct Cli {
    /// Log format of `serve` and `emulator` (on stderr): `text` or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of the enclosing spans (request id, job id).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve trigger endpoints, the management API and the job workers.
    Serve(serve::ServeArgs),
    /// Apply the store's schema migrations (PostgreSQL: before starting new nodes; SQLite
    /// migrates when a server opens it).
    Migrate {
        /// The store: a PostgreSQL URL, or `sqlite` (`<data>/ferry.db`).
        #[arg(long, env = "FERRY_STORE_URL", default_value = "sqlite")]
        store: serve::StoreUrl,
        /// Data directory (SQLite).
        #[arg(long, default_value = "./ferry-data")]
        data: PathBuf,
    },
    /// Run one event through a runbook in-process, against a temporary store.
    Run(run::RunArgs),
    /// Run a solution's test cases (`tests/<runbook>/*.yaml`) offline, with mocked network steps.
    Test(test_cmd::TestArgs),
    /// Check solutions statically; prints `file:line: message` per problem.
    Validate {
        /// Solution directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Data directory of a server: steps whose actions compute their schemas from their
        /// connection are checked against the schemas cached there (read-only, offline).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Inspect jobs on a running server.
    Jobs(jobs::JobsArgs),
    /// Work with the connections of a running server (`test`).
    Connections(connections::ConnectionsArgs),
    /// Show the scheduled runbooks of a running server (`list`: next run times).
    Schedules(schedules::SchedulesArgs),
    /// Reload the solution folders of a running server (as SIGHUP does); exit code 1 when one
    /// has problems (it keeps its old version).
    Reload(release::ReloadArgs),
    /// Make a solution of a running server live (it leaves draft mode).
    Promote(release::ModeArgs),
    /// Put a solution of a running server in draft mode (only test events, no schedules).
    Demote(release::ModeArgs),
    /// List the built-in connectors, triggers and actions.
    Connectors,
    /// Start the local Xurrent emulator.
    Emulator(EmulatorArgs),
    /// Benchmarks (drive a real `ferry serve` over loopback).
    Bench(bench::BenchArgs),
    /// Tools for a Xurrent account (e.g. print its GraphQL schema).
    Xurrent {
        #[command(subcommand)]
        command: xurrent_cli::XurrentCommand,
    },
}

/// Arguments of `ferry emulator`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct EmulatorArgs {
    /// Control a running emulator instead of starting one.
    #[command(subcommand)]
    control: Option<emulator_cli::EmulatorCommand>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4780")]
    listen: SocketAddr,
    /// Seed file (JSON or YAML) with records to load at start.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Id of the administrator account.
    #[arg(long, default_value = "wdc")]
    account: String,
    /// Personal access token of the administrator.
    #[arg(long, env = "FERRY_EMULATOR_TOKEN", default_value = ferry_emulator::DEFAULT_TOKEN)]
    token: String,
    /// GraphQL SDL file to serve instead of the embedded Xurrent schema.
    #[arg(long, env = "FERRY_XURRENT_SCHEMA")]
    schema: Option<PathBuf>,
    /// Disable rate limiting.
    #[arg(long)]
    no_rate_limits: bool,
}

/// Every connector the binary knows: the built-in ones and the connector crates (Xurrent).
pub fn registry() -> ferry_engine::Registry {
    let mut r = ferry_engine::Registry::builtin();
    r.merge(ferry_xurrent::registry());
    r.merge(ferry_xurrent_app::registry());
    r
}

/// Logs go to stderr, filtered by `FERRY_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                init_tracing(log_format);
                serve::serve(args).await
            }
            Command::Migrate { store, data } => migrate(store, data).await,
            Command::Run(args) => run::run(args).await,
            Command::Test(args) => test_cmd::test(args).await,
            Command::Validate { dirs, data } => validate(dirs, data).await,
            Command::Jobs(args) => jobs::jobs(args).await,
            Command::Connections(args) => connections::connections(args).await,
            Command::Schedules(args) => schedules::schedules(args).await,
            Command::Reload(args) => release::reload(args).await,
            Command::Promote(args) => release::set_mode(args, true).await,
            Command::Demote(args) => release::set_mode(args, false).await,
            Command::Connectors => connectors(),
            Command::Emulator(args) => {
                init_tracing(log_format);
                emulator(args).await
            }
            Command::Bench(args) => {
                // Quiet unless asked: the figures are the output (`FERRY_LOG=ferry_store=debug`
                // shows, for example, the store's WAL restarts).
                if std::env::var_os("FERRY_LOG").is_some() {
                    init_tracing(log_format);
                }
                bench::bench(args).await
            }
            Command::Xurrent { command } => xurrent_cli::xurrent(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn migrate(store: serve::StoreUrl, data: PathBuf) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    match store {
        serve::StoreUrl::Postgres(url) => {
            let before = ferry_store::PgStore::migrate(&url)
                .await
                .with_context(|| format!("migrating {}", serve::redact_url(&url)))?;
            let applied = before.pending;
            println!(
                "{}: {applied} migration(s) applied; the schema is at migration {}",
                serve::redact_url(&url),
                before.known
            );
        }
        serve::StoreUrl::Sqlite => {
            let db = data.join("ferry.db");
            let store = ferry_store::SqliteStore::open(&db, ferry_store::StoreOptions::default())
                .await
                .with_context(|| format!("migrating {}", db.display()))?;
            store.close().await;
            println!("{}: migrated", db.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn validate(dirs: Vec<PathBuf>, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    let exprs = ferry_core::mapping::Expressions::new();
    // With `--data`, the server's master key (to open the schema cache) and its database.
    let (secrets, store) = match &data {
        None => (
            ferry_core::secrets::Secrets::from_master_key(&[0u8; 32]),
            None,
        ),
        Some(data) => {
            use anyhow::Context as _;
            let db = data.join("ferry.db");
            anyhow::ensure!(
                db.exists(),
                "--data {}: no Ferry database there (ferry.db)",
                data.display()
            );
            let secrets = ferry_core::secrets::Secrets::load_or_create(data)
                .context("loading the master key")?;
            let store = ferry_store::SqliteStore::open(&db, ferry_store::StoreOptions::default())
                .await
                .context("opening the database")?;
            (secrets, Some(store))
        }
    };
    let mut problems = 0usize;
    for dir in &dirs {
        // Report everything at once: the loader's problems, then those the registry-aware
        // checks find in the parts that did load (skipping lines the loader already flagged).
        let (solution, mut diags) = ferry_core::loader::load_solution_partial(dir);
        let mut summary = None;
        if let Some(solution) = &solution {
            // With `--data`, checks that depend on the connection's cached data (its Xurrent
            // schema) run against that cache below, else against what ships with Ferry.
            let options = ferry_engine::CompileOptions {
                defer_cached_checks: store.is_some(),
            };
            match ferry_engine::compile_solution_with(
                solution, &registry, &exprs, &secrets, options,
            ) {
                Ok(c) if diags.is_empty() => {
                    if let Some(store) = &store {
                        for d in ferry_engine::schemas::check_cached(store, &secrets, &c).await {
                            match d {
                                Ok(warning) => println!("{warning}"),
                                Err(problem) => diags.push(problem),
                            }
                        }
                    }
                    summary = Some((
                        c.name.clone(),
                        c.runbooks.len(),
                        c.runbooks.values().map(|r| r.steps.len()).sum::<usize>(),
                    ));
                }
                Ok(_) => {}
                Err(more) => {
                    let flagged: Vec<_> = diags.iter().map(|d| d.span.clone()).collect();
                    diags.extend(more.into_iter().filter(|d| !flagged.contains(&d.span)));
                }
            }
        }
        if let Some(solution) = &solution {
            // `app_offering`: the connection's connector and the offering folder.
            diags.extend(crate::xurrent_app::check_setting(solution));
        }
        diags.sort_by(|a, b| a.span.cmp(&b.span));
        diags.dedup();
        match summary {
            Some((name, runbooks, steps)) if diags.is_empty() => {
                println!(
                    "{}: ok (solution '{name}', {runbooks} runbooks, {steps} steps)",
                    dir.display()
                );
            }
            _ => {
                problems += diags.len();
                for d in diags {
                    println!("{d}");
                }
            }
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn connectors() -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    println!("Connectors:");
    for (name, description) in registry.connectors() {
        println!("  {name:<20} {description}");
        let Some(spec) = registry.get_connector(name).map(|c| c.spec().clone()) else {
            continue;
        };
        for (direction, fields) in [("inbound", &spec.inbound), ("outbound", &spec.outbound)] {
            if let Some(fields) = fields {
                let keys: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        if f.required {
                            format!("{} (required)", f.id)
                        } else {
                            f.id.clone()
                        }
                    })
                    .collect();
                println!(
                    "  {:<20}   {direction} connection config: {}",
                    "",
                    keys.join(", ")
                );
            }
        }
    }
    println!("Triggers:");
    for name in registry.trigger_names() {
        if let Some(t) = registry.get_trigger(name) {
            println!("  {name:<28} {}", t.spec().description);
        }
    }
    println!("Actions:");
    for name in registry.action_names() {
        if let Some(a) = registry.get_action(name) {
            println!("  {name:<28} {}", a.spec().description);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn emulator(args: EmulatorArgs) -> anyhow::Result<ExitCode> {
    if let Some(cmd) = args.control {
        return emulator_cli::control(cmd).await;
    }
    // Bind first so that `--listen 127.0.0.1:0` reports (and signs with) the real port.
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let config = ferry_emulator::EmulatorConfig {
        listen: listener.local_addr()?,
        account: args.account.clone(),
        token: args.token.clone(),
        seed: args.seed,
        schema_path: args.schema,
        rate_limits: if args.no_rate_limits {
            ferry_emulator::RateLimits::disabled()
        } else {
            ferry_emulator::RateLimits::xurrent_defaults()
        },
        public_url: None,
    };
    let emu = ferry_emulator::build(config).await?;
    let base = emu.base_url.clone();
    output::banner(&[
        format!("Xurrent emulator listening on {base}"),
        format!("  GraphQL:     {base}/graphql"),
        format!("  OAuth token: {base}/token"),
        format!("  REST:        {base}/v1"),
        format!("  Account:     {}", args.account),
        format!("  Token:       {}", args.token),
    ]);
    ferry_emulator::serve(emu, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
