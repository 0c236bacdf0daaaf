//! Static checks of Query and Mutation steps for `ferry validate`: each returns messages
//! naming what is wrong (the caller adds `file:line`). Values that are templates (`{{ … }}`,
//! `{% … %}`) are only known at run time and are not checked.

use serde_json::Value;

use crate::include::include_options;
use crate::include::sub_type;
use crate::model::{Kind, Schema, TypeRef, MAX_DEPTH};
use crate::mutation::mutation_input_type;

const MAX_LISTED: usize = 12;

/// Whether an input value is a template (checked when it runs, not statically).
pub(crate) fn is_template(v: &Value) -> bool {
    v.as_str().is_some_and(ferry_core::mapping::is_template)
}

/// Edit distance between two names (insertions, deletions, substitutions and transpositions
/// of neighbours), case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// ` (did you mean 'x'?)` for the closest name within a third of the name's length (at least
/// one edit, at most three), else nothing.
fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

fn listing(names: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = names.collect();
    let mut s = all
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > MAX_LISTED {
        s.push_str(&format!(", … ({} in all)", all.len()));
    }
    s
}

/// Check a Query step: the root object exists and can be called; `include_fields` names only
/// object-typed fields (at every level); `view` is a value of the view enum; `filter` names only
/// fields of the filter type with valid enum values; `order` entries name valid order fields.
pub fn check_query(
    schema: &Schema,
    object: &str,
    include: Option<&Value>,
    view: Option<&Value>,
    filter: Option<&Value>,
    order: Option<&Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    let root = match schema.root_object(object) {
        Ok(r) => r,
        Err(e) => {
            let names = schema
                .query_root()
                .map(|q| q.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>())
                .unwrap_or_default();
            out.push(format!("{e}{}", did_you_mean(object, names)));
            return out;
        }
    };
    if let Some(inc) = include {
        check_include(
            schema,
            root.record_type(),
            inc,
            "include_fields",
            1,
            &mut out,
        );
    }
    if let Some(v) = view.filter(|v| !v.is_null() && !is_template(v)) {
        match &root.view {
            None => out.push(format!("query object '{object}' has no view argument")),
            Some(info) => check_enum(schema, &info.type_name, v, "view", &mut out),
        }
    }
    if let Some(f) = filter.filter(|f| !f.is_null() && !is_template(f)) {
        match &root.filter {
            None => out.push(format!("query object '{object}' has no filter argument")),
            Some(info) => check_input(schema, &info.type_name, f, "filter", &mut out),
        }
    }
    if let Some(o) = order.filter(|o| !o.is_null() && !is_template(o)) {
        match &root.order {
            None => out.push(format!("query object '{object}' has no order argument")),
            Some(info) => {
                let items: Vec<&Value> = match o {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for (i, item) in items.into_iter().enumerate() {
                    check_input(
                        schema,
                        &info.type_name,
                        item,
                        &format!("order[{i}]"),
                        &mut out,
                    );
                }
            }
        }
    }
    out
}

/// Check a Mutation step: the mutation exists; `include_fields` names only object-typed
/// payload fields; a literal `input` object names only fields of the input type, with valid
/// enum values.
pub fn check_mutation(
    schema: &Schema,
    mutation: &str,
    include: Option<&Value>,
    input: Option<&Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(f) = schema.mutation_root().and_then(|m| m.field(mutation)) else {
        let names = schema
            .mutation_root()
            .map(|m| m.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>())
            .unwrap_or_default();
        out.push(format!(
            "{}{}",
            crate::Error::UnknownMutation(mutation.to_string()),
            did_you_mean(mutation, names)
        ));
        return out;
    };
    let payload = f.ty.name().to_string();
    if let Some(inc) = include {
        check_include(schema, &payload, inc, "include_fields", 1, &mut out);
    }
    if let Some(i) = input.filter(|i| !i.is_null() && !is_template(i)) {
        let ty = mutation_input_type(schema, mutation);
        check_input(schema, &ty, i, "input", &mut out);
    }
    out
}

/// Check the individual-fields form of a Mutation step's input (spec §6.1; see
/// [`crate::mutation_fields`]): every field must be a field of the mutation's input type (an
/// unknown one is named, with a suggestion); a key given both as a field and inside a literal
/// `input` is an error; then the merged literal input is checked like [`check_mutation`]
/// checks `input` (required keys, enum values). When `input` is a template only the fields'
/// own values are checked. An unknown mutation gives nothing here ([`check_mutation`] names it).
pub fn check_mutation_fields(
    schema: &Schema,
    mutation: &str,
    input: Option<&Value>,
    fields: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    if fields.is_empty()
        || schema
            .mutation_root()
            .and_then(|m| m.field(mutation))
            .is_none()
    {
        return out;
    }
    let ty = mutation_input_type(schema, mutation);
    let Some(t) = schema.get(&ty) else {
        return out;
    };
    let mut known = serde_json::Map::new();
    for (k, v) in fields {
        if t.input_field(k).is_some()
            && !crate::mutation_fields::RESERVED_INPUTS.contains(&k.as_str())
        {
            known.insert(k.clone(), v.clone());
            continue;
        }
        let names = t
            .input_fields
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| *n != "clientMutationId");
        let hint = did_you_mean(k, names.clone());
        out.push(if hint.is_empty() {
            format!(
                "unknown input field '{k}' for mutation '{mutation}' (its input {ty} has: {})",
                listing(names.map(str::to_string))
            )
        } else {
            format!("unknown input field '{k}' for mutation '{mutation}'{hint}")
        });
    }
    match input.filter(|i| !i.is_null()) {
        None => check_input(schema, &ty, &Value::Object(known), "input", &mut out),
        Some(i) if is_template(i) => {
            for (k, v) in &known {
                if let Some(iv) = t.input_field(k) {
                    check_value(schema, &iv.ty, v, k, &mut out);
                }
            }
        }
        Some(Value::Object(m)) => {
            let mut merged = m.clone();
            for (k, v) in known {
                if m.contains_key(&k) {
                    out.push(crate::mutation_fields::twice(&k));
                } else {
                    merged.insert(k, v);
                }
            }
            check_input(schema, &ty, &Value::Object(merged), "input", &mut out);
        }
        Some(_) => out.push(format!("input must be an object ({ty})")),
    }
    out
}

