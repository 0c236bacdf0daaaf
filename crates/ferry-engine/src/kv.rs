//! [`Kv`]: a key/value store scoped to one connection or one trigger, kept in the job store
//! (so every worker, and later every node, shares it). Values are sealed at rest; entries
//! may expire.

use std::time::Duration;

use ferry_core::secrets::Secrets;
use ferry_store::{KvClaim, Store};
use serde_json::Value;

use crate::action::Signal;
use crate::trigger::TriggerError;

/// Why a key/value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store could not be reached or answered with an error.
    #[error("key/value store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be opened (wrong master key or corrupt entry).
    #[error("key/value entry '{key}' unreadable: {message}")]
    Unreadable {
        /// The key.
        key: String,
        /// Cause.
        message: String,
    },
}

impl From<KvError> for TriggerError {
    fn from(e: KvError) -> TriggerError {
        tracing::error!(error = %e, "trigger key/value store");
        TriggerError::Reject {
            status: 503,
            message: format!("The trigger's {e}; try again."),
        }
    }
}

impl From<KvError> for Signal {
    fn from(e: KvError) -> Signal {
        Signal::Fail(format!("Connection store: {e}"))
    }
}

/// A scoped key/value store. Cheap to create; borrow it from a context.
#[derive(Clone)]
pub struct Kv<'a> {
    store: &'a dyn Store,
    secrets: &'a Secrets,
    namespace: String,
}

impl<'a> Kv<'a> {
    /// The store of `namespace` (see [`trigger_namespace`] and `ConnectionRef::namespace`).
    pub fn new(store: &'a dyn Store, secrets: &'a Secrets, namespace: String) -> Kv<'a> {
        Kv {
            store,
            secrets,
            namespace,
        }
    }

    /// The namespace this store writes to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The same store under another namespace (e.g. one a connector shares between the
    /// triggers and actions of a solution).
    pub fn with_namespace(&self, namespace: String) -> Kv<'a> {
        Kv {
            store: self.store,
            secrets: self.secrets,
            namespace,
        }
    }

    /// Seal a secret value (`fsec1.…`), e.g. to keep it sealed inside a stored value that
    /// actions later hand on as a secret.
    pub fn seal_secret(&self, plain: &str) -> String {
        self.secrets.seal(plain)
    }

    /// Take the store lock `<namespace>/<name>` for `ttl` (the store's owner-checked lock);
    /// returns its token, or `None` when someone else holds it.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, KvError> {
        let token = uuid::Uuid::new_v4().to_string();
        let key = format!("{}/{name}", self.namespace);
        match self.store.lock_acquire(&key, &token, ttl).await {
            Ok(true) => Ok(Some(token)),
            Ok(false) => Ok(None),
            Err(e) => Err(KvError::Unavailable(e.to_string())),
        }
    }

    /// Release a lock taken with [`Kv::try_lock`] (a lock that expired meanwhile is left alone).
    pub async fn unlock(&self, name: &str, token: &str) -> Result<(), KvError> {
        let key = format!("{}/{name}", self.namespace);
        self.store
            .lock_release(&key, token)
            .await
            .map(|_| ())
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    fn seal(&self, value: &Value) -> Value {
        Value::String(self.secrets.seal(&value.to_string()))
    }

    /// Read a value; expired and absent entries read as `None`.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, KvError> {
        let stored = self
            .store
            .kv_get(&self.namespace, key)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let unreadable = |message: String| KvError::Unreadable {
            key: key.to_string(),
            message,
        };
        let Value::String(sealed) = stored else {
            return Err(unreadable("not a sealed value".into()));
        };
        let plain = self
            .secrets
            .open(&sealed)
            .map_err(|e| unreadable(e.to_string()))?;
        serde_json::from_str(&plain)
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
    }

    /// Write a value; `ttl` of `None` never expires.
    pub async fn put(
        &self,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.store
            .kv_put(&self.namespace, key, &self.seal(value), ttl)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    /// Write a value only if the key is absent or expired; returns whether it was written.
    /// This is atomic across workers: use it for replay windows (`jti` seen → `false`).
    pub async fn put_if_absent(
        &self,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        self.store
            .kv_put_if_absent(&self.namespace, key, &self.seal(value), ttl)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    /// A claim of `key` (sealed `value`, expiring after `ttl`) to be made together with a job:
    /// see [`crate::TriggerClaim`]. Nothing is written here.
    pub fn claim(&self, key: &str, value: &Value, ttl: Option<Duration>) -> KvClaim {
        KvClaim {
            ns: self.namespace.clone(),
            key: key.to_string(),
            value: self.seal(value),
            ttl,
        }
    }

    /// Delete a key (no error if absent).
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.store
            .kv_delete(&self.namespace, key)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}

/// The key/value namespace of a runbook's trigger (connection namespaces are
/// `<solution>/<connection>`; names cannot contain `#`).
pub fn trigger_namespace(solution: &str, runbook: &str) -> String {
    format!("{solution}/{runbook}#trigger")
}
