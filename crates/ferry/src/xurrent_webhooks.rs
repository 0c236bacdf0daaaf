//! `ferry xurrent webhooks list|show|create|update|delete|test` and
//! `ferry xurrent webhook-policies list|show|create|delete`: the Webhooks API over an outbound
//! `xurrent` connection of a solution (`--solution DIR --connection NAME`).
//!
//! The solution is loaded as `ferry run` loads it (its `env` secrets from the environment,
//! sealed with a throw-away key; OAuth tokens cached in a temporary store for the one call).
//! The calls themselves are [`ferry_xurrent::WebhooksApi`]; this module only formats:
//! `--json` prints the API's JSON, otherwise a readable table. Errors exit with code 2.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferry_engine::action::ConnectionRef;
use ferry_engine::{Engine, EngineOptions};
use ferry_store::Store;
use ferry_xurrent::{ListFilter, PolicyInput, WebhookInput, WebhooksApi};
use serde_json::{json, Value};

/// Which connection to use, and how to print.
#[derive(clap::Args)]
pub struct ConnectionArgs {
    /// Solution directory holding the connection.
    #[arg(long, global = true)]
    solution: Option<PathBuf>,
    /// Name of an outbound `xurrent` connection of that solution.
    #[arg(long, global = true)]
    connection: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// `ferry xurrent webhooks …`.
#[derive(clap::Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    command: WebhooksCommand,
    #[command(flatten)]
    conn: ConnectionArgs,
}

