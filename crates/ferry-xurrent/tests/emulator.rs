//! The builders against a real emulator on 127.0.0.1 (in process): the introspection answer
//! gives the same model as the embedded SDL, every root connection's query runs without
//! GraphQL errors, paging with `limit` follows cursors passed as variables, and mutations
//! (success and payload errors) are read as the spec says.

use std::net::SocketAddr;

use ferry_emulator::{EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use ferry_xurrent::{
    check_query, classify, graphql_errors, include_options, read_data, Cursor, Error, Include,
    MutationPlan, Outcome, QueryOptions, QueryPlan, ResponseMeta, Schema, INTROSPECTION_QUERY,
};
use serde_json::{json, Value};

struct Emu {
    emu: std::sync::Arc<ferry_emulator::Emulator>,
    url: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Emu {
    start_with(RateLimits::disabled()).await
}

async fn start_with(rate_limits: RateLimits) -> Emu {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(EmulatorConfig {
        listen: addr,
        rate_limits,
        ..Default::default()
    })
    .await
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let e = emu.clone();
    tokio::spawn(async move {
        ferry_emulator::serve(e, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Emu {
        emu,
        url: format!("http://{addr}/graphql"),
        client: reqwest::Client::new(),
        _stop: tx,
    }
}

impl Emu {
    async fn post(&self, body: &Value) -> Value {
        let resp = self
            .client
            .post(&self.url)
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// `data` of an answer that must have no GraphQL errors.
    async fn data(&self, body: &Value) -> Value {
        let v = self.post(body).await;
        if let Some(e) = graphql_errors(&v) {
            panic!("GraphQL errors: {e}\nrequest: {body}");
        }
        v["data"].clone()
    }
}

fn seed(emu: &ferry_emulator::Emulator) {
    let requests: Vec<Value> = (0..250)
        .map(|i| json!({"subject": format!("Request {i:04}"), "status": "assigned"}))
        .collect();
    let people: Vec<Value> = (0..3)
        .map(
            |i| json!({"name": format!("Person {i}"), "primaryEmail": format!("p{i}@example.com")}),
        )
        .collect();
    emu.seed_from_value(
        "wdc",
        &json!({"records": {"Request": requests, "Person": people, "Team": [{"name": "Ops"}]}}),
    )
    .unwrap();
}

#[tokio::test]
async fn introspection_gives_the_same_model_as_the_embedded_sdl() {
    let e = start().await;
    let answer = e.post(&json!({"query": INTROSPECTION_QUERY})).await;
    assert!(graphql_errors(&answer).is_none());
    let mut live = Schema::from_introspection(&answer).unwrap();
    live.apply_wire_values(&ferry_xurrent_schema::wire_values(ferry_xurrent_schema::SDL).unwrap());
    let embedded = Schema::embedded().unwrap();
    assert_eq!(live.query_type, embedded.query_type);
    assert_eq!(live.mutation_type, embedded.mutation_type);
    let mut differing = Vec::new();
    for (name, t) in &embedded.types {
        let mut t = t.clone();
        let Some(l) = live.get(name) else {
            differing.push(format!("{name}: missing"));
            continue;
        };
        let mut l = l.clone();
        // Implementer order is not significant.
        t.possible_types.sort();
        l.possible_types.sort();
        // Built-in scalars carry the server's own descriptions.
        if t.kind == ferry_xurrent::Kind::Scalar {
            l.description = t.description.clone();
        }
        if l != t {
            differing.push(name.clone());
        }
    }
    assert!(differing.is_empty(), "types differing: {differing:?}");
    assert_eq!(live.types.len(), embedded.types.len());
}

#[tokio::test]
async fn every_root_connection_runs_against_the_emulator() {
    let e = start().await;
    seed(&e.emu);
    let schema = Schema::embedded().unwrap();
    let mut ran = 0;
    for root in schema
        .root_objects()
        .into_iter()
        .filter(|r| r.is_connection())
    {
        let include = Include {
            fields: include_options(&schema, root.record_type())
                .into_iter()
                .map(|o| (o.name.clone(), Include::none()))
                .collect(),
        };
        let plan = QueryPlan::build(
            &schema,
            &root.name,
            &QueryOptions {
                include,
                page_size: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        let body = plan.request(&Cursor::default()).unwrap();
        let data = e.data(&body).await;
        let page = plan
            .read_page(&data, &Cursor::default())
            .unwrap_or_else(|err| panic!("{}: {err}", root.name));
        assert!(page.records.len() <= 5);
        ran += 1;
    }
    assert!(ran >= 70);
}

#[tokio::test]
async fn paging_with_limit_filter_and_order() {
    let e = start().await;
    seed(&e.emu);
    let schema = Schema::embedded().unwrap();
    let filter = json!({"subject": {"values": ["Request 0001", "Request 0002", "Request 0003"]}});
    let order = json!([{"field": "subject", "direction": "desc"}]);
    assert_eq!(
        check_query(&schema, "requests", None, None, Some(&filter), Some(&order)),
        Vec::<String>::new()
    );

    // 250 records, pages of 100, limit 230: 100 + 100 + 30, then stop.
    let plan = QueryPlan::build(
        &schema,
        "requests",
        &QueryOptions {
            limit: Some(230),
            ..Default::default()
        },
    )
    .unwrap();
    let mut cursor = Cursor::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut sizes = Vec::new();
    while let Some(body) = plan.request(&cursor) {
        let page = plan.read_page(&e.data(&body).await, &cursor).unwrap();
        assert_eq!(page.total_count, Some(250));
        sizes.push(page.records.len());
        for r in &page.records {
            assert!(seen.insert(r["id"].as_str().unwrap().to_string()));
        }
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [100, 100, 30]);

    // Filter and order as variables.
    let plan = QueryPlan::build(
        &schema,
        "requests",
        &QueryOptions {
            filter: Some(filter),
            order: Some(order),
            ..Default::default()
        },
    )
    .unwrap();
    let page = plan
        .read_page(
            &e.data(&plan.request(&Cursor::default()).unwrap()).await,
            &Cursor::default(),
        )
        .unwrap();
    let subjects: Vec<&str> = page
        .records
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Request 0003", "Request 0002", "Request 0001"]);
}

#[tokio::test]
async fn deep_includes_and_simple_objects_run() {
    let e = start().await;
    seed(&e.emu);
    let schema = Schema::embedded().unwrap();
    let me = QueryPlan::build(&schema, "me", &QueryOptions::default()).unwrap();
    let v = me
        .read_simple(&e.data(&me.request(&Cursor::default()).unwrap()).await)
        .unwrap();
    assert_eq!(v["name"], "Emulator Admin");

    for root in ["requests", "people", "teams"] {
        let node = schema.root_object(root).unwrap().record_type().to_string();
        // The first two nested fields at every level, six levels deep.
        let include = chain(&schema, &node, 6);
        let plan = QueryPlan::build(
            &schema,
            root,
            &QueryOptions {
                include,
                page_size: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        let data = e.data(&plan.request(&Cursor::default()).unwrap()).await;
        let page = plan.read_page(&data, &Cursor::default()).unwrap();
        assert!(!page.records.is_empty(), "{root}: no records");
        // No connection layer survives flattening.
        assert!(!page.records[0].to_string().contains("\"nodes\""), "{root}");
    }
}

/// The first two include options at every level down to `depth` (the node type is level 1).
fn chain(schema: &Schema, ty: &str, depth: usize) -> Include {
    let mut inc = Include::none();
    if depth <= 1 {
        return inc;
    }
    for opt in include_options(schema, ty).into_iter().take(2) {
        let u = schema.unwrap(&opt.ty);
        let sub = if schema.is_connection(u.name) {
            schema.node_type(u.name).unwrap_or(u.name).to_string()
        } else {
            u.name.to_string()
        };
        inc.fields
            .insert(opt.name.clone(), chain(schema, &sub, depth - 1));
    }
    inc
}

#[tokio::test]
async fn mutations_succeed_and_payload_errors_fail_with_their_messages() {
    let e = start().await;
    let schema = Schema::embedded().unwrap();
    let plan = MutationPlan::build(&schema, "teamCreate", &json!({})).unwrap();
    let body = plan.request(&json!({"name": "Network"})).unwrap();
    let out = plan.read(&e.data(&body).await).unwrap();
    assert_eq!(out["team"]["name"], "Network");
    assert!(out["team"]["id"].is_string());

    let plan = MutationPlan::build(
        &schema,
        "requestCreate",
        &json!({"request": true, "request_fields": {"team": true}}),
    )
    .unwrap();
    let ok = plan
        .read(
            &e.data(
                &plan
                    .request(&json!({"subject": "Printer on fire", "teamId": out["team"]["id"]}))
                    .unwrap(),
            )
            .await,
        )
        .unwrap();
    assert_eq!(ok["request"]["subject"], "Printer on fire");
    assert_eq!(ok["request"]["team"]["name"], "Network");

    let err = plan
        .read(
            &e.data(
                &plan
                    .request(&json!({"subject": "x", "teamId": "bm9wZQ"}))
                    .unwrap(),
            )
            .await,
        )
        .unwrap_err();
    let Error::MutationErrors(messages) = &err else {
        panic!("expected payload errors, got {err}");
    };
    assert!(messages[0].contains("bm9wZQ"), "{messages:?}");
    assert!(err.to_string().starts_with("Mutation error: "));
}

#[tokio::test]
async fn answers_are_classified_and_metadata_read_from_headers() {
    let e = start_with(RateLimits {
        burst_requests: 2,
        ..RateLimits::xurrent_defaults()
    })
    .await;
    let schema = Schema::embedded().unwrap();
    let plan = QueryPlan::build(&schema, "people", &QueryOptions::default()).unwrap();
    let body = plan.request(&Cursor::default()).unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let resp = e
            .client
            .post(&e.url)
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let retry = headers.get("retry-after").and_then(|v| v.to_str().ok());
        let outcome = classify(status, retry, &text, std::time::SystemTime::now());
        if outcome == Outcome::Read {
            let v: Value = serde_json::from_str(&text).unwrap();
            let page = plan
                .read_page(read_data(&v).unwrap(), &Cursor::default())
                .unwrap();
            assert!(!page.records.is_empty(), "the administrator is a person");
            let meta = ResponseMeta::from_headers(|h| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .to_json();
            assert!(meta["request_id"].is_string(), "{meta}");
            assert_eq!(meta["ratelimit"]["limit"], "3600");
            assert!(meta["costlimit"]["cost"].is_string(), "{meta}");
        }
        outcomes.push(outcome);
    }
    assert_eq!(outcomes[..2], [Outcome::Read, Outcome::Read]);
    match &outcomes[2] {
        Outcome::Reschedule { after, message } => {
            assert!((1..=2).contains(&after.as_secs()), "{after:?}");
            assert!(
                message.starts_with("Xurrent API rate limit hit (retry after: "),
                "{message}"
            );
        }
        other => panic!("expected a reschedule, got {other:?}"),
    }
}

/// A plausible value of a GraphQL input type, for exercising every filter key.
fn sample(schema: &Schema, ty: &ferry_xurrent::TypeRef, depth: usize) -> Value {
    let u = schema.unwrap(ty);
    let one = match u.kind {
        ferry_xurrent::Kind::Enum => {
            json!(schema.get(u.name).unwrap().enum_values[0].json_value())
        }
        ferry_xurrent::Kind::InputObject => {
            let t = schema.get(u.name).unwrap();
            let mut m = serde_json::Map::new();
            if depth < 4 {
                if let Some(v) = t.input_field("values") {
                    m.insert("values".into(), sample(schema, &v.ty, depth + 1));
                }
                for f in &t.input_fields {
                    if f.is_required_without_default() || m.is_empty() {
                        m.insert(f.name.clone(), sample(schema, &f.ty, depth + 1));
                    }
                }
            }
            Value::Object(m)
        }
        _ => match u.name {
            "Boolean" => json!(true),
            "Int" => json!(1),
            "Float" => json!(1.5),
            "ISO8601Timestamp" | "ISO8601DateTime" => json!("2020-01-01T00:00:00Z"),
            "ISO8601Date" => json!("2020-01-01"),
            "ID" => json!("bm9wZQ"),
            _ => json!("x"),
        },
    };
    if u.list {
        json!([one])
    } else {
        one
    }
}

#[tokio::test]
async fn every_root_connection_runs_with_each_filter_key_view_and_order() {
    let e = start().await;
    let schema = Schema::embedded().unwrap();
    let mut requests = 0;
    let mut failures = Vec::new();
    for root in schema
        .root_objects()
        .into_iter()
        .filter(|r| r.is_connection())
    {
        let mut variants: Vec<(String, QueryOptions)> = Vec::new();
        if let Some(f) = &root.filter {
            for iv in &schema.get(&f.type_name).unwrap().input_fields {
                let filter = json!({ iv.name.clone(): sample(&schema, &iv.ty, 0) });
                variants.push((
                    format!("filter {filter}"),
                    QueryOptions {
                        filter: Some(filter),
                        ..Default::default()
                    },
                ));
            }
        }
        if let Some(v) = &root.view {
            for ev in &schema.get(&v.type_name).unwrap().enum_values {
                variants.push((
                    format!("view {}", ev.name),
                    QueryOptions {
                        view: Some(ev.json_value().to_string()),
                        ..Default::default()
                    },
                ));
            }
        }
        if let Some(o) = &root.order {
            let order_type = schema.get(&o.type_name).unwrap();
            let field_enum = schema
                .unwrap(&order_type.input_field("field").unwrap().ty)
                .name;
            for ev in &schema.get(field_enum).unwrap().enum_values {
                let order = json!([{"field": ev.json_value(), "direction": "desc"}]);
                variants.push((
                    format!("order {order}"),
                    QueryOptions {
                        order: Some(order),
                        ..Default::default()
                    },
                ));
            }
        }
        for (label, mut opts) in variants {
            let problems = check_query(
                &schema,
                &root.name,
                None,
                opts.view.as_ref().map(|v| json!(v)).as_ref(),
                opts.filter.as_ref(),
                opts.order.as_ref(),
            );
            assert!(problems.is_empty(), "{} {label}: {problems:?}", root.name);
            opts.page_size = Some(2);
            let plan = QueryPlan::build(&schema, &root.name, &opts).unwrap();
            let answer = e.post(&plan.request(&Cursor::default()).unwrap()).await;
            requests += 1;
            if let Some(err) = graphql_errors(&answer) {
                failures.push(format!("{} {label}: {err}", root.name));
                continue;
            }
            plan.read_page(&answer["data"], &Cursor::default())
                .unwrap_or_else(|err| panic!("{} {label}: {err}", root.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(requests > 500, "{requests}");
}
