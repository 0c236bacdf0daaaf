//! The executor: runs one job step by step (spec §2.5–2.8), checkpointing after every
//! step so that a job interrupted by a crash resumes from its last completed step.
//!
//! It is split in two:
//!
//! - [`state`], the pure core: the traversal is an explicit stack machine ([`ExecState`]) whose
//!   whole position is plain data stored with the job; [`ExecState::next_step`] finds the next
//!   step to invoke and [`ExecState::apply`] applies an invocation's outcome. No I/O there.
//! - this module, the shell: [`run_job`] evaluates a step's input, calls the action, resolves
//!   its outputs, and writes the step record and the new state in one checkpoint. It sees the
//!   engine only through the narrow [`ExecEnv`].
//!
//! Nothing is lost or repeated silently: a stored state that cannot be read (or does not match
//! the runbook), a state that cannot be saved, and a checkpoint the store refuses all end in a
//! failed job with a message naming the cause, or — when the store itself is unreachable — in
//! an error log line with the job left to be recovered.

pub mod state;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use ferry_core::mapping::Expressions;
use ferry_store::{Checkpoint, JobRecord, JobStatus, LogLine, StepRecord, Store, StoreError};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::action::{ActionContext, Output, Services, Signal, Variables};
use crate::compile::{CompiledRunbook, CompiledSolution, CompiledStep};
use crate::metrics::Metrics;

pub use state::{
    Applied, ExecLimits, ExecState, Frame, Invocation, IterState, IterationAfter, Next,
    RunbookShape, StateError, StepOutcome, Transition,
};

/// Where the executor finds the compiled runbook of a job.
pub trait RunbookSource: Send + Sync {
    /// The solution and runbook named by a job, if loaded.
    fn runbook(
        &self,
        solution: &str,
        runbook: &str,
    ) -> Option<(Arc<CompiledSolution>, Arc<CompiledRunbook>)>;

    /// The solution and runbook a job runs on (the engine: those of the solution version the
    /// job was accepted with), or why it cannot run. Default: [`RunbookSource::runbook`].
    fn runbook_for_job(
        &self,
        job: &JobRecord,
    ) -> Result<(Arc<CompiledSolution>, Arc<CompiledRunbook>), String> {
        self.runbook(&job.solution, &job.runbook).ok_or_else(|| {
            format!(
                "Runbook '{}/{}' is not loaded; the job cannot run",
                job.solution, job.runbook
            )
        })
    }
}

/// Everything the executor uses, and nothing more: built by
/// [`crate::Engine::exec_env`], or directly by tests.
pub struct ExecEnv<'a> {
    /// Loaded runbooks.
    pub runbooks: &'a dyn RunbookSource,
    /// Where checkpoints go.
    pub store: &'a dyn Store,
    /// Services handed to actions (HTTP, secrets, connection store).
    pub services: &'a Services,
    /// Expression environment for input mappings.
    pub exprs: &'a Expressions,
    /// Step counters.
    pub metrics: &'a Metrics,
    /// Limits (step timeout, invocations, reschedules, state size).
    pub limits: ExecLimits,
    /// Set when the process stops: the job is put back in the queue at the next step boundary.
    pub stopping: &'a AtomicBool,
    /// Woken when a job ends, so that a job waiting for its concurrency key can start.
    pub notify: &'a Notify,
    /// The lease owner (worker) the job was claimed by. Checkpoints carry it, and the store
    /// refuses them once the job's lease belongs to someone else. `None` for single-process
    /// runs that hold no lease (`ferry run`).
    pub lease_owner: Option<&'a str>,
    /// Stand-ins for actions (`ferry test`): consulted before each step's action runs; `None`
    /// (the normal case) runs every action for real.
    pub mocks: Option<&'a dyn StepMocks>,
}

