//! Input mappings: JSON values in which strings may contain minijinja expressions.
//!
//! - A string that is exactly one `{{ expr }}` (surrounding whitespace ignored) evaluates to the
//!   typed result of `expr`: number, boolean, object, list or null.
//! - Any other string containing `{{` or `{%` is a template and renders to a string.
//! - Other strings, numbers, booleans and null are literals; objects and lists recurse.
//!
//! The context passed to [`Mapping::eval`] is a JSON object; the engine provides `trigger`,
//! `steps` (step id → output), `item` (output of the innermost enclosing nested step), `vars`,
//! `env` and `job`. Step ids with `-` are reached with `steps['my-step']`.
//!
//! Evaluation is sandboxed (no loaders, includes or I/O) and bounded: a fuel limit stops runaway
//! loops, recursion is limited, and rendered text and results are capped in size. Undefined
//! attributes are lenient: `trigger.body.missing.deeper` is `null` (or `""` inside text).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as JValue};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::Value;

/// Bounds applied to every evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of engine instructions per expression or template.
    pub fuel: u64,
    /// Maximum nesting depth (macros, nested loops, recursion).
    pub recursion: usize,
    /// Maximum size in bytes of a rendered template or of a result (as JSON).
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 200_000,
            recursion: 64,
            max_output: 1024 * 1024,
        }
    }
}

/// The configured expression engine. Create one and share it (it is `Send + Sync`).
pub struct Expressions {
    env: Environment<'static>,
    limits: Limits,
}

impl fmt::Debug for Expressions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expressions")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for Expressions {
    fn default() -> Self {
        Self::new()
    }
}

