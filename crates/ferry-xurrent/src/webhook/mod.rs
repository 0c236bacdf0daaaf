//! The `xurrent.webhook` trigger: Xurrent webhook deliveries, verified and mapped to a job
//! (spec `xurrent_connector.md` §3, hardened as its §10 recommends).
//!
//! The pipeline of one request (spec §3.4, §3.5), each rejection with its status and message:
//!
//! 1. an empty body → `Request has no body`; more than 256 KiB → `Webhook body too large`;
//!    not a JSON object → `Unable to parse incoming webhook request`;
//! 2. the effective policy: the trigger's `policy`, else the inbound connection's;
//! 3. no `jwt` in the body: accepted unsigned only when there is no policy **and** the inbound
//!    connection says `allow_unsigned: true` (401 otherwise); with a policy →
//!    `Webhook request does not contain jwt property`;
//! 4. a `jwt`: more than 8 KiB → `Webhook JWT is too large`; no issuer rule (neither
//!    `policy.account_url` nor the connection's `account_url`) → `Webhook configuration error`;
//!    then [`verify`]'s steps (algorithm allow-list, issuer, `exp`/`nbf`/`iat`, the key — the
//!    policy's PEM or [`oidc`] discovery —, signature, audience, `iat` window, `jti` length)
//!    and the `jti` replay window of 120 s in the shared key/value store (claimed in the same
//!    transaction as the job, [`ferry_engine::TriggerClaim`]; alone before a handshake); every
//!    failure → `Webhook JWT verification failed` (the cause is logged);
//! 5. `event: webhook.verify` with a callback: the trigger GETs the callback (only on the
//!    account's own host) and answers `200 Webhook verification handled: …` itself, no job;
//! 6. the message is mapped to the output ([`mapping`]); its deduplication id is the
//!    delivery id (the original one for a re-sent delivery), so a delivery never runs twice.

pub mod mapping;
pub mod oidc;
pub mod policy;
pub mod provision;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::{
    Kv, Parsed, Registry, Trigger, TriggerClaim, TriggerContext, TriggerError, TriggerParse,
    TriggerResponse, TriggerSpec,
};
use jsonwebtoken::DecodingKey;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use url::Url;

use self::oidc::{KeyResolver, OidcError};
use self::policy::{InboundSettings, Policy, ALGORITHM_CHOICES};
use self::verify::{IssuerRule, Rejection, Unverified};

/// The trigger's registry name.
pub const TRIGGER: &str = "xurrent.webhook";

/// The `User-Agent` of the `webhook.verify` callback request.
pub const USER_AGENT: &str = "Xurrent iPaaS";

/// Register the webhook trigger.
pub fn register(r: &mut Registry) {
    r.trigger(WebhookTrigger::new());
}

/// The `policy` config field (spec §3.1), on the inbound connection and on the trigger.
pub fn policy_field() -> Field {
    Field::new("policy", FieldType::Nested)
        .label("Webhook Policy")
        .hint("How deliveries are signed: the issuer, and a static public key or (when blank) OpenID Connect discovery")
        .with_fields(vec![
            Field::new("account_url", FieldType::String)
                .label("Issuer")
                .hint("The JWT issuer must equal this; blank: it must fall under the connection's account URL"),
            Field::new("algorithm", FieldType::String)
                .label("Algorithm")
                .enumeration(ALGORITHM_CHOICES.iter().map(|a| json!(a)).collect()),
            Field::new("public_key_pem", FieldType::String)
                .label("Public key PEM")
                .hint("Blank: the key is discovered through OpenID Connect"),
            Field::new("audience", FieldType::String).label("Audience"),
        ])
}

