//! Webhook delivery: turns record changes into events, builds the webhook message, signs it with
//! the webhook's policy, POSTs it, retries failures with growing intervals, disables webhooks
//! after too many consecutive failures and records every attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::events::{self, Kind};
use super::keys::{random_hex, random_jti, PolicyKey};
use super::{account_url, rec_bool, rec_seq, rec_str};
use crate::{ChangeKind, Emulator, Record, RecordChange};

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = "xurrent/1.0 (https://developer.xurrent.com/v1/webhooks)";

/// How many delivery attempts are kept for `GET /_emulator/deliveries` (oldest dropped first).
pub const MAX_RECORDED_DELIVERIES: usize = 10_000;

/// The `instance_name` of every webhook message.
pub const INSTANCE_NAME: &str = "Xurrent Emulator";

/// One delivery attempt, as listed by `GET /_emulator/deliveries`.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRecord {
    /// Sequence number of the attempt (1, 2, ... over the emulator's lifetime).
    pub id: u64,
    /// The `x-xurrent-delivery` header (shared by the retries of one delivery).
    pub delivery: String,
    /// The `x-xurrent-delivery-origin` header, when the delivery is a re-send.
    pub delivery_origin: Option<String>,
    /// Account of the webhook.
    pub account: String,
    /// Numeric id of the webhook.
    pub webhook_id: u64,
    /// Node id of the webhook.
    pub webhook_node_id: String,
    /// Event name (wire spelling).
    pub event: String,
    /// Target URI.
    pub uri: String,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// The webhook message (the JWT `data` claim when signed).
    pub message: Value,
    /// The exact request body sent.
    pub request_body: String,
    /// Request headers sent (besides content-length).
    pub request_headers: BTreeMap<String, String>,
    /// Response status, when a response arrived.
    pub response_status: Option<u16>,
    /// Response body (first 64 KiB), when a response arrived.
    pub response_body: Option<String>,
    /// Network or signing error, when no response arrived.
    pub error: Option<String>,
    /// Whether the attempt succeeded (2xx).
    pub success: bool,
    /// When the attempt started (RFC 3339).
    pub started_at: String,
    /// Duration of the attempt in milliseconds.
    pub duration_ms: u64,
}

/// Delay before retry number `retry` (1-based): `base * 2^(retry-1)`, capped at one hour.
pub fn retry_delay(base: Duration, retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(Duration::from_secs(3600))
}

