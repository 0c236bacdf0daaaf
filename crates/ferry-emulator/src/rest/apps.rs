//! App Store flows: app offerings (records of the provider account), install / update /
//! suspend / uninstall of an offering for a customer account, `app_instance.*` events, the
//! signed `app_instance.secrets-update` message and `automation_rule` webhooks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::delivery::{self, reference_object};
use super::keys::JwtAlg;
use super::oauth::{self, AUTHORIZATION_CODE, CLIENT_CREDENTIALS};
use super::webhooks::create_policy_record;
use super::{account_url, rec_bool, rec_seq, rec_str, ApiError};
use crate::{Emulator, Record};

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/_emulator/apps/offerings", post(create_offering))
        .route("/_emulator/apps/install", post(install))
        .route("/_emulator/apps/update", post(update))
        .route("/_emulator/apps/suspend", post(suspend))
        .route("/_emulator/apps/uninstall", post(uninstall))
        .route("/_emulator/apps/automation_rule", post(automation_rule))
}

/// The offering reference of an app instance record.
pub(crate) fn instance_reference(emu: &Emulator, instance: &Record) -> Option<String> {
    let offering = emu.records.get(rec_str(instance, "appOffering")?)?;
    rec_str(&offering, "reference").map(str::to_string)
}

fn offering_summary(emu: &Emulator, instance: &Record) -> Value {
    let Some(oid) = rec_str(instance, "appOffering") else {
        return Value::Null;
    };
    let reference = emu
        .records
        .get(oid)
        .and_then(|o| rec_str(&o, "reference").map(str::to_string));
    let seq = crate::decode_node_id(oid).map(|(_, _, s)| s).unwrap_or(0);
    json!({"reference": reference, "id": seq, "nodeID": oid})
}

/// The `payload` of `app_instance.create|update|delete` messages.
pub(crate) fn instance_payload(emu: &Emulator, instance: &Record, _deleted: bool) -> Value {
    let mut offering = offering_summary(emu, instance);
    if let Some(o) = offering.as_object_mut() {
        o.insert("updated".into(), json!(rec_bool(instance, "_updated")));
    }
    let representative = rec_str(instance, "_customerRepresentative")
        .map(|p| reference_object(emu, p))
        .unwrap_or(Value::Null);
    json!({
        "app_offering": offering,
        "customer_account_id": rec_str(instance, "_customerAccount"),
        "disabled": rec_bool(instance, "disabled"),
        "enabled_by_customer": rec_bool(instance, "enabledByCustomer"),
        "suspended": rec_bool(instance, "suspended"),
        "customer_representative": representative,
    })
}

/// Run the automation rules of installed offerings for `event` on `object` in the customer
/// `account`: every `AppOfferingAutomationRule` whose `trigger` names the event (wire spelling,
/// e.g. `request.create`, or the GraphQL enum name) sends an `automation_rule` message to the
/// customer webhook of the app instance. The rule's `actions` (`[{name, value}]`) become payload
/// keys. Suspended or disabled instances do not run rules. Returns the number of messages.
pub(crate) fn run_automation_rules(
    emu: &Arc<Emulator>,
    account: &str,
    event: &str,
    object: &Record,
) -> usize {
    let providers: Vec<String> = emu.accounts.read().keys().cloned().collect();
    let mut sent = 0;
    for provider in providers {
        for inst in emu.records.list(&provider, "AppInstance") {
            if rec_str(&inst, "_customerAccount") != Some(account)
                || rec_bool(&inst, "suspended")
                || rec_bool(&inst, "disabled")
            {
                continue;
            }
            let Some(offering_id) = rec_str(&inst, "appOffering") else {
                continue;
            };
            let Some(webhook) = rec_str(&inst, "webhook").and_then(|w| emu.records.get(w)) else {
                continue;
            };
            if rec_bool(&webhook, "disabled") {
                continue;
            }
            for rule in emu.records.list(&provider, "AppOfferingAutomationRule") {
                let triggered = rec_str(&rule, "appOffering") == Some(offering_id)
                    && rec_str(&rule, "trigger").and_then(super::events::normalize_event)
                        == Some(event);
                if !triggered {
                    continue;
                }
                let mut payload = Map::new();
                payload.insert("app_offering".into(), offering_summary(emu, &inst));
                payload.insert("customer_account_id".into(), json!(account));
                for action in rule
                    .get("actions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(name) = action.get("name").and_then(Value::as_str) {
                        payload.insert(
                            name.to_string(),
                            action.get("value").cloned().unwrap_or(Value::Null),
                        );
                    }
                }
                let person = emu.account(account).map(|a| a.admin_person_id);
                let message = delivery::build_message(
                    emu,
                    &webhook,
                    "automation_rule",
                    Some((rec_seq(object), rec_str(object, "id").unwrap_or_default())),
                    person.as_deref(),
                    Value::Object(payload),
                );
                let link = delivery::object_link(emu, object);
                delivery::spawn_delivery(
                    emu.clone(),
                    webhook.clone(),
                    "automation_rule".into(),
                    message,
                    link,
                    None,
                );
                sent += 1;
            }
        }
    }
    sent
}

