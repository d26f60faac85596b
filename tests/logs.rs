//! Run logs end to end: `ugroctl logs` on the real daemon — the last lines of a 2 GiB sparse log
//! read with little I/O (the daemon's /proc/PID/io), following a log through appends, a
//! truncation, a rotation and a daemon restart, terminal escapes neutralised in `ugroctl logs`
//! and `ugroctl run`, failure reasons from the `logs/training_*.log` layout, unknown runs, and
//! the byte windows of `GET /v1/logs` at the file's boundaries. (The remote read over a real
//! sshd is tested in ugro-monitor's `logs` module.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ugro_testkit::runs::{H, Trainer, age, append, wait_run_detail, write_file};
use ugro_testkit::{Daemon, DaemonOptions, bin};

fn root_config(root: &Path) -> String {
    format!(
        "[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\noutdated_after = \"30d\"\n",
        root.display()
    )
}

/// The trainers of these tests: 10 epochs, no log (each test writes its own).
const TRAINER: Trainer = Trainer::new(10);

fn start(root: &Path) -> Daemon {
    Daemon::start(&DaemonOptions {
        extra_config: root_config(root),
        ..Default::default()
    })
}

/// How long the daemon may take to list a run.
const SEEN: Duration = Duration::from_secs(20);

/// Whether the run's newest log (an absolute path in the run JSON) is `name` in its dir.
fn has_log(v: &serde_json::Value, name: &str) -> bool {
    v["log"].as_str().is_some_and(|l| {
        Path::new(l).strip_prefix(v["work_dir"].as_str().unwrap_or("")) == Ok(Path::new(name))
    })
}

fn ctl(d: &Daemon, args: &[&str]) -> (Option<i32>, String, String) {
    let out = d.ctl(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rchar(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn last_lines_of_a_2_gib_log_read_less_than_a_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = root.join("exp/big");
    TRAINER.done(1).write(&run);
    let log = run.join("train_val.log");
    let f = std::fs::File::create(&log).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..10 {
        writeln!(f, "epoch {i}: loss 0.{i}").unwrap();
    }
    drop(f);
    let d = start(&root);
    wait_run_detail(&d, "exp/big", "run exp/big", SEEN, |v| {
        has_log(v, "train_val.log")
    });
    let pid = d.pid().as_raw();
    let before = rchar(pid);
    let (code, stdout, stderr) = ctl(&d, &["logs", "exp/big", "-n", "5"]);
    let read = rchar(pid) - before;
    assert_eq!(code, Some(0), "{stderr}");
    let want: String = (5..10)
        .map(|i| format!("epoch {i}: loss 0.{i}\n"))
        .collect();
    assert_eq!(stdout, want);
    assert!(read < 1 << 20, "the daemon read {read} bytes for 5 lines");
    // The run's JSON lists its logs with their sizes.
    let v = d.ctl_json(&["run", "exp/big"]);
    assert_eq!(v["logs"][0]["name"], "train_val.log");
    assert_eq!(
        v["logs"][0]["size"].as_u64().unwrap(),
        std::fs::metadata(&log).unwrap().len()
    );
}

/// Reads a child's stdout lines and stderr lines on threads.
struct Follower {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    notes: Vec<String>,
}

impl Follower {
    fn start(socket: &Path, args: &[&str]) -> Follower {
        let mut child = Command::new(bin("ugroctl"))
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |r: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        Follower {
            child,
            out,
            err,
            notes: Vec::new(),
        }
    }

    /// The next stdout line, within 10 s.
    fn line(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Ok(n) = self.err.try_recv() {
                self.notes.push(n);
            }
            match self.out.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => return l,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(e) => panic!(
                    "no line from ugroctl logs -f: {e}; stderr: {:?}",
                    self.notes
                ),
            }
        }
    }

    /// How many stderr notes mention `word`, waiting (≤ 5 s) until there are `at_least`.
    fn notes_with(&mut self, word: &str, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while let Ok(n) = self.err.try_recv() {
                self.notes.push(n);
            }
            let n = self.notes.iter().filter(|n| n.contains(word)).count();
            if n >= at_least || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_prints_appends_across_truncation_rotation_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = root.join("exp/live");
    TRAINER.done(1).write(&run);
    let log = run.join("train_val.log");
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!("old line {i:02} of the log\n"));
    }
    write_file(&log, &text);
    let mut d = start(&root);
    wait_run_detail(&d, "exp/live", "run exp/live", SEEN, |v| {
        has_log(v, "train_val.log")
    });
    let mut f = Follower::start(&d.socket, &["logs", "exp/live", "-n", "2", "-f"]);
    assert_eq!(f.line(), "old line 18 of the log");
    assert_eq!(f.line(), "old line 19 of the log");

    append(&log, "appended \u{1b}[31mred\n");
    assert_eq!(f.line(), "appended ^[[31mred");

    // Truncated in place, then written again: reported once, the new content printed.
    write_file(&log, "after truncation\n");
    assert_eq!(f.line(), "after truncation");
    assert_eq!(f.notes_with("truncated", 1), 1, "{:?}", f.notes);

    // Rotated: renamed away, a new file at the path.
    append(&log, "last of the old file\n");
    std::fs::rename(&log, run.join("train_val.log.1")).unwrap();
    write_file(&log, "first of the new file\n");
    let mut got = vec![f.line(), f.line()];
    got.sort();
    assert_eq!(got, ["first of the new file", "last of the old file"]);
    append(&log, "second of the new file\n");
    assert_eq!(f.line(), "second of the new file");
    assert_eq!(f.notes_with("rotated", 1), 1, "{:?}", f.notes);
    assert_eq!(f.notes_with("truncated", 1), 1, "{:?}", f.notes);

    // The daemon restarts: the follow waits, reconnects and goes on from its offset.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    append(&log, "written while the daemon was down\n");
    d.spawn(&DaemonOptions {
        extra_config: root_config(&root),
        ..Default::default()
    });
    d.wait_ready();
    assert_eq!(f.line(), "written while the daemon was down");
    append(&log, "and after\n");
    assert_eq!(f.line(), "and after");
    assert!(f.notes_with("reconnect", 1) >= 1, "{:?}", f.notes);
    // Truncation and rotation were each reported once, no more.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.notes_with("rotated", 0), 1, "{:?}", f.notes);
    assert_eq!(f.notes_with("truncated", 0), 1, "{:?}", f.notes);
}

