//! The pure core of the executor: the traversal of a runbook and the application of a step's
//! outcome, as plain functions over [`ExecState`]. Nothing here does I/O, reads the clock or
//! awaits; [`super::run_job`] calls the action and writes checkpoints around it.
//!
//! One step of a job is:
//!
//! 1. [`ExecState::next_step`] walks the stack (entering branches, leaving finished chains and
//!    output frames) until a step must be invoked ([`Next::Invoke`]) or the job is done
//!    ([`Next::Done`]);
//! 2. [`ExecState::begin`] counts the invocation (and enforces the invocation limit);
//! 3. the shell invokes the action and resolves its outputs into a [`StepOutcome`];
//! 4. [`ExecState::apply`] moves the state on and says what the job does next
//!    ([`Transition`]) and what the step record shows ([`Applied`]);
//! 5. the shell checkpoints the step record together with the encoded state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ferry_store::StepStatus;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::action::{ActionKind, Signal};
use crate::compile::{chain_key, CompiledRunbook};

/// What the traversal needs to know about a runbook: its chains and how each step's action is
/// treated. [`CompiledRunbook`] implements it; unit tests use small hand-written shapes.
pub trait RunbookShape {
    /// The step ids of the chain `key` (see [`chain_key`]); empty if there is no such chain.
    fn chain(&self, key: &str) -> &[String];
    /// Whether a chain `key` exists (the top-level chain `""` always does).
    fn has_chain(&self, key: &str) -> bool;
    /// The action kind of step `id` and whether it is nested; `None` for an unknown step.
    fn step_kind(&self, id: &str) -> Option<(ActionKind, bool)>;
}

impl RunbookShape for CompiledRunbook {
    fn chain(&self, key: &str) -> &[String] {
        CompiledRunbook::chain(self, key)
    }
    fn has_chain(&self, key: &str) -> bool {
        key.is_empty() || self.chains.contains_key(key)
    }
    fn step_kind(&self, id: &str) -> Option<(ActionKind, bool)> {
        self.steps.get(id).map(|s| {
            let spec = s.action.spec();
            (spec.kind, spec.nested)
        })
    }
}

/// Limits enforced by the executor.
#[derive(Clone, Debug)]
pub struct ExecLimits {
    /// Longest time one step may run (spec: 90 s).
    pub step_timeout: Duration,
    /// Most step invocations in one job (guards against endless retry or iteration loops).
    pub max_invocations: u64,
    /// Most consecutive reschedules of one step before the job fails.
    pub max_reschedules: u32,
    /// Largest encoded job state, in bytes; a step whose state would be larger fails the job.
    pub max_state_bytes: usize,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            step_timeout: Duration::from_secs(90),
            max_invocations: 1_000_000,
            max_reschedules: 100,
            max_state_bytes: 16 * 1024 * 1024,
        }
    }
}

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
        /// The outputs, kept in the nested step's record: the stored state names that record
        /// and counts the branches started, so a checkpoint costs the same whether a page has
        /// one record or a hundred left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recorded: Option<RecordedOutputs>,
        /// `(schema reference, resolved output)` of the outputs whose branch has not started,
        /// kept in the state itself: how states written before [`Frame::Outputs::recorded`]
        /// existed hold them (still read and continued; new frames never use it).
        #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
        pending: VecDeque<(String, Value)>,
        /// Schema reference of the branch being run; `None` before the first one starts.
        #[serde(default)]
        current: Option<String>,
    },
}

/// The outputs of a nested step's invocation, as an output frame refers to them: the step
/// record of invocation `invocation` of the frame's step holds them (`{branch, output}` in
/// emission order), and `started` of them have started their branch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedOutputs {
    /// Invocation number of the nested step whose record holds the outputs.
    pub invocation: i64,
    /// How many of the outputs have started their branch.
    pub started: usize,
    /// The outputs, once known: from the invocation itself, or read back from its step record
    /// when a job resumes ([`ExecState::load_outputs`]). Not stored.
    #[serde(skip)]
    pub loaded: Option<Arc<Vec<(String, Value)>>>,
}

impl PartialEq for RecordedOutputs {
    /// Two references are equal when they name the same outputs and position (whether the
    /// outputs are loaded is not part of the state).
    fn eq(&self, other: &Self) -> bool {
        self.invocation == other.invocation && self.started == other.started
    }
}

