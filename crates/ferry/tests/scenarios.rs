//! Engine-level scenarios of spec §10, adapted to Ferry's design (YAML runbooks, minijinja
//! expressions), run through the real binary. The number in each test's doc comment is the
//! scenario number; `docs/scenario-coverage.md` maps every scenario to its test.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// 43, 44, 100: a failure inside an inner `catch` goes to the enclosing try-catch's `catch`
/// (skipping the rest of the outer `try`); Finish inside `try` ends the job and is not caught.
#[test]
fn s43_s44_s100_nested_try_catch_and_finish_inside_try() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = r#"  - id: outer
    action: flow.try_catch
    branches:
      try:
        - id: inner
          action: flow.try_catch
          branches:
            try:
              - { id: boom, action: flow.fail, input: { message: first } }
            catch:
              - { id: inner-caught, action: debug.log_message, input: { message: "inner {{ item.error }}" } }
              - { id: boom2, action: flow.fail, input: { message: second } }
        - { id: not-run, action: debug.log_message, input: { message: x } }
      catch:
        - { id: outer-caught, action: debug.log_message, input: { message: "outer {{ item.error }}" } }
  - id: t2
    action: flow.try_catch
    branches:
      try:
        - { id: fin, action: flow.finish }
      catch:
        - { id: c2, action: debug.log_message, input: { message: caught }  }
  - { id: never, action: debug.log_message, input: { message: never } }
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
    assert_eq!(
        step_order(&job),
        [
            "outer",
            "inner",
            "boom",
            "inner",
            "inner-caught",
            "boom2",
            "outer",
            "outer-caught",
            "t2",
            "fin"
        ]
    );
    assert_eq!(logs_of(&job, "inner-caught"), ["inner first"]);
    assert_eq!(logs_of(&job, "outer-caught"), ["outer second"]);
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

// ---------------------------------------------------------------------------------------------
// HTTP action and outbound authentication (against a local recording server)
// ---------------------------------------------------------------------------------------------

