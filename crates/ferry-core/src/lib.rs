//! Ferry core: the pure logic of the engine.
//!
//! - [`model`] and [`loader`]: solutions and runbooks as files, loaded with `file:line` diagnostics.
//! - [`schema`]: typed field schemas with coercion and validation.
//! - [`mapping`]: sandboxed minijinja expressions in step inputs.
//! - [`secrets`]: envelope encryption of secret values and redaction.
//!
//! Nothing in this crate talks to the network or a database.

pub mod loader;
pub mod mapping;
pub mod model;
pub mod schema;
pub mod secrets;
