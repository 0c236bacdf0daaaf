//! The Query action's pure half: root query objects (spec §4.2, §5.1), the query document
//! with its variables for one page (§5.4, §5.5), and reading a page of results (§5.4, §4.7).

use ferry_core::schema::{Field, FieldType};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::flatten::flatten;
use crate::include::{include_fields_field, Include};
use crate::inputs::{compact, input_fields, order_fields};
use crate::model::{FieldDef, Kind, Schema, MAX_NAME_LEN};
use crate::names::humanize;
use crate::select::{humanized_enumeration, output_fields, selection};
use crate::Error;

/// Default and largest page size of a root connection.
pub const MAX_PAGE_SIZE: u32 = 100;

/// An argument of a root field the Query action passes as a variable (`view`, `filter`,
/// `order`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgInfo {
    /// The variable type (`PersonView`, `PersonFilter`, `[PersonOrder!]`).
    pub type_ref: String,
    /// The unwrapped type name (`PersonOrder`).
    pub type_name: String,
}

/// What a root query field returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// A connection: paged with `first`/`after`, records under `nodes`.
    Connection {
        /// The connection type (`PersonConnection`).
        connection_type: String,
        /// Its node type (`Person`).
        node_type: String,
    },
    /// Anything else (`me: Person`, `account: Account`).
    Simple {
        /// The unwrapped return type.
        return_type: String,
        /// The field returns a list.
        list: bool,
    },
}

/// A root query object the Query action can query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootObject {
    /// The root field's name (`people`).
    pub name: String,
    /// Its label (`People`).
    pub label: String,
    /// Connection or simple.
    pub kind: RootKind,
    /// The `view` argument, when it unwraps to an enum.
    pub view: Option<ArgInfo>,
    /// The `filter` argument, when it unwraps to an input object.
    pub filter: Option<ArgInfo>,
    /// The `order` argument, when it unwraps to an input object.
    pub order: Option<ArgInfo>,
    /// The field accepts `first`.
    pub has_first: bool,
    /// The field accepts `after`.
    pub has_after: bool,
}

impl RootObject {
    /// The type whose fields are the records: the node type or the return type.
    pub fn record_type(&self) -> &str {
        match &self.kind {
            RootKind::Connection { node_type, .. } => node_type,
            RootKind::Simple { return_type, .. } => return_type,
        }
    }

    /// Whether it is a connection.
    pub fn is_connection(&self) -> bool {
        matches!(self.kind, RootKind::Connection { .. })
    }
}

fn arg_info(schema: &Schema, f: &FieldDef, name: &str, kind: Kind) -> Option<ArgInfo> {
    let a = f.arg(name)?;
    let u = schema.unwrap(&a.ty);
    (u.kind == kind).then(|| ArgInfo {
        type_ref: a.ty.type_string(),
        type_name: u.name.to_string(),
    })
}

impl Schema {
    /// The root field options of the query root (spec §4.2): every field whose name has at
    /// most 40 characters, as `{id, label}`, in schema order. Empty without a query root.
    pub fn query_options(&self) -> Vec<Value> {
        root_options(self.query_root())
    }

    /// The root field options of the mutation root, as [`Schema::query_options`].
    pub fn mutation_options(&self) -> Vec<Value> {
        root_options(self.mutation_root())
    }

