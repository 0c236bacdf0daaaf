//! The diagram of a runbook, checked as XML: its structure (a group per step, the labels, the
//! edges between steps), not pixel positions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ferry_core::model::{Runbook, Span, StepDef, TriggerDef};
use ferry_diagram::{render_svg, render_svg_with, Labeller, Options};
use indexmap::IndexMap;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Load one runbook (its `steps:` YAML) through the real loader, as a solution in a temp dir.
fn load(steps: &str) -> Runbook {
    load_named("r", steps)
}

fn load_named(name: &str, steps: &str) -> Runbook {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("solution.yaml"), "name: s\n").unwrap();
    std::fs::create_dir(tmp.path().join("runbooks")).unwrap();
    let yaml = format!(
        "name: {name}\ntrigger:\n  connector: json_endpoint\n  type: endpoint\nsteps:\n{steps}"
    );
    std::fs::write(
        tmp.path().join("runbooks").join(format!("{name}.yaml")),
        yaml,
    )
    .unwrap();
    let mut solution = ferry_core::loader::load_solution_with_env(tmp.path(), &|_| None)
        .unwrap_or_else(|d| panic!("{d:?}"));
    solution.runbooks.swap_remove(name).unwrap()
}

/// What the tests read back from a diagram.
struct Parsed {
    /// `data-step` → the texts of its group (id, action, detail) and its tooltip.
    steps: BTreeMap<String, (Vec<String>, String)>,
    /// Groups with `data-step`, in document order.
    step_order: Vec<String>,
    /// `(from, to, class)` of every edge, sorted.
    edges: Vec<(String, String, String)>,
    /// Lane labels with their class.
    lanes: Vec<(String, String)>,
    /// Classes of the frames.
    frames: Vec<String>,
    /// Classes of the step groups by id.
    classes: BTreeMap<String, String>,
    has_end: bool,
    title: String,
    desc: String,
}

