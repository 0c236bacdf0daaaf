//! `ferry-xurrent-app`: the Xurrent App Connector (spec `xurrent_app_connector.md`), the base
//! of the integration behind a Xurrent App Store app: an App Offering published by a
//! **provider** account and installed by **customer** accounts.
//!
//! - [`connection`] — the `xurrent_app` connections (the provider account's credentials, as an
//!   outbound `xurrent` connection, plus the account URL template);
//! - [`store`] — the customer secrets store ([`CustomerStore`]: `get` / `merge`), encrypted,
//!   merged under a per-customer lock, one per solution, shared by triggers and actions;
//! - [`inbound`] — the verification pipeline the triggers share (JWT through the Xurrent
//!   connector's verifier, `webhook.verify` handshake, replay window, `webhook` details);
//! - [`provision`] — the provider policy, the webhooks and the offering's URI templates;
//! - the triggers, one module each: [`secrets_changed`] (`xurrent_app.secrets_changed`),
//!   [`installation_changed`] (`xurrent_app.installation_changed`), [`automation_webhook`]
//!   (`xurrent_app.automation_webhook`).
//!
//! Every trigger: job context identifier `<app_reference>@<customer_account_id>`, the
//! delivery id (the original one for a re-send) as deduplication id, and the engine's
//! `discard_if` (a Ferry expression over `trigger`) evaluated after the trigger's side effects.
//!
//! Adding a trigger or an action is one module plus one line in [`register`].

pub mod action_support;
pub mod async_urls;
pub mod authorization_code_token;
pub mod automation_webhook;
pub mod client_credentials_token;
pub mod connection;
pub mod inbound;
pub mod installation_changed;
pub mod provision;
pub mod retrieve_app_config;
pub mod secrets_changed;
pub mod setup;
pub mod store;
pub mod update_app_config;

pub use connection::{AppConnector, AppSettings, CONNECTOR};
pub use store::{
    CustomerSecrets, CustomerStore, OauthApplication, SecretsUpdate, StoreError, WebhookPolicy,
};

use ferry_core::schema::{Field, FieldType};
use ferry_engine::{Registry, TriggerContext};

/// Register the App Connector: its connections, triggers and actions.
pub fn register(r: &mut Registry) {
    r.connector(AppConnector::new());
    secrets_changed::register(r);
    installation_changed::register(r);
    automation_webhook::register(r);
    client_credentials_token::register(r);
    authorization_code_token::register(r);
    retrieve_app_config::register(r);
    update_app_config::register(r);
    async_urls::register(r);
}

/// A registry holding the App Connector, to merge into the built-in one.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r);
    r
}

/// The `webhook` output object (spec §5.7).
pub fn webhook_field() -> Field {
    Field::new("webhook", FieldType::Nested)
        .label("Webhook")
        .with_fields(vec![
            Field::new("event", FieldType::String).label("Event"),
            Field::new("delivery", FieldType::String).label("Delivery ID"),
            Field::new("delivery_origin", FieldType::String).label("Original delivery ID"),
            Field::new("person", FieldType::Nested)
                .label("Person")
                .with_fields(vec![
                    Field::new("id", FieldType::Integer).label("ID"),
                    Field::new("nodeID", FieldType::String).label("nodeID"),
                    Field::new("name", FieldType::String).label("Name"),
                ]),
        ])
}

/// A trigger's output fields followed by `webhook` and `deduplication_id`.
pub(crate) fn common_output(mut fields: Vec<Field>) -> Vec<Field> {
    fields.push(webhook_field());
    fields.push(
        Field::new("deduplication_id", FieldType::String)
            .label("Deduplication ID")
            .hint("The delivery id (the original one for a re-sent delivery): a delivery never runs twice"),
    );
    fields
}

/// The App Connector settings of a trigger's inbound connection (defaults without one).
pub(crate) fn settings_of(ctx: &TriggerContext<'_>) -> AppSettings {
    AppSettings::from_config(
        ctx.connection
            .map(|c| &c.config)
            .unwrap_or(&serde_json::Value::Null),
    )
}
