//! The scheduler loop of `ferry serve`: fires the ticks of every `scheduler.schedule` trigger
//! (the I/O half; when a tick falls is decided by the pure [`crate::recurrence`]).
//!
//! Each tick goes through the normal trigger pipeline ([`Engine::ingest_trusted`]) as one
//! event whose job carries the deduplication id `schedule:<solution>/<runbook>:<tick>` and
//! claims the key `tick:<tick>` in the trigger's key/value store in the same transaction as
//! the job insert, so a tick makes at most one job, whoever fires it (a restart, another
//! node). After the job is stored the trigger's `cursor` entry records the tick; at start-up
//! the ticks between the cursor and now were missed while Ferry was down, and the runbook's
//! `catch_up` decides: `one` runs one job for the last of them, `skip` logs and skips them.
//!
//! Time comes from a [`Clock`]: the system clock, or in tests a [`FileClock`] that reads the
//! current instant from a file (`FERRY_TEST_CLOCK_FILE`, honoured by debug builds only).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::compile::{CompiledRunbook, CompiledSolution};
use crate::connectors::scheduler::{tick_body, CatchUp, TRIGGER};
use crate::engine::Engine;
use crate::ingest::{InboundRequest, IngestOutcome};
use crate::kv::{trigger_namespace, Kv};
use crate::recurrence::Schedule;

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Whether this is a test clock (logged loudly at start-up).
    fn is_test(&self) -> bool {
        false
    }
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A test clock: the current instant is the RFC 3339 time written in a file, read at every
/// call, so that a test moves time by rewriting the file (also across restarts). An unreadable
/// file keeps the last instant read (the system time before the first), with a warning.
pub struct FileClock {
    path: PathBuf,
    last: Mutex<Option<DateTime<Utc>>>,
}

impl FileClock {
    /// A clock reading `path`.
    pub fn new(path: PathBuf) -> FileClock {
        FileClock {
            path,
            last: Mutex::new(None),
        }
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        let read = std::fs::read_to_string(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).map_err(|e| e.to_string()));
        let mut last = self.last.lock();
        match read {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                *last = Some(t);
                t
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "test clock file unreadable; keeping the last time");
                last.unwrap_or_else(Utc::now)
            }
        }
    }

    fn is_test(&self) -> bool {
        true
    }
}

/// A scheduled runbook: its checked schedule and catch-up rule.
#[derive(Clone)]
pub struct Scheduled {
    /// The solution.
    pub solution: Arc<CompiledSolution>,
    /// The runbook.
    pub runbook: Arc<CompiledRunbook>,
    /// When it fires.
    pub schedule: Schedule,
    /// What happens to ticks missed while Ferry was down.
    pub catch_up: CatchUp,
}

/// Every runbook of the loaded solutions that runs on a schedule (config problems were
/// refused when the solution was loaded; a config that still fails here is logged and left
/// out).
pub fn scheduled(engine: &Engine) -> Vec<Scheduled> {
    let mut out = Vec::new();
    for sol in engine.solutions() {
        for rb in sol.runbooks.values() {
            if rb.trigger_type != TRIGGER {
                continue;
            }
            match (
                Schedule::from_config(&rb.trigger_config),
                CatchUp::from_config(&rb.trigger_config),
            ) {
                (Ok(schedule), Ok(catch_up)) => out.push(Scheduled {
                    solution: sol.clone(),
                    runbook: rb.clone(),
                    schedule,
                    catch_up,
                }),
                (Err(e), _) => tracing::error!(
                    solution = %sol.name,
                    runbook = %rb.name,
                    error = %e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
                    "schedule invalid; it does not fire"
                ),
                (_, Err(e)) => {
                    tracing::error!(solution = %sol.name, runbook = %rb.name, error = %e, "schedule invalid; it does not fire")
                }
            }
        }
    }
    out
}

/// The stored position of a schedule: the last tick that has a job, and the instant up to
/// which ticks are dealt with (fired or skipped).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    /// The last tick fired (its job exists).
    pub last_tick: Option<DateTime<Utc>>,
    /// Ticks up to this instant are dealt with.
    pub handled_until: Option<DateTime<Utc>>,
}

