//! `ferry test`: run a solution's test cases (`tests/<runbook>/*.yaml`, `docs/testing.md`)
//! offline and concurrently (`--jobs`), each in its own temporary store, with the real trigger parse and
//! executor; steps that would reach the network run from the case's mocks
//! ([`ferry_engine::executor::StepMocks`]). `--record` runs the cases for real instead and
//! writes what the network steps returned into the case files as mocks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_core::secrets::redact_value;
use ferry_engine::compile::CompiledStep;
use ferry_engine::executor::{Mocked, StepMocks};
use ferry_engine::{Engine, EngineOptions, InboundRequest, Output, Signal};
use ferry_store::{NewJob, Store};
use ferry_testcase::case::{self, MockResult, StepInfo};
use ferry_testcase::junit::{self, CaseReport, Outcome};
use ferry_testcase::{Event, Expect, Failure, TestCase};
use futures::StreamExt;
use serde_json::{json, Map, Value};

/// Longest time one case may run.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `ferry test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Solution directory (its cases are `tests/<runbook>/*.yaml`).
    pub solution: PathBuf,
    /// Only the cases of this runbook.
    #[arg(long)]
    pub runbook: Option<String>,
    /// Only the cases whose name contains this text.
    #[arg(long)]
    pub case: Option<String>,
    /// Write the results as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Run the cases against the real (or emulated) services, without mocks, and write the
    /// outputs of the steps that reach the network into the case files as mocks.
    #[arg(long)]
    pub record: bool,
    /// Cases run at once (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Whether a step runs for real in a test: its action neither reaches the network nor
/// depends on anything outside the job.
fn is_pure(step: &CompiledStep) -> bool {
    let name = step.action.spec().name;
    ["flow.", "debug.", "runbook_variables."]
        .iter()
        .any(|p| name.starts_with(p))
}

/// A temporary store with an engine and the solution loaded.
struct Sandbox {
    engine: Arc<Engine>,
    store: Arc<ferry_store::SqliteStore>,
    solution: String,
    _tmp: tempfile::TempDir,
}

async fn sandbox(dir: &Path) -> anyhow::Result<Result<Sandbox, Vec<String>>> {
    let tmp = tempfile::tempdir().context("creating a temporary store")?;
    let (secrets, store) = crate::serve::open_data(tmp.path(), false).await?;
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        secrets,
        crate::registry(),
        EngineOptions::default(),
    );
    match engine.load_dir_cached(dir).await {
        Ok(sol) => Ok(Ok(Sandbox {
            engine,
            store,
            solution: sol.name.clone(),
            _tmp: tmp,
        })),
        Err(diags) => Ok(Err(diags.iter().map(|d| d.to_string()).collect())),
    }
}

