//! When a schedule fires: recurrences (runtime_model §4.5) and cron expressions, in a time
//! zone. Pure code, no I/O and no clock: [`Schedule::next_after`] answers "the first tick
//! strictly after this instant".
//!
//! Local times that do not exist (the hour skipped when clocks go forward) fire at the first
//! valid time after the gap (a 02:30 tick fires at 03:00 that day); local times that exist
//! twice (the hour repeated when clocks go back) fire once, at the first of the two. Cron
//! expressions (the `croner` crate) follow the same rules for fixed times. Every N minutes or
//! hours counts elapsed time, so it is unaffected by clock changes.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::Value;

/// How often a recurrence repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frequency {
    /// Once, at `start_date` and the (first) time of day.
    NoRepeat,
    /// Every `interval` minutes.
    Minutely,
    /// Every `interval` hours.
    Hourly,
    /// Every `interval` days.
    Daily,
    /// Every `interval` weeks, on the listed days.
    Weekly,
    /// Every `interval` months, on days of the month or the nth weekday.
    Monthly,
    /// Every `interval` years, in the listed months.
    Yearly,
}

const FREQUENCIES: [&str; 7] = [
    "no_repeat",
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
];

/// The keys a recurrence accepts.
pub const RECURRENCE_KEYS: [&str; 13] = [
    "frequency",
    "disabled",
    "time_zone",
    "interval",
    "time_of_day",
    "start_date",
    "end_date",
    "day",
    "day_of_week",
    "day_of_month",
    "day_of_week_index",
    "day_of_week_day",
    "month_of_year",
];

/// A recurrence rule (runtime_model §4.5).
#[derive(Clone, Debug)]
pub struct Recurrence {
    frequency: Frequency,
    interval: u32,
    times: Vec<NaiveTime>,
    start_date: NaiveDate,
    end_date: Option<NaiveDate>,
    days: Vec<Weekday>,
    days_of_month: Vec<i32>,
    nth_weekday: Option<(i32, Weekday)>,
    months: Vec<u32>,
}

/// What decides the ticks.
#[derive(Clone, Debug)]
pub enum Rule {
    /// A recurrence.
    Recurrence(Recurrence),
    /// A cron expression (5 fields, or 6 with seconds first).
    Cron(Box<croner::Cron>),
}

/// A checked schedule: a rule in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The rule.
    pub rule: Rule,
    /// The time zone local times are read in.
    pub time_zone: Tz,
    /// A disabled schedule never fires.
    pub disabled: bool,
}

/// A problem in a schedule definition: the config path it concerns and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    /// Dotted path inside the trigger config, e.g. `schedule.time_of_day`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The furthest a search for the next tick looks ahead (400 years: every calendar pattern
/// repeats within that span, so a rule without a tick in it never fires).
const HORIZON_DAYS: i64 = 146_097;

