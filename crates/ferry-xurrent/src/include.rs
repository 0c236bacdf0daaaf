//! The "include nested fields" model (spec §4.3): which object-typed fields a query or a
//! mutation selects, to a depth of [`MAX_DEPTH`](crate::MAX_DEPTH).

use std::collections::BTreeMap;

use ferry_core::schema::{Field, FieldType};
use serde_json::{Map, Value};

use crate::model::{Kind, Schema, MAX_DEPTH, MAX_NAME_LEN};
use crate::names::humanize;

/// The nested fields included at one level, each with what is included below it.
///
/// The runbook form is the spec's `include_fields` object: `{organization: true,
/// organization_fields: {members: true}}` — a key whose value is `true` (or `"true"`) and
/// whose name does not end in `_fields` is included; the sub-include of `x` is the value
/// under `x_fields`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Include {
    /// Included field names with their sub-includes (sorted, so every builder is
    /// deterministic).
    pub fields: BTreeMap<String, Include>,
}

impl Include {
    /// Nothing included.
    pub fn none() -> Include {
        Include::default()
    }

    /// Read the runbook form (see the type's documentation). Anything that is not an object is
    /// "nothing included".
    pub fn from_json(v: &Value) -> Include {
        let mut out = Include::default();
        let Some(m) = v.as_object() else {
            return out;
        };
        for (k, val) in m {
            if k.ends_with("_fields") || !is_true(val) {
                continue;
            }
            let sub = m
                .get(&format!("{k}_fields"))
                .map(Include::from_json)
                .unwrap_or_default();
            out.fields.insert(k.clone(), sub);
        }
        out
    }

    /// The runbook form of this include (`{x: true, x_fields: {...}}`; empty sub-includes
    /// are left out).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, sub) in &self.fields {
            m.insert(k.clone(), Value::Bool(true));
            if !sub.fields.is_empty() {
                m.insert(format!("{k}_fields"), sub.to_json());
            }
        }
        Value::Object(m)
    }

    /// Include the chain of fields `path` (`["organization", "manager"]`), keeping what is
    /// already included.
    pub fn with_path(mut self, path: &[&str]) -> Include {
        let mut cur = &mut self;
        for p in path {
            cur = cur.fields.entry((*p).to_string()).or_default();
        }
        self
    }

    /// The sub-include of `name` when `name` is included.
    pub fn get(&self, name: &str) -> Option<&Include> {
        self.fields.get(name)
    }
}

/// `true` or the string `"true"` (spec §4.3).
pub(crate) fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str() == Some("true")
}

/// The type a nested field leads to: the node type of a connection, else the unwrapped type.
pub(crate) fn sub_type<'a>(schema: &'a Schema, ty: &'a crate::model::TypeRef) -> &'a str {
    let u = schema.unwrap(ty);
    if matches!(u.kind, Kind::Object | Kind::Interface) && schema.is_connection(u.name) {
        schema.node_type(u.name).unwrap_or(u.name)
    } else {
        u.name
    }
}

/// The nested-kind, non-skipped fields of `type_name` with names of at most 40 characters,
/// sorted by name: the options of an include level (spec §4.3).
pub fn include_options<'a>(schema: &'a Schema, type_name: &str) -> Vec<&'a crate::FieldDef> {
    let mut out: Vec<&crate::FieldDef> = schema
        .fields_of(type_name)
        .into_iter()
        .filter(|f| {
            !f.is_skipped()
                && f.name.chars().count() <= MAX_NAME_LEN
                && schema.unwrap(&f.ty).kind.is_nested()
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The `include_fields` input field (label `Include nested fields`, nested) for a target
/// type: one boolean per option (default `false`), and for every option the user's value
/// includes (`value`), a section `<name>_fields` with the options of the field's type, to a
/// depth of 6 (spec §4.3).
pub fn include_fields_field(schema: &Schema, type_name: &str, value: &Value) -> Field {
    Field::new("include_fields", FieldType::Nested)
        .label("Include nested fields")
        .with_fields(include_level(schema, type_name, value, 1))
}

fn include_level(schema: &Schema, type_name: &str, value: &Value, depth: usize) -> Vec<Field> {
    let mut out = Vec::new();
    for opt in include_options(schema, type_name) {
        out.push(
            Field::new(&opt.name, FieldType::Boolean)
                .label(&humanize(&opt.name))
                .default_value(Value::Bool(false)),
        );
        let chosen = value.get(&opt.name).is_some_and(is_true);
        if chosen && depth < MAX_DEPTH {
            let sub = sub_type(schema, &opt.ty);
            if !include_options(schema, sub).is_empty() {
                let key = format!("{}_fields", opt.name);
                let sub_value = value.get(&key).cloned().unwrap_or(Value::Null);
                out.push(
                    Field::new(&key, FieldType::Nested)
                        .label(&format!("{} fields", humanize(&opt.name)))
                        .with_fields(include_level(schema, sub, &sub_value, depth + 1)),
                );
            }
        }
    }
    out
}
