//! The `xurrent.mutation` action (spec §6): run any mutation of the Xurrent schema over an
//! outbound `xurrent` connection.
//!
//! - Input: `mutation` (the mutation's name, e.g. `requestCreate`), `input` (one JSON object,
//!   the mutation's input; its fields come from the mutation's input type) and/or the input
//!   type's fields as step inputs of their own (`subject: …`; added to `input`, a key given
//!   both ways is an error: [`crate::mutation_fields`]), optional
//!   `include_fields` (payload fields to select beyond the defaults; every top-level object
//!   field of the payload is selected unless set to `false`).
//! - Schemas: computed per step from the mutation (and `include_fields`), so that the input
//!   is checked and the output (`mutation_result`: the flattened payload plus `ratelimit`,
//!   `costlimit`, `request_id`) is typed. The schema is the connection's introspected one
//!   ([`schema_for`]: cached in the connection store); `ferry validate` checks offline against
//!   the one that ships with Ferry ([`Schema::embedded`]).
//! - Run: the mutation document and `{input}` variables from [`MutationPlan`], sent with
//!   [`XurrentClient::graphql`] (secret values in the input decrypted for the request only;
//!   429/502/503/504 reschedule, GraphQL `errors` fail); a
//!   payload `errors` list with messages fails the step with `Mutation error: a; b`.
//! - `ferry validate`: an unknown mutation, `include_fields` naming non-object fields and
//!   literal input keys the input type does not have are reported ([`check_mutation`]).

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema as FieldSchema};
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::schemas::{ComputedSchemas, SchemaContext};
use serde_json::{json, Map, Value};

use crate::check::is_template;
use crate::check::{check_mutation, check_mutation_fields};
use crate::client::XurrentClient;
use crate::connection::CONNECTOR;
use crate::model::Schema;
use crate::mutation::{mutation_output_fields, MutationPlan};
use crate::mutation_fields::{
    check_merged, field_inputs, given_fields, merge_input, relaxed_input_field,
};
use crate::schema_cache::{schema_for, shipped};
use crate::transport::metadata_fields;

/// The action's registry name.
pub const ACTION: &str = "xurrent.mutation";

/// The reference of the action's output schema.
pub const OUTPUT: &str = "mutation_result";

fn mutation_field() -> Field {
    Field::new("mutation", FieldType::String)
        .label("Mutation")
        .required()
        .hint("The name of a mutation of the Xurrent schema, e.g. requestCreate")
}

fn include_field() -> Field {
    Field::new("include_fields", FieldType::Hash)
        .label("Include nested fields")
        .hint("Payload fields to select: `{name: true}` (every top-level record field and `errors` are selected unless set to false)")
}

/// The `xurrent.mutation` action.
pub struct MutationAction(ActionSpec);

