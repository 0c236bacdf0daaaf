//! `ferry reload`, `ferry promote` and `ferry demote` against a running server
//! (`docs/releasing.md`).

use std::process::ExitCode;

use crate::api_client::{parse, Refused, ServerArgs};

/// Arguments of `ferry reload`.
#[derive(clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of `ferry promote` and `ferry demote`.
#[derive(clap::Args)]
pub struct ModeArgs {
    /// Solution name.
    solution: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// `ferry reload`: exit code 0 when every solution is unchanged or reloaded, 1 when one
/// failed (its problems are printed as `file:line: message`; its old version keeps serving).
pub async fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let request = api.http().post(format!("{}/api/v1/reload", api.base()));
    let bytes = match api.send(request).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(1));
        }
    };
    let report: ferry_api::ReloadReport = parse(&bytes)?;
    let failed = report
        .solutions
        .iter()
        .any(|s| s.status == ferry_api::ReloadStatus::Failed);
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for s in &report.solutions {
            match s.status {
                ferry_api::ReloadStatus::Unchanged => {
                    println!("{}: unchanged ({})", s.solution, s.version)
                }
                ferry_api::ReloadStatus::Reloaded => println!(
                    "{}: reloaded {} -> {}",
                    s.solution,
                    s.previous_version.as_deref().unwrap_or("?"),
                    s.version
                ),
                ferry_api::ReloadStatus::Failed => {
                    println!(
                        "{}: FAILED, version {} keeps serving ({} problem(s)):",
                        s.solution,
                        s.version,
                        s.errors.len()
                    );
                    for e in &s.errors {
                        match (&e.file, e.line) {
                            (Some(f), Some(l)) => eprintln!("{f}:{l}: {}", e.message),
                            (Some(f), None) => eprintln!("{f}: {}", e.message),
                            _ => eprintln!("{}", e.message),
                        }
                    }
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `ferry promote` (`live`) and `ferry demote` (`draft`).
pub async fn set_mode(args: ModeArgs, live: bool) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let action = if live { "promote" } else { "demote" };
    let request = api.http().post(format!(
        "{}/api/v1/solutions/{}/{action}",
        api.base(),
        args.solution
    ));
    let bytes = match api.send(request).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(1));
        }
    };
    let change: ferry_api::ModeChange = parse(&bytes)?;
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&change)?);
    } else if change.previous == change.mode {
        println!("{} was already {}", change.solution, change.mode.as_str());
    } else {
        println!(
            "{}: {} -> {}",
            change.solution,
            change.previous.as_str(),
            change.mode.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reload the solution folders on every SIGHUP (`ferry serve`); the results are logged. The
/// signal handler is installed before this returns, so a SIGHUP never ends the server.
pub fn spawn_sighup_reloader(
    engine: std::sync::Arc<ferry_engine::Engine>,
) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup());
        tokio::spawn(async move {
            let mut hup = match hup {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP; reload with `ferry reload` instead");
                    return;
                }
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the solution folders");
                let results = engine.reload().await;
                let failed = results
                    .iter()
                    .filter(|r| {
                        matches!(
                            r.outcome,
                            ferry_engine::versions::ReloadOutcome::Failed { .. }
                        )
                    })
                    .count();
                tracing::info!(solutions = results.len(), failed, "SIGHUP reload done");
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = engine;
        tokio::spawn(std::future::pending::<()>())
    }
}
