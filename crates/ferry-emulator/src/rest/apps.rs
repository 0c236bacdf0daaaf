//! App Store flows: app offerings (records of the provider account), install / update /
//! suspend / uninstall of an offering for a customer account, `app_instance.*` events, the
//! signed `app_instance.secrets-update` message and `automation_rule` webhooks.
//!
//! It plugs into the generic delivery pipeline through [`AppStoreHook`], which `rest::start`
//! registers: payloads of `app_instance.*` events and the automation rules that run on events
//! in customer accounts.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common::{rec_bool, rec_seq, rec_str, ApiError};
use super::delivery::{self, reference_object, Event, EventHook, EventPayload};
use super::events;
use super::oauth::{self, AUTHORIZATION_CODE, CLIENT_CREDENTIALS};
use crate::policy::{self, JwtAlg};
use crate::{Emulator, Record};

/// The App Store's [`EventHook`]: `app_instance.*` payloads and automation rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppStoreHook;

impl EventHook for AppStoreHook {
    fn payload(&self, emu: &Emulator, typename: &str, object: &Record) -> Option<EventPayload> {
        (typename == "AppInstance").then(|| EventPayload {
            payload: instance_payload(emu, object),
            reference: instance_reference(emu, object),
        })
    }

    fn event_fired(
        &self,
        emu: &Arc<Emulator>,
        account: &str,
        event: &'static str,
        object: &Record,
    ) {
        run_automation_rules(emu, account, event, object);
    }
}

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
pub(crate) fn instance_payload(emu: &Emulator, instance: &Record) -> Value {
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

/// Run the automation rules that app installs created in the customer `account` for `event` on
/// `object`: every `AutomationRule` of an enabled, unsuspended app instance whose `trigger` names
/// the event (wire spelling, e.g. `request.create`, or the GraphQL enum name) sends an
/// `automation_rule` message to the instance's customer webhook. The message's object is the
/// automation rule and its payload holds the rule's named expressions, evaluated on `object`
/// (see [`evaluate_expression`]). Returns the number of messages.
pub(crate) fn run_automation_rules(
    emu: &Arc<Emulator>,
    account: &str,
    event: &str,
    object: &Record,
) -> usize {
    let mut sent = 0;
    for rule in emu.records.list(account, "AutomationRule") {
        let Some(instance) = rec_str(&rule, "_appInstance").and_then(|i| emu.records.get(i)) else {
            continue;
        };
        if rec_bool(&rule, "disabled")
            || rec_bool(&instance, "suspended")
            || rec_bool(&instance, "disabled")
            || rec_str(&rule, "trigger").and_then(events::normalize_event) != Some(event)
        {
            continue;
        }
        let Some(webhook) = rec_str(&instance, "webhook").and_then(|w| emu.records.get(w)) else {
            continue;
        };
        if rec_bool(&webhook, "disabled") {
            continue;
        }
        let payload = rule_payload(emu, &rule, Some(object));
        send_rule_message(emu, account, &rule, &webhook, payload);
        sent += 1;
    }
    sent
}

/// The payload of a rule's message: its named expressions, evaluated on `object`.
fn rule_payload(emu: &Emulator, rule: &Record, object: Option<&Record>) -> Map<String, Value> {
    let mut payload = Map::new();
    for expr in rule
        .get("expressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = expr.get("name").and_then(Value::as_str) {
            let text = expr
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            payload.insert(name.to_string(), evaluate_expression(emu, text, object));
        }
    }
    payload
}

/// Send an `automation_rule` message about `rule` (its object and `Link`) to `webhook`.
fn send_rule_message(
    emu: &Arc<Emulator>,
    account: &str,
    rule: &Record,
    webhook: &Record,
    payload: Map<String, Value>,
) {
    let person = emu.account(account).map(|a| a.admin_person_id);
    let message = delivery::build_message(
        emu,
        webhook,
        "automation_rule",
        Some((rec_seq(rule), rec_str(rule, "id").unwrap_or_default())),
        person.as_deref(),
        Value::Object(payload),
    );
    let link = delivery::object_link(emu, rule);
    delivery::spawn_delivery(
        emu.clone(),
        webhook.clone(),
        "automation_rule".into(),
        message,
        link,
        None,
    );
}

