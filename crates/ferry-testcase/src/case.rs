//! The case file: `tests/<runbook>/<case>.yaml` in a solution (format: `docs/testing.md`).
//!
//! ```yaml
//! name: big order                      # optional; default: the file name
//! event:                               # the request the trigger parses (or `trigger_output:`)
//!   body: { pet: dog, count: 5 }
//!   headers: { X-Source: test }
//! steps:
//!   post-intake:                       # a map applies to every invocation of the step,
//!     mock: { output: { response: { status: 200 } } }
//!   log-item:                          # a list to the 1st, 2nd, … invocation
//!     - input: { message: "Item 1: leash" }
//!     - input: { message: { $contains: ball } }
//! expect:
//!   status: finished
//!   variables: { processed: 2 }
//! ```
//!
//! Every problem is a [`Diagnostic`] at its `file:line`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_core::loader::{Diagnostic, YamlFile};
use serde_json::{Map, Value};

use crate::expect::Expect;

/// A step of the runbook the case is checked against: its id, whether it is nested and
/// whether it runs for real in a test (pure steps) or must be mocked.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// Whether its action is nested (outputs are branches).
    pub nested: bool,
}

/// One test case.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// The case file.
    pub file: PathBuf,
    /// The runbook (the case's folder name).
    pub runbook: String,
    /// Name (default: the file stem).
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
    /// What starts the job.
    pub event: Event,
    /// Mocks and expectations per step id.
    pub steps: BTreeMap<String, StepCase>,
    /// Expectations on the job.
    pub expect: JobExpect,
}

/// What starts the job.
#[derive(Clone, Debug)]
pub enum Event {
    /// A request through the trigger's parse (`event:`).
    Request {
        /// HTTP method (default POST).
        method: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Query string.
        query: Option<String>,
        /// The body as sent: JSON unless it is a string.
        body: Vec<u8>,
    },
    /// A schedule tick (`tick:`, RFC 3339) through the `scheduler.schedule` trigger, as the
    /// scheduler would fire it at that instant.
    Tick(chrono::DateTime<chrono::Utc>),
    /// The trigger's output given directly (`trigger_output:`), without a parse: for triggers
    /// that verify signatures or call out (e.g. a Xurrent webhook).
    TriggerOutput {
        /// The output (`trigger.*` in expressions).
        output: Value,
        /// The job context identifier.
        context_identifier: Option<String>,
    },
}

/// Mocks and expectations of one step.
#[derive(Clone, Debug, Default)]
pub struct StepCase {
    /// Applies to every invocation (a map in the file).
    pub every: Option<Iteration>,
    /// Applies to the nth invocation (a list in the file, or `invocations:`).
    pub invocations: Vec<Iteration>,
    /// Expected number of invocations (`runs:`; 0: the step must not run).
    pub runs: Option<usize>,
}

impl StepCase {
    /// The mocks and expectations for invocation `n` (1-based).
    pub fn iteration(&self, n: usize) -> Option<&Iteration> {
        if self.invocations.is_empty() {
            self.every.as_ref()
        } else {
            n.checked_sub(1).and_then(|i| self.invocations.get(i))
        }
    }
}

/// Mocks and expectations of one invocation.
#[derive(Clone, Debug, Default)]
pub struct Iteration {
    /// Replaces the action's run.
    pub mock: Option<Mock>,
    /// On the resolved input.
    pub input: Option<Expect>,
    /// On the output (non-nested: the output object; nested: the list of
    /// `{branch, output}`).
    pub output: Option<Expect>,
    /// On the run log messages (a list of strings).
    pub logs: Option<Expect>,
    /// On the step record's status (`completed`, `failed`, `rescheduled`, `finished`).
    pub status: Option<String>,
    /// On the step's error message.
    pub error: Option<Expect>,
}

/// What a mocked invocation returns.
#[derive(Clone, Debug, PartialEq)]
pub enum MockResult {
    /// Outputs as `(schema reference, value)`; the reference is empty for a non-nested action.
    Outputs(Vec<(String, Value)>),
    /// The step fails with this message.
    Fail(String),
    /// The job finishes with this message.
    Finish(String),
    /// The step is run again after this delay (a test does not wait for it).
    Reschedule(Duration, String),
}

/// A mock: the result and the iteration state it sets.
#[derive(Clone, Debug, PartialEq)]
pub struct Mock {
    /// What the invocation returns.
    pub result: MockResult,
    /// The iteration state (the step runs again when set).
    pub iteration: Option<Value>,
}

