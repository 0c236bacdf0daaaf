//! Engine-level scenarios of spec §10, adapted to Ferry's design (YAML runbooks, minijinja
//! expressions), run through the real binary. The number in each test's doc comment is the
//! scenario number; `docs/scenario-coverage.md` maps every scenario to its test.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// A runbook with a JSON endpoint trigger (`fields` is the YAML list of body fields).
fn rb(name: &str, vars: &str, fields: &str, steps: &str) -> String {
    format!(
        "name: {name}\n{vars}trigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: {fields}\nsteps:\n{steps}"
    )
}

/// A one-runbook solution `s` with runbook `r`.
fn one(root: &Path, solution_yaml: &str, vars: &str, fields: &str, steps: &str) -> PathBuf {
    solution(
        root,
        "s",
        solution_yaml,
        &[("r", &rb("r", vars, fields, steps))],
    )
}

/// Log messages of every record of step `id`, in order.
fn logs_of(job: &Value, id: &str) -> Vec<String> {
    steps(job, id)
        .iter()
        .flat_map(|s| s["logs"].as_array().cloned().unwrap_or_default())
        .map(|l| l["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn validate(dir: &Path) -> (i32, String) {
    let out = ferry(&["validate", dir.to_str().unwrap()], &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

// ---------------------------------------------------------------------------------------------
// Runbook structure and validation
// ---------------------------------------------------------------------------------------------

/// 7: nested steps under a non-nested action are rejected.
#[test]
fn s07_branches_under_a_non_nested_action_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        "  - id: plain\n    action: debug.log_message\n    input: { message: m }\n    each:\n      - { id: child, action: debug.log_message, input: { message: c } }\n",
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("runbooks/r.yaml:8: Step 'plain': action 'debug.log_message' is not nested; it cannot have `each` or `branches`"),
        "{out}"
    );
}

/// 9: the multi-level tree of spec §2.1 runs depth first: a step, its branches (every
/// output), then its continuation.
#[test]
fn s09_multi_level_tree_runs_in_canonical_order() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = r#"  - id: retrieve-service-instances
    action: flow.section
    each:
      - id: if-instances-found
        action: flow.if_then_else
        input: { condition: "{{ trigger.body.names | length > 0 }}" }
        branches:
          true:
            - id: each-service-instance
              action: flow.loop
              input: { items: "{{ trigger.body.names }}" }
              each:
                - { id: log-name, action: debug.log_message, input: { message: "{{ item.item }}" } }
                - { id: log-action, action: debug.log_message, input: { message: "action {{ item.index }}" } }
          false:
            - { id: log-false, action: debug.log_message, input: { message: none } }
      - { id: log-total-count, action: debug.log_message, input: { message: "{{ trigger.body.names | length }}" } }
  - { id: log-last, action: debug.log_message, input: { message: last } }
"#;
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: names, type: string, array: true, default: [] } ]",
        tree,
    );
    let (code, job, err) = run_json(&dir, "r", &json!({"names": ["a", "b"]}));
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(
        step_order(&job),
        [
            "retrieve-service-instances",
            "if-instances-found",
            "each-service-instance",
            "log-name",
            "log-action",
            "log-name",
            "log-action",
            "log-total-count",
            "log-last"
        ]
    );
    assert_eq!(logs_of(&job, "log-name"), ["a", "b"]);
    let (code, job, _) = run_json(&dir, "r", &json!({"names": []}));
    assert_eq!(code, 0);
    assert_eq!(
        step_order(&job),
        [
            "retrieve-service-instances",
            "if-instances-found",
            "log-false",
            "log-total-count",
            "log-last"
        ]
    );
}

/// 15 / 41: expressions may only read the documented roots; `input` (the mapping being
/// resolved) is not one of them, and unknown step ids are reported.
#[test]
fn s15_s41_unknown_references_are_reported_statically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        "  - id: a\n    action: debug.log_message\n    input: { message: \"{{ input.x }}\" }\n  - id: b\n    action: debug.log_message\n    input: { message: \"{{ steps.doesnot_exist.x }}\" }\n",
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("runbooks/r.yaml:10: (message) unknown variable 'input'"),
        "{out}"
    );
    assert!(out.contains("doesnot_exist"), "{out}");
    assert!(out.contains("runbooks/r.yaml:13:"), "{out}");
}

/// 55: an input key the action does not declare is a validation error (Ferry is stricter
/// than ignoring it silently).
#[test]
fn s55_undeclared_input_fields_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        "  - id: a\n    action: debug.log_message\n    input: { message: m, unknown: 20 }\n",
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Step 'a': unknown input field 'unknown' for action 'debug.log_message'"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step execution
// ---------------------------------------------------------------------------------------------

