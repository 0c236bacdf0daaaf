//! The `xurrent.query` action (spec §5): query any root object of the Xurrent schema over an
//! outbound `xurrent` connection, page by page.
//!
//! - Input: `object` (a root query field, e.g. `people`), `mode` (`record`, the default, or
//!   `page`), `include_fields` (nested fields to select, to a depth of 6), `view`, `filter`,
//!   `order` (when the root field has those arguments), `page_size` (1–100, default 100) and
//!   `max_results` (the most records to fetch in total).
//! - Nested. Each invocation fetches **one page** (`first` and the cursor `after` are
//!   variables of one query text) and sets its iteration state to the next [`Cursor`]
//!   (`{end_cursor, fetched}`); the page's records stay in the step's record and the job state
//!   holds the cursor and the position in the page, never the records; the engine invokes the
//!   action again after the page's branches.
//!   - `mode: record`: one `record` output per record: the branch runs once per record, with the
//!     record (flattened, as the schema's output fields describe it) as `item`.
//!   - `mode: page`: one `query_result` output per page: `{total_count, has_next_page, nodes,
//!     ratelimit, costlimit, request_id}`.
//!   - A root field that is not a connection (`me`, `account`) is fetched once: its fields are
//!     the `record` (or, in page mode, the `query_result` with the metadata next to them).
//! - Schemas: computed per step from the object, `include_fields` and `mode` (input fields
//!   with the object's `view` enumeration, `filter` and `order` inputs; output fields of the
//!   node type). The GraphQL schema comes from [`schema_for`].
//! - Errors: 429/502/503/504 reschedule the step after `Retry-After`; GraphQL `errors` fail it
//!   with their messages (both through [`XurrentClient::graphql`]).
//! - `ferry validate`: an unknown object, include, filter field, view or enum value is reported
//!   with the step's `file:line` ([`check_query`]).

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema as FieldSchema};
use ferry_engine::action::{
    Action, ActionContext, ActionKind, ActionSpec, ConnectionRef, Output, Services, Signal,
};
use ferry_engine::schemas::{ComputedSchemas, SchemaContext};
use serde_json::{json, Map, Value};

use crate::check::check_query;
use crate::check::is_template;
use crate::client::XurrentClient;
use crate::connection::CONNECTOR;
use crate::include::Include;
use crate::model::Schema;
use crate::query::{
    page_output_fields, query_input_fields, record_fields, Cursor, QueryOptions, QueryPlan,
    RootObject, MAX_PAGE_SIZE,
};
use crate::schema_cache::shipped;
use crate::transport::metadata_fields;

/// The action's registry name.
pub const ACTION: &str = "xurrent.query";

/// The output (branch) of `mode: record`: one per record.
pub const RECORD: &str = "record";

/// The output (branch) of `mode: page`: one per page (spec §5.2 `query_result`).
pub const PAGE: &str = "query_result";

/// How the action emits what it fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One `record` output per record (the default).
    Record,
    /// One `query_result` output per page.
    Page,
}

impl Mode {
    /// The mode named by an input value (absent or null: [`Mode::Record`]).
    pub fn from_input(v: Option<&Value>) -> Result<Mode, String> {
        match v {
            None | Some(Value::Null) => Ok(Mode::Record),
            Some(Value::String(s)) if s == "record" || s.is_empty() => Ok(Mode::Record),
            Some(Value::String(s)) if s == "page" => Ok(Mode::Page),
            Some(other) => Err(format!(
                "`mode` must be `record` or `page`, not {}",
                match other {
                    Value::String(s) => format!("'{s}'"),
                    v => v.to_string(),
                }
            )),
        }
    }

    /// The output reference of this mode.
    pub fn output(self) -> &'static str {
        match self {
            Mode::Record => RECORD,
            Mode::Page => PAGE,
        }
    }
}

