//! Roots on another node's disk (`[[roots]] node = "box"`) end to end: the node is this
//! machine reached through the testkit's real sshd, so the daemon reads the tree only over the
//! node's SSH session. The status cases of the local-root tests under `box:` ids, a new epoch
//! and a new run showing up by polling, progress.json written over SSH, and the node going
//! away (sshd killed with its sessions): the runs stay listed stale with their last state,
//! never failed, and turn fresh when sshd is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ugro_testkit::runs::{H, age, find_run, runs, wait_run, write_file as write};
use ugro_testkit::sshd::Sshd;
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

/// Epoch `i` of a trainer run, its files dated `ago`.
fn epoch(run: &Path, i: u32, ago: Duration) {
    let d = run.join(format!("epoch_{i}"));
    write(&d.join("training_losses.pt"), "\u{1}\u{2}");
    write(&d.join("optimizer_buffer.json"), "{\"step\": 1}");
    write(
        &d.join("validation_scores.json"),
        &format!("{{\"val\": {{\"acc\": 0.{i}}}}}"),
    );
    for f in [
        "training_losses.pt",
        "optimizer_buffer.json",
        "validation_scores.json",
    ] {
        age(&d.join(f), ago);
    }
}

/// A trainer with `done` of `total` epochs, one every 10 min ending `last_ago` s ago, and a
/// log dated `log_ago` s ago.
fn trainer(run: &Path, total: u32, done: u32, last_ago: u64, log_ago: u64) {
    write(
        &run.join("config.json"),
        &format!("{{\"epochs\": {total}}}"),
    );
    for i in 0..done {
        epoch(
            run,
            i,
            Duration::from_secs(last_ago + 600 * u64::from(done - 1 - i)),
        );
    }
    let log = run.join("train_val_2026-11-20.log");
    if !log.exists() {
        write(&log, "epoch 1: loss 1.9\n");
    }
    age(&log, Duration::from_secs(log_ago));
}

/// The daemon's config: node "box" over `sshd`, and a root on it.
fn config(sshd: &Sshd, root: &Path, extra: &str) -> String {
    format!(
        "[health]\ninterval = \"2s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"5s\"\n\n{}\n[[roots]]\npath = \"{}\"\nnode = \"box\"\npoll_interval = \"1s\"\nstall_after = \"30m\"\noutdated_after = \"30d\"\n{extra}\n",
        sshd.node_toml("box", ""),
        root.display()
    )
}

#[test]
fn a_remote_root_passes_the_status_cases_and_sees_new_epochs_by_polling() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let r = |id: &str| root.join(id);
    trainer(&r("train/running"), 10, 3, 60, 30);
    trainer(&r("train/finished"), 5, 5, 2 * H, 2 * H);
    trainer(&r("train/outdated"), 2, 2, 40 * 24 * H, 40 * 24 * H);
    trainer(&r("train/stuck"), 10, 4, 2 * H, 2 * H);
    write(
        &r("train/failed/train_val_2026-11-20.log"),
        "epoch 4\nTraceback (most recent call last):\n  File \"train.py\", line 88, in <module>\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n",
    );
    trainer(&r("train/failed"), 10, 4, 2 * H, 2 * H);
    write(
        &r("eval/complete/evaluation_scores.json"),
        "{\"test\": {\"acc\": 0.91}}",
    );
    write(&r("eval/complete/eval_1.log"), "done\n");
    age(&r("eval/complete/eval_1.log"), Duration::from_secs(2 * H));
    write(
        &r("misc/generic/progress.json"),
        "{\"mission_current\": 250, \"mission_total\": 1000, \"progress_percent\": 25.0, \"status\": \"running\", \"eta_seconds\": 120}",
    );
    // The stuck run's live process: its command line holds the run's dir.
    let mut proc = Command::new("/usr/bin/python3")
        .args(["-c", "import time; time.sleep(300)"])
        .arg(r("train/stuck"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let sshd = Sshd::start();
    let d = Daemon::start(&DaemonOptions {
        extra_config: config(&sshd, &root, "write_progress_json = true"),
        ..Default::default()
    });
    wait_for("the first remote scan", Duration::from_secs(30), || {
        (runs(&d).len() == 7).then_some(())
    });
    let all = runs(&d);
    assert!(
        all.iter()
            .all(|r| r["id"].as_str().unwrap().starts_with("box:")),
        "remote run ids are NODE:RELPATH: {:?}",
        all.iter().map(|r| r["id"].clone()).collect::<Vec<_>>()
    );
    let run = |id: &str| find_run(&d, id).unwrap_or_else(|| panic!("no run {id}"));
    let running = run("box:train/running");
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["progress"]["completed_epochs"], 3);
    assert_eq!(
        running["progress"]["total_epochs"], 10,
        "total from config.json"
    );
    assert_eq!(run("box:train/finished")["status"], "finished");
    assert_eq!(run("box:train/outdated")["status"], "outdated");
    let stuck = wait_run(
        &d,
        "box:train/stuck",
        "the run with a live process to be stuck",
        Duration::from_secs(20),
        |r| r["status"] == "stuck",
    );
    assert_eq!(stuck["process"]["pid"], proc.id(), "{stuck}");
    let failed = run("box:train/failed");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("CUDA out of memory")),
        "the reason from the log tail read over SSH: {failed}"
    );
    // The logs API finds a remote run's log through the node's session.
    let out = d.ctl(&["logs", "box:train/failed", "-n", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("CUDA out of memory") && !text.contains("epoch 4"),
        "ugroctl logs -n 1 of a remote run: {out:?}"
    );
    let eval = run("box:eval/complete");
    assert_eq!(
        (eval["status"].as_str(), eval["runner"].as_str()),
        (Some("finished"), Some("evaluator"))
    );
    let generic = run("box:misc/generic");
    assert_eq!(generic["runner"], "generic");
    assert_eq!(generic["progress"]["percentage"], 25.0);
    // progress.json written on the node's disk (through a temp file and a rename).
    wait_for(
        "progress.json of the running trainer",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(r("train/running/progress.json")).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            (v["completed_epochs"] == 3 && v["runner_type"] == "trainer").then_some(())
        },
    );
    assert!(!r("train/running/.progress.json.ugro-tmp").exists());

    // A new epoch on the node's disk shows up by polling (poll_interval 1 s; the deadline is
    // generous, the benchmark measures).
    epoch(&r("train/running"), 3, Duration::ZERO);
    wait_run(
        &d,
        "box:train/running",
        "the new epoch",
        Duration::from_secs(10),
        |r| r["progress"]["completed_epochs"] == 4,
    );
    // A new run in a new nested directory, and then its next epoch.
    trainer(&r("later/sweep/a/run"), 4, 1, 5, 1);
    wait_run(
        &d,
        "box:later/sweep/a/run",
        "the new run",
        Duration::from_secs(10),
        |r| r["progress"]["completed_epochs"] == 1,
    );
    epoch(&r("later/sweep/a/run"), 1, Duration::ZERO);
    wait_run(
        &d,
        "box:later/sweep/a/run",
        "the new run's next epoch",
        Duration::from_secs(10),
        |r| r["progress"]["completed_epochs"] == 2,
    );
    // The process ends: stuck turns failed.
    proc.kill().unwrap();
    proc.wait().unwrap();
    wait_run(
        &d,
        "box:train/stuck",
        "the stuck run to turn failed",
        Duration::from_secs(60),
        |r| r["status"] == "failed",
    );
}

