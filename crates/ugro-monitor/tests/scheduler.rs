//! The summary schedule and retention with an injected clock, on a real SQLite store: fires
//! once per day in the configured timezone, catches up a missed run at start-up, never makes two
//! summaries for one date, and retention deletes only what is older than the retention.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::sample::{GpuSample, NodeSample};
use ugro_monitor::scheduler::{self, Ticked};
use ugro_monitor::store::{EventFilter, NewEvent, Store};
use ugro_monitor::summary::SummaryRow;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ugro.db")).await.unwrap();
    (dir, store)
}

fn row(date: NaiveDate, scheduled: bool, made_at: DateTime<Utc>) -> SummaryRow {
    SummaryRow {
        id: 0,
        date,
        scheduled,
        made_at,
        window_start: made_at - TimeDelta::hours(24),
        window_end: made_at,
        snapshot_id: None,
        subject: format!("[ugro] {date}"),
        markdown: format!("# Daily Summary — {date}\n"),
        html: String::new(),
        chart_png: None,
    }
}

const SNAPSHOT: &str = r#"{"taken_at":"2026-11-01T00:00:00Z","runs":[],"nodes":[]}"#;

/// Ticks an injected clock every 5 minutes from `start` for `days`, storing a scheduled summary
/// whenever the scheduler says so, like the daemon does. Returns (date, made at, late).
async fn simulate(
    store: &Store,
    tz: Tz,
    start: DateTime<Utc>,
    days: i64,
) -> Vec<(NaiveDate, DateTime<Utc>, bool)> {
    let mut made = Vec::new();
    let mut now = start;
    while now < start + TimeDelta::days(days) {
        let t = scheduler::tick(store, "0 55 23 * * *", tz, now, |d, _late| async move {
            let saved = store
                .save_summary(&row(d, true, now), SNAPSHOT)
                .await
                .unwrap();
            assert!(saved.is_some(), "the scheduler asked twice for {d}");
            Ok::<(), Infallible>(())
        })
        .await
        .unwrap();
        if let Ticked::Made { date, late } = t {
            made.push((date, now, late));
        }
        now += TimeDelta::minutes(5);
    }
    made
}

#[tokio::test]
async fn fires_once_per_day_in_the_configured_timezone_across_a_dst_change() {
    let (_dir, store) = store().await;
    let tz: Tz = "Europe/Berlin".parse().unwrap();
    // Berlin leaves summer time on 2026-10-25.
    let start = utc("2026-10-21T12:00:00Z");
    store.begin_session(start, 1, "test").await.unwrap();
    let made = simulate(&store, tz, start, 7).await;
    let dates: Vec<String> = made.iter().map(|(d, _, _)| d.to_string()).collect();
    assert_eq!(
        dates,
        [
            "2026-10-21",
            "2026-10-22",
            "2026-10-23",
            "2026-10-24",
            "2026-10-25",
            "2026-10-26",
            "2026-10-27"
        ]
    );
    for (d, at, late) in &made {
        let local = at.with_timezone(&tz);
        assert_eq!(
            local.format("%H:%M").to_string(),
            "23:55",
            "{d} made at {at}"
        );
        assert!(!late);
    }
    // The UTC instant moved by an hour with the clocks: 21:55Z in summer, 22:55Z in winter.
    assert_eq!(made[0].1, utc("2026-10-21T21:55:00Z"));
    assert_eq!(made[6].1, utc("2026-10-27T22:55:00Z"));
}

#[tokio::test]
async fn a_missed_run_is_caught_up_at_start_up_once() {
    let (_dir, store) = store().await;
    let tz = chrono_tz::UTC;
    store
        .begin_session(utc("2026-11-10T09:00:00Z"), 1, "test")
        .await
        .unwrap();
    store
        .save_summary(
            &row(date("2026-11-20"), true, utc("2026-11-20T23:55:00Z")),
            SNAPSHOT,
        )
        .await
        .unwrap();
    // The daemon was down from the 21st 20:00 until the 22nd 07:30: it starts and ticks.
    let now = utc("2026-11-22T07:30:00Z");
    let mut calls = Vec::new();
    let t = scheduler::tick(&store, "0 55 23 * * *", tz, now, |d, late| {
        calls.push((d, late));
        let store = store.clone();
        async move {
            store
                .save_summary(&row(d, true, now), SNAPSHOT)
                .await
                .unwrap();
            Ok::<(), Infallible>(())
        }
    })
    .await
    .unwrap();
    assert_eq!(
        t,
        Ticked::Made {
            date: date("2026-11-21"),
            late: true
        }
    );
    assert_eq!(calls, [(date("2026-11-21"), true)]);
    // Later ticks of the same morning do nothing; tonight's is next.
    let t = scheduler::tick(
        &store,
        "0 55 23 * * *",
        tz,
        now + TimeDelta::minutes(1),
        |_, _| async {
            panic!("no second summary");
            #[allow(unreachable_code)]
            Ok::<(), Infallible>(())
        },
    )
    .await
    .unwrap();
    assert_eq!(
        t,
        Ticked::Waiting {
            next: Some(utc("2026-11-22T23:55:00Z"))
        }
    );
}

