//! Loader tests against the fixture solutions under `tests/fixtures/`.

use std::path::{Path, PathBuf};

use ferry_core::loader::{load_solution, load_solution_with_env, Diagnostic};
use ferry_core::model::{Concurrency, Direction};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn env_lookup(name: &str) -> Option<String> {
    match name {
        "FERRY_TEST_API_TOKEN" => Some("t0ken-from-env".to_string()),
        _ => None,
    }
}

#[test]
fn valid_fixture_loads_with_spans() {
    let sol = load_solution_with_env(&fixture("valid"), &env_lookup).expect("valid fixture loads");
    assert_eq!(sol.name, "valid-demo");
    assert_eq!(
        sol.description.as_deref(),
        Some("Fixture solution used by the loader tests")
    );

    // Environment: plain values keep their YAML type, secrets come from the lookup.
    let env: Vec<&str> = sol.env.keys().map(String::as_str).collect();
    assert_eq!(
        env,
        [
            "GREETING",
            "LIMIT",
            "FLAGS",
            "API_TOKEN",
            "FALLBACK",
            "INLINE_SECRET"
        ]
    );
    assert_eq!(sol.env["LIMIT"].value, json!(3));
    assert_eq!(sol.env["FLAGS"].value, json!({"verbose": true}));
    let token = &sol.env["API_TOKEN"];
    assert!(token.secret);
    assert_eq!(token.value, json!("t0ken-from-env"));
    assert_eq!(token.from_env.as_deref(), Some("FERRY_TEST_API_TOKEN"));
    assert_eq!(token.span.line, 7);
    assert_eq!(sol.env["FALLBACK"].value, json!("fallback-value"));
    assert!(!sol.env["FALLBACK"].secret);
    assert!(sol.env["INLINE_SECRET"].secret);
    let mut secrets = sol.secret_values();
    secrets.sort();
    assert_eq!(secrets, ["inline-s3cret", "t0ken-from-env"]);

    // Connections.
    let intake = &sol.connections["intake"];
    assert_eq!(intake.connector, "json_endpoint");
    assert_eq!(intake.direction, Direction::Inbound);
    assert_eq!(intake.span.line, 11);
    assert_eq!(intake.config, json!({"api_key": "{{ env.API_TOKEN }}"}));
    let api = &sol.connections["my-api"];
    assert_eq!(api.direction, Direction::Outbound);
    assert_eq!(api.config_span("headers.0.value").line, 22);

    // Runbooks: sorted by file name, `.yml` accepted.
    let names: Vec<&str> = sol.runbooks.keys().map(String::as_str).collect();
    assert_eq!(names, ["call-api", "intake"]);
    let rb = &sol.runbooks["intake"];
    assert_eq!(rb.concurrency, Some(Concurrency::PerJobContext));
    assert_eq!(rb.variables.len(), 1);
    assert_eq!(rb.variables[0].id, "counter");
    assert_eq!(rb.trigger.connector, "json_endpoint");
    assert_eq!(rb.trigger.kind, "endpoint");
    assert_eq!(rb.trigger.connection.as_deref(), Some("intake"));
    assert_eq!(rb.trigger.span.line, 6);
    assert_eq!(rb.trigger.config_spans["body_schema.0.id"].line, 12);
    assert_eq!(rb.trigger.config_spans["body_schema.1"].line, 13);
    assert_eq!(rb.trigger.config_spans["body_schema.1.array"].line, 15);
    assert_eq!(rb.trigger.config_span("discard_if").line, 16);

    // Steps: branch keys `true:`/`false:` become strings; spans point at the list item.
    let check = rb.step("check").expect("step check");
    assert_eq!(check.span.line, 18);
    let keys: Vec<&str> = check.branches.keys().map(String::as_str).collect();
    assert_eq!(keys, ["true", "false"]);
    assert_eq!(check.input_spans["condition"].line, 21);
    assert_eq!(check.connector(), "flow");
    assert_eq!(check.action_name(), "if_then_else");
    let big = rb.step("big").expect("step big");
    assert_eq!(big.span.line, 24);
    assert_eq!(big.input_span("message").line, 26);
    let done = rb.step("done").expect("step done");
    assert_eq!(
        done.input,
        json!({"message": "Done with {{ vars.counter }} items\n"})
    );
    assert_eq!(done.input_span("message.unknown.deeper").line, 45);
    assert!(rb.step("nope").is_none());
    assert_eq!(rb.ancestors("bump"), ["every_item"]);
    assert!(rb.ancestors("check").is_empty());
}

#[test]
fn walk_is_depth_first_with_parents() {
    let sol = load_solution_with_env(&fixture("valid"), &env_lookup).expect("loads");
    let rb = &sol.runbooks["intake"];
    let order: Vec<(&str, Option<(&str, &str)>)> = rb
        .walk()
        .into_iter()
        .map(|(s, p)| (s.id.as_str(), p))
        .collect();
    assert_eq!(
        order,
        [
            ("check", None),
            ("big", Some(("check", "true"))),
            ("small-one", Some(("check", "false"))),
            ("every_item", None),
            ("log_item", Some(("every_item", "each"))),
            ("bump", Some(("every_item", "each"))),
            ("done", None),
        ]
    );
}

#[test]
fn secret_values_are_not_in_debug_output() {
    let sol = load_solution_with_env(&fixture("valid"), &env_lookup).expect("loads");
    let dbg = format!("{sol:?}");
    assert!(!dbg.contains("t0ken-from-env"), "secret leaked in Debug");
    assert!(!dbg.contains("inline-s3cret"), "secret leaked in Debug");
    assert!(dbg.contains("<redacted>"));
    // Plain values are still shown.
    assert!(dbg.contains("hello"));
}