/// Run the cases; exit 0 only when all pass.
pub async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let probe = match sandbox(&args.solution).await? {
        Ok(s) => s,
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let files = case::discover(&args.solution, args.runbook.as_deref())
        .with_context(|| format!("reading {}", args.solution.join("tests").display()))?;
    // Load every case against its runbook's steps.
    let mut cases = Vec::new();
    let mut reports = Vec::new();
    for (runbook, file) in files {
        let Some((_, rb)) = probe.engine.runbook(&probe.solution, &runbook) else {
            reports.push(CaseReport {
                suite: runbook.clone(),
                name: file_stem(&file),
                file: file.display().to_string(),
                seconds: 0.0,
                outcome: Outcome::Error(format!(
                    "{}: solution '{}' has no runbook '{runbook}' (the folder under tests/ names the runbook)",
                    file.display(),
                    probe.solution
                )),
            });
            continue;
        };
        let steps: BTreeMap<String, StepInfo> = rb
            .steps
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    StepInfo {
                        nested: s.action.spec().nested,
                    },
                )
            })
            .collect();
        match case::load(&file, &runbook, &steps) {
            Ok(c) => {
                if args.case.as_deref().is_none_or(|f| c.name.contains(f)) {
                    cases.push(c);
                }
            }
            Err(diags) => reports.push(CaseReport {
                suite: runbook.clone(),
                name: file_stem(&file),
                file: file.display().to_string(),
                seconds: 0.0,
                outcome: Outcome::Error(
                    diags
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            }),
        }
    }
    probe.store.close().await;
    let total = cases.len() + reports.len();
    println!(
        "\nrunning {total} test case{}{}",
        if total == 1 { "" } else { "s" },
        if args.record { " (recording)" } else { "" }
    );
    for r in &reports {
        print_line(r);
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    // Cases run concurrently in this task (the executor's futures borrow the case's mocks).
    let solution = &args.solution;
    let record = args.record;
    let mut running = futures::stream::iter(cases)
        .map(|c| async move {
            let clock = Instant::now();
            let outcome = match run_case(solution, &c, record).await {
                Ok(failures) if failures.is_empty() => Outcome::Passed,
                Ok(failures) => Outcome::Failed(
                    failures
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join("\n\n"),
                ),
                Err(e) => Outcome::Error(format!("{e:#}")),
            };
            CaseReport {
                suite: c.runbook.clone(),
                name: c.name.clone(),
                file: c.file.display().to_string(),
                seconds: clock.elapsed().as_secs_f64(),
                outcome,
            }
        })
        .buffer_unordered(jobs);
    while let Some(report) = running.next().await {
        print_line(&report);
        reports.push(report);
    }
    drop(running);
    let failed: Vec<&CaseReport> = reports
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .collect();
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for r in &failed {
            let (Outcome::Failed(text) | Outcome::Error(text)) = &r.outcome else {
                continue;
            };
            println!("---- {}/{} ({}) ----\n{text}\n", r.suite, r.name, r.file);
        }
        println!("failures:");
        for r in &failed {
            println!("    {}/{}", r.suite, r.name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        reports.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::render(&reports))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn file_stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn print_line(r: &CaseReport) {
    let status = match r.outcome {
        Outcome::Passed => "ok",
        Outcome::Failed(_) => "FAILED",
        Outcome::Error(_) => "ERROR",
    };
    println!("test {}/{} ... {status}", r.suite, r.name);
}

/// The case's mocks, as the executor sees them.
struct CaseMocks<'a> {
    case: &'a TestCase,
    record: bool,
    /// Invocations of network steps without a mock (each fails its step).
    unmocked: Mutex<Vec<String>>,
    /// Iteration states set by real runs (`--record`), by (step, invocation).
    observed: Mutex<BTreeMap<(String, i64), Value>>,
}

impl StepMocks for CaseMocks<'_> {
    fn mock(&self, step: &CompiledStep, invocation: i64) -> Option<Mocked> {
        if self.record {
            return None;
        }
        let n = usize::try_from(invocation).unwrap_or(0);
        let mock = self
            .case
            .steps
            .get(&step.id)
            .and_then(|s| s.iteration(n))
            .and_then(|it| it.mock.as_ref());
        if let Some(m) = mock {
            let result = match &m.result {
                MockResult::Outputs(outs) => Ok(outs
                    .iter()
                    .map(|(schema, value)| Output::new(schema, value.clone()))
                    .collect()),
                MockResult::Fail(msg) => Err(Signal::Fail(msg.clone())),
                MockResult::Finish(msg) => Err(Signal::Finish(msg.clone())),
                MockResult::Reschedule(after, message) => Err(Signal::Reschedule {
                    after: *after,
                    message: message.clone(),
                }),
            };
            return Some(Mocked {
                result,
                iteration: m.iteration.clone(),
            });
        }
        if is_pure(step) {
            return None;
        }
        let message = format!(
            "step '{}' (action {}) is not mocked for invocation {invocation}: a test never reaches \
             the network; give steps.{}.mock in the case (or run `ferry test --record`)",
            step.id,
            step.action.spec().name,
            step.id
        );
        if let Ok(mut u) = self.unmocked.lock() {
            u.push(message.clone());
        }
        Some(Mocked {
            result: Err(Signal::Fail(message)),
            iteration: None,
        })
    }

    fn observe(&self, step: &CompiledStep, invocation: i64, iteration: Option<&Value>) {
        if let (Some(v), Ok(mut o)) = (iteration, self.observed.lock()) {
            o.insert((step.id.clone(), invocation), v.clone());
        }
    }
}

