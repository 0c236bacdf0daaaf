//! From the runbook model to the tree the layout draws: what each step is (an action, a
//! control step, a stop), the labels of its box and the lanes of its nested steps.

use ferry_core::model::{Runbook, StepDef, TriggerDef};
use serde_json::Value;

use crate::text::{one_line, truncate};
use crate::Labeller;

/// Longest label line, in character cells; longer texts end in `…` (the tooltip has them whole).
pub(crate) const MAX_CELLS: i32 = 36;

/// What a box is drawn as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Trigger,
    /// An ordinary action (connector calls, logging, variables…).
    Action,
    /// A flow step that only steers: if-then-else, case, loop, batch, section, try-catch, wait.
    Control,
    /// `flow.fail`: ends the job as failed (or hands over to the enclosing catch).
    Fail,
    /// `flow.finish`: ends the job as finished.
    Finish,
    /// `flow.retry`: runs the enclosing try-catch's `try` again.
    Retry,
    End,
}

impl Shape {
    pub(crate) fn class(self) -> &'static str {
        match self {
            Shape::Trigger => "trigger",
            Shape::Action => "action",
            Shape::Control => "control",
            Shape::Fail => "stop fail",
            Shape::Finish => "stop finish",
            Shape::Retry => "stop retry",
            Shape::End => "end",
        }
    }

    /// Whether nothing after this step in its chain runs.
    pub(crate) fn stops(self) -> bool {
        matches!(self, Shape::Fail | Shape::Finish | Shape::Retry)
    }
}

/// How a lane (one branch of a nested step) is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneStyle {
    /// A named branch: its label on the edge (if-then-else, case, other named outputs).
    Plain,
    /// The branch runs once per output: a frame with a loop-back edge.
    Loop,
    /// The `try` branch of a try-catch: a frame.
    Try,
    /// The `catch` branch: a red frame, entered when a step in `try` fails.
    Catch,
    /// A branch that runs once (section, after a wait): a dashed frame.
    Group,
}

impl LaneStyle {
    pub(crate) fn framed(self) -> bool {
        self != LaneStyle::Plain
    }
    pub(crate) fn class(self) -> &'static str {
        match self {
            LaneStyle::Plain => "lane",
            LaneStyle::Loop => "lane loop",
            LaneStyle::Try => "lane try",
            LaneStyle::Catch => "lane catch",
            LaneStyle::Group => "lane group",
        }
    }
}

/// A box: a step, the trigger or the end.
pub(crate) struct Node<'a> {
    pub step: Option<&'a StepDef>,
    /// Position of the step in the canonical (depth-first) order; used for its `id`.
    pub index: usize,
    pub shape: Shape,
    /// Bold first line (the step id), second line (the action type, monospace), optional third.
    pub name: String,
    pub kind: String,
    pub detail: Option<String>,
    /// The whole text of the tooltip.
    pub tooltip: String,
    pub href: Option<String>,
    pub extra_class: Option<String>,
}

pub(crate) struct Lane<'a> {
    pub label: String,
    pub style: LaneStyle,
    pub chain: Vec<Block<'a>>,
}

pub(crate) struct Block<'a> {
    pub node: Node<'a>,
    pub lanes: Vec<Lane<'a>>,
    /// Whether every way through this step's lanes ends the chain (e.g. both branches fail).
    pub exhaustive: bool,
}

impl Block<'_> {
    /// Whether the chain does not go on after this block.
    pub(crate) fn stops(&self) -> bool {
        if self.node.shape.stops() {
            return true;
        }
        self.exhaustive
            && !self.lanes.is_empty()
            && self.lanes.iter().all(|l| chain_stops(&l.chain))
    }
}

/// Whether a chain never reaches its end (a step in it stops).
pub(crate) fn chain_stops(chain: &[Block<'_>]) -> bool {
    chain.iter().any(Block::stops)
}

pub(crate) struct Tree<'a> {
    pub trigger: Node<'a>,
    pub steps: Vec<Block<'a>>,
    pub step_count: usize,
}

struct Ctx<'l> {
    labeller: &'l dyn Labeller,
    next: usize,
    /// Ids of the try-catch steps whose `catch` lane encloses the current step, innermost last.
    catches: Vec<String>,
}