/// The inbound connection's config fields.
pub fn inbound_fields() -> Vec<Field> {
    vec![
        policy_field(),
        Field::new("account_url", FieldType::String)
            .label("Account URL")
            .hint("https://<account>.<domain>: JWT issuers must fall under it when the policy names no issuer; the webhook.verify callback must be on its host"),
        Field::new("allow_unsigned", FieldType::Boolean)
            .label("Allow unsigned deliveries")
            .hint("Accept deliveries without a JWT when no policy is configured (not recommended)")
            .default_value(json!(false)),
        Field::new("allow_http_loopback", FieldType::Boolean)
            .label("Allow http on loopback")
            .hint("Accept http issuers, discovery documents and callbacks on 127.0.0.1/::1/localhost (for ferry emulator)")
            .default_value(json!(false)),
        provision::api_field(),
    ]
}

/// Checks of an inbound connection config beyond its schema: the policy (spec §3.1) and the
/// account URL.
pub fn check_inbound(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = Policy::from_config(config).validate() {
        problems.push(e);
    }
    if let Some(url) = InboundSettings::from_config(Some(config)).account_url {
        if Url::parse(&url).is_err() {
            problems.push(format!("account_url: '{url}' is not a URL"));
        }
    }
    if let Some(api) = config.get("api").filter(|a| a.is_object()) {
        problems.extend(
            crate::connection::check_outbound(api)
                .into_iter()
                .map(|p| format!("api.{p}")),
        );
    }
    problems
}

/// A verified JWT: the webhook message, the issuer and the `jti` still to be checked against
/// the replay window.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// The `data` claim.
    pub webhook: Value,
    /// The verified issuer.
    pub iss: String,
    /// The `jti` claim, if any.
    pub jti: Option<String>,
}

/// The replay window's claim of a `jti` (120 s), made together with the job: a second
/// sighting is rejected with `Webhook JWT verification failed` (detail `JWT ID claim invalid`).
pub fn replay_claim(replay_kv: &Kv<'_>, jti: &str) -> TriggerClaim {
    let replayed = Rejection::jwt(verify::JTI_REPLAYED);
    TriggerClaim {
        claim: replay_kv.claim(
            &verify::jti_key(jti),
            &json!(true),
            Some(Duration::from_secs(verify::JTI_WINDOW_SECONDS)),
        ),
        status: replayed.status,
        message: replayed.message,
        detail: replayed.detail,
    }
}

/// Claim a `jti` in the replay window on its own (an answer without a job: the handshake).
pub async fn claim_jti(replay_kv: &Kv<'_>, jti: &str) -> Result<(), Rejection> {
    let first = replay_kv
        .put_if_absent(
            &verify::jti_key(jti),
            &json!(true),
            Some(Duration::from_secs(verify::JTI_WINDOW_SECONDS)),
        )
        .await
        .map_err(|e| Rejection {
            status: 503,
            message: format!("The webhook replay window is unavailable: {e}; try again"),
            detail: e.to_string(),
        })?;
    if first {
        Ok(())
    } else {
        Err(Rejection::jwt(verify::JTI_REPLAYED))
    }
}

/// The `name` and `webhook_nodeID` of a webhook message (blank when absent).
pub fn webhook_names(webhook: &Map<String, Value>) -> (&str, &str) {
    let get = |k: &str| webhook.get(k).and_then(Value::as_str).unwrap_or_default();
    (get("name"), get("webhook_nodeID"))
}

