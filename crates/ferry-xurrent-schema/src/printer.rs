//! Introspection result (`__schema` JSON) → SDL text.
//!
//! Layout follows the vendored `schema.graphql`: the `schema` block, directive definitions,
//! then scalars, interfaces, object types (root types first), unions, input objects and enums,
//! each group sorted by name; fields, arguments and values keep the server's order.

use std::fmt::Write as _;

use serde_json::Value;

use crate::{SchemaError, WireValues, BUILTIN_SCALARS};

/// Directives every GraphQL server defines; an SDL does not declare them.
const BUILTIN_DIRECTIVES: [&str; 5] = ["skip", "include", "deprecated", "specifiedBy", "oneOf"];

/// The deprecation reason GraphQL uses when none is given (printed as a bare `@deprecated`).
const DEFAULT_DEPRECATION: &str = "No longer supported";

/// Depth limit of nested `ofType` wrappers (a real schema needs a handful).
const MAX_TYPE_DEPTH: usize = 16;

/// Print the `__schema` object of an introspection result as SDL.
///
/// `wire` re-attaches `@wireValue(value: "...")` to the enum values it names (introspection
/// does not carry applied directives); the directive's definition is added when the result
/// does not declare it. Fails with [`SchemaError::InvalidIntrospection`] naming the place
/// when a required member (a name, a kind, a type reference) is missing.
pub fn introspection_to_sdl(schema: &Value, wire: &WireValues) -> Result<String, SchemaError> {
    let query = schema
        .get("queryType")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("__schema.queryType.name is missing"))?;
    let root_name = |key: &str| {
        schema
            .get(key)
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str)
    };
    let mutation = root_name("mutationType");
    let subscription = root_name("subscriptionType");
    let types = schema
        .get("types")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("__schema.types is missing"))?;

    let mut blocks: Vec<String> = Vec::new();
    let mut head = format!("schema {{\n  query: {query}\n");
    if let Some(m) = mutation {
        let _ = writeln!(head, "  mutation: {m}");
    }
    if let Some(s) = subscription {
        let _ = writeln!(head, "  subscription: {s}");
    }
    head.push('}');
    blocks.push(head);

    let directives = match schema.get("directives") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(_) => return Err(invalid("__schema.directives is not a list")),
    };
    let mut declared_wire = false;
    let mut directive_blocks = Vec::new();
    for d in directives {
        let name = str_member(d, "name", "a directive")?;
        if BUILTIN_DIRECTIVES.contains(&name) {
            continue;
        }
        declared_wire |= name == "wireValue";
        directive_blocks.push((name.to_string(), directive(d, name)?));
    }

    // Group the named types by kind.
    let mut groups: [Vec<(&str, &Value)>; 6] = Default::default();
    let mut used_wire = false;
    for t in types {
        let name = str_member(t, "name", "a type")?;
        if name.starts_with("__") {
            continue;
        }
        let kind = str_member(t, "kind", name)?;
        let group = match kind {
            "SCALAR" if BUILTIN_SCALARS.contains(&name) => continue,
            "SCALAR" => 0,
            "INTERFACE" => 1,
            "OBJECT" => 2,
            "UNION" => 3,
            "INPUT_OBJECT" => 4,
            "ENUM" => 5,
            other => return Err(invalid(format!("type {name} has unknown kind {other}"))),
        };
        groups[group].push((name, t));
    }
    let roots = [Some(query), mutation, subscription];
    let root_rank = |n: &str| {
        roots
            .iter()
            .position(|r| *r == Some(n))
            .unwrap_or(roots.len())
    };
    for (i, g) in groups.iter_mut().enumerate() {
        if i == 2 {
            g.sort_by(|a, b| root_rank(a.0).cmp(&root_rank(b.0)).then(a.0.cmp(b.0)));
        } else {
            g.sort_by(|a, b| a.0.cmp(b.0));
        }
    }

    let mut type_blocks = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        for (name, t) in g {
            let mut out = String::new();
            description(&mut out, t, "");
            match i {
                0 => {
                    let _ = write!(out, "scalar {name}");
                    if let Some(url) = t.get("specifiedByURL").and_then(Value::as_str) {
                        let _ = write!(out, " @specifiedBy(url: {})", quote(url));
                    }
                }
                1 | 2 => {
                    out.push_str(if i == 1 { "interface " } else { "type " });
                    out.push_str(name);
                    let interfaces = names_of(t.get("interfaces"), name)?;
                    if !interfaces.is_empty() {
                        let _ = write!(out, " implements {}", interfaces.join(" & "));
                    }
                    fields(&mut out, t, name)?;
                }
                3 => {
                    let members = names_of(t.get("possibleTypes"), name)?;
                    let _ = write!(out, "union {name}");
                    if !members.is_empty() {
                        let _ = write!(out, " = {}", members.join(" | "));
                    }
                }
                4 => {
                    let _ = write!(out, "input {name}");
                    if t.get("isOneOf").and_then(Value::as_bool) == Some(true) {
                        out.push_str(" @oneOf");
                    }
                    input_fields(&mut out, t, name)?;
                }
                _ => {
                    let _ = write!(out, "enum {name}");
                    used_wire |= enum_values(&mut out, t, name, wire)?;
                }
            }
            type_blocks.push(out);
        }
    }

    if used_wire && !declared_wire {
        directive_blocks.push((
            "wireValue".into(),
            "\"\"\"Original wire value of an enum value whose API name is not a valid GraphQL name.\"\"\"\ndirective @wireValue(value: String!) on ENUM_VALUE".into(),
        ));
    }
    directive_blocks.sort_by(|a, b| a.0.cmp(&b.0));
    blocks.extend(directive_blocks.into_iter().map(|(_, b)| b));
    blocks.extend(type_blocks);
    let mut sdl = blocks.join("\n\n");
    sdl.push('\n');
    Ok(sdl)
}

