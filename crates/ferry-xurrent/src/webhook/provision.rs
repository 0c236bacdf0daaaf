//! Provisioning of the webhook trigger (`register: {events, policy}`): when the solution is
//! served, the webhook policy and one webhook per event are created or updated in Xurrent
//! through the Webhooks API, pointing at the trigger's public URL and signed through OpenID
//! Connect discovery. Webhooks are matched by name (`Ferry <solution>/<runbook> <event>`), so a
//! restart creates nothing new; the policy is the one our webhooks already use, else the one
//! created earlier (its id in the trigger's store), else a new one. Deprovisioning (the
//! runbook goes away, or the server stops) disables the webhooks.

use ferry_core::schema::{Field, FieldType};
use ferry_engine::action::ConnectionRef;
use ferry_engine::ProvisionContext;
use serde_json::{json, Value};

use crate::webhooks_api::{ListFilter, PolicyInput, WebhookInput, WebhooksApi};

const POLICY_KEY: &str = "register/policy_id";

/// The trigger's `register` config field.
pub fn register_field() -> Field {
    Field::new("register", FieldType::Nested)
        .label("Register the webhook in Xurrent")
        .hint("Create or update the webhook policy and a webhook per event while the solution is served (needs `api` credentials on the inbound connection)")
        .with_fields(vec![
            Field::new("events", FieldType::String).array().required(),
            Field::new("policy", FieldType::String)
                .enumeration(
                    ["es256", "es384", "rs256", "rs384", "rs512"]
                        .iter()
                        .map(|a| json!(a))
                        .collect(),
                )
                .default_value(json!("es256")),
        ])
}

/// The inbound connection's `api` field: outbound credentials for the Webhooks API.
pub fn api_field() -> Field {
    let mut fields = crate::connection::outbound_fields();
    for f in &mut fields {
        f.required = false;
    }
    Field::new("api", FieldType::Nested)
        .label("Webhooks API credentials")
        .hint("Credentials and endpoints (as an outbound xurrent connection) used to register webhooks")
        .with_fields(fields)
}

fn events(config: &Value) -> Option<Vec<String>> {
    let reg = config.get("register")?;
    if reg.is_null() {
        return None;
    }
    Some(
        reg.get("events")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn api_connection(ctx: &ProvisionContext<'_>) -> Result<ConnectionRef, String> {
    let conn = ctx
        .connection
        .ok_or("register: the trigger needs an inbound xurrent connection")?;
    let api = conn
        .config
        .get("api")
        .filter(|a| a.get("credentials").is_some())
        .ok_or_else(|| {
            format!(
                "register: the inbound connection '{}' has no `api` credentials",
                conn.name
            )
        })?;
    Ok(ConnectionRef {
        name: conn.name.clone(),
        connector: conn.connector.clone(),
        config: api.clone(),
        namespace: conn.namespace.clone(),
    })
}

/// The name of a runbook's webhook (and the prefix of its policy's name): Ferry finds what it
/// provisioned by name, so a restart creates nothing new.
pub fn webhook_name(ctx: &ProvisionContext<'_>) -> String {
    format!("Ferry {}/{}", ctx.solution, ctx.runbook.unwrap_or_default())
}

/// The `id` of a record of the Webhooks API (a number or a string).
pub fn id_of(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Create or update the policy and the webhooks (idempotent).
pub async fn provision(ctx: &ProvisionContext<'_>) -> Result<(), String> {
    let Some(events) = events(ctx.config) else {
        return Ok(());
    };
    let url = ctx
        .trigger_url
        .clone()
        .ok_or("register: no public URL for the trigger (ferry serve --public-url)")?;
    let conn = api_connection(ctx)?;
    let api = WebhooksApi::new(ctx.services(), &conn).map_err(|e| e.to_string())?;
    let prefix = webhook_name(ctx);
    let hooks = api
        .list_webhooks(ListFilter::All)
        .await
        .map_err(|e| e.to_string())?;
    let ours: Vec<&Value> = hooks
        .iter()
        .filter(|h| {
            h.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(&format!("{prefix} ")))
        })
        .collect();
    // The policy: the one our webhooks use, else the one created earlier, else a new one.
    let known = ours
        .iter()
        .find_map(|h| h.get("webhook_policy").and_then(id_of));
    let stored = ctx
        .kv
        .get(POLICY_KEY)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|v| v.as_str().map(str::to_string));
    let mut policy_id = None;
    for candidate in [known, stored].into_iter().flatten() {
        if api.policy(&candidate).await.is_ok() {
            policy_id = Some(candidate);
            break;
        }
    }
    let policy_id = match policy_id {
        Some(id) => id,
        None => {
            let alg = ctx.config["register"]["policy"]
                .as_str()
                .unwrap_or("es256")
                .to_string();
            let created = api
                .create_policy(&PolicyInput {
                    jwt_alg: Some(alg),
                    ..PolicyInput::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let id = id_of(&created).ok_or("Xurrent created a webhook policy without an id")?;
            ctx.kv
                .put(POLICY_KEY, &json!(id), None)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(policy = %id, "created the webhook policy");
            id
        }
    };
    for event in &events {
        let name = format!("{prefix} {event}");
        let input = WebhookInput {
            event: Some(event.clone()),
            uri: Some(url.clone()),
            name: Some(name.clone()),
            disabled: Some(false),
            webhook_policy_id: Some(policy_id.clone()),
            openid_connect_discovery: Some(true),
            ..WebhookInput::default()
        };
        match ours.iter().find(|h| h["name"] == name.as_str()) {
            Some(h) => {
                let up_to_date = h["uri"] == url.as_str()
                    && h["disabled"] == false
                    && h.get("webhook_policy").and_then(id_of).as_deref()
                        == Some(policy_id.as_str());
                if !up_to_date {
                    let id = id_of(h).ok_or("a webhook without an id")?;
                    api.update_webhook(&id, &input)
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::info!(webhook = %name, "updated the webhook");
                }
            }
            None => {
                api.create_webhook(&input)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(webhook = %name, "created the webhook");
            }
        }
    }
    // Webhooks of events no longer listed are disabled.
    for h in &ours {
        let event = h["name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches(&format!("{prefix} "))
            .to_string();
        if !events.contains(&event) && h["disabled"] != true {
            disable(&api, h).await?;
        }
    }
    Ok(())
}

async fn disable(api: &WebhooksApi<'_>, hook: &Value) -> Result<(), String> {
    let id = id_of(hook).ok_or("a webhook without an id")?;
    api.update_webhook(
        &id,
        &WebhookInput {
            disabled: Some(true),
            ..WebhookInput::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(webhook = %hook["name"], "disabled the webhook");
    Ok(())
}

/// Disable the trigger's webhooks.
pub async fn deprovision(ctx: &ProvisionContext<'_>) -> Result<(), String> {
    if events(ctx.config).is_none() {
        return Ok(());
    }
    let conn = api_connection(ctx)?;
    let api = WebhooksApi::new(ctx.services(), &conn).map_err(|e| e.to_string())?;
    let prefix = format!("{} ", webhook_name(ctx));
    for h in api
        .list_webhooks(ListFilter::Enabled)
        .await
        .map_err(|e| e.to_string())?
    {
        if h["name"].as_str().is_some_and(|n| n.starts_with(&prefix)) {
            disable(&api, &h).await?;
        }
    }
    Ok(())
}