impl Expressions {
    /// An engine with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// An engine with custom limits.
    pub fn with_limits(limits: Limits) -> Self {
        let mut env = Environment::new();
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(limits.recursion);
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_keep_trailing_newline(true);
        // No loader is configured, so `include`/`import`/`extends` cannot reach anything.
        // `debug()` would dump the whole context (including secrets); `namespace()` allows
        // mutable accumulation across loop iterations.
        env.remove_global("debug");
        env.remove_global("namespace");
        // Render values the way JSON (and YAML authors) spell them: `true`/`false`, and an
        // empty string for none/undefined, rather than Python's `True`/`None`.
        env.set_formatter(|out, state, value| {
            if value.kind() == minijinja::value::ValueKind::Bool {
                out.write_str(if value.is_true() { "true" } else { "false" })?;
                Ok(())
            } else if value.is_none() || value.is_undefined() {
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_filter("fromjson", filter_fromjson);
        env.add_filter("b64encode", filter_b64encode);
        env.add_filter("b64decode", filter_b64decode);
        Expressions { env, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

fn filter_fromjson(s: &str) -> Result<JValue, Error> {
    let v: Value = serde_json::from_str(s)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("invalid JSON: {e}")))?;
    Ok(JValue::from_serialize(&v))
}

fn filter_b64encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn filter_b64decode(s: &str) -> Result<String, Error> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("invalid base64: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "decoded base64 is not UTF-8"))
}

/// A mapping problem. Every variant names the field path (`headers[0].value`; empty for a
/// mapping that is a single string).
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum MappingError {
    /// The expression or template does not parse.
    #[error("{}: invalid expression: {message}", show(.path))]
    Syntax {
        /// Field path.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// Evaluation failed (type error, out of fuel, recursion limit, bad filter argument, …).
    #[error("{}: {message}", show(.path))]
    Eval {
        /// Field path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The rendered text or the result is larger than the limit.
    #[error("{}: result is larger than {limit} bytes", show(.path))]
    TooLarge {
        /// Field path.
        path: String,
        /// The limit in bytes.
        limit: usize,
    },
}

impl MappingError {
    /// The field path the error is about (`headers[0].value`, empty for the root).
    pub fn path(&self) -> &str {
        match self {
            MappingError::Syntax { path, .. }
            | MappingError::Eval { path, .. }
            | MappingError::TooLarge { path, .. } => path,
        }
    }
}

fn show(path: &str) -> &str {
    if path.is_empty() {
        "value"
    } else {
        path
    }
}

/// Convert a field path as used in messages (`headers[0].value`) to the dotted key used by
/// the model's span maps (`headers.0.value`).
pub fn field_path_to_key(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for ch in path.chars() {
        match ch {
            '[' => {
                if !out.is_empty() {
                    out.push('.');
                }
            }
            ']' => {}
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Node {
    Literal(Value),
    /// A string that is exactly one expression: typed result.
    Expr(String),
    /// A string with text around or between expressions: renders to a string.
    Template(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A compiled mapping value (see the module docs).
#[derive(Clone, Debug)]
pub struct Mapping {
    root: Node,
    references: Vec<(String, String)>,
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// If `s` is exactly one `{{ … }}` (ignoring surrounding whitespace and `-`/`+` whitespace
/// control), the inner expression source.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    if ["{{", "}}", "{%", "%}", "{#", "#}"]
        .iter()
        .any(|m| inner.contains(m))
    {
        return None;
    }
    Some(inner)
}

/// Whether a string holds a template (an expression or a statement) rather than a literal.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

fn error_message(e: &Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

impl Mapping {
    /// Compile a mapping value: every string containing `{{` (or `{%`) is an expression or
    /// template; a string that is exactly one `{{ expr }}` evaluates to the typed result, text
    /// around it renders a string. Objects and arrays recurse. Errors name the field path.
    pub fn compile(exprs: &Expressions, value: &Value) -> Result<Mapping, MappingError> {
        let mut refs = BTreeSet::new();
        let root = compile_node(exprs, value, "", &mut refs)?;
        Ok(Mapping {
            root,
            references: refs.into_iter().collect(),
        })
    }

    /// Evaluate against `ctx` (a JSON object with `trigger`, `steps`, `item`, `vars`, `env`,
    /// `job`).
    pub fn eval(&self, exprs: &Expressions, ctx: &Value) -> Result<Value, MappingError> {
        match ctx {
            Value::Object(all) => self.eval_with(exprs, |root, _| all.get(root).cloned()),
            other => {
                if let Node::Literal(v) = &self.root {
                    return Ok(v.clone());
                }
                self.eval_shared(exprs, &Arc::new(other.clone()))
            }
        }
    }

    /// Evaluate against a context built on demand: `entry(root, paths)` is asked once for each
    /// top-level entry the expressions reference (`trigger`, `steps`, …) and returns its value
    /// (`None`: undefined). `paths` are the referenced variable paths below that root, e.g.
    /// `["fetch.body", "fetch"]` for `steps.fetch.body` and `steps.fetch`; an empty path means
    /// the entry is used as a whole. So a caller can copy only what a mapping can reach — a
    /// literal mapping asks for nothing.
    pub fn eval_with(
        &self,
        exprs: &Expressions,
        mut entry: impl FnMut(&str, &[&str]) -> Option<Value>,
    ) -> Result<Value, MappingError> {
        if let Node::Literal(v) = &self.root {
            return Ok(v.clone());
        }
        let mut used = serde_json::Map::new();
        let mut paths: Vec<&str> = Vec::new();
        // `references` is sorted by field path; group the variable paths by root.
        let mut roots: Vec<&str> = self
            .references
            .iter()
            .map(|(_, var)| var.split('.').next().unwrap_or_default())
            .collect();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            paths.clear();
            for (_, var) in &self.references {
                match var.strip_prefix(root) {
                    Some("") => paths.push(""),
                    Some(rest) if rest.starts_with('.') => paths.push(&rest[1..]),
                    _ => {}
                }
            }
            if let Some(v) = entry(root, &paths) {
                used.insert(root.to_string(), v);
            }
        }
        self.eval_shared(exprs, &Arc::new(Value::Object(used)))
    }

    /// Like [`eval`](Self::eval) for a context that is already shared: the context is read in
    /// place (no copy, no conversion), which matters when it holds large step outputs.
    pub fn eval_shared(
        &self,
        exprs: &Expressions,
        ctx: &Arc<Value>,
    ) -> Result<Value, MappingError> {
        let jctx = json_value(ctx, Vec::new(), ctx);
        eval_node(exprs, &self.root, "", &jctx)
    }

    /// Every variable path referenced, with the field path that references it, e.g.
    /// `("message", "steps.fetch.body")`, sorted. Paths come from minijinja's undeclared
    /// variable analysis (attribute chains such as `trigger.body.pet`); a step reached with a
    /// subscript, `steps['my-step'].x`, is reported as `steps.my-step`. Variables bound inside
    /// the template itself (loop variables, `set`) are not reported.
    pub fn references(&self) -> Vec<(String, String)> {
        self.references.clone()
    }

    /// Whether any value in the mapping is an expression or template.
    pub fn has_expressions(&self) -> bool {
        fn any(n: &Node) -> bool {
            match n {
                Node::Literal(_) => false,
                Node::Expr(_) | Node::Template(_) => true,
                Node::Array(items) => items.iter().any(any),
                Node::Object(fields) => fields.iter().any(|(_, n)| any(n)),
            }
        }
        any(&self.root)
    }
}

fn compile_node(
    exprs: &Expressions,
    value: &Value,
    path: &str,
    refs: &mut BTreeSet<(String, String)>,
) -> Result<Node, MappingError> {
    match value {
        Value::String(s) if is_template(s) => {
            let syntax = |e: Error| MappingError::Syntax {
                path: path.to_string(),
                message: error_message(&e),
            };
            let (node, vars, dry_run) = match single_expression(s) {
                Some(src) => {
                    let expr = exprs.env.compile_expression(src).map_err(syntax)?;
                    let dry_run = expr.eval(()).err();
                    (
                        Node::Expr(src.to_string()),
                        expr.undeclared_variables(true),
                        dry_run,
                    )
                }
                None => {
                    let tmpl = exprs.env.template_from_str(s).map_err(syntax)?;
                    let dry_run = tmpl.render_captured_to((), io::sink()).err();
                    (
                        Node::Template(s.clone()),
                        tmpl.undeclared_variables(true),
                        dry_run,
                    )
                }
            };
            // minijinja looks filters, tests and functions up at run time. A dry run with an
            // empty context catches unknown names on the paths it takes (typos such as
            // `| tojosn`); other dry-run errors are expected (no data) and ignored.
            if let Some(e) = dry_run {
                if matches!(
                    e.kind(),
                    ErrorKind::UnknownFilter
                        | ErrorKind::UnknownTest
                        | ErrorKind::UnknownFunction
                        | ErrorKind::UnknownMethod
                ) {
                    return Err(syntax(e));
                }
            }
            for var in vars {
                let root = var.split('.').next().unwrap_or_default();
                // Global functions (`range`, `dict`) are not context variables.
                if exprs.env.globals().any(|(name, _)| name == root) {
                    continue;
                }
                if var == "steps" {
                    let subscripted = subscripted_step_ids(s);
                    if !subscripted.is_empty() {
                        for id in subscripted {
                            refs.insert((path.to_string(), format!("steps.{id}")));
                        }
                        continue;
                    }
                }
                refs.insert((path.to_string(), var));
            }
            Ok(node)
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| compile_node(exprs, item, &format!("{path}[{i}]"), refs))
            .collect::<Result<Vec<_>, _>>()
            .map(Node::Array),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    compile_node(exprs, v, &child_path(path, k), refs)?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Node::Object),
        other => Ok(Node::Literal(other.clone())),
    }
}

/// Step ids used as constant subscripts, `steps['a-b']` or `steps["a-b"]`. minijinja's
/// undeclared-variable analysis follows attribute chains only and reports such accesses as a bare
/// `steps`; this recovers the id for the common constant-subscript form.
fn subscripted_step_ids(src: &str) -> Vec<String> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = src[from..].find("steps") {
        let start = from + pos;
        from = start + 5;
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !before_ok {
            continue;
        }
        let rest = src[from..].trim_start();
        let Some(rest) = rest.strip_prefix('[') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        let body = &rest[1..];
        let Some(end) = body.find(quote) else {
            continue;
        };
        let id = &body[..end];
        if body[end + 1..].trim_start().starts_with(']') && !id.contains('\\') {
            out.push(id.to_string());
        }
    }
    out
}

/// One step of a path from the context root to a nested JSON value.
#[derive(Clone, Debug)]
enum Seg {
    Key(Arc<str>),
    Index(usize),
}

/// A JSON object or array inside a shared context, exposed to minijinja without converting it:
/// children are looked up on access.
#[derive(Debug)]
struct JsonRef {
    root: Arc<Value>,
    path: Vec<Seg>,
}

impl JsonRef {
    fn value(&self) -> &Value {
        let mut v: &Value = &self.root;
        for seg in &self.path {
            let next = match (seg, v) {
                (Seg::Key(k), Value::Object(m)) => m.get(&**k),
                (Seg::Index(i), Value::Array(a)) => a.get(*i),
                _ => None,
            };
            match next {
                Some(n) => v = n,
                None => return &Value::Null,
            }
        }
        v
    }

    fn child(&self, seg: Seg, v: &Value) -> JValue {
        let mut path = self.path.clone();
        path.push(seg);
        json_value(&self.root, path, v)
    }
}

/// The minijinja value for `v`, found at `path` under `root`.
fn json_value(root: &Arc<Value>, path: Vec<Seg>, v: &Value) -> JValue {
    match v {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                JValue::from(i)
            } else if let Some(u) = n.as_u64() {
                JValue::from(u)
            } else {
                JValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(_) | Value::Object(_) => JValue::from_object(JsonRef {
            root: root.clone(),
            path,
        }),
    }
}

impl Object for JsonRef {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.value() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        match self.value() {
            Value::Object(m) => {
                let k = key.as_str()?;
                let (k, v) = m.get_key_value(k)?;
                Some(self.child(Seg::Key(Arc::from(k.as_str())), v))
            }
            Value::Array(a) => {
                let i = key.as_i64()?;
                let i = if i < 0 {
                    a.len()
                        .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
                } else {
                    usize::try_from(i).ok()?
                };
                let v = a.get(i)?;
                Some(self.child(Seg::Index(i), v))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.value() {
            Value::Object(m) => {
                Enumerator::Values(m.keys().map(|k| JValue::from(k.as_str())).collect())
            }
            Value::Array(a) => Enumerator::Seq(a.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.value() {
            Value::Object(m) => Some(m.len()),
            Value::Array(a) => Some(a.len()),
            _ => Some(0),
        }
    }
}

/// An `io::Write` that refuses to grow beyond a limit.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("output limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn eval_node(
    exprs: &Expressions,
    node: &Node,
    path: &str,
    ctx: &JValue,
) -> Result<Value, MappingError> {
    let limit = exprs.limits.max_output;
    let eval_err = |e: Error| MappingError::Eval {
        path: path.to_string(),
        message: error_message(&e),
    };
    match node {
        Node::Literal(v) => Ok(v.clone()),
        Node::Expr(src) => {
            let expr = exprs.env.compile_expression(src).map_err(eval_err)?;
            let result = expr.eval(ctx).map_err(eval_err)?;
            let json = serde_json::to_value(&result).map_err(|e| MappingError::Eval {
                path: path.to_string(),
                message: format!("the result cannot be converted to JSON: {e}"),
            })?;
            let size = serde_json::to_vec(&json).map_or(usize::MAX, |v| v.len());
            if size > limit {
                return Err(MappingError::TooLarge {
                    path: path.to_string(),
                    limit,
                });
            }
            Ok(json)
        }
        Node::Template(src) => {
            let tmpl = exprs.env.template_from_str(src).map_err(eval_err)?;
            let mut w = LimitedWriter {
                buf: Vec::new(),
                limit,
                exceeded: false,
            };
            let res = tmpl.render_captured_to(ctx, &mut w);
            if w.exceeded {
                return Err(MappingError::TooLarge {
                    path: path.to_string(),
                    limit,
                });
            }
            res.map_err(eval_err)?;
            String::from_utf8(w.buf)
                .map(Value::String)
                .map_err(|_| MappingError::Eval {
                    path: path.to_string(),
                    message: "rendered text is not valid UTF-8".to_string(),
                })
        }
        Node::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| eval_node(exprs, n, &format!("{path}[{i}]"), ctx))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Object(fields) => fields
            .iter()
            .map(|(k, n)| Ok((k.clone(), eval_node(exprs, n, &child_path(path, k), ctx)?)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
    }
}

/// Evaluate one string as a mapping value (typed if it is a single expression, else rendered
/// text, else the literal string).
pub fn eval_template_str(exprs: &Expressions, s: &str, ctx: &Value) -> Result<Value, MappingError> {
    Mapping::compile(exprs, &Value::String(s.to_string()))?.eval(exprs, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_types_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Expressions>();
        assert_send_sync::<Mapping>();
        assert_send_sync::<MappingError>();
    }

    /// `eval_with` asks only for the roots the mapping references, with the paths below them,
    /// and evaluates like `eval` over the full context.
    #[test]
    fn eval_with_asks_only_for_referenced_entries() {
        let exprs = Expressions::new();
        let m = Mapping::compile(
            &exprs,
            &json!({
                "a": "{{ steps.fetch.body.n + steps['my-step'].v }}",
                "b": "{{ trigger.x }}",
                "c": "literal"
            }),
        )
        .unwrap();
        let ctx = json!({
            "trigger": { "x": 1 },
            "steps": { "fetch": { "body": { "n": 2 } }, "my-step": { "v": 3 }, "big": [0, 1, 2, 3] },
            "vars": { "unused": true }
        });
        let mut asked = Vec::new();
        let lazy = m
            .eval_with(&exprs, |root, paths| {
                let mut paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                paths.sort();
                asked.push((root.to_string(), paths));
                ctx.get(root).cloned()
            })
            .unwrap();
        assert_eq!(lazy, json!({ "a": 5, "b": 1, "c": "literal" }));
        assert_eq!(lazy, m.eval(&exprs, &ctx).unwrap());
        assert_eq!(
            asked,
            vec![
                (
                    "steps".to_string(),
                    vec!["fetch.body.n".to_string(), "my-step".to_string()]
                ),
                ("trigger".to_string(), vec!["x".to_string()]),
            ]
        );
        // A literal mapping asks for nothing; a bare root is asked for as a whole.
        let lit = Mapping::compile(&exprs, &json!({ "k": 1 })).unwrap();
        let v = lit.eval_with(&exprs, |_, _| panic!("a literal needs no context"));
        assert_eq!(v.unwrap(), json!({ "k": 1 }));
        let bare = Mapping::compile(&exprs, &json!("{{ steps | length }}")).unwrap();
        let mut whole = false;
        let n = bare
            .eval_with(&exprs, |root, paths| {
                whole = root == "steps" && paths.contains(&"");
                ctx.get(root).cloned()
            })
            .unwrap();
        assert!(whole, "a bare `steps` is asked for as a whole");
        assert_eq!(n, json!(3));
    }

    /// The lazy context wrapper must behave exactly like a fully converted context.
    #[test]
    fn lazy_context_matches_converted_context() {
        let ctx = json!({
            "trigger": { "body": {
                "pet": "dog", "count": 5, "price": 2.5, "big": 18446744073709551615u64,
                "neg": -3, "none": null, "yes": true,
                "items": ["b", "a", "c"], "empty_list": [], "empty_obj": {},
                "tags": [{"name": "x", "on": true}, {"name": "y", "on": false}],
                "nested": {"a": {"b": [1, {"c": "deep"}]}}
            }},
            "steps": { "a-b": { "value": 7 } }
        });
        let sources = [
            "{{ trigger.body }}",
            "{{ trigger.body == trigger.body }}",
            "{{ trigger.body.items == ['b', 'a', 'c'] }}",
            "{{ 'a' in trigger.body.items }}",
            "{{ 'pet' in trigger.body }}",
            "{{ 'nope' in trigger.body }}",
            "{{ trigger.body.items[-1] }}",
            "{{ trigger.body.items[0:2] }}",
            "{{ trigger.body.items[::-1] }}",
            "{{ trigger.body | length }}",
            "{{ trigger.body.items | length }}",
            "{{ trigger.body.tags | map(attribute='name') | join(',') }}",
            "{{ trigger.body.tags | selectattr('on') | list }}",
            "{{ trigger.body | dictsort }}",
            "{{ trigger.body.nested | items | list }}",
            "{{ trigger.body.tags | tojson }}",
            "{{ trigger.body | tojson }}",
            "{{ trigger.body.items | reverse | list }}",
            "{{ trigger.body.items | sort }}",
            "{{ trigger.body.items | first }}",
            "{{ trigger.body.items | last }}",
            "{{ trigger.body.items | unique | list }}",
            "{% for k, v in trigger.body.nested | items %}{{ k }}={{ v }};{% endfor %}",
            "{% for x in trigger.body.items %}{{ loop.index }}{{ x }}{% endfor %}",
            "{{ trigger.body.missing.deeper }}",
            "{{ trigger.body.none is none }}",
            "{{ trigger.body.empty_list is defined }}",
            "{% if trigger.body.empty_list %}full{% else %}empty{% endif %}",
            "{% if trigger.body.empty_obj %}full{% else %}empty{% endif %}",
            "{% if trigger.body.tags %}full{% else %}empty{% endif %}",
            "{{ trigger.body.big }}",
            "{{ trigger.body.neg * trigger.body.price }}",
            "{{ trigger.body.nested.a.b[1].c }}",
            "{{ trigger.body.nested['a']['b'][0] + 1 }}",
            "{{ steps['a-b'].value }}",
            "{{ trigger.body.items | string }}",
            "{{ trigger.body.nested | string }}",
            "x{{ trigger.body.nested }}",
            "{{ trigger.body.tags | map(attribute='on') | select | list | length }}",
            "{{ trigger.body.items | batch(2) | list }}",
            "{{ dict(trigger.body.nested) }}",
            "{{ trigger.body.nested.a | list }}",
            "{{ trigger.body.count in [5, 6] }}",
        ];
        let exprs = Expressions::new();
        let shared = Arc::new(ctx.clone());
        let lazy = json_value(&shared, Vec::new(), &shared);
        let eager = JValue::from_serialize(&ctx);
        for src in sources {
            let m = Mapping::compile(&exprs, &json!(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
            let a = eval_node(&exprs, &m.root, "", &lazy);
            let b = eval_node(&exprs, &m.root, "", &eager);
            // A fully converted context sorts object keys; the lazy one keeps the document
            // order. Compare JSON text results as parsed values (order-insensitive maps).
            let parsed = |r: &Result<Value, MappingError>| match r {
                Ok(Value::String(t)) if t.starts_with('{') => serde_json::from_str::<Value>(t).ok(),
                _ => None,
            };
            match (parsed(&a), parsed(&b)) {
                (Some(x), Some(y)) => assert_eq!(x, y, "{src}"),
                _ => assert_eq!(a, b, "{src}"),
            }
        }
        // Iteration follows the document order.
        let m = Mapping::compile(
            &exprs,
            &json!("{% for k in trigger.body %}{{ k }},{% endfor %}"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m.eval(&exprs, &ctx).unwrap_or_else(|e| panic!("{e}")),
            json!("pet,count,price,big,neg,none,yes,items,empty_list,empty_obj,tags,nested,")
        );
    }
}