fn invalid(msg: impl Into<String>) -> SchemaError {
    SchemaError::InvalidIntrospection(msg.into())
}

fn str_member<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, SchemaError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no {key}")))
}

/// Members of a JSON list that may be absent or null.
fn list<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a [Value], SchemaError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(invalid(format!("{what} is not a list"))),
    }
}

fn names_of<'a>(v: Option<&'a Value>, owner: &str) -> Result<Vec<&'a str>, SchemaError> {
    list(v, owner)?
        .iter()
        .map(|i| str_member(i, "name", &format!("a type reference of {owner}")))
        .collect()
}

/// A type reference (`{kind, name, ofType}`) as SDL: `[Foo!]!`.
fn type_ref(v: &Value, place: &str) -> Result<String, SchemaError> {
    fn go(v: &Value, place: &str, depth: usize) -> Result<String, SchemaError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(invalid(format!("the type of {place} is nested too deeply")));
        }
        let inner = || match v.get("ofType") {
            Some(t) if t.is_object() => go(t, place, depth + 1),
            _ => Err(invalid(format!(
                "the type of {place} is a wrapper without ofType (query deeper)"
            ))),
        };
        match v.get("kind").and_then(Value::as_str) {
            Some("NON_NULL") => Ok(format!("{}!", inner()?)),
            Some("LIST") => Ok(format!("[{}]", inner()?)),
            Some(_) => Ok(str_member(v, "name", &format!("the type of {place}"))?.to_string()),
            None => Err(invalid(format!("the type of {place} has no kind"))),
        }
    }
    go(v, place, 0)
}

/// A string literal with GraphQL escapes (JSON's escapes are a subset of GraphQL's).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Whether `s` prints unchanged as a block string: block strings strip common indentation and
/// leading/trailing blank lines, and end at `"""`.
fn block_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("\"\"\"")
        && !s.ends_with('"')
        && !s.ends_with('\\')
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && s.lines()
            .skip(1)
            .all(|l| !l.starts_with(char::is_whitespace))
}

/// The `description` of `v` (if any) on its own line(s), indented.
fn description(out: &mut String, v: &Value, indent: &str) {
    let Some(d) = v.get("description").and_then(Value::as_str) else {
        return;
    };
    if d.is_empty() {
        return;
    }
    if !block_safe(d) {
        let _ = writeln!(out, "{indent}{}", quote(d));
    } else if !d.contains('\n') {
        let _ = writeln!(out, "{indent}\"\"\"{d}\"\"\"");
    } else {
        let _ = writeln!(out, "{indent}\"\"\"");
        for line in d.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{indent}{line}");
            }
        }
        let _ = writeln!(out, "{indent}\"\"\"");
    }
}

