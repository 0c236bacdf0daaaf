//! The schema of a connection's Xurrent (spec §4.1, §4.8, §4.9): introspected over the
//! connection, kept in the connection's key/value store, shared by every Query and Mutation
//! step on that connection.
//!
//! - [`schema_for`] — the schema the actions use. Order of lookups:
//!   1. an in-process entry (an `Arc<Schema>`; no I/O, so a step using the cached schema pays
//!      microseconds), re-validated against the store's generation every
//!      [`REVALIDATE_AFTER`] so a refresh made elsewhere is seen;
//!   2. `gql_schema` in the connection store (the parsed model, sealed like every kv value,
//!      [`SCHEMA_TTL`]), recorded with the GraphQL endpoint and account it came from — a
//!      connection pointed elsewhere introspects again;
//!   3. the negative cache ([`introspection_failure_key`]): a recent failure answers at once
//!      with its bounded message, no HTTP;
//!   4. introspection ([`INTROSPECTION_QUERY`] through [`XurrentClient`]), single-flight per
//!      connection inside the process: concurrent misses wait for one introspection.
//!
//!   A failed introspection is negatively cached: [`DETERMINISTIC_FAILURE_TTL`] for answers
//!   that will not change by themselves (4xx, rejected credentials, an answer that is not a
//!   schema), [`TRANSIENT_FAILURE_TTL`] for the others (timeouts, network errors, 5xx, 429).
//!   An answer that says when to try again (429, 502–504 with `Retry-After`, or the
//!   client-side limiter) reschedules the step after that delay and is remembered only that
//!   long (at most 30 s); a negative-cache hit of such a failure reschedules too.
//! - [`generation`] — `gql_bundle_gen`, starting at 1 with the first cached schema; part of
//!   the key of every derived artifact (the computed step schemas of
//!   `ferry_engine::schemas`), so a refresh orphans them all.
//! - [`refresh`] — the one-shot "refresh schema": introspect again (even after a cached
//!   failure), replace the cached schema, bump the generation, clear the negative cache.
//! - [`cached_schema`] — read-only lookup for `ferry validate --data` (never introspects).
//!
//! There is no fallback to the schema that ships with Ferry at run time: a step whose
//! connection cannot be introspected fails (or is rescheduled) with the cause. Only
//! `ferry validate` checks against [`Schema::embedded`], when no schema is cached.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_core::secrets::Secrets;
use ferry_engine::action::{ConnectionRef, Services, Signal};
use ferry_engine::kv::Kv;
use ferry_store::Store;
use serde::Deserialize as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cache_key::{bounded_failure_message, introspection_failure_key};
use crate::client::{graphql_result, transient, truncate, Call, XurrentClient, XurrentError};
use crate::connection::{reveal, ConnectionConfig, Credentials};
use crate::model::{Schema, INTROSPECTION_QUERY};

/// Key of the cached schema in the connection store.
pub const SCHEMA_KEY: &str = "gql_schema";
/// Key of the generation of derived artifacts in the connection store.
pub const GENERATION_KEY: &str = "gql_bundle_gen";
/// How long an introspected schema stays cached.
pub const SCHEMA_TTL: Duration = Duration::from_secs(3600);
/// How long a deterministic introspection failure is remembered.
pub const DETERMINISTIC_FAILURE_TTL: Duration = Duration::from_secs(600);
/// How long a transient introspection failure is remembered.
pub const TRANSIENT_FAILURE_TTL: Duration = Duration::from_secs(30);
/// How long an in-process entry is trusted before the store's generation is read again.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(5);
/// Total timeout of one introspection request.
pub const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a failure is remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Will not change by itself (4xx, rejected credentials, not a schema): 600 s.
    Deterministic,
    /// May be gone in a moment (timeouts, network, 5xx, 429): 30 s.
    Transient,
}

impl FailureClass {
    /// The negative-cache TTL of the class.
    pub fn ttl(self) -> Duration {
        match self {
            FailureClass::Deterministic => DETERMINISTIC_FAILURE_TTL,
            FailureClass::Transient => TRANSIENT_FAILURE_TTL,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            FailureClass::Deterministic => "deterministic",
            FailureClass::Transient => "transient",
        }
    }
}

