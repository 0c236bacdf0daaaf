//! Typed field schemas: coercion and validation of JSON values (spec §3.2, §3.5, §4).
//!
//! A [`Schema`] is a list of [`Field`]s. [`Schema::resolve`] takes a raw JSON object, applies
//! defaults, coerces every value to its field type, drops unknown keys, validates, and seals
//! plaintext `secret_string` values. Messages use the wording of the spec, e.g.
//! `Field 'pet' is required.` or
//! `Nested field 'cars[0]' invalid: Field 'nr' should be at most 99.`.
//!
//! Values stay JSON: dates become `"YYYY-MM-DD"`, date-times RFC 3339 strings, times of day
//! `"HH:MM:SS"` and secrets envelope strings (see [`crate::secrets`]).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine;
use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone, Timelike,
    Utc,
};
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::secrets::{is_envelope, Secrets};

/// The type of a field (spec §4.3). Serialized as lower snake case (`date_time`, `secret_string`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Anything; no coercion.
    Any,
    /// Text; numbers become their decimal string.
    String,
    /// Raw text, no coercion.
    Binary,
    /// Base64 text; a string that is not Base64 yet gets encoded.
    Base64,
    /// A URI with a scheme.
    Uri,
    /// A whole number; `"42"`, `42.3` and `"-42.3"` are truncated to integers.
    Integer,
    /// A number; numeric strings are parsed.
    Float,
    /// `true`/`false`; strings and numbers are cast (spec §4.3).
    Boolean,
    /// A JSON object (alias `object`).
    Hash,
    /// A JSON object validated against the sub-fields in [`Field::fields`].
    Nested,
    /// A calendar date, stored as `YYYY-MM-DD`.
    Date,
    /// A point in time, stored as an RFC 3339 string.
    DateTime,
    /// A time of day (`time_of_day` in the spec), stored as `HH:MM:SS[.fraction]`.
    Time,
    /// A secret, stored as an encrypted envelope.
    SecretString,
}

impl FieldType {
    /// Every type, in the order used by error messages.
    pub const ALL: [FieldType; 14] = [
        FieldType::Any,
        FieldType::String,
        FieldType::Binary,
        FieldType::Base64,
        FieldType::Uri,
        FieldType::Integer,
        FieldType::Float,
        FieldType::Boolean,
        FieldType::Hash,
        FieldType::Nested,
        FieldType::Date,
        FieldType::DateTime,
        FieldType::Time,
        FieldType::SecretString,
    ];

    /// The canonical serialized name (`"date_time"`, `"time"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Any => "any",
            FieldType::String => "string",
            FieldType::Binary => "binary",
            FieldType::Base64 => "base64",
            FieldType::Uri => "uri",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Hash => "hash",
            FieldType::Nested => "nested",
            FieldType::Date => "date",
            FieldType::DateTime => "date_time",
            FieldType::Time => "time",
            FieldType::SecretString => "secret_string",
        }
    }

    /// The class name used in "Type of field … invalid, expected `X` found `Y`." messages, or
    /// `None` for `any` (which accepts everything).
    pub fn class_name(self) -> Option<&'static str> {
        Some(match self {
            FieldType::Any => return None,
            FieldType::String | FieldType::Binary | FieldType::Base64 | FieldType::Uri => "String",
            FieldType::Integer => "Integer",
            FieldType::Float => "Float",
            FieldType::Boolean => "Boolean",
            FieldType::Hash | FieldType::Nested => "Hash",
            FieldType::Date => "Date",
            FieldType::DateTime => "DateTime",
            FieldType::Time => "Time",
            FieldType::SecretString => "SecretString",
        })
    }

    /// A comma-separated list of the valid type names, for error messages.
    pub fn valid_names() -> String {
        FieldType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`FieldType::from_str`]: names the bad type and lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown field type '{0}', expected one of: {list}", list = FieldType::valid_names())]
pub struct UnknownFieldType(pub String);

impl FromStr for FieldType {
    type Err = UnknownFieldType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = match s {
            "any" => FieldType::Any,
            "string" => FieldType::String,
            "binary" => FieldType::Binary,
            "base64" => FieldType::Base64,
            "uri" => FieldType::Uri,
            "integer" => FieldType::Integer,
            "float" => FieldType::Float,
            "boolean" => FieldType::Boolean,
            "hash" | "object" => FieldType::Hash,
            "nested" => FieldType::Nested,
            "date" => FieldType::Date,
            "date_time" => FieldType::DateTime,
            "time" | "time_of_day" => FieldType::Time,
            "secret_string" => FieldType::SecretString,
            // The spec's `any_<something>_type` names all mean "any".
            other
                if other.len() > "any__type".len()
                    && other.starts_with("any_")
                    && other.ends_with("_type")
                    && other.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                FieldType::Any
            }
            other => return Err(UnknownFieldType(other.to_string())),
        };
        Ok(t)
    }
}

impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_true() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One field of a schema (spec §4.2). Deserializes from YAML/JSON with only `id` and `type`
/// required; unknown attributes are rejected so that typos surface.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Key in the resolved object (1..40 characters).
    pub id: String,
    /// Human label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The field type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// The value is a list; each element is coerced and validated (path `id[i]`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub array: bool,
    /// The value must not be blank (`false` is accepted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Value used when the key is absent (not when it is `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Sub-fields of a `nested` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// Regular expression the value's string form must match (unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Lower bound for numbers (dates compare as epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound for numbers (dates compare as epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Minimum string length, array size or object size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    /// Maximum string length, array size or object size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Earliest allowed date (`YYYY-MM-DD`) for `date` and `date_time` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_date: Option<String>,
    /// Latest allowed date (`YYYY-MM-DD`) for `date` and `date_time` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_date: Option<String>,
    /// Allowed values: plain values or `{id, label}` objects (compared by `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enumeration: Option<Vec<Value>>,
    /// Help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// An example value for documentation (takes precedence over `default` in [`Schema::example`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Value>,
    /// For nested fields: drop keys that are not declared sub-fields (default `true`).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub remove_unmapped_fields: bool,
}

impl Field {
    /// A new optional, non-array field without constraints.
    pub fn new(id: &str, ty: FieldType) -> Field {
        Field {
            id: id.to_string(),
            label: None,
            ty,
            array: false,
            required: false,
            default: None,
            fields: Vec::new(),
            pattern: None,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            min_date: None,
            max_date: None,
            enumeration: None,
            hint: None,
            sample: None,
            remove_unmapped_fields: true,
        }
    }

    /// Mark the field required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Make the field a list.
    pub fn array(mut self) -> Self {
        self.array = true;
        self
    }

    /// Set the default value.
    pub fn default_value(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }

    /// Set the sub-fields (for `nested`).
    pub fn with_fields(mut self, f: Vec<Field>) -> Self {
        self.fields = f;
        self
    }

    /// Set the pattern.
    pub fn pattern(mut self, p: &str) -> Self {
        self.pattern = Some(p.to_string());
        self
    }

    /// Set the minimum.
    pub fn min(mut self, m: f64) -> Self {
        self.min = Some(m);
        self
    }

    /// Set the maximum.
    pub fn max(mut self, m: f64) -> Self {
        self.max = Some(m);
        self
    }

    /// Set the minimum length.
    pub fn min_length(mut self, n: usize) -> Self {
        self.min_length = Some(n);
        self
    }

    /// Set the maximum length.
    pub fn max_length(mut self, n: usize) -> Self {
        self.max_length = Some(n);
        self
    }

    /// Set the earliest allowed date (`YYYY-MM-DD`).
    pub fn min_date(mut self, d: &str) -> Self {
        self.min_date = Some(d.to_string());
        self
    }

    /// Set the latest allowed date (`YYYY-MM-DD`).
    pub fn max_date(mut self, d: &str) -> Self {
        self.max_date = Some(d.to_string());
        self
    }

    /// Set the allowed values (plain values or `{id, label}` objects).
    pub fn enumeration(mut self, v: Vec<Value>) -> Self {
        self.enumeration = Some(v);
        self
    }

    /// Set the label.
    pub fn label(mut self, l: &str) -> Self {
        self.label = Some(l.to_string());
        self
    }

    /// Set the hint.
    pub fn hint(mut self, h: &str) -> Self {
        self.hint = Some(h.to_string());
        self
    }

    /// Keep keys in nested values that are not declared sub-fields.
    pub fn keep_unmapped_fields(mut self) -> Self {
        self.remove_unmapped_fields = false;
        self
    }

    /// The enumeration ids (the `id` of `{id, label}` entries, else the entry itself).
    pub fn enumeration_ids(&self) -> Vec<Value> {
        self.enumeration
            .iter()
            .flatten()
            .map(|e| match e {
                Value::Object(m) => m.get("id").cloned().unwrap_or(Value::Null),
                other => other.clone(),
            })
            .collect()
    }

    /// Static check of a field definition (id 1..40 chars, fields only on nested, enumeration only
    /// for string/integer, pattern compiles, default coerces) → messages. Sub-fields are checked
    /// recursively; each message starts with `Field '<path>': `.
    pub fn check_definition(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.check_definition_at(&self.id, &mut out);
        out
    }

