//! Error type of the store.

/// Errors returned by [`crate::Store`] implementations.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The referenced job (or other record) does not exist.
    #[error("not found")]
    NotFound,
    /// The operation conflicts with the current state (e.g. re-running a job that is not failed,
    /// or inserting a job whose id already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The arguments are not acceptable (e.g. a Waiting checkpoint without `next_run_at`).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A database error.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A database error on the SQLite store's write connection.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Applying the schema migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A JSON document could not be encoded or decoded.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
    /// A file-system error (creating the data directory).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row holds a value this version cannot interpret.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A checkpoint was refused: the job is no longer running under the writer's lease (its
    /// lease expired and another worker claimed it, or it was requeued).
    #[error("job lease lost: the job is no longer running under this worker's lease")]
    LeaseLost,
    /// The database cannot be reached (no connection, or the connection was lost): the call
    /// may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database schema does not fit this build (newer than it knows, or not migrated).
    #[error("database schema: {0}")]
    Schema(String),
    /// The store has been closed (or its writer has stopped).
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// True for errors that concern only the one command that caused them (constraint violations,
    /// missing rows, invalid arguments), as opposed to errors of the database connection itself.
    pub(crate) fn is_command_local(&self) -> bool {
        match self {
            StoreError::NotFound
            | StoreError::LeaseLost
            | StoreError::Conflict(_)
            | StoreError::Invalid(_)
            | StoreError::Json(_)
            | StoreError::Corrupt(_) => true,
            StoreError::Db(e) => e
                .as_database_error()
                .is_some_and(|d| !matches!(d.kind(), sqlx::error::ErrorKind::Other)),
            // The constraint violations sqlx reports as such (not a trigger's RAISE, which the
            // writer turns into its own error first).
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error().map(|f| f.extended_code),
                Some(
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        | rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
                        | rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL
                        | rusqlite::ffi::SQLITE_CONSTRAINT_CHECK
                )
            ),
            StoreError::Migrate(_)
            | StoreError::Io(_)
            | StoreError::Closed
            | StoreError::Unavailable(_)
            | StoreError::Schema(_) => false,
        }
    }
}
