//! Mapping expression tests: typing, recursion into objects/lists, references, limits, errors.

use std::time::{Duration, Instant};

use ferry_core::mapping::{
    eval_template_str, field_path_to_key, Expressions, Limits, Mapping, MappingError,
};
use serde_json::{json, Value};

fn ctx() -> Value {
    json!({
        "trigger": { "body": { "pet": "dog", "count": 5, "items": ["a", "b"], "price": 2.5,
                               "tags": [{"name": "x", "on": true}, {"name": "y", "on": false}] },
                     "headers": { "x-id": "42" } },
        "steps": { "fetch": { "status": 200, "body": { "ok": true } },
                   "a-b": { "value": 7 } },
        "item": { "item": "a", "index": 0 },
        "vars": { "counter": 3 },
        "env": { "GREETING": "hello" },
        "job": { "uuid": "0193-abc", "context_identifier": null }
    })
}

fn eval(v: Value) -> Result<Value, MappingError> {
    let exprs = Expressions::new();
    Mapping::compile(&exprs, &v)?.eval(&exprs, &ctx())
}

#[test]
fn single_expression_keeps_its_type() {
    assert_eq!(eval(json!("{{ trigger.body.count }}")).unwrap(), json!(5));
    assert_eq!(
        eval(json!("{{ trigger.body.price * 2 }}")).unwrap(),
        json!(5.0)
    );
    assert_eq!(
        eval(json!("{{ trigger.body.count > 3 }}")).unwrap(),
        json!(true)
    );
    assert_eq!(
        eval(json!("{{ trigger.body.items }}")).unwrap(),
        json!(["a", "b"])
    );
    assert_eq!(
        eval(json!("{{ steps.fetch.body }}")).unwrap(),
        json!({"ok": true})
    );
    assert_eq!(
        eval(json!("{{ job.context_identifier }}")).unwrap(),
        Value::Null
    );
    // Surrounding whitespace and whitespace control do not make it text.
    assert_eq!(
        eval(json!("  {{- vars.counter + 1 -}}\n")).unwrap(),
        json!(4)
    );
    // A string expression is a string.
    assert_eq!(eval(json!("{{ trigger.body.pet }}")).unwrap(), json!("dog"));
}

#[test]
fn text_around_expressions_renders_a_string() {
    assert_eq!(
        eval(json!("big {{ trigger.body.pet }}")).unwrap(),
        json!("big dog")
    );
    assert_eq!(
        eval(json!("{{ trigger.body.count }}{{ vars.counter }}")).unwrap(),
        json!("53")
    );
    assert_eq!(
        eval(json!(
            "{% if trigger.body.count > 3 %}many{% else %}few{% endif %}"
        ))
        .unwrap(),
        json!("many")
    );
    // Trailing newlines of YAML block scalars are kept.
    assert_eq!(
        eval(json!("Hi {{ env.GREETING }}\n")).unwrap(),
        json!("Hi hello\n")
    );
}

#[test]
fn literals_pass_through_unchanged() {
    let v = json!({"n": 1, "b": false, "s": "plain text", "null": null, "l": [1, "x"]});
    let exprs = Expressions::new();
    let m = Mapping::compile(&exprs, &v).unwrap();
    assert!(!m.has_expressions());
    assert!(m.references().is_empty());
    assert_eq!(m.eval(&exprs, &ctx()).unwrap(), v);
}

#[test]
fn objects_and_lists_recurse() {
    let v = json!({
        "method": "POST",
        "headers": [ { "name": "X-Pet", "value": "{{ trigger.body.pet }}" },
                     { "name": "X-Count", "value": "{{ trigger.body.count }}" } ],
        "body": { "nested": { "ok": "{{ steps.fetch.body.ok }}", "n": 1 } }
    });
    assert_eq!(
        eval(v).unwrap(),
        json!({
            "method": "POST",
            "headers": [ { "name": "X-Pet", "value": "dog" }, { "name": "X-Count", "value": 5 } ],
            "body": { "nested": { "ok": true, "n": 1 } }
        })
    );
}

#[test]
fn hyphenated_step_ids_via_subscript() {
    assert_eq!(eval(json!("{{ steps['a-b'].value }}")).unwrap(), json!(7));
    assert_eq!(
        eval(json!("v={{ steps[\"a-b\"].value }}")).unwrap(),
        json!("v=7")
    );
    assert_eq!(
        eval(json!("{{ trigger.headers['x-id'] }}")).unwrap(),
        json!("42")
    );
}

#[test]
fn undefined_access_is_lenient() {
    assert_eq!(
        eval(json!("{{ trigger.body.missing }}")).unwrap(),
        Value::Null
    );
    assert_eq!(
        eval(json!("{{ trigger.body.missing.deeper.still }}")).unwrap(),
        Value::Null
    );
    assert_eq!(
        eval(json!("[{{ steps.nothing.body }}]")).unwrap(),
        json!("[]")
    );
    assert_eq!(
        eval(json!("{{ trigger.body.missing | default('none') }}")).unwrap(),
        json!("none")
    );
}

