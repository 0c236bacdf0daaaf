//! The traversal and the application of outcomes, driven directly: no engine, no store, no
//! actions — a runbook is only its chains and the kinds of its steps.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// A runbook reduced to what the traversal sees.
#[derive(Default)]
struct Shape {
    chains: HashMap<String, Vec<String>>,
    kinds: HashMap<String, (ActionKind, bool)>,
}

impl Shape {
    fn chain(mut self, key: &str, steps: &[&str]) -> Shape {
        for s in steps {
            self.kinds
                .entry(s.to_string())
                .or_insert((ActionKind::Normal, false));
        }
        self.chains
            .insert(key.into(), steps.iter().map(|s| s.to_string()).collect());
        self
    }
    fn nested(mut self, step: &str) -> Shape {
        self.kinds.insert(step.into(), (ActionKind::Normal, true));
        self
    }
    fn kind(mut self, step: &str, kind: ActionKind, nested: bool) -> Shape {
        self.kinds.insert(step.into(), (kind, nested));
        self
    }
}

impl RunbookShape for Shape {
    fn chain(&self, key: &str) -> &[String] {
        self.chains.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
    fn has_chain(&self, key: &str) -> bool {
        key.is_empty() || self.chains.contains_key(key)
    }
    fn step_kind(&self, id: &str) -> Option<(ActionKind, bool)> {
        self.kinds.get(id).copied()
    }
}

fn limits() -> ExecLimits {
    ExecLimits::default()
}

fn ok(outputs: &[(&str, Value)]) -> StepOutcome {
    StepOutcome {
        result: Ok(outputs
            .iter()
            .map(|(s, v)| (s.to_string(), v.clone()))
            .collect()),
        iteration: IterationAfter::Set(None),
    }
}

fn signal(s: Signal) -> StepOutcome {
    StepOutcome {
        result: Err(s),
        iteration: IterationAfter::Set(None),
    }
}

fn fail(message: &str) -> StepOutcome {
    signal(Signal::Fail(message.into()))
}

/// Run the job to its end, answering each invocation with `respond`. Returns the invoked
/// steps in order and the final transition. Every state is encoded and decoded between
/// steps, as a crash and resume at any checkpoint would do.
fn drive(
    rb: &Shape,
    mut respond: impl FnMut(&Invocation, &ExecState) -> StepOutcome,
) -> (Vec<String>, Transition, ExecState) {
    let mut state = ExecState::new(Map::new());
    let mut order = Vec::new();
    // The step records' outputs, as the store keeps them, by (step, invocation).
    let mut records: HashMap<(String, i64), Value> = HashMap::new();
    loop {
        match state.next_step(rb) {
            Next::Done => return (order, Transition::Continue, state),
            Next::Broken(m) => panic!("state broken: {m}"),
            Next::Invoke(step) => {
                let inv = state.begin(&step, &limits()).unwrap();
                order.push(step.clone());
                let outcome = respond(&inv, &state);
                let applied = state.apply(rb, &step, outcome, &limits());
                records.insert((step.clone(), inv.number), applied.outputs.clone());
                // Every step is a checkpoint: continue from the stored state, reading the
                // outputs of output frames back from their records as the executor does.
                let stored = state.encode(usize::MAX).unwrap();
                state = ExecState::from_stored(&stored, rb, Map::new).unwrap();
                for (s, n) in state.unloaded_outputs() {
                    let outputs = records[&(s.clone(), n)].clone();
                    state.load_outputs(&s, n, &outputs).unwrap();
                }
                if applied.transition != Transition::Continue {
                    return (order, applied.transition, state);
                }
            }
        }
    }
}

#[test]
fn a_linear_chain_runs_in_order_and_keeps_each_output() {
    let rb = Shape::default().chain("", &["a", "b", "c"]);
    let (order, end, state) = drive(&rb, |inv, _| ok(&[("output", json!({"n": inv.step}))]));
    assert_eq!(order, ["a", "b", "c"]);
    assert_eq!(end, Transition::Continue);
    assert_eq!(state.outputs["b"], json!({"n": "b"}));
    assert_eq!(state.step_seq, 3);
    assert!(state.stack.is_empty());
}

#[test]
fn nested_outputs_run_their_branches_depth_first_with_the_current_item() {
    // loop (3 items) → each item: inner if (true/false) → true: x ; then after
    let rb = Shape::default()
        .chain("", &["loop", "after"])
        .nested("loop")
        .chain("loop/loop", &["inner"])
        .nested("inner")
        .chain("inner/true", &["x"]);
    let mut items_seen = Vec::new();
    let (order, _, state) = drive(&rb, |inv, st| match inv.step.as_str() {
        "loop" => ok(&[
            ("loop", json!({"index": 0})),
            ("loop", json!({"index": 1})),
            ("loop", json!({"index": 2})),
        ]),
        "inner" => {
            let index = st.item()["index"].as_i64().unwrap();
            items_seen.push(index);
            let branch = if index % 2 == 0 { "true" } else { "false" };
            ok(&[(branch, json!({"result": index % 2 == 0}))])
        }
        "x" => {
            // Inside inner's branch, `item` is inner's output, and the loop's output is
            // still the current item.
            assert_eq!(st.item(), json!({"result": true}));
            assert_eq!(st.outputs["loop"]["index"].as_i64().unwrap() % 2, 0);
            ok(&[("output", json!({}))])
        }
        _ => ok(&[("output", json!({}))]),
    });
    assert_eq!(
        order,
        ["loop", "inner", "x", "inner", "inner", "x", "after"]
    );
    assert_eq!(items_seen, [0, 1, 2]);
    assert_eq!(state.invocations["inner"], 3);
}

#[test]
fn an_output_frame_keeps_only_the_outputs_whose_branch_has_not_started() {
    let rb = Shape::default()
        .chain("", &["loop"])
        .nested("loop")
        .chain("loop/loop", &["x"]);
    let mut state = ExecState::new(Map::new());
    assert_eq!(state.next_step(&rb), Next::Invoke("loop".into()));
    state.begin("loop", &limits()).unwrap();
    let items: Vec<(&str, Value)> = (0..4).map(|i| ("loop", json!({ "index": i }))).collect();
    state.apply(&rb, "loop", ok(&items), &limits());
    let mut pending = Vec::new();
    let mut encoded = Vec::new();
    while let Next::Invoke(step) = state.next_step(&rb) {
        for frame in &state.stack {
            if let Frame::Outputs { .. } = frame {
                pending.push(frame.remaining());
            }
        }
        state.begin(&step, &limits()).unwrap();
        state.apply(&rb, &step, ok(&[("output", json!({}))]), &limits());
        encoded.push(state.encode(usize::MAX).unwrap());
    }
    assert_eq!(pending, [3, 2, 1, 0]);
    // The stored state names the step record and counts the started branches; the outputs
    // themselves stay in the record, so the state does not grow with the page.
    for (i, e) in encoded.iter().enumerate() {
        assert_eq!(
            e["stack"][1],
            json!({"frame": "outputs", "step": "loop", "recorded": {"invocation": 1, "started": i + 1},
                   "current": "loop"})
        );
    }
}

#[test]
fn a_resumed_state_reads_the_outputs_back_from_the_step_record() {
    let rb = Shape::default()
        .chain("", &["loop", "after"])
        .nested("loop")
        .chain("loop/loop", &["x"]);
    let items: Vec<(&str, Value)> = (0..3).map(|i| ("loop", json!({ "index": i }))).collect();
    let mut state = ExecState::new(Map::new());
    state.next_step(&rb);
    state.begin("loop", &limits()).unwrap();
    let applied = state.apply(&rb, "loop", ok(&items), &limits());
    // The first branch ran; the job stops here and resumes from the stored state.
    assert_eq!(state.next_step(&rb), Next::Invoke("x".into()));
    state.begin("x", &limits()).unwrap();
    state.apply(&rb, "x", ok(&[("output", json!({}))]), &limits());
    let stored = state.encode(usize::MAX).unwrap();

    let mut resumed = ExecState::from_stored(&stored, &rb, Map::new).unwrap();
    assert_eq!(resumed.unloaded_outputs(), [("loop".to_string(), 1)]);
    let mut broken = resumed.clone();
    match broken.next_step(&rb) {
        Next::Broken(m) => assert!(m.contains("step 'loop'"), "{m}"),
        other => panic!("expected Broken, got {other:?}"),
    }
    // A record with fewer outputs than the state says started is refused.
    let err = resumed
        .clone()
        .load_outputs("loop", 1, &json!([]))
        .unwrap_err();
    assert!(
        err.to_string().contains("fewer than the 1 whose branch"),
        "{err}"
    );
    assert!(resumed.load_outputs("loop", 2, &applied.outputs).is_err());
    resumed.load_outputs("loop", 1, &applied.outputs).unwrap();
    assert!(resumed.unloaded_outputs().is_empty());
    let mut items_seen = Vec::new();
    while let Next::Invoke(step) = resumed.next_step(&rb) {
        if step == "x" {
            items_seen.push(resumed.item()["index"].clone());
        }
        resumed.begin(&step, &limits()).unwrap();
        resumed.apply(&rb, &step, ok(&[("output", json!({}))]), &limits());
    }
    assert_eq!(items_seen, [json!(1), json!(2)]);
}

#[test]
fn a_state_that_holds_its_pending_outputs_inline_is_still_continued() {
    let rb = Shape::default()
        .chain("", &["loop"])
        .nested("loop")
        .chain("loop/loop", &["x"]);
    let stored = json!({"stack": [{"frame": "chain", "key": "", "index": 0},
        {"frame": "outputs", "step": "loop", "current": "loop",
         "pending": [["loop", {"index": 1}], ["loop", {"index": 2}]]}],
        "outputs": {"loop": {"index": 0}}, "step_seq": 2});
    let mut state = ExecState::from_stored(&stored, &rb, Map::new).unwrap();
    assert!(state.unloaded_outputs().is_empty());
    let mut seen = Vec::new();
    while let Next::Invoke(step) = state.next_step(&rb) {
        if step == "x" {
            seen.push(state.item()["index"].clone());
        }
        state.begin(&step, &limits()).unwrap();
        state.apply(&rb, &step, ok(&[("output", json!({}))]), &limits());
    }
    assert_eq!(seen, [json!(1), json!(2)]);
}

#[test]
fn outputs_larger_than_the_state_limit_fail_the_nested_step() {
    let rb = Shape::default()
        .chain("", &["loop"])
        .nested("loop")
        .chain("loop/loop", &["x"]);
    let items: Vec<(&str, Value)> = (0..10).map(|_| ("loop", json!("x".repeat(100)))).collect();
    let mut state = ExecState::new(Map::new());
    state.next_step(&rb);
    state.begin("loop", &limits()).unwrap();
    let tight = ExecLimits {
        max_state_bytes: 500,
        ..limits()
    };
    let applied = state.apply(&rb, "loop", ok(&items), &tight);
    assert_eq!(applied.status, StepStatus::Failed);
    match applied.transition {
        Transition::Fail(m) => assert!(m.contains("emit them page by page"), "{m}"),
        other => panic!("expected Fail, got {other:?}"),
    }
}

#[test]
fn iteration_state_reinvokes_a_nested_step_after_its_branches_until_cleared() {
    let rb = Shape::default()
        .chain("", &["pages", "after"])
        .nested("pages")
        .chain("pages/page", &["x"]);
    let mut counts = Vec::new();
    let (order, _, state) = drive(&rb, |inv, _| match inv.step.as_str() {
        "pages" => {
            counts.push((inv.iteration_count, inv.iteration.clone()));
            let page = inv
                .iteration
                .as_ref()
                .and_then(|v| v["page"].as_i64())
                .unwrap_or(0);
            StepOutcome {
                result: Ok(vec![
                    ("page".into(), json!({"p": page, "i": 0})),
                    ("page".into(), json!({"p": page, "i": 1})),
                ]),
                iteration: IterationAfter::Set((page < 2).then(|| json!({"page": page + 1}))),
            }
        }
        _ => ok(&[("output", json!({}))]),
    });
    assert_eq!(
        order,
        ["pages", "x", "x", "pages", "x", "x", "pages", "x", "x", "after"]
    );
    assert_eq!(
        counts,
        [
            (0, None),
            (1, Some(json!({"page": 1}))),
            (2, Some(json!({"page": 2})))
        ]
    );
    assert!(state.iteration.is_empty());
}

#[test]
fn a_non_nested_step_that_sets_iteration_state_fails() {
    let rb = Shape::default().chain("", &["a"]);
    let mut state = ExecState::new(Map::new());
    state.next_step(&rb);
    state.begin("a", &limits()).unwrap();
    let applied = state.apply(
        &rb,
        "a",
        StepOutcome {
            result: Ok(vec![("output".into(), json!({}))]),
            iteration: IterationAfter::Set(Some(json!({"page": 2}))),
        },
        &limits(),
    );
    assert_eq!(
        applied.transition,
        Transition::Fail("Iteration state only available for nested actions.".into())
    );
}

fn try_catch_shape() -> Shape {
    Shape::default()
        .chain("", &["tc", "after"])
        .kind("tc", ActionKind::TryCatch, true)
        .chain("tc/try", &["risky", "not_reached"])
        .chain("tc/catch", &["handle"])
}

/// What a try-catch action does with the iteration state the executor writes.
fn try_catch(inv: &Invocation) -> StepOutcome {
    let caught = inv
        .iteration
        .as_ref()
        .is_some_and(|s| s["condition"] == json!(true));
    let out = if caught {
        (
            "catch",
            json!({"error": inv.iteration.as_ref().unwrap()["error_message"]}),
        )
    } else {
        ("try", json!({}))
    };
    StepOutcome {
        result: Ok(vec![(out.0.into(), out.1)]),
        iteration: IterationAfter::Set(None),
    }
}

#[test]
fn a_failure_inside_try_runs_catch_with_the_error_then_continues() {
    let rb = try_catch_shape();
    let (order, end, state) = drive(&rb, |inv, st| match inv.step.as_str() {
        "tc" => try_catch(inv),
        "risky" => fail("boom"),
        "handle" => {
            assert_eq!(st.item(), json!({"error": "boom"}));
            ok(&[("output", json!({}))])
        }
        _ => ok(&[("output", json!({}))]),
    });
    assert_eq!(order, ["tc", "risky", "tc", "handle", "after"]);
    assert_eq!(end, Transition::Continue);
    assert_eq!(state.invocations["tc"], 2);
}

#[test]
fn a_failure_outside_try_fails_the_job_and_a_failure_in_catch_is_not_caught() {
    let rb = try_catch_shape();
    let (order, end, _) = drive(&rb, |inv, _| match inv.step.as_str() {
        "tc" => try_catch(inv),
        "risky" => fail("boom"),
        "handle" => fail("catch broke"),
        _ => ok(&[("output", json!({}))]),
    });
    assert_eq!(order, ["tc", "risky", "tc", "handle"]);
    assert_eq!(end, Transition::Fail("catch broke".into()));

    let rb = Shape::default().chain("", &["a", "b"]);
    let (order, end, _) = drive(&rb, |_, _| fail("no"));
    assert_eq!(order, ["a"]);
    assert_eq!(end, Transition::Fail("no".into()));
}

#[test]
fn retry_in_catch_reruns_the_try_catch_from_try() {
    let rb = Shape::default()
        .chain("", &["tc", "after"])
        .kind("tc", ActionKind::TryCatch, true)
        .chain("tc/try", &["risky"])
        .chain("tc/catch", &["again"])
        .kind("again", ActionKind::Retry, false);
    let mut attempts = 0;
    let (order, end, state) = drive(&rb, |inv, _| match inv.step.as_str() {
        "tc" => try_catch(inv),
        "risky" => {
            attempts += 1;
            if attempts < 3 {
                fail("flaky")
            } else {
                ok(&[("output", json!({}))])
            }
        }
        _ => ok(&[("output", json!({}))]),
    });
    assert_eq!(
        order,
        ["tc", "risky", "tc", "again", "tc", "risky", "tc", "again", "tc", "risky", "after"]
    );
    assert_eq!(end, Transition::Continue);
    assert!(!state.iteration.contains_key("tc"));
}

#[test]
fn retry_outside_catch_is_a_no_op() {
    let rb = Shape::default()
        .chain("", &["again", "b"])
        .kind("again", ActionKind::Retry, false);
    let (order, _, _) = drive(&rb, |_, _| ok(&[("output", json!({}))]));
    assert_eq!(order, ["again", "b"]);
}

#[test]
fn reschedule_waits_keeps_iteration_state_and_reinvokes_the_same_step() {
    let rb = Shape::default()
        .chain("", &["wait", "after"])
        .nested("wait")
        .chain("wait/actual", &["x"]);
    let mut state = ExecState::new(Map::new());
    assert_eq!(state.next_step(&rb), Next::Invoke("wait".into()));
    state.begin("wait", &limits()).unwrap();
    let applied = state.apply(
        &rb,
        "wait",
        StepOutcome {
            result: Err(Signal::Reschedule {
                after: Duration::from_secs(5),
                message: "Waiting 5 seconds".into(),
            }),
            iteration: IterationAfter::Set(Some(json!({"started_at": "t0"}))),
        },
        &limits(),
    );
    assert_eq!(applied.status, StepStatus::Rescheduled);
    assert_eq!(applied.error.as_deref(), Some("Waiting 5 seconds"));
    assert_eq!(
        applied.transition,
        Transition::Wait {
            after: Duration::from_secs(5)
        }
    );
    // Stored and read back (the job waits in the store), the same step runs again with its
    // iteration state.
    let stored = state.encode(usize::MAX).unwrap();
    let mut state = ExecState::from_stored(&stored, &rb, Map::new).unwrap();
    assert_eq!(state.next_step(&rb), Next::Invoke("wait".into()));
    let inv = state.begin("wait", &limits()).unwrap();
    assert_eq!(inv.iteration, Some(json!({"started_at": "t0"})));
    assert_eq!(inv.number, 2);
    state.apply(&rb, "wait", ok(&[("actual", json!({}))]), &limits());
    assert_eq!(state.next_step(&rb), Next::Invoke("x".into()));
    assert!(state.reschedules.is_empty());
}

#[test]
fn too_many_consecutive_reschedules_fail_the_step() {
    let rb = Shape::default().chain("", &["a"]);
    let limits = ExecLimits {
        max_reschedules: 2,
        ..ExecLimits::default()
    };
    let mut state = ExecState::new(Map::new());
    let mut last = None;
    for _ in 0..3 {
        assert_eq!(state.next_step(&rb), Next::Invoke("a".into()));
        state.begin("a", &limits).unwrap();
        last = Some(state.apply(
            &rb,
            "a",
            signal(Signal::Reschedule {
                after: Duration::from_secs(1),
                message: "busy".into(),
            }),
            &limits,
        ));
    }
    let last = last.unwrap();
    assert_eq!(last.status, StepStatus::Failed);
    assert_eq!(
        last.transition,
        Transition::Fail("Step 'a' was rescheduled more than 2 times: busy".into())
    );
}

#[test]
fn finish_stops_the_job_with_its_message() {
    let rb = Shape::default().chain("", &["a", "stop", "never"]);
    let (order, end, state) = drive(&rb, |inv, _| match inv.step.as_str() {
        "stop" => signal(Signal::Finish("Nothing to do".into())),
        _ => ok(&[("output", json!({}))]),
    });
    assert_eq!(order, ["a", "stop"]);
    assert_eq!(end, Transition::Finish("Nothing to do".into()));
    assert!(state.stack.is_empty());
}

#[test]
fn the_invocation_limit_stops_endless_loops() {
    let rb = Shape::default()
        .chain("", &["pages"])
        .nested("pages")
        .chain("pages/page", &["x"]);
    let limits = ExecLimits {
        max_invocations: 7,
        ..ExecLimits::default()
    };
    let mut state = ExecState::new(Map::new());
    let mut n = 0;
    let err = loop {
        let Next::Invoke(step) = state.next_step(&rb) else {
            panic!("an endless iteration ended")
        };
        match state.begin(&step, &limits) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        let outcome = StepOutcome {
            result: Ok(vec![("page".into(), json!({}))]),
            iteration: IterationAfter::Set(Some(json!({"again": true}))),
        };
        state.apply(&rb, &step, outcome, &limits);
    };
    assert_eq!(n, 7);
    assert_eq!(err, "Job exceeded the limit of 7 step invocations");
}

#[test]
fn an_invalid_input_keeps_the_iteration_state() {
    let rb = Shape::default()
        .chain("", &["tc"])
        .kind("tc", ActionKind::TryCatch, true)
        .chain("tc/try", &["pages"])
        .nested("pages");
    let mut state = ExecState::new(Map::new());
    state.iteration.insert(
        "pages".into(),
        IterState {
            count: 3,
            value: json!({"page": 4}),
        },
    );
    state.begin("pages", &limits()).unwrap();
    state.apply(
        &rb,
        "pages",
        StepOutcome {
            result: Err(Signal::Fail("Input invalid".into())),
            iteration: IterationAfter::Keep,
        },
        &limits(),
    );
    assert_eq!(state.iteration["pages"].count, 3);
}

#[test]
fn a_stored_state_that_is_not_a_state_or_does_not_match_the_runbook_is_refused() {
    let rb = Shape::default()
        .chain("", &["a", "loop"])
        .nested("loop")
        .chain("loop/loop", &["x"]);
    // Garbage is an error, not a fresh start.
    let err = ExecState::from_stored(&json!({"stack": 5}), &rb, Map::new).unwrap_err();
    assert!(matches!(err, StateError::Unreadable(_)), "{err}");
    let err = ExecState::from_stored(&Value::Null, &rb, Map::new).unwrap_err();
    assert!(matches!(err, StateError::Unreadable(_)), "{err}");
    // A job that has not started (`{}`) starts with the initial variables.
    let fresh = ExecState::from_stored(&json!({}), &rb, || {
        let mut m = Map::new();
        m.insert("v".into(), json!(1));
        m
    })
    .unwrap();
    assert_eq!(fresh.stack.len(), 1);
    assert_eq!(fresh.vars["v"], 1);
    // A state from a different runbook.
    let other =
        json!({"stack": [{"frame": "chain", "key": "gone/true", "index": 0}], "step_seq": 3});
    let err = ExecState::from_stored(&other, &rb, Map::new).unwrap_err();
    assert_eq!(
        err.to_string(),
        "job state does not match the runbook (was it changed since the job started?): unknown chain 'gone/true'"
    );
    let other = json!({"stack": [{"frame": "chain", "key": "", "index": 1},
        {"frame": "outputs", "step": "a", "pending": []}], "step_seq": 3});
    let err = ExecState::from_stored(&other, &rb, Map::new).unwrap_err();
    assert!(
        err.to_string().contains("step 'a' is no longer nested"),
        "{err}"
    );
}

#[test]
fn a_state_larger_than_the_limit_is_not_encoded() {
    let mut state = ExecState::new(Map::new());
    state
        .outputs
        .insert("big".into(), json!("x".repeat(10_000)));
    let err = state.encode(4096).unwrap_err();
    assert!(matches!(err, StateError::Unsaved(_)));
    assert!(
        err.to_string()
            .contains("more than the limit of 4096 bytes"),
        "{err}"
    );
    assert!(state.encode(20_000).is_ok());
}
