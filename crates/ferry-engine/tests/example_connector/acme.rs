//! The example connector of docs/engine.md ("Connector API"): a connector for a made-up
//! service, Acme, that uses every part of the connector API. It lives in a test so that it is
//! compiled and exercised (`tests/example_connector/main.rs`); a real connector is the same
//! code in `connectors/<name>.rs` or in a crate of its own.
//!
//! - **Connections** ([`AcmeConnector`]): outbound `{base_url, token}` and inbound
//!   `{signing_secret, api_url, token}`, checked by `ferry validate`.
//! - **Outbound authentication**: `Authorization: Bearer <token>` on every call.
//! - **Connection test**: `GET <base_url>/me`: 200 passes, 401/403 fails.
//! - **Inbound authentication**: the body's HMAC-SHA256 in `x-acme-signature`.
//! - **Trigger** ([`EventTrigger`]): answers the `ping` handshake itself (no job), refuses a
//!   replayed event id (replay window in the trigger's key/value store), and **provisions**
//!   its webhook at Acme (deprovisioning deletes it).
//! - **Computed schemas** ([`GetRecord`]): the input and output fields of "get a record" come
//!   from `GET <base_url>/schema/<object>`.

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::model::Direction;
use ferry_core::schema::{Field, FieldType, Schema};
use ferry_engine::action::{
    Action, ActionContext, ActionKind, ActionSpec, ConnectionRef, Output, Services, Signal,
};
use ferry_engine::connector::{constant_time_eq, InboundAuth, ProvisionContext, TestContext};
use ferry_engine::schemas::{ComputedSchemas, SchemaContext};
use ferry_engine::{
    ConnectionTestResult, Connector, ConnectorSpec, Parsed, Registry, Trigger, TriggerContext,
    TriggerError, TriggerParse, TriggerResponse, TriggerSpec,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// One line in the binary (or in `Registry::builtin` for a built-in connector).
pub fn register(r: &mut Registry) {
    r.connector(AcmeConnector::new());
    r.trigger(EventTrigger::new());
    r.action(GetRecord::new());
}

/// The connector: its connections and their hooks.
pub struct AcmeConnector(ConnectorSpec);

impl AcmeConnector {
    fn new() -> Self {
        AcmeConnector(
            ConnectorSpec::new("acme", "Acme records and events")
                .outbound(vec![
                    Field::new("base_url", FieldType::String).required(),
                    Field::new("token", FieldType::SecretString).required(),
                ])
                .inbound(vec![
                    Field::new("signing_secret", FieldType::SecretString).required(),
                    Field::new("api_url", FieldType::String).required(),
                    Field::new("token", FieldType::SecretString).required(),
                ]),
        )
    }
}

fn text<'a>(config: &'a Value, key: &str) -> &'a str {
    config.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `Authorization: Bearer <token>`, the secret revealed only here.
