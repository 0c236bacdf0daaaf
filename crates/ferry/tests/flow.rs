//! Every flow action, run through `ferry run` (the real binary, in-process store).

mod common;

use common::*;
use serde_json::{json, Value};

const SOLUTION: &str = "name: flows\ndescription: flow tests\n";

fn trigger(fields: &str) -> String {
    format!(
        "trigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema:\n{fields}"
    )
}

fn rb(name: &str, fields: &str, steps: &str) -> String {
    format!("name: {name}\n{}steps:\n{steps}", trigger(fields))
}

#[test]
fn if_then_else_runs_the_matching_branch_then_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &rb(
                "r",
                "      - { id: count, type: integer }\n",
                r#"  - id: check
    action: flow.if_then_else
    input: { condition: "{{ trigger.body.count > 3 }}" }
    branches:
      true:
        - { id: big, action: debug.log_message, input: { message: "big {{ trigger.body.count }}" } }
      false:
        - { id: small, action: debug.log_message, input: { message: "small" } }
  - { id: after, action: debug.log_message, input: { message: "done" } }
"#,
            ),
        )],
    );
    let (code, job, err) = run_json(&dir, "r", &json!({"count": "7"}));
    assert_eq!(code, 0, "{err}\n{job}");
    assert_eq!(job["status"], "finished");
    assert_eq!(step_order(&job), ["check", "big", "after"]);
    // "7" was coerced to an integer by the body schema, then compared as a number.
    assert_eq!(job["trigger_output"]["body"]["count"], 7);
    assert_eq!(steps(&job, "big")[0]["logs"][0]["message"], "big 7");
    let (code, job, _) = run_json(&dir, "r", &json!({"count": 1}));
    assert_eq!(code, 0);
    assert_eq!(step_order(&job), ["check", "small", "after"]);
}

#[test]
fn case_matches_exactly_or_takes_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &rb(
                "r",
                "      - { id: color, type: string }\n",
                r#"  - id: pick
    action: flow.case
    input: { expression: "{{ trigger.body.color }}", matches: [red, green] }
    branches:
      red: [ { id: is_red, action: debug.log_message, input: { message: "R" } } ]
      green: [ { id: is_green, action: debug.log_message, input: { message: "G" } } ]
      else: [ { id: other, action: debug.log_message, input: { message: "{{ item.expression }}" } } ]
"#,
            ),
        )],
    );
    let (_, job, _) = run_json(&dir, "r", &json!({"color": "green"}));
    assert_eq!(step_order(&job), ["pick", "is_green"]);
    let (_, job, _) = run_json(&dir, "r", &json!({"color": "Green"}));
    assert_eq!(step_order(&job), ["pick", "other"]);
    assert_eq!(steps(&job, "other")[0]["logs"][0]["message"], "Green");
}

#[test]
fn loop_batch_and_section_iterate_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &rb(
                "r",
                "      - { id: items, type: any, array: true }\n",
                r#"  - id: group
    action: flow.section
    each:
      - id: every
        action: flow.loop
        input: { items: "{{ trigger.body.items }}" }
        each:
          - { id: log_item, action: debug.log_message, input: { message: "{{ item.index }}={{ item.item }}" } }
      - id: chunks
        action: flow.batch
        input: { items: "{{ trigger.body.items }}", batch_size: 2 }
        each:
          - { id: log_batch, action: debug.log_message, input: { message: "{{ item['items'] | join(',') }}" } }
  - id: empty
    action: flow.loop
    input: { items: [] }
    each:
      - { id: never, action: debug.log_message, input: { message: "x" } }
"#,
            ),
        )],
    );
    let (code, job, err) = run_json(&dir, "r", &json!({"items": ["a", "b", "c"]}));
    assert_eq!(code, 0, "{err}");
    let logs: Vec<Value> = steps(&job, "log_item")
        .iter()
        .map(|s| s["logs"][0]["message"].clone())
        .collect();
    assert_eq!(logs, [json!("0=a"), json!("1=b"), json!("2=c")]);
    let batches: Vec<Value> = steps(&job, "log_batch")
        .iter()
        .map(|s| s["logs"][0]["message"].clone())
        .collect();
    assert_eq!(batches, [json!("a,b"), json!("c")]);
    assert!(steps(&job, "never").is_empty());
    assert_eq!(steps(&job, "empty").len(), 1);
}

