//! `ferry-xurrent-schema`: the Xurrent (formerly 4me) GraphQL schema as part of the product.
//!
//! - [`SDL`] is the vendored SDL (`schema.graphql` next to this crate's `Cargo.toml`), embedded
//!   in every binary that links this crate, so that the emulator and the tests never read a
//!   schema file from disk. How it is refreshed is described in `docs/emulator.md`.
//! - [`INTROSPECTION_QUERY`] and [`sdl_from_response`] turn the answer of a live (or emulated)
//!   Xurrent GraphQL endpoint back into SDL; `ferry xurrent schema --from-url …` is the command
//!   that does the HTTP part.
//!
//! Everything here is pure: no I/O.

mod printer;

use std::collections::{BTreeMap, BTreeSet};

use async_graphql_parser::types::{TypeKind, TypeSystemDefinition};
use serde_json::Value;

pub use printer::introspection_to_sdl;

/// The vendored Xurrent GraphQL SDL.
pub const SDL: &str = include_str!("../schema.graphql");

/// The introspection query sent by `ferry xurrent schema`: everything the SDL printer needs
/// (descriptions, deprecations, default values, directive definitions), using only fields that
/// every GraphQL server of the 2018 specification or later answers.
pub const INTROSPECTION_QUERY: &str = "query FerryIntrospection {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  fields(includeDeprecated: true) {
    name
    description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType {
  kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}";

/// Names of the built-in scalars, which an SDL does not declare.
pub const BUILTIN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// Errors of the pure schema functions.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    /// The endpoint answered GraphQL errors instead of data.
    #[error("the endpoint answered GraphQL errors: {0}")]
    GraphqlErrors(String),
    /// The introspection answer lacks something the printer needs, or has the wrong shape.
    #[error("invalid introspection result: {0}")]
    InvalidIntrospection(String),
    /// An SDL text does not parse.
    #[error("invalid SDL: {0}")]
    InvalidSdl(String),
}

/// The original ("wire") spelling of enum values renamed in the SDL, keyed by
/// `(enum type, GraphQL value name)`: the `@wireValue(value: "...")` directives of an SDL.
pub type WireValues = BTreeMap<(String, String), String>;

/// The `@wireValue(value: "...")` directives of `sdl`, to re-attach when printing an
/// introspection result (standard introspection does not carry applied directives).
pub fn wire_values(sdl: &str) -> Result<WireValues, SchemaError> {
    let doc = parse(sdl)?;
    let mut out = WireValues::new();
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let TypeKind::Enum(e) = &t.node.kind else {
            continue;
        };
        for v in &e.values {
            for d in &v.node.directives {
                if d.node.name.node != "wireValue" {
                    continue;
                }
                if let Some(async_graphql_value::ConstValue::String(s)) =
                    d.node.get_argument("value").map(|a| &a.node)
                {
                    out.insert(
                        (t.node.name.node.to_string(), v.node.value.node.to_string()),
                        s.clone(),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// The names of the types an SDL declares (scalars, objects, interfaces, unions, enums, inputs).
pub fn type_names(sdl: &str) -> Result<BTreeSet<String>, SchemaError> {
    let doc = parse(sdl)?;
    Ok(doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) => Some(t.node.name.node.to_string()),
            _ => None,
        })
        .collect())
}

fn parse(sdl: &str) -> Result<async_graphql_parser::types::ServiceDocument, SchemaError> {
    async_graphql_parser::parse_schema(sdl).map_err(|e| SchemaError::InvalidSdl(e.to_string()))
}

/// Turn the JSON answer of [`INTROSPECTION_QUERY`] (`{"data": {"__schema": …}}`) into SDL,
/// re-attaching `wire` directives to the enum values they name.
///
/// An answer with `errors` and no usable `data` fails with [`SchemaError::GraphqlErrors`]
/// listing the messages.
pub fn sdl_from_response(response: &Value, wire: &WireValues) -> Result<String, SchemaError> {
    let schema = response.get("data").and_then(|d| d.get("__schema"));
    match schema {
        Some(s) if s.is_object() => introspection_to_sdl(s, wire),
        _ => {
            if let Some(errors) = response.get("errors").and_then(Value::as_array) {
                let messages: Vec<String> = errors
                    .iter()
                    .map(|e| match e.get("message").and_then(Value::as_str) {
                        Some(m) => m.to_string(),
                        None => e.to_string(),
                    })
                    .collect();
                return Err(SchemaError::GraphqlErrors(messages.join("; ")));
            }
            Err(SchemaError::InvalidIntrospection(
                "the answer has no data.__schema object".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_sdl_parses_and_declares_every_type() {
        let names = type_names(SDL).unwrap();
        // 516 objects + 394 inputs + 194 enums + 13 interfaces + 8 scalars.
        assert_eq!(names.len(), 1125);
        assert!(names.contains("Request"));
        assert!(names.contains("WebhookEvent"));
    }

    #[test]
    fn wire_values_of_the_embedded_sdl() {
        let wire = wire_values(SDL).unwrap();
        assert_eq!(wire.len(), 93);
        assert_eq!(
            wire.get(&(
                "WebhookEvent".to_string(),
                "app_instance_secrets_update".to_string()
            ))
            .map(String::as_str),
            Some("app_instance.secrets-update")
        );
    }

    #[test]
    fn graphql_errors_are_reported_with_their_messages() {
        let resp = json!({"errors": [{"message": "Field '__schema' doesn't exist"}, {"x": 1}]});
        let err = sdl_from_response(&resp, &WireValues::new()).unwrap_err();
        assert_eq!(
            err,
            SchemaError::GraphqlErrors("Field '__schema' doesn't exist; {\"x\":1}".into())
        );
    }

    #[test]
    fn an_answer_without_schema_is_invalid() {
        let err = sdl_from_response(&json!({"data": null}), &WireValues::new()).unwrap_err();
        assert!(matches!(err, SchemaError::InvalidIntrospection(_)));
    }

    #[test]
    fn invalid_sdl_is_an_error_not_a_panic() {
        assert!(matches!(
            type_names("type {"),
            Err(SchemaError::InvalidSdl(_))
        ));
    }
}
