//! The Mutation action's input given by individual fields (spec §6.1, the issue's "input by
//! individual fields or as one JSON object"), as pure functions.
//!
//! Besides `input` (one JSON object), every field of the mutation's input type is also a
//! step input of its own (`subject: …`, `category: …`), except the names the action uses
//! itself ([`RESERVED_INPUTS`]), which can only be given inside `input`. The rule when both
//! forms are used: the fields are **added** to `input`; a key given both as a field and
//! inside `input` is an error (`ferry validate` and the run both name it), never silently
//! overridden. The merged object is then checked against the input type (required fields,
//! types) before it is sent.

use ferry_core::schema::{Field, Schema as FieldSchema};
use serde_json::{Map, Value};

use crate::inputs::input_fields;
use crate::model::Schema;
use crate::mutation::{mutation_input_field, mutation_input_type};

/// Step inputs of the action itself; input-type fields with these names go inside `input`.
pub const RESERVED_INPUTS: [&str; 4] = ["mutation", "input", "include_fields", "refresh_schema"];

/// The message for a key given both as a field and inside `input`.
pub fn twice(key: &str) -> String {
    format!("input field '{key}' is given twice: as a step input and inside `input`; give it once")
}

/// The individual-field step inputs of a mutation: the fields of its input type (as the
/// nested `input` has them, `clientMutationId` left out), none of them required (a required
/// field may come through `input`; the merged input is checked), reserved names left out.
pub fn field_inputs(schema: &Schema, mutation: &str) -> Vec<Field> {
    let ty = mutation_input_type(schema, mutation);
    input_fields(schema, &ty, false)
        .into_iter()
        .filter(|f| !RESERVED_INPUTS.contains(&f.id.as_str()))
        .map(|mut f| {
            f.required = false;
            f
        })
        .collect()
}

/// The `input` step input of the computed schema: the nested input type with its top-level
/// fields not required and `input` itself optional, since fields may come as step inputs.
pub fn relaxed_input_field(schema: &Schema, mutation: &str) -> Field {
    let mut f = mutation_input_field(schema, mutation);
    f.required = false;
    for sub in &mut f.fields {
        sub.required = false;
    }
    f
}

/// The individual fields present in a step's (resolved or raw) input: every key but the
/// reserved ones.
pub fn given_fields(step_input: &Value) -> Map<String, Value> {
    step_input
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !RESERVED_INPUTS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The mutation's input: `input` (absent or null: `{}`) with the individual fields added; a
/// key in both is an error ([`twice`]).
pub fn merge_input(input: Option<&Value>, fields: &Map<String, Value>) -> Result<Value, String> {
    let mut merged = match input {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "Input invalid: `input` must be a JSON object, found {other}"
            ))
        }
    };
    for (k, v) in fields {
        if merged.contains_key(k) {
            return Err(format!("Input invalid: {}", twice(k)));
        }
        merged.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(merged))
}

/// Check the merged input against the mutation's input type (required fields, types), as
/// the step's `input` would be: `Input invalid: …` naming the field.
pub fn check_merged(schema: &Schema, mutation: &str, merged: &Value) -> Result<(), String> {
    let field = mutation_input_field(schema, mutation);
    let wrapper = FieldSchema::new("input", vec![field]);
    let mut obj = Map::new();
    obj.insert("input".into(), merged.clone());
    wrapper
        .resolve(&Value::Object(obj), None)
        .map(|_| ())
        .map_err(|e| format!("Input invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::embedded().unwrap()
    }

    #[test]
    fn fields_are_the_input_types_fields_none_required() {
        let s = schema();
        let fields = field_inputs(&s, "requestCreate");
        let subject = fields.iter().find(|f| f.id == "subject").unwrap();
        assert!(!subject.required);
        assert!(fields.iter().any(|f| f.id == "category"));
        assert!(!fields.iter().any(|f| f.id == "clientMutationId"));
        let input = relaxed_input_field(&s, "requestCreate");
        assert!(!input.required);
        assert!(input.fields.iter().all(|f| !f.required));
    }

    #[test]
    fn fields_are_added_to_input_and_a_key_given_twice_is_an_error() {
        let fields = given_fields(
            &json!({"mutation": "requestCreate", "input": {"category": "rfc"},
            "include_fields": {}, "subject": "Printer"}),
        );
        assert_eq!(fields.len(), 1);
        let merged = merge_input(Some(&json!({"category": "rfc"})), &fields).unwrap();
        assert_eq!(merged, json!({"category": "rfc", "subject": "Printer"}));
        assert_eq!(
            merge_input(None, &fields).unwrap(),
            json!({"subject": "Printer"})
        );
        let e = merge_input(Some(&json!({"subject": "x"})), &fields).unwrap_err();
        assert_eq!(
            e,
            "Input invalid: input field 'subject' is given twice: as a step input and inside `input`; give it once"
        );
        assert!(merge_input(Some(&json!("x")), &fields).is_err());
    }

    #[test]
    fn the_merged_input_is_checked_against_the_input_type() {
        let s = schema();
        assert!(check_merged(&s, "requestUpdate", &json!({"id": "x", "note": "n"})).is_ok());
        let e = check_merged(&s, "requestUpdate", &json!({"note": "n"})).unwrap_err();
        assert!(e.contains("'id' is required"), "{e}");
        assert!(e.starts_with("Input invalid: "), "{e}");
    }
}
