//! Fast answers to introspection-only requests.
//!
//! At start-up one maximal introspection query is executed by async-graphql; its answer (every
//! type with all fields, arguments, input fields, enum values, interfaces and possible types,
//! plus the directives) is the "universe". Later introspection requests are answered by
//! projecting the request's selection set onto that universe, which is much faster than
//! async-graphql's per-field resolvers for a schema of this size. Anything the projector does
//! not handle (directives on selections, unknown fields or arguments, mutations, several
//! anonymous operations, ...) makes it give up, and the request is executed normally, so
//! errors are still reported by async-graphql.

use std::collections::HashMap;

use async_graphql_parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationType, Selection, SelectionSet,
};
use async_graphql_value::Value;
use serde_json::Value as Json;

/// Selection used to capture the universe.
/// The connector's full introspection query (xurrent_connector.md §4.1), answered from a
/// pre-computed cache.
pub const CONNECTOR_INTROSPECTION_QUERY: &str = "{ __schema { queryType { name } mutationType { name } types { kind name description fields(includeDeprecated: false) { name description args { name description type { ...TypeRef } defaultValue } type { ...TypeRef } } inputFields { name description type { ...TypeRef } defaultValue } enumValues(includeDeprecated: false) { name description } possibleTypes { name } } } } fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }";

const MAXIMAL_QUERY: &str = "{ __schema { description queryType { name } mutationType { name } subscriptionType { name } types { ...T } directives { name description locations isRepeatable args(includeDeprecated: true) { ...IV } } } } fragment T on __Type { kind name description specifiedByURL isOneOf fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...IV } type { ...R } isDeprecated deprecationReason } inputFields(includeDeprecated: true) { ...IV } interfaces { name } possibleTypes { name } enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } } fragment IV on __InputValue { name description type { ...R } defaultValue isDeprecated deprecationReason } fragment R on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }";

/// The complete introspection data of a schema.
#[derive(Debug)]
pub(crate) struct Universe {
    schema: Json,
    types: HashMap<String, Json>,
    query_type: String,
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Schema,
    Type(&'a Json),
    Field(&'a Json),
    InputValue(&'a Json),
    EnumValue(&'a Json),
    Directive(&'a Json),
}

impl Node<'_> {
    fn typename(&self) -> &'static str {
        match self {
            Node::Schema => "__Schema",
            Node::Type(_) => "__Type",
            Node::Field(_) => "__Field",
            Node::InputValue(_) => "__InputValue",
            Node::EnumValue(_) => "__EnumValue",
            Node::Directive(_) => "__Directive",
        }
    }
}

struct Projector<'a> {
    u: &'a Universe,
    doc: &'a ExecutableDocument,
    vars: &'a Json,
    /// Serialized projections of named types, by (selection set, type name).
    memo: std::cell::RefCell<HashMap<(usize, &'a str), Vec<u8>>>,
}

/// Introspection JSON of a type reference (`NON_NULL` / `LIST` wrappers around a named type).
fn type_json(model: &super::model::Model, ty: &async_graphql_parser::types::Type) -> Json {
    use super::model::Kind;
    use async_graphql_parser::types::BaseType;
    let inner = match &ty.base {
        BaseType::List(t) => {
            serde_json::json!({ "kind": "LIST", "name": null, "ofType": type_json(model, t) })
        }
        BaseType::Named(n) => {
            let kind = match model.kind(n.as_str()) {
                Some(Kind::Object) => "OBJECT",
                Some(Kind::Interface) => "INTERFACE",
                Some(Kind::Union) => "UNION",
                Some(Kind::Enum) => "ENUM",
                Some(Kind::Input) => "INPUT_OBJECT",
                Some(Kind::Scalar) | None => "SCALAR",
            };
            serde_json::json!({ "kind": kind, "name": n.as_str(), "ofType": null })
        }
    };
    if ty.nullable {
        inner
    } else {
        serde_json::json!({ "kind": "NON_NULL", "name": null, "ofType": inner })
    }
}

/// Directive definitions declared in the SDL (e.g. `@wireValue`), as introspection JSON.
fn directives_json(model: &super::model::Model) -> Vec<Json> {
    model
        .directives
        .iter()
        .map(|d| {
            let args: Vec<Json> = d
                .args
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "name": a.name, "description": null, "type": type_json(model, &a.ty),
                        "defaultValue": a.default.as_ref().map(|v| v.to_string()),
                        "isDeprecated": false, "deprecationReason": null,
                    })
                })
                .collect();
            serde_json::json!({
                "name": d.name, "description": d.description, "locations": d.locations,
                "isRepeatable": d.repeatable, "args": args,
            })
        })
        .collect()
}

