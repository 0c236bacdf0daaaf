//! `xurrent_app.secrets_changed` (spec §6): receives `app_instance.secrets-update` deliveries
//! from the provider account, verified with the provider's policy, and merges the customer's
//! OAuth applications, webhook policy and UI extension secrets into the solution's
//! [`CustomerStore`]. Exactly one runbook per solution.
//!
//! Provisioning makes sure the provider's ES256 webhook policy and the
//! `app_instance.secrets-update` webhook (limited to `app_references`) exist and point at the
//! runbook; deprovisioning disables the webhook.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::{
    Parsed, ProvisionContext, Registry, Trigger, TriggerContext, TriggerError, TriggerSpec,
};
use serde_json::{json, Map, Value};

use crate::connection::{AppSettings, CONNECTOR};
use crate::inbound::{bad, context_id, text, Inbound, Verifier};
use crate::provision;
use crate::store::{CustomerStore, OauthApplication, SecretsUpdate, WebhookPolicy};
use crate::{common_output, settings_of};

/// The trigger's registry name.
pub const TRIGGER: &str = "xurrent_app.secrets_changed";
/// The event of its webhook.
pub const EVENT: &str = "app_instance.secrets-update";

/// Register the trigger.
pub fn register(r: &mut Registry) {
    r.trigger(SecretsChanged::default());
}

/// The Secrets Changed trigger.
pub struct SecretsChanged {
    spec: TriggerSpec,
    verifier: Verifier,
}

impl Default for SecretsChanged {
    fn default() -> Self {
        SecretsChanged {
            spec: TriggerSpec {
                name: TRIGGER,
                description: "Xurrent App: a customer's credentials, webhook policy and secrets arrived (stored encrypted); one per solution",
                config: vec![Field::new("app_references", FieldType::String)
                    .array()
                    .label("App references")
                    .hint("The references of the Apps of this solution (the webhook only gets their secrets; none: every App of the provider)")],
                connection: Some(CONNECTOR),
            },
            verifier: Verifier::default(),
        }
    }
}

fn references(config: &Value) -> Vec<String> {
    config
        .get("app_references")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| text(Some(v))).collect::<Vec<_>>())
        .unwrap_or_default()
}

/// A string member as sent (secrets and keys are not trimmed); blank as `None`.
fn raw(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

fn application(store: &CustomerStore<'_>, v: Option<&Value>) -> Option<OauthApplication> {
    let v = v.filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))?;
    Some(OauthApplication {
        node_id: text(v.get("nodeID")),
        client_id: text(v.get("client_id")),
        client_secret: raw(v.get("client_secret")).map(|s| store.seal(s)),
    })
}

/// The update a `secrets-update` payload carries (spec §6.5 steps 2–5).
pub fn update_of(
    store: &CustomerStore<'_>,
    payload: &Map<String, Value>,
    customer_account_id: &str,
    settings: &AppSettings,
) -> SecretsUpdate {
    let policy = payload
        .get("policy")
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
        .map(|p| WebhookPolicy {
            id: text(p.get("nodeID")),
            algorithm: text(p.get("algorithm"))
                .unwrap_or_default()
                .to_ascii_uppercase(),
            public_key_pem: raw(p.get("public_key")).unwrap_or_default().to_string(),
            issuer: text(p.get("issuer"))
                .or_else(|| Some(settings.account_url(customer_account_id))),
            audience: text(p.get("audience")),
        });
    let secrets: BTreeMap<String, String> = payload
        .get("secrets")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let plain = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), store.seal(&plain))
                })
                .collect()
        })
        .unwrap_or_default();
    SecretsUpdate {
        client_credentials: application(store, payload.get("application")),
        authorization_code: application(store, payload.get("authorization_application")),
        policy,
        secrets,
    }
}

#[async_trait]
impl Trigger for SecretsChanged {
    fn spec(&self) -> &TriggerSpec {
        &self.spec
    }

    fn output_schema(&self, _config: &Value) -> Result<Schema, String> {
        Ok(Schema::new(
            "output",
            common_output(vec![
                Field::new("customer_account_id", FieldType::String).label("Customer account ID"),
                Field::new("app_reference", FieldType::String).label("App reference"),
            ]),
        ))
    }

    fn once_per_solution(&self) -> bool {
        true
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
        let (Some(cid), Some(reference)) = (cid, reference) else {
            return Err(bad(
                "Secrets delivery without payload.customer_account_id or payload.app_offering.reference",
            ));
        };
        let update = update_of(&store, &payload, &cid, &settings);
        if !update.is_empty() {
            store.merge(&reference, &cid, update).await?;
            tracing::info!(app_reference = %reference, customer_account_id = %cid, "stored the customer's secrets");
        }
        let context = context_id(&reference, &cid);
        let mut output = Map::new();
        output.insert("customer_account_id".into(), json!(cid));
        output.insert("app_reference".into(), json!(reference));
        Ok(delivery.into_event(output, Some(context)))
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
        let policy = provision::ensure_provider_policy(ctx, &api, &settings).await?;
        provision::ensure_webhook(
            &api,
            &provision::webhook_name(ctx),
            EVENT,
            &url,
            references(ctx.config),
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
