//! Shared emulator state: accounts, the record store, bearer tokens, rate limits and
//! the change feed that the webhook half listens to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::EmulatorConfig;

/// A record: a JSON object keyed by GraphQL field names.
///
/// Every stored record has `"id"` (opaque node id), `"__typename"`, `"_account"` (account id),
/// `"_seq"` (numeric id, unique per account and type), `"createdAt"` and `"updatedAt"`.
/// A reference to another record is stored as the target's node id string; a list of
/// references as an array of node id strings. Nested records (e.g. notes) carry `"_owner"`,
/// the node id of the record they belong to.
pub type Record = serde_json::Map<String, serde_json::Value>;

/// Kind of a record change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The record was created.
    Created,
    /// The record was updated.
    Updated,
    /// The record was deleted.
    Deleted,
}

/// One change of one record, broadcast on [`Emulator::changes`].
#[derive(Clone, Debug)]
pub struct RecordChange {
    /// Account id of the record.
    pub account: String,
    /// GraphQL type name of the record (e.g. `Request`).
    pub typename: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The record before the change (`None` for creations).
    pub before: Option<Record>,
    /// The record after the change (`None` for deletions).
    pub after: Option<Record>,
    /// Node id of the person who made the change, when known.
    pub person_id: Option<String>,
}

/// One account of the emulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account id (the subdomain, e.g. `wdc`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Node id of the account's administrator `Person` record.
    pub admin_person_id: String,
}

/// What a bearer token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Account the token belongs to.
    pub account: String,
    /// Node id of the person the token acts for (personal access tokens, authorization code).
    pub person_id: Option<String>,
    /// Whether the token has administrator rights.
    pub admin: bool,
    /// OAuth scopes (e.g. `webhook:CRU`); empty for personal access tokens.
    pub scopes: Vec<String>,
    /// Expiry; `None` means the token never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// OAuth client id that issued the token, if any.
    pub client_id: Option<String>,
}

/// Bearer tokens (personal access tokens and OAuth access tokens).
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: RwLock<HashMap<String, TokenInfo>>,
}

impl TokenStore {
    /// Register (or replace) a token.
    pub fn insert(&self, token: String, info: TokenInfo) {
        self.tokens.write().insert(token, info);
    }

    /// Look a token up; `None` if unknown or expired.
    pub fn validate(&self, token: &str) -> Option<TokenInfo> {
        let info = self.tokens.read().get(token).cloned()?;
        match info.expires_at {
            Some(exp) if exp <= Utc::now() => None,
            _ => Some(info),
        }
    }

    /// Forget a token.
    pub fn revoke(&self, token: &str) {
        self.tokens.write().remove(token);
    }

    /// Forget every token of an account.
    pub fn revoke_account(&self, account: &str) {
        self.tokens.write().retain(|_, i| i.account != account);
    }
}

/// Encode a node id: base64url (no padding) of `gid://<account>/<Type>/<seq>`.
pub fn encode_node_id(account: &str, typename: &str, seq: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("gid://{account}/{typename}/{seq}"))
}

/// Decode a node id produced by [`encode_node_id`] into `(account, typename, seq)`.
pub fn decode_node_id(id: &str) -> Option<(String, String, u64)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id.trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let rest = text.strip_prefix("gid://")?;
    let mut parts = rest.splitn(3, '/');
    let account = parts.next()?.to_string();
    let typename = parts.next()?.to_string();
    let seq = parts.next()?.parse().ok()?;
    if account.is_empty() || typename.is_empty() {
        return None;
    }
    Some((account, typename, seq))
}

/// Current time in the format used for `createdAt` / `updatedAt`.
pub fn now_timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Default)]
struct StoreInner {
    by_id: HashMap<String, Arc<Record>>,
    /// (account, typename) → seq → node id
    by_type: HashMap<(String, String), BTreeMap<u64, String>>,
    next_seq: HashMap<(String, String), u64>,
}

