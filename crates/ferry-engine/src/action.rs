//! The [`Action`] trait: one step type of a connector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use ferry_core::schema::{Field, Schema};
use ferry_core::secrets::Secrets;
use ferry_store::{LogLine, Store};
use serde_json::{Map, Value};

use crate::http::HttpClient;

/// How the executor treats an action beyond calling [`Action::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// An ordinary action.
    Normal,
    /// Try-catch: failures inside its `try` branch re-invoke it with
    /// `{condition: true, error_message}` as iteration state so that `catch` fires.
    TryCatch,
    /// Retry: inside a `catch` branch, re-runs the enclosing try-catch from `try`.
    Retry,
}

/// Static description of an action: its name, input and output schemas.
#[derive(Clone, Debug)]
pub struct ActionSpec {
    /// Registry key, `<connector>.<action>`, e.g. `flow.if_then_else`.
    pub name: &'static str,
    /// Short human description (shown by `ferry actions`).
    pub description: &'static str,
    /// Input fields.
    pub input: Vec<Field>,
    /// Output schemas. A nested action has one schema per branch; its branches are
    /// selected by schema reference. A non-nested action uses its first schema.
    pub outputs: Vec<Schema>,
    /// Whether the action is nested (its outputs run branches of child steps).
    pub nested: bool,
    /// Special handling by the executor.
    pub kind: ActionKind,
    /// The connector an outbound connection must belong to, if the action needs one.
    pub connection: Option<&'static str>,
}

impl ActionSpec {
    /// The input schema as a [`Schema`].
    pub fn input_schema(&self) -> Schema {
        Schema::new("input", self.input.clone())
    }
}

/// One output emitted by an action invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Reference of the output schema (the branch key for nested actions).
    pub schema: String,
    /// The raw output object; the executor resolves it against the schema.
    pub value: Value,
}

impl Output {
    /// An output on schema `schema`.
    pub fn new(schema: &str, value: Value) -> Output {
        Output {
            schema: schema.to_string(),
            value,
        }
    }
}

/// Control-flow signals an action can raise instead of returning outputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// Fail the step (and the job, unless inside a try branch).
    Fail(String),
    /// Stop the job now, successfully.
    Finish(String),
    /// Suspend the step; invoke it again after `after`.
    Reschedule {
        /// Delay before the step is invoked again.
        after: Duration,
        /// Reason, written to the step log.
        message: String,
    },
}

/// A message fails the step.
impl From<String> for Signal {
    fn from(message: String) -> Signal {
        Signal::Fail(message)
    }
}

/// A message fails the step.
impl From<&str> for Signal {
    fn from(message: &str) -> Signal {
        Signal::Fail(message.to_string())
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Fail(m) => write!(f, "{m}"),
            Signal::Finish(m) => write!(f, "finished: {m}"),
            Signal::Reschedule { after, message } => {
                write!(f, "rescheduled after {}s: {message}", after.as_secs_f64())
            }
        }
    }
}

/// Shared services available to every action.
pub struct Services {
    /// Outbound HTTP with timeouts and size limits.
    pub http: HttpClient,
    /// Secret sealing/opening.
    pub secrets: Arc<Secrets>,
    /// The durable store (connection key/value store and locks).
    pub store: Arc<dyn Store>,
}

impl Services {
    /// The key/value store of a connection (values sealed at rest, entries may expire).
    pub fn kv<'a>(&'a self, connection: &ConnectionRef) -> crate::kv::Kv<'a> {
        crate::kv::Kv::new(
            self.store.as_ref(),
            self.secrets.as_ref(),
            connection.namespace.clone(),
        )
    }

    /// Read a value from a connection's key/value store. A value that cannot be opened fails
    /// the step (naming the key) rather than reading as absent.
    pub async fn kv_get(
        &self,
        connection: &ConnectionRef,
        key: &str,
    ) -> Result<Option<Value>, Signal> {
        Ok(self.kv(connection).get(key).await?)
    }

    /// Write a value (sealed) to a connection's key/value store, optionally expiring.
    pub async fn kv_put(
        &self,
        connection: &ConnectionRef,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), Signal> {
        Ok(self.kv(connection).put(key, value, ttl).await?)
    }

    /// Run `f` while holding the single-flight lock `key` (spec §2.10). When another worker
    /// holds it, the step is rescheduled after 2–3 s; when the store cannot be reached, after
    /// 30–35 s. The lock is always released by its owner afterwards.
    pub async fn with_lock<T, F, Fut>(&self, key: &str, ttl: Duration, f: F) -> Result<T, Signal>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Signal>>,
    {
        use rand::Rng as _;
        let token = uuid::Uuid::new_v4().to_string();
        let jitter = |base: f64, spread: f64| {
            Duration::from_secs_f64(base + rand::thread_rng().gen::<f64>() * spread)
        };
        match self.store.lock_acquire(key, &token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Signal::Reschedule {
                    after: jitter(2.0, 1.0),
                    message: "Lock held by another worker; rescheduling.".into(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "lock.unavailable");
                return Err(Signal::Reschedule {
                    after: jitter(30.0, 5.0),
                    message: "Lock store unavailable; rescheduling.".into(),
                });
            }
        }
        let result = f().await;
        if let Err(e) = self.store.lock_release(key, &token).await {
            tracing::warn!(error = %e, "releasing a lock failed; it expires with its TTL");
        }
        result
    }
}

/// A resolved connection as an action sees it.
#[derive(Clone, Debug)]
pub struct ConnectionRef {
    /// Connection name in the solution.
    pub name: String,
    /// Connector of the connection.
    pub connector: String,
    /// Resolved configuration; secret values are sealed envelopes.
    pub config: Value,
    /// Namespace for the connection key/value store.
    pub namespace: String,
}