/// Background task: listen to record changes until the emulator is dropped.
pub(crate) async fn listen(emu: Weak<Emulator>, mut rx: broadcast::Receiver<RecordChange>) {
    loop {
        match rx.recv().await {
            Ok(change) => {
                let Some(emu) = emu.upgrade() else { break };
                handle_change(&emu, change);
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "webhook listener lagged; changes dropped");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

fn kind(k: ChangeKind) -> Kind {
    match k {
        ChangeKind::Created => Kind::Created,
        ChangeKind::Updated => Kind::Updated,
        ChangeKind::Deleted => Kind::Deleted,
    }
}

/// React to one record change.
pub(crate) fn handle_change(emu: &Arc<Emulator>, change: RecordChange) {
    match change.typename.as_str() {
        "Webhook" => handle_webhook_change(emu, &change),
        "WebhookPolicy" => {
            if change.kind == ChangeKind::Created {
                if let Some(after) = change.after.clone() {
                    if PolicyKey::from_fields(&after).is_none() {
                        // RSA key generation takes a while: keep it off the listener.
                        let emu = emu.clone();
                        tokio::task::spawn_blocking(move || ensure_policy_key(&emu, &after));
                    }
                }
            }
        }
        "Note" => {
            if change.kind == ChangeKind::Created {
                if let Some(note) = &change.after {
                    note_added(emu, note, change.person_id.as_deref());
                }
            }
        }
        typename => {
            let object = change.after.as_ref().or(change.before.as_ref());
            let Some(object) = object else { return };
            for (event, field) in events::change_events(
                typename,
                kind(change.kind),
                change.before.as_ref(),
                change.after.as_ref(),
            ) {
                let (payload, reference) = if typename == "AppInstance" {
                    let p = super::apps::instance_payload(emu, object, false);
                    let r = super::apps::instance_reference(emu, object);
                    (p, r)
                } else {
                    (
                        record_payload(emu, object, field, change.before.as_ref()),
                        None,
                    )
                };
                fire_event(
                    emu,
                    &change.account,
                    event,
                    object,
                    change.person_id.as_deref(),
                    payload,
                    reference.as_deref(),
                );
                super::apps::run_automation_rules(emu, &change.account, event, object);
            }
        }
    }
}

fn handle_webhook_change(emu: &Arc<Emulator>, change: &RecordChange) {
    match change.kind {
        ChangeKind::Created => {
            if let Some(after) = &change.after {
                if !rec_bool(after, "_preverified") {
                    start_verification(emu, after);
                }
            }
        }
        ChangeKind::Updated => {
            if let (Some(before), Some(after)) = (&change.before, &change.after) {
                if before.get("uri") != after.get("uri") {
                    start_verification(emu, after);
                }
                // Re-enabling a webhook starts a new failure count.
                if rec_bool(before, "disabled") && !rec_bool(after, "disabled") {
                    if let Some(id) = rec_str(after, "id") {
                        if let Some(s) = emu.rest.webhooks.lock().get_mut(id) {
                            s.consecutive_failures = 0;
                        }
                    }
                }
            }
        }
        ChangeKind::Deleted => {
            if let Some(id) = change.before.as_ref().and_then(|b| rec_str(b, "id")) {
                emu.rest.webhooks.lock().remove(id);
            }
        }
    }
}

/// Make sure a `WebhookPolicy` record has key material (policies created through GraphQL or
/// seeds get one here). Returns the key.
pub(crate) fn ensure_policy_key(emu: &Emulator, policy: &Record) -> Option<PolicyKey> {
    if let Some(key) = PolicyKey::from_fields(policy) {
        return Some(key);
    }
    let id = rec_str(policy, "id")?;
    // One generator at a time, so that concurrent callers cannot store different keys.
    let _guard = emu.rest.key_lock.lock();
    if let Some(existing) = emu.records.get(id).and_then(|p| PolicyKey::from_fields(&p)) {
        return Some(existing);
    }
    let alg = rec_str(policy, "jwtAlg").unwrap_or("es256");
    let alg = super::keys::JwtAlg::parse(alg).ok()?;
    let key = match PolicyKey::generate(alg) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(policy = id, error = %e, "cannot generate webhook policy key");
            return None;
        }
    };
    emu.records.update(id, key.to_fields())?;
    Some(key)
}

/// The numeric id / node id / name of a person record, for the message's `person_*` keys.
fn person_keys(emu: &Emulator, person_id: Option<&str>, msg: &mut Map<String, Value>) {
    let Some(pid) = person_id else { return };
    if let Some(p) = emu.records.get(pid) {
        msg.insert("person_id".into(), json!(rec_seq(&p)));
        msg.insert("person_nodeID".into(), json!(pid));
        msg.insert("person_name".into(), json!(rec_str(&p, "name")));
    }
}

/// A short description of a referenced record (`team`, `member`, ...) for payloads.
pub(crate) fn reference_object(emu: &Emulator, node_id: &str) -> Value {
    let Some(r) = emu.records.get(node_id) else {
        return Value::Null;
    };
    let account = rec_str(&r, "_account").unwrap_or_default().to_string();
    let account_name = emu
        .account(&account)
        .map(|a| a.name)
        .unwrap_or_else(|| account.clone());
    json!({
        "id": rec_seq(&r),
        "nodeID": node_id,
        "name": r.get("name").cloned().unwrap_or(Value::Null),
        "sourceID": r.get("sourceID").cloned().unwrap_or(Value::Null),
        "disabled": rec_bool(&r, "disabled"),
        "account": {"id": account, "name": account_name},
    })
}

fn record_payload(
    emu: &Emulator,
    rec: &Record,
    field: Option<&str>,
    before: Option<&Record>,
) -> Value {
    let mut p = Map::new();
    for key in ["source", "sourceID", "status"] {
        if let Some(v) = rec.get(key).filter(|v| !v.is_null()) {
            p.insert(key.into(), v.clone());
        }
    }
    match field {
        Some("status") => {
            let prev = before
                .and_then(|b| b.get("status"))
                .cloned()
                .unwrap_or(Value::Null);
            p.insert("previous_status".into(), prev);
        }
        Some(f @ ("team" | "member" | "manager")) => {
            let v = rec_str(rec, f)
                .map(|id| reference_object(emu, id))
                .unwrap_or(Value::Null);
            p.insert(f.into(), v);
        }
        _ => {}
    }
    Value::Object(p)
}

fn note_added(emu: &Arc<Emulator>, note: &Record, person_id: Option<&str>) {
    let Some(owner_id) = rec_str(note, "_owner") else {
        return;
    };
    let Some(owner) = emu.records.get(owner_id) else {
        return;
    };
    let Some(noun) = rec_str(&owner, "__typename").and_then(events::noun_for_type) else {
        return;
    };
    let Some(event) = events::normalize_event(&format!("{noun}.note-added")) else {
        return;
    };
    let mut payload = match record_payload(emu, &owner, None, None) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    payload.insert("note_id".into(), json!(rec_seq(note)));
    payload.insert("note_nodeID".into(), json!(rec_str(note, "id")));
    let person = person_id.or_else(|| rec_str(note, "person"));
    let account = rec_str(&owner, "_account").unwrap_or_default().to_string();
    fire_event(
        emu,
        &account,
        event,
        &owner,
        person,
        Value::Object(payload),
        None,
    );
    super::apps::run_automation_rules(emu, &account, event, &owner);
}

/// Does `webhook` subscribe to `event` (stored as wire value or GraphQL enum name)?
pub(crate) fn webhook_event(webhook: &Record) -> Option<&'static str> {
    rec_str(webhook, "event").and_then(events::normalize_event)
}

