//! The in-memory model of a solution: its environment, connections and runbooks, as loaded from
//! files by [`crate::loader::load_solution`].
//!
//! Every element carries a [`Span`] (`file:line`) so that later validation stages can report
//! problems against the YAML the user wrote.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::schema::Field;

/// A position in a solution file: the file and a 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span {
    /// The file, as the loader found it (the solution directory joined with the relative path).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl Span {
    /// A span at `line` of `file`.
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Span {
        Span {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A loaded solution: the contents of `solution.yaml` plus every runbook under `runbooks/`.
#[derive(Clone, Debug)]
pub struct Solution {
    /// Solution name (`[a-z0-9_-]`, 1..64 characters); unique per server.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The directory the solution was loaded from.
    pub dir: PathBuf,
    /// Environment variables in file order, keyed by name.
    pub env: IndexMap<String, EnvVar>,
    /// Connections in file order, keyed by name.
    pub connections: IndexMap<String, ConnectionDef>,
    /// Runbooks keyed by runbook name, in file-name order.
    pub runbooks: IndexMap<String, Runbook>,
    /// The `app_offering` setting: where the Xurrent App Offering files are and whether
    /// `ferry serve` applies them.
    pub app_offering: Option<AppOfferingSetting>,
    /// Where the solution is defined (`solution.yaml`, line 1).
    pub span: Span,
}

/// `app_offering` in `solution.yaml`: the Xurrent App Offering kept as files in the solution
/// (`ferry xurrent app export|apply`, crate `ferry-xurrent-offering`).
#[derive(Clone, Debug, PartialEq)]
pub struct AppOfferingSetting {
    /// The outbound `xurrent` connection of the provider account.
    pub connection: String,
    /// The offering folder (absolute: the solution directory joined with `dir`, default
    /// `app_offering`).
    pub dir: PathBuf,
    /// Apply the files to the account when `ferry serve` starts, before triggers are provisioned.
    pub apply_on_serve: bool,
    /// Where it is declared.
    pub span: Span,
}

impl Solution {
    /// The `env` object that expressions see: variable name → value. Secret variables are
    /// included with their plaintext, so never log or return the result.
    pub fn env_context(&self) -> Value {
        Value::Object(
            self.env
                .iter()
                .map(|(name, var)| (name.clone(), var.value.clone()))
                .collect(),
        )
    }

    /// Plaintext values of all secret environment variables (non-empty strings only), e.g. for
    /// redacting them from logs and error messages.
    pub fn secret_values(&self) -> Vec<&str> {
        self.env
            .values()
            .filter(|v| v.secret)
            .filter_map(|v| v.value.as_str())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// One environment variable of a solution.
#[derive(Clone)]
pub struct EnvVar {
    /// Variable name (the key under `env:`).
    pub name: String,
    /// The value. For secrets this is the plaintext read at load time (from the process
    /// environment for `from_env`), so it must never be printed; `Debug` redacts it.
    pub value: Value,
    /// Whether the value is a secret.
    pub secret: bool,
    /// The process environment variable the value was read from, if any.
    pub from_env: Option<String>,
    /// Where the variable is declared.
    pub span: Span,
}

impl fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("EnvVar");
        d.field("name", &self.name);
        if self.secret {
            d.field("value", &"<redacted>");
        } else {
            d.field("value", &self.value);
        }
        d.field("secret", &self.secret)
            .field("from_env", &self.from_env)
            .field("span", &self.span)
            .finish()
    }
}

/// Direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Authenticates incoming requests (used by triggers).
    Inbound,
    /// Used by actions to call out.
    Outbound,
}

impl Direction {
    /// The YAML spelling: `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured connection (`connections.<name>` in `solution.yaml`).
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionDef {
    /// Connection name (the key under `connections:`).
    pub name: String,
    /// Connector name, e.g. `json_endpoint`.
    pub connector: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Free text.
    pub description: Option<String>,
    /// Connector-specific configuration, unresolved: values may contain `{{ env.X }}`
    /// expressions (see [`crate::mapping`]). Always a JSON object.
    pub config: Value,
    /// Where the connection is declared.
    pub span: Span,
    /// Line of every configuration value, keyed by path inside `config` (`"headers.0.value"`).
    pub config_spans: BTreeMap<String, Span>,
}

/// Runbook concurrency mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// One job at a time per runbook.
    PerRunbook,
    /// One job at a time per job context identifier.
    PerJobContext,
}

/// One runbook (one file under `runbooks/`).
#[derive(Clone, Debug, Serialize)]
pub struct Runbook {
    /// Runbook name, unique in the solution (`[a-z0-9_-]`, 1..64).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The file the runbook was loaded from.
    pub file: PathBuf,
    /// Optional concurrency mode.
    pub concurrency: Option<Concurrency>,
    /// Typed runbook variables.
    pub variables: Vec<Field>,
    /// The trigger.
    pub trigger: TriggerDef,
    /// The top-level step chain (non-empty).
    pub steps: Vec<StepDef>,
    /// Where the runbook is defined (its file, line 1).
    pub span: Span,
}

impl Runbook {
    /// All steps depth first in the canonical order of spec §2.3, each with its parent:
    /// `None` for top-level steps, else `Some((parent_step_id, branch_key))` where the branch key
    /// is `"each"` for `each:` children or the key under `branches:`.
    ///
    /// A step comes first, then its nested steps (the `each` chain, or every branch in file
    /// order), then the next step of the same chain.
    pub fn walk(&self) -> Vec<(&StepDef, Option<(&str, &str)>)> {
        fn visit<'a>(
            chain: &'a [StepDef],
            parent: Option<(&'a str, &'a str)>,
            out: &mut Vec<(&'a StepDef, Option<(&'a str, &'a str)>)>,
        ) {
            for step in chain {
                out.push((step, parent));
                visit(&step.each, Some((step.id.as_str(), "each")), out);
                for (key, branch) in &step.branches {
                    visit(branch, Some((step.id.as_str(), key.as_str())), out);
                }
            }
        }
        let mut out = Vec::new();
        visit(&self.steps, None, &mut out);
        out
    }

    /// The step with this id, at any depth.
    pub fn step(&self, id: &str) -> Option<&StepDef> {
        fn find<'a>(chain: &'a [StepDef], id: &str) -> Option<&'a StepDef> {
            for step in chain {
                if step.id == id {
                    return Some(step);
                }
                if let Some(found) = find(&step.each, id) {
                    return Some(found);
                }
                for branch in step.branches.values() {
                    if let Some(found) = find(branch, id) {
                        return Some(found);
                    }
                }
            }
            None
        }
        find(&self.steps, id)
    }

    /// The ids of the nested steps enclosing step `id`, innermost first (empty for a top-level
    /// step or an unknown id).
    pub fn ancestors(&self, id: &str) -> Vec<&str> {
        let walk = self.walk();
        let mut out = Vec::new();
        let mut current = id;
        while let Some((_, Some((parent, _)))) = walk.iter().find(|(s, _)| s.id == current) {
            out.push(*parent);
            current = parent;
        }
        out
    }
}