/// The GraphQL schema a Query step of `connection` works with — the one place that decides
/// it: the connection's introspected schema ([`crate::schema_cache::schema_for`], cached in
/// the connection store); a throttled Xurrent reschedules. The schema that ships with Ferry
/// ([`Schema::embedded`]) is only used by `ferry validate` offline.
pub async fn schema_for(
    services: &Services,
    connection: Option<&ConnectionRef>,
) -> Result<std::sync::Arc<Schema>, Signal> {
    let connection =
        connection.ok_or_else(|| fail("An outbound xurrent connection is required."))?;
    Ok(crate::schema_cache::schema_for(services, connection).await?)
}

fn object_field() -> Field {
    Field::new("object", FieldType::String)
        .label("Query object")
        .required()
        .pattern("^[A-Za-z][A-Za-z0-9]*$")
        .hint("A root field of the Xurrent query type, e.g. people or requests")
}

fn mode_field() -> Field {
    Field::new("mode", FieldType::String)
        .label("Mode")
        .default_value(json!("record"))
        .enumeration(vec![
            json!({"id": "record", "label": "Once per record"}),
            json!({"id": "page", "label": "Once per page"}),
        ])
        .hint("record: the branch runs once per record (the record is `item`); page: once per page (`item.nodes`)")
}

fn tail_fields() -> Vec<Field> {
    vec![
        Field::new("page_size", FieldType::Integer)
            .label("Page size")
            .min(1.0)
            .max(f64::from(MAX_PAGE_SIZE))
            .default_value(json!(MAX_PAGE_SIZE)),
        Field::new("max_results", FieldType::Integer)
            .label("Max results")
            .min(1.0)
            .hint("The most records to fetch in total (all when empty)"),
    ]
}

/// The input fields before an object is known (`ferry connectors`, docs).
fn static_input() -> Vec<Field> {
    let mut v = vec![
        object_field(),
        mode_field(),
        Field::new("include_fields", FieldType::Hash)
            .label("Include nested fields")
            .hint("Nested fields to select: `{organization: true, organization_fields: {…}}`"),
        Field::new("view", FieldType::String).label("View"),
        Field::new("filter", FieldType::Hash).label("Filter"),
        Field::new("order", FieldType::Hash).label("Order").array(),
    ];
    v.extend(tail_fields());
    v
}

/// The `xurrent.query` action.
pub struct QueryAction(ActionSpec);

impl QueryAction {
    /// The action with its static description (the schemas are computed per step).
    pub fn new() -> QueryAction {
        QueryAction(ActionSpec {
            name: ACTION,
            description: "Query any Xurrent root object page by page; the branch runs once per record (or per page)",
            input: static_input(),
            outputs: vec![FieldSchema::new(RECORD, vec![]), FieldSchema::new(PAGE, vec![])],
            nested: true,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

impl Default for QueryAction {
    fn default() -> Self {
        QueryAction::new()
    }
}

/// The computed schemas of a step querying `object` with `include` in `mode`.
pub fn query_schemas(
    schema: &Schema,
    object: &str,
    include: &Value,
    mode: Mode,
) -> Result<ComputedSchemas, String> {
    let root = schema.root_object(object).map_err(|e| e.to_string())?;
    let inc = Include::from_json(include);
    let mut input = vec![object_field(), mode_field()];
    input.extend(query_input_fields(schema, &root, include));
    input.extend(tail_fields());
    let output = match mode {
        Mode::Record => record_fields(schema, &root, &inc),
        Mode::Page => {
            let mut f = page_output_fields(schema, &root, &inc);
            f.extend(metadata_fields());
            f
        }
    };
    Ok(ComputedSchemas {
        input,
        outputs: vec![FieldSchema::new(mode.output(), output)],
    })
}

/// Non-blank, non-null input value.
fn given<'v>(input: &'v Value, key: &str) -> Option<&'v Value> {
    input.get(key).filter(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    })
}

/// The query options of a resolved input.
fn options(input: &Value) -> Result<QueryOptions, Signal> {
    let int = |key: &str| -> Result<Option<u64>, Signal> {
        match given(input, key) {
            None => Ok(None),
            Some(v) => v.as_u64().filter(|n| *n >= 1).map(Some).ok_or_else(|| {
                Signal::Fail(format!(
                    "Input invalid: Field '{key}' must be a positive integer, got {v}."
                ))
            }),
        }
    };
    Ok(QueryOptions {
        include: Include::from_json(input.get("include_fields").unwrap_or(&Value::Null)),
        view: given(input, "view")
            .and_then(Value::as_str)
            .map(str::to_string),
        filter: given(input, "filter").cloned(),
        order: given(input, "order").cloned(),
        page_size: int("page_size")?.map(|n| n.min(u64::from(MAX_PAGE_SIZE)) as u32),
        limit: int("max_results")?,
    })
}

fn fail(message: impl Into<String>) -> Signal {
    Signal::Fail(message.into())
}

/// The static checks of a step's raw input against `schema`: the mode, an unknown root
/// object, unknown included fields, `view`/`filter`/`order` names and enum values.
fn check_step(schema: &Schema, raw_input: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = raw_input.get("mode").filter(|m| !is_template(m)) {
        if let Err(e) = Mode::from_input(Some(m)) {
            out.push(e);
        }
    }
    let Some(object) = raw_input.get("object") else {
        return out;
    };
    if is_template(object) {
        return out;
    }
    let Some(name) = object.as_str() else {
        out.push("`object` must be the name of a root query object".into());
        return out;
    };
    let lit = |k: &str| raw_input.get(k).filter(|v| !is_template(v));
    out.extend(check_query(
        schema,
        name,
        lit("include_fields"),
        lit("view"),
        lit("filter"),
        lit("order"),
    ));
    out
}

#[async_trait]
impl Action for QueryAction {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    fn branch_keys(&self, raw_input: &Value) -> Option<Vec<String>> {
        match raw_input.get("mode") {
            Some(m) if is_template(m) => None,
            m => Mode::from_input(m)
                .ok()
                .map(|m| vec![m.output().to_string()]),
        }
    }

