//! The client-side limiter: keeps each Xurrent token inside its budgets so that a long run
//! slows down instead of being throttled with `429`.
//!
//! Xurrent's budgets per token: 20 GraphQL requests per 2 s (burst), 3,600 requests per hour,
//! 5,000 query cost points per hour. The burst is counted here; the hourly budgets are read from
//! every answer's `x-ratelimit-{limit,remaining,reset}` and `x-costlimit-{limit,cost,
//! remaining,reset}` headers. While more than [`RESERVE`] of a budget is left, requests go out
//! at once; below that, they are paced so that what is left lasts until the window resets
//! (`interval = time to reset / requests left`, where for cost "requests left" is the remaining
//! points divided by the cost of the last query); with nothing left, the next request waits
//! for the reset. Each request reserves its slot under a lock, so concurrent steps of the same
//! token queue up instead of all going at once.
//!
//! The state is per process and per token (a hash of the account and credentials): several
//! Ferry nodes sharing one token each keep their own count (the headers still bring every
//! node back in line after its next answer).

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Requests allowed per [`BURST_WINDOW`].
pub const BURST_REQUESTS: usize = 20;
/// The burst window in seconds.
pub const BURST_WINDOW: f64 = 2.0;
/// Below this fraction of an hourly budget, requests are paced.
pub const RESERVE: f64 = 0.2;

/// One hourly window as the headers describe it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    limit: f64,
    remaining: f64,
    /// Unix time (s) when the window resets.
    reset_at: f64,
}

/// Rate and cost figures read from one answer's headers (all optional).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// `x-ratelimit-limit`.
    pub limit: Option<f64>,
    /// `x-ratelimit-remaining`.
    pub remaining: Option<f64>,
    /// `x-ratelimit-reset`.
    pub reset: Option<f64>,
    /// `x-costlimit-limit`.
    pub cost_limit: Option<f64>,
    /// `x-costlimit-cost`.
    pub cost: Option<f64>,
    /// `x-costlimit-remaining`.
    pub cost_remaining: Option<f64>,
    /// `x-costlimit-reset`.
    pub cost_reset: Option<f64>,
}

impl Observed {
    /// Read the headers (case-insensitive names) through `get`.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Observed {
        let num = |name: &str| get(name).and_then(|v| v.trim().parse::<f64>().ok());
        Observed {
            limit: num("x-ratelimit-limit"),
            remaining: num("x-ratelimit-remaining"),
            reset: num("x-ratelimit-reset"),
            cost_limit: num("x-costlimit-limit"),
            cost: num("x-costlimit-cost"),
            cost_remaining: num("x-costlimit-remaining"),
            cost_reset: num("x-costlimit-reset"),
        }
    }
}

/// A `reset` header value as a Unix time: Xurrent's REST documentation shows an epoch
/// (`1659006756`), the reference connector's fixtures seconds from now (`60`); values above
/// 10⁹ are read as epochs.
pub fn reset_at(value: f64, now: f64) -> f64 {
    if value > 1e9 {
        value
    } else {
        now + value.max(0.0)
    }
}

/// The budget of one token (pure arithmetic; times are Unix seconds passed in).
#[derive(Clone, Debug, Default)]
pub struct Budget {
    sent: VecDeque<f64>,
    requests: Option<Window>,
    cost: Option<Window>,
    last_cost: f64,
    last_send: Option<f64>,
}

impl Budget {
    /// Seconds to wait, from `now`, before the next request may go out.
    pub fn delay(&self, now: f64) -> f64 {
        let mut wait: f64 = 0.0;
        // Burst: at most BURST_REQUESTS sends within any BURST_WINDOW.
        let recent: Vec<f64> = self
            .sent
            .iter()
            .copied()
            .filter(|t| *t > now - BURST_WINDOW)
            .collect();
        if recent.len() >= BURST_REQUESTS {
            let oldest = recent[recent.len() - BURST_REQUESTS];
            wait = wait.max(oldest + BURST_WINDOW - now);
        }
        if let Some(w) = self.requests {
            wait = wait.max(self.window_wait(w, 1.0, now));
        }
        if let Some(w) = self.cost {
            wait = wait.max(self.window_wait(w, self.last_cost.max(1.0), now));
        }
        wait.max(0.0)
    }

