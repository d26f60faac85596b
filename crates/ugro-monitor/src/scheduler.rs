//! When to make summaries and run retention: cron expressions (croner) in the configured
//! timezone, catch-up at start-up, one summary per date, with an injectable clock.
//!
//! The task sleeps until the next occurrence of the summary schedule or of the retention job,
//! both computed by croner in `summary.timezone` (so 23:55 stays 23:55 across a daylight-saving
//! change), and never longer than one heartbeat: it re-plans on every wake, since the wall
//! clock can jump and a reload can change the schedule. On each wake
//! [`ugro_core::schedule::due`] decides whether a date's summary is due; the same decision at
//! start-up catches up a missed run. Retention needs nothing but this loop: it runs at its
//! occurrence, and at start-up when it has not run for a day.
//!
//! (tokio-cron-scheduler was used before; its "timezone" jobs fix the zone's UTC offset when the
//! job is created — `time_offset_seconds` in its `Job::new_async_tz` — so they drift by an hour
//! after a DST change, and a scheduler that failed to start stopped retention.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use ugro_core::event::EventKind;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;
use ugro_core::schedule::{self, Due};

use crate::store::{NewEvent, Store, StoreError};
use crate::summary::SummaryHost;
use crate::systemd::Heartbeat;

/// When the daily retention job runs (local time in `summary.timezone`).
pub const RETENTION_CRON: &str = "0 17 3 * * *";
/// The retention job's name in the `jobs` table.
pub const RETENTION_JOB: &str = "retention";

/// The time source; tests inject their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TickError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid schedule \"{expr}\": {message}")]
    Schedule { expr: String, message: String },
    #[error("making the summary of {date} failed: {cause}")]
    Make { date: NaiveDate, cause: E },
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticked {
    /// Made the summary of `date`; `late` when it was a catch-up.
    Made {
        date: NaiveDate,
        late: bool,
    },
    Waiting {
        next: Option<DateTime<Utc>>,
    },
}

/// Looks at the schedule at `now` and, when a date's summary is due, calls `make(date, late)`.
/// Reads from `store` which date was summarised last and since when this installation exists;
/// `make` must store the scheduled summary (the unique index keeps it to one per date).
pub async fn tick<F, Fut, E>(
    store: &Store,
    expr: &str,
    tz: Tz,
    now: DateTime<Utc>,
    make: F,
) -> Result<Ticked, TickError<E>>
where
    F: FnOnce(NaiveDate, bool) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let cron = schedule::parse(expr).map_err(|message| TickError::Schedule {
        expr: expr.to_string(),
        message,
    })?;
    let last = store.last_scheduled_date().await?;
    let since = store.first_start().await?.unwrap_or(now);
    match schedule::due(&cron, tz, now, last, since) {
        Due::Wait { next } => Ok(Ticked::Waiting { next }),
        Due::Make { date, late, .. } => {
            make(date, late)
                .await
                .map_err(|cause| TickError::Make { date, cause })?;
            Ok(Ticked::Made { date, late })
        }
    }
}

/// What retention deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub events: u64,
    pub check_results: u64,
    pub samples: u64,
    pub summaries: u64,
    pub snapshots: u64,
    pub outbox: u64,
    pub files: u64,
    /// Files that could not be deleted, with the reason.
    pub file_errors: Vec<String>,
}

impl RetentionReport {
    pub fn total(&self) -> u64 {
        self.events
            + self.check_results
            + self.samples
            + self.summaries
            + self.snapshots
            + self.outbox
            + self.files
    }