/// All records of all accounts, indexed by node id and by (account, type).
#[derive(Default)]
pub struct RecordStore {
    inner: RwLock<StoreInner>,
    /// Bumped (under the write lock) by every insert, update, delete and clear, so that
    /// anything derived from the records (the connection lists cached by the GraphQL half)
    /// can tell whether it is still current.
    generation: AtomicU64,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore")
            .field("records", &self.inner.read().by_id.len())
            .finish()
    }
}

impl RecordStore {
    /// The store's mutation generation: it changes whenever any record of any account is
    /// created, updated or deleted. A value derived from the records at generation `g` is
    /// current as long as `generation()` still returns `g`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(AtomicOrdering::Acquire)
    }

    /// Called with the write lock held, before the change becomes visible to readers.
    fn bump(&self) {
        self.generation.fetch_add(1, AtomicOrdering::AcqRel);
    }

    /// Store a new record. Assigns `id`, `_seq`, `__typename`, `_account`, and `createdAt` /
    /// `updatedAt` (kept when `fields` already has them). Returns the stored record.
    pub fn insert(&self, account: &str, typename: &str, fields: Record) -> Record {
        self.insert_arc(account, typename, fields).as_ref().clone()
    }

    pub(crate) fn insert_arc(
        &self,
        account: &str,
        typename: &str,
        mut fields: Record,
    ) -> Arc<Record> {
        let mut inner = self.inner.write();
        let key = (account.to_string(), typename.to_string());
        let seq = {
            let next = inner.next_seq.entry(key.clone()).or_insert(1);
            let seq = *next;
            *next += 1;
            seq
        };
        let id = encode_node_id(account, typename, seq);
        let now = now_timestamp();
        fields.insert("id".into(), id.clone().into());
        fields.insert("__typename".into(), typename.into());
        fields.insert("_account".into(), account.into());
        fields.insert("_seq".into(), seq.into());
        if !fields.get("createdAt").is_some_and(|v| v.is_string()) {
            fields.insert("createdAt".into(), now.clone().into());
        }
        if !fields.get("updatedAt").is_some_and(|v| v.is_string()) {
            fields.insert("updatedAt".into(), now.into());
        }
        let rec = Arc::new(fields);
        self.bump();
        inner.by_id.insert(id.clone(), rec.clone());
        inner.by_type.entry(key).or_default().insert(seq, id);
        rec
    }

    /// A record by node id.
    pub fn get(&self, id: &str) -> Option<Record> {
        self.get_arc(id).map(|r| r.as_ref().clone())
    }

    pub(crate) fn get_arc(&self, id: &str) -> Option<Arc<Record>> {
        self.inner.read().by_id.get(id).cloned()
    }

    /// A record by its numeric id within an account and type.
    pub fn get_by_seq(&self, account: &str, typename: &str, seq: u64) -> Option<Record> {
        self.get(&encode_node_id(account, typename, seq))
    }

    /// Merge `patch` into a record (keys with JSON `null` are set to null). `id`, `_seq`,
    /// `__typename`, `_account` and `createdAt` cannot be changed; `updatedAt` is refreshed.
    /// Returns `(before, after)`, or `None` if there is no such record.
    pub fn update(&self, id: &str, patch: Record) -> Option<(Record, Record)> {
        self.update_arc(id, patch)
            .map(|(b, a)| (b.as_ref().clone(), a.as_ref().clone()))
    }

    pub(crate) fn update_arc(&self, id: &str, patch: Record) -> Option<(Arc<Record>, Arc<Record>)> {
        let mut inner = self.inner.write();
        let before = inner.by_id.get(id)?.clone();
        let mut after = before.as_ref().clone();
        for (k, v) in patch {
            if matches!(
                k.as_str(),
                "id" | "_seq" | "__typename" | "_account" | "createdAt"
            ) {
                continue;
            }
            after.insert(k, v);
        }
        after.insert("updatedAt".into(), now_timestamp().into());
        let after = Arc::new(after);
        self.bump();
        inner.by_id.insert(id.to_string(), after.clone());
        Some((before, after))
    }

    /// Remove a record; returns it.
    pub fn delete(&self, id: &str) -> Option<Record> {
        let mut inner = self.inner.write();
        let rec = inner.by_id.remove(id)?;
        self.bump();
        if let (Some(acc), Some(ty), Some(seq)) = (
            rec.get("_account").and_then(|v| v.as_str()),
            rec.get("__typename").and_then(|v| v.as_str()),
            rec.get("_seq").and_then(|v| v.as_u64()),
        ) {
            let key = (acc.to_string(), ty.to_string());
            if let Some(m) = inner.by_type.get_mut(&key) {
                m.remove(&seq);
            }
        }
        Some(rec.as_ref().clone())
    }

    /// All records of one type in one account, in `_seq` order.
    pub fn list(&self, account: &str, typename: &str) -> Vec<Record> {
        self.list_arc(account, typename)
            .into_iter()
            .map(|r| r.as_ref().clone())
            .collect()
    }

    pub(crate) fn list_arc(&self, account: &str, typename: &str) -> Vec<Arc<Record>> {
        let inner = self.inner.read();
        let key = (account.to_string(), typename.to_string());
        match inner.by_type.get(&key) {
            Some(m) => m
                .values()
                .filter_map(|id| inner.by_id.get(id).cloned())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Number of records of one type in one account.
    pub fn count(&self, account: &str, typename: &str) -> usize {
        let inner = self.inner.read();
        inner
            .by_type
            .get(&(account.to_string(), typename.to_string()))
            .map_or(0, |m| m.len())
    }

    /// Remove every record of an account (used by reset).
    pub fn clear_account(&self, account: &str) {
        let mut inner = self.inner.write();
        self.bump();
        inner
            .by_id
            .retain(|_, r| r.get("_account").and_then(|v| v.as_str()) != Some(account));
        inner.by_type.retain(|(a, _), _| a != account);
        inner.next_seq.retain(|(a, _), _| a != account);
    }
}

/// Rate limits applied per token. `enabled: false` switches all of them off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Whether any limit is enforced (headers are still sent).
    pub enabled: bool,
    /// Requests per `window_secs` (Xurrent: 3,600 per hour).
    pub requests_per_window: u32,
    /// Length of the request and cost window in seconds (Xurrent: 3,600).
    pub window_secs: u64,
    /// GraphQL burst limit: requests per `burst_window_secs` (Xurrent: 20 per 2 s).
    pub burst_requests: u32,
    /// Length of the burst window in seconds.
    pub burst_window_secs: u64,
    /// GraphQL cost points per `window_secs` (Xurrent: 5,000 per hour).
    pub cost_per_window: u32,
}

