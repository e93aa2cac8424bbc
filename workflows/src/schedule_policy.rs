//! Schedule policies: when scheduled backups run (every N minutes, daily, weekly, monthly by date
//! or by "first Monday"/"last Friday", or a cron expression), in which time zone, and how many
//! copies to keep (a rolling count, optionally tiers of hourly/daily/weekly/monthly/yearly).
//!
//! This module owns the spec, its validation, the next run after a given instant and which backups
//! a policy keeps. Running the schedules belongs to the schedule workflow.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::validate::{FieldError, Problems};

/// The most rolling copies a policy may keep.
pub const MAX_RETAIN: u32 = 10_000;

/// When runs happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Every `minutes` minutes, at multiples of that period since midnight UTC of 1970-01-01.
    Interval {
        /// The period, 1 to 1440.
        minutes: u32,
    },
    /// Every day at each of `times` (`HH:MM`).
    Daily {
        /// Times of day.
        times: Vec<String>,
    },
    /// On each of `days` (`mon`..`sun`) at `time`.
    Weekly {
        /// Days of the week.
        days: Vec<String>,
        /// Time of day, `HH:MM`.
        time: String,
    },
    /// On dates of the month (`dates`, 1 to 31; months without such a date are skipped) and/or
    /// relative days such as the first Monday or the last Friday, at `time`.
    Monthly {
        /// Days of the month.
        #[serde(default)]
        dates: Vec<u32>,
        /// Relative days.
        #[serde(default)]
        relative: Vec<RelativeDay>,
        /// Time of day, `HH:MM`.
        time: String,
    },
    /// A five-field cron expression (minute hour day-of-month month day-of-week).
    Cron {
        /// The expression.
        expression: String,
    },
}

/// A day such as "the last Friday" of a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelativeDay {
    /// `first`, `second`, `third`, `fourth` or `last`.
    pub week: String,
    /// `mon`..`sun`.
    pub day: String,
}

/// Copies kept per period, newest backup of each period, as restic's `forget` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    /// Hours with a backup kept.
    #[serde(default)]
    pub hourly: u32,
    /// Days.
    #[serde(default)]
    pub daily: u32,
    /// ISO weeks.
    #[serde(default)]
    pub weekly: u32,
    /// Months.
    #[serde(default)]
    pub monthly: u32,
    /// Years.
    #[serde(default)]
    pub yearly: u32,
}

/// A schedule policy's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePolicySpec {
    /// When.
    pub schedule: Schedule,
    /// The IANA time zone the times are in (default UTC).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Newest successful copies always kept.
    pub retain: u32,
    /// Further copies kept per period.
    #[serde(default)]
    pub tiers: Option<Tiers>,
}

fn utc() -> String {
    "UTC".into()
}

/// A policy ready to compute with.
#[derive(Debug, Clone)]
pub struct SchedulePolicy {
    spec: SchedulePolicySpec,
    timezone: Tz,
    plan: Plan,
}

#[derive(Debug, Clone)]
enum Plan {
    Interval(i64),
    /// Times of day on the days `on` admits.
    Days {
        times: Vec<NaiveTime>,
        on: DaySet,
    },
    Cron(Box<cron::Schedule>),
}

