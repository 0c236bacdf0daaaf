//! `xurrent_app.automation_webhook` (spec §8): calls made by the App Offering's automation
//! rules in **customer** accounts, to `<trigger URL>?customer_account_id=<account>`, verified
//! with that customer's webhook policy — the one its Secrets Changed delivery brought; until
//! then `Webhook policy not configured`. A forged `customer_account_id` selects another
//! customer's policy, so its signature check fails.
//!
//! The `payload` output is typed by the runbook author's `payload_schema` (field definitions,
//! as the Xurrent webhook trigger's), else a free-form hash; the message's `app_offering` and
//! `customer_account_id` are left out of it. Provisioning sets the offering's
//! `webhookUriTemplate` to the trigger URL with `customer_account_id={account}` (one runbook per
//! App reference; nothing to undo on deprovision).

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::{
    Parsed, ProvisionContext, Registry, Trigger, TriggerContext, TriggerError, TriggerSpec,
};
use ferry_xurrent::webhook::mapping::user_payload_fields;
use serde_json::{json, Map, Value};

use crate::connection::CONNECTOR;
use crate::inbound::{bad, context_id, text, Inbound, Verifier};
use crate::provision;
use crate::store::CustomerStore;
use crate::{common_output, settings_of};

/// The trigger's registry name.
pub const TRIGGER: &str = "xurrent_app.automation_webhook";

/// Register the trigger.
pub fn register(r: &mut Registry) {
    r.trigger(AutomationWebhook::default());
}

/// The Automation Webhook trigger.
pub struct AutomationWebhook {
    spec: TriggerSpec,
    verifier: Verifier,
}

impl Default for AutomationWebhook {
    fn default() -> Self {
        AutomationWebhook {
            spec: TriggerSpec {
                name: TRIGGER,
                description: "Xurrent App: an automation rule in a customer account called the App (verified with that customer's policy)",
                config: vec![
                    Field::new("app_reference", FieldType::String)
                        .label("App reference")
                        .required()
                        .hint("The App this runbook serves (one runbook per App: provisioning sets its offering's webhookUriTemplate)"),
                    Field::new("payload_schema", FieldType::Any)
                        .label("Payload fields")
                        .hint("Field definitions of the payload (typed and pruned); none: the payload is a hash")
                        .array(),
                ],
                connection: Some(CONNECTOR),
            },
            verifier: Verifier::default(),
        }
    }
}

/// The `payload` output field of a config.
fn payload_field(config: &Value) -> Result<Field, String> {
    let fields = user_payload_fields(config)?;
    let field = if config.get("payload_schema").is_some_and(|p| !p.is_null()) {
        Field::new("payload", FieldType::Nested).with_fields(fields)
    } else {
        Field::new("payload", FieldType::Hash)
    };
    Ok(field.label("Payload").required())
}

#[async_trait]
impl Trigger for AutomationWebhook {
    fn spec(&self) -> &TriggerSpec {
        &self.spec
    }

    fn output_schema(&self, config: &Value) -> Result<Schema, String> {
        if text(config.get("app_reference")).is_none() {
            return Err("app_reference is required (the App this runbook serves)".into());
        }
        Ok(Schema::new(
            "output",
            common_output(vec![
                Field::new("app_reference", FieldType::String)
                    .label("App reference")
                    .required(),
                Field::new("customer_account_id", FieldType::String)
                    .label("Customer account ID")
                    .required(),
                payload_field(config)?,
            ]),
        ))
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let Some(cid) = ctx
            .request
            .query_param("customer_account_id")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
        else {
            return Err(bad("Missing customer_account_id parameter"));
        };
        let reference = text(ctx.config.get("app_reference")).unwrap_or_default();
        let settings = settings_of(ctx);
        let store = CustomerStore::for_trigger(ctx);
        let policy = store
            .get(&reference, &cid)
            .await?
            .and_then(|c| c.policy)
            .filter(|p| !p.public_key_pem.trim().is_empty());
        let delivery = match self.verifier.verify(ctx, policy, &settings).await? {
            Inbound::Answered(p) => return Ok(p),
            Inbound::Event(d) => d,
        };
        let mut payload = delivery.payload();
        payload.remove("app_offering");
        payload.remove("customer_account_id");
        let context = context_id(&reference, &cid);
        let mut output = Map::new();
        output.insert("app_reference".into(), json!(reference));
        output.insert("customer_account_id".into(), json!(cid));
        output.insert("payload".into(), Value::Object(payload));
        Ok(delivery.into_event(output, Some(context)))
    }

    async fn provision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let conn = provision::provider_connection(ctx)?;
        let client =
            ferry_xurrent::XurrentClient::new(ctx.services(), conn).map_err(|e| e.to_string())?;
        let url = ctx
            .trigger_url
            .clone()
            .ok_or("no public URL for the trigger (ferry serve --public-url)")?;
        let reference = text(ctx.config.get("app_reference"))
            .ok_or("app_reference is required (the App this runbook serves)")?;
        let template = format!("{url}?customer_account_id={{account}}");
        provision::set_offering_field(&client, &reference, "webhookUriTemplate", &template).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::schema::FieldType;

    #[test]
    fn the_payload_is_typed_by_the_payload_schema_else_a_hash() {
        // §14.6 90, 97, 98.
        let t = AutomationWebhook::default();
        let typed = t
            .output_schema(&json!({"app_reference": "phone", "payload_schema": [
                {"id": "foo", "type": "string"}, {"id": "bar", "type": "integer"}]}))
            .unwrap();
        let out = typed
            .resolve(
                &json!({"app_reference": "phone", "customer_account_id": "wdc",
                        "payload": {"foo": "data from the AR", "bar": 42, "baz": 1}}),
                None,
            )
            .unwrap();
        assert_eq!(
            out["payload"],
            json!({"foo": "data from the AR", "bar": 42})
        );
        let free = t.output_schema(&json!({"app_reference": "phone"})).unwrap();
        let payload = free.fields.iter().find(|f| f.id == "payload").unwrap();
        assert_eq!(payload.ty, FieldType::Hash);
        let out = free
            .resolve(
                &json!({"app_reference": "phone", "customer_account_id": "wdc",
                        "payload": {"baz": 1, "qux": "x"}}),
                None,
            )
            .unwrap();
        assert_eq!(out["payload"], json!({"baz": 1, "qux": "x"}));
        assert!(t
            .output_schema(&json!({}))
            .unwrap_err()
            .contains("app_reference"));
        assert!(t
            .output_schema(&json!({"app_reference": "phone", "payload_schema": [{"type": "nope"}]}))
            .is_err());
    }
}
