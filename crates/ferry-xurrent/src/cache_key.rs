//! Keys for caching derived artifacts (spec §4.8): a digest of the operation, the selected
//! root field and the resolved `include_fields`, stable whatever the key order.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `v` as JSON with object keys sorted at every level and no whitespace.
pub fn stable_json(v: &Value) -> String {
    let mut out = String::new();
    write_stable(v, &mut out);
    out
}

fn write_stable(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_stable(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_stable(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `sha256hex("<operation>\n<name>\n<stable JSON of include_fields>")`; a missing include
/// (`None` or `null`) is `{}`. `operation` is `query` or `mutation`.
pub fn bundle_digest(operation: &str, name: &str, include: Option<&Value>) -> String {
    let inc = match include {
        None | Some(Value::Null) => "{}".to_string(),
        Some(v) => stable_json(v),
    };
    hex::encode(Sha256::digest(
        format!("{operation}\n{name}\n{inc}").as_bytes(),
    ))
}

/// The store key of a derived bundle: `gql_bundle_<part>_<generation>_<digest>` (`part` is
/// `in` or `out`); a new generation orphans every older key.
pub fn bundle_key(part: &str, generation: u64, digest: &str) -> String {
    format!("gql_bundle_{part}_{generation}_{digest}")
}

/// The most characters of a failure message kept in the negative cache (spec §4.8).
pub const MAX_FAILURE_MESSAGE: usize = 200;

/// The negative-cache key of a failed introspection (spec §4.8):
/// `introspection_failure_<sha256hex(tuple)>` where the tuple is the newline-joined GraphQL
/// endpoint, OAuth endpoint, account id, client id, client secret and personal access token
/// (absent ones empty). Hashed, so no secret appears in the key; changing any element
/// changes the key.
pub fn introspection_failure_key(parts: [Option<&str>; 6]) -> String {
    let tuple = parts.map(|p| p.unwrap_or("")).join("\n");
    format!(
        "introspection_failure_{}",
        hex::encode(Sha256::digest(tuple.as_bytes()))
    )
}

/// A failure message bounded to [`MAX_FAILURE_MESSAGE`] characters for the negative cache.
pub fn bounded_failure_message(message: &str) -> String {
    message.chars().take(MAX_FAILURE_MESSAGE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn introspection_failure_key_hides_secrets_and_changes_with_any_part() {
        let base = [
            Some("https://graphql.xurrent-demo.com"),
            Some("https://oauth.xurrent-demo.com/token"),
            Some("wdc"),
            Some("client"),
            Some("s3cr3t-client-secret"),
            None,
        ];
        let key = introspection_failure_key(base);
        assert!(key.starts_with("introspection_failure_"));
        assert!(!key.contains("s3cr3t"));
        for i in 0..6 {
            let mut changed = base;
            changed[i] = Some("other");
            assert_ne!(introspection_failure_key(changed), key, "part {i}");
        }
        assert_eq!(introspection_failure_key(base), key);
        assert_eq!(
            bounded_failure_message(&"é".repeat(300)).chars().count(),
            200
        );
    }

    #[test]
    fn o190_stable_digest() {
        let a = bundle_digest("query", "people", Some(&json!({"b": 1, "a": 2})));
        let b = bundle_digest(
            "query",
            "people",
            Some(&serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap()),
        );
        assert_eq!(a, b);
        assert_ne!(
            bundle_digest("query", "people", Some(&json!({"a": false}))),
            bundle_digest("query", "people", Some(&json!({})))
        );
        assert_eq!(
            bundle_digest("query", "people", None),
            hex::encode(Sha256::digest(b"query\npeople\n{}"))
        );
        assert_ne!(
            bundle_digest("query", "people", None),
            bundle_digest("mutation", "people", None)
        );
        let key = bundle_key("in", 1, &a);
        assert_eq!(key, format!("gql_bundle_in_1_{a}"));
        assert_ne!(bundle_key("in", 2, &a), key);
        assert_ne!(bundle_key("out", 1, &a), key);
        assert_eq!(
            stable_json(&json!({"z": {"y": [1, {"b": true, "a": null}]}, "a": "x"})),
            r#"{"a":"x","z":{"y":[1,{"a":null,"b":true}]}}"#
        );
    }
}