#[derive(Debug, Clone)]
enum DaySet {
    Every,
    Weekdays(Vec<Weekday>),
    Monthly {
        dates: BTreeSet<u32>,
        relative: Vec<(Ordinal, Weekday)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordinal {
    Nth(u32),
    Last,
}

fn parse_time(problems: &mut Problems, field: &str, text: &str) -> Option<NaiveTime> {
    let parsed = text
        .split_once(':')
        .filter(|(hours, minutes)| hours.len() == 2 && minutes.len() == 2)
        .and_then(|(hours, minutes)| Some((hours.parse().ok()?, minutes.parse().ok()?)))
        .and_then(|(hours, minutes)| NaiveTime::from_hms_opt(hours, minutes, 0));
    if parsed.is_none() {
        problems.add(
            field,
            format!("`{text}` is not a time of day: use HH:MM, 00:00 to 23:59"),
        );
    }
    parsed
}

fn parse_weekday(problems: &mut Problems, field: &str, text: &str) -> Option<Weekday> {
    let day = match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => {
            problems.add(
                field,
                format!("`{text}` is not a day of the week: use mon..sun"),
            );
            return None;
        }
    };
    Some(day)
}

impl SchedulePolicySpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &serde_json::Value) -> Result<SchedulePolicy, Vec<FieldError>> {
        let spec: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        let timezone = Tz::from_str(&spec.timezone).map_err(|_| ()).ok();
        if timezone.is_none() {
            problems.add(
                "spec.timezone",
                format!(
                    "`{}` is not an IANA time zone (e.g. Europe/Berlin, UTC)",
                    spec.timezone
                ),
            );
        }
        if spec.retain == 0 || spec.retain > MAX_RETAIN {
            problems.add(
                "spec.retain",
                format!("must be between 1 and {MAX_RETAIN}, not {}", spec.retain),
            );
        }
        let plan = match &spec.schedule {
            Schedule::Interval { minutes } => {
                if !(1..=1440).contains(minutes) {
                    problems.add(
                        "spec.schedule.interval.minutes",
                        format!("must be between 1 and 1440, not {minutes}"),
                    );
                }
                Some(Plan::Interval(i64::from(*minutes.max(&1)) * 60))
            }
            Schedule::Daily { times } => {
                if times.is_empty() {
                    problems.add("spec.schedule.daily.times", "needs at least one time");
                }
                let times = times
                    .iter()
                    .enumerate()
                    .filter_map(|(n, time)| {
                        parse_time(
                            &mut problems,
                            &format!("spec.schedule.daily.times[{n}]"),
                            time,
                        )
                    })
                    .collect();
                Some(Plan::Days {
                    times,
                    on: DaySet::Every,
                })
            }
            Schedule::Weekly { days, time } => {
                if days.is_empty() {
                    problems.add("spec.schedule.weekly.days", "needs at least one day");
                }
                let days = days
                    .iter()
                    .enumerate()
                    .filter_map(|(n, day)| {
                        parse_weekday(
                            &mut problems,
                            &format!("spec.schedule.weekly.days[{n}]"),
                            day,
                        )
                    })
                    .collect();
                parse_time(&mut problems, "spec.schedule.weekly.time", time).map(|time| {
                    Plan::Days {
                        times: vec![time],
                        on: DaySet::Weekdays(days),
                    }
                })
            }
            Schedule::Monthly {
                dates,
                relative,
                time,
            } => {
                if dates.is_empty() && relative.is_empty() {
                    problems.add("spec.schedule.monthly", "needs dates or relative days");
                }
                for (n, date) in dates.iter().enumerate() {
                    if !(1..=31).contains(date) {
                        problems.add(
                            format!("spec.schedule.monthly.dates[{n}]"),
                            format!("must be between 1 and 31, not {date}"),
                        );
                    }
                }
                let mut days = Vec::new();
                for (n, day) in relative.iter().enumerate() {
                    let at = format!("spec.schedule.monthly.relative[{n}]");
                    let week = match day.week.as_str() {
                        "first" => Some(Ordinal::Nth(1)),
                        "second" => Some(Ordinal::Nth(2)),
                        "third" => Some(Ordinal::Nth(3)),
                        "fourth" => Some(Ordinal::Nth(4)),
                        "last" => Some(Ordinal::Last),
                        other => {
                            problems.add(
                                format!("{at}.week"),
                                format!(
                                    "`{other}` is not one of first, second, third, fourth, last"
                                ),
                            );
                            None
                        }
                    };
                    let weekday = parse_weekday(&mut problems, &format!("{at}.day"), &day.day);
                    if let (Some(week), Some(weekday)) = (week, weekday) {
                        days.push((week, weekday));
                    }
                }
                parse_time(&mut problems, "spec.schedule.monthly.time", time).map(|time| {
                    Plan::Days {
                        times: vec![time],
                        on: DaySet::Monthly {
                            dates: dates.iter().copied().collect(),
                            relative: days,
                        },
                    }
                })
            }
            Schedule::Cron { expression } => {
                let fields = expression.split_whitespace().count();
                if fields != 5 {
                    problems.add(
                        "spec.schedule.cron.expression",
                        format!("`{expression}` has {fields} fields; use five: minute hour day-of-month month day-of-week"),
                    );
                    None
                } else {
                    match cron::Schedule::from_str(&format!("0 {expression}")) {
                        Ok(schedule) => Some(Plan::Cron(Box::new(schedule))),
                        Err(err) => {
                            problems.add(
                                "spec.schedule.cron.expression",
                                format!("`{expression}` is not a cron expression: {err}"),
                            );
                            None
                        }
                    }
                }
            }
        };
        problems.finish()?;
        match (timezone, plan) {
            (Some(timezone), Some(plan)) => Ok(SchedulePolicy {
                spec,
                timezone,
                plan,
            }),
            // Unreachable: a missing time zone or plan recorded a problem above.
            _ => Err(vec![FieldError {
                field: "spec".into(),
                message: "invalid schedule".into(),
            }]),
        }
    }
}