fn parse(svg: &str) -> Parsed {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("invalid XML: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("role"), Some("img"));
    let text_of = |n: roxmltree::Node| -> String {
        n.descendants()
            .filter(|d| d.is_text())
            .map(|d| d.text().unwrap_or_default())
            .collect()
    };
    let child = |n: roxmltree::Node<'_, '_>, tag: &str| {
        n.children()
            .find(|c| c.tag_name().name() == tag)
            .map(text_of)
    };
    let mut p = Parsed {
        steps: BTreeMap::new(),
        step_order: Vec::new(),
        edges: Vec::new(),
        lanes: Vec::new(),
        frames: Vec::new(),
        classes: BTreeMap::new(),
        has_end: false,
        title: child(root, "title").expect("a <title>"),
        desc: child(root, "desc").expect("a <desc>"),
    };
    // aria-labelledby names the title and the description.
    let ids: Vec<&str> = root
        .attribute("aria-labelledby")
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(ids.len(), 2);
    for id in ids {
        let target = doc
            .descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap();
        assert!(["title", "desc"].contains(&target.tag_name().name()));
    }
    for n in doc.descendants().filter(|n| n.is_element()) {
        let class = n.attribute("class").unwrap_or_default();
        if let Some(step) = n.attribute("data-step") {
            assert_eq!(n.tag_name().name(), "g");
            let tooltip = child(n, "title").expect("each step has a <title>");
            let texts = n
                .children()
                .filter(|c| c.tag_name().name() == "text")
                .map(text_of)
                .collect();
            assert!(
                p.steps.insert(step.to_string(), (texts, tooltip)).is_none(),
                "step {step} drawn twice"
            );
            p.step_order.push(step.to_string());
            p.classes.insert(step.to_string(), class.to_string());
        }
        if n.attribute("data-node") == Some("end") {
            p.has_end = true;
        }
        if n.tag_name().name() == "path" && class.split(' ').any(|c| c == "edge") {
            let rest: Vec<&str> = class.split(' ').filter(|c| *c != "edge").collect();
            p.edges.push((
                n.attribute("data-from").unwrap().to_string(),
                n.attribute("data-to").unwrap().to_string(),
                rest.join(" "),
            ));
        }
        if n.tag_name().name() == "text" && class.starts_with("lane") {
            p.lanes.push((text_of(n), class.to_string()));
        }
        if n.tag_name().name() == "rect" && class.starts_with("lane") {
            p.frames.push(class.to_string());
        }
    }
    p.edges.sort();
    p
}

fn edges(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    v.sort();
    v
}

/// Every step of the runbook is drawn once, in the canonical order, with its id and action.
fn assert_all_steps(runbook: &Runbook, p: &Parsed) {
    let mut walk: Vec<String> = runbook.walk().iter().map(|(s, _)| s.id.clone()).collect();
    let mut drawn = p.step_order.clone();
    walk.sort();
    drawn.sort();
    assert_eq!(drawn, walk, "one group per step");
    for (step, _) in runbook.walk() {
        let (texts, tooltip) = &p.steps[&step.id];
        assert_eq!(texts[0], step.id, "first line: the step id");
        assert_eq!(texts[1], step.action, "second line: the action type");
        assert!(tooltip.starts_with(&format!("{} — {}", step.id, step.action)));
        assert!(p.desc.contains(&format!("{} ({})", step.id, step.action)));
    }
}

fn step(id: &str, action: &str, input: Value) -> StepDef {
    StepDef {
        id: id.to_string(),
        action: action.to_string(),
        description: None,
        connection: None,
        input,
        each: Vec::new(),
        branches: IndexMap::new(),
        span: Span::new("r.yaml", 1),
        input_spans: BTreeMap::new(),
    }
}

fn runbook(name: &str, steps: Vec<StepDef>) -> Runbook {
    Runbook {
        name: name.to_string(),
        description: None,
        file: PathBuf::from("r.yaml"),
        concurrency: None,
        variables: Vec::new(),
        trigger: TriggerDef {
            connector: "json_endpoint".to_string(),
            kind: "endpoint".to_string(),
            connection: None,
            description: None,
            config: json!({}),
            span: Span::new("r.yaml", 1),
            config_spans: BTreeMap::new(),
        },
        steps,
        span: Span::new("r.yaml", 1),
    }
}

// ---------------------------------------------------------------------------------------------
// Structure, construct by construct

#[test]
fn a_chain_of_steps_runs_from_the_trigger_to_the_end() {
    let rb = load(
        "  - { id: a, action: debug.log_message, input: { message: x } }\n  - { id: b, action: debug.log_message }\n  - { id: c, action: http.send_request, input: { method: GET, path: /pets } }\n",
    );
    let svg = render_svg(&rb);
    let p = parse(&svg);
    assert_all_steps(&rb, &p);
    assert_eq!(p.steps.len(), 3);
    assert!(p.has_end);
    assert_eq!(
        p.edges,
        edges(&[
            ("trigger", "a", ""),
            ("a", "b", ""),
            ("b", "c", ""),
            ("c", "end", "")
        ])
    );
    assert_eq!(p.steps["c"].0[2], "GET /pets");
    assert_eq!(p.title, "Runbook r");
    assert!(p
        .desc
        .starts_with("Trigger json_endpoint.endpoint. 3 steps: a (debug.log_message); b"));
    // Rendering is deterministic.
    assert_eq!(svg, render_svg(&rb));
}

#[test]
fn if_then_else_draws_labelled_branches_that_join_again() {
    let rb = load(
        r#"  - id: check
    action: flow.if_then_else
    input: { condition: "{{ trigger.n > 3 and 'a&b' < 'b' }}" }
    branches:
      true: [ { id: big, action: debug.log_message } ]
      false: [ { id: small, action: debug.log_message } ]
  - id: only-true
    action: flow.if_then_else
    input: { condition: "{{ true }}" }
    branches:
      true: [ { id: yes, action: debug.log_message } ]
  - { id: after, action: debug.log_message }
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    // The condition is the third line, escaped in the SVG and read back whole.
    assert_eq!(p.steps["check"].0[2], "if trigger.n > 3 and 'a&b' < 'b'");
    let labels: Vec<&str> = p.lanes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["true", "false", "true", "false"]);
    assert_eq!(
        p.edges,
        edges(&[
            ("trigger", "check", ""),
            ("check", "big", ""),
            ("check", "small", ""),
            ("big", "check:join", ""),
            ("small", "check:join", ""),
            ("check:join", "only-true", ""),
            ("only-true", "yes", ""),
            ("yes", "only-true:join", ""),
            // The missing `false` branch is drawn as a pass-through.
            ("only-true", "only-true:join", ""),
            ("only-true:join", "after", ""),
            ("after", "end", ""),
        ])
    );
}

#[test]
fn case_draws_one_lane_per_value_and_else() {
    let rb = load(
        r#"  - id: pick
    action: flow.case
    input: { expression: "{{ trigger.body.color }}", matches: [red, green] }
    branches:
      red: [ { id: is_red, action: debug.log_message } ]
      green: [ { id: is_green, action: debug.log_message } ]
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    assert_eq!(p.steps["pick"].0[2], "case trigger.body.color");
    let labels: Vec<&str> = p.lanes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["= red", "= green", "else"]);
    assert_eq!(p.edges.len(), 1 + 2 + 2 + 1 + 1, "{:?}", p.edges);
    assert!(p
        .edges
        .contains(&("pick".into(), "pick:join".into(), "".into())));
}

#[test]
fn loops_are_frames_with_a_loop_back_edge() {
    let rb = load(
        r#"  - id: each-item
    action: flow.loop
    input: { items: "{{ trigger.body.items }}" }
    each:
      - { id: log-item, action: debug.log_message }
      - { id: count-item, action: runbook_variables.assign, input: { id: processed, value: 1 } }
  - id: chunks
    action: flow.batch
    input: { items: [1, 2, 3], batch_size: 2 }
    each:
      - { id: log-batch, action: debug.log_message }
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    assert_eq!(p.frames, ["lane loop", "lane loop"]);
    assert_eq!(
        p.lanes,
        [
            ("for each item".to_string(), "lane loop".to_string()),
            ("for each batch of 2".to_string(), "lane loop".to_string())
        ]
    );
    assert_eq!(p.steps["each-item"].0[2], "items: trigger.body.items");
    assert_eq!(p.steps["count-item"].0[2], "vars.processed");
    assert_eq!(
        p.edges,
        edges(&[
            ("trigger", "each-item", ""),
            ("each-item", "log-item", "loop"),
            ("log-item", "count-item", ""),
            ("count-item", "each-item:join", "loop"),
            ("count-item", "log-item", "loop-back"),
            ("each-item:join", "chunks", ""),
            ("chunks", "log-batch", "loop"),
            ("log-batch", "chunks:join", "loop"),
            ("log-batch", "log-batch", "loop-back"),
            ("chunks:join", "end", ""),
        ])
    );
}

#[test]
fn a_query_runs_its_branch_per_record_or_per_page() {
    let rb = load(
        r#"  - id: find-request
    action: xurrent.query
    input: { object: requests, max_results: 1 }
    each:
      - { id: add-note, action: xurrent.mutation, input: { mutation: noteCreate } }
  - id: pages
    action: xurrent.query
    input: { object: people, mode: page }
    each:
      - { id: log-page, action: debug.log_message }
  - id: both
    action: xurrent.query
    input: { object: teams }
    branches:
      record: [ { id: per-record, action: debug.log_message } ]
  - id: generated
    action: debug.generate_records
    input: { count: 3 }
    each: [ { id: per-generated, action: debug.log_message } ]
  - id: other
    action: acme.nested_thing
    each: [ { id: per-output, action: debug.log_message } ]
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    let labels: Vec<&str> = p.lanes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "for each record",
            "for each page",
            "for each record",
            "for each record",
            "for each output"
        ]
    );
    assert_eq!(p.frames.len(), 5);
    assert!(p.frames.iter().all(|f| f == "lane loop"));
    assert_eq!(p.steps["find-request"].0[2], "requests");
    assert_eq!(p.steps["add-note"].0[2], "noteCreate");
    assert_eq!(p.edges.iter().filter(|e| e.2 == "loop-back").count(), 5);
}

#[test]
fn try_catch_has_a_try_lane_a_catch_lane_and_stops() {
    let rb = load(
        r#"  - id: guard
    action: flow.try_catch
    branches:
      try:
        - { id: count, action: runbook_variables.assign, input: { id: attempts, value: 1 } }
        - id: maybe
          action: flow.if_then_else
          input: { condition: "{{ vars.attempts < 3 }}" }
          branches:
            true: [ { id: boom, action: flow.fail, input: { message: "attempt failed" } } ]
      catch:
        - { id: log_error, action: debug.log_message }
        - { id: again, action: flow.retry }
  - { id: after, action: debug.log_message }
  - { id: done, action: flow.finish, input: { message: "all good" } }
  - { id: unreachable, action: debug.log_message }
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    assert_eq!(p.frames, ["lane try", "lane catch"]);
    let labels: Vec<&str> = p.lanes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["try", "true", "false", "catch (on error)"]);
    assert!(p.classes["boom"].contains("stop fail"));
    assert!(p.classes["again"].contains("stop retry"));
    assert!(p.classes["done"].contains("stop finish"));
    assert!(p.classes["log_error"].contains("action"));
    assert!(p.classes["guard"].contains("control"));
    assert_eq!(p.steps["again"].0[2], "try 'guard' again");
    assert_eq!(p.steps["boom"].0[2], "attempt failed");
    assert_eq!(
        p.edges,
        edges(&[
            ("trigger", "guard", ""),
            ("guard", "count", "try"),
            ("guard", "log_error", "catch"),
            ("guard:try", "guard:catch", "on-error"),
            ("count", "maybe", ""),
            ("maybe", "boom", ""),
            ("maybe", "maybe:join", ""),
            ("maybe:join", "guard:join", "try"),
            ("log_error", "again", ""),
            ("guard:join", "after", ""),
            ("after", "done", ""),
            // No edge leaves a stop: `unreachable` has no way in, and the job has no End.
        ])
    );
    assert!(!p.has_end);
}

#[test]
fn a_chain_that_always_stops_draws_no_end() {
    let rb = load(
        r#"  - id: guard
    action: flow.try_catch
    branches:
      catch: [ { id: bad, action: flow.fail, input: { message: "in catch" } } ]
      try: [ { id: boom, action: flow.fail, input: { message: "first" } } ]
  - { id: never, action: debug.log_message }
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    // try is drawn left of catch whatever the file order.
    assert_eq!(p.frames, ["lane try", "lane catch"]);
    assert!(!p.has_end);
    assert_eq!(
        p.edges,
        edges(&[
            ("trigger", "guard", ""),
            ("guard", "boom", "try"),
            ("guard", "bad", "catch"),
            ("guard:try", "guard:catch", "on-error"),
        ])
    );
}

#[test]
fn sections_and_waits_are_groups_run_once() {
    let rb = load(
        r#"  - id: group
    action: flow.section
    each:
      - id: every
        action: flow.loop
        input: { items: [a, b] }
        each: [ { id: log_item, action: debug.log_message } ]
  - id: pause
    action: flow.wait
    input: { seconds_to_wait: 5 }
    each: [ { id: after_wait, action: debug.log_message } ]
  - id: pause2
    action: flow.wait
    input: { seconds_to_wait: 1 }
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    assert_eq!(p.frames, ["lane group", "lane loop", "lane group"]);
    let labels: Vec<&str> = p.lanes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["section", "for each item", "after the wait"]);
    assert_eq!(p.steps["pause"].0[2], "wait 5 s");
    assert_eq!(p.edges.iter().filter(|e| e.2 == "loop-back").count(), 1);
    assert!(p
        .edges
        .contains(&("pause2".into(), "end".into(), "".into())));
}

#[test]
fn nested_actions_with_named_branches_show_each_branch() {
    let rb = load(
        r#"  - id: custom
    action: acme.router
    branches:
      left: [ { id: l, action: debug.log_message } ]
      right: [ { id: r1, action: debug.log_message }, { id: r2, action: flow.fail } ]
"#,
    );
    let p = parse(&render_svg(&rb));
    assert_all_steps(&rb, &p);
    let labels: Vec<&str> = p.lanes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["left", "right"]);
    assert!(p.frames.is_empty());
    assert_eq!(
        p.edges,
        edges(&[
            ("trigger", "custom", ""),
            ("custom", "l", ""),
            ("custom", "r1", ""),
            ("l", "custom:join", ""),
            ("r1", "r2", ""),
            // Not every output is known: the step can still go on.
            ("custom:join", "end", ""),
        ])
    );
    assert!(p.has_end);
}

// ---------------------------------------------------------------------------------------------
// Every construct in one runbook, and the examples

#[test]
fn every_construct_in_one_runbook() {
    let rb = load(
        r#"  - { id: start, action: debug.log_message }
  - id: check
    action: flow.if_then_else
    input: { condition: "{{ trigger.body.n > 1 }}" }
    branches:
      true:
        - id: pick
          action: flow.case
          input: { expression: "{{ trigger.body.c }}", matches: [a] }
          branches:
            a: [ { id: in-a, action: debug.log_message } ]
            else: [ { id: stop-else, action: flow.finish } ]
      false:
        - id: guard
          action: flow.try_catch
          branches:
            try:
              - id: q
                action: xurrent.query
                input: { object: requests }
                each:
                  - id: chunks
                    action: flow.batch
                    input: { items: "{{ item.tags }}", batch_size: 3 }
                    each: [ { id: per-chunk, action: debug.log_message } ]
            catch:
              - { id: retry, action: flow.retry }
  - id: grp
    action: flow.section
    each:
      - id: w
        action: flow.wait
        input: { seconds_to_wait: 1 }
        each: [ { id: after-w, action: debug.log_message } ]
  - { id: fail, action: flow.fail }
"#,
    );
    let svg = render_svg(&rb);
    let p = parse(&svg);
    assert_all_steps(&rb, &p);
    assert_eq!(p.steps.len(), 14);
    let mut frames = p.frames.clone();
    frames.sort();
    assert_eq!(
        frames,
        [
            "lane catch",
            "lane group",
            "lane group",
            "lane loop",
            "lane loop",
            "lane try"
        ]
    );
    for label in [
        "true",
        "false",
        "= a",
        "else",
        "try",
        "catch (on error)",
        "for each record",
        "for each batch of 3",
        "section",
        "after the wait",
    ] {
        assert!(p.lanes.iter().any(|(l, _)| l == label), "lane {label}");
    }
    assert!(p.classes["fail"].contains("stop fail"));
    assert!(p.classes["stop-else"].contains("stop finish"));
    assert!(p.classes["retry"].contains("stop retry"));
    assert!(!p.has_end);
    // Every edge starts and ends at a drawn step, the trigger, the end or a join.
    let ids: BTreeSet<&str> = p.steps.keys().map(String::as_str).collect();
    for (from, to, _) in &p.edges {
        for end in [from, to] {
            let base = end.split(':').next().unwrap();
            assert!(
                ids.contains(base) || ["trigger", "end"].contains(&end.as_str()),
                "edge end {end}"
            );
        }
    }
    std::fs::create_dir_all(artefacts()).unwrap();
    std::fs::write(artefacts().join("every-construct.svg"), &svg).unwrap();
}

/// `target/diagram-artefacts/` (or under `CARGO_TARGET_DIR`).
fn artefacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("diagram-artefacts")
}

