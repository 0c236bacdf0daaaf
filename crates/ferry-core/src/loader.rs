//! Loading a solution directory (`solution.yaml` + `runbooks/*.yaml`) into the [`model`](crate::model).
//!
//! The loader reports every structural problem it can find as a [`Diagnostic`] with `file:line`.
//! Line numbers come from yaml-rust2's event parser (a map from key path to line); the values
//! themselves are read with serde_yaml. Checks done here:
//!
//! - YAML syntax errors (with their line);
//! - missing required keys, wrong value types, unknown keys (listing the allowed ones);
//! - names: solution/runbook `[a-z0-9_-]{1,64}`, step ids `[A-Za-z0-9_-]{1,64}`,
//!   connection names `[A-Za-z0-9_-]{1,64}`, env var names `[A-Za-z_][A-Za-z0-9_]{0,63}`;
//! - duplicate runbook names, duplicate step ids, duplicate runbook variable ids;
//! - connections referenced by triggers/steps must exist and have the right direction;
//! - a step cannot have both `each` and `branches`; a runbook needs at least one step;
//! - secret env vars with `from_env` must be set in the process environment (or have a `default`);
//! - expressions in trigger config, step inputs and connection config must compile, may only
//!   reference known steps (`steps.<id>`), and connection config may only use `env`.
//!
//! Checks that need connector knowledge (unknown action types, missing required inputs) are
//! left to the engine, which can use the spans recorded on the model.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::mapping::{Expressions, Mapping, MappingError};
use crate::model::{
    AppOfferingSetting, Concurrency, ConnectionDef, Direction, EnvVar, Runbook, Solution, Span,
    StepDef, TriggerDef,
};
use crate::schema::Field;

/// One problem found while loading, with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub span: Span,
    /// What is wrong, in plain words.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Maximum length of solution, runbook, connection and step names.
pub const MAX_NAME_LEN: usize = 64;

const SOLUTION_KEYS: &[&str] = &["name", "description", "env", "connections", "app_offering"];
const APP_OFFERING_KEYS: &[&str] = &["connection", "dir", "apply_on_serve"];
const ENV_DECL_KEYS: &[&str] = &["secret", "from_env", "default", "value", "description"];
const CONNECTION_KEYS: &[&str] = &["connector", "direction", "description", "config"];
const RUNBOOK_KEYS: &[&str] = &[
    "name",
    "description",
    "concurrency",
    "variables",
    "trigger",
    "steps",
];
const TRIGGER_KEYS: &[&str] = &["connector", "type", "connection", "description", "config"];
const STEP_KEYS: &[&str] = &[
    "id",
    "description",
    "action",
    "connection",
    "input",
    "each",
    "branches",
];

/// Load and check the solution in `dir`. Returns the solution, or every problem found.
pub fn load_solution(dir: &Path) -> Result<Solution, Vec<Diagnostic>> {
    load_solution_with_env(dir, &|name| std::env::var(name).ok())
}

