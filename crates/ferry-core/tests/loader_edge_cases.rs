//! Loader edge cases, each on a small solution written to a temporary directory.

use std::fs;
use std::path::Path;

use ferry_core::loader::{load_solution_with_env, Diagnostic};
use ferry_core::model::Solution;
use serde_json::json;

const SOLUTION: &str = "name: edge\n";

/// Write `solution.yaml` and `runbooks/<name>` files, then load.
fn load(solution: &str, runbooks: &[(&str, &str)]) -> Result<Solution, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), solution, runbooks);
    load_solution_with_env(dir.path(), &|name| match name {
        "EDGE_TOKEN" => Some("tok".to_string()),
        _ => None,
    })
}

fn write(dir: &Path, solution: &str, runbooks: &[(&str, &str)]) {
    fs::write(dir.join("solution.yaml"), solution).expect("write");
    if !runbooks.is_empty() {
        fs::create_dir(dir.join("runbooks")).expect("mkdir");
    }
    for (name, text) in runbooks {
        fs::write(dir.join("runbooks").join(name), text).expect("write");
    }
}

fn errors(solution: &str, runbooks: &[(&str, &str)]) -> Vec<(String, usize, String)> {
    load(solution, runbooks)
        .expect_err("should fail")
        .into_iter()
        .map(|d| {
            let file = d
                .span
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            (file, d.span.line, d.message)
        })
        .collect()
}

fn has(errs: &[(String, usize, String)], file: &str, line: usize, needle: &str) -> bool {
    errs.iter()
        .any(|(f, l, m)| f == file && *l == line && m.contains(needle))
}

#[test]
fn only_visible_yaml_files_are_runbooks() {
    let rb = "name: only\ntrigger: { connector: json_endpoint, type: endpoint }\nsteps: [ { id: s, action: debug.log_message } ]\n";
    let sol = load(
        SOLUTION,
        &[
            ("only.yml", rb),
            ("README.md", "not yaml"),
            (".only.yaml.swp", "garbage: ["),
            (".hidden.yaml", "garbage: ["),
        ],
    )
    .expect("loads");
    let names: Vec<&str> = sol.runbooks.keys().map(String::as_str).collect();
    assert_eq!(names, ["only"]);
}

#[test]
fn solution_without_runbooks_loads() {
    let sol = load(SOLUTION, &[]).expect("loads");
    assert_eq!(sol.name, "edge");
    assert!(sol.runbooks.is_empty());
    assert!(sol.env.is_empty());
}

#[test]
fn branch_keys_of_any_scalar_kind_become_strings_with_correct_lines() {
    let rb = "\
name: keys
trigger: { connector: json_endpoint, type: endpoint }
steps:
  - id: case
    action: flow.case
    branches:
      yes:
        - { id: a, action: debug.log_message }
      1:
        - { id: b, action: debug.log_message }
      True:
        - { id: c, action: debug.log_message }
      'quoted':
        - { id: d, action: debug.log_message }
";
    let sol = load(SOLUTION, &[("keys.yaml", rb)]).expect("loads");
    let case = sol.runbooks["keys"].step("case").expect("case");
    let keys: Vec<&str> = case.branches.keys().map(String::as_str).collect();
    assert_eq!(keys, ["yes", "1", "true", "quoted"]);
    let lines: Vec<usize> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| sol.runbooks["keys"].step(id).expect("step").span.line)
        .collect();
    assert_eq!(lines, [8, 10, 12, 14]);
}

#[test]
fn aliases_are_expanded() {
    let rb = "\
name: alias
trigger: { connector: json_endpoint, type: endpoint }
steps:
  - id: one
    action: debug.log_message
    input: &msg { message: shared }
  - id: two
    action: debug.log_message
    input: *msg
";
    let sol = load(SOLUTION, &[("alias.yaml", rb)]).expect("loads");
    let rb = &sol.runbooks["alias"];
    assert_eq!(
        rb.step("two").expect("two").input,
        json!({"message": "shared"})
    );
    assert_eq!(rb.step("two").expect("two").span.line, 7);
}

