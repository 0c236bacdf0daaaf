//! Schema resolution: validation messages, nested/array paths, defaults, pruning, secrets,
//! definitions, serde and examples.

use ferry_core::schema::{Field, FieldType, Schema, SchemaErrors};
use ferry_core::secrets::{is_envelope, Secrets};
use serde_json::{json, Value};

fn messages(schema: &Schema, raw: Value) -> Vec<String> {
    match schema.resolve(&raw, None) {
        Ok(v) => panic!("expected errors, resolved to {v}"),
        Err(SchemaErrors { messages }) => messages,
    }
}

fn body_schema() -> Schema {
    // The JSON Endpoint output of spec §9.3: a `body` nested field with the user's body schema.
    Schema::new(
        "output",
        vec![
            Field::new("url_postfix", FieldType::String),
            Field::new("query_params", FieldType::Hash),
            Field::new("body", FieldType::Nested).with_fields(vec![
                Field::new("pet", FieldType::String).required(),
                Field::new("cars", FieldType::Nested)
                    .array()
                    .max_length(3)
                    .with_fields(vec![
                        Field::new("nr", FieldType::Integer).max(99.0),
                        Field::new("brand", FieldType::String),
                    ]),
            ]),
        ],
    )
}

#[test]
fn json_endpoint_messages() {
    let s = body_schema();
    assert_eq!(
        messages(&s, json!({"body": {"cars": []}})),
        ["Nested field 'body' invalid: Field 'pet' is required."]
    );
    assert_eq!(
        messages(&s, json!({"body": {"pet": {"name": "zuzu"}}})),
        ["Nested field 'body' invalid: Type of field 'pet' invalid, expected String found Hash."]
    );
    assert_eq!(
        messages(&s, json!({"body": {"pet": "zuzu", "cars": [{"nr": 100}]}})),
        ["Nested field 'body' invalid: Nested field 'cars[0]' invalid: Field 'nr' should be at most 99."]
    );
    // A non-array value for an array nested field is wrapped, so the path is cars[0].
    assert_eq!(
        messages(&s, json!({"body": {"pet": "zuzu", "cars": {"nr": 133}}})),
        ["Nested field 'body' invalid: Nested field 'cars[0]' invalid: Field 'nr' should be at most 99."]
    );
    let e = s
        .resolve(
            &json!({"body": {"cars": [{"nr": 1}, {"nr": 1}, {"nr": 1}, {"nr": 1}]}}),
            None,
        )
        .unwrap_err();
    assert_eq!(
        e.messages,
        [
            "Nested field 'body' invalid: Field 'pet' is required.",
            "Nested field 'body' invalid: Length of field 'cars' should be at most 3."
        ]
    );
    assert_eq!(
        e.to_string(),
        "Nested field 'body' invalid: Field 'pet' is required. Nested field 'body' invalid: Length of field 'cars' should be at most 3."
    );
}

#[test]
fn json_endpoint_success_and_pruning() {
    let s = body_schema();
    let out = s
        .resolve(
            &json!({
                "body": {"pet": "zuzu", "extra": 1, "cars": {"nr": "33", "brand": 7, "color": "red"}},
                "query_params": {"secret": "boo"},
                "url_postfix": null,
                "unknown_top": true
            }),
            None,
        )
        .unwrap();
    assert_eq!(
        out,
        json!({
            "url_postfix": null,
            "query_params": {"secret": "boo"},
            "body": {"pet": "zuzu", "cars": [{"nr": 33, "brand": "7"}]}
        })
    );
    // Keys come out in schema order.
    let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["url_postfix", "query_params", "body"]);
}

#[test]
fn remove_unmapped_fields_false_keeps_unknown_keys() {
    let s = Schema::new(
        "t",
        vec![Field::new("items", FieldType::Nested)
            .array()
            .keep_unmapped_fields()
            .with_fields(vec![Field::new("a", FieldType::Integer)])],
    );
    let out = s
        .resolve(&json!({"items": [{"a": "1", "unknown_field": "x"}]}), None)
        .unwrap();
    assert_eq!(out, json!({"items": [{"a": 1, "unknown_field": "x"}]}));
}

#[test]
fn deep_nested_enumeration_message() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("level1", FieldType::Nested).with_fields(vec![Field::new(
                "level2",
                FieldType::Nested,
            )
            .with_fields(vec![Field::new("level3", FieldType::Nested)
                .with_fields(vec![Field::new("deep_field", FieldType::String)
                    .enumeration(vec![json!("valid_value")])])])]),
        ],
    );
    assert_eq!(
        messages(&s, json!({"level1": {"level2": {"level3": {"deep_field": "nope"}}}})),
        ["Nested field 'level1' invalid: Nested field 'level2' invalid: Nested field 'level3' invalid: Field 'deep_field' should be one of valid_value."]
    );
}

