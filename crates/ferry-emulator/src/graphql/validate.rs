//! Static validation of a request document in the shape Xurrent's GraphQL server
//! (graphql-ruby) answers: `message`, `locations`, `path` (starting with the operation, e.g.
//! `["query", "node", "id"]`) and `extensions` with graphql-ruby's `code` and its keys.
//!
//! The common rules run here, before execution: fields that do not exist, selections on leaf
//! types or missing on composite types, arguments that are not accepted, required arguments and
//! input fields that are missing, and literals that do not fit their type. A document that
//! fails any of them is answered with `{"errors": [...]}` alone (no `data`), as graphql-ruby
//! does. Rules not covered here (fragments, variables, directives) are left to async-graphql.
//!
//! The walk runs after the `coerce` pass, so the emulator's leniency (enum values written as
//! strings or in their `@wireValue` spelling) stays.

use async_graphql_parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet, Type,
};
use async_graphql_parser::Pos;
use async_graphql_value::Value;
use serde_json::{json, Map, Value as Json};

use super::model::{base_name, Kind, Model};

/// The validation errors of `doc`, in document order; empty when it passes these rules.
pub(crate) fn validate(model: &Model, doc: &ExecutableDocument) -> Vec<Json> {
    let mut v = Validator {
        model,
        errors: Vec::new(),
    };
    let ops: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![(None, op)],
        DocumentOperations::Multiple(m) => m.iter().map(|(n, op)| (Some(n), op)).collect(),
    };
    for (name, op) in ops {
        let (label, root) = match op.node.ty {
            OperationType::Query => ("query", Some(model.query.as_str())),
            OperationType::Mutation => ("mutation", model.mutation.as_deref()),
            OperationType::Subscription => ("subscription", None),
        };
        let Some(root) = root else { continue };
        let label = match name {
            Some(n) => format!("{label} {n}"),
            None => label.to_string(),
        };
        let mut path = vec![Json::String(label)];
        v.selection_set(root, &op.node.selection_set.node, &mut path);
    }
    for (name, frag) in &doc.fragments {
        let on = frag.node.type_condition.node.on.node.as_str();
        if model.get(on).is_some() {
            let mut path = vec![Json::String(format!("fragment {name}"))];
            v.selection_set(on, &frag.node.selection_set.node, &mut path);
        }
    }
    v.errors
}

struct Validator<'a> {
    model: &'a Model,
    errors: Vec<Json>,
}

/// What an argument belongs to, as graphql-ruby names it in messages.
enum Owner<'a> {
    /// A field, by response key (alias or name).
    Field(&'a str),
    /// An input object, by type name.
    InputObject(&'a str),
}

impl Owner<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Owner::Field(_) => "Field",
            Owner::InputObject(_) => "InputObject",
        }
    }

    fn name(&self) -> &str {
        match self {
            Owner::Field(n) | Owner::InputObject(n) => n,
        }
    }
}

fn with(path: &[Json], key: impl Into<Json>) -> Vec<Json> {
    let mut p = path.to_vec();
    p.push(key.into());
    p
}

fn is_builtin_scalar(name: &str) -> bool {
    matches!(name, "ID" | "String" | "Int" | "Float" | "Boolean")
}