/// Like [`load_solution`], but reads `from_env` variables through `lookup` instead of the
/// process environment (useful for tests and for embedding).
pub fn load_solution_with_env(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Solution, Vec<Diagnostic>> {
    match load_partial_with_env(dir, lookup) {
        (Some(sol), diags) if diags.is_empty() => {
            tracing::debug!(
                solution = %sol.name,
                runbooks = sol.runbooks.len(),
                "loaded solution from {}",
                dir.display()
            );
            Ok(sol)
        }
        (_, diags) => Err(diags),
    }
}

fn load_partial_with_env(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Option<Solution>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let exprs = Expressions::new();
    let solution_file = dir.join("solution.yaml");
    let mut solution = match read_yaml(&solution_file, &mut diags) {
        Some(doc) => {
            let mut cx = Cx {
                doc: &doc,
                diags: &mut diags,
            };
            parse_solution(&mut cx, dir, lookup)
        }
        None => None,
    };

    let runbook_files = list_runbook_files(dir, &mut diags);
    let mut runbooks: IndexMap<String, Runbook> = IndexMap::new();
    for file in runbook_files {
        let Some(doc) = read_yaml(&file, &mut diags) else {
            continue;
        };
        let mut cx = Cx {
            doc: &doc,
            diags: &mut diags,
        };
        if let Some(rb) = parse_runbook(&mut cx) {
            if let Some(first) = runbooks.get(&rb.name) {
                let msg = format!(
                    "duplicate runbook name '{}' (also defined in {})",
                    rb.name, first.span
                );
                cx.err_at(doc.span_of("name"), msg);
            } else {
                runbooks.insert(rb.name.clone(), rb);
            }
        }
    }

    if let Some(sol) = &solution {
        check_connection_config(sol, &exprs, &mut diags);
    }
    for rb in runbooks.values() {
        check_runbook_refs(solution.as_ref(), rb, &exprs, &mut diags);
    }
    if let Some(sol) = solution.as_mut() {
        sol.runbooks = runbooks;
    }

    diags.sort_by(|a, b| a.span.cmp(&b.span));
    diags.dedup();
    (solution, diags)
}

/// Like [`load_solution`], but returns whatever model could be built together with every
/// problem found, so that a caller (`ferry validate`) can run further checks on the parts that
/// did load and report everything at once. The solution is `None` only when `solution.yaml`
/// itself could not be read.
pub fn load_solution_partial(dir: &Path) -> (Option<Solution>, Vec<Diagnostic>) {
    load_partial_with_env(dir, &|name| std::env::var(name).ok())
}

// ---------------------------------------------------------------------------------------------
// YAML reading: serde_yaml for values, yaml-rust2 events for line numbers.

/// A parsed YAML file: the value (as JSON) and the line of every path.
struct Doc {
    file: PathBuf,
    value: Value,
    lines: HashMap<String, usize>,
}

impl Doc {
    /// Span of `path` (dot separated, list indices as numbers), falling back to the closest
    /// enclosing path, then line 1.
    fn span_of(&self, path: &str) -> Span {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Span::new(&self.file, *line);
            }
            if p.is_empty() {
                return Span::new(&self.file, 1);
            }
            p = match p.rfind('.') {
                Some(i) => &p[..i],
                None => "",
            };
        }
    }

    /// All spans under `prefix` (a path), keyed by the path relative to it.
    fn spans_under(&self, prefix: &str) -> BTreeMap<String, Span> {
        let dotted = format!("{prefix}.");
        self.lines
            .iter()
            .filter_map(|(path, line)| {
                path.strip_prefix(&dotted)
                    .map(|rel| (rel.to_string(), Span::new(&self.file, *line)))
            })
            .collect()
    }
}

/// A YAML file of a solution read with the line of every path, for file formats beside the
/// solution and runbooks (e.g. test cases): the same parsing and diagnostics as the loader.
pub struct YamlFile(Doc);

impl YamlFile {
    /// Read and parse `file` (one document; duplicate keys, tags and merge errors are
    /// diagnostics with their line).
    pub fn read(file: &Path) -> Result<YamlFile, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        match read_yaml(file, &mut diags) {
            Some(doc) if diags.is_empty() => Ok(YamlFile(doc)),
            _ => Err(diags),
        }
    }

    /// The content as JSON (mapping keys as strings).
    pub fn value(&self) -> &Value {
        &self.0.value
    }

    /// Where `path` is (dot separated, list indices as numbers), else its closest parent.
    pub fn span_of(&self, path: &str) -> Span {
        self.0.span_of(path)
    }
}

fn read_yaml(file: &Path, diags: &mut Vec<Diagnostic>) -> Option<Doc> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic {
                span: Span::new(file, 1),
                message: format!("cannot read file: {e}"),
            });
            return None;
        }
    };
    parse_yaml(file, &text, diags)
}

fn parse_yaml(file: &Path, text: &str, diags: &mut Vec<Diagnostic>) -> Option<Doc> {
    let mut recv = LineRecorder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut recv, true) {
        // Errors at the end of input point past the last line; report the last line.
        let last_line = text.lines().count().max(1);
        diags.push(Diagnostic {
            span: Span::new(file, e.marker().line().clamp(1, last_line)),
            message: format!("YAML syntax error: {}", e.info()),
        });
        return None;
    }
    if !recv.duplicates.is_empty() {
        for (key, line, first) in recv.duplicates {
            diags.push(Diagnostic {
                span: Span::new(file, line),
                message: format!("duplicate key '{key}' (first at line {first})"),
            });
        }
        return None;
    }
    if recv.documents > 1 {
        diags.push(Diagnostic {
            span: Span::new(file, recv.second_document_line.max(1)),
            message: "a file must contain a single YAML document".to_string(),
        });
        return None;
    }
    let mut yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map_or(1, |l| l.line().max(1));
            let msg = e.to_string();
            // serde_yaml appends " at line X column Y"; the span already says where.
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            diags.push(Diagnostic {
                span: Span::new(file, line),
                message: format!("YAML error: {msg}"),
            });
            return None;
        }
    };
    // `<<: *anchor` merge keys.
    if let Err(e) = yaml.apply_merge() {
        diags.push(Diagnostic {
            span: Span::new(file, e.location().map_or(1, |l| l.line().max(1))),
            message: format!("YAML merge key error: {e}"),
        });
        return None;
    }
    let mut doc = Doc {
        file: file.to_path_buf(),
        value: Value::Null,
        lines: recv.lines,
    };
    let mut errors = Vec::new();
    doc.value = yaml_to_json(yaml, "", &mut errors);
    for (path, msg) in errors {
        diags.push(Diagnostic {
            span: doc.span_of(&path),
            message: msg,
        });
    }
    Some(doc)
}