    /// Every root query object the Query action can call, in schema order: root fields with
    /// names of at most 40 characters and no required argument without default (the action
    /// passes only `first`, `after`, `view`, `filter` and `order`).
    pub fn root_objects(&self) -> Vec<RootObject> {
        self.query_root()
            .map(|q| {
                q.fields
                    .iter()
                    .filter_map(|f| self.root_object_of(f))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The root query object `name`: unknown names and root fields the action cannot call are
    /// errors naming them.
    pub fn root_object(&self, name: &str) -> Result<RootObject, Error> {
        let f = self
            .query_root()
            .and_then(|q| q.field(name))
            .ok_or_else(|| Error::UnknownRootObject(name.to_string()))?;
        if f.name.chars().count() > MAX_NAME_LEN {
            return Err(Error::UnknownRootObject(name.to_string()));
        }
        self.root_object_of(f).ok_or_else(|| {
            let needed: Vec<&str> = f
                .args
                .iter()
                .filter(|a| a.is_required_without_default())
                .map(|a| a.name.as_str())
                .collect();
            Error::RootObjectNeedsArguments(name.to_string(), needed.join(", "))
        })
    }

    fn root_object_of(&self, f: &FieldDef) -> Option<RootObject> {
        if f.name.chars().count() > MAX_NAME_LEN
            || f.args.iter().any(|a| a.is_required_without_default())
        {
            return None;
        }
        let u = self.unwrap(&f.ty);
        let connection = matches!(u.kind, Kind::Object | Kind::Interface)
            && !u.list
            && self.is_connection(u.name);
        let kind = if connection {
            RootKind::Connection {
                connection_type: u.name.to_string(),
                node_type: self.node_type(u.name).unwrap_or_default().to_string(),
            }
        } else {
            RootKind::Simple {
                return_type: u.name.to_string(),
                list: u.list,
            }
        };
        Some(RootObject {
            name: f.name.clone(),
            label: humanize(&f.name),
            view: if connection {
                arg_info(self, f, "view", Kind::Enum)
            } else {
                None
            },
            filter: if connection {
                arg_info(self, f, "filter", Kind::InputObject)
            } else {
                None
            },
            order: if connection {
                arg_info(self, f, "order", Kind::InputObject)
            } else {
                None
            },
            has_first: f.arg("first").is_some(),
            has_after: f.arg("after").is_some(),
            kind,
        })
    }
}

fn root_options(root: Option<&crate::TypeDef>) -> Vec<Value> {
    root.map(|t| {
        t.fields
            .iter()
            .filter(|f| f.name.chars().count() <= MAX_NAME_LEN)
            .map(|f| json!({"id": f.name, "label": humanize(&f.name)}))
            .collect()
    })
    .unwrap_or_default()
}

/// What a runbook asks of a Query step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryOptions {
    /// Included nested fields.
    pub include: Include,
    /// The `view` value (an enum value of the view type), when set.
    pub view: Option<String>,
    /// The `filter` object (compacted before sending).
    pub filter: Option<Value>,
    /// The `order` list of `{field, direction}` objects.
    pub order: Option<Value>,
    /// Records per page, 1..=100 (default 100).
    pub page_size: Option<u32>,
    /// The most records to fetch in total (`limit`); unlimited when `None`.
    pub limit: Option<u64>,
}

/// A query built once per step and reused for every page: the text never changes between
/// pages (the cursor and the page size are variables).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPlan {
    /// The root object.
    pub object: RootObject,
    /// The node (or return) type's selection.
    pub selection: String,
    /// The query document.
    pub text: String,
    /// Variables other than `first` and `after` (`view`, `filter`, `order`).
    pub variables: Map<String, Value>,
    /// Records per page.
    pub page_size: u32,
    /// The most records to fetch in total.
    pub limit: Option<u64>,
}

/// Where paging stands between two pages (the Query action's iteration state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `pageInfo.endCursor` of the last page, `None` before the first page.
    pub end_cursor: Option<String>,
    /// Records fetched so far.
    pub fetched: u64,
}

/// One page of a connection, read from the `data` of an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The records, [flattened](crate::flatten).
    pub records: Vec<Value>,
    /// `totalCount`, when the server sent it.
    pub total_count: Option<i64>,
    /// Where to continue, or `None` when this was the last page to fetch (the server has no
    /// more, or `limit` is reached).
    pub next: Option<Cursor>,
}

impl Page {
    /// Whether another page will be fetched.
    pub fn has_next_page(&self) -> bool {
        self.next.is_some()
    }

    /// The per-page output (spec §5.2): `{total_count, has_next_page, nodes}` merged with the
    /// answer's metadata (`ratelimit`, `costlimit`, `request_id`).
    pub fn output(&self, meta: &crate::ResponseMeta) -> Value {
        let mut out = meta.to_json();
        if let Value::Object(m) = &mut out {
            m.insert("total_count".into(), json!(self.total_count));
            m.insert("has_next_page".into(), json!(self.has_next_page()));
            m.insert("nodes".into(), Value::Array(self.records.clone()));
        }
        out
    }
}