    /// One line for the log: "retention deleted 12 events and 40 check results older than 30
    /// days" ("nothing" when nothing was old enough).
    pub fn sentence(&self, keep: Duration) -> String {
        let parts: Vec<String> = [
            (self.events, "event", "events"),
            (self.check_results, "check result", "check results"),
            (self.samples, "sample", "samples"),
            (self.summaries, "summary", "summaries"),
            (self.snapshots, "snapshot", "snapshots"),
            (self.outbox, "finished email", "finished emails"),
            (self.files, "file", "files"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        let what = match parts.as_slice() {
            [] => "nothing".to_owned(),
            [one] => one.clone(),
            [head @ .., last] => format!("{} and {last}", head.join(", ")),
        };
        let secs = keep.as_secs();
        let age = match secs {
            86_400 => "1 day".to_owned(),
            s if s % 86_400 == 0 => format!("{} days", s / 86_400),
            s if s % 3600 == 0 => format!("{} h", s / 3600),
            _ => humantime::format_duration(keep).to_string(),
        };
        format!("retention deleted {what} older than {age}")
    }
}

/// Deletes everything older than `keep` before `now`: events, check results and resolved
/// alerts, samples, summaries and their snapshots, finished outbox entries, and the summary and
/// snapshot files under `summary_dir` (judged by the date in their names, in `tz`). Files whose
/// names do not follow the summary patterns are never touched.
pub async fn retention(
    store: &Store,
    summary_dir: &Path,
    tz: Tz,
    now: DateTime<Utc>,
    keep: Duration,
) -> Result<RetentionReport, StoreError> {
    // Checked: a retention reaching before the earliest representable time keeps everything.
    let cutoff = TimeDelta::from_std(keep)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut r = RetentionReport {
        events: store.prune_events(cutoff).await?,
        check_results: store.prune_health(cutoff).await?,
        samples: store.prune_samples(cutoff).await?,
        ..Default::default()
    };
    (r.summaries, r.snapshots) = store.prune_summaries(cutoff).await?;
    r.outbox = store.outbox_prune(cutoff).await?;
    let dir = summary_dir.to_path_buf();
    let (files, errors) = tokio::task::spawn_blocking(move || prune_files(&dir, tz, cutoff))
        .await
        .unwrap_or_else(|e| (0, vec![format!("retention of files failed: {e}")]));
    r.files = files;
    r.file_errors = errors;
    Ok(r)
}

/// The local date a summary file belongs to, from its name (`YYYY-MM-DD_summary.md`,
/// `YYYY-MM-DD_summary.html`, `YYYY-MM-DD_gpu.png`).
fn summary_file_date(name: &str) -> Option<NaiveDate> {
    let (date, rest) = name.split_at_checked(10)?;
    matches!(rest, "_summary.md" | "_summary.html" | "_gpu.png")
        .then(|| NaiveDate::parse_from_str(date, "%Y-%m-%d").ok())
        .flatten()
}

/// The local time a snapshot export was taken, from its name (`YYYY-MM-DD_HHMMSS.json`).
fn snapshot_file_time(name: &str) -> Option<NaiveDateTime> {
    let stem = name.strip_suffix(".json")?;
    NaiveDateTime::parse_from_str(stem, "%Y-%m-%d_%H%M%S").ok()
}

fn prune_files(dir: &Path, tz: Tz, cutoff: DateTime<Utc>) -> (u64, Vec<String>) {
    let local_cutoff = cutoff.with_timezone(&tz).naive_local();
    let mut deleted = 0;
    let mut errors = Vec::new();
    let mut remove = |path: &Path| match std::fs::remove_file(path) {
        Ok(()) => deleted += 1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("{}: {e}", path.display())),
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(date) = name.to_str().and_then(summary_file_date) else {
                continue;
            };
            // A day's file is old once the whole day is before the cutoff.
            let end_of_day = date
                .and_hms_opt(0, 0, 0)
                .and_then(|t| t.checked_add_signed(TimeDelta::days(1)));
            if end_of_day.is_some_and(|t| t <= local_cutoff) {
                remove(&e.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("snapshots")) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name
                .to_str()
                .and_then(snapshot_file_time)
                .is_some_and(|t| t < local_cutoff)
            {
                remove(&e.path());
            }
        }
    }
    (deleted, errors)
}

async fn run_tick<H: SummaryHost>(host: &Arc<H>, clock: &dyn Clock) {
    let cfg = host.config();
    let now = clock.now();
    let result = tick(
        host.store(),
        &cfg.summary.schedule,
        cfg.summary.timezone,
        now,
        |date, late| async move {
            if late {
                tracing::info!(%date, "making the summary missed while the daemon was down");
            }
            crate::summary::make(&**host, now, crate::summary::Trigger::Schedule { date })
                .await
                .map(|_| ())
        },
    )
    .await;
    match result {
        Ok(Ticked::Made { date, late: true }) => {
            host
                .event(NewEvent::new(
                    EventKind::SummaryCaughtUp,
                    "summary",
                    Severity::Warning,
                    format!("the daemon was not running at the scheduled time; the summary of {date} was made at start-up"),
                ))
                .await;
        }
        Ok(_) => {}
        Err(e) => {
            host.event(NewEvent::new(
                EventKind::SummaryFailed,
                "summary",
                Severity::Critical,
                format!("{e}; retrying at the next tick"),
            ))
            .await;
        }
    }
}

async fn run_retention<H: SummaryHost>(host: &Arc<H>, clock: &dyn Clock) {
    let cfg = host.config();
    let now = clock.now();
    match retention(
        host.store(),
        &cfg.summary.dir,
        cfg.summary.timezone,
        now,
        cfg.summary.retention,
    )
    .await
    {
        Ok(r) => {
            if let Err(e) = host.store().job_done(RETENTION_JOB, now).await {
                tracing::warn!(error = %e, "could not record the retention run");
            }
            tracing::info!("{}", r.sentence(cfg.summary.retention));
            if !r.file_errors.is_empty() {
                host.event(NewEvent::new(
                    EventKind::RetentionFileErrors,
                    "summary",
                    Severity::Warning,
                    format!(
                        "retention could not delete {} file(s): {}",
                        r.file_errors.len(),
                        r.file_errors.join("; ")
                    ),
                ))
                .await;
            }
        }
        Err(e) => {
            host.event(NewEvent::new(
                EventKind::RetentionFailed,
                "summary",
                Severity::Warning,
                format!("retention failed: {e}"),
            ))
            .await;
        }
    }
}

/// The next time the task must wake: the earlier of the next summary and the next retention
/// occurrence in `tz`, and never later than `at_most` from `now`.
pub fn next_wake(
    summary_expr: &str,
    tz: Tz,
    now: DateTime<Utc>,
    next_retention: Option<DateTime<Utc>>,
    at_most: Duration,
) -> Duration {
    let next_summary = schedule::parse(summary_expr)
        .ok()
        .and_then(|c| schedule::next_fire(&c, tz, now));
    [next_summary, next_retention]
        .into_iter()
        .flatten()
        .min()
        .and_then(|t| (t - now).to_std().ok())
        .map_or(at_most, |d| d.min(at_most))
}

/// The next retention occurrence after `now`, in `tz`.
fn next_retention(tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule::parse(RETENTION_CRON)
        .ok()
        .and_then(|c| schedule::next_fire(&c, tz, now))
}

/// The daemon's scheduler task: a tick and a retention check at start-up (catch-up), then a
/// sleep until the next occurrence (re-planned at least every heartbeat) until `cancel`.
pub async fn supervise<H: SummaryHost>(host: Arc<H>, cancel: CancellationToken, hb: Heartbeat) {
    let clock = SystemClock;
    // Start-up: catch up a missed summary, and retention if it did not run for a day.
    run_tick(&host, &clock).await;
    hb.beat();
    let stale = match host.store().job_last(RETENTION_JOB).await {
        Ok(Some(t)) => clock.now().signed_duration_since(t) > TimeDelta::hours(24),
        Ok(None) => true,
        Err(_) => true,
    };
    if stale {
        run_retention(&host, &clock).await;
    }
    let mut retention_at = next_retention(host.config().summary.timezone, clock.now());
    loop {
        hb.beat();
        let cfg = host.config();
        let tz = cfg.summary.timezone;
        let now = clock.now();
        let sleep = next_wake(
            &cfg.summary.schedule,
            tz,
            now,
            retention_at,
            crate::supervise::BEAT_EVERY,
        );
        drop(cfg);
        tokio::select! {
            _ = cancel.cancelled() => break,
            // A little past the occurrence, so the clock reads it as come.
            _ = tokio::time::sleep(sleep + Duration::from_millis(50)) => {}
        }
        hb.beat();
        run_tick(&host, &clock).await;
        let now = clock.now();
        if retention_at.is_none_or(|t| now >= t) {
            if retention_at.is_some() {
                run_retention(&host, &clock).await;
            }
            retention_at = next_retention(host.config().summary.timezone, now);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_next_wake_is_the_local_occurrence_on_both_sides_of_a_dst_change() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let day = Duration::from_secs(86_400);
        // 23:50 CEST (UTC+2) on 24 October: 23:55 local is 21:55 UTC, 5 minutes away.
        let wake = next_wake("0 55 23 * * *", tz, utc("2026-10-24T21:50:00Z"), None, day);
        assert_eq!(wake, Duration::from_secs(300));
        // The clocks went back on 25 October: 23:50 CET (UTC+1) is 22:50 UTC, and 23:55 local
        // is still 5 minutes away (a job with a fixed offset would fire at 22:55 local, or 00:55).
        let wake = next_wake("0 55 23 * * *", tz, utc("2026-10-25T22:50:00Z"), None, day);
        assert_eq!(wake, Duration::from_secs(300));
        // Retention, when sooner, wins; nothing is ever slept longer than the cap.
        let soon = Some(utc("2026-10-25T22:51:00Z"));
        let wake = next_wake("0 55 23 * * *", tz, utc("2026-10-25T22:50:00Z"), soon, day);
        assert_eq!(wake, Duration::from_secs(60));
        let cap = Duration::from_secs(20);
        let wake = next_wake("0 55 23 * * *", tz, utc("2026-10-25T12:00:00Z"), None, cap);
        assert_eq!(wake, cap);
        // The retention occurrence is 03:17 local.
        let r = next_retention(tz, utc("2026-10-25T12:00:00Z")).unwrap();
        assert_eq!(r, utc("2026-10-26T02:17:00Z"));
    }

    #[test]
    fn file_names_are_judged_by_their_dates() {
        assert_eq!(
            summary_file_date("2026-11-01_summary.md"),
            NaiveDate::from_ymd_opt(2026, 11, 1)
        );
        assert!(summary_file_date("2026-11-01_gpu.png").is_some());
        assert!(summary_file_date("2026-11-01_summary.html").is_some());
        assert_eq!(summary_file_date("notes.md"), None);
        assert_eq!(summary_file_date("2026-11-01_other.md"), None);
        assert_eq!(summary_file_date("2026-13-01_summary.md"), None);
        assert!(snapshot_file_time("2026-11-01_235500.json").is_some());
        assert_eq!(snapshot_file_time("2026-11-01.json"), None);
    }

    #[tokio::test]
    async fn a_retention_reaching_past_the_earliest_date_keeps_everything() {
        // "300000y" made the retention job panic at start ("DateTime - TimeDelta overflowed").
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        let summaries = dir.path().join("summaries");
        std::fs::create_dir_all(&summaries).unwrap();
        std::fs::write(summaries.join("2026-11-01_summary.md"), "# kept\n").unwrap();
        let now = Utc::now();
        for keep in [Duration::from_secs(300_000 * 31_557_600), Duration::MAX] {
            let r = retention(&store, &summaries, chrono_tz::UTC, now, keep)
                .await
                .unwrap();
            assert_eq!(r.files, 0, "{r:?}");
            assert!(r.file_errors.is_empty(), "{r:?}");
        }
        assert!(summaries.join("2026-11-01_summary.md").exists());
    }
}
