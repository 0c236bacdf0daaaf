//! `xurrent_app.installation_changed` (spec §7): one `app_instance.*` event per runbook
//! (`create`: App installed, `update`: App updated — including suspension —, `delete`: App
//! removed), from the provider account, verified with the provider's policy.
//!
//! With `app_reference`, deliveries about another App are discarded (`App reference '<p>' is
//! different from '<c>'.`). Provisioning makes sure the provider policy and the runbook's
//! webhook exist (limited to `app_reference`) and, with `configuration_uri_template`, sets the
//! offering's `configurationUriTemplate`; deprovisioning disables the webhook.

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::{
    Parsed, ProvisionContext, Registry, Trigger, TriggerContext, TriggerError, TriggerSpec,
};
use serde_json::{json, Value};

use crate::connection::{AppSettings, CONNECTOR};
use crate::inbound::{context_id, text, Inbound, Verifier};
use crate::provision;
use crate::store::CustomerStore;
use crate::{common_output, settings_of};

/// The trigger's registry name.
pub const TRIGGER: &str = "xurrent_app.installation_changed";
/// The events a runbook may listen to.
pub const EVENTS: [&str; 3] = [
    "app_instance.create",
    "app_instance.update",
    "app_instance.delete",
];

/// Register the trigger.
pub fn register(r: &mut Registry) {
    r.trigger(InstallationChanged::default());
}

/// The Installation Changed trigger.
pub struct InstallationChanged {
    spec: TriggerSpec,
    verifier: Verifier,
}

impl Default for InstallationChanged {
    fn default() -> Self {
        InstallationChanged {
            spec: TriggerSpec {
                name: TRIGGER,
                description: "Xurrent App: a customer installed, updated (or suspended) or removed the App",
                config: vec![
                    Field::new("event", FieldType::String)
                        .label("Event")
                        .required()
                        .enumeration(EVENTS.iter().map(|e| json!(e)).collect()),
                    Field::new("app_reference", FieldType::String)
                        .label("App reference")
                        .hint("Only this App (its webhook and the deliveries)"),
                    Field::new("configuration_uri_template", FieldType::String)
                        .label("Configuration URI template")
                        .hint("https://…, {account} standing for the customer account: set on the App Offering when provisioning (needs app_reference)"),
                ],
                connection: Some(CONNECTOR),
            },
            verifier: Verifier::default(),
        }
    }
}

