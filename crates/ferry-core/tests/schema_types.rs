//! Coercion rules of spec §4.3, one test per type, plus the type-error messages.

use ferry_core::schema::{coerce_value, Field, FieldType, Schema};
use serde_json::{json, Value};

/// Resolve `{x: v}` against a single field `x` of type `ty`.
fn resolve_one(ty: FieldType, v: Value) -> Result<Value, Vec<String>> {
    let schema = Schema::new("t", vec![Field::new("x", ty)]);
    schema
        .resolve(&json!({ "x": v }), None)
        .map(|o| o["x"].clone())
        .map_err(|e| e.messages)
}

fn ok(ty: FieldType, v: Value) -> Value {
    resolve_one(ty, v.clone()).unwrap_or_else(|e| panic!("{ty} {v}: {e:?}"))
}

fn err(ty: FieldType, v: Value) -> String {
    match resolve_one(ty, v.clone()) {
        Ok(o) => panic!("{ty} {v} resolved to {o}, expected an error"),
        Err(m) => m.join(" "),
    }
}

#[test]
fn string_from_numbers() {
    assert_eq!(ok(FieldType::String, json!(12)), json!("12"));
    assert_eq!(ok(FieldType::String, json!(12345.67)), json!("12345.67"));
    assert_eq!(ok(FieldType::String, json!(-3)), json!("-3"));
    assert_eq!(ok(FieldType::String, json!("as is")), json!("as is"));
    assert_eq!(
        err(FieldType::String, json!({"a": 1})),
        "Type of field 'x' invalid, expected String found Hash."
    );
    assert_eq!(
        err(FieldType::String, json!([1])),
        "Type of field 'x' invalid, expected String found Array."
    );
    assert_eq!(
        err(FieldType::String, json!(true)),
        "Type of field 'x' invalid, expected String found Boolean."
    );
}

#[test]
fn integer_coercion() {
    assert_eq!(ok(FieldType::Integer, json!("42")), json!(42));
    assert_eq!(ok(FieldType::Integer, json!("42.3")), json!(42));
    assert_eq!(ok(FieldType::Integer, json!("-42")), json!(-42));
    assert_eq!(ok(FieldType::Integer, json!("-42.3")), json!(-42));
    assert_eq!(ok(FieldType::Integer, json!(42.3)), json!(42));
    assert_eq!(ok(FieldType::Integer, json!(7)), json!(7));
    // Large integers keep their precision.
    assert_eq!(
        ok(FieldType::Integer, json!("9007199254740993")),
        json!(9007199254740993i64)
    );
    assert_eq!(
        err(FieldType::Integer, json!("42,3")),
        "Type of field 'x' invalid, expected Integer found String."
    );
    assert_eq!(
        err(FieldType::Integer, json!(" 42")),
        "Type of field 'x' invalid, expected Integer found String."
    );
    assert_eq!(
        err(FieldType::Integer, json!(true)),
        "Type of field 'x' invalid, expected Integer found Boolean."
    );
}

#[test]
fn float_coercion() {
    assert_eq!(ok(FieldType::Float, json!(3)), json!(3.0));
    assert_eq!(ok(FieldType::Float, json!("2.5")), json!(2.5));
    assert_eq!(ok(FieldType::Float, json!("-2")), json!(-2.0));
    assert_eq!(
        err(FieldType::Float, json!("1e3")),
        "Type of field 'x' invalid, expected Float found String."
    );
    assert_eq!(
        err(FieldType::Float, json!({"a": 1})),
        "Type of field 'x' invalid, expected Float found Hash."
    );
}

#[test]
fn boolean_coercion() {
    for t in [json!("t"), json!(true), json!("True"), json!(1), json!("1")] {
        assert_eq!(ok(FieldType::Boolean, t.clone()), json!(true), "{t}");
    }
    for f in [
        json!("f"),
        json!(false),
        json!("False"),
        json!(0),
        json!("0"),
        json!("off"),
        json!("OFF"),
    ] {
        assert_eq!(ok(FieldType::Boolean, f.clone()), json!(false), "{f}");
    }
    assert_eq!(ok(FieldType::Boolean, json!("Falso")), json!(true));
    assert_eq!(ok(FieldType::Boolean, json!("")), Value::Null);
    assert_eq!(ok(FieldType::Boolean, Value::Null), Value::Null);
}