const CURSOR_KEY: &str = "cursor";

fn kv<'a>(engine: &'a Engine, s: &Scheduled) -> Kv<'a> {
    Kv::new(
        engine.store.as_ref(),
        &engine.services.secrets,
        trigger_namespace(&s.solution.name, &s.runbook.name),
    )
}

fn instant(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Read a schedule's cursor.
pub async fn read_cursor(engine: &Engine, s: &Scheduled) -> Result<Cursor, String> {
    let v = kv(engine, s)
        .get(CURSOR_KEY)
        .await
        .map_err(|e| e.to_string())?;
    Ok(match v {
        None => Cursor::default(),
        Some(v) => Cursor {
            last_tick: instant(&v, "last_tick"),
            handled_until: instant(&v, "handled_until"),
        },
    })
}

async fn write_cursor(engine: &Engine, s: &Scheduled, c: &Cursor) -> Result<(), String> {
    let fmt = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
    kv(engine, s)
        .put(
            CURSOR_KEY,
            &json!({"last_tick": fmt(c.last_tick), "handled_until": fmt(c.handled_until)}),
            None,
        )
        .await
        .map_err(|e| e.to_string())
}

/// What firing a tick came to.
#[derive(Debug, PartialEq)]
enum Fired {
    /// The tick has its job (new, or made earlier by a restart or another node), or the
    /// runbook discarded it: it is done.
    Done,
    /// It could not be stored now (the store failed): try again at the next poll.
    Retry,
}

async fn fire(engine: &Engine, s: &Scheduled, tick: DateTime<Utc>, now: DateTime<Utc>) -> Fired {
    let (solution, runbook) = (s.solution.name.as_str(), s.runbook.name.as_str());
    let request = InboundRequest {
        method: "POST".into(),
        body: tick_body(tick, now).to_string().into(),
        ..InboundRequest::default()
    };
    let tick_s = tick.to_rfc3339();
    match engine.ingest_trusted(solution, runbook, request).await {
        IngestOutcome::Accepted { job_id, .. } => {
            tracing::info!(solution, runbook, tick = %tick_s, job = %job_id, "schedule tick: job created");
            Fired::Done
        }
        IngestOutcome::Duplicate { job_id } => {
            tracing::info!(solution, runbook, tick = %tick_s, job = %job_id, "schedule tick already has a job");
            Fired::Done
        }
        IngestOutcome::Rejected { status: 409, .. } => {
            tracing::info!(solution, runbook, tick = %tick_s, "schedule tick already claimed (an earlier run or another node)");
            Fired::Done
        }
        IngestOutcome::Discarded { message } => {
            tracing::info!(solution, runbook, tick = %tick_s, %message, "schedule tick discarded");
            Fired::Done
        }
        IngestOutcome::Rejected { status, message } if status >= 500 => {
            tracing::error!(solution, runbook, tick = %tick_s, status, %message, "schedule tick could not be stored; retrying");
            Fired::Retry
        }
        IngestOutcome::Rejected { status, message } => {
            tracing::error!(solution, runbook, tick = %tick_s, status, %message, "schedule tick refused by the trigger pipeline; no job");
            Fired::Done
        }
        IngestOutcome::Responded { .. } => Fired::Done,
    }
}

/// Most missed ticks counted one by one for the log (beyond it the count says "at least").
const COUNT_CAP: usize = 10_000;

/// State of one schedule inside the loop.
struct Slot {
    s: Scheduled,
    cursor: Cursor,
    /// Whether the start-up pass (catch-up of ticks missed while down) is done: until its
    /// position is saved, a failed pass is retried as a start-up pass.
    started: bool,
    /// Whether its solution was in draft mode at the last look (its ticks are not run; once
    /// the solution is live the schedule starts from that moment).
    paused: bool,
}

/// Deal with ticks in `(handled_until, now]`: at start-up they were missed while Ferry was
/// down and `catch_up` decides; later they are simply due, and the last of them fires (more
/// than one only when the loop fell behind, which is logged).
async fn step(engine: &Engine, slot: &mut Slot, now: DateTime<Utc>, at_start: bool) {
    let s = &slot.s;
    let (solution, runbook) = (s.solution.name.as_str(), s.runbook.name.as_str());
    let Some(from) = slot.cursor.handled_until else {
        // First time this schedule is served: it starts now.
        let c = Cursor {
            last_tick: None,
            handled_until: Some(now),
        };
        match write_cursor(engine, s, &c).await {
            Ok(()) => {
                tracing::info!(solution, runbook, schedule = %s.schedule.describe(), next = ?s.schedule.next_after(now).map(|t| t.to_rfc3339()), "schedule started");
                slot.cursor = c;
                slot.started = true;
            }
            Err(e) => {
                tracing::error!(solution, runbook, error = %e, "schedule: saving its position failed; retrying")
            }
        }
        return;
    };
    let (count, last) = s.schedule.due_between(from, now, COUNT_CAP);
    let Some(last) = last else {
        slot.started = true;
        return;
    };
    let more = if count >= COUNT_CAP { "at least " } else { "" };
    let mut cursor = slot.cursor.clone();
    if at_start && s.catch_up == CatchUp::Skip {
        tracing::warn!(
            solution,
            runbook,
            missed = count,
            last = %last.to_rfc3339(),
            "schedule: skipping {more}{count} tick(s) that fell due while Ferry was not running (catch_up: skip)"
        );
    } else {
        if at_start {
            tracing::warn!(
                solution,
                runbook,
                missed = count,
                last = %last.to_rfc3339(),
                "schedule: {more}{count} tick(s) fell due while Ferry was not running; running the last one once (catch_up: one)"
            );
        } else if count > 1 {
            tracing::warn!(solution, runbook, missed = count - 1, "schedule: the scheduler fell behind; {more}{} earlier tick(s) skipped, running the last", count - 1);
        }
        if fire(engine, s, last, now).await == Fired::Retry {
            return;
        }
        cursor.last_tick = Some(last);
    }
    cursor.handled_until = Some(if at_start { now.max(last) } else { last });
    match write_cursor(engine, s, &cursor).await {
        Ok(()) => {
            slot.cursor = cursor;
            slot.started = true;
        }
        // The tick's job is stored; firing it again is refused by its claim.
        Err(e) => {
            tracing::error!(solution, runbook, error = %e, "schedule: saving its position failed; retrying")
        }
    }
}

/// Fire the schedules of every loaded solution until [`Engine::begin_shutdown`], looking at
/// the clock every `poll`.
///
/// The set of schedules follows reloads ([`Engine::deploy_generation`]): a schedule whose
/// runbook and rule are unchanged keeps its state, an added or changed one starts as at
/// start-up (from its stored cursor), and a removed one stops. The schedules of a solution in
/// draft mode do not fire; when it is promoted they start from that moment (ticks that fell
/// while it was in draft are not run).
pub async fn run_scheduler(engine: Arc<Engine>, poll: Duration) {
    let clock = engine.clock();
    let mut slots: Vec<Slot> = Vec::new();
    let mut generation = None;
    let mut warned = false;
    loop {
        let g = engine.deploy_generation();
        if generation != Some(g) {
            let reloaded = generation.is_some();
            match rebuild(&engine, std::mem::take(&mut slots), reloaded, poll).await {
                Some(s) => slots = s,
                None => return,
            }
            generation = Some(g);
            if !slots.is_empty() && clock.is_test() && !warned {
                warned = true;
                tracing::warn!(
                    "schedules run on the TEST CLOCK (FERRY_TEST_CLOCK_FILE); not for production"
                );
            }
        }
        let now = clock.now();
        for slot in &mut slots {
            let solution = slot.s.solution.name.clone();
            if engine.mode(&solution) == crate::versions::Mode::Draft {
                if !slot.paused {
                    tracing::info!(solution = %solution, runbook = %slot.s.runbook.name, "schedule paused: the solution is in draft mode");
                    slot.paused = true;
                }
                continue;
            }
            if slot.paused {
                resume(&engine, slot, now).await;
                continue;
            }
            let at_start = !slot.started;
            step(&engine, slot, now, at_start).await;
        }
        if sleep_or_stop(&engine, poll).await {
            return;
        }
    }
}

/// A schedule of a solution that left draft mode starts now: the ticks up to now are dealt
/// with, none of them runs.
async fn resume(engine: &Engine, slot: &mut Slot, now: DateTime<Utc>) {
    let s = &slot.s;
    let c = Cursor {
        last_tick: slot.cursor.last_tick,
        handled_until: Some(now),
    };
    match write_cursor(engine, s, &c).await {
        Ok(()) => {
            tracing::info!(solution = %s.solution.name, runbook = %s.runbook.name, next = ?s.schedule.next_after(now).map(|t| t.to_rfc3339()), "schedule started: the solution is live");
            slot.cursor = c;
            slot.started = true;
            slot.paused = false;
        }
        Err(e) => {
            tracing::error!(solution = %s.solution.name, runbook = %s.runbook.name, error = %e, "schedule: saving its position failed; retrying")
        }
    }
}

/// The slots of the schedules now served, keeping the state of those that did not change.
/// `None` when shutdown began while a cursor could not be read.
async fn rebuild(
    engine: &Engine,
    mut old: Vec<Slot>,
    reloaded: bool,
    poll: Duration,
) -> Option<Vec<Slot>> {
    let mut slots = Vec::new();
    for s in scheduled(engine) {
        let same = old.iter().position(|o| {
            o.s.solution.name == s.solution.name
                && o.s.runbook.name == s.runbook.name
                && o.s.runbook.trigger_config == s.runbook.trigger_config
        });
        if let Some(i) = same {
            let mut slot = old.swap_remove(i);
            slot.s = s;
            slots.push(slot);
            continue;
        }
        let cursor = loop {
            match read_cursor(engine, &s).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(solution = %s.solution.name, runbook = %s.runbook.name, error = %e, "schedule: reading its position failed; retrying");
                    if sleep_or_stop(engine, poll.max(Duration::from_secs(1))).await {
                        return None;
                    }
                }
            }
        };
        if reloaded {
            tracing::info!(solution = %s.solution.name, runbook = %s.runbook.name, schedule = %s.schedule.describe(), "schedule added or changed by a reload");
        }
        slots.push(Slot {
            s,
            cursor,
            started: false,
            paused: false,
        });
    }
    for gone in old {
        tracing::info!(solution = %gone.s.solution.name, runbook = %gone.s.runbook.name, "schedule removed or changed by a reload; the old rule no longer fires");
    }
    Some(slots)
}