/// Why the schema of a connection is not available.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The connection's config is not a valid Xurrent outbound config.
    #[error("{0}")]
    Config(String),
    /// The connection store could not be read or written.
    #[error("Connection store: {0}")]
    Store(String),
    /// Introspection failed now, or recently (`cached`: answered from the negative cache).
    #[error("Schema introspection failed: {message}")]
    Introspection {
        /// The (bounded) cause.
        message: String,
        /// How long it is remembered.
        class: FailureClass,
        /// Xurrent asked to retry after this delay (429, 502–504): reschedule.
        retry_after: Option<Duration>,
        /// Answered from the negative cache, without a request.
        cached: bool,
    },
}

impl From<SchemaError> for Signal {
    fn from(e: SchemaError) -> Signal {
        match &e {
            SchemaError::Introspection {
                retry_after: Some(after),
                ..
            } => Signal::Reschedule {
                after: *after,
                message: e.to_string(),
            },
            _ => Signal::Fail(e.to_string()),
        }
    }
}

/// The class of a failed introspection, from what failed (pure; spec §8.3 with the issue's
/// two windows).
pub fn classify_failure(e: &XurrentError) -> FailureClass {
    match e {
        XurrentError::Timeout(_) | XurrentError::Reschedule { .. } => FailureClass::Transient,
        XurrentError::Api { status, .. } => classify_status(*status),
        XurrentError::Fail(m) => classify_message(m),
    }
}

/// 4xx (other than 429) is deterministic, anything else transient.
pub fn classify_status(status: u16) -> FailureClass {
    if (400..500).contains(&status) && status != 429 {
        FailureClass::Deterministic
    } else {
        FailureClass::Transient
    }
}

/// Failures without a status of their own: the token endpoint's (`Authentication to … failed`
/// is a credentials problem; `Unable to authenticate to host (HTTP n)` follows `n`; a network
/// error reaching it is transient), network errors (transient); anything else (an answer
/// that is not a schema, a secret that cannot be opened) is deterministic.
fn classify_message(m: &str) -> FailureClass {
    if m.starts_with("Authentication to ") {
        return FailureClass::Deterministic;
    }
    if let Some(rest) = m.strip_prefix("Unable to authenticate to ") {
        if let Some(status) = rest
            .rsplit_once("(HTTP ")
            .and_then(|(_, s)| s.trim_end_matches(')').parse::<u16>().ok())
        {
            return classify_status(status);
        }
        return FailureClass::Transient;
    }
    if m.starts_with("request to ") && (m.contains(" failed: ") || m.contains(" timed out")) {
        return FailureClass::Transient;
    }
    FailureClass::Deterministic
}

/// How long a failure is remembered: its class's window, or — when Xurrent said when to try
/// again (429, 502–504 with `Retry-After`) — that delay, at most the class's window (at least
/// 1 s).
pub fn failure_ttl(class: FailureClass, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(after) => after.clamp(Duration::from_secs(1), class.ttl()),
        None => class.ttl(),
    }
}

/// What a refresh did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshSummary {
    /// Named types of the new schema.
    pub types: usize,
    /// The new generation of derived artifacts.
    pub generation: u64,
    /// How long introspecting and caching took.
    pub duration: Duration,
}

struct Memo {
    fingerprint: String,
    schema: Arc<Schema>,
    generation: u64,
    expires: Instant,
    checked: Instant,
}

type MemoMap = parking_lot::Mutex<HashMap<String, Memo>>;
type FlightMap = parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

fn memos() -> &'static MemoMap {
    static M: OnceLock<MemoMap> = OnceLock::new();
    M.get_or_init(Default::default)
}

fn flights() -> &'static FlightMap {
    static M: OnceLock<FlightMap> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// In-process key: the store (several stores can live in one process, e.g. in tests) and the
/// connection's namespace.
fn memo_key(store: &dyn Store, connection: &ConnectionRef) -> String {
    format!(
        "{:p}\u{0}{}",
        store as *const dyn Store as *const (), connection.namespace
    )
}

/// What the cached schema belongs to: the GraphQL endpoint and the account.
fn fingerprint(config: &ConnectionConfig) -> String {
    let digest =
        Sha256::digest(format!("{}\n{}", config.endpoints.graphql, config.account_id).as_bytes());
    hex::encode(&digest[..16])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn store_err(e: impl std::fmt::Display) -> SchemaError {
    SchemaError::Store(e.to_string())
}

fn kv<'a>(store: &'a dyn Store, secrets: &'a Secrets, connection: &ConnectionRef) -> Kv<'a> {
    Kv::new(store, secrets, connection.namespace.clone())
}

/// The schema that ships with Ferry ([`Schema::embedded`]), parsed once per process and shared
/// by every action's offline check.
pub fn shipped() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Schema::embedded().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| format!("the embedded Xurrent schema cannot be read: {e}"))
}

