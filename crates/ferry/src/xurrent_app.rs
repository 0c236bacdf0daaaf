//! `ferry xurrent app export|apply`: the Xurrent App Offering kept as files in a solution
//! (crate `ferry-xurrent-offering`, `docs/xurrent-app.md`).
//!
//! - `export --solution DIR [--connection NAME] --reference REF [--out DIR]` reads the
//!   unpublished offering `REF` of the connection's account and writes its folder (default:
//!   the solution's `app_offering.dir`, else `<solution>/app_offering`).
//! - `apply --solution DIR [--connection NAME] [--reference REF] [--dir DIR] [--dry-run]`
//!   prints the plan (what differs between the folder and the account), then applies exactly
//!   that unless `--dry-run`.
//!
//! The connection defaults to the solution's `app_offering.connection`. `--json` prints the
//! result as JSON. On `ferry serve`, [`apply_on_serve`] applies the folder of every solution
//! that declares `app_offering.apply_on_serve: true`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry_core::loader::Diagnostic;
use ferry_core::model::Direction;
use ferry_engine::compile::CompiledSolution;
use ferry_engine::Engine;
use serde_json::json;

/// `ferry xurrent app …`.
#[derive(clap::Args)]
pub struct AppArgs {
    #[command(subcommand)]
    command: AppCommand,
}

/// Which solution and connection, and how to print.
#[derive(clap::Args)]
struct Common {
    /// Solution directory holding the connection (and the offering folder).
    #[arg(long)]
    solution: PathBuf,
    /// Connection to the provider account: an outbound `xurrent` connection or an
    /// `xurrent_app` connection (default: the solution's `app_offering.connection`).
    #[arg(long)]
    connection: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum AppCommand {
    /// Write the App Offering (card, description and features with inline images, avatar,
    /// scopes, UI extension, automation rules, service instance) into files.
    Export {
        #[command(flatten)]
        common: Common,
        /// The offering's reference.
        #[arg(long)]
        reference: String,
        /// Folder to write (default: the solution's `app_offering.dir`, else `app_offering`).
        #[arg(long, alias = "dir")]
        out: Option<PathBuf>,
    },
    /// Compare the files with the account, print the plan and apply exactly what differs.
    Apply {
        #[command(flatten)]
        common: Common,
        /// Apply under this reference instead of the files' one.
        #[arg(long)]
        reference: Option<String>,
        /// Folder to read (default: the solution's `app_offering.dir`, else `app_offering`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the link that opens Xurrent's "new OAuth application" form of the provider
    /// account with the name, grant type and scopes the App Connector needs filled in.
    SetupLink {
        #[command(flatten)]
        common: Common,
    },
}

/// Whether a connection can reach the provider account: an outbound `xurrent` connection, or
/// an `xurrent_app` connection (the App Connector's, in either direction: its config is the
/// provider's Xurrent credentials).
pub fn provider_connection(connector: &str, direction: Direction) -> bool {
    (connector == ferry_xurrent::CONNECTOR && direction == Direction::Outbound)
        || connector == ferry_xurrent_app::CONNECTOR
}

/// What `ferry validate` and `ferry serve` check of a solution's `app_offering` beyond the
/// loader: the connection reaches a provider account ([`provider_connection`]) and the folder
/// reads (when it exists, or always with `apply_on_serve`).
pub fn check_setting(solution: &ferry_core::model::Solution) -> Vec<Diagnostic> {
    let Some(setting) = &solution.app_offering else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let at = |message: String| Diagnostic {
        span: setting.span.clone(),
        message,
    };
    if let Some(c) = solution.connections.get(&setting.connection) {
        if !provider_connection(&c.connector, c.direction) {
            out.push(at(format!(
                "app_offering.connection '{}' must be an outbound {} connection or an {} connection (it is {} {})",
                setting.connection,
                ferry_xurrent::CONNECTOR,
                ferry_xurrent_app::CONNECTOR,
                c.direction.as_str(),
                c.connector
            )));
        }
    }
    if setting.dir.exists() || setting.apply_on_serve {
        if let Err(e) = ferry_xurrent_offering::files::read_dir(&setting.dir) {
            out.push(at(format!("app_offering: {e}")));
        }
    }
    out
}

/// The offering folder: `given`, else the setting's, else `<solution>/app_offering`.
fn folder(solution: &Path, compiled: Option<&CompiledSolution>, given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        compiled
            .and_then(|s| s.app_offering.as_ref())
            .map(|a| a.dir.clone())
            .unwrap_or_else(|| solution.join(ferry_xurrent_offering::DEFAULT_DIR))
    })
}

fn connection_name(common: &Common, s: &CompiledSolution) -> anyhow::Result<String> {
    match (&common.connection, &s.app_offering) {
        (Some(c), _) => Ok(c.clone()),
        (None, Some(a)) => Ok(a.connection.clone()),
        (None, None) => bail!(
            "--connection NAME is required (an outbound xurrent connection of the solution), or declare app_offering.connection in solution.yaml"
        ),
    }
}