#[test]
fn an_unreachable_node_keeps_its_runs_stale_never_failed_and_fresh_when_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    trainer(&root.join("exp/live"), 10, 2, 30, 5);
    trainer(&root.join("exp/done"), 2, 2, 2 * H, 2 * H);
    let mut sshd = Sshd::start();
    let d = Daemon::start(&DaemonOptions {
        extra_config: config(&sshd, &root, ""),
        ..Default::default()
    });
    let before = wait_run(
        &d,
        "box:exp/live",
        "the first remote scan",
        Duration::from_secs(30),
        |r| r["status"] == "running" && r["progress"]["completed_epochs"] == 2,
    );
    assert!(before.get("stale").is_none_or(|s| s == false), "{before}");

    // The whole sshd goes, its sessions with it; meanwhile the run's log goes quiet (as
    // seen from here it would be failed if judged).
    sshd.stop();
    let stale = wait_run(
        &d,
        "box:exp/live",
        "the run to be served stale",
        Duration::from_secs(30),
        |r| r["stale"] == true,
    );
    assert_eq!(stale["status"], "running", "the last known state: {stale}");
    assert_eq!(stale["progress"]["completed_epochs"], 2, "{stale}");
    let done = find_run(&d, "box:exp/done").unwrap();
    assert_eq!(
        (done["status"].as_str(), &done["stale"]),
        (Some("finished"), &Value::Bool(true))
    );
    // The event says the node could not be asked, not that the directory is gone.
    let missing = d.events_of_kind("root.missing");
    let text = missing.last().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("cannot be checked") && !text.contains("does not exist"),
        "{missing:?}"
    );
    // Staying away: never flipped to failed (several poll cycles and re-judgings).
    std::thread::sleep(Duration::from_secs(5));
    for r in runs(&d) {
        assert_ne!(r["status"], "failed", "{r}");
        assert_eq!(r["stale"], true, "{r}");
    }
    // `ugroctl runs` marks them in the table.
    let table = String::from_utf8(d.ctl(&["runs"]).stdout).unwrap();
    assert!(table.contains("(stale)"), "{table}");

    // Back: fresh again, and what changed meanwhile is read.
    epoch(&root.join("exp/live"), 2, Duration::ZERO);
    sshd.restart();
    wait_run(
        &d,
        "box:exp/live",
        "the run to be fresh again with the new epoch",
        Duration::from_secs(60),
        |r| r.get("stale").is_none_or(|s| s == false) && r["progress"]["completed_epochs"] == 3,
    );
}
