//! GraphQL errors in the shape of Xurrent's GraphQL server (graphql-ruby): static validation
//! failures answer `{"errors": [...]}` alone, each with `locations`, a `path` that starts with
//! the operation and `extensions.code`; unknown ids answer `Not Found` with the field's path.
//! Driven over HTTP with plain reqwest + serde_json.

use ferry_emulator::{EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use serde_json::{json, Value};

struct Server {
    url: String,
    client: reqwest::Client,
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(EmulatorConfig {
        listen: addr,
        rate_limits: RateLimits::disabled(),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::spawn(ferry_emulator::serve(emu, listener, std::future::pending()));
    Server {
        url: format!("http://{addr}/graphql"),
        client: reqwest::Client::new(),
    }
}

impl Server {
    /// POST a document; the answer must be 200 JSON.
    async fn post(&self, query: &str, variables: Value) -> Value {
        let resp = self
            .client
            .post(&self.url)
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// POST a document that must fail validation: no `data` key; returns the errors.
    async fn invalid(&self, query: &str) -> Vec<Value> {
        let v = self.post(query, json!({})).await;
        let obj = v.as_object().unwrap();
        assert!(!obj.contains_key("data"), "no data key expected: {v}");
        obj["errors"].as_array().cloned().expect("errors")
    }
}

#[tokio::test]
async fn unknown_field() {
    let s = start().await;
    let errors = s
        .invalid("query Mine {\n  requests(first: 1) { nodes { id colour } }\n}")
        .await;
    assert_eq!(
        errors,
        vec![json!({
            "message": "Field 'colour' doesn't exist on type 'Request'",
            "locations": [{"line": 2, "column": 35}],
            "path": ["query Mine", "requests", "nodes", "colour"],
            "extensions": {"code": "undefinedField", "typeName": "Request", "fieldName": "colour"},
        })]
    );
}

#[tokio::test]
async fn missing_required_argument() {
    let s = start().await;
    let errors = s.invalid("{ node { id } }").await;
    assert_eq!(
        errors,
        vec![json!({
            "message": "Field 'node' is missing required arguments: id",
            "locations": [{"line": 1, "column": 3}],
            "path": ["query", "node"],
            "extensions": {"code": "missingRequiredArguments", "className": "Field", "name": "node", "arguments": "id"},
        })]
    );
    // A required input field of a mutation input.
    let errors = s
        .invalid("mutation { webhookCreate(input: {event: request_create}) { webhook { id } } }")
        .await;
    assert!(
        errors
            .iter()
            .all(|e| e["extensions"]["code"] == "missingRequiredInputObjectAttribute"),
        "{errors:?}"
    );
    assert!(errors
        .iter()
        .any(|e| e["path"] == json!(["mutation", "webhookCreate", "input", "uri"])));
}

#[tokio::test]
async fn wrong_literal_type() {
    let s = start().await;
    let errors = s.invalid("{\n  node(id: true) { id }\n}").await;
    assert_eq!(
        errors,
        vec![json!({
            "message": "Argument 'id' on Field 'node' has an invalid value (true). Expected type 'ID!'.",
            "locations": [{"line": 2, "column": 3}],
            "path": ["query", "node", "id"],
            "extensions": {"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": "id"},
        })]
    );
    let errors = s
        .invalid("{ requests(first: \"ten\") { nodes { id } } }")
        .await;
    assert_eq!(errors[0]["path"], json!(["query", "requests", "first"]));
    assert_eq!(
        errors[0]["extensions"]["code"],
        "argumentLiteralsIncompatible"
    );
}

#[tokio::test]
async fn invalid_enum_value() {
    let s = start().await;
    let errors = s
        .invalid("mutation {\n  webhookCreate(input: {uri: \"https://example.invalid/x\", event: request_explode}) { webhook { id } }\n}")
        .await;
    assert_eq!(
        errors,
        vec![json!({
            "message": "Argument 'event' on InputObject 'WebhookCreateInput' has an invalid value (request_explode). Expected type 'WebhookEvent!'.",
            "locations": [{"line": 2, "column": 24}],
            "path": ["mutation", "webhookCreate", "input", "event"],
            "extensions": {"code": "argumentLiteralsIncompatible", "typeName": "InputObject", "argumentName": "event"},
        })]
    );
    // The wire spelling and the quoted form stay accepted, as the real API accepts them.
    let v = s
        .post(
            "mutation { webhookCreate(input: {uri: \"https://example.invalid/x\", event: \"request.create\"}) { webhook { event } errors { message } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["webhookCreate"]["webhook"]["event"], "request_create",
        "{v}"
    );
}

#[tokio::test]
async fn invalid_variable_values() {
    let s = start().await;
    let query = "query Find($id: ID!) {\n  node(id: $id) { id }\n}";
    for (variables, value, explanation) in [
        (json!({}), Value::Null, "Expected value to not be null"),
        (
            json!({ "id": false }),
            json!(false),
            "Could not coerce value false to ID",
        ),
    ] {
        let v = s.post(query, variables).await;
        assert!(v.get("data").is_none(), "no data key expected: {v}");
        assert_eq!(
            v["errors"],
            json!([{
                "message": "Variable $id of type ID! was provided invalid value",
                "locations": [{"line": 1, "column": 12}],
                "extensions": {"value": value, "problems": [{"path": [], "explanation": explanation}]},
            }])
        );
    }
    let v = s
        .post(
            "mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) { webhook { id } } }",
            json!({ "input": { "uri": "https://example.invalid/x", "event": "request.explode" } }),
        )
        .await;
    assert!(v.get("data").is_none(), "{v}");
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Variable $input of type WebhookCreateInput! was provided invalid value for event (Expected \"request.explode\" to be one of: "),
        "{v}"
    );
    assert_eq!(
        v["errors"][0]["extensions"]["problems"][0]["path"],
        json!(["event"])
    );
}

#[tokio::test]
async fn unknown_ids_answer_not_found_with_a_path() {
    let s = start().await;
    let v = s
        .post(
            "mutation($id: ID!) { webhookUpdate(input: {id: $id, disabled: false}) { webhook { id } } }",
            json!({ "id": "NG1lLmNvbS9XZWJob29rLzk5OTk5" }),
        )
        .await;
    assert_eq!(v["data"], json!({ "webhookUpdate": null }), "{v}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["errors"][0]["message"], "Not Found");
    assert_eq!(v["errors"][0]["path"], json!(["webhookUpdate"]));
    assert_eq!(
        v["errors"][0]["locations"],
        json!([{"line": 1, "column": 22}])
    );

    let v = s
        .post("{ node(id: \"no-such-id\") { id } }", json!({}))
        .await;
    assert_eq!(v["data"], json!({ "node": null }), "{v}");
    assert_eq!(v["errors"][0]["message"], "Not Found");
    assert_eq!(v["errors"][0]["path"], json!(["node"]));
}

#[tokio::test]
async fn execution_errors_keep_data_and_carry_the_field_path() {
    let s = start().await;
    // `requests` is a non-null connection: its failure nulls `data`, and the error names it.
    let v = s
        .post(
            "{ requests(first: 1, after: \"bogus\") { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v,
        json!({
            "data": null,
            "errors": [{
                "message": "Invalid cursor 'bogus'",
                "locations": [{"line": 1, "column": 3}],
                "path": ["requests"],
            }],
        })
    );
    // Beside a field that works, only the failing nullable field is null.
    let v = s
        .post("{ me { name } node(id: \"gone\") { id } }", json!({}))
        .await;
    assert_eq!(
        v["data"],
        json!({ "me": { "name": "Emulator Admin" }, "node": null }),
        "{v}"
    );
    assert_eq!(v["errors"][0]["path"], json!(["node"]), "{v}");
}

#[tokio::test]
async fn errors_outside_the_covered_rules_also_come_without_data() {
    let s = start().await;
    // A syntax error and an undefined fragment are left to async-graphql; still no `data`.
    for query in ["{ requests(first: 1) { nodes { id } }", "{ ...Missing }"] {
        let errors = s.invalid(query).await;
        assert!(!errors.is_empty(), "{query}");
        assert!(errors[0]["message"].is_string(), "{query}");
    }
    // A valid document keeps its data and has no errors.
    let v = s.post("{ me { name } }", json!({})).await;
    assert_eq!(v["data"]["me"]["name"], "Emulator Admin");
    assert!(v.get("errors").is_none(), "{v}");
}