impl QueryPlan {
    /// Build the query for `object` (spec §5.4/§5.5). A connection is queried as
    /// `query($first: Int!, $after: String[, $view: …][, $filter: …][, $order: …]) { object(first:
    /// $first, after: $after, …) { totalCount pageInfo { hasNextPage endCursor } nodes { … } } }`
    /// — `view`, `filter` (compacted) and `order` only when given; a simple object as
    /// `query { object { … } }`.
    pub fn build(schema: &Schema, object: &str, opts: &QueryOptions) -> Result<QueryPlan, Error> {
        let root = schema.root_object(object)?;
        let sel = selection(schema, root.record_type(), &opts.include)?;
        let mut variables = Map::new();
        let text = match &root.kind {
            RootKind::Simple { .. } => {
                if sel.is_empty() {
                    format!("query {{ {object} }}")
                } else {
                    format!("query {{ {object} {{ {sel} }} }}")
                }
            }
            RootKind::Connection { .. } => {
                let mut defs: Vec<String> = Vec::new();
                let mut args: Vec<String> = Vec::new();
                if root.has_first {
                    defs.push("$first: Int!".into());
                    args.push("first: $first".into());
                }
                if root.has_after {
                    defs.push("$after: String".into());
                    args.push("after: $after".into());
                }
                if let (Some(view), Some(info)) = (opts.view.as_deref(), &root.view) {
                    if !view.is_empty() {
                        defs.push(format!("$view: {}", info.type_ref));
                        args.push("view: $view".into());
                        variables.insert("view".into(), Value::String(view.to_string()));
                    }
                }
                if let (Some(filter), Some(info)) = (&opts.filter, &root.filter) {
                    let c = compact(filter);
                    if c.as_object().is_some_and(|m| !m.is_empty()) {
                        defs.push(format!("$filter: {}", info.type_ref));
                        args.push("filter: $filter".into());
                        variables.insert("filter".into(), c);
                    }
                }
                if let (Some(order), Some(info)) = (&opts.order, &root.order) {
                    let entries = order_entries(order);
                    if !entries.is_empty() {
                        defs.push(format!("$order: {}", info.type_ref));
                        args.push("order: $order".into());
                        variables.insert("order".into(), Value::Array(entries));
                    }
                }
                let defs = if defs.is_empty() {
                    String::new()
                } else {
                    format!("({})", defs.join(", "))
                };
                let args = if args.is_empty() {
                    String::new()
                } else {
                    format!("({})", args.join(", "))
                };
                let nodes = if sel.is_empty() {
                    String::new()
                } else {
                    format!(" nodes {{ {sel} }}")
                };
                format!(
                    "query{defs} {{ {object}{args} {{ totalCount pageInfo {{ hasNextPage endCursor }}{nodes} }} }}"
                )
            }
        };
        Ok(QueryPlan {
            object: root,
            selection: sel,
            text,
            variables,
            page_size: opts
                .page_size
                .unwrap_or(MAX_PAGE_SIZE)
                .clamp(1, MAX_PAGE_SIZE),
            limit: opts.limit,
        })
    }

    /// The page size of the next request: `min(page size, limit − fetched)`, or `None` when
    /// `limit` is reached.
    pub fn next_first(&self, cursor: &Cursor) -> Option<u32> {
        match self.limit {
            Some(limit) if cursor.fetched >= limit => None,
            Some(limit) => Some(
                self.page_size
                    .min((limit - cursor.fetched).min(u64::from(u32::MAX)) as u32),
            ),
            None => Some(self.page_size),
        }
    }

    /// The JSON body of the request for the page after `cursor`
    /// (`{"query", "variables"}`; the cursor is the `after` **variable**, never part of the
    /// text), or `None` when `limit` is reached. A simple object has one request with no
    /// variables.
    pub fn request(&self, cursor: &Cursor) -> Option<Value> {
        if !self.object.is_connection() {
            return (cursor.fetched == 0 && cursor.end_cursor.is_none())
                .then(|| json!({"query": self.text}));
        }
        let first = self.next_first(cursor)?;
        let mut vars = self.variables.clone();
        if self.object.has_first {
            vars.insert("first".into(), json!(first));
        }
        if self.object.has_after {
            vars.insert(
                "after".into(),
                cursor.end_cursor.clone().map_or(Value::Null, Value::String),
            );
        }
        Some(json!({"query": self.text, "variables": vars}))
    }

