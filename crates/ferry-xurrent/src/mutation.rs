//! The Mutation action's pure half (spec §6): any mutation of the schema, its input field,
//! its payload selection and output fields, the request body and reading the answer.

use ferry_core::schema::{Field, FieldType};
use serde_json::{json, Value};

use crate::flatten::flatten;
use crate::include::{include_options, Include};
use crate::inputs::input_fields;
use crate::model::{Schema, MAX_NAME_LEN};
use crate::names::default_input_type;
use crate::select::{output_fields, selection};
use crate::Error;

/// Top-level input fields that stay visible even when optional (spec §6.1).
pub const ALWAYS_VISIBLE_INPUTS: [&str; 5] = ["subject", "name", "source", "sourceID", "note"];

/// A mutation built once per step.
#[derive(Clone, Debug, PartialEq)]
pub struct MutationPlan {
    /// The mutation's name (`requestCreate`).
    pub mutation: String,
    /// Its input type (`RequestCreateInput`).
    pub input_type: String,
    /// Its payload type (`RequestCreatePayload`).
    pub payload_type: String,
    /// The effective include (every top-level object field of the payload unless excluded).
    pub include: Include,
    /// The payload selection.
    pub selection: String,
    /// `mutation($input: <InputType>!) { <mutation>(input: $input) { <selection> } }`.
    pub text: String,
}

/// The input type of a mutation: the unwrapped type of its `input` argument, else
/// `<Mutation>Input` (spec §6.1).
pub fn mutation_input_type(schema: &Schema, mutation: &str) -> String {
    schema
        .mutation_root()
        .and_then(|m| m.field(mutation))
        .and_then(|f| f.arg("input"))
        .map(|a| a.ty.name().to_string())
        .unwrap_or_else(|| default_input_type(mutation))
}

/// The effective include of a mutation payload (spec §6.2): the user's `include_fields`
/// plus every top-level object-typed payload field the user did not set explicitly, so the
/// record (`request`) and `errors` are selected by default and can be excluded with `false`.
pub fn effective_include(schema: &Schema, payload_type: &str, user: &Value) -> Include {
    let mut raw = user.as_object().cloned().unwrap_or_default();
    for opt in include_options(schema, payload_type) {
        if !raw.contains_key(&opt.name) {
            raw.insert(opt.name.clone(), Value::Bool(true));
        }
    }
    Include::from_json(&Value::Object(raw))
}

impl MutationPlan {
    /// Build the mutation `mutation` with the user's `include_fields` value. An unknown
    /// mutation is [`Error::UnknownMutation`].
    pub fn build(schema: &Schema, mutation: &str, include: &Value) -> Result<MutationPlan, Error> {
        let f = schema
            .mutation_root()
            .and_then(|m| m.field(mutation))
            .filter(|f| f.name.chars().count() <= MAX_NAME_LEN)
            .ok_or_else(|| Error::UnknownMutation(mutation.to_string()))?;
        let input_type = mutation_input_type(schema, mutation);
        let payload_type = f.ty.name().to_string();
        let include = effective_include(schema, &payload_type, include);
        let sel = selection(schema, &payload_type, &include)?;
        let input_arg = f.arg("input");
        let text = match input_arg {
            Some(_) => format!(
                "mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ {sel} }} }}"
            ),
            None => format!("mutation {{ {mutation} {{ {sel} }} }}"),
        };
        Ok(MutationPlan {
            mutation: mutation.to_string(),
            input_type,
            payload_type,
            include,
            selection: sel,
            text,
        })
    }

    /// The JSON body `{"query", "variables": {"input": …}}`. The input is one JSON object —
    /// built from individual fields or given whole; anything else is
    /// [`Error::InvalidInput`]. Values pass through unchanged (custom field values of any JSON
    /// type included).
    pub fn request(&self, input: &Value) -> Result<Value, Error> {
        if !self.text.contains("$input") {
            return Ok(json!({"query": self.text}));
        }
        if !input.is_object() {
            return Err(Error::InvalidInput(format!(
                "the input of mutation '{}' must be a JSON object, found {}",
                self.mutation,
                type_word(input)
            )));
        }
        Ok(json!({"query": self.text, "variables": {"input": input}}))
    }

    /// Read the answer's `data` (spec §6.3): `data.<mutation>` must not be blank
    /// (`No data returned for mutation '<mutation>'`); a non-empty `errors` list with messages
    /// is [`Error::MutationErrors`] (`Mutation error: a; b`); otherwise the flattened payload.
    pub fn read(&self, data: &Value) -> Result<Value, Error> {
        let m = match data.get(&self.mutation) {
            None | Some(Value::Null) => return Err(Error::NoMutationData(self.mutation.clone())),
            Some(Value::Object(o)) if o.is_empty() => {
                return Err(Error::NoMutationData(self.mutation.clone()))
            }
            Some(m) => m,
        };
        let messages = payload_error_messages(m);
        if !messages.is_empty() {
            return Err(Error::MutationErrors(messages));
        }
        Ok(flatten(m))
    }
}

/// The non-null `message`s of a payload's `errors` list.
pub fn payload_error_messages(payload: &Value) -> Vec<String> {
    payload
        .get("errors")
        .and_then(Value::as_array)
        .map(|errs| {
            errs.iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The `input` field of a Mutation step (spec §6.1): nested and required with the input
/// type's fields (schema order, `clientMutationId` left out), or — without a schema or for an
/// input type without fields — a required `hash` ("The mutation input variables as a JSON
/// object.").
pub fn mutation_input_field(schema: &Schema, mutation: &str) -> Field {
    let input_type = mutation_input_type(schema, mutation);
    let fields = input_fields(schema, &input_type, false);
    if fields.is_empty() {
        Field::new("input", FieldType::Hash)
            .label("Input")
            .required()
            .hint("The mutation input variables as a JSON object.")
    } else {
        Field::new("input", FieldType::Nested)
            .label("Input")
            .required()
            .with_fields(fields)
    }
}

/// The output fields of a Mutation step (spec §6.2): the payload's fields with the effective
/// include, and an `errors` list (`message`, `path`) when the payload has none.
pub fn mutation_output_fields(schema: &Schema, plan: &MutationPlan) -> Vec<Field> {
    let mut out = output_fields(schema, &plan.payload_type, &plan.include);
    if !out.iter().any(|f| f.id == "errors") {
        out.push(
            Field::new("errors", FieldType::Nested)
                .label("Errors")
                .array()
                .with_fields(vec![
                    Field::new("message", FieldType::String).label("Message"),
                    Field::new("path", FieldType::String).label("Path").array(),
                ]),
        );
    }
    out
}