/// What a mocked invocation returns instead of running its action.
#[derive(Clone, Debug, PartialEq)]
pub struct Mocked {
    /// The outputs (nested actions: one per branch to run) or the signal (fail, finish,
    /// reschedule), exactly as [`crate::action::Action::run`] would return them.
    pub result: Result<Vec<Output>, Signal>,
    /// The iteration state to set (the step is invoked again when it is not `None`).
    pub iteration: Option<Value>,
}

/// Test doubles for step actions (`ferry test`, see `docs/testing.md`).
///
/// The executor asks [`StepMocks::mock`] before a step's action would run. `Some` replaces
/// the run: the step's input is still evaluated (and resolved against the action's static
/// input schema unless the action computes its schemas, whose computation is skipped), the
/// mocked outputs are resolved like real ones, and the step record is written as usual.
/// After a real run, [`StepMocks::observe`] sees the iteration state the action set, so that a
/// recording can replay it.
pub trait StepMocks: Send + Sync {
    /// The stand-in for invocation `invocation` (1-based, per step) of `step`, or `None` to
    /// run the action.
    fn mock(&self, step: &CompiledStep, invocation: i64) -> Option<Mocked>;

    /// Called after a real (not mocked) run of `step` with the iteration state the action
    /// set. Default: nothing.
    fn observe(&self, _step: &CompiledStep, _invocation: i64, _iteration: Option<&Value>) {}
}

/// How a run of [`run_job`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    /// Terminal or waiting status written to the store.
    Status(JobStatus),
    /// Stopped at a step boundary because of shutdown (the job was put back in the queue), or
    /// the store failed (the job stays Running until its lease expires and it is recovered).
    Interrupted,
}

/// A checkpoint that ends (or suspends) the run.
struct Stop {
    status: JobStatus,
    error: Option<String>,
    next_run_at: Option<chrono::DateTime<Utc>>,
}