impl Frame {
    /// The outputs of an output frame whose branch has not started (0 for a chain frame, and
    /// for recorded outputs that are not loaded).
    pub fn remaining(&self) -> usize {
        match self {
            Frame::Chain { .. } => 0,
            Frame::Outputs {
                recorded, pending, ..
            } => match recorded {
                Some(r) => r
                    .loaded
                    .as_ref()
                    .map_or(0, |all| all.len().saturating_sub(r.started)),
                None => pending.len(),
            },
        }
    }
}

/// Iteration state of a nested step (spec §2.8).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IterState {
    /// How many times the state was set.
    pub count: u64,
    /// The state value.
    pub value: Value,
}

/// Everything the executor needs to continue a job. Its size depends on the runbook (one
/// current output per step, the variables, a reference and a position per nested step being
/// run — the outputs themselves stay in that step's record), never on how many steps already
/// ran nor on how many outputs a nested step emitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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

/// What [`ExecState::next_step`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Invoke this step.
    Invoke(String),
    /// Every chain ran: the job is complete.
    Done,
    /// The state cannot go on: an output frame refers to outputs that were not loaded
    /// ([`ExecState::unloaded_outputs`]). The message names the step.
    Broken(String),
}

/// One invocation of a step, as [`ExecState::begin`] counted it.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// The step.
    pub step: String,
    /// 1-based invocation number of the step within the job.
    pub number: i64,
    /// The step's iteration state value, if set.
    pub iteration: Option<Value>,
    /// How many times the iteration state has been set.
    pub iteration_count: u64,
}

/// The iteration state an invocation left behind.
#[derive(Clone, Debug, PartialEq)]
pub enum IterationAfter {
    /// The action did not run (its input was invalid): the state stays as it was.
    Keep,
    /// The action ran and left this value (`None` or `null` clears the state).
    Set(Option<Value>),
}

/// The result of invoking an action, with its outputs already resolved against their schemas.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    /// `(schema reference, resolved output)` in emission order, or the signal raised.
    pub result: Result<Vec<(String, Value)>, Signal>,
    /// The iteration state after the invocation.
    pub iteration: IterationAfter,
}

/// What the job does after a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// Go on with the next step.
    Continue,
    /// The job ended successfully (a Finish signal) with this message.
    Finish(String),
    /// The job failed with this message.
    Fail(String),
    /// The step was rescheduled: the job waits, then the step is invoked again.
    Wait {
        /// Delay before the step is invoked again.
        after: Duration,
    },
}

/// The result of [`ExecState::apply`]: the step record's fields and the job's transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// Status of the step record.
    pub status: StepStatus,
    /// Error (or reschedule reason) of the step record.
    pub error: Option<String>,
    /// Outputs of the step record: the resolved outputs, as `{branch, output}` for nested steps.
    pub outputs: Value,
    /// What the job does next.
    pub transition: Transition,
}