    fn check_definition_at(&self, path: &str, out: &mut Vec<String>) {
        let mut msg = |m: String| out.push(format!("Field '{path}': {m}"));
        let id_len = self.id.chars().count();
        if id_len == 0 {
            msg("id can't be blank.".into());
        } else if id_len > 40 {
            msg(format!(
                "id is too long (maximum is 40 characters, found {id_len})."
            ));
        }
        if let Some(l) = &self.label {
            let n = l.chars().count();
            if n == 0 || n > 120 {
                msg("label must be 1 to 120 characters.".into());
            }
        }
        if self.ty == FieldType::Nested {
            if self.fields.is_empty() {
                msg("a nested field needs at least one sub-field.".into());
            }
        } else if !self.fields.is_empty() {
            msg("Subfields are only available when the type is nested.".into());
        }
        if let Some(e) = &self.enumeration {
            if !matches!(self.ty, FieldType::String | FieldType::Integer) {
                msg("Enumeration is restricted to string and integer types.".into());
            } else if e.is_empty() {
                msg("enumeration must list at least one value.".into());
            } else {
                for entry in e {
                    let ok = match entry {
                        Value::Object(m) => {
                            m.get("id").is_some_and(|v| !is_blank(v))
                                && m.keys().all(|k| k == "id" || k == "label")
                        }
                        Value::Array(_) | Value::Null => false,
                        _ => true,
                    };
                    if !ok {
                        msg(format!(
                            "enumeration entry {entry} is invalid (expected a value or {{id, label}})."
                        ));
                    }
                }
            }
        }
        if let Some(p) = &self.pattern {
            if let Err(e) = Regex::new(p) {
                msg(format!(
                    "Invalid regexp pattern: {}",
                    one_line(&e.to_string())
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.min, self.max) {
            if a > b {
                msg(format!(
                    "min {} is greater than max {}.",
                    fmt_num(a),
                    fmt_num(b)
                ));
            }
        }
        for (name, bound) in [("min_date", &self.min_date), ("max_date", &self.max_date)] {
            if let Some(b) = bound {
                if !matches!(self.ty, FieldType::Date | FieldType::DateTime) {
                    msg(format!(
                        "{name} is only available for date and date_time fields."
                    ));
                } else if NaiveDate::parse_from_str(b, "%Y-%m-%d").is_err() {
                    msg(format!("{name} '{b}' is not a date (expected YYYY-MM-DD)."));
                }
            }
        }
        if let (Some(a), Some(b)) = (self.min_length, self.max_length) {
            if a > b {
                msg(format!("min_length {a} is greater than max_length {b}."));
            }
        }
        if let Some(d) = &self.default {
            if !d.is_null() {
                let mut errors = Vec::new();
                let mut r = Resolver {
                    sealer: None,
                    secrets_plain_ok: true,
                };
                let v = r.value(self, d, &mut errors);
                r.field_checks(self, Some(&v), &mut errors);
                for e in errors {
                    msg(format!("default is invalid: {e}"));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            if !seen.insert(f.id.as_str()) {
                out.push(format!(
                    "Field '{path}': duplicate sub-field id '{}'.",
                    f.id
                ));
            }
            f.check_definition_at(&format!("{path}.{}", f.id), out);
        }
    }

    /// An example value: `sample`, else `default`, else the first enumeration id, else a value of
    /// the type (wrapped in a list for arrays).
    pub fn example(&self) -> Value {
        if let Some(s) = self.sample.as_ref().filter(|v| !v.is_null()) {
            return s.clone();
        }
        if let Some(d) = self.default.as_ref().filter(|v| !v.is_null()) {
            return d.clone();
        }
        let one = if let Some(first) = self.enumeration_ids().into_iter().next() {
            first
        } else {
            match self.ty {
                FieldType::Any => Value::from("anything"),
                FieldType::String if self.pattern.is_some() => {
                    Value::from("no-example-for-pattern")
                }
                FieldType::String | FieldType::Binary => Value::from("Hello World!"),
                FieldType::Base64 => Value::from("SGVsbG8gV29ybGQh"),
                FieldType::Uri => Value::from("https://xurrent.com"),
                FieldType::Integer => Value::from(42),
                FieldType::Float => Value::from(std::f64::consts::PI),
                FieldType::Boolean => Value::from(true),
                FieldType::Hash => serde_json::json!({"foo": "bar"}),
                FieldType::Nested => Value::Object(
                    self.fields
                        .iter()
                        .map(|f| (f.id.clone(), f.example()))
                        .collect(),
                ),
                FieldType::Date => Value::from(Utc::now().date_naive().to_string()),
                FieldType::DateTime => {
                    let noon = Utc::now()
                        .date_naive()
                        .and_hms_opt(12, 0, 0)
                        .map(|n| Utc.from_utc_datetime(&n))
                        .unwrap_or_else(Utc::now);
                    Value::from(noon.to_rfc3339_opts(SecondsFormat::Secs, true))
                }
                FieldType::Time => Value::from("14:23:50"),
                FieldType::SecretString => Value::from("Secret"),
            }
        };
        if self.array {
            Value::Array(vec![one])
        } else {
            one
        }
    }
}

/// A named list of fields (spec §4.1).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Schema {
    /// Identity of the schema (e.g. `input`, `output`, a branch name).
    #[serde(default)]
    pub reference: String,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The fields, in order.
    #[serde(default)]
    pub fields: Vec<Field>,
}

/// All problems found by [`Schema::resolve`], each naming the field path in the spec's wording.
/// `Display` joins them with a space (each message ends with a period).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .messages.join(" "))]
pub struct SchemaErrors {
    /// The individual messages, in schema order.
    pub messages: Vec<String>,
}

impl Schema {
    /// A schema with the given reference and fields.
    pub fn new(reference: &str, fields: Vec<Field>) -> Schema {
        Schema {
            reference: reference.to_string(),
            name: None,
            fields,
        }
    }

    /// Look up a top-level field by id.
    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// Static check of every field plus duplicate top-level ids.
    pub fn check_definition(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            if !seen.insert(f.id.as_str()) {
                out.push(format!("Duplicate field id '{}'.", f.id));
            }
            out.extend(f.check_definition());
        }
        out
    }

    /// Resolve a raw JSON object against the schema and return the resolved object, or every
    /// problem found.
    ///
    /// - Absent keys get the field's default (a key present with `null` keeps `null`).
    /// - Each value is coerced to its type (spec §4.3), then validated: type, nested sub-fields,
    ///   pattern, min/max, min_date/max_date, enumeration, type-specific validity; afterwards
    ///   required and min/max length.
    /// - Unknown top-level keys are dropped; unknown keys of nested values too, unless the nested
    ///   field has `remove_unmapped_fields: false`.
    /// - Array fields wrap a single value into a one-element list (spec §9.3); element messages
    ///   use the path `id[i]`, nested ones `Nested field 'id[i]' invalid: …`.
    /// - Plaintext `secret_string` values are sealed with `sealer` when given; envelopes are kept.
    ///   Without a `sealer`, a non-blank `secret_string` value must already be an envelope
    ///   ("Field 'x' is invalid. Expected an encrypted secret string value.").
    ///
    /// `null` is treated like an empty object.
    pub fn resolve(&self, raw: &Value, sealer: Option<&Secrets>) -> Result<Value, SchemaErrors> {
        let empty = Map::new();
        let obj = match raw {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                return Err(SchemaErrors {
                    messages: vec![format!("Expected an object, found {}.", found_class(other))],
                })
            }
        };
        let mut errors = Vec::new();
        let mut r = Resolver {
            sealer,
            secrets_plain_ok: false,
        };
        let out = r.object(&self.fields, obj, true, &mut errors);
        if errors.is_empty() {
            Ok(Value::Object(out))
        } else {
            Err(SchemaErrors { messages: errors })
        }
    }

    /// A JSON example built from samples, defaults and types (for docs and `ferry` output).
    pub fn example(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .map(|f| (f.id.clone(), f.example()))
                .collect(),
        )
    }
}

/// Single-value coercion used by resolve (pub for reuse): the value converted to the field's type
/// where the spec's rules allow, otherwise unchanged. Array fields wrap a non-array value and
/// coerce each element; nested fields coerce their sub-fields and drop unknown keys (unless
/// `remove_unmapped_fields` is false). Validation messages are discarded and secrets are not
/// sealed.
pub fn coerce_value(field: &Field, v: &Value) -> Value {
    let mut errors = Vec::new();
    let mut r = Resolver {
        sealer: None,
        secrets_plain_ok: true,
    };
    r.value(field, v, &mut errors)
}

// ---------------------------------------------------------------------------------------------
// Resolution

struct Resolver<'a> {
    sealer: Option<&'a Secrets>,
    /// Accept plaintext in secret_string fields without sealing (coerce_value, default checks).
    secrets_plain_ok: bool,
}

