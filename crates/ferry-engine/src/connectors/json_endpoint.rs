//! JSON Endpoint connector: a trigger that accepts JSON bodies (spec §9.3), and inbound
//! connections that check an API key and/or basic auth (spec §5.1).

use async_trait::async_trait;
use base64::Engine as _;
use ferry_core::model::Direction;
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{json, Map, Value};

use crate::connector::{constant_time_eq, Connector, ConnectorSpec, InboundAuth};
use crate::registry::Registry;
use crate::trigger::{Parsed, Trigger, TriggerContext, TriggerError, TriggerParse, TriggerSpec};

/// Register the JSON endpoint connector.
pub fn register(r: &mut Registry) {
    r.connector(JsonEndpoint::new());
    r.trigger(Endpoint::new());
}

/// The connector: inbound connections with API key and basic auth validators.
pub struct JsonEndpoint(ConnectorSpec);

impl JsonEndpoint {
    fn new() -> Self {
        JsonEndpoint(
            ConnectorSpec::new(
                "json_endpoint",
                "Receive JSON over HTTP (API key or basic auth on the inbound connection)",
            )
            .inbound(vec![
                Field::new("api_key", FieldType::Nested)
                    .hint("Fill out these details to verify the inbound request.")
                    .with_fields(vec![
                        Field::new("key", FieldType::String).required(),
                        // Sealed at load time (even when written in plain text), so that the
                        // API shows `[secret]`; revealed only to compare.
                        Field::new("value", FieldType::SecretString).required(),
                        Field::new("placement", FieldType::String).hint(PLACEMENT_HINT),
                    ]),
                Field::new("basic_auth", FieldType::Nested).with_fields(vec![
                    Field::new("username", FieldType::String).required(),
                    Field::new("password", FieldType::SecretString).required(),
                ]),
            ]),
        )
    }
}

/// Hint of an API key's `placement`.
pub const PLACEMENT_HINT: &str = "`Header` (default) or `Query params`";

/// Whether an API key's `placement` puts it in the query string; `None`: not a placement.
pub fn placement_in_query(placement: Option<&str>) -> Option<bool> {
    match placement.map(|p| p.trim().to_ascii_lowercase()) {
        None => Some(false),
        Some(p) if p.is_empty() || p == "header" || p == "headers" => Some(false),
        Some(p) if p == "query params" || p == "query" => Some(true),
        Some(_) => None,
    }
}

fn conf<'a>(config: &'a Value, a: &str, b: &str) -> Option<&'a str> {
    config.get(a)?.get(b)?.as_str().filter(|s| !s.is_empty())
}

/// Check an API key's placement (for `ferry validate`).
pub fn check_placement(config: &Value) -> Vec<String> {
    let placement = config
        .get("api_key")
        .and_then(|a| a.get("placement"))
        .and_then(Value::as_str);
    match placement_in_query(placement) {
        Some(_) => Vec::new(),
        None => vec![format!(
            "api_key.placement: '{}' is not a placement (use {PLACEMENT_HINT})",
            placement.unwrap_or_default()
        )],
    }
}

#[async_trait]
impl Connector for JsonEndpoint {
    fn spec(&self) -> &ConnectorSpec {
        &self.0
    }

    fn check_connection(&self, _direction: Direction, config: &Value) -> Vec<String> {
        check_placement(config)
    }

    /// Every configured validator must pass; unconfigured ones are skipped, so a connection
    /// with none accepts every request.
    async fn authenticate_inbound(&self, auth: &InboundAuth<'_>) -> Result<(), TriggerError> {
        let config = &auth.connection.config;
        let request = auth.request;
        if let (Some(key), Some(expected)) = (
            conf(config, "api_key", "key"),
            conf(config, "api_key", "value"),
        ) {
            let expected = auth.reveal(expected)?;
            let in_query = placement_in_query(conf(config, "api_key", "placement")) == Some(true);
            let got = if in_query {
                request.query_param(key)
            } else {
                request.header(key).map(str::to_string)
            };
            let ok = got.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
            if !ok {
                return Err(TriggerError::bad_request("Invalid or missing API key."));
            }
        }
        if let Some(username) = conf(config, "basic_auth", "username") {
            let password =
                auth.reveal(conf(config, "basic_auth", "password").unwrap_or_default())?;
            let header = request.header("authorization").unwrap_or_default();
            let mut parts = header.splitn(2, char::is_whitespace);
            let scheme = parts.next().unwrap_or_default();
            let rest = parts.next().map(str::trim).unwrap_or_default();
            if !scheme.eq_ignore_ascii_case("basic") || rest.is_empty() {
                return Err(TriggerError::bad_request(
                    "Missing basic authentication header.",
                ));
            }
            let invalid = || TriggerError::bad_request("Invalid basic authentication header.");
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (user, pass) = decoded.split_once(':').ok_or_else(invalid)?;
            let ok = constant_time_eq(user.as_bytes(), username.as_bytes())
                & constant_time_eq(pass.as_bytes(), password.as_bytes());
            if !ok {
                return Err(invalid());
            }
        }
        Ok(())
    }
}

