//! Computed schemas: actions whose input and output schemas depend on their connection (for
//! example on a GraphQL introspection) compute them with [`Action::compute_schemas`].
//!
//! The result is cached in the store's key/value store (namespace [`CACHE_NAMESPACE`], sealed
//! like every value there) under a key derived from the action, the connection's connector and
//! plaintext configuration, and the step's [`Action::schema_selector`], for
//! [`Action::schema_ttl`]. The
//! executor uses the cached schemas (computing them on a miss); `ferry validate --data DIR`
//! reads the same cache offline to check a step's input, and says so when a schema is not
//! cached.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::loader::Diagnostic;
use ferry_core::schema::{Field, Schema};
use ferry_core::secrets::Secrets;
use ferry_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::action::{Action, ConnectionRef, Services, Signal};
use crate::compile::{CompiledRunbook, CompiledSolution, CompiledStep};
use crate::kv::{Kv, KvError};

/// Key/value namespace of the schema cache.
pub const CACHE_NAMESPACE: &str = "ferry/schema-cache";
/// Longest time one schema computation may take.
pub const COMPUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Schemas computed for one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputedSchemas {
    /// Input fields (replace the spec's input fields).
    pub input: Vec<Field>,
    /// Output schemas (a nested action: one per branch, by reference; otherwise the first).
    pub outputs: Vec<Schema>,
}

impl ComputedSchemas {
    /// The input schema.
    pub fn input_schema(&self) -> Schema {
        Schema::new("input", self.input.clone())
    }

    /// The output schema for `reference` (nested actions) or the first one.
    pub fn output(&self, reference: &str, nested: bool) -> Option<&Schema> {
        if nested {
            self.outputs.iter().find(|s| s.reference == reference)
        } else {
            self.outputs.first()
        }
    }
}

/// What [`Action::compute_schemas`] sees.
pub struct SchemaContext<'a> {
    /// The step's outbound connection, if any (secret values sealed).
    pub connection: Option<&'a ConnectionRef>,
    /// The step's [`Action::schema_selector`] (e.g. which object a query selects); the
    /// schemas must depend on nothing else of the input.
    pub selector: &'a Value,
    /// Services: HTTP client, secrets, store (e.g. for a cached introspection).
    pub services: &'a Services,
}

/// What [`crate::Trigger::compute_output_schema`] sees.
pub struct TriggerSchemaContext<'a> {
    /// The runbook's inbound connection, if any (secret values sealed).
    pub connection: Option<&'a ConnectionRef>,
    /// The trigger's configuration.
    pub config: &'a Value,
    /// Services: HTTP client, secrets, store.
    pub services: &'a Services,
}

/// The trigger's cache key: its name, inbound connection and plaintext configuration.
fn trigger_key(
    rb: &CompiledRunbook,
    connection: Option<&ConnectionRef>,
    secrets: &Secrets,
) -> Result<String, String> {
    let config = secrets
        .reveal_value(&rb.trigger_config)
        .map_err(|e| format!("the trigger's secrets could not be opened: {e}"))?;
    cache_key(
        &format!("trigger:{}", rb.trigger_type),
        connection,
        &config,
        secrets,
    )
}

/// The output schema of a runbook's trigger: the compiled one, or — for a trigger that
/// computes it — the cached one, else computed (at most [`COMPUTE_TIMEOUT`]) and cached.
pub async fn trigger_output_schema(
    services: &Services,
    sol: &CompiledSolution,
    rb: &CompiledRunbook,
) -> Result<Option<Schema>, String> {
    if !rb.trigger.computes_output_schema() {
        return Ok(None);
    }
    let connection = rb.inbound.as_ref().and_then(|c| sol.connections.get(c));
    let store = services.store.as_ref();
    let secrets = services.secrets.as_ref();
    let key = trigger_key(rb, connection, secrets)?;
    let kv = cache(store, secrets);
    match kv.get(&key).await {
        Ok(Some(v)) => {
            return serde_json::from_value(v)
                .map(Some)
                .map_err(|e| format!("the cached schema is unreadable: {e}"))
        }
        Ok(None) => {}
        Err(e) => return Err(e.to_string()),
    }
    let ctx = TriggerSchemaContext {
        connection,
        config: &rb.trigger_config,
        services,
    };
    let schema =
        match tokio::time::timeout(COMPUTE_TIMEOUT, rb.trigger.compute_output_schema(&ctx)).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("timed out after {} s", COMPUTE_TIMEOUT.as_secs())),
        };
    let value =
        serde_json::to_value(&schema).map_err(|e| format!("it could not be cached: {e}"))?;
    kv.put(&key, &value, Some(rb.trigger.schema_ttl()))
        .await
        .map_err(|e| format!("it could not be cached: {e}"))?;
    Ok(Some(schema))
}

