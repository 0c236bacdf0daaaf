//! Schedules end to end through the binary, on the test clock (`FERRY_TEST_CLOCK_FILE`): the
//! clock is a file the test rewrites, so ticks fall without sleeping until 02:30.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{solution, validate, Server, TOKEN};
use serde_json::Value;

const SOLUTION: &str = "name: sched\n";

fn runbook(name: &str, trigger_config: &str) -> String {
    format!(
        "name: {name}
trigger:
  connector: scheduler
  type: schedule
  config:
{trigger_config}
steps:
  - id: log
    action: debug.log_message
    input:
      message: \"tick {{{{ trigger.scheduled_for }}}} {{{{ trigger.body.report }}}}\"
"
    )
}

const NIGHTLY: &str = "    schedule:
      frequency: daily
      time_of_day: \"02:30\"
      time_zone: Europe/Amsterdam
    catch_up: one
    request_body: { report: nightly }";

const NIGHTLY_SKIP: &str = "    schedule:
      frequency: daily
      time_of_day: \"02:30\"
      time_zone: Europe/Amsterdam
    catch_up: skip
    request_body: { report: skip }";

const CRON: &str = "    cron: \"30 2 * * *\"
    time_zone: Europe/Amsterdam
    request_body: { report: cron }";

fn set_clock(file: &Path, t: &str) {
    std::fs::write(file, t).unwrap();
}

/// The `scheduled_for` of every job of a runbook, oldest first.
async fn ticks(server: &Server, runbook: &str) -> Vec<String> {
    let (code, page) = server
        .api(&format!("/jobs?solution=sched&runbook={runbook}"))
        .await;
    assert_eq!(code, 200, "{page}");
    let mut out: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            j["trigger_output"]["scheduled_for"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    out.reverse();
    out
}

/// Wait until a runbook has `n` jobs (then give the scheduler a few more polls to show that
/// no further job comes).
async fn expect_ticks(server: &Server, runbook: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = ticks(server, runbook).await;
        if got.len() >= want.len() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "{runbook}: wanted ticks {want:?}, got {got:?}\n{}",
                server.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ten polls of the test clock.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(ticks(server, runbook).await, want, "{}", server.logs());
}

async fn schedules(server: &Server) -> Value {
    let (code, list) = server.api("/schedules?count=3").await;
    assert_eq!(code, 200, "{list}");
    list
}

fn entry<'a>(list: &'a Value, runbook: &str) -> &'a Value {
    list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["runbook"] == runbook)
        .unwrap_or_else(|| panic!("no schedule {runbook} in {list}"))
}

