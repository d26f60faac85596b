//! Run tracking end to end: real run directories with real mtimes under a temp root, the real
//! daemon, `ugroctl runs --json`. Every status rule, failure reasons from log tails, and new
//! epochs showing up through inotify and through polling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn age(p: &Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

const H: u64 = 3600;

/// Writes epoch `i` of a trainer run, its files dated `ago`.
fn epoch(run: &Path, i: u32, ago: Duration) {
    let d = run.join(format!("epoch_{i}"));
    write(&d.join("training_losses.pt"), "\u{1}\u{2}");
    write(&d.join("optimizer_buffer.json"), "{\"step\": 1}");
    write(
        &d.join("validation_scores.json"),
        &format!(
            "{{\"val\": {{\"acc\": 0.{i}, \"loss\": {}}}}}",
            2.0 - f64::from(i) / 10.0
        ),
    );
    for f in [
        "training_losses.pt",
        "optimizer_buffer.json",
        "validation_scores.json",
    ] {
        age(&d.join(f), ago);
    }
}

/// A trainer with `done` epochs, one every `every` seconds ending `last_ago` seconds ago.
fn trainer(run: &Path, total: u32, done: u32, every: u64, last_ago: u64, log_ago: Option<u64>) {
    write(
        &run.join("config.json"),
        &format!("{{\"epochs\": {total}, \"lr\": 0.001}}"),
    );
    for i in 0..done {
        epoch(
            run,
            i,
            Duration::from_secs(last_ago + every * u64::from(done - 1 - i)),
        );
    }
    if let Some(a) = log_ago {
        write(&run.join("train_val_2026-11-20.log"), "epoch 1: loss 1.9\n");
        age(
            &run.join("train_val_2026-11-20.log"),
            Duration::from_secs(a),
        );
    }
}

fn runs(d: &Daemon) -> Vec<Value> {
    let v = d.ctl_report(&["runs"]);
    v["runs"].as_array().unwrap().clone()
}

fn find_run(d: &Daemon, id: &str) -> Option<Value> {
    runs(d).into_iter().find(|r| r["id"] == id)
}

fn run(d: &Daemon, id: &str) -> Value {
    runs(d)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| {
            panic!(
                "no run {id}; have {:?}",
                runs(d).iter().map(|r| r["id"].clone()).collect::<Vec<_>>()
            )
        })
}

fn root_config(root: &Path, extra: &str) -> String {
    format!(
        "[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\noutdated_after = \"30d\"\n{extra}\n",
        root.display()
    )
}

