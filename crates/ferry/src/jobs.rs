//! `ferry jobs list|show` against a running server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `ferry jobs`.
#[derive(clap::Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    /// Server base URL.
    #[arg(
        long,
        global = true,
        env = "FERRY_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    server: String,
    /// API token (default: FERRY_API_TOKEN, else `<data>/api.token`).
    #[arg(long, global = true, env = "FERRY_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data directory holding `api.token`.
    #[arg(long, global = true, default_value = "./ferry-data")]
    data: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Filter by solution.
        #[arg(long)]
        solution: Option<String>,
        /// Filter by runbook.
        #[arg(long)]
        runbook: Option<String>,
        /// Filter by status (queued, running, waiting, finished, failed).
        #[arg(long)]
        status: Option<String>,
        /// Page size (1..500).
        #[arg(long)]
        limit: Option<u32>,
        /// Paging cursor from the previous page.
        #[arg(long)]
        before: Option<i64>,
    },
    /// Show one job with its steps.
    Show {
        /// Job id.
        id: String,
    },
    /// Re-run a failed job.
    Rerun {
        /// Job id.
        id: String,
    },
}

/// Run the sub-command.
pub async fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let token = match args.token.clone().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => std::fs::read_to_string(args.data.join("api.token"))
            .map(|t| t.trim().to_string())
            .context("no API token: pass --token, set FERRY_API_TOKEN, or point --data at the server's data directory")?,
    };
    let base = args.server.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let request = match &args.command {
        JobsCommand::List {
            solution,
            runbook,
            status,
            limit,
            before,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(s) = solution {
                q.push(("solution", s.clone()));
            }
            if let Some(s) = runbook {
                q.push(("runbook", s.clone()));
            }
            if let Some(s) = status {
                q.push(("status", s.clone()));
            }
            if let Some(s) = limit {
                q.push(("limit", s.to_string()));
            }
            if let Some(s) = before {
                q.push(("before", s.to_string()));
            }
            client.get(format!("{base}/api/v1/jobs")).query(&q)
        }
        JobsCommand::Show { id } => client.get(format!("{base}/api/v1/jobs/{id}")),
        JobsCommand::Rerun { id } => client.post(format!("{base}/api/v1/jobs/{id}/rerun")),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {base}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ferry_api::ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        eprintln!("error ({status}): {message}");
        return Ok(ExitCode::from(1));
    }
    match &args.command {
        JobsCommand::List { .. } => {
            let page: ferry_api::JobList = parse(&bytes)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                crate::output::print_jobs(&page);
            }
        }
        JobsCommand::Show { .. } => {
            let job: ferry_api::JobDetail = parse(&bytes)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                crate::output::print_job(&job);
            }
        }
        JobsCommand::Rerun { .. } => {
            let rerun: ferry_api::Rerun = parse(&bytes)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rerun)?);
            } else {
                println!("job {} queued again", rerun.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Decode an answer of the management API into its shared type.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "the server's answer is not what this version of ferry expects: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}