impl Resolver<'_> {
    /// Resolve an object against fields. Per-value messages come first (in field order), then the
    /// per-field required/length checks, as in spec §3.2.
    fn object(
        &mut self,
        fields: &[Field],
        obj: &Map<String, Value>,
        prune: bool,
        errors: &mut Vec<String>,
    ) -> Map<String, Value> {
        let mut out = Map::with_capacity(fields.len());
        for f in fields {
            let raw = match obj.get(&f.id) {
                Some(v) => v,
                None => match &f.default {
                    Some(d) if !d.is_null() => d,
                    _ => continue,
                },
            };
            let v = self.value(f, raw, errors);
            out.insert(f.id.clone(), v);
        }
        for f in fields {
            self.field_checks(f, out.get(&f.id), errors);
        }
        if !prune {
            for (k, v) in obj {
                if !out.contains_key(k) && !fields.iter().any(|f| &f.id == k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    /// Coerce and validate one field value (array or not).
    fn value(&mut self, f: &Field, raw: &Value, errors: &mut Vec<String>) -> Value {
        if !f.array {
            return self.single(f, raw, &f.id, errors);
        }
        match raw {
            Value::Null => Value::Null,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.single(f, item, &format!("{}[{i}]", f.id), errors))
                    .collect(),
            ),
            other => Value::Array(vec![self.single(f, other, &format!("{}[0]", f.id), errors)]),
        }
    }

    /// Coerce and validate one element; `name` is the designator used in messages.
    fn single(&mut self, f: &Field, raw: &Value, name: &str, errors: &mut Vec<String>) -> Value {
        if f.ty == FieldType::Nested {
            return match raw {
                Value::Object(m) => {
                    let mut sub = Vec::new();
                    let out = self.object(&f.fields, m, f.remove_unmapped_fields, &mut sub);
                    // An object that resolves empty for a required (non-array) nested field
                    // is reported once, as "is required", by the per-field checks.
                    if out.is_empty() && f.required && !f.array {
                        sub.clear();
                    }
                    errors.extend(
                        sub.into_iter()
                            .map(|s| format!("Nested field '{name}' invalid: {s}")),
                    );
                    Value::Object(out)
                }
                other if is_blank(other) => other.clone(),
                other => {
                    errors.push(type_error(name, "Hash", other));
                    other.clone()
                }
            };
        }
        let coerced = match coerce_one(f.ty, raw) {
            Ok(v) => v,
            Err(()) => {
                if !is_blank(raw) {
                    if let Some(expected) = f.ty.class_name() {
                        errors.push(type_error(name, expected, raw));
                    }
                }
                return raw.clone();
            }
        };
        if is_blank(&coerced) {
            return coerced;
        }
        // pattern, on the string form
        if let Some(p) = &f.pattern {
            if let Some(s) = string_form(&coerced) {
                match cached_regex(p) {
                    Ok(re) if re.is_match(&s) => {}
                    Ok(_) => {
                        errors.push(format!("Field '{name}' should confirm to pattern /{p}/."))
                    }
                    Err(_) => errors.push(format!("Field '{name}' has an invalid pattern /{p}/.")),
                }
            }
        }
        // min / max
        if f.min.is_some() || f.max.is_some() {
            if let Some(n) = comparable_number(f.ty, &coerced) {
                if let Some(min) = f.min.filter(|m| n < *m) {
                    errors.push(format!(
                        "Field '{name}' should be at least {}.",
                        fmt_num(min)
                    ));
                }
                if let Some(max) = f.max.filter(|m| n > *m) {
                    errors.push(format!(
                        "Field '{name}' should be at most {}.",
                        fmt_num(max)
                    ));
                }
            }
        }
        // min_date / max_date, on the calendar date of the value
        if f.min_date.is_some() || f.max_date.is_some() {
            if let Some(d) = coerced.as_str().and_then(value_date) {
                let bound = |b: &Option<String>| {
                    b.as_deref()
                        .and_then(|b| NaiveDate::parse_from_str(b, "%Y-%m-%d").ok())
                };
                if let Some(min) = bound(&f.min_date).filter(|m| d < *m) {
                    errors.push(format!("Field '{name}' should be on or after {min}."));
                }
                if let Some(max) = bound(&f.max_date).filter(|m| d > *m) {
                    errors.push(format!("Field '{name}' should be on or before {max}."));
                }
            }
        }
        // enumeration, compared after coercing the ids too
        if f.enumeration.is_some() {
            let ids = f.enumeration_ids();
            let matched = ids.iter().any(|id| {
                let cid = coerce_one(f.ty, id).unwrap_or_else(|()| id.clone());
                values_equal(&cid, &coerced)
            });
            if !matched {
                let list = ids.iter().map(display_plain).collect::<Vec<_>>().join(", ");
                errors.push(format!("Field '{name}' should be one of {list}."));
            }
        }
        // type-specific validity
        match f.ty {
            FieldType::Uri if !coerced.as_str().is_some_and(valid_uri) => {
                errors.push(format!("Field '{name}' is invalid."));
            }
            FieldType::Time if coerced.as_str().and_then(parse_time_of_day).is_none() => {
                errors.push(format!("Field '{name}' is invalid."));
            }
            FieldType::SecretString => {
                if let Some(s) = coerced.as_str() {
                    if !is_envelope(s) {
                        match self.sealer {
                            Some(sealer) => return Value::String(sealer.seal(s)),
                            None if self.secrets_plain_ok => {}
                            None => errors.push(format!(
                                "Field '{name}' is invalid. Expected an encrypted secret string value."
                            )),
                        }
                    }
                }
            }
            _ => {}
        }
        coerced
    }

    /// Per-field checks after coercion: required, min_length, max_length.
    fn field_checks(&mut self, f: &Field, v: Option<&Value>, errors: &mut Vec<String>) {
        let name = &f.id;
        let blank = match v {
            None => true,
            Some(Value::Bool(false)) => false,
            Some(v) => is_blank(v),
        };
        if f.required && blank {
            errors.push(format!("Field '{name}' is required."));
        }
        let len = match v {
            Some(Value::String(s)) => Some(s.chars().count()),
            Some(Value::Array(a)) => Some(a.len()),
            Some(Value::Object(m)) => Some(m.len()),
            _ => None,
        };
        if let Some(len) = len {
            if let Some(min) = f.min_length.filter(|m| len < *m) {
                errors.push(format!(
                    "Length of field '{name}' should be at least {min}."
                ));
            }
            if let Some(max) = f.max_length.filter(|m| len > *m) {
                errors.push(format!("Length of field '{name}' should be at most {max}."));
            }
        }
    }
}

fn type_error(name: &str, expected: &str, found: &Value) -> String {
    format!(
        "Type of field '{name}' invalid, expected {expected} found {}.",
        found_class(found)
    )
}

/// The class name of a JSON value as used in type messages.
fn found_class(v: &Value) -> &'static str {
    match v {
        Value::Null => "NilClass",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Hash",
    }
}