impl RateLimits {
    /// The documented Xurrent limits.
    pub fn xurrent_defaults() -> Self {
        RateLimits {
            enabled: true,
            requests_per_window: 3600,
            window_secs: 3600,
            burst_requests: 20,
            burst_window_secs: 2,
            cost_per_window: 5000,
        }
    }

    /// No limits (the Xurrent numbers are still reported in headers).
    pub fn disabled() -> Self {
        RateLimits {
            enabled: false,
            ..Self::xurrent_defaults()
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::xurrent_defaults()
    }
}

/// Values for the `x-ratelimit-*` / `x-costlimit-*` response headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateStatus {
    /// Request limit of the window.
    pub limit: u32,
    /// Requests left in the window.
    pub remaining: u32,
    /// Unix time (seconds) when the window resets.
    pub reset: i64,
    /// Cost limit of the window.
    pub cost_limit: u32,
    /// Cost of this request.
    pub cost: u32,
    /// Cost points left.
    pub cost_remaining: u32,
}

impl RateStatus {
    /// Add the rate and cost headers to a response header map.
    pub fn apply(&self, headers: &mut HeaderMap, with_cost: bool) {
        let mut set = |k: &'static str, v: String| {
            if let Ok(v) = v.parse() {
                headers.insert(k, v);
            }
        };
        set("x-ratelimit-limit", self.limit.to_string());
        set("x-ratelimit-remaining", self.remaining.to_string());
        set("x-ratelimit-reset", self.reset.to_string());
        if with_cost {
            set("x-costlimit-limit", self.cost_limit.to_string());
            set("x-costlimit-cost", self.cost.to_string());
            set("x-costlimit-remaining", self.cost_remaining.to_string());
            set("x-costlimit-reset", self.reset.to_string());
        }
    }
}