#[test]
fn base64_and_binary() {
    assert_eq!(
        ok(FieldType::Base64, json!("Hello World!")),
        json!("SGVsbG8gV29ybGQh")
    );
    assert_eq!(
        ok(FieldType::Base64, json!("SGVsbG8gV29ybGQh")),
        json!("SGVsbG8gV29ybGQh")
    );
    // Newline-wrapped Base64 counts as encoded already.
    assert_eq!(
        ok(FieldType::Base64, json!("SGVsbG8g\nV29ybGQh\n")),
        json!("SGVsbG8g\nV29ybGQh\n")
    );
    assert_eq!(
        ok(FieldType::Binary, json!("raw \u{1}")),
        json!("raw \u{1}")
    );
    assert_eq!(
        err(FieldType::Base64, json!(5)),
        "Type of field 'x' invalid, expected String found Integer."
    );
}

#[test]
fn uri_needs_a_scheme() {
    assert_eq!(
        ok(FieldType::Uri, json!("http://foo.example.com")),
        json!("http://foo.example.com")
    );
    assert_eq!(
        ok(FieldType::Uri, json!("mailto:a@b.c")),
        json!("mailto:a@b.c")
    );
    assert_eq!(
        err(FieldType::Uri, json!("utrecht")),
        "Field 'x' is invalid."
    );
    assert_eq!(
        err(FieldType::Uri, json!("/relative/path")),
        "Field 'x' is invalid."
    );
}

#[test]
fn hash_and_any() {
    assert_eq!(
        ok(FieldType::Hash, json!({"foo": "bar"})),
        json!({"foo": "bar"})
    );
    assert_eq!(
        err(FieldType::Hash, json!("foo")),
        "Type of field 'x' invalid, expected Hash found String."
    );
    for v in [
        json!(1),
        json!("s"),
        json!([1, {"a": 2}]),
        json!({"k": null}),
    ] {
        assert_eq!(ok(FieldType::Any, v.clone()), v);
    }
}

#[test]
fn date_coercion() {
    assert_eq!(
        ok(FieldType::Date, json!("2024-06-11")),
        json!("2024-06-11")
    );
    assert_eq!(
        ok(FieldType::Date, json!("Tue, 11 Jun 2024 16:55:50 +0200")),
        json!("2024-06-11")
    );
    assert_eq!(
        ok(FieldType::Date, json!("2024-08-27T23:16:56+02:00")),
        json!("2024-08-27")
    );
    assert_eq!(
        ok(FieldType::Date, json!("2024-08-27 10:00:00")),
        json!("2024-08-27")
    );
    assert_eq!(
        ok(FieldType::Date, json!("11 June 2024")),
        json!("2024-06-11")
    );
    assert_eq!(
        err(FieldType::Date, json!("not a date")),
        "Type of field 'x' invalid, expected Date found String."
    );
    assert_eq!(
        err(FieldType::Date, json!("2024-02-30")),
        "Type of field 'x' invalid, expected Date found String."
    );
    assert_eq!(
        err(FieldType::Date, json!(20240611)),
        "Type of field 'x' invalid, expected Date found Integer."
    );
}

#[test]
fn date_time_coercion() {
    // Round-trips with its offset.
    assert_eq!(
        ok(FieldType::DateTime, json!("2024-08-27T12:16:56+02:00")),
        json!("2024-08-27T12:16:56+02:00")
    );
    assert_eq!(
        ok(
            FieldType::DateTime,
            json!("Tue, 11 Jun 2024 16:55:50 +0200")
        ),
        json!("2024-06-11T16:55:50+02:00")
    );
    // No offset: UTC. A bare date: midnight UTC.
    assert_eq!(
        ok(FieldType::DateTime, json!("2024-08-27 12:16:56")),
        json!("2024-08-27T12:16:56Z")
    );
    assert_eq!(
        ok(FieldType::DateTime, json!("2024-08-27")),
        json!("2024-08-27T00:00:00Z")
    );
    assert_eq!(
        ok(FieldType::DateTime, json!("2024-08-27T12:16:56.250Z")),
        json!("2024-08-27T12:16:56.250Z")
    );
    // The Ruby Time#to_s form used in job state.
    assert_eq!(
        ok(FieldType::DateTime, json!("2024-08-27 12:16:56 +0200")),
        json!("2024-08-27T12:16:56+02:00")
    );
    // {date, time, time_zone} with a fixed offset.
    assert_eq!(
        ok(
            FieldType::DateTime,
            json!({"date": "2024-06-11", "time": "09:49:29", "time_zone": "-04:00"})
        ),
        json!("2024-06-11T09:49:29-04:00")
    );
    // ... and with an IANA zone (EDT in June, EST in January).
    assert_eq!(
        ok(
            FieldType::DateTime,
            json!({"date": "2024-06-11", "time": "09:49:29", "time_zone": "America/New_York"})
        ),
        json!("2024-06-11T09:49:29-04:00")
    );
    assert_eq!(
        ok(
            FieldType::DateTime,
            json!({"date": "2024-01-11", "time": "09:49:29", "time_zone": "America/New_York"})
        ),
        json!("2024-01-11T09:49:29-05:00")
    );
    // 02:30 does not exist on the spring-forward day in Amsterdam.
    assert_eq!(
        err(
            FieldType::DateTime,
            json!({"date": "2024-03-31", "time": "02:30", "time_zone": "Europe/Amsterdam"})
        ),
        "Type of field 'x' invalid, expected DateTime found Hash."
    );
    assert_eq!(
        ok(
            FieldType::DateTime,
            json!({"date": "2024-06-11", "time": "9:49"})
        ),
        json!("2024-06-11T09:49:00Z")
    );
    assert_eq!(
        err(FieldType::DateTime, json!("yesterday")),
        "Type of field 'x' invalid, expected DateTime found String."
    );
    assert_eq!(
        err(
            FieldType::DateTime,
            json!({"date": "2024-06-11", "time_zone": "Mars/Base"})
        ),
        "Type of field 'x' invalid, expected DateTime found Hash."
    );
}