/// Expectations on the job.
#[derive(Clone, Debug, Default)]
pub struct JobExpect {
    /// `finished`, `failed` (or `waiting`); default `finished`.
    pub status: Option<String>,
    /// On the job's error message.
    pub error: Option<Expect>,
    /// On the final runbook variables.
    pub variables: Option<Expect>,
}

const CASE_KEYS: &[&str] = &[
    "name",
    "description",
    "event",
    "tick",
    "trigger_output",
    "context_identifier",
    "steps",
    "expect",
];
const EVENT_KEYS: &[&str] = &["method", "headers", "query", "body"];
const ITERATION_KEYS: &[&str] = &["mock", "input", "output", "logs", "status", "error"];
const STEP_KEYS: &[&str] = &[
    "mock",
    "input",
    "output",
    "logs",
    "status",
    "error",
    "runs",
    "invocations",
];
const MOCK_KEYS: &[&str] = &[
    "output",
    "outputs",
    "fail",
    "finish",
    "reschedule",
    "iteration",
];
const EXPECT_KEYS: &[&str] = &["status", "error", "variables"];
const STEP_STATUSES: &[&str] = &["completed", "failed", "rescheduled", "finished"];
const JOB_STATUSES: &[&str] = &["finished", "failed", "waiting"];

struct Cx<'a> {
    yaml: &'a YamlFile,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        let span = self.yaml.span_of(path);
        self.diags.push(Diagnostic {
            span,
            message: message.into(),
        });
    }

    fn map<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        what: &str,
        keys: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(m) = v else {
            self.err(path, format!("{what} must be a map"));
            return None;
        };
        for k in m.keys() {
            if !keys.contains(&k.as_str()) {
                self.err(
                    &join(path, k),
                    format!(
                        "unknown key '{k}' in {what} (expected one of: {})",
                        keys.join(", ")
                    ),
                );
            }
        }
        Some(m)
    }

    fn expect(&mut self, v: &Value, path: &str) -> Option<Expect> {
        match Expect::parse(v) {
            Ok(e) => Some(e),
            Err(errors) => {
                for e in errors {
                    self.err(&join(path, &e.path), e.message);
                }
                None
            }
        }
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.err(path, format!("'{}' must be a string", last(path)));
                None
            }
        }
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Read the case file `file` of `runbook`, checked against the runbook's steps (by id).
pub fn load(
    file: &Path,
    runbook: &str,
    steps: &BTreeMap<String, StepInfo>,
) -> Result<TestCase, Vec<Diagnostic>> {
    let yaml = YamlFile::read(file)?;
    let mut cx = Cx {
        yaml: &yaml,
        diags: Vec::new(),
    };
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = yaml.value().clone();
    let Some(root) = cx.map(&root, "", "a test case", CASE_KEYS).cloned() else {
        return Err(cx.diags);
    };
    let name = match root.get("name") {
        Some(v) => cx.string(v, "name").unwrap_or_default(),
        None => stem,
    };
    let description = root
        .get("description")
        .and_then(|v| cx.string(v, "description"));
    let context_identifier = root
        .get("context_identifier")
        .and_then(|v| cx.string(v, "context_identifier"));
    let given: Vec<&str> = ["event", "tick", "trigger_output"]
        .into_iter()
        .filter(|k| root.contains_key(*k))
        .collect();
    let event = match given.as_slice() {
        [] => {
            cx.err(
                "",
                "a test case needs 'event' (the request the trigger parses), 'tick' (a schedule tick) or 'trigger_output'",
            );
            None
        }
        [_, second, ..] => {
            cx.err(
                second,
                format!(
                    "give one of 'event', 'tick' and 'trigger_output', not {}",
                    given.join(" and ")
                ),
            );
            None
        }
        ["trigger_output"] => {
            let out = &root["trigger_output"];
            if !out.is_object() {
                cx.err("trigger_output", "'trigger_output' must be a map");
            }
            Some(Event::TriggerOutput {
                output: out.clone(),
                context_identifier: context_identifier.clone(),
            })
        }
        [other] => {
            if context_identifier.is_some() {
                cx.err(
                    "context_identifier",
                    "'context_identifier' goes with 'trigger_output'; otherwise the trigger derives it",
                );
            }
            if *other == "tick" {
                match root["tick"]
                    .as_str()
                    .map(chrono::DateTime::parse_from_rfc3339)
                {
                    Some(Ok(t)) => Some(Event::Tick(t.with_timezone(&chrono::Utc))),
                    _ => {
                        cx.err(
                            "tick",
                            "'tick' must be an RFC 3339 instant, e.g. 2026-12-01T07:00:00Z",
                        );
                        None
                    }
                }
            } else {
                parse_event(&mut cx, &root["event"])
            }
        }
    };
    let mut step_cases = BTreeMap::new();
    if let Some(v) = root.get("steps") {
        if let Value::Object(m) = v {
            for (id, sv) in m {
                let path = join("steps", id);
                let Some(info) = steps.get(id) else {
                    cx.err(
                        &path,
                        format!(
                            "runbook '{runbook}' has no step '{id}' (steps: {})",
                            steps.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    continue;
                };
                if let Some(sc) = parse_step(&mut cx, sv, &path, info) {
                    step_cases.insert(id.clone(), sc);
                }
            }
        } else {
            cx.err("steps", "'steps' must be a map of step ids");
        }
    }
    let mut expect = JobExpect::default();
    if let Some(v) = root.get("expect") {
        if let Some(m) = cx.map(v, "expect", "'expect'", EXPECT_KEYS).cloned() {
            if let Some(s) = m.get("status") {
                expect.status = cx.string(s, "expect.status");
                if let Some(st) = &expect.status {
                    if !JOB_STATUSES.contains(&st.as_str()) {
                        cx.err(
                            "expect.status",
                            format!(
                                "unknown job status '{st}' (expected one of: {})",
                                JOB_STATUSES.join(", ")
                            ),
                        );
                    }
                }
            }
            expect.error = m.get("error").and_then(|e| cx.expect(e, "expect.error"));
            expect.variables = m
                .get("variables")
                .and_then(|e| cx.expect(e, "expect.variables"));
        }
    }
    match event {
        Some(event) if cx.diags.is_empty() => Ok(TestCase {
            file: file.to_path_buf(),
            runbook: runbook.to_string(),
            name,
            description,
            event,
            steps: step_cases,
            expect,
        }),
        _ => Err(cx.diags),
    }
}

fn parse_event(cx: &mut Cx<'_>, v: &Value) -> Option<Event> {
    let m = cx.map(v, "event", "'event'", EVENT_KEYS)?.clone();
    let method = match m.get("method") {
        Some(v) => cx.string(v, "event.method")?.to_ascii_uppercase(),
        None => "POST".to_string(),
    };
    let mut headers = Vec::new();
    if let Some(h) = m.get("headers") {
        match h {
            Value::Object(hm) => {
                for (k, v) in hm {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => v.to_string(),
                        _ => {
                            cx.err(&join("event.headers", k), "a header value must be a string");
                            continue;
                        }
                    };
                    headers.push((k.clone(), value));
                }
            }
            _ => cx.err(
                "event.headers",
                "'headers' must be a map of header names to values",
            ),
        }
    }
    let query = m.get("query").and_then(|q| cx.string(q, "event.query"));
    let body = match m.get("body") {
        None => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => serde_json::to_vec(other).unwrap_or_default(),
    };
    Some(Event::Request {
        method,
        headers,
        query,
        body,
    })
}

fn parse_step(cx: &mut Cx<'_>, v: &Value, path: &str, info: &StepInfo) -> Option<StepCase> {
    match v {
        Value::Array(items) => Some(StepCase {
            every: None,
            invocations: parse_invocations(cx, items, path, info),
            runs: None,
        }),
        Value::Object(_) => {
            let m = cx.map(v, path, "a step's case", STEP_KEYS)?.clone();
            let runs = match m.get("runs") {
                None => None,
                Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().map(|n| n as usize),
                Some(_) => {
                    cx.err(
                        &join(path, "runs"),
                        "'runs' must be a whole number (0: the step must not run)",
                    );
                    None
                }
            };
            let invocations = match m.get("invocations") {
                None => Vec::new(),
                Some(Value::Array(items)) => {
                    parse_invocations(cx, items, &join(path, "invocations"), info)
                }
                Some(_) => {
                    cx.err(&join(path, "invocations"), "'invocations' must be a list");
                    Vec::new()
                }
            };
            let mut rest = m.clone();
            rest.remove("runs");
            rest.remove("invocations");
            let every = if rest.is_empty() {
                None
            } else if !invocations.is_empty() {
                cx.err(
                    path,
                    "give the mocks and expectations either for every invocation or per invocation ('invocations'), not both",
                );
                None
            } else {
                parse_iteration(cx, &Value::Object(rest), path, info)
            };
            Some(StepCase {
                every,
                invocations,
                runs,
            })
        }
        _ => {
            cx.err(
                path,
                "a step's case must be a map (every invocation) or a list (one per invocation)",
            );
            None
        }
    }
}

fn parse_invocations(
    cx: &mut Cx<'_>,
    items: &[Value],
    path: &str,
    info: &StepInfo,
) -> Vec<Iteration> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            parse_iteration(cx, it, &join(path, &i.to_string()), info).unwrap_or_default()
        })
        .collect()
}