#[test]
fn references_name_field_and_variable_paths() {
    let exprs = Expressions::new();
    let m = Mapping::compile(
        &exprs,
        &json!({
            "message": "{{ steps.fetch.body }} {{ trigger.body.pet }}",
            "headers": [ { "value": "{{ steps['a-b'].value }}" } ],
            "count": "{{ vars.counter + item.index }}",
            "loop": "{% for x in trigger.body.items %}{{ x }}{% endfor %}",
            "plain": "no expressions here",
            "globals": "{% for i in range(3) %}{{ loop.index }}{{ dict(a=i) }}{% endfor %}"
        }),
    )
    .unwrap();
    assert_eq!(
        m.references(),
        vec![
            ("count".to_string(), "item.index".to_string()),
            ("count".to_string(), "vars.counter".to_string()),
            ("headers[0].value".to_string(), "steps.a-b".to_string()),
            ("loop".to_string(), "trigger.body.items".to_string()),
            ("message".to_string(), "steps.fetch.body".to_string()),
            ("message".to_string(), "trigger.body.pet".to_string()),
        ]
    );
}

#[test]
fn syntax_errors_name_the_field_path() {
    let exprs = Expressions::new();
    let err = Mapping::compile(
        &exprs,
        &json!({"headers": [ {"value": "ok"}, {"value": "{{ 1 + }}"} ]}),
    )
    .unwrap_err();
    assert!(matches!(err, MappingError::Syntax { .. }), "{err:?}");
    assert_eq!(err.path(), "headers[1].value");
    assert!(
        err.to_string()
            .starts_with("headers[1].value: invalid expression: syntax error"),
        "{err}"
    );
    assert_eq!(field_path_to_key(err.path()), "headers.1.value");
    let err = Mapping::compile(&exprs, &json!("text {% if %}")).unwrap_err();
    assert!(
        err.to_string().starts_with("value: invalid expression"),
        "{err}"
    );
}

#[test]
fn evaluation_errors_name_the_field_path() {
    let err = eval(json!({"body": {"total": "{{ trigger.body.pet + 1 }}"}})).unwrap_err();
    assert!(matches!(err, MappingError::Eval { .. }), "{err:?}");
    assert_eq!(err.path(), "body.total");
    assert!(err.to_string().starts_with("body.total: "), "{err}");
    let err = eval(json!(["{{ 1 }}", "{{ 1 // 0 }}"])).unwrap_err();
    assert_eq!(err.path(), "[1]");
}

