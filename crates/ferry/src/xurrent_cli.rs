//! `ferry xurrent …`: tools for working with a Xurrent account.
//!
//! `ferry xurrent schema --from-url URL --token T --account A > schema.graphql` introspects a
//! live (or emulated) Xurrent GraphQL endpoint and prints its SDL. The conversion is the pure
//! [`ferry_xurrent_schema::sdl_from_response`]; this module does the HTTP call.
//!
//! `ferry xurrent webhooks …` and `ferry xurrent webhook-policies …` manage webhooks and
//! webhook policies through the Webhooks API over an outbound `xurrent` connection of a
//! solution (see [`crate::xurrent_webhooks`]).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

/// Sub-commands of `ferry xurrent`.
#[derive(clap::Subcommand)]
pub enum XurrentCommand {
    /// Introspect a Xurrent GraphQL endpoint and print its schema as SDL on standard output.
    Schema(SchemaArgs),
    /// List, show, create, update, delete or test webhooks (Webhooks API) over an outbound
    /// `xurrent` connection of a solution.
    Webhooks(crate::xurrent_webhooks::WebhooksArgs),
    /// List, show, create or delete webhook policies over an outbound `xurrent` connection.
    #[command(name = "webhook-policies")]
    WebhookPolicies(crate::xurrent_webhooks::PoliciesArgs),
    /// Export an App Offering into files kept in the solution, or apply the files to an
    /// account (plan first, `--dry-run`).
    App(crate::xurrent_app::AppArgs),
}

/// Arguments of `ferry xurrent schema`.
#[derive(clap::Args)]
pub struct SchemaArgs {
    /// The GraphQL endpoint, e.g. `https://graphql.xurrent.com/` or
    /// `http://127.0.0.1:4780/graphql` for the emulator.
    #[arg(long)]
    from_url: String,
    /// Personal access token (sent as `Authorization: Bearer …`).
    #[arg(long, env = "FERRY_XURRENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Account id (sent as `X-Xurrent-Account`).
    #[arg(long, env = "FERRY_XURRENT_ACCOUNT")]
    account: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Largest answer accepted, in MiB.
    #[arg(long, default_value_t = 64)]
    max_size_mib: usize,
    /// Do not re-attach the embedded SDL's `@wireValue` directives to matching enum values.
    #[arg(long)]
    no_wire_values: bool,
}

/// Run a `ferry xurrent` sub-command.
pub async fn xurrent(cmd: XurrentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        XurrentCommand::Schema(args) => schema(args).await,
        XurrentCommand::Webhooks(args) => crate::xurrent_webhooks::webhooks(args).await,
        XurrentCommand::WebhookPolicies(args) => crate::xurrent_webhooks::policies(args).await,
        XurrentCommand::App(args) => crate::xurrent_app::app(args).await,
    }
}

async fn schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let url = reqwest::Url::parse(&args.from_url)
        .with_context(|| format!("--from-url {:?} is not a URL", args.from_url))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "--from-url must be an http or https URL, not {:?}",
            url.scheme()
        );
    }
    let limit = args.max_size_mib.saturating_mul(1024 * 1024);
    let body = introspect(&url, &args.token, &args.account, args.timeout, limit).await?;
    let response: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{url} did not answer JSON (first bytes: {:?})",
            snippet(&body)
        )
    })?;
    let wire = if args.no_wire_values {
        ferry_xurrent_schema::WireValues::new()
    } else {
        ferry_xurrent_schema::wire_values(ferry_xurrent_schema::SDL)
            .context("reading the embedded SDL's @wireValue directives")?
    };
    let sdl = ferry_xurrent_schema::sdl_from_response(&response, &wire)
        .with_context(|| format!("introspecting {url}"))?;
    let types = ferry_xurrent_schema::type_names(&sdl)
        .context("the printed SDL does not parse (a bug of the printer)")?
        .len();
    let mut out = std::io::stdout().lock();
    out.write_all(sdl.as_bytes())
        .and_then(|_| out.flush())
        .context("writing the SDL to standard output")?;
    eprintln!("{types} types read from {url}");
    Ok(ExitCode::SUCCESS)
}

/// POST the introspection query; the body of a 2xx answer, at most `limit` bytes.
async fn introspect(
    url: &reqwest::Url,
    token: &str,
    account: &str,
    timeout: u64,
    limit: usize,
) -> anyhow::Result<Vec<u8>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout))
        .connect_timeout(Duration::from_secs(timeout.min(30)))
        .build()
        .context("building the HTTP client")?;
    let mut resp = client
        .post(url.clone())
        .bearer_auth(token)
        .header("X-Xurrent-Account", account)
        .json(&serde_json::json!({ "query": ferry_xurrent_schema::INTROSPECTION_QUERY }))
        .send()
        .await
        .map_err(|e| describe(e, url, timeout))?;
    let status = resp.status();
    if let Some(len) = resp.content_length() {
        if len > limit as u64 {
            bail!("{url} answered {len} bytes, more than the limit of {limit} (--max-size-mib)");
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(e, url, timeout))? {
        if body.len() + chunk.len() > limit {
            bail!("{url} answered more than the limit of {limit} bytes (--max-size-mib)");
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        bail!("{url} answered HTTP {status}: {}", snippet(&body));
    }
    Ok(body)
}

fn describe(e: reqwest::Error, url: &reqwest::Url, timeout: u64) -> anyhow::Error {
    if e.is_timeout() {
        anyhow::anyhow!("{url} did not answer within {timeout} s (--timeout)")
    } else {
        anyhow::Error::new(e).context(format!("requesting {url}"))
    }
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.trim().to_string()
}
