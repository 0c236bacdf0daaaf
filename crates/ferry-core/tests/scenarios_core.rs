//! Spec §10 scenarios that are pure loader / mapping behaviour, adapted to Ferry's YAML
//! runbooks and minijinja expressions. The number in each test's doc comment is the scenario
//! number; `docs/scenario-coverage.md` maps every scenario to its test.

use std::fs;

use ferry_core::loader::{load_solution_with_env, Diagnostic};
use ferry_core::mapping::{Expressions, Mapping};
use ferry_core::model::{Concurrency, Solution};
use serde_json::{json, Value};

fn load(runbook: &str) -> Result<Solution, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("solution.yaml"), "name: sc\n").expect("write");
    fs::create_dir(dir.path().join("runbooks")).expect("mkdir");
    fs::write(dir.path().join("runbooks/r.yaml"), runbook).expect("write");
    load_solution_with_env(dir.path(), &|_| None)
}

fn runbook(head: &str, steps: &str) -> String {
    format!(
        "name: r\n{head}trigger: {{ connector: json_endpoint, type: endpoint }}\nsteps:\n{steps}"
    )
}

const LOG: &str = "  - { id: a, action: debug.log_message, input: { message: m } }\n";

fn messages(r: Result<Solution, Vec<Diagnostic>>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected diagnostics"),
        Err(d) => d
            .iter()
            .map(|d| format!("{}: {}", d.span.line, d.message))
            .collect(),
    }
}

/// 11: no concurrency means none; both documented names and the spec's long name are
/// accepted; anything else is rejected with the allowed values.
#[test]
fn s11_concurrency_modes() {
    let sol = load(&runbook("", LOG)).expect("loads");
    assert_eq!(sol.runbooks["r"].concurrency, None);
    for (text, want) in [
        ("per_runbook", Concurrency::PerRunbook),
        ("per_job_context", Concurrency::PerJobContext),
        ("per_job_context_identifier", Concurrency::PerJobContext),
    ] {
        let sol = load(&runbook(&format!("concurrency: {text}\n"), LOG)).expect(text);
        assert_eq!(sol.runbooks["r"].concurrency, Some(want), "{text}");
    }
    let m = messages(load(&runbook("concurrency: foo\n", LOG)));
    assert!(
        m.iter()
            .any(|x| x
                == "2: concurrency must be one of: per_runbook, per_job_context (found 'foo')"),
        "{m:?}"
    );
    // The spec's hash form is not used: a mapping (even `{}`) is a type error.
    for bad in ["{ a: foo }", "{}", "{ type: foo }"] {
        let m = messages(load(&runbook(&format!("concurrency: {bad}\n"), LOG)));
        assert!(
            m.iter()
                .any(|x| x == "2: 'concurrency' must be a string, found a mapping"),
            "{bad}: {m:?}"
        );
    }
}

/// 12: the same runbook variable id twice is an error on the second one.
#[test]
fn s12_duplicate_runbook_variable() {
    let m = messages(load(&runbook(
        "variables:\n  - { id: foo, type: string }\n  - { id: 'foo', type: integer }\n",
        LOG,
    )));
    assert!(
        m.iter()
            .any(|x| x == "4: Runbook variable 'foo' is defined more than once"),
        "{m:?}"
    );
}

/// 14: step ids with quotes, `♦` or backslashes are rejected, as are duplicates.
#[test]
fn s14_step_id_characters_and_uniqueness() {
    for bad in ["This isn't valid", "a♦b", "back\\\\slash"] {
        let steps = format!(
            "  - {{ id: \"{bad}\", action: debug.log_message, input: {{ message: m }} }}\n"
        );
        let m = messages(load(&runbook("", &steps)));
        assert!(
            m.iter().any(|x| x.starts_with("4: invalid step id")),
            "{bad}: {m:?}"
        );
    }
    let m = messages(load(&runbook("", &format!("{LOG}{LOG}"))));
    assert!(
        m.iter()
            .any(|x| x == "5: duplicate step id 'a' (first used at line 4)"),
        "{m:?}"
    );
}

fn eval(expr: &str, ctx: &Value) -> Value {
    let exprs = Expressions::new();
    Mapping::compile(&exprs, &json!(expr))
        .expect("compiles")
        .eval(&exprs, ctx)
        .expect("evaluates")
}

/// 54: several sources for one list field are written as one expression; the order of the
/// parts is kept.
#[test]
fn s54_list_parts_keep_their_order() {
    let ctx = json!({"trigger": {"body": {"mv": "MV", "lh": "LH", "more": ["LC", "CS"]}}});
    assert_eq!(
        eval(
            "{{ [trigger.body.mv, trigger.body.lh] + trigger.body.more }}",
            &ctx
        ),
        json!(["MV", "LH", "LC", "CS"])
    );
}

/// 77: the `drill` helper of the spec is plain attribute access in expressions: a missing key
/// in one element gives `null` for that element; an index picks one element.
#[test]
fn s77_drilling_into_nested_lists() {
    let ctx = json!({"trigger": {"body": {"a": [{"b": 1}, {"b": 2}, {"c": 3}]}}});
    assert_eq!(
        eval("{{ trigger.body.a | map(attribute='b') | list }}", &ctx),
        json!([1, 2, null])
    );
    assert_eq!(eval("{{ trigger.body.a[0].b }}", &ctx), json!(1));
    assert_eq!(eval("{{ trigger.body.a[2].b }}", &ctx), Value::Null);
}
