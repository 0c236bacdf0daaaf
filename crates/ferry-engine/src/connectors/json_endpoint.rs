//! JSON Endpoint connector: a trigger that accepts JSON bodies (spec §9.3).

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{json, Map, Value};

use crate::ingest::InboundRequest;
use crate::registry::Registry;
use crate::trigger::{Trigger, TriggerError, TriggerParse, TriggerSpec};

/// Register the JSON endpoint connector.
pub fn register(r: &mut Registry) {
    r.connector(
        "json_endpoint",
        "Receive JSON over HTTP (API key or basic auth on the inbound connection)",
    );
    r.trigger(Endpoint::new());
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

    async fn parse(
        &self,
        request: &InboundRequest,
        config: &Value,
    ) -> Result<TriggerParse, TriggerError> {
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
        Ok(TriggerParse {
            output: Value::Object(output),
            context_id,
        })
    }
}
