//! Server-rendered SVG: the events-per-minute bar chart and a job's timing waterfall. Pure
//! functions of their data; every bar has a `<title>` and the chart a text alternative.

use chrono::{DateTime, TimeDelta, Utc};
use ferry_store::{MinuteCount, StepRecord};
use maud::{html, Markup};

/// Bars of the last `minutes` minutes up to `now` (oldest first), zero where `counts` has
/// none.
pub(crate) fn minute_series(
    counts: &[MinuteCount],
    now: DateTime<Utc>,
    minutes: i64,
) -> Vec<(DateTime<Utc>, i64)> {
    let this_minute = now.timestamp().div_euclid(60) * 60;
    (0..minutes)
        .rev()
        .filter_map(|back| {
            let start = DateTime::from_timestamp(this_minute - back * 60, 0)?;
            let n = counts
                .iter()
                .find(|c| c.minute == start)
                .map_or(0, |c| c.jobs);
            Some((start, n))
        })
        .collect()
}

/// The bar chart of events (jobs created) per minute.
pub(crate) fn events_chart(series: &[(DateTime<Utc>, i64)]) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 18.0;
    let max = series.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let total: i64 = series.iter().map(|(_, n)| *n).sum();
    let slot = W / series.len().max(1) as f64;
    let plot = H - TOP - BOTTOM;
    let summary = format!(
        "{total} events in the last {} minutes, at most {max} in one minute",
        series.len()
    );
    html! {
        svg.chart #events-chart data-testid="events-chart" role="img" aria-label=(summary)
            viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H)
            xmlns="http://www.w3.org/2000/svg" {
            text x="0" y="10" { "max " (max) "/min" }
            line x1="0" x2=(W) y1=(H - BOTTOM) y2=(H - BOTTOM) stroke="#57606a" {}
            @for (i, (minute, n)) in series.iter().enumerate() {
                @let h = plot * (*n as f64) / (max as f64);
                rect.bar x=(format!("{:.1}", i as f64 * slot + 1.0))
                    y=(format!("{:.1}", H - BOTTOM - h))
                    width=(format!("{:.1}", (slot - 2.0).max(1.0)))
                    height=(format!("{h:.1}")) data-minute=(minute.format("%H:%M")) data-count=(n) {
                    title { (minute.format("%H:%M")) " UTC: " (n) }
                }
            }
            @if let (Some((first, _)), Some((last, _))) = (series.first(), series.last()) {
                text x="0" y=(H - 4.0) { (first.format("%H:%M")) }
                text x=(W) y=(H - 4.0) text-anchor="end" { (last.format("%H:%M")) " UTC" }
            }
        }
    }
}

/// The timing waterfall of a job's steps: one row per step record, a bar from its start to
/// its end on the job's time axis, coloured by its status.
pub(crate) fn waterfall(job_start: DateTime<Utc>, steps: &[StepRecord]) -> Markup {
    const W: f64 = 720.0;
    const LABEL: f64 = 200.0;
    const ROW: f64 = 18.0;
    const TOP: f64 = 16.0;
    let start = steps
        .iter()
        .map(|s| s.started_at)
        .min()
        .map_or(job_start, |s| s.min(job_start));
    let end = steps.iter().map(|s| s.finished_at).max().unwrap_or(start);
    let span_us = (end - start).num_microseconds().unwrap_or(0).max(1) as f64;
    let x = |t: DateTime<Utc>| {
        let us = (t - start).num_microseconds().unwrap_or(0) as f64;
        LABEL + (W - LABEL - 8.0) * us / span_us
    };
    let height = TOP + ROW * steps.len() as f64 + 4.0;
    let total_ms = span_us / 1000.0;
    html! {
        svg.waterfall #waterfall data-testid="waterfall" role="img"
            aria-label=(format!("Timing of {} step runs over {}", steps.len(), crate::util::duration_ms(total_ms)))
            viewBox=(format!("0 0 {W} {height}")) width=(W) height=(height)
            xmlns="http://www.w3.org/2000/svg" {
            text x=(LABEL) y="11" { "0" }
            text x=(W - 8.0) y="11" text-anchor="end" { (crate::util::duration_ms(total_ms)) }
            @for (i, s) in steps.iter().enumerate() {
                @let y = TOP + ROW * i as f64;
                @let x0 = x(s.started_at);
                @let w = (x(s.finished_at) - x0).max(1.5);
                @let ms = (s.finished_at - s.started_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                line x1=(LABEL) x2=(W - 8.0) y1=(y + ROW - 1.0) y2=(y + ROW - 1.0) {}
                text x="0" y=(y + 12.0) {
                    (truncate(&s.step_id, 24))
                    @if s.invocation > 1 { " #" (s.invocation) }
                }
                rect class=(s.status.as_str()) x=(format!("{x0:.1}")) y=(y + 3.0)
                    width=(format!("{w:.1}")) height=(ROW - 6.0) data-step=(s.step_id) {
                    title {
                        (s.step_id) " (" (s.status.as_str()) "): "
                        (crate::util::duration_ms(ms)) ", from +"
                        (crate::util::duration_ms(((s.started_at - start).num_microseconds().unwrap_or(0)) as f64 / 1000.0))
                    }
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// An hour ago from `now`, for the chart's window.
pub(crate) fn hour_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - TimeDelta::minutes(59)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::StepStatus;
    use serde_json::json;

    #[test]
    fn the_series_has_one_bar_per_minute_with_zeros() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T10:30:25Z")
            .unwrap()
            .to_utc();
        let m = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let counts = vec![
            MinuteCount {
                minute: m("2026-11-30T10:28:00Z"),
                jobs: 4,
            },
            MinuteCount {
                minute: m("2026-11-30T10:30:00Z"),
                jobs: 1,
            },
        ];
        let series = minute_series(&counts, now, 60);
        assert_eq!(series.len(), 60);
        assert_eq!(series[59], (m("2026-11-30T10:30:00Z"), 1));
        assert_eq!(series[57], (m("2026-11-30T10:28:00Z"), 4));
        assert_eq!(series[58].1, 0);
        assert_eq!(series[0].0, m("2026-11-30T09:31:00Z"));
        let svg = events_chart(&series).into_string();
        assert_eq!(svg.matches("<rect").count(), 60);
        assert!(svg.contains("5 events in the last 60 minutes, at most 4 in one minute"));
        assert!(svg.contains("10:28 UTC: 4"));
    }

    #[test]
    fn the_waterfall_places_steps_on_the_job_time_axis() {
        let t0 = Utc::now();
        let step = |id: &str, from: i64, to: i64, status| StepRecord {
            job_id: uuid::Uuid::nil(),
            seq: 0,
            step_id: id.into(),
            invocation: 1,
            status,
            input: json!({}),
            outputs: json!([]),
            logs: vec![],
            error: None,
            started_at: t0 + TimeDelta::milliseconds(from),
            finished_at: t0 + TimeDelta::milliseconds(to),
        };
        let steps = vec![
            step("a", 0, 100, StepStatus::Completed),
            step("b", 100, 400, StepStatus::Failed),
        ];
        let svg = waterfall(t0, &steps).into_string();
        assert!(svg.contains(r#"class="failed" x="328.0""#), "{svg}");
        assert!(svg.contains(r#"class="completed" x="200.0""#), "{svg}");
        assert!(svg.contains("b (failed): 300 ms, from +100 ms"));
        assert!(svg.contains("over 400 ms"));
    }
}
