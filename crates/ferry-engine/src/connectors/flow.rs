//! Flow connector: branching, loops, error handling and job control (spec §9.1).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{json, Value};

use crate::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use crate::connector::ConnectorSpec;
use crate::registry::Registry;

/// Register the flow connector.
pub fn register(r: &mut Registry) {
    r.connector(ConnectorSpec::new(
        "flow",
        "Branching, loops, error handling and job control",
    ));
    r.action(IfThenElse(spec_if()));
    r.action(Case(spec_case()));
    r.action(Section(spec_section()));
    r.action(Loop(spec_loop()));
    r.action(Batch(spec_batch()));
    r.action(Fail(spec_fail()));
    r.action(Finish(spec_finish()));
    r.action(TryCatch(spec_try_catch()));
    r.action(Retry(spec_retry()));
    r.action(Wait(spec_wait()));
}

fn nested(
    name: &'static str,
    description: &'static str,
    input: Vec<Field>,
    outputs: Vec<Schema>,
) -> ActionSpec {
    ActionSpec {
        name,
        description,
        input,
        outputs,
        nested: true,
        kind: ActionKind::Normal,
        connection: None,
    }
}

fn spec_if() -> ActionSpec {
    let result = || vec![Field::new("result", FieldType::Boolean).required()];
    nested(
        "flow.if_then_else",
        "Run the `true` or the `false` branch",
        vec![
            Field::new("condition", FieldType::Boolean).required(),
            Field::new("include_false_path", FieldType::Boolean).default_value(json!(true)),
        ],
        vec![
            Schema::new("true", result()),
            Schema::new("false", result()),
        ],
    )
}

/// If-then-else.
pub struct IfThenElse(ActionSpec);

#[async_trait]
impl Action for IfThenElse {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let condition = ctx.input.get("condition").and_then(Value::as_bool) == Some(true);
        let include_false =
            ctx.input.get("include_false_path").and_then(Value::as_bool) != Some(false);
        if condition {
            Ok(vec![Output::new("true", json!({ "result": true }))])
        } else if include_false {
            Ok(vec![Output::new("false", json!({ "result": false }))])
        } else {
            Ok(vec![])
        }
    }
}

fn spec_case() -> ActionSpec {
    nested(
        "flow.case",
        "Run the branch named after the matching value, else `else`",
        vec![
            Field::new("expression", FieldType::String).required(),
            Field::new("matches", FieldType::String)
                .array()
                .required()
                .max_length(50),
            Field::new("include_else_path", FieldType::Boolean).default_value(json!(true)),
        ],
        vec![Schema::new(
            "else",
            vec![Field::new("expression", FieldType::String).required()],
        )],
    )
}

/// Case: exact, case-sensitive match of `expression` against `matches`.
pub struct Case(ActionSpec);

#[async_trait]
impl Action for Case {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    fn branch_keys(&self, raw_input: &Value) -> Option<Vec<String>> {
        let matches = raw_input.get("matches")?.as_array()?;
        let mut keys = Vec::new();
        for m in matches {
            match m {
                Value::String(s) if !s.contains("{{") => keys.push(s.clone()),
                Value::Number(n) => keys.push(n.to_string()),
                _ => return None,
            }
        }
        keys.push("else".to_string());
        Some(keys)
    }
    fn output_schema(&self, reference: &str, input: &Value) -> Option<Schema> {
        let known = reference == "else"
            || input
                .get("matches")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(reference)));
        known.then(|| {
            Schema::new(
                reference,
                vec![Field::new("expression", FieldType::String).required()],
            )
        })
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let expression = ctx.input_str("expression").unwrap_or_default().to_string();
        let matched = ctx
            .input
            .get("matches")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(expression.as_str())));
        let include_else =
            ctx.input.get("include_else_path").and_then(Value::as_bool) != Some(false);
        if matched {
            Ok(vec![Output::new(
                &expression,
                json!({ "expression": expression }),
            )])
        } else if include_else {
            Ok(vec![Output::new(
                "else",
                json!({ "expression": expression }),
            )])
        } else {
            Ok(vec![])
        }
    }
}

/// The `items` input as a list (absent or null: empty).
fn items_of(input: &Value) -> Vec<Value> {
    input
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn spec_section() -> ActionSpec {
    nested(
        "flow.section",
        "Group steps; always runs its branch once",
        vec![],
        vec![Schema::new("nested_section", vec![])],
    )
}

/// Section: groups steps.
pub struct Section(ActionSpec);

#[async_trait]
impl Action for Section {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, _ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        Ok(vec![Output::new("nested_section", json!({}))])
    }
}

fn spec_loop() -> ActionSpec {
    nested(
        "flow.loop",
        "Run the branch once per item",
        vec![Field::new("items", FieldType::Any).array()],
        vec![Schema::new(
            "loop",
            vec![
                Field::new("item", FieldType::Any),
                Field::new("index", FieldType::Integer).required(),
            ],
        )],
    )
}

/// Loop: one output per item, in order.
pub struct Loop(ActionSpec);

#[async_trait]
impl Action for Loop {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let items = items_of(&ctx.input);
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(index, item)| Output::new("loop", json!({ "item": item, "index": index })))
            .collect())
    }
}

fn spec_batch() -> ActionSpec {
    nested(
        "flow.batch",
        "Run the branch once per chunk of `batch_size` items",
        vec![
            Field::new("items", FieldType::Any).array().required(),
            Field::new("batch_size", FieldType::Integer)
                .required()
                .min(2.0),
        ],
        vec![Schema::new(
            "batch",
            vec![Field::new("items", FieldType::Any).array().required()],
        )],
    )
}