/// 33: an input value outside the enumeration fails the job with the field named.
#[test]
fn s33_input_enumeration_violation_fails_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        "name: s\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config: { base_url: \"http://127.0.0.1:9\" }\n",
        &[(
            "r",
            &rb(
                "r",
                "",
                "[ { id: method, type: string } ]",
                "  - id: call\n    action: http.send_request\n    connection: api\n    input: { method: \"{{ trigger.body.method }}\", path: /x }\n  - { id: after, action: debug.log_message, input: { message: after } }\n",
            ),
        )],
    );
    let (code, job, _) = run_json(&dir, "r", &json!({"method": "FETCH"}));
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(
        job["error"],
        "Input invalid: Field 'method' should be one of HEAD, GET, POST, PUT, PATCH, DELETE, OPTIONS, TRACE."
    );
    assert_eq!(step_order(&job), ["call"]);
}

/// 44: Finish inside a loop branch ends the job successfully; the remaining outputs and the
/// continuation do not run.
#[test]
fn s44_finish_stops_remaining_branches_and_continuation() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = r#"  - id: every
    action: flow.loop
    input: { items: [1, 2, 3] }
    each:
      - { id: log, action: debug.log_message, input: { message: "{{ item.item }}" } }
      - id: stop-at-2
        action: flow.if_then_else
        input: { condition: "{{ item.item == 2 }}", include_false_path: false }
        branches:
          true: [ { id: done, action: flow.finish, input: { message: done } } ]
  - { id: after, action: debug.log_message, input: { message: after } }
"#;
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        tree,
    );
    let (code, job, err) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "finished");
    assert_eq!(logs_of(&job, "log"), ["1", "2"]);
    assert!(steps(&job, "after").is_empty());
    assert_eq!(steps(&job, "done")[0]["status"], "finished");
}

/// 49: a nested step that emits nothing runs none of its branches, then its continuation.
#[test]
fn s49_empty_outputs_skip_the_branch_and_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: items, type: any, array: true } ]",
        "  - id: every\n    action: flow.loop\n    input: { items: \"{{ trigger.body.items }}\" }\n    each:\n      - { id: never, action: debug.log_message, input: { message: x } }\n  - { id: after, action: debug.log_message, input: { message: after } }\n",
    );
    let (code, job, err) = run_json(&dir, "r", &json!({"items": []}));
    assert_eq!(code, 0, "{err}");
    assert_eq!(step_order(&job), ["every", "after"]);
    assert_eq!(steps(&job, "every")[0]["outputs"], json!([]));
}

/// 50: inside a loop branch `item` is the current `{item, index}` and `steps.<loop>` the
/// current output too; the chain runs once per item, in order.
#[test]
fn s50_loop_exposes_the_current_item_to_its_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        "  - id: every\n    action: flow.loop\n    input: { items: [1, 2, 3] }\n    each:\n      - { id: a, action: debug.log_message, input: { message: \"{{ item.index }}:{{ item.item }}\" } }\n      - { id: b, action: debug.log_message, input: { message: \"{{ steps.every.item * 10 }}\" } }\n",
    );
    let (code, job, err) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 0, "{err}");
    assert_eq!(step_order(&job), ["every", "a", "b", "a", "b", "a", "b"]);
    assert_eq!(logs_of(&job, "a"), ["0:1", "1:2", "2:3"]);
    assert_eq!(logs_of(&job, "b"), ["10", "20", "30"]);
}

// ---------------------------------------------------------------------------------------------
// Mapping and runbook variables
// ---------------------------------------------------------------------------------------------

/// 51 / 58: `null` mapped explicitly stays `null` (the default is not applied); env and
/// runbook variables resolve in expressions.
#[test]
fn s51_s58_null_is_kept_and_variables_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\nenv:\n  bar: Foo Bar\n",
        "variables:\n  - { id: v, type: string, default: from-var }\n",
        "[ { id: x, type: string } ]",
        "  - { id: env, action: debug.log_message, input: { message: \"{{ env.bar }}\" } }\n  - { id: var, action: debug.log_message, input: { message: \"{{ vars.v }}\" } }\n  - { id: stop, action: flow.fail, input: { message: null } }\n",
    );
    let (code, job, _) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 1);
    assert_eq!(logs_of(&job, "env"), ["Foo Bar"]);
    assert_eq!(logs_of(&job, "var"), ["from-var"]);
    // The `message` default ("Stopped") is not used for an explicit null.
    assert_eq!(steps(&job, "stop")[0]["input"]["message"], Value::Null);
}