#[test]
fn every_example_runbook_renders_and_is_saved_as_an_artefact() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let dir = artefacts();
    std::fs::create_dir_all(&dir).unwrap();
    let mut rendered = 0;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if !path.join("solution.yaml").is_file() {
            continue;
        }
        let solution = ferry_core::loader::load_solution_with_env(&path, &|_| None)
            .unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
        for runbook in solution.runbooks.values() {
            let svg = render_svg(runbook);
            let p = parse(&svg);
            assert_all_steps(runbook, &p);
            std::fs::write(
                dir.join(format!("{}-{}.svg", solution.name, runbook.name)),
                &svg,
            )
            .unwrap();
            names.push(format!("{}/{}", solution.name, runbook.name));
            rendered += 1;
        }
    }
    assert!(rendered >= 5, "{names:?}");
    assert!(names.contains(&"demo/intake".to_string()));
    // The Xurrent example's query is drawn as a loop over records.
    let xurrent =
        ferry_core::loader::load_solution_with_env(&examples.join("xurrent"), &|_| None).unwrap();
    let p = parse(&render_svg(&xurrent.runbooks["on_request"]));
    assert_eq!(
        p.lanes,
        [("for each record".to_string(), "lane loop".to_string())]
    );
    assert_eq!(p.steps["find-request"].0[1], "xurrent.query");
    assert!(p.edges.contains(&(
        "log-note".into(),
        "upload-report".into(),
        "loop-back".into()
    )));
    // The scheduled demo report shows its schedule on the trigger.
    let demo =
        ferry_core::loader::load_solution_with_env(&examples.join("demo"), &|_| None).unwrap();
    let svg = render_svg(&demo.runbooks["report"]);
    assert!(svg.contains("weekly at 08:00"), "{svg}");
}