/// Blank in the spec's sense: nil, false, "", whitespace, [] and {}.
fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Number(_) => false,
    }
}

fn string_form(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn display_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// Format a bound: integral values without a fraction (`99`, not `99.0`).
fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn comparable_number(ty: FieldType, v: &Value) -> Option<f64> {
    match ty {
        FieldType::Date => v
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp() as f64),
        FieldType::DateTime => v
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp() as f64),
        _ => v.as_f64(),
    }
}

/// Compiled patterns, shared across resolutions (a schema is resolved once per event, so
/// compiling its patterns every time would dominate). Bounded: cleared when it grows past 4096.
static REGEX_CACHE: LazyLock<std::sync::RwLock<std::collections::HashMap<String, Regex>>> =
    LazyLock::new(Default::default);

fn cached_regex(p: &str) -> Result<Regex, regex::Error> {
    if let Ok(map) = REGEX_CACHE.read() {
        if let Some(re) = map.get(p) {
            return Ok(re.clone());
        }
    }
    let re = Regex::new(p)?;
    if let Ok(mut map) = REGEX_CACHE.write() {
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(p.to_string(), re.clone());
    }
    Ok(re)
}

/// The calendar date of a coerced date or date-time value.
fn value_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|d| d.date_naive()))
}

fn valid_uri(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| !u.scheme().is_empty())
}