/// Run a claimed job until it finishes, fails, waits, or the engine stops.
pub async fn run_job(env: &ExecEnv<'_>, job: JobRecord) -> RunEnd {
    let (sol, rb) = match env.runbooks.runbook_for_job(&job) {
        Ok(found) => found,
        Err(error) => return fail_unstarted(env, &job, error).await,
    };
    let mut state = match ExecState::from_stored(&job.state, &*rb, || rb.initial_variables()) {
        Ok(s) => s,
        Err(e) => {
            // Starting over would run completed steps again: stop here, loudly, and keep the
            // stored state as it is for inspection.
            let error = format!(
                "{}; the job was stopped instead of starting over",
                capital(&e)
            );
            return fail_unstarted(env, &job, error).await;
        }
    };
    // Output frames refer to the outputs in their nested step's record: read them back.
    for (step, invocation) in state.unloaded_outputs() {
        let outputs = match env.store.step_outputs(job.id, &step, invocation).await {
            Ok(Some(outputs)) => outputs,
            Ok(None) => {
                let error = format!(
                    "The record of invocation {invocation} of step '{step}', which holds the \
                     outputs whose branches the job runs, is missing; the job was stopped instead \
                     of skipping them"
                );
                return fail_unstarted(env, &job, error).await;
            }
            Err(e) => {
                tracing::error!(job = %job.id, %step, invocation, error = %e,
                    "reading a step record back failed; the job stays running and is recovered when its lease expires");
                return RunEnd::Interrupted;
            }
        };
        if let Err(e) = state.load_outputs(&step, invocation, &outputs) {
            let error = format!(
                "{}; the job was stopped instead of skipping them",
                capital(&e)
            );
            return fail_unstarted(env, &job, error).await;
        }
    }
    loop {
        if env.stopping.load(Ordering::SeqCst) {
            return interrupt(env, &job, &state).await;
        }
        let step_id = match state.next_step(&*rb) {
            Next::Done => {
                return stop(env, &job, &state, None, finished(JobStatus::Finished, None)).await;
            }
            Next::Invoke(step_id) => step_id,
            Next::Broken(error) => {
                return stop(
                    env,
                    &job,
                    &state,
                    None,
                    finished(JobStatus::Failed, Some(error)),
                )
                .await;
            }
        };
        let Some(step) = rb.steps.get(&step_id) else {
            let error = format!("Unknown step '{step_id}'");
            return stop(
                env,
                &job,
                &state,
                None,
                finished(JobStatus::Failed, Some(error)),
            )
            .await;
        };
        let inv = match state.begin(&step_id, &env.limits) {
            Ok(inv) => inv,
            Err(error) => {
                return stop(
                    env,
                    &job,
                    &state,
                    None,
                    finished(JobStatus::Failed, Some(error)),
                )
                .await;
            }
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        let invoked = invoke(env, &sol, &rb, &job, &mut state, step, &inv).await;
        let applied = state.apply(&*rb, &step_id, invoked.outcome, &env.limits);
        let elapsed_ms = clock.elapsed().as_secs_f64() * 1000.0;
        env.metrics.observe_step(
            elapsed_ms,
            applied.status == ferry_store::StepStatus::Failed,
        );

        let mut logs = invoked.logs;
        let end = match applied.transition {
            Transition::Continue => None,
            Transition::Finish(message) => {
                // The message is part of the record: logged by the step unless it did so itself.
                if !logs.iter().any(|l| l.message == message) {
                    logs.push(LogLine {
                        at: Utc::now(),
                        level: "info".into(),
                        message: message.clone(),
                    });
                }
                tracing::info!(job = %job.id, step = %step_id, %message, "job finished by its step");
                Some(finished(JobStatus::Finished, None))
            }
            Transition::Fail(error) => Some(finished(JobStatus::Failed, Some(error))),
            Transition::Wait { after } => Some(Stop {
                status: JobStatus::Waiting,
                error: None,
                next_run_at: Some(
                    Utc::now()
                        + chrono::Duration::from_std(after)
                            .unwrap_or_else(|_| chrono::Duration::seconds(60)),
                ),
            }),
        };
        let record = StepRecord {
            job_id: job.id,
            seq: state.step_seq,
            step_id: step_id.clone(),
            invocation: inv.number,
            status: applied.status,
            input: invoked.input,
            outputs: applied.outputs,
            logs,
            error: applied.error,
            started_at,
            finished_at: Utc::now(),
        };
        match end {
            Some(end) => return stop(env, &job, &state, Some(record), end).await,
            None => {
                if let Err(end) = save(env, &job, &state, record).await {
                    return end;
                }
            }
        }
    }
}

fn finished(status: JobStatus, error: Option<String>) -> Stop {
    Stop {
        status,
        error,
        next_run_at: None,
    }
}

/// `s` with its first letter upper-cased (state errors start lower-case, like all errors).
fn capital(e: &StateError) -> String {
    let s = e.to_string();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => s,
    }
}

/// Write one checkpoint; a store failure is logged and ends the run (the job stays Running
/// until its lease expires, then it is recovered and resumes from its last checkpoint).
async fn write(env: &ExecEnv<'_>, cp: Checkpoint) -> Result<(), RunEnd> {
    let job = cp.job_id;
    let status = cp.status;
    env.store.checkpoint(cp).await.map_err(|e: StoreError| {
        if matches!(e, StoreError::LeaseLost) {
            tracing::error!(job = %job, %status,
                "checkpoint refused: the job's lease now belongs to another worker; this run \
                 stops and the job continues from its last checkpoint under its new owner");
        } else {
            tracing::error!(job = %job, %status, error = %e,
                "checkpoint failed; the job stays running and is recovered when its lease expires");
        }
        RunEnd::Interrupted
    })
}

