//! The [`Connector`] trait: what a connector declares about its connections, and the hooks
//! the engine calls on them (inbound and outbound authentication, the connection test,
//! provisioning).
//!
//! A connector without hooks is just its [`ConnectorSpec`] (`r.connector(ConnectorSpec::new(…))`);
//! one with hooks is a small type implementing [`Connector`].

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::model::Direction;
use ferry_core::schema::{Field, Schema};
use ferry_core::secrets::Secrets;
use ferry_store::Store;
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::action::{ConnectionRef, Services, Signal};
use crate::http::HttpClient;
use crate::ingest::InboundRequest;
use crate::kv::Kv;
use crate::trigger::TriggerError;

/// Static description of a connector and of its connections' configuration.
#[derive(Clone, Debug)]
pub struct ConnectorSpec {
    /// Connector name, e.g. `http` (the `connector:` of a connection or trigger).
    pub name: &'static str,
    /// One-line description (shown by `ferry connectors`).
    pub description: &'static str,
    /// Config fields of an **inbound** connection; `None`: the connector has no inbound
    /// connections.
    pub inbound: Option<Vec<Field>>,
    /// Config fields of an **outbound** connection; `None`: no outbound connections.
    pub outbound: Option<Vec<Field>>,
}

impl ConnectorSpec {
    /// A connector without connections.
    pub fn new(name: &'static str, description: &'static str) -> ConnectorSpec {
        ConnectorSpec {
            name,
            description,
            inbound: None,
            outbound: None,
        }
    }

    /// Declare inbound connections with these config fields.
    pub fn inbound(mut self, fields: Vec<Field>) -> ConnectorSpec {
        self.inbound = Some(fields);
        self
    }

    /// Declare outbound connections with these config fields.
    pub fn outbound(mut self, fields: Vec<Field>) -> ConnectorSpec {
        self.outbound = Some(fields);
        self
    }

    /// The config schema of a connection in `direction`, if the connector has such connections.
    pub fn config_schema(&self, direction: Direction) -> Option<Schema> {
        let fields = match direction {
            Direction::Inbound => self.inbound.as_ref(),
            Direction::Outbound => self.outbound.as_ref(),
        }?;
        Some(Schema::new("config", fields.clone()))
    }
}

/// The outcome class of a connection test (runtime_model §5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestStatus {
    /// The test ran and passed.
    Success,
    /// The test ran and the external system said no (e.g. credentials rejected).
    Failed,
    /// The test could not be executed.
    Error,
}

impl TestStatus {
    /// `success`, `failed` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestStatus::Success => "success",
            TestStatus::Failed => "failed",
            TestStatus::Error => "error",
        }
    }
}

/// The result of a connection test: a status and a message for the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionTestResult {
    /// Outcome class.
    pub status: TestStatus,
    /// Human message (never contains secrets).
    pub message: String,
}

impl ConnectionTestResult {
    /// A passed test.
    pub fn success(message: impl Into<String>) -> Self {
        ConnectionTestResult {
            status: TestStatus::Success,
            message: message.into(),
        }
    }

    /// The external system refused.
    pub fn failed(message: impl Into<String>) -> Self {
        ConnectionTestResult {
            status: TestStatus::Failed,
            message: message.into(),
        }
    }

    /// The test could not run.
    pub fn error(message: impl Into<String>) -> Self {
        ConnectionTestResult {
            status: TestStatus::Error,
            message: message.into(),
        }
    }
}

/// The message of a connector without a tester (and of an inbound connection).
pub const NO_TESTER: &str = "Connector does not provide a config tester.";
/// The message of a test that overran its time.
pub const TEST_TIMED_OUT: &str = "The connection test timed out.";
/// Longest time a connection test may take (runtime_model §5.5).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a schema refresh may take (below the CLI's 30 s request timeout).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(25);

/// What [`Connector::refresh_schema`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaRefreshed {
    /// Named types of the new schema.
    pub types: usize,
    /// The new generation of what is derived from the schema (older entries are orphaned).
    pub generation: u64,
    /// How long fetching and caching took.
    pub duration: Duration,
}

/// What an inbound authentication hook sees: the request and the inbound connection.
pub struct InboundAuth<'a> {
    /// The raw request.
    pub request: &'a InboundRequest,
    /// The inbound connection (secret values sealed; see [`InboundAuth::reveal`]).
    pub connection: &'a ConnectionRef,
    /// The connection's key/value store.
    pub kv: Kv<'a>,
    pub(crate) secrets: &'a Secrets,
}

impl InboundAuth<'_> {
    /// The plaintext of a config value that may hold sealed secrets (only inside the hook).
    pub fn reveal(&self, value: &str) -> Result<Zeroizing<String>, TriggerError> {
        reveal(self.secrets, value)
    }
}

pub(crate) fn reveal(secrets: &Secrets, value: &str) -> Result<Zeroizing<String>, TriggerError> {
    secrets.reveal_in(value).map_err(|e| {
        tracing::error!(error = %e, "an inbound connection secret could not be decrypted");
        TriggerError::Reject {
            status: 500,
            message: "Inbound connection secret could not be decrypted.".into(),
        }
    })
}

