//! GraphQL API tests: a real emulator on 127.0.0.1:0 driven with plain reqwest + JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_emulator::{Emulator, EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use serde_json::{json, Value};

struct Server {
    emu: Arc<Emulator>,
    url: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(limits: RateLimits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let config = EmulatorConfig {
        listen: addr,
        rate_limits: limits,
        ..Default::default()
    };
    let emu = ferry_emulator::build(config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let e = emu.clone();
    tokio::spawn(async move {
        ferry_emulator::serve(e, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server {
        emu,
        url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _stop: tx,
    }
}

impl Server {
    async fn post(&self, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/graphql", self.url))
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        let resp = self
            .post(json!({ "query": query, "variables": variables }))
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Query that must succeed; returns `data`.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let v = self.gql(query, variables).await;
        assert!(v.get("errors").is_none(), "unexpected errors: {v}");
        v["data"].clone()
    }
}

const REQ_PAGE: &str = "query($after: String, $first: Int) { requests(first: $first, after: $after) { totalCount nodes { id subject } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

fn seed_requests(emu: &Emulator, n: usize) {
    let recs: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "subject": format!("Request {i:04}"),
                "status": if i % 3 == 0 { "assigned" } else if i % 3 == 1 { "in_progress" } else { "completed" },
                "urgent": i % 10 == 0,
                "plannedEffort": i,
                "requestId": format!("R-{i}"),
                "createdAt": format!("2026-01-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60),
            })
        })
        .collect();
    emu.seed_from_value("wdc", &json!({ "records": { "Request": recs } }))
        .unwrap();
}

#[tokio::test]
async fn me_account_and_empty_connection() {
    let s = start(RateLimits::disabled()).await;
    let d = s
        .data(
            "{ me { id name } account { id name } requests(first: 5) { totalCount nodes { id } pageInfo { hasNextPage endCursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["me"]["name"], "Emulator Admin");
    assert_eq!(d["account"]["id"], "wdc");
    assert_eq!(d["requests"]["totalCount"], 0);
    assert_eq!(d["requests"]["nodes"], json!([]));
    assert_eq!(d["requests"]["pageInfo"]["hasNextPage"], false);
    assert!(d["requests"]["pageInfo"]["endCursor"].is_null());
}

#[tokio::test]
async fn pagination_across_1000_records() {
    let s = start(RateLimits::disabled()).await;
    seed_requests(&s.emu, 1000);
    let mut after: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    let mut subjects = Vec::new();
    let mut pages = 0;
    loop {
        let d = s
            .data(REQ_PAGE, json!({ "after": after, "first": 100 }))
            .await;
        let conn = &d["requests"];
        assert_eq!(conn["totalCount"], 1000);
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], pages > 0);
        for n in conn["nodes"].as_array().unwrap() {
            assert!(seen.insert(n["id"].as_str().unwrap().to_string()));
            subjects.push(n["subject"].as_str().unwrap().to_string());
        }
        pages += 1;
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_string());
        assert!(pages < 20, "pagination does not terminate");
    }
    assert_eq!(pages, 10);
    assert_eq!(seen.len(), 1000);
    assert_eq!(subjects[0], "Request 0000");
    assert_eq!(subjects[999], "Request 0999");

