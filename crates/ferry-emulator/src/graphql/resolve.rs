//! Generic resolution over the record store: value conversion, connections (paging, filter,
//! order) and references.

use std::cmp::Ordering;
use std::sync::Arc;

use async_graphql::dynamic::FieldValue;
use async_graphql::{Name, Value};
use base64::Engine;
use serde_json::Value as Json;

use super::model::{Kind, Model};
use crate::{decode_node_id, Emulator, RateStatus, Record};

/// Per-request data available to every resolver.
pub(crate) struct Ctx {
    pub emu: Arc<Emulator>,
    /// The SDL model the schema was built from.
    pub model: Arc<Model>,
    pub account: String,
    pub person_id: Option<String>,
    pub rate: RateStatus,
}

/// One page of a connection.
pub(crate) struct ConnPage {
    pub items: Vec<Arc<Record>>,
    /// Offset of `items[0]` within the filtered, ordered list.
    pub offset: usize,
    pub total: usize,
    pub has_next: bool,
    pub has_prev: bool,
    /// Concrete type of each item when the connection's item type is abstract.
    pub abstract_items: bool,
}

/// One edge of a connection.
pub(crate) struct EdgeVal {
    pub cursor: String,
    pub node: Arc<Record>,
    pub abstract_item: bool,
}

/// Paging arguments of a connection field.
#[derive(Debug, Default, Clone)]
pub(crate) struct Paging {
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// Maximum (and default) page size.
pub(crate) const MAX_PAGE: i64 = 100;

pub(crate) fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(offset.to_string())
}

pub(crate) fn decode_cursor(c: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
    std::str::from_utf8(&bytes).ok()?.parse().ok()
}

/// Apply relay paging to an already filtered and ordered list (only the page is copied).
pub(crate) fn paginate(
    items: &[Arc<Record>],
    paging: &Paging,
    abstract_items: bool,
) -> Result<ConnPage, String> {
    for (name, v) in [("first", paging.first), ("last", paging.last)] {
        if let Some(n) = v {
            if !(1..=MAX_PAGE).contains(&n) {
                return Err(format!(
                    "Argument '{name}' must be between 1 and {MAX_PAGE}, got {n}"
                ));
            }
        }
    }
    let total = items.len();
    let mut start = 0usize;
    let mut end = total;
    if let Some(a) = &paging.after {
        let i = decode_cursor(a).ok_or_else(|| format!("Invalid cursor '{a}'"))?;
        start = (i + 1).min(total);
    }
    if let Some(b) = &paging.before {
        let i = decode_cursor(b).ok_or_else(|| format!("Invalid cursor '{b}'"))?;
        end = i.min(total);
    }
    if end < start {
        end = start;
    }
    let first = match (paging.first, paging.last) {
        (None, None) => Some(MAX_PAGE),
        (f, _) => f,
    };
    if let Some(f) = first {
        end = end.min(start + f as usize);
    }
    if let Some(l) = paging.last {
        start = start.max(end.saturating_sub(l as usize));
    }
    let page: Vec<Arc<Record>> = items[start..end].to_vec();
    Ok(ConnPage {
        items: page,
        offset: start,
        total,
        has_next: end < total,
        has_prev: start > 0,
        abstract_items,
    })
}