/// Body of the install / update / suspend / uninstall / automation rule endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AppInput {
    /// Provider account id (default: the emulator's account).
    provider: Option<String>,
    /// Offering reference.
    reference: String,
    /// Customer account id.
    customer: String,
    /// UI extension secrets to send with `app_instance.secrets-update`.
    secrets: Option<Map<String, Value>>,
    /// update: set `disabled`.
    disabled: Option<bool>,
    /// update: set `enabledByCustomer`.
    enabled_by_customer: Option<bool>,
    /// update: the `app_offering.updated` flag of the message.
    updated: Option<bool>,
    /// update: custom fields of the instance.
    custom_fields: Option<Value>,
    /// suspend: `false` lifts a suspension.
    suspended: Option<bool>,
    /// suspend: suspension comment.
    comment: Option<String>,
    /// automation_rule: the payload (merged after `app_offering` / `customer_account_id`).
    payload: Option<Map<String, Value>>,
    /// automation_rule: node id of the customer record the rule ran on.
    object: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

struct Ctx {
    provider: String,
    offering: Record,
}

fn find_offering(emu: &Emulator, input: &AppInput) -> Result<Ctx, ApiError> {
    let provider = input
        .provider
        .clone()
        .unwrap_or_else(|| emu.config.account.clone());
    if input.reference.is_empty() || input.customer.is_empty() {
        return Err(ApiError::invalid("reference and customer are required"));
    }
    if emu.account(&provider).is_none() {
        return Err(ApiError::invalid(format!(
            "provider account '{provider}' does not exist"
        )));
    }
    let offering = emu
        .records
        .list(&provider, "AppOffering")
        .into_iter()
        .rev()
        .find(|o| rec_str(o, "reference") == Some(input.reference.as_str()))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "no app offering with reference '{}' in account '{provider}'",
                input.reference
            ))
        })?;
    Ok(Ctx { provider, offering })
}

fn find_instance(emu: &Emulator, ctx: &Ctx, customer: &str) -> Option<Record> {
    let oid = rec_str(&ctx.offering, "id")?;
    emu.records
        .list(&ctx.provider, "AppInstance")
        .into_iter()
        .find(|i| {
            rec_str(i, "_customerAccount") == Some(customer)
                && rec_str(i, "appOffering") == Some(oid)
        })
}