/// The trigger of a runbook.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerDef {
    /// Connector name, e.g. `json_endpoint`.
    pub connector: String,
    /// Trigger type within the connector (YAML key `type`), e.g. `endpoint`.
    pub kind: String,
    /// Optional inbound connection name.
    pub connection: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Trigger-type specific configuration (always a JSON object). May contain expressions where
    /// the trigger type allows them (`discard_if`, `deduplication_id`, …).
    pub config: Value,
    /// Where the trigger is declared (the `trigger:` key).
    pub span: Span,
    /// Line of every configuration value, keyed by path inside `config` (`"body_schema.0.id"`).
    pub config_spans: BTreeMap<String, Span>,
}

/// One step of a runbook.
#[derive(Clone, Debug, Serialize)]
pub struct StepDef {
    /// Step id, unique in the runbook (`[A-Za-z0-9_-]`, 1..64).
    pub id: String,
    /// `"<connector>.<action>"`, e.g. `debug.log_message`.
    pub action: String,
    /// Free text.
    pub description: Option<String>,
    /// Optional outbound connection name.
    pub connection: Option<String>,
    /// Input mapping (values may contain expressions). A JSON object, `{}` when absent.
    pub input: Value,
    /// Steps run for every output of this step (`each:`).
    pub each: Vec<StepDef>,
    /// Steps run per named output branch (`branches:`), keys as strings in file order.
    pub branches: IndexMap<String, Vec<StepDef>>,
    /// Where the step is declared (the list item).
    pub span: Span,
    /// Line of every input value, keyed by path inside `input` (`"headers.0.value"`).
    pub input_spans: BTreeMap<String, Span>,
}

impl StepDef {
    /// The connector part of `action` (before the first `.`).
    pub fn connector(&self) -> &str {
        self.action.split_once('.').map_or("", |(c, _)| c)
    }

    /// The action part of `action` (after the first `.`).
    pub fn action_name(&self) -> &str {
        self.action.split_once('.').map_or("", |(_, a)| a)
    }

    /// Whether this step has nested steps (`each` or `branches`).
    pub fn is_nested(&self) -> bool {
        !self.each.is_empty() || !self.branches.is_empty()
    }

    /// The span of an input field path (`"headers.0.value"`), falling back to the closest
    /// enclosing path and finally to the step itself.
    pub fn input_span(&self, path: &str) -> &Span {
        closest_span(&self.input_spans, path).unwrap_or(&self.span)
    }
}

impl TriggerDef {
    /// The span of a config path (`"body_schema.0.id"`), falling back to the closest enclosing
    /// path and finally to the trigger itself.
    pub fn config_span(&self, path: &str) -> &Span {
        closest_span(&self.config_spans, path).unwrap_or(&self.span)
    }
}

impl ConnectionDef {
    /// The span of a config path, falling back to the closest enclosing path and finally to the
    /// connection itself.
    pub fn config_span(&self, path: &str) -> &Span {
        closest_span(&self.config_spans, path).unwrap_or(&self.span)
    }
}

/// Look up `path`, then its parents (`a.b.c` → `a.b` → `a`).
fn closest_span<'a>(spans: &'a BTreeMap<String, Span>, path: &str) -> Option<&'a Span> {
    let mut p = path;
    loop {
        if let Some(s) = spans.get(p) {
            return Some(s);
        }
        match p.rfind('.') {
            Some(i) => p = &p[..i],
            None => return None,
        }
    }
}