pub(crate) fn build<'a>(runbook: &'a Runbook, labeller: &dyn Labeller) -> Tree<'a> {
    let mut ctx = Ctx {
        labeller,
        next: 0,
        catches: Vec::new(),
    };
    let trigger = trigger_node(&runbook.trigger);
    let steps = chain(&runbook.steps, &mut ctx);
    Tree {
        trigger,
        steps,
        step_count: ctx.next,
    }
}

fn chain<'a>(steps: &'a [StepDef], ctx: &mut Ctx<'_>) -> Vec<Block<'a>> {
    steps.iter().map(|s| block(s, ctx)).collect()
}

/// An expression as written, without the `{{ }}` of a single expression; scalars as text.
fn expr_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => {
            let t = s.trim();
            let inner = t
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|r| !r.contains("{{") && !r.contains("}}"));
            Some(one_line(inner.unwrap_or(t)))
        }
        Value::Null => None,
        Value::Array(a) if a.is_empty() => Some("[]".to_string()),
        Value::Array(_) | Value::Object(_) => Some(one_line(&v?.to_string())),
        other => Some(other.to_string()),
    }
}

fn literal_false(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(false)))
        || matches!(v, Some(Value::String(s)) if s.trim() == "false")
}

/// Actions whose branch runs once per output (record, item, page, chunk…), with the label of
/// that repetition.
fn iteration_label(step: &StepDef, branch: Option<&str>) -> Option<String> {
    let input = &step.input;
    let label = match step.action.as_str() {
        "flow.loop" => "for each item".to_string(),
        "flow.batch" => match input.get("batch_size").and_then(Value::as_u64) {
            Some(n) => format!("for each batch of {n}"),
            None => "for each batch".to_string(),
        },
        "xurrent.query" => {
            let page = branch == Some("page")
                || (branch.is_none()
                    && input.get("mode").and_then(Value::as_str).map(str::trim) == Some("page"));
            if page {
                "for each page".to_string()
            } else {
                "for each record".to_string()
            }
        }
        "debug.generate_records" => "for each record".to_string(),
        _ => return None,
    };
    Some(label)
}

/// The third line of a box: what the step is about, from its literal input.
fn detail(step: &StepDef) -> Option<String> {
    let input = &step.input;
    let get = |k: &str| expr_text(input.get(k));
    let d = match step.action.as_str() {
        "flow.if_then_else" => get("condition").map(|c| format!("if {c}")),
        "flow.case" => get("expression").map(|c| format!("case {c}")),
        "flow.loop" | "flow.batch" => get("items").map(|c| format!("items: {c}")),
        "flow.wait" => get("seconds_to_wait").map(|c| format!("wait {c} s")),
        "flow.fail" | "flow.finish" => get("message"),
        "runbook_variables.assign" => get("id").map(|c| format!("vars.{c}")),
        "http.send_request" => match (get("method"), get("path")) {
            (Some(m), Some(p)) => Some(format!("{m} {p}")),
            (m, p) => m.or(p),
        },
        "xurrent.query" => get("object"),
        "xurrent.mutation" => get("mutation"),
        _ => None,
    };
    d.or_else(|| step.connection.as_ref().map(|c| format!("via {c}")))
}

