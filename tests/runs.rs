//! Run tracking end to end: real run directories with real mtimes under a temp root, the real
//! daemon, `ugroctl runs --json`. Every status rule, failure reasons from log tails, new epochs
//! showing up through inotify and through polling, processes found over a node's SSH session
//! (the daemon in its own PID namespace), GPU compute processes, and the fallback to polling
//! when inotify runs out of watches (the daemon in its own user namespace with a low limit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ugro_core::event::EventKind;
use ugro_testkit::gpu::{FakeApp, FakeGpu, fake_gpu_uuid, install_fake_nvidia_smi_with_apps};
use ugro_testkit::runs::{
    H, Trainer, age, find_run, run, runs, wait_run, write_epoch_dated, write_file,
};
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{Daemon, DaemonOptions, in_pid_namespace, path_first, wait_for};

/// The trainers of these tests: a config with a learning rate, and a log written after the
/// epochs (dated with `log_ago`).
const TRAINER: Trainer = TRAINER_WITHOUT_LOG.log("train_val_2026-11-20.log", "epoch 1: loss 1.9\n");
const TRAINER_WITHOUT_LOG: Trainer = Trainer::new(0).lr();
/// Running: 3 of 10 epochs, one every 10 min, the last a minute ago, the log 30 s ago.
const FRESH: Trainer = TRAINER.total(10).done(3).dated(600, 60).log_ago(30);
/// Quiet: of 10 epochs, one every 10 min, the last and the log 2 h ago (stuck with a live
/// process, else failed).
const QUIET: Trainer = TRAINER.total(10).dated(600, 2 * H).log_ago(2 * H);
/// Live: 2 of 10 epochs, one a minute, the last 30 s ago, the log 5 s ago.
const LIVE: Trainer = TRAINER.total(10).done(2).dated(60, 30).log_ago(5);

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

    FRESH.write(&r("train/running")); // fresh log
    TRAINER
        .total(5)
        .done(5)
        .dated(600, 2 * H)
        .log_ago(2 * H)
        .write(&r("train/finished"));
    TRAINER
        .total(2)
        .done(2)
        .dated(600, 40 * 24 * H)
        .log_ago(40 * 24 * H)
        .write(&r("train/outdated"));
    QUIET.done(4).write(&r("train/stuck")); // + a live process below
    QUIET.done(4).write(&r("train/failed"));
    write_file(
        &r("train/failed/train_val_2026-11-20.log"),
        "epoch 4\nTraceback (most recent call last):\n  File \"train.py\", line 88, in <module>\n    loss.backward()\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.02 GiB is free.\n",
    );
    age(
        &r("train/failed/train_val_2026-11-20.log"),
        Duration::from_secs(2 * H),
    );
    // Fresh log but of the wrong name: not running.
    TRAINER_WITHOUT_LOG
        .total(10)
        .done(2)
        .dated(600, 2 * H)
        .write(&r("train/wrong_log"));
    write_file(&r("train/wrong_log/training.log"), "fresh\n");
    // Slow epochs (2 h each), log quiet for 1 h, stall_after 30 min: still running.
    TRAINER
        .total(10)
        .done(4)
        .dated(2 * H, H)
        .log_ago(H)
        .write(&r("train/slow"));
    // Gap: epoch_1 lacks a file, epoch_2 is complete: counts 1.
    FRESH.write(&r("train/gap"));
    std::fs::remove_file(r("train/gap/epoch_1/training_losses.pt")).unwrap();
    // Empty and corrupt expected files stop the count.
    FRESH.write(&r("train/empty"));
    write_file(&r("train/empty/epoch_1/optimizer_buffer.json"), "");
    FRESH.write(&r("train/corrupt"));
    write_file(
        &r("train/corrupt/epoch_2/validation_scores.json"),
        "{\"val\": ",
    );
    // Early stop at epoch 3 of 10: complete.
    QUIET.done(4).write(&r("train/early"));
    write_file(
        &r("train/early/progress.json"),
        "{\"early_stopped\": true, \"early_stopped_at_epoch\": 3}",
    );
    // Evaluators: complete, zero-byte, corrupt; and scores beat epoch_0.
    write_file(
        &r("eval/complete/evaluation_scores.json"),
        "{\"test\": {\"acc\": 0.91}}",
    );
    write_file(&r("eval/complete/eval_1.log"), "done\n");
    age(&r("eval/complete/eval_1.log"), Duration::from_secs(2 * H));
    write_file(&r("eval/zero/evaluation_scores.json"), "");
    write_file(&r("eval/zero/eval_1.log"), "x\n");
    age(&r("eval/zero/eval_1.log"), Duration::from_secs(2 * H));
    write_file(&r("eval/corrupt/evaluation_scores.json"), "{\"acc\": 0.9");
    write_file(&r("eval/corrupt/eval_1.log"), "x\n");
    age(&r("eval/corrupt/eval_1.log"), Duration::from_secs(2 * H));
    TRAINER_WITHOUT_LOG
        .total(10)
        .done(1)
        .dated(600, 60)
        .write(&r("eval/beats_epoch0"));
    write_file(
        &r("eval/beats_epoch0/evaluation_scores.json"),
        "{\"acc\": 0.5}",
    );
    // Generic self-reporting run, and an unknown one.
    write_file(
        &r("misc/generic/progress.json"),
        "{\"mission_current\": 250, \"mission_total\": 1000, \"progress_percent\": 25.0, \"status\": \"running\", \"eta_seconds\": 120}",
    );
    write_file(&r("misc/unknown/config.json"), "{\"lr\": 0.1}");
    write_file(&r("misc/unknown/notes.txt"), "hmm");

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
    // Events are recorded right after the change is published.
    wait_for("the run.failed event", Duration::from_secs(5), || {
        let ev = d.ctl_json(&["events", "--kind", "run."]);
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == EventKind::RunFailed.as_str())
            .then_some(())
    });

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
    LIVE.write(&root.join("exp/live"));
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
    // The root is watched the way asked, not silently polled instead.
    let scanned = wait_for("the root.scanned event", Duration::from_secs(10), || {
        let ev = d.ctl_json(&[
            "events",
            "--since",
            "1h",
            "--kind",
            EventKind::RootScanned.as_str(),
        ]);
        ev["events"].as_array().unwrap().first().cloned()
    });
    let how = if watch == "inotify" {
        "watching with inotify ("
    } else {
        "watching with polling every 1s"
    };
    assert!(
        scanned["message"].as_str().unwrap().contains(how),
        "{scanned}"
    );
    write_epoch_dated(&root.join("exp/live"), 2, Duration::ZERO);
    wait_for(&format!("epoch 3 through {watch}"), within, || {
        (run(&d, "exp/live")["progress"]["completed_epochs"] == 3).then_some(())
    });
    // An epoch written in two steps: the half-written one is the frontier; its last file
    // completes it.
    let e3 = root.join("exp/live/epoch_3");
    write_file(&e3.join("training_losses.pt"), "\u{1}");
    write_file(&e3.join("optimizer_buffer.json"), "{}");
    write_file(&e3.join("validation_scores.json"), "");
    std::thread::sleep(within);
    assert_eq!(run(&d, "exp/live")["progress"]["completed_epochs"], 3);
    write_file(
        &e3.join("validation_scores.json"),
        "{\"val\": {\"acc\": 0.9}}",
    );
    wait_for(
        &format!("the completed frontier through {watch}"),
        within,
        || (run(&d, "exp/live")["progress"]["completed_epochs"] == 4).then_some(()),
    );
    // A run that appears after the start is found too, also in new nested directories.
    TRAINER
        .total(4)
        .done(1)
        .dated(60, 5)
        .log_ago(1)
        .write(&root.join("exp/new"));
    TRAINER
        .total(4)
        .done(2)
        .dated(60, 5)
        .log_ago(1)
        .write(&root.join("later/sweep/a/run"));
    wait_for(
        &format!("new runs through {watch}"),
        within + Duration::from_secs(1),
        || {
            let all = runs(&d);
            (all.iter().any(|r| r["id"] == "exp/new")
                && all.iter().any(|r| {
                    r["id"] == "later/sweep/a/run" && r["progress"]["completed_epochs"] == 2
                }))
            .then_some(())
        },
    );
    // And their next epochs.
    write_epoch_dated(&root.join("later/sweep/a/run"), 2, Duration::ZERO);
    wait_for(
        &format!("the new run's epoch through {watch}"),
        within,
        || (run(&d, "later/sweep/a/run")["progress"]["completed_epochs"] == 3).then_some(()),
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
    QUIET.done(2).write(&root.join("exp/grows"));
    QUIET.done(2).write(&root.join("exp/goes"));
    TRAINER
        .total(3)
        .done(2)
        .dated(600, 2 * H)
        .log_ago(2 * H)
        .write(&root.join("exp/ends"));
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
    write_epoch_dated(&root.join("exp/grows"), 2, Duration::from_secs(60));
    write_epoch_dated(&root.join("exp/grows"), 3, Duration::from_secs(30));
    std::fs::remove_dir_all(root.join("exp/goes")).unwrap();
    write_epoch_dated(&root.join("exp/ends"), 2, Duration::from_secs(60));

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
    // Events and epoch times are stored right after the list is served.
    let expected = [
        "exp/grows: epochs 2–3 completed",
        "exp/goes: no longer under",
        "exp/ends: finished",
    ];
    let mut msgs: Vec<String> = Vec::new();
    let all = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the reconciliation events", Duration::from_secs(5), || {
            let ev = d.ctl_json(&["events", "--kind", "run."]);
            msgs = ev["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_string())
                .collect();
            expected
                .iter()
                .all(|x| msgs.iter().any(|m| m.contains(x)))
                .then_some(())
        })
    }));
    assert!(all.is_ok(), "expected {expected:?} among {msgs:?}");

    // Epoch completion times are kept per run.
    let one = wait_for("the stored epoch times", Duration::from_secs(5), || {
        let one = d.ctl_json(&["run", "exp/grows"]);
        (one["epochs"].as_array().map(Vec::len) == Some(4)).then_some(one)
    });
    assert_eq!(one["epochs"][3]["epoch"], 3, "{one}");
}