/// The cache key of a step's schemas: a SHA-256 over the action, the connector, the
/// connection's **plaintext** configuration (so that it is stable across restarts, where sealed
/// values change) and the step's schema selector. Only the hash is stored.
pub fn cache_key(
    action: &str,
    connection: Option<&ConnectionRef>,
    selector: &Value,
    secrets: &Secrets,
) -> Result<String, String> {
    let config = match connection {
        Some(c) => secrets
            .reveal_value(&c.config)
            .map_err(|e| format!("the connection's secrets could not be opened: {e}"))?,
        None => Value::Null,
    };
    let material = json!([
        action,
        connection.map(|c| c.connector.as_str()),
        config,
        selector
    ]);
    Ok(hex::encode(sha2::Sha256::digest(
        material.to_string().as_bytes(),
    )))
}

/// The cache key of a step's schemas with the action's [`Action::schema_version`] (a new
/// version, e.g. after a schema refresh, gives new keys).
async fn step_key(
    store: &dyn Store,
    secrets: &Secrets,
    action: &dyn Action,
    connection: Option<&ConnectionRef>,
    selector: &Value,
) -> Result<String, String> {
    let version = action.schema_version(store, secrets, connection).await?;
    match version {
        None => cache_key(action.spec().name, connection, selector, secrets),
        Some(v) => cache_key(
            action.spec().name,
            connection,
            &json!({"selector": selector, "version": v}),
            secrets,
        ),
    }
}

fn cache<'a>(store: &'a dyn Store, secrets: &'a Secrets) -> Kv<'a> {
    Kv::new(store, secrets, CACHE_NAMESPACE.to_string())
}

/// The cached schemas of a step, if any (no computation).
pub async fn cached(
    store: &dyn Store,
    secrets: &Secrets,
    action: &dyn Action,
    connection: Option<&ConnectionRef>,
    raw_input: &Value,
) -> Result<Option<ComputedSchemas>, String> {
    let selector = action.schema_selector(raw_input);
    let key = step_key(store, secrets, action, connection, &selector).await?;
    match cache(store, secrets).get(&key).await {
        Ok(None) => Ok(None),
        Ok(Some(v)) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| format!("the cached schema is unreadable: {e}")),
        Err(e @ KvError::Unavailable(_)) => Err(e.to_string()),
        Err(e @ KvError::Unreadable { .. }) => Err(e.to_string()),
    }
}

/// The schemas of a step whose action computes them: from the cache, else computed (at most
/// [`COMPUTE_TIMEOUT`]) and cached for [`Action::schema_ttl`]. `Ok(None)` for actions with
/// static schemas. The error fails the step, or reschedules it when the computation asked to
/// retry later (a `Signal::Reschedule` from [`Action::compute_schemas`]).
pub async fn step_schemas(
    services: &Services,
    sol: &CompiledSolution,
    step: &CompiledStep,
) -> Result<Option<Arc<ComputedSchemas>>, Signal> {
    let action = step.action.as_ref();
    if !action.computes_schemas() {
        return Ok(None);
    }
    let connection = step
        .connection
        .as_ref()
        .and_then(|c| sol.connections.get(c));
    let store = services.store.as_ref();
    let secrets = services.secrets.as_ref();
    if let Some(hit) = cached(store, secrets, action, connection, &step.raw_input)
        .await
        .map_err(Signal::Fail)?
    {
        return Ok(Some(Arc::new(hit)));
    }
    let selector = action.schema_selector(&step.raw_input);
    let ctx = SchemaContext {
        connection,
        selector: &selector,
        services,
    };
    let computed = match tokio::time::timeout(COMPUTE_TIMEOUT, action.compute_schemas(&ctx)).await {
        Ok(Ok(c)) => c,
        Ok(Err(Signal::Fail(e))) => {
            return Err(Signal::Fail(format!("Schema could not be computed: {e}")))
        }
        Ok(Err(other)) => return Err(other),
        Err(_) => {
            return Err(Signal::Fail(format!(
                "Schema could not be computed: timed out after {} s",
                COMPUTE_TIMEOUT.as_secs()
            )))
        }
    };
    // After computing: the computation may have established the version (e.g. a first
    // introspection).
    let key = step_key(store, secrets, action, connection, &selector)
        .await
        .map_err(Signal::Fail)?;
    let value = serde_json::to_value(&computed)
        .map_err(|e| Signal::Fail(format!("Schema could not be cached: {e}")))?;
    cache(store, secrets)
        .put(&key, &value, Some(action.schema_ttl()))
        .await
        .map_err(|e| Signal::Fail(format!("Schema could not be cached: {e}")))?;
    Ok(Some(Arc::new(computed)))
}

