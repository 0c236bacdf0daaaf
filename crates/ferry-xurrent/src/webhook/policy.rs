//! The webhook policy (spec §3.1) and the settings of the inbound connection.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The algorithms a webhook JWT may use. `none` and `HS*` are never accepted; `ES512` is
/// refused too, because the verification library (`ring`) has no P-521.
pub const ALGORITHMS: [&str; 5] = ["RS256", "RS384", "RS512", "ES256", "ES384"];

/// The algorithm names the policy's `algorithm` field offers (spec §3.1).
pub const ALGORITHM_CHOICES: [&str; 6] = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];

/// A JWT algorithm by name, if it is one Ferry accepts.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        _ => None,
    }
}

/// Whether an algorithm is an elliptic-curve one (its key is an EC key).
pub fn is_ec(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::ES256 | Algorithm::ES384)
}

/// A webhook policy: who signs the deliveries and how to check them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The issuer the JWT `iss` must equal (exact mode); blank: the issuer must fall under the
    /// connection's account URL (prefix mode).
    pub account_url: Option<String>,
    /// The algorithm; blank: taken from the JWT header (and checked against [`ALGORITHMS`]).
    pub algorithm: Option<String>,
    /// The public key (PEM); blank: the key is discovered through OpenID Connect.
    pub public_key_pem: Option<String>,
    /// The audience the `aud` claim must contain, when set.
    pub audience: Option<String>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Policy {
    /// The policy in a `policy` config value (absent or not an object: blank).
    pub fn from_config(config: &Value) -> Policy {
        let p = config.get("policy").cloned().unwrap_or(Value::Null);
        Policy {
            account_url: text(&p, "account_url"),
            algorithm: text(&p, "algorithm"),
            public_key_pem: text(&p, "public_key_pem"),
            audience: text(&p, "audience"),
        }
    }

    /// A policy with no value set.
    pub fn is_blank(&self) -> bool {
        *self == Policy::default()
    }

    /// The effective policy (spec §3.1): the trigger's when it has one, else the connection's.
    /// The two are never merged.
    pub fn effective(trigger: Policy, connection: Policy) -> Policy {
        if trigger.is_blank() {
            connection
        } else {
            trigger
        }
    }

    /// The policy validator of spec §3.1: `algorithm` and `public_key_pem` go together, and the
    /// key must be a public key of the algorithm's family.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.algorithm, &self.public_key_pem) {
            (None, None) => Ok(()),
            (Some(_), None) => {
                Err("policy.public_key_pem: required when an algorithm is set".into())
            }
            (None, Some(_)) => Err("policy.algorithm: required when a public key is set".into()),
            (Some(alg), Some(pem)) => {
                let Some(a) = algorithm(alg) else {
                    return Err(format!(
                        "policy.algorithm: '{alg}' is not supported (one of {})",
                        ALGORITHMS.join(", ")
                    ));
                };
                decoding_key(a, pem).map(|_| ())
            }
        }
    }
}

/// Parse a PEM public key for an algorithm (EC for `ES*`, RSA otherwise).
pub fn decoding_key(alg: Algorithm, pem: &str) -> Result<DecodingKey, String> {
    let key = if is_ec(alg) {
        DecodingKey::from_ec_pem(pem.as_bytes())
    } else {
        DecodingKey::from_rsa_pem(pem.as_bytes())
    };
    key.map_err(|_| {
        format!(
            "policy.public_key_pem: not a{} public key in PEM form",
            if is_ec(alg) { "n EC" } else { "n RSA" }
        )
    })
}

/// The inbound connection's settings besides its policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundSettings {
    /// The account URL (`https://<account>.<domain>`): in prefix mode the JWT issuer must fall
    /// under it, and the `webhook.verify` callback must be on its host.
    pub account_url: Option<String>,
    /// Accept deliveries without a JWT when no policy is configured (off by default).
    pub allow_unsigned: bool,
    /// Allow `http` issuers, discovery documents and callbacks on loopback hosts (for
    /// `ferry emulator`; off by default).
    pub allow_http_loopback: bool,
}

impl InboundSettings {
    /// The settings of an inbound connection config (absent: defaults).
    pub fn from_config(config: Option<&Value>) -> InboundSettings {
        let Some(c) = config else {
            return InboundSettings::default();
        };
        InboundSettings {
            account_url: text(c, "account_url"),
            allow_unsigned: c.get("allow_unsigned").and_then(Value::as_bool) == Some(true),
            allow_http_loopback: c.get("allow_http_loopback").and_then(Value::as_bool)
                == Some(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn es256_pem() -> String {
        let key =
            ferry_emulator::policy::PolicyKey::generate(ferry_emulator::policy::JwtAlg::Es256)
                .unwrap();
        key.public_key_pem.unwrap()
    }

    #[test]
    fn policy_validation_follows_the_spec_scenarios() {
        // §9 D 42.
        let pem = es256_pem();
        let ok = Policy::from_config(&json!({"policy": {
            "account_url": "https://wdc.test.host", "algorithm": "ES256", "public_key_pem": pem}}));
        assert_eq!(ok.validate(), Ok(()));
        let only_url =
            Policy::from_config(&json!({"policy": {"account_url": "https://wdc.test.host"}}));
        assert_eq!(only_url.validate(), Ok(()));
        let only_alg = Policy::from_config(&json!({"policy": {"algorithm": "ES256"}}));
        assert!(only_alg.validate().unwrap_err().contains("public_key_pem"));
        let only_pem = Policy::from_config(&json!({"policy": {"public_key_pem": pem}}));
        assert!(only_pem
            .validate()
            .unwrap_err()
            .contains("policy.algorithm"));
        let bad_pem = Policy::from_config(&json!({"policy": {
            "account_url": "https://wdc.test.host", "algorithm": "ES256", "public_key_pem": "abc"}}));
        assert!(bad_pem.validate().unwrap_err().contains("public_key_pem"));
        // An EC key for an RSA algorithm is refused.
        let wrong_family = Policy::from_config(&json!({"policy": {
            "algorithm": "RS256", "public_key_pem": pem}}));
        assert!(wrong_family.validate().is_err());
    }

    #[test]
    fn the_trigger_policy_wins_and_is_not_merged() {
        let t = Policy::from_config(&json!({"policy": {"account_url": "https://a"}}));
        let c =
            Policy::from_config(&json!({"policy": {"account_url": "https://b", "audience": "x"}}));
        assert_eq!(Policy::effective(t.clone(), c.clone()), t);
        assert_eq!(Policy::effective(Policy::default(), c.clone()), c);
        assert!(Policy::from_config(&json!({"policy": {"account_url": "  "}})).is_blank());
    }
}