#[test]
fn progress_json_is_written_only_when_asked_and_only_for_trainers_and_evaluators() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    FRESH.write(&root.join("t"));
    write_file(
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
    let leftovers: Vec<String> = std::fs::read_dir(root.join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // A new epoch updates it; our own write does not loop (the file settles).
    write_epoch_dated(&root.join("t"), 3, Duration::ZERO);
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
    FRESH.write(&root.join("t"));
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

// ---------------------------------------------------------------------------------------------
// Daemons started by the test itself: under `unshare`, or with a PATH prefix.

/// A process whose command line holds `run`'s absolute path (one process: no shell child left
/// behind when it is killed).
fn process_of(run: &Path) -> Child {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import time; time.sleep(300)",
            "--work-dir",
            &run.display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills a child on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn remote_node(name: &str, sshd: &Sshd, gpus: u32) -> String {
    sshd.node_toml(name, &format!("gpus = {gpus}\n"))
}

/// Whether this machine lets us make namespaces (root, util-linux `unshare`).
fn can_unshare(args: &[&str]) -> bool {
    Command::new("unshare")
        .args(args)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_process_seen_only_over_ssh_makes_the_run_stuck_on_that_node_with_its_gpu() {
    let ns = ["--pid", "--fork", "--mount-proc", "--kill-child"];
    assert!(
        can_unshare(&ns),
        "this test needs root and util-linux unshare (PID namespaces)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let run_dir = root.join("exp/remote");
    // Not active (quiet log), not complete: stuck exactly when a live process belongs to it.
    QUIET.done(3).write(&run_dir);
    let proc = KillOnDrop(process_of(&run_dir));
    let pid = proc.0.id();
    // The node "gpu1" is this machine reached over SSH; its nvidia-smi lists the process on
    // GPU 1.
    let gpu_bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi_with_apps(
        gpu_bin.path(),
        FakeGpu::Healthy { count: 2 },
        &[FakeApp {
            gpu: 1,
            pid,
            process_name: "/usr/bin/python3".into(),
            used_memory_mib: Some(20480),
        }],
    );
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(gpu_bin.path().to_path_buf()),
        ..Default::default()
    });
    // The daemon in its own PID namespace: its /proc does not show the process.
    let s = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[health]\ninterval = \"2s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"5s\"\n\n{}\n{}",
            remote_node("gpu1", &sshd, 2),
            root_config(&root, "")
        ),
        wrapper: in_pid_namespace(),
        ..Default::default()
    });
    let d = &s;
    let r = wait_run(
        d,
        "exp/remote",
        "the run to be stuck on gpu1",
        Duration::from_secs(40),
        |r| r["status"] == "stuck",
    );
    let p = &r["process"];
    assert_eq!(p["node"], "gpu1", "{r}");
    assert_eq!(p["pid"], pid, "{r}");
    assert!(
        p["cmd"]
            .as_str()
            .unwrap()
            .contains(&run_dir.display().to_string()),
        "{r}"
    );
    assert!(p["start_time"].is_string(), "{r}");
    let gpus = p["gpus"]
        .as_array()
        .unwrap_or_else(|| panic!("no gpus: {r}"));
    assert_eq!(gpus.len(), 1, "{r}");
    assert_eq!(gpus[0]["uuid"], fake_gpu_uuid(1));
    assert_eq!(gpus[0]["pid"], pid);
    assert_eq!(gpus[0]["used_memory_mib"], 20480);
    wait_run(
        d,
        "exp/remote",
        "the GPU index from gpu1's readings",
        Duration::from_secs(40),
        |r| r["process"]["gpus"][0]["index"] == 1,
    );
    // The daemon really cannot see the process itself: it is PID 1 of its own namespace.
    let unshare_pid = s.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .unwrap();
    let daemon_pid = children.split_whitespace().next().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(
        nspid.split_whitespace().collect::<Vec<_>>(),
        ["NSpid:", daemon_pid, "1"],
        "the daemon runs as PID 1 of a PID namespace of its own"
    );
    // The process ends: the node's next listing (every 30 s) makes the run failed.
    drop(proc);
    wait_run(
        d,
        "exp/remote",
        "the run to turn failed",
        Duration::from_secs(60),
        |r| r["status"] == "failed" && r["process"].is_null(),
    );
}