    /// Offline: against the schema that ships with Ferry.
    fn check(&self, raw_input: &Value, _variables: &[Field]) -> Vec<String> {
        match shipped() {
            Ok(s) => check_step(s, raw_input),
            Err(e) => vec![e],
        }
    }

    fn has_cached_check(&self) -> bool {
        true
    }

    /// `ferry validate --data`: against the connection's cached schema, when there is one.
    async fn check_cached(
        &self,
        store: &dyn ferry_store::Store,
        secrets: &ferry_core::secrets::Secrets,
        connection: Option<&ConnectionRef>,
        raw_input: &Value,
        _variables: &[Field],
    ) -> Option<Vec<String>> {
        crate::schema_cache::check_with_cached(store, secrets, connection, |s| {
            check_step(s, raw_input)
        })
        .await
    }

    fn computes_schemas(&self) -> bool {
        true
    }

    /// The schemas depend on the object, the included fields and the mode only.
    fn schema_selector(&self, raw_input: &Value) -> Value {
        json!({
            "object": raw_input.get("object").cloned().unwrap_or(Value::Null),
            "include_fields": raw_input.get("include_fields").cloned().unwrap_or(Value::Null),
            "mode": raw_input.get("mode").cloned().unwrap_or(Value::Null),
        })
    }

    /// The generation of the connection's cached schema: a refresh recomputes the schemas.
    async fn schema_version(
        &self,
        store: &dyn ferry_store::Store,
        secrets: &ferry_core::secrets::Secrets,
        connection: Option<&ConnectionRef>,
    ) -> Result<Option<String>, String> {
        crate::schema_cache::schema_version(store, secrets, connection).await
    }

