//! Durations, sizes and roots that used to pass `--check-config` and then crash the daemon
//! (issue 13, item 1): out-of-range values are refused by `--check-config`, at start and by
//! `ugroctl reload` (which keeps the old config and a running daemon), located `file:line:col`
//! with the bad value quoted and the allowed range named; a root that is a regular file is
//! refused; the largest allowed values run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ugro_core::event::EventKind;
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

fn check_config(path: &Path) -> Output {
    let child = Command::new(ugro_testkit::bin("ugro-monitor"))
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ugro_testkit::wait_output(child, Duration::from_secs(10))
}

/// Runs the daemon on `path` in the foreground until it exits (≤ 10 s).
fn run_daemon(path: &Path) -> Output {
    let child = Command::new(ugro_testkit::bin("ugro-monitor"))
        .arg("--config")
        .arg(path)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("UGRO_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ugro_testkit::wait_output(child, Duration::from_secs(10))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The daemon's own config with `extra` appended (its state dir and socket in the temp dir).
fn daemon_config(d: &Daemon, extra: &str) -> String {
    d.config_text(&DaemonOptions {
        extra_config: extra.to_string(),
        ..Default::default()
    })
}

/// Line of `key = …` in `text` (1-based).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(&format!("{key} = ")))
        .unwrap()
        + 1
}

#[test]
fn check_config_and_start_refuse_the_durations_that_crashed_the_daemon() {
    let d = Daemon::prepare(&DaemonOptions::default());
    for (key, value, col, range) in [
        ("retention", "300000y", 13, r#"from "1d" to "3650d""#),
        (
            "metrics_interval",
            "500000000y",
            20,
            r#"from "10s" to "1d""#,
        ),
    ] {
        let text = daemon_config(&d, &format!("[summary]\n{key} = \"{value}\"\n"));
        d.write_config(&text);
        let line = line_of(&text, key);
        let want = format!(
            "{}:{line}:{col}: summary.{key}: {key} \"{value}\" is out of range: it must be {range}",
            d.config_path.display()
        );

        let out = check_config(&d.config_path);
        assert_eq!(out.status.code(), Some(78), "{key}: {}", stderr(&out));
        assert!(
            stderr(&out).lines().any(|l| l == want),
            "want {want:?}, got:\n{}",
            stderr(&out)
        );

        // Before the fix the daemon started and panicked ("DateTime - TimeDelta overflowed").
        let out = run_daemon(&d.config_path);
        assert_eq!(out.status.code(), Some(78), "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn reload_refuses_out_of_range_values_and_the_daemon_keeps_serving() {
    let mut d = Daemon::start(&DaemonOptions::default());
    let good = std::fs::read_to_string(&d.config_path).unwrap();
    let bad = [("metrics_interval", "500000000y"), ("retention", "300000y")];
    for (i, (key, value)) in bad.into_iter().enumerate() {
        let text = daemon_config(&d, &format!("[summary]\n{key} = \"{value}\"\n"));
        d.write_config(&text);
        let out = d.ctl(&["reload"]);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        // Before the fix: "reloaded …", then the daemon panicked.
        assert!(
            !out.status.success(),
            "reload of {key} = {value} accepted: {said}"
        );
        assert!(!said.contains("reloaded"), "{said}");
        let at = format!("{}:{}:", d.config_path.display(), line_of(&text, key));
        assert!(
            said.contains(&at)
                && said.contains(&format!("\"{value}\""))
                && said.contains("it must be from"),
            "ugroctl reload names file:line:col, the value and the range: {said}"
        );
        let events = wait_for("the reload_rejected event", Duration::from_secs(5), || {
            let e = d.events_of_kind(EventKind::ConfigReloadRejected.as_str());
            (e.len() == i + 1).then_some(e)
        });
        assert!(
            events
                .iter()
                .any(|e| e["message"].as_str().unwrap().contains(value)),
            "no reload_rejected event quotes {value}: {events:?}"
        );

        // Still running and answering (before the fix the sampler panicked on the new value).
        assert!(d.try_wait().is_none(), "daemon exited:\n{}", d.log());
        let status = d.ctl_json(&["status"]);
        assert_eq!(status["pid"], d.pid().as_raw(), "{status}");
    }

    // A good config after the bad ones still reloads, and the daemon never panicked.
    d.write_config(&good);
    let out = d.ctl(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.try_wait().is_none(), "daemon exited:\n{}", d.log());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn a_root_that_is_a_regular_file_is_refused_at_check_start_and_reload() {
    let mut d = Daemon::start(&DaemonOptions::default());
    let file = d.dir.path().join("logs.txt");
    std::fs::write(&file, "not a directory\n").unwrap();
    let text = daemon_config(&d, &format!("[[roots]]\npath = \"{}\"\n", file.display()));
    let want = format!(
        "{}:{}:8: roots[0].path: root \"{}\" is not a directory: {} exists and is a regular file",
        d.config_path.display(),
        line_of(&text, "path"),
        file.display(),
        file.display()
    );

    // Reload: refused, the daemon keeps its zero roots.
    d.write_config(&text);
    let out = d.ctl(&["reload"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert_eq!(d.ctl_json(&["status"])["counts"]["roots"], 0);

    // Check and start: refused with the same line.
    let out = check_config(&d.config_path);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).lines().any(|l| l == want), "{}", stderr(&out));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(5));
    let out = run_daemon(&d.config_path);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));

    // A root that does not exist yet is fine (it may appear later).
    let missing = d.dir.path().join("later");
    d.write_config(&daemon_config(
        &d,
        &format!("[[roots]]\npath = \"{}\"\n", missing.display()),
    ));
    let out = check_config(&d.config_path);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_largest_allowed_values_run() {
    let logs = tempfile::tempdir().unwrap();
    let run = logs.path().join("run1");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.json"), "{\"epochs\": 10}").unwrap();
    std::fs::create_dir_all(run.join("epoch_0")).unwrap();
    std::fs::write(
        run.join("epoch_0/validation_scores.json"),
        "{\"val\": {\"acc\": 0.5, \"loss\": 1.0}}",
    )
    .unwrap();
    std::fs::write(run.join("train_val_2026-11-20.log"), "epoch 1: loss 1.9\n").unwrap();
    let extra = format!(
        "[health]\ninterval = \"1d\"\nmin_interval = \"1d\"\nmax_interval = \"1d\"\n\
         latency_max = \"10m\"\npytorch_interval = \"7d\"\ndisk_free_min = \"1PB\"\n\n\
         [[roots]]\npath = \"{}\"\npoll_interval = \"1d\"\nstall_after = \"365d\"\n\
         outdated_after = \"3650d\"\n\n\
         [summary]\nretention = \"3650d\"\nmetrics_interval = \"1d\"\nlong_running = \"3650d\"\n",
        logs.path().display()
    );
    let mut d = Daemon::start(&DaemonOptions {
        extra_config: extra,
        ..Default::default()
    });
    // Health, runs, events and a summary all compute with these values.
    let health = d.ctl_report(&["health"]);
    assert_eq!(health["nodes"].as_array().unwrap().len(), 1, "{health}");
    wait_for("the run to be listed", Duration::from_secs(10), || {
        let runs = d.ctl_json(&["runs"]);
        (runs["runs"].as_array().unwrap().len() == 1).then_some(())
    });
    let out = d.ctl(&["summary"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // A reload with the same values is accepted.
    let out = d.ctl(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.try_wait().is_none(), "daemon exited:\n{}", d.log());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
