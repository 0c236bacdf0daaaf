//! Output field derivation (spec §4.4) and the GraphQL selection-text builder (spec §4.5).
//!
//! Both walk the same fields in the same order, so what is selected is exactly what the
//! derived output schema declares: scalars and enums always, object-typed fields only when
//! included, connections as lists of their nodes (selected with `(first: 100) { nodes { … } }`),
//! at most [`MAX_DEPTH`] levels deep. Unlike the reference, a union is selected with
//! `__typename` and one inline fragment per member, so every generated text is valid GraphQL.

use ferry_core::schema::{Field, FieldType};
use serde_json::{json, Value};

use crate::include::{sub_type, Include};
use crate::model::{Kind, Schema, MAX_DEPTH};
use crate::names::humanize;
use crate::Error;

/// Page size of nested connections: fetched once with `first: 100`, never paginated.
pub const NESTED_PAGE_SIZE: u32 = 100;

/// The most fields one selection may contain; a larger include is refused with
/// [`Error::SelectionTooLarge`] instead of sending a query no server would accept.
pub const MAX_SELECTED_FIELDS: usize = 20_000;

/// The selection text for `type_name` at depth 1 with `include` (spec §4.5): `id name
/// primaryEmail disabled organization { id name }`. Parts are joined with single spaces;
/// the order is the schema's.
pub fn selection(schema: &Schema, type_name: &str, include: &Include) -> Result<String, Error> {
    selection_at(schema, type_name, include, 1)
}

/// [`selection`] at an explicit depth (a depth above 6 gives `""`).
pub fn selection_at(
    schema: &Schema,
    type_name: &str,
    include: &Include,
    depth: usize,
) -> Result<String, Error> {
    let mut budget = MAX_SELECTED_FIELDS;
    let mut out = String::new();
    select_into(schema, type_name, include, depth, &mut budget, &mut out)?;
    Ok(out)
}

fn push(out: &mut String, part: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(part);
}

fn spend(budget: &mut usize) -> Result<(), Error> {
    if *budget == 0 {
        return Err(Error::SelectionTooLarge(MAX_SELECTED_FIELDS));
    }
    *budget -= 1;
    Ok(())
}

fn select_into(
    schema: &Schema,
    type_name: &str,
    include: &Include,
    depth: usize,
    budget: &mut usize,
    out: &mut String,
) -> Result<(), Error> {
    if type_name.is_empty() || depth > MAX_DEPTH {
        return Ok(());
    }
    if let Some(t) = schema.get(type_name) {
        if t.kind == Kind::Union {
            spend(budget)?;
            push(out, "__typename");
            for member in &t.possible_types {
                let mut inner = String::new();
                select_into(schema, member, include, depth, budget, &mut inner)?;
                if !inner.is_empty() {
                    push(out, &format!("... on {member} {{ {inner} }}"));
                }
            }
            return Ok(());
        }
    }
    let fields = schema.fields_of(type_name);
    if fields.is_empty() {
        spend(budget)?;
        push(out, "id");
        return Ok(());
    }
    for f in fields {
        if f.is_skipped() {
            continue;
        }
        let u = schema.unwrap(&f.ty);
        if !u.kind.is_nested() {
            spend(budget)?;
            push(out, &f.name);
            continue;
        }
        let Some(sub) = include.get(&f.name) else {
            continue;
        };
        let connection =
            matches!(u.kind, Kind::Object | Kind::Interface) && schema.is_connection(u.name);
        let target = sub_type(schema, &f.ty);
        let mut inner = String::new();
        select_into(schema, target, sub, depth + 1, budget, &mut inner)?;
        if inner.is_empty() {
            continue;
        }
        spend(budget)?;
        if connection {
            let args = if f.arg("first").is_some() {
                format!("(first: {NESTED_PAGE_SIZE})")
            } else {
                String::new()
            };
            push(out, &format!("{}{args} {{ nodes {{ {inner} }} }}", f.name));
        } else {
            push(out, &format!("{} {{ {inner} }}", f.name));
        }
    }
    Ok(())
}

/// The output fields of `type_name` at depth 1 with `include` (spec §4.4): scalars with their
/// mapped type, enums as strings with their values, included objects as nested fields and
/// included connections as nested **lists** of their node type (the `nodes` layer is not
/// represented: results are [flattened](crate::flatten)). Ids are the GraphQL names, labels
/// are humanized, hints are the descriptions.
pub fn output_fields(schema: &Schema, type_name: &str, include: &Include) -> Vec<Field> {
    output_fields_at(schema, type_name, include, 1)
}

/// [`output_fields`] at an explicit depth (a depth above 6 gives no fields).
pub fn output_fields_at(
    schema: &Schema,
    type_name: &str,
    include: &Include,
    depth: usize,
) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    if type_name.is_empty() || depth > MAX_DEPTH {
        return out;
    }
    for f in schema.fields_of(type_name) {
        if f.is_skipped() {
            continue;
        }
        let u = schema.unwrap(&f.ty);
        let mut field = match u.kind {
            Kind::Scalar => Field::new(&f.name, schema.field_type(&u)),
            Kind::Enum => Field::new(&f.name, FieldType::String).enumeration(
                schema
                    .get(u.name)
                    .map(|t| {
                        t.enum_values
                            .iter()
                            .map(|e| json!({"id": e.json_value(), "label": e.json_value()}))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => {
                let Some(sub) = include.get(&f.name) else {
                    continue;
                };
                let connection = matches!(u.kind, Kind::Object | Kind::Interface)
                    && schema.is_connection(u.name);
                let subs = output_fields_at(schema, sub_type(schema, &f.ty), sub, depth + 1);
                if subs.is_empty() {
                    continue;
                }
                let field = Field::new(&f.name, FieldType::Nested).with_fields(subs);
                if connection {
                    field.array()
                } else {
                    field
                }
            }
        };
        field = field.label(&humanize(&f.name));
        if u.list {
            field.array = true;
        }
        if let Some(d) = &f.description {
            field = field.hint(d);
        }
        if !out.iter().any(|o| o.id == field.id) {
            out.push(field);
        }
    }
    out
}

/// The enumeration of an enum type as `{id, label}` entries with humanized labels (used for
/// `view` and `order`, spec §5.1): `supportDomain` → `Support Domain`.
pub fn humanized_enumeration(schema: &Schema, enum_name: &str) -> Vec<Value> {
    schema
        .get(enum_name)
        .map(|t| {
            t.enum_values
                .iter()
                .map(|e| json!({"id": e.json_value(), "label": humanize(&e.name)}))
                .collect()
        })
        .unwrap_or_default()
}
