//! `ferry connections test|refresh-schema SOLUTION CONNECTION` against a running server.
//!
//! `test` exit codes: 0 the test passed (`success`), 1 the external system refused
//! (`failed`), 2 the test could not run (`error`, or the server answered with an error such as
//! an unknown connection).
//!
//! `refresh-schema` fetches the connection's schema again (a one-shot command): exit 0 with a
//! summary (types, generation, duration), 2 when the server refused (unknown connection, a
//! connection without a schema, or the introspection failed; the message says which).

use std::process::ExitCode;

use anyhow::Context;

use crate::api_client::{parse, ApiClient, Refused, ServerArgs};

/// Arguments of `ferry connections`.
#[derive(clap::Args)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    command: ConnectionsCommand,
    #[command(flatten)]
    server: ServerArgs,
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
    /// Fetch an outbound xurrent connection's schema again (introspection) and replace the
    /// cached one; steps derived from the old schema are recomputed.
    RefreshSchema {
        /// Solution name.
        solution: String,
        /// Connection name.
        connection: String,
    },
}

/// `<server>/api/v1/connections/<solution>/<connection>/<action>`, segments percent-encoded.
fn url(
    api: &ApiClient,
    solution: &str,
    connection: &str,
    action: &str,
) -> anyhow::Result<reqwest::Url> {
    let base = api.base();
    let mut url = reqwest::Url::parse(base).with_context(|| format!("--server {base}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--server {base} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["api", "v1", "connections", solution, connection, action]);
    Ok(url)
}

/// Run the sub-command.
pub async fn connections(args: ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    match &args.command {
        ConnectionsCommand::Test {
            solution,
            connection,
        } => test(&api, &args.server, solution, connection).await,
        ConnectionsCommand::RefreshSchema {
            solution,
            connection,
        } => refresh_schema(&api, &args.server, solution, connection).await,
    }
}

async fn test(
    api: &ApiClient,
    server: &ServerArgs,
    solution: &str,
    connection: &str,
) -> anyhow::Result<ExitCode> {
    let url = url(api, solution, connection, "test")?;
    let bytes = match api.send(api.http().post(url)).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let result: ferry_api::ConnectionTest = parse(&bytes)?;
    if server.json {
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

async fn refresh_schema(
    api: &ApiClient,
    server: &ServerArgs,
    solution: &str,
    connection: &str,
) -> anyhow::Result<ExitCode> {
    let url = url(api, solution, connection, "refresh-schema")?;
    let bytes = match api.send(api.http().post(url)).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let result: ferry_api::SchemaRefresh = parse(&bytes)?;
    if server.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{solution}/{connection}: schema refreshed: {} types in {} ms (generation {})",
            result.types, result.duration_ms, result.generation
        );
    }
    Ok(ExitCode::SUCCESS)
}