/// Evaluates the simple forms of an automation rule expression on the record the rule ran on:
/// a JSON literal (`42`, `true`, `null`, `"text"`), a single-quoted string (`'text'`), or a
/// path whose first segment names the record (`request.subject`, `request.team.name`; the
/// record's event noun, its snake_case type name or `record`), with snake_case field names,
/// `id` for the numeric id and `nodeID` for the node id, following references. Anything else
/// (Xurrent's full expression language) evaluates to `null`.
pub fn evaluate_expression(emu: &Emulator, text: &str, object: Option<&Record>) -> Value {
    let text = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if !v.is_object() && !v.is_array() {
            return v;
        }
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Value::String(inner.to_string());
    }
    let Some(object) = object else {
        return Value::Null;
    };
    let mut segments = text.split('.');
    let typename = rec_str(object, "__typename").unwrap_or_default();
    let first = segments.next().unwrap_or_default();
    let names_record = first == "record"
        || events::noun_for_type(typename) == Some(first)
        || snake_case(typename) == first;
    if !names_record {
        tracing::debug!(
            expression = text,
            "automation rule expression not evaluated"
        );
        return Value::Null;
    }
    let mut current = object.clone();
    let mut segments = segments.peekable();
    while let Some(seg) = segments.next() {
        let value = match seg {
            "id" => json!(rec_seq(&current)),
            "nodeID" => json!(rec_str(&current, "id")),
            _ => current
                .get(&camel_case(seg))
                .cloned()
                .unwrap_or(Value::Null),
        };
        if segments.peek().is_none() {
            return value;
        }
        match value.as_str().and_then(|id| emu.records.get(id)) {
            Some(next) => current = next,
            None => return Value::Null,
        }
    }
    Value::Null
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
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
    /// automation_rule: the payload as sent (default: the rule's expressions evaluated on
    /// `object`).
    payload: Option<Map<String, Value>>,
    /// automation_rule: node id of the customer record the rule ran on.
    object: Option<String>,
    /// automation_rule: name or node id of the rule (default: the instance's first rule).
    rule: Option<String>,
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
        Event {
            account: &ctx.provider,
            name: "app_instance.secrets-update",
            object: instance,
            person_id: person.as_deref(),
            payload: Value::Object(payload),
            reference: rec_str(&ctx.offering, "reference"),
            related: None,
        },
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
    let (policy, key) = policy::create(&emu, &customer, alg, pf, None)
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
               "url": emu.account_url(&cust.id)}),
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
    // The offering's automation rules, as rules of the customer account.
    let instance_id = rec_str(&instance, "id").unwrap_or_default().to_string();
    let offering_id = rec_str(&ctx.offering, "id").unwrap_or_default().to_string();
    for template in emu.records.list(&ctx.provider, "AppOfferingAutomationRule") {
        if rec_str(&template, "appOffering") != Some(offering_id.as_str()) {
            continue;
        }
        let mut rule = Record::new();
        for key in [
            "name",
            "description",
            "trigger",
            "condition",
            "expressions",
            "actions",
            "generic",
            "position",
        ] {
            if let Some(v) = template.get(key) {
                rule.insert(key.into(), v.clone());
            }
        }
        rule.insert("disabled".into(), json!(false));
        rule.insert("_appInstance".into(), json!(instance_id));
        rule.insert("_offeringRule".into(), json!(rec_str(&template, "id")));
        emu.create_record(&customer, "AutomationRule", rule, None);
    }
    // The issuer receivers must use; without one they fall back to the customer account URL.
    let issuer = policy::issuer(&emu, &policy, oidc);
    let custom_issuer = (issuer != policy::default_issuer(&emu, &customer)).then_some(issuer);
    let mut parts = Map::new();
    parts.insert("application".into(), app_json(&cc));
    parts.insert("authorization_application".into(), app_json(&ac));
    let mut policy_part = json!({
        "nodeID": policy_id,
        "algorithm": alg.jose_name(),
        "public_key": key.public_key_pem,
        "audience": policy.get("jwtAudience").cloned().unwrap_or(Value::Null),
    });
    if let Some(iss) = &custom_issuer {
        policy_part["issuer"] = json!(iss);
    }
    parts.insert("policy".into(), policy_part);
    if let Some(s) = input.secrets {
        parts.insert("secrets".into(), Value::Object(s));
    }
    let sent = send_secrets(&emu, &ctx, &instance, parts);
    Ok(Json(json!({
        "app_instance": {"id": rec_seq(&instance), "nodeID": rec_str(&instance, "id")},
        "customer_account_id": customer,
        "application": app_json(&cc),
        "authorization_application": app_json(&ac),
        "policy": {"id": rec_seq(&policy), "nodeID": policy_id, "name": rec_str(&policy, "name"),
                   "algorithm": alg.jose_name(), "public_key_pem": key.public_key_pem,
                   "issuer": custom_issuer},
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
    for rule in emu.records.list(&input.customer, "AutomationRule") {
        if rec_str(&rule, "_appInstance") == Some(id.as_str()) {
            emu.delete_record(rec_str(&rule, "id").unwrap_or_default(), None);
        }
    }
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
    let (_ctx, inst) = existing_instance(&emu, &input)?;
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
    let inst_id = rec_str(&inst, "id").unwrap_or_default();
    let rules: Vec<Record> = emu
        .records
        .list(&input.customer, "AutomationRule")
        .into_iter()
        .filter(|r| rec_str(r, "_appInstance") == Some(inst_id))
        .collect();
    let rule = match &input.rule {
        Some(r) => rules.iter().find(|x| {
            rec_str(x, "name") == Some(r.as_str()) || rec_str(x, "id") == Some(r.as_str())
        }),
        None => rules.first(),
    }
    .ok_or_else(|| {
        ApiError::invalid(format!(
            "app offering '{}' has no automation rule{} in account '{}'",
            input.reference,
            input
                .rule
                .as_deref()
                .map(|r| format!(" '{r}'"))
                .unwrap_or_default(),
            input.customer
        ))
    })?;
    let object = match input.object.as_deref() {
        None => None,
        Some(o) => Some(
            emu.records
                .get(o)
                .filter(|r| rec_str(r, "_account") == Some(input.customer.as_str()))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "object '{o}' is not a record of account '{}'",
                        input.customer
                    ))
                })?,
        ),
    };
    let payload = match input.payload {
        Some(p) => p,
        None => rule_payload(&emu, rule, object.as_ref()),
    };
    send_rule_message(&emu, &input.customer, rule, &webhook, payload);
    let rule_id = rec_str(rule, "id");
    Ok(Json(json!({
        "webhook": {"id": rec_seq(&webhook), "nodeID": rec_str(&webhook, "id"), "uri": rec_str(&webhook, "uri")},
        "automation_rule": {"nodeID": rule_id},
    })))
}
