//! Built-in connectors. Each module has a `register(&mut Registry)` function that is
//! called from [`crate::registry::Registry::builtin`].

pub mod debug;
pub mod flow;
pub mod http;
pub mod json_endpoint;
pub mod runbook_variables;
pub mod scheduler;
