//! Xurrent App Offering as files (spec `xurrent_app_connector.md` §9, extended by issue 9):
//! export an offering from a provider account into a readable folder kept in the solution,
//! compare the folder with another account and apply exactly the difference.
//!
//! Pure parts: [`model`] (the offering as one value, from files or from an account's GraphQL
//! answer), [`files`] (the folder format), [`markdown`] (inline image links), [`plan`] (the
//! diff and the mutation inputs), [`graphql`] (the documents). The account side is [`sync`],
//! over `ferry-xurrent`'s client and outbound connection.

pub mod files;
pub mod graphql;
pub mod markdown;
pub mod model;
pub mod plan;
pub mod sync;

pub use model::Offering;
pub use plan::{Change, Current, Kind, Op, Plan};
pub use sync::{sync, Account, Applied, Exported};

/// Default offering folder inside a solution.
pub const DEFAULT_DIR: &str = "app_offering";

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The offering folder (the message names the file, and the line for YAML problems).
    #[error("{0}")]
    Files(String),
    /// A call to the account.
    #[error("{0}")]
    Account(String),
    /// The files cannot be applied as they are (a required field, a missing service instance).
    #[error("{0}")]
    Plan(String),
}