/// Scope strings of the offering for one grant type (`actions` of each matching scope).
fn scopes_for(offering: &Record, grant: &str) -> Vec<String> {
    offering
        .get("scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|s| {
                    s.get("grantType")
                        .and_then(Value::as_str)
                        .is_none_or(|g| g == grant)
                })
                .flat_map(|s| {
                    s.get("actions")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Send `app_instance.secrets-update` for `instance` to the provider's webhooks.
fn send_secrets(
    emu: &Arc<Emulator>,
    ctx: &Ctx,
    instance: &Record,
    parts: Map<String, Value>,
) -> usize {
    let mut payload = Map::new();
    payload.insert("app_offering".into(), offering_summary(emu, instance));
    payload.insert(
        "customer_account_id".into(),
        json!(rec_str(instance, "_customerAccount")),
    );
    payload.extend(parts);
    let person = rec_str(instance, "_customerRepresentative").map(str::to_string);
    delivery::fire_event(
        emu,
        &ctx.provider,
        "app_instance.secrets-update",
        instance,
        person.as_deref(),
        Value::Object(payload),
        rec_str(&ctx.offering, "reference"),
    )
}

fn app_json(app: &oauth::OauthApp) -> Value {
    json!({"nodeID": app.node_id, "client_id": app.client_id, "client_secret": app.client_secret})
}

/// Body of `POST /_emulator/apps/offerings`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OfferingInput {
    provider: Option<String>,
    /// AppOffering fields by GraphQL name (`reference`, `name`, `webhookUriTemplate`, ...).
    offering: Map<String, Value>,
    /// Automation rules (AppOfferingAutomationRule fields by GraphQL name).
    automation_rules: Vec<Map<String, Value>>,
}

async fn create_offering(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: OfferingInput = parse(&body)?;
    let provider = input.provider.unwrap_or_else(|| emu.config.account.clone());
    emu.ensure_account(&provider, &provider);
    if rec_str(&input.offering, "reference").is_none_or(str::is_empty) {
        return Err(ApiError::invalid("offering.reference is required"));
    }
    let mut fields = input.offering;
    fields.entry("disabled").or_insert(json!(false));
    fields.entry("published").or_insert(json!(true));
    fields.entry("latest").or_insert(json!(true));
    let offering = emu.create_record(&provider, "AppOffering", fields, None);
    let oid = rec_str(&offering, "id").unwrap_or_default().to_string();
    let mut rules = Vec::new();
    for (i, mut rule) in input.automation_rules.into_iter().enumerate() {
        rule.insert("appOffering".into(), json!(oid));
        rule.entry("position").or_insert(json!(i + 1));
        let r = emu.create_record(&provider, "AppOfferingAutomationRule", rule, None);
        rules.push(json!(rec_str(&r, "id")));
    }
    Ok(Json(json!({
        "id": rec_seq(&offering),
        "nodeID": oid,
        "reference": rec_str(&offering, "reference"),
        "automation_rules": rules,
    })))
}

async fn install(State(emu): State<Arc<Emulator>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: AppInput = parse(&body)?;
    let ctx = find_offering(&emu, &input)?;
    let customer = input.customer.clone();
    if find_instance(&emu, &ctx, &customer).is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "app '{}' is already installed in account '{customer}'",
                input.reference
            ),
        ));
    }
    let cust = emu.ensure_account(&customer, &customer);
    let name = rec_str(&ctx.offering, "name")
        .unwrap_or(&input.reference)
        .to_string();
    let cc = oauth::create_app(
        &emu,
        &customer,
        &format!("{name} (client credentials)"),
        CLIENT_CREDENTIALS,
        scopes_for(&ctx.offering, CLIENT_CREDENTIALS),
        false,
        Vec::new(),
    );
    let ac = oauth::create_app(
        &emu,
        &customer,
        &format!("{name} (authorization code)"),
        AUTHORIZATION_CODE,
        scopes_for(&ctx.offering, AUTHORIZATION_CODE),
        false,
        Vec::new(),
    );
    let alg = JwtAlg::parse(rec_str(&ctx.offering, "policyJwtAlg").unwrap_or("es256"))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut pf = Record::new();
    pf.insert(
        "jwtAudience".into(),
        ctx.offering
            .get("policyJwtAudience")
            .cloned()
            .unwrap_or(Value::Null),
    );
    pf.insert(
        "jwtClaimExpiresIn".into(),
        ctx.offering
            .get("policyJwtClaimExpiresIn")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let (policy, key) = create_policy_record(&emu, &customer, alg, pf, None)
        .await
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let policy_id = rec_str(&policy, "id").unwrap_or_default().to_string();
    let oidc = rec_bool(&ctx.offering, "openidConnectDiscovery");
    let webhook = match rec_str(&ctx.offering, "webhookUriTemplate").filter(|t| !t.is_empty()) {
        None => None,
        Some(template) => {
            let mut wf = Record::new();
            wf.insert("event".into(), json!("automation_rule"));
            wf.insert(
                "uri".into(),
                json!(template.replace("{account}", &customer)),
            );
            wf.insert("name".into(), json!(name));
            wf.insert("disabled".into(), json!(false));
            wf.insert("webhookPolicy".into(), json!(policy_id));
            wf.insert("openidConnectDiscovery".into(), json!(oidc));
            wf.insert(
                "appOfferingReferences".into(),
                json!([input.reference.clone()]),
            );
            // Created by Xurrent itself: no verification handshake.
            wf.insert("_preverified".into(), json!(true));
            Some(emu.create_record(&customer, "Webhook", wf, None))
        }
    };
    let mut inst = Record::new();
    inst.insert("appOffering".into(), json!(rec_str(&ctx.offering, "id")));
    // Account and the customer's Person live outside the provider account: embed them as
    // objects so that GraphQL can show them to the provider.
    inst.insert(
        "customerAccount".into(),
        json!({"__typename": "Account", "id": cust.id, "name": cust.name,
               "url": account_url(&emu, &cust.id)}),
    );
    inst.insert("_customerAccount".into(), json!(customer));
    inst.insert(
        "_customerRepresentative".into(),
        json!(cust.admin_person_id),
    );
    if let Some(mut person) = emu.records.get(&cust.admin_person_id) {
        person.retain(|k, _| !k.starts_with('_'));
        inst.insert("customerRepresentative".into(), Value::Object(person));
    }
    inst.insert("disabled".into(), json!(false));
    inst.insert("enabledByCustomer".into(), json!(true));
    inst.insert("suspended".into(), json!(false));
    inst.insert("_updated".into(), json!(false));
    inst.insert(
        "webhook".into(),
        json!(webhook.as_ref().and_then(|w| rec_str(w, "id"))),
    );
    inst.insert("webhookPolicy".into(), json!(policy_id));
    inst.insert("_clientCredentialsApp".into(), json!(cc.client_id));
    inst.insert("_authorizationCodeApp".into(), json!(ac.client_id));
    if let Some(cf) = &input.custom_fields {
        inst.insert("customFields".into(), cf.clone());
    }
    let instance = emu.create_record(
        &ctx.provider,
        "AppInstance",
        inst,
        Some(cust.admin_person_id.clone()),
    );
    let issuer = if oidc {
        super::oidc::policy_issuer(&emu, &policy)
    } else {
        account_url(&emu, &customer)
    };
    let mut parts = Map::new();
    parts.insert("application".into(), app_json(&cc));
    parts.insert("authorization_application".into(), app_json(&ac));
    parts.insert(
        "policy".into(),
        json!({
            "nodeID": policy_id,
            "algorithm": alg.jose_name(),
            "public_key": key.public_key_pem,
            "audience": policy.get("jwtAudience").cloned().unwrap_or(Value::Null),
            "issuer": issuer,
        }),
    );
    if let Some(s) = input.secrets {
        parts.insert("secrets".into(), Value::Object(s));
    }
    let sent = send_secrets(&emu, &ctx, &instance, parts);
    Ok(Json(json!({
        "app_instance": {"id": rec_seq(&instance), "nodeID": rec_str(&instance, "id")},
        "customer_account_id": customer,
        "application": app_json(&cc),
        "authorization_application": app_json(&ac),
        "policy": {"id": rec_seq(&policy), "nodeID": policy_id, "algorithm": alg.jose_name(),
                   "public_key_pem": key.public_key_pem, "issuer": issuer},
        "webhook": webhook.as_ref().map(|w| json!({"id": rec_seq(w), "nodeID": rec_str(w, "id"), "uri": rec_str(w, "uri")})),
        "secrets_update_webhooks": sent,
    })))
}

