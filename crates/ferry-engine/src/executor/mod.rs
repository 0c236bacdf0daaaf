//! The executor: runs one job step by step (spec §2.5–2.8), checkpointing after every
//! step so that a job interrupted by a crash resumes from its last completed step.
//!
//! The traversal is an explicit stack machine rather than recursion, so that its whole
//! position is plain data ([`ExecState`]) stored with the job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use ferry_store::{Checkpoint, JobRecord, JobStatus, StepRecord, StepStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::action::{ActionContext, ActionKind, Output, Signal, Variables};
use crate::compile::{chain_key, CompiledRunbook, CompiledSolution};
use crate::engine::Engine;

/// One frame of the traversal stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum Frame {
    /// Running the steps of a chain; `index` is the step to run (or re-invoke) next.
    Chain {
        /// [`chain_key`] of the chain.
        key: String,
        /// Position in the chain.
        index: usize,
    },
    /// Running the branches of a nested step's outputs, one after the other.
    Outputs {
        /// The nested step.
        step: String,
        /// `(schema reference, resolved output)` in emission order.
        outputs: Vec<(String, Value)>,
        /// The next output to run.
        next: usize,
    },
}

/// Iteration state of a nested step (spec §2.8).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IterState {
    /// How many times the state was set.
    pub count: u64,
    /// The state value.
    pub value: Value,
}

/// Everything the executor needs to continue a job.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExecState {
    /// Traversal stack; empty when the job is complete.
    #[serde(default)]
    pub stack: Vec<Frame>,
    /// Current output of each step that has run.
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// Runbook variables.
    #[serde(default)]
    pub vars: Map<String, Value>,
    /// Iteration states by step.
    #[serde(default)]
    pub iteration: BTreeMap<String, IterState>,
    /// Invocations per step.
    #[serde(default)]
    pub invocations: BTreeMap<String, i64>,
    /// Consecutive reschedules per step.
    #[serde(default)]
    pub reschedules: BTreeMap<String, u32>,
    /// Number of step records written.
    #[serde(default)]
    pub step_seq: i64,
    /// Total invocations (guard).
    #[serde(default)]
    pub total: u64,
}

impl ExecState {
    /// The state of a job that has not started.
    pub fn new(vars: Map<String, Value>) -> ExecState {
        ExecState {
            stack: vec![Frame::Chain {
                key: chain_key(None),
                index: 0,
            }],
            vars,
            ..Default::default()
        }
    }

    /// The current output of the innermost nested step being iterated.
    fn item(&self) -> Value {
        for frame in self.stack.iter().rev() {
            if let Frame::Outputs { outputs, next, .. } = frame {
                if *next > 0 {
                    return outputs[*next - 1].1.clone();
                }
            }
        }
        Value::Null
    }

    /// Index of the innermost Outputs frame of a try-catch currently in `branch`.
    fn enclosing_try(&self, rb: &CompiledRunbook, branch: &str) -> Option<usize> {
        self.stack
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, f)| match f {
                Frame::Outputs {
                    step,
                    outputs,
                    next,
                } if *next > 0 => {
                    let is_try = rb
                        .steps
                        .get(step)
                        .is_some_and(|s| s.action.spec().kind == ActionKind::TryCatch);
                    (is_try && outputs[*next - 1].0 == branch).then_some(i)
                }
                _ => None,
            })
    }

    fn advance(&mut self) {
        if let Some(Frame::Chain { index, .. }) = self.stack.last_mut() {
            *index += 1;
        }
    }
}

/// How a run of [`run_job`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    /// Terminal or waiting status written to the store.
    Status(JobStatus),
    /// Stopped at a step boundary because of shutdown; the job was put back in the queue.
    Interrupted,
}

enum Flow {
    Continue,
    /// Stop with this status; the caller persists it.
    Stop(JobStatus, Option<String>, Option<chrono::DateTime<Utc>>),
    /// Stopped with this status, already persisted with the step record.
    Stopped(JobStatus),
}

