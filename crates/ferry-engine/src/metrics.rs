//! Process metrics in the Prometheus text format.
//!
//! A handful of counters and one histogram do not justify a metrics framework; they are
//! plain atomics rendered by [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS_MS: [f64; 11] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0, 30000.0,
];

/// Engine counters.
#[derive(Default)]
pub struct Metrics {
    /// Events by outcome.
    pub events_accepted: AtomicU64,
    /// Rejected events.
    pub events_rejected: AtomicU64,
    /// Discarded events.
    pub events_discarded: AtomicU64,
    /// Duplicate events.
    pub events_duplicate: AtomicU64,
    /// Requests the trigger answered itself (handshakes; no job).
    pub events_answered: AtomicU64,
    /// Step invocations.
    pub steps_total: AtomicU64,
    /// Failed step invocations.
    pub steps_failed: AtomicU64,
    step_buckets: [AtomicU64; 11],
    step_sum_us: AtomicU64,
}

impl Metrics {
    /// Record one step's duration.
    pub fn observe_step(&self, ms: f64, failed: bool) {
        self.steps_total.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.steps_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.step_sum_us
            .fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.step_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Render in the Prometheus text exposition format, with job counts by status.
    pub fn render(&self, jobs_by_status: &[(String, i64)]) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP ferry_events_total Inbound events by outcome.");
        let _ = writeln!(out, "# TYPE ferry_events_total counter");
        for (outcome, v) in [
            ("accepted", &self.events_accepted),
            ("rejected", &self.events_rejected),
            ("discarded", &self.events_discarded),
            ("answered", &self.events_answered),
            ("duplicate", &self.events_duplicate),
        ] {
            let _ = writeln!(
                out,
                "ferry_events_total{{outcome=\"{outcome}\"}} {}",
                get(v)
            );
        }
        let _ = writeln!(out, "# HELP ferry_jobs Jobs in the store by status.");
        let _ = writeln!(out, "# TYPE ferry_jobs gauge");
        for (status, n) in jobs_by_status {
            let _ = writeln!(out, "ferry_jobs{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP ferry_step_duration_seconds Step invocation latency."
        );
        let _ = writeln!(out, "# TYPE ferry_step_duration_seconds histogram");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "ferry_step_duration_seconds_bucket{{le=\"{}\"}} {}",
                b / 1000.0,
                get(&self.step_buckets[i])
            );
        }
        let total = get(&self.steps_total);
        let _ = writeln!(
            out,
            "ferry_step_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "ferry_step_duration_seconds_sum {}",
            get(&self.step_sum_us) as f64 / 1_000_000.0
        );
        let _ = writeln!(out, "ferry_step_duration_seconds_count {total}");
        let _ = writeln!(
            out,
            "# HELP ferry_steps_failed_total Failed step invocations."
        );
        let _ = writeln!(out, "# TYPE ferry_steps_failed_total counter");
        let _ = writeln!(out, "ferry_steps_failed_total {}", get(&self.steps_failed));
        out
    }
}