/// Run one case in its own sandbox; the failed expectations (empty: passed), or why it could
/// not run.
async fn run_case(dir: &Path, case: &TestCase, record: bool) -> anyhow::Result<Vec<Failure>> {
    let sb = match sandbox(dir).await? {
        Ok(s) => s,
        Err(diags) => anyhow::bail!("{}", diags.join("\n")),
    };
    let mocks = CaseMocks {
        case,
        record,
        unmocked: Mutex::new(Vec::new()),
        observed: Mutex::new(BTreeMap::new()),
    };
    let result = tokio::time::timeout(CASE_TIMEOUT, execute(&sb, case, &mocks)).await;
    sb.store.close().await;
    let (job, steps) = match result {
        Err(_) => anyhow::bail!(
            "the case did not finish within {} s",
            CASE_TIMEOUT.as_secs()
        ),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(no_job))) => {
            return Ok(vec![Failure {
                path: "event".into(),
                message: format!("no job was started: {no_job}"),
                diff: None,
            }])
        }
        Ok(Ok(Ok(done))) => done,
    };
    let mut failures: Vec<Failure> = mocks
        .unmocked
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|m| Failure {
            path: String::new(),
            message: m,
            diff: None,
        })
        .collect();
    failures.extend(check(case, &job, &steps));
    if record {
        let observed = mocks.observed.lock().map(|o| o.clone()).unwrap_or_default();
        let rb = sb
            .engine
            .runbook(&sb.solution, &case.runbook)
            .map(|(_, rb)| rb)
            .context("the runbook vanished")?;
        let network: Vec<&str> = rb
            .steps
            .values()
            .filter(|s| !is_pure(s))
            .map(|s| s.id.as_str())
            .collect();
        write_recording(&case.file, &network, &steps, &observed)?;
    }
    Ok(failures)
}

/// What a run left: the job (redacted API view as JSON, plus its variables) and its steps.
type Ran = (Value, Vec<ferry_api::Step>);

async fn execute(
    sb: &Sandbox,
    case: &TestCase,
    mocks: &CaseMocks<'_>,
) -> anyhow::Result<Result<Ran, String>> {
    let job_id = match &case.event {
        Event::Request {
            method,
            headers,
            query,
            body,
        } => {
            let mut request = InboundRequest {
                method: method.clone(),
                query: query.clone(),
                body: body.clone().into(),
                ..Default::default()
            };
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                request = request.with_header("content-type", "application/json");
            }
            for (k, v) in headers {
                request = request.with_header(k, v);
            }
            match crate::run::start(&sb.engine, &sb.solution, &case.runbook, request).await {
                Ok(id) => id,
                Err(message) => return Ok(Err(message)),
            }
        }
        Event::Tick(at) => {
            let body = ferry_engine::connectors::scheduler::tick_body(*at, *at);
            let request = InboundRequest {
                method: "POST".into(),
                body: serde_json::to_vec(&body)?.into(),
                ..Default::default()
            }
            .with_header("content-type", "application/json");
            match crate::run::start(&sb.engine, &sb.solution, &case.runbook, request).await {
                Ok(id) => id,
                Err(message) => return Ok(Err(message)),
            }
        }
        Event::TriggerOutput {
            output,
            context_identifier,
        } => {
            let id = uuid::Uuid::now_v7();
            sb.store
                .insert_job(NewJob {
                    id,
                    solution: sb.solution.clone(),
                    runbook: case.runbook.clone(),
                    trigger_output: output.clone(),
                    context_id: context_identifier.clone(),
                    concurrency_key: None,
                    dedup_key: None,
                    state: json!({}),
                    solution_version: None,
                    test: false,
                    claims: Vec::new(),
                })
                .await
                .context("storing the job")?;
            id
        }
    };
    crate::run::drive(&sb.engine, &*sb.store, job_id, Some(mocks), true).await?;
    let job = sb
        .store
        .get_job(job_id)
        .await?
        .context("the job vanished")?;
    let steps = sb.store.job_steps(job_id).await?;
    let detail = ferry_server::job_detail(&job, &steps);
    let mut view = serde_json::to_value(&detail.job)?;
    if let Value::Object(m) = &mut view {
        m.insert(
            "variables".into(),
            redact_value(job.state.get("vars").unwrap_or(&Value::Null)),
        );
    }
    Ok(Ok((view, detail.steps)))
}

