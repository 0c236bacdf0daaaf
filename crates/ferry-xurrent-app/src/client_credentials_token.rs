//! Client Credentials Token (`xurrent_app.client_credentials_token`, spec §10.1): the OAuth
//! application (client-credentials grant) Xurrent created **in the customer's account** for
//! the App, as received through Secrets Changed: its node id, client id and client secret
//! (a sealed secret, revealed only where a step sends it).
//!
//! Beyond the spec (issue 9, "cached, sealed"): with `fetch_access_token` (default `true`) the
//! action also exchanges those credentials for an access token of the customer's account at
//! the OAuth endpoint of the provider connection's stage and region — the customer's Xurrent
//! host, the only place the customer's credentials are sent — and outputs it as a sealed
//! `access_token`. The token is cached, sealed, in the provider connection's store until
//! shortly before it expires, so a busy runbook does not fetch one per job.
//!
//! The client secret and the access token are sealed **bound** to the customer's Xurrent hosts
//! ([`customer_hosts`]; `Secrets::seal_bound`): only a request to one of them can carry them.
//!
//! Nothing stored for the customer: every output is null, which is not a failure (spec 121).

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::oauth2::TokenRequest;
use ferry_engine::Registry;
use ferry_xurrent::ConnectionConfig;
use serde_json::{json, Value};

use crate::action_support::{customer, customer_fields, provider};
use crate::connection::{AppSettings, CONNECTOR};
use crate::store::{CustomerStore, OauthApplication};

/// Register the action.
pub fn register(r: &mut Registry) {
    r.action(ClientCredentialsToken::new());
}

/// Which of the customer's two OAuth applications a token action reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The client-credentials application (API access to the customer account).
    ClientCredentials,
    /// The authorization-code application (GUI / user access).
    AuthorizationCode,
}

/// The output fields of the token actions.
pub fn token_output(grant: Grant) -> Vec<Field> {
    let mut fields = vec![
        Field::new("oauth_application_nodeID", FieldType::String).label("OAuth application nodeID"),
        Field::new("client_id", FieldType::String).label("Client ID"),
        Field::new("client_secret", FieldType::SecretString).label("Client secret"),
    ];
    if grant == Grant::ClientCredentials {
        fields.push(
            Field::new("access_token", FieldType::SecretString)
                .label("Access token")
                .hint("A bearer token of the customer's account (with fetch_access_token), sealed; send it only to the customer's Xurrent hosts with X-Xurrent-Account: <customer_account_id>"),
        );
        fields.push(
            Field::new("customer_account_id", FieldType::String)
                .label("Customer account ID")
                .hint("The account the credentials belong to (the X-Xurrent-Account header of calls made with them)"),
        );
    }
    fields
}

/// Run a token action: the stored application of `grant`, nulls when there is none.
pub async fn run_token(ctx: &mut ActionContext<'_>, grant: Grant) -> Result<Vec<Output>, Signal> {
    let connection = provider(ctx)?;
    let (reference, account) = customer(ctx).await?;
    let (Some(reference), Some(account)) = (reference, account) else {
        ctx.log_at(
            "warn",
            "no customer_account_id / app_reference in the input or the trigger's output: nothing to read",
        );
        return Ok(vec![Output::new("output", json!({}))]);
    };
    let store = CustomerStore::for_connection(ctx.services, connection);
    let record = store.get(&reference, &account).await?;
    let app: Option<OauthApplication> = record.and_then(|r| match grant {
        Grant::ClientCredentials => r.client_credentials,
        Grant::AuthorizationCode => r.authorization_code,
    });
    let Some(app) = app else {
        ctx.log(format!(
            "no {} application stored for {account} ({reference}) yet",
            match grant {
                Grant::ClientCredentials => "client-credentials",
                Grant::AuthorizationCode => "authorization-code",
            }
        ));
        return Ok(vec![Output::new("output", json!({}))]);
    };
    // The customer's credentials may only go to the customer's Xurrent hosts (issue 9,
    // Security): the outputs are sealed bound to them, so no other request can carry them.
    let hosts = customer_hosts(connection, &account)?;
    let client_secret = match &app.client_secret {
        Some(sealed) => Some(bind(ctx, &hosts, sealed)?),
        None => None,
    };
    let mut out = json!({
        "oauth_application_nodeID": app.node_id,
        "client_id": app.client_id,
        "client_secret": client_secret,
    });
    if grant == Grant::ClientCredentials {
        out["customer_account_id"] = json!(account);
        let fetch = ctx.input.get("fetch_access_token").and_then(Value::as_bool) != Some(false);
        if fetch {
            if let (Some(id), Some(secret)) = (&app.client_id, &app.client_secret) {
                let token = access_token(ctx, connection, &account, id, secret).await?;
                let sealed = ctx
                    .services
                    .secrets
                    .seal_bound(&token, &hosts)
                    .map_err(|e| Signal::Fail(format!("Unable to seal the access token: {e}")))?;
                out["access_token"] = json!(sealed);
            }
        }
    }
    Ok(vec![Output::new("output", out)])
}

