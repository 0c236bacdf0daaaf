//! Input field derivation (spec §4.6): Ferry fields for a GraphQL input object (a query's
//! `filter`, a mutation's `input`), so that the engine can use them as computed input schemas.

use std::collections::HashSet;

use ferry_core::schema::{Field, FieldType};
use serde_json::{json, Value};

use crate::model::{Kind, Schema, MAX_DEPTH, MAX_NAME_LEN};
use crate::names::humanize;

/// The most input fields derived for one input type, all levels together (spec §4.6).
pub const MAX_INPUT_FIELDS: usize = 5000;

/// Ferry fields for the input fields of the input object `type_name` (spec §4.6).
///
/// - `sorted`: order the top level by name (filters) instead of schema order (mutation input).
/// - `clientMutationId` and names over 40 characters are left out.
/// - `required` = not a list, a `NON_NULL` layer and no default; `array` for lists; `hint`
///   from the description; enums are strings with their values (wire spelling as id).
/// - Nested input objects become nested fields to a depth of 6; an input object that cannot
///   be expanded (too deep, already on the current path — a cycle — or past the 5000-field
///   budget) becomes a `hash` field, which accepts any JSON object (the reference uses an
///   empty nested field there, which would strip every key).
pub fn input_fields(schema: &Schema, type_name: &str, sorted: bool) -> Vec<Field> {
    let mut counter = 0usize;
    let mut path = HashSet::new();
    derive(schema, type_name, 1, sorted, &mut path, &mut counter)
}

fn derive(
    schema: &Schema,
    type_name: &str,
    depth: usize,
    sorted: bool,
    path: &mut HashSet<String>,
    counter: &mut usize,
) -> Vec<Field> {
    let mut out = Vec::new();
    let Some(t) = schema.get(type_name) else {
        return out;
    };
    if depth > MAX_DEPTH || path.contains(type_name) {
        return out;
    }
    path.insert(type_name.to_string());
    let mut fields: Vec<_> = t.input_fields.iter().collect();
    if sorted {
        fields.sort_by(|a, b| a.name.cmp(&b.name));
    }
    for iv in fields {
        if *counter >= MAX_INPUT_FIELDS {
            break;
        }
        *counter += 1;
        if iv.name == "clientMutationId" || iv.name.chars().count() > MAX_NAME_LEN {
            continue;
        }
        let u = schema.unwrap(&iv.ty);
        let mut f = match u.kind {
            Kind::InputObject
                if depth < MAX_DEPTH && *counter < MAX_INPUT_FIELDS && !path.contains(u.name) =>
            {
                let subs = derive(schema, u.name, depth + 1, false, path, counter);
                if subs.is_empty() {
                    Field::new(&iv.name, FieldType::Hash)
                } else {
                    Field::new(&iv.name, FieldType::Nested).with_fields(subs)
                }
            }
            k if k.is_nested() => Field::new(&iv.name, FieldType::Hash),
            Kind::Enum => Field::new(&iv.name, FieldType::String).enumeration(
                schema
                    .get(u.name)
                    .map(|e| {
                        e.enum_values
                            .iter()
                            .map(|v| json!({"id": v.json_value(), "label": v.json_value()}))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => Field::new(&iv.name, schema.field_type(&u)),
        };
        f = f.label(&humanize(&iv.name));
        if u.list {
            f.array = true;
        }
        if !u.list && iv.is_required_without_default() {
            f.required = true;
        }
        if let Some(d) = &iv.description {
            f = f.hint(d);
        }
        out.push(f);
    }
    path.remove(type_name);
    out
}

/// The fields of an order input type (spec §5.1 `order`): schema order, enums with humanized
/// labels (`createdAt` → `Created At`), `required` for any `NON_NULL`, hints from descriptions.
pub fn order_fields(schema: &Schema, type_name: &str) -> Vec<Field> {
    let Some(t) = schema.get(type_name) else {
        return Vec::new();
    };
    t.input_fields
        .iter()
        .map(|iv| {
            let u = schema.unwrap(&iv.ty);
            let mut f = if u.kind == Kind::Enum {
                Field::new(&iv.name, FieldType::String)
                    .enumeration(crate::select::humanized_enumeration(schema, u.name))
            } else {
                Field::new(&iv.name, schema.field_type(&u))
            };
            f = f.label(&humanize(&iv.name));
            f.required = u.required;
            f.array = u.list;
            if let Some(d) = &iv.description {
                f = f.hint(d);
            }
            f
        })
        .collect()
}

/// Drop null, empty-string, empty-list and empty-object entries from an object, at every
/// level of nested objects (`false` and `0` are kept). Used for filters: the reference only
/// compacts the top level (spec §10.18), which sends empty nested filters.
pub fn compact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter_map(|(k, v)| {
                    let v = compact(v);
                    let blank = match &v {
                        Value::Null => true,
                        Value::String(s) => s.is_empty(),
                        Value::Array(a) => a.is_empty(),
                        Value::Object(o) => o.is_empty(),
                        _ => false,
                    };
                    (!blank).then(|| (k.clone(), v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(compact).collect()),
        other => other.clone(),
    }
}
