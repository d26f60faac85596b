//! The systemd watchdog of an idle daemon: nobody talks to it for longer than three heartbeat
//! gaps, and its pings must never stop (a task idle by design is not a dead task).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ugro_core::event::EventKind;
use ugro_testkit::{Daemon, DaemonOptions, NotifySocket};

/// The daemon's tasks beat every 20 s and count as dead after 60 s of silence
/// (`daemon::BEAT_EVERY` × 3): idle for longer than that, plus a margin.
const IDLE: Duration = Duration::from_secs(80);

#[test]
fn an_idle_daemon_keeps_pinging_the_watchdog() {
    let notify_dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(notify_dir.path());
    let opts = DaemonOptions {
        notify_socket: Some(notify.path().to_path_buf()),
        // As in the bug report: WATCHDOG_USEC=4000000, so a ping is due every 2 s.
        watchdog: Some(Duration::from_secs(4)),
        ..Default::default()
    };
    let mut d = Daemon::prepare(&opts);
    d.spawn(&opts);
    // READY=1 is the only sign of life we wait for: no client ever connects to the socket.
    notify.expect("READY=1", Duration::from_secs(10));
    let start = Instant::now();
    let mut pings = 0u32;
    while start.elapsed() < IDLE {
        // Every 4 s window (the watchdog period) must hold a ping, all the way through.
        let line = notify.expect("WATCHDOG=1", Duration::from_secs(4));
        assert_eq!(line, "WATCHDOG=1");
        pings += 1;
        assert!(d.try_wait().is_none(), "daemon exited:\n{}", d.log());
    }
    let unhealthy: Vec<&String> = notify
        .seen()
        .iter()
        .filter(|l| l.contains("Unhealthy") || l.contains("watchdog held"))
        .collect();
    assert!(
        unhealthy.is_empty(),
        "the watchdog was held while idle: {unhealthy:?}\n{}",
        d.log()
    );
    // At one ping per 2 s, 80 s hold about 40; well over half must have come.
    assert!(pings >= 25, "only {pings} pings in {IDLE:?}");
    // Its log went to a file: plain text, no colour escape codes.
    assert!(
        !d.log().contains('\u{1b}'),
        "ANSI escapes in a log that is not a terminal:\n{}",
        d.log()
    );
    // And the daemon still answers, every task alive.
    let status = d.ctl_json(&["status"]);
    let tasks = status["tasks"].as_array().unwrap();
    assert!(!tasks.is_empty());
    for t in tasks {
        assert_eq!(t["alive"], true, "task not alive after idling: {t}");
    }
}

/// A background task that dies (here: the sampler, made to panic by the debug build's
/// failpoint) is reported as `daemon.task_failed` naming it, the watchdog pings stop, and the
/// daemon stops itself with exit 1 so the service manager restarts it.
#[test]
fn a_task_that_dies_is_reported_stops_the_pings_and_exits_1() {
    let notify_dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(notify_dir.path());
    let opts = DaemonOptions {
        notify_socket: Some(notify.path().to_path_buf()),
        watchdog: Some(Duration::from_secs(1)),
        env: vec![("UGRO_FAILPOINT_PANIC".into(), "sampler".into())],
        ..Default::default()
    };
    let mut d = Daemon::prepare(&opts);
    d.spawn(&opts);
    notify.expect("READY=1", Duration::from_secs(10));
    notify.expect("WATCHDOG=1", Duration::from_secs(2));
    let (status, _) = d.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{}", d.log());
    notify.expect("STOPPING=1", Duration::from_secs(2));
    // No ping after the task died: the last one comes before the stop.
    let seen = notify.seen();
    let stopping = seen.iter().position(|l| l == "STOPPING=1").unwrap();
    assert!(
        !seen[stopping..].iter().any(|l| l == "WATCHDOG=1"),
        "{seen:?}"
    );
    let log = d.log();
    assert!(
        log.contains("background task 'sampler' stopped unexpectedly (panicked)"),
        "{log}"
    );
    // The event is in the database: the next daemon (no failpoint) serves it.
    d.spawn(&DaemonOptions::default());
    d.wait_ready();
    let ev = d.ctl_json(&[
        "events",
        "--since",
        "1h",
        "--kind",
        EventKind::DaemonTaskFailed.as_str(),
    ]);
    let events = ev["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{ev}");
    assert_eq!(events[0]["severity"], "critical");
    assert!(
        events[0]["message"].as_str().unwrap().contains("'sampler'"),
        "{ev}"
    );
}
