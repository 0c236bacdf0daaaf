//! Human-readable rendering of jobs (the `--json` forms print the API's JSON).

use serde_json::Value;

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
pub fn print_job(job: &Value) {
    let get = |k: &str| {
        job.get(k)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    println!(
        "Job {}  {}/{}  status: {}",
        get("id"),
        get("solution"),
        get("runbook"),
        get("status")
    );
    if let Some(e) = job.get("error").and_then(Value::as_str) {
        println!("  error: {e}");
    }
    if let Some(c) = job.get("context_id").and_then(Value::as_str) {
        println!("  context: {c}");
    }
    println!(
        "  trigger output: {}",
        short(job.get("trigger_output").unwrap_or(&Value::Null))
    );
    for step in job
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str| {
            step.get(k)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        println!(
            "  #{:<3} {:<24} {:<11} {:>8} ms",
            g("seq"),
            g("step_id"),
            g("status"),
            format!(
                "{:.2}",
                step.get("duration_ms")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            )
        );
        println!(
            "       input:   {}",
            short(step.get("input").unwrap_or(&Value::Null))
        );
        println!(
            "       outputs: {}",
            short(step.get("outputs").unwrap_or(&Value::Null))
        );
        for log in step
            .get("logs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "       log [{}] {}",
                log.get("level").and_then(Value::as_str).unwrap_or("info"),
                log.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
        }
        if let Some(e) = step.get("error").and_then(Value::as_str) {
            println!("       error:   {e}");
        }
    }
}

/// Print a page of jobs as a table.
pub fn print_jobs(page: &Value) {
    println!(
        "{:<38} {:<30} {:<9} {:<26} error",
        "ID", "RUNBOOK", "STATUS", "CREATED"
    );
    for job in page
        .get("jobs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        println!(
            "{:<38} {:<30} {:<9} {:<26} {}",
            g("id"),
            format!("{}/{}", g("solution"), g("runbook")),
            g("status"),
            g("created_at"),
            g("error")
        );
    }
    if let Some(next) = page.get("next_before").and_then(Value::as_i64) {
        println!("(more: --before {next})");
    }
}