#[test]
fn runaway_loops_run_out_of_fuel_quickly() {
    let exprs = Expressions::with_limits(Limits {
        fuel: 10_000,
        ..Limits::default()
    });
    let start = Instant::now();
    let m = Mapping::compile(
        &exprs,
        &json!({"x": "{% for a in range(100000) %}{% for b in range(100000) %}.{% endfor %}{% endfor %}"}),
    )
    .unwrap();
    let err = m.eval(&exprs, &ctx()).unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
    assert_eq!(err.path(), "x");
    assert!(start.elapsed() < Duration::from_secs(2));

    // The same with the default limits still terminates promptly.
    let exprs = Expressions::new();
    let start = Instant::now();
    let err = eval_template_str(
        &exprs,
        "{{ range(100000) | map('string') | map('upper') | list | length + range(100000) | sum }}{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        &ctx(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn huge_output_is_rejected() {
    let exprs = Expressions::with_limits(Limits {
        max_output: 1000,
        ..Limits::default()
    });
    let err =
        eval_template_str(&exprs, "{% for i in range(5000) %}xy{% endfor %}", &ctx()).unwrap_err();
    assert!(
        matches!(err, MappingError::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
    let err = eval_template_str(&exprs, "{{ 'x' * 5000 }}", &ctx()).unwrap_err();
    assert!(matches!(err, MappingError::TooLarge { .. }), "{err:?}");
    // Below the limit is fine.
    assert_eq!(
        eval_template_str(&exprs, "{{ 'x' * 10 }}", &ctx()).unwrap(),
        json!("xxxxxxxxxx")
    );
}

#[test]
fn recursion_is_limited() {
    let exprs = Expressions::new();
    let err = eval_template_str(
        &exprs,
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        &ctx(),
    )
    .unwrap_err();
    assert!(matches!(err, MappingError::Eval { .. }), "{err:?}");
}

#[test]
fn no_includes_or_debug_dump() {
    let exprs = Expressions::new();
    assert!(eval_template_str(&exprs, "{% include 'x' %}", &ctx()).is_err());
    assert!(eval_template_str(&exprs, "{{ debug() }}", &ctx()).is_err());
}

#[test]
fn useful_filters_are_available() {
    let cases = [
        ("{{ trigger.body | tojson }}", None),
        ("{{ trigger.body.items | join(',') }}", Some(json!("a,b"))),
        ("{{ trigger.body.items | length }}", Some(json!(2))),
        ("{{ trigger.body.pet | upper }}", Some(json!("DOG"))),
        (
            "{{ 'A b' | lower | replace(' ', '-') }}",
            Some(json!("a-b")),
        ),
        ("{{ ' x ' | trim }}", Some(json!("x"))),
        ("{{ '42' | int + 1 }}", Some(json!(43))),
        ("{{ '2.5' | float }}", Some(json!(2.5))),
        ("{{ 2.567 | round(1) }}", Some(json!(2.6))),
        ("{{ trigger.body.items | first }}", Some(json!("a"))),
        ("{{ trigger.body.items | last }}", Some(json!("b"))),
        (
            "{{ trigger.body.tags | map(attribute='name') | list }}",
            Some(json!(["x", "y"])),
        ),
        (
            "{{ trigger.body.tags | selectattr('on') | map(attribute='name') | list }}",
            Some(json!(["x"])),
        ),
        (
            "{{ [1, 2, 3] | select('odd') | list }}",
            Some(json!([1, 3])),
        ),
        ("{{ [1, 2, 3] | sum }}", Some(json!(6))),
        (
            "{{ steps.fetch.body | items | list }}",
            Some(json!([["ok", true]])),
        ),
        ("{{ '{\"a\": [1]}' | fromjson }}", Some(json!({"a": [1]}))),
        ("{{ 'user:pw' | b64encode }}", Some(json!("dXNlcjpwdw=="))),
        ("{{ 'dXNlcjpwdw==' | b64decode }}", Some(json!("user:pw"))),
    ];
    let exprs = Expressions::new();
    for (src, expected) in cases {
        let got = eval_template_str(&exprs, src, &ctx()).unwrap_or_else(|e| panic!("{src}: {e}"));
        if let Some(expected) = expected {
            assert_eq!(got, expected, "{src}");
        }
    }
    let json_text = eval_template_str(&exprs, "{{ trigger.body | tojson }}", &ctx()).unwrap();
    let parsed: Value = serde_json::from_str(json_text.as_str().unwrap()).unwrap();
    assert_eq!(parsed, ctx()["trigger"]["body"]);
}

#[test]
fn eval_template_str_handles_plain_strings() {
    let exprs = Expressions::new();
    assert_eq!(
        eval_template_str(&exprs, "just text", &ctx()).unwrap(),
        json!("just text")
    );
}

#[test]
fn documented_filters_and_tests_exist() {
    let exprs = Expressions::new();
    for src in [
        "{{ 'a b' | title }}",
        "{{ 'ab' | capitalize }}",
        "{{ -1 | abs }}",
        "{{ [1, 2] | reject('odd') | list }}",
        "{{ trigger.body.tags | rejectattr('on') | list }}",
        "{{ [3, 1] | min }}",
        "{{ [3, 1] | max }}",
        "{{ [3, 1] | sort }}",
        "{{ [1, 1] | unique | list }}",
        "{{ [1, 2, 3] | batch(2) | list }}",
        "{{ [1, 2, 3] | slice(2) | list }}",
        "{{ {'b': 1, 'a': 2} | dictsort }}",
        "{{ 'a\nb' | indent(2) }}",
        "{{ trigger.body.x is defined }}",
        "{{ job.context_identifier is none }}",
        "{{ 1 is number }}",
        "{{ 'x' is string }}",
        "{{ dict(a=1) }}",
    ] {
        eval_template_str(&exprs, src, &ctx()).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
    assert!(eval_template_str(&exprs, "{{ namespace(a=1) }}", &ctx()).is_err());
}

#[test]
fn literal_braces_can_be_written() {
    let exprs = Expressions::new();
    assert_eq!(
        eval_template_str(&exprs, "{{ '{{' }}", &ctx()).unwrap(),
        json!("{{")
    );
    assert_eq!(
        eval_template_str(&exprs, "{% raw %}{{ not evaluated }}{% endraw %}", &ctx()).unwrap(),
        json!("{{ not evaluated }}")
    );
}

#[test]
fn missing_values_need_default_for_length() {
    let exprs = Expressions::new();
    assert!(eval_template_str(&exprs, "{{ trigger.body.nope | length }}", &ctx()).is_err());
    assert_eq!(
        eval_template_str(
            &exprs,
            "{{ trigger.body.nope | default([]) | length }}",
            &ctx()
        )
        .unwrap(),
        json!(0)
    );
}

#[test]
fn unknown_filters_and_tests_are_compile_errors() {
    let exprs = Expressions::new();
    for (src, needle) in [
        ("{{ trigger.body | tojosn }}", "unknown filter"),
        ("text {{ trigger.body.pet | nope }}", "unknown filter"),
        ("{{ trigger.body.pet is nonsense }}", "unknown test"),
        ("{{ nope_function(1) }}", "unknown function"),
    ] {
        let err = Mapping::compile(&exprs, &json!({ "f": src })).unwrap_err();
        assert!(matches!(err, MappingError::Syntax { .. }), "{src}: {err:?}");
        assert_eq!(err.path(), "f");
        assert!(err.to_string().contains(needle), "{src}: {err}");
    }
    // Errors that only mean "no data yet" do not fail compilation.
    assert!(Mapping::compile(&exprs, &json!("{{ trigger.body.items | length }}")).is_ok());
    assert!(Mapping::compile(&exprs, &json!("{{ trigger.body.n + 1 }}")).is_ok());
}