fn existing_instance(emu: &Emulator, input: &AppInput) -> Result<(Ctx, Record), ApiError> {
    let ctx = find_offering(emu, input)?;
    let inst = find_instance(emu, &ctx, &input.customer).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "app '{}' is not installed in account '{}'",
                input.reference, input.customer
            ),
        )
    })?;
    Ok((ctx, inst))
}

fn instance_json(inst: &Record) -> Value {
    json!({
        "app_instance": {"id": rec_seq(inst), "nodeID": rec_str(inst, "id"),
            "disabled": rec_bool(inst, "disabled"), "suspended": rec_bool(inst, "suspended"),
            "enabled_by_customer": rec_bool(inst, "enabledByCustomer")},
    })
}

async fn update(State(emu): State<Arc<Emulator>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: AppInput = parse(&body)?;
    let (ctx, inst) = existing_instance(&emu, &input)?;
    let mut patch = Record::new();
    patch.insert("_updated".into(), json!(input.updated.unwrap_or(false)));
    if let Some(d) = input.disabled {
        patch.insert("disabled".into(), json!(d));
    }
    if let Some(e) = input.enabled_by_customer {
        patch.insert("enabledByCustomer".into(), json!(e));
    }
    if let Some(cf) = input.custom_fields.clone() {
        patch.insert("customFields".into(), cf);
    }
    let id = rec_str(&inst, "id").unwrap_or_default().to_string();
    let person = rec_str(&inst, "_customerRepresentative").map(str::to_string);
    let after = emu
        .update_record(&id, patch, person)
        .ok_or_else(ApiError::not_found)?;
    let mut sent = 0;
    if let Some(s) = input.secrets {
        let mut parts = Map::new();
        parts.insert("secrets".into(), Value::Object(s));
        sent = send_secrets(&emu, &ctx, &after, parts);
    }
    let mut out = instance_json(&after);
    out["secrets_update_webhooks"] = json!(sent);
    Ok(Json(out))
}