fn parse_iteration(cx: &mut Cx<'_>, v: &Value, path: &str, info: &StepInfo) -> Option<Iteration> {
    let m = cx.map(v, path, "an invocation", ITERATION_KEYS)?.clone();
    let mut it = Iteration {
        mock: m
            .get("mock")
            .and_then(|mv| parse_mock(cx, mv, &join(path, "mock"), info)),
        input: m
            .get("input")
            .and_then(|e| cx.expect(e, &join(path, "input"))),
        output: m
            .get("output")
            .and_then(|e| cx.expect(e, &join(path, "output"))),
        logs: m
            .get("logs")
            .and_then(|e| cx.expect(e, &join(path, "logs"))),
        status: None,
        error: m
            .get("error")
            .and_then(|e| cx.expect(e, &join(path, "error"))),
    };
    if let Some(s) = m.get("status") {
        let at = join(path, "status");
        if let Some(s) = cx.string(s, &at) {
            if STEP_STATUSES.contains(&s.as_str()) {
                it.status = Some(s);
            } else {
                cx.err(
                    &at,
                    format!(
                        "unknown step status '{s}' (expected one of: {})",
                        STEP_STATUSES.join(", ")
                    ),
                );
            }
        }
    }
    if m.contains_key("mock") && m.contains_key("output") {
        cx.err(
            &join(path, "output"),
            "cannot set expectations on a mocked output",
        );
    }
    Some(it)
}