// ---------------------------------------------------------------------------------------------
// Escaping, ids, accessibility, labeller

#[test]
fn user_strings_are_escaped() {
    let mut s1 = step(
        "<script>alert(1)</script>",
        "debug.log_message & <b>",
        json!({ "message": "x" }),
    );
    s1.description = Some("a \"quoted\" & 'single' <desc>\u{1}\nsecond line".to_string());
    s1.connection = Some("conn&<>".to_string());
    let mut nested = step(
        "if&",
        "flow.if_then_else",
        json!({ "condition": "{{ a < b && c > d }}" }),
    );
    nested
        .branches
        .insert("true".into(), vec![step("t<1>", "x.y", json!({}))]);
    let mut case = step(
        "case",
        "flow.case",
        json!({ "expression": "x", "matches": ["<i>"] }),
    );
    case.branches
        .insert("<i>".into(), vec![step("in-i", "x.y", json!({}))]);
    let mut rb = runbook("evil</title><script>", vec![s1, nested, case]);
    rb.description = Some("Desc & <more>".to_string());
    rb.trigger.connection = Some("in&<x>".to_string());
    let svg = render_svg(&rb);
    assert!(!svg.contains("<script"), "{svg}");
    assert!(!svg.contains("<b>"));
    assert!(!svg.contains("<i>"));
    assert!(!svg.contains('\u{1}'));
    let p = parse(&svg);
    assert_all_steps(&rb, &p);
    assert_eq!(p.title, "Runbook evil</title><script>: Desc & <more>");
    let (texts, tooltip) = &p.steps["<script>alert(1)</script>"];
    assert_eq!(texts[0], "<script>alert(1)</script>");
    assert_eq!(texts[1], "debug.log_message & <b>");
    assert_eq!(texts[2], "via conn&<>");
    assert!(tooltip.contains("a \"quoted\" & 'single' <desc>\u{FFFD}\nsecond line"));
    assert_eq!(p.steps["if&"].0[2], "if a < b && c > d");
    assert!(p.lanes.iter().any(|(l, _)| l == "= <i>"));
    assert!(p.edges.contains(&("if&".into(), "t<1>".into(), "".into())));
    // Ids are made of safe characters only.
    let doc = roxmltree::Document::parse(&svg).unwrap();
    for id in doc.descendants().filter_map(|n| n.attribute("id")) {
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{id}"
        );
    }
}

