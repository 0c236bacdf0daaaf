//! Figures for the schema subsystem (prints, asserts nothing). Run with
//! `cargo run --release -p ferry-xurrent --example schema_bench`.
//!
//! - the embedded SDL → model;
//! - introspecting an in-process emulator on 127.0.0.1 (HTTP answer + JSON parse + model);
//! - the model's cache form (JSON) written and read back;
//! - what a runbook step pays with a model in memory: building a query plan with its input
//!   and output fields.

use std::time::{Duration, Instant};

use ferry_emulator::{EmulatorConfig, RateLimits, DEFAULT_TOKEN};
use ferry_xurrent::{
    page_output_fields, query_input_fields, Include, QueryOptions, QueryPlan, Schema,
    INTROSPECTION_QUERY,
};
use serde_json::{json, Value};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut ds = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(f());
        ds.push(t.elapsed());
    }
    median(ds)
}

#[tokio::main]
async fn main() {
    let sdl = time(5, || Schema::embedded().unwrap());
    println!("embedded SDL -> model:                 {sdl:>10.2?} (median of 5)");

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
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/graphql");
    let mut intro = Vec::new();
    let mut parse_only = Vec::new();
    let mut bytes = 0;
    let mut schema = None;
    for _ in 0..5 {
        let t = Instant::now();
        let body = client
            .post(&url)
            .bearer_auth(DEFAULT_TOKEN)
            .header("X-Xurrent-Account", "wdc")
            .json(&json!({"query": INTROSPECTION_QUERY}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let p = Instant::now();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let s = Schema::from_introspection(&v).unwrap();
        parse_only.push(p.elapsed());
        intro.push(t.elapsed());
        bytes = body.len();
        schema = Some(s);
    }
    let schema = schema.unwrap();
    println!(
        "introspection over loopback + model:   {:>10.2?} (median of 5; answer {} KiB)",
        median(intro),
        bytes / 1024
    );
    println!(
        "  of which JSON parse + model:         {:>10.2?}",
        median(parse_only)
    );

    let cached = serde_json::to_vec(&schema).unwrap();
    let write = time(5, || serde_json::to_vec(&schema).unwrap());
    let read = time(5, || serde_json::from_slice::<Schema>(&cached).unwrap());
    println!(
        "model cache form: write {write:.2?}, read {read:.2?} ({} KiB)",
        cached.len() / 1024
    );

    let opts = QueryOptions {
        include: Include::from_json(&json!({"requestedBy": true, "team": true, "notes": true})),
        view: Some("all".into()),
        filter: Some(json!({"status": {"values": ["assigned"]}})),
        page_size: Some(50),
        ..Default::default()
    };
    let per_step = time(1001, || {
        let plan = QueryPlan::build(&schema, "requests", &opts).unwrap();
        let inputs = query_input_fields(&schema, &plan.object, &json!({}));
        let outputs = page_output_fields(&schema, &plan.object, &opts.include);
        (plan, inputs, outputs)
    });
    println!("per step with the model in memory:     {per_step:>10.2?} (query plan + input and output fields, median of 1001)");
}
