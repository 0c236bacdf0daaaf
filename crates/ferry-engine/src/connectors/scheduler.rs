//! Scheduler connector (runtime_model §9.2): the `scheduler.schedule` trigger, which starts
//! its runbook on a recurrence or cron expression in a time zone. The ticks themselves are
//! computed by [`crate::recurrence`] and fired by the [`crate::scheduler`] loop of `ferry
//! serve`; this module is the trigger those ticks go through (it never answers HTTP).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::schema::{Field, FieldType, Schema};
use serde_json::{json, Value};

use crate::connector::ConnectorSpec;
use crate::recurrence::Schedule;
use crate::registry::Registry;
use crate::trigger::{
    Parsed, Trigger, TriggerClaim, TriggerContext, TriggerError, TriggerParse, TriggerSpec,
};

/// Registry name of the trigger.
pub const TRIGGER: &str = "scheduler.schedule";

/// How long a tick's claim is kept in the trigger's key/value store.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);

/// Register the scheduler connector.
pub fn register(r: &mut Registry) {
    r.connector(ConnectorSpec::new(
        "scheduler",
        "Start a runbook on a schedule (recurrence or cron, in a time zone)",
    ));
    r.trigger(ScheduleTrigger::new());
}

/// What a schedule does with ticks that fell due while Ferry was not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Run one job, for the last missed tick.
    One,
    /// Run nothing; log the missed ticks.
    Skip,
}

impl CatchUp {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::One => "one",
            CatchUp::Skip => "skip",
        }
    }

    /// Read the `catch_up` config value (default `one`).
    pub fn from_config(config: &Value) -> Result<CatchUp, String> {
        match config.get("catch_up") {
            None | Some(Value::Null) => Ok(CatchUp::One),
            Some(Value::String(s)) if s == "one" => Ok(CatchUp::One),
            Some(Value::String(s)) if s == "skip" => Ok(CatchUp::Skip),
            Some(other) => Err(format!("{other} should be one of one, skip")),
        }
    }
}

/// The deduplication id of a tick's job: `schedule:<solution>/<runbook>:<tick, RFC 3339 UTC>`.
pub fn tick_id(solution: &str, runbook: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{solution}/{runbook}:{}",
        tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The request body the scheduler hands the trigger for a tick.
pub fn tick_body(tick: DateTime<Utc>, now: DateTime<Utc>) -> Value {
    json!({
        "scheduled_for": tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "triggered_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The `scheduler.schedule` trigger.
pub struct ScheduleTrigger(TriggerSpec);

impl ScheduleTrigger {
    fn new() -> Self {
        ScheduleTrigger(TriggerSpec {
            name: TRIGGER,
            description: "Start the runbook on a recurrence or a cron expression, in a time zone",
            config: vec![
                Field::new("schedule", FieldType::Hash).hint(
                    "A recurrence: frequency, interval, time_of_day, time_zone, day, day_of_month, …",
                ),
                Field::new("cron", FieldType::String)
                    .hint("A cron expression instead of a recurrence, e.g. '30 2 * * 1-5'"),
                Field::new("time_zone", FieldType::String)
                    .hint("The time zone of a cron expression (IANA name, default UTC)"),
                Field::new("catch_up", FieldType::String)
                    .hint("`one` (default): a tick missed while Ferry was down runs once at start-up; `skip`: it is logged and skipped"),
                Field::new("request_body", FieldType::Hash)
                    .hint("Fixed data handed to every job as trigger.body"),
            ],
            connection: None,
        })
    }
}

#[async_trait]
impl Trigger for ScheduleTrigger {
    fn spec(&self) -> &TriggerSpec {
        &self.0
    }

    fn output_schema(&self, _config: &Value) -> Result<Schema, String> {
        Ok(Schema::new(
            "output",
            vec![
                Field::new("body", FieldType::Hash),
                Field::new("scheduled_for", FieldType::DateTime).required(),
                Field::new("triggered_at", FieldType::DateTime).required(),
                Field::new("deduplication_id", FieldType::String),
            ],
        ))
    }

    fn internal_only(&self) -> bool {
        true
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        let mut problems: Vec<(String, String)> = match Schedule::from_config(config) {
            Ok(_) => vec![],
            Err(errors) => errors.into_iter().map(|e| (e.path, e.message)).collect(),
        };
        if let Err(e) = CatchUp::from_config(config) {
            problems.push(("catch_up".into(), e));
        }
        if config.get("schedule").is_some_and(|s| !s.is_null())
            && config.get("time_zone").is_some_and(|s| !s.is_null())
        {
            problems.push((
                "time_zone".into(),
                "a recurrence has its own time_zone (schedule.time_zone); this one is for cron"
                    .into(),
            ));
        }
        problems
    }

    /// The scheduler's request carries the tick (`scheduled_for`) and `triggered_at`; a
    /// request without them (`ferry run` with an empty event) is a tick at the current time.
    async fn parse(&self, ctx: &TriggerContext<'_>) -> Result<Parsed, TriggerError> {
        let body: Value = if ctx.request.body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(&ctx.request.body)
                .map_err(|_| TriggerError::bad_request("The tick could not be read"))?
        };
        let now = Utc::now();
        let instant = |key: &str| -> Result<Option<DateTime<Utc>>, TriggerError> {
            match body.get(key).and_then(Value::as_str) {
                None => Ok(None),
                Some(s) => DateTime::parse_from_rfc3339(s)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|_| TriggerError::bad_request(format!("{key}: not an RFC 3339 time"))),
            }
        };
        let triggered_at = instant("triggered_at")?.unwrap_or(now);
        let tick = instant("scheduled_for")?.unwrap_or(triggered_at);
        let id = ctx
            .kv
            .namespace()
            .strip_suffix("#trigger")
            .unwrap_or(ctx.kv.namespace())
            .to_string();
        let (solution, runbook) = id.split_once('/').unwrap_or((&id, ""));
        let dedup = tick_id(solution, runbook, tick);
        let claim_key = format!(
            "tick:{}",
            tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let claim = TriggerClaim {
            claim: ctx.kv.claim(&claim_key, &json!(dedup), Some(CLAIM_TTL)),
            status: 409,
            message: format!("The schedule tick {claim_key} already has a job"),
            detail: "schedule tick already claimed (an earlier run or another node)".into(),
        };
        let output = json!({
            "body": ctx.config.get("request_body").cloned().unwrap_or(json!({})),
            "scheduled_for": tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "triggered_at": triggered_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "deduplication_id": dedup,
        });
        Ok(Parsed::Event(TriggerParse {
            output,
            context_id: None,
            claims: vec![claim],
        }))
    }
}