fn parse_mock(cx: &mut Cx<'_>, v: &Value, path: &str, info: &StepInfo) -> Option<Mock> {
    let m = cx.map(v, path, "a mock", MOCK_KEYS)?.clone();
    let results: Vec<&str> = ["output", "outputs", "fail", "finish", "reschedule"]
        .into_iter()
        .filter(|k| m.contains_key(*k))
        .collect();
    if results.len() > 1 {
        cx.err(
            path,
            format!("a mock gives one result, not {}", results.join(" and ")),
        );
        return None;
    }
    let result = match results.first().copied() {
        None => MockResult::Outputs(if info.nested {
            Vec::new()
        } else {
            vec![(String::new(), Value::Object(Map::new()))]
        }),
        Some("output") => {
            if info.nested {
                cx.err(
                    &join(path, "output"),
                    "the step is nested: give 'outputs', a list of { branch, output }",
                );
                return None;
            }
            MockResult::Outputs(vec![(String::new(), m["output"].clone())])
        }
        Some("outputs") => {
            let at = join(path, "outputs");
            if !info.nested {
                cx.err(&at, "the step is not nested: give one 'output'");
                return None;
            }
            let Value::Array(items) = &m["outputs"] else {
                cx.err(&at, "'outputs' must be a list of { branch, output }");
                return None;
            };
            let mut outs = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ip = join(&at, &i.to_string());
                let im = cx
                    .map(item, &ip, "an output", &["branch", "output"])?
                    .clone();
                let branch = match im.get("branch") {
                    Some(b) => cx.string(b, &join(&ip, "branch"))?,
                    None => {
                        cx.err(
                            &ip,
                            "an output needs 'branch' (the output schema reference)",
                        );
                        return None;
                    }
                };
                outs.push((
                    branch,
                    im.get("output")
                        .cloned()
                        .unwrap_or(Value::Object(Map::new())),
                ));
            }
            MockResult::Outputs(outs)
        }
        Some("fail") => MockResult::Fail(cx.string(&m["fail"], &join(path, "fail"))?),
        Some("finish") => MockResult::Finish(cx.string(&m["finish"], &join(path, "finish"))?),
        Some(_) => {
            let at = join(path, "reschedule");
            let rm = cx
                .map(
                    &m["reschedule"],
                    &at,
                    "'reschedule'",
                    &["after_seconds", "message"],
                )?
                .clone();
            let secs = match rm.get("after_seconds") {
                Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= 0.0) => {
                    n.as_f64().unwrap_or(0.0)
                }
                None => 60.0,
                Some(_) => {
                    cx.err(
                        &join(&at, "after_seconds"),
                        "'after_seconds' must be a number ≥ 0",
                    );
                    return None;
                }
            };
            let message = match rm.get("message") {
                Some(v) => cx.string(v, &join(&at, "message"))?,
                None => "rescheduled by the test case".to_string(),
            };
            MockResult::Reschedule(Duration::from_secs_f64(secs), message)
        }
    };
    Some(Mock {
        result,
        iteration: m.get("iteration").cloned().filter(|v| !v.is_null()),
    })
}

