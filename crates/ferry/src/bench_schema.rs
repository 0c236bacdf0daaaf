//! `ferry bench xurrent-schema`: introspecting and caching a connection's full Xurrent schema
//! (the emulator's, served in-process on a loopback port) and looking the cached schema up the
//! way a step does, through `ferry_xurrent::schema_cache` on a fresh data directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_engine::action::{ConnectionRef, Services};
use ferry_engine::http::{HttpClient, HttpLimits};
use ferry_store::Store;
use ferry_xurrent::schema_cache;
use serde_json::json;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Run the benchmark: `rounds` refreshes (introspect + parse + seal + store) and `lookups`
/// cached lookups.
pub async fn xurrent_schema(rounds: usize, lookups: usize) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let emu = ferry_emulator::build(ferry_emulator::EmulatorConfig {
        listen: addr,
        ..Default::default()
    })
    .await
    .context("starting the emulator")?;
    let app = ferry_emulator::router(emu);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");

    let dir = tempfile::tempdir()?;
    let (secrets, store) = crate::serve::open_data(&dir.path().join("data"), false).await?;
    let services = Services {
        http: HttpClient::new(HttpLimits::default()),
        secrets: secrets.clone(),
        store: store.clone() as Arc<dyn Store>,
    };
    let connection = ConnectionRef {
        name: "x".into(),
        connector: ferry_xurrent::CONNECTOR.into(),
        config: json!({
            "credentials": {
                "account_id": "wdc",
                "personal_access_token": secrets.seal(ferry_emulator::DEFAULT_TOKEN),
            },
            "environment": {
                "graphql_endpoint": format!("{base}/graphql"),
                "oauth2_endpoint": format!("{base}/token"),
            },
        }),
        namespace: "bench/x".into(),
    };

    // First use: nothing cached.
    let t = Instant::now();
    let schema = schema_cache::schema_for(&services, &connection)
        .await
        .map_err(anyhow::Error::msg)?;
    let first = t.elapsed();
    println!(
        "xurrent-schema: first use (introspect + parse + seal + store) {:.1} ms, {} types",
        ms(first),
        schema.types.len()
    );

    // Refreshes: the same work, repeated.
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        schema_cache::refresh(&services, &connection)
            .await
            .map_err(anyhow::Error::msg)?;
        times.push(t.elapsed());
    }
    times.sort();
    if !times.is_empty() {
        println!(
            "xurrent-schema: introspect + cache the full schema: median {:.1} ms, min {:.1} ms, max {:.1} ms ({rounds} refreshes; target ≤ 300 ms)",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
        );
    }

    // After a restart: read from the connection store (unseal + parse), once per process.
    let t = Instant::now();
    let n = 5;
    for _ in 0..n {
        schema_cache::cached_schema(store.as_ref(), &secrets, &connection)
            .await
            .map_err(anyhow::Error::msg)?
            .context("the schema is not cached")?;
    }
    println!(
        "xurrent-schema: load from the connection store (unseal + parse) {:.1} ms",
        ms(t.elapsed()) / n as f64
    );

    // What a step pays: the schema (in-process entry) and the generation for the key of its
    // derived schemas.
    let t = Instant::now();
    for _ in 0..lookups {
        let s = schema_cache::schema_for(&services, &connection)
            .await
            .map_err(anyhow::Error::msg)?;
        std::hint::black_box(&s);
        let v = schema_cache::schema_version(store.as_ref(), &secrets, Some(&connection))
            .await
            .map_err(anyhow::Error::msg)?;
        std::hint::black_box(&v);
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / lookups.max(1) as f64;
    println!(
        "xurrent-schema: cached lookup (schema + generation) {per:.2} µs per step ({lookups} lookups; target ≤ 1 ms)"
    );
    store.close().await;
    Ok(())
}