impl MutationAction {
    /// The action with its static description (the schemas are computed per step).
    pub fn new() -> MutationAction {
        MutationAction(ActionSpec {
            name: ACTION,
            description: "Run any Xurrent GraphQL mutation; a payload error fails the step",
            input: vec![
                mutation_field(),
                Field::new("input", FieldType::Hash)
                    .label("Input")
                    .hint("The mutation input variables as a JSON object (or give the input type's fields as step inputs)."),
                include_field(),
            ],
            outputs: vec![FieldSchema::new(OUTPUT, vec![])],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

impl Default for MutationAction {
    fn default() -> Self {
        MutationAction::new()
    }
}

/// The computed schemas of a step running `mutation` with `include`.
pub fn mutation_schemas(
    schema: &Schema,
    mutation: &str,
    include: &Value,
) -> Result<ComputedSchemas, String> {
    let plan = MutationPlan::build(schema, mutation, include).map_err(|e| e.to_string())?;
    let mut outputs = mutation_output_fields(schema, &plan);
    outputs.extend(metadata_fields());
    let mut input = vec![
        mutation_field(),
        relaxed_input_field(schema, mutation),
        include_field(),
    ];
    input.extend(field_inputs(schema, mutation));
    Ok(ComputedSchemas {
        input,
        outputs: vec![FieldSchema::new(OUTPUT, outputs)],
    })
}

/// The static checks of a step's raw input against `schema`: an unknown mutation,
/// `include_fields` naming non-object fields, input keys the input type does not have.
fn check_step(schema: &Schema, raw_input: &Value) -> Vec<String> {
    let Some(mutation) = raw_input.get("mutation") else {
        return Vec::new();
    };
    let Some(name) = mutation.as_str().filter(|_| !is_template(mutation)) else {
        if is_template(mutation) {
            return Vec::new();
        }
        return vec!["`mutation` must be the name of a mutation".into()];
    };
    let include = raw_input.get("include_fields").filter(|v| !is_template(v));
    let input = raw_input.get("input").filter(|v| !is_template(v));
    let fields = given_fields(raw_input);
    if fields.is_empty() {
        return check_mutation(schema, name, include, input);
    }
    let mut problems = check_mutation(schema, name, include, None);
    problems.extend(check_mutation_fields(
        schema,
        name,
        raw_input.get("input"),
        &fields,
    ));
    problems
}

#[async_trait]
impl Action for MutationAction {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    /// Offline: against the schema that ships with Ferry.
    fn check(&self, raw_input: &Value, _variables: &[Field]) -> Vec<String> {
        match shipped() {
            Ok(s) => check_step(s, raw_input),
            Err(e) => vec![e],
        }
    }

    fn has_cached_check(&self) -> bool {
        true
    }

    /// `ferry validate --data`: against the connection's cached schema, when there is one.
    async fn check_cached(
        &self,
        store: &dyn ferry_store::Store,
        secrets: &ferry_core::secrets::Secrets,
        connection: Option<&ferry_engine::action::ConnectionRef>,
        raw_input: &Value,
        _variables: &[Field],
    ) -> Option<Vec<String>> {
        crate::schema_cache::check_with_cached(store, secrets, connection, |s| {
            check_step(s, raw_input)
        })
        .await
    }

    fn computes_schemas(&self) -> bool {
        true
    }

    /// The schemas depend on the mutation and the included payload fields only.
    fn schema_selector(&self, raw_input: &Value) -> Value {
        json!({
            "mutation": raw_input.get("mutation").cloned().unwrap_or(Value::Null),
            "include_fields": raw_input.get("include_fields").cloned().unwrap_or(Value::Null),
        })
    }

    /// The generation of the connection's cached schema: a refresh recomputes the schemas.
    async fn schema_version(
        &self,
        store: &dyn ferry_store::Store,
        secrets: &ferry_core::secrets::Secrets,
        connection: Option<&ferry_engine::action::ConnectionRef>,
    ) -> Result<Option<String>, String> {
        crate::schema_cache::schema_version(store, secrets, connection).await
    }

    /// The schema is the connection's ([`schema_for`]); a throttled or unavailable Xurrent
    /// while fetching it reschedules the step.
    async fn compute_schemas(&self, ctx: &SchemaContext<'_>) -> Result<ComputedSchemas, Signal> {
        let mutation = ctx
            .selector
            .get("mutation")
            .filter(|v| !is_template(v))
            .and_then(Value::as_str)
            .ok_or_else(|| Signal::Fail("`mutation` must be a literal mutation name".into()))?;
        let include = ctx
            .selector
            .get("include_fields")
            .filter(|v| !is_template(v))
            .cloned()
            .unwrap_or(Value::Null);
        let connection = ctx
            .connection
            .ok_or_else(|| Signal::Fail("An outbound xurrent connection is required.".into()))?;
        let schema = schema_for(ctx.services, connection).await?;
        mutation_schemas(&schema, mutation, &include).map_err(Signal::Fail)
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = ctx
            .connection
            .ok_or_else(|| Signal::Fail("An outbound xurrent connection is required.".into()))?;
        let mutation = ctx
            .input_str("mutation")
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| Signal::Fail("Input field 'mutation' is required.".into()))?
            .to_string();
        let include = ctx
            .input
            .get("include_fields")
            .cloned()
            .unwrap_or(Value::Null);
        let schema = schema_for(ctx.services, connection).await?;
        let plan = MutationPlan::build(&schema, &mutation, &include)
            .map_err(|e| Signal::Fail(e.to_string()))?;
        let fields = given_fields(&ctx.input);
        let input = merge_input(ctx.input.get("input"), &fields).map_err(Signal::Fail)?;
        if !fields.is_empty() {
            check_merged(&schema, &mutation, &input).map_err(Signal::Fail)?;
        }
        let body = plan
            .request(&input)
            .map_err(|e| Signal::Fail(e.to_string()))?;
        // Secret values (e.g. `{{ env.X }}` of a secret variable) reach the action sealed;
        // only the request carries their plain text (spec §6.3 step 2).
        let variables = match body.get("variables") {
            Some(v) => Some(
                crate::client::reveal_for_graphql(ctx.services, connection, v).map_err(|e| {
                    tracing::warn!(mutation = %mutation, error = %e, "xurrent.mutation: a secret in the input cannot be revealed");
                    Signal::Fail(format!("Input of mutation '{mutation}': {e}"))
                })?,
            ),
            None => None,
        };
        let client = XurrentClient::new(ctx.services, connection)?;
        let response = client.graphql(&plan.text, variables).await?;
        let payload = plan.read(&response.data).map_err(|e| {
            tracing::info!(mutation = %mutation, request_id = ?response.meta.request_id, error = %e, "xurrent.mutation failed");
            Signal::Fail(e.to_string())
        })?;
        let mut out = match response.meta.to_json() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        match payload {
            Value::Object(p) => out.extend(p),
            other => {
                return Err(Signal::Fail(format!(
                    "The payload of mutation '{mutation}' is not an object: {other}"
                )))
            }
        }
        ctx.log(format!(
            "Mutation '{mutation}' done (request id {})",
            response.meta.request_id.as_deref().unwrap_or("-")
        ));
        Ok(vec![Output::new(OUTPUT, Value::Object(out))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_follow_the_mutation() {
        let s = mutation_schemas(shipped().unwrap(), "requestCreate", &Value::Null).unwrap();
        let input = s.input.iter().find(|f| f.id == "input").unwrap();
        assert_eq!(input.ty, FieldType::Nested);
        assert!(input.fields.iter().any(|f| f.id == "subject"), "{input:?}");
        let out = &s.outputs[0];
        assert_eq!(out.reference, OUTPUT);
        for id in ["request", "errors", "request_id", "ratelimit", "costlimit"] {
            assert!(out.fields.iter().any(|f| f.id == id), "{id} missing");
        }
        let err = mutation_schemas(shipped().unwrap(), "requestMake", &Value::Null).unwrap_err();
        assert_eq!(err, "unknown mutation 'requestMake'");
    }

    #[test]
    fn check_names_an_unknown_mutation() {
        let a = MutationAction::new();
        let problems = a.check(
            &json!({"mutation": "requestCreat", "input": {"subject": "x"}}),
            &[],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("unknown mutation 'requestCreat'"),
            "{problems:?}"
        );
        assert!(
            problems[0].contains("did you mean 'requestCreate'"),
            "{problems:?}"
        );
        assert!(a
            .check(
                &json!({"mutation": "requestCreate", "input": {"subject": "x"}}),
                &[]
            )
            .is_empty());
        assert!(a
            .check(&json!({"mutation": "{{ trigger.m }}", "input": {}}), &[])
            .is_empty());
        // The include of docs/xurrent.md's snippet is valid.
        let include = json!({"request_fields": {"requestedBy": true}});
        let ok = a.check(
            &json!({"mutation": "requestCreate", "input": {"subject": "x"}, "include_fields": include}),
            &[],
        );
        assert!(ok.is_empty(), "{ok:?}");
        let s = mutation_schemas(shipped().unwrap(), "requestCreate", &include).unwrap();
        let request = s.outputs[0]
            .fields
            .iter()
            .find(|f| f.id == "request")
            .unwrap();
        assert!(
            request.fields.iter().any(|f| f.id == "requestedBy"),
            "{request:?}"
        );
    }
}