#[test]
fn enumeration_plain_and_id_label_forms() {
    let plain = Schema::new(
        "t",
        vec![Field::new("operator", FieldType::String).enumeration(vec![
            json!("sum"),
            json!("min"),
            json!("max"),
            json!("my_object_id"),
        ])],
    );
    assert_eq!(
        messages(&plain, json!({"operator": "sumo"})),
        ["Field 'operator' should be one of sum, min, max, my_object_id."]
    );
    assert!(plain.resolve(&json!({"operator": "max"}), None).is_ok());

    let objects = Schema::new(
        "t",
        vec![Field::new("prio", FieldType::Integer).enumeration(vec![
            json!({"id": 1, "label": "Low"}),
            json!({"id": "2", "label": "High"}),
        ])],
    );
    // Ids and values are compared after coercion.
    assert_eq!(
        objects.resolve(&json!({"prio": "2"}), None).unwrap(),
        json!({"prio": 2})
    );
    assert_eq!(
        objects.resolve(&json!({"prio": 1.0}), None).unwrap(),
        json!({"prio": 1})
    );
    assert_eq!(
        messages(&objects, json!({"prio": 3})),
        ["Field 'prio' should be one of 1, 2."]
    );
}

#[test]
fn required_and_blank_values() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("foo", FieldType::Boolean).required(),
            Field::new("name", FieldType::String).required(),
            Field::new("list", FieldType::String).array().required(),
        ],
    );
    assert!(s
        .resolve(&json!({"foo": false, "name": "n", "list": ["a"]}), None)
        .is_ok());
    assert_eq!(
        messages(&s, json!({"foo": null, "name": "  ", "list": []})),
        [
            "Field 'foo' is required.",
            "Field 'name' is required.",
            "Field 'list' is required."
        ]
    );
    // Absent keys are required too; "" as a boolean becomes nil.
    assert_eq!(
        messages(&s, json!({"foo": "", "name": "n", "list": "a"})),
        ["Field 'foo' is required."]
    );
}

#[test]
fn bounds_lengths_and_pattern() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("batch_size", FieldType::Integer)
                .min(2.0)
                .max(10.0),
            Field::new("ratio", FieldType::Float).min(0.5),
            Field::new("foo", FieldType::String)
                .min_length(4)
                .pattern(r"\A[a-z]*\z"),
            Field::new("cars", FieldType::String).array().max_length(3),
            Field::new("tags", FieldType::Hash).min_length(1),
        ],
    );
    assert_eq!(
        messages(
            &s,
            json!({"batch_size": 1, "ratio": "0.25", "foo": "fo0", "cars": ["a", "b", "c", "d"], "tags": {}})
        ),
        [
            "Field 'batch_size' should be at least 2.",
            "Field 'ratio' should be at least 0.5.",
            "Field 'foo' should confirm to pattern /\\A[a-z]*\\z/.",
            "Length of field 'foo' should be at least 4.",
            "Length of field 'cars' should be at most 3.",
            "Length of field 'tags' should be at least 1."
        ]
    );
    assert_eq!(
        messages(&s, json!({"batch_size": "11"})),
        ["Field 'batch_size' should be at most 10."]
    );
    let ok = s
        .resolve(
            &json!({"batch_size": "2.9", "foo": "abcd", "cars": "x"}),
            None,
        )
        .unwrap();
    assert_eq!(ok, json!({"batch_size": 2, "foo": "abcd", "cars": ["x"]}));
}

#[test]
fn pattern_is_unanchored_and_applies_to_numbers() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("name", FieldType::String).pattern("[A-Za-z0-9_-]+"),
            Field::new("code", FieldType::String).pattern(r"^\d{3}$"),
        ],
    );
    assert!(s
        .resolve(&json!({"name": "a b", "code": 123}), None)
        .is_ok());
    assert_eq!(
        messages(&s, json!({"name": "   !", "code": 1234})),
        [
            "Field 'name' should confirm to pattern /[A-Za-z0-9_-]+/.",
            "Field 'code' should confirm to pattern /^\\d{3}$/."
        ]
    );
}