/// The enabled, verified webhooks of `account` for `event` (and, for app instance events,
/// whose `appOfferingReferences` are empty or contain `reference`).
pub(crate) fn matching_webhooks(
    emu: &Emulator,
    account: &str,
    event: &str,
    reference: Option<&str>,
) -> Vec<Record> {
    emu.records
        .list(account, "Webhook")
        .into_iter()
        .filter(|w| webhook_event(w) == Some(event))
        .filter(|w| !rec_bool(w, "disabled"))
        .filter(|w| {
            emu.rest
                .webhook_verified(rec_str(w, "id").unwrap_or_default())
        })
        .filter(|w| {
            let refs: Vec<&str> = w
                .get("appOfferingReferences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            refs.is_empty() || reference.is_some_and(|r| refs.contains(&r))
        })
        .collect()
}

/// Fire `event` about `object` to every matching webhook of `account`.
pub(crate) fn fire_event(
    emu: &Arc<Emulator>,
    account: &str,
    event: &str,
    object: &Record,
    person_id: Option<&str>,
    payload: Value,
    reference: Option<&str>,
) -> usize {
    let hooks = matching_webhooks(emu, account, event, reference);
    let n = hooks.len();
    for webhook in hooks {
        let message = build_message(
            emu,
            &webhook,
            event,
            Some((rec_seq(object), rec_str(object, "id").unwrap_or_default())),
            person_id,
            payload.clone(),
        );
        let link = object_link(emu, object);
        spawn_delivery(emu.clone(), webhook, event.to_string(), message, link, None);
    }
    n
}

/// `Link` header value for a record: UI URL (canonical) and REST URL (resource).
pub(crate) fn object_link(emu: &Emulator, object: &Record) -> String {
    let account = rec_str(object, "_account").unwrap_or_default();
    let collection = events::rest_collection(rec_str(object, "__typename").unwrap_or("record"));
    let seq = rec_seq(object);
    format!(
        "<{}/{collection}/{seq}>; rel=\"canonical\", <{}/v1/{collection}/{seq}>; rel=\"resource\"",
        account_url(emu, account),
        emu.base_url
    )
}

/// Build the webhook message (the JSON body, or the JWT `data` claim when signed).
pub(crate) fn build_message(
    emu: &Emulator,
    webhook: &Record,
    event: &str,
    object: Option<(u64, &str)>,
    person_id: Option<&str>,
    payload: Value,
) -> Value {
    let account = rec_str(webhook, "_account").unwrap_or_default();
    let mut m = Map::new();
    m.insert("webhook_id".into(), json!(rec_seq(webhook)));
    m.insert("webhook_nodeID".into(), json!(rec_str(webhook, "id")));
    m.insert("account_id".into(), json!(account));
    m.insert("account".into(), json!(account_url(emu, account)));
    m.insert(
        "name".into(),
        json!(rec_str(webhook, "name").unwrap_or(event)),
    );
    m.insert("event".into(), json!(event));
    if let Some((seq, node_id)) = object {
        m.insert("object_id".into(), json!(seq));
        m.insert("object_nodeID".into(), json!(node_id));
    }
    person_keys(emu, person_id, &mut m);
    m.insert("instance_name".into(), json!(INSTANCE_NAME));
    m.insert("payload".into(), payload);
    Value::Object(m)
}

/// Begin the `webhook.verify` handshake for a new webhook (or one whose URI changed).
pub(crate) fn start_verification(emu: &Arc<Emulator>, webhook: &Record) {
    let Some(id) = rec_str(webhook, "id") else {
        return;
    };
    let code = random_hex(16);
    emu.rest
        .webhooks
        .lock()
        .entry(id.to_string())
        .or_default()
        .pending_code = Some(code.clone());
    let callback = format!(
        "{}/_emulator/webhooks/{}/verify?code={}",
        emu.base_url, id, code
    );
    let message = build_message(
        emu,
        webhook,
        "webhook.verify",
        Some((rec_seq(webhook), id)),
        None,
        json!({ "callback": callback }),
    );
    let link = object_link(emu, webhook);
    spawn_delivery(
        emu.clone(),
        webhook.clone(),
        "webhook.verify".into(),
        message,
        link,
        None,
    );
}

/// The JWT issuer for a webhook: the policy's OIDC issuer when the webhook has
/// `openidConnectDiscovery`, else the account URL.
pub(crate) fn issuer(emu: &Emulator, webhook: &Record, policy: &Record) -> String {
    let account = rec_str(webhook, "_account").unwrap_or_default();
    if rec_bool(webhook, "openidConnectDiscovery") {
        super::oidc::policy_issuer(emu, policy)
    } else {
        account_url(emu, account)
    }
}

/// The request body for `message`: plain JSON, or `{"jwt": ...}` signed with the webhook's
/// policy (fresh `iat`/`nbf`/`jti` on every call).
pub(crate) fn request_body(
    emu: &Emulator,
    webhook: &Record,
    message: &Value,
) -> Result<String, String> {
    let Some(policy_id) = rec_str(webhook, "webhookPolicy") else {
        return Ok(message.to_string());
    };
    let policy = emu
        .records
        .get(policy_id)
        .ok_or_else(|| format!("webhook policy {policy_id} not found"))?;
    let key = ensure_policy_key(emu, &policy)
        .ok_or_else(|| format!("webhook policy {policy_id} has no usable key"))?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer(emu, webhook, &policy)));
    claims.insert("sub".into(), json!(rec_str(webhook, "id")));
    if let Some(aud) = rec_str(&policy, "jwtAudience").filter(|a| !a.is_empty()) {
        claims.insert("aud".into(), json!(aud));
    }
    if let Some(exp) = policy.get("jwtClaimExpiresIn").and_then(Value::as_i64) {
        if exp > 0 {
            claims.insert("exp".into(), json!(now + exp));
        }
    }
    claims.insert("nbf".into(), json!(now));
    claims.insert("iat".into(), json!(now));
    claims.insert("jti".into(), json!(random_jti()));
    claims.insert("data".into(), message.clone());
    let jwt = key
        .sign(policy_id, &Value::Object(claims))
        .map_err(|e| e.to_string())?;
    Ok(json!({ "jwt": jwt }).to_string())
}

