//! `cargo run --release -p ferry-emulator --example bench [SCHEMA_PATH] [N]`
//!
//! The schema is the embedded Xurrent SDL unless `SCHEMA_PATH` (or `FERRY_XURRENT_SCHEMA`)
//! names a file; `N` (default 20,000) is the number of simple queries.
//!
//! Measures emulator start-up, introspection latency and simple query throughput.

use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let schema = args
        .next()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("FERRY_XURRENT_SCHEMA").ok())
        .map(PathBuf::from);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    match ferry_emulator::bench::run_local(schema, n).await {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