#[test]
fn multiple_documents_are_rejected() {
    let errs = errors("name: a\n---\nname: b\n", &[]);
    assert!(
        has(&errs, "solution.yaml", 2, "single YAML document"),
        "{errs:?}"
    );
}

#[test]
fn duplicate_keys_are_rejected_with_their_line() {
    let errs = errors("name: a\ndescription: x\nname: b\n", &[]);
    assert!(has(&errs, "solution.yaml", 3, "duplicate"), "{errs:?}");
}

#[test]
fn yaml_tags_are_rejected() {
    let errs = errors("name: edge\ndescription: !custom x\n", &[]);
    assert!(
        has(&errs, "solution.yaml", 2, "YAML tags are not supported"),
        "{errs:?}"
    );
}

#[test]
fn wrong_shapes_are_reported() {
    let errs = errors("- just\n- a list\n", &[]);
    assert!(
        has(&errs, "solution.yaml", 1, "solution.yaml must be a mapping"),
        "{errs:?}"
    );

    let rb = "\
name: shapes
concurrency: sometimes
variables: { id: x }
trigger: { connector: json_endpoint, type: endpoint, config: [1] }
steps:
  - id: s
    action: flow.loop
    input: not-a-mapping
    each: oops
  - just a string
";
    let errs = errors(SOLUTION, &[("shapes.yaml", rb)]);
    assert!(
        has(
            &errs,
            "shapes.yaml",
            2,
            "concurrency must be one of: per_runbook, per_job_context"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "shapes.yaml",
            3,
            "'variables' must be a list of fields"
        ),
        "{errs:?}"
    );
    assert!(
        has(&errs, "shapes.yaml", 4, "'config' must be a mapping"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "shapes.yaml", 8, "'input' must be a mapping"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "shapes.yaml", 9, "expected a list of steps"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "shapes.yaml", 10, "a step must be a mapping"),
        "{errs:?}"
    );
}

#[test]
fn missing_runbook_keys_are_reported() {
    let errs = errors(SOLUTION, &[("empty.yaml", "description: nothing else\n")]);
    assert!(
        has(
            &errs,
            "empty.yaml",
            1,
            "runbook is missing required key 'name'"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "empty.yaml",
            1,
            "runbook is missing required key 'trigger'"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "empty.yaml",
            1,
            "No actions are connected to the trigger."
        ),
        "{errs:?}"
    );
}

#[test]
fn bad_names_are_reported() {
    let rb = "\
name: Has_Upper
trigger: { connector: json_endpoint, type: endpoint }
steps:
  - { id: 'has space', action: debug.log_message }
";
    let sol = "name: edge\nconnections:\n  'bad name!': { connector: http, direction: outbound }\n";
    let errs = errors(sol, &[("names.yaml", rb)]);
    assert!(
        has(&errs, "names.yaml", 1, "invalid runbook name 'Has_Upper'"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "names.yaml", 4, "invalid step id 'has space'"),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "solution.yaml",
            3,
            "invalid connection name 'bad name!'"
        ),
        "{errs:?}"
    );
}

#[test]
fn env_declarations_are_checked() {
    let sol = "\
name: edge
env:
  A: { secret: true, from_env: EDGE_TOKEN }
  B: { secret: true, value: 42 }
  C: { secret: maybe, value: x }
  D: { from_env: EDGE_TOKEN, value: x }
  E: { secret: true }
  F: { secret: true, from_env: EDGE_TOKEN, colour: red }
";
    let errs = errors(sol, &[]);
    assert!(!errs.iter().any(|(_, l, _)| *l == 3), "{errs:?}");
    assert!(
        has(
            &errs,
            "solution.yaml",
            4,
            "secret environment variable 'B' must have a string value"
        ),
        "{errs:?}"
    );
    assert!(
        has(&errs, "solution.yaml", 5, "'secret' must be true or false"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "solution.yaml", 6, "has both 'from_env' and 'value'"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "solution.yaml", 7, "needs 'from_env' or 'value'"),
        "{errs:?}"
    );
    assert!(has(&errs, "solution.yaml", 8, "unknown key 'colour' in environment variable 'F'; allowed keys: secret, from_env, default, value, description"), "{errs:?}");
}

