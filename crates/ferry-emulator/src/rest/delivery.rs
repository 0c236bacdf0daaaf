//! Webhook delivery: turns record changes into events, builds the webhook message, signs it with
//! the webhook's policy, POSTs it, retries failures with growing intervals, disables webhooks
//! after too many consecutive failures and records every attempt.
//!
//! The pipeline is generic: parts with their own event payloads or follow-up actions (the App
//! Store) plug in through an [`EventHook`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::common::{rec_bool, rec_seq, rec_str};
use super::events::{self, Kind};
use crate::policy::{self, random_hex, random_jti, PolicyKey};
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

/// Per-webhook delivery state that is not part of the public record.
#[derive(Clone, Debug, Default)]
pub(crate) struct WebhookState {
    /// Code of the pending verification; `None` once verified.
    pub pending_code: Option<String>,
    /// Unix time after which the pending code is refused (the callback's `expires_at`).
    pub pending_expires_at: Option<i64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Last delivery error (status line or network error).
    pub last_error: Option<String>,
}

/// What another part of the emulator adds to the change → delivery pipeline. The App Store
/// registers one (payloads of `app_instance.*` events, automation rules); the pipeline itself
/// knows nothing about it.
pub trait EventHook: Send + Sync {
    /// The payload and the app offering reference of an event about `object` (a record of
    /// `typename`), when this hook owns that type; `None` leaves the generic payload.
    fn payload(&self, emu: &Emulator, typename: &str, object: &Record) -> Option<EventPayload> {
        let _ = (emu, typename, object);
        None
    }

    /// Called after `event` about `object` was fired in `account`.
    fn event_fired(
        &self,
        emu: &Arc<Emulator>,
        account: &str,
        event: &'static str,
        object: &Record,
    ) {
        let _ = (emu, account, event, object);
    }
}

/// A payload supplied by an [`EventHook`].
#[derive(Debug, Clone)]
pub struct EventPayload {
    /// The message `payload`.
    pub payload: Value,
    /// The app offering reference that `app_offering_references` of webhooks filter on.
    pub reference: Option<String>,
}

/// State of the delivery pipeline (part of [`RestState`](super::RestState)).
#[derive(Default)]
pub(crate) struct DeliveryState {
    pub(crate) webhooks: Mutex<HashMap<String, WebhookState>>,
    pub(crate) deliveries: RwLock<Vec<DeliveryRecord>>,
    next_delivery: AtomicU64,
    /// Last audit line number per account.
    audit_lines: Mutex<HashMap<String, u64>>,
    hooks: RwLock<Vec<Arc<dyn EventHook>>>,
    client: OnceLock<reqwest::Client>,
}

impl DeliveryState {
    /// Add a hook (see [`EventHook`]).
    pub(crate) fn register_hook(&self, hook: Arc<dyn EventHook>) {
        self.hooks.write().push(hook);
    }

    fn hooks(&self) -> Vec<Arc<dyn EventHook>> {
        self.hooks.read().clone()
    }

    /// Forget webhook state and deliveries (hooks stay).
    pub(crate) fn clear(&self) {
        self.webhooks.lock().clear();
        self.deliveries.write().clear();
        self.audit_lines.lock().clear();
    }