    /// Read one page of a connection from the answer's `data`: `data.<object>` must be a
    /// non-empty object (else `No data returned for '<object>'`); records are `nodes`,
    /// flattened; the next cursor is set when `pageInfo.hasNextPage` is true, `endCursor` is
    /// not blank and `limit` is not reached.
    pub fn read_page(&self, data: &Value, cursor: &Cursor) -> Result<Page, Error> {
        let r = data
            .get(&self.object.name)
            .filter(|r| r.as_object().is_some_and(|m| !m.is_empty()))
            .ok_or_else(|| Error::NoData(self.object.name.clone()))?;
        let mut records: Vec<Value> = r
            .get("nodes")
            .and_then(Value::as_array)
            .map(|n| n.iter().map(flatten).collect())
            .unwrap_or_default();
        if let Some(limit) = self.limit {
            let room = limit.saturating_sub(cursor.fetched);
            if (records.len() as u64) > room {
                records.truncate(room as usize);
            }
        }
        let fetched = cursor.fetched + records.len() as u64;
        let page_info = r.get("pageInfo");
        let has_next = page_info
            .and_then(|p| p.get("hasNextPage"))
            .is_some_and(|h| h == &Value::Bool(true) || h.as_str() == Some("true"));
        let end_cursor = page_info
            .and_then(|p| p.get("endCursor"))
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty());
        let within_limit = self.limit.is_none_or(|l| fetched < l);
        let next = match end_cursor {
            Some(c) if has_next && within_limit && !records.is_empty() => Some(Cursor {
                end_cursor: Some(c.to_string()),
                fetched,
            }),
            _ => None,
        };
        Ok(Page {
            records,
            total_count: r.get("totalCount").and_then(Value::as_i64),
            next,
        })
    }

    /// Read the answer of a simple object (spec §5.5): the flattened object, or, for a
    /// list-returning field, the flattened list. A null or empty answer is
    /// `No data returned for '<object>'`.
    pub fn read_simple(&self, data: &Value) -> Result<Value, Error> {
        match data.get(&self.object.name) {
            None | Some(Value::Null) => Err(Error::NoData(self.object.name.clone())),
            Some(Value::Object(m)) if m.is_empty() => Err(Error::NoData(self.object.name.clone())),
            Some(v) => Ok(flatten(v)),
        }
    }
}

/// `[{field, direction}]` entries of an order value (an object is one entry); only those two
/// keys are sent, and a missing direction is left out (the server's default applies).
fn order_entries(order: &Value) -> Vec<Value> {
    let items: Vec<&Value> = match order {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![order],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|e| {
            let field = e.get("field").filter(|f| !f.is_null())?;
            let mut m = Map::new();
            m.insert("field".into(), field.clone());
            if let Some(d) = e.get("direction").filter(|d| !d.is_null()) {
                m.insert("direction".into(), d.clone());
            }
            Some(Value::Object(m))
        })
        .collect()
}

/// The dynamic input fields of a Query step for `object` (spec §5.1): `include_fields`, and
/// for connections `view` (humanized enumeration), `filter` (sorted by name) and `order`
/// (a nested list). `include` is the step's `include_fields` value.
pub fn query_input_fields(schema: &Schema, object: &RootObject, include: &Value) -> Vec<Field> {
    let mut out = vec![include_fields_field(schema, object.record_type(), include)];
    if let Some(v) = &object.view {
        out.push(
            Field::new("view", FieldType::String)
                .label("View")
                .enumeration(humanized_enumeration(schema, &v.type_name)),
        );
    }
    if let Some(f) = &object.filter {
        out.push(
            Field::new("filter", FieldType::Nested)
                .label("Filter")
                .with_fields(input_fields(schema, &f.type_name, true)),
        );
    }
    if let Some(o) = &object.order {
        out.push(
            Field::new("order", FieldType::Nested)
                .label("Order")
                .array()
                .with_fields(order_fields(schema, &o.type_name)),
        );
    }
    out
}

/// The fields of one record of `object` (the node type's or return type's output fields,
/// spec §4.4): what a per-record branch sees as its current item.
pub fn record_fields(schema: &Schema, object: &RootObject, include: &Include) -> Vec<Field> {
    output_fields(schema, object.record_type(), include)
}

/// The page output of a Query step (spec §5.2): for a connection `total_count`,
/// `has_next_page` and `nodes` (`Records`, a list of records); for a simple object the
/// record's fields at the top level. Append [`metadata_fields`](crate::metadata_fields) for
/// the answer's metadata.
pub fn page_output_fields(schema: &Schema, object: &RootObject, include: &Include) -> Vec<Field> {
    let records = record_fields(schema, object, include);
    if !object.is_connection() {
        return records;
    }
    vec![
        Field::new("total_count", FieldType::Integer).label("Total count"),
        Field::new("has_next_page", FieldType::Boolean).label("Has next page"),
        Field::new("nodes", FieldType::Nested)
            .label("Records")
            .array()
            .with_fields(records),
    ]
}