    /// A throttled or unavailable Xurrent while fetching the schema reschedules the step.
    async fn compute_schemas(&self, ctx: &SchemaContext<'_>) -> Result<ComputedSchemas, Signal> {
        let object = ctx
            .selector
            .get("object")
            .filter(|v| !is_template(v))
            .and_then(Value::as_str)
            .ok_or_else(|| fail("`object` must be a literal root object name"))?;
        let include = ctx
            .selector
            .get("include_fields")
            .filter(|v| !is_template(v))
            .cloned()
            .unwrap_or(Value::Null);
        let mode = match ctx.selector.get("mode") {
            Some(m) if is_template(m) => {
                return Err(fail("`mode` must be a literal (`record` or `page`)"))
            }
            m => Mode::from_input(m).map_err(Signal::Fail)?,
        };
        let schema = schema_for(ctx.services, ctx.connection).await?;
        query_schemas(&schema, object, &include, mode).map_err(Signal::Fail)
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = ctx
            .connection
            .ok_or_else(|| fail("An outbound xurrent connection is required."))?;
        let object = ctx
            .input_str("object")
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| fail("Input field 'object' is required."))?
            .to_string();
        let mode = Mode::from_input(ctx.input.get("mode")).map_err(Signal::Fail)?;
        let opts = options(&ctx.input)?;
        let schema = schema_for(ctx.services, Some(connection)).await?;
        let plan = QueryPlan::build(&schema, &object, &opts).map_err(|e| fail(e.to_string()))?;
        // The iteration state stays as it is until the page is read: a failure or a
        // reschedule must not lose the cursor (the engine keeps what `ctx.iteration` holds).
        let cursor: Cursor = match &ctx.iteration {
            None => Cursor::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                fail(format!(
                    "Iteration state invalid: expected {{end_cursor, fetched}}, got {v}: {e}"
                ))
            })?,
        };
        let Some(body) = plan.request(&cursor) else {
            // `max_results` was reached by the previous page.
            ctx.iteration = None;
            return Ok(Vec::new());
        };
        let key = prefetch::key(&ctx.job_id, connection, &body);
        let mut ahead = false;
        let response = match prefetch::take(&key).await {
            Some(answer) => {
                ahead = true;
                answer?
            }
            None => {
                let variables = revealed(ctx.services, connection, &object, &body)?;
                let client = XurrentClient::new(ctx.services, connection)?;
                client.graphql(&plan.text, variables).await?
            }
        };
        let request_id = response
            .meta
            .request_id
            .as_deref()
            .unwrap_or("-")
            .to_string();
        if !plan.object.is_connection() {
            return simple(ctx, &plan.object, &plan, response, mode, &request_id);
        }
        let page = plan
            .read_page(&response.data, &cursor)
            .map_err(|e| fail(e.to_string()))?;
        ctx.log(format!(
            "Page {} of '{object}': {} records (fetched {} of {}), request id {request_id}{}",
            ctx.iteration_count + 1,
            page.records.len(),
            cursor.fetched + page.records.len() as u64,
            page.total_count
                .map_or_else(|| "?".to_string(), |t| t.to_string()),
            if ahead { " (requested ahead)" } else { "" },
        ));
        ctx.iteration = match &page.next {
            Some(next) => Some(
                serde_json::to_value(next)
                    .map_err(|e| fail(format!("The cursor cannot be stored: {e}")))?,
            ),
            None => None,
        };
        // Ask for the next page now, while this page's branches run; the next invocation
        // takes the answer (the cursor in the iteration state stays the durable position).
        if let Some(next_body) = page.next.as_ref().and_then(|n| plan.request(n)) {
            let variables = revealed(ctx.services, connection, &object, &next_body)?;
            prefetch::start(
                prefetch::key(&ctx.job_id, connection, &next_body),
                ctx.services,
                connection,
                plan.text.clone(),
                variables,
            );
        }
        Ok(match mode {
            Mode::Page => vec![Output::new(PAGE, page.output(&response.meta))],
            Mode::Record => page
                .records
                .into_iter()
                .map(|r| Output::new(RECORD, without_nulls(r)))
                .collect(),
        })
    }
}

/// The request's variables with secret values decrypted (for the request only).
fn revealed(
    services: &Services,
    connection: &ConnectionRef,
    object: &str,
    body: &Value,
) -> Result<Option<Value>, Signal> {
    match body.get("variables") {
        Some(v) => Ok(Some(
            crate::client::reveal_for_graphql(services, connection, v).map_err(|e| {
                tracing::warn!(object = %object, error = %e, "xurrent.query: a secret in the input cannot be revealed");
                fail(format!("Input of the query of '{object}': {e}"))
            })?,
        )),
        None => Ok(None),
    }
}

