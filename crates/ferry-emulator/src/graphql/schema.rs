//! Building the `async_graphql` dynamic schema from the SDL model, with one generic
//! resolver per field.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::dynamic::{
    Directive, Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface,
    InterfaceField, Object, ResolverContext, Scalar, Schema, TypeRef, Union,
};
use async_graphql::{Context, Error, ErrorExtensions, PathSegment, QueryPathSegment, Value};
use async_graphql_parser::types::{BaseType, Type};
use serde_json::Value as Json;

use super::conn_list::ConnQuery;
use super::model::{base_name, is_list, Kind, Model};
use super::mutation;
use super::resolve::{
    account_object, concrete_types, deref, encode_cursor, enum_value, json_to_value,
    nested_records, node_by_id, paginate, record_value, value_to_json, ConnPage, Ctx, EdgeVal,
    Paging,
};
use super::validate::FIELD_PATH_EXTENSION;
use crate::{EmulatorError, Record};

/// How a field is resolved.
#[derive(Debug)]
enum Plan {
    Scalar {
        key: String,
    },
    Enum {
        key: String,
        ty: String,
    },
    Ref {
        key: String,
        abstract_ty: bool,
    },
    /// A field of type `Account`: an account id string, an embedded object, or (for
    /// `account`) the record's own account.
    AccountRef {
        key: String,
    },
    NestedConn {
        key: String,
        types: Vec<String>,
        abstract_items: bool,
    },
    RootConn {
        types: Vec<String>,
        abstract_items: bool,
    },
    ConnNodes,
    ConnEdges,
    ConnPageInfo,
    ConnTotal,
    EdgeCursor,
    EdgeNode,
    Node,
    Nodes,
    Me,
    Account,
    AttachmentStorage,
    RateLimit,
    Null,
    Unsupported(String),
    Mutation(Arc<mutation::MutationPlan>),
}