/// Batch: consecutive chunks.
pub struct Batch(ActionSpec);

#[async_trait]
impl Action for Batch {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let items = items_of(&ctx.input);
        let size = ctx
            .input
            .get("batch_size")
            .and_then(Value::as_u64)
            .unwrap_or(2)
            .max(1) as usize;
        Ok(items
            .chunks(size)
            .map(|c| Output::new("batch", json!({ "items": c })))
            .collect())
    }
}

fn plain(
    name: &'static str,
    description: &'static str,
    input: Vec<Field>,
    kind: ActionKind,
) -> ActionSpec {
    ActionSpec {
        name,
        description,
        input,
        outputs: vec![Schema::new("output", vec![])],
        nested: false,
        kind,
        connection: None,
    }
}

fn spec_fail() -> ActionSpec {
    plain(
        "flow.fail",
        "Stop the job as failed",
        vec![Field::new("message", FieldType::String).default_value(json!("Stopped"))],
        ActionKind::Normal,
    )
}

/// Fail: the job ends Failed with the message.
pub struct Fail(ActionSpec);

#[async_trait]
impl Action for Fail {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let message = ctx.input_str("message").unwrap_or("Stopped").to_string();
        ctx.log_at("error", message.clone());
        Err(Signal::Fail(message))
    }
}

fn spec_finish() -> ActionSpec {
    plain(
        "flow.finish",
        "Stop the job as finished (success)",
        vec![Field::new("message", FieldType::String)
            .default_value(json!("Runbook execution completed"))],
        ActionKind::Normal,
    )
}

/// Finish: the job ends Finished.
pub struct Finish(ActionSpec);

#[async_trait]
impl Action for Finish {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let message = ctx
            .input_str("message")
            .unwrap_or("Runbook execution completed")
            .to_string();
        ctx.log(message.clone());
        Err(Signal::Finish(message))
    }
}

fn spec_try_catch() -> ActionSpec {
    let mut spec = nested(
        "flow.try_catch",
        "Run `try`; if a step inside fails, run `catch` with the error",
        vec![],
        vec![
            Schema::new("try", vec![]),
            Schema::new(
                "catch",
                vec![Field::new("error", FieldType::String).required()],
            ),
        ],
    );
    spec.kind = ActionKind::TryCatch;
    spec
}

/// Try-catch. The executor writes `{condition: true, error_message}` into its iteration
/// state when a step in `try` fails, and invokes it again.
pub struct TryCatch(ActionSpec);

#[async_trait]
impl Action for TryCatch {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let state = ctx.iteration.take();
        let condition = state
            .as_ref()
            .and_then(|s| s.get("condition"))
            .map(|c| !(c.is_null() || c == &json!(false) || c == &json!("false")))
            .unwrap_or(false);
        if condition {
            let error = state
                .as_ref()
                .and_then(|s| s.get("error_message"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Ok(vec![Output::new("catch", json!({ "error": error }))])
        } else {
            Ok(vec![Output::new("try", json!({}))])
        }
    }
}

fn spec_retry() -> ActionSpec {
    plain(
        "flow.retry",
        "Inside `catch`: run the enclosing try-catch again from `try`",
        vec![],
        ActionKind::Retry,
    )
}

/// Retry: handled by the executor; a no-op outside a catch branch.
pub struct Retry(ActionSpec);

#[async_trait]
impl Action for Retry {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, _ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        Ok(vec![Output::new("output", json!({}))])
    }
}

fn spec_wait() -> ActionSpec {
    nested(
        "flow.wait",
        "Suspend the job for a number of seconds (survives restarts)",
        vec![Field::new("seconds_to_wait", FieldType::Integer)
            .required()
            .min(0.0)],
        vec![Schema::new(
            "actual",
            vec![
                Field::new("started_at", FieldType::DateTime).required(),
                Field::new("requested_wait", FieldType::Integer).required(),
                Field::new("completed_at", FieldType::DateTime).required(),
                Field::new("actual_wait", FieldType::Integer).required(),
            ],
        )],
    )
}

/// Wait: stores `started_at`, reschedules, then emits the timings.
pub struct Wait(ActionSpec);

#[async_trait]
impl Action for Wait {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let requested = ctx
            .input
            .get("seconds_to_wait")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0);
        let now = Utc::now();
        let started = ctx
            .iteration
            .as_ref()
            .and_then(|s| s.get("started_at"))
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        match started {
            None if requested > 0 => {
                ctx.iteration = Some(json!({ "started_at": now.to_rfc3339() }));
                Err(Signal::Reschedule {
                    after: Duration::from_secs(requested as u64),
                    message: format!("Waiting {requested} seconds"),
                })
            }
            None => {
                ctx.iteration = None;
                Ok(vec![Output::new(
                    "actual",
                    json!({ "started_at": now.to_rfc3339(), "requested_wait": 0,
                            "completed_at": now.to_rfc3339(), "actual_wait": 0 }),
                )])
            }
            Some(started_at) => {
                let elapsed = (now - started_at).num_milliseconds().max(0);
                // Whole seconds, rounded up: the step is never woken before its time.
                let actual = (elapsed + 999) / 1000;
                ctx.iteration = None;
                Ok(vec![Output::new(
                    "actual",
                    json!({ "started_at": started_at.to_rfc3339(), "requested_wait": requested,
                            "completed_at": now.to_rfc3339(), "actual_wait": actual }),
                )])
            }
        }
    }
}