/// ` @deprecated(reason: "...")` when `v` is deprecated.
fn deprecation(v: &Value) -> String {
    if v.get("isDeprecated").and_then(Value::as_bool) != Some(true) {
        return String::new();
    }
    match v.get("deprecationReason").and_then(Value::as_str) {
        Some(r) if !r.is_empty() && r != DEFAULT_DEPRECATION => {
            format!(" @deprecated(reason: {})", quote(r))
        }
        _ => " @deprecated".into(),
    }
}

/// One input value (`name: Type = default`), without description.
fn input_value(v: &Value, owner: &str) -> Result<String, SchemaError> {
    let name = str_member(v, "name", &format!("an input value of {owner}"))?;
    let place = format!("{owner}.{name}");
    let ty = v
        .get("type")
        .ok_or_else(|| invalid(format!("{place} has no type")))?;
    let mut s = format!("{name}: {}", type_ref(ty, &place)?);
    if let Some(d) = v.get("defaultValue").and_then(Value::as_str) {
        let _ = write!(s, " = {d}");
    }
    s.push_str(&deprecation(v));
    Ok(s)
}

/// `(a: Int, b: String)`, or one argument per line when any has a description.
fn arguments(args: &[Value], owner: &str, indent: &str) -> Result<String, SchemaError> {
    if args.is_empty() {
        return Ok(String::new());
    }
    let described = args.iter().any(|a| {
        a.get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty())
    });
    if !described {
        let parts: Result<Vec<_>, _> = args.iter().map(|a| input_value(a, owner)).collect();
        return Ok(format!("({})", parts?.join(", ")));
    }
    let inner = format!("{indent}  ");
    let mut s = String::from("(\n");
    for a in args {
        description(&mut s, a, &inner);
        let _ = writeln!(s, "{inner}{}", input_value(a, owner)?);
    }
    let _ = write!(s, "{indent})");
    Ok(s)
}

fn directive(d: &Value, name: &str) -> Result<String, SchemaError> {
    let mut out = String::new();
    description(&mut out, d, "");
    let owner = format!("@{name}");
    let args = arguments(list(d.get("args"), &owner)?, &owner, "")?;
    let locations: Vec<&str> = list(d.get("locations"), &owner)?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if locations.is_empty() {
        return Err(invalid(format!("directive {owner} has no locations")));
    }
    let _ = write!(out, "directive @{name}{args}");
    if d.get("isRepeatable").and_then(Value::as_bool) == Some(true) {
        out.push_str(" repeatable");
    }
    let _ = write!(out, " on {}", locations.join(" | "));
    Ok(out)
}

fn fields(out: &mut String, t: &Value, owner: &str) -> Result<(), SchemaError> {
    let fields = list(t.get("fields"), owner)?;
    if fields.is_empty() {
        return Ok(());
    }
    out.push_str(" {\n");
    for f in fields {
        let name = str_member(f, "name", &format!("a field of {owner}"))?;
        let place = format!("{owner}.{name}");
        description(out, f, "  ");
        let args = arguments(list(f.get("args"), &place)?, &place, "  ")?;
        let ty = f
            .get("type")
            .ok_or_else(|| invalid(format!("{place} has no type")))?;
        let _ = writeln!(
            out,
            "  {name}{args}: {}{}",
            type_ref(ty, &place)?,
            deprecation(f)
        );
    }
    out.push('}');
    Ok(())
}

fn input_fields(out: &mut String, t: &Value, owner: &str) -> Result<(), SchemaError> {
    let fields = list(t.get("inputFields"), owner)?;
    if fields.is_empty() {
        return Ok(());
    }
    out.push_str(" {\n");
    for f in fields {
        description(out, f, "  ");
        let _ = writeln!(out, "  {}", input_value(f, owner)?);
    }
    out.push('}');
    Ok(())
}

