//! Runbook Variables connector: the Assign Runbook Variable action.

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{json, Value};

use crate::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use crate::connector::ConnectorSpec;
use crate::registry::Registry;

/// Register the runbook variables connector.
pub fn register(r: &mut Registry) {
    r.connector(ConnectorSpec::new(
        "runbook_variables",
        "Typed variables shared by the steps of a job",
    ));
    r.action(Assign::new());
}

/// Assigns a value to a declared runbook variable, coerced to the variable's type.
pub struct Assign(ActionSpec);

impl Assign {
    fn new() -> Self {
        Assign(ActionSpec {
            name: "runbook_variables.assign",
            description: "Assign a value to a runbook variable",
            input: vec![
                Field::new("id", FieldType::String)
                    .required()
                    .max_length(256),
                Field::new("value", FieldType::Any),
            ],
            outputs: vec![Schema::new(
                "output",
                vec![Field::new("value", FieldType::Any)],
            )],
            nested: false,
            kind: ActionKind::Normal,
            connection: None,
        })
    }
}

#[async_trait]
impl Action for Assign {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    fn check(&self, raw_input: &Value, variables: &[Field]) -> Vec<String> {
        match raw_input.get("id").and_then(Value::as_str) {
            Some(id) if !id.contains("{{") && !variables.iter().any(|v| v.id == id) => vec![format!(
                "Input invalid: Field 'id' is required. (runbook variable '{id}' is not declared; declared: {})",
                variables.iter().map(|v| v.id.as_str()).collect::<Vec<_>>().join(", ")
            )],
            _ => Vec::new(),
        }
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let id = ctx.input_str("id").unwrap_or_default().to_string();
        let value = ctx.input.get("value").cloned().unwrap_or(Value::Null);
        // An id that names no declared variable resolves to nothing, so the required `id`
        // input is missing (spec scenario 80).
        let Some(declared) = ctx.variables.declared.iter().find(|f| f.id == id).cloned() else {
            ctx.log(format!("Runbook variable '{id}' not in use."));
            return Err(Signal::Fail(
                "Input invalid: Field 'id' is required.".into(),
            ));
        };
        if value.is_null() {
            ctx.variables.values.remove(&id);
            return Ok(vec![Output::new("output", json!({ "value": null }))]);
        }
        let mut field = declared;
        field.id = "value".to_string();
        field.default = None;
        let schema = Schema::new("value", vec![field]);
        let resolved = schema
            .resolve(&json!({ "value": value }), Some(&ctx.services.secrets))
            .map_err(|e| Signal::Fail(format!("Input invalid: {e}")))?;
        let value = resolved.get("value").cloned().unwrap_or(Value::Null);
        ctx.variables.values.insert(id, value.clone());
        Ok(vec![Output::new("output", json!({ "value": value }))])
    }
}