    /// The wait a window imposes when each request uses `per_request` of it.
    fn window_wait(&self, w: Window, per_request: f64, now: f64) -> f64 {
        if w.reset_at <= now {
            return 0.0; // the window is over: a fresh budget
        }
        let left = (w.remaining / per_request).floor();
        if left < 1.0 {
            return w.reset_at - now;
        }
        if w.remaining >= w.limit * RESERVE {
            return 0.0;
        }
        let interval = (w.reset_at - now) / left;
        match self.last_send {
            Some(last) => (last + interval - now).max(0.0),
            None => 0.0,
        }
    }

    /// Record a request sent at `at` (counted against the burst and the remaining budgets
    /// until the next answer reports the real figures).
    pub fn record_send(&mut self, at: f64) {
        self.sent.push_back(at);
        while self.sent.len() > BURST_REQUESTS {
            self.sent.pop_front();
        }
        self.last_send = Some(self.last_send.map_or(at, |l| l.max(at)));
        if let Some(w) = self.requests.as_mut() {
            w.remaining = (w.remaining - 1.0).max(0.0);
        }
        let cost = self.last_cost.max(1.0);
        if let Some(w) = self.cost.as_mut() {
            w.remaining = (w.remaining - cost).max(0.0);
        }
    }

    /// Take in the figures of an answer received at `now`.
    pub fn observe(&mut self, o: &Observed, now: f64) {
        if let (Some(limit), Some(remaining)) = (o.limit, o.remaining) {
            let reset_at = o.reset.map_or(now + 3600.0, |r| reset_at(r, now));
            self.requests = Some(Window {
                limit,
                remaining,
                reset_at,
            });
        }
        if let Some(cost) = o.cost {
            self.last_cost = cost;
        }
        if let (Some(limit), Some(remaining)) = (o.cost_limit, o.cost_remaining) {
            let reset_at = o.cost_reset.map_or(now + 3600.0, |r| reset_at(r, now));
            self.cost = Some(Window {
                limit,
                remaining,
                reset_at,
            });
        }
    }

    /// Reserve the next slot: `Ok(wait)` when it is at most `max_wait` seconds away (the slot
    /// is recorded at `now + wait`); `Err(wait)` otherwise (nothing recorded).
    pub fn reserve(&mut self, now: f64, max_wait: f64) -> Result<f64, f64> {
        let wait = self.delay(now);
        if wait > max_wait {
            return Err(wait);
        }
        self.record_send(now + wait);
        Ok(wait)
    }
}

fn limiters() -> &'static Mutex<HashMap<String, Budget>> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Budget>>> = OnceLock::new();
    LIMITERS.get_or_init(Default::default)
}

/// Unix time in seconds (fractional).
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Reserve a slot for the token `key` (see [`Budget::reserve`]).
pub fn reserve(key: &str, max_wait: Duration) -> Result<Duration, Duration> {
    let mut map = limiters().lock();
    let budget = map.entry(key.to_string()).or_default();
    budget
        .reserve(now_secs(), max_wait.as_secs_f64())
        .map(Duration::from_secs_f64)
        .map_err(|w| Duration::from_secs_f64(w.ceil()))
}

