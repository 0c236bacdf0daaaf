//! Introspection over HTTP must answer exactly what `schema.graphql` declares: compared type
//! for type (kind, fields with argument and type signatures, input fields, enum values,
//! interfaces, possible types) against an independent parse of the SDL.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql_parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use ferry_emulator::{EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use serde_json::{json, Value};

/// The connector's introspection query (xurrent_connector.md §4.1), verbatim.
const INTROSPECTION: &str = "{ __schema { queryType { name } mutationType { name } types { kind name description fields(includeDeprecated: false) { name description args { name description type { ...TypeRef } defaultValue } type { ...TypeRef } } inputFields { name description type { ...TypeRef } defaultValue } enumValues(includeDeprecated: false) { name description } possibleTypes { name } } } } fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }";

/// Signature of one type: kind plus sorted member descriptions.
type Sig = (String, BTreeSet<String>);

fn sdl_type(t: &Type) -> String {
    let inner = match &t.base {
        BaseType::Named(n) => n.to_string(),
        BaseType::List(i) => format!("[{}]", sdl_type(i)),
    };
    if t.nullable {
        inner
    } else {
        format!("{inner}!")
    }
}

fn intro_type(t: &Value) -> String {
    match t["kind"].as_str().unwrap() {
        "NON_NULL" => format!("{}!", intro_type(&t["ofType"])),
        "LIST" => format!("[{}]", intro_type(&t["ofType"])),
        _ => t["name"].as_str().unwrap().to_string(),
    }
}

fn sdl_signatures(sdl: &str) -> BTreeMap<String, Sig> {
    let doc = async_graphql_parser::parse_schema(sdl).unwrap();
    let mut out = BTreeMap::new();
    let fields_sig = |fields: &[async_graphql_parser::Positioned<
        async_graphql_parser::types::FieldDefinition,
    >]| {
        fields
            .iter()
            .map(|f| {
                let args: Vec<String> = f
                    .node
                    .arguments
                    .iter()
                    .map(|a| {
                        let d = a
                            .node
                            .default_value
                            .as_ref()
                            .map(|d| format!("={}", d.node))
                            .unwrap_or_default();
                        format!("{}:{}{}", a.node.name.node, sdl_type(&a.node.ty.node), d)
                    })
                    .collect();
                format!(
                    "field {}({}):{}",
                    f.node.name.node,
                    args.join(","),
                    sdl_type(&f.node.ty.node)
                )
            })
            .collect::<BTreeSet<_>>()
    };
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let t = t.node;
        let (kind, members) = match t.kind {
            TypeKind::Scalar => ("SCALAR", BTreeSet::new()),
            TypeKind::Object(o) => {
                let mut m = fields_sig(&o.fields);
                m.extend(
                    o.implements
                        .iter()
                        .map(|i| format!("implements {}", i.node)),
                );
                ("OBJECT", m)
            }
            TypeKind::Interface(o) => ("INTERFACE", fields_sig(&o.fields)),
            TypeKind::Union(u) => (
                "UNION",
                u.members
                    .iter()
                    .map(|m| format!("member {}", m.node))
                    .collect(),
            ),
            TypeKind::Enum(e) => (
                "ENUM",
                e.values
                    .iter()
                    .map(|v| format!("value {}", v.node.value.node))
                    .collect(),
            ),
            TypeKind::InputObject(i) => (
                "INPUT_OBJECT",
                i.fields
                    .iter()
                    .map(|f| {
                        let d = f
                            .node
                            .default_value
                            .as_ref()
                            .map(|d| format!("={}", d.node))
                            .unwrap_or_default();
                        format!(
                            "input {}:{}{}",
                            f.node.name.node,
                            sdl_type(&f.node.ty.node),
                            d
                        )
                    })
                    .collect(),
            ),
        };
        out.insert(t.name.node.to_string(), (kind.to_string(), members));
    }
    out
}

