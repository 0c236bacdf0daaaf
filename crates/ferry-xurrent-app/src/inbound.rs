//! The inbound pipeline the three triggers share (spec `xurrent_app_connector.md` §5.4–§5.10),
//! on top of the Xurrent connector's JWT verification and `webhook.verify` callback:
//!
//! 1. no policy → `Webhook policy not configured` (before the body is read, as the spec says);
//! 2. body over 256 KiB → `Webhook body too large`; not JSON → `Unable to parse incoming
//!    request`; no `jwt` → `Request does not contain jwt property`;
//! 3. the JWT checked against the policy (algorithm, issuer, times, signature, audience, `iat`
//!    window, `jti` length): any failure → `Unable to validate request: <detail>`;
//! 4. the `jti` replay window (120 s): claimed with the job, or alone before a handshake; a
//!    replay → `Unable to validate request: JWT ID claim invalid`;
//! 5. `webhook.verify` with a callback → the callback is GET (only on the issuer's host) and the
//!    request answered `200 Webhook verification handled automatically: <name> (<node>)`, no job;
//!
//! Every rejection is a 400 with `{"error": message}` (503 when the store is unavailable).

use std::sync::Arc;
use std::time::Duration;

use ferry_engine::{
    Parsed, TriggerClaim, TriggerContext, TriggerError, TriggerParse, TriggerResponse,
};
use ferry_xurrent::webhook::policy::{InboundSettings, Policy};
use ferry_xurrent::webhook::verify::{self, Rejection};
use ferry_xurrent::webhook::{verify_callback, webhook_names, WebhookTrigger};
use serde_json::{json, Map, Value};

use crate::connection::AppSettings;
use crate::store::WebhookPolicy;

/// The message of a request whose policy is not known (yet).
pub const POLICY_NOT_CONFIGURED: &str = "Webhook policy not configured";

/// A verified delivery: its webhook message and what the job needs.
#[derive(Debug)]
pub struct Delivery {
    /// The webhook message (the JWT's `data` claim).
    pub message: Map<String, Value>,
    /// The `webhook` output object (spec §5.7).
    pub webhook: Value,
    /// The delivery id that deduplicates the job: the original delivery of a re-send, else
    /// this delivery.
    pub dedup_id: Option<String>,
    /// The `jti` claim, to be made with the job.
    pub claims: Vec<TriggerClaim>,
}

