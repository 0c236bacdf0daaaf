//! Compile a loaded solution into its runnable form, checking everything that can be
//! checked statically. Every problem becomes a `file:line: message` diagnostic.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ferry_core::loader::Diagnostic;
use ferry_core::mapping::{Expressions, Mapping};
use ferry_core::model::{Concurrency, Direction, Solution, Span, StepDef};
use ferry_core::schema::{Field, Schema};
use ferry_core::secrets::Secrets;
use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::action::{Action, ConnectionRef};
use crate::connector::Connector;
use crate::registry::Registry;
use crate::trigger::Trigger;

/// Trigger config keys every trigger accepts, evaluated per event.
pub const EVENT_CONFIG_KEYS: [&str; 3] = ["discard_if", "deduplication_id", "respond_with"];

/// Keys of `respond_with`.
pub const RESPOND_WITH_KEYS: [&str; 3] = ["status", "headers", "body"];

/// A solution ready to run.
pub struct CompiledSolution {
    /// Solution name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// The `env` object expressions see; secret values are sealed envelopes.
    pub env: Value,
    /// Connections with resolved configuration (secrets sealed).
    pub connections: IndexMap<String, ConnectionRef>,
    /// Connection directions.
    pub directions: HashMap<String, Direction>,
    /// Runbooks by name.
    pub runbooks: IndexMap<String, Arc<CompiledRunbook>>,
    /// The solution's `app_offering` setting (Xurrent App Offering files).
    pub app_offering: Option<ferry_core::model::AppOfferingSetting>,
    /// Its version (set by the engine when it loads the folder; empty when compiled
    /// directly).
    pub version: crate::versions::SolutionVersion,
}

/// The key of a chain of steps: the top level, or one branch of a nested step.
pub fn chain_key(parent: Option<(&str, &str)>) -> String {
    match parent {
        None => String::new(),
        Some((step, branch)) => format!("{step}/{branch}"),
    }
}

/// A runbook ready to run.
pub struct CompiledRunbook {
    /// Owning solution.
    pub solution: String,
    /// Runbook name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Concurrency mode.
    pub concurrency: Option<Concurrency>,
    /// Declared runbook variables.
    pub variables: Vec<Field>,
    /// Trigger implementation.
    pub trigger: Arc<dyn Trigger>,
    /// `<connector>.<type>` of the trigger.
    pub trigger_type: String,
    /// Where the trigger is declared.
    pub trigger_span: Span,
    /// Trigger configuration (static part, env expressions resolved).
    pub trigger_config: Value,
    /// Trigger output schema.
    pub output_schema: Schema,
    /// Optional discard condition, evaluated with the trigger output.
    pub discard_if: Option<Mapping>,
    /// Optional deduplication id expression.
    pub deduplication_id: Option<Mapping>,
    /// Optional answer to an accepted event (`{status, headers, body}`), evaluated with
    /// `trigger`, `env` and `job` (`uuid`, also as `id`, and `context_identifier`).
    pub respond_with: Option<Mapping>,
    /// Inbound connection name.
    pub inbound: Option<String>,
    /// Steps by id.
    pub steps: HashMap<String, CompiledStep>,
    /// Chains by [`chain_key`]: the ids of the steps run in order.
    pub chains: HashMap<String, Vec<String>>,
    /// Step ids in canonical (depth-first) order.
    pub order: Vec<String>,
    /// The runbook as loaded from its file (the web console draws its step tree from it).
    pub model: Arc<ferry_core::model::Runbook>,
}

impl CompiledRunbook {
    /// Initial runbook variable values (declared defaults).
    pub fn initial_variables(&self) -> Map<String, Value> {
        self.variables
            .iter()
            .filter_map(|f| f.default.clone().map(|d| (f.id.clone(), d)))
            .collect()
    }

