//! `ferry-emulator`: a local Xurrent (formerly 4me) emulator.
//!
//! It serves the Xurrent GraphQL API generically from the SDL (embedded from
//! `ferry-xurrent-schema`, or a file given in [`EmulatorConfig::schema_path`]) on top of an
//! in-memory record store, plus the REST/OAuth/webhook/App Store parts.
//! Start one with [`build`] and [`serve`].

pub mod bench;
pub mod graphql;
pub mod policy;
mod request_id;
pub mod rest;
pub mod state;

pub use state::*;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Default personal access token of the administrator of the default account.
pub const DEFAULT_TOKEN: &str = "ferry-emulator-token";

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4780";

/// Configuration of one emulator instance.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to listen on (default `127.0.0.1:4780`).
    pub listen: SocketAddr,
    /// Id of the administrator account (default `wdc`).
    pub account: String,
    /// Personal access token of the administrator (default [`DEFAULT_TOKEN`]).
    pub token: String,
    /// Optional seed file (JSON or YAML, see [`Emulator::seed_from_value`]).
    pub seed: Option<PathBuf>,
    /// SDL file to serve instead of the embedded Xurrent schema ([`ferry_xurrent_schema::SDL`]);
    /// `None` (the default) serves the embedded one.
    pub schema_path: Option<PathBuf>,
    /// Rate limits (see [`RateLimits::xurrent_defaults`] and [`RateLimits::disabled`]).
    pub rate_limits: RateLimits,
    /// Base URL used in URLs handed out (upload URIs, callbacks); default `http://<listen>`.
    pub public_url: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4780)),
            account: "wdc".into(),
            token: DEFAULT_TOKEN.into(),
            seed: None,
            schema_path: None,
            rate_limits: RateLimits::xurrent_defaults(),
            public_url: None,
        }
    }
}

/// Errors while building or seeding an emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The SDL could not be parsed or turned into a schema.
    #[error("schema error: {0}")]
    Schema(String),
    /// A seed document is invalid.
    #[error("seed error: {0}")]
    Seed(String),
}

/// Build the shared state: parse the SDL, build the dynamic schema, create the
/// administrator account with its `Person` record and token, and apply the seed file.
pub async fn build(config: EmulatorConfig) -> Result<Arc<Emulator>, EmulatorError> {
    let file_sdl;
    let sdl = match &config.schema_path {
        Some(path) => {
            file_sdl =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| EmulatorError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
            file_sdl.as_str()
        }
        None => ferry_xurrent_schema::SDL,
    };
    let gql = graphql::GraphqlState::from_sdl(sdl)?;
    gql.prewarm().await;
    let base_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen))
        .trim_end_matches('/')
        .to_string();
    let emu = Arc::new(Emulator::new(config, base_url, gql));
    let account_id = emu.config.account.clone();
    let account = emu.ensure_account(&account_id, &account_id);
    emu.tokens.insert(
        emu.config.token.clone(),
        TokenInfo {
            account: account.id.clone(),
            person_id: Some(account.admin_person_id.clone()),
            admin: true,
            scopes: Vec::new(),
            expires_at: None,
            client_id: None,
        },
    );
    if let Some(seed) = emu.config.seed.clone() {
        emu.seed_from_file(&account_id, &seed)?;
    }
    tracing::info!(base_url = %emu.base_url, account = %account_id, "emulator built");
    Ok(emu)
}

/// The full axum router: GraphQL and attachment routes and the REST half's router, with
/// `X-Request-Id` (and `X-Runtime` on REST answers) on every answer.
pub fn router(emu: Arc<Emulator>) -> axum::Router {
    graphql::router()
        .merge(rest::router(&emu))
        .with_state(emu)
        .layer(axum::middleware::from_fn(request_id::layer))
}

/// Serve on `listener` until `shutdown` resolves.
pub async fn serve(
    emu: Arc<Emulator>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(emu))
        .with_graceful_shutdown(shutdown)
        .await
}