/// Run a claimed job until it finishes, fails, waits, or the engine stops.
pub async fn run_job(engine: &Arc<Engine>, job: JobRecord) -> RunEnd {
    let Some((sol, rb)) = engine.runbook(&job.solution, &job.runbook) else {
        let error = format!("Runbook '{}/{}' is not loaded", job.solution, job.runbook);
        let _ = checkpoint(
            engine,
            &job,
            None,
            &Value::Null,
            JobStatus::Failed,
            None,
            Some(error),
        )
        .await;
        return RunEnd::Status(JobStatus::Failed);
    };
    let mut state: ExecState = match serde_json::from_value(job.state.clone()) {
        Ok(s) => s,
        Err(_) => ExecState::new(rb.initial_variables()),
    };
    if state.stack.is_empty() && state.step_seq == 0 {
        state = ExecState::new(rb.initial_variables());
    }
    loop {
        if engine.is_stopping() {
            let value = serde_json::to_value(&state).unwrap_or(Value::Null);
            let _ = checkpoint(engine, &job, None, &value, JobStatus::Queued, None, None).await;
            return RunEnd::Interrupted;
        }
        let flow = step_once(engine, &sol, &rb, &job, &mut state).await;
        match flow {
            Ok(Flow::Continue) => {}
            Ok(stop @ (Flow::Stop(..) | Flow::Stopped(_))) => {
                let status = match stop {
                    Flow::Stop(status, error, next_run_at) => {
                        let value = serde_json::to_value(&state).unwrap_or(Value::Null);
                        if let Err(e) =
                            checkpoint(engine, &job, None, &value, status, next_run_at, error).await
                        {
                            tracing::error!(job = %job.id, error = %e, "final checkpoint failed");
                            return RunEnd::Interrupted;
                        }
                        status
                    }
                    Flow::Stopped(status) => status,
                    Flow::Continue => continue,
                };
                if status.is_terminal() {
                    // Jobs waiting on this one's concurrency key may run now.
                    engine.notify.notify_one();
                }
                return RunEnd::Status(status);
            }
            Err(e) => {
                // The store failed: leave the job Running; its lease expires and it is retried.
                tracing::error!(job = %job.id, error = %e, "checkpoint failed; job will be retried");
                return RunEnd::Interrupted;
            }
        }
    }
}

async fn checkpoint(
    engine: &Engine,
    job: &JobRecord,
    step: Option<StepRecord>,
    state: &Value,
    status: JobStatus,
    next_run_at: Option<chrono::DateTime<Utc>>,
    error: Option<String>,
) -> Result<(), ferry_store::StoreError> {
    engine
        .store
        .checkpoint(Checkpoint {
            job_id: job.id,
            step,
            state: state.clone(),
            status,
            next_run_at,
            error,
        })
        .await
}