#[test]
fn local_gpu_compute_processes_come_from_nvidia_smi_when_nvml_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let run_dir = root.join("exp/gpu");
    QUIET.done(3).write(&run_dir);
    let proc = KillOnDrop(process_of(&run_dir));
    let pid = proc.0.id();
    let gpu_bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi_with_apps(
        gpu_bin.path(),
        FakeGpu::Healthy { count: 4 },
        &[
            FakeApp {
                gpu: 2,
                pid,
                process_name: "/usr/bin/python3".into(),
                used_memory_mib: None,
            },
            // Another process's GPU is not the run's.
            FakeApp {
                gpu: 3,
                pid: 1,
                process_name: "/sbin/init".into(),
                used_memory_mib: Some(10),
            },
        ],
    );
    let d = Daemon::start(&DaemonOptions {
        extra_config: root_config(&root, ""),
        env: vec![path_first(gpu_bin.path())],
        ..Default::default()
    });
    let r = wait_run(
        &d,
        "exp/gpu",
        "the run with its GPU",
        Duration::from_secs(30),
        |r| r["status"] == "stuck" && r["process"]["gpus"][0]["index"] == 2,
    );
    let p = &r["process"];
    assert_eq!(p["node"], "local", "{r}");
    assert_eq!(p["pid"], pid, "{r}");
    let gpus = p["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 1, "{r}");
    assert_eq!(gpus[0]["uuid"], fake_gpu_uuid(2));
    assert!(
        gpus[0]["used_memory_mib"].is_null(),
        "[N/A] is unknown: {r}"
    );
    drop(proc);
}