    /// The steps of a chain.
    pub fn chain(&self, key: &str) -> &[String] {
        self.chains.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A step ready to run.
pub struct CompiledStep {
    /// Step id.
    pub id: String,
    /// Action implementation.
    pub action: Arc<dyn Action>,
    /// Compiled input mapping.
    pub input: Mapping,
    /// Outbound connection name.
    pub connection: Option<String>,
    /// Where the step is declared.
    pub span: Span,
    /// Branch key used for `each:` children.
    pub each_key: Option<String>,
    /// The input mapping as written (for actions that compute their schemas from it).
    pub raw_input: Value,
}

fn diag(span: &Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        span: span.clone(),
        message: message.into(),
    }
}

const ROOTS: [&str; 6] = ["trigger", "steps", "item", "vars", "env", "job"];

/// Options of [`compile_solution_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileOptions {
    /// Leave out [`Action::check`] of actions with [`Action::has_cached_check`]: the caller
    /// runs them against cached connection data (`ferry validate --data`, see
    /// [`crate::schemas::check_cached`]).
    pub defer_cached_checks: bool,
}

/// Compile and check a solution. Secret environment values are sealed with `secrets`.
pub fn compile_solution(
    solution: &Solution,
    registry: &Registry,
    exprs: &Expressions,
    secrets: &Secrets,
) -> Result<CompiledSolution, Vec<Diagnostic>> {
    compile_solution_with(
        solution,
        registry,
        exprs,
        secrets,
        CompileOptions::default(),
    )
}