/// Prints the values; returns whether a `@wireValue` was attached.
fn enum_values(
    out: &mut String,
    t: &Value,
    owner: &str,
    wire: &WireValues,
) -> Result<bool, SchemaError> {
    let values = list(t.get("enumValues"), owner)?;
    if values.is_empty() {
        return Ok(false);
    }
    let mut used = false;
    out.push_str(" {\n");
    for v in values {
        let name = str_member(v, "name", &format!("a value of {owner}"))?;
        description(out, v, "  ");
        let _ = write!(out, "  {name}");
        if let Some(w) = wire.get(&(owner.to_string(), name.to_string())) {
            let _ = write!(out, " @wireValue(value: {})", quote(w));
            used = true;
        }
        let _ = writeln!(out, "{}", deprecation(v));
    }
    out.push('}');
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn named(kind: &str, name: &str) -> Value {
        json!({"kind": kind, "name": name, "ofType": null})
    }

    fn non_null(inner: Value) -> Value {
        json!({"kind": "NON_NULL", "name": null, "ofType": inner})
    }

    fn list_of(inner: Value) -> Value {
        json!({"kind": "LIST", "name": null, "ofType": inner})
    }

    fn small_schema() -> Value {
        json!({
            "queryType": {"name": "Query"},
            "mutationType": {"name": "Mutation"},
            "subscriptionType": null,
            "directives": [
                {"name": "skip", "description": "built in", "locations": ["FIELD"],
                 "args": [{"name": "if", "description": null,
                           "type": non_null(named("SCALAR", "Boolean")), "defaultValue": null}]},
                {"name": "wireValue", "description": "Original spelling.", "locations": ["ENUM_VALUE"],
                 "args": [{"name": "value", "description": null,
                           "type": non_null(named("SCALAR", "String")), "defaultValue": null}]}
            ],
            "types": [
                {"kind": "SCALAR", "name": "String"},
                {"kind": "OBJECT", "name": "__Schema", "fields": []},
                {"kind": "SCALAR", "name": "ISO8601Timestamp", "description": null},
                {"kind": "OBJECT", "name": "Request", "description": "A request.\nSecond line.",
                 "interfaces": [named("INTERFACE", "Node")],
                 "fields": [
                    {"name": "id", "description": null, "args": [],
                     "type": non_null(named("SCALAR", "ID")), "isDeprecated": false,
                     "deprecationReason": null},
                    {"name": "notes", "description": null,
                     "args": [{"name": "first", "description": null,
                               "type": named("SCALAR", "Int"), "defaultValue": "10"}],
                     "type": list_of(non_null(named("OBJECT", "Note"))),
                     "isDeprecated": true, "deprecationReason": "Use \"history\"."},
                    {"name": "old", "description": null, "args": [],
                     "type": named("SCALAR", "String"), "isDeprecated": true,
                     "deprecationReason": "No longer supported"}
                 ]},
                {"kind": "OBJECT", "name": "Query", "interfaces": [], "fields": [
                    {"name": "node", "description": "Fetch by id.",
                     "args": [{"name": "id", "description": "The node id.",
                               "type": non_null(named("SCALAR", "ID")), "defaultValue": null}],
                     "type": named("INTERFACE", "Node")}
                ]},
                {"kind": "OBJECT", "name": "Mutation", "fields": [
                    {"name": "noop", "args": [], "type": named("SCALAR", "Boolean")}
                ]},
                {"kind": "INTERFACE", "name": "Node", "fields": [
                    {"name": "id", "args": [], "type": non_null(named("SCALAR", "ID"))}
                ], "possibleTypes": [named("OBJECT", "Request")]},
                {"kind": "UNION", "name": "Thing",
                 "possibleTypes": [named("OBJECT", "Request"), named("OBJECT", "Note")]},
                {"kind": "OBJECT", "name": "Note", "fields": [
                    {"name": "text", "args": [], "type": named("SCALAR", "String")}
                ]},
                {"kind": "INPUT_OBJECT", "name": "RequestFilter", "inputFields": [
                    {"name": "view", "description": null,
                     "type": named("ENUM", "WebhookEvent"), "defaultValue": "request_create"},
                    {"name": "ids", "description": null,
                     "type": list_of(non_null(named("SCALAR", "ID"))), "defaultValue": "[\"a\"]"}
                ]},
                {"kind": "ENUM", "name": "WebhookEvent", "enumValues": [
                    {"name": "request_create", "description": null, "isDeprecated": false},
                    {"name": "app_instance_secrets_update", "description": null,
                     "isDeprecated": false}
                ]}
            ]
        })
    }

    fn wire() -> WireValues {
        let mut w = WireValues::new();
        w.insert(
            ("WebhookEvent".into(), "app_instance_secrets_update".into()),
            "app_instance.secrets-update".into(),
        );
        w
    }

    #[test]
    fn prints_every_kind_in_order() {
        let sdl = introspection_to_sdl(&small_schema(), &wire()).unwrap();
        let expected = r#"schema {
  query: Query
  mutation: Mutation
}

"""Original spelling."""
directive @wireValue(value: String!) on ENUM_VALUE

scalar ISO8601Timestamp

interface Node {
  id: ID!
}

type Query {
  """Fetch by id."""
  node(
    """The node id."""
    id: ID!
  ): Node
}

type Mutation {
  noop: Boolean
}

type Note {
  text: String
}

"""
A request.
Second line.
"""
type Request implements Node {
  id: ID!
  notes(first: Int = 10): [Note!] @deprecated(reason: "Use \"history\".")
  old: String @deprecated
}

union Thing = Request | Note

input RequestFilter {
  view: WebhookEvent = request_create
  ids: [ID!] = ["a"]
}

enum WebhookEvent {
  request_create
  app_instance_secrets_update @wireValue(value: "app_instance.secrets-update")
}
"#;
        assert_eq!(sdl, expected);
    }

    #[test]
    fn printed_sdl_parses_back_with_the_same_types_and_wire_values() {
        let sdl = introspection_to_sdl(&small_schema(), &wire()).unwrap();
        let names = crate::type_names(&sdl).unwrap();
        let expected: Vec<&str> = vec![
            "ISO8601Timestamp",
            "Mutation",
            "Node",
            "Note",
            "Query",
            "Request",
            "RequestFilter",
            "Thing",
            "WebhookEvent",
        ];
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(crate::wire_values(&sdl).unwrap(), wire());
    }

    #[test]
    fn wire_directive_definition_is_added_when_missing() {
        let mut s = small_schema();
        s["directives"] = json!([]);
        let sdl = introspection_to_sdl(&s, &wire()).unwrap();
        assert!(sdl.contains("directive @wireValue(value: String!) on ENUM_VALUE"));
        assert!(crate::type_names(&sdl).is_ok());
        // Without wire values there is nothing to declare.
        let sdl = introspection_to_sdl(&s, &WireValues::new()).unwrap();
        assert!(!sdl.contains("wireValue"));
    }

    #[test]
    fn descriptions_that_a_block_string_would_change_are_quoted() {
        let mut s = small_schema();
        s["types"][2]["description"] = json!("  indented\n  lines\"");
        let sdl = introspection_to_sdl(&s, &WireValues::new()).unwrap();
        assert!(sdl.contains("\"  indented\\n  lines\\\"\"\nscalar ISO8601Timestamp"));
        let doc = async_graphql_parser::parse_schema(&sdl).unwrap();
        let desc = doc.definitions.iter().find_map(|d| match d {
            async_graphql_parser::types::TypeSystemDefinition::Type(t)
                if t.node.name.node == "ISO8601Timestamp" =>
            {
                t.node.description.as_ref().map(|d| d.node.clone())
            }
            _ => None,
        });
        assert_eq!(desc.as_deref(), Some("  indented\n  lines\""));
    }

    #[test]
    fn missing_pieces_are_named_in_the_error() {
        let mut s = small_schema();
        s["types"][3]["fields"][0]["type"] = json!({"kind": "NON_NULL", "name": null});
        let err = introspection_to_sdl(&s, &WireValues::new()).unwrap_err();
        assert_eq!(
            err,
            SchemaError::InvalidIntrospection(
                "the type of Request.id is a wrapper without ofType (query deeper)".into()
            )
        );

        let err = introspection_to_sdl(&json!({"types": []}), &WireValues::new()).unwrap_err();
        assert_eq!(
            err,
            SchemaError::InvalidIntrospection("__schema.queryType.name is missing".into())
        );

        let mut s = small_schema();
        s["types"][2]["kind"] = json!("WIDGET");
        let err = introspection_to_sdl(&s, &WireValues::new()).unwrap_err();
        assert_eq!(
            err,
            SchemaError::InvalidIntrospection(
                "type ISO8601Timestamp has unknown kind WIDGET".into()
            )
        );
    }
}
