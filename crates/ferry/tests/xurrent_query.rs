//! The `xurrent.query` action through the real binary (`ferry run`, `ferry validate`) against a
//! real `ferry emulator` process: per-record iteration over thousands of records (one branch run
//! per record, pages fetched with the cursor), a mutation per record, per-page mode, a root field
//! that is not a connection (`me`), every root connection of the schema queried with a filter,
//! a 429 that reschedules the step and then succeeds, GraphQL errors that fail the step, and
//! `ferry validate` naming an unknown object, filter field or enum value with `file:line`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// A solution with one outbound xurrent connection `x` to `base` and one runbook `r` whose
/// steps are `steps` (YAML, indented as list items under `steps:`).
fn query_solution(root: &Path, base: &str, steps: &str) -> PathBuf {
    let yaml = format!(
        "name: xq\nconnections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: wdc\n        personal_access_token: {token}\n      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {base}/token\n        rest_endpoint: {base}/v1\n",
        token = ferry_emulator::DEFAULT_TOKEN
    );
    let runbook = format!(
        "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ {{ id: source, type: string }} ]\nsteps:\n{steps}"
    );
    solution(root, "xq", &yaml, &[("r", &runbook)])
}

fn run(dir: &Path, event: &Value) -> (i32, Value, String) {
    run_json(dir, "r", event)
}

/// Seed `n` people with `source: <source>` and names `<source> person <i>` (zero-padded).
fn seed_people(base: &str, source: &str, n: usize) {
    let people: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "name": format!("{source} person {i:05}"),
                "primaryEmail": format!("p{i}@{source}.example"),
                "source": source,
                "sourceID": format!("{i}"),
            })
        })
        .collect();
    for chunk in people.chunks(5_000) {
        let answer = http(
            reqwest::Method::POST,
            &format!("{base}/_emulator/seed"),
            &json!({"records": {"Person": chunk}}),
        );
        assert_eq!(answer["created"], chunk.len(), "seeding failed: {answer}");
    }
}

/// One HTTP call with a JSON body to the emulator; the JSON answer.
fn http(method: reqwest::Method, url: &str, body: &Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .request(method, url)
            .bearer_auth(ferry_emulator::DEFAULT_TOKEN)
            .header("x-xurrent-account", "wdc")
            .json(body)
            .send()
            .await
            .expect("emulator call")
            .json()
            .await
            .expect("a JSON answer")
    })
}

fn graphql(base: &str, query: &str) -> Value {
    http(
        reqwest::Method::POST,
        &format!("{base}/graphql"),
        &json!({ "query": query }),
    )
}

fn logs_of(step: &Value) -> Vec<String> {
    step["logs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn per_record_mode_runs_the_branch_once_per_record_over_thousands_of_records() {
    let emu = start_emulator_with(&["--no-rate-limits"], None);
    let n = 2_345;
    seed_people(&emu.base, "bulk", n);
    seed_people(&emu.base, "other", 7);
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(
        tmp.path(),
        &emu.base,
        "  - id: q\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      filter:\n        source: { values: [\"{{ trigger.body.source }}\"] }\n      order: [ { field: name, direction: asc } ]\n    each:\n      - id: each\n        action: debug.log_message\n        input: { message: \"{{ item.name }}|{{ item.primaryEmail }}|{{ steps.q.sourceID }}\" }\n  - id: after\n    action: debug.log_message\n    input: { message: done }\n",
    );
    let (code, job, err) = run(&dir, &json!({"source": "bulk"}));
    assert_eq!(code, 0, "{err}\n{}", job["error"]);
    assert_eq!(job["status"], "finished");
    let each = steps(&job, "each");
    assert_eq!(each.len(), n, "one branch run per record");
    let messages: Vec<String> = each.iter().flat_map(|s| logs_of(s)).collect();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(
            m,
            &format!("bulk person {i:05}|p{i}@bulk.example|{i}"),
            "record {i} in order, as the current item"
        );
    }
    // One invocation per page of 100, each logging its page.
    let q = steps(&job, "q");
    assert_eq!(q.len(), n.div_ceil(100), "{:#}", q[0]);
    assert!(
        logs_of(q[0])[0].starts_with("Page 1 of 'people': 100 records (fetched 100 of 2345)"),
        "{:?}",
        logs_of(q[0])
    );
    let last = logs_of(q[q.len() - 1]);
    assert!(
        last[0].contains("45 records (fetched 2345 of 2345)"),
        "{last:?}"
    );
    // Pages after the first were requested while the previous page's records ran.
    assert!(
        !logs_of(q[0])[0].contains("(requested ahead)"),
        "{:?}",
        logs_of(q[0])
    );
    assert!(last[0].ends_with("(requested ahead)"), "{last:?}");
    assert_eq!(step_order(&job).last().map(String::as_str), Some("after"));
}