/// The origins the customer's credentials may be sent to: the customer's account URL (from
/// the connection's `account_url_template`) and the GraphQL, REST and OAuth endpoints of the
/// provider connection's stage, region and overrides.
pub fn customer_hosts(
    connection: &ferry_engine::action::ConnectionRef,
    account: &str,
) -> Result<Vec<String>, Signal> {
    let config = ConnectionConfig::from_config(&connection.config).map_err(Signal::Fail)?;
    let settings = AppSettings::from_config(&connection.config);
    Ok(vec![
        settings.account_url(account),
        config.endpoints.graphql.clone(),
        config.endpoints.rest.clone(),
        config.endpoints.oauth2.clone(),
    ])
}

/// Re-seal a stored (unbound) secret bound to `hosts`.
fn bind(ctx: &ActionContext<'_>, hosts: &[String], sealed: &str) -> Result<String, Signal> {
    let plain = ctx.services.secrets.reveal_in(sealed).map_err(|e| {
        Signal::Fail(format!(
            "Unable to decrypt the customer's client secret: {e}"
        ))
    })?;
    ctx.services
        .secrets
        .seal_bound(&plain, hosts)
        .map_err(|e| Signal::Fail(format!("Unable to seal the customer's client secret: {e}")))
}

/// The customer's access token: cached (sealed) in the provider connection's store, else
/// fetched at the OAuth endpoint of the connection's stage and region.
async fn access_token(
    ctx: &ActionContext<'_>,
    connection: &ferry_engine::action::ConnectionRef,
    account: &str,
    client_id: &str,
    sealed_secret: &str,
) -> Result<String, Signal> {
    let config = ConnectionConfig::from_config(&connection.config).map_err(Signal::Fail)?;
    let secret = ctx.services.secrets.reveal_in(sealed_secret).map_err(|e| {
        Signal::Fail(format!(
            "Unable to decrypt the customer's client secret: {e}"
        ))
    })?;
    let mut request = TokenRequest::new(
        config.endpoints.oauth2.clone(),
        vec![
            ("client_id", client_id.to_string()),
            ("client_secret", secret.to_string()),
            ("grant_type", "client_credentials".into()),
        ],
    );
    request.cache_extra.push(format!("customer:{account}"));
    request
        .headers
        .push(("user-agent", ferry_xurrent::webhook::USER_AGENT.to_string()));
    request.token(ctx.services, connection).await
}

/// The action.
pub struct ClientCredentialsToken(ActionSpec);

impl Default for ClientCredentialsToken {
    fn default() -> Self {
        ClientCredentialsToken::new()
    }
}

impl ClientCredentialsToken {
    /// The action.
    pub fn new() -> ClientCredentialsToken {
        let mut input = customer_fields();
        input.push(
            Field::new("fetch_access_token", FieldType::Boolean)
                .label("Fetch access token")
                .hint("Also exchange the credentials for an access token of the customer's account (cached, sealed); false outputs the credentials only, without any network call")
                .default_value(json!(true)),
        );
        ClientCredentialsToken(ActionSpec {
            name: "xurrent_app.client_credentials_token",
            description: "The customer's client-credentials OAuth application for the App (and an access token of the customer's account)",
            input,
            outputs: vec![Schema::new("output", token_output(Grant::ClientCredentials))],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

#[async_trait]
impl Action for ClientCredentialsToken {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        run_token(ctx, Grant::ClientCredentials).await
    }
}