/// Why a stored state cannot be continued.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StateError {
    /// The JSON is not an executor state.
    #[error("job state could not be read: {0}")]
    Unreadable(String),
    /// The state refers to chains or steps the runbook does not have (it changed).
    #[error("job state does not match the runbook (was it changed since the job started?): {0}")]
    Mismatch(String),
    /// The state could not be encoded.
    #[error("job state could not be saved: {0}")]
    Unsaved(String),
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

    /// Read a stored state. A state that has no frames and wrote no step (`{}`) has not
    /// started and becomes [`ExecState::new`] with `vars`; anything that is not a state of
    /// this executor, or that names chains or steps `rb` does not have, is an error: the
    /// caller fails the job rather than starting it over.
    pub fn from_stored(
        stored: &Value,
        rb: &impl RunbookShape,
        vars: impl FnOnce() -> Map<String, Value>,
    ) -> Result<ExecState, StateError> {
        let state =
            ExecState::deserialize(stored).map_err(|e| StateError::Unreadable(e.to_string()))?;
        if state.stack.is_empty() && state.step_seq == 0 {
            return Ok(ExecState::new(vars()));
        }
        state.check(rb)?;
        Ok(state)
    }

    /// Check that every frame refers to a chain or step of `rb`.
    pub fn check(&self, rb: &impl RunbookShape) -> Result<(), StateError> {
        for frame in &self.stack {
            match frame {
                Frame::Chain { key, index } => {
                    if !rb.has_chain(key) {
                        return Err(StateError::Mismatch(format!("unknown chain '{key}'")));
                    }
                    if *index > rb.chain(key).len() {
                        return Err(StateError::Mismatch(format!(
                            "chain '{key}' has {} steps, the job is at step {}",
                            rb.chain(key).len(),
                            index + 1
                        )));
                    }
                }
                Frame::Outputs { step, .. } => match rb.step_kind(step) {
                    Some((_, true)) => {}
                    Some(_) => {
                        return Err(StateError::Mismatch(format!(
                            "step '{step}' is no longer nested"
                        )))
                    }
                    None => return Err(StateError::Mismatch(format!("unknown step '{step}'"))),
                },
            }
        }
        Ok(())
    }

    /// Encode the state for a checkpoint, failing if it is larger than `max_bytes`.
    pub fn encode(&self, max_bytes: usize) -> Result<Value, StateError> {
        let value = serde_json::to_value(self).map_err(|e| StateError::Unsaved(e.to_string()))?;
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, &value)
            .map_err(|e| StateError::Unsaved(e.to_string()))?;
        if counter.0 > max_bytes {
            return Err(StateError::Unsaved(format!(
                "it would be {} bytes, more than the limit of {max_bytes} bytes (a nested step \
                 emits too many or too large outputs at once; emit them page by page)",
                counter.0
            )));
        }
        Ok(value)
    }

    /// The current output of the innermost nested step whose branch is running (`item` in
    /// expressions), or `null`.
    pub fn item(&self) -> Value {
        self.stack
            .iter()
            .rev()
            .find_map(|f| match f {
                Frame::Outputs {
                    step,
                    current: Some(_),
                    ..
                } => Some(self.outputs.get(step).cloned().unwrap_or(Value::Null)),
                _ => None,
            })
            .unwrap_or(Value::Null)
    }

    /// Index of the innermost output frame of a try-catch whose `branch` is running.
    fn enclosing_try(&self, rb: &impl RunbookShape, branch: &str) -> Option<usize> {
        self.stack
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, f)| match f {
                Frame::Outputs {
                    step,
                    current: Some(current),
                    ..
                } if current == branch
                    && rb
                        .step_kind(step)
                        .is_some_and(|(k, _)| k == ActionKind::TryCatch) =>
                {
                    Some(i)
                }
                _ => None,
            })
    }

    fn advance(&mut self) {
        if let Some(Frame::Chain { index, .. }) = self.stack.last_mut() {
            *index += 1;
        }
    }

    /// Walk the stack to the next step to invoke: start the next pending output's branch,
    /// leave finished chains, and leave an output frame whose outputs all ran (moving past the
    /// nested step, or staying on it when it has iteration state so that it runs again).
    pub fn next_step(&mut self, rb: &impl RunbookShape) -> Next {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Next::Done;
            };
            match top {
                Frame::Chain { key, index } => match rb.chain(key).get(*index) {
                    Some(step) => return Next::Invoke(step.clone()),
                    None => {
                        self.stack.pop();
                    }
                },
                Frame::Outputs {
                    step,
                    recorded,
                    pending,
                    current,
                } => match next_output(step, recorded, pending) {
                    Err(message) => return Next::Broken(message),
                    Ok(Some((schema, value))) => {
                        let step = step.clone();
                        let key = chain_key(Some((&step, &schema)));
                        *current = Some(schema);
                        self.outputs.insert(step, value);
                        if !rb.chain(&key).is_empty() {
                            self.stack.push(Frame::Chain { key, index: 0 });
                        }
                    }
                    Ok(None) => {
                        let step = step.clone();
                        self.stack.pop();
                        // With iteration state the chain index stays: the step runs again.
                        if !self.iteration.contains_key(&step) {
                            self.advance();
                        }
                    }
                },
            }
        }
    }

    /// Count an invocation of `step`; fails when the job reached `max_invocations`.
    pub fn begin(&mut self, step: &str, limits: &ExecLimits) -> Result<Invocation, String> {
        if self.total >= limits.max_invocations {
            return Err(format!(
                "Job exceeded the limit of {} step invocations",
                limits.max_invocations
            ));
        }
        self.total += 1;
        let number = {
            let n = self.invocations.entry(step.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let iteration = self.iteration.get(step);
        Ok(Invocation {
            step: step.to_string(),
            number,
            iteration: iteration.map(|s| s.value.clone()),
            iteration_count: iteration.map_or(0, |s| s.count),
        })
    }

    /// Apply the outcome of an invocation of `step` (after [`ExecState::begin`]): store its
    /// outputs or push its output frame, update its iteration state, handle the signals
    /// (try-catch, retry, reschedule, finish) and count the step record.
    pub fn apply(
        &mut self,
        rb: &impl RunbookShape,
        step: &str,
        outcome: StepOutcome,
        limits: &ExecLimits,
    ) -> Applied {
        let (kind, nested) = rb.step_kind(step).unwrap_or((ActionKind::Normal, false));
        let mut result = outcome.result;
        match outcome.iteration {
            IterationAfter::Keep => {}
            IterationAfter::Set(value) => match value.filter(|v| !v.is_null()) {
                Some(value) if nested => {
                    let count = self.iteration.get(step).map_or(0, |s| s.count) + 1;
                    self.iteration
                        .insert(step.to_string(), IterState { count, value });
                }
                Some(_) => {
                    if result.is_ok() {
                        result = Err(Signal::Fail(
                            "Iteration state only available for nested actions.".into(),
                        ));
                    }
                }
                None => {
                    self.iteration.remove(step);
                }
            },
        }
        self.step_seq += 1;

        match result {
            Ok(outputs) => {
                self.reschedules.remove(step);
                let record = Value::Array(
                    outputs
                        .iter()
                        .map(|(s, v)| {
                            if nested {
                                json!({ "branch": s, "output": v })
                            } else {
                                v.clone()
                            }
                        })
                        .collect(),
                );
                if kind == ActionKind::Retry {
                    if let Some(i) = self.enclosing_try(rb, "catch") {
                        if let Some(Frame::Outputs { step: try_step, .. }) = self.stack.get(i) {
                            let try_step = try_step.clone();
                            self.iteration.remove(&try_step);
                        }
                        self.stack.truncate(i);
                    } else {
                        self.advance();
                    }
                } else if nested {
                    if let Err(message) = outputs_fit(&outputs, limits.max_state_bytes) {
                        return self.fail_step(rb, message);
                    }
                    let invocation = self.invocations.get(step).copied().unwrap_or(0);
                    self.stack.push(Frame::Outputs {
                        step: step.to_string(),
                        recorded: Some(RecordedOutputs {
                            invocation,
                            started: 0,
                            loaded: Some(Arc::new(outputs)),
                        }),
                        pending: VecDeque::new(),
                        current: None,
                    });
                } else {
                    let last = outputs
                        .into_iter()
                        .last()
                        .map(|(_, v)| v)
                        .unwrap_or_else(|| json!({}));
                    self.outputs.insert(step.to_string(), last);
                    self.advance();
                }
                Applied {
                    status: StepStatus::Completed,
                    error: None,
                    outputs: record,
                    transition: Transition::Continue,
                }
            }
            Err(Signal::Finish(message)) => {
                self.stack.clear();
                Applied {
                    status: StepStatus::Finished,
                    error: None,
                    outputs: json!([]),
                    transition: Transition::Finish(message),
                }
            }
            Err(Signal::Reschedule { after, message }) => {
                let n = self.reschedules.entry(step.to_string()).or_insert(0);
                *n += 1;
                if *n > limits.max_reschedules {
                    let error = format!(
                        "Step '{step}' was rescheduled more than {} times: {message}",
                        limits.max_reschedules
                    );
                    Applied {
                        status: StepStatus::Failed,
                        error: Some(error.clone()),
                        outputs: json!([]),
                        transition: Transition::Fail(error),
                    }
                } else {
                    Applied {
                        status: StepStatus::Rescheduled,
                        error: Some(message),
                        outputs: json!([]),
                        transition: Transition::Wait { after },
                    }
                }
            }
            Err(Signal::Fail(message)) => self.fail_step(rb, message),
        }
    }

    /// A failed invocation: caught by the innermost try-catch whose `try` branch runs, or
    /// failing the job.
    fn fail_step(&mut self, rb: &impl RunbookShape, message: String) -> Applied {
        let transition = match self.enclosing_try(rb, "try") {
            Some(i) => {
                if let Some(Frame::Outputs { step: try_step, .. }) = self.stack.get(i) {
                    let try_step = try_step.clone();
                    let count = self.iteration.get(&try_step).map_or(0, |s| s.count) + 1;
                    self.iteration.insert(
                        try_step,
                        IterState {
                            count,
                            value: json!({ "condition": true, "error_message": message }),
                        },
                    );
                }
                self.stack.truncate(i);
                Transition::Continue
            }
            None => Transition::Fail(message.clone()),
        };
        Applied {
            status: StepStatus::Failed,
            error: Some(message),
            outputs: json!([]),
            transition,
        }
    }

    /// The output frames whose recorded outputs are not loaded: `(step, invocation)` of the
    /// step records to read back ([`ExecState::load_outputs`]) before the job goes on.
    pub fn unloaded_outputs(&self) -> Vec<(String, i64)> {
        self.stack
            .iter()
            .filter_map(|f| match f {
                Frame::Outputs {
                    step,
                    recorded: Some(r),
                    ..
                } if r.loaded.is_none() => Some((step.clone(), r.invocation)),
                _ => None,
            })
            .collect()
    }

    /// Load the outputs of invocation `invocation` of `step` from its step record's `outputs`
    /// (`[{branch, output}, ...]`) into the output frame that refers to them.
    pub fn load_outputs(
        &mut self,
        step: &str,
        invocation: i64,
        record_outputs: &Value,
    ) -> Result<(), StateError> {
        let bad = |why: &str| {
            StateError::Unreadable(format!(
                "the record of invocation {invocation} of step '{step}' {why}"
            ))
        };
        let items = record_outputs
            .as_array()
            .ok_or_else(|| bad("holds no list of outputs"))?;
        let mut outputs = Vec::with_capacity(items.len());
        for item in items {
            let branch = item
                .get("branch")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("has an output without its branch"))?;
            let output = item.get("output").cloned().unwrap_or(Value::Null);
            outputs.push((branch.to_string(), output));
        }
        let frame = self.stack.iter_mut().find_map(|f| match f {
            Frame::Outputs {
                step: s,
                recorded: Some(r),
                ..
            } if s == step && r.invocation == invocation => Some(r),
            _ => None,
        });
        let r = frame.ok_or_else(|| bad("is not referred to by the job state"))?;
        if r.started > outputs.len() {
            return Err(bad(&format!(
                "has {} outputs, fewer than the {} whose branch the state says started",
                outputs.len(),
                r.started
            )));
        }
        r.loaded = Some(Arc::new(outputs));
        Ok(())
    }
}

