//! Provisioning of the provider account (spec §5.11, §5.12, §6.4, §7.4, §8.5), through the
//! Xurrent connector's Webhooks API client and GraphQL client over the triggers' inbound
//! `xurrent_app` connection (the provider's credentials):
//!
//! - the provider **webhook policy** (ES256): the one stored in the solution's App Connector
//!   store is re-enabled if it was disabled; when it is gone (or was never created) a new one is
//!   created and stored (its public key is only ever returned by the create call);
//! - a **webhook** per trigger, found by its name `Ferry <solution>/<runbook>`, so a restart
//!   creates nothing new: created, or updated in place (event, URI, App references, policy,
//!   enabled); deprovisioning disables it;
//! - the App Offering's `webhookUriTemplate` / `configurationUriTemplate`, set with
//!   `appOfferingUpdate` on the offering found by reference.

use ferry_engine::action::ConnectionRef;
use ferry_engine::ProvisionContext;
use ferry_xurrent::webhooks_api::{is_not_found, ListFilter, PolicyInput, WebhookInput};
use ferry_xurrent::{WebhooksApi, XurrentClient};
use serde_json::{json, Value};

use crate::connection::AppSettings;
use crate::store::{CustomerStore, WebhookPolicy};

/// The description of the webhooks Ferry creates.
pub const WEBHOOK_DESCRIPTION: &str = "DO NOT DELETE!\n\nUsed by Ferry.";

/// The provider connection of a trigger's hook: its inbound `xurrent_app` connection.
pub fn provider_connection<'a>(ctx: &ProvisionContext<'a>) -> Result<&'a ConnectionRef, String> {
    ctx.connection.ok_or_else(|| {
        "the trigger needs an inbound xurrent_app connection (the provider account's credentials)"
            .to_string()
    })
}

pub use ferry_xurrent::webhook::provision::{id_of, webhook_name};

