//! Seeding records from a JSON/YAML document.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value;

use crate::{parse_seed_text, Emulator, EmulatorError, Record};

/// What a seed created.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeedSummary {
    /// Number of records created.
    pub created: usize,
    /// Node id of every record that had a `"ref"` label, by label.
    pub refs: IndexMap<String, String>,
}

impl Emulator {
    /// Seed records into `account` from a document of this shape (JSON shown; YAML is the same):
    ///
    /// ```json
    /// { "records": {
    ///     "Team":    [ { "ref": "ops", "name": "Operations" } ],
    ///     "Request": [ { "ref": "r1", "subject": "Printer", "status": "assigned",
    ///                    "team": { "$ref": "ops" } } ],
    ///     "Note":    [ { "text": "hello", "_owner": { "$ref": "r1" } } ] } }
    /// ```
    ///
    /// * Keys of `records` are GraphQL object type names of the SDL that implement `Node`.
    /// * Field names are GraphQL field names of that type; values are stored as given (enum
    ///   values may use the GraphQL name or the `@wireValue` spelling).
    /// * `"ref": "<label>"` names a record (the label is not stored).
    /// * `{"$ref": "<label>"}` (also inside arrays) is replaced by the node id of the labelled
    ///   record, which is how references (`team`) and lists of references are linked;
    ///   `"_owner"` links a nested record (e.g. a `Note`) to the record it belongs to.
    /// * `createdAt` / `updatedAt` may be given; otherwise they are set to now.
    ///
    /// Seeding does not broadcast record changes (no webhooks fire).
    pub fn seed_from_value(
        &self,
        account: &str,
        doc: &Value,
    ) -> Result<SeedSummary, EmulatorError> {
        if self.account(account).is_none() {
            return Err(EmulatorError::Seed(format!("unknown account '{account}'")));
        }
        let records = doc
            .get("records")
            .and_then(Value::as_object)
            .ok_or_else(|| EmulatorError::Seed("document needs a \"records\" object".into()))?;
        // Validate everything before creating anything.
        for (typename, list) in records {
            if !self.gql.is_record_type(typename) {
                return Err(EmulatorError::Seed(format!(
                    "'{typename}' is not a record type of the schema"
                )));
            }
            let list = list.as_array().ok_or_else(|| {
                EmulatorError::Seed(format!("records.{typename} must be an array"))
            })?;
            for (i, r) in list.iter().enumerate() {
                if !r.is_object() {
                    return Err(EmulatorError::Seed(format!(
                        "records.{typename}[{i}] must be an object"
                    )));
                }
            }
        }
        // Every `$ref` must name a `ref` label of the document.
        let labels: std::collections::HashSet<&str> = records
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|r| r.get("ref").and_then(Value::as_str))
            .collect();
        for list in records.values().filter_map(Value::as_array) {
            for r in list.iter().filter_map(Value::as_object) {
                for v in r.values() {
                    if let Some(missing) = first_unknown_ref(v, &labels) {
                        return Err(EmulatorError::Seed(format!("unknown ref '{missing}'")));
                    }
                }
            }
        }
        let mut summary = SeedSummary::default();
        let mut pending: Vec<(String, Record)> = Vec::new();
        for (typename, list) in records {
            for r in list.as_array().into_iter().flatten() {
                let Some(obj) = r.as_object() else { continue };
                let mut fields = Record::new();
                let mut refs = Record::new();
                let mut label = None;
                for (k, v) in obj {
                    if k == "ref" {
                        label = v.as_str().map(str::to_string);
                    } else if contains_ref(v) {
                        refs.insert(k.clone(), v.clone());
                    } else {
                        fields.insert(k.clone(), self.gql.normalize_enum_value(typename, k, v));
                    }
                }
                let rec = self.records.insert(account, typename, fields);
                let id = rec
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                summary.created += 1;
                if let Some(l) = label {
                    if summary.refs.insert(l.clone(), id.clone()).is_some() {
                        return Err(EmulatorError::Seed(format!("duplicate ref '{l}'")));
                    }
                }
                if !refs.is_empty() {
                    pending.push((id, refs));
                }
            }
        }
        for (id, refs) in pending {
            let mut patch = Record::new();
            for (k, v) in refs {
                patch.insert(k, resolve_refs(&v, &summary.refs)?);
            }
            self.records.update(&id, patch);
        }
        Ok(summary)
    }

    /// Seed from a `.json`, `.yaml` or `.yml` file (see [`Emulator::seed_from_value`]).
    pub fn seed_from_file(&self, account: &str, path: &Path) -> Result<SeedSummary, EmulatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let doc = parse_seed_text(&text)?;
        self.seed_from_value(account, &doc)
    }
}

fn ref_label(v: &Value) -> Option<&str> {
    let o = v.as_object()?;
    if o.len() != 1 {
        return None;
    }
    o.get("$ref").and_then(Value::as_str)
}

fn first_unknown_ref<'a>(
    v: &'a Value,
    labels: &std::collections::HashSet<&str>,
) -> Option<&'a str> {
    if let Some(l) = ref_label(v) {
        return (!labels.contains(l)).then_some(l);
    }
    v.as_array()?
        .iter()
        .find_map(|x| first_unknown_ref(x, labels))
}

fn contains_ref(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(contains_ref),
        _ => ref_label(v).is_some(),
    }
}

fn resolve_refs(v: &Value, refs: &IndexMap<String, String>) -> Result<Value, EmulatorError> {
    if let Some(label) = ref_label(v) {
        return refs
            .get(label)
            .map(|id| Value::String(id.clone()))
            .ok_or_else(|| EmulatorError::Seed(format!("unknown ref '{label}'")));
    }
    match v {
        Value::Array(a) => Ok(Value::Array(
            a.iter()
                .map(|x| resolve_refs(x, refs))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}
