//! Debug connector: the Log Message action.

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::json;

use crate::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use crate::registry::Registry;

/// Register the debug connector.
pub fn register(r: &mut Registry) {
    r.connector("debug", "Debugging helpers");
    r.action(LogMessage::new());
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
