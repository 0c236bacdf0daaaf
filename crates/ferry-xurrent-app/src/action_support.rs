//! What the App Connector's actions share (spec §10): the step's outbound `xurrent_app`
//! connection, the customer and App a step is about (input first, else the trigger's output),
//! and the provider GraphQL call with its context phrase (spec §5.1).

use ferry_core::schema::{Field, FieldType};
use ferry_engine::action::{ActionContext, ConnectionRef, Signal};
use ferry_xurrent::{XurrentClient, XurrentError};
use serde_json::Value;

use crate::connection::CONNECTOR;

/// The `customer_account_id` and `app_reference` inputs of every action but Async URLs.
pub fn customer_fields() -> Vec<Field> {
    vec![
        Field::new("customer_account_id", FieldType::String)
            .label("Customer account ID")
            .hint("The Xurrent account ID of the customer that installed the App. Defaults to the current customer."),
        Field::new("app_reference", FieldType::String)
            .label("App reference")
            .hint("The reference of the App installed by the customer. Defaults to the current App."),
    ]
}

/// The step's outbound `xurrent_app` connection (the provider account).
pub fn provider<'a>(ctx: &ActionContext<'a>) -> Result<&'a ConnectionRef, Signal> {
    match ctx.connection {
        Some(c) if c.connector == CONNECTOR => Ok(c),
        Some(c) => Err(Signal::Fail(format!(
            "connection '{}' is a '{}' connection; this action needs an outbound {CONNECTOR} connection (the provider account, in the solution of the Secrets Changed runbook)",
            c.name, c.connector
        ))),
        None => Err(Signal::Fail(format!(
            "this action needs an outbound {CONNECTOR} connection (the provider account, in the solution of the Secrets Changed runbook)"
        ))),
    }
}

/// The customer and App of a step: `(app_reference, customer_account_id)`, each the input's
/// value when it is not null, else the trigger output's (spec §10: null checks, not blank
/// checks). `None` for a value found in neither.
pub async fn customer(ctx: &ActionContext<'_>) -> Result<(Option<String>, Option<String>), Signal> {
    let from_input = |k: &str| match ctx.input.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut reference = from_input("app_reference");
    let mut account = from_input("customer_account_id");
    if reference.is_none() || account.is_none() {
        let job = ctx
            .services
            .store
            .get_job(ctx.job_id)
            .await
            .map_err(|e| Signal::Reschedule {
                after: std::time::Duration::from_secs(30),
                message: format!("Unable to read the job's trigger output: {e}"),
            })?;
        let trigger = job.map(|j| j.trigger_output).unwrap_or(Value::Null);
        let text = |k: &str| match trigger.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        reference = reference.or_else(|| text("app_reference"));
        account = account.or_else(|| text("customer_account_id"));
    }
    Ok((reference, account))
}

/// Both parts of [`customer`], or a failure naming what is missing.
pub async fn required_customer(ctx: &ActionContext<'_>) -> Result<(String, String), Signal> {
    match customer(ctx).await? {
        (Some(r), Some(a)) => Ok((r, a)),
        (r, a) => {
            let mut missing = Vec::new();
            if a.is_none() {
                missing.push("customer_account_id");
            }
            if r.is_none() {
                missing.push("app_reference");
            }
            Err(Signal::Fail(format!(
                "{} not given in the input and not in the trigger's output",
                missing.join(" and ")
            )))
        }
    }
}

/// A GraphQL call to the provider account (spec §5.1): 429/503 reschedule (Retry-After or
/// 60 s), other failures are prefixed with `Unable to <what>: `, and a single-root payload's
/// `errors` fail the call. Returns `data`.
pub async fn provider_graphql(
    client: &XurrentClient<'_>,
    what: &str,
    query: &str,
    variables: Value,
) -> Result<Value, Signal> {
    let data = match client.graphql(query, Some(variables)).await {
        Ok(r) => r.data,
        Err(XurrentError::Reschedule { after, message }) => {
            return Err(Signal::Reschedule { after, message })
        }
        Err(e) => return Err(Signal::Fail(format!("Unable to {what}: {e}"))),
    };
    if let Some(obj) = data.as_object() {
        if obj.len() == 1 {
            if let Some(errors) = obj
                .values()
                .next()
                .and_then(|v| v.get("errors"))
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
            {
                let messages: Vec<String> = errors
                    .iter()
                    .map(|e| match e.get("message").and_then(Value::as_str) {
                        Some(m) => m.to_string(),
                        None => e.to_string(),
                    })
                    .collect();
                return Err(Signal::Fail(format!(
                    "Unable to {what}: {}",
                    messages.join("; ")
                )));
            }
        }
    }
    Ok(data)
}

/// A Xurrent client over the provider connection.
pub fn client<'a>(
    ctx: &ActionContext<'a>,
    connection: &'a ConnectionRef,
) -> Result<XurrentClient<'a>, Signal> {
    XurrentClient::new(ctx.services, connection).map_err(Signal::from)
}