#[test]
fn ids_are_safe_unique_and_prefixed() {
    let rb = load(
        "  - { id: a, action: debug.log_message }\n  - id: l\n    action: flow.loop\n    each: [ { id: b, action: debug.log_message } ]\n",
    );
    let check = |svg: &str, prefix: &str| {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let ids: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("id"))
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "unique ids: {ids:?}");
        for id in &ids {
            assert!(id.starts_with(&format!("{prefix}-")), "{id}");
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        // Every url(#…) reference points at a defined id.
        for r in svg.split("url(#").skip(1) {
            let id = &r[..r.find(')').unwrap()];
            assert!(unique.contains(id), "{id}");
        }
        // Step groups are numbered in canonical order.
        let steps: Vec<(&str, &str)> = doc
            .descendants()
            .filter_map(|n| Some((n.attribute("data-step")?, n.attribute("id")?)))
            .collect();
        assert_eq!(
            steps,
            [
                ("a", format!("{prefix}-n0").as_str()),
                ("l", format!("{prefix}-n1").as_str()),
                ("b", format!("{prefix}-n2").as_str())
            ]
        );
    };
    check(&render_svg(&rb), "fd-r");
    let svg = render_svg_with(
        &rb,
        &Options {
            id_prefix: Some("job 42/\"x\""),
            labeller: None,
        },
    );
    check(&svg, "job_42__x_");
}

