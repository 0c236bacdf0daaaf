//! Update App Config (`xurrent_app.update_app_config`, spec §10.4): update the customer's App
//! Instance in the provider account — its custom fields, the `disabled` flag and the
//! suspension. The instance is found by App reference and customer account; then
//! `appInstanceUpdate` sends, in this order, `customFields` (**only when `custom_fields` is
//! mapped** — the reference always sends `[]`, which may clear the customer's values; issue 9),
//! `disabled` (when mapped, even `false`), `suspended` and `suspensionComment` (when
//! `suspension` is given) and the instance `id`. Output: `app_instance_id`.

use async_trait::async_trait;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::Registry;
use serde_json::{json, Map, Value};

use crate::action_support::{
    client, customer_fields, provider, provider_graphql, required_customer,
};
use crate::connection::CONNECTOR;

/// The instance lookup (spec §10.4 step 1).
pub const QUERY: &str = "query($appReference: String!, $customerAccountId: String!) {
  appInstances(first: 1, filter: {appOfferingReference: {values: [$appReference]}, customerAccount: {values: [$customerAccountId]}}) {
    nodes { id }
  }
}";

/// The update (spec §10.4 step 2).
pub const MUTATION: &str = "mutation($input: AppInstanceUpdateInput!) {
  appInstanceUpdate(input: $input) { appInstance { id } errors { path message } }
}";

/// Register the action.
pub fn register(r: &mut Registry) {
    r.action(UpdateAppConfig::new());
}

/// The `appInstanceUpdate` input of a resolved action input and the instance id.
pub fn update_input(input: &Value, id: &str) -> Value {
    let mut out = Map::new();
    if let Some(cf) = input.get("custom_fields").filter(|v| !v.is_null()) {
        let list: Vec<Value> = cf
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| json!({"id": f.get("id"), "value": f.get("value").cloned().unwrap_or(Value::Null)}))
                    .collect()
            })
            .unwrap_or_default();
        out.insert("customFields".into(), Value::Array(list));
    }
    if let Some(d) = input.get("disabled").filter(|v| !v.is_null()) {
        out.insert("disabled".into(), d.clone());
    }
    if let Some(s) = input.get("suspension").filter(|v| v.is_object()) {
        out.insert(
            "suspended".into(),
            s.get("suspended").cloned().unwrap_or(Value::Null),
        );
        out.insert(
            "suspensionComment".into(),
            s.get("comment").cloned().unwrap_or(Value::Null),
        );
    }
    out.insert("id".into(), json!(id));
    Value::Object(out)
}

/// The action.
pub struct UpdateAppConfig(ActionSpec);

impl Default for UpdateAppConfig {
    fn default() -> Self {
        UpdateAppConfig::new()
    }
}

impl UpdateAppConfig {
    /// The action.
    pub fn new() -> UpdateAppConfig {
        let mut input = vec![
            Field::new("custom_fields", FieldType::Nested)
                .array()
                .label("Custom fields")
                .hint("The App Instance's custom fields; sent only when mapped")
                .with_fields(vec![
                    Field::new("id", FieldType::String).required(),
                    Field::new("value", FieldType::String),
                ]),
            Field::new("disabled", FieldType::Boolean)
                .label("Disabled")
                .hint("Disable (true) or enable (false) the App Instance; sent only when mapped"),
            Field::new("suspension", FieldType::Nested)
                .label("Suspension")
                .hint("Suspend (suspended: true) or lift the suspension, with a comment for the customer")
                .with_fields(vec![
                    Field::new("suspended", FieldType::Boolean).required(),
                    Field::new("comment", FieldType::String).required(),
                ]),
        ];
        input.extend(customer_fields());
        UpdateAppConfig(ActionSpec {
            name: "xurrent_app.update_app_config",
            description: "Update a customer's App Instance: custom fields, disabled, suspension",
            input,
            outputs: vec![Schema::new(
                "output",
                vec![Field::new("app_instance_id", FieldType::String).label("App Instance ID")],
            )],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

#[async_trait]
impl Action for UpdateAppConfig {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = provider(ctx)?;
        let (reference, account) = required_customer(ctx).await?;
        let client = client(ctx, connection)?;
        let data = provider_graphql(
            &client,
            "query App Instance",
            QUERY,
            json!({"appReference": reference, "customerAccountId": account}),
        )
        .await?;
        let id = data
            .pointer("/appInstances/nodes/0/id")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Signal::Fail(format!(
                    "App instance {reference} not found for customer {account}"
                ))
            })?;
        let input = update_input(&ctx.input, &id);
        provider_graphql(
            &client,
            "update App Instance configuration",
            MUTATION,
            json!({ "input": input }),
        )
        .await?;
        Ok(vec![Output::new("output", json!({"app_instance_id": id}))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mapped_parts_are_sent_in_the_spec_order() {
        let full = json!({"custom_fields": [{"id": "foo", "value": "bar"}, {"id": "zoo", "value": "zar"}],
                          "disabled": true, "suspension": {"suspended": true, "comment": "Wait for it..."}});
        let v = update_input(&full, "myAppInstanceNodeID");
        assert_eq!(
            v,
            json!({"customFields": [{"id": "foo", "value": "bar"}, {"id": "zoo", "value": "zar"}],
                   "disabled": true, "suspended": true, "suspensionComment": "Wait for it...",
                   "id": "myAppInstanceNodeID"})
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "customFields",
                "disabled",
                "suspended",
                "suspensionComment",
                "id"
            ]
        );
        // Spec 136: only custom fields.
        let v = update_input(&json!({"custom_fields": [{"id": "a", "value": "b"}]}), "x");
        assert_eq!(
            v,
            json!({"customFields": [{"id": "a", "value": "b"}], "id": "x"})
        );
        // Issue 9: an unmapped custom_fields sends no customFields; disabled false is sent.
        let v = update_input(&json!({"disabled": false}), "x");
        assert_eq!(v, json!({"disabled": false, "id": "x"}));
    }
}
