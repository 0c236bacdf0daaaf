//! `ferry emulator <sub-command>`: control a running emulator through `/_emulator/…`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Map, Value};

/// Control sub-commands of `ferry emulator`.
#[derive(clap::Subcommand)]
pub enum EmulatorCommand {
    /// App Store flows: install, update, suspend, uninstall an offering, or fire an automation rule.
    App {
        #[command(subcommand)]
        action: AppAction,
    },
    /// Load records from a JSON or YAML seed file.
    Seed {
        /// Seed file.
        file: PathBuf,
        /// Account to seed (default: the administrator account).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List recorded webhook deliveries.
    Deliveries {
        #[command(flatten)]
        target: Target,
    },
    /// Drop all state and start over (re-seeds the --seed file).
    Reset {
        #[command(flatten)]
        target: Target,
    },
}

/// Which emulator to talk to.
#[derive(clap::Args)]
pub struct Target {
    /// Base URL of the running emulator.
    #[arg(
        long,
        env = "FERRY_EMULATOR_URL",
        default_value = "http://127.0.0.1:4780"
    )]
    url: String,
}

/// App Store actions.
#[derive(clap::Subcommand)]
pub enum AppAction {
    /// Install an offering for a customer account.
    Install(AppArgs),
    /// Update an installed instance (new secrets are sent again).
    Update(AppArgs),
    /// Suspend an instance (`--lift` to lift the suspension).
    Suspend {
        #[command(flatten)]
        app: AppArgs,
        /// Lift the suspension instead.
        #[arg(long)]
        lift: bool,
    },
    /// Uninstall an instance.
    Uninstall(AppArgs),
    /// Fire the offering's automation rule webhook from the customer account.
    AutomationRule {
        #[command(flatten)]
        app: AppArgs,
        /// JSON payload to send.
        #[arg(long)]
        payload: Option<String>,
    },
}

/// Identify an app instance.
#[derive(clap::Args)]
pub struct AppArgs {
    /// Offering reference.
    #[arg(long)]
    reference: String,
    /// Customer account id.
    #[arg(long)]
    customer: String,
    /// Provider account id (default: the administrator account).
    #[arg(long)]
    provider: Option<String>,
    /// UI-extension secret, `name=value` (repeatable).
    #[arg(long = "secret")]
    secrets: Vec<String>,
    #[command(flatten)]
    target: Target,
}

impl AppArgs {
    fn body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        body.insert("reference".into(), json!(self.reference));
        body.insert("customer".into(), json!(self.customer));
        if let Some(p) = &self.provider {
            body.insert("provider".into(), json!(p));
        }
        if !self.secrets.is_empty() {
            let mut secrets = Map::new();
            for s in &self.secrets {
                let (k, v) = s
                    .split_once('=')
                    .with_context(|| format!("--secret '{s}' must look like name=value"))?;
                secrets.insert(k.to_string(), json!(v));
            }
            body.insert("secrets".into(), Value::Object(secrets));
        }
        Ok(body)
    }
}

async fn call(
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<reqwest::Body>,
    content_type: &str,
) -> anyhow::Result<ExitCode> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the emulator at {base}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error ({status}): {pretty}");
        Ok(ExitCode::from(1))
    }
}

/// Run a control sub-command.
pub async fn control(cmd: EmulatorCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let post_json = |target: &Target, path: &str, body: Map<String, Value>| {
        let url = target.url.clone();
        let path = path.to_string();
        async move {
            call(
                &url,
                Method::POST,
                &path,
                Some(Value::Object(body).to_string().into()),
                "application/json",
            )
            .await
        }
    };
    match cmd {
        EmulatorCommand::App { action } => match action {
            AppAction::Install(a) => {
                post_json(&a.target, "/_emulator/apps/install", a.body()?).await
            }
            AppAction::Update(a) => post_json(&a.target, "/_emulator/apps/update", a.body()?).await,
            AppAction::Uninstall(a) => {
                post_json(&a.target, "/_emulator/apps/uninstall", a.body()?).await
            }
            AppAction::Suspend { app, lift } => {
                let mut body = app.body()?;
                body.insert("suspended".into(), json!(!lift));
                post_json(&app.target, "/_emulator/apps/suspend", body).await
            }
            AppAction::AutomationRule { app, payload } => {
                let mut body = app.body()?;
                if let Some(p) = payload {
                    let v: Value = serde_json::from_str(&p).context("--payload must be JSON")?;
                    body.insert("payload".into(), v);
                }
                post_json(&app.target, "/_emulator/apps/automation_rule", body).await
            }
        },
        EmulatorCommand::Seed {
            file,
            account,
            target,
        } => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = match account {
                Some(a) => format!("/_emulator/seed?account={a}"),
                None => "/_emulator/seed".to_string(),
            };
            let ct = if file.extension().is_some_and(|e| e == "json") {
                "application/json"
            } else {
                "application/yaml"
            };
            call(&target.url, Method::POST, &path, Some(data.into()), ct).await
        }
        EmulatorCommand::Deliveries { target } => {
            call(&target.url, Method::GET, "/_emulator/deliveries", None, "").await
        }
        EmulatorCommand::Reset { target } => {
            call(&target.url, Method::POST, "/_emulator/reset", None, "").await
        }
    }
}
