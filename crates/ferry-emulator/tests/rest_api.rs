//! REST half of the emulator driven over HTTP with plain reqwest + serde_json, deliveries
//! captured by a local axum receiver and verified with `jsonwebtoken`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use ferry_emulator::{Emulator, EmulatorConfig, RateLimits, Record, DEFAULT_TOKEN};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{json, Value};

struct Emu {
    emu: Arc<Emulator>,
    base: String,
    http: reqwest::Client,
}

impl Emu {
    async fn start() -> Emu {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = EmulatorConfig {
            listen: addr,
            rate_limits: RateLimits::disabled(),
            ..EmulatorConfig::default()
        };
        let emu = ferry_emulator::build(config).await.unwrap();
        tokio::spawn(ferry_emulator::serve(
            emu.clone(),
            listener,
            std::future::pending(),
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Emu {
            base: emu.base_url.clone(),
            emu,
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn settings(&self, body: Value) {
        let resp = self
            .http
            .put(self.url("/_emulator/settings"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    async fn deliveries(&self, query: &str) -> Vec<Value> {
        self.http
            .get(self.url(&format!("/_emulator/deliveries{query}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Run a GraphQL document as the administrator; returns `data`.
    async fn gql(&self, query: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/graphql",
                Some(json!({ "query": query })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    fn create(&self, typename: &str, fields: Value) -> Record {
        let f = fields.as_object().unwrap().clone();
        self.emu.create_record("wdc", typename, f, None)
    }
}

#[derive(Clone, Debug)]
struct Captured {
    uri: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Captured>>>,
    status: Arc<Mutex<u16>>,
}

async fn capture(
    State(r): State<Receiver>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.seen.lock().push(Captured {
        uri: uri.to_string(),
        headers,
        body,
    });
    StatusCode::from_u16(*r.status.lock()).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
            status: Arc::new(Mutex::new(200)),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(capture))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn all(&self) -> Vec<Captured> {
        self.seen.lock().clone()
    }

    /// Wait until `n` deliveries whose message (plain or JWT `data`) matches `pred` arrived.
    async fn wait_for(&self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Captured> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<Captured> = self
                .all()
                .into_iter()
                .filter(|c| pred(&unverified_message(&c.body)))
                .collect();
            if found.len() >= n || Instant::now() > deadline {
                assert!(
                    found.len() >= n,
                    "expected {n} deliveries, got {}",
                    found.len()
                );
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The message of a delivery body without verifying the signature.
fn unverified_message(body: &Value) -> Value {
    match body.get("jwt").and_then(Value::as_str) {
        None => body.clone(),
        Some(jwt) => {
            use base64::Engine as _;
            let part = jwt.split('.').nth(1).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()["data"].clone()
        }
    }
}

fn event_is(e: &'static str) -> impl Fn(&Value) -> bool {
    move |m| m["event"] == e
}

/// Verify a `{"jwt": ...}` body with an EC public key PEM; returns the claims.
fn verify_es256(body: &Value, pem: &str, aud: Option<&str>) -> Value {
    let jwt = body["jwt"].as_str().expect("signed body");
    let mut v = Validation::new(Algorithm::ES256);
    match aud {
        Some(a) => v.set_audience(&[a]),
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&["iss", "iat", "nbf", "sub"]);
    decode::<Value>(jwt, &DecodingKey::from_ec_pem(pem.as_bytes()).unwrap(), &v)
        .expect("signature and claims verify")
        .claims
}

async fn get_callback(http: &reqwest::Client, msg: &Value) -> u16 {
    let cb = msg["payload"]["callback"].as_str().unwrap();
    http.get(cb).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn webhooks_api_crud_and_errors() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    let uri = format!("{}/hook", rcv.base);

    // 401 without token, with a wrong account, with an unknown token
    let r = e.http.get(e.url("/v1/webhooks")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .http
        .get(e.url("/v1/webhooks"))
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .http
        .get(e.url("/v1/webhooks"))
        .bearer_auth("nope")
        .header("X-4me-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // 403 for a non-administrator
    let pat = e
        .control(
            "/_emulator/tokens",
            json!({"account": "wdc", "admin": false}),
        )
        .await;
    let r = e
        .http
        .get(e.url("/v1/webhooks"))
        .bearer_auth(pat["token"].as_str().unwrap())
        .header("X-Xurrent-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // 422s naming the field
    let cases = [
        (json!({"uri": uri}), "event"),
        (json!({"event": "request.explode", "uri": uri}), "event"),
        (json!({"event": "request.create"}), "uri"),
        (
            json!({"event": "request.create", "uri": "not a uri"}),
            "uri",
        ),
        (
            json!({"event": "request.create", "uri": uri, "description": "x".repeat(64 * 1024 + 1)}),
            "description",
        ),
        (
            json!({"event": "request.create", "uri": uri, "source": "s".repeat(31)}),
            "source",
        ),
        (
            json!({"event": "request.create", "uri": uri, "sourceID": "s".repeat(129)}),
            "sourceID",
        ),
        (
            json!({"event": "request.create", "uri": uri, "mail_exceptions_to": "a@b.com,nope"}),
            "mail_exceptions_to",
        ),
        (
            json!({"event": "request.create", "uri": uri, "webhook_policy_id": 999}),
            "webhook_policy",
        ),
        (
            json!({"event": "request.create", "uri": uri, "disabled": "maybe"}),
            "disabled",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = e
            .call(Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}");
        let msg = resp["message"].as_str().unwrap();
        assert!(msg.contains(field), "{msg} should name {field}");
    }
    // limits are inclusive
    let (status, _) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(
                json!({"event": "request.create", "uri": uri, "source": "s".repeat(30),
                        "sourceID": "i".repeat(128), "description": "d".repeat(64 * 1024)}),
            ),
        )
        .await;
    assert_eq!(status, 201);

    // create: 201 Created with a Location; name defaults to the event, GraphQL spelling of the
    // event is accepted too
    let r = e
        .req(Method::POST, "/v1/webhooks")
        .json(&json!({"event": "problem_update", "uri": uri,
                "mail_exceptions_to": "john.doe@example.com, jane.doe@example.com",
                "app_offering_references": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let created: Value = r.json().await.unwrap();
    assert_eq!(location, e.url(&format!("/v1/webhooks/{}", created["id"])));
    assert_eq!(created["name"], "problem.update");
    assert_eq!(created["event"], "problem.update");
    assert_eq!(created["disabled"], false);
    assert_eq!(created["app_offering_references"], json!(["a", "b"]));
    assert!(created["created_at"].is_string());
    let id = created["id"].as_u64().unwrap();

    // The same object is a record of type Webhook (what GraphQL serves).
    let rec = e
        .emu
        .records
        .get(created["nodeID"].as_str().unwrap())
        .unwrap();
    assert_eq!(rec["uri"], json!(uri));
    assert_eq!(
        rec["mailExceptionsTo"],
        "john.doe@example.com, jane.doe@example.com"
    );

    // get (also at the Location), 404
    let (status, got) = e
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let at_location: Value = e
        .http
        .get(&location)
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "wdc")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at_location["nodeID"], created["nodeID"]);
    assert_eq!(got["uri"], json!(uri));
    assert_eq!(e.call(Method::GET, "/v1/webhooks/4242", None).await.0, 404);
    assert_eq!(
        e.call(Method::PATCH, "/v1/webhooks/4242", Some(json!({})))
            .await
            .0,
        404
    );

    // patch: disable, rename, invalid event
    let (status, patched) = e
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"disabled": true, "name": "Problem Update"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["disabled"], true);
    assert_eq!(patched["name"], "Problem Update");
    assert_eq!(patched["event"], "problem.update");
    let (status, _) = e
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"event": "nope"})),
        )
        .await;
    assert_eq!(status, 422);

    // list + predefined filters + pagination headers
    let (status, all) = e.call(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 2);
    // collections show the collection fields of Xurrent's list; ?fields= selects others
    for item in all.as_array().unwrap() {
        for key in item.as_object().unwrap().keys() {
            assert!(
                [
                    "id",
                    "name",
                    "event",
                    "uri",
                    "disabled",
                    "last_error",
                    "created_at",
                    "updated_at"
                ]
                .contains(&key.as_str()),
                "{key} in {item}"
            );
        }
        assert!(item["uri"].is_string() && item["event"].is_string());
    }
    let (_, sel) = e
        .call(Method::GET, "/v1/webhooks?fields=id,nodeID,verified", None)
        .await;
    assert!(sel[0]["nodeID"].is_string() && sel[0]["verified"].is_boolean());
    assert!(sel[0].get("uri").is_none());
    let (_, disabled) = e.call(Method::GET, "/v1/webhooks/disabled", None).await;
    assert_eq!(disabled.as_array().unwrap().len(), 1);
    assert_eq!(disabled[0]["id"], id);
    let (_, enabled) = e.call(Method::GET, "/v1/webhooks/enabled", None).await;
    assert_eq!(enabled.as_array().unwrap().len(), 1);
    assert_ne!(enabled[0]["id"], id);
    let r = e
        .req(Method::GET, "/v1/webhooks?per_page=1&page=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-pagination-total-entries"], "2");
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);

    // test: 204, then a delivery with object_id 12345 (disabled webhooks can be tested)
    let r = e
        .req(Method::POST, &format!("/v1/webhooks/{id}/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let got = rcv
        .wait_for(1, |m| {
            m["event"] == "problem.update" && m["object_id"] == 12345
        })
        .await;
    let msg = &got[0].body;
    assert_eq!(msg["webhook_id"], id);
    assert_eq!(msg["account_id"], "wdc");
    assert_eq!(msg["person_name"], "Emulator Admin");
    assert_eq!(
        e.call(Method::POST, "/v1/webhooks/4242/test", None).await.0,
        404
    );

    // delete
    let r = e
        .req(Method::DELETE, &format!("/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        e.call(Method::GET, &format!("/v1/webhooks/{id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        e.call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn policies_signed_delivery_and_verification_handshake() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;

    // policy errors
    let (s, r) = e
        .call(Method::POST, "/v1/webhook_policies", Some(json!({})))
        .await;
    assert_eq!(s, 422);
    assert!(r["message"].as_str().unwrap().contains("jwt_alg"));
    let (s, _) = e
        .call(
            Method::POST,
            "/v1/webhook_policies",
            Some(json!({"jwt_alg": "ps999"})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = e
        .call(
            Method::POST,
            "/v1/webhook_policies",
            Some(json!({"jwt_alg": "es256", "jwt_audience": "a".repeat(2049)})),
        )
        .await;
    assert_eq!(s, 422);

    // create: 201 with a Location; public_key_pem only in the create response; the name is
    // generated as Xurrent does (56 hex characters)
    let r = e
        .req(Method::POST, "/v1/webhook_policies")
        .json(&json!({"jwt_alg": "es256", "jwt_audience": "ferry", "jwt_claim_expires_in": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let policy: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        e.url(&format!("/v1/webhook_policies/{}", policy["id"]))
    );
    let policy_name = policy["name"].as_str().unwrap();
    assert_eq!(policy_name.len(), 56, "{policy_name}");
    assert!(policy_name
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    let pem = policy["public_key_pem"].as_str().unwrap().to_string();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let pid = policy["id"].as_u64().unwrap();
    let (_, got) = e
        .call(Method::GET, &format!("/v1/webhook_policies/{pid}"), None)
        .await;
    assert_eq!(got["jwt_alg"], "es256");
    assert_eq!(got["jwt_audience"], "ferry");
    assert!(got.get("public_key_pem").is_none());
    // the collection lists id, name, created_at and updated_at, as Xurrent's does;
    // ?fields= selects others
    let (_, list) = e.call(Method::GET, "/v1/webhook_policies", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let mut keys: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "id", "name", "updated_at"]);
    assert_eq!(list[0]["name"], policy_name);
    let (_, list) = e
        .call(Method::GET, "/v1/webhook_policies?fields=id,jwt_alg", None)
        .await;
    assert_eq!(list[0], json!({"id": pid, "jwt_alg": "es256"}));
    let (_, en) = e
        .call(Method::GET, "/v1/webhook_policies/enabled", None)
        .await;
    assert_eq!(en.as_array().unwrap().len(), 1);
    let (_, dis) = e
        .call(Method::GET, "/v1/webhook_policies/disabled", None)
        .await;
    assert_eq!(dis.as_array().unwrap().len(), 0);
    let (s, _) = e
        .call(
            Method::PATCH,
            &format!("/v1/webhook_policies/{pid}"),
            Some(json!({"jwt_alg": "rs256"})),
        )
        .await;
    assert_eq!(s, 422);

    // webhook signed with the policy
    let (s, hook) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(
                json!({"event": "request.create", "uri": format!("{}/in", rcv.base),
                        "webhook_policy_id": pid}),
            ),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(hook["webhook_policy"]["id"], pid);
    assert_eq!(hook["verified"], false);
    let hook_id = hook["id"].as_u64().unwrap();

    // the verification message arrives first, signed
    let verify = rcv.wait_for(1, event_is("webhook.verify")).await;
    let c = &verify[0];
    assert_eq!(c.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(
        c.headers["user-agent"],
        "xurrent/1.0 (https://developer.xurrent.com/v1/webhooks)"
    );
    let delivery = c.headers["x-xurrent-delivery"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(delivery).is_ok());
    assert!(c.headers["link"]
        .to_str()
        .unwrap()
        .contains("rel=\"canonical\""));
    let claims = verify_es256(&c.body, &pem, Some("ferry"));
    let now = chrono::Utc::now().timestamp();
    assert_eq!(claims["iss"], format!("{}/accounts/wdc", e.base));
    assert_eq!(claims["aud"], "ferry");
    assert!((claims["iat"].as_i64().unwrap() - now).abs() <= 5);
    assert_eq!(
        claims["exp"].as_i64().unwrap(),
        claims["iat"].as_i64().unwrap() + 300
    );
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 64);
    assert!(jti.chars().all(|ch| ch.is_ascii_hexdigit()));
    // sub is the numeric webhook id; without OpenID Connect discovery the header names no key
    assert_eq!(claims["sub"], hook_id.to_string());
    assert_eq!(
        jwt_header(c.body["jwt"].as_str().unwrap()),
        json!({"typ": "JWT", "alg": "ES256"})
    );
    // A token signed by another key does not verify.
    let other = e
        .call(
            Method::POST,
            "/v1/webhook_policies",
            Some(json!({"jwt_alg": "es256"})),
        )
        .await
        .1;
    let jwt = c.body["jwt"].as_str().unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    let other_key =
        DecodingKey::from_ec_pem(other["public_key_pem"].as_str().unwrap().as_bytes()).unwrap();
    assert!(decode::<Value>(jwt, &other_key, &v).is_err());

    // 404 / 403 / 401 on policies, PATCH and DELETE
    assert_eq!(
        e.call(Method::GET, "/v1/webhook_policies/999", None)
            .await
            .0,
        404
    );
    let pat = e
        .control(
            "/_emulator/tokens",
            json!({"account": "wdc", "admin": false}),
        )
        .await;
    let r = e
        .http
        .get(e.url("/v1/webhook_policies"))
        .bearer_auth(pat["token"].as_str().unwrap())
        .header("X-Xurrent-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = e
        .http
        .get(e.url("/v1/webhook_policies"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let oid = other["id"].as_u64().unwrap();
    let (s, patched) = e
        .call(
            Method::PATCH,
            &format!("/v1/webhook_policies/{oid}"),
            Some(json!({"disabled": true, "jwt_audience": "x"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(patched["disabled"], true);
    assert_eq!(patched["jwt_audience"], "x");
    assert!(patched.get("public_key_pem").is_none());
    let (_, dis) = e
        .call(Method::GET, "/v1/webhook_policies/disabled", None)
        .await;
    assert_eq!(dis.as_array().unwrap().len(), 1);
    let (s, _) = e
        .call(Method::DELETE, &format!("/v1/webhook_policies/{oid}"), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        e.call(Method::GET, &format!("/v1/webhook_policies/{oid}"), None)
            .await
            .0,
        404
    );

    let data = &claims["data"];
    assert_eq!(data["event"], "webhook.verify");
    assert_eq!(data["webhook_id"], hook_id);
    assert_eq!(data["name"], "request.create");
    // the message names the person who created the webhook
    let admin = e.emu.account("wdc").unwrap().admin_person_id;
    assert_eq!(data["person_nodeID"], admin);
    assert_eq!(
        data["person_id"],
        e.emu.records.get(&admin).unwrap()["_seq"]
    );
    assert_eq!(data["person_name"], "Emulator Admin");
    // the callback carries a code and when it expires
    let cb_url = url::Url::parse(data["payload"]["callback"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = cb_url.query_pairs().into_owned().collect();
    assert_eq!(q["code"].len(), 32);
    let expires_at: i64 = q["expires_at"].parse().unwrap();
    assert!(expires_at > chrono::Utc::now().timestamp());
    assert_eq!(
        cb_url.path(),
        format!("/accounts/wdc/webhooks/{hook_id}/verify")
    );

    // no events before the callback is fetched
    e.create(
        "Request",
        json!({"subject": "before verification", "status": "assigned"}),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rcv
        .all()
        .iter()
        .all(|c| unverified_message(&c.body)["event"] != "request.create"));
    // a wrong code is refused
    let cb = data["payload"]["callback"].as_str().unwrap();
    let wrong = cb.split("code=").next().unwrap().to_string() + "code=bad";
    assert_eq!(e.http.get(wrong).send().await.unwrap().status(), 422);
    assert_eq!(get_callback(&e.http, data).await, 200);
    let (_, hook_now) = e
        .call(Method::GET, &format!("/v1/webhooks/{hook_id}"), None)
        .await;
    assert_eq!(hook_now["verified"], true);

    // now a record creation is delivered, signed, with the message keys
    let req = e.create(
        "Request",
        json!({"subject": "after verification", "status": "assigned", "source": "ferry", "sourceID": "42"}),
    );
    let req_seq = req["_seq"].clone();
    let got = rcv.wait_for(1, event_is("request.create")).await;
    let claims = verify_es256(&got[0].body, &pem, Some("ferry"));
    let m = &claims["data"];
    assert_eq!(m["object_id"], req["_seq"]);
    assert_eq!(m["object_nodeID"], req["id"]);
    assert_eq!(m["account"], format!("{}/accounts/wdc", e.base));
    assert_eq!(m["webhook_nodeID"], hook["nodeID"]);
    assert_eq!(m["payload"]["sourceID"], "42");
    assert_eq!(m["payload"]["source"], "ferry");
    assert_eq!(m["payload"]["status"], "assigned");
    assert!(m["payload"]["audit_line_id"].is_u64());
    assert!(m["payload"]["audit_line_nodeID"].is_string());
    assert_eq!(m["instance_name"], "Xurrent Emulator");
    let _ = req_seq;
    // every delivery is recorded
    let recorded = e
        .deliveries(&format!("?webhook={hook_id}&event=request.create"))
        .await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["response_status"], 200);
    assert_eq!(recorded[0]["success"], true);
    assert_eq!(recorded[0]["message"]["object_id"], req["_seq"]);
}

#[tokio::test]
async fn status_team_and_note_events() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    for event in [
        "request.create",
        "request.update",
        "request.status-changed",
        "request.team-changed",
        "request.note-added",
    ] {
        let (s, _) = e
            .call(
                Method::POST,
                "/v1/webhooks",
                Some(json!({"event": event, "uri": format!("{}/{event}", rcv.base)})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let verifies = rcv.wait_for(5, event_is("webhook.verify")).await;
    for v in &verifies {
        assert_eq!(get_callback(&e.http, &v.body).await, 200);
    }
    // all changes through GraphQL mutations
    let team = e
        .gql(r#"mutation { teamCreate(input: {name: "Ops"}) { errors { message } team { id } } }"#)
        .await["teamCreate"]["team"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // no status given: the request gets Xurrent's default status
    let created = e
        .gql(r#"mutation { requestCreate(input: {subject: "s"}) { request { id status } } }"#)
        .await;
    assert_eq!(created["requestCreate"]["request"]["status"], "assigned");
    let req = created["requestCreate"]["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let req_seq = e.emu.records.get(&req).unwrap()["_seq"].clone();
    let team_seq = e.emu.records.get(&team).unwrap()["_seq"].clone();
    let upd = e
        .gql(&format!(
            r#"mutation {{ requestUpdate(input: {{id: "{req}", status: in_progress, teamId: "{team}"}}) {{ errors {{ message }} request {{ id }} }} }}"#
        ))
        .await;
    assert!(upd["requestUpdate"]["errors"].is_null(), "{upd}");
    // request.create and request.update carry the attributes that are set
    let c = rcv.wait_for(1, event_is("request.create")).await;
    let p = &c[0].body["payload"];
    assert_eq!(p["status"], "assigned");
    assert!(
        p.get("team").is_none() && p.get("previous_status").is_none(),
        "{p}"
    );
    assert!(p["audit_line_nodeID"].is_string());
    let u = rcv.wait_for(1, event_is("request.update")).await;
    let p = &u[0].body["payload"];
    assert_eq!(p["status"], "in_progress");
    assert_eq!(p["team"]["name"], "Ops");
    assert!(p.get("previous_status").is_none(), "{p}");
    assert_ne!(p["audit_line_id"], c[0].body["payload"]["audit_line_id"]);
    let s = rcv.wait_for(1, event_is("request.status-changed")).await;
    assert_eq!(s[0].body["payload"]["status"], "in_progress");
    assert_eq!(s[0].body["payload"]["previous_status"], "assigned");
    assert_eq!(s[0].body["object_id"], req_seq);
    let t = rcv.wait_for(1, event_is("request.team-changed")).await;
    // the team object as Xurrent sends it: no empty sourceID, no disabled: false
    assert_eq!(
        t[0].body["payload"]["team"],
        json!({"id": team_seq, "nodeID": team, "name": "Ops",
               "account": {"id": "wdc", "name": "wdc"}})
    );
    // the other attributes that are set, and the audit line of the change
    assert_eq!(t[0].body["payload"]["status"], "in_progress");
    assert!(t[0].body["payload"]["audit_line_id"].is_u64());
    assert_eq!(
        t[0].body["payload"]["audit_line_id"],
        s[0].body["payload"]["audit_line_id"]
    );
    let note = e
        .gql(&format!(
            r#"mutation {{ noteCreate(input: {{ownerId: "{req}", text: "hello"}}) {{ errors {{ message }} note {{ id }} }} }}"#
        ))
        .await;
    let note_id = note["noteCreate"]["note"]["id"].clone();
    assert!(note_id.is_string(), "{note}");
    let n = rcv.wait_for(1, event_is("request.note-added")).await;
    assert_eq!(n[0].body["object_id"], req_seq);
    assert_eq!(n[0].body["payload"]["note_nodeID"], note_id);
    // the Link header's related entry points at the note
    let note_seq = e.emu.records.get(note_id.as_str().unwrap()).unwrap()["_seq"].clone();
    let link = n[0].headers["link"].to_str().unwrap();
    assert!(
        link.contains(&format!(
            "<{}/v1/requests/{req_seq}/notes/{note_seq}>; rel=\"related\"",
            e.base
        )),
        "{link}"
    );
    assert!(link.contains(&format!(
        "<{}/v1/requests/{req_seq}>; rel=\"resource\"",
        e.base
    )));
    assert_eq!(n[0].body["person_name"], "Emulator Admin");
    // unsigned bodies are plain JSON
    assert!(n[0].body.get("jwt").is_none());
    // a recorded delivery can be re-sent; the copy names its origin
    let recs = e.deliveries("?event=request.note-added").await;
    assert_eq!(recs.len(), 1);
    let r = e
        .http
        .post(e.url(&format!("/_emulator/deliveries/{}/resend", recs[0]["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let again = rcv.wait_for(2, event_is("request.note-added")).await;
    assert_eq!(
        again[1].headers["x-xurrent-delivery-origin"],
        recs[0]["delivery"].as_str().unwrap()
    );
    assert_ne!(
        again[1].headers["x-xurrent-delivery"],
        recs[0]["delivery"].as_str().unwrap()
    );
}

#[tokio::test]
async fn retries_and_auto_disable() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    e.settings(json!({"delivery_backoff_ms": 1})).await;
    let (_, hook) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"event": "team.create", "uri": format!("{}/x", rcv.base)})),
        )
        .await;
    let id = hook["id"].as_u64().unwrap();
    let v = rcv.wait_for(1, event_is("webhook.verify")).await;
    assert_eq!(get_callback(&e.http, &v[0].body).await, 200);
    *rcv.status.lock() = 500;

    // first event: 1 attempt + 10 retries, all failing; still enabled (11 < 20)
    e.create("Team", json!({"name": "one"}));
    let got = rcv.wait_for(11, event_is("team.create")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rcv.all().len(), 1 + 11, "no 12th attempt: {}", got.len());
    let recs = e
        .deliveries(&format!("?webhook={id}&event=team.create"))
        .await;
    let attempts: Vec<u64> = recs
        .iter()
        .map(|d| d["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, (1..=11).collect::<Vec<_>>());
    assert!(recs
        .iter()
        .all(|d| d["response_status"] == 500 && d["success"] == false));
    // all retries share the delivery id
    assert!(recs.iter().all(|d| d["delivery"] == recs[0]["delivery"]));
    // growing intervals
    let t = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(recs[i]["started_at"].as_str().unwrap()).unwrap()
    };
    assert!((t(10) - t(9)) > (t(2) - t(1)));
    let (_, h) = e
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(h["disabled"], false);
    assert_eq!(h["last_error"], "500 Internal Server Error");

    // second event: disabled at the 20th consecutive failure
    e.create("Team", json!({"name": "two"}));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, h) = e
            .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
            .await;
        if h["disabled"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "webhook not disabled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recs = e
        .deliveries(&format!("?webhook={id}&event=team.create"))
        .await;
    assert_eq!(recs.len(), 20);
    // disabled webhooks receive nothing
    *rcv.status.lock() = 200;
    let before = rcv.all().len();
    e.create("Team", json!({"name": "three"}));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rcv.all().len(), before);
    // re-enabled: delivered again, with a fresh failure count
    let (s, _) = e
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(s, 200);
    *rcv.status.lock() = 500;
    let four = e.create("Team", json!({"name": "four"}));
    let seq = four["_seq"].clone();
    rcv.wait_for(1, move |m| {
        m["event"] == "team.create" && m["object_id"] == seq
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, h) = e
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(h["disabled"], false);
}

#[tokio::test]
async fn oidc_discovery_verifies_a_delivery() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    let (_, policy) = e
        .call(
            Method::POST,
            "/v1/webhook_policies",
            Some(json!({"jwt_alg": "es256"})),
        )
        .await;
    let (_, hook) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(
                json!({"event": "person.create", "uri": format!("{}/oidc", rcv.base),
                        "webhook_policy_id": policy["id"], "openid_connect_discovery": true}),
            ),
        )
        .await;
    assert_eq!(hook["openid_connect_discovery"], true);
    let got = rcv.wait_for(1, event_is("webhook.verify")).await;
    let jwt = got[0].body["jwt"].as_str().unwrap();
    let header = decode_header(jwt).unwrap();
    let iss = unverified_claims(jwt)["iss"].as_str().unwrap().to_string();
    // the issuer ends in the policy's generated name
    assert_eq!(
        iss,
        format!(
            "{}/accounts/wdc/webhook_policies/{}",
            e.base,
            policy["name"].as_str().unwrap()
        )
    );
    // through discovery the header names the key
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(
        header.kid.as_deref(),
        hook["webhook_policy"]["nodeID"].as_str()
    );
    // discovery → jwks → key by kid
    let conf: Value = e
        .http
        .get(format!("{iss}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conf["issuer"], iss);
    let jwks_uri = conf["jwks_uri"].as_str().unwrap();
    assert!(jwks_uri.starts_with(&iss));
    let jwks: Value = e
        .http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = header.kid.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("key for kid");
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "ES256");
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.set_issuer(&[iss.as_str()]);
    let claims = decode::<Value>(jwt, &key, &v).unwrap().claims;
    assert_eq!(claims["data"]["event"], "webhook.verify");
    // the policy sets no expiry and no audience: no exp, no aud
    assert!(claims.get("exp").is_none(), "{claims}");
    assert!(claims.get("aud").is_none(), "{claims}");
    assert_eq!(claims["sub"], hook["id"].to_string());
    // the account-level JWKS lists it too; unknown policies are 404
    let all: Value = e
        .http
        .get(e.url("/accounts/wdc/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid.as_str()));
    // the numeric id does not name a policy's issuer, an unknown name neither
    for unknown in [policy["id"].to_string(), "0".repeat(56)] {
        let r = e
            .http
            .get(e.url(&format!("/accounts/wdc/webhook_policies/{unknown}/jwks")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}

/// The decoded JOSE header of a compact JWS, as JSON.
fn jwt_header(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

fn unverified_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn oauth_grants_and_errors() {
    let e = Emu::start().await;
    let token_url = e.url("/token");
    let post = |form: Vec<(&'static str, String)>| {
        let http = e.http.clone();
        let url = token_url.clone();
        async move {
            let r = http.post(url).form(&form).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let cc = e
        .control(
            "/_emulator/oauth_applications",
            json!({"account": "wdc", "scopes": ["webhook:CRUD"]}),
        )
        .await;
    let id = cc["client_id"].as_str().unwrap().to_string();
    let secret = cc["client_secret"].as_str().unwrap().to_string();

    // errors
    let (s, b) = post(vec![("client_id", id.clone())]).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_request"));
    let (s, b) = post(vec![("grant_type", "password".into())]).await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (400, "unsupported_grant_type")
    );
    let (s, b) = post(vec![
        ("client_id", id.clone()),
        ("client_secret", "wrong".into()),
        ("grant_type", "client_credentials".into()),
    ])
    .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (401, "invalid_client"));
    let (s, b) = post(vec![
        ("client_id", id.clone()),
        ("client_secret", secret.clone()),
        ("grant_type", "authorization_code".into()),
        ("code", "bogus".into()),
    ])
    .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"));

    // client credentials (form order as the connector sends it)
    let (s, b) = post(vec![
        ("client_id", id.clone()),
        ("client_secret", secret.clone()),
        ("grant_type", "client_credentials".into()),
    ])
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["token_type"], "bearer");
    assert_eq!(b["expires_in"], 3600);
    let access = b["access_token"].as_str().unwrap().to_string();
    let intro: Value = e
        .http
        .get(e.url("/introspect"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["account"], "wdc");
    assert_eq!(intro["scopes"], json!(["webhook:CRUD"]));
    assert!(intro["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    // the token works on the account's APIs
    let r = e
        .http
        .get(e.url("/v1/webhooks"))
        .bearer_auth(&access)
        .header("X-Xurrent-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = e
        .http
        .get(e.url("/introspect"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // HTTP Basic client authentication works too
    let r = e
        .http
        .post(e.url("/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // authorization code + refresh token
    let ac = e
        .control(
            "/_emulator/oauth_applications",
            json!({"account": "wdc", "grant_type": "authorization_code",
                   "redirect_uris": ["http://127.0.0.1:9/cb"]}),
        )
        .await;
    let ac_id = ac["client_id"].as_str().unwrap().to_string();
    let ac_secret = ac["client_secret"].as_str().unwrap().to_string();
    // a client-credentials grant with an authorization-code app is refused
    let (s, b) = post(vec![
        ("client_id", ac_id.clone()),
        ("client_secret", ac_secret.clone()),
        ("grant_type", "client_credentials".into()),
    ])
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (400, "unauthorized_client")
    );
    let r = e
        .http
        .get(e.url(&format!(
            "/authorize?response_type=code&client_id={ac_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=xyz"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    let code = q["code"].clone();
    let exchange = vec![
        ("client_id", ac_id.clone()),
        ("client_secret", ac_secret.clone()),
        ("grant_type", "authorization_code".into()),
        ("code", code.clone()),
        ("redirect_uri", "http://127.0.0.1:9/cb".into()),
    ];
    let (s, b) = post(exchange.clone()).await;
    assert_eq!(s, 200, "{b}");
    let refresh = b["refresh_token"].as_str().unwrap().to_string();
    assert!(b["access_token"].is_string());
    // codes are single use
    let (s, b) = post(exchange).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"));
    let (s, b) = post(vec![
        ("client_id", ac_id.clone()),
        ("client_secret", ac_secret.clone()),
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
    ])
    .await;
    assert_eq!(s, 200);
    assert_ne!(b["refresh_token"], json!(refresh));
    let (s, b) = post(vec![
        ("client_id", ac_id),
        ("client_secret", ac_secret),
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
    ])
    .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"));

    // an expired personal access token is refused
    let pat = e
        .control(
            "/_emulator/tokens",
            json!({"account": "wdc", "expires_in": 0}),
        )
        .await;
    let r = e
        .http
        .get(e.url("/v1/webhooks"))
        .bearer_auth(pat["token"].as_str().unwrap())
        .header("X-Xurrent-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn app_install_secrets_and_automation_rule() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;

    // provider side: policy + secrets webhook + installation webhook (as the connector does)
    let (_, policy) = e
        .call(
            Method::POST,
            "/v1/webhook_policies",
            Some(json!({"jwt_alg": "es256"})),
        )
        .await;
    let provider_pem = policy["public_key_pem"].as_str().unwrap().to_string();
    for (event, path) in [
        ("app_instance.secrets-update", "secrets"),
        ("app_instance.create", "installed"),
        ("app_instance.update", "updated"),
        ("app_instance.delete", "removed"),
    ] {
        let (s, _) = e
            .call(
                Method::POST,
                "/v1/webhooks",
                Some(
                    json!({"event": event, "uri": format!("{}/{path}", rcv.base),
                    "webhook_policy_id": policy["id"], "app_offering_references": ["phone"]}),
                ),
            )
            .await;
        assert_eq!(s, 201);
    }
    for v in rcv.wait_for(4, event_is("webhook.verify")).await {
        assert_eq!(
            get_callback(&e.http, &unverified_message(&v.body)).await,
            200
        );
    }
    let offering = e
        .control(
            "/_emulator/apps/offerings",
            json!({"offering": {
                "reference": "phone", "name": "Phone",
                "webhookUriTemplate": format!("{}/automation?customer_account_id={{account}}", rcv.base),
                "policyJwtAlg": "es256", "policyJwtAudience": "phone-app",
                "scopes": [{"actions": ["read"], "effect": "allow", "grantType": "client_credentials"}]},
              "automation_rules": [{"name": "Notify", "trigger": "request.create",
                                    "expressions": [{"name": "foo", "value": "'from the rule'"},
                                                    {"name": "subject", "value": "request.subject"},
                                                    {"name": "requester", "value": "request.requested_by.name"},
                                                    {"name": "n", "value": "42"}]}]}),
        )
        .await;
    assert!(offering["nodeID"].is_string());

    // install for customer "widget"
    let inst = e
        .control(
            "/_emulator/apps/install",
            json!({"reference": "phone", "customer": "widget", "secrets": {"password": "s3cret"}}),
        )
        .await;
    assert_eq!(inst["secrets_update_webhooks"], 1);
    // installing twice is a conflict
    let r = e
        .http
        .post(e.url("/_emulator/apps/install"))
        .json(&json!({"reference": "phone", "customer": "widget"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let secrets = rcv
        .wait_for(1, event_is("app_instance.secrets-update"))
        .await;
    assert!(secrets[0].uri.starts_with("/secrets"));
    let claims = verify_es256(&secrets[0].body, &provider_pem, None);
    let p = &claims["data"]["payload"];
    assert_eq!(p["customer_account_id"], "widget");
    assert_eq!(p["app_offering"]["reference"], "phone");
    assert_eq!(p["secrets"]["password"], "s3cret");
    assert_eq!(p["policy"]["algorithm"], "ES256");
    assert_eq!(p["policy"]["audience"], "phone-app");
    let customer_pem = p["policy"]["public_key"].as_str().unwrap().to_string();
    // no custom issuer: the receiver falls back to the customer account's URL, as Xurrent
    // receivers do (https://<customer_account_id>.<domain>)
    assert!(p["policy"].get("issuer").is_none(), "{p}");
    let customer_iss = format!(
        "{}/accounts/{}",
        e.base,
        p["customer_account_id"].as_str().unwrap()
    );
    let client_id = p["application"]["client_id"].as_str().unwrap().to_string();
    let client_secret = p["application"]["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(p["authorization_application"]["client_id"].is_string());

    let created = rcv.wait_for(1, event_is("app_instance.create")).await;
    let c = verify_es256(&created[0].body, &provider_pem, None);
    assert_eq!(c["data"]["payload"]["customer_account_id"], "widget");
    assert_eq!(c["data"]["payload"]["enabled_by_customer"], true);
    assert_eq!(
        c["data"]["payload"]["customer_representative"]["account"]["id"],
        "widget"
    );
    assert_eq!(c["data"]["object_nodeID"], inst["app_instance"]["nodeID"]);

    // the instance is a record of the provider account, visible through GraphQL
    let data = e
        .gql("{ appInstances { nodes { id suspended customerAccount { id url } customerRepresentative { name } appOffering { reference } } } }")
        .await;
    let node = &data["appInstances"]["nodes"][0];
    assert_eq!(node["id"], inst["app_instance"]["nodeID"]);
    assert_eq!(node["customerAccount"]["id"], "widget");
    assert_eq!(node["customerAccount"]["url"], customer_iss);
    assert_eq!(node["customerRepresentative"]["name"], "Emulator Admin");
    assert_eq!(node["appOffering"]["reference"], "phone");

    // the customer credentials give a token for the customer account
    let tok: Value = e
        .http
        .post(e.url("/token"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customer_token = tok["access_token"].as_str().unwrap().to_string();
    let intro: Value = e
        .http
        .get(e.url("/introspect"))
        .bearer_auth(&customer_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["account"], "widget");
    assert_eq!(intro["scopes"], json!(["read"]));

    // the install created the offering's rule as an automation rule of the customer account
    let rules = e.emu.records.list("widget", "AutomationRule");
    assert_eq!(rules.len(), 1);
    let rule_id = rules[0]["id"].as_str().unwrap().to_string();
    let rule_seq = rules[0]["_seq"].clone();

    // automation rule from the customer account, signed with the customer policy; verified
    // with the account URL as issuer
    let sent = e
        .control(
            "/_emulator/apps/automation_rule",
            json!({"reference": "phone", "customer": "widget", "payload": {"foo": "from the AR", "bar": 42}}),
        )
        .await;
    assert_eq!(sent["automation_rule"]["nodeID"], rule_id.as_str());
    let ar = rcv.wait_for(1, event_is("automation_rule")).await;
    assert_eq!(ar[0].uri, "/automation?customer_account_id=widget");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["phone-app"]);
    v.set_issuer(&[customer_iss.as_str()]);
    v.set_required_spec_claims(&["iss", "sub", "iat", "nbf"]);
    let claims = decode::<Value>(
        ar[0].body["jwt"].as_str().unwrap(),
        &DecodingKey::from_ec_pem(customer_pem.as_bytes()).unwrap(),
        &v,
    )
    .expect("automation rule delivery verifies with the customer account URL as issuer")
    .claims;
    assert_eq!(claims["data"]["account_id"], "widget");
    assert_eq!(
        claims["data"]["payload"],
        json!({"foo": "from the AR", "bar": 42})
    );
    // the message is about the automation rule
    assert_eq!(claims["data"]["object_nodeID"], rule_id.as_str());
    assert_eq!(claims["data"]["object_id"], rule_seq);
    assert!(ar[0].headers["link"]
        .to_str()
        .unwrap()
        .starts_with(&format!(
            "<{}/accounts/widget/automation_rules/{rule_seq}>; rel=\"canonical\"",
            e.base
        )));
    // an object that is not a record of the customer account is refused, naming the field
    let r = e
        .http
        .post(e.url("/_emulator/apps/automation_rule"))
        .json(&json!({"reference": "phone", "customer": "widget", "object": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("object"));
    // the provider key does not verify customer deliveries
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    assert!(decode::<Value>(
        ar[0].body["jwt"].as_str().unwrap(),
        &DecodingKey::from_ec_pem(provider_pem.as_bytes()).unwrap(),
        &v
    )
    .is_err());

    // the offering's automation rule runs in the customer account on its trigger event,
    // here a request created through GraphQL with the customer's OAuth token
    let r = e
        .http
        .post(e.url("/graphql"))
        .bearer_auth(&customer_token)
        .header("X-Xurrent-Account", "widget")
        .json(&json!({"query": "mutation { requestCreate(input: {subject: \"Phone broken\"}) { request { id } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let rid = body["data"]["requestCreate"]["request"]["id"].clone();
    assert!(rid.is_string(), "{body}");
    let ar = rcv.wait_for(2, event_is("automation_rule")).await;
    let claims = verify_es256(&ar[1].body, &customer_pem, Some("phone-app"));
    // object and Link name the rule; the payload holds the rule's named expressions only,
    // evaluated on the request
    assert_eq!(claims["data"]["object_nodeID"], rule_id.as_str());
    assert_eq!(
        claims["data"]["payload"],
        json!({"foo": "from the rule", "subject": "Phone broken",
               "requester": null, "n": 42})
    );

    // update with new secrets → app_instance.update + secrets-update with only the secrets
    e.control(
        "/_emulator/apps/update",
        json!({"reference": "phone", "customer": "widget", "updated": true, "secrets": {"api_key": "k"}}),
    )
    .await;
    let upd = rcv.wait_for(1, event_is("app_instance.update")).await;
    assert_eq!(
        unverified_message(&upd[0].body)["payload"]["app_offering"]["updated"],
        true
    );
    let s2 = rcv
        .wait_for(2, event_is("app_instance.secrets-update"))
        .await;
    let second = unverified_message(&s2[1].body);
    assert_eq!(second["payload"]["secrets"]["api_key"], "k");
    assert!(second["payload"].get("application").is_none());

    // suspend → update event with suspended
    e.control(
        "/_emulator/apps/suspend",
        json!({"reference": "phone", "customer": "widget", "comment": "unpaid"}),
    )
    .await;
    let upd = rcv.wait_for(2, event_is("app_instance.update")).await;
    assert_eq!(
        unverified_message(&upd[1].body)["payload"]["suspended"],
        true
    );

    // uninstall → delete event, customer token revoked
    e.control(
        "/_emulator/apps/uninstall",
        json!({"reference": "phone", "customer": "widget"}),
    )
    .await;
    rcv.wait_for(1, event_is("app_instance.delete")).await;
    let r = e
        .http
        .get(e.url("/introspect"))
        .bearer_auth(&customer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .http
        .post(e.url("/_emulator/apps/automation_rule"))
        .json(&json!({"reference": "phone", "customer": "widget"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn control_api_info_seed_reset() {
    let e = Emu::start().await;
    let info: Value = e
        .http
        .get(e.url("/_emulator/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["account"], "wdc");
    assert_eq!(info["token"], DEFAULT_TOKEN);
    assert_eq!(info["oauth_token_url"], format!("{}/token", e.base));
    assert_eq!(info["rest_url"], format!("{}/v1", e.base));

    let yaml = "records:\n  Team:\n    - ref: ops\n      name: Ops\n  Request:\n    - subject: Printer\n      team: {$ref: ops}\n";
    let r = e
        .http
        .post(e.url("/_emulator/seed"))
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let summary: Value = r.json().await.unwrap();
    assert_eq!(summary["created"], 2);
    let reqs = e.emu.records.list("wdc", "Request");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["team"], summary["refs"]["ops"]);
    let r = e
        .http
        .post(e.url("/_emulator/seed"))
        .body("{\"records\": {\"NoSuchType\": []}}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let r = e
        .http
        .put(e.url("/_emulator/rate_limits"))
        .json(&json!({"enabled": true, "burst_requests": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(e.emu.rate_limits().burst_requests, 3);
    assert!(e.emu.rate_limits().enabled);

    let r = e.http.post(e.url("/_emulator/reset")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(e.emu.records.list("wdc", "Request").is_empty());
    assert!(!e.emu.rate_limits().enabled);
    // the admin token still works after a reset
    let (s, _) = e.call(reqwest::Method::GET, "/v1/webhooks", None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn rest_rate_limit_429() {
    let e = Emu::start().await;
    let r = e
        .http
        .put(e.url("/_emulator/rate_limits"))
        .json(&json!({"enabled": true, "requests_per_window": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for remaining in ["2", "1", "0"] {
        let r = e
            .req(reqwest::Method::GET, "/v1/webhooks")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(r.headers()["x-ratelimit-remaining"], remaining);
    }
    let r = e
        .req(reqwest::Method::GET, "/v1/webhook_policies")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
}

#[tokio::test]
async fn graphql_and_rest_share_objects() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    let (_, hook) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"event": "request.create", "uri": format!("{}/gql", rcv.base)})),
        )
        .await;
    let v = rcv.wait_for(1, event_is("webhook.verify")).await;
    assert_eq!(get_callback(&e.http, &v[0].body).await, 200);
    // the REST webhook is visible through GraphQL
    let (s, body) = e
        .call(
            Method::POST,
            "/graphql",
            Some(json!({"query": "{ webhooks { nodes { id event uri name disabled } } }"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let nodes = &body["data"]["webhooks"]["nodes"];
    assert_eq!(nodes[0]["id"], hook["nodeID"]);
    assert_eq!(nodes[0]["event"], "request_create");
    assert_eq!(nodes[0]["name"], "request.create");
    // a GraphQL mutation fires the webhook
    let (s, body) = e
        .call(
            Method::POST,
            "/graphql",
            Some(json!({"query": "mutation { requestCreate(input: {subject: \"From GraphQL\"}) { errors { message } request { id } } }"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let rid = body["data"]["requestCreate"]["request"]["id"].clone();
    assert!(rid.is_string(), "{body}");
    let got = rcv.wait_for(1, event_is("request.create")).await;
    assert_eq!(got[0].body["object_nodeID"], rid);
    assert_eq!(got[0].body["person_name"], "Emulator Admin");
    // a GraphQL-created webhook policy gets a key and signs deliveries
    let (s, body) = e
        .call(
            Method::POST,
            "/graphql",
            Some(json!({"query": "mutation { webhookPolicyCreate(input: {jwtAlg: es256, jwtAudience: \"g\"}) { errors { message } webhookPolicy { id jwtAlg name publicKeyPem } } }"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let gql_policy = body["data"]["webhookPolicyCreate"]["webhookPolicy"].clone();
    let pid = gql_policy["id"].as_str().unwrap().to_string();
    // GraphQL-created policies get a generated name of the real format too
    assert_eq!(gql_policy["name"].as_str().unwrap().len(), 56, "{body}");
    let (s, body) = e
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{}", hook["id"]),
            Some(json!({"webhook_policy_id": pid})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    e.create("Request", json!({"subject": "signed"}));
    let got = rcv.wait_for(2, event_is("request.create")).await;
    let jwt = got[1].body["jwt"]
        .as_str()
        .expect("signed after policy set");
    assert_eq!(unverified_claims(jwt)["aud"], "g");
    assert_eq!(unverified_claims(jwt)["sub"], hook["id"].to_string());
    let key =
        DecodingKey::from_ec_pem(gql_policy["publicKeyPem"].as_str().unwrap().as_bytes()).unwrap();
    let mut val = Validation::new(Algorithm::ES256);
    val.set_audience(&["g"]);
    val.required_spec_claims.clear();
    assert!(decode::<Value>(jwt, &key, &val).is_ok());
}

#[tokio::test]
async fn verification_callback_by_get_or_post_and_expiry() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    let (s, hook) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"event": "team.create", "uri": format!("{}/a", rcv.base)})),
        )
        .await;
    assert_eq!(s, 201);
    let v = rcv.wait_for(1, event_is("webhook.verify")).await;
    let msg = &v[0].body;
    // plain body: the message itself, naming the creator
    assert_eq!(msg["person_name"], "Emulator Admin");
    assert!(msg["person_id"].is_u64());
    assert!(msg["person_nodeID"].is_string());
    let cb = msg["payload"]["callback"].as_str().unwrap();
    assert!(cb.contains("code=") && cb.contains("expires_at="), "{cb}");
    // the callback accepts POST as well as GET
    let r = e.http.post(cb).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, got) = e
        .call(Method::GET, &format!("/v1/webhooks/{}", hook["id"]), None)
        .await;
    assert_eq!(got["verified"], true);
    e.create("Team", json!({"name": "after POST verification"}));
    rcv.wait_for(1, event_is("team.create")).await;

    // an expired callback is refused and the webhook stays unverified
    e.settings(json!({"verification_expires_in": 0})).await;
    let (_, late) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"event": "team.update", "uri": format!("{}/b", rcv.base)})),
        )
        .await;
    let v = rcv
        .wait_for(1, |m| {
            m["event"] == "webhook.verify" && m["name"] == "team.update"
        })
        .await;
    let cb = v[0].body["payload"]["callback"]
        .as_str()
        .unwrap()
        .to_string();
    let expires_at: i64 = url::Url::parse(&cb)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "expires_at")
        .unwrap()
        .1
        .parse()
        .unwrap();
    while chrono::Utc::now().timestamp() <= expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = e.http.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("expired"));
    let (_, got) = e
        .call(Method::GET, &format!("/v1/webhooks/{}", late["id"]), None)
        .await;
    assert_eq!(got["verified"], false);
    // an unknown webhook id is 404
    let r = e
        .http
        .get(e.url("/accounts/wdc/webhooks/999/verify?code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc6749() {
    let e = Emu::start().await;
    let app = e
        .control(
            "/_emulator/oauth_applications",
            json!({"account": "wdc", "scopes": ["webhook:CRUD", "request:R"]}),
        )
        .await;
    let id = app["client_id"].as_str().unwrap().to_string();
    let secret = app["client_secret"].as_str().unwrap().to_string();
    let post = |form: Vec<(&'static str, String)>, basic: Option<(String, String)>| {
        let mut r = e.http.post(e.url("/token")).form(&form);
        if let Some((u, p)) = basic {
            r = r.basic_auth(u, Some(p));
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body: Value = r.json().await.unwrap();
            (status, headers, body)
        }
    };
    let cc = || ("grant_type", "client_credentials".to_string());
    // every error: {error, error_description}, not cacheable
    let cases = [
        (
            vec![("client_id", id.clone())],
            None,
            400,
            "invalid_request",
        ),
        (
            vec![("grant_type", "password".into())],
            None,
            400,
            "unsupported_grant_type",
        ),
        (vec![cc()], None, 401, "invalid_client"),
        (
            vec![
                cc(),
                ("client_id", id.clone()),
                ("client_secret", "wrong".into()),
            ],
            None,
            401,
            "invalid_client",
        ),
        (
            vec![cc()],
            Some((id.clone(), "wrong".to_string())),
            401,
            "invalid_client",
        ),
        (
            vec![
                cc(),
                ("client_id", id.clone()),
                ("client_secret", secret.clone()),
                ("scope", "webhook:CRUD person:CRUD".into()),
            ],
            None,
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", "nope".into()),
                ("client_id", id.clone()),
                ("client_secret", secret.clone()),
            ],
            None,
            400,
            "invalid_grant",
        ),
    ];
    for (form, basic, status, error) in cases {
        let used_basic = basic.is_some();
        let (s, h, b) = post(form.clone(), basic).await;
        assert_eq!(s, status, "{form:?}: {b}");
        assert_eq!(b["error"], error, "{form:?}");
        assert!(b["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["pragma"], "no-cache");
        // RFC 6749 §5.2: a client that authenticated with HTTP Basic is told the scheme
        if used_basic {
            assert!(h["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic "));
        }
    }
    // a granted subset of scopes is fine, with Basic authentication too
    let (s, _, b) = post(
        vec![cc(), ("scope", "request:R".into())],
        Some((id.clone(), secret.clone())),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "bearer");
}

#[tokio::test]
async fn app_with_openid_connect_discovery_sends_its_issuer() {
    use reqwest::Method;
    let e = Emu::start().await;
    let rcv = Receiver::start().await;
    let (_, policy) = e
        .call(
            Method::POST,
            "/v1/webhook_policies",
            Some(json!({"jwt_alg": "es256"})),
        )
        .await;
    let (s, _) = e
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"event": "app_instance.secrets-update", "uri": format!("{}/secrets", rcv.base),
                        "webhook_policy_id": policy["id"]})),
        )
        .await;
    assert_eq!(s, 201);
    let v = rcv.wait_for(1, event_is("webhook.verify")).await;
    assert_eq!(
        get_callback(&e.http, &unverified_message(&v[0].body)).await,
        200
    );
    e.control(
        "/_emulator/apps/offerings",
        json!({"offering": {"reference": "disco", "name": "Disco",
            "webhookUriTemplate": format!("{}/ar?customer_account_id={{account}}", rcv.base),
            "policyJwtAlg": "es256", "openidConnectDiscovery": true},
          "automation_rules": [{"name": "On team", "trigger": "team.create",
                                "expressions": [{"name": "team", "value": "team.name"}]}]}),
    )
    .await;
    let inst = e
        .control(
            "/_emulator/apps/install",
            json!({"reference": "disco", "customer": "acme"}),
        )
        .await;
    let secrets = rcv
        .wait_for(1, event_is("app_instance.secrets-update"))
        .await;
    let p = unverified_message(&secrets[0].body)["payload"].clone();
    // not the account URL, so the issuer is sent: the policy's OIDC issuer, ending in its name
    let iss = p["policy"]["issuer"]
        .as_str()
        .expect("custom issuer sent")
        .to_string();
    let name = inst["policy"]["name"].as_str().unwrap();
    assert_eq!(name.len(), 56);
    assert_eq!(
        iss,
        format!("{}/accounts/acme/webhook_policies/{name}", e.base)
    );
    // a rule delivery from the customer account carries kid and verifies through discovery
    let admin = e.emu.account("acme").unwrap();
    e.emu.create_record(
        "acme",
        "Team",
        json!({"name": "Night shift"}).as_object().unwrap().clone(),
        Some(admin.admin_person_id),
    );
    let ar = rcv.wait_for(1, event_is("automation_rule")).await;
    let jwt = ar[0].body["jwt"].as_str().unwrap();
    let kid = decode_header(jwt)
        .unwrap()
        .kid
        .expect("kid through discovery");
    let conf: Value = e
        .http
        .get(format!("{iss}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = e
        .http
        .get(conf["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("key by kid")
        .clone();
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut val = Validation::new(Algorithm::ES256);
    val.validate_aud = false;
    val.set_issuer(&[iss.as_str()]);
    val.set_required_spec_claims(&["iss", "sub"]);
    let claims = decode::<Value>(jwt, &key, &val).unwrap().claims;
    assert_eq!(claims["data"]["payload"], json!({"team": "Night shift"}));
}