/// `ferry xurrent webhook-policies …`.
#[derive(clap::Args)]
pub struct PoliciesArgs {
    #[command(subcommand)]
    command: PoliciesCommand,
    #[command(flatten)]
    conn: ConnectionArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Filter {
    All,
    Enabled,
    Disabled,
}

impl From<Filter> for ListFilter {
    fn from(f: Filter) -> ListFilter {
        match f {
            Filter::All => ListFilter::All,
            Filter::Enabled => ListFilter::Enabled,
            Filter::Disabled => ListFilter::Disabled,
        }
    }
}

/// Webhook fields for create and update.
#[derive(clap::Args)]
struct WebhookFields {
    /// Event, e.g. `request.create` (required to create).
    #[arg(long)]
    event: Option<String>,
    /// URI Xurrent POSTs the messages to (required to create).
    #[arg(long)]
    uri: Option<String>,
    /// Name (default: the event).
    #[arg(long)]
    name: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Disable (`--disabled`, or `--disabled false` to enable).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    disabled: Option<bool>,
    /// Id of the webhook policy that signs the messages.
    #[arg(long)]
    policy: Option<String>,
    /// Publish the policy's key through OpenID Connect discovery (`--openid-connect-discovery [true|false]`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    openid_connect_discovery: Option<bool>,
    /// Comma-separated e-mail addresses told about failing deliveries.
    #[arg(long)]
    mail_exceptions_to: Option<String>,
}

impl WebhookFields {
    fn input(self) -> WebhookInput {
        WebhookInput {
            event: self.event,
            uri: self.uri,
            name: self.name,
            description: self.description,
            disabled: self.disabled,
            webhook_policy_id: self.policy,
            openid_connect_discovery: self.openid_connect_discovery,
            mail_exceptions_to: self.mail_exceptions_to,
            app_offering_references: None,
        }
    }
}

#[derive(clap::Subcommand)]
enum WebhooksCommand {
    /// List the webhooks.
    List {
        /// Which webhooks.
        #[arg(long, value_enum, default_value = "all")]
        filter: Filter,
    },
    /// Show one webhook.
    Show {
        /// Webhook id.
        id: String,
    },
    /// Create a webhook (`--event` and `--uri` required).
    Create(WebhookFields),
    /// Change a webhook.
    Update {
        /// Webhook id.
        id: String,
        #[command(flatten)]
        fields: WebhookFields,
    },
    /// Delete a webhook.
    Delete {
        /// Webhook id.
        id: String,
    },
    /// Have Xurrent send a test message (object_id 12345) to the webhook.
    Test {
        /// Webhook id.
        id: String,
    },
}

#[derive(clap::Subcommand)]
enum PoliciesCommand {
    /// List the webhook policies.
    List {
        /// Which policies.
        #[arg(long, value_enum, default_value = "all")]
        filter: Filter,
    },
    /// Show one webhook policy.
    Show {
        /// Policy id.
        id: String,
    },
    /// Create a webhook policy; its public key is printed this once only.
    Create {
        /// Signing algorithm: es256 (default), es384, es512, rs256, rs384, rs512.
        #[arg(long, default_value = "es256")]
        jwt_alg: String,
        /// The `aud` claim of the tokens.
        #[arg(long)]
        audience: Option<String>,
        /// Lifetime of the tokens in seconds (sets `exp`).
        #[arg(long)]
        expires_in: Option<u64>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Delete a webhook policy.
    Delete {
        /// Policy id.
        id: String,
    },
}

/// A solution's connection, loaded with a throw-away key and store.
pub(crate) struct Loaded {
    pub(crate) engine: Arc<Engine>,
    pub(crate) connection: ConnectionRef,
    _tmp: tempfile::TempDir,
}

async fn load(args: &ConnectionArgs) -> anyhow::Result<Loaded> {
    let Some(dir) = &args.solution else {
        bail!("--solution DIR is required (the solution holding the connection)");
    };
    let Some(name) = &args.connection else {
        bail!("--connection NAME is required (an outbound xurrent connection of the solution)");
    };
    load_connection(dir, false, |_| Ok(name.clone())).await
}

/// Load the solution in `dir` as `ferry run` does and take the outbound `xurrent` connection
/// that `name` picks from it (also used by `ferry xurrent app`, which also takes an
/// `xurrent_app` connection: `provider`).
pub(crate) async fn load_connection(
    dir: &std::path::Path,
    provider: bool,
    name: impl FnOnce(&ferry_engine::compile::CompiledSolution) -> anyhow::Result<String>,
) -> anyhow::Result<Loaded> {
    let tmp = tempfile::tempdir().context("creating a temporary store")?;
    let (secrets, store) = crate::serve::open_data(tmp.path(), false).await?;
    let engine = Engine::new(
        store as Arc<dyn Store>,
        secrets,
        crate::registry(),
        EngineOptions::default(),
    );
    let solution = match engine.load_dir(dir) {
        Ok(s) => s,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            bail!(
                "the solution in {} has {} problem(s)",
                dir.display(),
                diags.len()
            );
        }
    };
    let name = &name(&solution)?;
    let Some(connection) = solution.connections.get(name).cloned() else {
        let known: Vec<&str> = solution.connections.keys().map(String::as_str).collect();
        bail!(
            "solution '{}' has no connection '{name}' (it has: {})",
            solution.name,
            known.join(", ")
        );
    };
    let direction = solution
        .directions
        .get(name)
        .copied()
        .unwrap_or(ferry_core::model::Direction::Inbound);
    let outbound = direction == ferry_core::model::Direction::Outbound;
    let usable = if provider {
        crate::xurrent_app::provider_connection(&connection.connector, direction)
    } else {
        connection.connector == ferry_xurrent::CONNECTOR && outbound
    };
    if !usable {
        bail!(
            "connection '{name}' is not an outbound xurrent connection{} (connector '{}')",
            if provider {
                " or an xurrent_app connection"
            } else {
                ""
            },
            connection.connector
        );
    }
    Ok(Loaded {
        engine,
        connection,
        _tmp: tmp,
    })
}

fn api(loaded: &Loaded) -> anyhow::Result<WebhooksApi<'_>> {
    WebhooksApi::new(&loaded.engine.services, &loaded.connection).map_err(anyhow::Error::new)
}

