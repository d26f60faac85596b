//! The store under faults, end to end: a state dir on a small tmpfs that fills up (writes fail,
//! the status says so, and what the daemon holds in memory lands once space returns; stop stays
//! within its deadline and a restart right after works), the files' modes, a database damaged
//! in the middle (the daemon starts and raises `store.corrupt`), and the WAL cut back after a
//! big discovery. We run as root: mounting a tmpfs needs it (the test says so and skips if not).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use ugro_core::event::EventKind;
use ugro_testkit::runs::{Trainer, runs};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

/// The daemon's documented stop deadline (daemon.rs `STOP_DEADLINE`).
const STOP_DEADLINE: Duration = Duration::from_secs(4);

/// A tmpfs mounted on a directory, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }

    /// Writes a filler file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0x5au8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last, partial chunk too.
        let small = [0x5au8; 512];
        while f.write_all(&small).is_ok() {}
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The trainers of these tests, finished when `done` is `total`: a config with a learning
/// rate and a log.
const TRAINER: Trainer = Trainer::new(0)
    .lr()
    .log("train_val_2026-11-20.log", "epoch 1: loss 1.9\n");

fn root_config(root: &Path) -> String {
    format!(
        "[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\noutdated_after = \"3000d\"\n",
        root.display()
    )
}

fn store_status(d: &Daemon) -> Value {
    d.ctl_json(&["status"])["store"].clone()
}

/// Rows in the daemon's `runs` table, read by a separate read-only connection.
fn stored_runs(db: &Path) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .read_only(true)
            .connect()
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
            .fetch_one(&mut c)
            .await
            .unwrap();
        use sqlx::Connection;
        c.close().await.unwrap();
        n
    })
}

/// Checkpoints the daemon's WAL into the database and cuts the file to nothing, from another
/// connection: the daemon's next writes need new blocks (the old ones cannot be reused).
fn truncate_wal(db: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{ConnectOptions, Connection};
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .connect()
            .await
            .unwrap();
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(busy, 0, "checkpoint done");
        c.close().await.unwrap();
    })
}