fn failure(path: impl Into<String>, message: impl Into<String>) -> Failure {
    Failure {
        path: path.into(),
        message: message.into(),
        diff: None,
    }
}

/// The case's expectations against the run.
fn check(case: &TestCase, job: &Value, steps: &[ferry_api::Step]) -> Vec<Failure> {
    let mut out = Vec::new();
    let status = job.get("status").and_then(Value::as_str).unwrap_or("");
    let want = case.expect.status.as_deref().unwrap_or("finished");
    if status != want {
        let mut message = format!("the job ended '{status}', expected '{want}'");
        if let Some(e) = job.get("error").and_then(Value::as_str) {
            message.push_str(&format!("\nJob error: {e}"));
        }
        out.push(failure("job.status", message));
    }
    if let Some(e) = &case.expect.error {
        out.extend(e.check(job.get("error"), "job.error"));
    }
    if let Some(e) = &case.expect.variables {
        out.extend(e.check(job.get("variables"), "job.variables"));
    }
    for (id, sc) in &case.steps {
        let mut runs: Vec<&ferry_api::Step> = steps.iter().filter(|s| &s.step_id == id).collect();
        runs.sort_by_key(|s| (s.invocation, s.seq));
        // One record per invocation (a rescheduled step runs again as its next invocation).
        let mut by_invocation: BTreeMap<i64, &ferry_api::Step> = BTreeMap::new();
        for r in runs {
            by_invocation.insert(r.invocation, r);
        }
        if let Some(n) = sc.runs {
            if by_invocation.len() != n {
                out.push(failure(
                    format!("steps.{id}"),
                    format!(
                        "expected {n} invocation{}, got {}",
                        if n == 1 { "" } else { "s" },
                        by_invocation.len()
                    ),
                ));
            }
        }
        for (i, it) in sc.invocations.iter().enumerate() {
            let n = i as i64 + 1;
            let checks_something = it.input.is_some()
                || it.output.is_some()
                || it.logs.is_some()
                || it.status.is_some()
                || it.error.is_some();
            if checks_something && !by_invocation.contains_key(&n) {
                out.push(failure(
                    format!("steps.{id}[{n}]"),
                    format!(
                        "the case expects invocation {n}, but the step ran {} time{}",
                        by_invocation.len(),
                        if by_invocation.len() == 1 { "" } else { "s" }
                    ),
                ));
            }
        }
        for (n, rec) in &by_invocation {
            let Some(it) = sc.iteration(usize::try_from(*n).unwrap_or(0)) else {
                continue;
            };
            let at = format!("steps.{id}[{n}]");
            let check = |e: &Option<Expect>, v: &Value, what: &str, out: &mut Vec<Failure>| {
                if let Some(e) = e {
                    out.extend(e.check(Some(v), &format!("{at}.{what}")));
                }
            };
            check(&it.input, &rec.input, "input", &mut out);
            let output = match &rec.outputs {
                Value::Array(items) if !is_nested_record(items) => {
                    items.first().cloned().unwrap_or(Value::Null)
                }
                other => other.clone(),
            };
            check(&it.output, &output, "output", &mut out);
            let logs = Value::Array(
                rec.logs
                    .iter()
                    .map(|l| Value::String(l.message.clone()))
                    .collect(),
            );
            check(&it.logs, &logs, "logs", &mut out);
            let status = serde_json::to_value(rec.status).unwrap_or(Value::Null);
            if let Some(want) = &it.status {
                if status.as_str() != Some(want.as_str()) {
                    let mut message = format!(
                        "the step ended '{}', expected '{want}'",
                        status.as_str().unwrap_or("?")
                    );
                    if let Some(e) = &rec.error {
                        message.push_str(&format!("\nStep error: {e}"));
                    }
                    out.push(failure(format!("{at}.status"), message));
                }
            }
            if let Some(e) = &it.error {
                let error = rec.error.clone().map_or(Value::Null, Value::String);
                out.extend(e.check(Some(&error), &format!("{at}.error")));
            }
        }
    }
    out
}