/// Run `ferry xurrent webhooks …`.
pub async fn webhooks(args: WebhooksArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.conn).await?;
    let api = api(&loaded)?;
    let json_out = args.conn.json;
    match args.command {
        WebhooksCommand::List { filter } => {
            let list = api.list_webhooks(filter.into()).await?;
            if json_out {
                print_json(&Value::Array(list))?;
            } else {
                print_table(
                    &["ID", "NAME", "EVENT", "DISABLED", "POLICY", "URI"],
                    &list
                        .iter()
                        .map(|w| {
                            vec![
                                text(&w["id"]),
                                text(&w["name"]),
                                text(&w["event"]),
                                yes_no(&w["disabled"]),
                                text(&w["webhook_policy"]["id"]),
                                text(&w["uri"]),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
                println!("{} webhook(s)", list.len());
            }
        }
        WebhooksCommand::Show { id } => {
            let w = api.webhook(&id).await?;
            show(&w, json_out)?;
        }
        WebhooksCommand::Create(fields) => {
            let input = fields.input();
            if input.event.is_none() || input.uri.is_none() {
                bail!("creating a webhook needs --event and --uri");
            }
            let w = api.create_webhook(&input).await?;
            if !json_out {
                println!("Created webhook {}", text(&w["id"]));
            }
            show(&w, json_out)?;
        }
        WebhooksCommand::Update { id, fields } => {
            let input = fields.input();
            if input == WebhookInput::default() {
                bail!("nothing to change: give at least one of --event, --uri, --name, --description, --disabled, --policy, --openid-connect-discovery, --mail-exceptions-to");
            }
            let w = api.update_webhook(&id, &input).await?;
            if !json_out {
                println!("Updated webhook {}", text(&w["id"]));
            }
            show(&w, json_out)?;
        }
        WebhooksCommand::Delete { id } => {
            api.delete_webhook(&id).await?;
            done(
                json_out,
                json!({ "deleted": id }),
                &format!("Deleted webhook {id}"),
            )?;
        }
        WebhooksCommand::Test { id } => {
            api.test_webhook(&id).await?;
            done(
                json_out,
                json!({ "tested": id }),
                &format!("Xurrent is sending a test message (object_id 12345) to webhook {id}"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `ferry xurrent webhook-policies …`.
pub async fn policies(args: PoliciesArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.conn).await?;
    let api = api(&loaded)?;
    let json_out = args.conn.json;
    match args.command {
        PoliciesCommand::List { filter } => {
            let list = api.list_policies(filter.into()).await?;
            if json_out {
                print_json(&Value::Array(list))?;
            } else {
                print_table(
                    &["ID", "ALG", "AUDIENCE", "DISABLED", "NAME"],
                    &list
                        .iter()
                        .map(|p| {
                            vec![
                                text(&p["id"]),
                                text(&p["jwt_alg"]),
                                text(&p["jwt_audience"]),
                                yes_no(&p["disabled"]),
                                text(&p["name"]),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
                println!("{} webhook polic(ies)", list.len());
            }
        }
        PoliciesCommand::Show { id } => {
            let p = api.policy(&id).await?;
            show(&p, json_out)?;
        }
        PoliciesCommand::Create {
            jwt_alg,
            audience,
            expires_in,
            disabled,
        } => {
            let input = PolicyInput {
                jwt_alg: Some(jwt_alg),
                jwt_audience: audience,
                jwt_claim_expires_in: expires_in,
                disabled: disabled.then_some(true),
            };
            let p = api.create_policy(&input).await?;
            if json_out {
                print_json(&p)?;
            } else {
                println!("Created webhook policy {}", text(&p["id"]));
                let mut shown = p.clone();
                if let Some(o) = shown.as_object_mut() {
                    o.remove("public_key_pem");
                }
                show(&shown, false)?;
                if let Some(pem) = p["public_key_pem"].as_str() {
                    println!();
                    println!("Public key (Xurrent shows it this once only; keep it for the inbound connection):");
                    println!("{}", pem.trim_end());
                }
            }
        }
        PoliciesCommand::Delete { id } => {
            api.delete_policy(&id).await?;
            done(
                json_out,
                json!({ "deleted": id }),
                &format!("Deleted webhook policy {id}"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn done(json_out: bool, v: Value, message: &str) -> anyhow::Result<()> {
    if json_out {
        print_json(&v)
    } else {
        println!("{message}");
        Ok(())
    }
}

/// A record as `key: value` lines (nested objects as compact JSON), or its JSON.
fn show(record: &Value, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        return print_json(record);
    }
    let Some(obj) = record.as_object() else {
        return print_json(record);
    };
    let width = obj.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in obj {
        println!("{k:<width$}  {}", text(v));
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yes_no(v: &Value) -> String {
    match v {
        Value::Bool(true) => "yes".into(),
        Value::String(s) if s == "true" => "yes".into(),
        _ => "no".into(),
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}