/// A request refused by the rate limiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Seconds until a retry can succeed (for `Retry-After`).
    pub retry_after: u64,
    /// Which limit was hit (for the error message).
    pub message: String,
    /// Header values at the time of refusal.
    pub status: RateStatus,
}

impl RateLimited {
    /// The 429 response: `Retry-After`, rate headers, Xurrent-style JSON error body.
    pub fn into_response_with_cost(self, with_cost: bool) -> Response {
        let body = serde_json::json!({ "errors": [ { "message": self.message } ] });
        let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        self.status.apply(resp.headers_mut(), with_cost);
        if let Ok(v) = self.retry_after.to_string().parse() {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

#[derive(Debug)]
struct TokenUsage {
    window_start: Instant,
    window_start_unix: i64,
    requests: u32,
    cost: u32,
    burst: VecDeque<Instant>,
}

/// Per-token counters for [`RateLimits`].
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    usage: Mutex<HashMap<String, TokenUsage>>,
}

impl RateLimiter {
    fn window<'a>(
        map: &'a mut HashMap<String, TokenUsage>,
        token: &str,
        limits: &RateLimits,
    ) -> &'a mut TokenUsage {
        let now = Instant::now();
        let usage = map.entry(token.to_string()).or_insert_with(|| TokenUsage {
            window_start: now,
            window_start_unix: Utc::now().timestamp(),
            requests: 0,
            cost: 0,
            burst: VecDeque::new(),
        });
        if now.duration_since(usage.window_start) >= Duration::from_secs(limits.window_secs) {
            usage.window_start = now;
            usage.window_start_unix = Utc::now().timestamp();
            usage.requests = 0;
            usage.cost = 0;
        }
        usage
    }

