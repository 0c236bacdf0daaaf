//! `ferry run`: one event through one runbook, in-process, against a temporary store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use ferry_engine::executor::{run_job, RunEnd, StepMocks};
use ferry_engine::{Engine, EngineOptions, InboundRequest, IngestOutcome};
use ferry_store::{JobId, JobStatus, Store};

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
    let job_id = match start(&engine, &solution.name, &args.runbook, request).await {
        Ok(id) => id,
        Err(message) => {
            eprintln!("{message}");
            return Ok(ExitCode::from(1));
        }
    };
    drive(&engine, &*store, job_id, None, false).await?;
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

/// The event through the trigger pipeline without inbound authentication: the new job's id,
/// or why no job was created.
pub async fn start(
    engine: &Engine,
    solution: &str,
    runbook: &str,
    request: InboundRequest,
) -> Result<JobId, String> {
    match engine.ingest_trusted(solution, runbook, request).await {
        IngestOutcome::Accepted { job_id, .. } => Ok(job_id),
        IngestOutcome::Responded { response } => Err(format!(
            "the trigger answered HTTP {} without creating a job: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )),
        IngestOutcome::Rejected { status, message } => {
            Err(format!("event rejected ({status}): {message}"))
        }
        IngestOutcome::Discarded { message } => Err(format!("event discarded: {message}")),
        IngestOutcome::Duplicate { job_id } => Err(format!("duplicate event (job {job_id})")),
    }
}

/// Drive a job (alone in its store) to a terminal state. Reschedules are slept through, or,
/// with `fast_forward` (`ferry test`), skipped by claiming the job at its due time at once.
pub async fn drive(
    engine: &Engine,
    store: &dyn Store,
    job_id: JobId,
    mocks: Option<&dyn StepMocks>,
    fast_forward: bool,
) -> anyhow::Result<()> {
    loop {
        let job = store.get_job(job_id).await?.context("job vanished")?;
        if job.status.is_terminal() {
            return Ok(());
        }
        let mut now = Utc::now();
        if fast_forward {
            if let Some(at) = store.next_wakeup().await? {
                now = now.max(at);
            }
        }
        if let Some(job) = store
            .claim_job("run", now, Duration::from_secs(300))
            .await?
        {
            let mut env = engine.exec_env();
            env.mocks = mocks;
            if run_job(&env, job).await == RunEnd::Interrupted {
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
}