/// The case files of a solution: `tests/<runbook>/*.yaml` (and `.yml`), sorted, as
/// `(runbook, file)`; `runbook` filters by runbook name.
pub fn discover(solution: &Path, runbook: Option<&str>) -> std::io::Result<Vec<(String, PathBuf)>> {
    let tests = solution.join("tests");
    let mut out = Vec::new();
    if !tests.is_dir() {
        return Ok(out);
    }
    let mut dirs: Vec<_> = std::fs::read_dir(&tests)?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        let name = d.file_name().to_string_lossy().into_owned();
        if runbook.is_some_and(|r| r != name) {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(d.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> BTreeMap<String, StepInfo> {
        [("greet", false), ("each", true), ("post", false)]
            .into_iter()
            .map(|(k, nested)| (k.to_string(), StepInfo { nested }))
            .collect()
    }

    fn load_text(text: &str) -> Result<TestCase, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("case.yaml");
        std::fs::write(&file, text).unwrap();
        load(&file, "rb", &steps())
    }

    #[test]
    fn reads_a_full_case() {
        let c = load_text(
            "event:\n  body: { pet: dog }\n  headers: { X-A: b }\nsteps:\n  post:\n    mock: { output: { status: 200 } }\n  each:\n    - mock: { outputs: [ { branch: item, output: { n: 1 } } ], iteration: { page: 2 } }\n    - mock: { fail: nope }\n  greet:\n    runs: 1\n    input: { message: { $contains: dog } }\nexpect:\n  status: finished\n  variables: { processed: 2 }\n",
        )
        .unwrap();
        assert_eq!(c.name, "case");
        let Event::Request {
            method,
            headers,
            body,
            ..
        } = &c.event
        else {
            panic!()
        };
        assert_eq!(method, "POST");
        assert_eq!(headers, &[("X-A".to_string(), "b".to_string())]);
        assert_eq!(body, br#"{"pet":"dog"}"#);
        let each = &c.steps["each"];
        assert_eq!(each.invocations.len(), 2);
        assert_eq!(
            each.iteration(1).unwrap().mock.as_ref().unwrap().iteration,
            Some(serde_json::json!({"page": 2}))
        );
        assert_eq!(
            each.iteration(2).unwrap().mock.as_ref().unwrap().result,
            MockResult::Fail("nope".into())
        );
        assert!(each.iteration(3).is_none());
        let greet = &c.steps["greet"];
        assert_eq!(greet.runs, Some(1));
        assert!(greet.iteration(7).unwrap().input.is_some());
    }

    #[test]
    fn problems_are_reported_at_their_line() {
        let errs = load_text(
            "event:\n  body: {}\nsteps:\n  nope:\n    mock: {}\n  post:\n    mock: { output: {}, fail: x }\n  each:\n    mock: { output: {} }\n  greet:\n    status: done\n    input: { $bad: 1 }\nexpect:\n  status: ok\n  colour: red\n",
        )
        .unwrap_err();
        let mut errs = errs;
        errs.sort_by_key(|d| d.span.line);
        let got: Vec<String> = errs
            .iter()
            .map(|d| format!("{}:{}", d.span.line, d.message))
            .collect();
        let want_lines = [4, 7, 9, 11, 12, 14, 15];
        assert_eq!(got.len(), want_lines.len(), "{got:#?}");
        for (g, l) in got.iter().zip(want_lines) {
            assert!(g.starts_with(&format!("{l}:")), "{got:#?}");
        }
        assert!(got[0].contains("runbook 'rb' has no step 'nope'"));
        assert!(errs[0].to_string().contains("case.yaml:4: "), "{}", errs[0]);
    }

    #[test]
    fn needs_an_event() {
        let errs = load_text("name: x\n").unwrap_err();
        assert!(errs[0].message.contains("needs 'event'"));
        let c = load_text("tick: 2026-12-01T08:00:00+01:00\n").unwrap();
        let Event::Tick(t) = c.event else { panic!() };
        assert_eq!(t.to_rfc3339(), "2026-12-01T07:00:00+00:00");
        let errs = load_text("tick: tomorrow\n").unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains(":1: 'tick' must be an RFC 3339 instant"),
            "{}",
            errs[0]
        );
        let errs = load_text("tick: 2026-12-01T07:00:00Z\nevent: {}\n").unwrap_err();
        assert!(
            errs[0].message.contains("not event and tick"),
            "{}",
            errs[0]
        );
        let c = load_text("trigger_output: { a: 1 }\ncontext_identifier: c1\n").unwrap();
        assert!(matches!(
            c.event,
            Event::TriggerOutput {
                context_identifier: Some(_),
                ..
            }
        ));
    }
}