/// 79: a runbook variable id longer than 256 characters is rejected.
#[test]
fn s79_runbook_variable_id_too_long() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: id, type: string } ]",
        "  - { id: set, action: runbook_variables.assign, input: { id: \"{{ trigger.body.id }}\", value: 1 } }\n",
    );
    let (code, job, _) = run_json(&dir, "r", &json!({"id": "v".repeat(258)}));
    assert_eq!(code, 1);
    assert_eq!(
        job["error"],
        "Input invalid: Length of field 'id' should be at most 256."
    );
}

/// 80: a value of the wrong type fails and leaves the variable unchanged; `null` clears it.
#[test]
fn s80_assign_type_error_keeps_the_value_and_null_clears() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = r#"  - { id: set, action: runbook_variables.assign, input: { id: n, value: 7 } }
  - id: guard
    action: flow.try_catch
    branches:
      try:
        - { id: bad, action: runbook_variables.assign, input: { id: n, value: "{{ trigger.body.v }}" } }
      catch:
        - { id: caught, action: debug.log_message, input: { message: "{{ item.error }}" } }
  - { id: still, action: debug.log_message, input: { message: "n={{ vars.n }}" } }
  - { id: clear, action: runbook_variables.assign, input: { id: n, value: null } }
  - { id: cleared, action: debug.log_message, input: { message: "n={{ vars.n is none or vars.n is undefined }}" } }
  - { id: too-big, action: runbook_variables.assign, input: { id: n, value: 43 } }
"#;
    let dir = one(
        tmp.path(),
        "name: s\n",
        "variables:\n  - { id: n, type: integer, min: 1, max: 42 }\n",
        "[ { id: v, type: string } ]",
        tree,
    );
    let (code, job, _) = run_json(&dir, "r", &json!({"v": "foo"}));
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(
        logs_of(&job, "caught"),
        ["Input invalid: Type of field 'value' invalid, expected Integer found String."]
    );
    assert_eq!(logs_of(&job, "still"), ["n=7"]);
    assert_eq!(
        steps(&job, "clear")[0]["outputs"][0],
        json!({"value": null})
    );
    assert_eq!(logs_of(&job, "cleared"), ["n=true"]);
    assert_eq!(
        job["error"],
        "Input invalid: Field 'value' should be at most 42."
    );
}

// ---------------------------------------------------------------------------------------------
// Built-in flow connectors
// ---------------------------------------------------------------------------------------------

/// 97: a false condition emits only `false` with `{result: false}`; with
/// `include_false_path: false` nothing is emitted.
#[test]
fn s97_if_then_else_false_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: include, type: boolean } ]",
        "  - id: check\n    action: flow.if_then_else\n    input: { condition: \"F\", include_false_path: \"{{ trigger.body.include }}\" }\n    branches:\n      true: [ { id: yes, action: debug.log_message, input: { message: yes } } ]\n      false: [ { id: no, action: debug.log_message, input: { message: \"result={{ item.result }}\" } } ]\n  - { id: after, action: debug.log_message, input: { message: after } }\n",
    );
    let (code, job, err) = run_json(&dir, "r", &json!({"include": true}));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        steps(&job, "check")[0]["outputs"],
        json!([{"branch": "false", "output": {"result": false}}])
    );
    assert_eq!(step_order(&job), ["check", "no", "after"]);
    assert_eq!(logs_of(&job, "no"), ["result=false"]);
    let (code, job, _) = run_json(&dir, "r", &json!({"include": false}));
    assert_eq!(code, 0);
    assert_eq!(steps(&job, "check")[0]["outputs"], json!([]));
    assert_eq!(step_order(&job), ["check", "after"]);
}

/// 98: case emits on the matching value, else on `else`, nothing without the else path, and
/// at most 50 matches are allowed.
#[test]
fn s98_case_else_path_and_match_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: e, type: string }, { id: include, type: boolean, default: true } ]",
        "  - id: pick\n    action: flow.case\n    input: { expression: \"{{ trigger.body.e }}\", matches: [foo, bar, baz, boo], include_else_path: \"{{ trigger.body.include }}\" }\n    branches:\n      baz: [ { id: on-baz, action: debug.log_message, input: { message: baz } } ]\n      else: [ { id: on-else, action: debug.log_message, input: { message: \"{{ item.expression }}\" } } ]\n",
    );
    let (_, job, _) = run_json(&dir, "r", &json!({"e": "baz"}));
    assert_eq!(
        steps(&job, "pick")[0]["outputs"],
        json!([{"branch": "baz", "output": {"expression": "baz"}}])
    );
    assert_eq!(step_order(&job), ["pick", "on-baz"]);
    let (_, job, _) = run_json(&dir, "r", &json!({"e": "unknown"}));
    assert_eq!(step_order(&job), ["pick", "on-else"]);
    assert_eq!(logs_of(&job, "on-else"), ["unknown"]);
    let (code, job, _) = run_json(&dir, "r", &json!({"e": "unknown", "include": false}));
    assert_eq!(code, 0);
    assert_eq!(step_order(&job), ["pick"]);
    assert_eq!(steps(&job, "pick")[0]["outputs"], json!([]));

    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: n, type: integer } ]",
        "  - id: pick\n    action: flow.case\n    input: { expression: x, matches: \"{{ range(trigger.body.n) | map('string') | list }}\" }\n",
    );
    let (code, job, _) = run_json(&dir, "r", &json!({"n": 50}));
    assert_eq!(code, 0, "{job:#}");
    let (code, job, _) = run_json(&dir, "r", &json!({"n": 51}));
    assert_eq!(code, 1);
    assert_eq!(
        job["error"],
        "Input invalid: Length of field 'matches' should be at most 50."
    );
}