/// A time zone by IANA name (`Europe/Amsterdam`) or `UTC`.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("unknown time zone '{name}' (use an IANA name such as Europe/Amsterdam, or UTC)")
    })
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    let t = text.trim();
    NaiveTime::parse_from_str(t, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Schedule {
    /// Read a schedule from a trigger config: `schedule` (a recurrence) or `cron` (an
    /// expression, read in `time_zone`, default UTC). Returns every problem found, each with
    /// its config path; a rule that can never fire is a problem too.
    pub fn from_config(config: &Value) -> Result<Schedule, Vec<ScheduleError>> {
        let mut errors = Vec::new();
        let err = |errors: &mut Vec<ScheduleError>, path: &str, message: String| {
            errors.push(ScheduleError {
                path: path.to_string(),
                message,
            })
        };
        let recurrence = config.get("schedule").filter(|v| !v.is_null());
        let cron = config.get("cron").filter(|v| !v.is_null());
        let schedule = match (recurrence, cron) {
            (Some(_), Some(_)) => {
                err(
                    &mut errors,
                    "cron",
                    "give either 'schedule' (a recurrence) or 'cron', not both".into(),
                );
                return Err(errors);
            }
            (None, None) => {
                err(
                    &mut errors,
                    "schedule",
                    "a schedule trigger needs 'schedule' (a recurrence) or 'cron' (an expression)"
                        .into(),
                );
                return Err(errors);
            }
            (None, Some(cron)) => {
                let tz = match config.get("time_zone").and_then(Value::as_str) {
                    None => Tz::UTC,
                    Some(name) => match parse_time_zone(name) {
                        Ok(tz) => tz,
                        Err(e) => {
                            err(&mut errors, "time_zone", e);
                            Tz::UTC
                        }
                    },
                };
                let rule = match cron.as_str().map(|s| croner::Cron::from_str(s.trim())) {
                    Some(Ok(c)) => Some(Rule::Cron(Box::new(c))),
                    Some(Err(e)) => {
                        err(&mut errors, "cron", format!("invalid cron expression: {e}"));
                        None
                    }
                    None => {
                        err(
                            &mut errors,
                            "cron",
                            "must be a string such as '30 2 * * *'".into(),
                        );
                        None
                    }
                };
                rule.map(|rule| Schedule {
                    rule,
                    time_zone: tz,
                    disabled: false,
                })
            }
            (Some(r), None) => Recurrence::parse(r, &mut errors),
        };
        match schedule {
            Some(s) if errors.is_empty() => {
                if !s.disabled && s.first_tick().is_none() {
                    let path = if matches!(s.rule, Rule::Cron(_)) {
                        "cron"
                    } else {
                        "schedule"
                    };
                    err(
                        &mut errors,
                        path,
                        "this schedule never fires (no date matches it, or it ends before it starts)"
                            .into(),
                    );
                    return Err(errors);
                }
                Ok(s)
            }
            _ => Err(errors),
        }
    }

    /// The first tick the rule ever has (for recurrences: from `start_date` on; for cron:
    /// within 400 years of 2000-01-01).
    fn first_tick(&self) -> Option<DateTime<Utc>> {
        let from = match &self.rule {
            Rule::Recurrence(r) => {
                self.local_instant(r.start_date, NaiveTime::MIN) - Duration::seconds(1)
            }
            Rule::Cron(_) => Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single()?,
        };
        self.next_after(from)
    }

    /// The first tick strictly after `after`, or `None` when there is none (disabled, past
    /// the end date, or no matching date within 400 years).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.disabled {
            return None;
        }
        match &self.rule {
            Rule::Cron(cron) => {
                let local = after.with_timezone(&self.time_zone);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
            Rule::Recurrence(r) => r.next_after(self, after),
        }
    }

    /// Up to `n` ticks after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The ticks in `(after, until]`: how many there are (counting stops at `cap`) and the
    /// last one.
    pub fn due_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: usize,
    ) -> (usize, Option<DateTime<Utc>>) {
        let mut count = 0;
        let mut last = None;
        let mut t = after;
        while let Some(next) = self.next_after(t).filter(|n| *n <= until) {
            count += 1;
            last = Some(next);
            t = next;
            if count >= cap {
                // Jump to the last tick before `until` without counting the rest.
                if let Some(l) = self.last_at_or_before(t, until) {
                    last = Some(l);
                }
                break;
            }
        }
        (count, last)
    }

    /// The last tick in `(after, until]`, found by stepping (used past the counting cap).
    fn last_at_or_before(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        // Back off from `until` in growing windows until a window holds a tick.
        let mut window = Duration::hours(1);
        loop {
            let from = (until - window).max(after);
            let mut last = None;
            let mut t = from;
            while let Some(next) = self.next_after(t).filter(|n| *n <= until) {
                last = Some(next);
                t = next;
            }
            if last.is_some() || from == after {
                return last;
            }
            window = window * 4;
        }
    }

    /// A plain description, e.g. `cron '30 2 * * *' in Europe/Amsterdam`.
    pub fn describe(&self) -> String {
        let tz = self.time_zone.name();
        let what = match &self.rule {
            Rule::Cron(c) => format!("cron '{}'", c.pattern.as_str()),
            Rule::Recurrence(r) => r.describe(),
        };
        if self.disabled {
            format!("{what} in {tz} (disabled)")
        } else {
            format!("{what} in {tz}")
        }
    }

    /// The instant of a local date and time in the schedule's zone: a time in a gap becomes
    /// the first valid time after it, a repeated time its first occurrence.
    fn local_instant(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        local_instant(&self.time_zone, date, time)
    }
}