#[test]
fn a_mutation_per_record_and_max_results() {
    let emu = start_emulator_with(&["--no-rate-limits"], None);
    seed_people(&emu.base, "upd", 30);
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(
        tmp.path(),
        &emu.base,
        "  - id: q\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      filter: { source: { values: [upd] } }\n      order: [ { field: name } ]\n      page_size: 10\n      max_results: 25\n    each:\n      - id: update\n        action: xurrent.mutation\n        connection: x\n        input:\n          mutation: personUpdate\n          input: { id: \"{{ item.id }}\", jobTitle: \"Checked {{ item.sourceID }}\" }\n",
    );
    let (code, job, err) = run(&dir, &json!({}));
    assert_eq!(code, 0, "{err}\n{}", job["error"]);
    assert_eq!(steps(&job, "update").len(), 25);
    // Pages of 10, 10 and 5 (`first` shrinks to what is left of max_results).
    assert_eq!(steps(&job, "q").len(), 3);
    let found = graphql(
        &emu.base,
        "{ people(first: 100, filter: {source: {values: [\"upd\"]}}, order: [{field: name}]) { nodes { sourceID jobTitle } } }",
    );
    let nodes = found["data"]["people"]["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 30, "{found}");
    for (i, p) in nodes.iter().enumerate() {
        if i < 25 {
            assert_eq!(p["jobTitle"], format!("Checked {i}"), "{p}");
        } else {
            assert!(p["jobTitle"].is_null(), "{p}");
        }
    }
}

#[test]
fn page_mode_emits_one_output_per_page_with_metadata() {
    let emu = start_emulator_with(&["--no-rate-limits"], None);
    seed_people(&emu.base, "pages", 250);
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(
        tmp.path(),
        &emu.base,
        "  - id: q\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      mode: page\n      include_fields: { organization: true }\n      filter: { source: { values: [pages] } }\n    branches:\n      query_result:\n        - id: each\n          action: debug.log_message\n          input: { message: \"{{ item.nodes | length }} of {{ item.total_count }}, more: {{ item.has_next_page }}\" }\n",
    );
    let (code, job, err) = run(&dir, &json!({}));
    assert_eq!(code, 0, "{err}\n{}", job["error"]);
    let messages: Vec<String> = steps(&job, "each")
        .iter()
        .flat_map(|s| logs_of(s))
        .collect();
    assert_eq!(
        messages,
        [
            "100 of 250, more: true",
            "100 of 250, more: true",
            "50 of 250, more: false"
        ]
    );
    let q = steps(&job, "q");
    assert_eq!(q.len(), 3);
    let out = &q[0]["outputs"][0]["output"];
    assert_eq!(q[0]["outputs"][0]["branch"], "query_result");
    assert_eq!(out["total_count"], 250, "{out:#}");
    assert!(
        out["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("Root=1-")),
        "{out:#}"
    );
    assert!(out["ratelimit"]["limit"].is_i64(), "{out:#}");
    assert!(out["costlimit"]["cost"].is_i64(), "{out:#}");
    let node = &out["nodes"][0];
    assert!(node["name"].as_str().is_some(), "{node}");
    assert!(
        node.as_object().unwrap().contains_key("organization"),
        "{node}"
    );
}

#[test]
fn a_root_field_that_is_not_a_connection_is_one_record() {
    let emu = start_emulator_with(&[], None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(
        tmp.path(),
        &emu.base,
        "  - id: me\n    action: xurrent.query\n    connection: x\n    input: { object: me }\n    each:\n      - { id: each, action: debug.log_message, input: { message: \"I am {{ item.name }}\" } }\n  - id: page\n    action: xurrent.query\n    connection: x\n    input: { object: me, mode: page }\n",
    );
    let (code, job, err) = run(&dir, &json!({}));
    assert_eq!(code, 0, "{err}\n{}", job["error"]);
    let each = steps(&job, "each");
    assert_eq!(each.len(), 1);
    assert_eq!(logs_of(each[0]), ["I am Emulator Admin"]);
    let out = &steps(&job, "page")[0]["outputs"][0]["output"];
    assert_eq!(out["name"], "Emulator Admin", "{out:#}");
    assert!(out["request_id"].is_string(), "{out:#}");
    assert!(out.get("nodes").is_none(), "{out:#}");
}

/// A filter value for a filter input type: the first `XxxFilter`-typed field (`{values, negate}`)
/// as "not equal to a value nothing has", else `query: ""`-free fallbacks, else none.
fn some_filter(schema: &ferry_xurrent::Schema, filter_type: &str) -> Option<Value> {
    let t = schema.get(filter_type)?;
    let mut fields: Vec<&ferry_xurrent::InputValue> = t.input_fields.iter().collect();
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    for f in &fields {
        let u = schema.unwrap(&f.ty);
        if u.kind == ferry_xurrent::Kind::InputObject && !u.list {
            let sub = schema.get(u.name)?;
            let values = sub.input_fields.iter().find(|x| x.name == "values");
            let scalar_values = values.is_some_and(|v| {
                let vu = schema.unwrap(&v.ty);
                vu.kind == ferry_xurrent::Kind::Scalar && matches!(vu.name, "String" | "ID")
            });
            let has_negate = sub.input_fields.iter().any(|x| x.name == "negate");
            if scalar_values && has_negate {
                return Some(
                    json!({ f.name.clone(): {"values": ["no-such-value"], "negate": true} }),
                );
            }
        }
    }
    None
}

#[test]
fn every_root_connection_can_be_queried_with_its_filter() {
    let schema = ferry_xurrent::Schema::embedded().unwrap();
    let roots: Vec<ferry_xurrent::RootObject> = schema
        .root_objects()
        .into_iter()
        .filter(|r| r.is_connection())
        .collect();
    assert!(roots.len() >= 70, "{} root connections", roots.len());
    let mut steps_yaml = String::new();
    let mut expected = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        let filter = r
            .filter
            .as_ref()
            .and_then(|f| some_filter(&schema, &f.type_name));
        let mut input = json!({"object": r.name, "mode": "page", "page_size": 2});
        if let Some(f) = &filter {
            input["filter"] = f.clone();
        }
        steps_yaml.push_str(&format!(
            "  - id: q{i}\n    action: xurrent.query\n    connection: x\n    input: {input}\n"
        ));
        expected.push((format!("q{i}"), r.name.clone(), filter.is_some()));
    }
    let with_filter = expected.iter().filter(|e| e.2).count();
    assert!(
        with_filter * 10 >= roots.len() * 9,
        "only {with_filter} of {} root connections got a filter",
        roots.len()
    );
    let emu = start_emulator_with(&["--no-rate-limits"], None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(tmp.path(), &emu.base, &steps_yaml);
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, Some(0), "{text}");
    let (code, job, err) = run(&dir, &json!({}));
    assert_eq!(code, 0, "{err}\n{}", job["error"]);
    for (id, object, _) in &expected {
        let s = steps(&job, id);
        assert_eq!(s.len(), 1, "{object}: {s:?}");
        let out = &s[0]["outputs"][0]["output"];
        assert!(out["total_count"].is_i64(), "{object}: {out:#}");
        assert!(out["nodes"].is_array(), "{object}: {out:#}");
    }
    // The people filter kept everyone (the administrator exists).
    let people = expected.iter().find(|e| e.1 == "people").unwrap();
    let out = &steps(&job, &people.0)[0]["outputs"][0]["output"];
    assert!(out["total_count"].as_i64().unwrap() >= 1, "{out:#}");
}

#[test]
fn a_429_reschedules_the_step_and_the_job_then_finishes() {
    let emu = start_emulator_with(&[], None);
    seed_people(&emu.base, "limited", 6);
    // Two GraphQL requests per 2 s: the third page is refused with 429 and Retry-After.
    let limits = http(
        reqwest::Method::PUT,
        &format!("{}/_emulator/rate_limits", emu.base),
        &json!({"burst_requests": 2, "burst_window_secs": 2}),
    );
    assert_eq!(limits["burst_requests"], 2, "{limits}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(
        tmp.path(),
        &emu.base,
        "  - id: q\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      filter: { source: { values: [limited] } }\n      page_size: 1\n    each:\n      - { id: each, action: debug.log_message, input: { message: \"{{ item.name }}\" } }\n",
    );
    let (code, job, err) = run(&dir, &json!({}));
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "finished");
    assert_eq!(steps(&job, "each").len(), 6);
    let rescheduled: Vec<String> = steps(&job, "q")
        .iter()
        .flat_map(|s| {
            let mut v = logs_of(s);
            v.push(s["error"].as_str().unwrap_or_default().to_string());
            v
        })
        .filter(|m| m.contains("rate limit"))
        .collect();
    assert!(
        !rescheduled.is_empty(),
        "no step was rescheduled on a 429: {job:#}"
    );
    assert!(rescheduled[0].contains("retry after: "), "{rescheduled:?}");
}

#[test]
fn the_connections_own_schema_is_used_not_the_shipped_one() {
    // The emulator serves a schema without `Person.jobTitle` (which the schema that ships with
    // Ferry has). Ferry introspects the connection, so it does not select the field and the
    // query succeeds; records have no `jobTitle`. (GraphQL `errors` failing a step: the
    // transport's unit tests and the mutation's e2e tests.)
    let sdl = ferry_xurrent_schema::SDL;
    let start = sdl.find("\ntype Person implements").expect("type Person");
    let at = start + sdl[start..].find("\n  jobTitle:").expect("Person.jobTitle");
    let end = at + 1 + sdl[at + 1..].find('\n').unwrap();
    let drifted = format!("{}{}", &sdl[..at], &sdl[end..]);
    let tmp = tempfile::tempdir().unwrap();
    let schema_file = tmp.path().join("drifted.graphql");
    std::fs::write(&schema_file, drifted).unwrap();
    let emu = start_emulator_with(&["--schema", schema_file.to_str().unwrap()], None);
    let dir = query_solution(
        tmp.path(),
        &emu.base,
        "  - id: q\n    action: xurrent.query\n    connection: x\n    input: { object: people }\n    each:\n      - { id: each, action: debug.log_message, input: { message: x } }\n",
    );
    let (code, job, err) = run(&dir, &json!({}));
    assert_eq!(code, 0, "{err}\n{job:#}");
    assert_eq!(job["status"], "finished", "{job:#}");
    let records = steps(&job, "q");
    assert!(!records.is_empty(), "{job:#}");
    for r in records {
        let out = r["outputs"].to_string();
        assert!(out.contains("\"name\""), "{out}");
        assert!(!out.contains("jobTitle"), "{out}");
    }
}

#[test]
fn validate_names_unknown_objects_filter_fields_and_enum_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = query_solution(
        tmp.path(),
        "http://127.0.0.1:9",
        "  - id: a\n    action: xurrent.query\n    connection: x\n    input: { object: peple }\n  - id: b\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      filter: { nosuch: true }\n  - id: c\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      view: everything\n      order: [ { field: nme } ]\n",
    );
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("unknown query object 'peple' (did you mean 'people'?)"),
        "{text}"
    );
    for needle in ["nosuch", "everything", "nme"] {
        let line = text
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not reported:\n{text}"));
        assert!(line.contains("r.yaml:"), "{line}");
    }

    let good = query_solution(
        &tmp.path().join("good"),
        "http://127.0.0.1:9",
        "  - id: a\n    action: xurrent.query\n    connection: x\n    input:\n      object: people\n      mode: page\n      view: all\n      filter: { disabled: false, name: { values: [x] } }\n      order: [ { field: name, direction: desc } ]\n      include_fields: { organization: true }\n    branches:\n      query_result:\n        - { id: l, action: debug.log_message, input: { message: \"{{ item.total_count }}\" } }\n",
    );
    let (code, text) = validate(&good, &[]);
    assert_eq!(code, Some(0), "{text}");
}