/// Config checks (spec §7.2).
pub fn check_config(config: &Value) -> Result<(), String> {
    let event = text(config.get("event"));
    match event.as_deref() {
        Some(e) if EVENTS.contains(&e) => {}
        Some(e) => {
            return Err(format!(
                "event: '{e}' is not one of {}",
                EVENTS.join(", ")
            ))
        }
        None => return Err("event is required (one of app_instance.create, app_instance.update, app_instance.delete)".into()),
    }
    if let Some(t) = text(config.get("configuration_uri_template")) {
        if text(config.get("app_reference")).is_none() {
            return Err(
                "configuration_uri_template needs app_reference (the App whose offering gets it)"
                    .into(),
            );
        }
        let probe = t.replace("{account}", "wdc");
        if !t.starts_with("https://") || url::Url::parse(&probe).is_err() {
            return Err(format!(
                "configuration_uri_template: '{t}' is not an https:// URL"
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Trigger for InstallationChanged {
    fn spec(&self) -> &TriggerSpec {
        &self.spec
    }

    fn output_schema(&self, config: &Value) -> Result<Schema, String> {
        check_config(config)?;
        let reference = |id: &str, label: &str| Field::new(id, FieldType::Nested).label(label);
        Ok(Schema::new(
            "output",
            common_output(vec![
                Field::new("customer_account_id", FieldType::String)
                    .label("Customer account ID")
                    .required(),
                Field::new("app_reference", FieldType::String)
                    .label("App reference")
                    .required(),
                Field::new("disabled", FieldType::Boolean).label("Disabled"),
                Field::new("enabled_by_customer", FieldType::Boolean).label("Enabled by customer"),
                Field::new("suspended", FieldType::Boolean).label("Suspended"),
                reference("customer_representative", "Customer representative").with_fields(vec![
                    Field::new("id", FieldType::Integer).label("ID"),
                    Field::new("disabled", FieldType::Boolean).label("Disabled"),
                    Field::new("sourceID", FieldType::String).label("Source ID"),
                    Field::new("nodeID", FieldType::String).label("nodeID"),
                    Field::new("name", FieldType::String).label("Name"),
                    reference("account", "Account").with_fields(vec![
                        Field::new("id", FieldType::String).label("ID"),
                        Field::new("name", FieldType::String).label("Name"),
                    ]),
                ]),
                reference("app_offering", "App offering").with_fields(vec![
                    Field::new("reference", FieldType::String).label("Reference"),
                    Field::new("id", FieldType::Integer).label("ID"),
                    Field::new("nodeID", FieldType::String).label("nodeID"),
                    Field::new("updated", FieldType::Boolean)
                        .label("Updated")
                        .hint("Whether or not the App has been updated to a new version."),
                ]),
            ]),
        ))
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let settings = settings_of(ctx);
        let store = CustomerStore::for_trigger(ctx);
        let policy = store.provider_policy().await?;
        let delivery = match self.verifier.verify(ctx, policy, &settings).await? {
            Inbound::Answered(p) => return Ok(p),
            Inbound::Event(d) => d,
        };
        let payload = delivery.payload();
        let cid = text(payload.get("customer_account_id"));
        let reference = text(payload.get("app_offering").and_then(|o| o.get("reference")));
        if let (Some(want), Some(got)) = (text(ctx.config.get("app_reference")), &reference) {
            if &want != got {
                return Err(TriggerError::Discard(format!(
                    "App reference '{got}' is different from '{want}'."
                )));
            }
        }
        let mut output = serde_json::Map::new();
        for key in [
            "customer_account_id",
            "disabled",
            "enabled_by_customer",
            "suspended",
            "customer_representative",
            "app_offering",
        ] {
            if let Some(v) = payload.get(key) {
                output.insert(key.into(), v.clone());
            }
        }
        output.insert("app_reference".into(), json!(reference));
        let context = match (&reference, &cid) {
            (Some(r), Some(c)) => Some(context_id(r, c)),
            _ => None,
        };
        Ok(delivery.into_event(output, context))
    }

    async fn provision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let conn = provision::provider_connection(ctx)?;
        let settings = AppSettings::from_config(&conn.config);
        let api =
            ferry_xurrent::WebhooksApi::new(ctx.services(), conn).map_err(|e| e.to_string())?;
        let url = ctx
            .trigger_url
            .clone()
            .ok_or("no public URL for the trigger (ferry serve --public-url)")?;
        let reference = text(ctx.config.get("app_reference"));
        if let (Some(r), Some(t)) = (
            &reference,
            text(ctx.config.get("configuration_uri_template")),
        ) {
            provision::set_offering_field(api.client(), r, "configurationUriTemplate", &t).await?;
        }
        let policy = provision::ensure_provider_policy(ctx, &api, &settings).await?;
        let event = text(ctx.config.get("event")).unwrap_or_else(|| EVENTS[0].to_string());
        provision::ensure_webhook(
            &api,
            &provision::webhook_name(ctx),
            &event,
            &url,
            reference.into_iter().collect(),
            policy.id.as_deref().unwrap_or_default(),
        )
        .await
    }

    async fn deprovision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let conn = provision::provider_connection(ctx)?;
        let api =
            ferry_xurrent::WebhooksApi::new(ctx.services(), conn).map_err(|e| e.to_string())?;
        provision::disable_webhook(&api, &provision::webhook_name(ctx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_follow_the_spec() {
        // §14.5 71-73.
        assert!(check_config(&json!({"event": "app_instance.create"})).is_ok());
        assert!(check_config(&json!({"event": "request.create"})).is_err());
        assert!(check_config(&json!({})).is_err());
        assert!(check_config(
            &json!({"event": "app_instance.create", "app_reference": "my_app",
            "configuration_uri_template": "https://wdc.test.host"})
        )
        .is_ok());
        assert!(check_config(&json!({"event": "app_instance.create",
            "configuration_uri_template": "https://wdc.test.host"}))
        .unwrap_err()
        .contains("needs app_reference"));
        assert!(check_config(
            &json!({"event": "app_instance.create", "app_reference": "my_app",
            "configuration_uri_template": "http://wdc.test.host"})
        )
        .is_err());
        assert!(check_config(
            &json!({"event": "app_instance.create", "app_reference": "my_app",
            "configuration_uri_template": "https://wdc.test.host?a={account}"})
        )
        .is_ok());
    }
}
