//! `on.schedule`: cron expressions with standard crontab semantics (croner), each in a time
//! zone, compiled once; and the pure time arithmetic the scheduler and `validate` share.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, Span};
use crate::lang::compile::Compiler;
use crate::lang::yaml::{Node, NodeValue};

/// The keys of one `on.schedule` entry.
pub const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "jitter", "catch_up"];
/// The values of `catch_up:`.
pub const CATCH_UP_MODES: &[&str] = &["none", "last"];

/// One compiled schedule of a workflow.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as written (`*/5 * * * *`, `@daily`).
    pub expression: String,
    cron: Cron,
    pub timezone: chrono_tz::Tz,
    /// Each fire is delayed by up to this much (the same delay for the same tick, so a
    /// restart does not move it), to spread many workflows due at the same minute.
    pub jitter: Option<Duration>,
    pub catch_up: CatchUp,
    /// Minute and hour are given (not `*`): a time of day, evaluated on the local clock and
    /// fired once when the clock skips or repeats it (Vixie cron's rule). Otherwise the
    /// schedule is a rhythm, evaluated in real time.
    time_of_day: bool,
}

/// What a server that was down does with the ticks it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Skip them.
    None,
    /// One run for the most recent of them.
    Last,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
        }
    }
}

/// Why an expression or a time zone cannot make a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression '{expression}': {reason}")]
    Expression { expression: String, reason: String },
    #[error("the cron expression '{0}' never fires")]
    NeverFires(String),
    #[error("unknown time zone '{0}'")]
    TimeZone(String),
}

/// Whole seconds: ticks are whole seconds, and croner steps a second at a time.
fn floor_second(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(at.timestamp(), 0).single().unwrap_or(at)
}

impl Schedule {
    /// A schedule for `expression` (5 fields, 6 with seconds first, or `@hourly`-style) in
    /// the IANA time zone `timezone`. It must fire at least once after `now`.
    pub fn new(
        expression: &str,
        timezone: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, ScheduleError> {
        let timezone: chrono_tz::Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::TimeZone(timezone.to_owned()))?;
        // Vixie semantics: optional seconds, no year, day-of-month OR day-of-week.
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|e| ScheduleError::Expression {
                expression: expression.to_owned(),
                reason: e.to_string(),
            })?;
        let schedule = Self {
            expression: expression.to_owned(),
            cron,
            timezone,
            jitter: None,
            catch_up: CatchUp::Last,
            time_of_day: is_time_of_day(expression),
        };
        if schedule.next_after(now).is_none() {
            return Err(ScheduleError::NeverFires(expression.to_owned()));
        }
        Ok(schedule)
    }

    /// The first tick strictly after `after`. For a time of day, a local time skipped by a
    /// daylight-saving change fires once, at the first instant after the change, and a
    /// repeated local time fires once, on its first pass; a rhythm (`*/15 * * * *`) keeps its
    /// pace in real time.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = floor_second(after);
        let local = after.with_timezone(&self.timezone);
        if !self.time_of_day {
            return self
                .cron
                .find_next_occurrence(&local, false)
                .ok()
                .map(|t| t.with_timezone(&Utc));
        }
        // On the wall clock, then placed in time: a wall time in the repeated hour that maps
        // before `after` (its first pass is over) is not a tick again.
        let mut cursor = local.naive_local();
        for _ in 0..MAX_WALL_TICKS {
            let wall = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let instant = place(&self.timezone, wall)?;
            if instant > after {
                return Some(instant);
            }
            cursor = wall;
        }
        None
    }

    /// The latest tick at or before `at`. Found walking forward from an earlier tick, so it is
    /// one that [`next_after`](Self::next_after) yields too: a backward search may land on the
    /// second pass of a repeated hour, which never fires.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = floor_second(at);
        let local = at.with_timezone(&self.timezone);
        let found = if self.time_of_day {
            let wall = self
                .cron
                .find_previous_occurrence(&local.naive_local(), true)
                .ok()?;
            place(&self.timezone, wall)?
        } else {
            self.cron
                .find_previous_occurrence(&local, true)
                .ok()?
                .with_timezone(&Utc)
        };
        // A repeated hour lasts at most a few hours; a tick found backwards is never more
        // than that away from the forward one it stands for.
        let mut cursor = found.min(at) - chrono::Duration::hours(3);
        let mut latest = None;
        // Bounded: three hours of a schedule firing every second.
        for _ in 0..20_000 {
            match self.next_after(cursor) {
                Some(tick) if tick <= at => {
                    latest = Some(tick);
                    cursor = tick;
                }
                _ => break,
            }
        }
        latest
    }

    /// The next `count` ticks after `after`, in the schedule's time zone.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<chrono_tz::Tz>> {
        let mut ticks = Vec::with_capacity(count);
        let mut cursor = after;
        while ticks.len() < count {
            let Some(tick) = self.next_after(cursor) else {
                break;
            };
            ticks.push(tick.with_timezone(&self.timezone));
            cursor = tick;
        }
        ticks
    }

    /// How long after `tick` the workflow `workflow` fires: a stable share of the jitter,
    /// derived from the two, so every process and every restart agrees on it.
    pub fn delay_for(&self, workflow: &str, tick: DateTime<Utc>) -> Duration {
        let Some(jitter) = self.jitter.filter(|j| !j.is_zero()) else {
            return Duration::ZERO;
        };
        let digest = Sha256::digest(format!("{workflow}\n{}", tick.timestamp()).as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        let millis = u64::from_be_bytes(bytes) % (jitter.as_millis().max(1) as u64);
        Duration::from_millis(millis)
    }

    /// A one-line description for `validate`, e.g. `*/5 * * * * (Europe/Paris, catch_up: last)`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} ({}, catch_up: {}",
            self.expression,
            self.timezone.name(),
            self.catch_up.as_str()
        );
        if let Some(jitter) = self.jitter {
            text.push_str(&format!(", jitter: {}s", jitter.as_secs_f64()));
        }
        text.push(')');
        text
    }
}