    // Default page size is 100; edges carry cursors usable with `before`/`last`.
    let d = s
        .data(
            "{ requests { nodes { id } edges { cursor node { subject } } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["requests"]["nodes"].as_array().unwrap().len(), 100);
    let c10 = d["requests"]["edges"][10]["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let d = s
        .data(
            "query($b: String) { requests(last: 3, before: $b) { nodes { subject } pageInfo { hasPreviousPage hasNextPage } } }",
            json!({ "b": c10 }),
        )
        .await;
    let subj: Vec<&str> = d["requests"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subj, ["Request 0007", "Request 0008", "Request 0009"]);
    assert_eq!(d["requests"]["pageInfo"]["hasPreviousPage"], true);

    // Page sizes outside 1..100 are GraphQL errors.
    for bad in [0, 101] {
        let v = s.gql(REQ_PAGE, json!({ "first": bad })).await;
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains("between 1 and 100"), "{msg}");
    }
}

/// Paging reuses the connection's ordered list between pages, yet a write between two pages is
/// seen by the next page exactly as if the list were rebuilt for it (cursors are offsets).
#[tokio::test]
async fn a_write_between_pages_is_seen_by_the_next_page() {
    const PAGE: &str = "query($after: String, $first: Int, $f: RequestFilter) { requests(first: $first, after: $after, filter: $f, order: {field: subject, direction: desc}) { totalCount nodes { id subject } pageInfo { hasNextPage endCursor } } }";
    let s = start(RateLimits::disabled()).await;
    seed_requests(&s.emu, 300);
    let filter = json!({ "status": { "values": ["assigned"] } });
    let page = |after: Option<String>, first: u32| {
        let (s, f) = (&s, filter.clone());
        async move {
            let d = s
                .data(PAGE, json!({ "after": after, "first": first, "f": f }))
                .await;
            d["requests"].clone()
        }
    };
    let subjects = |conn: &Value| -> Vec<String> {
        conn["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["subject"].as_str().unwrap().to_string())
            .collect()
    };
    let p1 = page(None, 30).await;
    assert_eq!(p1["totalCount"], 100);
    assert_eq!(subjects(&p1)[0], "Request 0297");
    let cursor = p1["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    // Unchanged: the next page continues the order.
    let p2 = page(Some(cursor.clone()), 30).await;
    assert_eq!(subjects(&p2)[0], "Request 0207");

    // Created: a matching record that sorts first shifts the list by one.
    let fields = json!({ "subject": "Request 9999", "status": "assigned" });
    let created = s
        .emu
        .create_record("wdc", "Request", fields.as_object().unwrap().clone(), None);
    let p2 = page(Some(cursor.clone()), 30).await;
    assert_eq!(p2["totalCount"], 101);
    assert_eq!(subjects(&p2)[0], "Request 0210");
    let all = page(None, 100).await;
    assert_eq!(subjects(&all)[0], "Request 9999");
    assert_eq!(subjects(&p2)[..], subjects(&all)[30..60]);

    // Updated so that it no longer matches: gone from the next page and the count.
    let id = created["id"].as_str().unwrap().to_string();
    let patch = json!({ "status": "completed" });
    s.emu
        .update_record(&id, patch.as_object().unwrap().clone(), None)
        .unwrap();
    let p2 = page(Some(cursor.clone()), 30).await;
    assert_eq!(p2["totalCount"], 100);
    assert_eq!(subjects(&p2)[0], "Request 0207");

    // Deleted: the first record of page 1 is gone, the list shifts back by one.
    let first_id = p1["nodes"][0]["id"].as_str().unwrap().to_string();
    s.emu.delete_record(&first_id, None).unwrap();
    let p2 = page(Some(cursor), 30).await;
    assert_eq!(p2["totalCount"], 99);
    assert_eq!(subjects(&p2)[0], "Request 0204");
}

#[tokio::test]
async fn filters_and_order() {
    let s = start(RateLimits::disabled()).await;
    seed_requests(&s.emu, 30);
    let count = |filter: Value| {
        let s = &s;
        async move {
            let d = s
                .data(
                    "query($f: RequestFilter) { requests(filter: $f) { totalCount nodes { subject status urgent plannedEffort } } }",
                    json!({ "f": filter }),
                )
                .await;
            d["requests"].clone()
        }
    };
    let r = count(json!({ "status": { "values": ["assigned"] } })).await;
    assert_eq!(r["totalCount"], 10);
    assert!(r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["status"] == "assigned"));
    let r =
        count(json!({ "status": { "values": ["assigned", "completed"], "negate": true } })).await;
    assert_eq!(r["totalCount"], 10);
    assert!(r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["status"] == "in_progress"));
    let r = count(json!({ "requestId": { "values": ["R-7", "R-8"] } })).await;
    assert_eq!(r["totalCount"], 2);
    let r = count(json!({ "createdAt": { "greaterThanOrEqualTo": "2026-01-01T00:00:10Z", "lessThan": "2026-01-01T00:00:12Z" } })).await;
    assert_eq!(r["totalCount"], 2);
    let r =
        count(json!({ "createdAt": { "greaterThan": "2026-01-01T00:00:10Z", "negate": true } }))
            .await;
    assert_eq!(r["totalCount"], 11);
    let r = count(json!({ "query": "request 002" })).await;
    assert_eq!(r["totalCount"], 10);
    let r = count(json!({ "createdAt": { "greaterThan": "2026-01-01T00:00:27Z" } })).await;
    assert_eq!(r["totalCount"], 2);
    let r = count(json!({ "urgent": true })).await;
    assert_eq!(r["totalCount"], 3);
    let r = count(
        json!({ "subject": { "values": ["Request 0005"] }, "status": { "values": ["completed"] } }),
    )
    .await;
    assert_eq!(r["totalCount"], 1);

    // Filter on id and inline literal filter/order in the document.
    let d = s
        .data(
            "{ requests(first: 3, order: [{field: createdAt, direction: desc}], filter: {status: {values: [completed]}}) { nodes { subject plannedEffort } } }",
            json!({}),
        )
        .await;
    let efforts: Vec<i64> = d["requests"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["plannedEffort"].as_i64().unwrap())
        .collect();
    assert_eq!(efforts, [29, 26, 23]);
    let d = s
        .data(
            "{ requests(first: 2, order: {field: subject, direction: asc}) { nodes { subject } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["requests"]["nodes"][0]["subject"], "Request 0000");
}

#[tokio::test]
async fn node_and_nodes_and_references() {
    let s = start(RateLimits::disabled()).await;
    let seeded = s
        .emu
        .seed_from_value(
            "wdc",
            &json!({ "records": {
                "Team": [ { "ref": "ops", "name": "Operations" } ],
                "Request": [ { "ref": "r1", "subject": "Printer", "team": { "$ref": "ops" } } ],
                "Note": [ { "text": "first note", "_owner": { "$ref": "r1" } } ]
            } }),
        )
        .unwrap();
    let rid = seeded.refs["r1"].clone();
    let tid = seeded.refs["ops"].clone();
    let d = s
        .data(
            "query($id: ID!, $ids: [ID!]!) { node(id: $id) { __typename id ... on Request { subject team { id name } notes { totalCount nodes { text } } } } nodes(ids: $ids) { __typename id } }",
            json!({ "id": rid, "ids": [tid, rid, "bm9wZQ"] }),
        )
        .await;
    assert_eq!(d["node"]["__typename"], "Request");
    assert_eq!(d["node"]["subject"], "Printer");
    assert_eq!(d["node"]["team"]["name"], "Operations");
    assert_eq!(d["node"]["notes"]["totalCount"], 1);
    assert_eq!(d["node"]["notes"]["nodes"][0]["text"], "first note");
    // Unknown ids are left out (the dynamic schema cannot return null list items).
    assert_eq!(d["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(d["nodes"][0]["__typename"], "Team");
    assert_eq!(d["nodes"][1]["id"], rid);
    // Records of another account are invisible.
    s.emu.ensure_account("other", "Other");
    let other = s
        .emu
        .seed_from_value(
            "other",
            &json!({ "records": { "Request": [ { "ref": "x", "subject": "secret" } ] } }),
        )
        .unwrap();
    let v = s
        .gql(
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": other.refs["x"] }),
        )
        .await;
    assert!(v["data"]["node"].is_null(), "{v}");
    assert_eq!(v["errors"][0]["message"], "Not Found", "{v}");
    assert_eq!(v["errors"][0]["path"], json!(["node"]), "{v}");
}

#[tokio::test]
async fn mutations_create_update_and_errors() {
    let s = start(RateLimits::disabled()).await;
    let mut changes = s.emu.changes.subscribe();
    let team = s
        .data(r#"mutation { teamCreate(input: {name: "Ops"}) { errors { path message } team { id name } } }"#, json!({}))
        .await;
    let tid = team["teamCreate"]["team"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(team["teamCreate"]["errors"].is_null());

    let create = "mutation($input: RequestCreateInput!) { requestCreate(input: $input) { clientMutationId errors { path message } request { id subject status team { name } notes { nodes { text internal } } } } }";
    // Unknown referenced id: payload error naming the id, nothing created.
    let v = s
        .gql(
            create,
            json!({ "input": { "subject": "x", "teamId": "bm9wZQ" } }),
        )
        .await;
    let p = &v["data"]["requestCreate"];
    assert!(p["request"].is_null());
    assert_eq!(p["errors"][0]["path"], json!(["teamId"]));
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("bm9wZQ"));
    // Required field missing: payload error.
    let v = s
        .gql(create, json!({ "input": { "status": "assigned" } }))
        .await;
    assert_eq!(
        v["data"]["requestCreate"]["errors"][0]["path"],
        json!(["subject"])
    );
    assert_eq!(s.emu.records.count("wdc", "Request"), 0);

    let v = s
        .data(
            create,
            json!({ "input": { "clientMutationId": "c1", "subject": "Laptop", "status": "assigned", "teamId": tid, "note": "please help" } }),
        )
        .await;
    let p = &v["requestCreate"];
    assert_eq!(p["clientMutationId"], "c1");
    assert_eq!(p["request"]["subject"], "Laptop");
    assert_eq!(p["request"]["team"]["name"], "Ops");
    assert_eq!(p["request"]["notes"]["nodes"][0]["text"], "please help");
    let rid = p["request"]["id"].as_str().unwrap().to_string();

    let update = "mutation($input: RequestUpdateInput!) { requestUpdate(input: $input) { errors { path message } request { id status subject } } }";
    let v = s
        .data(
            update,
            json!({ "input": { "id": rid, "status": "completed" } }),
        )
        .await;
    assert_eq!(v["requestUpdate"]["request"]["status"], "completed");
    assert_eq!(v["requestUpdate"]["request"]["subject"], "Laptop");
    // Unknown target id: top-level "Not Found".
    let v = s
        .gql(
            update,
            json!({ "input": { "id": "bm9wZQ", "status": "completed" } }),
        )
        .await;
    assert_eq!(v["errors"][0]["message"], "Not Found");
    assert!(v["data"]["requestUpdate"].is_null());

    // Change feed: Team created, Request created, Note created, Request updated.
    let mut kinds = Vec::new();
    while let Ok(c) = changes.try_recv() {
        kinds.push(format!("{}:{:?}", c.typename, c.kind));
        if c.typename == "Note" {
            let after = c.after.clone().unwrap();
            assert_eq!(after["_owner"], json!(rid));
        }
        if c.typename == "Request" && c.kind == ferry_emulator::ChangeKind::Updated {
            assert_eq!(c.before.unwrap()["status"], "assigned");
            assert_eq!(c.after.unwrap()["status"], "completed");
            assert_eq!(
                c.person_id.as_deref(),
                Some(s.emu.account("wdc").unwrap().admin_person_id.as_str())
            );
        }
    }
    assert_eq!(
        kinds,
        [
            "Team:Created",
            "Request:Created",
            "Note:Created",
            "Request:Updated"
        ]
    );
}

#[tokio::test]
async fn enum_wire_values_and_quoted_enum_literals() {
    let s = start(RateLimits::disabled()).await;
    // Quoted wire spelling inside the document, as real clients send it.
    let d = s
        .data(
            r#"mutation { webhookCreate(input: {event: "app_instance.secrets-update", uri: "https://example.com/hook"}) { errors { message } webhook { id event uri } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        d["webhookCreate"]["webhook"]["event"],
        "app_instance_secrets_update"
    );
    // Wire spelling in a variable.
    let d = s
        .data(
            "mutation($i: WebhookCreateInput!) { webhookCreate(input: $i) { webhook { event } } }",
            json!({ "i": { "event": "request.create", "uri": "https://example.com/h2" } }),
        )
        .await;
    assert_eq!(d["webhookCreate"]["webhook"]["event"], "request_create");
    let d = s
        .data("{ webhooks { totalCount nodes { event } } }", json!({}))
        .await;
    assert_eq!(d["webhooks"]["totalCount"], 2);
    // A record stored with the wire spelling (e.g. by the REST half) reads back as the name.
    let raw = json!({ "event": "request.status-changed", "uri": "https://e/x" });
    s.emu
        .records
        .insert("wdc", "Webhook", raw.as_object().unwrap().clone());
    let d = s
        .data("{ webhooks(last: 1) { nodes { event } } }", json!({}))
        .await;
    assert_eq!(d["webhooks"]["nodes"][0]["event"], "request_status_changed");
}

#[tokio::test]
async fn auth_errors_are_401_json() {
    let s = start(RateLimits::disabled()).await;
    let body = json!({ "query": "{ me { id } }" });
    let cases: Vec<(Option<&str>, Option<&str>, &str)> = vec![
        (None, Some("wdc"), "missing bearer token"),
        (Some("wrong-token"), Some("wdc"), "invalid or expired token"),
        (Some(DEFAULT_TOKEN), None, "missing X-Xurrent-Account"),
        (
            Some(DEFAULT_TOKEN),
            Some("elsewhere"),
            "not valid for account 'elsewhere'",
        ),
    ];
    for (token, account, expect) in cases {
        let mut req = s.client.post(&s.url).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(a) = account {
            req = req.header("X-Xurrent-Account", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let v: Value = resp.json().await.unwrap();
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(expect), "{msg} / {expect}");
    }
    // The older X-4me-Account header is accepted too, on POST /.
    let resp = s
        .client
        .post(&s.url)
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-4me-Account", "wdc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let s = start(RateLimits {
        burst_requests: 3,
        requests_per_window: 5,
        cost_per_window: 100,
        ..RateLimits::xurrent_defaults()
    })
    .await;
    let body = json!({ "query": "{ requests(first: 1) { totalCount } rateLimit { limit cost } }" });
    for i in 0..3u32 {
        let resp = s.post(body.clone()).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert_eq!(h["x-ratelimit-remaining"], (4 - i).to_string().as_str());
        assert_eq!(h["x-costlimit-limit"], "100");
        assert_eq!(h["x-costlimit-cost"], "2");
        assert!(h.contains_key("x-ratelimit-reset") && h.contains_key("x-costlimit-remaining"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["data"]["rateLimit"]["limit"], 100);
        assert_eq!(v["data"]["rateLimit"]["cost"], 2);
    }
    let resp = s.post(body.clone()).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry));
    let v: Value = resp.json().await.unwrap();
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Too Many Requests"));
    // Switching limits off at runtime lets requests through again.
    s.emu.set_rate_limits(RateLimits::disabled());
    assert_eq!(s.post(body).await.status(), 200);
}

#[tokio::test]
async fn attachment_upload_then_note_create() {
    let s = start(RateLimits::disabled()).await;
    let d = s
        .data("{ attachmentStorage { uploadUri provider providerParameters sizeLimit allowedExtensions } }", json!({}))
        .await;
    let st = &d["attachmentStorage"];
    assert_eq!(st["provider"], "local");
    assert!(st["sizeLimit"].as_u64().unwrap() > 0);
    assert!(st["allowedExtensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "pdf"));
    let uri = st["uploadUri"].as_str().unwrap();
    assert!(uri.starts_with(&s.url));
    // Multipart exactly as the connector sends it: Content-Type, every provider parameter, file.
    let mut form = reqwest::multipart::Form::new().text("Content-Type", "text/plain");
    for (k, v) in st["providerParameters"].as_object().unwrap() {
        form = form.text(
            k.clone(),
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        );
    }
    let part = reqwest::multipart::Part::bytes(b"hello attachment".to_vec())
        .file_name("hello.txt")
        .mime_str("text/plain")
        .unwrap();
    form = form.part("file", part);
    let resp = s.client.post(uri).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let key = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.ends_with("hello.txt"));

    // A forged policy is refused.
    let forged = reqwest::multipart::Form::new()
        .text("key", "attachments/x/${filename}")
        .text("policy", "e30=")
        .text("x-emulator-signature", "00")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
        );
    assert_eq!(
        s.client
            .post(uri)
            .multipart(forged)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    let req = s
        .data(
            r#"mutation { requestCreate(input: {subject: "with file"}) { request { id } } }"#,
            json!({}),
        )
        .await;
    let rid = req["requestCreate"]["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let note = "mutation($i: NoteCreateInput!) { noteCreate(input: $i) { errors { path message } note { id text textAttachments { nodes { filename size key expiringUrl } } } } }";
    let v = s
        .gql(note, json!({ "i": { "ownerId": rid, "text": "see file", "attachments": [ { "key": "nope" } ] } }))
        .await;
    let errs = &v["data"]["noteCreate"]["errors"];
    assert!(errs[0]["message"].as_str().unwrap().contains("nope"), "{v}");
    let d = s
        .data(note, json!({ "i": { "ownerId": rid, "text": "see file", "attachments": [ { "key": key } ] } }))
        .await;
    let att = &d["noteCreate"]["note"]["textAttachments"]["nodes"][0];
    assert_eq!(att["filename"], "hello.txt");
    assert_eq!(att["size"], 16);
    assert_eq!(att["key"], json!(key));
    let body = s
        .client
        .get(att["expiringUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"hello attachment");
    // The note shows up under the request.
    let d = s
        .data(
            "query($id: ID!) { node(id: $id) { ... on Request { notes { nodes { text } } } } }",
            json!({ "id": rid }),
        )
        .await;
    assert_eq!(d["node"]["notes"]["nodes"][0]["text"], "see file");
}

#[tokio::test]
async fn seed_from_yaml_file_with_refs() {
    let s = start(RateLimits::disabled()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.yaml");
    std::fs::write(
        &path,
        "records:\n  Team:\n    - ref: ops\n      name: Operations\n  Person:\n    - ref: ann\n      name: Ann\n      teams: [ { $ref: ops } ]\n  Request:\n    - subject: Broken\n      status: waiting_for\n      requestedFor: { $ref: ann }\n      team: { $ref: ops }\n",
    )
    .unwrap();
    let summary = s.emu.seed_from_file("wdc", &path).unwrap();
    assert_eq!(summary.created, 3);
    let d = s
        .data("{ requests { nodes { subject status requestedFor { name teams { totalCount nodes { name } } } team { name } } } }", json!({}))
        .await;
    let r = &d["requests"]["nodes"][0];
    assert_eq!(r["status"], "waiting_for");
    assert_eq!(r["requestedFor"]["name"], "Ann");
    assert_eq!(r["requestedFor"]["teams"]["totalCount"], 1);
    assert_eq!(r["requestedFor"]["teams"]["nodes"][0]["name"], "Operations");
    assert_eq!(r["team"]["name"], "Operations");
    // Invalid documents are rejected before anything is created.
    let err = s
        .emu
        .seed_from_value("wdc", &json!({ "records": { "NoSuchType": [ {} ] } }))
        .unwrap_err();
    assert!(err.to_string().contains("NoSuchType"));
    let err = s
        .emu
        .seed_from_value("wdc", &json!({ "records": { "Team": [ { "name": "x", "manager": { "$ref": "missing" } } ] } }))
        .unwrap_err();
    assert!(err.to_string().contains("missing"));
}

#[tokio::test]
async fn nested_inputs_custom_fields_and_deletes() {
    let s = start(RateLimits::disabled()).await;
    let me = s.data("{ me { id } }", json!({})).await["me"]["id"].clone();
    let d = s
        .data(
            "mutation($i: RequestCreateInput!) { requestCreate(input: $i) { errors { message } request { id customFields { id value } watches { totalCount nodes { id person { name } } } } } }",
            json!({ "i": { "subject": "nested", "newWatches": [ { "personId": me } ],
                           "customFields": [ { "id": "a", "value": "1" } ] } }),
        )
        .await;
    let r = &d["requestCreate"]["request"];
    assert_eq!(r["watches"]["totalCount"], 1);
    assert_eq!(r["watches"]["nodes"][0]["person"]["name"], "Emulator Admin");
    assert_eq!(r["customFields"], json!([ { "id": "a", "value": "1" } ]));
    let rid = r["id"].clone();
    let wid = r["watches"]["nodes"][0]["id"].clone();
    // A nested input with an unknown reference is reported with its path.
    let v = s
        .gql(
            "mutation($i: RequestCreateInput!) { requestCreate(input: $i) { errors { path message } request { id } } }",
            json!({ "i": { "subject": "bad", "newWatches": [ { "personId": "bm9wZQ" } ] } }),
        )
        .await;
    assert_eq!(
        v["data"]["requestCreate"]["errors"][0]["path"],
        json!(["newWatches", "0", "personId"])
    );
    let d = s
        .data(
            "mutation($i: RequestUpdateInput!) { requestUpdate(input: $i) { request { customFields { id value } watches { totalCount } } } }",
            json!({ "i": { "id": rid, "watchesToDelete": [wid],
                           "customFields": [ { "id": "b", "value": 2 }, { "id": "a", "value": "3" } ] } }),
        )
        .await;
    let r = &d["requestUpdate"]["request"];
    assert_eq!(r["watches"]["totalCount"], 0);
    assert_eq!(
        r["customFields"],
        json!([ { "id": "a", "value": "3" }, { "id": "b", "value": 2 } ])
    );
    let count = |cf: Value| {
        let s = &s;
        async move {
            s.data(
                "query($f: RequestFilter) { requests(filter: $f) { totalCount } }",
                json!({ "f": { "customFilters": cf } }),
            )
            .await["requests"]["totalCount"]
                .clone()
        }
    };
    assert_eq!(count(json!([ { "name": "b", "values": ["2"] } ])).await, 1);
    assert_eq!(count(json!([ { "name": "a", "values": ["1"] } ])).await, 0);
}

#[tokio::test]
async fn cost_limit_refuses_once_spent() {
    let s = start(RateLimits {
        cost_per_window: 3,
        ..RateLimits::xurrent_defaults()
    })
    .await;
    // Cost = 1 per request + 1 per connection field.
    let body = json!({ "query": "{ requests(first: 1) { totalCount } }" });
    let first = s.post(body.clone()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-costlimit-remaining"], "1");
    assert_eq!(s.post(body.clone()).await.status(), 200);
    let refused = s.post(body).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["x-costlimit-remaining"], "0");
    let v: Value = refused.json().await.unwrap();
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("cost"));
}

#[tokio::test]
async fn webhook_policy_create_returns_public_key_once() {
    let s = start(RateLimits::disabled()).await;
    // Quoted enum literal, as public clients send it.
    let d = s
        .data(
            r#"mutation { webhookPolicyCreate(input: {jwtAlg: "es256", jwtAudience: "ferry"}) { errors { message } webhookPolicy { id jwtAlg jwtAudience publicKeyPem } } }"#,
            json!({}),
        )
        .await;
    let p = &d["webhookPolicyCreate"]["webhookPolicy"];
    assert_eq!(p["jwtAlg"], "es256");
    assert!(p["publicKeyPem"]
        .as_str()
        .unwrap()
        .contains("BEGIN PUBLIC KEY"));
    let d = s
        .data(
            "{ webhookPolicies { totalCount nodes { id jwtAudience } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["webhookPolicies"]["totalCount"], 1);
    assert_eq!(d["webhookPolicies"]["nodes"][0]["id"], p["id"]);
}

#[tokio::test]
async fn person_relative_views() {
    let s = start(RateLimits::disabled()).await;
    let me = s.emu.account("wdc").unwrap().admin_person_id;
    s.emu
        .seed_from_value(
            "wdc",
            &json!({ "records": {
                "Person": [ { "ref": "bob", "name": "Bob" } ],
                "Team": [ { "ref": "mine", "name": "Mine", "members": [me] }, { "ref": "other", "name": "Other" } ],
                "Request": [
                    { "subject": "mine", "member": me, "team": { "$ref": "mine" } },
                    { "subject": "bob's", "member": { "$ref": "bob" }, "team": { "$ref": "other" }, "requestedFor": me },
                    { "subject": "nobody's" }
                ] } }),
        )
        .unwrap();
    let subjects = |view: &'static str| {
        let s = &s;
        async move {
            let d = s
                .data(
                    &format!("{{ requests(view: {view}) {{ nodes {{ subject }} }} }}"),
                    json!({}),
                )
                .await;
            d["requests"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["subject"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(subjects("current_account").await.len(), 3);
    assert_eq!(subjects("all").await.len(), 3);
    assert_eq!(subjects("assigned_to_me").await, ["mine"]);
    assert_eq!(subjects("assigned_to_my_team").await, ["mine"]);
    assert_eq!(subjects("requested_by_or_for_me").await, ["bob's"]);
    assert!(subjects("trash").await.is_empty());
}

#[tokio::test]
async fn account_typed_fields_and_filters() {
    let s = start(RateLimits::disabled()).await;
    s.emu.ensure_account("acme", "Acme Corp");
    s.emu
        .seed_from_value(
            "wdc",
            &json!({ "records": { "AppInstance": [
                { "customerAccount": "acme", "disabled": false },
                { "customerAccount": { "__typename": "Account", "id": "globex", "name": "Globex" }, "disabled": false }
            ] } }),
        )
        .unwrap();
    let d = s
        .data(
            "{ appInstances(filter: {customerAccount: {values: [\"globex\"]}}) { nodes { customerAccount { id name } account { id } } } all: appInstances { nodes { customerAccount { id name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["appInstances"]["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["appInstances"]["nodes"][0]["customerAccount"]["name"],
        "Globex"
    );
    assert_eq!(d["appInstances"]["nodes"][0]["account"]["id"], "wdc");
    // An account id string resolves to that account.
    assert_eq!(
        d["all"]["nodes"][0]["customerAccount"],
        json!({ "id": "acme", "name": "Acme Corp" })
    );
}

#[tokio::test]
async fn derived_filters_and_ui_extension_versions() {
    let s = start(RateLimits::disabled()).await;
    // The App Store lookup of the app connector: instances by offering reference + customer.
    s.emu
        .seed_from_value(
            "wdc",
            &json!({ "records": {
                "AppOffering": [ { "ref": "o", "reference": "my_app", "published": false } ],
                "AppInstance": [
                    { "appOffering": { "$ref": "o" }, "customerAccount": "wdc", "disabled": false },
                    { "customerAccount": "wdc", "disabled": true }
                ] } }),
        )
        .unwrap();
    let d = s
        .data(
            "query($appReference: String!, $customerAccountId: String!) { appInstances(first: 1, filter: { appOfferingReference: { values: [$appReference] }, customerAccount: { values: [$customerAccountId] } }) { nodes { disabled appOffering { reference } } } }",
            json!({ "appReference": "my_app", "customerAccountId": "wdc" }),
        )
        .await;
    assert_eq!(d["appInstances"]["nodes"][0]["disabled"], false);
    assert_eq!(
        d["appInstances"]["nodes"][0]["appOffering"]["reference"],
        "my_app"
    );
    let d = s
        .data(
            "{ appOfferings(first: 1, filter: { published: false, reference: { values: [\"my_app\"] } }) { nodes { reference } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["appOfferings"]["nodes"][0]["reference"], "my_app");

    let sel = "errors { path message } uiExtension { id activeVersion { id html versionNr status } versions { totalCount } }";
    let d = s
        .data(
            &format!("mutation($input: UiExtensionCreateInput!) {{ uiExtensionCreate(input: $input) {{ {sel} }} }}"),
            json!({ "input": { "category": "app_offering", "name": "ext", "html": "<p>v1</p>", "activate": true } }),
        )
        .await;
    let ext = &d["uiExtensionCreate"]["uiExtension"];
    assert_eq!(ext["activeVersion"]["html"], "<p>v1</p>");
    assert_eq!(ext["activeVersion"]["status"], "active");
    let v1 = ext["activeVersion"]["id"].clone();
    let d = s
        .data(
            &format!("mutation($input: UiExtensionUpdateInput!) {{ uiExtensionUpdate(input: $input) {{ {sel} }} }}"),
            json!({ "input": { "id": ext["id"], "css": "p {}", "activate": true } }),
        )
        .await;
    let ext = &d["uiExtensionUpdate"]["uiExtension"];
    assert_eq!(ext["activeVersion"]["versionNr"], 2);
    assert_eq!(ext["activeVersion"]["html"], "<p>v1</p>");
    assert_eq!(ext["versions"]["totalCount"], 2);
    let d = s
        .data(
            "query($id: ID!) { node(id: $id) { ... on UiExtensionVersion { status } } }",
            json!({ "id": v1 }),
        )
        .await;
    assert_eq!(d["node"]["status"], "archived");
}

#[tokio::test]
async fn inline_lists_get_ids_merge_and_delete() {
    let s = start(RateLimits::disabled()).await;
    let si = s
        .emu
        .seed_from_value(
            "wdc",
            &json!({ "records": { "ServiceInstance": [ { "ref": "si", "name": "SI" } ] } }),
        )
        .unwrap()
        .refs["si"]
        .clone();
    let sel = "errors { path message } appOffering { id scopes { id actions effect grantType } }";
    let d = s
        .data(
            &format!("mutation($i: AppOfferingCreateInput!) {{ appOfferingCreate(input: $i) {{ {sel} }} }}"),
            json!({ "i": { "name": "App", "serviceInstanceId": si, "newScopes": [
                { "actions": ["read"], "effect": "allow", "grantType": "client_credentials" },
                { "actions": ["write"], "effect": "deny", "grantType": "client_credentials" } ] } }),
        )
        .await;
    let o = &d["appOfferingCreate"]["appOffering"];
    let scopes = o["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 2);
    let first_id = scopes[0]["id"].as_str().unwrap().to_string();
    assert_ne!(scopes[0]["id"], scopes[1]["id"]);
    let second_id = scopes[1]["id"].clone();
    let d = s
        .data(
            &format!("mutation($i: AppOfferingUpdateInput!) {{ appOfferingUpdate(input: $i) {{ {sel} }} }}"),
            json!({ "i": { "id": o["id"], "scopesToDelete": [first_id],
                           "newScopes": [ { "id": second_id, "actions": ["write", "read"] } ] } }),
        )
        .await;
    let scopes = d["appOfferingUpdate"]["appOffering"]["scopes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0]["id"], second_id);
    assert_eq!(scopes[0]["actions"], json!(["write", "read"]));
    assert_eq!(scopes[0]["effect"], "deny");
    let d = s
        .data(
            "mutation($id: ID!) { appOfferingPublish(input: {id: $id}) { appOffering { published } } }",
            json!({ "id": o["id"] }),
        )
        .await;
    assert_eq!(d["appOfferingPublish"]["appOffering"]["published"], true);
    // The one mutation the emulator cannot do generically says so.
    let v = s
        .gql(
            "mutation($i: DiscoveredConfigurationItemsInput!) { discoveredConfigurationItems(input: $i) { errors { message } } }",
            json!({ "i": { "source": "scanner" } }),
        )
        .await;
    assert_eq!(
        v["errors"][0]["message"],
        "Mutation 'discoveredConfigurationItems' is not supported by the emulator"
    );
}

#[tokio::test]
async fn offering_pictures_rules_and_ui_extension_lookup() {
    use base64::Engine as _;
    let s = start(RateLimits::disabled()).await;
    let si = s
        .emu
        .seed_from_value(
            "wdc",
            &json!({ "records": { "ServiceInstance": [ { "ref": "si", "name": "SI" } ] } }),
        )
        .unwrap()
        .refs["si"]
        .clone();
    // A picture given as a data URI is stored and served from a URL, as Xurrent hosts it.
    let uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"PNGDATA")
    );
    let d = s
        .data(
            "mutation($i: AppOfferingCreateInput!) { appOfferingCreate(input: $i) { errors { path message } appOffering { id pictureUri } } }",
            json!({ "i": { "name": "App", "reference": "app", "serviceInstanceId": si, "pictureUri": uri } }),
        )
        .await;
    let o = &d["appOfferingCreate"]["appOffering"];
    let picture = o["pictureUri"].as_str().unwrap();
    assert!(
        picture.starts_with(&format!("{}/_emulator/attachments/pictures/", s.url)),
        "{picture}"
    );
    assert!(picture.ends_with("/picture.png"), "{picture}");
    let bytes = reqwest::get(picture).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"PNGDATA");
    // A broken data URI is a payload error on the field.
    let d = s
        .data(
            "mutation($i: AppOfferingUpdateInput!) { appOfferingUpdate(input: $i) { errors { path message } } }",
            json!({ "i": { "id": o["id"], "pictureUri": "data:image/png;base64,%%%" } }),
        )
        .await;
    assert_eq!(
        d["appOfferingUpdate"]["errors"][0]["path"],
        json!(["pictureUri"])
    );
    // Automation rules created for the offering are listed on it, in order; a deleted one is gone.
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let d = s
            .data(
                "mutation($i: AppOfferingAutomationRuleCreateInput!) { appOfferingAutomationRuleCreate(input: $i) { errors { message } appOfferingAutomationRule { id } } }",
                json!({ "i": { "appOfferingId": o["id"], "name": name, "condition": "c", "trigger": "t", "generic": "request",
                               "expressions": [ { "name": "e", "value": "v" } ] } }),
            )
            .await;
        ids.push(d["appOfferingAutomationRuleCreate"]["appOfferingAutomationRule"]["id"].clone());
    }
    let d = s
        .data(
            "mutation($i: AppOfferingAutomationRuleDeleteMutationInput!) { appOfferingAutomationRuleDelete(input: $i) { errors { message } } }",
            json!({ "i": { "id": ids[0] } }),
        )
        .await;
    assert_eq!(d["appOfferingAutomationRuleDelete"]["errors"], Value::Null);
    let d = s
        .data(
            "query($id: ID!) { node(id: $id) { ... on AppOffering { automationRules(first: 10) { nodes { id name expressions { name value } } } } } }",
            json!({ "id": o["id"] }),
        )
        .await;
    assert_eq!(
        d["node"]["automationRules"]["nodes"],
        json!([ { "id": ids[1], "name": "second", "expressions": [ { "name": "e", "value": "v" } ] } ])
    );
    // UI extensions are found by their source stamp.
    s.data(
        "mutation($i: UiExtensionCreateInput!) { uiExtensionCreate(input: $i) { errors { message } } }",
        json!({ "i": { "category": "app_offering", "name": "ext", "source": "Ferry", "sourceID": "app_offering:app", "html": "<p/>", "activate": true } }),
    )
    .await;
    let d = s
        .data(
            "{ uiExtensions(first: 1, filter: { source: { values: [\"Ferry\"] }, sourceID: { values: [\"app_offering:app\"] } }) { nodes { name activeVersion { html } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        d["uiExtensions"]["nodes"][0]["activeVersion"]["html"],
        "<p/>"
    );
}