/// See [`Schedule::local_instant`].
pub fn local_instant(tz: &Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = date.and_time(time);
    if let Some(t) = tz.from_local_datetime(&naive).earliest() {
        return t.with_timezone(&Utc);
    }
    // In a gap: the first minute that exists (gaps start and end on whole minutes).
    let mut probe = naive
        .with_second(0)
        .and_then(|p| p.with_nanosecond(0))
        .unwrap_or(naive);
    for _ in 0..(48 * 60) {
        probe += Duration::minutes(1);
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    // No zone has a gap of two days; fall back to reading the time as UTC.
    Utc.from_utc_datetime(&naive)
}

use chrono::Timelike as _;

impl Recurrence {
    fn parse(v: &Value, errors: &mut Vec<ScheduleError>) -> Option<Schedule> {
        let err = |errors: &mut Vec<ScheduleError>, key: &str, message: String| {
            errors.push(ScheduleError {
                path: format!("schedule.{key}"),
                message,
            })
        };
        let Value::Object(map) = v else {
            errors.push(ScheduleError {
                path: "schedule".into(),
                message: "must be a mapping (frequency, interval, time_of_day, time_zone, …)"
                    .into(),
            });
            return None;
        };
        for k in map.keys() {
            if !RECURRENCE_KEYS.contains(&k.as_str()) {
                err(
                    errors,
                    k,
                    format!("unknown key (allowed: {})", RECURRENCE_KEYS.join(", ")),
                );
            }
        }
        let disabled = match map.get("disabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                err(errors, "disabled", "must be true or false".into());
                false
            }
        };
        let frequency = match map.get("frequency").and_then(Value::as_str) {
            Some("no_repeat") => Frequency::NoRepeat,
            Some("minutely") => Frequency::Minutely,
            Some("hourly") => Frequency::Hourly,
            Some("daily") => Frequency::Daily,
            Some("weekly") => Frequency::Weekly,
            Some("monthly") => Frequency::Monthly,
            Some("yearly") => Frequency::Yearly,
            Some(other) => {
                err(
                    errors,
                    "frequency",
                    format!("'{other}' should be one of {}", FREQUENCIES.join(", ")),
                );
                return None;
            }
            None => {
                err(
                    errors,
                    "frequency",
                    format!("required: one of {}", FREQUENCIES.join(", ")),
                );
                return None;
            }
        };
        let time_zone = match map.get("time_zone") {
            None | Some(Value::Null) => Tz::UTC,
            Some(Value::String(s)) => match parse_time_zone(s) {
                Ok(tz) => tz,
                Err(e) => {
                    err(errors, "time_zone", e);
                    Tz::UTC
                }
            },
            Some(_) => {
                err(errors, "time_zone", "must be a time zone name".into());
                Tz::UTC
            }
        };
        let interval = match map.get("interval") {
            None | Some(Value::Null) => 1,
            Some(v) => match as_int(v) {
                Some(n) if (1..=10_000).contains(&n) => n as u32,
                _ => {
                    err(
                        errors,
                        "interval",
                        format!("{v} is not a whole number from 1 to 10000"),
                    );
                    1
                }
            },
        };
        let mut times = Vec::new();
        if let Some(v) = map.get("time_of_day") {
            for t in as_list(v) {
                match t.as_str().and_then(parse_time) {
                    Some(t) => times.push(t),
                    None => err(
                        errors,
                        "time_of_day",
                        format!("{t} is not a time of day (HH:MM or HH:MM:SS, 00:00 to 23:59:59)"),
                    ),
                }
            }
        }
        times.sort();
        times.dedup();
        let needs_time = matches!(
            frequency,
            Frequency::NoRepeat
                | Frequency::Daily
                | Frequency::Weekly
                | Frequency::Monthly
                | Frequency::Yearly
        );
        if times.is_empty() && needs_time && !map.contains_key("time_of_day") {
            err(
                errors,
                "time_of_day",
                "required for this frequency (e.g. '08:30' or a list of times)".into(),
            );
        }
        if matches!(frequency, Frequency::Minutely | Frequency::Hourly) && times.len() > 1 {
            err(
                errors,
                "time_of_day",
                "give one time (the first run) for minutely and hourly schedules".into(),
            );
        }
        let date = |errors: &mut Vec<ScheduleError>, key: &str| -> Option<NaiveDate> {
            match map.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => {
                        err(errors, key, format!("'{s}' is not a date (YYYY-MM-DD)"));
                        None
                    }
                },
                Some(v) => {
                    err(errors, key, format!("{v} is not a date (YYYY-MM-DD)"));
                    None
                }
            }
        };
        let start = date(errors, "start_date");
        let end_date = date(errors, "end_date");
        if frequency == Frequency::NoRepeat && start.is_none() && map.get("start_date").is_none() {
            err(
                errors,
                "start_date",
                "required for a schedule that does not repeat".into(),
            );
        }
        let start_date = start.unwrap_or(NaiveDate::from_ymd_opt(1970, 1, 1)?);
        if let (Some(s), Some(e)) = (start, end_date) {
            if s > e {
                err(
                    errors,
                    "start_date",
                    format!("should be on or before {e} (the end_date)"),
                );
            }
        }
        let mut days = Vec::new();
        if let Some(v) = map.get("day") {
            for d in as_list(v) {
                match d.as_str().and_then(weekday) {
                    Some(w) => days.push(w),
                    None => err(
                        errors,
                        "day",
                        format!("{d} is not a weekday (monday … sunday)"),
                    ),
                }
            }
        }
        let mut days_of_month = Vec::new();
        if let Some(v) = map.get("day_of_month") {
            for d in as_list(v) {
                match as_int(d) {
                    Some(n) if (1..=31).contains(&n) || n == -1 => days_of_month.push(n as i32),
                    _ => err(
                        errors,
                        "day_of_month",
                        format!("{d} is not a day of the month (1 to 31, or -1 for the last)"),
                    ),
                }
            }
        }
        let by_weekday = match map.get("day_of_week") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                err(errors, "day_of_week", "must be true or false".into());
                false
            }
        };
        let mut nth_weekday = None;
        if by_weekday {
            let index = match map.get("day_of_week_index").and_then(as_int) {
                Some(n) if (1..=4).contains(&n) || n == -1 => Some(n as i32),
                _ => {
                    err(
                        errors,
                        "day_of_week_index",
                        "required with day_of_week: 1, 2, 3, 4, or -1 for the last".into(),
                    );
                    None
                }
            };
            let day = match map
                .get("day_of_week_day")
                .and_then(Value::as_str)
                .and_then(weekday)
            {
                Some(w) => Some(w),
                None => {
                    err(
                        errors,
                        "day_of_week_day",
                        "required with day_of_week: a weekday (monday … sunday)".into(),
                    );
                    None
                }
            };
            if let (Some(i), Some(d)) = (index, day) {
                nth_weekday = Some((i, d));
            }
        }
        let mut months = Vec::new();
        if let Some(v) = map.get("month_of_year") {
            for m in as_list(v) {
                match as_int(m) {
                    Some(n) if (1..=12).contains(&n) => months.push(n as u32),
                    _ => err(
                        errors,
                        "month_of_year",
                        format!("{m} is not a month (1 to 12)"),
                    ),
                }
            }
        }
        if frequency == Frequency::Weekly && days.is_empty() && !map.contains_key("day") {
            err(
                errors,
                "day",
                "required for a weekly schedule: the weekdays (monday … sunday)".into(),
            );
        }
        if matches!(frequency, Frequency::Monthly | Frequency::Yearly)
            && !by_weekday
            && !map.contains_key("day_of_month")
        {
            err(
                errors,
                "day_of_month",
                "required for a monthly or yearly schedule (1 to 31, -1 for the last day), unless day_of_week is true".into(),
            );
        }
        if frequency == Frequency::Yearly && !map.contains_key("month_of_year") {
            err(
                errors,
                "month_of_year",
                "required for a yearly schedule: the months (1 to 12)".into(),
            );
        }
        if !errors.is_empty() {
            return None;
        }
        if days.is_empty() {
            days.push(start_date.weekday());
        }
        if days_of_month.is_empty() && nth_weekday.is_none() {
            days_of_month.push(start_date.day() as i32);
        }
        if months.is_empty() {
            months.push(start_date.month());
        }
        if times.is_empty() {
            times.push(NaiveTime::MIN);
        }
        Some(Schedule {
            rule: Rule::Recurrence(Recurrence {
                frequency,
                interval,
                times,
                start_date,
                end_date,
                days,
                days_of_month,
                nth_weekday,
                months,
            }),
            time_zone,
            disabled,
        })
    }

    fn next_after(&self, s: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = &s.time_zone;
        match self.frequency {
            Frequency::Minutely | Frequency::Hourly => {
                let step = if self.frequency == Frequency::Minutely {
                    Duration::minutes(self.interval as i64)
                } else {
                    Duration::hours(self.interval as i64)
                };
                let anchor = local_instant(tz, self.start_date, self.times[0]);
                let next = if after < anchor {
                    anchor
                } else {
                    let k = (after - anchor).num_seconds() / step.num_seconds() + 1;
                    anchor + step * (k as i32)
                };
                match self.end_date {
                    Some(end) if next.with_timezone(tz).date_naive() > end => None,
                    _ => Some(next),
                }
            }
            _ => {
                // Start one day early: a tick late on the previous local day can fall after
                // `after` once a gap shifts it.
                let from_local = after.with_timezone(tz).date_naive() - Duration::days(1);
                let mut date = from_local.max(self.start_date);
                for _ in 0..HORIZON_DAYS {
                    if let Some(end) = self.end_date {
                        if date > end {
                            return None;
                        }
                    }
                    if self.matches(date) {
                        for t in &self.times {
                            let at = local_instant(tz, date, *t);
                            if at > after {
                                return Some(at);
                            }
                        }
                    }
                    date = date.succ_opt()?;
                }
                None
            }
        }
    }

    fn matches(&self, d: NaiveDate) -> bool {
        if d < self.start_date {
            return false;
        }
        let n = self.interval as i64;
        match self.frequency {
            Frequency::NoRepeat => d == self.start_date,
            Frequency::Minutely | Frequency::Hourly => true,
            Frequency::Daily => (d - self.start_date).num_days() % n == 0,
            Frequency::Weekly => {
                let monday =
                    |x: NaiveDate| x - Duration::days(x.weekday().num_days_from_monday() as i64);
                let weeks = (monday(d) - monday(self.start_date)).num_days() / 7;
                weeks % n == 0 && self.days.contains(&d.weekday())
            }
            Frequency::Monthly => {
                let months = (d.year() as i64 * 12 + d.month0() as i64)
                    - (self.start_date.year() as i64 * 12 + self.start_date.month0() as i64);
                months % n == 0 && self.day_matches(d)
            }
            Frequency::Yearly => {
                let years = (d.year() - self.start_date.year()) as i64;
                years % n == 0 && self.months.contains(&d.month()) && self.day_matches(d)
            }
        }
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let last = last_day_of_month(d);
        if let Some((index, wd)) = self.nth_weekday {
            if d.weekday() != wd {
                return false;
            }
            return if index == -1 {
                d.day() + 7 > last
            } else {
                (d.day() as i32 - 1) / 7 + 1 == index
            };
        }
        self.days_of_month
            .iter()
            .any(|&m| (m == -1 && d.day() == last) || m == d.day() as i32)
    }

    fn describe(&self) -> String {
        let every = |unit: &str| {
            if self.interval == 1 {
                format!("every {unit}")
            } else {
                format!("every {} {unit}s", self.interval)
            }
        };
        let times = self
            .times
            .iter()
            .map(|t| t.format("%H:%M").to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match self.frequency {
            Frequency::NoRepeat => format!("once on {} at {times}", self.start_date),
            Frequency::Minutely => every("minute"),
            Frequency::Hourly => every("hour"),
            Frequency::Daily => format!("{} at {times}", every("day")),
            Frequency::Weekly => format!(
                "{} on {} at {times}",
                every("week"),
                self.days
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Frequency::Monthly | Frequency::Yearly => {
                let unit = if self.frequency == Frequency::Monthly {
                    "month"
                } else {
                    "year"
                };
                let day = match self.nth_weekday {
                    Some((-1, wd)) => format!("the last {wd}"),
                    Some((i, wd)) => format!("{wd} #{i}"),
                    None => format!(
                        "day {}",
                        self.days_of_month
                            .iter()
                            .map(|d| if *d == -1 {
                                "last".to_string()
                            } else {
                                d.to_string()
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                if self.frequency == Frequency::Yearly {
                    format!(
                        "{} in month {} on {day} at {times}",
                        every(unit),
                        self.months
                            .iter()
                            .map(|m| m.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    format!("{} on {day} at {times}", every(unit))
                }
            }
        }
    }
}

fn last_day_of_month(d: NaiveDate) -> u32 {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|n| n.pred_opt())
        .map(|p| p.day())
        .unwrap_or(28)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(v: Value) -> Schedule {
        Schedule::from_config(&v).unwrap()
    }

    fn ticks(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        s.upcoming(utc(from), n)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn daily_0230_in_amsterdam_across_both_dst_changes() {
        let s = sched(
            json!({"schedule": {"frequency": "daily", "time_of_day": "02:30",
            "time_zone": "Europe/Amsterdam"}}),
        );
        // 2026-03-29: 02:00 → 03:00; the 02:30 tick fires once, at 03:00 CEST (01:00Z).
        assert_eq!(
            ticks(&s, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-30T00:30:00+00:00",
                "2026-03-31T00:30:00+00:00"
            ]
        );
        // 2026-10-25: 03:00 → 02:00; 02:30 exists twice and fires once, the first time (CEST).
        assert_eq!(
            ticks(&s, "2026-10-23T12:00:00Z", 4),
            [
                "2026-10-24T00:30:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-26T01:30:00+00:00",
                "2026-10-27T01:30:00+00:00"
            ]
        );
        // Asking again from just after the first 02:30 does not give the second one.
        assert_eq!(
            ticks(&s, "2026-10-25T00:30:00Z", 1),
            ["2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn cron_follows_the_same_dst_rules() {
        let s = sched(json!({"cron": "30 2 * * *", "time_zone": "Europe/Amsterdam"}));
        assert_eq!(
            ticks(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        assert_eq!(
            ticks(&s, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn every_n_minutes_and_hours_count_elapsed_time() {
        let s = sched(json!({"schedule": {"frequency": "minutely", "interval": 15}}));
        assert_eq!(
            ticks(&s, "2026-06-01T10:07:00Z", 3),
            [
                "2026-06-01T10:15:00+00:00",
                "2026-06-01T10:30:00+00:00",
                "2026-06-01T10:45:00+00:00"
            ]
        );
        // Hourly over the night the clocks go back: every real hour, no double, no gap.
        let s = sched(json!({"schedule": {"frequency": "hourly", "interval": 1,
            "time_of_day": "00:30", "time_zone": "Europe/Amsterdam"}}));
        assert_eq!(
            ticks(&s, "2026-10-24T23:00:00Z", 3),
            [
                "2026-10-24T23:30:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T01:30:00+00:00"
            ]
        );
    }

    #[test]
    fn weekly_monthly_yearly() {
        // Spec §10 74: every 2 weeks on Saturday and Sunday.
        let s = sched(
            json!({"schedule": {"frequency": "weekly", "time_zone": "UTC", "interval": 2,
            "day": ["saturday", "sunday"], "time_of_day": "16:55:50", "start_date": "2026-06-01"}}),
        );
        assert_eq!(
            ticks(&s, "2026-06-01T00:00:00Z", 4),
            [
                "2026-06-06T16:55:50+00:00",
                "2026-06-07T16:55:50+00:00",
                "2026-06-20T16:55:50+00:00",
                "2026-06-21T16:55:50+00:00"
            ]
        );
        // Monthly on the 31st and the last day: months without a 31st fire on the last day only.
        let s = sched(
            json!({"schedule": {"frequency": "monthly", "time_of_day": "08:00",
            "day_of_month": [31, -1]}}),
        );
        assert_eq!(
            ticks(&s, "2026-01-30T00:00:00Z", 3),
            [
                "2026-01-31T08:00:00+00:00",
                "2026-02-28T08:00:00+00:00",
                "2026-03-31T08:00:00+00:00"
            ]
        );
        // The second Tuesday and the last Friday.
        let s = sched(
            json!({"schedule": {"frequency": "monthly", "time_of_day": ["09:00"],
            "day_of_week": true, "day_of_week_index": 2, "day_of_week_day": "tuesday"}}),
        );
        assert_eq!(
            ticks(&s, "2026-06-01T00:00:00Z", 2),
            ["2026-06-09T09:00:00+00:00", "2026-07-14T09:00:00+00:00"]
        );
        let s = sched(
            json!({"schedule": {"frequency": "monthly", "time_of_day": "09:00",
            "day_of_week": true, "day_of_week_index": -1, "day_of_week_day": "friday"}}),
        );
        assert_eq!(
            ticks(&s, "2026-06-01T00:00:00Z", 1),
            ["2026-06-26T09:00:00+00:00"]
        );
        // 29 February: only in leap years.
        let s = sched(
            json!({"schedule": {"frequency": "yearly", "time_of_day": "12:00",
            "month_of_year": [2], "day_of_month": [29]}}),
        );
        assert_eq!(
            ticks(&s, "2026-06-01T00:00:00Z", 2),
            ["2028-02-29T12:00:00+00:00", "2032-02-29T12:00:00+00:00"]
        );
        // Several times a day; an end date.
        let s = sched(
            json!({"schedule": {"frequency": "daily", "time_of_day": ["17:00", "08:00"],
            "start_date": "2026-06-01", "end_date": "2026-06-02"}}),
        );
        assert_eq!(
            ticks(&s, "2026-05-01T00:00:00Z", 9),
            [
                "2026-06-01T08:00:00+00:00",
                "2026-06-01T17:00:00+00:00",
                "2026-06-02T08:00:00+00:00",
                "2026-06-02T17:00:00+00:00"
            ]
        );
    }

    #[test]
    fn impossible_and_invalid_schedules_are_refused_with_their_path() {
        let errors = |v: Value| {
            Schedule::from_config(&v)
                .unwrap_err()
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            errors(json!({"schedule": {"frequency": "yearly", "time_of_day": "12:00",
                "month_of_year": [2], "day_of_month": [30, 31]}})),
            ["schedule: this schedule never fires (no date matches it, or it ends before it starts)"]
        );
        assert_eq!(
            errors(json!({"schedule": {"frequency": "weekly", "day": ["monday"], "time_of_day": "35:55:50"}})),
            ["schedule.time_of_day: \"35:55:50\" is not a time of day (HH:MM or HH:MM:SS, 00:00 to 23:59:59)"]
        );
        assert_eq!(
            errors(
                json!({"schedule": {"frequency": "daily", "time_of_day": "08:00",
                "start_date": "2026-06-20", "end_date": "2026-06-10"}})
            ),
            ["schedule.start_date: should be on or before 2026-06-10 (the end_date)"]
        );
        assert_eq!(
            errors(json!({"cron": "0 0 30 2 *"})),
            ["cron: this schedule never fires (no date matches it, or it ends before it starts)"]
        );
        assert!(
            errors(json!({"cron": "61 * * * *"}))[0].starts_with("cron: invalid cron expression")
        );
        assert_eq!(
            errors(json!({"schedule": {"frequency": "daily", "time_of_day": "08:00",
                "time_zone": "Mars/Olympus"}})),
            ["schedule.time_zone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Amsterdam, or UTC)"]
        );
        assert_eq!(
            errors(json!({"schedule": {"frequency": "fortnightly"}})),
            ["schedule.frequency: 'fortnightly' should be one of no_repeat, minutely, hourly, daily, weekly, monthly, yearly"]
        );
        assert_eq!(
            errors(
                json!({"schedule": {"frequency": "daily", "time_of_day": "08:00", "interval": 0}})
            ),
            ["schedule.interval: 0 is not a whole number from 1 to 10000"]
        );
        assert_eq!(errors(json!({})).len(), 1);
        assert_eq!(
            errors(json!({"schedule": {"frequency": "yearly", "time_of_day": "08:00"}})),
            [
                "schedule.day_of_month: required for a monthly or yearly schedule (1 to 31, -1 for the last day), unless day_of_week is true",
                "schedule.month_of_year: required for a yearly schedule: the months (1 to 12)"
            ]
        );
    }

    #[test]
    fn missed_ticks_are_counted_and_the_last_found() {
        let s = sched(json!({"schedule": {"frequency": "minutely", "interval": 1}}));
        let (n, last) = s.due_between(
            utc("2026-06-01T10:00:30Z"),
            utc("2026-06-01T10:05:00Z"),
            100,
        );
        assert_eq!(n, 5);
        assert_eq!(last, Some(utc("2026-06-01T10:05:00Z")));
        let (n, last) = s.due_between(utc("2026-06-01T10:00:30Z"), utc("2026-06-03T10:05:10Z"), 10);
        assert_eq!(n, 10);
        assert_eq!(last, Some(utc("2026-06-03T10:05:00Z")));
    }
}