fn type_ref(ty: &Type) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(n) => TypeRef::Named(Cow::Owned(n.to_string())),
        BaseType::List(t) => TypeRef::List(Box::new(type_ref(t))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

fn input_value(d: &super::model::InputDef) -> InputValue {
    let mut iv = InputValue::new(d.name.clone(), type_ref(&d.ty));
    if let Some(def) = &d.default {
        iv = iv.default_value(def.clone());
    }
    iv
}

fn is_abstract(model: &Model, name: &str) -> bool {
    matches!(model.kind(name), Some(Kind::Interface | Kind::Union))
}

fn plan_for(model: &Model, owner: &str, field: &super::model::FieldDef) -> Plan {
    let ty = base_name(&field.ty);
    let key = field.name.clone();
    let owner_is_query = owner == model.query;
    if owner_is_query {
        match field.name.as_str() {
            "node" => return Plan::Node,
            "nodes" => return Plan::Nodes,
            "me" => return Plan::Me,
            "account" => return Plan::Account,
            "attachmentStorage" => return Plan::AttachmentStorage,
            "rateLimit" => return Plan::RateLimit,
            _ => {}
        }
        if model.is_connection(ty) {
            let item = model.connection_item(ty).unwrap_or_default().to_string();
            return Plan::RootConn {
                abstract_items: is_abstract(model, &item),
                types: concrete_types(model, &item),
            };
        }
        return Plan::Null;
    }
    if model.mutation.as_deref() == Some(owner) {
        return match mutation::MutationPlan::new(model, field) {
            Some(p) => Plan::Mutation(Arc::new(p)),
            None => Plan::Unsupported(format!(
                "Mutation '{}' is not supported by the emulator",
                field.name
            )),
        };
    }
    if model.is_connection(owner) {
        match field.name.as_str() {
            "nodes" => return Plan::ConnNodes,
            "edges" => return Plan::ConnEdges,
            "pageInfo" => return Plan::ConnPageInfo,
            "totalCount" => return Plan::ConnTotal,
            _ => {}
        }
    }
    let is_edge = model.get(owner).is_some_and(|t| {
        t.fields.contains_key("cursor") && t.fields.contains_key("node") && owner.ends_with("Edge")
    });
    if is_edge {
        match field.name.as_str() {
            "cursor" => return Plan::EdgeCursor,
            "node" => return Plan::EdgeNode,
            _ => {}
        }
    }
    match model.kind(ty) {
        Some(Kind::Scalar) | None => Plan::Scalar { key },
        Some(Kind::Enum) => Plan::Enum {
            key,
            ty: ty.to_string(),
        },
        Some(Kind::Input) => Plan::Null,
        Some(Kind::Object | Kind::Interface | Kind::Union) => {
            if model.is_connection(ty) {
                let item = model.connection_item(ty).unwrap_or_default().to_string();
                Plan::NestedConn {
                    key,
                    abstract_items: is_abstract(model, &item),
                    types: concrete_types(model, &item),
                }
            } else if ty == "Account" && !is_list(&field.ty) {
                Plan::AccountRef { key }
            } else {
                Plan::Ref {
                    key,
                    abstract_ty: is_abstract(model, ty),
                }
            }
        }
    }
}

fn err<'a>(msg: impl Into<String>) -> FieldFuture<'a> {
    let msg = msg.into();
    FieldFuture::new(async move { Err::<Option<FieldValue<'a>>, Error>(Error::new(msg)) })
}

fn ok<'a>(v: Option<FieldValue<'a>>) -> FieldFuture<'a> {
    FieldFuture::Value(v)
}

fn paging_args(rctx: &ResolverContext<'_>) -> Result<Paging, Error> {
    let int = |n: &str| -> Result<Option<i64>, Error> {
        match rctx.args.get(n) {
            Some(v) if !v.is_null() => Ok(Some(v.i64()?)),
            _ => Ok(None),
        }
    };
    let string = |n: &str| -> Result<Option<String>, Error> {
        match rctx.args.get(n) {
            Some(v) if !v.is_null() => Ok(Some(v.string()?.to_string())),
            _ => Ok(None),
        }
    };
    Ok(Paging {
        first: int("first")?,
        last: int("last")?,
        after: string("after")?,
        before: string("before")?,
    })
}

fn conn_value(page: ConnPage) -> Option<FieldValue<'static>> {
    Some(FieldValue::owned_any(page))
}

/// A list of objects. The dynamic schema cannot return `null` items in object lists, so
/// unresolvable items are left out.
fn list_of(
    items: impl IntoIterator<Item = Option<FieldValue<'static>>>,
) -> Option<FieldValue<'static>> {
    Some(FieldValue::list(items.into_iter().flatten()))
}