// ---------------------------------------------------------------------------------------------
// Coercion rules (spec §4.3). `Err(())` = the value cannot be coerced (type error if not blank).

static FLOAT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A-?[0-9]+(\.[0-9]+)?\z").expect("constant float regex is valid")
});
static TIME_OF_DAY_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A([012]?\d):([012345]?\d)(?::([012345]?\d))?(?:\.(\d+))?\z")
        .expect("constant time regex is valid")
});

fn coerce_one(ty: FieldType, v: &Value) -> Result<Value, ()> {
    match ty {
        FieldType::Any => Ok(v.clone()),
        FieldType::String => match v {
            Value::String(_) | Value::Null => Ok(v.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            _ => Err(()),
        },
        FieldType::Binary | FieldType::Uri => match v {
            Value::String(_) | Value::Null => Ok(v.clone()),
            _ => Err(()),
        },
        FieldType::Base64 => match v {
            Value::String(s) if !is_base64(s) => Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            )),
            Value::String(_) | Value::Null => Ok(v.clone()),
            _ => Err(()),
        },
        FieldType::Integer => coerce_integer(v),
        FieldType::Float => match v {
            Value::Null => Ok(Value::Null),
            Value::Number(n) => n
                .as_f64()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or(()),
            Value::String(s) if FLOAT_RE.is_match(s) => s
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or(()),
            _ => Err(()),
        },
        FieldType::Boolean => Ok(coerce_boolean(v)),
        FieldType::Hash | FieldType::Nested => match v {
            Value::Object(_) | Value::Null => Ok(v.clone()),
            _ => Err(()),
        },
        FieldType::Date => match v {
            Value::Null => Ok(Value::Null),
            Value::String(s) if s.trim().is_empty() => Ok(v.clone()),
            Value::String(s) => parse_date(s)
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .ok_or(()),
            _ => Err(()),
        },
        FieldType::DateTime => match v {
            Value::Null => Ok(Value::Null),
            Value::String(s) if s.trim().is_empty() => Ok(v.clone()),
            Value::String(s) => parse_date_time(s).map(fmt_date_time).ok_or(()),
            Value::Object(m) => date_time_from_parts(m).map(fmt_date_time).ok_or(()),
            _ => Err(()),
        },
        FieldType::Time => match v {
            Value::Null => Ok(Value::Null),
            Value::String(s) => Ok(Value::String(coerce_time_of_day(s))),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(()),
        },
        FieldType::SecretString => match v {
            Value::Null | Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(()),
        },
    }
}

