//! Result flattening (spec §4.7): connection layers `{"nodes": [...]}` become plain lists.

use serde_json::Value;

/// A copy of `v` in which every object whose **only** key is `nodes` and whose value is an
/// array is replaced by that array, recursively (nested connections inside records are
/// flattened too). Objects with more keys (`{totalCount, nodes}`) and `nodes` with a non-array
/// value are kept; scalars and null are unchanged. The input is not modified.
pub fn flatten(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                if let Some(Value::Array(items)) = m.get("nodes") {
                    return Value::Array(items.iter().map(flatten).collect());
                }
            }
            Value::Object(m.iter().map(|(k, v)| (k.clone(), flatten(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(flatten).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_key_nodes_hash_becomes_an_array() {
        let v = json!({"skills": {"nodes": [{"id": "s1", "name": "Ruby"}]}});
        assert_eq!(
            flatten(&v),
            json!({"skills": [{"id": "s1", "name": "Ruby"}]})
        );
    }

    #[test]
    fn nested_connections_are_flattened_at_every_level() {
        let v = json!({"members": {"nodes": [
            {"id": "p1", "skills": {"nodes": [{"name": "Ruby"}]}},
            {"id": "p2", "skills": {"nodes": []}}
        ]}});
        assert_eq!(
            flatten(&v),
            json!({"members": [
                {"id": "p1", "skills": [{"name": "Ruby"}]},
                {"id": "p2", "skills": []}
            ]})
        );
    }

    #[test]
    fn empty_nodes_become_an_empty_list() {
        assert_eq!(flatten(&json!({"nodes": []})), json!([]));
    }

    #[test]
    fn hashes_with_more_keys_or_non_array_nodes_are_untouched() {
        let with_count = json!({"totalCount": 2, "nodes": [{"id": 1}]});
        assert_eq!(flatten(&with_count), with_count);
        let odd = json!({"nodes": {"count": 3}});
        assert_eq!(flatten(&odd), odd);
    }

    #[test]
    fn arrays_scalars_and_null() {
        let v = json!([{"a": {"nodes": [1]}}, {"a": {"nodes": [2]}}]);
        assert_eq!(flatten(&v), json!([{"a": [1]}, {"a": [2]}]));
        for s in [json!(null), json!(1), json!("x"), json!(true)] {
            assert_eq!(flatten(&s), s);
        }
    }

    #[test]
    fn the_input_is_not_mutated() {
        let v = json!({"skills": {"nodes": [{"id": "s1"}]}});
        let before = v.clone();
        let _ = flatten(&v);
        assert_eq!(v, before);
    }
}
