//! `ferry bench xurrent-webhook`: ES256-signed Xurrent webhook deliveries through the
//! `xurrent.webhook` trigger — verification, the `jti` replay window in the shared store, and a
//! durable job — with the engine in-process on a fresh data directory (no HTTP layer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry_emulator::policy::{random_jti, JwtAlg, PolicyKey};
use ferry_engine::{Engine, EngineOptions, InboundRequest, IngestOutcome};
use ferry_store::Store;
use ferry_xurrent::webhook::verify::{self, Unverified};
use serde_json::json;

const ISSUER: &str = "https://wdc.xurrent.com";

/// Run the benchmark: `events` deliveries from `concurrency` concurrent callers.
pub async fn xurrent_webhook(events: usize, concurrency: usize) -> anyhow::Result<()> {
    let key = PolicyKey::generate(JwtAlg::Es256)?;
    let pem = key.public_key_pem.clone().context("no public key")?;

    // The cost of one ES256 verification (decode + signature), single-threaded.
    let now = chrono::Utc::now().timestamp();
    let sample = key.sign(None, &claims(now, 0))?;
    let decoding = jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes())?;
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        let jwt = Unverified::decode(&sample).map_err(anyhow::Error::msg)?;
        verify::check_signature(&jwt, jsonwebtoken::Algorithm::ES256, &decoding)
            .map_err(anyhow::Error::msg)?;
    }
    println!(
        "xurrent-webhook: ES256 decode + verify {:.1} µs (single thread, {n} tokens)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    let dir = tempfile::tempdir()?;
    let sol = dir.path().join("xw");
    std::fs::create_dir_all(sol.join("runbooks"))?;
    std::fs::write(
        sol.join("solution.yaml"),
        format!(
            "name: xw\nconnections:\n  xurrent_in:\n    connector: xurrent\n    direction: inbound\n    config:\n      \
             policy: {{ account_url: \"{ISSUER}\", algorithm: ES256, public_key_pem: {} }}\n",
            serde_json::to_string(&pem)?
        ),
    )?;
    std::fs::write(
        sol.join("runbooks").join("hook.yaml"),
        "name: hook\ntrigger:\n  connector: xurrent\n  type: webhook\n  connection: xurrent_in\n\
         steps:\n  - { id: log, action: debug.log_message, input: { message: \"{{ trigger.event }}\" } }\n",
    )?;
    let (secrets, store) = crate::serve::open_data(&dir.path().join("data"), false).await?;
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        secrets,
        crate::registry(),
        EngineOptions::default(),
    );
    engine
        .load_dir(&sol)
        .map_err(|d| anyhow::anyhow!("bench solution invalid: {d:?}"))?;

    // Sign every delivery before measuring (each with its own jti and delivery id).
    let now = chrono::Utc::now().timestamp();
    let mut requests = Vec::with_capacity(events);
    for i in 0..events {
        let jwt = key.sign(None, &claims(now, i))?;
        let request = InboundRequest {
            method: "POST".into(),
            body: bytes::Bytes::from(json!({ "jwt": jwt }).to_string()),
            ..InboundRequest::default()
        }
        .with_header("content-type", "application/json; charset=utf-8")
        .with_header("x-xurrent-delivery", &uuid::Uuid::new_v4().to_string());
        requests.push(request);
    }
    let per_task = events.div_ceil(concurrency.max(1));
    let mut chunks = Vec::new();
    let mut rest = requests;
    while !rest.is_empty() {
        let tail = rest.split_off(per_task.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let cpu0 = crate::bench::cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(chunk.len());
            let mut errors = Vec::new();
            for request in chunk {
                let t = Instant::now();
                let outcome = engine.ingest("xw", "hook", request).await;
                latencies.push(t.elapsed().as_micros() as u64);
                if !matches!(outcome, IngestOutcome::Accepted { .. }) {
                    errors.push(format!("{outcome:?}"));
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed();
    let cpu = crate::bench::cpu_seconds(std::process::id()) - cpu0;
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let ok = events - errors.len();
    println!(
        "xurrent-webhook: {ok} ES256-signed deliveries verified, replay-checked and stored as jobs in {:.2} s = {:.0} events/s ({concurrency} concurrent callers); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    let w = store.writer_stats();
    println!(
        "xurrent-webhook: store writer {} commands in {} transactions (largest {}); process CPU (user + system, all threads) {:.2} s = {:.0} µs per event, {:.2} cores busy on average",
        w.commands,
        w.batches,
        w.largest_batch,
        cpu,
        cpu * 1e6 / events.max(1) as f64,
        cpu / elapsed.as_secs_f64(),
    );
    if let Some(first) = errors.first() {
        bail!(
            "{} deliveries were not accepted, e.g. {first}",
            errors.len()
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

fn claims(now: i64, i: usize) -> serde_json::Value {
    json!({
        "iss": ISSUER, "sub": "1", "iat": now, "nbf": now, "jti": random_jti(),
        "data": {
            "webhook_id": 1, "webhook_nodeID": "NG1lLm5ldC9XZWJob29rLzE", "account_id": "wdc",
            "account": ISSUER, "name": "bench", "event": "request.update", "object_id": i,
            "object_nodeID": format!("req-{i}"), "person_id": 6, "person_name": "Howard Tanner",
            "payload": {"status": "assigned", "audit_line_id": i}
        }
    })
}