struct JobPage;

impl Labeller for JobPage {
    fn action_title(&self, action: &str) -> Option<String> {
        (action == "debug.log_message").then(|| "Log a <message>".to_string())
    }
    fn step_href(&self, step_id: &str) -> Option<String> {
        Some(match step_id {
            "a" => "#step-a&x=1".to_string(),
            "b" => "javascript:alert(1)".to_string(),
            _ => " JavaScript:alert(2)".to_string(),
        })
    }
    fn step_class(&self, step_id: &str) -> Option<String> {
        Some(if step_id == "a" {
            "failed\"><script>".to_string()
        } else {
            "finished".to_string()
        })
    }
}

#[test]
fn a_labeller_adds_titles_links_and_classes_safely() {
    let rb = load(
        "  - { id: a, action: debug.log_message }\n  - { id: b, action: http.send_request }\n  - { id: c, action: debug.log_message }\n",
    );
    let svg = render_svg_with(
        &rb,
        &Options {
            id_prefix: None,
            labeller: Some(&JobPage),
        },
    );
    assert!(!svg.contains("javascript:"), "{svg}");
    assert!(!svg.contains("JavaScript:"));
    assert!(!svg.contains("<script"));
    let p = parse(&svg);
    assert_all_steps(&rb, &p);
    assert!(p.steps["a"].1.contains("\nLog a <message>"));
    assert!(!p.steps["b"].1.contains("Log a"));
    assert_eq!(p.classes["a"], "node action failed___script_");
    assert_eq!(p.classes["b"], "node action finished");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let links: Vec<(&str, &str)> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "a")
        .map(|n| {
            let g = n.first_element_child().unwrap();
            (
                n.attribute("href").unwrap(),
                g.attribute("data-step").unwrap(),
            )
        })
        .collect();
    assert_eq!(links, [("#step-a&x=1", "a")]);

    // A closure gives action titles.
    let titles = |action: &str| Some(format!("title of {action}"));
    let svg = render_svg_with(
        &rb,
        &Options {
            id_prefix: None,
            labeller: Some(&titles),
        },
    );
    let p = parse(&svg);
    assert!(p.steps["b"].1.contains("title of http.send_request"));
}