/// `depth` is the depth of `type_name` (the record or payload type is depth 1); the fields it
/// includes are at `depth + 1`, and nothing deeper than [`MAX_DEPTH`] is selected.
fn check_include(
    schema: &Schema,
    type_name: &str,
    v: &Value,
    at: &str,
    depth: usize,
    out: &mut Vec<String>,
) {
    let Some(m) = v.as_object() else {
        if !v.is_null() && !is_template(v) {
            out.push(format!("{at} must be an object of true/false values"));
        }
        return;
    };
    if depth >= MAX_DEPTH && m.values().any(crate::include::is_true) {
        out.push(format!(
            "{at}: nested fields deeper than {MAX_DEPTH} levels are not selected"
        ));
        return;
    }
    let options = include_options(schema, type_name);
    for (k, val) in m {
        if let Some(base) = k.strip_suffix("_fields") {
            if let Some(opt) = options.iter().find(|o| o.name == base) {
                check_include(
                    schema,
                    sub_type(schema, &opt.ty),
                    val,
                    &format!("{at}.{k}"),
                    depth + 1,
                    out,
                );
                continue;
            }
        }
        if !options.iter().any(|o| &o.name == k) {
            let known = schema.fields_of(type_name).iter().any(|f| &f.name == k);
            if known {
                out.push(format!(
                    "{at}: field '{k}' of {type_name} is not an object and is always selected"
                ));
            } else {
                let hint = did_you_mean(k, options.iter().map(|o| o.name.as_str()));
                out.push(if hint.is_empty() {
                    format!(
                        "{at}: unknown field '{k}' of {type_name} (nested fields: {})",
                        listing(options.iter().map(|o| o.name.clone()))
                    )
                } else {
                    format!("{at}: unknown field '{k}' of {type_name}{hint}")
                });
            }
        }
    }
}

fn check_enum(schema: &Schema, enum_name: &str, v: &Value, at: &str, out: &mut Vec<String>) {
    if is_template(v) || v.is_null() {
        return;
    }
    let Some(t) = schema.get(enum_name) else {
        return;
    };
    let ok = v.as_str().is_some_and(|s| t.enum_value(s).is_some());
    if !ok {
        out.push(format!(
            "{at}: invalid value {v} for {enum_name} (expected one of: {})",
            listing(t.enum_values.iter().map(|e| e.json_value().to_string()))
        ));
    }
}

fn check_value(schema: &Schema, ty: &TypeRef, v: &Value, at: &str, out: &mut Vec<String>) {
    if v.is_null() || is_template(v) {
        return;
    }
    let u = schema.unwrap(ty);
    if let Value::Array(items) = v {
        if u.list {
            for (i, item) in items.iter().enumerate() {
                check_value(schema, ty, item, &format!("{at}[{i}]"), out);
            }
            return;
        }
    }
    match u.kind {
        Kind::Enum => check_enum(schema, u.name, v, at, out),
        Kind::InputObject => check_input(schema, u.name, v, at, out),
        _ => {}
    }
}

fn check_input(schema: &Schema, type_name: &str, v: &Value, at: &str, out: &mut Vec<String>) {
    if is_template(v) {
        return;
    }
    let Some(t) = schema.get(type_name) else {
        return;
    };
    let Some(m) = v.as_object() else {
        out.push(format!("{at} must be an object ({type_name})"));
        return;
    };
    for iv in &t.input_fields {
        if iv.is_required_without_default() && m.get(&iv.name).is_none_or(Value::is_null) {
            out.push(format!(
                "{at}: missing required key '{}' for {type_name}",
                iv.name
            ));
        }
    }
    for (k, val) in m {
        match t.input_field(k) {
            Some(iv) => check_value(schema, &iv.ty, val, &format!("{at}.{k}"), out),
            None => {
                let hint = did_you_mean(k, t.input_fields.iter().map(|f| f.name.as_str()));
                out.push(if hint.is_empty() {
                    format!(
                        "{at}: unknown key '{k}' for {type_name} (known: {})",
                        listing(t.input_fields.iter().map(|f| f.name.clone()))
                    )
                } else {
                    format!("{at}: unknown key '{k}' for {type_name}{hint}")
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_for_close_names() {
        assert_eq!(distance("peple", "people"), 1);
        assert_eq!(distance("Requests", "requests"), 0);
        assert_eq!(distance("nmae", "name"), 1);
        assert_eq!(
            did_you_mean("peple", ["people", "problems"]),
            " (did you mean 'people'?)"
        );
        assert_eq!(did_you_mean("xyz", ["people", "problems"]), "");
        assert_eq!(did_you_mean("a", ["b"]), " (did you mean 'b'?)");
        assert_eq!(did_you_mean("ab", ["cd"]), "");
    }
}
