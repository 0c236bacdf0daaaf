//! The trigger's output schema (spec §3.3) and the mapping of a webhook message to it
//! (spec §3.7).

use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{Map, Value};

fn f(id: &str, ty: FieldType, label: &str) -> Field {
    Field::new(id, ty).label(label)
}

/// `team` and `member` in the payload: a reference to a team or person.
fn reference(id: &str, label: &str) -> Field {
    f(id, FieldType::Nested, label).with_fields(vec![
        f("id", FieldType::Integer, "ID"),
        f("nodeID", FieldType::String, "nodeID"),
        f("name", FieldType::String, "Name"),
        f("sourceID", FieldType::String, "Source ID"),
        f("disabled", FieldType::Boolean, "Disabled"),
        f("account", FieldType::Nested, "Account").with_fields(vec![
            f("id", FieldType::String, "ID"),
            f("name", FieldType::String, "Name"),
        ]),
    ])
}

/// The built-in `payload` fields.
pub fn payload_fields() -> Vec<Field> {
    vec![
        f("audit_line_id", FieldType::Integer, "Audit line ID"),
        f("audit_line_nodeID", FieldType::String, "Audit line nodeID"),
        f("note_id", FieldType::Integer, "Note ID"),
        f("note_nodeID", FieldType::String, "Note nodeID"),
        f("source", FieldType::String, "Source"),
        f("sourceID", FieldType::String, "Source ID"),
        f("status", FieldType::String, "Status"),
        f("previous_status", FieldType::String, "Previous status"),
        reference("team", "Team"),
        reference("member", "Member"),
    ]
}

/// The user's `payload_schema` fields (field definitions as in a `body_schema`). A field
/// whose id is a built-in payload field replaces the built-in one (spec §10.25).
pub fn user_payload_fields(config: &Value) -> Result<Vec<Field>, String> {
    match config.get("payload_schema") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => {
            let fields: Vec<Field> =
                serde_json::from_value(v.clone()).map_err(|e| format!("payload_schema: {e}"))?;
            let problems: Vec<String> = fields
                .iter()
                .flat_map(Field::check_definition)
                .map(|p| format!("payload_schema: {p}"))
                .collect();
            if problems.is_empty() {
                Ok(fields)
            } else {
                Err(problems.join(" "))
            }
        }
    }
}

/// The output schema for a trigger config (spec §3.3), with the user's payload fields.
pub fn output_schema(config: &Value) -> Result<Schema, String> {
    let mut payload = payload_fields();
    for user in user_payload_fields(config)? {
        payload.retain(|b| b.id != user.id);
        payload.push(user);
    }
    Ok(Schema::new(
        "output",
        vec![
            f("webhook_id", FieldType::Integer, "Webhook ID"),
            f("webhook_nodeID", FieldType::String, "Webhook nodeID"),
            f("account_id", FieldType::String, "Account ID"),
            f("account", FieldType::String, "Account URL"),
            f("custom_url", FieldType::String, "Custom URL"),
            f("name", FieldType::String, "Webhook name"),
            f("event", FieldType::String, "Event").required(),
            f("object_id", FieldType::Integer, "Object ID"),
            f("object_nodeID", FieldType::String, "Object nodeID"),
            f("person_id", FieldType::Integer, "Person ID"),
            f("person_nodeID", FieldType::String, "Person nodeID"),
            f("person_name", FieldType::String, "Person name"),
            f("instance_name", FieldType::String, "Instance name"),
            f("payload", FieldType::Nested, "Payload").with_fields(payload),
            f("raw_payload", FieldType::Hash, "Raw payload"),
            f("delivery", FieldType::String, "Webhook delivery ID").required(),
            f(
                "delivery_origin",
                FieldType::String,
                "Original webhook delivery ID",
            ),
            f("deduplication_id", FieldType::String, "Deduplication ID"),
        ],
    ))
}

/// The top-level keys a webhook message may carry into the output.
const TOP_LEVEL: [&str; 13] = [
    "webhook_id",
    "webhook_nodeID",
    "account_id",
    "account",
    "custom_url",
    "name",
    "event",
    "object_id",
    "object_nodeID",
    "person_id",
    "person_nodeID",
    "person_name",
    "instance_name",
];