/// 99: batch size 2 over five items gives three chunks; size 1 is rejected.
#[test]
fn s99_batch_chunks_and_minimum_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: size, type: integer } ]",
        "  - id: chunks\n    action: flow.batch\n    input: { items: [1, 2, 3, 4, 5], batch_size: \"{{ trigger.body.size }}\" }\n",
    );
    let (code, job, err) = run_json(&dir, "r", &json!({"size": 2}));
    assert_eq!(code, 0, "{err}");
    let chunks: Vec<Value> = steps(&job, "chunks")[0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["output"]["items"].clone())
        .collect();
    assert_eq!(chunks, [json!([1, 2]), json!([3, 4]), json!([5])]);
    let (code, job, _) = run_json(&dir, "r", &json!({"size": 1}));
    assert_eq!(code, 1);
    assert_eq!(
        job["error"],
        "Input invalid: Field 'batch_size' should be at least 2."
    );
}

/// 100: without Retry in `catch`, execution goes on with the try-catch's continuation, and
/// the try-catch is invoked twice (`try`, then `catch` with the error).
#[test]
fn s100_try_catch_without_retry_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        "  - id: guard\n    action: flow.try_catch\n    branches:\n      try:\n        - { id: boom, action: flow.fail, input: { message: boom } }\n        - { id: skipped, action: debug.log_message, input: { message: x } }\n      catch:\n        - { id: caught, action: debug.log_message, input: { message: \"{{ item.error }}\" } }\n  - { id: after, action: debug.log_message, input: { message: after } }\n",
    );
    let (code, job, err) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(
        step_order(&job),
        ["guard", "boom", "guard", "caught", "after"]
    );
    let guards = steps(&job, "guard");
    assert_eq!(
        guards[0]["outputs"],
        json!([{"branch": "try", "output": {}}])
    );
    assert_eq!(
        guards[1]["outputs"],
        json!([{"branch": "catch", "output": {"error": "boom"}}])
    );
}

/// 101: Wait 0 completes in one invocation with `actual_wait` 0.
#[test]
fn s101_wait_zero_completes_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "",
        "[ { id: x, type: string } ]",
        "  - id: pause\n    action: flow.wait\n    input: { seconds_to_wait: 0 }\n",
    );
    let (code, job, err) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 0, "{err}");
    let pauses = steps(&job, "pause");
    assert_eq!(pauses.len(), 1);
    let out = &pauses[0]["outputs"][0];
    assert_eq!(out["branch"], "actual");
    assert_eq!(out["output"]["requested_wait"], 0);
    assert_eq!(out["output"]["actual_wait"], 0);
}

/// 102: Fail without a message fails with "Stopped"; Finish without a message logs
/// "Runbook execution completed".
#[test]
fn s102_fail_and_finish_default_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        "name: s\n",
        &[
            (
                "fail",
                &rb(
                    "fail",
                    "",
                    "[ { id: x, type: string } ]",
                    "  - { id: stop, action: flow.fail }\n",
                ),
            ),
            (
                "finish",
                &rb(
                    "finish",
                    "",
                    "[ { id: x, type: string } ]",
                    "  - { id: done, action: flow.finish }\n  - { id: never, action: debug.log_message, input: { message: x } }\n",
                ),
            ),
        ],
    );
    let (code, job, _) = run_json(&dir, "fail", &json!({}));
    assert_eq!(code, 1);
    assert_eq!(job["error"], "Stopped");
    let (code, job, _) = run_json(&dir, "finish", &json!({}));
    assert_eq!(code, 0);
    assert_eq!(job["status"], "finished");
    assert_eq!(logs_of(&job, "done"), ["Runbook execution completed"]);
    assert_eq!(step_order(&job), ["done"]);
}