fn max_user_watches() -> String {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").unwrap_or_default()
}

/// Honest ENOSPC: the daemon runs in a new user namespace whose own inotify watch limit
/// (`/proc/sys/user/max_inotify_watches`, per user namespace; the global
/// `fs.inotify.max_user_watches` is not touched) is set below what the root needs.
fn spawn_with_watch_limit(root: &Path, limit: u32) -> Daemon {
    assert!(
        can_unshare(&["--user", "--map-root-user"]),
        "this test needs util-linux unshare and user namespaces"
    );
    let script = format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"");
    Daemon::start(&DaemonOptions {
        extra_config: root_config(root, "watch = \"inotify\"\npoll_interval = \"1s\""),
        wrapper: ["unshare", "--user", "--map-root-user", "sh", "-c", &script]
            .map(str::to_owned)
            .to_vec(),
        ..Default::default()
    })
}

fn fallback_events(d: &Daemon) -> Vec<Value> {
    d.ctl_json(&["events", "--kind", EventKind::RootWatchFallback.as_str()])["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn out_of_inotify_watches_at_start_the_root_is_polled_with_a_warning() {
    let global = max_user_watches();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    for k in 0..4 {
        LIVE.write(&root.join(format!("exp/run{k}")));
    }
    // The root, exp and the 4 run dirs need 6 watches: 3 are too few.
    let d = &spawn_with_watch_limit(&root, 3);
    let ev = wait_for("the fallback warning", Duration::from_secs(10), || {
        let ev = fallback_events(d);
        (!ev.is_empty()).then_some(ev)
    });
    assert_eq!(ev[0]["severity"], "warning", "{ev:?}");
    let msg = ev[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("inotify watch limit") && msg.contains("polling every 1s"),
        "{msg}"
    );
    wait_run(
        d,
        "exp/run0",
        "the first scan",
        Duration::from_secs(10),
        |r| r["progress"]["completed_epochs"] == 2,
    );
    // Polled: a new epoch shows within a poll interval (plus the read).
    write_epoch_dated(&root.join("exp/run0"), 2, Duration::ZERO);
    wait_run(
        d,
        "exp/run0",
        "epoch 3 by polling",
        Duration::from_millis(2500),
        |r| r["progress"]["completed_epochs"] == 3,
    );
    assert_eq!(max_user_watches(), global, "the global limit is untouched");
}

#[test]
fn out_of_inotify_watches_later_the_root_falls_back_to_polling() {
    let global = max_user_watches();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    LIVE.write(&root.join("exp/run"));
    // Watched: logs, exp and the run dir (complete epochs are not watched); 5 allowed.
    let d = &spawn_with_watch_limit(&root, 5);
    wait_run(
        d,
        "exp/run",
        "the first scan",
        Duration::from_secs(10),
        |r| r["progress"]["completed_epochs"] == 2,
    );
    let scanned = wait_for("the root.scanned event", Duration::from_secs(10), || {
        let ev = d.ctl_json(&["events", "--kind", EventKind::RootScanned.as_str()]);
        (!ev["events"].as_array().unwrap().is_empty()).then_some(ev)
    });
    assert!(
        scanned
            .to_string()
            .contains("watching with inotify (3 directories watched)"),
        "{scanned}"
    );
    // Watched: a new epoch shows at once.
    write_epoch_dated(&root.join("exp/run"), 2, Duration::ZERO);
    wait_run(
        d,
        "exp/run",
        "epoch 3 by inotify",
        Duration::from_secs(1),
        |r| r["progress"]["completed_epochs"] == 3,
    );
    assert!(fallback_events(d).is_empty());
    // Three new runs: the third cannot be watched any more.
    for k in 0..3 {
        TRAINER
            .total(10)
            .done(1)
            .dated(60, 5)
            .log_ago(1)
            .write(&root.join(format!("exp/new{k}")));
    }
    let ev = wait_for("the fallback warning", Duration::from_secs(10), || {
        let ev = fallback_events(d);
        (!ev.is_empty()).then_some(ev)
    });
    assert!(
        ev[0]["message"]
            .as_str()
            .unwrap()
            .contains("polling every 1s"),
        "{ev:?}"
    );
    for k in 0..3 {
        wait_run(
            d,
            &format!("exp/new{k}"),
            "the new runs",
            Duration::from_secs(5),
            |r| r["progress"]["completed_epochs"] == 1,
        );
    }
    // From now on polling sees what inotify no longer would.
    write_epoch_dated(&root.join("exp/run"), 3, Duration::ZERO);
    write_epoch_dated(&root.join("exp/new2"), 1, Duration::ZERO);
    wait_run(
        d,
        "exp/run",
        "epoch 4 by polling",
        Duration::from_millis(2500),
        |r| r["progress"]["completed_epochs"] == 4,
    );
    wait_run(
        d,
        "exp/new2",
        "epoch 2 by polling",
        Duration::from_millis(2500),
        |r| r["progress"]["completed_epochs"] == 2,
    );
    assert_eq!(max_user_watches(), global, "the global limit is untouched");
}

/// A run whose process started after the node's last process listing (remote lists are cached
/// for 30 s) and whose log then goes quiet is judged stuck at once: the daemon asks the node
/// again before it calls a run failed, so no false `run.failed` precedes `run.stuck`.
#[test]
fn a_run_whose_process_started_after_the_last_listing_is_stuck_never_failed_first() {
    let ns = ["--pid", "--fork", "--mount-proc", "--kill-child"];
    assert!(
        can_unshare(&ns),
        "this test needs root and util-linux unshare (PID namespaces)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let run_dir = root.join("exp/late");
    // Epochs a second apart (the stall window stays the configured 2 s); the log written now.
    TRAINER
        .total(10)
        .done(3)
        .dated(1, 1)
        .log_ago(0)
        .write(&run_dir);
    let log = run_dir.join("train_val_2026-11-20.log");
    let sshd = Sshd::start();
    let s = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[health]\ninterval = \"2s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"5s\"\n\n{}\n[[roots]]\npath = \"{}\"\nstall_after = \"2s\"\n",
            sshd.node_toml("gpu1", ""),
            root.display()
        ),
        wrapper: in_pid_namespace(),
        ..Default::default()
    });
    let d = &s;
    // The log stays fresh (running) until the process is there.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toucher = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                age(&log, Duration::ZERO);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    // gpu1's session is up (its ssh check passed; the node's verdict depends on this machine's
    // disk and load, which this test is not about).
    wait_for("gpu1's session", Duration::from_secs(30), || {
        let h = d.ctl_report(&["health", "gpu1"]);
        h["checks"]
            .as_array()?
            .iter()
            .any(|c| c["name"] == "ssh" && c["passed"] == true)
            .then_some(())
    });
    wait_run(d, "exp/late", "running", Duration::from_secs(20), |r| {
        r["status"] == "running"
    });
    // gpu1's processes are listed (without ours) within a few seconds of its session, and that
    // list is then kept for 30 s: start the process after it, and let the log go quiet.
    std::thread::sleep(Duration::from_secs(8));
    let _proc = KillOnDrop(process_of(&run_dir));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    toucher.join().unwrap();
    let r = wait_run(
        d,
        "exp/late",
        "the run to leave running",
        Duration::from_secs(40),
        |r| r["status"] != "running",
    );
    assert_eq!(r["status"], "stuck", "{r}");
    assert_eq!(r["process"]["node"], "gpu1", "{r}");
    let ev = d.ctl_json(&["events", "--since", "1h", "--subject", "exp/late"]);
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&EventKind::RunStuck.as_str()), "{kinds:?}");
    assert!(
        !kinds.contains(&EventKind::RunFailed.as_str()),
        "a false failure before stuck: {kinds:?}\n{}",
        d.log()
    );
}