/// Wall-clock ticks looked at for one tick: those of a repeated hour that are over are skipped.
const MAX_WALL_TICKS: usize = 10_000;

/// Vixie cron's test for a time of day: neither the minute nor the hour is `*` (or `*/n`).
/// `@hourly` is a rhythm; the other shortcuts are times of day.
fn is_time_of_day(expression: &str) -> bool {
    let text = expression.trim();
    if text.starts_with('@') {
        return !text.eq_ignore_ascii_case("@hourly");
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    // Parsed already: 5 fields, or 6 with the seconds first.
    let (minute, hour) = match fields.as_slice() {
        [_, minute, hour, _, _, _] => (*minute, *hour),
        [minute, hour, ..] => (*minute, *hour),
        _ => return false,
    };
    let wild = |field: &str| field.starts_with('*') || field.starts_with('?');
    !wild(minute) && !wild(hour)
}

/// The instant a wall-clock time names in `zone`: the first pass of a repeated time, and for a
/// time the clock skipped, the first instant after the change.
fn place(zone: &chrono_tz::Tz, wall: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(instant) = zone.from_local_datetime(&wall).earliest() {
        return Some(instant.with_timezone(&Utc));
    }
    // Changes happen on whole minutes and skip at most a few hours.
    let mut probe = wall.with_second(0)?;
    for _ in 0..(6 * 60) {
        probe += chrono::Duration::minutes(1);
        if let Some(instant) = zone.from_local_datetime(&probe).earliest() {
            return Some(instant.with_timezone(&Utc));
        }
    }
    None
}

/// Compile `on.schedule`: one entry (a cron string, or a mapping with `cron:`) or a list of
/// them. Every problem is reported; the entries that compiled are returned.
pub fn compile(c: &mut Compiler, node: &Node) -> Vec<Schedule> {
    match &node.value {
        NodeValue::Seq(items) => {
            if items.is_empty() {
                c.error(
                    node.span.clone(),
                    "`on.schedule` is empty; give a cron expression or a list of them",
                );
            }
            items
                .iter()
                .filter_map(|item| compile_one(c, item))
                .collect()
        }
        _ => compile_one(c, node).into_iter().collect(),
    }
}

fn compile_one(c: &mut Compiler, node: &Node) -> Option<Schedule> {
    if let NodeValue::Str(expression) = &node.value {
        return build(c, expression, &node.span, None, None, CatchUp::Last, None);
    }
    let fields = c.fields(node, "`on.schedule`", SCHEDULE_KEYS, &["cron"])?;
    let timezone = fields
        .get("timezone")
        .and_then(|n| c.string(n, "`timezone`").map(|tz| (tz, n.span.clone())));
    let jitter = fields.get("jitter").and_then(|n| c.duration(n, "`jitter`"));
    let catch_up = match fields.get("catch_up") {
        None => Some(CatchUp::Last),
        Some(n) => match c.string(n, "`catch_up`").as_deref() {
            Some("none") => Some(CatchUp::None),
            Some("last") => Some(CatchUp::Last),
            Some(other) => {
                c.error(
                    n.span.clone(),
                    format!(
                        "unknown catch_up '{other}'; expected one of: {}",
                        CATCH_UP_MODES.join(", ")
                    ),
                );
                None
            }
            None => None,
        },
    };
    let cron_node = fields.get("cron")?;
    let expression = c.string(cron_node, "`cron`")?;
    let (tz, tz_span) = match timezone {
        Some((tz, span)) => (Some(tz), Some(span)),
        None => (None, None),
    };
    build(
        c,
        &expression,
        &cron_node.span,
        tz.as_deref(),
        tz_span,
        catch_up?,
        jitter,
    )
}

fn build(
    c: &mut Compiler,
    expression: &str,
    span: &Span,
    timezone: Option<&str>,
    timezone_span: Option<Span>,
    catch_up: CatchUp,
    jitter: Option<Duration>,
) -> Option<Schedule> {
    match Schedule::new(expression, timezone.unwrap_or("UTC"), Utc::now()) {
        Ok(mut schedule) => {
            schedule.catch_up = catch_up;
            schedule.jitter = jitter;
            Some(schedule)
        }
        Err(ScheduleError::TimeZone(tz)) => {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
            let hint = match crate::diag::closest(&tz, names) {
                Some(near) => format!("did you mean '{near}'?"),
                None => "use an IANA name such as UTC, Europe/Paris or America/New_York".into(),
            };
            c.push(
                Diagnostic::error(
                    timezone_span.unwrap_or_else(|| span.clone()),
                    format!("unknown time zone '{tz}'"),
                )
                .with_hint(hint),
            );
            None
        }
        Err(err @ ScheduleError::NeverFires(_)) => {
            c.push(
                Diagnostic::error(span.clone(), err.to_string())
                    .with_hint("no date matches it: check the day of the month against the month"),
            );
            None
        }
        Err(err) => {
            c.push(Diagnostic::error(span.clone(), err.to_string()).with_hint(
                "5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn paris_0230() -> Schedule {
        Schedule::new("30 2 * * *", "Europe/Paris", at("2026-01-01T00:00:00Z")).expect("schedule")
    }

    /// Every tick in `[from, to)`.
    fn ticks(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = from - chrono::Duration::seconds(1);
        while let Some(tick) = schedule.next_after(cursor) {
            if tick >= to {
                break;
            }
            out.push(tick);
            cursor = tick;
        }
        out
    }

    #[test]
    fn spring_forward_fires_once_at_the_shifted_instant() {
        // 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
        let schedule = paris_0230();
        let day = ticks(
            &schedule,
            at("2026-03-28T23:00:00Z"),
            at("2026-03-29T22:00:00Z"),
        );
        assert_eq!(day, vec![at("2026-03-29T01:00:00Z")], "03:00 CEST, once");
        // The days around it fire at 02:30 local time as usual.
        let around = ticks(
            &schedule,
            at("2026-03-27T00:00:00Z"),
            at("2026-03-31T00:00:00Z"),
        );
        assert_eq!(
            around,
            vec![
                at("2026-03-27T01:30:00Z"),
                at("2026-03-28T01:30:00Z"),
                at("2026-03-29T01:00:00Z"),
                at("2026-03-30T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn fall_back_fires_once_on_the_first_pass() {
        // 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let schedule = paris_0230();
        let day = ticks(
            &schedule,
            at("2026-10-24T22:00:00Z"),
            at("2026-10-25T23:00:00Z"),
        );
        assert_eq!(day, vec![at("2026-10-25T00:30:00Z")], "02:30 CEST, once");
        // Looking back from after the second 02:30 finds the first one, not the repeat.
        assert_eq!(
            schedule.latest_at_or_before(at("2026-10-25T01:45:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            schedule.latest_at_or_before(at("2026-10-25T01:30:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn times_of_day_in_a_changed_hour_fire_once_and_rhythms_keep_pace() {
        // Two times of day in the repeated hour: each fires once, on its first pass.
        let schedule = Schedule::new("30,45 2 * * *", "Europe/Paris", at("2026-01-01T00:00:00Z"))
            .expect("schedule");
        assert_eq!(
            schedule.latest_at_or_before(at("2026-10-25T01:50:00Z")),
            Some(at("2026-10-25T00:45:00Z"))
        );
        let day = ticks(
            &schedule,
            at("2026-10-24T22:00:00Z"),
            at("2026-10-25T23:00:00Z"),
        );
        assert_eq!(
            day,
            vec![at("2026-10-25T00:30:00Z"), at("2026-10-25T00:45:00Z")]
        );
        // Both fall in the skipped hour in March: one fire, at 03:00 CEST.
        let march = ticks(
            &schedule,
            at("2026-03-28T23:00:00Z"),
            at("2026-03-29T22:00:00Z"),
        );
        assert_eq!(march, vec![at("2026-03-29T01:00:00Z")]);
        // A rhythm keeps its pace in real time through the change.
        let quarter = Schedule::new("*/15 * * * *", "Europe/Paris", at("2026-01-01T00:00:00Z"))
            .expect("schedule");
        let hour = ticks(
            &quarter,
            at("2026-10-25T00:00:00Z"),
            at("2026-10-25T02:00:00Z"),
        );
        assert_eq!(hour.len(), 8, "{hour:?}");
    }

    #[test]
    fn latest_tick_includes_the_instant_itself() {
        let schedule =
            Schedule::new("*/15 * * * *", "UTC", at("2026-01-01T00:00:00Z")).expect("schedule");
        assert_eq!(
            schedule.latest_at_or_before(at("2026-05-01T10:15:00Z")),
            Some(at("2026-05-01T10:15:00Z"))
        );
        assert_eq!(
            schedule.latest_at_or_before(at("2026-05-01T10:29:59.900Z")),
            Some(at("2026-05-01T10:15:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-05-01T10:15:00.5Z")),
            Some(at("2026-05-01T10:30:00Z"))
        );
    }

    #[test]
    fn crontab_semantics() {
        let from = at("2026-06-01T00:00:00Z"); // a Monday
        let weekdays = Schedule::new("0 9 * * 1-5", "UTC", from).expect("schedule");
        let ticks: Vec<String> = weekdays
            .upcoming(from, 6)
            .iter()
            .map(|t| t.format("%a %d %H:%M").to_string())
            .collect();
        assert_eq!(
            ticks,
            [
                "Mon 01 09:00",
                "Tue 02 09:00",
                "Wed 03 09:00",
                "Thu 04 09:00",
                "Fri 05 09:00",
                "Mon 08 09:00"
            ]
        );
        // 7 is Sunday like 0, and day-of-month OR day-of-week.
        let sunday = Schedule::new("0 0 * * 7", "UTC", from).expect("schedule");
        assert_eq!(sunday.next_after(from), Some(at("2026-06-07T00:00:00Z")));
        let either = Schedule::new("0 0 13 * 5", "UTC", from).expect("schedule");
        assert_eq!(either.next_after(from), Some(at("2026-06-05T00:00:00Z")));
        assert_eq!(
            either.next_after(at("2026-06-12T00:00:00Z")),
            Some(at("2026-06-13T00:00:00Z"))
        );
        // Seconds first in six fields; shortcuts.
        let seconds = Schedule::new("*/10 * * * * *", "UTC", from).expect("schedule");
        assert_eq!(seconds.next_after(from), Some(at("2026-06-01T00:00:10Z")));
        let hourly = Schedule::new("@hourly", "UTC", from).expect("schedule");
        assert_eq!(hourly.next_after(from), Some(at("2026-06-01T01:00:00Z")));
        let daily = Schedule::new("@daily", "America/New_York", from).expect("schedule");
        assert_eq!(daily.next_after(from), Some(at("2026-06-01T04:00:00Z")));
    }

    #[test]
    fn impossible_or_malformed_schedules_are_refused() {
        let now = at("2026-06-01T00:00:00Z");
        assert!(matches!(
            Schedule::new("0 0 30 2 *", "UTC", now),
            Err(ScheduleError::NeverFires(_))
        ));
        assert!(matches!(
            Schedule::new("61 * * * *", "UTC", now),
            Err(ScheduleError::Expression { .. })
        ));
        assert!(matches!(
            Schedule::new("* * * *", "UTC", now),
            Err(ScheduleError::Expression { .. })
        ));
        assert!(matches!(
            Schedule::new("0 0 1 1 * 2030", "UTC", now),
            Err(ScheduleError::Expression { .. })
        ));
        assert!(matches!(
            Schedule::new("@daily", "Mars/Olympus", now),
            Err(ScheduleError::TimeZone(_))
        ));
        // Leap days are rare, not impossible.
        assert!(Schedule::new("0 0 29 2 *", "UTC", now).is_ok());
    }

    #[test]
    fn jitter_is_bounded_and_stable() {
        let mut schedule =
            Schedule::new("* * * * *", "UTC", at("2026-01-01T00:00:00Z")).expect("schedule");
        let tick = at("2026-01-01T00:01:00Z");
        assert_eq!(schedule.delay_for("a", tick), Duration::ZERO);
        schedule.jitter = Some(Duration::from_secs(30));
        let delays: Vec<Duration> = (0..50)
            .map(|i| schedule.delay_for("a", tick + chrono::Duration::minutes(i)))
            .collect();
        assert!(delays.iter().all(|d| *d < Duration::from_secs(30)));
        assert!(delays.iter().any(|d| *d != delays[0]), "spread: {delays:?}");
        assert_eq!(schedule.delay_for("a", tick), delays[0]);
    }
}
