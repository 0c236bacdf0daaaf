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
use serde_json::{Map, Value as Json};

/// Selection used to capture the universe.
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
}

impl Universe {
    /// Capture the universe of `schema`; `None` if async-graphql cannot answer the query.
    pub(crate) async fn capture(schema: &async_graphql::dynamic::Schema) -> Option<Universe> {
        let resp = schema
            .execute(async_graphql::Request::new(MAXIMAL_QUERY))
            .await;
        if !resp.errors.is_empty() {
            tracing::warn!(errors = ?resp.errors, "cannot capture introspection universe");
            return None;
        }
        let data = resp.data.into_json().ok()?;
        let schema = data.get("__schema")?.clone();
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

    /// Answer an introspection-only request as the JSON body (`{"data": ...}`), or `None`
    /// when the request must be executed by async-graphql.
    pub(crate) fn answer(
        &self,
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        vars: &Json,
    ) -> Option<Json> {
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
        let p = Projector { u: self, doc, vars };
        let data = p.root(&op.node.selection_set.node)?;
        let mut out = Map::new();
        out.insert("data".into(), Json::Object(data));
        Some(Json::Object(out))
    }
}

fn merge(out: &mut Map<String, Json>, key: String, value: Json) {
    match (out.get_mut(&key), value) {
        (Some(Json::Object(a)), Json::Object(b)) => {
            for (k, v) in b {
                merge(a, k, v);
            }
        }
        (Some(Json::Array(a)), Json::Array(b)) if a.len() == b.len() => {
            for (x, y) in a.iter_mut().zip(b) {
                if let (Json::Object(xo), Json::Object(yo)) = (x, y) {
                    for (k, v) in yo {
                        merge(xo, k, v);
                    }
                }
            }
        }
        (_, value) => {
            out.insert(key, value);
        }
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

    fn root(&self, set: &'a SelectionSet) -> Option<Map<String, Json>> {
        let mut fields = Vec::new();
        self.collect(set, &self.u.query_type, &mut fields)?;
        let mut out = Map::new();
        for f in fields {
            let key = f.response_key().node.to_string();
            let value = match f.name.node.as_str() {
                "__typename" => Json::String(self.u.query_type.clone()),
                "__schema" => {
                    self.args(f, &[])?;
                    Json::Object(self.object(&f.selection_set.node, Node::Schema)?)
                }
                "__type" => {
                    let args = self.args(f, &["name"])?;
                    let name = args.get("name")?.as_str()?;
                    match self.u.types.get(name) {
                        Some(t) => Json::Object(self.object(&f.selection_set.node, Node::Type(t))?),
                        None => Json::Null,
                    }
                }
                _ => return None,
            };
            merge(&mut out, key, value);
        }
        Some(out)
    }

    fn object(&self, set: &'a SelectionSet, node: Node<'a>) -> Option<Map<String, Json>> {
        if set.items.is_empty() {
            return None;
        }
        let node = match node {
            // Named type references resolve to the full type.
            Node::Type(t) => match t.get("name").and_then(Json::as_str) {
                Some(name) => Node::Type(self.u.types.get(name)?),
                None => Node::Type(t),
            },
            other => other,
        };
        let mut fields = Vec::new();
        self.collect(set, node.typename(), &mut fields)?;
        let mut out = Map::new();
        for f in fields {
            let key = f.response_key().node.to_string();
            let value = self.field(f, node)?;
            merge(&mut out, key, value);
        }
        Some(out)
    }

    fn scalar(&self, f: &Field, obj: &Json, name: &str) -> Option<Json> {
        if !f.selection_set.node.items.is_empty() || !f.arguments.is_empty() {
            return None;
        }
        obj.get(name).cloned()
    }

    fn list(
        &self,
        f: &'a Field,
        items: Option<&'a Json>,
        deprecated_filter: Option<bool>,
        wrap: fn(&'a Json) -> Node<'a>,
    ) -> Option<Json> {
        let Some(items) = items else {
            return Some(Json::Null);
        };
        let Json::Array(items) = items else {
            return Some(Json::Null);
        };
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            if deprecated_filter == Some(false)
                && it.get("isDeprecated").and_then(Json::as_bool) == Some(true)
            {
                continue;
            }
            out.push(Json::Object(self.object(&f.selection_set.node, wrap(it))?));
        }
        Some(Json::Array(out))
    }

    fn single(
        &self,
        f: &'a Field,
        v: Option<&'a Json>,
        wrap: fn(&'a Json) -> Node<'a>,
    ) -> Option<Json> {
        match v {
            None | Some(Json::Null) => Some(Json::Null),
            Some(v) => Some(Json::Object(self.object(&f.selection_set.node, wrap(v))?)),
        }
    }

    fn field(&self, f: &'a Field, node: Node<'a>) -> Option<Json> {
        let name = f.name.node.as_str();
        if name == "__typename" {
            return Some(Json::String(node.typename().into()));
        }
        match node {
            Node::Schema => {
                let s = &self.u.schema;
                match name {
                    "description" => self.scalar(f, s, name),
                    "types" => {
                        self.args(f, &[])?;
                        self.list(f, s.get("types"), None, Node::Type)
                    }
                    "queryType" | "mutationType" | "subscriptionType" => {
                        self.args(f, &[])?;
                        self.single(f, s.get(name), Node::Type)
                    }
                    "directives" => {
                        self.args(f, &[])?;
                        self.list(f, s.get("directives"), None, Node::Directive)
                    }
                    _ => None,
                }
            }
            Node::Type(t) => match name {
                "kind" | "name" | "description" | "specifiedByURL" | "isOneOf" => {
                    if !f.selection_set.node.items.is_empty() || !f.arguments.is_empty() {
                        return None;
                    }
                    Some(t.get(name).cloned().unwrap_or(Json::Null))
                }
                "fields" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, t.get("fields"), Some(d), Node::Field)
                }
                "inputFields" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, t.get("inputFields"), Some(d), Node::InputValue)
                }
                "enumValues" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, t.get("enumValues"), Some(d), Node::EnumValue)
                }
                "interfaces" | "possibleTypes" => {
                    self.args(f, &[])?;
                    self.list(f, t.get(name), None, Node::Type)
                }
                "ofType" => {
                    self.args(f, &[])?;
                    self.single(f, t.get("ofType"), Node::Type)
                }
                _ => None,
            },
            Node::Field(x) => match name {
                "name" | "description" | "isDeprecated" | "deprecationReason" => {
                    self.scalar(f, x, name)
                }
                "args" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, x.get("args"), Some(d), Node::InputValue)
                }
                "type" => {
                    self.args(f, &[])?;
                    self.single(f, x.get("type"), Node::Type)
                }
                _ => None,
            },
            Node::InputValue(x) => match name {
                "name" | "description" | "defaultValue" | "isDeprecated" | "deprecationReason" => {
                    self.scalar(f, x, name)
                }
                "type" => {
                    self.args(f, &[])?;
                    self.single(f, x.get("type"), Node::Type)
                }
                _ => None,
            },
            Node::EnumValue(x) => match name {
                "name" | "description" | "isDeprecated" | "deprecationReason" => {
                    self.scalar(f, x, name)
                }
                _ => None,
            },
            Node::Directive(x) => match name {
                "name" | "description" | "locations" | "isRepeatable" => self.scalar(f, x, name),
                "args" => {
                    let d = self.include_deprecated(f)?;
                    self.list(f, x.get("args"), Some(d), Node::InputValue)
                }
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_path() -> std::path::PathBuf {
        match std::env::var("FERRY_XURRENT_SCHEMA") {
            Ok(p) => p.into(),
            Err(_) => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/xurrent/schema.graphql"),
        }
    }

    /// The projector must give exactly what async-graphql gives.
    #[tokio::test]
    async fn projection_equals_execution() {
        let sdl = std::fs::read_to_string(schema_path()).unwrap();
        let state = crate::graphql::GraphqlState::from_sdl(&sdl).unwrap();
        let u = Universe::capture(&state.schema).await.unwrap();
        let queries = [
            crate::bench::INTROSPECTION_QUERY,
            MAXIMAL_QUERY,
            "{ __typename t: __type(name: \"Request\") { name kind f: fields { name args { name defaultValue type { name kind ofType { name } } } } interfaces { name } } }",
            "query Q($n: String!, $d: Boolean) { __type(name: $n) { name enumValues(includeDeprecated: $d) { name } ... on __Type { possibleTypes { name } } } x: __type(name: \"Nope\") { name } }",
            "{ __schema { queryType { name fields { name } } directives { name locations args { name } } types { name ...F } } } fragment F on __Type { kind inputFields { name type { kind ofType { kind name } } } }",
        ];
        let vars = serde_json::json!({ "n": "WebhookEvent", "d": true });
        for q in queries {
            let doc = async_graphql_parser::parse_query(q).unwrap();
            let projected = u.answer(&doc, None, &vars).expect(q);
            let req = async_graphql::Request::new(q)
                .variables(async_graphql::Variables::from_json(vars.clone()));
            let executed = state.schema.execute(req).await;
            assert!(executed.errors.is_empty(), "{q}: {:?}", executed.errors);
            let executed = serde_json::to_value(&executed).unwrap();
            assert_eq!(projected, executed, "{q}");
            // Key order matters too (clients may compare text).
            assert_eq!(projected.to_string(), executed.to_string(), "{q}");
        }
        // Shapes the projector does not handle fall back to execution.
        for q in [
            "{ __schema { types @include(if: true) { name } } }",
            "{ __schema { nope } }",
            "mutation { __typename }",
            "{ __type(name: \"Request\") { name } requests { totalCount } }",
        ] {
            let doc = async_graphql_parser::parse_query(q).unwrap();
            assert!(u.answer(&doc, None, &vars).is_none(), "{q}");
        }
    }
}