/// The wire spellings of enum values, from the schema that ships with Ferry (introspection
/// does not carry applied directives).
fn wire_values() -> Option<&'static ferry_xurrent_schema::WireValues> {
    static W: OnceLock<Option<ferry_xurrent_schema::WireValues>> = OnceLock::new();
    W.get_or_init(|| ferry_xurrent_schema::wire_values(ferry_xurrent_schema::SDL).ok())
        .as_ref()
}

/// The generation of derived artifacts of a connection (`gql_bundle_gen`), `None` before the
/// first schema was cached.
pub async fn generation(
    store: &dyn Store,
    secrets: &Secrets,
    connection: &ConnectionRef,
) -> Result<Option<u64>, SchemaError> {
    let key = memo_key(store, connection);
    {
        let memos = memos().lock();
        if let Some(m) = memos.get(&key) {
            if m.checked.elapsed() < REVALIDATE_AFTER && Instant::now() < m.expires {
                return Ok(Some(m.generation));
            }
        }
    }
    read_generation(&kv(store, secrets, connection)).await
}

/// [`ferry_engine::Action::schema_version`] of the Query and Mutation actions: the
/// generation of the connection's schema (`gen:<n>`), so derived step schemas are keyed by
/// it. `None` without a connection or before the first schema.
pub async fn schema_version(
    store: &dyn Store,
    secrets: &Secrets,
    connection: Option<&ConnectionRef>,
) -> Result<Option<String>, String> {
    let Some(connection) = connection else {
        return Ok(None);
    };
    Ok(generation(store, secrets, connection)
        .await
        .map_err(|e| e.to_string())?
        .map(|g| format!("{GENERATION_KEY}:{g}")))
}

async fn read_generation(kv: &Kv<'_>) -> Result<Option<u64>, SchemaError> {
    Ok(kv
        .get(GENERATION_KEY)
        .await
        .map_err(store_err)?
        .and_then(|v| v.as_u64()))
}

/// The in-process entry, if fresh (re-validated against the store's generation).
async fn memo_hit(
    kv: &Kv<'_>,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Arc<Schema>>, SchemaError> {
    let (schema, generation) = {
        let mut memos = memos().lock();
        let Some(m) = memos.get(key) else {
            return Ok(None);
        };
        if m.fingerprint != fingerprint || Instant::now() >= m.expires {
            memos.remove(key);
            return Ok(None);
        }
        if m.checked.elapsed() < REVALIDATE_AFTER {
            return Ok(Some(m.schema.clone()));
        }
        (m.schema.clone(), m.generation)
    };
    if read_generation(kv).await? == Some(generation) {
        if let Some(m) = memos().lock().get_mut(key) {
            m.checked = Instant::now();
        }
        return Ok(Some(schema));
    }
    memos().lock().remove(key);
    Ok(None)
}

fn remember(key: &str, fingerprint: &str, schema: Arc<Schema>, generation: u64, fetched_at: u64) {
    let age = Duration::from_secs(unix_now().saturating_sub(fetched_at));
    let left = SCHEMA_TTL.saturating_sub(age);
    let now = Instant::now();
    memos().lock().insert(
        key.to_string(),
        Memo {
            fingerprint: fingerprint.to_string(),
            schema,
            generation,
            expires: now + left,
            checked: now,
        },
    );
}