#[test]
fn date_bounds_compare_as_epoch_seconds() {
    // 2024-01-01T00:00:00Z = 1704067200
    let s = Schema::new(
        "t",
        vec![Field::new("d", FieldType::Date).min(1_704_067_200.0)],
    );
    assert_eq!(
        messages(&s, json!({"d": "2023-12-31"})),
        ["Field 'd' should be at least 1704067200."]
    );
    assert!(s.resolve(&json!({"d": "2024-01-01"}), None).is_ok());
}

#[test]
fn array_element_paths() {
    let s = Schema::new(
        "t",
        vec![Field::new("nrs", FieldType::Integer).array().max(5.0)],
    );
    assert_eq!(
        messages(&s, json!({"nrs": [1, "x", 9, null, "3"]})),
        [
            "Type of field 'nrs[1]' invalid, expected Integer found String.",
            "Field 'nrs[2]' should be at most 5."
        ]
    );
    assert_eq!(
        s.resolve(&json!({"nrs": [1, null, "3"]}), None).unwrap(),
        json!({"nrs": [1, null, 3]})
    );
}

#[test]
fn defaults_apply_only_to_absent_keys() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("n", FieldType::Integer).default_value(json!("7")),
            Field::new("m", FieldType::Integer).default_value(json!(8)),
            Field::new("flag", FieldType::Boolean).default_value(json!(true)),
            Field::new("opt", FieldType::String),
            Field::new("list", FieldType::String)
                .array()
                .default_value(json!([])),
            Field::new("sub", FieldType::Nested).with_fields(vec![
                Field::new("x", FieldType::String).default_value(json!("dx")),
                Field::new("y", FieldType::Nested).with_fields(vec![Field::new(
                    "z",
                    FieldType::Integer,
                )
                .default_value(json!(1))]),
            ]),
        ],
    );
    assert_eq!(
        s.resolve(&json!({"m": null, "sub": {"y": {}}}), None)
            .unwrap(),
        json!({"n": 7, "m": null, "flag": true, "list": [], "sub": {"x": "dx", "y": {"z": 1}}})
    );
    // `null` and a non-object raw value.
    assert_eq!(
        s.resolve(&Value::Null, None).unwrap(),
        json!({"n": 7, "m": 8, "flag": true, "list": []})
    );
    assert_eq!(
        s.resolve(&json!([1]), None).unwrap_err().messages,
        ["Expected an object, found Array."]
    );
}

#[test]
fn nested_type_errors_and_required_nested() {
    let s = Schema::new(
        "t",
        vec![Field::new("filter", FieldType::Nested)
            .required()
            .with_fields(vec![Field::new("q", FieldType::String).required()])],
    );
    assert_eq!(
        messages(&s, json!({"filter": "text"})),
        ["Type of field 'filter' invalid, expected Hash found String."]
    );
    assert_eq!(
        messages(&s, json!({"filter": {}})),
        ["Field 'filter' is required."]
    );
    assert_eq!(messages(&s, json!({})), ["Field 'filter' is required."]);
    assert_eq!(
        messages(&s, json!({"filter": {"other": 1}})),
        ["Field 'filter' is required."]
    );
    assert_eq!(
        messages(&s, json!({"filter": {"q": ""}})),
        ["Nested field 'filter' invalid: Field 'q' is required."]
    );
    // Not required: an empty object is still checked against its sub-fields.
    let optional = Schema::new(
        "t",
        vec![
            Field::new("filter", FieldType::Nested).with_fields(vec![Field::new(
                "q",
                FieldType::String,
            )
            .required()]),
        ],
    );
    assert_eq!(
        messages(&optional, json!({"filter": {}})),
        ["Nested field 'filter' invalid: Field 'q' is required."]
    );
    assert!(optional.resolve(&json!({}), None).is_ok());
}