impl Validator<'_> {
    fn error(&mut self, message: String, pos: Pos, path: Vec<Json>, extensions: Json) {
        self.errors.push(json!({
            "message": message,
            "locations": [{ "line": pos.line, "column": pos.column }],
            "path": path,
            "extensions": extensions,
        }));
    }

    /// Whether `name` is a leaf type (scalar or enum); unknown names count as leaves.
    fn is_leaf(&self, name: &str) -> bool {
        !matches!(
            self.model.kind(name),
            Some(Kind::Object | Kind::Interface | Kind::Union | Kind::Input)
        )
    }

    fn selection_set(&mut self, parent: &str, set: &SelectionSet, path: &mut Vec<Json>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let field = &f.node;
                    let name = field.name.node.as_str();
                    let key = field.response_key().node.as_str();
                    if name == "__typename"
                        || (parent == self.model.query && matches!(name, "__schema" | "__type"))
                    {
                        continue;
                    }
                    path.push(Json::String(key.to_string()));
                    self.field(parent, field, item.pos, path);
                    path.pop();
                }
                Selection::InlineFragment(fr) => {
                    let (label, on) = match &fr.node.type_condition {
                        Some(c) => {
                            let on = c.node.on.node.as_str();
                            (format!("... on {on}"), on)
                        }
                        None => ("...".to_string(), parent),
                    };
                    if self.model.get(on).is_some() {
                        path.push(Json::String(label));
                        self.selection_set(on, &fr.node.selection_set.node, path);
                        path.pop();
                    }
                }
                // Fragment definitions are validated once each, under `fragment <name>`.
                Selection::FragmentSpread(_) => {}
            }
        }
    }

    fn field(
        &mut self,
        parent: &str,
        field: &async_graphql_parser::types::Field,
        pos: Pos,
        path: &mut Vec<Json>,
    ) {
        let model = self.model;
        let name = field.name.node.as_str();
        let key = field.response_key().node.as_str();
        let Some(parent_def) = model.get(parent) else {
            return;
        };
        if parent_def.kind == Kind::Union {
            self.error(
                format!("Selections can't be made directly on unions (see selections on {parent})"),
                pos,
                path.clone(),
                json!({ "code": "selectionMismatch", "nodeName": parent }),
            );
            return;
        }
        let Some(def) = parent_def.fields.get(name) else {
            self.error(
                format!("Field '{name}' doesn't exist on type '{parent}'"),
                pos,
                path.clone(),
                json!({ "code": "undefinedField", "typeName": parent, "fieldName": name }),
            );
            return;
        };
        let returns = base_name(&def.ty);
        let selections = &field.selection_set.node.items;
        let node_name = format!("field '{name}'");
        if self.is_leaf(returns) && !selections.is_empty() {
            let kind = match model.kind(returns) {
                Some(Kind::Enum) => "enums",
                _ => "scalars",
            };
            let listed: Vec<String> = selections
                .iter()
                .map(|s| match &s.node {
                    Selection::Field(f) => format!("\"{}\"", f.node.name.node),
                    Selection::FragmentSpread(s) => format!("\"{}\"", s.node.fragment_name.node),
                    Selection::InlineFragment(fr) => match &fr.node.type_condition {
                        Some(c) => format!("\"... on {} {{ ... }}\"", c.node.on.node),
                        None => "\"... { ... }\"".to_string(),
                    },
                })
                .collect();
            self.error(
                format!(
                    "Selections can't be made on {kind} ({node_name} returns {returns} but has selections [{}])",
                    listed.join(", ")
                ),
                pos,
                path.clone(),
                json!({ "code": "selectionMismatch", "nodeName": node_name, "typeName": returns }),
            );
            return;
        }
        if !self.is_leaf(returns) && selections.is_empty() {
            self.error(
                format!(
                    "Field must have selections ({node_name} returns {returns} but has no selections. Did you mean '{name} {{ ... }}'?)"
                ),
                pos,
                path.clone(),
                json!({ "code": "selectionMismatch", "nodeName": node_name, "typeName": returns }),
            );
            return;
        }
        let missing: Vec<&str> = def
            .args
            .iter()
            .filter(|a| !a.ty.nullable && a.default.is_none())
            .filter(|a| !field.arguments.iter().any(|(n, _)| n.node == a.name))
            .map(|a| a.name.as_str())
            .collect();
        if !missing.is_empty() {
            let arguments = missing.join(", ");
            self.error(
                format!("Field '{name}' is missing required arguments: {arguments}"),
                pos,
                path.clone(),
                json!({
                    "code": "missingRequiredArguments",
                    "className": "Field",
                    "name": name,
                    "arguments": arguments,
                }),
            );
        }
        for (arg_name, value) in &field.arguments {
            let arg = arg_name.node.as_str();
            let arg_path = with(path, arg);
            match def.args.iter().find(|a| a.name == arg) {
                None => self.error(
                    format!("Field '{key}' doesn't accept argument '{arg}'"),
                    arg_name.pos,
                    arg_path,
                    json!({
                        "code": "argumentNotAccepted",
                        "name": key,
                        "typeName": "Field",
                        "argumentName": arg,
                    }),
                ),
                Some(d) => {
                    self.argument(
                        arg,
                        &d.ty,
                        &value.node,
                        &Owner::Field(key),
                        pos,
                        value.pos,
                        &arg_path,
                    );
                }
            }
        }
        self.selection_set(returns, &field.selection_set.node, path);
    }

    /// Check one argument (or input field) value; returns whether an error was reported.
    /// Errors inside nested input objects are reported there, and then not again here.
    #[allow(clippy::too_many_arguments)]
    fn argument(
        &mut self,
        name: &str,
        ty: &Type,
        value: &Value,
        owner: &Owner<'_>,
        owner_pos: Pos,
        value_pos: Pos,
        path: &[Json],
    ) -> bool {
        if matches!(value, Value::Variable(_)) {
            return false;
        }
        let model = self.model;
        let base = base_name(ty);
        let mut nested_error = false;
        if let Some(input) = model.get(base).filter(|t| t.kind == Kind::Input) {
            let objects: Vec<(Option<usize>, &indexmap::IndexMap<_, Value>)> = match value {
                Value::Object(o) => vec![(None, o)],
                Value::List(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| match v {
                        Value::Object(o) => Some((Some(i), o)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (index, object) in objects {
                let obj_path = match index {
                    Some(i) => with(path, i),
                    None => path.to_vec(),
                };
                for d in input.inputs.values() {
                    if !d.ty.nullable
                        && d.default.is_none()
                        && !object.keys().any(|k| k.as_str() == d.name)
                    {
                        nested_error = true;
                        self.error(
                            format!(
                                "Argument '{}' on InputObject '{}' is required. Expected type {}",
                                d.name, input.name, d.ty
                            ),
                            value_pos,
                            with(&obj_path, d.name.as_str()),
                            json!({
                                "code": "missingRequiredInputObjectAttribute",
                                "argumentName": d.name,
                                "argumentType": d.ty.to_string(),
                                "inputObjectType": input.name,
                            }),
                        );
                    }
                }
                for (k, v) in object {
                    let field_path = with(&obj_path, k.as_str());
                    match input.inputs.get(k.as_str()) {
                        None => {
                            nested_error = true;
                            self.error(
                                format!(
                                    "InputObject '{}' doesn't accept argument '{k}'",
                                    input.name
                                ),
                                value_pos,
                                field_path,
                                json!({
                                    "code": "argumentNotAccepted",
                                    "name": input.name,
                                    "typeName": "InputObject",
                                    "argumentName": k.as_str(),
                                }),
                            );
                        }
                        Some(d) => {
                            nested_error |= self.argument(
                                k.as_str(),
                                &d.ty,
                                v,
                                &Owner::InputObject(&input.name),
                                value_pos,
                                value_pos,
                                &field_path,
                            );
                        }
                    }
                }
            }
        }
        if nested_error {
            return true;
        }
        if literal_fits(model, ty, value) {
            return false;
        }
        self.error(
            format!(
                "Argument '{name}' on {} '{}' has an invalid value ({value}). Expected type '{ty}'.",
                owner.kind(),
                owner.name()
            ),
            owner_pos,
            path.to_vec(),
            json!({
                "code": "argumentLiteralsIncompatible",
                "typeName": owner.kind(),
                "argumentName": name,
            }),
        );
        true
    }
}

/// Whether a literal fits a type (variables always do; their values are checked later).
fn literal_fits(model: &Model, ty: &Type, value: &Value) -> bool {
    match value {
        Value::Variable(_) => return true,
        Value::Null => return ty.nullable,
        _ => {}
    }
    match &ty.base {
        BaseType::List(inner) => match value {
            Value::List(items) => items.iter().all(|i| literal_fits(model, inner, i)),
            single => literal_fits(model, inner, single),
        },
        BaseType::Named(name) => named_fits(model, name.as_str(), value),
    }
}

fn named_fits(model: &Model, name: &str, value: &Value) -> bool {
    if is_builtin_scalar(name) {
        return match (name, value) {
            ("ID", Value::String(_)) => true,
            ("ID", Value::Number(n)) => n.is_i64() || n.is_u64(),
            ("String", Value::String(_)) => true,
            ("Int", Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            ("Float", Value::Number(_)) => true,
            ("Boolean", Value::Boolean(_)) => true,
            _ => false,
        };
    }
    let Some(t) = model.get(name) else {
        return true;
    };
    match (t.kind, value) {
        (Kind::Enum, Value::Enum(v)) => t.value_names.contains(v.as_str()),
        (Kind::Enum, _) => false,
        (Kind::Input, Value::Object(o)) => {
            o.iter().all(|(k, v)| {
                t.inputs
                    .get(k.as_str())
                    .is_some_and(|d| literal_fits(model, &d.ty, v))
            }) && t.inputs.values().all(|d| {
                d.ty.nullable || d.default.is_some() || o.keys().any(|k| k.as_str() == d.name)
            })
        }
        (Kind::Input, _) => false,
        // Custom scalars (ISO8601Timestamp, JSON, …) take any constant.
        (Kind::Scalar, _) => true,
        _ => false,
    }
}

/// Check the variable values given for the operation that will run, as graphql-ruby does
/// before execution: each failing variable gives one error
/// `Variable $<name> of type <type> was provided invalid value[ for <path> (<explanation>), …]`
/// at the variable's definition, with `extensions: {value, problems: [{path, explanation}]}`.
/// Variables of an operation that cannot be chosen are left to async-graphql.
pub(crate) fn validate_variables(
    model: &Model,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Json,
) -> Vec<Json> {
    let op = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(m), Some(name)) => match m.get(name) {
            Some(op) => op,
            None => return Vec::new(),
        },
        (DocumentOperations::Multiple(m), None) if m.len() == 1 => match m.values().next() {
            Some(op) => op,
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    let mut errors = Vec::new();
    for vd in &op.node.variable_definitions {
        let name = vd.node.name.node.as_str();
        let ty = &vd.node.var_type.node;
        let provided = variables.get(name);
        if provided.is_none() && vd.node.default_value.is_some() {
            continue;
        }
        let value = provided.cloned().unwrap_or(Json::Null);
        let mut problems = Vec::new();
        json_problems(model, ty, &value, &mut Vec::new(), &mut problems);
        if problems.is_empty() {
            continue;
        }
        let mut message = format!("Variable ${name} of type {ty} was provided invalid value");
        let located: Vec<String> = problems
            .iter()
            .filter(|(path, _)| !path.is_empty())
            .map(|(path, explanation)| {
                let joined: Vec<String> = path
                    .iter()
                    .map(|p| match p {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                format!("{} ({explanation})", joined.join("."))
            })
            .collect();
        if !located.is_empty() {
            message.push_str(&format!(" for {}", located.join(", ")));
        }
        let problems: Vec<Json> = problems
            .into_iter()
            .map(|(path, explanation)| json!({ "path": path, "explanation": explanation }))
            .collect();
        errors.push(json!({
            "message": message,
            "locations": [{ "line": vd.pos.line, "column": vd.pos.column }],
            "extensions": { "value": value, "problems": problems },
        }));
    }
    errors
}

/// graphql-ruby's rendering of a JSON value in explanations.
fn serialize(value: &Json) -> String {
    match value {
        Json::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}:{}", serialize(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Json::Array(a) => {
            let parts: Vec<String> = a.iter().map(serialize).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// The problems of a variable value against its type: `(path inside the value, explanation)`.
fn json_problems(
    model: &Model,
    ty: &Type,
    value: &Json,
    path: &mut Vec<Json>,
    out: &mut Vec<(Vec<Json>, String)>,
) {
    if value.is_null() {
        if !ty.nullable {
            out.push((path.clone(), "Expected value to not be null".into()));
        }
        return;
    }
    let name = match &ty.base {
        BaseType::List(inner) => {
            let items = match value {
                Json::Array(a) => a.iter().collect(),
                single => vec![single],
            };
            for (i, item) in items.into_iter().enumerate() {
                path.push(Json::from(i));
                json_problems(model, inner, item, path, out);
                path.pop();
            }
            return;
        }
        BaseType::Named(n) => n.as_str(),
    };
    let coerce =
        |ok: bool| (!ok).then(|| format!("Could not coerce value {} to {name}", serialize(value)));
    let problem = if is_builtin_scalar(name) {
        coerce(match (name, value) {
            ("ID", Json::String(_)) | ("String", Json::String(_)) => true,
            ("ID", Json::Number(n)) => n.is_i64() || n.is_u64(),
            ("Int", Json::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            ("Float", Json::Number(_)) | ("Boolean", Json::Bool(_)) => true,
            _ => false,
        })
    } else {
        match model.get(name) {
            Some(t) if t.kind == Kind::Enum => match value {
                Json::String(v) if t.value_names.contains(v.as_str()) => None,
                _ => {
                    let names: Vec<&str> = t.values.iter().map(|v| v.name.as_str()).collect();
                    Some(format!(
                        "Expected {} to be one of: {}",
                        serialize(value),
                        names.join(", ")
                    ))
                }
            },
            Some(t) if t.kind == Kind::Input => match value {
                Json::Object(o) => {
                    for (k, v) in o {
                        path.push(Json::String(k.clone()));
                        match t.inputs.get(k.as_str()) {
                            None => out.push((
                                path.clone(),
                                format!("Field is not defined on {}", t.name),
                            )),
                            Some(d) => json_problems(model, &d.ty, v, path, out),
                        }
                        path.pop();
                    }
                    for d in t.inputs.values() {
                        if !o.contains_key(&d.name) && !d.ty.nullable && d.default.is_none() {
                            path.push(Json::String(d.name.clone()));
                            json_problems(model, &d.ty, &Json::Null, path, out);
                            path.pop();
                        }
                    }
                    None
                }
                other => Some(format!("Expected {other} to be a key-value object.")),
            },
            // Custom scalars take any value.
            _ => None,
        }
    };
    if let Some(explanation) = problem {
        out.push((path.clone(), explanation));
    }
}

/// Private error extension that carries the path of a failing non-null field (async-graphql's
/// dynamic schema reports such errors without one); [`response_body`] moves it to `path`.
pub(crate) const FIELD_PATH_EXTENSION: &str = "ferryFieldPath";

/// The JSON body of an async-graphql answer in Xurrent's shape: errors list `message`,
/// `locations`, `path`, `extensions` in that order, with the path of a failing non-null field
/// filled in; a request that failed before execution (parse or validation errors: no data, no
/// error with a path) is answered with `errors` alone, without `data: null`.
pub(crate) fn response_body(resp: &async_graphql::Response) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = match serde_json::to_value(resp)? {
        Json::Object(o) => o,
        other => return serde_json::to_vec(&other),
    };
    if let Some(Json::Array(errors)) = body.get_mut("errors") {
        for error in errors.iter_mut() {
            let Json::Object(e) = std::mem::take(error) else {
                continue;
            };
            *error = Json::Object(reorder_error(e));
        }
    }
    let request_failed = body.get("data").is_none_or(Json::is_null)
        && body
            .get("errors")
            .and_then(Json::as_array)
            .is_some_and(|a| !a.is_empty() && a.iter().all(|e| e.get("path").is_none()));
    if request_failed {
        body.remove("data");
    }
    serde_json::to_vec(&Json::Object(body))
}

/// One error object with the private path extension moved to `path`.
fn reorder_error(mut e: Map<String, Json>) -> Map<String, Json> {
    let mut extensions = match e.remove("extensions") {
        Some(Json::Object(x)) => x,
        _ => Map::new(),
    };
    let field_path = extensions.remove(FIELD_PATH_EXTENSION);
    let mut out = Map::new();
    for key in ["message", "locations"] {
        if let Some(v) = e.remove(key) {
            out.insert(key.into(), v);
        }
    }
    match (e.remove("path"), field_path) {
        (Some(p), _) => {
            out.insert("path".into(), p);
        }
        (None, Some(p)) => {
            out.insert("path".into(), p);
        }
        (None, None) => {}
    }
    out.extend(e);
    if !extensions.is_empty() {
        out.insert("extensions".into(), Json::Object(extensions));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
        schema { query: Query mutation: Mutation }
        scalar JSON
        enum Status { assigned in_progress }
        input Filter { status: Status, ids: [ID!] }
        input RequestCreateInput { subject: String!, status: Status, note: NoteInput, data: JSON }
        input NoteInput { text: String! }
        interface Node { id: ID! }
        type Request implements Node { id: ID! subject: String status: Status team: Team }
        type Team implements Node { id: ID! name: String }
        union Thing = Request | Team
        type Payload { request: Request }
        type Query {
          node(id: ID!): Node
          requests(first: Int, filter: Filter, view: Status = assigned): [Request!]!
          thing: Thing
        }
        type Mutation { requestCreate(input: RequestCreateInput!): Payload }
    "#;

    fn run(query: &str) -> Vec<Json> {
        let model = Model::parse(SDL).unwrap();
        let doc = async_graphql_parser::parse_query(query).unwrap();
        validate(&model, &doc)
    }

    #[test]
    fn valid_documents_pass() {
        assert_eq!(
            run("query Q($id: ID!) { node(id: $id) { id ... on Request { subject team { name } } } requests(first: 2, filter: {status: assigned, ids: [\"a\", 1]}) { id __typename } }"),
            Vec::<Json>::new()
        );
        assert!(run("mutation { requestCreate(input: {subject: \"s\", note: {text: \"t\"}, data: {any: [1]}}) { request { id } } }").is_empty());
        assert!(run("{ __schema { types { name } } __typename }").is_empty());
        assert!(run("{ ...F } fragment F on Query { thing { ... on Team { name } } }").is_empty());
    }

    #[test]
    fn unknown_field() {
        assert_eq!(
            run("{\n  requests { id nope }\n}"),
            vec![json!({
                "message": "Field 'nope' doesn't exist on type 'Request'",
                "locations": [{"line": 2, "column": 17}],
                "path": ["query", "requests", "nope"],
                "extensions": {"code": "undefinedField", "typeName": "Request", "fieldName": "nope"},
            })]
        );
        // Inside a named operation, an inline fragment and a fragment definition.
        let errors = run("query Mine { node(id: 1) { ... on Team { size } } ...F } fragment F on Query { bogus }");
        assert_eq!(
            errors[0]["path"],
            json!(["query Mine", "node", "... on Team", "size"])
        );
        assert_eq!(errors[1]["path"], json!(["fragment F", "bogus"]));
    }

    #[test]
    fn missing_required_argument() {
        assert_eq!(
            run("{ n: node { id } }"),
            vec![json!({
                "message": "Field 'node' is missing required arguments: id",
                "locations": [{"line": 1, "column": 3}],
                "path": ["query", "n"],
                "extensions": {"code": "missingRequiredArguments", "className": "Field", "name": "node", "arguments": "id"},
            })]
        );
    }

    #[test]
    fn wrong_literal_types() {
        assert_eq!(
            run("{ node(id: true) { id } }"),
            vec![json!({
                "message": "Argument 'id' on Field 'node' has an invalid value (true). Expected type 'ID!'.",
                "locations": [{"line": 1, "column": 3}],
                "path": ["query", "node", "id"],
                "extensions": {"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": "id"},
            })]
        );
        let e = run("{ requests(first: \"ten\") { id } }");
        assert_eq!(
            e[0]["message"],
            "Argument 'first' on Field 'requests' has an invalid value (\"ten\"). Expected type 'Int'."
        );
        assert_eq!(run("{ requests(first: 3000000000) { id } }").len(), 1);
        assert_eq!(run("{ node(id: null) { id } }").len(), 1);
        assert_eq!(run("{ node(id: 1.5) { id } }").len(), 1);
    }

    #[test]
    fn invalid_enum_values_and_nested_inputs() {
        let e = run("{ requests(view: closed) { id } }");
        assert_eq!(
            e[0]["message"],
            "Argument 'view' on Field 'requests' has an invalid value (closed). Expected type 'Status'."
        );
        assert_eq!(e[0]["path"], json!(["query", "requests", "view"]));
        // Nested: reported at the input field only, not again at the argument.
        let e = run("mutation {\n  requestCreate(input: {subject: \"s\", status: done}) { request { id } }\n}");
        assert_eq!(
            e,
            vec![json!({
                "message": "Argument 'status' on InputObject 'RequestCreateInput' has an invalid value (done). Expected type 'Status'.",
                "locations": [{"line": 2, "column": 24}],
                "path": ["mutation", "requestCreate", "input", "status"],
                "extensions": {"code": "argumentLiteralsIncompatible", "typeName": "InputObject", "argumentName": "status"},
            })]
        );
        let e = run("{ requests(filter: {ids: [true]}) { id } }");
        assert_eq!(e[0]["path"], json!(["query", "requests", "filter", "ids"]));
    }

    #[test]
    fn unknown_and_missing_input_fields() {
        let e = run("mutation { requestCreate(input: {note: {}, color: red}) { request { id } } }");
        let codes: Vec<&str> = e
            .iter()
            .map(|x| x["extensions"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                "missingRequiredInputObjectAttribute",
                "missingRequiredInputObjectAttribute",
                "argumentNotAccepted"
            ]
        );
        assert_eq!(
            e[0]["message"],
            "Argument 'subject' on InputObject 'RequestCreateInput' is required. Expected type String!"
        );
        assert_eq!(
            e[1]["path"],
            json!(["mutation", "requestCreate", "input", "note", "text"])
        );
        assert_eq!(
            e[2]["extensions"],
            json!({"code": "argumentNotAccepted", "name": "RequestCreateInput", "typeName": "InputObject", "argumentName": "color"})
        );
        let e = run("{ node(id: 1, color: red) { id } }");
        assert_eq!(
            e[0]["message"],
            "Field 'node' doesn't accept argument 'color'"
        );
        assert_eq!(e[0]["locations"], json!([{"line": 1, "column": 15}]));
        assert_eq!(e[0]["path"], json!(["query", "node", "color"]));
    }

    fn vars(query: &str, variables: Json) -> Vec<Json> {
        let model = Model::parse(SDL).unwrap();
        let doc = async_graphql_parser::parse_query(query).unwrap();
        validate_variables(&model, &doc, None, &variables)
    }

    #[test]
    fn variable_values() {
        let q = "query($id: ID!, $f: Filter, $n: Int = 5) { node(id: $id) { id } requests(filter: $f, first: $n) { id } }";
        assert!(vars(
            q,
            json!({"id": 7, "f": {"status": "assigned", "ids": ["a"]}})
        )
        .is_empty());
        assert_eq!(
            vars(q, json!({})),
            vec![json!({
                "message": "Variable $id of type ID! was provided invalid value",
                "locations": [{"line": 1, "column": 7}],
                "extensions": {"value": null, "problems": [{"path": [], "explanation": "Expected value to not be null"}]},
            })]
        );
        let e = vars(
            q,
            json!({"id": true, "f": {"status": "closed", "ids": [1.5], "x": 1}, "n": "five"}),
        );
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0]["extensions"]["problems"][0]["explanation"],
            "Could not coerce value true to ID"
        );
        assert_eq!(
            e[1]["message"],
            "Variable $f of type Filter was provided invalid value for status (Expected \"closed\" to be one of: assigned, in_progress), ids.0 (Could not coerce value 1.5 to ID), x (Field is not defined on Filter)"
        );
        assert_eq!(e[1]["extensions"]["problems"][1]["path"], json!(["ids", 0]));
        assert_eq!(
            e[2]["message"],
            "Variable $n of type Int was provided invalid value"
        );
        let e = vars(
            "mutation($i: RequestCreateInput!) { requestCreate(input: $i) { request { id } } }",
            json!({"i": {"note": {}}}),
        );
        assert_eq!(
            e[0]["message"],
            "Variable $i of type RequestCreateInput! was provided invalid value for note.text (Expected value to not be null), subject (Expected value to not be null)"
        );
    }

    #[test]
    fn response_body_drops_data_only_for_request_level_failures() {
        let parse = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            "syntax error",
            Some(Pos { line: 1, column: 2 }),
        )]);
        let body: Json = serde_json::from_slice(&response_body(&parse).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"errors": [{"message": "syntax error", "locations": [{"line": 1, "column": 2}]}]})
        );
        // A failing non-null root field: data null, path taken from the private extension.
        let mut failed = async_graphql::ServerError::new("Invalid cursor 'x'", None);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set(
            FIELD_PATH_EXTENSION,
            async_graphql::Value::List(vec![async_graphql::Value::from("requests")]),
        );
        ext.set("code", "x");
        failed.extensions = Some(ext);
        let body: Json = serde_json::from_slice(
            &response_body(&async_graphql::Response::from_errors(vec![failed])).unwrap(),
        )
        .unwrap();
        assert_eq!(
            body.to_string(),
            json!({"data": null, "errors": [{"message": "Invalid cursor 'x'", "path": ["requests"], "extensions": {"code": "x"}}]}).to_string()
        );
    }

    #[test]
    fn selections_must_fit_the_type() {
        let e = run("{ requests { subject { x } team } }");
        assert_eq!(
            e[0]["message"],
            "Selections can't be made on scalars (field 'subject' returns String but has selections [\"x\"])"
        );
        assert_eq!(
            e[1]["message"],
            "Field must have selections (field 'team' returns Team but has no selections. Did you mean 'team { ... }'?)"
        );
        assert_eq!(
            e[1]["extensions"],
            json!({"code": "selectionMismatch", "nodeName": "field 'team'", "typeName": "Team"})
        );
        let e = run("{ thing { id } }");
        assert_eq!(
            e[0]["message"],
            "Selections can't be made directly on unions (see selections on Thing)"
        );
    }
}