fn resolve<'a>(plan: &Plan, rctx: ResolverContext<'a>) -> FieldFuture<'a> {
    let Some(ctx) = rctx.data_opt::<Ctx>() else {
        return err("internal: missing request context");
    };
    match plan {
        Plan::Null => ok(None),
        Plan::Unsupported(msg) => err(msg.clone()),
        Plan::Scalar { key } => {
            let Some(rec) = rctx.parent_value.downcast_ref::<Arc<Record>>() else {
                return ok(None);
            };
            match rec.get(key.as_str()) {
                None | Some(Json::Null) => ok(None),
                Some(v) => ok(Some(FieldValue::value(json_to_value(v)))),
            }
        }
        Plan::Enum { key, ty } => {
            let Some(rec) = rctx.parent_value.downcast_ref::<Arc<Record>>() else {
                return ok(None);
            };
            let v = rec
                .get(key.as_str())
                .and_then(|v| enum_value(&ctx.model, ty, v));
            ok(v.map(FieldValue::value))
        }
        Plan::Ref { key, abstract_ty } => {
            let Some(rec) = rctx.parent_value.downcast_ref::<Arc<Record>>() else {
                return ok(None);
            };
            let account = rec
                .get("_account")
                .and_then(Json::as_str)
                .unwrap_or(&ctx.account);
            match rec.get(key.as_str()) {
                Some(Json::Array(list)) => list_of(list.iter().map(|v| {
                    deref(&ctx.emu, account, v).and_then(|r| record_value(r, *abstract_ty))
                }))
                .map_or(ok(None), |v| ok(Some(v))),
                Some(v) => {
                    ok(deref(&ctx.emu, account, v).and_then(|r| record_value(r, *abstract_ty)))
                }
                None => ok(None),
            }
        }
        Plan::AccountRef { key } => {
            let Some(rec) = rctx.parent_value.downcast_ref::<Arc<Record>>() else {
                return ok(None);
            };
            match rec.get(key.as_str()) {
                Some(Json::Object(o)) => ok(Some(FieldValue::owned_any(Arc::new(o.clone())))),
                Some(Json::String(id)) => {
                    ok(account_object(&ctx.emu, id).map(FieldValue::owned_any))
                }
                None if key == "account" => {
                    let account = rec
                        .get("_account")
                        .and_then(Json::as_str)
                        .unwrap_or(&ctx.account);
                    ok(account_object(&ctx.emu, account).map(FieldValue::owned_any))
                }
                _ => ok(None),
            }
        }
        Plan::NestedConn {
            key,
            types,
            abstract_items,
        } => {
            let Some(rec) = rctx.parent_value.downcast_ref::<Arc<Record>>() else {
                return ok(None);
            };
            let paging = match paging_args(&rctx) {
                Ok(p) => p,
                Err(e) => return err(e.message),
            };
            let items = nested_records(&ctx.emu, rec, key, types);
            match paginate(&items, &paging, *abstract_items) {
                Ok(page) => ok(conn_value(page)),
                Err(e) => err(e),
            }
        }
        Plan::RootConn {
            types,
            abstract_items,
        } => {
            let paging = match paging_args(&rctx) {
                Ok(p) => p,
                Err(e) => return err(e.message),
            };
            let view = rctx
                .args
                .get("view")
                .and_then(|v| v.enum_name().ok().map(str::to_string));
            let filter = rctx
                .args
                .get("filter")
                .filter(|f| !f.is_null())
                .and_then(|f| match value_to_json(f.as_value()) {
                    Json::Object(f) => Some(f),
                    _ => None,
                });
            let mut spec: Vec<(String, bool)> = Vec::new();
            if let Some(order) = rctx.args.get("order").filter(|f| !f.is_null()) {
                let order = match value_to_json(order.as_value()) {
                    Json::Array(a) => a,
                    o @ Json::Object(_) => vec![o],
                    _ => Vec::new(),
                };
                spec = order
                    .iter()
                    .filter_map(|o| {
                        let f = o.get("field")?.as_str()?.to_string();
                        let desc = o.get("direction").and_then(Json::as_str) == Some("desc");
                        Some((f, desc))
                    })
                    .collect();
            }
            let query = ConnQuery {
                account: ctx.account.clone(),
                types: types.clone(),
                view,
                person_id: ctx.person_id.clone(),
                filter,
                order: spec,
            };
            // Filtered and ordered once per store generation, not once per page.
            let items = ctx.emu.conn_lists.list(&ctx.emu, &query);
            match paginate(&items, &paging, *abstract_items) {
                Ok(page) => ok(conn_value(page)),
                Err(e) => err(e),
            }
        }
        Plan::ConnNodes => {
            let Some(page) = rctx.parent_value.downcast_ref::<ConnPage>() else {
                return ok(None);
            };
            let abs = page.abstract_items;
            list_of(page.items.iter().map(|r| record_value(r.clone(), abs)))
                .map_or(ok(None), |v| ok(Some(v)))
        }
        Plan::ConnEdges => {
            let Some(page) = rctx.parent_value.downcast_ref::<ConnPage>() else {
                return ok(None);
            };
            let edges = page.items.iter().enumerate().map(|(i, r)| {
                Some(FieldValue::owned_any(EdgeVal {
                    cursor: encode_cursor(page.offset + i),
                    node: r.clone(),
                    abstract_item: page.abstract_items,
                }))
            });
            list_of(edges).map_or(ok(None), |v| ok(Some(v)))
        }
        Plan::ConnPageInfo => {
            let Some(page) = rctx.parent_value.downcast_ref::<ConnPage>() else {
                return ok(None);
            };
            let mut info = Record::new();
            info.insert("hasNextPage".into(), page.has_next.into());
            info.insert("hasPreviousPage".into(), page.has_prev.into());
            if !page.items.is_empty() {
                info.insert("startCursor".into(), encode_cursor(page.offset).into());
                info.insert(
                    "endCursor".into(),
                    encode_cursor(page.offset + page.items.len() - 1).into(),
                );
            }
            ok(Some(FieldValue::owned_any(Arc::new(info))))
        }
        Plan::ConnTotal => {
            let Some(page) = rctx.parent_value.downcast_ref::<ConnPage>() else {
                return ok(None);
            };
            ok(Some(FieldValue::value(Value::from(page.total as u64))))
        }
        Plan::EdgeCursor => {
            let Some(edge) = rctx.parent_value.downcast_ref::<EdgeVal>() else {
                return ok(None);
            };
            ok(Some(FieldValue::value(Value::String(edge.cursor.clone()))))
        }
        Plan::EdgeNode => {
            let Some(edge) = rctx.parent_value.downcast_ref::<EdgeVal>() else {
                return ok(None);
            };
            ok(record_value(edge.node.clone(), edge.abstract_item))
        }
        Plan::Node => {
            let id = rctx
                .args
                .get("id")
                .and_then(|v| v.string().ok().map(str::to_string));
            // Unknown ids, and ids of other accounts, answer `Not Found` with the field's path.
            match id.and_then(|id| node_by_id(&ctx.emu, &ctx.account, &id)) {
                Some(r) => ok(record_value(r, true)),
                None => err("Not Found".to_string()),
            }
        }
        Plan::Nodes => {
            let ids: Vec<String> = rctx
                .args
                .get("ids")
                .and_then(|v| v.list().ok())
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.string().ok().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            list_of(ids.iter().map(|id| {
                node_by_id(&ctx.emu, &ctx.account, id).and_then(|r| record_value(r, true))
            }))
            .map_or(ok(None), |v| ok(Some(v)))
        }
        Plan::Me => ok(ctx
            .person_id
            .as_deref()
            .and_then(|id| node_by_id(&ctx.emu, &ctx.account, id))
            .map(FieldValue::owned_any)),
        Plan::Account => ok(account_object(&ctx.emu, &ctx.account).map(FieldValue::owned_any)),
        Plan::AttachmentStorage => ok(Some(FieldValue::owned_any(Arc::new(
            super::attachments::storage_info(&ctx.emu),
        )))),
        Plan::RateLimit => {
            let mut o = Record::new();
            o.insert("cost".into(), ctx.rate.cost.into());
            o.insert("limit".into(), ctx.rate.cost_limit.into());
            o.insert("remaining".into(), ctx.rate.cost_remaining.into());
            o.insert("resetAt".into(), ctx.rate.reset.into());
            ok(Some(FieldValue::owned_any(Arc::new(o))))
        }
        Plan::Mutation(m) => {
            let m = m.clone();
            let result = m.run(ctx, &rctx);
            match result {
                Ok(v) => ok(v),
                Err(e) => err(e),
            }
        }
    }
}