/// Checkpoint a completed step with the new state (the job stays Running).
async fn save(
    env: &ExecEnv<'_>,
    job: &JobRecord,
    state: &ExecState,
    record: StepRecord,
) -> Result<(), RunEnd> {
    let value = match state.encode(env.limits.max_state_bytes) {
        Ok(v) => v,
        Err(e) => return Err(unsaved(env, job, Some(record), e).await),
    };
    write(
        env,
        Checkpoint {
            job_id: job.id,
            step: Some(record),
            state: value,
            status: JobStatus::Running,
            next_run_at: None,
            error: None,
            owner: env.lease_owner.map(str::to_owned),
        },
    )
    .await
}

/// Checkpoint the end of the run (terminal or Waiting) with the step record, if any.
async fn stop(
    env: &ExecEnv<'_>,
    job: &JobRecord,
    state: &ExecState,
    record: Option<StepRecord>,
    end: Stop,
) -> RunEnd {
    let value = match state.encode(env.limits.max_state_bytes) {
        Ok(v) => v,
        Err(e) => return unsaved(env, job, record, e).await,
    };
    if let Some(error) = &end.error {
        tracing::warn!(job = %job.id, solution = %job.solution, runbook = %job.runbook,
            %error, "job failed");
    }
    let status = end.status;
    let cp = Checkpoint {
        job_id: job.id,
        step: record,
        state: value,
        status,
        next_run_at: end.next_run_at,
        error: end.error,
        owner: env.lease_owner.map(str::to_owned),
    };
    if let Err(end) = write(env, cp).await {
        return end;
    }
    if status.is_terminal() {
        // Jobs waiting on this one's concurrency key may run now.
        env.notify.notify_one();
    }
    RunEnd::Status(status)
}

/// The new state could not be encoded: fail the job with the step record, keeping the state
/// stored when the job was claimed (the new one cannot be written).
async fn unsaved(
    env: &ExecEnv<'_>,
    job: &JobRecord,
    record: Option<StepRecord>,
    e: StateError,
) -> RunEnd {
    let step = record
        .as_ref()
        .map_or("", |r| r.step_id.as_str())
        .to_string();
    let error = if step.is_empty() {
        capital(&e)
    } else {
        format!("{} (after step '{step}')", capital(&e))
    };
    tracing::error!(job = %job.id, %error, "job failed: its state cannot be saved");
    let cp = Checkpoint {
        job_id: job.id,
        step: record,
        state: job.state.clone(),
        status: JobStatus::Failed,
        next_run_at: None,
        error: Some(error),
        owner: env.lease_owner.map(str::to_owned),
    };
    if let Err(end) = write(env, cp).await {
        return end;
    }
    env.notify.notify_one();
    RunEnd::Status(JobStatus::Failed)
}

/// Fail a job before any step ran in this claim, keeping its stored state.
async fn fail_unstarted(env: &ExecEnv<'_>, job: &JobRecord, error: String) -> RunEnd {
    tracing::error!(job = %job.id, solution = %job.solution, runbook = %job.runbook,
        %error, "job failed before it could run");
    let cp = Checkpoint {
        job_id: job.id,
        step: None,
        state: job.state.clone(),
        status: JobStatus::Failed,
        next_run_at: None,
        error: Some(error),
        owner: env.lease_owner.map(str::to_owned),
    };
    if let Err(end) = write(env, cp).await {
        return end;
    }
    env.notify.notify_one();
    RunEnd::Status(JobStatus::Failed)
}

/// Shutdown: put the job back in the queue with its current position.
async fn interrupt(env: &ExecEnv<'_>, job: &JobRecord, state: &ExecState) -> RunEnd {
    let value = match state.encode(env.limits.max_state_bytes) {
        Ok(v) => v,
        Err(e) => return unsaved(env, job, None, e).await,
    };
    let cp = Checkpoint {
        job_id: job.id,
        step: None,
        state: value,
        status: JobStatus::Queued,
        next_run_at: None,
        error: None,
        owner: env.lease_owner.map(str::to_owned),
    };
    // Either way the run ends here; a failed write was logged and the job is recovered later.
    let _ignored_after_logging = write(env, cp).await;
    RunEnd::Interrupted
}