#[test]
fn escapes_are_neutralised_in_logs_and_run_unless_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = root.join("exp/evil");
    TRAINER.done(2).write(&run);
    let log = run.join("train_val.log");
    write_file(
        &log,
        "epoch 2\nTraceback (most recent call last):\n  File \"train.py\", line 9, in <module>\nRuntimeError: \u{1b}]0;pwned\u{7} and \u{1b}[2J gone\n",
    );
    age(&log, Duration::from_secs(2 * H));
    let d = start(&root);
    wait_run_detail(&d, "exp/evil", "run exp/evil", SEEN, |v| {
        v["status"] == "failed" && v["error"].is_string()
    });

    let (code, out, _) = ctl(&d, &["logs", "exp/evil", "-n", "1"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "RuntimeError: ^[]0;pwned^G and ^[[2J gone\n");
    let (_, raw, _) = ctl(&d, &["logs", "exp/evil", "-n", "1", "--raw"]);
    assert_eq!(
        raw,
        "RuntimeError: \u{1b}]0;pwned\u{7} and \u{1b}[2J gone\n"
    );

    let (_, shown, _) = ctl(&d, &["run", "exp/evil"]);
    assert!(shown.contains("^[]0;pwned^G"), "{shown}");
    assert!(shown.contains("^[[2J"), "{shown}");
    assert!(
        !shown
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{shown:?}"
    );
}

#[test]
fn failure_reasons_come_from_the_logs_subfolder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let traceback = "mission 250\nTraceback (most recent call last):\n  File \"long_job.py\", line 42, in <module>\nValueError: mission file is corrupt\n";
    // The long-job layout of the seeds: progress.json and logs/training_*.log.
    let generic = root.join("jobs/training_logs");
    write_file(
        &generic.join("progress.json"),
        "{\"mission_current\": 250, \"mission_total\": 1000, \"status\": \"running\"}",
    );
    write_file(&generic.join("logs/training_20251110.log"), traceback);
    // A trainer writing its log there too.
    let trainer_run = root.join("train/run_1");
    TRAINER.done(2).write(&trainer_run);
    write_file(&trainer_run.join("logs/training_20251110.log"), traceback);
    for p in [
        generic.join("progress.json"),
        generic.join("logs/training_20251110.log"),
        trainer_run.join("logs/training_20251110.log"),
    ] {
        age(&p, Duration::from_secs(2 * H));
    }
    let d = start(&root);
    for id in ["jobs/training_logs", "train/run_1"] {
        let v = wait_run_detail(&d, id, &format!("run {id}"), SEEN, |v| {
            v["status"] == "failed" && v["error"].is_string()
        });
        let error = v["error"].as_str().unwrap();
        assert!(error.contains("mission file is corrupt"), "{id}: {error}");
        assert!(
            has_log(&v, "logs/training_20251110.log"),
            "{id}: {}",
            v["log"]
        );
        let (code, out, err) = ctl(&d, &["logs", id, "-n", "1"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, "ValueError: mission file is corrupt\n");
        // `ugroctl run` lists the run's log files: name, size, modified.
        let (code, out, err) = ctl(&d, &["run", id]);
        assert_eq!(code, Some(0), "{err}");
        let row: Vec<&str> = out
            .lines()
            .find(|l| l.trim_start().starts_with("logs/training_20251110.log"))
            .unwrap_or_else(|| panic!("{id}: no row for the log in\n{out}"))
            .split_whitespace()
            .collect();
        let size = traceback.len().to_string();
        assert_eq!(
            row,
            ["logs/training_20251110.log", &size, "B", "2", "h", "ago"],
            "{id}:\n{out}"
        );
    }
}