#[test]
fn secret_strings_are_sealed_and_envelopes_kept() {
    let secrets = Secrets::from_master_key(&[3u8; 32]);
    let s = Schema::new(
        "t",
        vec![
            Field::new("token", FieldType::SecretString).required(),
            Field::new("pins", FieldType::SecretString).array(),
            Field::new("nested", FieldType::Nested)
                .array()
                .with_fields(vec![Field::new("pw", FieldType::SecretString)]),
            Field::new("empty", FieldType::SecretString),
        ],
    );
    let out = s
        .resolve(
            &json!({"token": "Zuzu", "pins": [1234, "x"], "nested": [{"pw": "p1"}, {"pw": "p2"}], "empty": ""}),
            Some(&secrets),
        )
        .unwrap();
    let token = out["token"].as_str().unwrap();
    assert!(is_envelope(token));
    assert_eq!(secrets.open(token).unwrap().as_str(), "Zuzu");
    assert_eq!(
        secrets
            .open(out["pins"][0].as_str().unwrap())
            .unwrap()
            .as_str(),
        "1234"
    );
    assert_eq!(
        secrets
            .open(out["pins"][1].as_str().unwrap())
            .unwrap()
            .as_str(),
        "x"
    );
    for (i, want) in ["p1", "p2"].iter().enumerate() {
        let env = out["nested"][i]["pw"].as_str().unwrap();
        assert_eq!(secrets.open(env).unwrap().as_str(), *want);
    }
    assert_eq!(out["empty"], json!(""), "blank secrets are not encrypted");
    assert!(!out.to_string().contains("Zuzu"));

    // Resolving again keeps the envelopes as they are (no double encryption).
    let again = s.resolve(&out, Some(&secrets)).unwrap();
    assert_eq!(again, out);
    // Without a sealer, envelopes are accepted and plaintext is rejected.
    assert_eq!(s.resolve(&out, None).unwrap(), out);
    let e = s
        .resolve(&json!({"token": "Hello Moon!"}), None)
        .unwrap_err();
    assert_eq!(
        e.messages,
        ["Field 'token' is invalid. Expected an encrypted secret string value."]
    );
    assert!(!e.to_string().contains("Hello Moon"));
    assert_eq!(
        messages(&s, json!({"token": {"a": 1}})),
        ["Type of field 'token' invalid, expected SecretString found Hash."]
    );
}

