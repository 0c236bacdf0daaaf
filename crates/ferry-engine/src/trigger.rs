//! The [`Trigger`] trait: how an inbound HTTP request becomes a trigger output.

use async_trait::async_trait;
use ferry_core::schema::{Field, Schema};
use serde_json::Value;

use crate::ingest::InboundRequest;

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

    /// Parse an authenticated request.
    async fn parse(
        &self,
        request: &InboundRequest,
        config: &Value,
    ) -> Result<TriggerParse, TriggerError>;
}