/// Run `ferry xurrent app …`.
pub async fn app(args: AppArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AppCommand::SetupLink { common } => {
            let mut solution_name = None;
            let loaded = crate::xurrent_webhooks::load_connection(&common.solution, true, |s| {
                solution_name = Some(s.name.clone());
                connection_name(&common, s)
            })
            .await?;
            let settings =
                ferry_xurrent_app::connection::AppSettings::from_config(&loaded.connection.config);
            let Some(href) =
                ferry_xurrent_app::setup::setup_link(&settings, solution_name.as_deref())
            else {
                bail!(
                    "connection '{}' names no provider account (credentials.account_id)",
                    loaded.connection.name
                );
            };
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "href": href,
                        "hint": ferry_xurrent_app::setup::HINT,
                        "scopes": ferry_xurrent_app::setup::PROVIDER_SCOPES,
                    }))?
                );
            } else {
                println!("Create the OAuth application in Xurrent:\n  {href}\n");
                println!("{}\nScopes:", ferry_xurrent_app::setup::HINT);
                for line in ferry_xurrent_app::setup::scope_lines() {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Export {
            common,
            reference,
            out,
        } => {
            let mut setting = None;
            let loaded = crate::xurrent_webhooks::load_connection(&common.solution, true, |s| {
                setting = Some(folder(&common.solution, Some(s), out.clone()));
                connection_name(&common, s)
            })
            .await?;
            let dir = setting.unwrap_or_else(|| folder(&common.solution, None, out));
            let account =
                ferry_xurrent_offering::Account::new(&loaded.engine.services, &loaded.connection)?;
            let exported = account.export(&reference, &dir).await.with_context(|| {
                format!(
                    "exporting App Offering '{reference}' from account {}",
                    account.account_id()
                )
            })?;
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "account": account.account_id(),
                        "reference": exported.reference,
                        "name": exported.name,
                        "dir": exported.dir,
                        "files": exported.files,
                    }))?
                );
            } else {
                println!(
                    "Exported App Offering '{}' ({}) from account {} to {}:",
                    exported.name,
                    exported.reference,
                    account.account_id(),
                    dir.display()
                );
                for f in &exported.files {
                    println!("  {f}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Apply {
            common,
            reference,
            dir,
            dry_run,
        } => {
            let mut setting = None;
            let loaded = crate::xurrent_webhooks::load_connection(&common.solution, true, |s| {
                setting = Some(folder(&common.solution, Some(s), dir.clone()));
                connection_name(&common, s)
            })
            .await?;
            let dir = setting.unwrap_or_else(|| folder(&common.solution, None, dir));
            let account =
                ferry_xurrent_offering::Account::new(&loaded.engine.services, &loaded.connection)?;
            let account_id = account.account_id().to_string();
            let (plan, applied) = ferry_xurrent_offering::sync(
                &loaded.engine.services,
                &loaded.connection,
                &dir,
                reference.as_deref(),
                dry_run,
            )
            .await
            .with_context(|| format!("applying {} to account {account_id}", dir.display()))?;
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "account": account_id,
                        "reference": plan.reference,
                        "dry_run": dry_run,
                        "changes": plan.changes,
                        "applied": applied.as_ref().map(|a| a.changes.len()).unwrap_or(0),
                        "offering_id": applied.as_ref().and_then(|a| a.offering_id.clone()),
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "Plan for App Offering '{}' in account {account_id} (from {}):",
                plan.reference,
                dir.display()
            );
            for line in plan.lines() {
                println!("  {line}");
            }
            if plan.changes.is_empty() {
                println!("No changes: the account matches the files.");
            } else if dry_run {
                println!(
                    "{} change(s) planned; dry run, nothing was changed.",
                    plan.changes.len()
                );
            } else if let Some(a) = &applied {
                println!("Applied {} change(s).", a.changes.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ferry serve`: apply the offering folder of every solution with
/// `app_offering.apply_on_serve: true`, one after the other, before triggers are provisioned.
/// The first failure stops the start with a message naming the solution, folder and cause.
pub async fn apply_on_serve(engine: &Engine) -> anyhow::Result<()> {
    for solution in engine.solutions() {
        let Some(setting) = solution.app_offering.as_ref().filter(|a| a.apply_on_serve) else {
            continue;
        };
        let context = || {
            format!(
                "solution '{}': applying the App Offering files in {} over connection '{}' ({})",
                solution.name,
                setting.dir.display(),
                setting.connection,
                setting.span
            )
        };
        let direction = solution
            .directions
            .get(&setting.connection)
            .copied()
            .unwrap_or(Direction::Inbound);
        let Some(connection) = solution
            .connections
            .get(&setting.connection)
            .filter(|c| provider_connection(&c.connector, direction))
        else {
            bail!(
                "{}: not an outbound xurrent connection or an xurrent_app connection",
                context()
            );
        };
        let (plan, applied) =
            ferry_xurrent_offering::sync(&engine.services, connection, &setting.dir, None, false)
                .await
                .with_context(context)?;
        if plan.changes.is_empty() {
            tracing::info!(solution = %solution.name, reference = %plan.reference, "app offering: the account matches the files");
        } else {
            for line in plan.lines() {
                tracing::info!(solution = %solution.name, reference = %plan.reference, "app offering: {line}");
            }
            tracing::info!(
                solution = %solution.name,
                reference = %plan.reference,
                applied = applied.map(|a| a.changes.len()).unwrap_or(0),
                "app offering: applied"
            );
        }
    }
    Ok(())
}
