//! The [`Trigger`] trait: how an inbound HTTP request becomes a trigger output (or an answer
//! without a job).

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::schema::{Field, Schema};
use ferry_core::secrets::Secrets;
use ferry_store::KvClaim;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::action::ConnectionRef;
use crate::connector::ProvisionContext;
use crate::http::HttpClient;
use crate::ingest::InboundRequest;
use crate::kv::Kv;

/// Static description of a trigger type.
#[derive(Clone, Debug)]
pub struct TriggerSpec {
    /// Registry key, `<connector>.<type>`, e.g. `json_endpoint.endpoint`.
    pub name: &'static str,
    /// Short human description.
    pub description: &'static str,
    /// Trigger configuration fields (checked by `ferry validate`).
    pub config: Vec<Field>,
    /// Connector an inbound connection must belong to, if any (`None`: any connector).
    pub connection: Option<&'static str>,
}

/// The result of parsing a request.
#[derive(Clone, Debug, Default)]
pub struct TriggerParse {
    /// The raw trigger output (resolved against [`Trigger::output_schema`] by the pipeline).
    pub output: Value,
    /// Job context identifier (concurrency and correlation); blank is treated as none.
    pub context_id: Option<String>,
    /// Keys the event claims in a key/value store, committed together with its job (see
    /// [`TriggerClaim`]).
    pub claims: Vec<TriggerClaim>,
}

/// A key an event claims in a key/value store — written only if absent or expired, e.g. a
/// webhook's `jti` replay window — in the same transaction as its job (`Store::insert_job`), so
/// the event costs one trip to the store. Made with [`Kv::claim`].
///
/// If the key is held, the event is rejected with `status` and `message` and creates no job. An
/// event stored as a job, or found to be a duplicate of one, keeps its claims; a discarded event
/// makes its claims alone (and is rejected the same way if one is held); an event rejected by
/// the pipeline after `parse` (output, expressions, the store) makes none.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerClaim {
    /// The key, its namespace, (sealed) value and lifetime.
    pub claim: KvClaim,
    /// HTTP status of the rejection when the key is held.
    pub status: u16,
    /// Message of the rejection (`{"error": message}`).
    pub message: String,
    /// What the log says when the key is held.
    pub detail: String,
}

/// An HTTP answer chosen by a trigger (e.g. a webhook handshake) or by a runbook's
/// `respond_with`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Bytes,
}

impl TriggerResponse {
    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> TriggerResponse {
        TriggerResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(body.into()),
        }
    }

    /// An `application/json` answer.
    pub fn json(status: u16, body: &Value) -> TriggerResponse {
        TriggerResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }
}

/// What a trigger made of a request.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// An event: the pipeline goes on (coercion, discard, dedup) and stores a job.
    Event(TriggerParse),
    /// Answer the request with this response and create no job (handshakes).
    Respond(TriggerResponse),
}

impl From<TriggerParse> for Parsed {
    fn from(p: TriggerParse) -> Parsed {
        Parsed::Event(p)
    }
}

/// Everything a trigger's [`Trigger::parse`] can use.
pub struct TriggerContext<'a> {
    /// The raw request: method, headers, body bytes, query, URL postfix.
    pub request: &'a InboundRequest,
    /// The trigger's configuration (static part, env expressions resolved).
    pub config: &'a Value,
    /// The runbook's inbound connection, if any (secret values sealed; see
    /// [`TriggerContext::reveal`]).
    pub connection: Option<&'a ConnectionRef>,
    /// Outbound HTTP (timeouts, size limits, no redirects).
    pub http: &'a HttpClient,
    /// Key/value store of this runbook's trigger.
    pub kv: Kv<'a>,
    /// Key/value store of the inbound connection (shared by every trigger using it).
    pub connection_kv: Option<Kv<'a>>,
    pub(crate) secrets: &'a Secrets,
}

impl TriggerContext<'_> {
    /// The plaintext of a value that may hold sealed secrets; use it only inside the call.
    pub fn reveal(&self, value: &str) -> Result<Zeroizing<String>, TriggerError> {
        crate::connector::reveal(self.secrets, value)
    }
}

/// Why a request did not become a job.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TriggerError {
    /// Reject with an HTTP status (4xx) and message.
    #[error("{message}")]
    Reject {
        /// HTTP status code.
        status: u16,
        /// Message returned as `{"error": message}`.
        message: String,
    },
    /// Accept with 200 but create no job.
    #[error("discarded: {0}")]
    Discard(String),
}

impl TriggerError {
    /// A 400 rejection.
    pub fn bad_request(message: impl Into<String>) -> TriggerError {
        TriggerError::Reject {
            status: 400,
            message: message.into(),
        }
    }
}

/// A trigger type.
#[async_trait]
pub trait Trigger: Send + Sync + 'static {
    /// The static description.
    fn spec(&self) -> &TriggerSpec;

    /// The output schema for a given (resolved) trigger configuration.
    fn output_schema(&self, config: &Value) -> Result<Schema, String>;

    /// Whether the output schema is computed from the inbound connection and the config with
    /// [`Trigger::compute_output_schema`] (cached like an action's, see [`crate::schemas`])
    /// instead of [`Trigger::output_schema`].
    fn computes_output_schema(&self) -> bool {
        false
    }

    /// Compute the output schema (called on a cache miss when an event arrives).
    async fn compute_output_schema(
        &self,
        ctx: &crate::schemas::TriggerSchemaContext<'_>,
    ) -> Result<Schema, String> {
        let _ = ctx;
        Err(format!(
            "trigger '{}' does not compute its output schema",
            self.spec().name
        ))
    }

    /// How long a computed output schema stays cached.
    fn schema_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(3600)
    }

    /// Whether at most one runbook of a solution may use this trigger type (`ferry validate`
    /// and `ferry serve` refuse a second one, naming both).
    fn once_per_solution(&self) -> bool {
        false
    }

    /// Whether events come only from inside Ferry (the scheduler), never from an HTTP request:
    /// `POST /inbound/...` answers 404 for such a runbook.
    fn internal_only(&self) -> bool {
        false
    }

    /// The trigger's own checks of its (resolved) config for `ferry validate`: each problem
    /// as (config path, message), reported at that path's `file:line`.
    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        let _ = config;
        Vec::new()
    }

    /// Parse an authenticated request: an event, or an answer without a job.
    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError>;

    /// Set up what the trigger needs outside Ferry (e.g. register a webhook pointing at
    /// `ctx.trigger_url`) when `ferry serve` starts serving its solution. Must be idempotent:
    /// it is retried with back-off until it succeeds.
    async fn provision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// Undo [`Trigger::provision`] when `ferry serve` stops serving the solution.
    async fn deprovision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }
}