/// Runbook variables as the Assign Runbook Variable action sees them.
pub struct Variables<'a> {
    /// Declared variables.
    pub declared: &'a [Field],
    /// Current values.
    pub values: &'a mut Map<String, Value>,
}

/// Everything one invocation of an action can read and write.
pub struct ActionContext<'a> {
    /// The resolved input.
    pub input: Value,
    /// Iteration state value (nested actions); set it to be invoked again.
    pub iteration: Option<Value>,
    /// How many times the iteration state has been set before this invocation.
    pub iteration_count: u64,
    /// The outbound connection, when the step has one.
    pub connection: Option<&'a ConnectionRef>,
    /// Shared services.
    pub services: &'a Services,
    /// Runbook variables.
    pub variables: Variables<'a>,
    /// Job UUID.
    pub job_id: uuid::Uuid,
    /// Run log lines written during this invocation.
    pub logs: Vec<LogLine>,
    /// Extra per-invocation annotations (e.g. the try-catch's current schema).
    pub annotations: BTreeMap<String, Value>,
}

impl ActionContext<'_> {
    /// Write an info line to the step's run log.
    pub fn log(&mut self, message: impl Into<String>) {
        self.log_at("info", message);
    }

    /// Write a line at `level` to the step's run log.
    pub fn log_at(&mut self, level: &str, message: impl Into<String>) {
        self.logs.push(LogLine {
            at: Utc::now(),
            level: level.to_string(),
            message: message.into(),
        });
    }

    /// An input field as a string (empty when absent).
    pub fn input_str(&self, key: &str) -> Option<&str> {
        self.input.get(key).and_then(Value::as_str)
    }
}

/// A step type. Implementations are small: a spec plus `run`.
#[async_trait]
pub trait Action: Send + Sync + 'static {
    /// The static description.
    fn spec(&self) -> &ActionSpec;

    /// Branch keys the action can emit given its raw input mapping, for static validation.
    /// `None` means "not known statically" (e.g. Case, whose branches are its `matches`).
    fn branch_keys(&self, raw_input: &Value) -> Option<Vec<String>> {
        let _ = raw_input;
        Some(
            self.spec()
                .outputs
                .iter()
                .map(|s| s.reference.clone())
                .collect(),
        )
    }

    /// Action-specific static checks of a step's raw input mapping (for `ferry validate`),
    /// given the runbook's declared variables. Returns problems as messages.
    fn check(&self, raw_input: &Value, variables: &[Field]) -> Vec<String> {
        let _ = (raw_input, variables);
        Vec::new()
    }

    /// Whether [`Action::check`] depends on data cached for the step's connection (e.g. an
    /// introspected GraphQL schema). `ferry validate --data` then runs
    /// [`Action::check_cached`] instead (see [`crate::compile::CompileOptions`]).
    fn has_cached_check(&self) -> bool {
        false
    }

    /// [`Action::check`] against data cached for the step's connection in `store` (for
    /// `ferry validate --data`; never calls out). `None`: nothing cached, the static check
    /// stands.
    async fn check_cached(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        connection: Option<&ConnectionRef>,
        raw_input: &Value,
        variables: &[Field],
    ) -> Option<Vec<String>> {
        let _ = (store, secrets, connection, raw_input, variables);
        None
    }

    /// The output schema for `reference` given the resolved input (dynamic schemas override this).
    fn output_schema(&self, reference: &str, input: &Value) -> Option<Schema> {
        let _ = input;
        let spec = self.spec();
        if spec.nested {
            spec.outputs
                .iter()
                .find(|s| s.reference == reference)
                .cloned()
        } else {
            spec.outputs.first().cloned()
        }
    }

    /// Whether the action computes its input and output schemas from its connection with
    /// [`Action::compute_schemas`] (then [`ActionSpec::input`] and [`ActionSpec::outputs`] are
    /// not used to check or resolve a step's input and outputs).
    fn computes_schemas(&self) -> bool {
        false
    }

    /// The part of a step's raw input that selects its computed schemas (e.g. the queried
    /// object), part of the cache key with the connection's configuration. Other input keys
    /// can change without recomputing. Default: nothing (the schemas depend on the connection
    /// only).
    fn schema_selector(&self, raw_input: &Value) -> Value {
        let _ = raw_input;
        Value::Null
    }

    /// How long computed schemas stay cached.
    fn schema_ttl(&self) -> Duration {
        Duration::from_secs(3600)
    }

    /// The version of what a step's computed schemas derive from (e.g. the generation of the
    /// connection's cached GraphQL schema), part of their cache key: a new version orphans
    /// every entry computed from an older one. Read on every lookup, so it must be cheap.
    /// Default: none.
    async fn schema_version(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        connection: Option<&ConnectionRef>,
    ) -> Result<Option<String>, String> {
        let _ = (store, secrets, connection);
        Ok(None)
    }

    /// Compute a step's schemas (e.g. from a GraphQL introspection). Called by the executor on
    /// a cache miss; the result is cached (see [`crate::schemas`]). An error fails the step
    /// (`Signal::Fail`; a plain message converts to it with `?`), or runs it again later
    /// (`Signal::Reschedule`, e.g. the remote system throttled while the schema was fetched).
    async fn compute_schemas(
        &self,
        ctx: &crate::schemas::SchemaContext<'_>,
    ) -> Result<crate::schemas::ComputedSchemas, Signal> {
        let _ = ctx;
        Err(Signal::Fail(format!(
            "action '{}' does not compute its schemas",
            self.spec().name
        )))
    }

    /// Run once. Return the outputs (nested actions: one per branch to run, in order).
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal>;
}