#[test]
fn every_status_rule_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let r = |id: &str| root.join(id);

    trainer(&r("train/running"), 10, 3, 600, 60, Some(30)); // fresh log
    trainer(&r("train/finished"), 5, 5, 600, 2 * H, Some(2 * H));
    trainer(
        &r("train/outdated"),
        2,
        2,
        600,
        40 * 24 * H,
        Some(40 * 24 * H),
    );
    trainer(&r("train/stuck"), 10, 4, 600, 2 * H, Some(2 * H)); // + a live process below
    trainer(&r("train/failed"), 10, 4, 600, 2 * H, Some(2 * H));
    write(
        &r("train/failed/train_val_2026-11-20.log"),
        "epoch 4\nTraceback (most recent call last):\n  File \"train.py\", line 88, in <module>\n    loss.backward()\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.02 GiB is free.\n",
    );
    age(
        &r("train/failed/train_val_2026-11-20.log"),
        Duration::from_secs(2 * H),
    );
    // Fresh log but of the wrong name: not running.
    trainer(&r("train/wrong_log"), 10, 2, 600, 2 * H, None);
    write(&r("train/wrong_log/training.log"), "fresh\n");
    // Slow epochs (2 h each), log quiet for 1 h, stall_after 30 min: still running.
    trainer(&r("train/slow"), 10, 4, 2 * H, H, Some(H));
    // Gap: epoch_1 lacks a file, epoch_2 is complete: counts 1.
    trainer(&r("train/gap"), 10, 3, 600, 60, Some(30));
    std::fs::remove_file(r("train/gap/epoch_1/training_losses.pt")).unwrap();
    // Empty and corrupt expected files stop the count.
    trainer(&r("train/empty"), 10, 3, 600, 60, Some(30));
    write(&r("train/empty/epoch_1/optimizer_buffer.json"), "");
    trainer(&r("train/corrupt"), 10, 3, 600, 60, Some(30));
    write(
        &r("train/corrupt/epoch_2/validation_scores.json"),
        "{\"val\": ",
    );
    // Early stop at epoch 3 of 10: complete.
    trainer(&r("train/early"), 10, 4, 600, 2 * H, Some(2 * H));
    write(
        &r("train/early/progress.json"),
        "{\"early_stopped\": true, \"early_stopped_at_epoch\": 3}",
    );
    // Evaluators: complete, zero-byte, corrupt; and scores beat epoch_0.
    write(
        &r("eval/complete/evaluation_scores.json"),
        "{\"test\": {\"acc\": 0.91}}",
    );
    write(&r("eval/complete/eval_1.log"), "done\n");
    age(&r("eval/complete/eval_1.log"), Duration::from_secs(2 * H));
    write(&r("eval/zero/evaluation_scores.json"), "");
    write(&r("eval/zero/eval_1.log"), "x\n");
    age(&r("eval/zero/eval_1.log"), Duration::from_secs(2 * H));
    write(&r("eval/corrupt/evaluation_scores.json"), "{\"acc\": 0.9");
    write(&r("eval/corrupt/eval_1.log"), "x\n");
    age(&r("eval/corrupt/eval_1.log"), Duration::from_secs(2 * H));
    trainer(&r("eval/beats_epoch0"), 10, 1, 600, 60, None);
    write(
        &r("eval/beats_epoch0/evaluation_scores.json"),
        "{\"acc\": 0.5}",
    );
    // Generic self-reporting run, and an unknown one.
    write(
        &r("misc/generic/progress.json"),
        "{\"mission_current\": 250, \"mission_total\": 1000, \"progress_percent\": 25.0, \"status\": \"running\", \"eta_seconds\": 120}",
    );
    write(&r("misc/unknown/config.json"), "{\"lr\": 0.1}");
    write(&r("misc/unknown/notes.txt"), "hmm");

    // The stuck run's live process: its command line holds the run's absolute work dir.
    let stuck_dir: PathBuf = r("train/stuck");
    // One process (no shell child left behind when it is killed) whose argv holds the path.
    let mut proc = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import time; time.sleep(300)",
            &stuck_dir.display().to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let d = Daemon::start(&DaemonOptions {
        extra_config: root_config(&root, "epochs = 100"),
        ..Default::default()
    });
    wait_for("the first scan", Duration::from_secs(10), || {
        (runs(&d).len() == 17).then_some(())
    });

    let status = |id: &str| run(&d, id)["status"].as_str().unwrap().to_string();
    let completed = |id: &str| {
        run(&d, id)["progress"]["completed_epochs"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(status("train/running"), "running");
    assert_eq!(completed("train/running"), 3);
    assert_eq!(
        run(&d, "train/running")["progress"]["total_epochs"],
        10,
        "total from config.json"
    );
    assert_eq!(status("train/finished"), "finished");
    assert_eq!(status("train/outdated"), "outdated");
    let stuck = run(&d, "train/stuck");
    assert_eq!(stuck["status"], "stuck", "{stuck}");
    assert_eq!(stuck["process"]["pid"], proc.id());
    assert_eq!(status("train/failed"), "failed");
    let failed = run(&d, "train/failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("CUDA out of memory"),
        "{failed}"
    );
    assert_eq!(
        status("train/wrong_log"),
        "failed",
        "a fresh log of the wrong name is not activity"
    );
    assert_eq!(
        status("train/slow"),
        "running",
        "the stall window widens to 3 × the median epoch"
    );
    assert_eq!(completed("train/gap"), 1);
    assert_eq!(completed("train/empty"), 1);
    assert_eq!(completed("train/corrupt"), 2);
    let early = run(&d, "train/early");
    assert_eq!(early["status"], "finished", "{early}");
    assert_eq!(early["progress"]["early_stopped"], true);
    assert_eq!(status("eval/complete"), "finished");
    assert_eq!(run(&d, "eval/complete")["runner"], "evaluator");
    assert_eq!(status("eval/zero"), "failed");
    assert_eq!(status("eval/corrupt"), "failed");
    assert_eq!(run(&d, "eval/beats_epoch0")["runner"], "evaluator");
    let generic = run(&d, "misc/generic");
    assert_eq!(generic["runner"], "generic");
    assert_eq!(generic["progress"]["percentage"], 25.0);
    let unknown = run(&d, "misc/unknown");
    assert_eq!(unknown["status"], "unknown");
    let diag = unknown["diagnostic"].as_str().unwrap();
    assert!(
        diag.contains("notes.txt") && diag.contains("epoch_0"),
        "{diag}"
    );
    let best = &run(&d, "train/finished")["progress"]["best_score"];
    assert_eq!(best["val.acc"], 0.4, "{best}");
    assert_eq!(best["val.loss"], 1.6, "lower is better for losses: {best}");

    // The process ends: stuck turns failed on the next re-judging.
    proc.kill().unwrap();
    proc.wait().unwrap();
    wait_for(
        "the stuck run to turn failed",
        Duration::from_secs(20),
        || (status("train/stuck") == "failed").then_some(()),
    );
    let ev = d.ctl_json(&["events", "--kind", "run."]);
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"run.failed"), "{kinds:?}");

    // ugroctl runs exits 1 when a shown run failed or is stuck; filters work.
    assert_eq!(d.ctl(&["runs"]).status.code(), Some(1));
    let only = d.ctl_report(&["runs", "--status", "finished"]);
    assert!(
        only["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "finished")
    );
}