/// Convert stored JSON to a GraphQL value.
pub(crate) fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.clone()),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        Json::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (Name::new(k), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Convert a GraphQL (argument) value to JSON; enum values become strings.
pub(crate) fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Number(n) => Json::Number(n.clone()),
        Value::String(s) => Json::String(s.clone()),
        Value::Enum(e) => Json::String(e.to_string()),
        Value::Binary(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::List(l) => Json::Array(l.iter().map(value_to_json).collect()),
        Value::Object(o) => Json::Object(
            o.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// Convert a stored enum value to the GraphQL enum (accepting the wire spelling); `None`
/// when it is not a value of the enum.
pub(crate) fn enum_value(model: &Model, enum_type: &str, v: &Json) -> Option<Value> {
    match v {
        Json::String(s) => model
            .enum_name(enum_type, s)
            .map(|n| Value::Enum(Name::new(n))),
        Json::Array(a) => Some(Value::List(
            a.iter()
                .filter_map(|x| enum_value(model, enum_type, x))
                .collect(),
        )),
        _ => None,
    }
}

/// Wrap a record (or embedded object) as a field value, with its concrete type when the
/// declared type is abstract.
pub(crate) fn record_value(rec: Arc<Record>, abstract_ty: bool) -> Option<FieldValue<'static>> {
    if abstract_ty {
        let ty = rec.get("__typename").and_then(Json::as_str)?.to_string();
        Some(FieldValue::owned_any(rec).with_type(ty))
    } else {
        Some(FieldValue::owned_any(rec))
    }
}

/// Resolve a stored reference (node id string or embedded object) to a record.
pub(crate) fn deref(emu: &Emulator, account: &str, v: &Json) -> Option<Arc<Record>> {
    match v {
        Json::String(id) => {
            let rec = emu.records.get_arc(id)?;
            // Records of other accounts are invisible.
            (rec.get("_account").and_then(Json::as_str) == Some(account)).then_some(rec)
        }
        Json::Object(o) => Some(Arc::new(o.clone())),
        _ => None,
    }
}

/// The `Account` object of an account id.
pub(crate) fn account_object(emu: &Emulator, account: &str) -> Option<Arc<Record>> {
    let a = emu.account(account)?;
    let mut o = Record::new();
    o.insert("__typename".into(), "Account".into());
    o.insert("id".into(), a.id.clone().into());
    o.insert("name".into(), a.name.into());
    o.insert("disabled".into(), false.into());
    o.insert("directory".into(), false.into());
    o.insert(
        "url".into(),
        format!("{}/accounts/{}", emu.base_url, a.id).into(),
    );
    Some(Arc::new(o))
}

/// Record types whose records can appear in a connection of `item_type`.
pub(crate) fn concrete_types(model: &Model, item_type: &str) -> Vec<String> {
    match model.kind(item_type) {
        Some(Kind::Object) => vec![item_type.to_string()],
        Some(Kind::Interface) => model
            .types
            .values()
            .filter(|t| t.kind == Kind::Object && t.interfaces.iter().any(|i| i == item_type))
            .map(|t| t.name.clone())
            .collect(),
        Some(Kind::Union) => model
            .get(item_type)
            .map(|t| t.members.clone())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// All records of the account that can be items of a connection of `item_type`.
pub(crate) fn records_of(emu: &Emulator, account: &str, types: &[String]) -> Vec<Arc<Record>> {
    if types.len() == 1 {
        return emu.records.list_arc(account, &types[0]);
    }
    let mut all = Vec::new();
    for t in types {
        all.extend(emu.records.list_arc(account, t));
    }
    all.sort_by_key(|r| created_key(r));
    all
}

fn created_key(r: &Record) -> (String, u64) {
    (
        r.get("createdAt")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        r.get("_seq").and_then(Json::as_u64).unwrap_or(0),
    )
}

// ---------------------------------------------------------------- filtering

/// Record key a filter or order field reads.
fn record_key(field: &str) -> &str {
    match field {
        "account" => "_account",
        other => other,
    }
}

/// Whether a record passes `customFilters` (`[{name, values, negate}]`), matched against the
/// record's `customFields` (`[{id, value}]`); a `null` in `values` matches an empty field.
fn matches_custom_filters(rec: &Record, filters: &Json) -> bool {
    let fields = rec.get("customFields").and_then(Json::as_array);
    filters.as_array().into_iter().flatten().all(|f| {
        let Some(name) = f.get("name").and_then(Json::as_str) else {
            return true;
        };
        let actual = fields
            .and_then(|cf| {
                cf.iter()
                    .find(|c| c.get("id").and_then(Json::as_str) == Some(name))
            })
            .and_then(|c| c.get("value"))
            .unwrap_or(&Json::Null);
        let mut cond = serde_json::Map::new();
        cond.insert(
            "values".into(),
            f.get("values").cloned().unwrap_or(Json::Array(Vec::new())),
        );
        if let Some(n) = f.get("negate") {
            cond.insert("negate".into(), n.clone());
        }
        matches_condition(actual, &cond)
    })
}

/// Whether a record passes a connection filter (a JSON object of filter fields).
#[cfg(test)]
pub(crate) fn matches_filter(rec: &Record, filter: &serde_json::Map<String, Json>) -> bool {
    matches_filter_with(rec, filter, &|_, _| Json::Null)
}

/// The value a filter field reads when the record has no such field: for a name like
/// `appOfferingReference` or `teamName`, the `reference` / `name` of the record referenced by
/// `appOffering` / `team`.
pub(crate) fn derived_value(emu: &Emulator, rec: &Record, field: &str) -> Json {
    let account = rec
        .get("_account")
        .and_then(Json::as_str)
        .unwrap_or_default();
    for (i, c) in field.char_indices().skip(1) {
        if !c.is_ascii_uppercase() {
            continue;
        }
        let (stem, rest) = field.split_at(i);
        let Some(target) = rec.get(stem).filter(|v| v.is_string()) else {
            continue;
        };
        let Some(r) = deref(emu, account, target) else {
            continue;
        };
        let mut key = rest.to_string();
        key[..1].make_ascii_lowercase();
        return r.get(&key).cloned().unwrap_or(Json::Null);
    }
    Json::Null
}

/// [`matches_filter`] with a fallback for filter fields the record does not have.
pub(crate) fn matches_filter_with(
    rec: &Record,
    filter: &serde_json::Map<String, Json>,
    derive: &dyn Fn(&Record, &str) -> Json,
) -> bool {
    filter.iter().all(|(field, cond)| {
        if cond.is_null() {
            return true;
        }
        if field == "customFilters" {
            return matches_custom_filters(rec, cond);
        }
        if field == "query" {
            return cond.as_str().is_none_or(|q| text_search(rec, q));
        }
        let derived;
        let actual = match rec.get(record_key(field)) {
            Some(v) => v,
            None => {
                derived = derive(rec, field);
                &derived
            }
        };
        match cond {
            Json::Bool(b) => actual.as_bool().unwrap_or(false) == *b,
            Json::Object(c) => matches_condition(actual, c),
            Json::String(s) => scalar_eq(actual, &Json::String(s.clone())),
            Json::Number(_) => scalar_eq(actual, cond),
            Json::Array(vals) => vals.iter().any(|v| scalar_eq(actual, v)),
            Json::Null => true,
        }
    })
}

/// The `query` filter: case-insensitive substring search over the record's string fields.
fn text_search(rec: &Record, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return true;
    }
    rec.iter().any(|(k, v)| {
        !k.starts_with('_')
            && k != "id"
            && v.as_str().is_some_and(|s| s.to_lowercase().contains(&q))
    })
}

fn matches_condition(actual: &Json, c: &serde_json::Map<String, Json>) -> bool {
    let mut ok = true;
    if let Some(Json::Array(values)) = c.get("values") {
        ok &= match actual {
            Json::Array(items) if items.is_empty() => values.iter().any(Json::is_null),
            Json::Array(items) => items.iter().any(|i| values.iter().any(|v| scalar_eq(i, v))),
            other => values.iter().any(|v| scalar_eq(other, v)),
        };
    }
    for (op, want) in [
        ("greaterThan", Ordering::Greater),
        ("lessThan", Ordering::Less),
    ] {
        if let Some(bound) = c.get(op).filter(|b| !b.is_null()) {
            ok &= compare_json(actual, bound).is_some_and(|o| o == want);
        }
    }
    for (op, not) in [
        ("greaterThanOrEqualTo", Ordering::Less),
        ("lessThanOrEqualTo", Ordering::Greater),
    ] {
        if let Some(bound) = c.get(op).filter(|b| !b.is_null()) {
            ok &= compare_json(actual, bound).is_some_and(|o| o != not);
        }
    }
    if c.get("negate").and_then(Json::as_bool).unwrap_or(false) {
        !ok
    } else {
        ok
    }
}

fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar_eq(actual: &Json, want: &Json) -> bool {
    // Embedded objects (e.g. an `Account`) compare by their id.
    if let Json::Object(o) = actual {
        return o.get("id").is_some_and(|id| scalar_eq(id, want));
    }
    match (actual, want) {
        (Json::Null, Json::Null) => true,
        (Json::Null, _) | (_, Json::Null) => false,
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        _ => match (scalar_text(actual), scalar_text(want)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

fn as_number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_instant(v: &Json) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

/// Compare two stored values: numbers numerically, timestamps as instants, other strings
/// lexically (which orders ISO 8601 dates correctly). `None` if either is null.
pub(crate) fn compare_json(a: &Json, b: &Json) -> Option<Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x.partial_cmp(&y);
    }
    if let (Some(x), Some(y)) = (as_instant(a), as_instant(b)) {
        return Some(x.cmp(&y));
    }
    match (a, b) {
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        _ => Some(scalar_text(a)?.cmp(&scalar_text(b)?)),
    }
}

/// The value an order field sorts on: the record's own field, or for derived fields such as
/// `teamName` / `problemId` the `name` / numeric id of the referenced record.
fn order_key(emu: &Emulator, rec: &Record, field: &str) -> Json {
    let key = match field {
        "id" => "_seq",
        f => record_key(f),
    };
    if let Some(v) = rec.get(key) {
        return v.clone();
    }
    let account = rec
        .get("_account")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let follow = |stem: &str, target: &str| {
        rec.get(stem)
            .and_then(|r| deref(emu, account, r))
            .and_then(|r| r.get(target).cloned())
            .unwrap_or(Json::Null)
    };
    if let Some(stem) = field.strip_suffix("Name") {
        return follow(stem, "name");
    }
    if let Some(stem) = field.strip_suffix("Id") {
        return follow(stem, "_seq");
    }
    Json::Null
}

/// Sort records by `order` entries (`(field, descending)`); nulls sort last. Stable, so the
/// default `_seq` order breaks ties.
pub(crate) fn sort_records(emu: &Emulator, items: &mut Vec<Arc<Record>>, order: &[(String, bool)]) {
    if order.is_empty() {
        return;
    }
    let mut keyed: Vec<(Vec<Json>, Arc<Record>)> = items
        .drain(..)
        .map(|r| {
            (
                order.iter().map(|(f, _)| order_key(emu, &r, f)).collect(),
                r,
            )
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for (i, (_, desc)) in order.iter().enumerate() {
            let (x, y) = (&a[i], &b[i]);
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => {
                    let o = compare_json(x, y).unwrap_or(Ordering::Equal);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    items.extend(keyed.into_iter().map(|(_, r)| r));
}

/// Records that belong to `parent` for a nested connection `field` with item types `types`:
/// a list of ids stored in the parent's field, or records pointing back at the parent
/// (`_owner`, or any field holding the parent's id).
pub(crate) fn nested_records(
    emu: &Emulator,
    parent: &Record,
    field: &str,
    types: &[String],
) -> Vec<Arc<Record>> {
    let account = parent
        .get("_account")
        .and_then(Json::as_str)
        .unwrap_or_default();
    if let Some(Json::Array(list)) = parent.get(field) {
        return list.iter().filter_map(|v| deref(emu, account, v)).collect();
    }
    let Some(pid) = parent.get("id").and_then(Json::as_str) else {
        return Vec::new();
    };
    let points_at_parent = |r: &Record| {
        if let Some(owner) = r.get("_owner").and_then(Json::as_str) {
            if owner != pid {
                return false;
            }
            return r
                .get("_field")
                .and_then(Json::as_str)
                .is_none_or(|f| f == field);
        }
        r.iter().any(|(k, v)| {
            !k.starts_with('_')
                && k != "id"
                && match v {
                    Json::String(s) => s == pid,
                    Json::Array(a) => a.iter().any(|x| x.as_str() == Some(pid)),
                    _ => false,
                }
        })
    };
    records_of(emu, account, types)
        .into_iter()
        .filter(|r| points_at_parent(r))
        .collect()
}

/// Look a node up by id for the request's account.
pub(crate) fn node_by_id(emu: &Emulator, account: &str, id: &str) -> Option<Arc<Record>> {
    let (acc, _, _) = decode_node_id(id)?;
    if acc != account {
        return None;
    }
    emu.records.get_arc(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Json) -> Arc<Record> {
        Arc::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn paging_first_after_last() {
        let items: Vec<_> = (0..10).map(|i| rec(json!({ "n": i }))).collect();
        let p = paginate(
            &items,
            &Paging {
                first: Some(3),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(p.items.len(), 3);
        assert!(p.has_next && !p.has_prev);
        let after = encode_cursor(8);
        let p = paginate(
            &items,
            &Paging {
                first: Some(3),
                after: Some(after),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0]["n"], 9);
        assert!(!p.has_next && p.has_prev);
        let p = paginate(
            &items,
            &Paging {
                last: Some(2),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(p.offset, 8);
        assert!(paginate(
            &items,
            &Paging {
                first: Some(0),
                ..Default::default()
            },
            false
        )
        .is_err());
        assert!(paginate(
            &items,
            &Paging {
                first: Some(101),
                ..Default::default()
            },
            false
        )
        .is_err());
    }

    #[test]
    fn filter_conditions() {
        let r = rec(json!({ "status": "assigned", "n": 5, "disabled": false,
                             "createdAt": "2026-01-02T00:00:00Z", "tags": ["a", "b"] }));
        let f = |v: Json| matches_filter(&r, v.as_object().unwrap());
        assert!(f(
            json!({ "status": { "values": ["assigned", "completed"] } })
        ));
        assert!(!f(
            json!({ "status": { "values": ["assigned"], "negate": true } })
        ));
        assert!(f(
            json!({ "n": { "greaterThan": 4, "lessThanOrEqualTo": 5 } })
        ));
        assert!(!f(json!({ "n": { "greaterThan": 5 } })));
        assert!(!f(
            json!({ "createdAt": { "greaterThan": "2026-01-01T23:00:00-02:00" } })
        ));
        assert!(f(
            json!({ "createdAt": { "lessThan": "2026-01-02T00:00:01Z" } })
        ));
        assert!(f(json!({ "disabled": false })));
        assert!(f(json!({ "missing": { "values": [null] } })));
        assert!(f(json!({ "tags": { "values": ["b"] } })));
        let a = rec(json!({ "customerAccount": { "id": "wdc", "name": "W" } }));
        assert!(matches_filter(
            &a,
            json!({ "customerAccount": { "values": ["wdc"] } })
                .as_object()
                .unwrap()
        ));
        assert!(!matches_filter(
            &a,
            json!({ "customerAccount": { "values": ["x"] } })
                .as_object()
                .unwrap()
        ));
        let c = rec(
            json!({ "customFields": [ { "id": "x", "value": "y" }, { "id": "n", "value": 3 } ] }),
        );
        let g = |v: Json| matches_filter(&c, v.as_object().unwrap());
        assert!(g(
            json!({ "customFilters": [{ "name": "x", "values": ["y"] }] })
        ));
        assert!(g(
            json!({ "customFilters": [{ "name": "n", "values": ["3"] }, { "name": "x", "values": ["y", "z"] }] })
        ));
        assert!(!g(
            json!({ "customFilters": [{ "name": "x", "values": ["y"], "negate": true }] })
        ));
        assert!(!g(
            json!({ "customFilters": [{ "name": "x", "values": ["z"] }] })
        ));
        assert!(g(
            json!({ "customFilters": [{ "name": "missing", "values": [null] }] })
        ));
    }
}
