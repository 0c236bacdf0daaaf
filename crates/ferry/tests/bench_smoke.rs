//! The `ferry bench` commands run end to end and print their figures. No timing is asserted:
//! figures belong in notes, not in tests.

mod common;

use common::*;

fn bench(args: &[&str]) -> String {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let out = ferry(&all, &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn bench_commands_run_and_report() {
    let ingest = bench(&[
        "ingest",
        "--seconds",
        "1",
        "--connections",
        "2",
        "--workers",
        "1",
    ]);
    assert!(
        ingest.contains("events/s") && ingest.contains("errors 0") && ingest.contains("p99"),
        "{ingest}"
    );
    assert!(ingest.contains("CPU: server"), "{ingest}");
    let runbook = bench(&["runbook", "--jobs", "3", "--steps", "5"]);
    assert!(
        runbook.contains("3 jobs") && runbook.contains("median"),
        "{runbook}"
    );
    let paging = bench(&[
        "paging",
        "--records",
        "600",
        "--page-size",
        "50",
        "--slice",
        "200",
    ]);
    assert!(
        paging.contains("600 records in pages of 50")
            && paging.contains("612 steps")
            && paging.contains("last/first slice time")
            && paging.contains("RSS: start")
            && paging.contains("checkpointed state"),
        "{paging}"
    );
    assert_eq!(
        paging
            .lines()
            .filter(|l| l.contains(" MB") && l.contains(" B "))
            .count(),
        3,
        "one line per slice of 200 records: {paging}"
    );
    let query = bench(&["xurrent-query", "--records", "250", "--page-size", "100"]);
    assert!(
        query.contains("seeded 250 people")
            && query.contains("250 records in 3 pages of 100")
            && query.contains("records/s")
            && query.contains("peak")
            && query.contains("checkpointed state max"),
        "{query}"
    );
    let memory = bench(&["memory", "--jobs", "200"]);
    assert!(
        memory.contains("idle RSS") && memory.contains("200 queued jobs"),
        "{memory}"
    );
}

#[test]
fn console_bench_runs_and_reports() {
    let out = bench(&["console", "--jobs", "300", "--ended", "20", "--rounds", "2"]);
    assert!(
        out.contains("stored 300 jobs")
            && out.contains("ended 20 jobs")
            && out.contains("status=failed")
            && out.contains("time range")
            && out.contains("slowest median server time")
            && out.contains("overview round trip median"),
        "{out}"
    );
}

#[test]
fn xurrent_schema_bench_runs_and_reports() {
    let out = bench(&["xurrent-schema", "--rounds", "1", "--lookups", "100"]);
    assert!(
        out.contains("first use (introspect + parse + seal + store)") && out.contains(" types"),
        "{out}"
    );
    assert!(
        out.contains("introspect + cache the full schema: median"),
        "{out}"
    );
    assert!(
        out.contains("cached lookup (schema + generation)") && out.contains("µs per step"),
        "{out}"
    );
}

#[test]
fn two_solutions_with_one_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rb = "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: m } }\n";
    let a = solution(tmp.path(), "a", "name: same\n", &[("r", rb)]);
    let b = solution(tmp.path(), "b", "name: same\n", &[("r", rb)]);
    let data = tmp.path().join("data");
    let out = ferry(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("solution 'same' is already loaded"), "{err}");
}
