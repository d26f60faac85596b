//! Roots that appear, move and remount while the daemon runs: a root created after the start
//! (empty then filled, and a prepared tree moved into place), a root renamed away and back, and
//! a tmpfs root unmounted and mounted again (we are root here). Each is seen within seconds
//! (`root.missing` / `root.back` events, runs listed again), not at the 10-minute safety
//! rescan; while a root is missing its runs stay listed with `"stale": true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use ugro_core::event::EventKind;
use ugro_testkit::runs::{Trainer, runs, wait_equal, write_epoch};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

/// A deadline for what the daemon should see within a few seconds (not a timing assertion).
const SEEN: Duration = Duration::from_secs(20);

/// The trainers of these tests: 10 epochs and a log.
const TRAINER: Trainer = Trainer::new(10).log("train_val.log", "epoch\n");

fn start(roots: &[(&Path, &str)]) -> Daemon {
    let extra: String = roots
        .iter()
        .map(|(p, watch)| {
            format!(
                "[[roots]]\npath = \"{}\"\nwatch = \"{watch}\"\npoll_interval = \"1h\"\n\n",
                p.display()
            )
        })
        .collect();
    Daemon::start(&DaemonOptions {
        extra_config: extra,
        ..DaemonOptions::default()
    })
}

/// The runs of `root`: id → (completed epochs, stale).
fn of_root(d: &Daemon, root: &Path) -> Vec<(String, u64, bool)> {
    let mut out: Vec<(String, u64, bool)> = runs(d)
        .into_iter()
        .filter(|r| r["root"] == root.display().to_string())
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["progress"]["completed_epochs"].as_u64().unwrap(),
                r["stale"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn events(d: &Daemon, kind: &str, root: &Path) -> Vec<Value> {
    d.ctl_json(&["events", "--since", "1h", "--kind", kind])["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == root.display().to_string())
        .cloned()
        .collect()
}

/// Waits until `root` has exactly `want` runs (id, completed epochs, stale).
fn wait_runs(d: &Daemon, root: &Path, what: &str, want: &[(&str, u64, bool)]) {
    let mut want: Vec<(String, u64, bool)> = want
        .iter()
        .map(|(id, n, s)| ((*id).to_owned(), *n, *s))
        .collect();
    want.sort();
    wait_equal(d, what, SEEN, &want, || of_root(d, root));
}

/// Waits until there are `n` events of `kind` about `root`; returns the newest.
fn wait_event(d: &Daemon, kind: &str, root: &Path, n: usize) -> Value {
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("{n} {kind} event(s)"), SEEN, || {
            let e = events(d, kind, root);
            if e.len() >= n {
                e.last().cloned()
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
    }));
    match found {
        Ok(e) => e,
        Err(_) => panic!(
            "no {n}th {kind} event for {}; events: {}\ndaemon log:\n{}",
            root.display(),
            d.ctl_json(&["events", "--since", "1h", "--kind", "root."]),
            d.log()
        ),
    }
}

#[test]
fn a_root_created_after_the_start_is_scanned_at_once() {
    let base = tempfile::tempdir().unwrap();
    let logs = base.path().join("logs");
    let moved = base.path().join("moved-in");
    let polled = base.path().join("polled");
    let d = start(&[(&logs, "auto"), (&moved, "auto"), (&polled, "poll")]);
    for root in [&logs, &moved, &polled] {
        wait_event(&d, EventKind::RootMissing.as_str(), root, 1);
    }
    assert!(of_root(&d, &logs).is_empty());

    // The quickstart: `mkdir logs`, then runs go into it.
    std::fs::create_dir(&logs).unwrap();
    wait_event(&d, EventKind::RootBack.as_str(), &logs, 1);
    TRAINER.done(2).write(&logs.join("exp/run_1"));
    wait_runs(
        &d,
        &logs,
        "a run in the new root",
        &[("exp/run_1", 2, false)],
    );

    // A tree prepared elsewhere and moved into place, for a watched and a polled root (poll
    // interval 1h: only the root check can see it).
    for (root, n) in [(&moved, 1), (&polled, 2)] {
        let prep = base.path().join("prep");
        TRAINER.done(1).write(&prep.join(format!("a{n}")));
        TRAINER.done(3).write(&prep.join(format!("b/c{n}")));
        std::fs::rename(&prep, root).unwrap();
        wait_runs(
            &d,
            root,
            "the runs of a tree moved into place",
            &[(&format!("a{n}"), 1, false), (&format!("b/c{n}"), 3, false)],
        );
        let back = wait_event(&d, EventKind::RootBack.as_str(), root, 1);
        assert!(
            back["message"].as_str().unwrap().contains("2 run(s)"),
            "{back}"
        );
    }
    // The new root is watched: a new epoch shows up without waiting for any rescan.
    write_epoch(&moved.join("a1"), 1);
    wait_runs(
        &d,
        &moved,
        "a new epoch in the moved-in root",
        &[("a1", 2, false), ("b/c1", 3, false)],
    );
}

#[test]
fn a_root_renamed_away_is_missing_and_stale_until_it_is_back() {
    let base = tempfile::tempdir().unwrap();
    let logs = base.path().join("logs");
    TRAINER.done(2).write(&logs.join("run_a"));
    TRAINER.done(1).write(&logs.join("g/run_b"));
    let d = start(&[(&logs, "auto")]);
    wait_runs(
        &d,
        &logs,
        "the first scan",
        &[("g/run_b", 1, false), ("run_a", 2, false)],
    );
    assert!(events(&d, EventKind::RootMissing.as_str(), &logs).is_empty());

    let away = base.path().join("logs.away");
    std::fs::rename(&logs, &away).unwrap();
    let missing = wait_event(&d, EventKind::RootMissing.as_str(), &logs, 1);
    assert_eq!(missing["severity"], "warning", "{missing}");
    // Still listed as they were, marked stale: not dropped, not turned failed.
    wait_runs(
        &d,
        &logs,
        "stale runs while the root is away",
        &[("g/run_b", 1, true), ("run_a", 2, true)],
    );
    // Work goes on in the moved tree: an epoch, a new run, a run removed.
    write_epoch(&away.join("run_a"), 2);
    TRAINER.done(1).write(&away.join("run_new"));
    std::fs::remove_dir_all(away.join("g")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        of_root(&d, &logs),
        [
            ("g/run_b".to_owned(), 1, true),
            ("run_a".to_owned(), 2, true)
        ],
        "nothing is read while the root is away"
    );
    std::fs::rename(&away, &logs).unwrap();
    let back = wait_event(&d, EventKind::RootBack.as_str(), &logs, 1);
    assert_eq!(back["severity"], "info", "{back}");
    wait_runs(
        &d,
        &logs,
        "the runs once the root is back",
        &[("run_a", 3, false), ("run_new", 1, false)],
    );
    let statuses: Vec<Value> = runs(&d).iter().map(|r| r["status"].clone()).collect();
    assert!(
        statuses.iter().all(|s| s != "unknown"),
        "re-judged: {statuses:?}"
    );
}

/// A tmpfs mounted on a directory; unmounted (lazily, should something hold it) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "ugro-test"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// A plain unmount (busy for a moment while the daemon reads a file: tried again).
    fn unmount(self) {
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new("umount").arg(&self.0).output().unwrap();
            if out.status.success() {
                std::mem::forget(self);
                return;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("umount {}: {last}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[test]
fn a_tmpfs_root_unmounted_and_remounted_is_seen_both_times() {
    let base = tempfile::tempdir().unwrap();
    let logs = base.path().join("mnt");
    std::fs::create_dir(&logs).unwrap();
    let fs = match Tmpfs::mount(&logs) {
        Ok(fs) => fs,
        Err(why) => {
            // Only where the sandbox forbids mounting (this suite runs as root).
            eprintln!("SKIPPED: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    TRAINER.done(2).write(&logs.join("run_a"));
    TRAINER.done(1).write(&logs.join("run_b"));
    let d = start(&[(&logs, "auto")]);
    wait_runs(
        &d,
        &logs,
        "the first scan",
        &[("run_a", 2, false), ("run_b", 1, false)],
    );

    // Unmounted: the empty mount point left behind is not the root.
    fs.unmount();
    let missing = wait_event(&d, EventKind::RootMissing.as_str(), &logs, 1);
    assert!(
        missing["message"].as_str().unwrap().contains("unmounted"),
        "{missing}"
    );
    wait_runs(
        &d,
        &logs,
        "stale runs while unmounted",
        &[("run_a", 2, true), ("run_b", 1, true)],
    );

    // Mounted again, with what the filesystem holds now.
    let _fs = Tmpfs::mount(&logs).unwrap();
    TRAINER.done(3).write(&logs.join("run_a"));
    TRAINER.done(1).write(&logs.join("run_c"));
    wait_event(&d, EventKind::RootBack.as_str(), &logs, 1);
    wait_runs(
        &d,
        &logs,
        "the remounted root's runs",
        &[("run_a", 3, false), ("run_c", 1, false)],
    );
    // And it is watched again: a new epoch is seen.
    write_epoch(&logs.join("run_c"), 1);
    wait_runs(
        &d,
        &logs,
        "a new epoch after the remount",
        &[("run_a", 3, false), ("run_c", 2, false)],
    );
}