/// Convert a serde_yaml value to JSON. Mapping keys become strings (`true:` → `"true"`,
/// `1:` → `"1"`); problems (tags, non-finite floats, complex keys) are collected with their path.
fn yaml_to_json(v: serde_yaml::Value, path: &str, errors: &mut Vec<(String, String)>) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        errors.push((path.to_string(), format!("unsupported number {n}")));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &join(path, &i.to_string()), errors))
                .collect(),
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    _ => {
                        errors.push((
                            path.to_string(),
                            "mapping keys must be plain strings".to_string(),
                        ));
                        continue;
                    }
                };
                let child = yaml_to_json(v, &join(path, &key), errors);
                out.insert(key, child);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            errors.push((
                path.to_string(),
                format!("YAML tags are not supported (found {})", t.tag),
            ));
            Value::Null
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

/// Records the line of every key path from yaml-rust2 events. A mapping value's path maps to
/// the line of its key; a list item's path maps to the line where the item starts.
#[derive(Default)]
struct LineRecorder {
    lines: HashMap<String, usize>,
    stack: Vec<Frame>,
    /// Depth of a complex (non-scalar) mapping key being skipped.
    skip: usize,
    documents: usize,
    second_document_line: usize,
    /// Keys that appear twice in one mapping: (key, line, line of the first occurrence).
    duplicates: Vec<(String, usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

impl LineRecorder {
    /// Path for a value starting now, recording list item lines; `None` if it is a map key.
    fn value_path(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => {
                self.lines.entry(String::new()).or_insert(line);
                Some(String::new())
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = join(path, &index.to_string());
                *index += 1;
                self.lines.insert(p.clone(), line);
                Some(p)
            }
        }
    }
}

/// The key string serde_yaml would produce for a plain scalar key (YAML 1.2 core schema for the
/// common cases), so that paths from both parsers agree.
fn normalize_key(s: &str, style: TScalarStyle) -> String {
    if style != TScalarStyle::Plain {
        return s.to_string();
    }
    match s {
        "true" | "True" | "TRUE" => "true".to_string(),
        "false" | "False" | "FALSE" => "false".to_string(),
        "~" | "null" | "Null" | "NULL" | "" => "null".to_string(),
        _ => match s.parse::<i64>() {
            Ok(i) => i.to_string(),
            Err(_) => s.to_string(),
        },
    }
}

impl MarkedEventReceiver for LineRecorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        if self.skip > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skip += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.skip -= 1;
                    if self.skip == 0 {
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = Some("?".to_string());
                        }
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document_line = line;
                }
            }
            Event::Scalar(value, style, ..) => match self.value_path(line) {
                Some(_) => {}
                None => {
                    // A mapping key.
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let k = normalize_key(&value, style);
                        if let Some(first) = self.lines.insert(join(path, &k), line) {
                            if self.documents <= 1 {
                                self.duplicates.push((k.clone(), line, first));
                            }
                        }
                        *key = Some(k);
                    }
                }
            },
            Event::Alias(_) if self.value_path(line).is_none() => {
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some("?".to_string());
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.value_path(line) {
                    Some(path) => self.stack.push(if is_map {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, index: 0 }
                    }),
                    None => self.skip = 1,
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Structural parsing helpers.

struct Cx<'a> {
    doc: &'a Doc,
    diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        let span = self.doc.span_of(path);
        self.err_at(span, message);
    }

    fn err_at(&mut self, span: Span, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            span,
            message: message.into(),
        });
    }

    /// The value at `path` as an object, or a diagnostic. `what` names the thing ("step").
    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        what: &str,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.err(
                    path,
                    format!(
                        "{what} must be a mapping (key: value), found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// Report keys of `obj` that are not in `allowed`.
    fn deny_unknown(&mut self, obj: &Map<String, Value>, path: &str, what: &str, allowed: &[&str]) {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(
                    &join(path, key),
                    format!(
                        "unknown key '{key}' in {what}; allowed keys: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    /// A required string key.
    fn req_str(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        what: &str,
    ) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.err(path, format!("{what} is missing required key '{key}'"));
                None
            }
            Some(v) => self.string(v, &join(path, key), key),
        }
    }

    /// An optional string key.
    fn opt_str(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, &join(path, key), key),
        }
    }

    fn string(&mut self, v: &Value, path: &str, key: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    path,
                    format!("'{key}' must be a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// An optional object key (`{}` when absent or null).
    fn opt_object(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Value {
        match obj.get(key) {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(other) => {
                self.err(
                    &join(path, key),
                    format!(
                        "'{key}' must be a mapping (key: value), found {}",
                        kind(other)
                    ),
                );
                Value::Object(Map::new())
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `[a-z0-9_-]{1,64}`: solution and runbook names.
fn is_lower_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[A-Za-z0-9_-]{1,64}`: step ids and connection names.
fn is_id(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `[A-Za-z_][A-Za-z0-9_]{0,63}`: environment variable names (usable as `env.NAME`).
fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    (1..=MAX_NAME_LEN).contains(&s.len())
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// ---------------------------------------------------------------------------------------------
// solution.yaml

fn parse_solution(
    cx: &mut Cx<'_>,
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Solution> {
    let root = cx.object(&cx.doc.value, "", "solution.yaml")?;
    cx.deny_unknown(root, "", "solution.yaml", SOLUTION_KEYS);
    let name = cx.req_str(root, "", "name", "solution.yaml");
    if let Some(n) = &name {
        if !is_lower_name(n) {
            cx.err(
                "name",
                format!("invalid solution name '{n}': use 1 to 64 characters from a-z, 0-9, '_' and '-'"),
            );
        }
    }
    let description = cx.opt_str(root, "", "description");

    let mut env = IndexMap::new();
    match root.get("env") {
        None | Some(Value::Null) => {}
        Some(v) => {
            if let Some(obj) = cx.object(v, "env", "'env'") {
                for (var, decl) in obj {
                    if let Some(ev) = parse_env_var(cx, var, decl, lookup) {
                        env.insert(var.clone(), ev);
                    }
                }
            }
        }
    }

    let mut connections = IndexMap::new();
    match root.get("connections") {
        None | Some(Value::Null) => {}
        Some(v) => {
            if let Some(obj) = cx.object(v, "connections", "'connections'") {
                for (cname, def) in obj {
                    if let Some(c) = parse_connection(cx, cname, def) {
                        connections.insert(cname.clone(), c);
                    }
                }
            }
        }
    }

    let app_offering = parse_app_offering(cx, root, dir, &connections);

    Some(Solution {
        name: name?,
        description,
        dir: dir.to_path_buf(),
        env,
        connections,
        runbooks: IndexMap::new(),
        app_offering,
        span: Span::new(&cx.doc.file, 1),
    })
}

/// `app_offering: {connection, dir, apply_on_serve}`.
fn parse_app_offering(
    cx: &mut Cx<'_>,
    root: &Map<String, Value>,
    dir: &Path,
    connections: &IndexMap<String, ConnectionDef>,
) -> Option<AppOfferingSetting> {
    let v = root.get("app_offering").filter(|v| !v.is_null())?;
    let obj = cx.object(v, "app_offering", "'app_offering'")?;
    cx.deny_unknown(obj, "app_offering", "app_offering", APP_OFFERING_KEYS);
    let connection = cx.req_str(obj, "app_offering", "connection", "app_offering")?;
    if !connections.contains_key(&connection) {
        let known: Vec<&str> = connections.keys().map(String::as_str).collect();
        cx.err(
            "app_offering.connection",
            format!(
                "app_offering.connection '{connection}' is not a connection of this solution (it has: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        );
    }
    let folder = cx
        .opt_str(obj, "app_offering", "dir")
        .unwrap_or_else(|| "app_offering".to_string());
    if Path::new(&folder).is_absolute() || folder.split(['/', '\\']).any(|p| p == "..") {
        cx.err(
            "app_offering.dir",
            format!("app_offering.dir '{folder}' must be a folder inside the solution (relative, without '..')"),
        );
    }
    let apply_on_serve = match obj.get("apply_on_serve") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            cx.err(
                "app_offering.apply_on_serve",
                format!(
                    "app_offering.apply_on_serve must be true or false, found {}",
                    kind(other)
                ),
            );
            false
        }
    };
    Some(AppOfferingSetting {
        connection,
        dir: dir.join(folder),
        apply_on_serve,
        span: cx.doc.span_of("app_offering"),
    })
}

fn parse_env_var(
    cx: &mut Cx<'_>,
    name: &str,
    decl: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<EnvVar> {
    let path = format!("env.{name}");
    let span = cx.doc.span_of(&path);
    if !is_env_name(name) {
        cx.err(
            &path,
            format!("invalid environment variable name '{name}': use 1 to 64 characters from A-Z, a-z, 0-9 and '_', not starting with a digit"),
        );
    }
    // A mapping with `secret` or `from_env` is a declaration; anything else is a plain value.
    let obj = match decl {
        Value::Object(m) if m.contains_key("secret") || m.contains_key("from_env") => m,
        plain => {
            return Some(EnvVar {
                name: name.to_string(),
                value: plain.clone(),
                secret: false,
                from_env: None,
                span,
            })
        }
    };
    cx.deny_unknown(
        obj,
        &path,
        &format!("environment variable '{name}'"),
        ENV_DECL_KEYS,
    );
    let secret = match obj.get("secret") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            cx.err(
                &join(&path, "secret"),
                format!("'secret' must be true or false, found {}", kind(other)),
            );
            false
        }
    };
    let from_env = cx.opt_str(obj, &path, "from_env");
    if from_env.is_some() && obj.contains_key("value") {
        cx.err(
            &join(&path, "value"),
            format!("environment variable '{name}' has both 'from_env' and 'value'; use 'default' for a fallback"),
        );
    }
    if from_env.is_none() && obj.contains_key("default") {
        cx.err(
            &join(&path, "default"),
            format!(
                "'default' of environment variable '{name}' only applies together with 'from_env'"
            ),
        );
    }
    let value = match &from_env {
        Some(var) => match lookup(var) {
            Some(v) => Value::String(v),
            None => match obj.get("default") {
                Some(d) if !d.is_null() => d.clone(),
                _ => {
                    cx.err(
                        &join(&path, "from_env"),
                        format!("environment variable '{name}': the process environment variable {var} is not set"),
                    );
                    Value::Null
                }
            },
        },
        None => match obj.get("value") {
            Some(v) => v.clone(),
            None => {
                cx.err(
                    &path,
                    format!("environment variable '{name}' needs 'from_env' or 'value'"),
                );
                Value::Null
            }
        },
    };
    if secret && !value.is_string() && !value.is_null() {
        cx.err(
            &path,
            format!("secret environment variable '{name}' must have a string value"),
        );
    }
    Some(EnvVar {
        name: name.to_string(),
        value,
        secret,
        from_env,
        span,
    })
}

fn parse_connection(cx: &mut Cx<'_>, name: &str, def: &Value) -> Option<ConnectionDef> {
    let path = format!("connections.{name}");
    let what = format!("connection '{name}'");
    if !is_id(name) {
        cx.err(
            &path,
            format!("invalid connection name '{name}': use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"),
        );
    }
    let obj = cx.object(def, &path, &what)?;
    cx.deny_unknown(obj, &path, &what, CONNECTION_KEYS);
    let connector = cx.req_str(obj, &path, "connector", &what);
    let direction = match cx.req_str(obj, &path, "direction", &what).as_deref() {
        Some("inbound") => Some(Direction::Inbound),
        Some("outbound") => Some(Direction::Outbound),
        Some(other) => {
            cx.err(
                &join(&path, "direction"),
                format!("direction must be one of \"inbound\", \"outbound\" (found '{other}')"),
            );
            None
        }
        None => None,
    };
    let description = cx.opt_str(obj, &path, "description");
    let config = cx.opt_object(obj, &path, "config");
    Some(ConnectionDef {
        name: name.to_string(),
        connector: connector?,
        direction: direction?,
        description,
        config,
        span: cx.doc.span_of(&path),
        config_spans: cx.doc.spans_under(&join(&path, "config")),
    })
}

// ---------------------------------------------------------------------------------------------
// runbooks/*.yaml

fn list_runbook_files(dir: &Path, diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let rb_dir = dir.join("runbooks");
    let entries = match std::fs::read_dir(&rb_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.push(Diagnostic {
                span: Span::new(&rb_dir, 1),
                message: format!("cannot read the runbooks directory: {e}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            !hidden
                && p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    files.sort();
    files
}

fn parse_runbook(cx: &mut Cx<'_>) -> Option<Runbook> {
    let root = cx.object(&cx.doc.value, "", "a runbook file")?;
    cx.deny_unknown(root, "", "runbook", RUNBOOK_KEYS);
    let name = cx.req_str(root, "", "name", "runbook");
    if let Some(n) = &name {
        if !is_lower_name(n) {
            cx.err(
                "name",
                format!(
                    "invalid runbook name '{n}': use 1 to 64 characters from a-z, 0-9, '_' and '-'"
                ),
            );
        }
    }
    let description = cx.opt_str(root, "", "description");
    let concurrency = match cx.opt_str(root, "", "concurrency").as_deref() {
        None => None,
        Some("per_runbook") => Some(Concurrency::PerRunbook),
        Some("per_job_context") | Some("per_job_context_identifier") => {
            Some(Concurrency::PerJobContext)
        }
        Some(other) => {
            cx.err(
                "concurrency",
                format!(
                    "concurrency must be one of: per_runbook, per_job_context (found '{other}')"
                ),
            );
            None
        }
    };
    let variables = parse_variables(cx, root);
    let trigger = match root.get("trigger") {
        None | Some(Value::Null) => {
            cx.err("", "runbook is missing required key 'trigger'");
            None
        }
        Some(v) => parse_trigger(cx, v),
    };

    let mut seen: HashMap<String, Span> = HashMap::new();
    let steps = match root.get("steps") {
        None | Some(Value::Null) => {
            cx.err("", "No actions are connected to the trigger.");
            Vec::new()
        }
        Some(Value::Array(items)) if items.is_empty() => {
            cx.err("steps", "No actions are connected to the trigger.");
            Vec::new()
        }
        Some(v) => parse_chain(cx, v, "steps", &mut seen),
    };

    Some(Runbook {
        name: name?,
        description,
        file: cx.doc.file.clone(),
        concurrency,
        variables,
        trigger: trigger?,
        steps,
        span: Span::new(&cx.doc.file, 1),
    })
}

fn parse_variables(cx: &mut Cx<'_>, root: &Map<String, Value>) -> Vec<Field> {
    let items = match root.get("variables") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            cx.err(
                "variables",
                format!(
                    "'variables' must be a list of fields, found {}",
                    kind(other)
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Field> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("variables.{i}");
        match serde_json::from_value::<Field>(item.clone()) {
            Ok(field) => {
                for problem in field.check_definition() {
                    cx.err(&path, format!("runbook variable '{}': {problem}", field.id));
                }
                if out.iter().any(|f| f.id == field.id) {
                    cx.err(
                        &path,
                        format!("Runbook variable '{}' is defined more than once", field.id),
                    );
                } else {
                    out.push(field);
                }
            }
            Err(e) => cx.err(&path, format!("invalid runbook variable: {e}")),
        }
    }
    out
}

fn parse_trigger(cx: &mut Cx<'_>, v: &Value) -> Option<TriggerDef> {
    let obj = cx.object(v, "trigger", "'trigger'")?;
    cx.deny_unknown(obj, "trigger", "trigger", TRIGGER_KEYS);
    let connector = cx.req_str(obj, "trigger", "connector", "trigger");
    let kind = cx.req_str(obj, "trigger", "type", "trigger");
    let connection = cx.opt_str(obj, "trigger", "connection");
    let description = cx.opt_str(obj, "trigger", "description");
    let config = cx.opt_object(obj, "trigger", "config");
    Some(TriggerDef {
        connector: connector?,
        kind: kind?,
        connection,
        description,
        config,
        span: cx.doc.span_of("trigger"),
        config_spans: cx.doc.spans_under("trigger.config"),
    })
}

/// Parse a list of steps at `path`; `seen` collects step ids of the whole runbook.
fn parse_chain(
    cx: &mut Cx<'_>,
    v: &Value,
    path: &str,
    seen: &mut HashMap<String, Span>,
) -> Vec<StepDef> {
    let items = match v {
        Value::Array(items) => items,
        other => {
            cx.err(
                path,
                format!("expected a list of steps, found {}", kind(other)),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_step(cx, item, &format!("{path}.{i}"), seen))
        .collect()
}

fn parse_step(
    cx: &mut Cx<'_>,
    v: &Value,
    path: &str,
    seen: &mut HashMap<String, Span>,
) -> Option<StepDef> {
    let obj = cx.object(v, path, "a step")?;
    let span = cx.doc.span_of(path);
    let id = cx.req_str(obj, path, "id", "step");
    let what = match &id {
        Some(id) => format!("step '{id}'"),
        None => "step".to_string(),
    };
    cx.deny_unknown(obj, path, &what, STEP_KEYS);
    if let Some(id) = &id {
        if !is_id(id) {
            cx.err(
                &join(path, "id"),
                format!("invalid step id '{id}': use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"),
            );
        }
        let id_span = cx.doc.span_of(&join(path, "id"));
        if let Some(first) = seen.get(id) {
            let msg = format!(
                "duplicate step id '{id}' (first used at line {})",
                first.line
            );
            cx.err_at(id_span, msg);
        } else {
            seen.insert(id.clone(), id_span);
        }
    }
    let action = cx.req_str(obj, path, "action", &what);
    if let Some(a) = &action {
        let valid = a
            .split_once('.')
            .is_some_and(|(c, n)| !c.is_empty() && !n.is_empty());
        if !valid {
            cx.err(
                &join(path, "action"),
                format!("{what}: action must look like '<connector>.<action>' (found '{a}')"),
            );
        }
    }
    let connection = cx.opt_str(obj, path, "connection");
    let description = cx.opt_str(obj, path, "description");
    let input = cx.opt_object(obj, path, "input");

    let has_each = obj.get("each").is_some_and(|v| !v.is_null());
    let has_branches = obj.get("branches").is_some_and(|v| !v.is_null());
    if has_each && has_branches {
        cx.err(
            path,
            format!("{what} has both 'each' and 'branches'; use 'each' for the steps run per output, or 'branches' for named outputs"),
        );
    }
    let each = match obj.get("each") {
        Some(v) if !v.is_null() => parse_chain(cx, v, &join(path, "each"), seen),
        _ => Vec::new(),
    };
    let mut branches = IndexMap::new();
    if let Some(v) = obj.get("branches").filter(|v| !v.is_null()) {
        let bpath = join(path, "branches");
        if let Some(map) = cx.object(v, &bpath, "'branches'") {
            for (key, chain) in map {
                let chain_path = join(&bpath, key);
                let steps = match chain {
                    Value::Null => Vec::new(),
                    other => parse_chain(cx, other, &chain_path, seen),
                };
                branches.insert(key.clone(), steps);
            }
        }
    }

    Some(StepDef {
        id: id?,
        action: action?,
        description,
        connection,
        input,
        each,
        branches,
        span,
        input_spans: cx.doc.spans_under(&join(path, "input")),
    })
}

// ---------------------------------------------------------------------------------------------
// Cross-checks that need the whole solution.

fn check_connection_config(sol: &Solution, exprs: &Expressions, diags: &mut Vec<Diagnostic>) {
    for conn in sol.connections.values() {
        let mut references = Vec::new();
        for part in split_top_level(&conn.config) {
            match Mapping::compile(exprs, &part) {
                Ok(m) => references.extend(m.references()),
                Err(e) => {
                    let mut d = mapping_diag(&e, |p| conn.config_span(p).clone());
                    d.message = format!("connection '{}' config: {}", conn.name, d.message);
                    diags.push(d);
                }
            }
        }
        for (field, var) in references {
            let span = conn
                .config_span(&crate::mapping::field_path_to_key(&field))
                .clone();
            let mut parts = var.split('.');
            match (parts.next(), parts.next()) {
                (Some("env"), Some(name)) => {
                    if !sol.env.contains_key(name) {
                        diags.push(Diagnostic {
                            span,
                            message: format!(
                                "connection '{}': unknown environment variable '{name}' in {field}",
                                conn.name
                            ),
                        });
                    }
                }
                (Some("env"), None) => {}
                (Some(root), _) => diags.push(Diagnostic {
                    span,
                    message: format!(
                        "connection '{}': {field} may only use 'env' in expressions (found '{root}')",
                        conn.name
                    ),
                }),
                (None, _) => {}
            }
        }
    }
}

fn mapping_diag(e: &MappingError, span_for: impl Fn(&str) -> Span) -> Diagnostic {
    let key = crate::mapping::field_path_to_key(e.path());
    Diagnostic {
        span: span_for(&key),
        message: e.to_string(),
    }
}

/// Check a runbook's connections (when `solution.yaml` loaded) and expressions.
fn check_runbook_refs(
    sol: Option<&Solution>,
    rb: &Runbook,
    exprs: &Expressions,
    diags: &mut Vec<Diagnostic>,
) {
    // Connections.
    if let (Some(sol), Some(c)) = (sol, &rb.trigger.connection) {
        match sol.connections.get(c) {
            None => diags.push(Diagnostic {
                span: rb.trigger.span.clone(),
                message: format!("trigger uses unknown connection '{c}'{}", known(sol)),
            }),
            Some(def) if def.direction != Direction::Inbound => diags.push(Diagnostic {
                span: rb.trigger.span.clone(),
                message: format!(
                    "trigger uses connection '{c}', which is {}; a trigger needs an inbound connection",
                    def.direction
                ),
            }),
            Some(_) => {}
        }
    }
    let step_ids: Vec<&str> = rb.walk().iter().map(|(s, _)| s.id.as_str()).collect();
    let check_refs = |mapping: &Mapping,
                      span_for: &dyn Fn(&str) -> Span,
                      owner: &str,
                      diags: &mut Vec<Diagnostic>| {
        let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (field, var) in mapping.references() {
            let mut parts = var.split('.');
            if parts.next() == Some("steps") {
                if let Some(id) = parts.next() {
                    if !step_ids.contains(&id) {
                        unknown.entry(field).or_default().push(format!("'{id}'"));
                    }
                }
            }
        }
        for (field, ids) in unknown {
            diags.push(Diagnostic {
                span: span_for(&crate::mapping::field_path_to_key(&field)),
                message: format!(
                    "{owner} ({field}) references unknown steps: {}",
                    ids.join(", ")
                ),
            });
        }
    };
    for part in split_top_level(&rb.trigger.config) {
        match Mapping::compile(exprs, &part) {
            Ok(m) => check_refs(
                &m,
                &|p| rb.trigger.config_span(p).clone(),
                "trigger config",
                diags,
            ),
            Err(e) => diags.push(mapping_diag(&e, |p| rb.trigger.config_span(p).clone())),
        }
    }
    for (step, _) in rb.walk() {
        if let (Some(sol), Some(c)) = (sol, &step.connection) {
            match sol.connections.get(c) {
                None => diags.push(Diagnostic {
                    span: step.span.clone(),
                    message: format!(
                        "step '{}' uses unknown connection '{c}'{}",
                        step.id,
                        known(sol)
                    ),
                }),
                Some(def) if def.direction != Direction::Outbound => diags.push(Diagnostic {
                    span: step.span.clone(),
                    message: format!(
                        "step '{}' uses connection '{c}', which is {}; a step needs an outbound connection",
                        step.id, def.direction
                    ),
                }),
                Some(_) => {}
            }
        }
        for part in split_top_level(&step.input) {
            match Mapping::compile(exprs, &part) {
                Ok(m) => check_refs(
                    &m,
                    &|p| step.input_span(p).clone(),
                    &format!("step '{}' input", step.id),
                    diags,
                ),
                Err(e) => {
                    let mut d = mapping_diag(&e, |p| step.input_span(p).clone());
                    d.message = format!("step '{}' input: {}", step.id, d.message);
                    diags.push(d);
                }
            }
        }
    }
}

/// One single-key object per top-level key, so that one bad expression does not hide problems
/// in the other fields.
fn split_top_level(v: &Value) -> Vec<Value> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let mut one = Map::new();
                one.insert(k.clone(), v.clone());
                Value::Object(one)
            })
            .collect(),
        other => vec![other.clone()],
    }
}

fn known(sol: &Solution) -> String {
    if sol.connections.is_empty() {
        " (no connections are defined in solution.yaml)".to_string()
    } else {
        format!(
            " (defined: {})",
            sol.connections
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> HashMap<String, usize> {
        let mut diags = Vec::new();
        let doc = parse_yaml(Path::new("t.yaml"), text, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        doc.map(|d| d.lines).unwrap_or_default()
    }

    #[test]
    fn records_lines_of_keys_and_list_items() {
        let l = lines(
            "a: 1\nb:\n  - x\n  - { c: 2,\n      d: [3, 4] }\n  -\n    - nested\ne: |\n  text\nf: end\n",
        );
        assert_eq!(l["a"], 1);
        assert_eq!(l["b"], 2);
        assert_eq!(l["b.0"], 3);
        assert_eq!(l["b.1"], 4);
        assert_eq!(l["b.1.c"], 4);
        assert_eq!(l["b.1.d"], 5);
        assert_eq!(l["b.1.d.1"], 5);
        assert_eq!(l["b.2.0"], 7);
        assert_eq!(l["e"], 8);
        assert_eq!(l["f"], 10);
    }

    #[test]
    fn complex_keys_do_not_derail_the_recorder() {
        let mut recv = LineRecorder::default();
        Parser::new_from_str("? [a, b]\n: 1\nnext: 2\n")
            .load(&mut recv, true)
            .expect("parses");
        assert_eq!(recv.lines["next"], 3);
        // The conversion reports the complex key itself.
        let mut diags = Vec::new();
        parse_yaml(Path::new("t.yaml"), "? [a, b]\n: 1\n", &mut diags);
        assert_eq!(diags.len(), 1);
        assert!(diags[0]
            .message
            .contains("mapping keys must be plain strings"));
    }

    #[test]
    fn span_of_falls_back_to_the_closest_parent() {
        let mut diags = Vec::new();
        let doc =
            parse_yaml(Path::new("t.yaml"), "a:\n  b:\n    c: 1\n", &mut diags).expect("parses");
        assert_eq!(doc.span_of("a.b.c").line, 3);
        assert_eq!(doc.span_of("a.b.missing.deeper").line, 2);
        assert_eq!(doc.span_of("zzz").line, 1);
    }

    #[test]
    fn name_rules() {
        assert!(is_lower_name("my-solution_1"));
        assert!(!is_lower_name("My"));
        assert!(!is_lower_name(""));
        assert!(!is_lower_name(&"a".repeat(65)));
        assert!(is_id("Step-1_a"));
        assert!(!is_id("a.b"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
    }
}