fn new_epoch_visible(watch: &str, within: Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    trainer(&root.join("exp/live"), 10, 2, 60, 30, Some(5));
    let d = Daemon::start(&DaemonOptions {
        extra_config: root_config(
            &root,
            &format!("watch = \"{watch}\"\npoll_interval = \"1s\""),
        ),
        ..Default::default()
    });
    wait_for("the first scan", Duration::from_secs(10), || {
        find_run(&d, "exp/live")
            .is_some_and(|r| r["progress"]["completed_epochs"] == 2)
            .then_some(())
    });
    epoch(&root.join("exp/live"), 2, Duration::ZERO);
    wait_for(&format!("epoch 3 through {watch}"), within, || {
        (run(&d, "exp/live")["progress"]["completed_epochs"] == 3).then_some(())
    });
    // A run that appears after the start is found too.
    trainer(&root.join("exp/new"), 4, 1, 60, 5, Some(1));
    wait_for(
        &format!("a new run through {watch}"),
        within + Duration::from_secs(1),
        || runs(&d).iter().any(|r| r["id"] == "exp/new").then_some(()),
    );
}

#[test]
fn new_epoch_appears_within_a_second_with_inotify() {
    new_epoch_visible("inotify", Duration::from_secs(1));
}

#[test]
fn new_epoch_appears_within_a_poll_interval_when_polling() {
    // One 1 s interval, plus the time to read the run.
    new_epoch_visible("poll", Duration::from_millis(1500));
}