/// The stored schema of the connection, if present, for this fingerprint, and readable.
async fn stored(kv: &Kv<'_>, fingerprint: &str) -> Result<Option<(Arc<Schema>, u64)>, SchemaError> {
    let Some(v) = kv.get(SCHEMA_KEY).await.map_err(store_err)? else {
        return Ok(None);
    };
    if v.get("fingerprint").and_then(Value::as_str) != Some(fingerprint) {
        return Ok(None);
    }
    let fetched_at = v.get("fetched_at").and_then(Value::as_u64).unwrap_or(0);
    match v.get("schema").map(Schema::deserialize) {
        Some(Ok(schema)) => Ok(Some((Arc::new(schema), fetched_at))),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "xurrent: the cached schema is unreadable; introspecting again");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The negative-cache key of a connection (spec §4.8: endpoints, account and credentials,
/// hashed so that no secret is in it).
fn failure_key(services: &Services, config: &ConnectionConfig) -> Result<String, SchemaError> {
    let open = |v: &str| reveal(services, v).map_err(|e| SchemaError::Config(e.to_string()));
    let (client_id, secret, pat) = match &config.credentials {
        Credentials::PersonalAccessToken(pat) => (None, String::new(), open(pat)?),
        Credentials::ClientCredentials {
            client_id,
            client_secret,
        } => (
            Some(client_id.as_str()),
            open(client_secret)?,
            String::new(),
        ),
    };
    Ok(introspection_failure_key([
        Some(config.endpoints.graphql.as_str()),
        Some(config.endpoints.oauth2.as_str()),
        Some(config.account_id.as_str()),
        client_id,
        Some(secret.as_str()),
        Some(pat.as_str()),
    ]))
}

/// A negative-cache entry as a failure, or `None` when it is unreadable.
fn cached_failure(v: &Value) -> Option<SchemaError> {
    let message = v.get("message")?.as_str()?.to_string();
    let class = match v.get("class").and_then(Value::as_str) {
        Some("transient") => FailureClass::Transient,
        _ => FailureClass::Deterministic,
    };
    let retry_after = v
        .get("until")
        .and_then(Value::as_u64)
        .filter(|_| v.get("reschedule").and_then(Value::as_bool) == Some(true))
        .map(|until| Duration::from_secs(until.saturating_sub(unix_now()).max(1)));
    Some(SchemaError::Introspection {
        message,
        class,
        retry_after,
        cached: true,
    })
}

/// The schema of the connection's Xurrent: in-process, else cached in the connection store,
/// else introspected (see the module docs). Never falls back to the embedded schema.
pub async fn schema_for(
    services: &Services,
    connection: &ConnectionRef,
) -> Result<Arc<Schema>, SchemaError> {
    let config = ConnectionConfig::from_config(&connection.config).map_err(SchemaError::Config)?;
    let fp = fingerprint(&config);
    let key = memo_key(services.store.as_ref(), connection);
    let kv = services.kv(connection);
    if let Some(s) = memo_hit(&kv, &key, &fp).await? {
        return Ok(s);
    }
    let flight = flights().lock().entry(key.clone()).or_default().clone();
    let _guard = flight.lock().await;
    // Another caller may have filled it while this one waited.
    if let Some(s) = memo_hit(&kv, &key, &fp).await? {
        return Ok(s);
    }
    if let Some((schema, fetched_at)) = stored(&kv, &fp).await? {
        let generation = match read_generation(&kv).await? {
            Some(g) => g,
            None => establish_generation(&kv).await?,
        };
        remember(&key, &fp, schema.clone(), generation, fetched_at);
        return Ok(schema);
    }
    let failure = failure_key(services, &config)?;
    if let Some(v) = kv.get(&failure).await.map_err(store_err)? {
        if let Some(e) = cached_failure(&v) {
            tracing::debug!(connection = %connection.name, "xurrent: schema introspection failure served from the negative cache");
            return Err(e);
        }
    }
    let (schema, _) = introspect_and_store(services, connection, &config, &kv, &failure).await?;
    let generation = match read_generation(&kv).await? {
        Some(g) => g,
        None => establish_generation(&kv).await?,
    };
    remember(&key, &fp, schema.clone(), generation, unix_now());
    Ok(schema)
}

async fn establish_generation(kv: &Kv<'_>) -> Result<u64, SchemaError> {
    if kv
        .put_if_absent(GENERATION_KEY, &json!(1), None)
        .await
        .map_err(store_err)?
    {
        return Ok(1);
    }
    Ok(read_generation(kv).await?.unwrap_or(1))
}

/// Introspect over the connection and store the schema (or the failure).
async fn introspect_and_store(
    services: &Services,
    connection: &ConnectionRef,
    config: &ConnectionConfig,
    kv: &Kv<'_>,
    failure_key: &str,
) -> Result<(Arc<Schema>, Duration), SchemaError> {
    let started = Instant::now();
    match introspect(services, connection, config).await {
        Ok(schema) => {
            let value = json!({
                "fingerprint": fingerprint(config),
                "fetched_at": unix_now(),
                "schema": schema,
            });
            kv.put(SCHEMA_KEY, &value, Some(SCHEMA_TTL))
                .await
                .map_err(store_err)?;
            let took = started.elapsed();
            tracing::info!(
                connection = %connection.name,
                types = schema.types.len(),
                ms = took.as_millis() as u64,
                "xurrent: schema introspected and cached"
            );
            Ok((Arc::new(schema), took))
        }
        Err((e, retry_after)) => {
            let class = classify_failure(&e);
            let message = bounded_failure_message(&e.to_string());
            let ttl = failure_ttl(class, retry_after);
            let entry = json!({
                "message": message,
                "class": class.as_str(),
                "reschedule": retry_after.is_some(),
                "until": unix_now() + ttl.as_secs(),
            });
            tracing::warn!(
                connection = %connection.name,
                class = class.as_str(),
                ttl_s = ttl.as_secs(),
                error = %message,
                "xurrent: schema introspection failed; remembered"
            );
            kv.put(failure_key, &entry, Some(ttl))
                .await
                .map_err(store_err)?;
            Err(SchemaError::Introspection {
                message,
                class,
                retry_after,
                cached: false,
            })
        }
    }
}

/// One introspection request (spec §4.1), the answer read into a [`Schema`] with the wire
/// spellings of the embedded schema's enum values.
async fn introspect(
    services: &Services,
    connection: &ConnectionRef,
    config: &ConnectionConfig,
) -> Result<Schema, (XurrentError, Option<Duration>)> {
    let client =
        XurrentClient::with_config(services, connection, config.clone()).map_err(|e| (e, None))?;
    let call = Call::new(reqwest::Method::POST, config.endpoints.graphql.clone())
        .json(json!({ "query": INTROSPECTION_QUERY }))
        .timeout(INTROSPECTION_TIMEOUT);
    let response = client.send(call).await.map_err(|e| {
        let after = match &e {
            XurrentError::Reschedule { after, .. } => Some(*after),
            _ => None,
        };
        (e, after)
    })?;
    if let Some(e) = transient(&response) {
        let after = match &e {
            XurrentError::Reschedule { after, .. } => Some(*after),
            _ => None,
        };
        return Err((e, after));
    }
    if response.status != 200 {
        let body = String::from_utf8_lossy(&response.body);
        let message = format!(
            "HTTP error from Xurrent GraphQL API: {} '{}'",
            response.status,
            truncate(body.trim(), 200)
        );
        return Err((
            XurrentError::Api {
                status: response.status,
                message,
            },
            None,
        ));
    }
    let answer = graphql_result(&response).map_err(|e| (e, None))?;
    let mut schema = Schema::from_introspection(&answer.data)
        .map_err(|e| (XurrentError::Fail(e.to_string()), None))?;
    if schema.query_type.is_none() || schema.types.is_empty() {
        return Err((
            XurrentError::Fail("No schema data from introspection".into()),
            None,
        ));
    }
    if let Some(w) = wire_values() {
        schema.apply_wire_values(w);
    }
    Ok(schema)
}

/// Refresh the schema of a connection (the one-shot "refresh schema"): introspect again, even
/// after a cached failure; on success replace the cached schema and bump the generation (every
/// derived artifact is orphaned). A failure is remembered like any other and returned.
pub async fn refresh(
    services: &Services,
    connection: &ConnectionRef,
) -> Result<RefreshSummary, SchemaError> {
    let config = ConnectionConfig::from_config(&connection.config).map_err(SchemaError::Config)?;
    let fp = fingerprint(&config);
    let key = memo_key(services.store.as_ref(), connection);
    let kv = services.kv(connection);
    let flight = flights().lock().entry(key.clone()).or_default().clone();
    let _guard = flight.lock().await;
    memos().lock().remove(&key);
    let failure = failure_key(services, &config)?;
    kv.delete(&failure).await.map_err(store_err)?;
    kv.delete(SCHEMA_KEY).await.map_err(store_err)?;
    let generation = bump_generation(&kv).await?;
    let (schema, duration) =
        introspect_and_store(services, connection, &config, &kv, &failure).await?;
    let types = schema.types.len();
    remember(&key, &fp, schema, generation, unix_now());
    Ok(RefreshSummary {
        types,
        generation,
        duration,
    })
}

async fn bump_generation(kv: &Kv<'_>) -> Result<u64, SchemaError> {
    let next = read_generation(kv).await?.unwrap_or(0) + 1;
    kv.put(GENERATION_KEY, &json!(next), None)
        .await
        .map_err(store_err)?;
    Ok(next)
}

/// The cached schema of a connection, without introspecting (for `ferry validate --data`);
/// `None` when nothing is cached for its current endpoint and account.
pub async fn cached_schema(
    store: &dyn Store,
    secrets: &Secrets,
    connection: &ConnectionRef,
) -> Result<Option<Arc<Schema>>, SchemaError> {
    let config = ConnectionConfig::from_config(&connection.config).map_err(SchemaError::Config)?;
    Ok(
        stored(&kv(store, secrets, connection), &fingerprint(&config))
            .await?
            .map(|(s, _)| s),
    )
}

/// `check` against the connection's cached schema (for `ferry validate --data`): `None` when
/// there is no connection or nothing is cached (the offline check against the shipped schema
/// stands), a problem when the cache cannot be read.
pub async fn check_with_cached(
    store: &dyn Store,
    secrets: &Secrets,
    connection: Option<&ConnectionRef>,
    check: impl FnOnce(&Schema) -> Vec<String>,
) -> Option<Vec<String>> {
    let connection = connection?;
    match cached_schema(store, secrets, connection).await {
        Ok(Some(schema)) => Some(check(&schema)),
        Ok(None) => None,
        Err(e) => Some(vec![format!(
            "the cached schema of connection '{}' cannot be read: {e}",
            connection.name
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_classes_and_windows() {
        let api = |status| XurrentError::Api {
            status,
            message: String::new(),
        };
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(
                classify_failure(&api(s)),
                FailureClass::Deterministic,
                "{s}"
            );
        }
        for s in [429, 500, 502, 503, 504, 520] {
            assert_eq!(classify_failure(&api(s)), FailureClass::Transient, "{s}");
        }
        assert_eq!(
            classify_failure(&XurrentError::Timeout("request to x timed out".into())),
            FailureClass::Transient
        );
        assert_eq!(
            classify_failure(&XurrentError::Reschedule {
                after: Duration::from_secs(5),
                message: "Xurrent rate budget of this connection is used up".into()
            }),
            FailureClass::Transient
        );
        let fail = |m: &str| classify_failure(&XurrentError::Fail(m.into()));
        assert_eq!(
            fail("Authentication to oauth.example failed: invalid_client"),
            FailureClass::Deterministic
        );
        assert_eq!(
            fail("Unable to authenticate to oauth.example (HTTP 500)"),
            FailureClass::Transient
        );
        assert_eq!(
            fail("Unable to authenticate to oauth.example (HTTP 400)"),
            FailureClass::Deterministic
        );
        assert_eq!(
            fail("Unable to authenticate to oauth.example: request to https://oauth.example/token failed: connection refused"),
            FailureClass::Transient
        );
        assert_eq!(
            fail("request to http://127.0.0.1:9/ failed: connection refused"),
            FailureClass::Transient
        );
        assert_eq!(
            fail("No data from Xurrent GraphQL API"),
            FailureClass::Deterministic
        );
        assert_eq!(
            fail("invalid introspection result: no __schema.types list"),
            FailureClass::Deterministic
        );
        assert_eq!(FailureClass::Deterministic.ttl(), Duration::from_secs(600));
        assert_eq!(FailureClass::Transient.ttl(), Duration::from_secs(30));
        let t = FailureClass::Transient;
        assert_eq!(failure_ttl(t, None), Duration::from_secs(30));
        assert_eq!(
            failure_ttl(t, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            failure_ttl(t, Some(Duration::from_secs(120))),
            Duration::from_secs(30)
        );
        assert_eq!(failure_ttl(t, Some(Duration::ZERO)), Duration::from_secs(1));
    }

    #[test]
    fn cached_failures_keep_their_class_and_reschedule() {
        let e = cached_failure(&json!({"message": "HTTP error from Xurrent GraphQL API: 400 'Invalid x-xurrent-account header'", "class": "deterministic", "reschedule": false, "until": unix_now() + 600})).unwrap();
        assert!(
            e.to_string().contains("Invalid x-xurrent-account header"),
            "{e}"
        );
        assert!(matches!(Signal::from(e), Signal::Fail(_)));
        let e = cached_failure(&json!({"message": "Xurrent API not available", "class": "transient", "reschedule": true, "until": unix_now() + 20})).unwrap();
        match Signal::from(e) {
            Signal::Reschedule { after, .. } => {
                assert!(after <= Duration::from_secs(20) && after >= Duration::from_secs(1))
            }
            other => panic!("expected a reschedule, got {other:?}"),
        }
        assert!(cached_failure(&json!("garbage")).is_none());
    }
}
