//! `ferry validate`: static checks with `file:line` diagnostics and exit code 1.

mod common;

use common::*;

fn validate(dir: &std::path::Path) -> (i32, String) {
    let out = ferry(&["validate", dir.to_str().unwrap()], &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

const HEAD: &str = "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n";

#[test]
fn a_valid_solution_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "ok",
        "name: ok\n",
        &[("r", &format!("{HEAD}  - {{ id: a, action: debug.log_message, input: {{ message: \"{{{{ trigger.body.n }}}}\" }} }}\n"))],
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"));
}

#[test]
fn the_example_solution_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let out = ferry(
        &["validate", dir.to_str().unwrap()],
        &[("DEMO_API_KEY", "demo-key")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn problems_are_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    // Line numbers (1-based) of the runbook below:
    // 8: step `a` (unknown action)
    // 10: step `b`, 12: its message referencing an unknown step
    // 13: step `c` missing its required input
    let runbook = format!(
        "{HEAD}  - id: a\n    action: debug.nope\n  - id: b\n    action: debug.log_message\n    input: {{ message: \"{{{{ steps.ghost.x }}}}\" }}\n  - id: c\n    action: debug.log_message\n"
    );
    let dir = solution(tmp.path(), "bad", "name: bad\n", &[("r", &runbook)]);
    let (code, out) = validate(&dir);
    assert_eq!(code, 1, "{out}");
    let file = "runbooks/r.yaml";
    let line_of = |needle: &str| -> Option<usize> {
        out.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split(file).nth(1))
            .and_then(|rest| rest.trim_start_matches(':').split(':').next())
            .and_then(|n| n.parse().ok())
    };
    assert_eq!(line_of("unknown action 'debug.nope'"), Some(8), "{out}");
    assert_eq!(line_of("unknown steps: 'ghost'"), Some(12), "{out}");
    assert_eq!(line_of("Field 'message' is required."), Some(13), "{out}");
}

#[test]
fn yaml_syntax_errors_and_unknown_keys_name_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "bad",
        "name: bad\n",
        &[(
            "r",
            &format!(
                "{HEAD}  - id: a\n    action: debug.log_message\n    inputs: {{ message: x }}\n"
            ),
        )],
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 1);
    assert!(out.contains("runbooks/r.yaml:10"), "{out}");
    assert!(out.contains("inputs"), "{out}");

    let dir = solution(
        tmp.path(),
        "bad2",
        "name: bad2\n",
        &[("r", "name: r\ntrigger: [\n")],
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 1);
    assert!(out.contains("runbooks/r.yaml:"), "{out}");
}

#[test]
fn unknown_trigger_branch_and_connection_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let runbook = "name: r\ntrigger:\n  connector: json_endpoint\n  type: nope\n  config: {}\nsteps:\n  - id: x\n    action: flow.if_then_else\n    input: { condition: true }\n    branches:\n      maybe: [ { id: y, action: debug.log_message, input: { message: m } } ]\n  - { id: z, action: http.send_request, input: { method: GET } }\n";
    let dir = solution(tmp.path(), "bad", "name: bad\n", &[("r", runbook)]);
    let (code, out) = validate(&dir);
    assert_eq!(code, 1);
    assert!(
        out.contains("Unknown trigger type 'json_endpoint.nope'"),
        "{out}"
    );
    assert!(out.contains("unknown branch 'maybe'"), "{out}");
    assert!(out.contains("needs an outbound 'http' connection"), "{out}");
}

#[test]
fn connection_configs_are_checked_against_their_connector() {
    let tmp = tempfile::tempdir().unwrap();
    // Lines: 5 `config:` of api, 6 its unknown key; 10 api_key without `value`;
    // 12 inbound json_endpoint given an outbound-only http key.
    let sol = "name: conns\nconnections:\n  api:\n    connector: http\n    direction: outbound\n    config:\n      bearer_tokn: abc\n  hook:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: { key: x-api-key }\n  other:\n    connector: json_endpoint\n    direction: outbound\n";
    let dir = solution(
        tmp.path(),
        "conns",
        sol,
        &[(
            "r",
            &format!(
                "{HEAD}  - {{ id: a, action: debug.log_message, input: {{ message: hi }} }}\n"
            ),
        )],
    );
    let (code, out) = validate(&dir);
    assert_eq!(code, 1, "{out}");
    let expect = [
        "solution.yaml:7: Connection 'api': unknown config key 'bearer_tokn' for an outbound 'http' connection (allowed: base_url, api_key, basic_auth, bearer, bearer_token, oauth2)",
        "solution.yaml:3: Connection 'api': config invalid: Field 'base_url' is required.",
        "solution.yaml:12: Connection 'hook': config invalid: Nested field 'api_key' invalid: Field 'value' is required.",
        "solution.yaml:13: Connection 'other': connector 'json_endpoint' has no outbound connections",
    ];
    for e in expect {
        assert!(
            out.lines().any(|l| l.ends_with(e)),
            "missing `{e}` in:\n{out}"
        );
    }
}

#[test]
fn validate_data_needs_a_ferry_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = solution(
        tmp.path(),
        "ok",
        "name: ok\n",
        &[(
            "r",
            &format!(
                "{HEAD}  - {{ id: a, action: debug.log_message, input: {{ message: hi }} }}\n"
            ),
        )],
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ferry(
        &[
            "validate",
            dir.to_str().unwrap(),
            "--data",
            empty.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Ferry database there (ferry.db)"), "{err}");
    assert!(!empty.join("master.key").exists(), "validate created a key");
}

#[test]
fn respond_with_is_checked_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    // Lines: 7 status, 8 headers, 9 the unknown key, 10 a variable steps cannot see.
    let runbook = "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    respond_with:\n      status: 700\n      headers: [ x-a ]\n      bodi: hi\n      body: \"{{ steps.a }}\"\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n";
    let dir = solution(tmp.path(), "resp", "name: resp\n", &[("r", runbook)]);
    let (code, out) = validate(&dir);
    assert_eq!(code, 1, "{out}");
    for e in [
        "r.yaml:7: respond_with.status: 700 is not an HTTP status (100 to 599)",
        "r.yaml:8: respond_with.headers: must be a mapping of header names to values",
        "r.yaml:9: respond_with: unknown key 'bodi' (allowed: status, headers, body)",
        "r.yaml:10: respond_with: unknown variable 'steps.a' (use trigger, env or job)",
    ] {
        assert!(
            out.lines().any(|l| l.ends_with(e)),
            "missing `{e}` in:\n{out}"
        );
    }
}