fn coerce_integer(v: &Value) -> Result<Value, ()> {
    let from_f64 = |f: f64| -> Result<Value, ()> {
        let t = f.trunc();
        if t.is_finite() && t >= i64::MIN as f64 && t < i64::MAX as f64 {
            Ok(Value::from(t as i64))
        } else {
            Err(())
        }
    };
    match v {
        Value::Null => Ok(Value::Null),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
        Value::Number(n) => n.as_f64().ok_or(()).and_then(from_f64),
        Value::String(s) if FLOAT_RE.is_match(s) => {
            if let Ok(i) = s.parse::<i64>() {
                return Ok(Value::from(i));
            }
            s.parse::<f64>().map_err(|_| ()).and_then(from_f64)
        }
        _ => Err(()),
    }
}

fn coerce_boolean(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(_) => v.clone(),
        Value::Number(n) => Value::Bool(n.as_f64() != Some(0.0)),
        Value::String(s) if s.is_empty() => Value::Null,
        Value::String(s) => {
            let l = s.to_lowercase();
            Value::Bool(!matches!(l.as_str(), "false" | "0" | "f" | "off"))
        }
        // The spec casts anything else (even objects) to true.
        Value::Array(_) | Value::Object(_) => Value::Bool(true),
    }
}

/// Strict Base64, or Base64 wrapped at line boundaries (`\n` / `\r\n`), counts as already encoded.
fn is_base64(s: &str) -> bool {
    use base64::engine::general_purpose::STANDARD;
    if s.is_empty() {
        return true;
    }
    if STANDARD.decode(s).is_ok() {
        return true;
    }
    if s.contains('\n') {
        let joined: String = s.split(['\n', '\r']).collect();
        return !joined.is_empty() && STANDARD.decode(joined).is_ok();
    }
    false
}

/// Lenient date parsing: ISO dates, ISO/RFC 3339/RFC 2822 date-times (their own calendar date),
/// and a few common written forms.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let t = s.trim();
    for f in [
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%d-%m-%Y",
        "%d %B %Y",
        "%d %b %Y",
        "%B %d, %Y",
        "%b %d, %Y",
    ] {
        if let Ok(d) = NaiveDate::parse_from_str(t, f) {
            return Some(d);
        }
    }
    if let Some(dt) = parse_date_time_with_offset(t) {
        return Some(dt.date_naive());
    }
    parse_naive_date_time(t).map(|n| n.date())
}

fn parse_date_time_with_offset(t: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d);
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(t) {
        return Some(d);
    }
    for f in [
        "%Y-%m-%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Some(d);
        }
    }
    None
}

fn parse_naive_date_time(t: &str) -> Option<NaiveDateTime> {
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d);
        }
    }
    None
}

