//! `ferry-xurrent`: the Xurrent connector's GraphQL schema subsystem, as pure code (no I/O).
//!
//! What the Query and Mutation actions need before and after the HTTP call
//! (`xurrent_connector.md` §4–§6):
//!
//! - [`Schema`] — the model of a GraphQL schema, built from a standard introspection answer
//!   ([`Schema::from_introspection`], the query text is [`INTROSPECTION_QUERY`]) or from SDL
//!   ([`Schema::from_sdl`], [`Schema::embedded`] for the schema that ships with Ferry, so that
//!   checks work offline). Serializable, so a connector can cache the compact model.
//! - [`Schema::root_objects`] — the root query objects with their `view`/`filter`/`order`
//!   argument types; [`Schema::query_options`]/[`Schema::mutation_options`] — the selector
//!   options.
//! - [`Include`] — "include nested fields" to a depth of 6; [`selection`] — the selection text;
//!   [`output_fields`] — the matching Ferry output fields.
//! - [`QueryPlan`] — the query document and its variables for each page (cursor as a
//!   variable, `limit`), and reading a page ([`Page`], flattened records, next [`Cursor`]).
//! - [`MutationPlan`] — any mutation with its payload selected automatically; a payload
//!   `errors` list fails with the joined messages.
//! - [`flatten`] — `{nodes: [...]}` layers become lists.
//! - [`input_fields`], [`query_input_fields`], [`mutation_input_field`] — Ferry input fields
//!   derived from input types.
//! - [`check_query`]/[`check_mutation`] — static checks for `ferry validate`.
//! - [`classify`], [`read_data`], [`ResponseMeta`] — the pure half of a GraphQL call (§8):
//!   reschedule after `Retry-After` or fail naming the status, `data`/`errors`, rate-limit
//!   headers; [`bundle_digest`]/[`bundle_key`] — cache keys of derived artifacts (§4.8).
//!
//!
//! The outbound side (with I/O, through the engine's HTTP client and connection store):
//!
//! - [`connection`] — the outbound connection's config fields and checks, per-request
//!   authentication (personal access token, or OAuth 2 client credentials cached sealed in the
//!   connection store, single-flight, evicted and retried once on a 401), the connection test;
//! - [`endpoints`] — GraphQL, OAuth and REST endpoints from stage and region, or explicit;
//! - [`client`] — the transport: [`XurrentClient::graphql`] (`{query, variables}` → data or
//!   the step's failure / reschedule, with request id and rate-limit headers, classified with
//!   [`classify`] and [`read_data`]) and [`XurrentClient::rest`];
//! - [`ratelimit`] — the per-token client-side limiter (burst, hourly requests, cost points);
//! - [`webhooks_api`] — the Webhooks and Webhook Policies REST APIs;
//! - [`schema_cache`] — the connection's introspected schema ([`schema_cache::schema_for`]):
//!   cached in the connection store for 1 h with an in-process entry in front, single-flight,
//!   negative cache for failed introspection, generation of derived artifacts, refresh;
//! - [`mutation_action`] — the `xurrent.mutation` action ([`MutationAction`]): any mutation of
//!   the schema, through [`MutationPlan`] and [`XurrentClient::graphql`];
//! - [`upload_action`] — the `xurrent.upload_attachment` action ([`UploadAttachmentAction`]):
//!   `attachmentStorage` (cached 60 s), size and extension checks, the credential-free
//!   multipart upload and the storage key;
//! - [`query_action`] — the `xurrent.query` action ([`QueryAction`], nested): any root object,
//!   page by page through [`QueryPlan`], its branch once per record (or per page);
//! - [`webhook`] — the `xurrent.webhook` trigger: signed Xurrent webhook deliveries (JWT
//!   policies with a static key or OpenID Connect discovery), the `webhook.verify` handshake,
//!   the replay window and the mapping to the trigger output; and the inbound connection's
//!   configuration ([`webhook::inbound_fields`], [`webhook::check_inbound`]).
//!
//! [`registry`] returns everything the connector registers, for the binary to merge into the
//! built-in registry.
//!
//! Deliberate differences from the reference connector are listed in `docs/xurrent.md`.

mod cache_key;
mod check;
pub mod client;
pub mod connection;
pub mod endpoints;
mod flatten;
mod include;
mod inputs;
mod model;
mod mutation;
pub mod mutation_action;
pub mod mutation_fields;
mod names;
mod query;
pub mod query_action;
pub mod ratelimit;
pub mod schema_cache;
mod select;
mod transport;
pub mod upload_action;
pub mod webhook;
pub mod webhooks_api;