fn bearer(
    services: &Services,
    connection: &ConnectionRef,
    builder: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, Signal> {
    let token = services
        .secrets
        .reveal_in(text(&connection.config, "token"))
        .map_err(|e| Signal::Fail(format!("Unable to decrypt the token: {e}")))?;
    Ok(builder.bearer_auth(token.as_str()))
}

/// GET `url` with the connection's authentication; the JSON body or a message.
async fn get_json(
    services: &Services,
    connection: &ConnectionRef,
    url: &str,
) -> Result<(u16, Value), String> {
    let builder = services
        .http
        .inner()
        .get(url)
        .timeout(Duration::from_secs(5));
    let request = bearer(services, connection, builder)
        .map_err(|s| s.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let response = services
        .http
        .execute(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok((response.status, body))
}

#[async_trait]
impl Connector for AcmeConnector {
    fn spec(&self) -> &ConnectorSpec {
        &self.0
    }

    fn check_connection(&self, _direction: Direction, config: &Value) -> Vec<String> {
        ["base_url", "api_url"]
            .into_iter()
            .filter(|k| config.get(*k).is_some())
            .filter(|k| !text(config, k).starts_with("http"))
            .map(|k| format!("{k}: must be an http(s) URL"))
            .collect()
    }

    async fn authenticate_inbound(&self, auth: &InboundAuth<'_>) -> Result<(), TriggerError> {
        let secret = auth.reveal(text(&auth.connection.config, "signing_secret"))?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| TriggerError::bad_request("Invalid signing secret."))?;
        mac.update(&auth.request.body);
        let expected = hex::encode(mac.finalize().into_bytes());
        let given = auth.request.header("x-acme-signature").unwrap_or_default();
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(TriggerError::Reject {
                status: 401,
                message: "Invalid or missing signature.".into(),
            })
        }
    }

    async fn authenticate_outbound(
        &self,
        services: &Services,
        connection: &ConnectionRef,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Signal> {
        bearer(services, connection, builder)
    }

    fn has_tester(&self) -> bool {
        true
    }

    async fn test(&self, ctx: &TestContext<'_>) -> ConnectionTestResult {
        let url = format!("{}/me", text(&ctx.connection.config, "base_url"));
        match get_json(ctx.services, ctx.connection, &url).await {
            Ok((200, me)) => ConnectionTestResult::success(format!(
                "Connected as {}",
                me["name"].as_str().unwrap_or("?")
            )),
            Ok((401 | 403, _)) => ConnectionTestResult::failed("The token was rejected."),
            Ok((status, _)) => ConnectionTestResult::failed(format!("Acme answered HTTP {status}")),
            Err(e) => ConnectionTestResult::error(e),
        }
    }
}

/// `acme.event`: Acme's webhook deliveries.
pub struct EventTrigger(TriggerSpec);

impl EventTrigger {
    fn new() -> Self {
        EventTrigger(TriggerSpec {
            name: "acme.event",
            description: "Acme webhook events (signed; registered at Acme while served)",
            config: vec![Field::new("events", FieldType::String)
                .array()
                .default_value(json!(["record.updated"]))],
            connection: Some("acme"),
        })
    }
}

#[async_trait]
impl Trigger for EventTrigger {
    fn spec(&self) -> &TriggerSpec {
        &self.0
    }

    fn output_schema(&self, _config: &Value) -> Result<Schema, String> {
        Ok(Schema::new(
            "output",
            vec![
                Field::new("id", FieldType::String).required(),
                Field::new("type", FieldType::String).required(),
                Field::new("data", FieldType::Hash),
            ],
        ))
    }

    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let body: Value = serde_json::from_slice(&ctx.request.body)
            .map_err(|_| TriggerError::bad_request("Unable to parse the event"))?;
        // The handshake Acme sends when a webhook is registered: answered, no job.
        if body["type"] == "ping" {
            let challenge = body["challenge"].as_str().unwrap_or_default();
            return Ok(Parsed::Respond(TriggerResponse::text(200, challenge)));
        }
        // Acme retries deliveries: an event id is accepted once per 10 minutes, whichever
        // worker (or node) receives it.
        let id = body["id"].as_str().unwrap_or_default().to_string();
        let first = ctx
            .kv
            .put_if_absent(
                &format!("seen:{id}"),
                &json!(true),
                Some(Duration::from_secs(600)),
            )
            .await?;
        if !first {
            return Err(TriggerError::Discard(format!(
                "event {id} already received"
            )));
        }
        Ok(Parsed::Event(TriggerParse {
            output: body,
            context_id: Some(id),
            claims: Vec::new(),
        }))
    }

    /// Register the webhook (idempotent: a webhook registered earlier is kept).
    async fn provision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let connection = ctx
            .connection
            .ok_or("an inbound acme connection is required")?;
        let base = text(&connection.config, "api_url");
        let url = ctx.trigger_url.as_deref().ok_or("no trigger URL")?;
        let kv = ctx.connection_kv().ok_or("no connection store")?;
        let key = format!("webhook:{url}");
        if let Some(id) = kv.get(&key).await.map_err(|e| e.to_string())? {
            let token = ctx.reveal(text(&connection.config, "token"))?;
            let request = ctx
                .http
                .inner()
                .get(format!(
                    "{base}/webhooks/{}",
                    id.as_str().unwrap_or_default()
                ))
                .bearer_auth(token.as_str())
                .build()
                .map_err(|e| e.to_string())?;
            let response = ctx.http.execute(request).await.map_err(|e| e.to_string())?;
            if response.status == 200 {
                return Ok(());
            }
        }
        let token = ctx.reveal(text(&connection.config, "token"))?;
        let request = ctx
            .http
            .inner()
            .post(format!("{base}/webhooks"))
            .bearer_auth(token.as_str())
            .json(&json!({ "url": url, "events": ctx.config["events"] }))
            .build()
            .map_err(|e| e.to_string())?;
        let response = ctx.http.execute(request).await.map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        match (response.status, body["id"].as_str()) {
            (201, Some(id)) => kv
                .put(&key, &json!(id), None)
                .await
                .map_err(|e| e.to_string()),
            (status, _) => Err(format!("Acme refused the webhook (HTTP {status})")),
        }
    }

    /// Delete the webhook registered by `provision`.
    async fn deprovision(&self, ctx: &ProvisionContext<'_>) -> Result<(), String> {
        let connection = ctx
            .connection
            .ok_or("an inbound acme connection is required")?;
        let url = ctx.trigger_url.as_deref().ok_or("no trigger URL")?;
        let kv = ctx.connection_kv().ok_or("no connection store")?;
        let key = format!("webhook:{url}");
        let Some(id) = kv.get(&key).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let token = ctx.reveal(text(&connection.config, "token"))?;
        let request = ctx
            .http
            .inner()
            .delete(format!(
                "{}/webhooks/{}",
                text(&connection.config, "api_url"),
                id.as_str().unwrap_or_default()
            ))
            .bearer_auth(token.as_str())
            .build()
            .map_err(|e| e.to_string())?;
        let response = ctx.http.execute(request).await.map_err(|e| e.to_string())?;
        if !(response.status == 204 || response.status == 404) {
            return Err(format!("Acme answered HTTP {}", response.status));
        }
        kv.delete(&key).await.map_err(|e| e.to_string())
    }
}