/// What a connection test sees.
pub struct TestContext<'a> {
    /// The connection under test (secret values sealed).
    pub connection: &'a ConnectionRef,
    /// Shared services: HTTP client, secrets, store.
    pub services: &'a Services,
    /// The connector, for [`Connector::authenticate_outbound`].
    pub connector: &'a dyn Connector,
}

impl TestContext<'_> {
    /// Apply the connector's outbound authentication to a request.
    pub async fn authenticate(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Signal> {
        self.connector
            .authenticate_outbound(self.services, self.connection, builder)
            .await
    }
}

/// What a provision or deprovision hook sees.
pub struct ProvisionContext<'a> {
    /// Solution name.
    pub solution: &'a str,
    /// The runbook, for a trigger's hook.
    pub runbook: Option<&'a str>,
    /// The public URL of the runbook's trigger endpoint (for a trigger's hook), e.g. to
    /// register a webhook pointing at it.
    pub trigger_url: Option<String>,
    /// The trigger's configuration (for a trigger's hook), else `Null`.
    pub config: &'a Value,
    /// The connection: the connection itself for a connection's hook, the trigger's
    /// inbound connection for a trigger's hook.
    pub connection: Option<&'a ConnectionRef>,
    /// Outbound HTTP.
    pub http: &'a HttpClient,
    /// Key/value store of the trigger (trigger hooks) or of the connection (connection hooks).
    pub kv: Kv<'a>,
    pub(crate) secrets: &'a Secrets,
    pub(crate) store: &'a dyn Store,
    pub(crate) services: &'a Services,
}

impl<'a> ProvisionContext<'a> {
    /// The services actions get (HTTP client, secrets, store), for code written against them,
    /// e.g. a connector's API client that caches OAuth tokens in a connection's store.
    pub fn services(&self) -> &'a Services {
        self.services
    }

    /// The plaintext of a value that may hold sealed secrets.
    pub fn reveal(&self, value: &str) -> Result<Zeroizing<String>, String> {
        self.secrets
            .reveal_in(value)
            .map_err(|e| format!("a secret could not be decrypted: {e}"))
    }

    /// The key/value store of the connection (for a trigger's hook: its inbound connection).
    pub fn connection_kv(&self) -> Option<Kv<'a>> {
        self.connection
            .map(|c| Kv::new(self.store, self.secrets, c.namespace.clone()))
    }
}

/// A connector: its spec and the hooks the engine calls on its connections. Every hook has a
/// default that does nothing (or, for [`Connector::test`], reports that there is no tester).
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The static description.
    fn spec(&self) -> &ConnectorSpec;

    /// Checks of a connection config beyond its schema (for `ferry validate`); the config is
    /// already resolved against the schema. Returns problems as messages.
    fn check_connection(&self, direction: Direction, config: &Value) -> Vec<String> {
        let _ = (direction, config);
        Vec::new()
    }

    /// Authenticate an inbound request before its trigger parses it. `Err` rejects (or
    /// discards) the request. The default accepts every request.
    async fn authenticate_inbound(&self, auth: &InboundAuth<'_>) -> Result<(), TriggerError> {
        let _ = auth;
        Ok(())
    }

    /// Add the outbound connection's authentication to a request. The default adds nothing.
    async fn authenticate_outbound(
        &self,
        services: &Services,
        connection: &ConnectionRef,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Signal> {
        let _ = (services, connection);
        Ok(builder)
    }

    /// Whether [`Connector::test`] is implemented.
    fn has_tester(&self) -> bool {
        false
    }

    /// Test an outbound connection (the `config_tester` contract). The engine enforces
    /// [`TEST_TIMEOUT`]; keep HTTP timeouts below it.
    async fn test(&self, ctx: &TestContext<'_>) -> ConnectionTestResult {
        let _ = ctx;
        ConnectionTestResult::error(NO_TESTER)
    }

    /// Whether the connector caches a schema of its outbound connections that
    /// [`Connector::refresh_schema`] refreshes (`ferry connections refresh-schema`).
    fn has_schema(&self) -> bool {
        false
    }

    /// Fetch the schema of an outbound connection again and replace the cached one (a
    /// one-shot command, not a setting). The engine enforces [`REFRESH_TIMEOUT`].
    async fn refresh_schema(&self, ctx: &TestContext<'_>) -> Result<SchemaRefreshed, String> {
        let _ = ctx;
        Err(format!(
            "connector '{}' has no schema to refresh",
            self.spec().name
        ))
    }

    /// Set up what a connection needs outside Ferry, when `ferry serve` starts serving its
    /// solution. Must be idempotent: it is retried with back-off until it succeeds.
    async fn provision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// Undo [`Connector::provision`] when `ferry serve` stops serving the solution.
    async fn deprovision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }
}

/// A connector without hooks is its spec.
impl Connector for ConnectorSpec {
    fn spec(&self) -> &ConnectorSpec {
        self
    }
}

/// Constant-time comparison of two byte strings (for secrets presented by callers).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}
