//! Webhook policies: their key material ([`keys`]), their generated names and the JWT issuers
//! that name them. The webhook delivery, OpenID Connect discovery, the Webhook Policies REST API,
//! the App Store install and GraphQL's `webhookPolicyCreate` all use this module; it depends only
//! on the record store.
//!
//! Issuers follow Xurrent: the default issuer of a signed message is the account URL; a webhook
//! with OpenID Connect discovery is signed with the policy issuer
//! `<account URL>/webhook_policies/<policy name>`, whose discovery document and JWKS live under
//! that issuer (so on the issuer's host).

pub mod keys;

pub use keys::{random_hex, random_jti, JwtAlg, KeyError, PolicyKey};

use serde_json::{json, Value};

use crate::{Emulator, Record};

/// The GraphQL type name of policy records.
pub const TYPENAME: &str = "WebhookPolicy";

/// Length of a generated policy name in hexadecimal characters (as Xurrent generates them).
pub const NAME_LEN: usize = 56;

/// A fresh policy name: 56 lower-case hexadecimal characters.
pub fn generate_name() -> String {
    random_hex(NAME_LEN / 2)
}

/// The name of a policy record (empty when it has none yet).
pub fn name(policy: &Record) -> &str {
    policy
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The default JWT issuer of messages signed in `account`: the account URL.
pub fn default_issuer(emu: &Emulator, account: &str) -> String {
    emu.account_url(account)
}

/// The OpenID Connect issuer of a policy: `<account URL>/webhook_policies/<policy name>`.
pub fn oidc_issuer(emu: &Emulator, policy: &Record) -> String {
    let account = policy
        .get("_account")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!(
        "{}/webhook_policies/{}",
        default_issuer(emu, account),
        name(policy)
    )
}

/// The issuer of a message signed with `policy`: the policy's OIDC issuer when the policy is used
/// through OpenID Connect discovery, else the account URL.
pub fn issuer(emu: &Emulator, policy: &Record, oidc_discovery: bool) -> String {
    if oidc_discovery {
        oidc_issuer(emu, policy)
    } else {
        let account = policy
            .get("_account")
            .and_then(Value::as_str)
            .unwrap_or_default();
        default_issuer(emu, account)
    }
}

/// The `kid` of a policy's key (its node id): in the JWKS, and in the JWT header of messages
/// signed through OpenID Connect discovery.
pub fn key_id(policy: &Record) -> &str {
    policy.get("id").and_then(Value::as_str).unwrap_or_default()
}

/// A policy of `account` by its generated name.
pub fn find_by_name(emu: &Emulator, account: &str, policy_name: &str) -> Option<Record> {
    if policy_name.is_empty() {
        return None;
    }
    emu.records
        .list(account, TYPENAME)
        .into_iter()
        .find(|p| name(p) == policy_name)
}

/// Completes the fields of a `WebhookPolicy` about to be created outside this module (GraphQL
/// `webhookPolicyCreate`): a generated `name`, `disabled: false` and key material, so that the
/// create answer can return `publicKeyPem` once. Records of other types are left alone.
pub fn prepare_record(typename: &str, fields: &mut Record) {
    if typename != TYPENAME {
        return;
    }
    if name(fields).is_empty() {
        fields.insert("name".into(), json!(generate_name()));
    }
    fields
        .entry("disabled")
        .or_insert_with(|| Value::Bool(false));
    if fields.contains_key("_signingKey") {
        return;
    }
    let alg = fields
        .get("jwtAlg")
        .and_then(Value::as_str)
        .unwrap_or("es256")
        .to_string();
    match JwtAlg::parse(&alg).and_then(PolicyKey::generate) {
        Ok(key) => {
            fields.insert("jwtAlg".into(), Value::String(key.alg.as_str().into()));
            fields.extend(key.to_fields());
        }
        Err(e) => tracing::warn!(alg = %alg, error = %e, "cannot generate webhook policy key"),
    }
}

/// Creates a webhook policy with a generated name and fresh key material in `account` (the key
/// is generated off the async runtime). Returns the record and the key, whose
/// `public_key_pem` the caller shows once.
pub async fn create(
    emu: &Emulator,
    account: &str,
    alg: JwtAlg,
    mut fields: Record,
    person_id: Option<String>,
) -> Result<(Record, PolicyKey), KeyError> {
    let key = tokio::task::spawn_blocking(move || PolicyKey::generate(alg))
        .await
        .map_err(|e| KeyError::Encoding(e.to_string()))??;
    fields.insert("jwtAlg".into(), json!(alg.as_str()));
    fields
        .entry("disabled")
        .or_insert_with(|| Value::Bool(false));
    fields.insert("name".into(), json!(generate_name()));
    fields.extend(key.to_fields());
    let rec = emu.create_record(account, TYPENAME, fields, person_id);
    Ok((rec, key))
}

/// The key of a policy record, generating and storing one (and a name) for policies that have
/// none yet (seeded ones). `None` when the algorithm cannot be produced.
pub fn ensure_key(emu: &Emulator, policy: &Record) -> Option<PolicyKey> {
    if let Some(key) = PolicyKey::from_fields(policy) {
        return Some(key);
    }
    let id = policy.get("id").and_then(Value::as_str)?;
    // One generator at a time, so that concurrent callers cannot store different keys.
    let _guard = emu.policy_key_lock.lock();
    let current = emu.records.get(id)?;
    if let Some(existing) = PolicyKey::from_fields(&current) {
        return Some(existing);
    }
    let alg = current
        .get("jwtAlg")
        .and_then(Value::as_str)
        .unwrap_or("es256");
    let alg = JwtAlg::parse(alg).ok()?;
    let key = match PolicyKey::generate(alg) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(policy = id, error = %e, "cannot generate webhook policy key");
            return None;
        }
    };
    let mut patch = key.to_fields();
    if name(&current).is_empty() {
        patch.insert("name".into(), json!(generate_name()));
    }
    emu.records.update(id, patch)?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_56_hex() {
        let n = generate_name();
        assert_eq!(n.len(), 56);
        assert!(n
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(n, generate_name());
    }

    #[test]
    fn prepare_record_adds_name_and_keys_to_policies_only() {
        let mut f = Record::new();
        f.insert("jwtAlg".into(), Value::String("es256".into()));
        prepare_record(TYPENAME, &mut f);
        assert!(f["publicKeyPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(name(&f).len(), NAME_LEN);
        assert_eq!(f["disabled"], false);
        assert!(PolicyKey::from_fields(&f).is_some());
        let mut other = Record::new();
        prepare_record("Webhook", &mut other);
        assert!(other.is_empty());
    }
}