    /// Count one request; refuse it when a limit is exhausted.
    pub(crate) fn check(
        &self,
        token: &str,
        limits: &RateLimits,
        graphql: bool,
    ) -> Result<RateStatus, RateLimited> {
        let mut map = self.usage.lock();
        let usage = Self::window(&mut map, token, limits);
        let now = Instant::now();
        let reset = usage.window_start_unix + limits.window_secs as i64;
        let window_left = limits
            .window_secs
            .saturating_sub(now.duration_since(usage.window_start).as_secs())
            .max(1);
        let status = |u: &TokenUsage| RateStatus {
            limit: limits.requests_per_window,
            remaining: limits.requests_per_window.saturating_sub(u.requests),
            reset,
            cost_limit: limits.cost_per_window,
            cost: 0,
            cost_remaining: limits.cost_per_window.saturating_sub(u.cost),
        };
        if limits.enabled {
            if usage.requests >= limits.requests_per_window {
                return Err(RateLimited {
                    retry_after: window_left,
                    message: "Too Many Requests: request rate limit exceeded".into(),
                    status: status(usage),
                });
            }
            if graphql {
                if usage.cost >= limits.cost_per_window {
                    return Err(RateLimited {
                        retry_after: window_left,
                        message: "Too Many Requests: query cost limit exceeded".into(),
                        status: status(usage),
                    });
                }
                let burst_window = Duration::from_secs(limits.burst_window_secs.max(1));
                while usage
                    .burst
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= burst_window)
                {
                    usage.burst.pop_front();
                }
                if usage.burst.len() >= limits.burst_requests as usize {
                    let oldest = usage.burst.front().copied().unwrap_or(now);
                    let wait = burst_window.saturating_sub(now.duration_since(oldest));
                    return Err(RateLimited {
                        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                        message: "Too Many Requests: burst rate limit exceeded".into(),
                        status: status(usage),
                    });
                }
            }
        }
        // With the limits switched off nothing is counted, so the headers keep announcing a full
        // budget: a client that paces itself from them (Ferry's Xurrent connector does) must not
        // slow down against an emulator that will never refuse it.
        if limits.enabled {
            usage.requests = usage.requests.saturating_add(1);
            if graphql {
                usage.burst.push_back(now);
            }
        }
        Ok(status(usage))
    }

    /// Charge the cost of an executed GraphQL request; returns the updated status.
    pub(crate) fn charge(&self, token: &str, limits: &RateLimits, cost: u32) -> RateStatus {
        let mut map = self.usage.lock();
        let usage = Self::window(&mut map, token, limits);
        if limits.enabled {
            usage.cost = usage.cost.saturating_add(cost);
        }
        RateStatus {
            limit: limits.requests_per_window,
            remaining: limits.requests_per_window.saturating_sub(usage.requests),
            reset: usage.window_start_unix + limits.window_secs as i64,
            cost_limit: limits.cost_per_window,
            cost,
            cost_remaining: limits.cost_per_window.saturating_sub(usage.cost),
        }
    }

    pub(crate) fn reset(&self) {
        self.usage.lock().clear();
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("Unauthorized: missing bearer token")]
    MissingToken,
    /// Unknown, revoked or expired token.
    #[error("Unauthorized: invalid or expired token")]
    InvalidToken,
    /// No `X-Xurrent-Account` (or `X-4me-Account`) header.
    #[error("Unauthorized: missing X-Xurrent-Account header")]
    MissingAccount,
    /// The account header names an unknown account or one the token does not belong to.
    #[error("Unauthorized: token is not valid for account '{0}'")]
    WrongAccount(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": [ { "message": self.to_string() } ] });
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    }
}

/// One running emulator: configuration plus all in-memory state.
pub struct Emulator {
    /// The configuration it was built with.
    pub config: EmulatorConfig,
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:4780`.
    pub base_url: String,
    /// Accounts by id.
    pub accounts: RwLock<indexmap::IndexMap<String, Account>>,
    /// All GraphQL records.
    pub records: RecordStore,
    /// Bearer tokens.
    pub tokens: TokenStore,
    /// Every create/update/delete made through the APIs.
    pub changes: tokio::sync::broadcast::Sender<RecordChange>,
    pub(crate) rate_limits: RwLock<RateLimits>,
    pub(crate) limiter: RateLimiter,
    pub(crate) attachments: crate::graphql::attachments::AttachmentStore,
    pub(crate) gql: crate::graphql::GraphqlState,
    /// Filtered and ordered lists of root connections, valid for one record store generation.
    pub(crate) conn_lists: crate::graphql::conn_list::ConnCache,
    /// Private state of the REST/webhook half.
    pub rest: crate::rest::RestState,
    /// Serialises key generation of policies that have no key yet (see
    /// [`crate::policy::ensure_key`]).
    pub(crate) policy_key_lock: Mutex<()>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url)
            .field("records", &self.records)
            .finish()
    }
}

impl Emulator {
    pub(crate) fn new(
        config: EmulatorConfig,
        base_url: String,
        gql: crate::graphql::GraphqlState,
    ) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let limits = config.rate_limits.clone();
        Emulator {
            config,
            base_url,
            accounts: RwLock::new(indexmap::IndexMap::new()),
            records: RecordStore::default(),
            tokens: TokenStore::default(),
            changes,
            rate_limits: RwLock::new(limits),
            limiter: RateLimiter::default(),
            attachments: Default::default(),
            gql,
            conn_lists: Default::default(),
            rest: Default::default(),
            policy_key_lock: Mutex::new(()),
        }
    }

    /// The URL of an account: `<base_url>/accounts/<account>` (Xurrent: `https://<account>.<domain>`).
    /// It is the `account` of webhook messages and the default JWT issuer.
    pub fn account_url(&self, account: &str) -> String {
        format!("{}/accounts/{}", self.base_url, account)
    }

