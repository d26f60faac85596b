//! Run ids end to end: the same relative path under two roots gives two runs, both reachable
//! by `ugroctl run ID` (and so `/v1/runs/{id}`), the later-listed root's one as `NAME:RELPATH`,
//! the same after a restart; directory names that are not valid UTF-8 give lossless ids
//! (`\xNN`, never U+FFFD), names differing only in those bytes stay two runs, and rescans do
//! not repeat their `run.epoch_completed` events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use ugro_core::event::EventKind;
use ugro_testkit::runs::{Trainer, runs, wait_equal, write_epoch};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

const SEEN: Duration = Duration::from_secs(20);

/// The trainers of these tests: 10 epochs, no log.
const TRAINER: Trainer = Trainer::new(10);

fn roots_config(roots: &[(&Path, &str)]) -> String {
    roots
        .iter()
        .map(|(p, watch)| {
            format!(
                "[[roots]]\npath = \"{}\"\nwatch = \"{watch}\"\npoll_interval = \"1s\"\n\n",
                p.display()
            )
        })
        .collect()
}

fn ids(d: &Daemon) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = runs(d)
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["root"].as_str().unwrap().to_owned(),
                r["progress"]["completed_epochs"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn wait_ids(d: &Daemon, what: &str, want: &[(&str, &Path, u64)]) {
    let mut want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(id, root, n)| ((*id).to_owned(), root.display().to_string(), *n))
        .collect();
    want.sort();
    wait_equal(d, what, SEEN, &want, || ids(d));
}

/// `ugroctl --json run ID`: the run's root and completed epochs.
fn run_by_id(d: &Daemon, id: &str) -> (String, u64) {
    let r = d.ctl_json(&["run", id]);
    assert_eq!(r["id"], id, "{r}");
    (
        r["root"].as_str().unwrap().to_owned(),
        r["progress"]["completed_epochs"].as_u64().unwrap(),
    )
}

#[test]
fn the_same_relative_path_under_two_roots_is_two_reachable_runs() {
    let base = tempfile::tempdir().unwrap();
    let a = base.path().join("a/logs");
    let b = base.path().join("b/logs");
    let c = base.path().join("c/exp");
    TRAINER.done(1).write(&a.join("exp/run_1"));
    TRAINER.done(2).write(&b.join("exp/run_1"));
    TRAINER.done(1).write(&b.join("only_b"));
    TRAINER.done(3).write(&c.join("exp/run_1"));
    let opts = DaemonOptions {
        extra_config: roots_config(&[(&a, "auto"), (&b, "poll"), (&c, "auto")]),
        ..DaemonOptions::default()
    };
    let mut d = Daemon::start(&opts);
    // The first listed root keeps the plain id; the others are prefixed with their name (the
    // directory's name, made unique among the roots: "logs-2", "exp").
    let want = [
        ("exp:exp/run_1", c.as_path(), 3),
        ("exp/run_1", a.as_path(), 1),
        ("logs-2:exp/run_1", b.as_path(), 2),
        ("only_b", b.as_path(), 1),
    ];
    wait_ids(&d, "every run of the three roots", &want);
    for (id, root, n) in want {
        assert_eq!(run_by_id(&d, id), (root.display().to_string(), n), "{id}");
    }
    // The table tells them apart.
    let table = d.ctl(&["runs"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("logs-2:exp/run_1") && text.contains("exp:exp/run_1"),
        "{text}"
    );
    // Epoch events name the run they are about.
    write_epoch(&c.join("exp/run_1"), 3);
    let ev = wait_for("an epoch event of the prefixed run", SEEN, || {
        std::thread::sleep(Duration::from_millis(100));
        let v = d.ctl_json(&[
            "events",
            "--since",
            "1h",
            "--kind",
            EventKind::RunEpochCompleted.as_str(),
        ]);
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"] == "exp:exp/run_1")
            .cloned()
    });
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .starts_with("exp:exp/run_1: epoch 3"),
        "{ev}"
    );

    // A restart keeps every id where it was.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    d.spawn(&opts);
    d.wait_ready();
    let want = [
        ("exp:exp/run_1", c.as_path(), 4),
        ("exp/run_1", a.as_path(), 1),
        ("logs-2:exp/run_1", b.as_path(), 2),
        ("only_b", b.as_path(), 1),
    ];
    wait_for("the runs re-read after the restart", SEEN, || {
        std::thread::sleep(Duration::from_millis(100));
        runs(&d)
            .iter()
            .all(|r| r["restored"] == false)
            .then_some(())
    });
    wait_ids(&d, "the same ids after a restart", &want);
}

#[test]
fn names_that_are_not_utf8_give_lossless_ids_and_no_repeated_events() {
    let base = tempfile::tempdir().unwrap();
    for watch in ["auto", "poll"] {
        let root = base.path().join(watch);
        let ff = root.join(OsStr::from_bytes(b"run_\xff"));
        let fe = root.join(OsStr::from_bytes(b"run_\xfe"));
        TRAINER.done(2).write(&ff);
        TRAINER.done(1).write(&fe);
        let d = Daemon::start(&DaemonOptions {
            extra_config: roots_config(&[(&root, watch)]),
            ..DaemonOptions::default()
        });
        wait_ids(
            &d,
            &format!("two runs ({watch})"),
            &[("run_\\xfe", &root, 1), ("run_\\xff", &root, 2)],
        );
        assert!(
            runs(&d).iter().all(|r| !r.to_string().contains('\u{fffd}')),
            "no U+FFFD anywhere"
        );
        assert_eq!(run_by_id(&d, "run_\\xff").1, 2);
        assert_eq!(run_by_id(&d, "run_\\xfe").1, 1);

        // Activity around them (new dirs in the root: rescans of the tree) and polls.
        for i in 0..4 {
            std::fs::create_dir(root.join(format!("tmp{i}"))).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            std::fs::remove_dir(root.join(format!("tmp{i}"))).unwrap();
        }
        write_epoch(&ff, 2);
        wait_ids(
            &d,
            &format!("a new epoch of one of them ({watch})"),
            &[("run_\\xfe", &root, 1), ("run_\\xff", &root, 3)],
        );
        std::thread::sleep(Duration::from_secs(3)); // a few more polls
        let ev = d.ctl_json(&[
            "events",
            "--since",
            "1h",
            "--kind",
            EventKind::RunEpochCompleted.as_str(),
        ]);
        let subjects: Vec<&str> = ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["subject"].as_str().unwrap())
            .collect();
        assert_eq!(
            subjects,
            ["run_\\xff"],
            "one event for the one new epoch ({watch})"
        );
    }
}