/// Pages requested ahead: when a page has a next one, its request is sent at once in a task
/// while the page's branches run, and the next invocation of the step takes the answer
/// instead of sending the same request again. Keyed by the job, the connection and the exact
/// request (text, variables as the step input had them, cursor): a request that differs —
/// another worker, a changed input, a job resumed elsewhere — simply sends its own. Only a
/// cache: the cursor in the iteration state stays the durable position. Entries not taken
/// within [`prefetch::TTL`] are dropped (their task aborted).
mod prefetch {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use ferry_engine::action::{ConnectionRef, Services};
    use parking_lot::Mutex;
    use serde_json::Value;
    use tokio::task::JoinHandle;

    use crate::client::{GraphqlResponse, XurrentClient, XurrentError};

    /// How long an answer fetched ahead is kept for its step.
    pub const TTL: Duration = Duration::from_secs(120);
    /// The most answers kept at once (oldest dropped first).
    pub const MAX_ENTRIES: usize = 256;

    type Fetch = JoinHandle<Result<GraphqlResponse, XurrentError>>;

    fn entries() -> &'static Mutex<HashMap<String, (Instant, Fetch)>> {
        static ENTRIES: OnceLock<Mutex<HashMap<String, (Instant, Fetch)>>> = OnceLock::new();
        ENTRIES.get_or_init(Default::default)
    }

    /// The key of a request of a job's step over a connection.
    pub fn key(job: &impl std::fmt::Display, connection: &ConnectionRef, body: &Value) -> String {
        format!("{job}\n{}\n{body}", connection.namespace)
    }

    /// Send the request now, in a task (no-op when it is already under way).
    pub fn start(
        key: String,
        services: &Services,
        connection: &ConnectionRef,
        text: String,
        variables: Option<Value>,
    ) {
        let services = Services {
            http: services.http.clone(),
            secrets: services.secrets.clone(),
            store: services.store.clone(),
        };
        let connection = connection.clone();
        let mut map = entries().lock();
        let now = Instant::now();
        map.retain(|_, (at, fetch)| {
            let keep = now.duration_since(*at) < TTL;
            if !keep {
                fetch.abort();
            }
            keep
        });
        if map.contains_key(&key) {
            return;
        }
        while map.len() >= MAX_ENTRIES {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, fetch)) = map.remove(&oldest) {
                fetch.abort();
            }
        }
        let fetch = tokio::spawn(async move {
            let client = XurrentClient::new(&services, &connection)?;
            client.graphql(&text, variables).await
        });
        map.insert(key, (now, fetch));
    }

    /// The answer of a request sent ahead, if there is one for `key` (waiting for it when it
    /// is still under way). `None` when there is none or its task did not complete.
    pub async fn take(key: &str) -> Option<Result<GraphqlResponse, XurrentError>> {
        let (_, fetch) = entries().lock().remove(key)?;
        match fetch.await {
            Ok(answer) => Some(answer),
            Err(e) => {
                tracing::debug!(error = %e, "xurrent.query: a page fetched ahead was lost; fetching it again");
                None
            }
        }
    }
}