/// Person-relative views; other views (`current_account`, `all`, ...) show every record of
/// the request's account, and `trash` / `archive` are empty (nothing is ever trashed).
fn make_field(model: &Model, owner: &str, f: &super::model::FieldDef) -> Field {
    let plan = Arc::new(plan_for(model, owner, f));
    let nullable = f.ty.nullable;
    let mut field = Field::new(f.name.clone(), type_ref(&f.ty), move |rctx| {
        let ctx = rctx.ctx;
        let fut = resolve(&plan, rctx);
        if nullable {
            null_on_error(ctx, fut)
        } else {
            path_on_error(ctx, fut)
        }
    });
    for a in &f.args {
        field = field.argument(input_value(a));
    }
    field
}

/// The response path of the field being resolved.
fn field_path(ctx: &Context<'_>) -> Vec<PathSegment> {
    let Some(node) = ctx.path_node else {
        return Vec::new();
    };
    let mut path: Vec<PathSegment> = std::iter::once(&node)
        .chain(node.parents())
        .map(|n| match n.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_string()),
            QueryPathSegment::Index(i) => PathSegment::Index(i),
        })
        .collect();
    path.reverse();
    path
}

/// A failing nullable field answers `null` and reports its error with the field's `path`, as
/// GraphQL servers (and Xurrent) do. async-graphql's dynamic schema would instead leave the
/// field out of its parent and report the error without a path.
fn null_on_error<'a>(ctx: &'a Context<'a>, fut: FieldFuture<'a>) -> FieldFuture<'a> {
    let FieldFuture::Future(fut) = fut else {
        return fut;
    };
    FieldFuture::new(async move {
        match fut.await {
            Ok(v) => Ok(v),
            Err(e) => {
                let mut error = e.into_server_error(ctx.item.pos);
                error.path = field_path(ctx);
                ctx.add_error(error);
                Ok(None::<FieldValue<'a>>)
            }
        }
    })
}