/// One request as the recording server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A local HTTP server that records every request and answers by path:
/// `/status/N` → status N; `/flaky503` → 503 with `Retry-After: 1` once, then 200;
/// `/token` → an OAuth 2 token; `/token-bad` → 400 `invalid_grant`; anything else → 200.
async fn recorder() -> (String, Log) {
    use axum::http::{StatusCode, Uri};
    let log: Log = Arc::default();
    let log2 = log.clone();
    let app = axum::Router::new().fallback(
        move |uri: Uri, headers: axum::http::HeaderMap, body: String| {
            let log = log2.clone();
            async move {
                let seen = Seen {
                    path: uri.path().to_string(),
                    query: uri.query().unwrap_or_default().to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                    body,
                };
                let path = seen.path.clone();
                let mut log = log.lock().unwrap();
                let earlier = log.iter().filter(|s| s.path == path).count();
                log.push(seen);
                let (status, retry, body) = match path.as_str() {
                    p if p.starts_with("/status/") => (
                        p.trim_start_matches("/status/").parse().unwrap_or(500),
                        None,
                        format!("status {p}"),
                    ),
                    "/flaky503" if earlier == 0 => (503, Some("1"), "down".to_string()),
                    "/token" => (
                        200,
                        None,
                        json!({"access_token": "tkn-1", "token_type": "bearer", "expires_in": 3600})
                            .to_string(),
                    ),
                    "/token-bad" => (
                        400,
                        None,
                        json!({"error": "invalid_grant", "error_description": "bad"}).to_string(),
                    ),
                    _ => (200, None, "ok".to_string()),
                };
                let mut resp = axum::response::Response::new(axum::body::Body::from(body));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                if let Some(r) = retry {
                    resp.headers_mut()
                        .insert("retry-after", axum::http::HeaderValue::from_static(r));
                }
                resp
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

/// `ferry run … --json` off the async runtime (the recording server keeps serving).
async fn run_async(dir: &Path, runbook: &str, event: Value) -> (i32, Value, String) {
    let dir = dir.to_path_buf();
    let runbook = runbook.to_string();
    tokio::task::spawn_blocking(move || run_json(&dir, &runbook, &event))
        .await
        .unwrap()
}

/// 87, 89, 93, 94, 104: default User-Agent, outbound basic auth and query API key, repeated
/// headers joined, repeated query names as `name[]`, 4xx/5xx returned as data, 503 rescheduled
/// honouring `Retry-After` (Ferry reschedules on 503 by design, see the issue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s87_s89_s93_s94_s104_http_action_requests() {
    let (base, log) = recorder().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = format!(
        "name: s\nconnections:\n  basic:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      basic_auth: {{ username: admin, password: \"12345\" }}\n  keyed:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      api_key: {{ key: secret, value: boo, placement: query }}\n"
    );
    let plan = r#"  - { id: ua, action: http.send_request, connection: basic, input: { method: GET, path: /ua } }
  - id: own-ua
    action: http.send_request
    connection: basic
    input: { method: GET, path: /own-ua, headers: [ { name: User-Agent, value: mine } ] }
  - id: repeated
    action: http.send_request
    connection: keyed
    input:
      method: GET
      path: /repeated
      headers: [ { name: Accept, value: text/plain }, { name: Accept, value: application/json } ]
      query_parameters: [ { name: q, value: A }, { name: q, value: B } ]
  - { id: five-hundred, action: http.send_request, connection: basic, input: { method: GET, path: /status/500 } }
  - { id: flaky, action: http.send_request, connection: basic, input: { method: GET, path: /flaky503 } }
  - { id: after, action: debug.log_message, input: { message: "{{ steps['five-hundred'].response.status }} {{ steps.flaky.response.status }}" } }
"#;
    let dir = one(tmp.path(), &sol, "", "[ { id: x, type: string } ]", plan);
    let (code, job, err) = run_async(&dir, "r", json!({})).await;
    assert_eq!(code, 0, "{err}\n{job:#}");
    let log = log.lock().unwrap().clone();
    let get = |p: &str| log.iter().find(|s| s.path == p).cloned().unwrap();
    // 87: default User-Agent unless the request sets its own.
    assert_eq!(get("/ua").header("user-agent"), Some("Ferry"));
    assert_eq!(get("/own-ua").header("user-agent"), Some("mine"));
    // 89: basic auth and an API key in the query.
    assert_eq!(
        get("/ua").header("authorization"),
        Some("Basic YWRtaW46MTIzNDU=")
    );
    let repeated = get("/repeated");
    assert!(repeated.query.starts_with("secret=boo"), "{repeated:?}");
    // 104: headers joined, query names repeated as `q[]`.
    assert_eq!(
        repeated.header("accept"),
        Some("text/plain, application/json")
    );
    assert!(
        repeated.query.ends_with("q%5B%5D=A&q%5B%5D=B"),
        "{repeated:?}"
    );
    // 94: the run log names method and URL, never credentials, query values or the body.
    assert_eq!(
        logs_of(&job, "repeated"),
        [
            format!("GET {base}/repeated"),
            "Response status 200".to_string()
        ]
    );
    assert!(!job["steps"].to_string().contains("YWRtaW46MTIzNDU="));
    // 93: a 500 is data, not a retry; a 503 reschedules with the Retry-After delay.
    assert_eq!(log.iter().filter(|s| s.path == "/status/500").count(), 1);
    assert_eq!(
        steps(&job, "five-hundred")[0]["outputs"][0]["response"]["status"],
        500
    );
    let flaky = steps(&job, "flaky");
    assert_eq!(flaky.len(), 2);
    assert_eq!(flaky[0]["status"], "rescheduled");
    assert_eq!(
        flaky[0]["error"],
        "HTTP API not available (retry after: 1). 'down'"
    );
    assert_eq!(logs_of(&job, "after"), ["500 200"]);
}

/// 88, 104: invalid request inputs fail the step with the field named.
#[test]
fn s88_s104_invalid_http_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = "name: s\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config: { base_url: \"http://127.0.0.1:9\" }\n";
    let dir = one(
        tmp.path(),
        sol,
        "",
        "[ { id: path, type: string }, { id: t, type: integer }, { id: b, type: any } ]",
        "  - id: call\n    action: http.send_request\n    connection: api\n    input: { method: POST, path: \"{{ trigger.body.path }}\", timeout_seconds: \"{{ trigger.body.t }}\", body: \"{{ trigger.body.b }}\" }\n",
    );
    for (event, error) in [
        (
            json!({"t": 301}),
            "Input invalid: Field 'timeout_seconds' should be at most 300.",
        ),
        (
            json!({"b": {"bo": "dy"}}),
            "Input invalid: Type of field 'body' invalid, expected String found Hash.",
        ),
    ] {
        let (code, job, _) = run_json(&dir, "r", &event);
        assert_eq!(code, 1, "{event}");
        assert_eq!(job["error"], error, "{event}");
    }
    let (code, job, _) = run_json(&dir, "r", &json!({"path": "a\\b /foo"}));
    assert_eq!(code, 1);
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with("Input invalid: Field 'path' should confirm to pattern /"),
        "{error}"
    );
}

/// 88: a URL that does not parse fails the step with the URL named.
#[test]
fn s88_unparsable_url_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let sol = "name: s\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config: { base_url: foo }\n";
    let dir = one(
        tmp.path(),
        sol,
        "",
        "[ { id: x, type: string } ]",
        "  - { id: call, action: http.send_request, connection: api, input: { method: GET, path: bar } }\n",
    );
    let (code, job, _) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 1);
    assert_eq!(job["error"], "URI foo/bar is invalid.");
}