#[tokio::test]
async fn a_fresh_install_waits_for_its_first_night() {
    let (_dir, store) = store().await;
    let now = utc("2026-11-22T10:00:00Z");
    store.begin_session(now, 1, "test").await.unwrap();
    let t = scheduler::tick(&store, "0 55 23 * * *", chrono_tz::UTC, now, |_, _| async {
        panic!("nothing was missed");
        #[allow(unreachable_code)]
        Ok::<(), Infallible>(())
    })
    .await
    .unwrap();
    assert_eq!(
        t,
        Ticked::Waiting {
            next: Some(utc("2026-11-22T23:55:00Z"))
        }
    );
}

#[tokio::test]
async fn never_two_scheduled_summaries_for_one_date() {
    let (_dir, store) = store().await;
    let d = date("2026-11-22");
    let first = store
        .save_summary(&row(d, true, utc("2026-11-22T23:55:00Z")), SNAPSHOT)
        .await
        .unwrap();
    assert!(first.is_some());
    // A restart racing the schedule tries again: refused, nothing written.
    let again = store
        .save_summary(&row(d, true, utc("2026-11-22T23:56:00Z")), SNAPSHOT)
        .await
        .unwrap();
    assert_eq!(again, None);
    // Requested summaries of that date are fine, any number, and do not count as the nightly.
    for m in [10, 20] {
        let at = utc("2026-11-22T12:00:00Z") + TimeDelta::minutes(m);
        assert!(
            store
                .save_summary(&row(d, false, at), SNAPSHOT)
                .await
                .unwrap()
                .is_some()
        );
    }
    let nightly = store.scheduled_summary(d).await.unwrap().unwrap();
    assert_eq!(nightly.made_at, utc("2026-11-22T23:55:00Z"));
    assert_eq!(store.list_summaries(10).await.unwrap().len(), 3);
    // The date's summary is the nightly one, even though requested ones are newer... by made_at.
    assert!(store.summary_by_date(d).await.unwrap().unwrap().scheduled);
    assert_eq!(store.last_scheduled_date().await.unwrap(), Some(d));
}

#[tokio::test]
async fn retention_deletes_only_what_is_older_than_the_retention() {
    let (dir, store) = store().await;
    let now = utc("2026-11-22T03:17:00Z");
    let keep = Duration::from_secs(30 * 86400);
    let old = now - TimeDelta::days(31);
    let young = now - TimeDelta::days(29);

    for (at, what) in [(old, "old"), (young, "young")] {
        store
            .record_event(
                at,
                &NewEvent::new(EventKind::DaemonStarted, what, Severity::Info, what),
            )
            .await
            .unwrap();
        store
            .save_summary(&row(at.date_naive(), true, at), SNAPSHOT)
            .await
            .unwrap();
    }
    for at in [old, young] {
        let gpu = GpuSample {
            node: "gpu1".into(),
            at,
            gpu: 0,
            utilization_pct: 50.0,
            memory_used_mib: 1,
            memory_total_mib: 2,
            temperature_c: None,
            power_w: None,
            processes: None,
        };
        let node = NodeSample {
            node: "gpu1".into(),
            at,
            cpu_pct: Some(10.0),
            load1: 1.0,
            load5: 1.0,
            load15: 1.0,
            cores: 8,
            memory_available_bytes: 1,
            memory_total_bytes: 2,
        };
        store.insert_samples(&[gpu], &[node]).await.unwrap();
    }
    // Files: a day's summary files go once the whole day is past the cutoff; snapshot exports by
    // their time; files of other names are never touched.
    let sdir = dir.path().join("summaries");
    std::fs::create_dir_all(sdir.join("snapshots")).unwrap();
    let files = [
        ("2026-10-21_summary.md", false),
        ("2026-10-21_summary.html", false),
        ("2026-10-21_gpu.png", false),
        // The cutoff (2026-10-23 03:17) falls inside the 23rd: that day stays.
        ("2026-10-23_summary.md", true),
        ("2026-11-21_summary.md", true),
        ("snapshots/2026-10-23_031600.json", false),
        ("snapshots/2026-10-23_031800.json", true),
        ("2026-01-01_notes.md", true),
        ("README", true),
    ];
    for (f, _) in files {
        std::fs::write(sdir.join(f), "x").unwrap();
    }

    let r = scheduler::retention(&store, &sdir, chrono_tz::UTC, now, keep)
        .await
        .unwrap();
    assert_eq!(r.events, 1);
    assert!(r.samples >= 1, "{r:?}");
    let (gpus, nodes) = store
        .samples_between(old - TimeDelta::days(1), now)
        .await
        .unwrap();
    assert_eq!(gpus.iter().map(|g| g.at).collect::<Vec<_>>(), [young]);
    assert_eq!(nodes.iter().map(|n| n.at).collect::<Vec<_>>(), [young]);
    assert_eq!(r.summaries, 1);
    assert_eq!(r.snapshots, 1);
    assert_eq!(r.files, 4);
    assert!(r.file_errors.is_empty());
    for (f, kept) in files {
        assert_eq!(sdir.join(f).exists(), kept, "{f}");
    }
    let (events, _) = store
        .events(&EventFilter {
            since: None,
            kind: Some(EventKind::DaemonStarted.as_str().into()),
            subject: None,
            limit: 10,
        })
        .await
        .unwrap();
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, ["young"]);
    let left = store.list_summaries(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].made_at, young);
    // Running it again deletes nothing more.
    let r = scheduler::retention(&store, &sdir, chrono_tz::UTC, now, keep)
        .await
        .unwrap();
    assert_eq!(r.total(), 0);
}
