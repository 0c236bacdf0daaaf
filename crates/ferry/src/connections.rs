//! `ferry connections test SOLUTION CONNECTION` against a running server.
//!
//! Exit codes: 0 the test passed (`success`), 1 the external system refused (`failed`), 2 the
//! test could not run (`error`, or the server answered with an error such as an unknown
//! connection).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `ferry connections`.
#[derive(clap::Args)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    command: ConnectionsCommand,
    /// Server base URL.
    #[arg(
        long,
        global = true,
        env = "FERRY_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    server: String,
    /// API token (default: FERRY_API_TOKEN, else `<data>/api.token`).
    #[arg(long, global = true, env = "FERRY_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data directory holding `api.token`.
    #[arg(long, global = true, default_value = "./ferry-data")]
    data: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum ConnectionsCommand {
    /// Test a connection (e.g. that its credentials are accepted).
    Test {
        /// Solution name.
        solution: String,
        /// Connection name.
        connection: String,
    },
}

/// Run the sub-command.
pub async fn connections(args: ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let token = match args.token.clone().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => std::fs::read_to_string(args.data.join("api.token"))
            .map(|t| t.trim().to_string())
            .context("no API token: pass --token, set FERRY_API_TOKEN, or point --data at the server's data directory")?,
    };
    let base = args.server.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let ConnectionsCommand::Test {
        solution,
        connection,
    } = &args.command;
    // Path segments are percent-encoded by the URL builder.
    let mut url = reqwest::Url::parse(base).with_context(|| format!("--server {base}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--server {base} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["api", "v1", "connections", solution, connection, "test"]);
    let response = client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {base}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ferry_api::ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        eprintln!("error ({status}): {message}");
        return Ok(ExitCode::from(2));
    }
    let result: ferry_api::ConnectionTest = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the server's answer is not what this version of ferry expects: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let outcome = match result.status {
            ferry_api::TestStatus::Success => "success",
            ferry_api::TestStatus::Failed => "failed",
            ferry_api::TestStatus::Error => "error",
        };
        println!("{solution}/{connection}: {outcome}: {}", result.message);
    }
    Ok(ExitCode::from(match result.status {
        ferry_api::TestStatus::Success => 0,
        ferry_api::TestStatus::Failed => 1,
        ferry_api::TestStatus::Error => 2,
    }))
}
