//! Expectations and their matchers (spec §8.2), written as YAML in a case file.
//!
//! - A scalar is compared with `equals`; a list must have as many elements as the actual list,
//!   each checked with its own expectation; a map checks the named fields only (other fields of
//!   the actual object are ignored).
//! - A map whose keys all start with `$` is a matcher (several keys: all must pass):
//!   `$equals` (deep equality of the whole value: key order ignored, `0 == 0.0`, `'427' != 427`),
//!   `$contains` (strings only), `$includes` (object ⊇ object, list ⊇ list, list has element,
//!   string has substring), `$starts_with`, `$ends_with` (strings only), `$matches` (regular
//!   expression, strings only), `$is_present` (not null, not blank, not an empty list or
//!   object; `0` is present), `$any` (the field exists, any value), `$absent` (missing or
//!   null), `$not` (the inner expectation must fail).

use std::fmt;

use regex::Regex;
use serde_json::Value;

/// One expectation (a tree of them for maps and lists).
#[derive(Clone, Debug)]
pub enum Expect {
    /// Deep equality.
    Equals(Value),
    /// The named fields of an object.
    Fields(Vec<(String, Expect)>),
    /// A list of exactly these elements.
    Items(Vec<Expect>),
    /// The string contains this.
    Contains(String),
    /// Inclusion (object, list or string).
    Includes(Value),
    /// The string starts with this.
    StartsWith(String),
    /// The string ends with this.
    EndsWith(String),
    /// The string matches this regular expression.
    Matches(Regex),
    /// Present (not blank).
    IsPresent,
    /// Exists, any value.
    Any,
    /// Missing or null.
    Absent,
    /// The inner expectation fails.
    Not(Box<Expect>),
    /// All of these pass.
    All(Vec<Expect>),
}

/// The matcher names, as written in a case file.
pub const MATCHERS: &[&str] = &[
    "$equals",
    "$contains",
    "$includes",
    "$starts_with",
    "$ends_with",
    "$matches",
    "$is_present",
    "$any",
    "$absent",
    "$not",
];

/// A problem in an expectation as written: the path (dot separated, relative to the parsed
/// value) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Path of the offending value, relative to the expectation's root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

impl Expect {
    /// Parse an expectation from its YAML (as JSON) form. Every problem is collected.
    pub fn parse(v: &Value) -> Result<Expect, Vec<ParseError>> {
        let mut errors = Vec::new();
        let e = parse_at(v, "", &mut errors);
        if errors.is_empty() {
            Ok(e)
        } else {
            Err(errors)
        }
    }

    /// Check `actual` (`None`: the field is missing) and return the failures; `path` names
    /// the checked value in messages.
    pub fn check(&self, actual: Option<&Value>, path: &str) -> Vec<Failure> {
        let mut out = Vec::new();
        self.check_into(actual, path, &mut out);
        out
    }