/// Deliver `message` to `webhook` in the background, with retries.
pub(crate) fn spawn_delivery(
    emu: Arc<Emulator>,
    webhook: Record,
    event: String,
    message: Value,
    link: String,
    origin: Option<String>,
) {
    tokio::spawn(async move {
        run_delivery(&emu, webhook, &event, &message, &link, origin).await;
    });
}

async fn run_delivery(
    emu: &Arc<Emulator>,
    mut webhook: Record,
    event: &str,
    message: &Value,
    link: &str,
    origin: Option<String>,
) {
    let delivery = uuid::Uuid::new_v4().to_string();
    let webhook_id = rec_str(&webhook, "id").unwrap_or_default().to_string();
    let settings = emu.rest.settings();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if attempt > 1 {
            let delay = retry_delay(
                Duration::from_millis(settings.delivery_backoff_ms),
                attempt - 1,
            );
            tokio::time::sleep(delay).await;
            // The webhook may have been deleted or disabled in the meantime.
            match emu.records.get(&webhook_id) {
                Some(w) if !rec_bool(&w, "disabled") || event == "webhook.verify" => webhook = w,
                _ => return,
            }
        }
        let ok = attempt_once(
            emu, &webhook, event, message, link, &delivery, &origin, attempt,
        )
        .await;
        let mut states = emu.rest.webhooks.lock();
        let state = states.entry(webhook_id.clone()).or_default();
        match ok {
            Ok(()) => {
                state.consecutive_failures = 0;
                return;
            }
            Err(err) => {
                state.consecutive_failures += 1;
                state.last_error = Some(err);
                let failures = state.consecutive_failures;
                drop(states);
                if failures >= settings.disable_after_failures && !rec_bool(&webhook, "disabled") {
                    tracing::warn!(webhook = %webhook_id, failures, "disabling webhook after consecutive failures");
                    let mut patch = Record::new();
                    patch.insert("disabled".into(), Value::Bool(true));
                    emu.update_record(&webhook_id, patch, None);
                    return;
                }
                if attempt > settings.max_retries {
                    return;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    emu: &Emulator,
    webhook: &Record,
    event: &str,
    message: &Value,
    link: &str,
    delivery: &str,
    origin: &Option<String>,
    attempt: u32,
) -> Result<(), String> {
    let id = emu
        .rest
        .next_delivery
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let uri = rec_str(webhook, "uri").unwrap_or_default().to_string();
    let started_at = crate::now_timestamp();
    let start = Instant::now();
    let mut headers = BTreeMap::new();
    headers.insert(
        "content-type".to_string(),
        "application/json; charset=utf-8".to_string(),
    );
    headers.insert("user-agent".to_string(), USER_AGENT.to_string());
    headers.insert("x-xurrent-delivery".to_string(), delivery.to_string());
    if let Some(o) = origin {
        headers.insert("x-xurrent-delivery-origin".to_string(), o.clone());
    }
    headers.insert("link".to_string(), link.to_string());
    let mut record = DeliveryRecord {
        id,
        delivery: delivery.to_string(),
        delivery_origin: origin.clone(),
        account: rec_str(webhook, "_account").unwrap_or_default().to_string(),
        webhook_id: rec_seq(webhook),
        webhook_node_id: rec_str(webhook, "id").unwrap_or_default().to_string(),
        event: event.to_string(),
        uri: uri.clone(),
        attempt,
        message: message.clone(),
        request_body: String::new(),
        request_headers: headers.clone(),
        response_status: None,
        response_body: None,
        error: None,
        success: false,
        started_at,
        duration_ms: 0,
    };
    let result = match request_body(emu, webhook, message) {
        Err(e) => Err(e),
        Ok(body) => {
            record.request_body = body.clone();
            let timeout = Duration::from_millis(emu.rest.settings().delivery_timeout_ms);
            let mut req = emu.rest.client().post(&uri).timeout(timeout).body(body);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            match req.send().await {
                Err(e) => Err(format!("connection error: {e}")),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let text: String = text.chars().take(65_536).collect();
                    record.response_status = Some(status.as_u16());
                    record.response_body = Some(text);
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(status.to_string())
                    }
                }
            }
        }
    };
    record.duration_ms = start.elapsed().as_millis() as u64;
    record.success = result.is_ok();
    if let Err(e) = &result {
        if record.response_status.is_none() {
            record.error = Some(e.clone());
        }
        tracing::debug!(event, uri = %uri, attempt, error = %e, "webhook delivery failed");
    }
    {
        let mut log = emu.rest.deliveries.write();
        if log.len() >= MAX_RECORDED_DELIVERIES {
            let excess = log.len() + 1 - MAX_RECORDED_DELIVERIES;
            log.drain(..excess);
        }
        log.push(record);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow() {
        let base = Duration::from_millis(10);
        assert_eq!(retry_delay(base, 1), Duration::from_millis(10));
        assert_eq!(retry_delay(base, 2), Duration::from_millis(20));
        assert_eq!(retry_delay(base, 10), Duration::from_millis(5120));
        assert_eq!(
            retry_delay(Duration::from_secs(10), 30),
            Duration::from_secs(3600)
        );
    }
}