/// The next output of an output frame whose branch has not started (moving the frame on), or
/// `None` when all started; an error when its recorded outputs are not loaded.
fn next_output(
    step: &str,
    recorded: &mut Option<RecordedOutputs>,
    pending: &mut VecDeque<(String, Value)>,
) -> Result<Option<(String, Value)>, String> {
    let Some(r) = recorded else {
        return Ok(pending.pop_front());
    };
    let all = r.loaded.as_ref().ok_or_else(|| {
        format!(
            "The outputs of invocation {} of step '{step}' were not read back from its step record",
            r.invocation
        )
    })?;
    let next = all.get(r.started).cloned();
    if next.is_some() {
        r.started += 1;
    }
    Ok(next)
}

/// The outputs of one invocation must fit in the state limit (they are what a job holds of a
/// page while its branches run).
fn outputs_fit(outputs: &[(String, Value)], max_bytes: usize) -> Result<(), String> {
    let mut counter = ByteCounter(0);
    for (_, v) in outputs {
        if serde_json::to_writer(&mut counter, v).is_err() || counter.0 > max_bytes {
            return Err(format!(
                "The step's outputs are larger than the job state limit of {max_bytes} bytes \
                 (a nested step emits too many or too large outputs at once; emit them page by page)"
            ));
        }
    }
    Ok(())
}

/// Counts the bytes of an encoding without keeping them.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