/// A failing non-null field still fails its parent, but its error carries the field's path
/// (in [`FIELD_PATH_EXTENSION`], which [`super::validate::response_body`] turns into `path`).
fn path_on_error<'a>(ctx: &'a Context<'a>, fut: FieldFuture<'a>) -> FieldFuture<'a> {
    let FieldFuture::Future(fut) = fut else {
        return fut;
    };
    FieldFuture::new(async move {
        fut.await.map_err(|e| {
            let path: Vec<Value> = field_path(ctx)
                .into_iter()
                .map(|s| match s {
                    PathSegment::Field(f) => Value::String(f),
                    PathSegment::Index(i) => Value::from(i),
                })
                .collect();
            e.extend_with(|_, ext| ext.set(FIELD_PATH_EXTENSION, Value::List(path)))
        })
    })
}

/// Build the executable schema with every type of the model.
pub(crate) fn build_schema(model: &Model) -> Result<Schema, EmulatorError> {
    let mut builder = Schema::build(&model.query, model.mutation.as_deref(), None);
    for t in model.types.values() {
        match t.kind {
            Kind::Scalar => {
                if !matches!(
                    t.name.as_str(),
                    "Int" | "Float" | "String" | "Boolean" | "ID"
                ) {
                    builder = builder.register(Scalar::new(t.name.clone()));
                }
            }
            Kind::Enum => {
                let mut e = Enum::new(t.name.clone());
                for v in &t.values {
                    let mut item = EnumItem::new(v.name.clone());
                    if let Some(w) = &v.wire {
                        item = item.directive(
                            Directive::new("wireValue").argument("value", Value::String(w.clone())),
                        );
                    }
                    e = e.item(item);
                }
                builder = builder.register(e);
            }
            Kind::Input => {
                let mut o = InputObject::new(t.name.clone());
                for i in t.inputs.values() {
                    o = o.field(input_value(i));
                }
                builder = builder.register(o);
            }
            Kind::Union => {
                let mut u = Union::new(t.name.clone());
                for m in &t.members {
                    u = u.possible_type(m.clone());
                }
                builder = builder.register(u);
            }
            Kind::Interface => {
                let mut i = Interface::new(t.name.clone());
                for imp in &t.interfaces {
                    i = i.implement(imp.clone());
                }
                for f in t.fields.values() {
                    let mut field = InterfaceField::new(f.name.clone(), type_ref(&f.ty));
                    for a in &f.args {
                        field = field.argument(input_value(a));
                    }
                    i = i.field(field);
                }
                builder = builder.register(i);
            }
            Kind::Object => {
                let mut o = Object::new(t.name.clone());
                for imp in &t.interfaces {
                    o = o.implement(imp.clone());
                }
                for f in t.fields.values() {
                    o = o.field(make_field(model, &t.name, f));
                }
                builder = builder.register(o);
            }
        }
    }
    builder
        .finish()
        .map_err(|e| EmulatorError::Schema(e.to_string()))
}