#[test]
fn load_solution_reads_the_process_environment() {
    // Only this test touches this variable.
    std::env::set_var("FERRY_TEST_API_TOKEN", "from-process-env");
    let sol = load_solution(&fixture("valid")).expect("loads");
    assert_eq!(sol.env["API_TOKEN"].value, json!("from-process-env"));
}

fn broken() -> Vec<Diagnostic> {
    load_solution_with_env(&fixture("broken"), &env_lookup).expect_err("broken fixture fails")
}

/// Assert that a diagnostic at `file:line` contains `needle`.
fn assert_diag(diags: &[Diagnostic], file: &str, line: usize, needle: &str) {
    let found = diags
        .iter()
        .any(|d| d.span.file.ends_with(file) && d.span.line == line && d.message.contains(needle));
    assert!(
        found,
        "no diagnostic {file}:{line} containing {needle:?}; got:\n{}",
        diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn broken_solution_yaml_reports_each_problem_with_its_line() {
    let d = broken();
    let f = "broken/solution.yaml";
    assert_diag(&d, f, 1, "invalid solution name 'Bad Name'");
    assert_diag(&d, f, 2, "unknown key 'descripton' in solution.yaml; allowed keys: name, description, env, connections");
    assert_diag(&d, f, 4, "FERRY_TEST_DEFINITELY_UNSET is not set");
    assert_diag(&d, f, 4, "MISSING_SECRET");
    assert_diag(&d, f, 5, "invalid environment variable name '9bad'");
    assert_diag(
        &d,
        f,
        9,
        "direction must be one of \"inbound\", \"outbound\"",
    );
    assert_diag(&d, f, 13, "unknown environment variable 'NOPE'");
}

#[test]
fn broken_runbooks_report_each_problem_with_its_line() {
    let d = broken();
    let a = "broken/runbooks/a.yaml";
    assert_diag(&d, a, 2, "trigger uses connection 'api', which is outbound");
    assert_diag(&d, a, 9, "references unknown steps: 'nope'");
    assert_diag(&d, a, 10, "duplicate step id 'one' (first used at line 7)");
    assert_diag(&d, a, 11, "action must look like '<connector>.<action>'");
    assert_diag(&d, a, 12, "unknown key 'colour' in step 'one'; allowed keys: id, description, action, connection, input, each, branches");
    assert_diag(&d, a, 13, "step 'both' has both 'each' and 'branches'");
    assert_diag(&d, a, 17, "unknown connection 'ghost'");
    assert_diag(
        &d,
        a,
        21,
        "step 'bad-expr' input: message: invalid expression",
    );
    assert_diag(
        &d,
        "broken/runbooks/b.yaml",
        1,
        "duplicate runbook name 'dup'",
    );
    assert_diag(
        &d,
        "broken/runbooks/b.yaml",
        3,
        "No actions are connected to the trigger.",
    );
    assert_diag(&d, "broken/runbooks/c.yaml", 4, "YAML syntax error");
    assert_diag(
        &d,
        "broken/runbooks/d.yaml",
        2,
        "trigger is missing required key 'connector'",
    );
    assert_diag(
        &d,
        "broken/runbooks/d.yaml",
        5,
        "step is missing required key 'id'",
    );
    assert_diag(
        &d,
        "broken/runbooks/e.yaml",
        4,
        "Runbook variable 'a' is defined more than once",
    );
    assert_diag(&d, "broken/runbooks/e.yaml", 5, "invalid runbook variable");
}

#[test]
fn diagnostics_are_sorted_and_display_as_file_line_message() {
    let d = broken();
    let mut sorted = d.clone();
    sorted.sort_by(|a, b| a.span.cmp(&b.span));
    assert_eq!(d, sorted);
    let first = d[0].to_string();
    assert!(first.contains("broken/runbooks/a.yaml:2: "), "{first}");
}

#[test]
fn missing_solution_yaml_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = load_solution(dir.path()).expect_err("no solution.yaml");
    assert_eq!(d.len(), 1);
    assert!(d[0].span.file.ends_with("solution.yaml"));
    assert!(d[0].message.contains("cannot read file"), "{}", d[0]);
}

#[test]
fn demo_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let sol = load_solution_with_env(&dir, &|_| None).expect("examples/demo loads");
    assert_eq!(sol.name, "demo");
    // DEMO_API_KEY unset: the documented default applies.
    assert_eq!(sol.env["API_KEY"].value, json!("demo-key"));
    assert!(sol.env["API_KEY"].secret);
    let names: Vec<&str> = sol.runbooks.keys().map(String::as_str).collect();
    assert_eq!(names, ["forward", "intake", "report"]);
    let intake = &sol.runbooks["intake"];
    let actions: Vec<&str> = intake
        .walk()
        .iter()
        .map(|(s, _)| s.action.as_str())
        .collect();
    for needed in [
        "flow.if_then_else",
        "flow.loop",
        "debug.log_message",
        "runbook_variables.assign",
    ] {
        assert!(actions.contains(&needed), "demo intake lacks {needed}");
    }
    let forward = &sol.runbooks["forward"];
    assert_eq!(forward.steps[0].action, "http.send_request");
    assert_eq!(forward.steps[0].connection.as_deref(), Some("self"));
}
