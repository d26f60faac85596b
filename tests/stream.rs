//! The change stream end to end: the real daemon on its Unix socket, real run directories under
//! a temp root (inotify), `ugro_api::Client::stream` and raw sockets as clients, and the real
//! `ugroctl runs --watch` / `ugroctl health --watch` / `ugroctl events -f` with their stdout
//! piped (not a terminal).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ugro_api::stream::{Change, ChangeStream, Message};
use ugro_testkit::gpu::{FakeGpu, install_fake_nvidia_smi};
use ugro_testkit::runs::{Trainer, find_run, write_epoch, write_file};
use ugro_testkit::{Daemon, DaemonOptions, bin, path_first, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

fn options(root: &Path, extra: &str) -> DaemonOptions {
    DaemonOptions {
        extra_config: format!(
            "[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\n{extra}\n",
            root.display()
        ),
        ..DaemonOptions::default()
    }
}

/// The trainers of these tests: 10 epochs (none done yet) and a fresh log (running).
const TRAINER: Trainer = Trainer::new(10).log("train_val_0.log", "epoch 0\n");

fn completed(d: &Daemon, id: &str) -> Option<u64> {
    find_run(d, id)?["progress"]["completed_epochs"].as_u64()
}

/// The next message within the deadline (panics on an error or the end of the stream).
async fn next(s: &mut ChangeStream) -> Message {
    tokio::time::timeout(DEADLINE, s.next())
        .await
        .expect("a message within the deadline")
        .expect("the stream goes on")
        .expect("no stream error")
}

/// Messages until one with id `last` (inclusive).
async fn until_id(s: &mut ChangeStream, last: u64) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let m = next(s).await;
        let id = m.id;
        out.push(m);
        if id == Some(last) {
            return out;
        }
        assert!(id.is_none_or(|i| i < last), "passed {last}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_comes_back_gets_exactly_what_it_missed() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("exp/run_1");
    TRAINER.write(&run);
    let d = Daemon::start(&options(root.path(), ""));
    wait_for("the run listed", DEADLINE, || completed(&d, "exp/run_1"));
    let client = d.client();

    // The witness stays connected throughout; the other leaves and comes back.
    let mut witness = client.stream(&["run", "event"], None).await.unwrap();
    let mut leaver = client.stream(&["run", "event"], None).await.unwrap();
    let hello = next(&mut leaver).await;
    assert_eq!(
        hello.data, "",
        "the first message carries only the newest id"
    );
    let left_at = leaver.last_event_id().expect("an id to resume from");
    drop(leaver);
    // The witness opened first: its first id is no newer than the leaver's.
    let w_hello = next(&mut witness).await;
    assert!(w_hello.id.unwrap() <= left_at);

    // Changes while it is away: three epochs, each seen by the daemon before the next.
    for i in 0..3 {
        write_epoch(&run, i);
        wait_for("the epoch counted", DEADLINE, || {
            (completed(&d, "exp/run_1")? > u64::from(i)).then_some(())
        });
    }
    // And a stored event.
    assert!(d.ctl(&["reload"]).status.success());

    // The witness has seen everything up to the reload's event.
    let mut seen = Vec::new();
    loop {
        let m = next(&mut witness).await;
        let done = m.event == "event" && m.data.contains("config.reloaded");
        seen.push(m);
        if done {
            break;
        }
    }
    let last = seen.last().unwrap().id.unwrap();

    let mut back = client
        .stream(&["run", "event"], Some(left_at))
        .await
        .unwrap();
    let replayed = until_id(&mut back, last).await;
    // Everything after the id it left at, in order, no gaps, no duplicates: what the witness saw
    // (minus what the witness saw before `left_at`).
    let expected: Vec<&Message> = seen
        .iter()
        .filter(|m| m.id.is_some_and(|i| i > left_at))
        .collect();
    let got: Vec<&Message> = replayed.iter().collect();
    assert_eq!(got, expected);
    let ids: Vec<u64> = replayed.iter().filter_map(|m| m.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The three epochs are there, in order, as the run's JSON.
    let epochs: Vec<u64> = replayed
        .iter()
        .filter(|m| m.event == "run")
        .map(|m| serde_json::from_str::<serde_json::Value>(&m.data).unwrap())
        .filter(|r| r["id"] == "exp/run_1")
        .map(|r| r["progress"]["completed_epochs"].as_u64().unwrap())
        .collect();
    let mut dedup = epochs.clone();
    dedup.dedup();
    assert!(dedup.ends_with(&[1, 2, 3]), "{epochs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_the_ring_or_from_another_daemon_is_a_reset() {
    let root = tempfile::tempdir().unwrap();
    TRAINER.write(&root.path().join("exp/run_1"));
    let opts = options(root.path(), "");
    let mut d = Daemon::start(&opts);
    let client = d.client();

    let mut s = client.stream(&[], Some(1)).await.unwrap();
    let m = next(&mut s).await;
    assert_eq!(m.event, "reset", "{m:?}");
    assert!(matches!(m.decode().unwrap(), Change::Reset(r) if r.contains("older")));
    drop(s);

    // An id of this daemon resumes…
    let mut s = client.stream(&[], None).await.unwrap();
    next(&mut s).await;
    let id = s.last_event_id().unwrap();
    drop(s);
    let mut s = client.stream(&[], Some(id)).await.unwrap();
    assert!(d.ctl(&["reload"]).status.success());
    let m = next(&mut s).await;
    assert_ne!(m.event, "reset", "{m:?}");
    drop(s);

    // …and after a restart the same id is from another daemon: reset.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    d.spawn(&opts);
    d.wait_ready();
    let mut s = client.stream(&[], Some(id)).await.unwrap();
    let m = next(&mut s).await;
    assert_eq!(m.event, "reset", "{m:?}");
}

fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_the_others_keep_receiving() {
    let root = tempfile::tempdir().unwrap();
    TRAINER.write(&root.path().join("seed/run_0"));
    let d = Daemon::start(&options(root.path(), ""));
    wait_for("the seed run listed", DEADLINE, || {
        completed(&d, "seed/run_0")
    });
    let client = d.client();

    // The stuck client: asks for the stream, then never reads a byte.
    let mut stuck = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    stuck
        .write_all(b"GET /v1/stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut reader = client.stream(&["run", "event"], None).await.unwrap();
    next(&mut reader).await;
    // Let the start-up settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = vm_rss_kib(d.pid().as_raw());

    // Thousands of messages (a run message and a run.discovered event per run), in batches the
    // daemon sees one at a time, while the reader keeps reading.
    let reading = tokio::spawn(async move {
        let mut n = 0usize;
        let mut last = None;
        loop {
            let m = next(&mut reader).await;
            if let Some(id) = m.id {
                assert!(last.is_none_or(|l| id > l), "{last:?} then {id}");
                last = Some(id);
            }
            n += 1;
            if m.event == "event" && m.data.contains("batch/done") {
                return n;
            }
        }
    });
    const BATCH: usize = 250;
    for b in 0..12 {
        for i in 0..BATCH {
            let run = root.path().join(format!("b{b}/run_{i}"));
            write_file(
                &run.join("config.json"),
                "{\"epochs\": 10, \"note\": \"a longer config to make the message a little larger than it would be otherwise\"}",
            );
            write_file(&run.join("train_val_0.log"), "epoch 0\n");
        }
        let want = 1 + (b + 1) * BATCH;
        wait_for("the batch listed", DEADLINE, || {
            let v = d.ctl_report(&["runs"]);
            (v["runs"].as_array()?.len() >= want).then_some(())
        });
    }
    TRAINER.write(&root.path().join("batch/done"));
    let n = tokio::time::timeout(DEADLINE, reading)
        .await
        .unwrap()
        .unwrap();
    assert!(n > 2500, "the reader got {n} messages");

    // The stuck client was disconnected: its socket reaches end of file once drained.
    stuck
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    let start = Instant::now();
    loop {
        match stuck.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => total += k,
            Err(e) => panic!(
                "the stuck client was not disconnected ({total} bytes read in {:?}): {e}",
                start.elapsed()
            ),
        }
    }
    assert!(
        d.log().contains("too slow"),
        "the daemon says why it dropped the client"
    );

    // Others can still open streams and get new messages.
    let mut later = client.stream(&["event"], None).await.unwrap();
    next(&mut later).await;
    assert!(d.ctl(&["reload"]).status.success());
    let m = next(&mut later).await;
    assert_eq!(m.event, "event");

    // Memory stayed bounded: 3000 runs tracked plus the stream, far from what an unbounded
    // queue of a few MB per message batch would take.
    let rss_after = vm_rss_kib(d.pid().as_raw());
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 96 * 1024,
        "daemon RSS grew by {growth} KiB ({rss_before} → {rss_after})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_filter_what_a_client_gets() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("exp/run_1");
    TRAINER.write(&run);
    let d = Daemon::start(&options(root.path(), ""));
    wait_for("the run listed", DEADLINE, || completed(&d, "exp/run_1"));
    let client = d.client();

    let mut events = client.stream(&["event"], None).await.unwrap();
    let mut runs = client.stream(&["run"], None).await.unwrap();
    next(&mut events).await;
    next(&mut runs).await;
    write_epoch(&run, 0);
    wait_for("the epoch counted", DEADLINE, || {
        (completed(&d, "exp/run_1")? >= 1).then_some(())
    });
    assert!(d.ctl(&["reload"]).status.success());
    write_epoch(&run, 1);

    // Only events reach the events client, up to the reload's…
    loop {
        let m = next(&mut events).await;
        assert_eq!(m.event, "event", "{m:?}");
        if m.data.contains("config.reloaded") {
            break;
        }
    }
    // …and only runs the runs client, through the reload to the second epoch.
    loop {
        let m = next(&mut runs).await;
        assert_eq!(m.event, "run", "{m:?}");
        let r: serde_json::Value = serde_json::from_str(&m.data).unwrap();
        if r["progress"]["completed_epochs"] == 2 {
            break;
        }
    }

    let err = client.stream(&["run", "bogus"], None).await.unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

/// A child's stdout lines, read on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it and every line read on the way.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(needle) {
                    return l;
                }
            }
            Err(_) => panic!(
                "no line with {needle:?} within {DEADLINE:?}; got:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// The watch printed its table once (one line starting with the table's `header`), then only
/// lines of change.
fn table_printed_once(seen: &[String], header: &str) {
    let headers = seen
        .iter()
        .filter(|l| l.trim_start().starts_with(header))
        .count();
    assert_eq!(headers, 1, "{}", seen.join("\n"));
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctl_follow(d: &Daemon, args: &[&str]) -> (Killed, mpsc::Receiver<String>) {
    let mut child = Command::new(bin("ugroctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env_remove("UGRO_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    (Killed(child), rx)
}

#[test]
fn ugroctl_runs_watch_prints_a_status_change() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("exp/run_1");
    TRAINER.total(3).write(&run);
    write_epoch(&run, 0);
    // A short stall window: the run fails (no process) once its log is quiet for 2 s.
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[[roots]]\npath = \"{}\"\nstall_after = \"2s\"\n",
            root.path().display()
        ),
        ..DaemonOptions::default()
    });
    wait_for("the run failed (quiet, no process)", DEADLINE, || {
        let v = d.ctl_report(&["runs"]);
        (v["runs"][0]["status"] == "failed").then_some(())
    });
    let (_child, rx) = ctl_follow(&d, &["runs", "--watch"]);
    let mut seen = Vec::new();
    // The table comes first.
    wait_line(&rx, "exp/run_1", &mut seen);
    // The log written again: running, then quiet again: failed.
    let until = Instant::now() + DEADLINE;
    loop {
        write_file(&run.join("train_val_0.log"), "epoch 1\n");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(l.clone());
            if l.contains("exp/run_1") && l.contains("→running") {
                break;
            }
        }
        assert!(
            Instant::now() < until,
            "never running again:\n{}",
            seen.join("\n")
        );
    }
    let line = wait_line(&rx, "running→failed", &mut seen);
    assert!(line.contains(" run exp/run_1 running→failed 1/3"), "{line}");
    table_printed_once(&seen, "RUN ");
}

/// `ugroctl health --watch` with stdout piped: the table once, then a line for each change of
/// a node's health, as the daemon's sweeps see it. The node is this machine, its GPU the
/// testkit's nvidia-smi stand-in (first on the daemon's PATH): a driver error makes it
/// unhealthy (gpu is critical), a working GPU again takes it out of unhealthy.
#[test]
fn ugroctl_health_watch_prints_a_node_turning_unhealthy_and_back() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 1 });
    // Sweeps every second; a free-disk minimum this machine always meets.
    let d = Daemon::start(&DaemonOptions {
        extra_config: "[health]\ninterval = \"1s\"\nmin_interval = \"1s\"\nmax_interval = \"1s\"\nprobe_timeout = \"5s\"\ndisk_free_min = \"1MB\"\n\n[[nodes]]\nname = \"local\"\nhost = \"local\"\ngpus = 1\n".into(),
        env: vec![path_first(bin.path())],
        ..DaemonOptions::default()
    });
    wait_for("the node healthy", DEADLINE, || {
        (d.ctl_report(&["health", "local"])["state"] == "healthy").then_some(())
    });
    let (_child, rx) = ctl_follow(&d, &["health", "--watch"]);
    let mut seen = Vec::new();
    // The table comes first.
    let row = wait_line(&rx, "local", &mut seen);
    assert!(row.trim_start().starts_with("local "), "{row}");

    install_fake_nvidia_smi(bin.path(), FakeGpu::DriverError);
    let line = wait_line(&rx, "→unhealthy", &mut seen);
    assert!(line.contains(" node local "), "{line}");
    assert!(
        line.contains("(failing: ") && line.contains("gpu"),
        "{line}"
    );

    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 1 });
    let line = wait_line(&rx, "unhealthy→", &mut seen);
    assert!(line.contains(" node local "), "{line}");
    assert!(!line.contains("gpu"), "the GPU works again: {line}");
    table_printed_once(&seen, "NODE ");
}

#[test]
fn ugroctl_events_follow_prints_a_new_event() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&options(root.path(), ""));
    let (_child, rx) = ctl_follow(&d, &["events", "-f", "--since", "1h"]);
    let mut seen = Vec::new();
    // What was there already (the daemon's start) is printed first…
    wait_line(&rx, "daemon.started", &mut seen);
    // …then a new one as it is stored.
    assert!(d.ctl(&["reload"]).status.success());
    let line = wait_line(&rx, "config.reloaded", &mut seen);
    assert!(line.contains("info config.reloaded daemon:"), "{line}");
}