#[test]
fn fail_and_finish_end_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[
            (
                "fail",
                &rb(
                    "fail",
                    "      - { id: why, type: string }\n",
                    "  - { id: stop, action: flow.fail, input: { message: \"no {{ trigger.body.why }}\" } }\n  - { id: unreachable, action: debug.log_message, input: { message: x } }\n",
                ),
            ),
            (
                "finish",
                &rb(
                    "finish",
                    "      - { id: why, type: string }\n",
                    "  - { id: done, action: flow.finish }\n  - { id: unreachable, action: debug.log_message, input: { message: x } }\n",
                ),
            ),
        ],
    );
    let (code, job, _) = run_json(&dir, "fail", &json!({"why": "coffee"}));
    assert_eq!(code, 1);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "no coffee");
    assert_eq!(step_order(&job), ["stop"]);
    let (code, job, _) = run_json(&dir, "finish", &json!({}));
    assert_eq!(code, 0);
    assert_eq!(job["status"], "finished");
    assert_eq!(step_order(&job), ["done"]);
}

#[test]
fn try_catch_receives_the_error_and_retry_reruns_try() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &format!(
                "name: r\nvariables:\n  - {{ id: attempts, type: integer, default: 0 }}\n{}steps:\n{}",
                trigger("      - { id: x, type: string }\n"),
                r#"  - id: guard
    action: flow.try_catch
    branches:
      try:
        - { id: count, action: runbook_variables.assign, input: { id: attempts, value: "{{ vars.attempts + 1 }}" } }
        - id: maybe
          action: flow.if_then_else
          input: { condition: "{{ vars.attempts < 3 }}" }
          branches:
            true: [ { id: boom, action: flow.fail, input: { message: "attempt {{ vars.attempts }} failed" } } ]
      catch:
        - { id: log_error, action: debug.log_message, input: { message: "caught: {{ item.error }}" } }
        - { id: again, action: flow.retry }
  - { id: after, action: debug.log_message, input: { message: "attempts={{ vars.attempts }}" } }
"#
            ),
        )],
    );
    let (code, job, err) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 0, "{err}\n{job:#}");
    let caught: Vec<Value> = steps(&job, "log_error")
        .iter()
        .map(|s| s["logs"][0]["message"].clone())
        .collect();
    assert_eq!(
        caught,
        [
            json!("caught: attempt 1 failed"),
            json!("caught: attempt 2 failed")
        ]
    );
    assert_eq!(steps(&job, "after")[0]["logs"][0]["message"], "attempts=3");
    // The failing steps are recorded as failed; the job still finished.
    assert_eq!(steps(&job, "boom").len(), 2);
    assert!(steps(&job, "boom").iter().all(|s| s["status"] == "failed"));
}

#[test]
fn failure_outside_try_fails_the_job_with_the_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &rb(
                "r",
                "      - { id: n, type: integer }\n",
                r#"  - id: guard
    action: flow.try_catch
    branches:
      catch:
        - { id: bad, action: flow.fail, input: { message: "in catch" } }
      try:
        - { id: boom, action: flow.fail, input: { message: "first" } }
"#,
            ),
        )],
    );
    let (code, job, _) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 1);
    assert_eq!(job["error"], "in catch");
    assert_eq!(step_order(&job), ["guard", "boom", "guard", "bad"]);
}