    fn name(&self) -> &'static str {
        match self {
            Expect::Equals(_) | Expect::Fields(_) | Expect::Items(_) => "equals",
            Expect::Contains(_) => "contains",
            Expect::Includes(_) => "includes",
            Expect::StartsWith(_) => "starts_with",
            Expect::EndsWith(_) => "ends_with",
            Expect::Matches(_) => "matches",
            Expect::IsPresent => "is_present",
            Expect::Any => "any",
            Expect::Absent => "absent",
            Expect::Not(_) => "not",
            Expect::All(_) => "all",
        }
    }

    fn expected_text(&self) -> String {
        match self {
            Expect::Equals(v) | Expect::Includes(v) => show(Some(v)),
            Expect::Contains(s) | Expect::StartsWith(s) | Expect::EndsWith(s) => s.clone(),
            Expect::Matches(r) => format!("/{}/", r.as_str()),
            Expect::Not(inner) => format!("not {} {}", inner.name(), inner.expected_text()),
            _ => String::new(),
        }
    }

    fn check_into(&self, actual: Option<&Value>, path: &str, out: &mut Vec<Failure>) {
        match self {
            Expect::Fields(fields) => match actual {
                Some(Value::Object(map)) => {
                    for (k, e) in fields {
                        e.check_into(map.get(k), &join(path, k), out);
                    }
                }
                other => out.push(Failure {
                    path: path.to_string(),
                    message: format!(
                        "expected an object with fields {}\nActual value: {}",
                        fields
                            .iter()
                            .map(|(k, _)| format!("'{k}'"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        show(other)
                    ),
                    diff: None,
                }),
            },
            Expect::Items(items) => match actual {
                Some(Value::Array(list)) if list.len() == items.len() => {
                    for (i, (e, a)) in items.iter().zip(list).enumerate() {
                        e.check_into(Some(a), &format!("{path}[{i}]"), out);
                    }
                }
                Some(Value::Array(list)) => out.push(Failure {
                    path: path.to_string(),
                    message: format!(
                        "expected a list of {} elements, got {}\nActual value: {}",
                        items.len(),
                        list.len(),
                        show(actual)
                    ),
                    diff: None,
                }),
                other => out.push(Failure {
                    path: path.to_string(),
                    message: format!(
                        "expected a list of {} elements\nActual value: {}",
                        items.len(),
                        show(other)
                    ),
                    diff: None,
                }),
            },
            Expect::All(all) => {
                for e in all {
                    e.check_into(actual, path, out);
                }
            }
            Expect::Not(inner) => {
                if inner.check(actual, path).is_empty() {
                    out.push(self.failure(actual, path, true));
                }
            }
            leaf => {
                if !leaf.matches(actual) {
                    out.push(leaf.failure(actual, path, false));
                }
            }
        }
    }

    /// Whether a leaf matcher (or a whole tree) passes.
    fn matches(&self, actual: Option<&Value>) -> bool {
        match self {
            Expect::Equals(e) => deep_eq(actual.unwrap_or(&Value::Null), e),
            Expect::Contains(s) => {
                matches!(actual, Some(Value::String(a)) if a.contains(s.as_str()))
            }
            Expect::StartsWith(s) => {
                matches!(actual, Some(Value::String(a)) if a.starts_with(s.as_str()))
            }
            Expect::EndsWith(s) => {
                matches!(actual, Some(Value::String(a)) if a.ends_with(s.as_str()))
            }
            Expect::Matches(r) => matches!(actual, Some(Value::String(a)) if r.is_match(a)),
            Expect::Includes(e) => actual.is_some_and(|a| includes(a, e)),
            Expect::IsPresent => actual.is_some_and(is_present),
            Expect::Any => actual.is_some(),
            Expect::Absent => matches!(actual, None | Some(Value::Null)),
            other => other.check(actual, "").is_empty(),
        }
    }

    fn failure(&self, actual: Option<&Value>, path: &str, negated: bool) -> Failure {
        let (name, expected) = match (self, negated) {
            (Expect::Not(inner), true) => (inner.name(), inner.expected_text()),
            _ => (self.name(), self.expected_text()),
        };
        let mut message = format!(
            "expectation failed with {}{name} matcher\nActual value: {}",
            if negated { "negated " } else { "" },
            show(actual)
        );
        if !expected.is_empty() {
            message.push_str(&format!("\nExpected value: {expected}"));
        }
        let diff = match (self, actual) {
            (Expect::Equals(e), Some(a)) if !negated && worth_diffing(a, e) => {
                Some(crate::diff::lines(&pretty(e), &pretty(a)))
            }
            _ => None,
        };
        Failure {
            path: path.to_string(),
            message,
            diff,
        }
    }
}

fn parse_at(v: &Value, path: &str, errors: &mut Vec<ParseError>) -> Expect {
    match v {
        Value::Object(map) if !map.is_empty() && map.keys().all(|k| k.starts_with('$')) => {
            let mut all = Vec::new();
            for (k, arg) in map {
                let at = join(path, k);
                let string = |errors: &mut Vec<ParseError>| match arg {
                    Value::String(s) => s.clone(),
                    other => {
                        errors.push(ParseError {
                            path: at.clone(),
                            message: format!("{k} needs a string, got {}", kind(other)),
                        });
                        String::new()
                    }
                };
                let flag = |errors: &mut Vec<ParseError>| {
                    if arg != &Value::Bool(true) {
                        errors.push(ParseError {
                            path: at.clone(),
                            message: format!("write `{k}: true` (got {})", kind(arg)),
                        });
                    }
                };
                let e = match k.as_str() {
                    "$equals" => Expect::Equals(arg.clone()),
                    "$contains" => Expect::Contains(string(errors)),
                    "$includes" => Expect::Includes(arg.clone()),
                    "$starts_with" => Expect::StartsWith(string(errors)),
                    "$ends_with" => Expect::EndsWith(string(errors)),
                    "$matches" => {
                        let s = string(errors);
                        match Regex::new(&s) {
                            Ok(r) => Expect::Matches(r),
                            Err(e) => {
                                errors.push(ParseError {
                                    path: at.clone(),
                                    message: format!("invalid regular expression: {e}"),
                                });
                                Expect::Any
                            }
                        }
                    }
                    "$is_present" => {
                        flag(errors);
                        Expect::IsPresent
                    }
                    "$any" => {
                        flag(errors);
                        Expect::Any
                    }
                    "$absent" => {
                        flag(errors);
                        Expect::Absent
                    }
                    "$not" => Expect::Not(Box::new(parse_at(arg, &at, errors))),
                    other => {
                        errors.push(ParseError {
                            path: at.clone(),
                            message: format!(
                                "unknown matcher '{other}' (expected one of: {})",
                                MATCHERS.join(", ")
                            ),
                        });
                        Expect::Any
                    }
                };
                all.push(e);
            }
            if all.len() == 1 {
                all.pop().unwrap_or(Expect::Any)
            } else {
                Expect::All(all)
            }
        }
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
            errors.push(ParseError {
                path: path.to_string(),
                message: "a map mixes matchers ($…) and field names; put the matchers under \
                          the field they check"
                    .to_string(),
            });
            Expect::Any
        }
        Value::Object(map) => Expect::Fields(
            map.iter()
                .map(|(k, v)| (k.clone(), parse_at(v, &join(path, k), errors)))
                .collect(),
        ),
        Value::Array(items) => Expect::Items(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_at(v, &join(path, &i.to_string()), errors))
                .collect(),
        ),
        scalar => Expect::Equals(scalar.clone()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Deep equality: object key order ignored, numbers compared by value (`0 == 0.0`), no
/// coercion between types (`'427' != 427`).
pub fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Inclusion (spec §8.2 `includes`).
fn includes(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|w| deep_eq(w, v))),
        (Value::Array(a), Value::Array(e)) => e.iter().all(|v| a.iter().any(|w| deep_eq(w, v))),
        (Value::Array(a), e) => a.iter().any(|w| deep_eq(w, e)),
        (Value::String(a), Value::String(e)) => a.contains(e.as_str()),
        _ => false,
    }
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(missing)".to_string(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "?".to_string()),
    }
}