/// Wait until the scheduler has started (it writes each schedule's position at once).
async fn wait_started(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.logs().contains("schedule") || Instant::now() < deadline {
        if server.logs().matches("schedule started").count() > 0
            || server.logs().contains("tick(s)")
            || server.logs().contains("schedule tick")
        {
            break;
        }
        if Instant::now() > deadline {
            panic!("scheduler did not start:\n{}", server.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_0230_fires_once_when_the_clock_goes_back_and_catches_up_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let nightly = runbook("nightly", NIGHTLY);
    let skip = runbook("nightly-skip", NIGHTLY_SKIP);
    let dir = solution(
        tmp.path(),
        "sched",
        SOLUTION,
        &[("nightly", &nightly), ("nightly-skip", &skip)],
    );
    let data = tmp.path().join("data");
    let clock = tmp.path().join("clock");
    let clock_s = clock.to_str().unwrap().to_string();
    let envs = [("FERRY_TEST_CLOCK_FILE", clock_s.as_str())];

    // Saturday before the clocks go back in Amsterdam (Sunday 2026-10-25, 03:00 → 02:00).
    set_clock(&clock, "2026-10-24T12:00:00Z");
    let mut server = Server::start(&data, &[&dir], &envs);
    wait_started(&server).await;
    assert!(server.logs().contains("test clock"), "{}", server.logs());

    // The next runs: 02:30 CEST on Sunday, then 02:30 CET on Monday.
    let list = schedules(&server).await;
    let n = entry(&list, "nightly");
    assert_eq!(
        n["next_runs"],
        serde_json::json!([
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
            "2026-10-27T01:30:00Z"
        ]),
        "{list}"
    );
    assert_eq!(n["time_zone"], "Europe/Amsterdam");
    assert_eq!(n["catch_up"], "one");
    assert_eq!(entry(&list, "nightly-skip")["catch_up"], "skip");
    // The CLI shows the same, in the zone's local time too.
    let out = common::ferry(
        &[
            "schedules",
            "list",
            "--server",
            &server.url(""),
            "--token",
            TOKEN,
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("sched/nightly: every day at 02:30 in Europe/Amsterdam"),
        "{text}"
    );
    assert!(text.contains("2026-10-25 02:30:00 CEST"), "{text}");
    assert!(text.contains("2026-10-26 02:30:00 CET"), "{text}");

    // The route is in the OpenAPI document.
    let doc: Value = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/schedules"]["get"].is_object());
    assert!(doc["components"]["schemas"]["ScheduleList"].is_object());
    // A bad count is refused naming the parameter.
    let (code, body) = server.api("/schedules?count=0").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("count"), "{body}");
    let (code, body) = server.api("/schedules?count=").await;
    assert_eq!(code, 400, "{body}");

    // A schedule trigger does not answer HTTP.
    let (code, body) = server
        .post("/inbound/sched/nightly", &serde_json::json!({}), &[])
        .await;
    assert_eq!(code, 404, "{body}");

    // Before 02:30 nothing; at the first 02:30 (CEST) one job each.
    set_clock(&clock, "2026-10-25T00:29:00Z");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ticks(&server, "nightly").await.is_empty());
    set_clock(&clock, "2026-10-25T00:30:00Z");
    expect_ticks(&server, "nightly", &["2026-10-25T00:30:00Z"]).await;
    expect_ticks(&server, "nightly-skip", &["2026-10-25T00:30:00Z"]).await;
    // The second 02:30 (CET, an hour later) fires nothing.
    set_clock(&clock, "2026-10-25T01:31:00Z");
    expect_ticks(&server, "nightly", &["2026-10-25T00:30:00Z"]).await;
    expect_ticks(&server, "nightly-skip", &["2026-10-25T00:30:00Z"]).await;
    let (_, page) = server.api("/jobs?solution=sched&runbook=nightly").await;
    let id = page["jobs"][0]["id"].as_str().unwrap().to_string();
    let job = server
        .wait_job(&id, &["finished"], Duration::from_secs(10))
        .await;
    assert_eq!(
        job["steps"][0]["logs"][0]["message"], "tick 2026-10-25T00:30:00Z nightly",
        "{job}"
    );
    assert_eq!(
        job["trigger_output"]["deduplication_id"],
        "schedule:sched/nightly:2026-10-25T00:30:00Z"
    );

    // Ferry is down over Monday's 02:30 (CET = 01:30Z).
    server.terminate();
    set_clock(&clock, "2026-10-26T06:00:00Z");
    let mut server = Server::start(&data, &[&dir], &envs);
    // catch_up: one → the missed tick runs once; catch_up: skip → a log line, no job.
    expect_ticks(
        &server,
        "nightly",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    )
    .await;
    expect_ticks(&server, "nightly-skip", &["2026-10-25T00:30:00Z"]).await;
    let logs = server.logs();
    assert!(
        logs.contains(
            "skipping 1 tick(s) that fell due while Ferry was not running (catch_up: skip)"
        ),
        "{logs}"
    );
    assert!(
        logs.contains("1 tick(s) fell due while Ferry was not running; running the last one once (catch_up: one)"),
        "{logs}"
    );
    let list = schedules(&server).await;
    assert_eq!(
        entry(&list, "nightly")["last_tick"],
        "2026-10-26T01:30:00Z",
        "{list}"
    );
    assert_eq!(
        entry(&list, "nightly")["next_runs"][0],
        "2026-10-27T01:30:00Z"
    );

    // A restart between two ticks, with the clock unchanged, creates nothing more; the next
    // tick then fires once.
    server.terminate();
    let server = Server::start(&data, &[&dir], &envs);
    wait_started(&server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ticks(&server, "nightly").await.len(),
        2,
        "{}",
        server.logs()
    );
    set_clock(&clock, "2026-10-27T01:30:05Z");
    expect_ticks(
        &server,
        "nightly",
        &[
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
            "2026-10-27T01:30:00Z",
        ],
    )
    .await;
    expect_ticks(
        &server,
        "nightly-skip",
        &["2026-10-25T00:30:00Z", "2026-10-27T01:30:00Z"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0230_tick_on_the_day_without_0230_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let nightly = runbook("nightly", NIGHTLY);
    let cron = runbook("cron", CRON);
    let dir = solution(
        tmp.path(),
        "sched",
        SOLUTION,
        &[("nightly", &nightly), ("cron", &cron)],
    );
    let data = tmp.path().join("data");
    let clock = tmp.path().join("clock");
    let clock_s = clock.to_str().unwrap().to_string();
    // Saturday before the clocks go forward in Amsterdam (Sunday 2026-03-29, 02:00 → 03:00).
    set_clock(&clock, "2026-03-28T12:00:00Z");
    let server = Server::start(&data, &[&dir], &[("FERRY_TEST_CLOCK_FILE", &clock_s)]);
    wait_started(&server).await;
    // A schedule has no inbound endpoint, and the start-up banner offers none.
    let logs = server.logs();
    assert!(
        logs.contains("runbook sched/nightly: started by its schedule"),
        "{logs}"
    );
    assert!(!logs.contains("/inbound/sched/nightly"), "{logs}");
    let list = schedules(&server).await;
    for rb in ["nightly", "cron"] {
        assert_eq!(
            entry(&list, rb)["next_runs"],
            serde_json::json!([
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]),
            "{list}"
        );
    }
    // 01:59 local (00:59Z): nothing yet; 03:00 CEST (01:00Z) is the first time after the
    // gap: one job; later that morning still one.
    set_clock(&clock, "2026-03-29T00:59:00Z");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ticks(&server, "nightly").await.is_empty());
    set_clock(&clock, "2026-03-29T01:00:00Z");
    expect_ticks(&server, "nightly", &["2026-03-29T01:00:00Z"]).await;
    expect_ticks(&server, "cron", &["2026-03-29T01:00:00Z"]).await;
    set_clock(&clock, "2026-03-29T02:00:00Z");
    expect_ticks(&server, "nightly", &["2026-03-29T01:00:00Z"]).await;
    expect_ticks(&server, "cron", &["2026-03-29T01:00:00Z"]).await;
    // The next day at 02:30 CEST as usual.
    set_clock(&clock, "2026-03-30T00:30:00Z");
    expect_ticks(
        &server,
        "nightly",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    )
    .await;
}

#[test]
fn validate_rejects_impossible_and_invalid_schedules_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let feb30 = runbook(
        "feb30",
        "    schedule:
      frequency: yearly
      time_of_day: \"12:00\"
      month_of_year: [2]
      day_of_month: [30, 31]",
    );
    let bad_time = runbook(
        "bad-time",
        "    schedule:
      frequency: weekly
      day: [saturday, sunday]
      time_of_day: \"35:55:50\"",
    );
    let bad_cron = runbook(
        "bad-cron",
        "    cron: \"0 0 30 2 *\"
    catch_up: sometimes",
    );
    let dir = solution(
        tmp.path(),
        "sched",
        SOLUTION,
        &[
            ("feb30", &feb30),
            ("bad-time", &bad_time),
            ("bad-cron", &bad_cron),
        ],
    );
    let (code, out) = validate(&dir, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "runbooks/feb30.yaml:6: schedule: this schedule never fires (no date matches it, or it ends before it starts)"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "runbooks/bad-time.yaml:9: schedule.time_of_day: \"35:55:50\" is not a time of day"
        ),
        "{out}"
    );
    assert!(
        out.contains("runbooks/bad-cron.yaml:6: cron: this schedule never fires"),
        "{out}"
    );
    assert!(
        out.contains(
            "runbooks/bad-cron.yaml:7: catch_up: \"sometimes\" should be one of one, skip"
        ),
        "{out}"
    );

    // A good schedule validates.
    let good = runbook("nightly", NIGHTLY);
    let dir = solution(tmp.path(), "good", SOLUTION, &[("nightly", &good)]);
    let (code, out) = validate(&dir, &[]);
    assert_eq!(code, Some(0), "{out}");
}