#[test]
fn a_runbook_without_steps_still_draws() {
    let p = parse(&render_svg(&runbook("empty", Vec::new())));
    assert!(p.steps.is_empty());
    assert!(p.has_end);
    assert_eq!(p.edges, edges(&[("trigger", "end", "")]));
    assert!(p.desc.contains("0 steps"));
}

#[test]
fn long_labels_are_cut_and_whole_in_the_tooltip() {
    let long = "x".repeat(60);
    let rb = load(&format!(
        "  - {{ id: {long}, action: debug.log_message, input: {{ message: m }} }}\n  - id: w\n    action: flow.if_then_else\n    input: {{ condition: \"{{{{ trigger.body.a_really_long_field_name == 'some long value here' }}}}\" }}\n"
    ));
    let p = parse(&render_svg(&rb));
    let (texts, tooltip) = &p.steps[&long];
    assert!(texts[0].ends_with('…'));
    assert!(texts[0].chars().count() <= 36);
    assert!(tooltip.contains(&long));
    let (texts, tooltip) = &p.steps["w"];
    assert!(texts[2].ends_with('…'), "{texts:?}");
    assert!(tooltip.contains("'some long value here'"));
}

// ---------------------------------------------------------------------------------------------
// Size

/// A runbook of `n` steps mixing every construct: a chain, if-then-else, loops, try-catch.
fn big_runbook(n: usize) -> Runbook {
    let mut steps = Vec::new();
    let mut count = 0;
    let mut i = 0;
    while count < n {
        match i % 4 {
            0 => {
                steps.push(step(
                    &format!("log-{i}"),
                    "debug.log_message",
                    json!({"message": "m"}),
                ));
                count += 1;
            }
            1 => {
                let mut s = step(
                    &format!("if-{i}"),
                    "flow.if_then_else",
                    json!({"condition": "{{ trigger.body.n > 3 }}"}),
                );
                s.branches.insert(
                    "true".into(),
                    vec![step(&format!("t-{i}"), "debug.log_message", json!({}))],
                );
                s.branches.insert(
                    "false".into(),
                    vec![step(
                        &format!("f-{i}"),
                        "http.send_request",
                        json!({"method": "GET", "path": "/x"}),
                    )],
                );
                steps.push(s);
                count += 3;
            }
            2 => {
                let mut s = step(
                    &format!("q-{i}"),
                    "xurrent.query",
                    json!({"object": "requests"}),
                );
                s.each = vec![
                    step(&format!("a-{i}"), "debug.log_message", json!({})),
                    step(
                        &format!("b-{i}"),
                        "xurrent.mutation",
                        json!({"mutation": "noteCreate"}),
                    ),
                ];
                steps.push(s);
                count += 3;
            }
            _ => {
                let mut s = step(&format!("tc-{i}"), "flow.try_catch", json!({}));
                s.branches.insert(
                    "try".into(),
                    vec![step(&format!("try-{i}"), "http.send_request", json!({}))],
                );
                s.branches.insert(
                    "catch".into(),
                    vec![step(&format!("catch-{i}"), "debug.log_message", json!({}))],
                );
                steps.push(s);
                count += 3;
            }
        }
        i += 1;
    }
    runbook("big", steps)
}

#[test]
fn a_200_step_runbook_renders_every_step() {
    let rb = big_runbook(200);
    let total = rb.walk().len();
    assert!(total >= 200);
    let svg = render_svg(&rb);
    let p = parse(&svg);
    assert_all_steps(&rb, &p);
    assert_eq!(p.steps.len(), total);
    // Linear size: a few hundred bytes per step.
    assert!(
        svg.len() < total * 900,
        "{} bytes for {total} steps",
        svg.len()
    );
    std::fs::create_dir_all(artefacts()).unwrap();
    std::fs::write(artefacts().join("big-200.svg"), &svg).unwrap();
}

/// `cargo test -p ferry-diagram --test render -- --ignored --nocapture`: the time to render a
/// 200-step runbook (a figure to read on a quiet machine, not a test of it).
#[test]
#[ignore]
fn timing_of_a_200_step_runbook() {
    let rb = big_runbook(200);
    let runs = 200;
    let start = std::time::Instant::now();
    let mut bytes = 0;
    for _ in 0..runs {
        bytes += render_svg(&rb).len();
    }
    let per = start.elapsed() / runs;
    println!(
        "{} steps: {:?} per render, {} bytes",
        rb.walk().len(),
        per,
        bytes / runs as usize
    );
}