#[test]
fn connection_config_may_only_use_env() {
    let sol = "\
name: edge
env: { HOST: example.test }
connections:
  api:
    connector: http
    direction: outbound
    config:
      url: \"https://{{ env.HOST }}/x\"
      bad: \"{{ trigger.body }}\"
";
    let errs = errors(sol, &[]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        has(
            &errs,
            "solution.yaml",
            9,
            "may only use 'env' in expressions (found 'trigger')"
        ),
        "{errs:?}"
    );
}

#[test]
fn trigger_config_expressions_are_checked() {
    let rb = "\
name: trig
trigger:
  connector: json_endpoint
  type: endpoint
  config:
    discard_if: \"{{ trigger.body.pet == }}\"
    deduplication_id: \"{{ steps.later.id }}\"
steps:
  - { id: s, action: debug.log_message }
";
    let errs = errors(SOLUTION, &[("trig.yaml", rb)]);
    assert!(
        has(&errs, "trig.yaml", 6, "discard_if: invalid expression"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "trig.yaml", 7, "references unknown steps: 'later'"),
        "{errs:?}"
    );
}

#[test]
fn unknown_step_reference_via_subscript_is_reported() {
    let rb = "\
name: sub
trigger: { connector: json_endpoint, type: endpoint }
steps:
  - id: fetch-it
    action: http.send_request
  - id: show
    action: debug.log_message
    input:
      ok: \"{{ steps['fetch-it'].status }}\"
      bad: \"{{ steps['fetch-that'].status }}\"
";
    let errs = errors(SOLUTION, &[("sub.yaml", rb)]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        has(
            &errs,
            "sub.yaml",
            10,
            "step 'show' input (bad) references unknown steps: 'fetch-that'"
        ),
        "{errs:?}"
    );
}

#[test]
fn merge_keys_and_descriptions() {
    let rb = "\
name: merge
trigger:
  connector: json_endpoint
  type: endpoint
  description: the door
steps:
  - id: one
    description: first step
    action: http.send_request
    input: &base
      method: GET
      path: /a
  - id: two
    action: http.send_request
    input:
      <<: *base
      path: /b
";
    let sol = "\
name: edge
connections:
  api: { connector: http, direction: outbound, description: partner API }
";
    let sol = load(sol, &[("merge.yaml", rb)]).expect("loads");
    let rb = &sol.runbooks["merge"];
    assert_eq!(
        rb.step("two").expect("two").input,
        json!({"method": "GET", "path": "/b"})
    );
    assert_eq!(
        rb.step("one").expect("one").description.as_deref(),
        Some("first step")
    );
    assert_eq!(rb.trigger.description.as_deref(), Some("the door"));
    assert_eq!(
        sol.connections["api"].description.as_deref(),
        Some("partner API")
    );
}

#[test]
fn runbook_expressions_are_checked_even_when_solution_yaml_is_broken() {
    let rb = "\
name: still-checked
trigger: { connector: json_endpoint, type: endpoint }
steps:
  - id: s
    action: debug.log_message
    connection: anything
    input: { message: \"{{ 1 + }}\" }
";
    let errs = errors("name: [broken\n", &[("still.yaml", rb)]);
    assert!(
        has(&errs, "solution.yaml", 1, "YAML syntax error"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "still.yaml", 7, "invalid expression"),
        "{errs:?}"
    );
    // Connections cannot be checked without solution.yaml.
    assert!(
        !errs
            .iter()
            .any(|(_, _, m)| m.contains("unknown connection")),
        "{errs:?}"
    );
}