/// Take in an answer's headers for the token `key`.
pub fn observe(key: &str, observed: &Observed) {
    let mut map = limiters().lock();
    map.entry(key.to_string())
        .or_default()
        .observe(observed, now_secs());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(limit: f64, remaining: f64, reset: f64) -> Observed {
        Observed {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(reset),
            ..Observed::default()
        }
    }

    #[test]
    fn the_twenty_first_request_in_two_seconds_waits() {
        let mut b = Budget::default();
        let t0 = 1_000.0;
        for i in 0..20 {
            let now = t0 + i as f64 * 0.01;
            assert_eq!(b.reserve(now, 10.0), Ok(0.0), "request {i}");
        }
        let now = t0 + 0.5;
        let wait = b.delay(now);
        // The first of the last 20 went at t0: the next may go at t0 + 2.
        assert!((wait - 1.5).abs() < 1e-9, "{wait}");
        assert_eq!(b.reserve(now, 1.0), Err(wait));
        assert_eq!(b.reserve(now, 2.0), Ok(wait));
        // After two quiet seconds the burst is free again.
        assert!(b.delay(t0 + 10.0) < 1e-9);
    }

    #[test]
    fn plenty_left_means_no_pacing() {
        let mut b = Budget::default();
        let now = 1_000.0;
        b.observe(&headers(3600.0, 3000.0, 1800.0), now);
        assert_eq!(b.delay(now), 0.0);
    }

    #[test]
    fn below_the_reserve_requests_are_spread_until_the_reset() {
        let mut b = Budget::default();
        let now = 1_000.0;
        // 100 requests left of 3600 (below 20 %), window resets in 1000 s: one per 10 s.
        b.observe(&headers(3600.0, 100.0, 1000.0), now);
        assert_eq!(b.reserve(now, 60.0), Ok(0.0)); // no send yet: go
                                                   // the send counted: 99 left, 1000 s → ~10.1 s after the last send
        let wait = b.delay(now);
        assert!((wait - 1000.0 / 99.0).abs() < 1e-6, "{wait}");
        // An epoch reset is read as such.
        let mut e = Budget::default();
        e.observe(
            &headers(3600.0, 100.0, 1_000_000_000.0 + 3_000.0),
            1_000_000_000.0,
        );
        e.record_send(1_000_000_000.0);
        let wait = e.delay(1_000_000_000.0);
        assert!((wait - 3000.0 / 99.0).abs() < 1e-6, "{wait}");
    }

    #[test]
    fn nothing_left_waits_for_the_reset_and_a_new_window_is_free() {
        let mut b = Budget::default();
        let now = 1_000.0;
        b.observe(&headers(3600.0, 0.0, 120.0), now);
        assert_eq!(b.delay(now), 120.0);
        assert_eq!(b.reserve(now, 60.0), Err(120.0));
        assert_eq!(b.delay(now + 120.0), 0.0);
    }

    #[test]
    fn the_cost_budget_counts_the_last_query_cost() {
        let mut b = Budget::default();
        let now = 1_000.0;
        b.observe(
            &Observed {
                cost_limit: Some(5000.0),
                cost: Some(12.0),
                cost_remaining: Some(5000.0 * RESERVE + 11.0),
                cost_reset: Some(600.0),
                ..Observed::default()
            },
            now,
        );
        // Still above the reserve: go. The send uses 12 points, dropping below it.
        assert_eq!(b.reserve(now, 1.0), Ok(0.0));
        let left = ((5000.0 * RESERVE - 1.0) / 12.0_f64).floor();
        let wait = b.delay(now);
        assert!(
            (wait - 600.0 / left).abs() < 1e-6,
            "{wait} vs {}",
            600.0 / left
        );
        // Fewer points than one query costs: wait for the reset.
        b.observe(
            &Observed {
                cost_limit: Some(5000.0),
                cost: Some(12.0),
                cost_remaining: Some(11.0),
                cost_reset: Some(300.0),
                ..Observed::default()
            },
            now,
        );
        assert_eq!(b.delay(now), 300.0);
    }

    #[test]
    fn headers_are_read_case_insensitively_by_the_caller() {
        let h = [("x-ratelimit-limit", "3600"), ("x-costlimit-cost", " 12 ")];
        let o = Observed::from_headers(|n| h.iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
        assert_eq!(o.limit, Some(3600.0));
        assert_eq!(o.cost, Some(12.0));
        assert_eq!(o.remaining, None);
        assert_eq!(reset_at(60.0, 1000.0), 1060.0);
        assert_eq!(reset_at(1_659_006_756.0, 1000.0), 1_659_006_756.0);
    }
}