fn block<'a>(step: &'a StepDef, ctx: &mut Ctx<'_>) -> Block<'a> {
    let index = ctx.next;
    ctx.next += 1;
    let action = step.action.as_str();
    let shape = match action {
        "flow.fail" => Shape::Fail,
        "flow.finish" => Shape::Finish,
        "flow.retry" => Shape::Retry,
        a if a.starts_with("flow.") => Shape::Control,
        _ => Shape::Action,
    };
    let mut detail = detail(step);
    if shape == Shape::Retry {
        detail = Some(match ctx.catches.last() {
            Some(t) => format!("try '{t}' again"),
            None => "outside a catch: no effect".to_string(),
        });
    }

    // The tooltip: everything, untruncated.
    let mut tooltip = format!("{} — {}", step.id, step.action);
    if let Some(title) = ctx.labeller.action_title(action) {
        tooltip.push('\n');
        tooltip.push_str(&title);
    }
    if let Some(d) = &step.description {
        tooltip.push('\n');
        tooltip.push_str(d);
    }
    if let Some(d) = &detail {
        tooltip.push('\n');
        tooltip.push_str(d);
    }
    if let Some(c) = &step.connection {
        tooltip.push_str("\nconnection: ");
        tooltip.push_str(c);
    }
    let node = Node {
        step: Some(step),
        index,
        shape,
        name: truncate(&step.id, MAX_CELLS),
        kind: truncate(&step.action, MAX_CELLS),
        detail: detail.map(|d| truncate(&d, MAX_CELLS)),
        tooltip,
        href: ctx.labeller.step_href(&step.id),
        extra_class: ctx.labeller.step_class(&step.id),
    };

    // The lanes, in the order the layout draws them (left to right), children built in the
    // canonical order (`each`, then the branches in file order) so that indexes follow it.
    let mut lanes: Vec<(usize, Lane<'a>)> = Vec::new();
    let mut exhaustive = false;
    if !step.each.is_empty() {
        let (label, style) = match action {
            "flow.section" => ("section".to_string(), LaneStyle::Group),
            "flow.wait" => ("after the wait".to_string(), LaneStyle::Group),
            "flow.try_catch" => ("try".to_string(), LaneStyle::Try),
            _ => (
                iteration_label(step, None).unwrap_or_else(|| "for each output".to_string()),
                LaneStyle::Loop,
            ),
        };
        exhaustive = matches!(style, LaneStyle::Group);
        lanes.push((
            0,
            Lane {
                label,
                style,
                chain: chain(&step.each, ctx),
            },
        ));
    }
    for (key, steps) in &step.branches {
        let is_catch = action == "flow.try_catch" && key == "catch";
        if is_catch {
            ctx.catches.push(step.id.clone());
        }
        let chain = chain(steps, ctx);
        if is_catch {
            ctx.catches.pop();
        }
        let (label, style, order) = match (action, key.as_str()) {
            ("flow.if_then_else", "true") => ("true".to_string(), LaneStyle::Plain, 0),
            ("flow.if_then_else", "false") => ("false".to_string(), LaneStyle::Plain, 1),
            ("flow.case", "else") => ("else".to_string(), LaneStyle::Plain, 2),
            ("flow.case", k) => (format!("= {k}"), LaneStyle::Plain, 1),
            ("flow.try_catch", "try") => ("try".to_string(), LaneStyle::Try, 0),
            ("flow.try_catch", "catch") => ("catch (on error)".to_string(), LaneStyle::Catch, 1),
            ("flow.section", k) => (
                if k == "nested_section" {
                    "section".to_string()
                } else {
                    k.to_string()
                },
                LaneStyle::Group,
                1,
            ),
            ("flow.wait", _) => ("after the wait".to_string(), LaneStyle::Group, 1),
            ("flow.loop", _) | ("flow.batch", _) => (
                iteration_label(step, Some(key)).unwrap_or_default(),
                LaneStyle::Loop,
                1,
            ),
            (_, k) => match iteration_label(step, Some(k)) {
                Some(l) => (l, LaneStyle::Loop, 1),
                None => (k.to_string(), LaneStyle::Plain, 1),
            },
        };
        lanes.push((
            order,
            Lane {
                label: truncate(&label, MAX_CELLS),
                style,
                chain,
            },
        ));
    }
    let empty = |label: &str, style| Lane {
        label: label.to_string(),
        style,
        chain: Vec::new(),
    };
    let has = |lanes: &[(usize, Lane<'_>)], l: &str| lanes.iter().any(|(_, x)| x.label == l);
    match action {
        "flow.if_then_else" => {
            // Both outcomes are drawn; a missing branch is a pass-through.
            if !has(&lanes, "true") {
                lanes.push((0, empty("true", LaneStyle::Plain)));
            }
            let include_false = !literal_false(step.input.get("include_false_path"));
            if include_false && !has(&lanes, "false") {
                lanes.push((1, empty("false", LaneStyle::Plain)));
            }
            exhaustive = include_false;
        }
        "flow.case" => {
            let include_else = !literal_false(step.input.get("include_else_path"));
            if include_else && !has(&lanes, "else") {
                lanes.push((2, empty("else", LaneStyle::Plain)));
            }
            // Only the matches with a branch are drawn: exhaustive only when all are.
            let matches = step.input.get("matches").and_then(Value::as_array);
            exhaustive = include_else
                && matches.is_some_and(|m| {
                    m.iter().all(|v| {
                        let k = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        step.branches.contains_key(&k)
                    })
                });
        }
        "flow.try_catch" => {
            if !has(&lanes, "try") {
                lanes.push((0, empty("try", LaneStyle::Try)));
            }
            if !has(&lanes, "catch (on error)") {
                lanes.push((1, empty("catch (on error)", LaneStyle::Catch)));
            }
            // A failing `try` goes on in `catch`; the try-catch stops the chain only when
            // `catch` does and `try` does too.
            exhaustive = true;
        }
        "flow.section" | "flow.wait" => exhaustive = true,
        _ => {}
    }
    // Stable: equal orders keep file order.
    lanes.sort_by_key(|(order, _)| *order);
    Block {
        node,
        lanes: lanes.into_iter().map(|(_, l)| l).collect(),
        exhaustive,
    }
}

fn trigger_node<'a>(t: &TriggerDef) -> Node<'a> {
    let kind = format!("{}.{}", t.connector, t.kind);
    let config = &t.config;
    let schedule = || -> Option<String> {
        if let Some(cron) = config.get("cron").and_then(Value::as_str) {
            return Some(format!("cron {cron}"));
        }
        let s = config.get("schedule")?;
        let mut out = s.get("frequency")?.as_str()?.to_string();
        if let Some(n) = s.get("interval").and_then(Value::as_u64).filter(|n| *n > 1) {
            out = format!("every {n} × {out}");
        }
        if let Some(at) = s.get("time_of_day").and_then(|v| expr_text(Some(v))) {
            out.push_str(" at ");
            out.push_str(&at);
        }
        Some(out)
    };
    let detail = if t.connector == "scheduler" {
        schedule()
    } else {
        None
    }
    .or_else(|| t.connection.as_ref().map(|c| format!("via {c}")));
    let mut tooltip = format!("Trigger — {kind}");
    if let Some(d) = &t.description {
        tooltip.push('\n');
        tooltip.push_str(d);
    }
    if let Some(d) = &detail {
        tooltip.push('\n');
        tooltip.push_str(d);
    }
    Node {
        step: None,
        index: 0,
        shape: Shape::Trigger,
        name: "Trigger".to_string(),
        kind: truncate(&kind, MAX_CELLS),
        detail: detail.map(|d| truncate(&d, MAX_CELLS)),
        tooltip,
        href: None,
        extra_class: None,
    }
}

/// The text alternative of the whole diagram: the trigger, then the steps as an outline.
pub(crate) fn outline(tree: &Tree<'_>) -> String {
    fn chain(blocks: &[Block<'_>], out: &mut String) {
        for (i, b) in blocks.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            if let Some(s) = b.node.step {
                out.push_str(&one_line(&s.id));
                out.push_str(" (");
                out.push_str(&one_line(&s.action));
                out.push(')');
            }
            if !b.lanes.is_empty() {
                out.push_str(" [");
                for (j, lane) in b.lanes.iter().enumerate() {
                    if j > 0 {
                        out.push_str(" | ");
                    }
                    out.push_str(&lane.label);
                    out.push_str(": ");
                    if lane.chain.is_empty() {
                        out.push_str("nothing");
                    } else {
                        chain(&lane.chain, out);
                    }
                }
                out.push(']');
            }
        }
    }
    let mut out = format!("Trigger {}", tree.trigger.kind);
    if let Some(d) = &tree.trigger.detail {
        out.push_str(", ");
        out.push_str(d);
    }
    out.push_str(&format!(
        ". {} step{}: ",
        tree.step_count,
        if tree.step_count == 1 { "" } else { "s" }
    ));
    chain(&tree.steps, &mut out);
    out.push('.');
    out
}
