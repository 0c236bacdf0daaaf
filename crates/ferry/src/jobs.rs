//! `ferry jobs list|show` against a running server.

use std::process::ExitCode;

use crate::api_client::{parse, Refused, ServerArgs};

/// Arguments of `ferry jobs`.
#[derive(clap::Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    #[command(flatten)]
    server: ServerArgs,
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
    let api = args.server.client()?;
    let base = api.base();
    let client = api.http();
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
    let bytes = match api.send(request).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(1));
        }
    };
    match &args.command {
        JobsCommand::List { .. } => {
            let page: ferry_api::JobList = parse(&bytes)?;
            if args.server.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                crate::output::print_jobs(&page);
            }
        }
        JobsCommand::Show { .. } => {
            let job: ferry_api::JobDetail = parse(&bytes)?;
            if args.server.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                crate::output::print_job(&job);
            }
        }
        JobsCommand::Rerun { .. } => {
            let rerun: ferry_api::Rerun = parse(&bytes)?;
            if args.server.json {
                println!("{}", serde_json::to_string_pretty(&rerun)?);
            } else {
                println!("job {} queued again", rerun.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