fn pretty(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A diff helps for structures and multi-line text, not for scalars.
fn worth_diffing(a: &Value, e: &Value) -> bool {
    let structured = |v: &Value| match v {
        Value::Array(_) | Value::Object(_) => true,
        Value::String(s) => s.contains('\n'),
        _ => false,
    };
    structured(a) && structured(e)
}

/// One failed expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was checked, e.g. `steps.greet[1].input.message`.
    pub path: String,
    /// What went wrong: the matcher, the actual and the expected value.
    pub message: String,
    /// A line diff (`-` expected, `+` actual) when both sides are structured.
    pub diff: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(d) = &self.diff {
            write!(f, "\nDiff (- expected, + actual):\n{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(e: Value, a: Value) -> bool {
        Expect::parse(&e).unwrap().check(Some(&a), "x").is_empty()
    }

    #[test]
    fn equals_follows_the_spec_table() {
        assert!(ok(json!(0), json!(0.0)));
        assert!(!ok(json!("427"), json!(427)));
        assert!(ok(
            json!({"$equals": {"a": 1, "b": 2}}),
            json!({"b": 2, "a": 1})
        ));
        assert!(!ok(json!({"$equals": {"a": 1}}), json!({"a": 1, "b": 2})));
        assert!(!ok(json!([1, 2]), json!([2, 1])));
        assert!(ok(json!(null), json!(null)));
        assert!(!ok(json!(null), json!(0)));
        // Absent equals only null.
        let e = Expect::parse(&json!(null)).unwrap();
        assert!(e.check(None, "x").is_empty());
    }

    #[test]
    fn plain_maps_check_only_the_named_fields() {
        assert!(ok(json!({"a": 1}), json!({"a": 1, "b": 2})));
        assert!(!ok(json!({"a": 1}), json!({"a": 2})));
        assert!(!ok(json!({"a": 1}), json!("a")));
        assert!(ok(
            json!({"a": {"b": {"$contains": "x"}}}),
            json!({"a": {"b": "axe"}})
        ));
    }

    #[test]
    fn string_matchers_take_strings_only() {
        assert!(ok(json!({"$contains": "2"}), json!("427")));
        assert!(!ok(json!({"$contains": "2"}), json!(427)));
        assert!(ok(json!({"$starts_with": ""}), json!("x")));
        assert!(ok(json!({"$ends_with": "27"}), json!("427")));
        assert!(!ok(json!({"$starts_with": "4"}), json!(427)));
        assert!(ok(json!({"$matches": "^a+b$"}), json!("aab")));
        assert!(!ok(json!({"$matches": "^a+b$"}), json!("aabc")));
    }

    #[test]
    fn includes_follows_the_spec_table() {
        assert!(ok(json!({"$includes": {"a": 1}}), json!({"a": 1, "b": 2})));
        assert!(ok(json!({"$includes": []}), json!([1])));
        assert!(ok(json!({"$includes": ["a"]}), json!(["a", "b"])));
        assert!(ok(json!({"$includes": "a"}), json!(["a", "b"])));
        assert!(ok(json!({"$includes": "42"}), json!("427")));
        assert!(!ok(json!({"$includes": "c"}), json!(["a", "b"])));
        assert!(!ok(json!({"$includes": 1}), json!(null)));
    }

    #[test]
    fn presence_any_absent_and_not() {
        assert!(ok(json!({"$is_present": true}), json!(0)));
        assert!(!ok(json!({"$is_present": true}), json!("  ")));
        assert!(!ok(json!({"$is_present": true}), json!([])));
        let absent = Expect::parse(&json!({"$absent": true})).unwrap();
        assert!(absent.check(None, "x").is_empty());
        assert!(!absent.check(Some(&json!(1)), "x").is_empty());
        let any = Expect::parse(&json!({"$any": true})).unwrap();
        assert!(any.check(Some(&json!(null)), "x").is_empty());
        assert!(!any.check(None, "x").is_empty());
        assert!(ok(json!({"$not": {"$contains": "z"}}), json!("abc")));
        let f = Expect::parse(&json!({"$not": {"$contains": "b"}}))
            .unwrap()
            .check(Some(&json!("abc")), "m");
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains("negated contains"),
            "{}",
            f[0].message
        );
        assert!(ok(
            json!({"$starts_with": "a", "$ends_with": "c"}),
            json!("abc")
        ));
        assert!(!ok(
            json!({"$starts_with": "a", "$ends_with": "b"}),
            json!("abc")
        ));
    }

    #[test]
    fn failures_name_the_path_and_values() {
        let e = Expect::parse(&json!({"body": {"items": ["a", {"$contains": "q"}]}})).unwrap();
        let f = e.check(Some(&json!({"body": {"items": ["a", "b"]}})), "input");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, "input.body.items[1]");
        assert!(
            f[0].message.contains("Actual value: \"b\""),
            "{}",
            f[0].message
        );
        assert!(
            f[0].message.contains("Expected value: q"),
            "{}",
            f[0].message
        );
        let f = Expect::parse(&json!({"$equals": {"a": 1}}))
            .unwrap()
            .check(Some(&json!({"a": 2})), "o");
        let diff = f[0].diff.as_deref().unwrap();
        assert!(diff.contains("-   \"a\": 1\n+   \"a\": 2"), "{diff}");
    }

    #[test]
    fn bad_expectations_are_reported_with_their_path() {
        let errs = Expect::parse(&json!({"a": {"$bogus": 1}, "b": {"$matches": "("}, "c": {"$any": 1}, "d": {"$x": 1, "y": 2}})).unwrap_err();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a.$bogus", "b.$matches", "c.$any", "d"]);
        assert!(errs[0].message.contains("unknown matcher '$bogus'"));
    }
}