/// Make sure the provider's webhook policy exists and is enabled; returns it.
pub async fn ensure_provider_policy(
    ctx: &ProvisionContext<'_>,
    api: &WebhooksApi<'_>,
    settings: &AppSettings,
) -> Result<WebhookPolicy, String> {
    let store = CustomerStore::for_provision(ctx);
    let stored = store.provider_policy().await.map_err(|e| e.to_string())?;
    if let Some(policy) = stored {
        if let Some(id) = &policy.id {
            match api.policy(id).await {
                Ok(found) => {
                    if found.get("disabled") == Some(&Value::Bool(true)) {
                        api.update_policy(
                            id,
                            &PolicyInput {
                                disabled: Some(false),
                                ..PolicyInput::default()
                            },
                        )
                        .await
                        .map_err(|e| format!("Unable to enable Webhook Policy: {e}"))?;
                        tracing::info!(policy = %id, "re-enabled the provider webhook policy");
                    }
                    return Ok(policy);
                }
                Err(e) if is_not_found(&e) => {
                    tracing::warn!(policy = %id, "the provider webhook policy is gone; creating a new one");
                }
                Err(e) => return Err(format!("Unable to enable Webhook Policy: {e}")),
            }
        }
    }
    let created = api
        .create_policy(&PolicyInput {
            jwt_alg: Some("es256".into()),
            ..PolicyInput::default()
        })
        .await
        .map_err(|e| format!("Unable to create Webhook Policy: {e}"))?;
    let id = id_of(&created).ok_or("Unable to create Webhook Policy: no id in the answer")?;
    let pem = created
        .get("public_key_pem")
        .and_then(Value::as_str)
        .ok_or("Unable to create Webhook Policy: no public_key_pem in the answer")?;
    let policy = WebhookPolicy {
        id: Some(id.clone()),
        algorithm: created
            .get("jwt_alg")
            .and_then(Value::as_str)
            .unwrap_or("es256")
            .to_ascii_uppercase(),
        public_key_pem: pem.to_string(),
        issuer: Some(settings.provider_url()),
        audience: created
            .get("jwt_audience")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    store
        .put_provider_policy(&policy)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(policy = %id, "created the provider webhook policy");
    Ok(policy)
}

/// Create or update (by name) the runbook's webhook for `event`, enabled, signed with
/// `policy_id`, limited to `references` (none: every App).
pub async fn ensure_webhook(
    api: &WebhooksApi<'_>,
    name: &str,
    event: &str,
    uri: &str,
    references: Vec<String>,
    policy_id: &str,
) -> Result<(), String> {
    let input = WebhookInput {
        event: Some(event.to_string()),
        uri: Some(uri.to_string()),
        name: Some(name.to_string()),
        description: Some(WEBHOOK_DESCRIPTION.into()),
        disabled: Some(false),
        webhook_policy_id: Some(policy_id.to_string()),
        app_offering_references: Some(references),
        ..WebhookInput::default()
    };
    let hooks = api
        .list_webhooks(ListFilter::All)
        .await
        .map_err(|e| format!("Unable to list Webhooks: {e}"))?;
    match hooks.iter().find(|h| h["name"] == name) {
        Some(h) => {
            let id = id_of(h).ok_or("a webhook without an id")?;
            api.update_webhook(&id, &input)
                .await
                .map_err(|e| format!("Unable to enable Webhook '{name}': {e}"))?;
            tracing::info!(webhook = %name, event, "updated the webhook");
        }
        None => {
            api.create_webhook(&input)
                .await
                .map_err(|e| format!("Unable to create Webhook '{name}': {e}"))?;
            tracing::info!(webhook = %name, event, "created the webhook");
        }
    }
    Ok(())
}

/// Disable the runbook's webhook (no error when it is gone).
pub async fn disable_webhook(api: &WebhooksApi<'_>, name: &str) -> Result<(), String> {
    let hooks = api
        .list_webhooks(ListFilter::Enabled)
        .await
        .map_err(|e| format!("Unable to disable Webhook: {e}"))?;
    for h in hooks.iter().filter(|h| h["name"] == name) {
        let id = id_of(h).ok_or("a webhook without an id")?;
        match api
            .update_webhook(
                &id,
                &WebhookInput {
                    disabled: Some(true),
                    ..WebhookInput::default()
                },
            )
            .await
        {
            Ok(_) => tracing::info!(webhook = %name, "disabled the webhook"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(format!("Unable to disable Webhook: {e}")),
        }
    }
    Ok(())
}

/// The id of the App Offering with `reference` (its unpublished version when there is one).
pub async fn offering_id(client: &XurrentClient<'_>, reference: &str) -> Result<String, String> {
    let query = "query($reference: [String]) { appOfferings(first: 10, filter: {reference: {values: $reference}}) { nodes { id reference published } } }";
    let answer = client
        .graphql(query, Some(json!({"reference": [reference]})))
        .await
        .map_err(|e| format!("Unable to find App Offering: {e}"))?;
    let nodes = answer
        .data
        .pointer("/appOfferings/nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matching: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["reference"] == reference)
        .collect();
    matching
        .iter()
        .find(|n| n["published"] == false)
        .or(matching.first())
        .and_then(|n| n["id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("No App offering found with reference '{reference}'"))
}

/// Set one field of the App Offering with `reference` (`webhookUriTemplate`,
/// `configurationUriTemplate`).
pub async fn set_offering_field(
    client: &XurrentClient<'_>,
    reference: &str,
    field: &str,
    value: &str,
) -> Result<(), String> {
    let id = offering_id(client, reference).await?;
    let query = "mutation($input: AppOfferingUpdateInput!) { appOfferingUpdate(input: $input) { appOffering { id } errors { path message } } }";
    let mut input = json!({ "id": id });
    input[field] = json!(value);
    let answer = client
        .graphql(query, Some(json!({ "input": input })))
        .await
        .map_err(|e| format!("Unable to set {field} on App Offering: {e}"))?;
    let errors: Vec<String> = answer
        .data
        .pointer("/appOfferingUpdate/errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(format!(
            "Unable to set {field} on App Offering: {}",
            errors.join("; ")
        ));
    }
    tracing::info!(reference, field, value, "set on the App Offering");
    Ok(())
}