/// 90, 91: OAuth 2 client credentials: the token is fetched once (form POST) and cached for
/// the next request; an `invalid_grant` answer fails the job naming the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s90_s91_oauth2_token_is_cached_and_errors_fail() {
    let (base, log) = recorder().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = format!(
        "name: s\nconnections:\n  good:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      oauth2: {{ authorization_url: \"{base}/token\", client_id: cid, client_secret: csecret }}\n  bad:\n    connector: http\n    direction: outbound\n    config:\n      base_url: {base}\n      oauth2: {{ authorization_url: \"{base}/token-bad\", client_id: cid, client_secret: csecret }}\n"
    );
    let dir = solution(
        tmp.path(),
        "s",
        &sol,
        &[
            (
                "good",
                &rb(
                    "good",
                    "",
                    "[ { id: x, type: string } ]",
                    "  - { id: one, action: http.send_request, connection: good, input: { method: GET, path: /one } }\n  - { id: two, action: http.send_request, connection: good, input: { method: GET, path: /two } }\n",
                ),
            ),
            (
                "bad",
                &rb(
                    "bad",
                    "",
                    "[ { id: x, type: string } ]",
                    "  - { id: one, action: http.send_request, connection: bad, input: { method: GET, path: /one } }\n",
                ),
            ),
        ],
    );
    let (code, job, err) = run_async(&dir, "good", json!({})).await;
    assert_eq!(code, 0, "{err}\n{job:#}");
    {
        let log = log.lock().unwrap();
        let tokens: Vec<&Seen> = log.iter().filter(|s| s.path == "/token").collect();
        assert_eq!(tokens.len(), 1, "{log:?}");
        assert_eq!(
            tokens[0].header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(tokens[0].body.contains("grant_type=client_credentials"));
        for p in ["/one", "/two"] {
            let s = log.iter().find(|s| s.path == p).unwrap();
            assert_eq!(s.header("authorization"), Some("Bearer tkn-1"));
        }
    }
    let (code, job, _) = run_async(&dir, "bad", json!({})).await;
    assert_eq!(code, 1);
    assert_eq!(
        job["error"],
        "Authentication to 127.0.0.1 failed: invalid_grant: bad"
    );
    // The failed token request stops the step: `/one` was only reached by the first job.
    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|s| s.path == "/one").count(), 1);
    assert_eq!(log.iter().filter(|s| s.path == "/token-bad").count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Trigger phase, through `ferry serve`
// ---------------------------------------------------------------------------------------------

const INBOUND: &str = "name: t\nconnections:\n  query:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: { key: secret, value: boo, placement: query }\n  both:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: { key: x-api-key, value: k }\n      basic_auth: { username: admin, password: \"12345\" }\n";

fn inbound_runbook(name: &str, connection: &str) -> String {
    format!(
        "name: {name}\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  connection: {connection}\n  config:\n    headers: [ {{ name: x-tags, array: true }}, {{ name: x-one }} ]\n    body_schema: [ {{ id: pet, type: string, required: true }} ]\nsteps:\n  - {{ id: log, action: debug.log_message, input: {{ message: \"{{{{ trigger.body.pet }}}}\" }} }}\n"
    )
}

/// 16, 18, 22, 27, 103: API key in the query, validators ANDed, the accepted answer, the job
/// context identifier per request, and the JSON endpoint's output.
#[tokio::test]
async fn s16_s18_s22_s27_s103_inbound_requests() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "t",
        INBOUND,
        &[
            ("q", &inbound_runbook("q", "query")),
            ("both", &inbound_runbook("both", "both")),
        ],
    );
    let server = Server::start(&tmp.path().join("data"), &[&sol], &[]);
    let client = reqwest::Client::new();
    let pet = json!({"pet": "zuzu"});

    // 16: API key in the query string.
    let (code, body) = server.post("/inbound/t/q?secret=oops", &pet, &[]).await;
    assert_eq!(code, 400);
    assert_eq!(body, json!({"error": "Invalid or missing API key."}));
    let (_, jobs) = server.api("/jobs?runbook=q").await;
    assert_eq!(jobs["jobs"], json!([]));

    // 21: a body that violates the schema.
    let (code, body) = server
        .post("/inbound/t/q?secret=boo", &json!({"pet": ""}), &[])
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        body,
        json!({"error": "Output invalid: Nested field 'body' invalid: Field 'pet' is required."})
    );

    // 22: the accepted answer.
    let resp = client
        .post(server.url("/inbound/t/q?secret=boo"))
        .header("x-job-context-identifier", "1")
        .header("x-tags", "foo")
        .json(&pet)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let header = resp.headers()["x-job-uuid"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"job_uuid": header}));
    let first = server
        .wait_job(&header, &["finished"], Duration::from_secs(10))
        .await;
    // 103: the trigger output; an array header becomes a list.
    assert_eq!(
        first["trigger_output"],
        json!({"url_postfix": null, "query_params": {"secret": "boo"}, "headers": {"x-tags": ["foo"]}, "body": {"pet": "zuzu"}})
    );
    assert_eq!(first["context_id"], "1");

    // 27: the next request starts without an identifier.
    let (code, body) = server.post("/inbound/t/q?secret=boo", &pet, &[]).await;
    assert_eq!(code, 200);
    let second = server
        .wait_job(
            body["job_uuid"].as_str().unwrap(),
            &["finished"],
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(second["context_id"], Value::Null);

    // 18: every configured validator must pass.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:12345")
    );
    let (code, body) = server
        .post("/inbound/t/both", &pet, &[("x-api-key", "k")])
        .await;
    assert_eq!(
        (code, body),
        (
            400,
            json!({"error": "Missing basic authentication header."})
        )
    );
    let (code, body) = server
        .post("/inbound/t/both", &pet, &[("authorization", &basic)])
        .await;
    assert_eq!(
        (code, body),
        (400, json!({"error": "Invalid or missing API key."}))
    );
    let (code, body) = server
        .post(
            "/inbound/t/both",
            &pet,
            &[("authorization", &basic), ("x-api-key", "k")],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, jobs) = server.api("/jobs?runbook=both").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
}