async fn suspend(State(emu): State<Arc<Emulator>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: AppInput = parse(&body)?;
    let (_ctx, inst) = existing_instance(&emu, &input)?;
    let suspended = input.suspended.unwrap_or(true);
    let mut patch = Record::new();
    patch.insert("suspended".into(), json!(suspended));
    patch.insert("_updated".into(), json!(false));
    patch.insert(
        "suspensionComment".into(),
        if suspended {
            json!(input.comment)
        } else {
            Value::Null
        },
    );
    let id = rec_str(&inst, "id").unwrap_or_default().to_string();
    let after = emu
        .update_record(&id, patch, None)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(instance_json(&after)))
}

async fn uninstall(State(emu): State<Arc<Emulator>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: AppInput = parse(&body)?;
    let (_ctx, inst) = existing_instance(&emu, &input)?;
    for key in ["_clientCredentialsApp", "_authorizationCodeApp"] {
        if let Some(cid) = rec_str(&inst, key) {
            oauth::delete_app(&emu, cid);
        }
    }
    for key in ["webhook", "webhookPolicy"] {
        if let Some(id) = rec_str(&inst, key) {
            emu.delete_record(id, None);
        }
    }
    let id = rec_str(&inst, "id").unwrap_or_default().to_string();
    let person = rec_str(&inst, "_customerRepresentative").map(str::to_string);
    emu.delete_record(&id, person)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(
        json!({"uninstalled": true, "app_instance": {"id": rec_seq(&inst), "nodeID": id}}),
    ))
}

async fn automation_rule(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: AppInput = parse(&body)?;
    let (ctx, inst) = existing_instance(&emu, &input)?;
    let webhook = rec_str(&inst, "webhook")
        .and_then(|w| emu.records.get(w))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "app offering '{}' has no webhook URI template, so the customer account has no automation rule webhook",
                input.reference
            ))
        })?;
    if rec_bool(&webhook, "disabled") {
        return Err(ApiError::invalid("the automation rule webhook is disabled"));
    }
    let mut payload = Map::new();
    payload.insert("app_offering".into(), offering_summary(&emu, &inst));
    payload.insert("customer_account_id".into(), json!(input.customer));
    payload.extend(input.payload.unwrap_or_default());
    let object = input
        .object
        .as_deref()
        .and_then(|o| emu.records.get(o))
        .filter(|o| rec_str(o, "_account") == Some(input.customer.as_str()));
    let person = emu.account(&input.customer).map(|a| a.admin_person_id);
    let message = delivery::build_message(
        &emu,
        &webhook,
        "automation_rule",
        object
            .as_ref()
            .map(|o| (rec_seq(o), rec_str(o, "id").unwrap_or_default())),
        person.as_deref(),
        Value::Object(payload),
    );
    let link = delivery::object_link(&emu, object.as_ref().unwrap_or(&webhook));
    delivery::spawn_delivery(
        emu.clone(),
        webhook.clone(),
        "automation_rule".into(),
        message,
        link,
        None,
    );
    let _ = ctx;
    Ok(Json(json!({
        "webhook": {"id": rec_seq(&webhook), "nodeID": rec_str(&webhook, "id"), "uri": rec_str(&webhook, "uri")},
    })))
}
