//! The customer secrets store: per (App reference, customer account) what Xurrent sends to
//! the provider in `app_instance.secrets-update` deliveries — the customer's
//! client-credentials OAuth application, its authorization-code application, the customer's
//! webhook policy (public key, issuer, audience) and the secret values typed into the App's
//! UI extension — plus the provider's own webhook policy.
//!
//! Where it lives: one key/value namespace per **solution** (`<solution>#xurrent_app`, see
//! [`namespace`]), shared by the solution's triggers and actions, whatever connection they
//! use. Every value is sealed at rest by the engine's [`Kv`]; inside it, every secret (client
//! secrets, UI extension secrets) is sealed once more on its own (`fsec1.…`), so what
//! [`CustomerStore::get`] returns holds envelopes only — an action hands them on as secret
//! values and reveals them only at the moment it sends them (`Secrets::reveal_in`).
//!
//! Writes go through [`CustomerStore::merge`]: under the store's lock of that customer (so two
//! deliveries arriving together cannot lose each other's values), the stored record is read, the
//! parts present in the update replace the stored ones, secret values are added (new names
//! replace old values, names are never removed) and the record is written back.
//!
//! ```ignore
//! // In an action (the step's outbound `xurrent_app` connection names the solution):
//! let store = CustomerStore::for_connection(ctx.services, connection);
//! if let Some(customer) = store.get("weu_it_phone", "wdc").await? {
//!     let app = customer.client_credentials.unwrap_or_default();
//!     // app.client_secret is sealed: reveal it only inside the token request.
//! }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_engine::action::{ConnectionRef, Services};
use ferry_engine::{Kv, KvError, ProvisionContext, TriggerContext, TriggerError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long a merge may hold a customer's lock (it is released at once after the write).
pub const LOCK_TTL: Duration = Duration::from_secs(15);
/// How long a merge waits for a customer's lock before giving up ([`StoreError::Busy`]).
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

const PROVIDER_POLICY_KEY: &str = "provider/webhook_policy";

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key/value store failed (unreachable, or a value that cannot be opened).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// Another delivery of the same customer held the lock for longer than [`LOCK_WAIT`].
    #[error("the secrets of {0} are being updated by another delivery; try again")]
    Busy(String),
    /// A stored record does not have the expected shape.
    #[error("the stored secrets of {key} are unreadable: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// Cause.
        message: String,
    },
}

impl From<StoreError> for TriggerError {
    fn from(e: StoreError) -> TriggerError {
        tracing::error!(error = %e, "xurrent_app customer secrets store");
        TriggerError::Reject {
            status: 503,
            message: format!("Customer secrets store unavailable: {e}"),
        }
    }
}

impl From<StoreError> for ferry_engine::Signal {
    fn from(e: StoreError) -> ferry_engine::Signal {
        ferry_engine::Signal::Fail(format!("Customer secrets store: {e}"))
    }
}

/// An OAuth application the customer account created for the App.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OauthApplication {
    /// The application's node id (`oauth_application_nodeID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret, **sealed** (`fsec1.…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// A webhook policy: how the deliveries of an account are signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPolicy {
    /// The policy's id (node id for a customer policy; REST id for the provider's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// JWT algorithm, upper case (`ES256`, `RS256`, …).
    pub algorithm: String,
    /// Public key (PEM).
    pub public_key_pem: String,
    /// The issuer (`iss`) the tokens must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The audience the tokens must carry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Everything stored about one customer account of one App.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSecrets {
    /// App Offering reference.
    pub app_reference: String,
    /// Customer account id.
    pub customer_account_id: String,
    /// The client-credentials application (Client Credentials Token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_credentials: Option<OauthApplication>,
    /// The authorization-code application (Authorization Code Token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_code: Option<OauthApplication>,
    /// The customer's webhook policy (verifies Automation Webhook calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<WebhookPolicy>,
    /// UI extension secret values by name, each **sealed**.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// When the record was last merged (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// What one delivery brings: the parts that are `Some` replace the stored ones; `secrets` are
/// added to the stored ones. Secret values must already be sealed ([`CustomerStore::seal`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretsUpdate {
    /// A new client-credentials application.
    pub client_credentials: Option<OauthApplication>,
    /// A new authorization-code application.
    pub authorization_code: Option<OauthApplication>,
    /// A new customer webhook policy.
    pub policy: Option<WebhookPolicy>,
    /// UI extension secrets (sealed) to add or replace.
    pub secrets: BTreeMap<String, String>,
}

impl SecretsUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.client_credentials.is_none()
            && self.authorization_code.is_none()
            && self.policy.is_none()
            && self.secrets.is_empty()
    }

    fn apply(self, record: &mut CustomerSecrets) {
        if self.client_credentials.is_some() {
            record.client_credentials = self.client_credentials;
        }
        if self.authorization_code.is_some() {
            record.authorization_code = self.authorization_code;
        }
        if self.policy.is_some() {
            record.policy = self.policy;
        }
        record.secrets.extend(self.secrets);
    }
}

/// The namespace of a solution's App Connector store (names cannot contain `#`, so it never
/// collides with a connection's or a trigger's).
pub fn namespace(solution: &str) -> String {
    format!("{solution}#xurrent_app")
}

/// The solution of a connection or trigger namespace (`<solution>/<…>`).
fn solution_of(namespace: &str) -> &str {
    namespace.split('/').next().unwrap_or(namespace)
}

/// `/` and `%` escaped, so that a key part cannot reach into another key.
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

/// The key of a customer's record.
pub fn customer_key(app_reference: &str, customer_account_id: &str) -> String {
    format!(
        "customer/{}/{}",
        escape(app_reference),
        escape(customer_account_id)
    )
}