    /// Create another account (with an administrator `Person` record). Idempotent: an
    /// existing account is returned unchanged.
    pub fn ensure_account(&self, id: &str, name: &str) -> Account {
        if let Some(a) = self.accounts.read().get(id) {
            return a.clone();
        }
        let mut person = Record::new();
        person.insert("name".into(), "Emulator Admin".into());
        person.insert(
            "primaryEmail".into(),
            format!("admin@{id}.example.com").into(),
        );
        person.insert("disabled".into(), false.into());
        let mut accounts = self.accounts.write();
        if let Some(a) = accounts.get(id) {
            return a.clone();
        }
        let person = self.records.insert(id, "Person", person);
        let account = Account {
            id: id.to_string(),
            name: name.to_string(),
            admin_person_id: person
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
        };
        accounts.insert(id.to_string(), account.clone());
        account
    }

    /// An account by id.
    pub fn account(&self, id: &str) -> Option<Account> {
        self.accounts.read().get(id).cloned()
    }

    /// Authenticate request headers the Xurrent way: `Authorization: Bearer <token>` plus
    /// `X-Xurrent-Account` (or the older `X-4me-Account`) naming the token's account.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<TokenInfo, AuthError> {
        let token = bearer_token(headers).ok_or(AuthError::MissingToken)?;
        let info = self.tokens.validate(token).ok_or(AuthError::InvalidToken)?;
        let account = headers
            .get("x-xurrent-account")
            .or_else(|| headers.get("x-4me-account"))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingAccount)?;
        if account != info.account || !self.accounts.read().contains_key(account) {
            return Err(AuthError::WrongAccount(account.to_string()));
        }
        Ok(info)
    }

    /// Current rate limits.
    pub fn rate_limits(&self) -> RateLimits {
        self.rate_limits.read().clone()
    }

    /// Replace the rate limits at runtime (also clears all counters).
    pub fn set_rate_limits(&self, limits: RateLimits) {
        *self.rate_limits.write() = limits;
        self.limiter.reset();
    }

    /// Count one request of `token` against the limits. `graphql` selects the GraphQL-only
    /// burst and cost limits. On success returns the values for the response headers.
    pub fn check_rate_limit(&self, token: &str, graphql: bool) -> Result<RateStatus, RateLimited> {
        let limits = self.rate_limits();
        self.limiter.check(token, &limits, graphql)
    }

    /// Broadcast a change (ignored when nobody listens).
    pub fn notify(&self, change: RecordChange) {
        let _ = self.changes.send(change);
    }

    /// Create a record and broadcast the change. Attributes Xurrent gives every new record of the
    /// type are set when missing (a new `Request` is `assigned`).
    pub fn create_record(
        &self,
        account: &str,
        typename: &str,
        fields: Record,
        person_id: Option<String>,
    ) -> Record {
        let mut fields = fields;
        apply_defaults(typename, &mut fields);
        let rec = self.records.insert(account, typename, fields);
        self.notify(RecordChange {
            account: account.to_string(),
            typename: typename.to_string(),
            kind: ChangeKind::Created,
            before: None,
            after: Some(rec.clone()),
            person_id,
        });
        rec
    }

    /// Update a record and broadcast the change; `None` if it does not exist.
    pub fn update_record(
        &self,
        id: &str,
        patch: Record,
        person_id: Option<String>,
    ) -> Option<Record> {
        let (before, after) = self.records.update(id, patch)?;
        self.notify(RecordChange {
            account: str_field(&after, "_account"),
            typename: str_field(&after, "__typename"),
            kind: ChangeKind::Updated,
            before: Some(before),
            after: Some(after.clone()),
            person_id,
        });
        Some(after)
    }

    /// Delete a record and broadcast the change; `None` if it does not exist.
    pub fn delete_record(&self, id: &str, person_id: Option<String>) -> Option<Record> {
        let before = self.records.delete(id)?;
        self.notify(RecordChange {
            account: str_field(&before, "_account"),
            typename: str_field(&before, "__typename"),
            kind: ChangeKind::Deleted,
            before: Some(before.clone()),
            after: None,
            person_id,
        });
        Some(before)
    }
}

