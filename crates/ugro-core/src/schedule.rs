//! When summaries are due: cron occurrences in a timezone, the date a run belongs to, and the
//! catch-up of a missed run, all from a caller-supplied `now`.
//!
//! The daemon asks [`due`] on every tick (and once at start-up). Occurrences are computed in
//! the configured IANA timezone by croner on chrono-tz, so a schedule such as `0 55 23 * * *`
//! fires at 23:55 local time on both sides of a daylight-saving change.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Parses a cron expression: 5 fields, or 6 with seconds first (`0 55 23 * * *`).
pub fn parse(expr: &str) -> Result<Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// The latest occurrence at or before `now`.
pub fn previous_fire(cron: &Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The first occurrence strictly after `now`.
pub fn next_fire(cron: &Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The date a summary made for the occurrence `fire` carries: its local date in `tz`.
pub fn fire_date(fire: DateTime<Utc>, tz: Tz) -> NaiveDate {
    fire.with_timezone(&tz).date_naive()
}

/// What the scheduler should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Make the summary of `date` (for the occurrence at `fire`). `late` when `now` is more
    /// than [`LATE_AFTER`] past the occurrence: the daemon was down or asleep then.
    Make {
        date: NaiveDate,
        fire: DateTime<Utc>,
        late: bool,
    },
    /// Nothing due; the next occurrence (None when the expression never fires again).
    Wait { next: Option<DateTime<Utc>> },
}

/// A run this long after its occurrence counts as a catch-up.
pub const LATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// Decides whether a scheduled summary is due at `now`.
///
/// - `last_date`: the newest date that already has a scheduled summary. A date never gets a
///   second one.
/// - `known_since`: when this installation started existing (its first daemon start). An
///   occurrence before it is not "missed": a fresh install does not summarise yesterday.
///
/// Only the most recent occurrence is considered: after a week of downtime one catch-up
/// summary is made (its window reaches back to the previous summary), not seven.
pub fn due(
    cron: &Cron,
    tz: Tz,
    now: DateTime<Utc>,
    last_date: Option<NaiveDate>,
    known_since: DateTime<Utc>,
) -> Due {
    let wait = || Due::Wait {
        next: next_fire(cron, tz, now),
    };
    let Some(fire) = previous_fire(cron, tz, now) else {
        return wait();
    };
    if fire < known_since {
        return wait();
    }
    let date = fire_date(fire, tz);
    if last_date.is_some_and(|d| d >= date) {
        return wait();
    }
    Due::Make {
        date,
        fire,
        late: now - fire > LATE_AFTER,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// Steps an injected clock minute by minute from `start` for `days`, acting on every
    /// `Make` like the daemon does, and returns the (date, instant) of each summary made.
    fn simulate(
        expr: &str,
        tz: Tz,
        start: DateTime<Utc>,
        days: i64,
    ) -> Vec<(NaiveDate, DateTime<Utc>)> {
        let cron = parse(expr).unwrap();
        let mut last = None;
        let mut made = Vec::new();
        let mut now = start;
        let end = start + TimeDelta::days(days);
        while now < end {
            if let Due::Make { date, .. } = due(&cron, tz, now, last, start) {
                made.push((date, now));
                last = Some(date);
            }
            now += TimeDelta::minutes(1);
        }
        made
    }

    #[test]
    fn fires_once_per_day_at_local_time_across_dst_changes() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 (spring forward) and 2026-10-25 (fall back) both inside the windows.
        for start in ["2026-03-25T12:00:00Z", "2026-10-21T12:00:00Z"] {
            let made = simulate("0 55 23 * * *", tz, utc(start), 8);
            assert_eq!(made.len(), 8, "{made:?}");
            for w in made.windows(2) {
                assert_eq!(
                    w[1].0,
                    w[0].0.succ_opt().unwrap(),
                    "one per consecutive date"
                );
            }
            for (d, at) in &made {
                let local = at.with_timezone(&tz);
                assert_eq!(local.date_naive(), *d);
                assert_eq!(local.format("%H:%M").to_string(), "23:55", "{at}");
            }
        }
    }

    #[test]
    fn timezone_moves_the_instant() {
        let cron = parse("0 55 23 * * *").unwrap();
        let now = utc("2026-11-22T12:00:00Z");
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            next_fire(&cron, chrono_tz::UTC, now),
            Some(utc("2026-11-22T23:55:00Z"))
        );
        assert_eq!(next_fire(&cron, ny, now), Some(utc("2026-11-23T04:55:00Z")));
        // 23:55 in New York is already the next UTC day, but the summary carries the local date.
        assert_eq!(
            fire_date(utc("2026-11-23T04:55:00Z"), ny),
            date("2026-11-22")
        );
    }

    #[test]
    fn five_field_expressions_are_accepted() {
        let cron = parse("55 23 * * *").unwrap();
        let now = utc("2026-11-22T12:00:00Z");
        assert_eq!(
            next_fire(&cron, chrono_tz::UTC, now),
            Some(utc("2026-11-22T23:55:00Z"))
        );
        assert!(parse("61 * * * *").is_err());
    }

    #[test]
    fn a_missed_run_is_caught_up_once_at_start_up() {
        let cron = parse("0 55 23 * * *").unwrap();
        let since = utc("2026-11-01T00:00:00Z");
        // Down from 23:00 on the 21st until 08:00 on the 22nd: the 21st's summary is missing.
        let now = utc("2026-11-22T08:00:00Z");
        let d = due(&cron, chrono_tz::UTC, now, Some(date("2026-11-20")), since);
        assert_eq!(
            d,
            Due::Make {
                date: date("2026-11-21"),
                fire: utc("2026-11-21T23:55:00Z"),
                late: true
            }
        );
        // Made: nothing more until tonight.
        let d = due(&cron, chrono_tz::UTC, now, Some(date("2026-11-21")), since);
        assert_eq!(
            d,
            Due::Wait {
                next: Some(utc("2026-11-22T23:55:00Z"))
            }
        );
    }

    #[test]
    fn a_week_of_downtime_makes_one_summary_not_seven() {
        let cron = parse("0 55 23 * * *").unwrap();
        let since = utc("2026-10-01T00:00:00Z");
        let now = utc("2026-11-22T08:00:00Z");
        let d = due(&cron, chrono_tz::UTC, now, Some(date("2026-11-14")), since);
        assert!(matches!(d, Due::Make { date: dt, .. } if dt == date("2026-11-21")));
        let d = due(&cron, chrono_tz::UTC, now, Some(date("2026-11-21")), since);
        assert!(matches!(d, Due::Wait { .. }));
    }

    #[test]
    fn on_time_is_not_late_and_no_duplicate_for_the_same_date() {
        let cron = parse("0 55 23 * * *").unwrap();
        let since = utc("2026-11-01T00:00:00Z");
        let at = utc("2026-11-22T23:55:00Z");
        let d = due(
            &cron,
            chrono_tz::UTC,
            at + TimeDelta::seconds(1),
            Some(date("2026-11-21")),
            since,
        );
        assert!(matches!(d, Due::Make { late: false, .. }), "{d:?}");
        // Same date already made (e.g. just before a restart): never again.
        for mins in [1, 30, 60] {
            let d = due(
                &cron,
                chrono_tz::UTC,
                at + TimeDelta::minutes(mins),
                Some(date("2026-11-22")),
                since,
            );
            assert!(matches!(d, Due::Wait { .. }));
        }
    }

    #[test]
    fn a_fresh_install_does_not_summarise_the_day_before_it_existed() {
        let cron = parse("0 55 23 * * *").unwrap();
        let since = utc("2026-11-22T08:00:00Z");
        let d = due(
            &cron,
            chrono_tz::UTC,
            since + TimeDelta::minutes(5),
            None,
            since,
        );
        assert_eq!(
            d,
            Due::Wait {
                next: Some(utc("2026-11-22T23:55:00Z"))
            }
        );
        // But its first night is summarised.
        let d = due(
            &cron,
            chrono_tz::UTC,
            utc("2026-11-22T23:56:00Z"),
            None,
            since,
        );
        assert!(matches!(d, Due::Make { date: dt, late: false, .. } if dt == date("2026-11-22")));
    }

    #[test]
    fn injected_clock_across_midnight_in_a_far_timezone() {
        // Tokyo is UTC+9: 23:55 local is 14:55 UTC the same date.
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        let start = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        let made = simulate("0 55 23 * * *", tz, start, 3);
        let got: Vec<String> = made
            .iter()
            .map(|(d, at)| format!("{d} {}", at.format("%H:%M")))
            .collect();
        assert_eq!(
            got,
            ["2026-11-20 14:55", "2026-11-21 14:55", "2026-11-22 14:55"]
        );
    }
}