/// The App Connector store of one solution.
#[derive(Clone)]
pub struct CustomerStore<'a> {
    kv: Kv<'a>,
}

impl<'a> CustomerStore<'a> {
    /// The store of `solution`, reached through any [`Kv`] of the same engine.
    pub fn of_solution(any: &Kv<'a>, solution: &str) -> CustomerStore<'a> {
        CustomerStore {
            kv: any.with_namespace(namespace(solution)),
        }
    }

    /// The store of the solution a trigger belongs to.
    pub fn for_trigger(ctx: &TriggerContext<'a>) -> CustomerStore<'a> {
        let solution = solution_of(ctx.kv.namespace()).to_string();
        CustomerStore::of_solution(&ctx.kv, &solution)
    }

    /// The store of the solution a provisioned trigger or connection belongs to.
    pub fn for_provision(ctx: &ProvisionContext<'a>) -> CustomerStore<'a> {
        CustomerStore::of_solution(&ctx.kv, ctx.solution)
    }

    /// The store of the solution of `connection` (for actions: the step's connection).
    pub fn for_connection(services: &'a Services, connection: &ConnectionRef) -> CustomerStore<'a> {
        let kv = services.kv(connection);
        let solution = solution_of(&connection.namespace).to_string();
        CustomerStore::of_solution(&kv, &solution)
    }

    /// The underlying key/value store.
    pub fn kv(&self) -> &Kv<'a> {
        &self.kv
    }

    /// Seal a secret value for a [`SecretsUpdate`].
    pub fn seal(&self, plain: &str) -> String {
        self.kv.seal_secret(plain)
    }

    /// What is stored about `customer_account_id`'s installation of `app_reference`.
    pub async fn get(
        &self,
        app_reference: &str,
        customer_account_id: &str,
    ) -> Result<Option<CustomerSecrets>, StoreError> {
        let key = customer_key(app_reference, customer_account_id);
        read(&self.kv, &key).await
    }

    /// Merge `update` into the stored record under the customer's lock and return the result.
    /// Waits up to [`LOCK_WAIT`] for a concurrent merge of the same customer.
    pub async fn merge(
        &self,
        app_reference: &str,
        customer_account_id: &str,
        update: SecretsUpdate,
    ) -> Result<CustomerSecrets, StoreError> {
        let key = customer_key(app_reference, customer_account_id);
        let lock = format!("lock/{key}");
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let token = loop {
            if let Some(token) = self.kv.try_lock(&lock, LOCK_TTL).await? {
                break token;
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(StoreError::Busy(format!(
                    "{customer_account_id} ({app_reference})"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        let result = async {
            let mut record: CustomerSecrets = read(&self.kv, &key).await?.unwrap_or_default();
            record.app_reference = app_reference.to_string();
            record.customer_account_id = customer_account_id.to_string();
            update.apply(&mut record);
            record.updated_at = Some(chrono::Utc::now().to_rfc3339());
            let value = serde_json::to_value(&record).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                message: e.to_string(),
            })?;
            self.kv.put(&key, &value, None).await?;
            Ok(record)
        }
        .await;
        if let Err(e) = self.kv.unlock(&lock, &token).await {
            tracing::warn!(error = %e, "releasing a customer secrets lock failed; it expires with its TTL");
        }
        result
    }

    /// The provider's webhook policy (created by provisioning), if any.
    pub async fn provider_policy(&self) -> Result<Option<WebhookPolicy>, StoreError> {
        read(&self.kv, PROVIDER_POLICY_KEY).await
    }

    /// Store the provider's webhook policy.
    pub async fn put_provider_policy(&self, policy: &WebhookPolicy) -> Result<(), StoreError> {
        let value = serde_json::to_value(policy).map_err(|e| StoreError::Corrupt {
            key: PROVIDER_POLICY_KEY.into(),
            message: e.to_string(),
        })?;
        Ok(self.kv.put(PROVIDER_POLICY_KEY, &value, None).await?)
    }
}

async fn read<T: for<'de> Deserialize<'de>>(
    kv: &Kv<'_>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match kv.get(key).await? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_reach_into_each_other() {
        assert_eq!(customer_key("phone", "wdc"), "customer/phone/wdc");
        assert_eq!(customer_key("a/b", "c"), "customer/a%2Fb/c");
        assert_ne!(customer_key("a/b", "c"), customer_key("a", "b/c"));
        assert_eq!(solution_of("sol/conn"), "sol");
        assert_eq!(solution_of("sol/rb#trigger"), "sol");
        assert_eq!(namespace("sol"), "sol#xurrent_app");
    }

    #[test]
    fn an_update_replaces_parts_and_adds_secrets() {
        let mut r = CustomerSecrets {
            secrets: BTreeMap::from([("password".into(), "s1".into())]),
            client_credentials: Some(OauthApplication {
                client_id: Some("old".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        SecretsUpdate {
            secrets: BTreeMap::from([("token".into(), "s2".into())]),
            ..Default::default()
        }
        .apply(&mut r);
        assert_eq!(r.secrets.len(), 2);
        assert_eq!(
            r.client_credentials.as_ref().unwrap().client_id.as_deref(),
            Some("old")
        );
        SecretsUpdate {
            client_credentials: Some(OauthApplication {
                client_id: Some("new".into()),
                ..Default::default()
            }),
            secrets: BTreeMap::from([("password".into(), "s3".into())]),
            ..Default::default()
        }
        .apply(&mut r);
        assert_eq!(r.secrets["password"], "s3");
        assert_eq!(r.secrets["token"], "s2");
        assert_eq!(
            r.client_credentials.unwrap().client_id.as_deref(),
            Some("new")
        );
    }
}