/// What one invocation produced.
struct Invoked {
    /// The resolved input (null when it could not be resolved).
    input: Value,
    /// The outcome for [`ExecState::apply`].
    outcome: StepOutcome,
    /// Run log lines.
    logs: Vec<LogLine>,
}

/// Evaluate the step's input, run its action (with the step timeout) and resolve its outputs.
async fn invoke(
    env: &ExecEnv<'_>,
    sol: &CompiledSolution,
    rb: &CompiledRunbook,
    job: &JobRecord,
    state: &mut ExecState,
    step: &CompiledStep,
    inv: &Invocation,
) -> Invoked {
    if let Some(mocked) = env.mocks.and_then(|m| m.mock(step, inv.number)) {
        return invoke_mocked(env, sol, job, state, step, mocked);
    }
    let spec = step.action.spec();
    let computed = match crate::schemas::step_schemas(env.services, sol, step).await {
        Ok(c) => c,
        Err(signal) => {
            return Invoked {
                input: Value::Null,
                outcome: StepOutcome {
                    result: Err(signal),
                    iteration: IterationAfter::Keep,
                },
                logs: Vec::new(),
            }
        }
    };
    let input = eval_input(env, sol, job, state, step)
        .map_err(|e| format!("Input invalid: {e}"))
        .and_then(|raw| {
            computed
                .as_ref()
                .map_or_else(|| spec.input_schema(), |c| c.input_schema())
                .resolve(&raw, Some(&env.services.secrets))
                .map_err(|e| format!("Input invalid: {e}"))
        });
    let input = match input {
        Ok(input) => input,
        Err(message) => {
            return Invoked {
                input: Value::Null,
                outcome: StepOutcome {
                    result: Err(Signal::Fail(message)),
                    iteration: IterationAfter::Keep,
                },
                logs: Vec::new(),
            }
        }
    };
    let connection = step
        .connection
        .as_ref()
        .and_then(|c| sol.connections.get(c));
    let mut vars = std::mem::take(&mut state.vars);
    let mut ctx = ActionContext {
        input,
        iteration: inv.iteration.clone(),
        iteration_count: inv.iteration_count,
        connection,
        services: env.services,
        variables: Variables {
            declared: &rb.variables,
            values: &mut vars,
        },
        job_id: job.id,
        logs: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let run = tokio::time::timeout(env.limits.step_timeout, step.action.run(&mut ctx)).await;
    let result = match run {
        Ok(r) => r,
        Err(_) => Err(Signal::Fail(format!(
            "Step timed out after {} s",
            env.limits.step_timeout.as_secs()
        ))),
    };
    let logs = std::mem::take(&mut ctx.logs);
    let iteration = ctx.iteration.take();
    if let Some(mocks) = env.mocks {
        mocks.observe(step, inv.number, iteration.as_ref());
    }
    let input = std::mem::take(&mut ctx.input);
    drop(ctx);
    state.vars = vars;
    let result = result.and_then(|outputs| {
        resolve_outputs(
            env.services,
            step.action.as_ref(),
            computed.as_deref(),
            &input,
            outputs,
        )
    });
    Invoked {
        input,
        outcome: StepOutcome {
            result,
            iteration: IterationAfter::Set(iteration),
        },
        logs,
    }
}

/// What a step's input mapping sees: `trigger`, `steps`, `item`, `vars`, `env` and `job`.
/// Evaluate a step's input mapping. The context (`trigger`, `steps`, `item`, `vars`, `env`,
/// `job`) is built only from what the mapping references: of `steps`, only the steps it names
/// are copied, so a step's cost does not grow with the outputs of every step before it.
fn eval_input(
    env: &ExecEnv<'_>,
    sol: &CompiledSolution,
    job: &JobRecord,
    state: &ExecState,
    step: &CompiledStep,
) -> Result<Value, ferry_core::mapping::MappingError> {
    step.input.eval_with(env.exprs, |root, paths| {
        Some(match root {
            "trigger" => job.trigger_output.clone(),
            "steps" => {
                if paths.iter().any(|p| p.is_empty()) {
                    Value::Object(state.outputs.clone())
                } else {
                    let mut some = serde_json::Map::new();
                    for p in paths {
                        let id = p.split('.').next().unwrap_or_default();
                        if !some.contains_key(id) {
                            if let Some(v) = state.outputs.get(id) {
                                some.insert(id.to_string(), v.clone());
                            }
                        }
                    }
                    Value::Object(some)
                }
            }
            "item" => state.item(),
            "vars" => Value::Object(state.vars.clone()),
            "env" => sol.env.clone(),
            "job" => json!({ "uuid": job.id.to_string(), "context_identifier": job.context_id }),
            _ => return None,
        })
    })
}

/// A mocked invocation ([`StepMocks`]): the input is evaluated, the action does not run.
fn invoke_mocked(
    env: &ExecEnv<'_>,
    sol: &CompiledSolution,
    job: &JobRecord,
    state: &ExecState,
    step: &CompiledStep,
    mocked: Mocked,
) -> Invoked {
    let action = step.action.as_ref();
    let input = eval_input(env, sol, job, state, step)
        .map_err(|e| format!("Input invalid: {e}"))
        .and_then(|raw| {
            if action.computes_schemas() {
                // Its schemas come from the connection, which a test does not reach.
                Ok(raw)
            } else {
                action
                    .spec()
                    .input_schema()
                    .resolve(&raw, Some(&env.services.secrets))
                    .map_err(|e| format!("Input invalid: {e}"))
            }
        });
    let input = match input {
        Ok(input) => input,
        Err(message) => {
            return Invoked {
                input: Value::Null,
                outcome: StepOutcome {
                    result: Err(Signal::Fail(message)),
                    iteration: IterationAfter::Keep,
                },
                logs: Vec::new(),
            }
        }
    };
    let result = mocked.result.and_then(|outputs| {
        if action.computes_schemas() {
            Ok(outputs.into_iter().map(|o| (o.schema, o.value)).collect())
        } else {
            resolve_outputs(env.services, action, None, &input, outputs)
        }
    });
    Invoked {
        input,
        outcome: StepOutcome {
            result,
            iteration: IterationAfter::Set(mocked.iteration),
        },
        logs: Vec::new(),
    }
}

fn resolve_outputs(
    services: &Services,
    action: &dyn crate::action::Action,
    computed: Option<&crate::schemas::ComputedSchemas>,
    input: &Value,
    outputs: Vec<Output>,
) -> Result<Vec<(String, Value)>, Signal> {
    let spec = action.spec();
    let mut resolved = Vec::with_capacity(outputs.len());
    let mut errors = Vec::new();
    for out in outputs {
        let reference = if spec.nested {
            out.schema.clone()
        } else {
            spec.outputs
                .first()
                .map(|s| s.reference.clone())
                .unwrap_or_default()
        };
        // A computed schema (e.g. a Query's record type) is large: borrowed, not copied per
        // output.
        let schema = match computed {
            Some(c) => c
                .output(&reference, spec.nested)
                .map(std::borrow::Cow::Borrowed),
            None => action
                .output_schema(&reference, input)
                .map(std::borrow::Cow::Owned),
        };
        let Some(schema) = schema else {
            errors.push(format!("Output schema '{reference}' not found."));
            continue;
        };
        match schema.resolve(&out.value, Some(&services.secrets)) {
            Ok(v) => resolved.push((reference, v)),
            Err(e) => {
                let label = if spec.nested { reference.as_str() } else { "" };
                errors.push(format!("Output [{label}] invalid: {e}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(Signal::Fail(errors.join("\n")))
    }
}