    /// Is the webhook verified (no pending `webhook.verify` handshake)?
    pub(crate) fn webhook_verified(&self, webhook_id: &str) -> bool {
        self.webhooks
            .lock()
            .get(webhook_id)
            .map(|s| s.pending_code.is_none())
            .unwrap_or(true)
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(USER_AGENT)
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    /// The next audit line of `account`: `(number, node id)`.
    fn next_audit_line(&self, account: &str) -> (u64, String) {
        let mut lines = self.audit_lines.lock();
        let n = lines.entry(account.to_string()).or_insert(0);
        *n += 1;
        (*n, crate::encode_node_id(account, "AuditLine", *n))
    }
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
        policy::TYPENAME => {
            if change.kind == ChangeKind::Created {
                if let Some(after) = change.after.clone() {
                    if PolicyKey::from_fields(&after).is_none() {
                        // RSA key generation takes a while: keep it off the listener.
                        let emu = emu.clone();
                        tokio::task::spawn_blocking(move || policy::ensure_key(&emu, &after));
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
            let fired = events::change_events(
                typename,
                kind(change.kind),
                change.before.as_ref(),
                change.after.as_ref(),
            );
            if fired.is_empty() {
                return;
            }
            // One audit line per change, shared by the events it fires.
            let audit = emu.rest.delivery.next_audit_line(&change.account);
            let hooks = emu.rest.delivery.hooks();
            for (event, field) in fired {
                let custom = hooks.iter().find_map(|h| h.payload(emu, typename, object));
                let (payload, reference) = match custom {
                    Some(p) => (p.payload, p.reference),
                    None => (
                        record_payload(emu, object, field, change.before.as_ref(), &audit),
                        None,
                    ),
                };
                fire_event(
                    emu,
                    Event {
                        account: &change.account,
                        name: event,
                        object,
                        person_id: change.person_id.as_deref(),
                        payload,
                        reference: reference.as_deref(),
                        related: None,
                    },
                );
                for hook in &hooks {
                    hook.event_fired(emu, &change.account, event, object);
                }
            }
        }
    }
}

fn handle_webhook_change(emu: &Arc<Emulator>, change: &RecordChange) {
    match change.kind {
        ChangeKind::Created => {
            if let Some(after) = &change.after {
                if !rec_bool(after, "_preverified") {
                    start_verification(emu, after, change.person_id.as_deref());
                }
            }
        }
        ChangeKind::Updated => {
            if let (Some(before), Some(after)) = (&change.before, &change.after) {
                if before.get("uri") != after.get("uri") {
                    start_verification(emu, after, change.person_id.as_deref());
                }
                // Re-enabling a webhook starts a new failure count.
                if rec_bool(before, "disabled") && !rec_bool(after, "disabled") {
                    if let Some(id) = rec_str(after, "id") {
                        if let Some(s) = emu.rest.delivery.webhooks.lock().get_mut(id) {
                            s.consecutive_failures = 0;
                        }
                    }
                }
            }
        }
        ChangeKind::Deleted => {
            if let Some(id) = change.before.as_ref().and_then(|b| rec_str(b, "id")) {
                emu.rest.delivery.webhooks.lock().remove(id);
            }
        }
    }
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

/// A short description of a referenced record (`team`, `member`, ...) for payloads:
/// `{id, nodeID, name, account{id, name}}`, plus `sourceID` when set and `disabled` when true
/// (Xurrent leaves those out otherwise).
pub(crate) fn reference_object(emu: &Emulator, node_id: &str) -> Value {
    let Some(r) = emu.records.get(node_id) else {
        return Value::Null;
    };
    let account = rec_str(&r, "_account").unwrap_or_default().to_string();
    let account_name = emu
        .account(&account)
        .map(|a| a.name)
        .unwrap_or_else(|| account.clone());
    let mut m = Map::new();
    m.insert("id".into(), json!(rec_seq(&r)));
    m.insert("nodeID".into(), json!(node_id));
    m.insert("name".into(), r.get("name").cloned().unwrap_or(Value::Null));
    if let Some(s) = rec_str(&r, "sourceID").filter(|s| !s.is_empty()) {
        m.insert("sourceID".into(), json!(s));
    }
    if rec_bool(&r, "disabled") {
        m.insert("disabled".into(), json!(true));
    }
    m.insert(
        "account".into(),
        json!({"id": account, "name": account_name}),
    );
    Value::Object(m)
}

/// Reference fields that a payload carries as objects when they are set.
const REFERENCE_FIELDS: &[&str] = &["team", "member", "manager"];

/// The payload of an event about `rec`: the attributes that are set (`source`, `sourceID`,
/// `status`, `team`, `member`, `manager`), `previous_status` for a status change, and the audit
/// line of the change.
fn record_payload(
    emu: &Emulator,
    rec: &Record,
    field: Option<&str>,
    before: Option<&Record>,
    audit: &(u64, String),
) -> Value {
    let mut p = Map::new();
    for key in ["source", "sourceID", "status"] {
        if let Some(v) = rec
            .get(key)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
        {
            p.insert(key.into(), v.clone());
        }
    }
    if field == Some("status") {
        let prev = before
            .and_then(|b| b.get("status"))
            .cloned()
            .unwrap_or(Value::Null);
        p.insert("previous_status".into(), prev);
    }
    for f in REFERENCE_FIELDS {
        match rec_str(rec, f) {
            Some(id) => {
                p.insert((*f).into(), reference_object(emu, id));
            }
            // A `team-changed` to no team still says so.
            None if field == Some(*f) => {
                p.insert((*f).into(), Value::Null);
            }
            None => {}
        }
    }
    p.insert("audit_line_id".into(), json!(audit.0));
    p.insert("audit_line_nodeID".into(), json!(audit.1));
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
    let account = rec_str(&owner, "_account").unwrap_or_default().to_string();
    let audit = emu.rest.delivery.next_audit_line(&account);
    let mut payload = match record_payload(emu, &owner, None, None, &audit) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    payload.insert("note_id".into(), json!(rec_seq(note)));
    payload.insert("note_nodeID".into(), json!(rec_str(note, "id")));
    let person = person_id.or_else(|| rec_str(note, "person"));
    fire_event(
        emu,
        Event {
            account: &account,
            name: event,
            object: &owner,
            person_id: person,
            payload: Value::Object(payload),
            reference: None,
            related: Some(note_url(emu, &owner, note)),
        },
    );
    for hook in emu.rest.delivery.hooks() {
        hook.event_fired(emu, &account, event, &owner);
    }
}

/// The REST URL of a note: `<base>/v1/<owner collection>/<owner id>/notes/<note id>`.
fn note_url(emu: &Emulator, owner: &Record, note: &Record) -> String {
    format!(
        "{}/v1/{}/{}/notes/{}",
        emu.base_url,
        events::rest_collection(rec_str(owner, "__typename").unwrap_or("record")),
        rec_seq(owner),
        rec_seq(note)
    )
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

/// One event to fire (see [`fire_event`]).
pub(crate) struct Event<'a> {
    /// Account whose webhooks receive it.
    pub account: &'a str,
    /// Event name (wire spelling).
    pub name: &'a str,
    /// The record the event is about (`object_id`, `object_nodeID`, the `Link` header).
    pub object: &'a Record,
    /// Node id of the person who caused it.
    pub person_id: Option<&'a str>,
    /// The message `payload`.
    pub payload: Value,
    /// App offering reference for `app_offering_references` filters.
    pub reference: Option<&'a str>,
    /// URL of a related record for the `Link` header's `rel="related"` entry.
    pub related: Option<String>,
}

/// Fire an event to every matching webhook of its account; returns how many.
pub(crate) fn fire_event(emu: &Arc<Emulator>, event: Event<'_>) -> usize {
    let hooks = matching_webhooks(emu, event.account, event.name, event.reference);
    let n = hooks.len();
    let mut link = object_link(emu, event.object);
    if let Some(related) = &event.related {
        link.push_str(&format!(", <{related}>; rel=\"related\""));
    }
    for webhook in hooks {
        let message = build_message(
            emu,
            &webhook,
            event.name,
            Some((
                rec_seq(event.object),
                rec_str(event.object, "id").unwrap_or_default(),
            )),
            event.person_id,
            event.payload.clone(),
        );
        spawn_delivery(
            emu.clone(),
            webhook,
            event.name.to_string(),
            message,
            link.clone(),
            None,
        );
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
        emu.account_url(account),
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
    m.insert("account".into(), json!(emu.account_url(account)));
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

/// The `webhook.verify` callback of a webhook:
/// `<account URL>/webhooks/<webhook id>/verify?code=<code>&expires_at=<unix time>`.
pub(crate) fn verification_callback(
    emu: &Emulator,
    webhook: &Record,
    code: &str,
    expires_at: i64,
) -> String {
    format!(
        "{}/webhooks/{}/verify?code={code}&expires_at={expires_at}",
        emu.account_url(rec_str(webhook, "_account").unwrap_or_default()),
        rec_seq(webhook),
    )
}

/// Begin the `webhook.verify` handshake for a new webhook (or one whose URI changed), on behalf
/// of the person who created (or changed) it.
pub(crate) fn start_verification(emu: &Arc<Emulator>, webhook: &Record, person_id: Option<&str>) {
    let Some(id) = rec_str(webhook, "id") else {
        return;
    };
    let code = random_hex(16);
    let expires_at =
        chrono::Utc::now().timestamp() + emu.rest.settings().verification_expires_in as i64;
    {
        let mut states = emu.rest.delivery.webhooks.lock();
        let state = states.entry(id.to_string()).or_default();
        state.pending_code = Some(code.clone());
        state.pending_expires_at = Some(expires_at);
    }
    let callback = verification_callback(emu, webhook, &code, expires_at);
    let message = build_message(
        emu,
        webhook,
        "webhook.verify",
        Some((rec_seq(webhook), id)),
        person_id,
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

/// The request body for `message`: plain JSON, or `{"jwt": ...}` signed with the webhook's
/// policy (fresh `iat`/`nbf`/`jti` on every call). The claims are `iss` (see
/// [`policy::issuer`]), `sub` (the numeric webhook id), `aud` and `exp` when the policy sets
/// them, `nbf`, `iat`, `jti` and `data`; the header names the key (`kid`) only for webhooks
/// that use OpenID Connect discovery.
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
    let key = policy::ensure_key(emu, &policy)
        .ok_or_else(|| format!("webhook policy {policy_id} has no usable key"))?;
    // A policy whose key was generated just now got its name in the same update.
    let policy = emu.records.get(policy_id).unwrap_or(policy);
    let oidc = rec_bool(webhook, "openidConnectDiscovery");
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(policy::issuer(emu, &policy, oidc)));
    claims.insert("sub".into(), json!(rec_seq(webhook).to_string()));
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
    let kid = oidc.then(|| policy::key_id(&policy));
    let jwt = key
        .sign(kid, &Value::Object(claims))
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
        let mut states = emu.rest.delivery.webhooks.lock();
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
        .delivery
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
            let mut req = emu
                .rest
                .delivery
                .client()
                .post(&uri)
                .timeout(timeout)
                .body(body);
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
        let mut log = emu.rest.delivery.deliveries.write();
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
