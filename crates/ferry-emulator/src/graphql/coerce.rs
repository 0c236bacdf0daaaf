//! Pre-execution pass over a request document: accepts enum values written as quoted
//! strings or in their `@wireValue` spelling (as the real API does), and computes the
//! request's cost.

use async_graphql_parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet, Type,
};
use async_graphql_parser::Positioned;
use async_graphql_value::{Name, Value};
use serde_json::Value as Json;

use super::model::{base_name, is_list, Kind, Model};

/// Rewrite enum literals in arguments and return the cost of the document: 1 per request
/// plus 1 per connection field selected.
pub(crate) fn coerce_document(model: &Model, doc: &mut ExecutableDocument) -> u32 {
    let mut cost = 1u32;
    let mut ops: Vec<&mut Positioned<async_graphql_parser::types::OperationDefinition>> =
        match &mut doc.operations {
            DocumentOperations::Single(op) => vec![op],
            DocumentOperations::Multiple(m) => m.values_mut().collect(),
        };
    for op in ops.iter_mut() {
        let root = match op.node.ty {
            OperationType::Query => Some(model.query.as_str()),
            OperationType::Mutation => model.mutation.as_deref(),
            OperationType::Subscription => None,
        };
        if let Some(root) = root {
            walk(model, root, &mut op.node.selection_set.node, &mut cost);
        }
    }
    for frag in doc.fragments.values_mut() {
        let on = frag.node.type_condition.node.on.node.to_string();
        walk(model, &on, &mut frag.node.selection_set.node, &mut cost);
    }
    cost
}

fn walk(model: &Model, parent: &str, set: &mut SelectionSet, cost: &mut u32) {
    for item in &mut set.items {
        match &mut item.node {
            Selection::Field(f) => {
                let f = &mut f.node;
                let Some(def) = model
                    .get(parent)
                    .and_then(|t| t.fields.get(f.name.node.as_str()))
                else {
                    continue;
                };
                for (name, value) in &mut f.arguments {
                    if let Some(arg) = def.args.iter().find(|a| a.name == name.node.as_str()) {
                        coerce_value(model, &arg.ty, &mut value.node);
                    }
                }
                let ty = base_name(&def.ty);
                if model.is_connection(ty) {
                    *cost = cost.saturating_add(1);
                }
                walk(model, ty, &mut f.selection_set.node, cost);
            }
            Selection::InlineFragment(fr) => {
                let on = fr
                    .node
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.to_string())
                    .unwrap_or_else(|| parent.to_string());
                walk(model, &on, &mut fr.node.selection_set.node, cost);
            }
            Selection::FragmentSpread(_) => {}
        }
    }
}

fn list_inner(ty: &Type) -> Option<&Type> {
    match &ty.base {
        async_graphql_parser::types::BaseType::List(t) => Some(t),
        _ => None,
    }
}

fn coerce_value(model: &Model, ty: &Type, v: &mut Value) {
    if let Some(inner) = list_inner(ty) {
        match v {
            Value::List(items) => items.iter_mut().for_each(|i| coerce_value(model, inner, i)),
            other => coerce_value(model, inner, other),
        }
        return;
    }
    let base = base_name(ty);
    match (model.kind(base), v) {
        (Some(Kind::Enum), v @ Value::String(_)) => {
            if let Value::String(s) = &*v {
                if let Some(n) = model.enum_name(base, s) {
                    *v = Value::Enum(Name::new(n));
                }
            }
        }
        (Some(Kind::Input), Value::Object(fields)) => {
            if let Some(t) = model.get(base) {
                for (k, val) in fields.iter_mut() {
                    if let Some(d) = t.inputs.get(k.as_str()) {
                        coerce_value(model, &d.ty, val);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Map `@wireValue` spellings in JSON variables to GraphQL enum names, using the variable
/// types of the document.
pub(crate) fn coerce_variables(model: &Model, doc: &ExecutableDocument, vars: &mut Json) {
    let Json::Object(map) = vars else { return };
    for (_, op) in doc.operations.iter() {
        for vd in &op.node.variable_definitions {
            if let Some(v) = map.get_mut(vd.node.name.node.as_str()) {
                coerce_json(model, &vd.node.var_type.node, v);
            }
        }
    }
}

fn coerce_json(model: &Model, ty: &Type, v: &mut Json) {
    if is_list(ty) {
        if let Some(inner) = list_inner(ty) {
            match v {
                Json::Array(items) => items.iter_mut().for_each(|i| coerce_json(model, inner, i)),
                other => coerce_json(model, inner, other),
            }
        }
        return;
    }
    let base = base_name(ty);
    match (model.kind(base), v) {
        (Some(Kind::Enum), Json::String(s)) => {
            if let Some(n) = model.enum_name(base, s) {
                if n != s.as_str() {
                    *s = n.to_string();
                }
            }
        }
        (Some(Kind::Input), Json::Object(fields)) => {
            if let Some(t) = model.get(base) {
                for (k, val) in fields.iter_mut() {
                    if let Some(d) = t.inputs.get(k.as_str()) {
                        coerce_json(model, &d.ty, val);
                    }
                }
            }
        }
        _ => {}
    }
}
