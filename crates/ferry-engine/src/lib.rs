//! Ferry engine: connectors, the registry, the trigger pipeline and the executor.
//!
//! The engine is I/O-light glue between the pure model in `ferry-core` and the durable
//! store in `ferry-store`:
//!
//! - [`connector`], [`action`] and [`trigger`] define the small traits every connector
//!   implements; [`kv`] is the scoped key/value store their hooks use;
//! - [`registry`] lists every built-in connector in one place;
//! - [`compile`] turns a loaded solution into a checked, ready-to-run form (and reports
//!   `file:line` diagnostics for `ferry validate`);
//! - [`ingest`] is the trigger pipeline (authenticate, parse, coerce, discard, dedup, store);
//! - [`executor`] runs a job step by step, checkpointing after every step;
//! - [`worker`] claims jobs from the store and drives the executor, renewing each job's lease;
//! - [`retention`] purges old finished and failed jobs in the background.

pub mod action;
pub mod compile;
pub mod connector;
pub mod connectors;
pub mod engine;
pub mod executor;
pub mod http;
pub mod ingest;
pub mod kv;
pub mod metrics;
pub mod oauth2;
pub mod provision;
pub mod recurrence;
pub mod registry;
pub mod retention;
pub mod scheduler;
pub mod schemas;
pub mod trigger;
pub mod versions;
pub mod worker;

pub use action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
pub use compile::{
    compile_solution, compile_solution_with, CompileOptions, CompiledRunbook, CompiledSolution,
};
pub use connector::{
    ConnectionTestResult, Connector, ConnectorSpec, InboundAuth, ProvisionContext, SchemaRefreshed,
    TestContext, TestStatus,
};
pub use engine::{Engine, EngineOptions, RefreshError};
pub use ingest::{InboundRequest, IngestOutcome};
pub use kv::{Kv, KvError};
pub use provision::{ProvisionKind, ProvisionState, ProvisionStatus};
pub use registry::Registry;
pub use trigger::{
    Parsed, Trigger, TriggerClaim, TriggerContext, TriggerError, TriggerParse, TriggerResponse,
    TriggerSpec,
};