fn intro_signatures(
    types: &[Value],
    interfaces_of: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Sig> {
    let mut out = BTreeMap::new();
    for t in types {
        let name = t["name"].as_str().unwrap().to_string();
        let kind = t["kind"].as_str().unwrap().to_string();
        let mut m = BTreeSet::new();
        for f in t["fields"].as_array().into_iter().flatten() {
            let args: Vec<String> = f["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let d = a["defaultValue"]
                        .as_str()
                        .map(|d| format!("={d}"))
                        .unwrap_or_default();
                    format!(
                        "{}:{}{}",
                        a["name"].as_str().unwrap(),
                        intro_type(&a["type"]),
                        d
                    )
                })
                .collect();
            m.insert(format!(
                "field {}({}):{}",
                f["name"].as_str().unwrap(),
                args.join(","),
                intro_type(&f["type"])
            ));
        }
        for f in t["inputFields"].as_array().into_iter().flatten() {
            let d = f["defaultValue"]
                .as_str()
                .map(|d| format!("={d}"))
                .unwrap_or_default();
            m.insert(format!(
                "input {}:{}{}",
                f["name"].as_str().unwrap(),
                intro_type(&f["type"]),
                d
            ));
        }
        for v in t["enumValues"].as_array().into_iter().flatten() {
            m.insert(format!("value {}", v["name"].as_str().unwrap()));
        }
        if kind == "UNION" {
            for p in t["possibleTypes"].as_array().into_iter().flatten() {
                m.insert(format!("member {}", p["name"].as_str().unwrap()));
            }
        }
        if kind == "OBJECT" {
            for i in interfaces_of.get(&name).into_iter().flatten() {
                m.insert(format!("implements {i}"));
            }
        }
        out.insert(name, (kind, m));
    }
    out
}

/// SDL types not reachable from `Query`/`Mutation` through field types, arguments, input
/// fields, union members and interface implementations (computed from the SDL alone).
fn unreachable_types(sdl: &str) -> BTreeSet<String> {
    let doc = async_graphql_parser::parse_schema(sdl).unwrap();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    fn named(t: &Type) -> String {
        match &t.base {
            BaseType::Named(n) => n.to_string(),
            BaseType::List(i) => named(i),
        }
    }
    let mut all = BTreeSet::new();
    let mut implementors: Vec<(String, String)> = Vec::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let name = t.node.name.node.to_string();
        all.insert(name.clone());
        let e = edges.entry(name.clone()).or_default();
        match t.node.kind {
            TypeKind::Object(o) => {
                for f in &o.fields {
                    e.insert(named(&f.node.ty.node));
                    e.extend(f.node.arguments.iter().map(|a| named(&a.node.ty.node)));
                }
                for i in &o.implements {
                    implementors.push((i.node.to_string(), name.clone()));
                }
            }
            TypeKind::Interface(o) => {
                for f in &o.fields {
                    e.insert(named(&f.node.ty.node));
                    e.extend(f.node.arguments.iter().map(|a| named(&a.node.ty.node)));
                }
            }
            TypeKind::Union(u) => e.extend(u.members.iter().map(|m| m.node.to_string())),
            TypeKind::InputObject(i) => e.extend(i.fields.iter().map(|f| named(&f.node.ty.node))),
            _ => {}
        }
    }
    for (iface, obj) in &implementors {
        edges.entry(iface.clone()).or_default().insert(obj.clone());
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec!["Query".to_string(), "Mutation".to_string()];
    while let Some(t) = stack.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        stack.extend(edges.get(&t).into_iter().flatten().cloned());
        // Interfaces of a reachable object are reachable too.
        stack.extend(
            implementors
                .iter()
                .filter(|(_, o)| *o == t)
                .map(|(i, _)| i.clone()),
        );
    }
    all.difference(&seen).cloned().collect()
}

