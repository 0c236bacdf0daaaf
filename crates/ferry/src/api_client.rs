//! What the CLI's management-API sub-commands (`ferry jobs`, `ferry connections`) share: where
//! the server is, the token, and one call with its error handling.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// The server options of a management-API sub-command.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Server base URL.
    #[arg(
        long,
        global = true,
        env = "FERRY_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub server: String,
    /// API token (default: FERRY_API_TOKEN, else `<data>/api.token`).
    #[arg(long, global = true, env = "FERRY_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory holding `api.token`.
    #[arg(long, global = true, default_value = "./ferry-data")]
    pub data: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// An authenticated client of one server's `/api/v1`.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// The server answered, but not with success: its status and the message it gave.
pub struct Refused {
    pub status: reqwest::StatusCode,
    pub message: String,
}

impl ServerArgs {
    /// The client for these options (the token from `--token`, the environment, or the data
    /// directory).
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let token = match self.token.clone().filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => std::fs::read_to_string(self.data.join("api.token"))
                .map(|t| t.trim().to_string())
                .context("no API token: pass --token, set FERRY_API_TOKEN, or point --data at the server's data directory")?,
        };
        Ok(ApiClient {
            base: self.server.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }
}

impl ApiClient {
    /// The server's base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, to build a request with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Send `request` with the token. `Ok(Err(…))` when the server answered with an error
    /// status (its `{"error"}` message, or the raw body); `Err` when it could not be reached.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Result<bytes::Bytes, Refused>> {
        let base = &self.base;
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {base}"))?;
        if status.is_success() {
            return Ok(Ok(bytes));
        }
        let message = serde_json::from_slice::<ferry_api::ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        Ok(Err(Refused { status, message }))
    }
}

/// Decode an answer of the management API into its shared type.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "the server's answer is not what this version of ferry expects: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}
