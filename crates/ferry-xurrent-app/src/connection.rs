//! The `xurrent_app` connections. Both directions take the **provider** account's Xurrent
//! connection fields (those of an outbound `xurrent` connection: `credentials`,
//! `environment`, `client_rate_limit`) plus two App Connector settings:
//!
//! - `account_url_template`: the URL of an account, `{account}` standing for its id; it is the
//!   issuer of the account's webhook tokens and the host of its `webhook.verify` callbacks.
//!   Default `https://{account}.<domain>` (the domain of the stage and region), as Xurrent;
//!   `http://127.0.0.1:<port>/accounts/{account}` for `ferry emulator`.
//! - `allow_http_loopback`: accept `http` callbacks on loopback hosts (for the emulator).
//!
//! The inbound connection is what the three triggers use: its credentials provision the
//! provider account (policy, webhooks, offering URI templates). The outbound connection is for
//! the actions. Both should name the same provider account.

use async_trait::async_trait;
use ferry_core::model::Direction;
use ferry_core::schema::{Field, FieldType};
use ferry_engine::action::{ConnectionRef, Services, Signal};
use ferry_engine::connector::{ConnectionTestResult, Connector, ConnectorSpec, TestContext};
use ferry_xurrent::connection::{check_outbound, outbound_fields};
use ferry_xurrent::endpoints::{xurrent_domain, Environment};
use serde_json::{json, Value};

/// The connector's name (`connector: xurrent_app`).
pub const CONNECTOR: &str = "xurrent_app";

/// The config fields of an `xurrent_app` connection (either direction).
pub fn fields() -> Vec<Field> {
    let mut fields = outbound_fields();
    fields.push(
        Field::new("account_url_template", FieldType::String)
            .label("Account URL template")
            .hint("The URL of an account, {account} standing for its id: the issuer of its webhook tokens and the host of its webhook.verify callbacks. Default https://{account}.<domain of the stage and region>; http://127.0.0.1:<port>/accounts/{account} for ferry emulator"),
    );
    fields.push(
        Field::new("allow_http_loopback", FieldType::Boolean)
            .label("Allow http on loopback")
            .hint("Accept http webhook.verify callbacks on 127.0.0.1/::1/localhost (for ferry emulator)")
            .default_value(json!(false)),
    );
    fields
}

/// Problems of a connection config beyond its schema.
pub fn check(config: &Value) -> Vec<String> {
    let mut problems = check_outbound(config);
    if let Some(t) = config.get("account_url_template").and_then(Value::as_str) {
        let probe = t.replace("{account}", "wdc");
        if !t.contains("{account}") {
            problems.push(format!(
                "account_url_template: '{t}' has no {{account}} placeholder"
            ));
        } else if url::Url::parse(&probe).map_or(true, |u| {
            !matches!(u.scheme(), "http" | "https") || u.host_str().is_none()
        }) {
            problems.push(format!("account_url_template: '{t}' is not an http(s) URL"));
        }
    }
    problems
}

/// The App Connector settings of a connection config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSettings {
    /// The provider account id (`credentials.account_id`).
    pub provider_account: String,
    /// The account URL template (with `{account}`).
    pub account_url_template: String,
    /// Accept `http` callbacks on loopback hosts.
    pub allow_http_loopback: bool,
}

impl AppSettings {
    /// Read the settings of a connection config.
    pub fn from_config(config: &Value) -> AppSettings {
        let env = Environment::from_config(config.get("environment"));
        let template = config
            .get("account_url_template")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "https://{{account}}.{}",
                    xurrent_domain(env.stage, env.region)
                )
            });
        AppSettings {
            provider_account: config
                .pointer("/credentials/account_id")
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default()
                .to_string(),
            account_url_template: template,
            allow_http_loopback: config.get("allow_http_loopback").and_then(Value::as_bool)
                == Some(true),
        }
    }

    /// The URL of `account` (the issuer of its webhook tokens).
    pub fn account_url(&self, account: &str) -> String {
        self.account_url_template.replace("{account}", account)
    }

    /// The provider account's URL.
    pub fn provider_url(&self) -> String {
        self.account_url(&self.provider_account)
    }
}

/// The App Connector: `xurrent_app` connections in both directions.
pub struct AppConnector(ConnectorSpec);

impl Default for AppConnector {
    fn default() -> Self {
        AppConnector::new()
    }
}

impl AppConnector {
    /// The connector.
    pub fn new() -> AppConnector {
        AppConnector(
            ConnectorSpec::new(
                CONNECTOR,
                "Xurrent App Connector: App Store apps (lifecycle triggers, customer secrets)",
            )
            .inbound(fields())
            .outbound(fields()),
        )
    }
}

#[async_trait]
impl Connector for AppConnector {
    fn spec(&self) -> &ConnectorSpec {
        &self.0
    }

    fn check_connection(&self, _direction: Direction, config: &Value) -> Vec<String> {
        check(config)
    }

    /// The provider's `X-Xurrent-Account` and `Authorization: Bearer …`.
    async fn authenticate_outbound(
        &self,
        services: &Services,
        connection: &ConnectionRef,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Signal> {
        ferry_xurrent::connection::authenticate(services, connection, builder).await
    }

    fn has_tester(&self) -> bool {
        true
    }

    async fn test(&self, ctx: &TestContext<'_>) -> ConnectionTestResult {
        ferry_xurrent::connection::test_connection(ctx.services, ctx.connection).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_urls_follow_the_stage_or_the_template() {
        let s = AppSettings::from_config(&json!({
            "credentials": {"account_id": "wdc"}, "environment": {"stage": "Demo"}}));
        assert_eq!(s.provider_url(), "https://wdc.xurrent-demo.com");
        assert_eq!(s.account_url("widget"), "https://widget.xurrent-demo.com");
        let s = AppSettings::from_config(&json!({
            "credentials": {"account_id": "wdc"}, "environment": {"stage": "Prod", "region": "us"}}));
        assert_eq!(s.provider_url(), "https://wdc.us.xurrent.com");
        let s = AppSettings::from_config(&json!({
            "credentials": {"account_id": "wdc"},
            "account_url_template": "http://127.0.0.1:4780/accounts/{account}",
            "allow_http_loopback": true}));
        assert_eq!(
            s.account_url("widget"),
            "http://127.0.0.1:4780/accounts/widget"
        );
        assert!(s.allow_http_loopback);
    }

    #[test]
    fn the_template_is_checked() {
        let base = json!({"credentials": {"account_id": "wdc", "personal_access_token": "x"}});
        assert!(check(&base).is_empty());
        let mut c = base.clone();
        c["account_url_template"] = json!("https://fixed.example.com");
        assert!(
            check(&c)[0].contains("no {account} placeholder"),
            "{:?}",
            check(&c)
        );
        c["account_url_template"] = json!("ftp://{account}.example.com");
        assert!(check(&c)[0].contains("not an http(s) URL"));
    }
}