#[test]
fn field_type_names_and_serde() {
    assert_eq!(
        serde_json::to_value(FieldType::DateTime).unwrap(),
        json!("date_time")
    );
    assert_eq!(
        serde_json::to_value(FieldType::Time).unwrap(),
        json!("time")
    );
    assert_eq!(
        serde_json::from_value::<FieldType>(json!("object")).unwrap(),
        FieldType::Hash
    );
    assert_eq!(
        serde_json::from_value::<FieldType>(json!("any_item_type")).unwrap(),
        FieldType::Any
    );
    for t in FieldType::ALL {
        assert_eq!(t.as_str().parse::<FieldType>().unwrap(), t);
    }
    let e = serde_json::from_value::<FieldType>(json!("strnig"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field type 'strnig'"), "{e}");
    assert!(
        e.contains("secret_string") && e.contains("date_time"),
        "{e}"
    );
}

#[test]
fn field_from_yaml_with_defaults() {
    let yaml = r#"
id: body
type: nested
fields:
  - id: pet
    label: Pet
    type: string
    required: true
    enumeration: [cat, dog]
  - id: prio
    type: integer
    min: 1
    max: 5
    default: 5
    enumeration:
      - {id: 1, label: Low}
      - {id: 5, label: High}
  - id: extra
    type: object
    remove_unmapped_fields: false
"#;
    let f: Field = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(f.ty, FieldType::Nested);
    assert!(f.remove_unmapped_fields);
    assert_eq!(
        f.fields[0].enumeration_ids(),
        vec![json!("cat"), json!("dog")]
    );
    assert_eq!(f.fields[1].min, Some(1.0));
    assert_eq!(f.fields[1].enumeration_ids(), vec![json!(1), json!(5)]);
    assert!(!f.fields[2].remove_unmapped_fields);
    assert!(
        f.check_definition().is_empty(),
        "{:?}",
        f.check_definition()
    );

    // Serialization is compact and round-trips.
    let back = serde_json::to_value(&f.fields[0]).unwrap();
    assert_eq!(
        back,
        json!({"id": "pet", "label": "Pet", "type": "string", "required": true, "enumeration": ["cat", "dog"]})
    );
    let again: Field = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
    assert_eq!(again, f);

    let typo = serde_yaml::from_str::<Field>("id: x\ntype: string\nrequird: true\n");
    assert!(typo.unwrap_err().to_string().contains("requird"));
    let bad_type = serde_yaml::from_str::<Field>("id: x\ntype: strnig\n");
    assert!(bad_type
        .unwrap_err()
        .to_string()
        .contains("expected one of"));
}

#[test]
fn check_definition_messages() {
    let long_id = "x".repeat(41);
    let f = Field::new("top", FieldType::Nested).with_fields(vec![
        Field::new(&long_id, FieldType::String),
        Field::new("s", FieldType::String).with_fields(vec![Field::new("a", FieldType::Any)]),
        Field::new("b", FieldType::Boolean).enumeration(vec![json!(true)]),
        Field::new("p", FieldType::String).pattern("(unclosed"),
        Field::new("d", FieldType::Integer).default_value(json!("abc")),
        Field::new("r", FieldType::Integer).min(5.0).max(1.0),
        Field::new("n", FieldType::Nested),
        Field::new("dup", FieldType::String),
        Field::new("dup", FieldType::String),
        Field::new("", FieldType::String),
    ]);
    let m = f.check_definition();
    let has = |needle: &str| m.iter().any(|x| x.contains(needle));
    assert!(
        has(&format!("Field 'top.{long_id}': id is too long")),
        "{m:#?}"
    );
    assert!(has(
        "Field 'top.s': Subfields are only available when the type is nested."
    ));
    assert!(has(
        "Field 'top.b': Enumeration is restricted to string and integer types."
    ));
    assert!(has("Field 'top.p': Invalid regexp pattern:"));
    assert!(has(
        "Field 'top.d': default is invalid: Type of field 'd' invalid, expected Integer found String."
    ));
    assert!(has("Field 'top.r': min 5 is greater than max 1."));
    assert!(has(
        "Field 'top.n': a nested field needs at least one sub-field."
    ));
    assert!(has("Field 'top': duplicate sub-field id 'dup'."));
    assert!(has("Field 'top.': id can't be blank."));
    assert_eq!(m.len(), 9, "{m:#?}");
    assert!(Field::new("ok", FieldType::String)
        .enumeration(vec![json!("a")])
        .default_value(json!("a"))
        .check_definition()
        .is_empty());
    let schema = Schema::new(
        "s",
        vec![
            Field::new("a", FieldType::Any),
            Field::new("a", FieldType::Any),
        ],
    );
    assert_eq!(schema.check_definition(), ["Duplicate field id 'a'."]);
}

#[test]
fn examples() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("name", FieldType::String),
            Field::new("code", FieldType::String).pattern("^x"),
            Field::new("n", FieldType::Integer).default_value(json!(5)),
            Field::new("op", FieldType::String)
                .enumeration(vec![json!({"id": "sum", "label": "Sum"})]),
            Field::new("tags", FieldType::String).array(),
            Field::new("when", FieldType::DateTime),
            Field::new("sub", FieldType::Nested)
                .with_fields(vec![Field::new("ok", FieldType::Boolean)]),
        ],
    );
    let ex = s.example();
    assert_eq!(ex["name"], json!("Hello World!"));
    assert_eq!(ex["code"], json!("no-example-for-pattern"));
    assert_eq!(ex["n"], json!(5));
    assert_eq!(ex["op"], json!("sum"));
    assert_eq!(ex["tags"], json!(["Hello World!"]));
    assert_eq!(ex["sub"], json!({"ok": true}));
    assert!(ex["when"].as_str().unwrap().ends_with("T12:00:00Z"));
    // The example of a schema resolves against the schema, except the pattern placeholder.
    assert_eq!(
        s.resolve(&ex, None).unwrap_err().messages,
        ["Field 'code' should confirm to pattern /^x/."]
    );
}

#[test]
fn date_bounds() {
    let s = Schema::new(
        "t",
        vec![
            Field::new("bounded_date", FieldType::Date).min_date("2024-01-01"),
            Field::new("start_date", FieldType::Date).max_date("2026-06-10"),
            Field::new("at", FieldType::DateTime)
                .min_date("2024-01-01")
                .max_date("2024-12-31"),
        ],
    );
    assert_eq!(
        messages(
            &s,
            json!({"bounded_date": "2023-12-31", "start_date": "2026-06-20", "at": "2025-01-01T00:30:00+01:00"})
        ),
        [
            "Field 'bounded_date' should be on or after 2024-01-01.",
            "Field 'start_date' should be on or before 2026-06-10.",
            "Field 'at' should be on or before 2024-12-31."
        ]
    );
    assert!(s
        .resolve(
            &json!({"bounded_date": "2024-01-01", "start_date": "2026-06-10", "at": "2024-12-31T23:30:00-05:00"}),
            None
        )
        .is_ok());
    let bad = Field::new("x", FieldType::String).min_date("2024-01-01");
    assert_eq!(
        bad.check_definition(),
        ["Field 'x': min_date is only available for date and date_time fields."]
    );
    let bad = Field::new("x", FieldType::Date).max_date("soon");
    assert_eq!(
        bad.check_definition(),
        ["Field 'x': max_date 'soon' is not a date (expected YYYY-MM-DD)."]
    );
}