/// [`compile_solution`] with options.
pub fn compile_solution_with(
    solution: &Solution,
    registry: &Registry,
    exprs: &Expressions,
    secrets: &Secrets,
    options: CompileOptions,
) -> Result<CompiledSolution, Vec<Diagnostic>> {
    let mut diags = Vec::new();

    // Environment: plain values as they are, secrets sealed.
    let mut env = Map::new();
    for (name, var) in &solution.env {
        let value = if var.secret {
            match &var.value {
                Value::String(s) => Value::String(secrets.seal(s)),
                Value::Null => Value::Null,
                other => Value::String(secrets.seal(&other.to_string())),
            }
        } else {
            var.value.clone()
        };
        env.insert(name.clone(), value);
    }
    let env = Value::Object(env);
    let env_ctx = serde_json::json!({ "env": env });

    // Connections: config expressions see `env` only.
    let mut connections = IndexMap::new();
    let mut directions = HashMap::new();
    for (name, def) in &solution.connections {
        if !registry.has_connector(&def.connector) {
            diags.push(diag(
                &def.span,
                format!(
                    "Unknown connector '{}' for connection '{name}' (known: {})",
                    def.connector,
                    registry
                        .connectors()
                        .map(|(n, _)| n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let mut config =
            match Mapping::compile(exprs, &def.config).and_then(|m| m.eval(exprs, &env_ctx)) {
                Ok(v) => v,
                Err(e) => {
                    diags.push(diag(
                        &def.span,
                        format!("Connection '{name}' config invalid: {e}"),
                    ));
                    Value::Null
                }
            };
        if let Some(connector) = registry.get_connector(&def.connector) {
            config = check_connection_config(def, connector.as_ref(), config, secrets, &mut diags);
        }
        directions.insert(name.clone(), def.direction);
        connections.insert(
            name.clone(),
            ConnectionRef {
                name: name.clone(),
                connector: def.connector.clone(),
                config,
                namespace: format!("{}/{}", solution.name, name),
            },
        );
    }

    let mut runbooks = IndexMap::new();
    for (rb_name, rb) in &solution.runbooks {
        let trigger_type = format!("{}.{}", rb.trigger.connector, rb.trigger.kind);
        let trigger = registry.get_trigger(&trigger_type);
        if trigger.is_none() {
            diags.push(diag(
                &rb.trigger.span,
                format!(
                    "Unknown trigger type '{trigger_type}' (known: {})",
                    registry.trigger_names().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let (trigger_config, output_schema, event) = match &trigger {
            Some(trigger) => compile_trigger(
                rb,
                trigger.as_ref(),
                &trigger_type,
                &connections,
                &directions,
                exprs,
                &env_ctx,
                &mut diags,
            ),
            None => (
                Value::Null,
                Schema::new("output", vec![]),
                EventMappings::default(),
            ),
        };
        for var in &rb.variables {
            for m in var.check_definition() {
                diags.push(diag(&rb.span, format!("variable '{}': {m}", var.id)));
            }
        }

        // Steps.
        let walk = rb.walk();
        let known_steps: BTreeSet<&str> = walk.iter().map(|(s, _)| s.id.as_str()).collect();
        let mut steps = HashMap::new();
        let mut chains: HashMap<String, Vec<String>> = HashMap::new();
        let mut order = Vec::new();
        for (step, parent) in &walk {
            order.push(step.id.clone());
            let action = registry.get_action(&step.action);
            let Some(action) = action else {
                diags.push(diag(
                    &step.span,
                    format!("Step '{}': unknown action '{}'", step.id, step.action),
                ));
                continue;
            };
            let spec = action.spec();
            // Which chain this step belongs to.
            let parent_key = match parent {
                None => chain_key(None),
                Some((p, "each")) => {
                    let each_key = rb
                        .step(p)
                        .and_then(|ps| registry.get_action(&ps.action))
                        .and_then(|a| a.spec().outputs.first().map(|s| s.reference.clone()))
                        .unwrap_or_else(|| "each".into());
                    chain_key(Some((p, &each_key)))
                }
                Some((p, b)) => chain_key(Some((p, b))),
            };
            chains.entry(parent_key).or_default().push(step.id.clone());
            check_step(
                step,
                action.as_ref(),
                &connections,
                &directions,
                &known_steps,
                parent.is_some(),
                rb,
                options,
                &mut diags,
            );
            let input = match Mapping::compile(exprs, &step.input) {
                Ok(m) => m,
                Err(e) => {
                    diags.push(diag(
                        &step.span,
                        format!("Step '{}': input invalid: {e}", step.id),
                    ));
                    continue;
                }
            };
            for (field, reference) in input.references() {
                let span = step.input_span(&ferry_core::mapping::field_path_to_key(&field));
                let mut parts = reference.split(['.', '[']);
                let root = parts.next().unwrap_or_default();
                if !ROOTS.contains(&root) {
                    diags.push(diag(
                        span,
                        format!(
                            "({field}) unknown variable '{root}' (available: {})",
                            ROOTS.join(", ")
                        ),
                    ));
                    continue;
                }
                let second = parts
                    .next()
                    .map(|s| s.trim_matches(|c| c == '\'' || c == '"' || c == ']'));
                match (root, second) {
                    ("steps", Some(id)) if !id.is_empty() && !known_steps.contains(id) => {
                        diags.push(diag(
                            span,
                            format!("({field}) invalid action references: '{id}'"),
                        ));
                    }
                    ("item", _) if parent.is_none() => {
                        diags.push(diag(
                            span,
                            format!(
                                "({field}) 'item' is only available inside a nested step's branch"
                            ),
                        ));
                    }
                    ("vars", Some(id))
                        if !id.is_empty() && !rb.variables.iter().any(|v| v.id == id) =>
                    {
                        diags.push(diag(
                            span,
                            format!("({field}) unknown runbook variable '{id}'"),
                        ));
                    }
                    ("env", Some(id)) if !id.is_empty() && !solution.env.contains_key(id) => {
                        diags.push(diag(
                            span,
                            format!("({field}) unknown environment variable '{id}'"),
                        ));
                    }
                    _ => {}
                }
            }
            let each_key = spec.outputs.first().map(|s| s.reference.clone());
            steps.insert(
                step.id.clone(),
                CompiledStep {
                    id: step.id.clone(),
                    action: action.clone(),
                    input,
                    connection: step.connection.clone(),
                    span: step.span.clone(),
                    each_key,
                    raw_input: step.input.clone(),
                },
            );
        }
        if rb.steps.is_empty() {
            diags.push(diag(&rb.span, "No actions are connected to the trigger."));
        }
        let Some(trigger) = trigger else { continue };
        runbooks.insert(
            rb_name.clone(),
            Arc::new(CompiledRunbook {
                solution: solution.name.clone(),
                name: rb_name.clone(),
                description: rb.description.clone(),
                concurrency: rb.concurrency,
                variables: rb.variables.clone(),
                trigger,
                trigger_type,
                trigger_span: rb.trigger.span.clone(),
                trigger_config,
                output_schema,
                discard_if: event.discard_if,
                deduplication_id: event.deduplication_id,
                respond_with: event.respond_with,
                inbound: rb.trigger.connection.clone(),
                steps,
                chains,
                order,
                model: Arc::new(rb.clone()),
            }),
        );
    }

    // Trigger types of which a solution may have one runbook only.
    let mut first_of: HashMap<&str, &ferry_core::model::Runbook> = HashMap::new();
    for (rb_name, rb) in &solution.runbooks {
        let Some(rc) = runbooks.get(rb_name) else {
            continue;
        };
        if !rc.trigger.once_per_solution() {
            continue;
        }
        match first_of.get(rc.trigger_type.as_str()) {
            None => {
                first_of.insert(rc.trigger_type.as_str(), rb);
            }
            Some(first) => diags.push(diag(
                &rb.trigger.span,
                format!(
                    "Runbook '{rb_name}' is a second '{}' runbook: a solution has exactly one (the first is runbook '{}' at {}:{})",
                    rc.trigger_type,
                    first.name,
                    first.trigger.span.file.display(),
                    first.trigger.span.line
                ),
            )),
        }
    }

    if diags.is_empty() {
        Ok(CompiledSolution {
            name: solution.name.clone(),
            description: solution.description.clone(),
            env,
            connections,
            directions,
            runbooks,
            app_offering: solution.app_offering.clone(),
            version: Default::default(),
        })
    } else {
        Err(diags)
    }
}

/// Check a connection's (evaluated) config against its connector's schema for its direction:
/// unknown keys (at any depth), missing required keys, types, and the connector's own checks.
/// Returns the resolved config (defaults applied, plaintext secret fields sealed).
fn check_connection_config(
    def: &ferry_core::model::ConnectionDef,
    connector: &dyn Connector,
    config: Value,
    secrets: &Secrets,
    diags: &mut Vec<Diagnostic>,
) -> Value {
    let name = &def.name;
    let spec = connector.spec();
    let Some(schema) = spec.config_schema(def.direction) else {
        diags.push(diag(
            &def.span,
            format!(
                "Connection '{name}': connector '{}' has no {} connections",
                spec.name,
                def.direction.as_str()
            ),
        ));
        return config;
    };
    if !(config.is_object() || config.is_null()) {
        diags.push(diag(
            &def.span,
            format!("Connection '{name}': config must be a mapping"),
        ));
        return config;
    }
    let mut unknown = Vec::new();
    unknown_keys(&schema.fields, &config, "", &mut unknown);
    for (path, allowed) in &unknown {
        diags.push(diag(
            def.config_span(path),
            format!(
                "Connection '{name}': unknown config key '{path}' for an {} '{}' connection (allowed: {})",
                def.direction.as_str(),
                spec.name,
                allowed.join(", ")
            ),
        ));
    }
    match schema.resolve(&config, Some(secrets)) {
        Ok(resolved) => {
            for message in connector.check_connection(def.direction, &resolved) {
                let key = message.split(['.', ':', ' ']).next().unwrap_or_default();
                diags.push(diag(
                    def.config_span(key),
                    format!("Connection '{name}': {message}"),
                ));
            }
            resolved
        }
        Err(e) => {
            for message in e.messages {
                // Point at the top-level key the message names, when it is present.
                let span = schema
                    .fields
                    .iter()
                    .find(|f| {
                        config.get(&f.id).is_some() && message.contains(&format!("'{}", f.id))
                    })
                    .map(|f| def.config_span(&f.id))
                    .unwrap_or(&def.span);
                diags.push(diag(
                    span,
                    format!("Connection '{name}': config invalid: {message}"),
                ));
            }
            config
        }
    }
}

/// Paths of keys in `value` that `fields` do not declare, with the keys allowed there.
fn unknown_keys(
    fields: &[Field],
    value: &Value,
    prefix: &str,
    out: &mut Vec<(String, Vec<String>)>,
) {
    let Value::Object(map) = value else { return };
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match fields.iter().find(|f| &f.id == k) {
            None => out.push((path, fields.iter().map(|f| f.id.clone()).collect())),
            Some(f) if !f.fields.is_empty() => match v {
                Value::Array(items) if f.array => {
                    for (i, item) in items.iter().enumerate() {
                        unknown_keys(&f.fields, item, &format!("{path}.{i}"), out);
                    }
                }
                _ => unknown_keys(&f.fields, v, &path, out),
            },
            Some(_) => {}
        }
    }
}

/// The per-event expressions of a trigger's config.
#[derive(Default)]
struct EventMappings {
    discard_if: Option<Mapping>,
    deduplication_id: Option<Mapping>,
    respond_with: Option<Mapping>,
}

type TriggerParts = (Value, Schema, EventMappings);

/// Static checks of `respond_with`: a mapping of `status`, `headers` and `body`, a literal
/// status in 100..=599, headers as a mapping of names to values.
fn check_respond_with(rb: &ferry_core::model::Runbook, v: &Value, diags: &mut Vec<Diagnostic>) {
    let Value::Object(map) = v else {
        diags.push(diag(
            rb.trigger.config_span("respond_with"),
            "respond_with: must be a mapping with status, headers and body",
        ));
        return;
    };
    for k in map.keys() {
        if !RESPOND_WITH_KEYS.contains(&k.as_str()) {
            diags.push(diag(
                rb.trigger.config_span(&format!("respond_with.{k}")),
                format!(
                    "respond_with: unknown key '{k}' (allowed: {})",
                    RESPOND_WITH_KEYS.join(", ")
                ),
            ));
        }
    }
    if let Some(status) = map.get("status") {
        let literal = match status {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.contains("{{") && !s.contains("{%") => {
                Some(s.trim().parse::<u64>().unwrap_or(0))
            }
            _ => None,
        };
        if literal.is_some_and(|n| !(100..=599).contains(&n)) {
            diags.push(diag(
                rb.trigger.config_span("respond_with.status"),
                format!("respond_with.status: {status} is not an HTTP status (100 to 599)"),
            ));
        }
    }
    if let Some(h) = map.get("headers") {
        if !h.is_object() {
            diags.push(diag(
                rb.trigger.config_span("respond_with.headers"),
                "respond_with.headers: must be a mapping of header names to values",
            ));
        }
    }
}

/// Check a runbook's trigger: its connection, its configuration and its output schema.
#[allow(clippy::too_many_arguments)]
fn compile_trigger(
    rb: &ferry_core::model::Runbook,
    trigger: &dyn Trigger,
    trigger_type: &str,
    connections: &IndexMap<String, ConnectionRef>,
    directions: &HashMap<String, Direction>,
    exprs: &Expressions,
    env_ctx: &Value,
    diags: &mut Vec<Diagnostic>,
) -> TriggerParts {
    // Trigger connection.
    if let Some(conn) = &rb.trigger.connection {
        match (connections.get(conn), directions.get(conn)) {
            (Some(c), Some(dir)) => {
                if *dir != Direction::Inbound {
                    diags.push(diag(
                        &rb.trigger.span,
                        format!("Connection '{conn}' is not an inbound connection"),
                    ));
                }
                if let Some(want) = trigger.spec().connection {
                    if c.connector != want {
                        diags.push(diag(
                                &rb.trigger.span,
                                format!(
                                    "Connection '{conn}' belongs to connector '{}', trigger '{trigger_type}' needs '{want}'",
                                    c.connector
                                ),
                            ));
                    }
                }
            }
            _ => diags.push(diag(
                &rb.trigger.span,
                format!("Unknown connection '{conn}'"),
            )),
        }
    }
    // Trigger config: event-time expressions apart, the rest is resolved now.
    let mut static_config = Map::new();
    let mut event = EventMappings::default();
    if let Value::Object(cfg) = &rb.trigger.config {
        for (k, v) in cfg {
            if EVENT_CONFIG_KEYS.contains(&k.as_str()) {
                let roots: &[&str] = if k == "respond_with" {
                    check_respond_with(rb, v, diags);
                    &["trigger", "env", "job"]
                } else {
                    &["trigger", "env", "vars"]
                };
                match Mapping::compile(exprs, v) {
                    Ok(m) => {
                        for (field, reference) in m.references() {
                            let root = reference.split(['.', '[']).next().unwrap_or_default();
                            if !roots.contains(&root) {
                                let span = if field.is_empty() {
                                    rb.trigger.config_span(k)
                                } else {
                                    rb.trigger.config_span(&format!(
                                        "{k}.{}",
                                        ferry_core::mapping::field_path_to_key(&field)
                                    ))
                                };
                                diags.push(diag(
                                    span,
                                    format!(
                                        "{k}: unknown variable '{reference}' (use {})",
                                        if k == "respond_with" {
                                            "trigger, env or job"
                                        } else {
                                            "trigger or env"
                                        }
                                    ),
                                ));
                            }
                        }
                        match k.as_str() {
                            "discard_if" => event.discard_if = Some(m),
                            "deduplication_id" => event.deduplication_id = Some(m),
                            _ => event.respond_with = Some(m),
                        }
                    }
                    Err(e) => diags.push(diag(rb.trigger.config_span(k), format!("{k}: {e}"))),
                }
            } else {
                match Mapping::compile(exprs, v).and_then(|m| m.eval(exprs, env_ctx)) {
                    Ok(v) => {
                        static_config.insert(k.clone(), v);
                    }
                    Err(e) => diags.push(diag(rb.trigger.config_span(k), format!("{k}: {e}"))),
                }
            }
        }
    }
    let config_schema = Schema::new("config", trigger.spec().config.clone());
    let allowed: BTreeSet<&str> = trigger
        .spec()
        .config
        .iter()
        .map(|f| f.id.as_str())
        .collect();
    for k in static_config.keys() {
        if !allowed.contains(k.as_str()) {
            diags.push(diag(
                rb.trigger.config_span(k),
                format!(
                    "Unknown trigger config field '{k}' (allowed: {})",
                    allowed
                        .iter()
                        .copied()
                        .chain(EVENT_CONFIG_KEYS)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let trigger_config = match config_schema.resolve(&Value::Object(static_config.clone()), None) {
        Ok(v) => v,
        Err(e) => {
            diags.push(diag(
                &rb.trigger.span,
                format!("Config mapping invalid: {e}"),
            ));
            Value::Object(static_config)
        }
    };
    if let Some(Value::Array(fields)) = rb.trigger.config.get("body_schema") {
        for (i, f) in fields.iter().enumerate() {
            match serde_json::from_value::<Field>(f.clone()) {
                Ok(field) => {
                    for m in field.check_definition() {
                        diags.push(diag(
                            rb.trigger.config_span(&format!("body_schema.{i}")),
                            format!("body_schema[{i}]: {m}"),
                        ));
                    }
                }
                Err(e) => diags.push(diag(
                    rb.trigger.config_span(&format!("body_schema.{i}")),
                    format!("body_schema[{i}]: {e}"),
                )),
            }
        }
    }
    for (path, message) in trigger.check_config(&trigger_config) {
        diags.push(diag(
            rb.trigger.config_span(&path),
            format!("{path}: {message}"),
        ));
    }
    let output_schema = match trigger.output_schema(&trigger_config) {
        Ok(s) => s,
        Err(e) => {
            diags.push(diag(&rb.trigger.span, e));
            Schema::new("output", vec![])
        }
    };
    (trigger_config, output_schema, event)
}

#[allow(clippy::too_many_arguments)]
fn check_step(
    step: &StepDef,
    action: &dyn Action,
    connections: &IndexMap<String, ConnectionRef>,
    directions: &HashMap<String, Direction>,
    _known: &BTreeSet<&str>,
    _in_branch: bool,
    _rb: &ferry_core::model::Runbook,
    options: CompileOptions,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = action.spec();
    let id = &step.id;
    // Connection.
    match (&step.connection, spec.connection) {
        (Some(conn), want) => match connections.get(conn) {
            None => diags.push(diag(
                &step.span,
                format!("Step '{id}': unknown connection '{conn}'"),
            )),
            Some(c) => {
                if directions.get(conn) != Some(&Direction::Outbound) {
                    diags.push(diag(
                        &step.span,
                        format!("Step '{id}': connection '{conn}' is not an outbound connection"),
                    ));
                }
                if let Some(want) = want {
                    if c.connector != want {
                        diags.push(diag(
                            &step.span,
                            format!("Step '{id}': connection '{conn}' belongs to connector '{}', action '{}' needs '{want}'", c.connector, spec.name),
                        ));
                    }
                }
            }
        },
        (None, Some(want)) => diags.push(diag(
            &step.span,
            format!(
                "Step '{id}': action '{}' needs an outbound '{want}' connection",
                spec.name
            ),
        )),
        (None, None) => {}
    }
    // Nesting.
    if !spec.nested && (!step.each.is_empty() || !step.branches.is_empty()) {
        diags.push(diag(
            &step.span,
            format!(
                "Step '{id}': action '{}' is not nested; it cannot have `each` or `branches`",
                spec.name
            ),
        ));
    }
    if spec.nested && !step.branches.is_empty() {
        if let Some(keys) = action.branch_keys(&step.input) {
            for key in step.branches.keys() {
                if !keys.contains(key) {
                    diags.push(diag(
                        &step.span,
                        format!(
                            "Step '{id}': unknown branch '{key}' for action '{}' (branches: {})",
                            spec.name,
                            keys.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    if !(options.defer_cached_checks && action.has_cached_check()) {
        for message in action.check(&step.input, &_rb.variables) {
            diags.push(diag(&step.span, format!("Step '{id}': {message}")));
        }
    }
    // Input keys and required inputs (computed schemas are checked from the schema cache by
    // `ferry validate --data`, see `crate::schemas::check_cached`).
    if action.computes_schemas() {
        return;
    }
    let input = step.input.as_object().cloned().unwrap_or_default();
    for key in input.keys() {
        if !spec.input.iter().any(|f| &f.id == key) {
            diags.push(diag(
                step.input_span(key),
                format!(
                    "Step '{id}': unknown input field '{key}' for action '{}' (fields: {})",
                    spec.name,
                    spec.input
                        .iter()
                        .map(|f| f.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    for field in &spec.input {
        if field.required && field.default.is_none() && !input.contains_key(&field.id) {
            diags.push(diag(
                &step.span,
                format!(
                    "Step '{id}': Input invalid: Field '{}' is required.",
                    field.id
                ),
            ));
        }
    }
}