/// `acme.get_record`: its fields depend on the object, as Acme's schema endpoint says.
pub struct GetRecord(ActionSpec);

impl GetRecord {
    fn new() -> Self {
        GetRecord(ActionSpec {
            name: "acme.get_record",
            description: "Get one record; the fields come from Acme's schema of the object",
            input: vec![],
            outputs: vec![Schema::new("record", vec![])],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some("acme"),
        })
    }
}

#[async_trait]
impl Action for GetRecord {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    fn computes_schemas(&self) -> bool {
        true
    }

    /// The schema depends on the object only (not on the record id).
    fn schema_selector(&self, raw_input: &Value) -> Value {
        raw_input.get("object").cloned().unwrap_or(Value::Null)
    }

    async fn compute_schemas(&self, ctx: &SchemaContext<'_>) -> Result<ComputedSchemas, Signal> {
        let connection = ctx
            .connection
            .ok_or("an outbound acme connection is required")?;
        let object = ctx
            .selector
            .as_str()
            .ok_or("`object` must be a literal name")?;
        let url = format!("{}/schema/{object}", text(&connection.config, "base_url"));
        let fields: Vec<Field> = match get_json(ctx.services, connection, &url).await? {
            (200, body) => serde_json::from_value(body["fields"].clone())
                .map_err(|e| format!("Acme's schema of '{object}' is unreadable: {e}"))?,
            (status, _) => {
                return Err(format!("Acme has no schema for '{object}' (HTTP {status})").into())
            }
        };
        Ok(ComputedSchemas {
            input: vec![
                Field::new("object", FieldType::String).required(),
                Field::new("id", FieldType::String).required(),
            ],
            outputs: vec![Schema::new("record", fields)],
        })
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = ctx
            .connection
            .ok_or_else(|| Signal::Fail("An outbound acme connection is required.".into()))?;
        let url = format!(
            "{}/records/{}/{}",
            text(&connection.config, "base_url"),
            ctx.input_str("object").unwrap_or_default(),
            ctx.input_str("id").unwrap_or_default()
        );
        match get_json(ctx.services, connection, &url).await {
            // Undeclared fields are dropped, values coerced, by the computed output schema.
            Ok((200, record)) => Ok(vec![Output::new("record", record)]),
            Ok((status, _)) => Err(Signal::Fail(format!("Acme answered HTTP {status}"))),
            Err(e) => Err(Signal::Fail(e)),
        }
    }
}