/// With inotify, a log in the run's `logs/` folder (the long-job layout) is watched like the run
/// dir: a line appended there, a new log file there, and a `logs/` folder made after the start
/// move the run's last log update at once, without waiting for a rescan.
#[test]
fn logs_in_the_logs_folder_are_seen_at_once_with_inotify() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    let a = root.join("exp/a");
    let b = root.join("exp/b");
    TRAINER_WITHOUT_LOG
        .total(10)
        .done(2)
        .dated(60, 3600)
        .write(&a);
    TRAINER_WITHOUT_LOG
        .total(10)
        .done(2)
        .dated(60, 3600)
        .write(&b);
    write_file(&a.join("logs/training_1.log"), "epoch 1: loss 1.9\n");
    age(&a.join("logs/training_1.log"), Duration::from_secs(3600));
    let d = Daemon::start(&DaemonOptions {
        extra_config: root_config(&root, "watch = \"inotify\"\npoll_interval = \"1h\""),
        ..Default::default()
    });
    let first = wait_for("the first scan", Duration::from_secs(10), || {
        find_run(&d, "exp/a")
            .and_then(|r| r["last_log_update"].as_str().map(str::to_owned))
            .zip(find_run(&d, "exp/b"))
            .map(|(t, _)| t)
    });
    let log_update = |id: &str| run(&d, id)["last_log_update"].as_str().map(str::to_owned);
    let within = Duration::from_secs(2);

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(a.join("logs/training_1.log"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"epoch 2: loss 1.7\n").unwrap();
    drop(f);
    let second = wait_for("a line appended in logs/", within, || {
        log_update("exp/a").filter(|t| *t != first)
    });

    std::thread::sleep(Duration::from_millis(1100));
    write_file(&a.join("logs/training_2.log"), "resumed\n");
    wait_for("a new log file in logs/", within, || {
        log_update("exp/a").filter(|t| *t != second)
    });

    assert_eq!(log_update("exp/b"), None, "exp/b has no log yet");
    std::fs::create_dir(b.join("logs")).unwrap();
    write_file(&b.join("logs/training_1.log"), "epoch 1: loss 2.0\n");
    wait_for("a logs/ folder made after the start", within, || {
        log_update("exp/b")
    });
}
