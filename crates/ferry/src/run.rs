//! `ferry run`: one event through one runbook, in-process, against a temporary store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use ferry_engine::executor::{run_job, RunEnd};
use ferry_engine::{Engine, EngineOptions, InboundRequest, IngestOutcome};
use ferry_store::{JobStatus, Store};

/// Arguments of `ferry run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Solution directory.
    pub solution: PathBuf,
    /// Runbook name.
    #[arg(long)]
    pub runbook: String,
    /// File with the request body (JSON).
    #[arg(long)]
    pub event: PathBuf,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the event and print the job; exit 0 only if the job finished.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let body =
        std::fs::read(&args.event).with_context(|| format!("reading {}", args.event.display()))?;
    let tmp = tempfile::tempdir().context("creating a temporary store")?;
    let (secrets, store) = crate::serve::open_data(tmp.path(), false).await?;
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        secrets,
        crate::registry(),
        EngineOptions::default(),
    );
    let solution = match engine.load_dir_cached(&args.solution).await {
        Ok(s) => s,
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let mut request = InboundRequest {
        method: "POST".into(),
        body: body.into(),
        ..Default::default()
    }
    .with_header("content-type", "application/json");
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header '{h}' must look like 'Name: value'"))?;
        request = request.with_header(k.trim(), v.trim());
    }
    let job_id = match engine
        .ingest_trusted(&solution.name, &args.runbook, request)
        .await
    {
        IngestOutcome::Accepted { job_id, .. } => job_id,
        IngestOutcome::Responded { response } => {
            eprintln!(
                "the trigger answered HTTP {} without creating a job: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
            return Ok(ExitCode::from(1));
        }
        IngestOutcome::Rejected { status, message } => {
            eprintln!("event rejected ({status}): {message}");
            return Ok(ExitCode::from(1));
        }
        IngestOutcome::Discarded { message } => {
            eprintln!("event discarded: {message}");
            return Ok(ExitCode::from(1));
        }
        IngestOutcome::Duplicate { job_id } => {
            eprintln!("duplicate event (job {job_id})");
            return Ok(ExitCode::from(1));
        }
    };
    // Drive the job to a terminal state, sleeping through reschedules.
    loop {
        let job = store.get_job(job_id).await?.context("job vanished")?;
        if job.status.is_terminal() {
            break;
        }
        if let Some(job) = store
            .claim_job("run", Utc::now(), Duration::from_secs(300))
            .await?
        {
            if run_job(&engine.exec_env(), job).await == RunEnd::Interrupted {
                anyhow::bail!("job was interrupted");
            }
        } else {
            let wait = match store.next_wakeup().await? {
                Some(at) => (at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_millis(10)),
                None => Duration::from_millis(10),
            };
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
    }
    let job = store.get_job(job_id).await?.context("job vanished")?;
    let steps = store.job_steps(job_id).await?;
    let detail = ferry_server::job_detail(&job, &steps);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        crate::output::print_job(&detail);
    }
    store.close().await;
    Ok(if job.status == JobStatus::Finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