#[test]
fn time_of_day() {
    for (input, out) in [
        ("0:0", "00:00:00"),
        ("4:04", "04:04:00"),
        ("23:59:59.1234", "23:59:59.1234"),
        ("16:55:50", "16:55:50"),
        ("24:00", "24:00:00"),
    ] {
        assert_eq!(ok(FieldType::Time, json!(input)), json!(out), "{input}");
    }
    for bad in [
        ":0",
        "0:",
        "4:60",
        "25:04",
        "00:04:60",
        "23:59:59.",
        "35:55:50",
        "noon",
    ] {
        assert_eq!(
            err(FieldType::Time, json!(bad)),
            "Field 'x' is invalid.",
            "{bad}"
        );
    }
    // A date-time string gives its time of day.
    assert_eq!(
        ok(FieldType::Time, json!("2024-08-27T12:16:56+02:00")),
        json!("12:16:56")
    );
    assert_eq!(
        err(FieldType::Time, json!({"h": 1})),
        "Type of field 'x' invalid, expected Time found Hash."
    );
    // "time_of_day" is an accepted alias.
    assert_eq!("time_of_day".parse::<FieldType>().unwrap(), FieldType::Time);
}

#[test]
fn blank_values_skip_type_checks() {
    for ty in [
        FieldType::Integer,
        FieldType::Date,
        FieldType::Hash,
        FieldType::Uri,
    ] {
        assert_eq!(ok(ty, json!("")), json!(""), "{ty}");
        assert_eq!(ok(ty, Value::Null), Value::Null, "{ty}");
    }
}

#[test]
fn coerce_value_is_lenient_and_recursive() {
    let f = Field::new("n", FieldType::Integer).array();
    assert_eq!(
        coerce_value(&f, &json!(["1", 2.7, "x"])),
        json!([1, 2, "x"])
    );
    assert_eq!(coerce_value(&f, &json!("5")), json!([5]));
    let nested = Field::new("o", FieldType::Nested).with_fields(vec![
        Field::new("a", FieldType::Integer).required(),
        Field::new("b", FieldType::Boolean).default_value(json!("yes")),
    ]);
    assert_eq!(
        coerce_value(&nested, &json!({"a": "3", "zzz": 1})),
        json!({"a": 3, "b": true})
    );
    // Missing required sub-field: no error here, just the coerced value.
    assert_eq!(coerce_value(&nested, &json!({})), json!({"b": true}));
    // Coerced values are stable under re-coercion.
    for (ty, v) in [
        (
            FieldType::DateTime,
            json!("Tue, 11 Jun 2024 16:55:50 +0200"),
        ),
        (FieldType::Date, json!("11 June 2024")),
        (FieldType::Time, json!("4:04")),
        (FieldType::Base64, json!("Hello")),
        (FieldType::Float, json!("1.5")),
    ] {
        let f = Field::new("x", ty);
        let once = coerce_value(&f, &v);
        assert_eq!(coerce_value(&f, &once), once, "{ty}");
    }
}