/// Sleep `d`, waking early on shutdown; returns whether shutdown began.
async fn sleep_or_stop(engine: &Engine, d: Duration) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        if engine.is_stopping() {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return false;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(250))).await;
    }
}

/// A schedule as `ferry schedules list` and the API show it.
#[derive(Clone, Debug)]
pub struct ScheduleStatus {
    /// Solution.
    pub solution: String,
    /// Runbook.
    pub runbook: String,
    /// The rule in words, with its time zone.
    pub description: String,
    /// Time zone.
    pub time_zone: String,
    /// `one` or `skip`.
    pub catch_up: &'static str,
    /// Whether the schedule is disabled.
    pub disabled: bool,
    /// The last tick fired.
    pub last_tick: Option<DateTime<Utc>>,
    /// The next ticks, in order.
    pub next_runs: Vec<DateTime<Utc>>,
}

/// The schedules of the loaded solutions with their next `count` run times (after the clock's
/// now, or after the last dealt-with tick when that is later).
pub async fn list(engine: &Engine, count: usize) -> Result<Vec<ScheduleStatus>, String> {
    let now = engine.clock().now();
    let mut out = Vec::new();
    for s in scheduled(engine) {
        let cursor = read_cursor(engine, &s).await?;
        let after = cursor.handled_until.map_or(now, |h| h.max(now));
        out.push(ScheduleStatus {
            solution: s.solution.name.clone(),
            runbook: s.runbook.name.clone(),
            description: s.schedule.describe(),
            time_zone: s.schedule.time_zone.name().to_string(),
            catch_up: s.catch_up.as_str(),
            disabled: s.schedule.disabled,
            last_tick: cursor.last_tick,
            next_runs: s.schedule.upcoming(after, count),
        });
    }
    Ok(out)
}