/// The JSON endpoint trigger.
pub struct Endpoint(TriggerSpec);

impl Endpoint {
    fn new() -> Self {
        Endpoint(TriggerSpec {
            name: "json_endpoint.endpoint",
            description: "A JSON body described by `body_schema`, optional headers",
            config: vec![
                Field::new("headers", FieldType::Nested)
                    .array()
                    .with_fields(vec![
                        Field::new("name", FieldType::String)
                            .required()
                            .pattern("[A-Za-z0-9\\-_]+"),
                        Field::new("array", FieldType::Boolean),
                        Field::new("required", FieldType::Boolean),
                    ])
                    .default_value(json!([])),
                Field::new("body_schema", FieldType::Any).array().required(),
            ],
            connection: Some("json_endpoint"),
        })
    }
}

fn configured_headers(config: &Value) -> Vec<(String, bool, bool)> {
    config
        .get("headers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    let name = h.get("name")?.as_str()?.to_string();
                    let array = h.get("array").and_then(Value::as_bool).unwrap_or(false);
                    let required = h.get("required").and_then(Value::as_bool).unwrap_or(false);
                    Some((name, array, required))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl Trigger for Endpoint {
    fn spec(&self) -> &TriggerSpec {
        &self.0
    }

    fn output_schema(&self, config: &Value) -> Result<Schema, String> {
        let body_fields: Vec<Field> = match config.get("body_schema") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("Config invalid: body_schema: {e}"))?,
            None => return Err("Config invalid: Field 'body_schema' is required.".into()),
        };
        let mut fields = vec![
            Field::new("url_postfix", FieldType::String),
            Field::new("query_params", FieldType::Hash),
        ];
        let headers = configured_headers(config);
        if !headers.is_empty() {
            let any_required = headers.iter().any(|h| h.2);
            let mut f = Field::new("headers", FieldType::Nested).with_fields(
                headers
                    .iter()
                    .map(|(name, array, required)| {
                        let mut f = Field::new(name, FieldType::String);
                        if *array {
                            f = f.array();
                        }
                        if *required {
                            f = f.required();
                        }
                        f
                    })
                    .collect(),
            );
            if any_required {
                f = f.required();
            }
            fields.push(f);
        }
        fields.push(Field::new("body", FieldType::Nested).with_fields(body_fields));
        fields.push(Field::new("deduplication_id", FieldType::String));
        Ok(Schema::new("output", fields))
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let (request, config) = (ctx.request, ctx.config);
        let context_id = request
            .header("x-job-context-identifier")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let body = if request.body.iter().all(u8::is_ascii_whitespace) {
            Value::String(String::from_utf8_lossy(&request.body).trim().to_string())
        } else {
            serde_json::from_slice::<Value>(&request.body)
                .map_err(|_| TriggerError::bad_request("Request body could not be parsed"))?
        };
        let mut output = Map::new();
        output.insert(
            "url_postfix".into(),
            request
                .postfix
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        output.insert("query_params".into(), Value::Object(request.query_map()));
        let headers = configured_headers(config);
        if !headers.is_empty() {
            let mut h = Map::new();
            for (name, array, _) in headers {
                if let Some(value) = request.header(&name) {
                    let v = if array {
                        json!(value.split(", ").map(str::trim).collect::<Vec<_>>())
                    } else {
                        json!(value)
                    };
                    h.insert(name, v);
                }
            }
            output.insert("headers".into(), Value::Object(h));
        }
        output.insert("body".into(), body);
        Ok(Parsed::Event(TriggerParse {
            output: Value::Object(output),
            context_id,
            claims: Vec::new(),
        }))
    }
}
