//! `ferry test`: a solution's test cases through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ferry, Server};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo")
}

/// A copy of the demo solution (without its cases) in `root`.
fn demo_copy(root: &Path) -> PathBuf {
    let dir = root.join("demo");
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::create_dir_all(dir.join("tests/intake")).unwrap();
    std::fs::create_dir_all(dir.join("tests/forward")).unwrap();
    std::fs::copy(demo().join("solution.yaml"), dir.join("solution.yaml")).unwrap();
    for rb in ["intake", "forward"] {
        std::fs::copy(
            demo().join(format!("runbooks/{rb}.yaml")),
            dir.join(format!("runbooks/{rb}.yaml")),
        )
        .unwrap();
    }
    dir
}

fn test_cmd(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    let out = ferry(&all, envs);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_demo_cases_pass_and_junit_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let (code, out) = test_cmd(
        &[demo().to_str().unwrap(), "--junit", junit.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("running 5 test cases"), "{out}");
    assert!(out.contains("test intake/big order ... ok"), "{out}");
    assert!(
        out.contains("test forward/intake answers 200 ... ok"),
        "{out}"
    );
    assert!(out.contains("test result: ok. 5 passed; 0 failed"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"ferry test\" tests=\"5\" failures=\"0\" errors=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testsuite name=\"intake\" tests=\"2\""),
        "{xml}"
    );

    // --runbook selects one runbook's cases.
    let (code, out) = test_cmd(&[demo().to_str().unwrap(), "--runbook", "forward"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("running 2 test cases"), "{out}");
    assert!(!out.contains("intake/"), "{out}");
}

#[test]
fn failures_are_reported_with_a_diff_and_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo_copy(tmp.path());
    // Wrong expectations: a log message, the variables (diffed), the job's status.
    std::fs::write(
        dir.join("tests/intake/wrong.yaml"),
        "event:\n  body: { pet: dog, count: 5, items: [leash, ball] }\nsteps:\n  greet:\n    input: { message: { $contains: cat } }\n  log-item:\n    - input: { message: \"Item 1: leash\" }\n    - input: { message: { $not: { $ends_with: ball } } }\nexpect:\n  variables: { $equals: { processed: 3 } }\n",
    )
    .unwrap();
    // An HTTP step without a mock never reaches the network.
    std::fs::write(
        dir.join("tests/forward/unmocked.yaml"),
        "event:\n  body: { pet: parrot }\n",
    )
    .unwrap();
    // A bad case file: file:line.
    std::fs::write(
        dir.join("tests/intake/bad.yaml"),
        "event:\n  body: {}\nsteps:\n  greet:\n    input: { message: x }\n  no-such-step:\n    runs: 1\n",
    )
    .unwrap();
    let junit = tmp.path().join("junit.xml");
    // The HTTP step would call this (closed) port if it were not stopped.
    let (code, out) = test_cmd(
        &[dir.to_str().unwrap(), "--junit", junit.to_str().unwrap()],
        &[("DEMO_BASE_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("test intake/wrong ... FAILED"), "{out}");
    assert!(out.contains("test forward/unmocked ... FAILED"), "{out}");
    assert!(out.contains("test intake/bad ... ERROR"), "{out}");
    assert!(
        out.contains("steps.greet[1].input.message: expectation failed with contains matcher\nActual value: \"Hello! 5 x dog received\"\nExpected value: cat"),
        "{out}"
    );
    assert!(
        out.contains(
            "steps.log-item[2].input.message: expectation failed with negated ends_with matcher"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "Diff (- expected, + actual):\n  {\n-   \"processed\": 3\n+   \"processed\": 2\n  }"
        ),
        "{out}"
    );
    assert!(
        out.contains("step 'post-intake' (action http.send_request) is not mocked for invocation 1: a test never reaches the network"),
        "{out}"
    );
    let bad = dir.join("tests/intake/bad.yaml");
    assert!(
        out.contains(&format!(
            "{}:6: runbook 'intake' has no step 'no-such-step'",
            bad.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("test result: FAILED. 0 passed; 3 failed"),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("tests=\"3\" failures=\"2\" errors=\"1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"job.variables: expectation failed with equals matcher\">"),
        "{xml}"
    );
}

#[test]
fn mocks_fail_reschedule_and_iterate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo_copy(tmp.path());
    // A rescheduled HTTP call is run again at once (no waiting), then answers.
    std::fs::write(
        dir.join("tests/forward/retried.yaml"),
        "event:\n  body: { pet: parrot }\nsteps:\n  post-intake:\n    runs: 2\n    invocations:\n      - mock: { reschedule: { after_seconds: 3600, message: busy } }\n        status: rescheduled\n      - mock: { output: { response: { status: 201, body: created } } }\n  log-answer:\n    logs: [\"intake answered 201: created\"]\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, out) = test_cmd(&[dir.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn record_writes_the_observed_outputs_as_mocks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo_copy(tmp.path());
    // The real intake endpoint: a server with the demo solution.
    let server = Server::start(&tmp.path().join("data"), &[&demo()], &[]);
    let case = dir.join("tests/forward/live.yaml");
    std::fs::write(
        &case,
        "# recorded below\nname: live\nevent:\n  body: { pet: parrot }\nsteps:\n  log-answer:\n    logs: [{ $starts_with: \"intake answered 200\" }]\n",
    )
    .unwrap();
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let (code, out) = test_cmd(
        &[dir.to_str().unwrap(), "--record", "--case", "live"],
        &[("DEMO_BASE_URL", base)],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("running 1 test case (recording)"), "{out}");
    let text = std::fs::read_to_string(&case).unwrap();
    assert!(text.contains("post-intake:"), "{text}");
    assert!(text.contains("mock:"), "{text}");
    assert!(text.contains("status: 200"), "{text}");
    assert!(text.contains("job_uuid"), "{text}");
    drop(server);
    // A case whose run reaches no network step is left as written.
    let untouched = dir.join("tests/intake/plain.yaml");
    let plain = "# a comment that stays\nevent:\n  body: { pet: cat2 }\n";
    std::fs::write(&untouched, plain).unwrap();
    let (code, out) = test_cmd(&[dir.to_str().unwrap(), "--record", "--case", "plain"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_to_string(&untouched).unwrap(), plain);
    // Replayed offline: the mock stands in for the server, which is gone.
    let (code, out) = test_cmd(
        &[dir.to_str().unwrap(), "--case", "live"],
        &[("DEMO_BASE_URL", base)],
    );
    assert_eq!(code, 0, "{out}\n{text}");
    assert!(out.contains("test forward/live ... ok"), "{out}");
}

#[test]
fn the_xurrent_example_cases_pass_offline() {
    // Mocked Xurrent steps: no emulator runs, and the URL points at a closed port.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/xurrent");
    let (code, out) = test_cmd(
        &[dir.to_str().unwrap()],
        &[("XURRENT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("test on_request/a new request gets a note with the report ... ok"),
        "{out}"
    );
    assert!(out.contains("test result: ok. 2 passed; 0 failed"), "{out}");
}