impl DaySet {
    fn admits(&self, date: NaiveDate) -> bool {
        match self {
            Self::Every => true,
            Self::Weekdays(days) => days.contains(&date.weekday()),
            Self::Monthly { dates, relative } => {
                dates.contains(&date.day())
                    || relative.iter().any(|(ordinal, weekday)| {
                        date.weekday() == *weekday
                            && match ordinal {
                                Ordinal::Nth(n) => (date.day() - 1) / 7 + 1 == *n,
                                Ordinal::Last => date
                                    .checked_add_days(Days::new(7))
                                    .is_none_or(|later| later.month() != date.month()),
                            }
                    })
            }
        }
    }
}

impl SchedulePolicy {
    /// The spec, normalized.
    pub fn spec(&self) -> &SchedulePolicySpec {
        &self.spec
    }

    /// The first run strictly after `after`, or `None` if the schedule never runs again.
    pub fn next_run(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.plan {
            Plan::Interval(period) => {
                let next = (after.timestamp().div_euclid(*period) + 1) * period;
                DateTime::from_timestamp(next, 0)
            }
            Plan::Cron(schedule) => schedule
                .after(&after.with_timezone(&self.timezone))
                .next()
                .map(|at| at.with_timezone(&Utc)),
            Plan::Days { times, on } => {
                let mut times = times.clone();
                times.sort();
                let mut date = after.with_timezone(&self.timezone).date_naive();
                // Eight years always holds a run of any valid day set (the 31st, Feb 29 aside:
                // 31 occurs every year; relative days every month).
                for _ in 0..(366 * 8) {
                    if on.admits(date) {
                        for time in &times {
                            if let Some(at) = self.instant(date, *time)
                                && at > after
                            {
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

    /// The instant of a local date and time; a time skipped by a daylight-saving jump runs at
    /// the first instant after the gap, an ambiguous one at its earlier occurrence.
    fn instant(&self, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        let local = date.and_time(time);
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
            LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
            LocalResult::None => (1..=180).find_map(|minutes| {
                match self
                    .timezone
                    .from_local_datetime(&(local + chrono::Duration::minutes(minutes)))
                {
                    LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
                    LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
                    LocalResult::None => None,
                }
            }),
        }
    }

    /// Which of `backups` (id, when it was taken, whether it succeeded) the policy keeps: the
    /// newest `retain` successful ones, plus for each tier the newest successful backup of each of
    /// the most recent periods. Failed backups are never counted as copies (the caller decides
    /// what to do with them); the newest successful backup is always kept.
    pub fn retained<'a>(&self, backups: &'a [(String, DateTime<Utc>, bool)]) -> BTreeSet<&'a str> {
        let mut successful: Vec<&(String, DateTime<Utc>, bool)> =
            backups.iter().filter(|(_, _, ok)| *ok).collect();
        successful.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let mut kept: BTreeSet<&str> = successful
            .iter()
            .take(self.spec.retain.max(1) as usize)
            .map(|(id, _, _)| id.as_str())
            .collect();
        if let Some(tiers) = &self.spec.tiers {
            let local = |at: &DateTime<Utc>| at.with_timezone(&self.timezone);
            let periods: [(u32, &PeriodOf<'_>); 5] = [
                (tiers.hourly, &|at| {
                    local(at).format("%Y-%m-%d %H").to_string()
                }),
                (tiers.daily, &|at| local(at).format("%Y-%m-%d").to_string()),
                (tiers.weekly, &|at| {
                    let week = local(at).iso_week();
                    format!("{}-W{}", week.year(), week.week())
                }),
                (tiers.monthly, &|at| local(at).format("%Y-%m").to_string()),
                (tiers.yearly, &|at| local(at).format("%Y").to_string()),
            ];
            for (count, period_of) in periods {
                let mut seen = BTreeSet::new();
                for (id, at, _) in &successful {
                    if seen.len() as u32 >= count {
                        break;
                    }
                    if seen.insert(period_of(at)) {
                        kept.insert(id.as_str());
                    }
                }
            }
        }
        kept
    }
}

/// Names the period (hour, day, week, month, year) an instant falls in.
type PeriodOf<'a> = dyn Fn(&DateTime<Utc>) -> String + 'a;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn policy(spec: serde_json::Value) -> SchedulePolicy {
        SchedulePolicySpec::parse(&spec).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn runs(policy: &SchedulePolicy, from: &str, count: usize) -> Vec<String> {
        let mut now = at(from);
        (0..count)
            .map(|_| {
                now = policy.next_run(now).unwrap();
                now.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn each_schedule_kind_finds_its_next_runs() {
        let every_90 = policy(json!({"schedule": {"interval": {"minutes": 90}}, "retain": 3}));
        assert_eq!(
            runs(&every_90, "2026-03-01T00:10:00Z", 2),
            ["2026-03-01T01:30:00+00:00", "2026-03-01T03:00:00+00:00"]
        );
        let twice_daily = policy(json!({
            "schedule": {"daily": {"times": ["14:30", "02:00"]}},
            "timezone": "Europe/Berlin", "retain": 7}));
        assert_eq!(
            runs(&twice_daily, "2026-01-10T12:00:00Z", 3),
            [
                "2026-01-10T13:30:00+00:00",
                "2026-01-11T01:00:00+00:00",
                "2026-01-11T13:30:00+00:00"
            ]
        );
        let weekly = policy(json!({
            "schedule": {"weekly": {"days": ["mon", "fri"], "time": "03:00"}}, "retain": 4}));
        // 2026-11-25 is a Wednesday.
        assert_eq!(
            runs(&weekly, "2026-11-25T00:00:00Z", 3),
            [
                "2026-11-27T03:00:00+00:00",
                "2026-11-30T03:00:00+00:00",
                "2026-12-04T03:00:00+00:00"
            ]
        );
        let monthly = policy(json!({
            "schedule": {"monthly": {"dates": [31], "relative": [{"week": "first", "day": "mon"}, {"week": "last", "day": "fri"}], "time": "04:00"}},
            "retain": 12}));
        assert_eq!(
            runs(&monthly, "2026-11-01T00:00:00Z", 5),
            [
                "2026-11-02T04:00:00+00:00", // first Monday
                "2026-11-27T04:00:00+00:00", // last Friday (November has no 31st)
                "2026-12-07T04:00:00+00:00",
                "2026-12-25T04:00:00+00:00",
                "2026-12-31T04:00:00+00:00"
            ]
        );
        let cron = policy(json!({
            "schedule": {"cron": {"expression": "15 */6 * * *"}}, "timezone": "America/New_York", "retain": 2}));
        assert_eq!(
            runs(&cron, "2026-06-01T00:00:00Z", 2),
            ["2026-06-01T04:15:00+00:00", "2026-06-01T10:15:00+00:00"]
        );
    }

    #[test]
    fn daylight_saving_gaps_and_overlaps_run_once() {
        // Berlin skips 02:00-03:00 on 2026-03-29 and repeats 02:00-03:00 on 2026-10-25.
        let at_2_30 = policy(json!({
            "schedule": {"daily": {"times": ["02:30"]}}, "timezone": "Europe/Berlin", "retain": 1}));
        assert_eq!(
            runs(&at_2_30, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        assert_eq!(
            runs(&at_2_30, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    fn problems(spec: serde_json::Value) -> Vec<String> {
        SchedulePolicySpec::parse(&spec)
            .unwrap_err()
            .into_iter()
            .map(|problem| problem.field)
            .collect()
    }

    #[test]
    fn invalid_policies_name_the_field() {
        assert_eq!(
            problems(json!({"schedule": {"cron": {"expression": "61 * * * *"}}, "retain": 1})),
            ["spec.schedule.cron.expression"]
        );
        assert_eq!(
            problems(json!({"schedule": {"cron": {"expression": "* * *"}}, "retain": 1})),
            ["spec.schedule.cron.expression"]
        );
        assert_eq!(
            problems(
                json!({"schedule": {"daily": {"times": ["25:00", "7:00"]}}, "retain": 0, "timezone": "Mars/Olympus"})
            ),
            [
                "spec.timezone",
                "spec.retain",
                "spec.schedule.daily.times[0]",
                "spec.schedule.daily.times[1]"
            ]
        );
        assert_eq!(
            problems(
                json!({"schedule": {"monthly": {"dates": [0], "relative": [{"week": "fifth", "day": "xyz"}], "time": "04:00"}}, "retain": 1})
            ),
            [
                "spec.schedule.monthly.dates[0]",
                "spec.schedule.monthly.relative[0].week",
                "spec.schedule.monthly.relative[0].day"
            ]
        );
        assert_eq!(
            problems(json!({"schedule": {"interval": {"minutes": 0}}, "retain": 1})),
            ["spec.schedule.interval.minutes"]
        );
        assert_eq!(
            problems(json!({"schedule": {"hourly": {}}, "retain": 1})),
            ["spec"]
        );
    }

    #[test]
    fn retention_keeps_rolling_copies_and_tiers_and_ignores_failures() {
        let policy = policy(json!({
            "schedule": {"daily": {"times": ["01:00"]}}, "retain": 2,
            "tiers": {"weekly": 2, "monthly": 2}}));
        // One backup a day through November 2026, the last three failed.
        let mut backups = Vec::new();
        for day in 1..=30 {
            backups.push((
                format!("b{day:02}"),
                at(&format!("2026-11-{day:02}T01:00:00Z")),
                day <= 27,
            ));
        }
        backups.push(("oct".into(), at("2026-10-31T01:00:00Z"), true));
        backups.push(("sep".into(), at("2026-09-30T01:00:00Z"), true));
        let kept: Vec<&str> = policy.retained(&backups).into_iter().collect();
        // Rolling: b27, b26. Weekly (ISO weeks): b27 (week 48), b22 (week 47).
        // Monthly: b27 (November), oct (October).
        assert_eq!(kept, ["b22", "b26", "b27", "oct"]);
        // All failed but one: the one successful backup stays whatever the counts.
        let lonely = vec![
            ("ok".to_string(), at("2026-01-01T00:00:00Z"), true),
            ("bad".to_string(), at("2026-02-01T00:00:00Z"), false),
        ];
        assert_eq!(
            policy.retained(&lonely).into_iter().collect::<Vec<_>>(),
            ["ok"]
        );
    }
}