#[tokio::test]
async fn introspection_matches_the_sdl_type_for_type() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = std::time::Instant::now();
    let emu = ferry_emulator::build(EmulatorConfig {
        listen: addr,
        rate_limits: RateLimits::disabled(),
        ..Default::default()
    })
    .await
    .unwrap();
    let build_time = started.elapsed();
    tokio::spawn(ferry_emulator::serve(emu, listener, std::future::pending()));
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let resp = client
        .post(format!("http://{addr}/"))
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({ "query": INTROSPECTION }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first_headers = resp.headers().clone();
    let v: Value = resp.json().await.unwrap();
    eprintln!(
        "build {build_time:?}, introspection {:?}",
        started.elapsed()
    );
    assert_eq!(first_headers["x-costlimit-cost"], "1");
    // The connector's exact text is answered from the start-up cache; a variant of the text
    // is executed live and must give the same document.
    let again: Value = client
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({ "query": format!("query Live {INTROSPECTION}") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, v);
    // Whitespace variants of the connector's text share the cached answer.
    let spaced = INTROSPECTION.replace(' ', "\n  ");
    let resp = client
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({ "query": spaced }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), v);
    assert!(v.get("errors").is_none(), "{}", v["errors"]);
    let schema = &v["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    let all = schema["types"].as_array().unwrap();

    // Interfaces implemented by each object, from the interfaces' possibleTypes.
    let mut interfaces_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in all.iter().filter(|t| t["kind"] == "INTERFACE") {
        for p in t["possibleTypes"].as_array().unwrap() {
            interfaces_of
                .entry(p["name"].as_str().unwrap().to_string())
                .or_default()
                .push(t["name"].as_str().unwrap().to_string());
        }
    }
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    let names: BTreeSet<&str> = all.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for b in builtin {
        assert!(names.contains(b), "built-in scalar {b} missing");
    }
    let declared: Vec<Value> = all
        .iter()
        .filter(|t| {
            let n = t["name"].as_str().unwrap();
            !n.starts_with("__") && !builtin.contains(&n)
        })
        .cloned()
        .collect();

    let sdl = ferry_xurrent_schema::SDL;
    let expected = sdl_signatures(sdl);
    let actual = intro_signatures(&declared, &interfaces_of);
    assert_eq!(expected.len(), 1125, "the SDL declares 1,125 named types");
    let exp_names: BTreeSet<_> = expected.keys().collect();
    let act_names: BTreeSet<_> = actual.keys().collect();
    let missing: BTreeSet<String> = exp_names
        .difference(&act_names)
        .map(|s| s.to_string())
        .collect();
    let extra: Vec<_> = act_names.difference(&exp_names).collect();
    assert!(extra.is_empty(), "types not in the SDL: {extra:?}");
    assert!(missing.is_empty(), "SDL types missing: {missing:?}");
    // The SDL has exactly two orphan enums that no field, argument or input field uses
    // (async-graphql alone would not list them; the emulator adds them).
    let orphans = unreachable_types(sdl);
    assert_eq!(
        orphans,
        BTreeSet::from([
            "DiscoveredItemStrategy".to_string(),
            "DiscoveredReferenceArrayStrategy".to_string()
        ])
    );
    let mut mismatches = Vec::new();
    for (name, sig) in expected.iter().filter(|(n, _)| !missing.contains(*n)) {
        if actual.get(name) != Some(sig) {
            mismatches.push(name.clone());
        }
    }
    if let Some(first) = mismatches.first() {
        let (ek, em) = &expected[first];
        let (ak, am) = &actual[first];
        panic!(
            "{} types differ; {first}: kind {ek} vs {ak}, only in SDL {:?}, only in introspection {:?}",
            mismatches.len(),
            em.difference(am).collect::<Vec<_>>(),
            am.difference(em).collect::<Vec<_>>()
        );
    }
    // The SDL's own directive is declared too.
    let d: Value = client
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(DEFAULT_TOKEN)
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({ "query": "{ __schema { directives { name locations args { name type { kind ofType { name } } } } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wire = d["data"]["__schema"]["directives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "wireValue")
        .cloned()
        .expect("@wireValue is listed");
    assert_eq!(
        wire,
        json!({ "name": "wireValue", "locations": ["ENUM_VALUE"],
                "args": [ { "name": "value", "type": { "kind": "NON_NULL", "ofType": { "name": "String" } } } ] })
    );
    // Spot checks of counts given in the SDL's README.
    let count = |kind: &str| actual.values().filter(|(k, _)| k == kind).count();
    assert_eq!(count("OBJECT"), 516);
    assert_eq!(count("INPUT_OBJECT"), 394);
    assert_eq!(count("ENUM"), 194);
    assert_eq!(count("INTERFACE"), 13);
    assert_eq!(count("SCALAR"), 8);
    assert_eq!(actual.len(), 1125);
    for o in &orphans {
        assert!(actual.contains_key(o));
    }
    assert_eq!(actual["Query"].1.len(), 79);
    assert_eq!(actual["Mutation"].1.len(), 153);
    assert_eq!(actual["WebhookEvent"].1.len(), 83);
}