#[test]
fn a_full_state_disk_degrades_the_store_and_everything_lands_once_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    std::fs::create_dir_all(&root).unwrap();
    let opts = DaemonOptions {
        extra_config: root_config(&root),
        ..Default::default()
    };
    let mut d = Daemon::prepare(&opts);
    let Some(fs) = Tmpfs::mount(&d.state_dir, "8m") else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    d.spawn(&opts);
    d.wait_ready();
    let db = d.state_dir.join("ugro.db");
    assert_eq!(store_status(&d)["state"], "ok");

    // The disk fills up; then runs appear. They are served from memory at once ...
    truncate_wal(&db);
    let filler = fs.fill();
    const N: usize = 120;
    for i in 0..N {
        TRAINER
            .total(12)
            .done(12)
            .write(&root.join(format!("g{}/run{i:03}", i % 4)));
    }
    wait_for("every run listed", Duration::from_secs(30), || {
        (runs(&d).len() == N).then_some(())
    });
    // ... but cannot be stored: the status says so.
    let degraded = wait_for("the store degraded", Duration::from_secs(30), || {
        let s = store_status(&d);
        (s["state"] == "degraded").then_some(s)
    });
    assert!(
        degraded["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("full"),
        "the error says why: {degraded}"
    );
    assert!(degraded["since"].is_string(), "{degraded}");
    assert!(
        degraded["pending_writes"].as_u64().unwrap() > 0,
        "{degraded}"
    );
    let text = d.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("degraded"),
        "ugroctl status shows it:\n{text}"
    );
    assert!(stored_runs(&db) < N as i64);

    // Space returns: what the daemon holds lands without any file changing.
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "every run stored after space returned",
        Duration::from_secs(60),
        || (stored_runs(&db) == N as i64).then_some(()),
    );
    let ok = wait_for("the store ok again", Duration::from_secs(30), || {
        let s = store_status(&d);
        (s["state"] == "ok").then_some(s)
    });
    assert_eq!(ok["pending_writes"], 0, "{ok}");
    let recovered = wait_for("a store.recovered event", Duration::from_secs(10), || {
        let v = d.ctl_json(&["events", "--kind", EventKind::StoreRecovered.as_str()]);
        let e = v["events"].as_array().unwrap().clone();
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(recovered.len(), 1, "the outage is on record: {recovered:?}");
    // The events of the outage were kept and recorded late, with their own times.
    let discovered = d.ctl_json(&["events", "--kind", EventKind::RunDiscovered.as_str()]);
    let discovered = discovered["events"].as_array().unwrap();
    let t = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    assert!(
        discovered
            .iter()
            .any(|e| t(&e["time"]) < t(&recovered[0]["time"])
                && t(&e["time"]) >= t(&degraded["since"])),
        "run.discovered events of the outage recorded: {discovered:?}"
    );

    // Full again, more runs, then stop: within the deadline, and a restart at once works.
    truncate_wal(&db);
    let filler = fs.fill();
    for i in N..N + 30 {
        TRAINER
            .total(12)
            .done(12)
            .write(&root.join(format!("late/run{i:03}")));
    }
    wait_for("the store degraded again", Duration::from_secs(30), || {
        (store_status(&d)["state"] == "degraded").then_some(())
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, took) = d.wait_exit(Duration::from_secs(15));
    assert!(
        took <= STOP_DEADLINE,
        "stop with a full disk took {took:?}\n{}",
        d.log()
    );
    assert!(status.success(), "exit status {status}\n{}", d.log());
    std::fs::remove_file(&filler).unwrap();
    d.spawn(&opts);
    d.wait_ready();
    wait_for(
        "the runs of the full-disk stop stored by the next daemon",
        Duration::from_secs(60),
        || (stored_runs(&db) == (N + 30) as i64).then_some(()),
    );
    assert_eq!(store_status(&d)["state"], "ok");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    drop(fs);
}

#[test]
fn database_files_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    TRAINER.total(3).done(3).write(&root.join("a/1"));
    let opts = DaemonOptions {
        extra_config: root_config(&root),
        ..Default::default()
    };
    // The daemon inherits a permissive umask from this test process.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o002));
    let mut d = Daemon::start(&opts);
    nix::sys::stat::umask(old);
    wait_for("the run listed", Duration::from_secs(20), || {
        (runs(&d).len() == 1).then_some(())
    });
    for name in ["ugro.db", "ugro.db-wal", "ugro.db-shm"] {
        let p = d.state_dir.join(name);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
    }
    // A database left 0644 by an older daemon is narrowed at the next start.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    let db = d.state_dir.join("ugro.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.spawn(&opts);
    d.wait_ready();
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn damage_in_the_middle_of_the_database_starts_with_a_critical_event() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    // Enough runs and epochs for a database of many pages.
    const N: usize = 300;
    for i in 0..N {
        TRAINER
            .total(8)
            .done(8)
            .write(&root.join(format!("g{}/run{i:03}", i % 5)));
    }
    let opts = DaemonOptions {
        extra_config: root_config(&root),
        ..Default::default()
    };
    let mut d = Daemon::start(&opts);
    let db = d.state_dir.join("ugro.db");
    wait_for("every run stored", Duration::from_secs(60), || {
        (stored_runs(&db) == N as i64).then_some(())
    });
    // A clean stop checkpoints the WAL into the file.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));

    // Garbage over the cells of a leaf page of the epochs table in the middle of the file (not
    // read at start: the daemon can work, but the file is damaged).
    let (page, page_size, pages) = epoch_leaf_in_the_middle(&db);
    assert!(page > 1 && page < pages, "page {page} of {pages}");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = (page - 1) as usize * page_size as usize;
    bytes[at + page_size as usize / 2..at + page_size as usize].fill(0xab);
    std::fs::write(&db, bytes).unwrap();

    d.spawn(&opts);
    d.wait_ready();
    let events = wait_for("a store.corrupt event", Duration::from_secs(30), || {
        let v = d.ctl_json(&["events", "--kind", EventKind::StoreCorrupt.as_str()]);
        let e = v["events"].as_array().unwrap().clone();
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(events[0]["severity"], "critical", "{events:?}");
    let message = events[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{page}")) && message.contains(".recover"),
        "names the damage and the way out: {message}"
    );
    let store = store_status(&d);
    assert_eq!(store["state"], "degraded", "{store}");
    assert!(store["integrity"].is_string(), "{store}");
    // It serves what it has.
    assert_eq!(runs(&d).len(), N);
}

/// (page number, page size, page count) of a leaf page of `run_epochs` near the middle.
fn epoch_leaf_in_the_middle(db: &Path) -> (i64, i64, i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{ConnectOptions, Connection};
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .read_only(true)
            .connect()
            .await
            .unwrap();
        let leaves: Vec<i64> = sqlx::query_scalar(
            "SELECT pageno FROM dbstat WHERE name = 'run_epochs' AND pagetype = 'leaf' ORDER BY pageno",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut c)
            .await
            .unwrap();
        let count: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        assert!(leaves.len() > 4, "a database of many epoch pages");
        (leaves[leaves.len() / 2], size, count)
    })
}