#[test]
fn unknown_runs_and_files_exit_2_and_1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = root.join("exp/a");
    TRAINER.done(1).write(&run);
    write_file(&run.join("train_val.log"), "x\n");
    let d = start(&root);
    wait_run_detail(&d, "exp/a", "run exp/a", SEEN, |_| true);
    let (code, _, err) = ctl(&d, &["logs", "exp/nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("exp/nope"), "{err}");
    let (code, _, err) = ctl(&d, &["logs", "exp/a", "--file", "../../etc/passwd"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("train_val.log"),
        "the logs there are listed: {err}"
    );
}

#[test]
fn windows_and_next_offsets_at_the_file_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = root.join("exp/w");
    TRAINER.done(1).write(&run);
    let content = "0123456789\nabcdef\n"; // 18 bytes
    write_file(&run.join("train_val.log"), content);
    write_file(&run.join("logs/other.log"), "other\n");
    // The other log is older, so train_val.log is the newest whatever the clock's tick.
    std::fs::File::options()
        .write(true)
        .open(run.join("logs/other.log"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let d = start(&root);
    wait_run_detail(&d, "exp/w", "run exp/w", SEEN, |v| {
        has_log(v, "train_val.log")
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = d.client();
    let get = |q: &str| -> Result<ugro_api::LogWindow, ugro_api::ClientError> {
        rt.block_on(client.get::<ugro_api::LogWindow>(&format!("/v1/logs/exp/w?{q}")))
    };
    let w = |q: &str| {
        let w = get(q).unwrap();
        assert_eq!(w.size, 18, "{q}");
        assert_eq!(w.run, "exp/w");
        assert_eq!(
            PathBuf::from(&w.path),
            run.join(&w.file),
            "path and file name agree"
        );
        (w.offset, w.next_offset, w.text)
    };
    assert_eq!(w("offset=0&limit=5"), (0, 5, "01234".into()));
    assert_eq!(w("offset=5&limit=6"), (5, 11, "56789\n".into()));
    assert_eq!(w("offset=-7&limit=100"), (11, 18, "abcdef\n".into()));
    assert_eq!(w("offset=-7&limit=3"), (11, 14, "abc".into()));
    assert_eq!(w("offset=-18&limit=1"), (0, 1, "0".into()));
    assert_eq!(w("offset=-100&limit=2"), (0, 2, "01".into()));
    assert_eq!(w("offset=18"), (18, 18, String::new()));
    assert_eq!(w("offset=17"), (17, 18, "\n".into()));
    assert_eq!(w("offset=1000"), (18, 18, String::new()));
    assert_eq!(w("lines=1"), (11, 18, "abcdef\n".into()));
    assert_eq!(w("lines=5"), (0, 18, content.into()));
    let other = get("file=logs/other.log").unwrap();
    assert_eq!(
        (other.file.as_str(), other.text.as_str()),
        ("logs/other.log", "other\n")
    );
    for bad in ["limit=0", "limit=99999999999", "offset=x", "nope=1"] {
        match get(bad) {
            Err(ugro_api::ClientError::Api { status, .. }) => assert_eq!(status, 400, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    match get("file=missing.log") {
        Err(ugro_api::ClientError::Api { status, code, .. }) => {
            assert_eq!((status.as_u16(), code.as_str()), (404, "unknown_log"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_roots_log_globs_add_logs_for_failure_reasons_and_ugroctl_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = root.join("slurm/job_7");
    TRAINER.done(2).write(&run);
    write_file(
        &run.join("slurm-7.out"),
        "step 9\nTraceback (most recent call last):\n  File \"t.py\", line 3, in <module>\nKeyError: 'lr'\n",
    );
    age(&run.join("slurm-7.out"), Duration::from_secs(2 * H));
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!("{}log_globs = [\"slurm-*.out\"]\n", root_config(&root)),
        ..Default::default()
    });
    let v = wait_run_detail(&d, "slurm/job_7", "run slurm/job_7", SEEN, |v| {
        v["status"] == "failed" && v["error"].is_string()
    });
    assert!(v["error"].as_str().unwrap().contains("KeyError"), "{v}");
    assert!(has_log(&v, "slurm-7.out"), "{}", v["log"]);
    let (code, out, err) = ctl(&d, &["logs", "slurm/job_7", "-n", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "KeyError: 'lr'\n");
}
