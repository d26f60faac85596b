//! End-to-end life cycle of the real `ugro-monitor` binary: systemd notify protocol, watchdog,
//! reload (good and bad), graceful stop, kill -9 recovery, and refusal of a second daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nix::sys::signal::Signal;
use ugro_core::event::EventKind;
use ugro_testkit::{Daemon, DaemonOptions, NotifySocket, wait_for};

#[test]
fn notify_ready_watchdog_reload_and_graceful_stop() {
    let notify_dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(notify_dir.path());
    let opts = DaemonOptions {
        notify_socket: Some(notify.path().to_path_buf()),
        // 1 s watchdog: the daemon must ping every 0.5 s.
        watchdog: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mut d = Daemon::prepare(&opts);
    d.spawn(&opts);

    // READY=1 arrives, and only once the socket is usable.
    notify.expect("READY=1", Duration::from_secs(10));
    assert!(
        d.socket.exists(),
        "READY=1 sent before the control socket was bound"
    );
    let status = d.ctl_json(&["status"]);
    assert_eq!(status["protocol"], 1);
    assert_eq!(status["pid"], d.pid().as_raw());
    assert_eq!(status["counts"]["roots"], 0);
    assert!(
        status["database_path"]
            .as_str()
            .unwrap()
            .ends_with("state/ugro.db"),
        "{status}"
    );
    assert!(
        notify
            .seen()
            .iter()
            .any(|l| l.starts_with("STATUS=Serving on ")),
        "a useful STATUS= line comes with READY: {:?}",
        notify.seen()
    );

    // Watchdog pings keep coming.
    for _ in 0..3 {
        notify.expect("WATCHDOG=1", Duration::from_secs(3));
    }

    // A good reload takes effect.
    let logs = d.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let good = d.config_text(&DaemonOptions {
        extra_config: format!("[[roots]]\npath = \"{}\"\n", logs.display()),
        ..Default::default()
    });
    d.write_config(&good);
    d.signal(Signal::SIGHUP);
    notify.expect("RELOADING=1", Duration::from_secs(5));
    wait_for("the reload to apply", Duration::from_secs(5), || {
        (d.ctl_json(&["status"])["counts"]["roots"] == 1).then_some(())
    });
    assert_eq!(
        d.events_of_kind(EventKind::ConfigReloaded.as_str()).len(),
        1
    );

    // A broken config on SIGHUP: rejected, recorded, the old one keeps serving.
    d.write_config("[health]\ninterval = \"soon\"\n");
    d.signal(Signal::SIGHUP);
    let rejected = wait_for("the reload_rejected event", Duration::from_secs(5), || {
        let e = d.events_of_kind(EventKind::ConfigReloadRejected.as_str());
        (!e.is_empty()).then_some(e)
    });
    let msg = rejected[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("ugro.toml:2:12") && msg.contains("\"soon\""),
        "the event names file:line:col and the bad value: {msg}"
    );
    assert_eq!(rejected[0]["severity"], "warning");
    let status = d.ctl_json(&["status"]);
    assert_eq!(
        status["counts"]["roots"], 1,
        "previous configuration still in force"
    );
    assert!(d.try_wait().is_none(), "daemon still running");
    notify.expect("WATCHDOG=1", Duration::from_secs(3));

    // SIGTERM: STOPPING=1, exit 0 within 5 s, socket gone, stop recorded.
    d.signal(Signal::SIGTERM);
    notify.expect("STOPPING=1", Duration::from_secs(5));
    let (status, took) = d.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}\n{}", d.log());
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(!d.socket.exists(), "socket removed on stop");

    // The events survive the restart, and the stop was clean (no unclean_stop reported).
    d.write_config(&good);
    d.spawn(&DaemonOptions::default());
    d.wait_ready();
    let all = d.ctl_json(&["events", "--since", "1h"]);
    let kinds: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        // Health and run events interleave; this test is about the daemon's own life.
        .filter(|k| k.starts_with("daemon.") || k.starts_with("config."))
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::DaemonStarted.as_str(),
            EventKind::ConfigReloaded.as_str(),
            EventKind::ConfigReloadRejected.as_str(),
            EventKind::DaemonStopped.as_str(),
            EventKind::DaemonStarted.as_str()
        ]
    );
}

#[test]
fn sigint_also_stops_cleanly() {
    let mut d = Daemon::start(&DaemonOptions::default());
    d.signal(Signal::SIGINT);
    let (status, _) = d.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(!d.socket.exists());
}

#[test]
fn restart_after_kill_9_reuses_state_and_socket_and_reports_the_crash() {
    let opts = DaemonOptions::default();
    let mut d = Daemon::start(&opts);
    d.kill9();
    assert!(d.socket.exists(), "kill -9 leaves the socket file behind");

    d.spawn(&opts);
    d.wait_ready();
    let unclean = d.events_of_kind(EventKind::DaemonUncleanStop.as_str());
    assert_eq!(unclean.len(), 1, "the crash is reported once");
    assert_eq!(unclean[0]["severity"], "warning");
    assert_eq!(d.events_of_kind(EventKind::DaemonStarted.as_str()).len(), 2);
}

#[test]
fn second_daemon_on_a_live_socket_refuses_clearly() {
    let d = Daemon::start(&DaemonOptions::default());

    // Same config: same state dir and socket.
    let out = ugro_testkit::wait_output(
        std::process::Command::new(ugro_testkit::bin("ugro-monitor"))
            .arg("--config")
            .arg(&d.config_path)
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "another ugro-monitor is already serving on {}",
            d.socket.display()
        )) && stderr.contains(&format!("(pid {})", d.pid())),
        "{stderr}"
    );

    // Another state dir but the same socket: also refused, and the live socket is untouched.
    let other = tempfile::tempdir().unwrap();
    let cfg = other.path().join("ugro.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = \"{}\"\nsocket = \"{}\"\ncontrol_group = \"\"\n",
            other.path().join("state").display(),
            d.socket.display()
        ),
    )
    .unwrap();
    let out = ugro_testkit::wait_output(
        std::process::Command::new(ugro_testkit::bin("ugro-monitor"))
            .arg("--config")
            .arg(&cfg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already serving on"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        d.ctl_json(&["status"])["pid"],
        d.pid().as_raw(),
        "first daemon still serves"
    );
}

#[test]
fn a_regular_file_at_the_socket_path_is_never_replaced() {
    let mut d = Daemon::prepare(&DaemonOptions::default());
    std::fs::write(&d.socket, "precious").unwrap();
    d.spawn(&DaemonOptions::default());
    let (status, _) = d.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        d.log().contains("exists and is not a socket"),
        "{}",
        d.log()
    );
    assert_eq!(std::fs::read_to_string(&d.socket).unwrap(), "precious");
}
