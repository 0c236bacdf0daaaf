//! A client of Xurrent's Webhooks and Webhook Policies REST APIs (`<rest>/webhooks`,
//! `<rest>/webhook_policies`), over an outbound connection. Used by `ferry xurrent webhooks`
//! / `ferry xurrent webhook-policies` and by the webhook trigger's provisioning.
//!
//! Records are returned as the API's JSON objects (`id`, `name`, `event`, `uri`, `disabled`,
//! `webhook_policy`, …). Lists follow the pages (`per_page=100`) to the end. Errors are
//! [`XurrentError`]s: an unknown id is [`XurrentError::Api`] with status 404
//! ([`is_not_found`]), a 429/503 a reschedule.

use ferry_engine::action::{ConnectionRef, Services};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use crate::client::{XurrentClient, XurrentError};

/// Largest number of pages a list follows (100 × 100 records).
pub const MAX_PAGES: usize = 100;
const PER_PAGE: usize = 100;

/// Fields requested in webhook lists.
pub const WEBHOOK_LIST_FIELDS: &str =
    "id,name,event,uri,disabled,webhook_policy,last_error,created_at,updated_at";
/// Fields requested in policy lists.
pub const POLICY_LIST_FIELDS: &str =
    "id,name,jwt_alg,jwt_audience,jwt_claim_expires_in,disabled,created_at,updated_at";

/// Which records a list returns (the APIs' predefined filters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListFilter {
    /// All records.
    #[default]
    All,
    /// `/enabled`.
    Enabled,
    /// `/disabled`.
    Disabled,
}

impl ListFilter {
    fn suffix(self) -> &'static str {
        match self {
            ListFilter::All => "",
            ListFilter::Enabled => "/enabled",
            ListFilter::Disabled => "/disabled",
        }
    }
}

/// Fields of a webhook to create or change (unset fields are not sent).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WebhookInput {
    /// The event, e.g. `request.create` (required on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Where Xurrent POSTs (required on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Name (defaults to the event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Id of the webhook policy that signs the messages (a numeric id is sent as a number,
    /// a node id as a string).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "numeric_if_digits"
    )]
    pub webhook_policy_id: Option<String>,
    /// Publish the policy's key through OpenID Connect discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openid_connect_discovery: Option<bool>,
    /// Only messages about app instances of these App Offerings (by reference; `app_instance.*`
    /// and secrets events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_offering_references: Option<Vec<String>>,
    /// Comma-separated addresses told about failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_exceptions_to: Option<String>,
}

fn numeric_if_digits<S: serde::Serializer>(id: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match id.as_deref().map(|i| (i, i.parse::<u64>())) {
        Some((_, Ok(n))) => s.serialize_u64(n),
        Some((i, Err(_))) => s.serialize_str(i),
        None => s.serialize_none(),
    }
}

/// Fields of a webhook policy to create or change.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PolicyInput {
    /// `es256` (Xurrent's default), `rs256`, … (required on create; cannot change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_alg: Option<String>,
    /// The `aud` claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Lifetime of the tokens (sets `exp`), in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_claim_expires_in: Option<u64>,
    /// Disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// Whether an error is the API's "no such record" (404).
pub fn is_not_found(e: &XurrentError) -> bool {
    matches!(e, XurrentError::Api { status: 404, .. })
}

/// The Webhooks API over one connection.
pub struct WebhooksApi<'a> {
    client: XurrentClient<'a>,
}

fn check_id(id: &str) -> Result<&str, XurrentError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='));
    if ok {
        Ok(id)
    } else {
        Err(XurrentError::Fail(format!(
            "'{id}' is not a webhook or policy id (digits, or a node id)"
        )))
    }
}

fn json_body(
    response: &ferry_engine::http::HttpResponse,
    what: &str,
) -> Result<Value, XurrentError> {
    serde_json::from_slice(&response.body).map_err(|_| {
        XurrentError::Fail(format!(
            "Xurrent answered {what} with something else than JSON (HTTP {})",
            response.status
        ))
    })
}

fn to_value<T: Serialize>(input: &T) -> Result<Value, XurrentError> {
    serde_json::to_value(input)
        .map_err(|e| XurrentError::Fail(format!("cannot encode the request: {e}")))
}

