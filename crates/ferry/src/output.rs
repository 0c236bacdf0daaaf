//! Human-readable rendering of jobs (the `--json` forms print the API's JSON).

use std::io::Write as _;

use ferry_api::{JobDetail, JobList};
use serde_json::Value;

/// Print the start-up lines of a long-running command (`serve`, `emulator`).
///
/// Unlike `println!`, a closed or broken stdout (for example `ferry emulator | head -1`) does
/// not panic: a server must keep serving when nobody reads its banner. The failure is
/// logged once and the remaining lines are skipped.
pub fn banner(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            tracing::warn!(error = %e, "stdout is closed; start-up lines not printed");
            return;
        }
    }
}

fn short(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// Print one job (as returned by `GET /api/v1/jobs/{id}`) with its steps.
pub fn print_job(detail: &JobDetail) {
    let job = &detail.job;
    println!(
        "Job {}  {}/{}  status: {}",
        job.id, job.solution, job.runbook, job.status
    );
    if let Some(e) = &job.error {
        println!("  error: {e}");
    }
    if let Some(c) = &job.context_id {
        println!("  context: {c}");
    }
    if let Some(v) = &job.solution_version {
        let git = detail.version.as_ref().and_then(|d| {
            d.git_commit.as_ref().map(|c| {
                let dirty = if d.git_dirty == Some(true) {
                    ", uncommitted changes"
                } else {
                    ""
                };
                format!(" (git {}{dirty})", &c[..c.len().min(12)])
            })
        });
        println!("  solution version: {v}{}", git.unwrap_or_default());
    }
    if job.test {
        println!("  test job (the event carried x-ferry-test)");
    }
    println!("  trigger output: {}", short(&job.trigger_output));
    for step in &detail.steps {
        println!(
            "  #{:<3} {:<24} {:<11} {:>8} ms",
            step.seq,
            step.step_id,
            step.status.as_str(),
            format!("{:.2}", step.duration_ms)
        );
        println!("       input:   {}", short(&step.input));
        println!("       outputs: {}", short(&step.outputs));
        for log in &step.logs {
            println!("       log [{}] {}", log.level, log.message);
        }
        if let Some(e) = &step.error {
            println!("       error:   {e}");
        }
    }
}

/// Print a page of jobs as a table.
pub fn print_jobs(page: &JobList) {
    println!(
        "{:<38} {:<30} {:<9} {:<26} {:<21} error",
        "ID", "RUNBOOK", "STATUS", "CREATED", "VERSION"
    );
    for job in &page.jobs {
        let version = format!(
            "{}{}",
            job.solution_version.as_deref().unwrap_or("-"),
            if job.test { " test" } else { "" }
        );
        println!(
            "{:<38} {:<30} {:<9} {:<26} {:<21} {}",
            job.id,
            format!("{}/{}", job.solution, job.runbook),
            job.status.as_str(),
            job.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            version,
            job.error.as_deref().unwrap_or("")
        );
    }
    if let Some(next) = page.next_before {
        println!("(more: --before {next})");
    }
}