/// The `webhook.verify` callback (spec §3.6): `GET <callback>` without credentials
/// (`User-Agent: Xurrent iPaaS`), only when the callback is on `origin`'s host (the verified
/// issuer or account URL) with a secure scheme (or `http` on loopback when allowed). `Ok` on
/// a 200; otherwise `Unable to verify webhook <name> (<node>).\n<why>`, e.g. `500: error`.
pub async fn verify_callback(
    http: &ferry_engine::http::HttpClient,
    name: &str,
    node: &str,
    callback: &str,
    origin: Option<&str>,
    allow_http_loopback: bool,
) -> Result<(), Rejection> {
    let fail =
        |why: String| Rejection::plain(format!("Unable to verify webhook {name} ({node}).\n{why}"));
    let Some(origin) = origin.and_then(|o| Url::parse(o).ok()) else {
        return Err(fail(
            "No account URL to check the callback against: set the policy's account_url or the connection's account_url".into(),
        ));
    };
    let url = Url::parse(callback)
        .map_err(|_| fail(format!("The callback '{callback}' is not a URL")))?;
    let same_host = verify::secure_scheme(&url, allow_http_loopback)
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str() == origin.host_str()
        && url.port_or_known_default() == origin.port_or_known_default();
    if !same_host {
        return Err(fail(format!(
            "The callback {callback} is not on the account's host {}",
            origin.host_str().unwrap_or_default()
        )));
    }
    tracing::info!("Verifying webhook {name} ({node})");
    let request = http
        .inner()
        .get(url)
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = http
        .execute(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if response.status == 200 {
        return Ok(());
    }
    let body: String = String::from_utf8_lossy(&response.body)
        .chars()
        .take(200)
        .collect();
    Err(fail(format!("{}: {body}", response.status)))
}

/// The `xurrent.webhook` trigger.
pub struct WebhookTrigger {
    spec: TriggerSpec,
    keys: KeyResolver,
    pem_keys: Mutex<HashMap<String, Arc<DecodingKey>>>,
    /// Output schemas by trigger config (built once, not per delivery).
    schemas: Mutex<Vec<(Value, Arc<Schema>)>>,
}

impl Default for WebhookTrigger {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn reject(r: Rejection) -> TriggerError {
    tracing::warn!(status = r.status, detail = %r.detail, "Xurrent webhook rejected");
    TriggerError::Reject {
        status: r.status,
        message: r.message,
    }
}

fn unavailable(detail: String) -> Rejection {
    Rejection {
        status: 503,
        message: format!(
            "{}: the signing keys could not be fetched; try again",
            verify::VERIFICATION_FAILED
        ),
        detail: format!("{}: {detail}", verify::VERIFICATION_FAILED),
    }
}

impl WebhookTrigger {
    /// The trigger with empty key caches.
    pub fn new() -> Self {
        WebhookTrigger {
            spec: TriggerSpec {
                name: TRIGGER,
                description: "Xurrent webhook deliveries, verified (JWT policy: static key or OpenID Connect)",
                config: vec![
                    policy_field(),
                    Field::new("payload_schema", FieldType::Any)
                        .label("Additional payload fields")
                        .array(),
                    provision::register_field(),
                ],
                connection: Some(crate::CONNECTOR),
            },
            keys: KeyResolver::new(),
            pem_keys: Mutex::new(HashMap::new()),
            schemas: Mutex::new(Vec::new()),
        }
    }

    /// The output schema of a trigger config ([`mapping::output_schema`]), cached.
    fn schema_for(&self, config: &Value) -> Result<Arc<Schema>, String> {
        if let Some((_, s)) = self.schemas.lock().iter().find(|(c, _)| c == config) {
            return Ok(s.clone());
        }
        let schema = Arc::new(mapping::output_schema(config)?);
        let mut schemas = self.schemas.lock();
        if schemas.len() >= 64 {
            schemas.clear();
        }
        schemas.push((config.clone(), schema.clone()));
        Ok(schema)
    }

    /// How many HTTP fetches OpenID Connect discovery made (discovery documents and JWKS).
    pub fn oidc_fetches(&self) -> u64 {
        self.keys.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn pem_key(
        &self,
        alg: jsonwebtoken::Algorithm,
        pem: &str,
    ) -> Result<Arc<DecodingKey>, Rejection> {
        let cache_key = format!("{alg:?}\n{pem}");
        if let Some(k) = self.pem_keys.lock().get(&cache_key) {
            return Ok(k.clone());
        }
        let key =
            Arc::new(policy::decoding_key(alg, pem).map_err(|_| Rejection::jwt("Invalid PEM"))?);
        let mut keys = self.pem_keys.lock();
        if keys.len() > 1024 {
            keys.clear();
        }
        keys.insert(cache_key, key.clone());
        Ok(key)
    }

    /// Verify a JWT (spec §3.5) except for the `jti` replay window, which the caller checks
    /// with [`replay_claim`] (together with the job) or [`claim_jti`].
    pub async fn verify_jwt(
        &self,
        jwt: &str,
        policy: &Policy,
        settings: &InboundSettings,
        key_kv: Option<&Kv<'_>>,
        now: i64,
    ) -> Result<Verified, Rejection> {
        verify::check_jwt_size(jwt)?;
        let Some(rule) = IssuerRule::of(policy, settings.account_url.as_deref()) else {
            return Err(Rejection::with_detail(
                "Webhook configuration error",
                "Xurrent webhook misconfigured: no policy account_url and no account_url on the inbound connection",
            ));
        };
        let token = Unverified::decode(jwt).map_err(Rejection::jwt)?;
        let alg = verify::effective_algorithm(policy, &token).map_err(Rejection::jwt)?;
        verify::check_issuer(&rule, token.iss(), settings.allow_http_loopback)
            .map_err(Rejection::jwt)?;
        verify::check_times(&token, now).map_err(Rejection::jwt)?;
        match &policy.public_key_pem {
            Some(pem) => {
                let key = self.pem_key(alg, pem)?;
                verify::check_signature(&token, alg, &key).map_err(Rejection::jwt)?;
            }
            None => {
                let resolve = |stale| {
                    self.keys.resolve(
                        token.iss(),
                        token.kid(),
                        alg,
                        key_kv,
                        settings.allow_http_loopback,
                        stale,
                    )
                };
                let map = |e: OidcError| match e {
                    OidcError::Invalid(d) => Rejection::jwt(d),
                    OidcError::Unavailable(d) => unavailable(d),
                };
                let first = resolve(None).await.map_err(map)?;
                if verify::check_signature(&token, alg, &first.key).is_err() {
                    // The key may have been rotated under the same kid: fetch once more.
                    let again = resolve(Some(first.fetched)).await.map_err(map)?;
                    verify::check_signature(&token, alg, &again.key).map_err(Rejection::jwt)?;
                }
            }
        }
        verify::check_audience(&token, policy.audience.as_deref()).map_err(Rejection::jwt)?;
        let jti = verify::post_checks(&token, now).map_err(Rejection::jwt)?;
        let iss = token.iss().to_string();
        let webhook = verify::webhook_of(token).map_err(Rejection::jwt)?;
        Ok(Verified { webhook, iss, jti })
    }

    /// The `webhook.verify` handshake (spec §3.6): GET the callback, only on `origin`'s host.
    async fn handshake(
        &self,
        ctx: &TriggerContext<'_>,
        webhook: &Map<String, Value>,
        callback: &str,
        origin: Option<&str>,
        allow_http_loopback: bool,
    ) -> Result<Parsed, Rejection> {
        let (name, node) = webhook_names(webhook);
        verify_callback(ctx.http, name, node, callback, origin, allow_http_loopback).await?;
        let message = format!("Webhook verification handled: {name} ({node})");
        tracing::info!("{message}");
        Ok(Parsed::Respond(TriggerResponse::text(200, message)))
    }

    async fn parse_request(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, Rejection> {
        let request = ctx.request;
        if request.body.is_empty() {
            return Err(Rejection::plain("Request has no body"));
        }
        let delivery = request
            .header("x-xurrent-delivery")
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let origin = request
            .header("x-xurrent-delivery-origin")
            .map(str::trim)
            .filter(|s| !s.is_empty());
        verify::check_body_size(&request.body)?;
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
            return Err(Rejection::plain("Unable to parse incoming webhook request"));
        };
        let settings = InboundSettings::from_config(ctx.connection.map(|c| &c.config));
        let policy = Policy::effective(
            Policy::from_config(ctx.config),
            Policy::from_config(ctx.connection.map(|c| &c.config).unwrap_or(&Value::Null)),
        );
        let jwt = body
            .get("jwt")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty());
        let replay_kv = ctx.connection_kv.as_ref().unwrap_or(&ctx.kv);
        let (webhook, account_origin, jti) = match jwt {
            None if !policy.is_blank() => {
                return Err(Rejection::plain("Webhook request does not contain jwt property"))
            }
            None if !settings.allow_unsigned => {
                return Err(Rejection {
                    status: 401,
                    message: "Unsigned webhook rejected: configure a webhook policy, or set allow_unsigned on the inbound connection".into(),
                    detail: "unsigned delivery without allow_unsigned".into(),
                })
            }
            None => (
                body,
                policy.account_url.clone().or(settings.account_url.clone()),
                None,
            ),
            Some(jwt) => {
                let verified = self
                    .verify_jwt(jwt, &policy, &settings, ctx.connection_kv.as_ref(), now())
                    .await?;
                let Value::Object(webhook) = verified.webhook else {
                    return Err(Rejection::jwt("the verified JWT has no 'data' object"));
                };
                (webhook, Some(verified.iss), verified.jti)
            }
        };
        if webhook.get("event").and_then(Value::as_str) == Some("webhook.verify") {
            let callback = webhook
                .get("payload")
                .and_then(|p| p.get("callback"))
                .and_then(Value::as_str)
                .filter(|c| !c.trim().is_empty())
                .map(str::to_string);
            if let Some(callback) = callback {
                if let Some(jti) = &jti {
                    claim_jti(replay_kv, jti).await?;
                }
                return self
                    .handshake(
                        ctx,
                        &webhook,
                        &callback,
                        account_origin.as_deref(),
                        settings.allow_http_loopback,
                    )
                    .await;
            }
        }
        let schema = self.schema_for(ctx.config).map_err(Rejection::plain)?;
        let context_id = webhook
            .get("object_nodeID")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mapped = mapping::map_webhook(webhook, &schema, delivery, origin);
        if let Some(line) = mapped.ignored_line() {
            tracing::info!("{line}");
        }
        Ok(Parsed::Event(TriggerParse {
            output: mapped.output,
            context_id,
            claims: jti.iter().map(|jti| replay_claim(replay_kv, jti)).collect(),
        }))
    }
}

#[async_trait]
impl Trigger for WebhookTrigger {
    fn spec(&self) -> &TriggerSpec {
        &self.spec
    }

    fn output_schema(&self, config: &Value) -> Result<Schema, String> {
        Policy::from_config(config).validate()?;
        mapping::output_schema(config)
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        self.parse_request(ctx).await.map_err(reject)
    }

    async fn provision(&self, ctx: &ferry_engine::ProvisionContext<'_>) -> Result<(), String> {
        provision::provision(ctx).await
    }

    async fn deprovision(&self, ctx: &ferry_engine::ProvisionContext<'_>) -> Result<(), String> {
        provision::deprovision(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_field_shape() {
        // §9 D 39.
        let p = policy_field();
        assert_eq!(p.label.as_deref(), Some("Webhook Policy"));
        assert!(p.hint.is_some() && !p.required);
        let ids: Vec<&str> = p.fields.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["account_url", "algorithm", "public_key_pem", "audience"]
        );
        assert_eq!(p.fields[0].label.as_deref(), Some("Issuer"));
        assert!(p.fields.iter().all(|f| !f.required));
        assert_eq!(
            p.fields[1].enumeration_ids(),
            ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
                .iter()
                .map(|a| json!(a))
                .collect::<Vec<_>>()
        );
        assert_eq!(p.fields[2].label.as_deref(), Some("Public key PEM"));
    }

    #[test]
    fn inbound_checks_report_the_policy_and_the_account_url() {
        assert!(check_inbound(&json!({})).is_empty());
        assert_eq!(
            check_inbound(&json!({"policy": {"algorithm": "ES256"}, "account_url": "nope"})),
            [
                "policy.public_key_pem: required when an algorithm is set",
                "account_url: 'nope' is not a URL"
            ]
        );
    }
}