/// Parse a date-time; without an offset it is taken as UTC, a bare date is midnight UTC.
fn parse_date_time(s: &str) -> Option<DateTime<FixedOffset>> {
    let t = s.trim();
    let t = t
        .strip_suffix(" UTC")
        .map_or(t.to_string(), |x| format!("{x}Z"));
    let t = t.as_str();
    if let Some(d) = parse_date_time_with_offset(t) {
        return Some(d);
    }
    if let Some(n) = parse_naive_date_time(t.trim_end_matches('Z')) {
        return Some(Utc.from_utc_datetime(&n).fixed_offset());
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, f) {
            return d
                .and_hms_opt(0, 0, 0)
                .map(|n| Utc.from_utc_datetime(&n).fixed_offset());
        }
    }
    None
}

fn fmt_date_time(d: DateTime<FixedOffset>) -> Value {
    Value::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `{date, time, time_zone}` → a date-time. The zone may be `UTC`/`Z`, a fixed offset
/// (`+02:00`, `-0400`) or an IANA name (`America/New_York`); it defaults to UTC. An ambiguous
/// local time (DST fold) takes the earlier instant; a skipped one (DST gap) does not resolve.
fn date_time_from_parts(m: &Map<String, Value>) -> Option<DateTime<FixedOffset>> {
    let date = parse_date(m.get("date")?.as_str()?)?;
    let time = match m.get("time") {
        None | Some(Value::Null) => NaiveTime::MIN,
        Some(Value::String(s)) => parse_time_of_day(&coerce_time_of_day(s))?,
        Some(_) => return None,
    };
    let local = date.and_time(time);
    match m.get("time_zone") {
        None | Some(Value::Null) => Some(Utc.from_utc_datetime(&local).fixed_offset()),
        Some(Value::String(z)) => {
            if let Some(offset) = parse_offset(z) {
                return offset.from_local_datetime(&local).single();
            }
            let tz: chrono_tz::Tz = z.trim().parse().ok()?;
            tz.from_local_datetime(&local)
                .earliest()
                .map(|d| d.fixed_offset())
        }
        Some(_) => None,
    }
}

fn parse_offset(z: &str) -> Option<FixedOffset> {
    let z = z.trim();
    if z.eq_ignore_ascii_case("utc") || z == "Z" || z.eq_ignore_ascii_case("etc/utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let mi: i32 = digits[2..].parse().ok()?;
    if mi >= 60 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + mi * 60))
}

/// A string with an hour becomes `HH:MM:SS[.fraction]`: a valid time of day is normalized, a
/// date-time string gives its (local) time; anything else stays as it is (and is reported
/// invalid).
fn coerce_time_of_day(s: &str) -> String {
    let t = s.trim();
    if let Some(c) = TIME_OF_DAY_RE.captures(t) {
        let h: u32 = c.get(1).and_then(|m| m.as_str().parse().ok()).unwrap_or(99);
        let mi: u32 = c.get(2).and_then(|m| m.as_str().parse().ok()).unwrap_or(99);
        let sec: u32 = c.get(3).and_then(|m| m.as_str().parse().ok()).unwrap_or(0);
        if h < 25 && mi < 60 && sec < 60 {
            let mut out = format!("{h:02}:{mi:02}:{sec:02}");
            if let Some(frac) = c.get(4) {
                if frac.as_str().bytes().any(|b| b != b'0') {
                    out.push('.');
                    out.push_str(frac.as_str());
                }
            }
            return out;
        }
        return s.to_string();
    }
    if t.len() > 10 {
        if let Some(d) = parse_date_time_with_offset(t) {
            return fmt_naive_time(d.time());
        }
        if let Some(n) = parse_naive_date_time(t) {
            return fmt_naive_time(n.time());
        }
    }
    s.to_string()
}

fn fmt_naive_time(t: NaiveTime) -> String {
    let mut out = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    if t.nanosecond() != 0 {
        out.push_str(format!(".{:09}", t.nanosecond()).trim_end_matches('0'));
    }
    out
}

/// Validity of a time of day: `H:M[:S][.frac]` with hours < 25, minutes and seconds < 60
/// (so `24:00` is accepted). Returns the time (24:xx maps to 00:xx) when valid.
fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    let c = TIME_OF_DAY_RE.captures(s)?;
    let h: u32 = c.get(1)?.as_str().parse().ok()?;
    let mi: u32 = c.get(2)?.as_str().parse().ok()?;
    let sec: u32 = match c.get(3) {
        Some(m) => m.as_str().parse().ok()?,
        None => 0,
    };
    if h >= 25 || mi >= 60 || sec >= 60 {
        return None;
    }
    let nanos: u32 = match c.get(4) {
        Some(m) => {
            let digits: String = m.as_str().chars().take(9).collect();
            format!("{digits:0<9}").parse().ok()?
        }
        None => 0,
    };
    NaiveTime::from_hms_nano_opt(h % 24, mi, sec, nanos)
}
