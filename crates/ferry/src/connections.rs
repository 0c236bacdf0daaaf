//! `ferry connections test SOLUTION CONNECTION` against a running server.
//!
//! Exit codes: 0 the test passed (`success`), 1 the external system refused (`failed`), 2 the
//! test could not run (`error`, or the server answered with an error such as an unknown
//! connection).

use std::process::ExitCode;

use anyhow::Context;

use crate::api_client::{parse, Refused, ServerArgs};

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
}

/// Run the sub-command.
pub async fn connections(args: ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let base = api.base();
    let client = api.http();
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
    let bytes = match api.send(client.post(url)).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let result: ferry_api::ConnectionTest = parse(&bytes)?;
    if args.server.json {
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