#[test]
fn restart_reconciles_the_stored_list_with_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    trainer(&root.join("exp/grows"), 10, 2, 600, 2 * H, Some(2 * H));
    trainer(&root.join("exp/goes"), 10, 2, 600, 2 * H, Some(2 * H));
    trainer(&root.join("exp/ends"), 3, 2, 600, 2 * H, Some(2 * H));
    let opts = DaemonOptions {
        extra_config: root_config(&root, ""),
        ..Default::default()
    };
    let mut d = Daemon::start(&opts);
    wait_for("the first scan", Duration::from_secs(10), || {
        (runs(&d).len() == 3).then_some(())
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(5));

    // While the daemon is down: one run gains epochs, one disappears, one finishes.
    epoch(&root.join("exp/grows"), 2, Duration::from_secs(60));
    epoch(&root.join("exp/grows"), 3, Duration::from_secs(30));
    std::fs::remove_dir_all(root.join("exp/goes")).unwrap();
    epoch(&root.join("exp/ends"), 2, Duration::from_secs(60));

    d.spawn(&opts);
    d.wait_ready();
    assert!(
        !runs(&d).is_empty(),
        "the list is served at once after a restart"
    );
    wait_for("the reconciled list", Duration::from_secs(10), || {
        let r = runs(&d);
        (r.len() == 2 && r.iter().all(|x| x["restored"] == false)).then_some(r)
    });
    assert_eq!(run(&d, "exp/grows")["progress"]["completed_epochs"], 4);
    assert_eq!(run(&d, "exp/ends")["status"], "finished");
    let ev = d.ctl_json(&["events", "--kind", "run."]);
    let msgs: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("exp/grows: epochs 2–3 completed")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("exp/goes: no longer under")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("exp/ends: finished")),
        "{msgs:?}"
    );

    // Epoch completion times are kept per run.
    let one = d.ctl_json(&["run", "exp/grows"]);
    assert_eq!(one["epochs"].as_array().unwrap().len(), 4, "{one}");
}

#[test]
fn progress_json_is_written_only_when_asked_and_only_for_trainers_and_evaluators() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    trainer(&root.join("t"), 10, 3, 600, 60, Some(30));
    write(
        &root.join("g/progress.json"),
        "{\"mission_current\": 1, \"mission_total\": 4, \"status\": \"running\"}",
    );
    let d = Daemon::start(&DaemonOptions {
        extra_config: root_config(&root, "write_progress_json = true"),
        ..Default::default()
    });
    let written = wait_for(
        "progress.json in the trainer run",
        Duration::from_secs(10),
        || std::fs::read_to_string(root.join("t/progress.json")).ok(),
    );
    let v: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(v["completed_epochs"], 3);
    assert_eq!(v["total_epochs"], 10);
    assert_eq!(v["progress_percentage"], 30.0);
    assert_eq!(v["early_stopped"], false);
    assert_eq!(v["runner_type"], "trainer");
    assert!(v["scores"]["best"]["val.acc"].is_number(), "{v}");
    // The generic run's own file is untouched, and no temp file is left behind.
    assert!(
        std::fs::read_to_string(root.join("g/progress.json"))
            .unwrap()
            .contains("mission_current")
    );
    assert!(!root.join("t/.progress.json.ugro-tmp").exists());
    // A new epoch updates it; our own write does not loop (the file settles).
    epoch(&root.join("t"), 3, Duration::ZERO);
    wait_for("the updated progress.json", Duration::from_secs(5), || {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("t/progress.json")).ok()?)
                .ok()?;
        (v["completed_epochs"] == 4).then_some(())
    });
    let m1 = std::fs::metadata(root.join("t/progress.json"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let m2 = std::fs::metadata(root.join("t/progress.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(m1, m2, "written once per change, not on every event");
    drop(d);
}

#[test]
fn the_daemon_writes_nothing_into_runs_unasked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    trainer(&root.join("t"), 10, 3, 600, 60, Some(30));
    let d = Daemon::start(&DaemonOptions {
        extra_config: root_config(&root, ""),
        ..Default::default()
    });
    wait_for("the first scan", Duration::from_secs(10), || {
        find_run(&d, "t").map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!root.join("t/progress.json").exists());
}