/// Whether a record's outputs are a nested step's `{branch, output}` list.
fn is_nested_record(items: &[Value]) -> bool {
    !items.is_empty()
        && items.iter().all(|i| {
            i.as_object().is_some_and(|o| {
                o.len() == 2 && o.contains_key("branch") && o.contains_key("output")
            })
        })
}

/// Write the observed invocations of the network steps into the case file as mocks (one per
/// invocation, list form), keeping the case's other content and its expectations on each
/// invocation except `output` (a mocked output is not checked).
fn write_recording(
    file: &Path,
    network: &[&str],
    steps: &[ferry_api::Step],
    observed: &BTreeMap<(String, i64), Value>,
) -> anyhow::Result<()> {
    if !steps.iter().any(|s| network.contains(&s.step_id.as_str())) {
        // Nothing to record: the file stays as written (comments included).
        return Ok(());
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut root: Value =
        serde_yaml::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
    let Value::Object(root_map) = &mut root else {
        anyhow::bail!("{}: a test case must be a map", file.display());
    };
    let steps_map = root_map
        .entry("steps")
        .or_insert_with(|| Value::Object(Map::new()));
    if !steps_map.is_object() {
        *steps_map = Value::Object(Map::new());
    }
    let Value::Object(steps_map) = steps_map else {
        anyhow::bail!("{}: 'steps' must be a map", file.display());
    };
    for id in network {
        let mut by_invocation: BTreeMap<i64, &ferry_api::Step> = BTreeMap::new();
        for s in steps.iter().filter(|s| s.step_id == *id) {
            by_invocation.insert(s.invocation, s);
        }
        if by_invocation.is_empty() {
            continue;
        }
        // The expectations already written: per invocation, or for every invocation.
        let existing = steps_map.remove(*id);
        let (every, listed, runs) = match existing {
            Some(Value::Array(items)) => (Map::new(), items, None),
            Some(Value::Object(mut m)) => {
                let runs = m.remove("runs");
                let listed = match m.remove("invocations") {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                (m, listed, runs)
            }
            _ => (Map::new(), Vec::new(), None),
        };
        let mut invocations = Vec::new();
        for (n, rec) in &by_invocation {
            let index = usize::try_from(*n - 1).unwrap_or(0);
            let mut entry = match listed.get(index) {
                Some(Value::Object(m)) => m.clone(),
                _ => every.clone(),
            };
            entry.remove("output");
            let status = serde_json::to_value(rec.status).unwrap_or(Value::Null);
            let mut mock = Map::new();
            match status.as_str() {
                Some("failed") => {
                    mock.insert("fail".into(), json!(rec.error.clone().unwrap_or_default()));
                }
                Some("finished") => {
                    let message = rec
                        .logs
                        .last()
                        .map(|l| l.message.clone())
                        .unwrap_or_default();
                    mock.insert("finish".into(), json!(message));
                }
                Some("rescheduled") => {
                    mock.insert(
                        "reschedule".into(),
                        json!({ "after_seconds": 0, "message": rec.error.clone().unwrap_or_default() }),
                    );
                }
                _ => match &rec.outputs {
                    Value::Array(items) if is_nested_record(items) => {
                        mock.insert("outputs".into(), Value::Array(items.clone()));
                    }
                    Value::Array(items) if items.is_empty() => {
                        mock.insert("outputs".into(), json!([]));
                    }
                    Value::Array(items) => {
                        mock.insert("output".into(), items[0].clone());
                    }
                    other => {
                        mock.insert("output".into(), other.clone());
                    }
                },
            }
            if let Some(it) = observed.get(&(id.to_string(), *n)) {
                mock.insert("iteration".into(), it.clone());
            }
            entry.insert("mock".into(), Value::Object(mock));
            invocations.push(Value::Object(entry));
        }
        let value = match runs {
            Some(r) => json!({ "runs": r, "invocations": invocations }),
            None => Value::Array(invocations),
        };
        steps_map.insert(id.to_string(), value);
    }
    let yaml = serde_yaml::to_string(&root).context("writing YAML")?;
    std::fs::write(file, yaml).with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}
