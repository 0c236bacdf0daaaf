//! Debug connector: the Log Message action, and Generate Records, a nested action that emits
//! test records page by page through its iteration state (demos and the paging benchmark).

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{json, Value};

use crate::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use crate::connector::ConnectorSpec;
use crate::registry::Registry;

/// Register the debug connector.
pub fn register(r: &mut Registry) {
    r.connector(ConnectorSpec::new("debug", "Debugging helpers"));
    r.action(LogMessage::new());
    r.action(GenerateRecords::new());
}

/// Writes `message` to the run log and outputs `{}`.
pub struct LogMessage(ActionSpec);

impl LogMessage {
    fn new() -> Self {
        LogMessage(ActionSpec {
            name: "debug.log_message",
            description: "Write a message to the run log",
            input: vec![Field::new("message", FieldType::String).required()],
            outputs: vec![Schema::new("output", vec![])],
            nested: false,
            kind: ActionKind::Normal,
            connection: None,
        })
    }
}

#[async_trait]
impl Action for LogMessage {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let message = ctx.input_str("message").unwrap_or_default().to_string();
        ctx.log(message);
        Ok(vec![Output::new("output", json!({}))])
    }
}

/// Emits `count` records, `page_size` per invocation: one `record` output per record (its
/// branch runs once per record), then asks to be invoked again with the position of the next
/// page as its iteration state, like a paginated query. The job state holds only the current
/// page and that cursor, however many records there are.
pub struct GenerateRecords(ActionSpec);

impl GenerateRecords {
    /// Largest page.
    pub const MAX_PAGE_SIZE: u64 = 1_000;

    fn new() -> Self {
        GenerateRecords(ActionSpec {
            name: "debug.generate_records",
            description: "Emit numbered test records page by page (one branch run per record)",
            input: vec![
                Field::new("count", FieldType::Integer).required().min(0.0),
                Field::new("page_size", FieldType::Integer)
                    .default_value(json!(100))
                    .min(1.0)
                    .max(Self::MAX_PAGE_SIZE as f64),
            ],
            outputs: vec![Schema::new(
                "record",
                vec![
                    Field::new("index", FieldType::Integer).required(),
                    Field::new("page", FieldType::Integer).required(),
                    Field::new("name", FieldType::String).required(),
                ],
            )],
            nested: true,
            kind: ActionKind::Normal,
            connection: None,
        })
    }
}

#[async_trait]
impl Action for GenerateRecords {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let count = ctx.input.get("count").and_then(Value::as_u64).unwrap_or(0);
        let page_size = ctx
            .input
            .get("page_size")
            .and_then(Value::as_u64)
            .unwrap_or(100)
            .clamp(1, Self::MAX_PAGE_SIZE);
        let start = match ctx.iteration.as_ref() {
            None => 0,
            Some(state) => state.get("next").and_then(Value::as_u64).ok_or_else(|| {
                Signal::Fail(format!(
                    "Iteration state invalid: expected {{next}}, got {state}"
                ))
            })?,
        };
        let end = (start + page_size).min(count);
        let page = start / page_size;
        ctx.log(format!(
            "Page {}: records {start}..{end} of {count}",
            page + 1
        ));
        ctx.iteration = (end < count).then(|| json!({ "next": end }));
        Ok((start..end)
            .map(|i| {
                Output::new(
                    "record",
                    json!({ "index": i, "page": page, "name": format!("record-{i}") }),
                )
            })
            .collect())
    }
}