/// The result of mapping: the raw output and the top-level keys that were dropped (for the
/// `Ignored unexpected fields in webhook: …` log line).
#[derive(Debug, PartialEq)]
pub struct Mapped {
    /// The raw trigger output (the engine coerces and validates it).
    pub output: Value,
    /// Dropped top-level keys with their values, in order.
    pub ignored: Vec<(String, Value)>,
}

impl Mapped {
    /// `Ignored unexpected fields in webhook: 'pet' => 'Zuzu', 'car' => 'McQueen'`, if any.
    pub fn ignored_line(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let list: Vec<String> = self
            .ignored
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("'{k}' => '{s}'"),
                other => format!("'{k}' => {other}"),
            })
            .collect();
        Some(format!(
            "Ignored unexpected fields in webhook: {}",
            list.join(", ")
        ))
    }
}

/// Map a webhook message to the output (spec §3.7): known top-level keys are kept, the
/// others dropped (and reported); declared payload keys are kept, and when the payload has
/// any undeclared key, `raw_payload` is the whole original payload. The deduplication id is
/// the original delivery id of a re-sent delivery, else the delivery id, so that neither a
/// retried nor a re-sent delivery runs twice.
pub fn map_webhook(
    webhook: Map<String, Value>,
    schema: &Schema,
    delivery: Option<&str>,
    delivery_origin: Option<&str>,
) -> Mapped {
    let mut out = Map::new();
    if let Some(d) = delivery {
        out.insert("delivery".into(), Value::String(d.to_string()));
    }
    if let Some(o) = delivery_origin {
        out.insert("delivery_origin".into(), Value::String(o.to_string()));
    }
    if let Some(dedup) = delivery_origin.or(delivery) {
        out.insert("deduplication_id".into(), Value::String(dedup.to_string()));
    }
    let mut ignored = Vec::new();
    let mut original = None;
    for (k, v) in webhook {
        if k == "payload" {
            original = Some(v);
        } else if TOP_LEVEL.contains(&k.as_str()) {
            out.insert(k, v);
        } else {
            ignored.push((k, v));
        }
    }
    let declared = schema
        .field("payload")
        .map(|p| p.fields.as_slice())
        .unwrap_or_default();
    let mut payload = Map::new();
    if let Some(Value::Object(original)) = original {
        if original.keys().all(|k| declared.iter().any(|d| d.id == *k)) {
            payload = original;
        } else {
            for (k, v) in &original {
                if declared.iter().any(|d| d.id == *k) {
                    payload.insert(k.clone(), v.clone());
                }
            }
            out.insert("raw_payload".into(), Value::Object(original));
        }
    }
    out.insert("payload".into(), Value::Object(payload));
    Mapped {
        output: Value::Object(out),
        ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DELIVERY: &str = "00c7bb4a-b3ba-4744-8126-1e7ef87ef90a";

    fn standard() -> Value {
        json!({"webhook_id": 2, "webhook_nodeID": "uvw", "account_id": "wdc",
            "account": "https://wdc.xurrent-staging.com", "name": "Test-IPaaS", "event": "problem.update",
            "object_id": 332, "object_nodeID": "abc", "person_id": 6, "person_nodeID": "xyz",
            "person_name": "Howard Tanner",
            "payload": {"status": "analyzed",
              "team": {"id": 14, "name": "End-User Support, Houston", "account": {"id": "wdc", "name": "Widget Data Center"}, "nodeID": "def"},
              "member": {"id": 336, "name": "Joseph Coleman", "account": {"id": "widget", "name": "Widget International"}, "nodeID": "ghi"},
              "audit_line_id": 71960, "audit_line_nodeID": "jkl"}})
    }

    fn resolve(
        config: &Value,
        webhook: &Value,
        delivery: Option<&str>,
        origin: Option<&str>,
    ) -> (Result<Value, String>, Mapped) {
        let schema = output_schema(config).unwrap();
        let mapped = map_webhook(
            webhook.as_object().unwrap().clone(),
            &schema,
            delivery,
            origin,
        );
        (
            schema
                .resolve(&mapped.output, None)
                .map_err(|e| format!("Output invalid: {e}")),
            mapped,
        )
    }

    #[test]
    fn schema_has_the_spec_fields() {
        // §9 D 40, 41.
        let s = output_schema(&json!({})).unwrap();
        for id in [
            "webhook_id",
            "webhook_nodeID",
            "account_id",
            "account",
            "event",
            "object_id",
            "object_nodeID",
            "person_id",
            "person_nodeID",
            "person_name",
            "payload",
            "delivery",
        ] {
            assert!(s.field(id).is_some(), "{id}");
        }
        let payload = s.field("payload").unwrap();
        for id in [
            "audit_line_id",
            "source",
            "status",
            "previous_status",
            "team",
            "member",
        ] {
            assert!(payload.fields.iter().any(|f| f.id == id), "{id}");
        }
        let team = payload.fields.iter().find(|f| f.id == "team").unwrap();
        let ids: Vec<&str> = team.fields.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["id", "nodeID", "name", "sourceID", "disabled", "account"]
        );
        assert!(!payload.fields.iter().any(|f| f.id == "callback"));
        let s = output_schema(&json!({"payload_schema": [{"id": "callback", "label": "Callback URL", "type": "string", "required": true}]})).unwrap();
        assert!(s
            .field("payload")
            .unwrap()
            .fields
            .iter()
            .any(|f| f.id == "callback"));
        assert!(
            output_schema(&json!({"payload_schema": [{"id": "x", "type": "nonsense"}]})).is_err()
        );
    }

    #[test]
    fn standard_webhook_is_the_body_plus_delivery() {
        // §9 E 44.
        let (out, mapped) = resolve(&json!({}), &standard(), Some(DELIVERY), None);
        let mut expected = standard();
        expected["delivery"] = json!(DELIVERY);
        expected["deduplication_id"] = json!(DELIVERY);
        assert_eq!(out.unwrap(), expected);
        assert_eq!(mapped.ignored_line(), None);
    }

    #[test]
    fn missing_event_and_delivery() {
        // §9 E 43.
        let (out, _) = resolve(
            &json!({}),
            &json!({"type": "alert", "status": "test"}),
            None,
            None,
        );
        assert_eq!(
            out.unwrap_err(),
            "Output invalid: Field 'event' is required. Field 'delivery' is required."
        );
    }

    #[test]
    fn unexpected_top_level_fields_are_dropped_and_logged() {
        // §9 E 45.
        let mut body = standard();
        body["pet"] = json!("Zuzu");
        body["car"] = json!("McQueen");
        let (out, mapped) = resolve(&json!({}), &body, Some(DELIVERY), None);
        let out = out.unwrap();
        assert!(out.get("pet").is_none() && out.get("car").is_none());
        assert_eq!(
            mapped.ignored_line().unwrap(),
            "Ignored unexpected fields in webhook: 'pet' => 'Zuzu', 'car' => 'McQueen'"
        );
    }

    #[test]
    fn declared_payload_fields_are_kept_and_typed() {
        // §9 E 46, and user fields parsed into their types.
        let mut body = standard();
        body["payload"]["pet"] = json!("Zuzu");
        body["payload"]["count"] = json!("42");
        let config = json!({"payload_schema": [{"id": "pet", "type": "string"}, {"id": "count", "type": "integer"}]});
        let (out, _) = resolve(&config, &body, Some(DELIVERY), None);
        let out = out.unwrap();
        assert_eq!(out["payload"]["pet"], "Zuzu");
        assert_eq!(out["payload"]["count"], 42);
        assert!(out.get("raw_payload").is_none());
    }

    #[test]
    fn undeclared_payload_fields_go_to_raw_payload() {
        // §9 E 47.
        let mut body = standard();
        body["payload"]["cars"] = json!("McQueen");
        let (out, _) = resolve(&json!({}), &body, Some(DELIVERY), None);
        let out = out.unwrap();
        assert!(out["payload"].get("cars").is_none());
        assert_eq!(out["raw_payload"], body["payload"]);
    }

    #[test]
    fn delivery_origin_is_the_deduplication_id() {
        // §9 E 48.
        let (out, _) = resolve(&json!({}), &standard(), Some(DELIVERY), Some("pqr"));
        let out = out.unwrap();
        assert_eq!(out["delivery_origin"], "pqr");
        assert_eq!(out["deduplication_id"], "pqr");
    }

    #[test]
    fn no_payload_gives_an_empty_payload() {
        let (out, _) = resolve(&json!({}), &json!({"event": "x"}), Some("d"), None);
        assert_eq!(out.unwrap()["payload"], json!({}));
    }
}