pub use cache_key::{
    bounded_failure_message, bundle_digest, bundle_key, introspection_failure_key, stable_json,
    MAX_FAILURE_MESSAGE,
};
pub use check::{check_mutation, check_mutation_fields, check_query};
pub use flatten::flatten;
pub use include::{include_fields_field, include_options, Include};
pub use inputs::{compact, input_fields, order_fields, MAX_INPUT_FIELDS};
pub use model::{
    scalar_type, EnumValue, FieldDef, InputValue, Kind, Schema, TypeDef, TypeRef, Unwrapped,
    INTROSPECTION_QUERY, MAX_DEPTH, MAX_NAME_LEN,
};
pub use mutation::{
    effective_include, mutation_input_field, mutation_input_type, mutation_output_fields,
    payload_error_messages, MutationPlan, ALWAYS_VISIBLE_INPUTS,
};
pub use names::{default_input_type, humanize};
pub use query::{
    page_output_fields, query_input_fields, record_fields, ArgInfo, Cursor, Page, QueryOptions,
    QueryPlan, RootKind, RootObject, MAX_PAGE_SIZE,
};
pub use select::{
    humanized_enumeration, output_fields, output_fields_at, selection, selection_at,
    MAX_SELECTED_FIELDS, NESTED_PAGE_SIZE,
};
pub use transport::{
    classify, metadata_fields, read_data, retry_after, Outcome, ResponseMeta, DEFAULT_RETRY_AFTER,
    MAX_QUOTED_BODY,
};

pub use client::{GraphqlResponse, XurrentClient, XurrentError};
pub use connection::{ConnectionConfig, Credentials, XurrentConnector, CONNECTOR};
pub use endpoints::{Endpoints, Environment, Region, Stage};
pub use mutation_action::MutationAction;
pub use query_action::QueryAction;
pub use upload_action::UploadAttachmentAction;
pub use webhooks_api::{ListFilter, PolicyInput, WebhookInput, WebhooksApi};

use serde_json::Value;

/// Register the Xurrent connector (its outbound and inbound connections) and the webhook
/// trigger, and the `xurrent.mutation`, `xurrent.upload_attachment` and `xurrent.query`
/// actions.
pub fn register(r: &mut ferry_engine::Registry) {
    r.connector(XurrentConnector::with_inbound(webhook::inbound_fields()));
    webhook::register(r);
    r.action(MutationAction::new());
    r.action(UploadAttachmentAction::new());
    r.action(QueryAction::new());
}

/// A registry holding the Xurrent connector, to merge into the built-in one.
pub fn registry() -> ferry_engine::Registry {
    let mut r = ferry_engine::Registry::new();
    register(&mut r);
    r
}

/// Errors of the schema subsystem. Their messages are what a failed step shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The introspection answer has the wrong shape.
    #[error("invalid introspection result: {0}")]
    InvalidIntrospection(String),
    /// An SDL text does not parse.
    #[error("invalid SDL: {0}")]
    InvalidSdl(String),
    /// The query root has no such field.
    #[error("unknown query object '{0}'")]
    UnknownRootObject(String),
    /// The root field needs arguments the Query action cannot pass.
    #[error("query object '{0}' cannot be queried: it requires the arguments {1}")]
    RootObjectNeedsArguments(String, String),
    /// The mutation root has no such field.
    #[error("unknown mutation '{0}'")]
    UnknownMutation(String),
    /// The answer has no data for the root object.
    #[error("No data returned for '{0}'")]
    NoData(String),
    /// The answer has no data for the mutation.
    #[error("No data returned for mutation '{0}'")]
    NoMutationData(String),
    /// The mutation payload's `errors` list has messages.
    #[error("Mutation error: {}", .0.join("; "))]
    MutationErrors(Vec<String>),
    /// The answer has GraphQL `errors` or no `data` (the message says which).
    #[error("{0}")]
    Graphql(String),
    /// An input value has the wrong shape.
    #[error("{0}")]
    InvalidInput(String),
    /// The included fields would select more than [`MAX_SELECTED_FIELDS`] fields.
    #[error("the included nested fields select more than {0} fields; include fewer")]
    SelectionTooLarge(usize),
}

/// The messages of a GraphQL answer's top-level `errors` (joined with `; `; an error without a
/// `message` is shown as JSON), or `None` when it has none.
pub fn graphql_errors(response: &Value) -> Option<String> {
    let errs = response.get("errors")?.as_array()?;
    if errs.is_empty() {
        return None;
    }
    Some(
        errs.iter()
            .map(|e| match e.get("message").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}