/// Offline checks of the steps whose actions compute their schemas (`ferry validate --data`):
/// the checks deferred by [`crate::compile::CompileOptions::defer_cached_checks`]
/// ([`Action::check_cached`], else [`Action::check`]), then the raw input's keys against the
/// cached input fields (unknown keys, missing required ones). Problems are `Err` diagnostics; a schema that is not cached is a warning (`Ok`
/// diagnostics), since the step's input could not be checked.
pub async fn check_cached(
    store: &dyn Store,
    secrets: &Secrets,
    sol: &CompiledSolution,
) -> Vec<Result<Diagnostic, Diagnostic>> {
    let mut out = Vec::new();
    for rb in sol.runbooks.values() {
        if rb.trigger.computes_output_schema() {
            let connection = rb.inbound.as_ref().and_then(|c| sol.connections.get(c));
            let d = |message: String| Diagnostic {
                span: rb.trigger_span.clone(),
                message,
            };
            let found = match trigger_key(rb, connection, secrets) {
                Ok(key) => cache(store, secrets)
                    .get(&key)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(_)) => {}
                Ok(None) => out.push(Ok(d(format!(
                    "warning: the output schema of trigger '{}' is computed from its connection and is not cached; expressions over `trigger` were not checked against it",
                    rb.trigger_type
                )))),
                Err(e) => out.push(Err(d(format!(
                    "the output schema of trigger '{}' could not be read from the cache: {e}",
                    rb.trigger_type
                )))),
            }
        }
        for id in &rb.order {
            let Some(step) = rb.steps.get(id) else {
                continue;
            };
            let action = step.action.as_ref();
            let connection = step
                .connection
                .as_ref()
                .and_then(|c| sol.connections.get(c));
            if action.has_cached_check() {
                // Deferred by `CompileOptions::defer_cached_checks`: against the cached data,
                // else the static check.
                let problems = match action
                    .check_cached(store, secrets, connection, &step.raw_input, &rb.variables)
                    .await
                {
                    Some(p) => p,
                    None => action.check(&step.raw_input, &rb.variables),
                };
                for message in problems {
                    out.push(Err(Diagnostic {
                        span: step.span.clone(),
                        message: format!("Step '{id}': {message}"),
                    }));
                }
            }
            if !action.computes_schemas() {
                continue;
            }
            let name = action.spec().name;
            let d = |message: String| Diagnostic {
                span: step.span.clone(),
                message,
            };
            match cached(store, secrets, action, connection, &step.raw_input).await {
                Err(e) => out.push(Err(d(format!(
                    "Step '{id}': the schema of '{name}' could not be read from the cache: {e}"
                )))),
                Ok(None) => out.push(Ok(d(format!(
                    "warning: Step '{id}': the schema of '{name}' is computed from its connection and is not cached; its input was not checked (serve the solution once, or run it, to fill the cache)"
                )))),
                Ok(Some(schemas)) => {
                    let input = step.raw_input.as_object().cloned().unwrap_or_default();
                    for key in input.keys() {
                        if !schemas.input.iter().any(|f| &f.id == key) {
                            out.push(Err(d(format!(
                                "Step '{id}': unknown input field '{key}' for action '{name}' (fields: {})",
                                schemas
                                    .input
                                    .iter()
                                    .map(|f| f.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))));
                        }
                    }
                    for f in &schemas.input {
                        if f.required && f.default.is_none() && !input.contains_key(&f.id) {
                            out.push(Err(d(format!(
                                "Step '{id}': Input invalid: Field '{}' is required.",
                                f.id
                            ))));
                        }
                    }
                }
            }
        }
    }
    out
}