/// Attributes Xurrent gives a new record when the input leaves them out.
const DEFAULTS: &[(&str, &str, &str)] = &[("Request", "status", "assigned")];

fn apply_defaults(typename: &str, fields: &mut Record) {
    for (ty, field, value) in DEFAULTS {
        if *ty == typename && fields.get(*field).is_none_or(serde_json::Value::is_null) {
            fields.insert((*field).into(), (*value).into());
        }
    }
}

fn str_field(rec: &Record, key: &str) -> String {
    rec.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Parse a seed document given as JSON or YAML text.
pub fn parse_seed_text(text: &str) -> Result<serde_json::Value, crate::EmulatorError> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(v);
    }
    serde_yaml::from_str::<serde_json::Value>(text)
        .map_err(|e| crate::EmulatorError::Seed(e.to_string()))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip() {
        let id = encode_node_id("wdc", "Request", 42);
        assert!(!id.contains('/'));
        assert_eq!(
            decode_node_id(&id),
            Some(("wdc".into(), "Request".into(), 42))
        );
        assert_eq!(decode_node_id("not-an-id"), None);
    }

    #[test]
    fn store_insert_update_list_delete() {
        let s = RecordStore::default();
        let mut f = Record::new();
        f.insert("subject".into(), "a".into());
        let a = s.insert("wdc", "Request", f.clone());
        let b = s.insert("wdc", "Request", f);
        assert_eq!(a["_seq"], 1);
        assert_eq!(b["_seq"], 2);
        let mut p = Record::new();
        p.insert("subject".into(), "changed".into());
        p.insert("_seq".into(), 99.into());
        let (before, after) = s.update(b["id"].as_str().unwrap(), p).unwrap();
        assert_eq!(before["subject"], "a");
        assert_eq!(after["subject"], "changed");
        assert_eq!(after["_seq"], 2);
        assert_eq!(s.list("wdc", "Request").len(), 2);
        assert!(s.get_by_seq("wdc", "Request", 2).is_some());
        s.delete(a["id"].as_str().unwrap()).unwrap();
        assert_eq!(s.list("wdc", "Request").len(), 1);
        assert!(s.list("other", "Request").is_empty());
    }

    #[test]
    fn burst_limit_refuses_with_retry_after() {
        let r = RateLimiter::default();
        let limits = RateLimits {
            burst_requests: 2,
            ..RateLimits::xurrent_defaults()
        };
        assert!(r.check("t", &limits, true).is_ok());
        assert!(r.check("t", &limits, true).is_ok());
        let err = r.check("t", &limits, true).unwrap_err();
        assert!(err.retry_after >= 1 && err.retry_after <= 2);
        // REST requests are not subject to the GraphQL burst limit.
        assert!(r.check("t", &limits, false).is_ok());
        assert!(r.check("t", &RateLimits::disabled(), true).is_ok());
    }

    #[test]
    fn switched_off_limits_count_nothing() {
        let r = RateLimiter::default();
        let off = RateLimits::disabled();
        let full = off.requests_per_window;
        for _ in 0..50 {
            let status = r.check("t", &off, true).unwrap();
            assert_eq!(status.remaining, full, "the budget must stay full");
        }
    }
}