/// Add SDL enums and scalars missing from the captured type list (keeping it sorted by
/// name) and the SDL's own directive definitions.
fn add_orphans(schema: &mut Json, model: &super::model::Model) {
    use super::model::Kind;
    let Some(Json::Array(types)) = schema.get_mut("types") else {
        return;
    };
    let present: std::collections::HashSet<String> = types
        .iter()
        .filter_map(|t| t.get("name").and_then(Json::as_str).map(str::to_string))
        .collect();
    let mut added = false;
    for t in model.types.values() {
        if present.contains(&t.name) {
            continue;
        }
        let (kind, enum_values) = match t.kind {
            Kind::Enum => (
                "ENUM",
                Json::Array(
                    t.values
                        .iter()
                        .map(|v| {
                            serde_json::json!({ "name": v.name, "description": null,
                                "isDeprecated": false, "deprecationReason": null })
                        })
                        .collect(),
                ),
            ),
            Kind::Scalar => ("SCALAR", Json::Null),
            _ => {
                tracing::warn!(ty = %t.name, "unreachable SDL type not listed by introspection");
                continue;
            }
        };
        types.push(serde_json::json!({
            "kind": kind, "name": t.name, "description": null, "specifiedByURL": null,
            "isOneOf": null, "fields": null, "inputFields": null, "interfaces": null,
            "possibleTypes": null, "enumValues": enum_values,
        }));
        added = true;
    }
    let model_directives = directives_json(model);
    if let Some(Json::Array(list)) = schema.get_mut("directives") {
        for d in model_directives {
            let name = d.get("name").cloned();
            if !list.iter().any(|x| x.get("name") == name.as_ref()) {
                list.push(d);
            }
        }
    }
    let Some(Json::Array(types)) = schema.get_mut("types") else {
        return;
    };
    if added {
        types.sort_by(|a, b| {
            let name = |t: &Json| {
                t.get("name")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            name(a).cmp(&name(b))
        });
    }
}

fn write_json(out: &mut Vec<u8>, v: &Json) -> Option<()> {
    serde_json::to_writer(out, v).ok()
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    serde_json::to_writer(out, s).ok()
}

impl Universe {
    /// Capture the universe of `schema`; `None` if async-graphql cannot answer the query.
    ///
    /// async-graphql lists only the types reachable from the root types. Enums and scalars
    /// of the SDL that nothing references are added from `model`, so that introspection
    /// lists every declared type.
    pub(crate) async fn capture(
        schema: &async_graphql::dynamic::Schema,
        model: &super::model::Model,
    ) -> Option<Universe> {
        let resp = schema
            .execute(async_graphql::Request::new(MAXIMAL_QUERY))
            .await;
        if !resp.errors.is_empty() {
            tracing::warn!(errors = ?resp.errors, "cannot capture introspection universe");
            return None;
        }
        let data = resp.data.into_json().ok()?;
        let mut schema = data.get("__schema")?.clone();
        add_orphans(&mut schema, model);
        let types = schema
            .get("types")?
            .as_array()?
            .iter()
            .filter_map(|t| Some((t.get("name")?.as_str()?.to_string(), t.clone())))
            .collect();
        let query_type = schema.get("queryType")?.get("name")?.as_str()?.to_string();
        Some(Universe {
            schema,
            types,
            query_type,
        })
    }

    /// Answer an introspection-only request as the serialized JSON body (`{"data": ...}`),
    /// or `None` when the request must be executed by async-graphql.
    pub(crate) fn answer(
        &self,
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        vars: &Json,
    ) -> Option<Vec<u8>> {
        let op = match (&doc.operations, operation_name) {
            (DocumentOperations::Single(op), None) => op,
            (DocumentOperations::Single(_), Some(_)) => return None,
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
            _ => return None,
        };
        if op.node.ty != OperationType::Query || !op.node.directives.is_empty() {
            return None;
        }
        let p = Projector {
            u: self,
            doc,
            vars,
            memo: Default::default(),
        };
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(b"{\"data\":");
        p.root(&op.node.selection_set.node, &mut out)?;
        out.push(b'}');
        Some(out)
    }
}

impl<'a> Projector<'a> {
    fn arg_value(&self, v: &Value) -> Option<Json> {
        match v {
            Value::Variable(name) => {
                Some(self.vars.get(name.as_str()).cloned().unwrap_or(Json::Null))
            }
            Value::Boolean(b) => Some(Json::Bool(*b)),
            Value::String(s) => Some(Json::String(s.clone())),
            Value::Null => Some(Json::Null),
            _ => None,
        }
    }

    /// Arguments of a field; `None` if an argument is not in `allowed` or not a simple value.
    fn args(&self, f: &Field, allowed: &[&str]) -> Option<HashMap<String, Json>> {
        let mut out = HashMap::new();
        for (name, value) in &f.arguments {
            if !allowed.contains(&name.node.as_str()) {
                return None;
            }
            out.insert(name.node.to_string(), self.arg_value(&value.node)?);
        }
        Some(out)
    }

    fn include_deprecated(&self, f: &Field) -> Option<bool> {
        let args = self.args(f, &["includeDeprecated"])?;
        match args.get("includeDeprecated") {
            None | Some(Json::Null) => Some(false),
            Some(Json::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// Iterate a selection set, expanding fragments whose type condition matches.
    fn collect(
        &self,
        set: &'a SelectionSet,
        typename: &str,
        out: &mut Vec<&'a Field>,
    ) -> Option<()> {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    if !f.node.directives.is_empty() {
                        return None;
                    }
                    out.push(&f.node);
                }
                Selection::InlineFragment(fr) => {
                    if !fr.node.directives.is_empty() {
                        return None;
                    }
                    let matches = fr
                        .node
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| c.node.on.node.as_str() == typename);
                    if matches {
                        self.collect(&fr.node.selection_set.node, typename, out)?;
                    }
                }
                Selection::FragmentSpread(sp) => {
                    if !sp.node.directives.is_empty() {
                        return None;
                    }
                    let def = self.doc.fragments.get(&sp.node.fragment_name.node)?;
                    if !def.node.directives.is_empty() {
                        return None;
                    }
                    if def.node.type_condition.node.on.node.as_str() == typename {
                        self.collect(&def.node.selection_set.node, typename, out)?;
                    }
                }
            }
        }
        Some(())
    }

    /// Fields of a selection set for `typename`; `None` if two share a response key
    /// (merging is left to async-graphql).
    fn fields(&self, set: &'a SelectionSet, typename: &str) -> Option<Vec<&'a Field>> {
        let mut fields = Vec::new();
        self.collect(set, typename, &mut fields)?;
        for (i, f) in fields.iter().enumerate() {
            let k = f.response_key().node.as_str();
            if fields[..i]
                .iter()
                .any(|g| g.response_key().node.as_str() == k)
            {
                return None;
            }
        }
        Some(fields)
    }

    fn root(&self, set: &'a SelectionSet, out: &mut Vec<u8>) -> Option<()> {
        let fields = self.fields(set, &self.u.query_type)?;
        out.push(b'{');
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, f.response_key().node.as_str())?;
            out.push(b':');
            match f.name.node.as_str() {
                "__typename" => write_str(out, &self.u.query_type)?,
                "__schema" => {
                    self.args(f, &[])?;
                    self.object(&f.selection_set.node, Node::Schema, out)?;
                }
                "__type" => {
                    let args = self.args(f, &["name"])?;
                    let name = args.get("name")?.as_str()?;
                    match self.u.types.get(name) {
                        Some(t) => self.object(&f.selection_set.node, Node::Type(t), out)?,
                        None => out.extend_from_slice(b"null"),
                    }
                }
                _ => return None,
            }
        }
        out.push(b'}');
        Some(())
    }

    fn object(&self, set: &'a SelectionSet, node: Node<'a>, out: &mut Vec<u8>) -> Option<()> {
        if set.items.is_empty() {
            return None;
        }
        let mut memo_key = None;
        let node = match node {
            // Named type references resolve to the full type.
            Node::Type(t) => match t.get("name").and_then(Json::as_str) {
                Some(name) => {
                    let (name, full) = self.u.types.get_key_value(name)?;
                    let key = (set as *const SelectionSet as usize, name.as_str());
                    if let Some(bytes) = self.memo.borrow().get(&key) {
                        out.extend_from_slice(bytes);
                        return Some(());
                    }
                    memo_key = Some(key);
                    Node::Type(full)
                }
                None => Node::Type(t),
            },
            other => other,
        };
        let start = out.len();
        let fields = self.fields(set, node.typename())?;
        out.push(b'{');
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, f.response_key().node.as_str())?;
            out.push(b':');
            self.field(f, node, out)?;
        }
        out.push(b'}');
        if let Some(key) = memo_key {
            self.memo.borrow_mut().insert(key, out[start..].to_vec());
        }
        Some(())
    }

    fn scalar(&self, f: &Field, obj: &Json, name: &str, out: &mut Vec<u8>) -> Option<()> {
        if !f.selection_set.node.items.is_empty() || !f.arguments.is_empty() {
            return None;
        }
        write_json(out, obj.get(name).unwrap_or(&Json::Null))
    }

    fn list(
        &self,
        f: &'a Field,
        items: Option<&'a Json>,
        deprecated_filter: Option<bool>,
        wrap: fn(&'a Json) -> Node<'a>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        let Some(Json::Array(items)) = items else {
            out.extend_from_slice(b"null");
            return Some(());
        };
        out.push(b'[');
        let mut first = true;
        for it in items {
            if deprecated_filter == Some(false)
                && it.get("isDeprecated").and_then(Json::as_bool) == Some(true)
            {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            self.object(&f.selection_set.node, wrap(it), out)?;
        }
        out.push(b']');
        Some(())
    }

    fn single(
        &self,
        f: &'a Field,
        v: Option<&'a Json>,
        wrap: fn(&'a Json) -> Node<'a>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        match v {
            None | Some(Json::Null) => {
                out.extend_from_slice(b"null");
                Some(())
            }
            Some(v) => self.object(&f.selection_set.node, wrap(v), out),
        }
    }

    fn field(&self, f: &'a Field, node: Node<'a>, out: &mut Vec<u8>) -> Option<()> {
        let name = f.name.node.as_str();
        if name == "__typename" {
            return write_str(out, node.typename());
        }
        match node {
            Node::Schema => {
                let s = &self.u.schema;
                match name {
                    "description" => self.scalar(f, s, name, out),
                    "types" => {
                        self.args(f, &[])?;
                        self.list(f, s.get("types"), None, Node::Type, out)
                    }
                    "queryType" | "mutationType" | "subscriptionType" => {
                        self.args(f, &[])?;
                        self.single(f, s.get(name), Node::Type, out)
                    }
                    "directives" => {
                        self.args(f, &[])?;
                        self.list(f, s.get("directives"), None, Node::Directive, out)
                    }
                    _ => None,
                }
            }
            Node::Type(t) => match name {
                "kind" | "name" | "description" | "specifiedByURL" | "isOneOf" => {
                    self.scalar(f, t, name, out)
                }
                "fields" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, t.get("fields"), Some(d), Node::Field, out)
                }
                "inputFields" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, t.get("inputFields"), Some(d), Node::InputValue, out)
                }
                "enumValues" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, t.get("enumValues"), Some(d), Node::EnumValue, out)
                }
                "interfaces" | "possibleTypes" => {
                    self.args(f, &[])?;
                    self.list(f, t.get(name), None, Node::Type, out)
                }
                "ofType" => {
                    self.args(f, &[])?;
                    self.single(f, t.get("ofType"), Node::Type, out)
                }
                _ => None,
            },
            Node::Field(x) => match name {
                "name" | "description" | "isDeprecated" | "deprecationReason" => {
                    self.scalar(f, x, name, out)
                }
                "args" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, x.get("args"), Some(d), Node::InputValue, out)
                }
                "type" => {
                    self.args(f, &[])?;
                    self.single(f, x.get("type"), Node::Type, out)
                }
                _ => None,
            },
            Node::InputValue(x) => match name {
                "name" | "description" | "defaultValue" | "isDeprecated" | "deprecationReason" => {
                    self.scalar(f, x, name, out)
                }
                "type" => {
                    self.args(f, &[])?;
                    self.single(f, x.get("type"), Node::Type, out)
                }
                _ => None,
            },
            Node::EnumValue(x) => match name {
                "name" | "description" | "isDeprecated" | "deprecationReason" => {
                    self.scalar(f, x, name, out)
                }
                _ => None,
            },
            Node::Directive(x) => match name {
                "name" | "description" | "locations" | "isRepeatable" => {
                    self.scalar(f, x, name, out)
                }
                "args" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, x.get("args"), Some(d), Node::InputValue, out)
                }
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The projector must give exactly what async-graphql gives.
    #[tokio::test]
    async fn projection_equals_execution() {
        let state = crate::graphql::GraphqlState::from_sdl(ferry_xurrent_schema::SDL).unwrap();
        let u = Universe::capture(&state.schema, &state.model)
            .await
            .unwrap();
        let orphans = ["DiscoveredItemStrategy", "DiscoveredReferenceArrayStrategy"];
        for o in orphans {
            assert!(u.types.contains_key(o), "orphan {o} not added");
        }
        let wire = u.schema["directives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "wireValue")
            .expect("@wireValue listed");
        assert_eq!(wire["locations"], serde_json::json!(["ENUM_VALUE"]));
        assert_eq!(wire["args"][0]["type"]["kind"], "NON_NULL");
        assert_eq!(wire["args"][0]["type"]["ofType"]["name"], "String");
        let queries = [
            CONNECTOR_INTROSPECTION_QUERY,
            MAXIMAL_QUERY,
            "{ __typename t: __type(name: \"Request\") { name kind f: fields { name args { name defaultValue type { name kind ofType { name } } } } interfaces { name } } }",
            "query Q($n: String!, $d: Boolean) { __type(name: $n) { name enumValues(includeDeprecated: $d) { name } ... on __Type { possibleTypes { name } } } x: __type(name: \"Nope\") { name } }",
            "{ __schema { queryType { name fields { name } } directives { name locations args { name } } types { name ...F } } } fragment F on __Type { kind inputFields { name type { kind ofType { kind name } } } }",
        ];
        let vars = serde_json::json!({ "n": "WebhookEvent", "d": true });
        for q in queries {
            let doc = async_graphql_parser::parse_query(q).unwrap();
            let projected = u.answer(&doc, None, &vars).expect(q);
            // async-graphql itself does not list the two orphan enums: drop them to compare.
            let mut projected: Json = serde_json::from_slice(&projected).unwrap();
            if let Some(Json::Array(types)) = projected.pointer_mut("/data/__schema/types") {
                types.retain(|t| {
                    !orphans.contains(&t.get("name").and_then(Json::as_str).unwrap_or(""))
                });
            }
            // ... nor the SDL's own `@wireValue` directive.
            if let Some(Json::Array(ds)) = projected.pointer_mut("/data/__schema/directives") {
                ds.retain(|d| d.get("name").and_then(Json::as_str) != Some("wireValue"));
            }
            let req = async_graphql::Request::new(q)
                .variables(async_graphql::Variables::from_json(vars.clone()));
            let executed = state.schema.execute(req).await;
            assert!(executed.errors.is_empty(), "{q}: {:?}", executed.errors);
            // Byte for byte, key order included.
            assert_eq!(
                projected.to_string(),
                serde_json::to_string(&executed).unwrap(),
                "{q}"
            );
        }
        // Shapes the projector does not handle fall back to execution.
        for q in [
            "{ __schema { types @include(if: true) { name } } }",
            "{ __schema { nope } }",
            "mutation { __typename }",
            "{ __type(name: \"Request\") { name } requests { totalCount } }",
            "{ __type(name: \"Request\") { name } __type(name: \"Request\") { kind } }",
        ] {
            let doc = async_graphql_parser::parse_query(q).unwrap();
            assert!(u.answer(&doc, None, &vars).is_none(), "{q}");
        }
    }
}