/// 32, 86: a `secret_string` trigger field is stored encrypted (not in the database file,
/// shown as `[secret]`), and decrypts to the original when an HTTP step sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s32_secret_trigger_output_is_stored_encrypted() {
    let (base, log) = recorder().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = solution(
        tmp.path(),
        "z",
        &format!("name: z\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config: {{ base_url: \"{base}\" }}\n"),
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: pw, type: secret_string }, { id: pins, type: secret_string, array: true } ]\nsteps:\n  - id: send\n    action: http.send_request\n    connection: api\n    input: { method: POST, path: /secret, body: \"{{ trigger.body.pw }}|{{ trigger.body.pins | join(',') }}\" }\n",
        )],
    );
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[&sol], &[]);
    let (code, body) = server
        .post(
            "/inbound/z/r",
            &json!({"pw": "Zuzu-s3cret", "pins": ["pin-one-111", "pin-two-222"]}),
            &[],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let job = server
        .wait_job(
            body["job_uuid"].as_str().unwrap(),
            &["finished", "failed"],
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(job["status"], "finished", "{job:#}");
    assert_eq!(job["trigger_output"]["body"]["pw"], "[secret]");
    assert_eq!(
        job["trigger_output"]["body"]["pins"],
        json!(["[secret]", "[secret]"])
    );
    let sent = log.lock().unwrap().clone();
    assert_eq!(sent[0].body, "Zuzu-s3cret|pin-one-111,pin-two-222");
    for file in ["ferry.db", "ferry.db-wal"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        for plain in ["Zuzu-s3cret", "pin-one-111", "pin-two-222"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "{plain} in {file}"
            );
        }
    }
    assert!(!server.logs().contains("Zuzu-s3cret"));
}

/// 80 (undeclared id): the step is invalid at run time, and `ferry validate` reports a literal
/// undeclared id statically.
#[test]
fn s80_assign_to_an_undeclared_variable_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = one(
        tmp.path(),
        "name: s\n",
        "variables:\n  - { id: n, type: integer }\n",
        "[ { id: v, type: string } ]",
        "  - { id: set, action: runbook_variables.assign, input: { id: \"{{ trigger.body.v }}\", value: 1 } }\n",
    );
    let (code, job, _) = run_json(&dir, "r", &json!({"v": "nope"}));
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(job["error"], "Input invalid: Field 'id' is required.");
    assert_eq!(
        logs_of(&job, "set"),
        ["Runbook variable 'nope' not in use."]
    );

    let literal = one(
        tmp.path(),
        "name: s2\n",
        "variables:\n  - { id: n, type: integer }\n",
        "[ { id: v, type: string } ]",
        "  - { id: set, action: runbook_variables.assign, input: { id: nope, value: 1 } }\n",
    );
    let out = ferry(&["validate", literal.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Field 'id' is required.") && text.contains("'nope'"),
        "{text}"
    );
}