/// Advance the traversal by one frame operation; invoking a step checkpoints it.
async fn step_once(
    engine: &Arc<Engine>,
    sol: &CompiledSolution,
    rb: &CompiledRunbook,
    job: &JobRecord,
    state: &mut ExecState,
) -> Result<Flow, ferry_store::StoreError> {
    let Some(top) = state.stack.last_mut() else {
        return Ok(Flow::Stop(JobStatus::Finished, None, None));
    };
    let step_id = match top {
        Frame::Outputs {
            step,
            outputs,
            next,
        } => {
            if *next < outputs.len() {
                let (schema, value) = outputs[*next].clone();
                *next += 1;
                let step = step.clone();
                state.outputs.insert(step.clone(), value);
                let key = chain_key(Some((&step, &schema)));
                if !rb.chain(&key).is_empty() {
                    state.stack.push(Frame::Chain { key, index: 0 });
                }
            } else {
                let step = step.clone();
                state.stack.pop();
                if !state.iteration.contains_key(&step) {
                    state.advance();
                }
                // With iteration state the chain index stays: the step is invoked again.
            }
            return Ok(Flow::Continue);
        }
        Frame::Chain { key, index } => {
            let chain = rb.chain(key);
            if *index >= chain.len() {
                state.stack.pop();
                return Ok(Flow::Continue);
            }
            chain[*index].clone()
        }
    };

    state.total += 1;
    if state.total > engine.options.max_invocations {
        return Ok(Flow::Stop(
            JobStatus::Failed,
            Some(format!(
                "Job exceeded the limit of {} step invocations",
                engine.options.max_invocations
            )),
            None,
        ));
    }
    let Some(step) = rb.steps.get(&step_id) else {
        return Ok(Flow::Stop(
            JobStatus::Failed,
            Some(format!("Unknown step '{step_id}'")),
            None,
        ));
    };
    let spec = step.action.spec();
    let started_at = Utc::now();
    let clock = Instant::now();
    let invocation = {
        let n = state.invocations.entry(step_id.clone()).or_insert(0);
        *n += 1;
        *n
    };

    // 1. Resolve the input.
    let ctx_value = json!({
        "trigger": job.trigger_output,
        "steps": state.outputs,
        "item": state.item(),
        "vars": state.vars,
        "env": sol.env,
        "job": { "uuid": job.id.to_string(), "context_identifier": job.context_id },
    });
    let input = step
        .input
        .eval(&engine.exprs, &ctx_value)
        .map_err(|e| format!("Input invalid: {e}"))
        .and_then(|raw| {
            spec.input_schema()
                .resolve(&raw, Some(&engine.services.secrets))
                .map_err(|e| format!("Input invalid: {e}"))
        });

    let mut logs = Vec::new();
    let (result, input_value, iteration_after) = match input {
        Err(message) => (
            Err(Signal::Fail(message)),
            Value::Null,
            state.iteration.get(&step_id).map(|s| s.value.clone()),
        ),
        Ok(input) => {
            let connection = step
                .connection
                .as_ref()
                .and_then(|c| sol.connections.get(c));
            let mut vars = std::mem::take(&mut state.vars);
            let mut ctx = ActionContext {
                input: input.clone(),
                iteration: state.iteration.get(&step_id).map(|s| s.value.clone()),
                iteration_count: state.iteration.get(&step_id).map_or(0, |s| s.count),
                connection,
                services: &engine.services,
                variables: Variables {
                    declared: &rb.variables,
                    values: &mut vars,
                },
                job_id: job.id,
                logs: Vec::new(),
                annotations: BTreeMap::new(),
            };
            let run =
                tokio::time::timeout(engine.options.step_timeout, step.action.run(&mut ctx)).await;
            let result = match run {
                Ok(r) => r,
                Err(_) => Err(Signal::Fail(format!(
                    "Step timed out after {} s",
                    engine.options.step_timeout.as_secs()
                ))),
            };
            logs = std::mem::take(&mut ctx.logs);
            let iteration = ctx.iteration.take();
            drop(ctx);
            state.vars = vars;
            (result, input, iteration)
        }
    };

    // 2. Resolve outputs against their schemas.
    let result = result
        .and_then(|outputs| resolve_outputs(engine, step.action.as_ref(), &input_value, outputs));

    // 3. Iteration state (kept on reschedule, as the Wait action relies on).
    if spec.nested {
        match iteration_after {
            Some(v) if !v.is_null() => {
                let count = state.iteration.get(&step_id).map_or(0, |s| s.count) + 1;
                state
                    .iteration
                    .insert(step_id.clone(), IterState { count, value: v });
            }
            _ => {
                state.iteration.remove(&step_id);
            }
        }
    }

    let elapsed_ms = clock.elapsed().as_secs_f64() * 1000.0;
    let failed = matches!(result, Err(Signal::Fail(_)));
    engine.metrics.observe_step(elapsed_ms, failed);
    state.step_seq += 1;
    let mut record = StepRecord {
        job_id: job.id,
        seq: state.step_seq,
        step_id: step_id.clone(),
        invocation,
        status: StepStatus::Completed,
        input: input_value,
        outputs: Value::Array(vec![]),
        logs,
        error: None,
        started_at,
        finished_at: Utc::now(),
    };

    let flow = match result {
        Ok(outputs) => {
            state.reschedules.remove(&step_id);
            record.outputs = Value::Array(
                outputs
                    .iter()
                    .map(|(s, v)| {
                        if spec.nested {
                            json!({ "branch": s, "output": v })
                        } else {
                            v.clone()
                        }
                    })
                    .collect(),
            );
            if spec.kind == ActionKind::Retry {
                if let Some(i) = state.enclosing_try(rb, "catch") {
                    if let Some(Frame::Outputs { step, .. }) = state.stack.get(i) {
                        let try_step = step.clone();
                        state.iteration.remove(&try_step);
                    }
                    state.stack.truncate(i);
                } else {
                    state.advance();
                }
            } else if spec.nested {
                state.stack.push(Frame::Outputs {
                    step: step_id.clone(),
                    outputs,
                    next: 0,
                });
            } else {
                let last = outputs
                    .last()
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| json!({}));
                state.outputs.insert(step_id.clone(), last);
                state.advance();
            }
            Flow::Continue
        }
        Err(Signal::Finish(message)) => {
            record.status = StepStatus::Finished;
            record.error = None;
            let _ = message;
            state.stack.clear();
            Flow::Stop(JobStatus::Finished, None, None)
        }
        Err(Signal::Reschedule { after, message }) => {
            record.status = StepStatus::Rescheduled;
            record.error = Some(message.clone());
            let n = state.reschedules.entry(step_id.clone()).or_insert(0);
            *n += 1;
            if *n > engine.options.max_reschedules {
                record.status = StepStatus::Failed;
                let error = format!(
                    "Step '{step_id}' was rescheduled more than {} times: {message}",
                    engine.options.max_reschedules
                );
                record.error = Some(error.clone());
                Flow::Stop(JobStatus::Failed, Some(error), None)
            } else {
                let at = Utc::now()
                    + chrono::Duration::from_std(after)
                        .unwrap_or_else(|_| chrono::Duration::seconds(60));
                Flow::Stop(JobStatus::Waiting, None, Some(at))
            }
        }
        Err(Signal::Fail(message)) => {
            record.status = StepStatus::Failed;
            record.error = Some(message.clone());
            if let Some(i) = state.enclosing_try(rb, "try") {
                if let Some(Frame::Outputs { step, .. }) = state.stack.get(i) {
                    let try_step = step.clone();
                    let count = state.iteration.get(&try_step).map_or(0, |s| s.count) + 1;
                    state.iteration.insert(
                        try_step,
                        IterState {
                            count,
                            value: json!({ "condition": true, "error_message": message }),
                        },
                    );
                }
                state.stack.truncate(i);
                Flow::Continue
            } else {
                Flow::Stop(JobStatus::Failed, Some(message), None)
            }
        }
    };

    // 4. Persist the step record with the new position (and final status, if any) at once.
    let (status, next_run_at, error) = match &flow {
        Flow::Stop(s, e, n) => (*s, *n, e.clone()),
        _ => (JobStatus::Running, None, None),
    };
    let value = serde_json::to_value(&*state).unwrap_or(Value::Null);
    checkpoint(
        engine,
        job,
        Some(record),
        &value,
        status,
        next_run_at,
        error,
    )
    .await?;
    Ok(match flow {
        Flow::Stop(s, ..) => Flow::Stopped(s),
        other => other,
    })
}

fn resolve_outputs(
    engine: &Engine,
    action: &dyn crate::action::Action,
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
        let Some(schema) = action.output_schema(&reference, input) else {
            errors.push(format!("Output schema '{reference}' not found."));
            continue;
        };
        match schema.resolve(&out.value, Some(&engine.services.secrets)) {
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
