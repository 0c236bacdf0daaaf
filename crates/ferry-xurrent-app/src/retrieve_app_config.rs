//! Retrieve App Config (`xurrent_app.retrieve_app_config`, spec §10.3): the configuration the
//! customer entered in the App's UI extension. `config_schema` declares the fields: a
//! `secret_string` field comes from the customer secrets store (sealed, never revealed here),
//! every other one from the App Instance's custom fields in the provider account. The
//! instance's status comes along (`disabled`, `enabled_by_customer`, `suspended`,
//! `suspension_comment`).
//!
//! A required field that is not there yet reschedules the step (60 s) until it is: secrets
//! first (`Required secrets not available yet: <ids>`, before any GraphQL call — the secrets
//! webhook may not have arrived), then custom fields (`Required fields not available yet:
//! <ids>`; a custom field with a null value counts as there). The engine's reschedule cap
//! bounds the wait; `reschedule_after` (beyond the spec) changes the 60 s.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::Registry;
use serde_json::{json, Map, Value};

use crate::action_support::{
    client, customer_fields, provider, provider_graphql, required_customer,
};
use crate::connection::CONNECTOR;
use crate::store::CustomerStore;

/// How long a missing required field or secret waits before the next look.
pub const NOT_YET_DELAY: Duration = Duration::from_secs(60);

/// The App Instance query (spec §10.3 step 2).
pub const QUERY: &str = "query($appReference: String!, $customerAccountId: String!) {
  appInstances(first: 1, filter: {appOfferingReference: {values: [$appReference]}, customerAccount: {values: [$customerAccountId]}}) {
    nodes { customFields { id value } disabled enabledByCustomer suspended suspensionComment }
  }
}";

/// Register the action.
pub fn register(r: &mut Registry) {
    r.action(RetrieveAppConfig::new());
}

/// The fields of a `config_schema` input, or why it is not a list of schema fields.
pub fn config_fields(input: &Value) -> Result<Vec<Field>, String> {
    match input.get("config_schema") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => {
            let fields: Vec<Field> = serde_json::from_value(v.clone())
                .map_err(|e| format!("config_schema: not a list of schema fields: {e}"))?;
            let mut problems = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                for p in f.check_definition() {
                    problems.push(format!("config_schema[{i}] ({}): {p}", f.id));
                }
            }
            if problems.is_empty() {
                Ok(fields)
            } else {
                Err(problems.join("; "))
            }
        }
    }
}

fn output_fields(config: Vec<Field>) -> Vec<Field> {
    // `required` decides when the action reschedules; the output keeps what Xurrent has
    // (a required custom field may hold null).
    let config = config
        .into_iter()
        .map(|mut f| {
            f.required = false;
            f
        })
        .collect();
    vec![
        Field::new("config", FieldType::Nested)
            .label("Config")
            .with_fields(config),
        Field::new("disabled", FieldType::Boolean).label("Disabled"),
        Field::new("enabled_by_customer", FieldType::Boolean).label("Enabled by customer"),
        Field::new("suspended", FieldType::Boolean).label("Suspended"),
        Field::new("suspension_comment", FieldType::String).label("Suspension comment"),
    ]
}

/// The action.
pub struct RetrieveAppConfig(ActionSpec);

impl Default for RetrieveAppConfig {
    fn default() -> Self {
        RetrieveAppConfig::new()
    }
}

impl RetrieveAppConfig {
    /// The action.
    pub fn new() -> RetrieveAppConfig {
        let mut input = vec![Field::new("config_schema", FieldType::Hash)
            .array()
            .required()
            .label("Config schema")
            .hint("The config fields to fetch, as schema fields ({id, type, required, ...}): a secret_string field is read from the customer's secrets, any other from the App Instance's custom fields")];
        input.extend(customer_fields());
        input.push(
            Field::new("reschedule_after", FieldType::Integer)
                .label("Reschedule after")
                .hint(
                    "Seconds before the next look when a required field or secret is not there yet",
                )
                .default_value(json!(NOT_YET_DELAY.as_secs()))
                .min(1.0),
        );
        RetrieveAppConfig(ActionSpec {
            name: "xurrent_app.retrieve_app_config",
            description: "The configuration a customer entered for the App (secrets and custom fields) and the App Instance's status",
            input,
            outputs: vec![Schema::new("output", output_fields(Vec::new()))],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

fn not_yet(after: Duration, what: &str, ids: &[&str]) -> Signal {
    Signal::Reschedule {
        after,
        message: format!("Required {what} not available yet: {}", ids.join(", ")),
    }
}

#[async_trait]
impl Action for RetrieveAppConfig {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    fn check(&self, raw_input: &Value, _variables: &[Field]) -> Vec<String> {
        // A mapped expression is only known at run time.
        match raw_input.get("config_schema") {
            Some(Value::Array(_)) => config_fields(raw_input).err().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn output_schema(&self, _reference: &str, input: &Value) -> Option<Schema> {
        let fields = config_fields(input).unwrap_or_default();
        Some(Schema::new("output", output_fields(fields)))
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let fields = config_fields(&ctx.input).map_err(Signal::Fail)?;
        let connection = provider(ctx)?;
        let (reference, account) = required_customer(ctx).await?;
        let wait = ctx
            .input
            .get("reschedule_after")
            .and_then(Value::as_u64)
            .map_or(NOT_YET_DELAY, |s| Duration::from_secs(s.max(1)));
        let (secret_fields, custom): (Vec<&Field>, Vec<&Field>) =
            fields.iter().partition(|f| f.ty == FieldType::SecretString);
        let mut config = Map::new();
        if !secret_fields.is_empty() {
            let store = CustomerStore::for_connection(ctx.services, connection);
            let stored = store
                .get(&reference, &account)
                .await?
                .map(|r| r.secrets)
                .unwrap_or_default();
            let missing: Vec<&str> = secret_fields
                .iter()
                .filter(|f| f.required && !stored.contains_key(&f.id))
                .map(|f| f.id.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(not_yet(wait, "secrets", &missing));
            }
            for f in &secret_fields {
                if let Some(sealed) = stored.get(&f.id) {
                    config.insert(f.id.clone(), json!(sealed));
                }
            }
        }
        let client = client(ctx, connection)?;
        let data = provider_graphql(
            &client,
            "query App Instance custom fields",
            QUERY,
            json!({"appReference": reference, "customerAccountId": account}),
        )
        .await?;
        let node = data
            .pointer("/appInstances/nodes/0")
            .cloned()
            .unwrap_or(Value::Null);
        if !custom.is_empty() {
            let by_id: BTreeMap<String, Value> = node
                .get("customFields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|cf| {
                            let id = cf.get("id")?.as_str()?.to_string();
                            Some((id, cf.get("value").cloned().unwrap_or(Value::Null)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&str> = custom
                .iter()
                .filter(|f| f.required && !by_id.contains_key(&f.id))
                .map(|f| f.id.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(not_yet(wait, "fields", &missing));
            }
            for f in &custom {
                config.insert(
                    f.id.clone(),
                    by_id.get(&f.id).cloned().unwrap_or(Value::Null),
                );
            }
        }
        let status = |k: &str| node.get(k).cloned().unwrap_or(Value::Null);
        Ok(vec![Output::new(
            "output",
            json!({
                "config": config,
                "disabled": status("disabled"),
                "enabled_by_customer": status("enabledByCustomer"),
                "suspended": status("suspended"),
                "suspension_comment": status("suspensionComment"),
            }),
        )])
    }
}
