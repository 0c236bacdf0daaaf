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

use minijinja::value::Value as JValue;
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

fn is_template(s: &str) -> bool {
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
        if !self.has_expressions() {
            if let Node::Literal(v) = &self.root {
                return Ok(v.clone());
            }
        }
        let jctx = JValue::from_serialize(ctx);
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
            let (node, vars) = match single_expression(s) {
                Some(src) => {
                    let expr = exprs.env.compile_expression(src).map_err(syntax)?;
                    (Node::Expr(src.to_string()), expr.undeclared_variables(true))
                }
                None => {
                    let tmpl = exprs.env.template_from_str(s).map_err(syntax)?;
                    (Node::Template(s.clone()), tmpl.undeclared_variables(true))
                }
            };
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