/// A record without its `null` fields (at every level). The records of a page wait in the job
/// state until their branch runs, and the state is checkpointed after every step: a Person
/// answer is mostly nulls, so leaving them out makes each checkpoint several times smaller.
/// In a template an absent field renders like an empty one (`{{ item.vip }}`,
/// `{% if item.organization %}`).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// A root field that is not a connection (spec §5.5): one answer, no iteration.
fn simple(
    ctx: &mut ActionContext<'_>,
    object: &RootObject,
    plan: &QueryPlan,
    response: crate::GraphqlResponse,
    mode: Mode,
    request_id: &str,
) -> Result<Vec<Output>, Signal> {
    let value = plan
        .read_simple(&response.data)
        .map_err(|e| fail(e.to_string()))?;
    ctx.iteration = None;
    ctx.log(format!(
        "Query of '{}' done (request id {request_id})",
        object.name
    ));
    let records: Vec<Value> = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    Ok(match mode {
        Mode::Record => records
            .into_iter()
            .map(|r| Output::new(RECORD, without_nulls(r)))
            .collect(),
        Mode::Page => {
            let mut out = match response.meta.to_json() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            // A list-returning root field is not merged (spec §5.5, §10).
            if let [Value::Object(m)] = records.as_slice() {
                for (k, v) in m {
                    out.insert(k.clone(), v.clone());
                }
            }
            vec![Output::new(PAGE, Value::Object(out))]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_follow_object_include_and_mode() {
        let s = shipped().unwrap();
        let c = query_schemas(s, "people", &Value::Null, Mode::Record).unwrap();
        let ids: Vec<&str> = c.input.iter().map(|f| f.id.as_str()).collect();
        for id in [
            "object",
            "mode",
            "include_fields",
            "view",
            "filter",
            "order",
            "page_size",
            "max_results",
        ] {
            assert!(ids.contains(&id), "{id} missing in {ids:?}");
        }
        assert_eq!(c.outputs[0].reference, RECORD);
        assert!(c.outputs[0].fields.iter().any(|f| f.id == "primaryEmail"));
        assert!(!c.outputs[0].fields.iter().any(|f| f.id == "organization"));

        let inc = json!({"organization": true});
        let c = query_schemas(s, "people", &inc, Mode::Page).unwrap();
        let out = &c.outputs[0];
        assert_eq!(out.reference, PAGE);
        for id in [
            "total_count",
            "has_next_page",
            "nodes",
            "ratelimit",
            "costlimit",
            "request_id",
        ] {
            assert!(out.fields.iter().any(|f| f.id == id), "{id} missing");
        }
        let nodes = out.fields.iter().find(|f| f.id == "nodes").unwrap();
        assert!(nodes.array);
        assert!(nodes.fields.iter().any(|f| f.id == "organization"));

        // `me` is not a connection: no view/filter/order, fields at the top level.
        let c = query_schemas(s, "me", &Value::Null, Mode::Page).unwrap();
        assert!(!c.input.iter().any(|f| f.id == "filter"));
        assert!(c.outputs[0].fields.iter().any(|f| f.id == "name"));
        assert!(!c.outputs[0].fields.iter().any(|f| f.id == "nodes"));

        let e = query_schemas(s, "peple", &Value::Null, Mode::Record).unwrap_err();
        assert_eq!(e, "unknown query object 'peple'");
    }

    #[test]
    fn check_names_unknown_objects_filters_and_modes() {
        let a = QueryAction::new();
        let p = a.check(&json!({"object": "peple"}), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("unknown query object 'peple'"), "{p:?}");
        assert!(p[0].contains("did you mean 'people'"), "{p:?}");
        assert!(a
            .check(
                &json!({"object": "people", "filter": {"disabled": false}}),
                &[]
            )
            .is_empty());
        let p = a.check(
            &json!({"object": "people", "filter": {"nosuch": 1}, "mode": "pages"}),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|m| m.contains("nosuch")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("`mode`")), "{p:?}");
        assert!(a
            .check(&json!({"object": "{{ trigger.o }}"}), &[])
            .is_empty());
        assert_eq!(
            a.branch_keys(&json!({"mode": "page"})),
            Some(vec![PAGE.to_string()])
        );
        assert_eq!(a.branch_keys(&json!({})), Some(vec![RECORD.to_string()]));
    }

    #[test]
    fn records_leave_out_null_fields() {
        assert_eq!(
            without_nulls(
                json!({"a": null, "b": 1, "c": {"d": null, "e": [{"f": null, "g": 2}, null]}})
            ),
            json!({"b": 1, "c": {"e": [{"g": 2}, null]}})
        );
    }

    #[test]
    fn options_read_the_input() {
        let o = options(&json!({
            "include_fields": {"organization": true},
            "view": "all",
            "filter": {"disabled": false},
            "order": [],
            "page_size": 500,
            "max_results": 7
        }))
        .unwrap();
        assert_eq!(o.view.as_deref(), Some("all"));
        assert_eq!(o.filter, Some(json!({"disabled": false})));
        assert_eq!(o.order, None);
        assert_eq!(o.page_size, Some(MAX_PAGE_SIZE));
        assert_eq!(o.limit, Some(7));
        assert!(options(&json!({"max_results": -1})).is_err());
    }
}