impl<'a> WebhooksApi<'a> {
    /// The API over `connection` (an outbound `xurrent` connection).
    pub fn new(
        services: &'a Services,
        connection: &'a ConnectionRef,
    ) -> Result<WebhooksApi<'a>, XurrentError> {
        Ok(WebhooksApi {
            client: XurrentClient::new(services, connection)?,
        })
    }

    /// The transport (e.g. for its config).
    pub fn client(&self) -> &XurrentClient<'a> {
        &self.client
    }

    async fn list(
        &self,
        collection: &str,
        filter: ListFilter,
        fields: &str,
    ) -> Result<Vec<Value>, XurrentError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = format!(
                "{collection}{}?fields={fields}&per_page={PER_PAGE}&page={page}",
                filter.suffix()
            );
            let response = self.client.rest(Method::GET, &path, None).await?;
            let records = match json_body(&response, &format!("GET {collection}"))? {
                Value::Array(a) => a,
                _ => {
                    return Err(XurrentError::Fail(format!(
                        "Xurrent answered GET {collection} with something else than a list"
                    )))
                }
            };
            let n = records.len();
            all.extend(records);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Value, XurrentError> {
        let path = format!("{collection}/{}", check_id(id)?);
        let response = self.client.rest(Method::GET, &path, None).await?;
        json_body(&response, &format!("GET {path}"))
    }

    async fn write(
        &self,
        method: Method,
        path: String,
        body: Value,
    ) -> Result<Value, XurrentError> {
        let response = self.client.rest(method.clone(), &path, Some(body)).await?;
        json_body(&response, &format!("{method} {path}"))
    }

    async fn delete(&self, collection: &str, id: &str) -> Result<(), XurrentError> {
        let path = format!("{collection}/{}", check_id(id)?);
        self.client.rest(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// Every webhook (or the enabled / disabled ones).
    pub async fn list_webhooks(&self, filter: ListFilter) -> Result<Vec<Value>, XurrentError> {
        self.list("webhooks", filter, WEBHOOK_LIST_FIELDS).await
    }

    /// One webhook.
    pub async fn webhook(&self, id: &str) -> Result<Value, XurrentError> {
        self.get("webhooks", id).await
    }

    /// Create a webhook (`event` and `uri` are required).
    pub async fn create_webhook(&self, input: &WebhookInput) -> Result<Value, XurrentError> {
        if input.event.is_none() || input.uri.is_none() {
            return Err(XurrentError::Fail(
                "a webhook needs an event and a uri".into(),
            ));
        }
        self.write(Method::POST, "webhooks".into(), to_value(input)?)
            .await
    }

    /// Change a webhook.
    pub async fn update_webhook(
        &self,
        id: &str,
        input: &WebhookInput,
    ) -> Result<Value, XurrentError> {
        let path = format!("webhooks/{}", check_id(id)?);
        self.write(Method::PATCH, path, to_value(input)?).await
    }

    /// Delete a webhook.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), XurrentError> {
        self.delete("webhooks", id).await
    }

    /// Ask Xurrent to send a test message to the webhook (`object_id` 12345).
    pub async fn test_webhook(&self, id: &str) -> Result<(), XurrentError> {
        let path = format!("webhooks/{}/test", check_id(id)?);
        self.client.rest(Method::POST, &path, None).await?;
        Ok(())
    }

    /// Every webhook policy (or the enabled / disabled ones).
    pub async fn list_policies(&self, filter: ListFilter) -> Result<Vec<Value>, XurrentError> {
        self.list("webhook_policies", filter, POLICY_LIST_FIELDS)
            .await
    }

    /// One webhook policy (without its key: Xurrent returns `public_key_pem` only on create).
    pub async fn policy(&self, id: &str) -> Result<Value, XurrentError> {
        self.get("webhook_policies", id).await
    }

    /// Create a webhook policy; the answer carries `public_key_pem` (this once only).
    pub async fn create_policy(&self, input: &PolicyInput) -> Result<Value, XurrentError> {
        if input.jwt_alg.is_none() {
            return Err(XurrentError::Fail(
                "a webhook policy needs a jwt_alg".into(),
            ));
        }
        self.write(Method::POST, "webhook_policies".into(), to_value(input)?)
            .await
    }

    /// Change a webhook policy (`jwt_alg` cannot change).
    pub async fn update_policy(
        &self,
        id: &str,
        input: &PolicyInput,
    ) -> Result<Value, XurrentError> {
        let path = format!("webhook_policies/{}", check_id(id)?);
        self.write(Method::PATCH, path, to_value(input)?).await
    }

    /// Delete a webhook policy.
    pub async fn delete_policy(&self, id: &str) -> Result<(), XurrentError> {
        self.delete("webhook_policies", id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_send_only_what_is_set() {
        let w = WebhookInput {
            event: Some("request.create".into()),
            uri: Some("https://x/y".into()),
            disabled: Some(false),
            webhook_policy_id: Some("7".into()),
            ..WebhookInput::default()
        };
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"event": "request.create", "uri": "https://x/y", "disabled": false,
                   "webhook_policy_id": 7})
        );
        let node = WebhookInput {
            webhook_policy_id: Some("NG1lLWRlbW8".into()),
            ..WebhookInput::default()
        };
        assert_eq!(
            serde_json::to_value(&node).unwrap(),
            json!({"webhook_policy_id": "NG1lLWRlbW8"})
        );
        let p = PolicyInput {
            jwt_alg: Some("es256".into()),
            ..PolicyInput::default()
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"jwt_alg": "es256"})
        );
    }

    #[test]
    fn ids_are_checked_before_they_reach_a_path() {
        assert!(check_id("12").is_ok());
        assert!(check_id("NG1lLWRlbW8vV2ViaG9vay8x").is_ok());
        assert!(check_id("../accounts").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("1?x=2").is_err());
    }
}