impl Delivery {
    /// The message's `payload` object (empty when it has none).
    pub fn payload(&self) -> Map<String, Value> {
        self.message
            .get("payload")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// The job this delivery starts: the trigger's `output` with the `webhook` details and the
    /// deduplication id added, the context identifier, and the `jti` claim.
    pub fn into_event(self, mut output: Map<String, Value>, context_id: Option<String>) -> Parsed {
        output.insert("webhook".into(), self.webhook);
        if let Some(d) = self.dedup_id {
            output.insert("deduplication_id".into(), json!(d));
        }
        Parsed::Event(TriggerParse {
            output: Value::Object(output),
            context_id,
            claims: self.claims,
        })
    }
}

/// What a verified request is.
#[derive(Debug)]
pub enum Inbound {
    /// An event to process.
    Event(Delivery),
    /// Answered already (the `webhook.verify` handshake).
    Answered(Parsed),
}

/// The JWT verifier (its PEM key cache), shared by the triggers.
#[derive(Clone)]
pub struct Verifier(Arc<WebhookTrigger>);

impl Default for Verifier {
    fn default() -> Self {
        Verifier(Arc::new(WebhookTrigger::new()))
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A 400 rejection.
pub fn bad(message: impl Into<String>) -> TriggerError {
    let message = message.into();
    tracing::warn!(message, "Xurrent App delivery rejected");
    TriggerError::bad_request(message)
}

fn from_rejection(r: Rejection) -> TriggerError {
    let message = if r.message == verify::VERIFICATION_FAILED {
        let detail = r
            .detail
            .strip_prefix(&format!("{}: ", verify::VERIFICATION_FAILED))
            .unwrap_or(&r.detail);
        format!("Unable to validate request: {detail}")
    } else {
        r.message
    };
    tracing::warn!(status = r.status, message, "Xurrent App delivery rejected");
    TriggerError::Reject {
        status: r.status,
        message,
    }
}

fn replay_message() -> String {
    format!("Unable to validate request: {}", verify::JTI_REPLAYED)
}

fn header(ctx: &TriggerContext<'_>, name: &str) -> Option<String> {
    ctx.request
        .header(name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The `webhook` output object (spec §5.7): `event`, `delivery`, `delivery_origin` (only when
/// the header is there) and `person {id, nodeID, name}`.
pub fn webhook_details(
    message: &Map<String, Value>,
    delivery: Option<&str>,
    origin: Option<&str>,
) -> Value {
    let mut w = Map::new();
    w.insert(
        "event".into(),
        message.get("event").cloned().unwrap_or(Value::Null),
    );
    w.insert("delivery".into(), json!(delivery));
    if let Some(o) = origin {
        w.insert("delivery_origin".into(), json!(o));
    }
    w.insert(
        "person".into(),
        json!({
            "id": message.get("person_id").cloned().unwrap_or(Value::Null),
            "nodeID": message.get("person_nodeID").cloned().unwrap_or(Value::Null),
            "name": message.get("person_name").cloned().unwrap_or(Value::Null),
        }),
    );
    Value::Object(w)
}

impl Verifier {
    /// Steps 1–5 of the module docs for `policy` (the provider's or a customer's).
    pub async fn verify(
        &self,
        ctx: &TriggerContext<'_>,
        policy: Option<WebhookPolicy>,
        settings: &AppSettings,
    ) -> Result<Inbound, TriggerError> {
        let Some(policy) = policy else {
            return Err(bad(POLICY_NOT_CONFIGURED));
        };
        let body = &ctx.request.body;
        verify::check_body_size(body).map_err(from_rejection)?;
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
            return Err(bad("Unable to parse incoming request"));
        };
        let Some(jwt) = body
            .get("jwt")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        else {
            return Err(bad("Request does not contain jwt property"));
        };
        let issuer = policy.issuer.clone();
        let p = Policy {
            account_url: issuer.clone(),
            algorithm: Some(policy.algorithm.to_ascii_uppercase()),
            public_key_pem: Some(policy.public_key_pem.clone()),
            audience: policy.audience.clone().filter(|a| !a.trim().is_empty()),
        };
        let s = InboundSettings {
            account_url: issuer.clone(),
            allow_unsigned: false,
            allow_http_loopback: settings.allow_http_loopback,
        };
        let verified = self
            .0
            .verify_jwt(jwt, &p, &s, None, now())
            .await
            .map_err(from_rejection)?;
        let Value::Object(message) = verified.webhook else {
            return Err(bad(
                "Unable to validate request: the JWT has no 'data' object",
            ));
        };
        let replay_kv = ctx.connection_kv.as_ref().unwrap_or(&ctx.kv);
        let jti_key = verified.jti.as_deref().map(verify::jti_key);
        if message.get("event").and_then(Value::as_str) == Some("webhook.verify") {
            let callback = message
                .get("payload")
                .and_then(|p| p.get("callback"))
                .and_then(Value::as_str)
                .filter(|c| !c.trim().is_empty());
            if let Some(callback) = callback {
                if let Some(key) = &jti_key {
                    let first = replay_kv
                        .put_if_absent(
                            key,
                            &json!(true),
                            Some(Duration::from_secs(verify::JTI_WINDOW_SECONDS)),
                        )
                        .await?;
                    if !first {
                        return Err(bad(replay_message()));
                    }
                }
                let (name, node) = webhook_names(&message);
                verify_callback(
                    ctx.http,
                    name,
                    node,
                    callback,
                    Some(&verified.iss),
                    settings.allow_http_loopback,
                )
                .await
                .map_err(from_rejection)?;
                let text = format!("Webhook verification handled automatically: {name} ({node})");
                tracing::info!("{text}");
                return Ok(Inbound::Answered(Parsed::Respond(TriggerResponse::text(
                    200, text,
                ))));
            }
        }
        let delivery = header(ctx, "x-xurrent-delivery");
        let origin = header(ctx, "x-xurrent-delivery-origin");
        let webhook = webhook_details(&message, delivery.as_deref(), origin.as_deref());
        let claims = jti_key
            .iter()
            .map(|key| TriggerClaim {
                claim: replay_kv.claim(
                    key,
                    &json!(true),
                    Some(Duration::from_secs(verify::JTI_WINDOW_SECONDS)),
                ),
                status: 400,
                message: replay_message(),
                detail: format!("replayed JWT ({})", verify::JTI_REPLAYED),
            })
            .collect();
        Ok(Inbound::Event(Delivery {
            message,
            webhook,
            dedup_id: origin.or(delivery),
            claims,
        }))
    }
}

/// A string member of `v` (trimmed, blank as `None`).
pub fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The job context identifier: `<app_reference>@<customer_account_id>`.
pub fn context_id(app_reference: &str, customer_account_id: &str) -> String {
    format!("{app_reference}@{customer_account_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_details_omit_a_missing_origin() {
        let m: Map<String, Value> = serde_json::from_value(json!({
            "event": "app_instance.create", "person_id": 5689, "person_nodeID": "AeHV",
            "person_name": "Tom Katers"}))
        .unwrap();
        assert_eq!(
            webhook_details(&m, Some("d1"), None),
            json!({"event": "app_instance.create", "delivery": "d1",
                   "person": {"id": 5689, "nodeID": "AeHV", "name": "Tom Katers"}})
        );
        assert_eq!(
            webhook_details(&m, Some("d2"), Some("d1"))["delivery_origin"],
            "d1"
        );
    }
}