#[test]
fn wait_suspends_and_reports_the_actual_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &rb(
                "r",
                "      - { id: n, type: integer }\n",
                "  - id: pause\n    action: flow.wait\n    input: { seconds_to_wait: 1 }\n    each:\n      - { id: report, action: debug.log_message, input: { message: \"waited {{ item.actual_wait }}\" } }\n",
            ),
        )],
    );
    let (code, job, err) = run_json(&dir, "r", &json!({}));
    assert_eq!(code, 0, "{err}");
    let pauses = steps(&job, "pause");
    assert_eq!(pauses.len(), 2);
    assert_eq!(pauses[0]["status"], "rescheduled");
    assert_eq!(pauses[1]["outputs"][0]["output"]["requested_wait"], 1);
    assert!(
        pauses[1]["outputs"][0]["output"]["actual_wait"]
            .as_i64()
            .unwrap()
            >= 1
    );
    assert!(steps(&job, "report")[0]["logs"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("waited "));
}

#[test]
fn assign_runbook_variable_coerces_to_the_declared_type() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        SOLUTION,
        &[(
            "r",
            &format!(
                "name: r\nvariables:\n  - {{ id: total, type: integer }}\n{}steps:\n{}",
                trigger("      - { id: amount, type: string }\n"),
                "  - { id: set, action: runbook_variables.assign, input: { id: total, value: \"{{ trigger.body.amount }}\" } }\n  - { id: show, action: debug.log_message, input: { message: \"{{ vars.total + 1 }}\" } }\n  - { id: bad, action: runbook_variables.assign, input: { id: total, value: \"lots\" } }\n"
            ),
        )],
    );
    let (code, job, _) = run_json(&dir, "r", &json!({"amount": "41"}));
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(steps(&job, "set")[0]["outputs"][0]["value"], 41);
    assert_eq!(steps(&job, "show")[0]["logs"][0]["message"], "42");
    let err = job["error"].as_str().unwrap();
    assert!(err.contains("value"), "{err}");
}

#[test]
fn typed_expressions_keep_their_type_and_templates_make_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        "name: s\nenv:\n  GREETING: hello\n",
        &[(
            "r",
            &rb(
                "r",
                "      - { id: items, type: any, array: true }\n      - { id: flag, type: boolean }\n",
                r#"  - id: loop
    action: flow.loop
    input: { items: "{{ trigger.body.items | selectattr('keep') | list }}" }
    each:
      - { id: each_log, action: debug.log_message, input: { message: "{{ env.GREETING }} {{ item.item.name }} ({{ trigger.body.flag }})" } }
"#,
            ),
        )],
    );
    let (code, job, err) = run_json(
        &dir,
        "r",
        &json!({"items": [{"name": "a", "keep": true}, {"name": "b", "keep": false}, {"name": "c", "keep": true}], "flag": "off"}),
    );
    assert_eq!(code, 0, "{err}");
    let logs: Vec<Value> = steps(&job, "each_log")
        .iter()
        .map(|s| s["logs"][0]["message"].clone())
        .collect();
    assert_eq!(logs, [json!("hello a (false)"), json!("hello c (false)")]);
}

#[test]
fn secrets_are_redacted_in_run_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "s",
        "name: s\nenv:\n  PASSWORD: { secret: true, from_env: TEST_SECRET_PASSWORD }\n",
        &[(
            "r",
            &format!(
                "name: r\n{}steps:\n  - {{ id: leak, action: debug.log_message, input: {{ message: \"pw={{{{ env.PASSWORD }}}}\" }} }}\n  - {{ id: boom, action: flow.fail, input: {{ message: \"failed with {{{{ env.PASSWORD }}}}\" }} }}\n",
                trigger("      - { id: x, type: secret_string }\n")
            ),
        )],
    );
    let event = tmp.path().join("e.json");
    std::fs::write(&event, r#"{"x": "body-secret-123"}"#).unwrap();
    for json_flag in [true, false] {
        let mut args = vec![
            "run",
            dir.to_str().unwrap(),
            "--runbook",
            "r",
            "--event",
            event.to_str().unwrap(),
        ];
        if json_flag {
            args.push("--json");
        }
        let out = ferry(&args, &[("TEST_SECRET_PASSWORD", "hunter2-plain")]);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(!text.contains("hunter2-plain"), "{text}");
        assert!(!text.contains("body-secret-123"), "{text}");
        assert!(text.contains("pw=[secret]"), "{text}");
        assert!(text.contains("failed with [secret]"), "{text}");
    }
}
