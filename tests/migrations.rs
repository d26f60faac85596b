//! Schema upgrades as an operator meets them: a database written by the first release (only the
//! foundation migration applied) and holding data is upgraded in place by the current daemon
//! with nothing lost; a database written by a newer release is refused, clearly, and left as it
//! was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use ugro_core::event::EventKind;
use ugro_testkit::{Daemon, DaemonOptions, repo_root};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn pool(path: &Path, create: bool) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(create)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap()
}

/// The migrations of the repository, oldest first.
fn migration_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    v.sort();
    v
}

/// Applies the first `n` migrations of the repository to a new database at `db`, exactly as
/// the release that had only those would have (same files, same checksums).
async fn database_of_release(db: &Path, n: usize) -> SqlitePool {
    let dir = tempfile::tempdir().unwrap();
    for f in migration_files().iter().take(n) {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let pool = pool(db, true).await;
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

#[test]
fn a_first_release_database_is_upgraded_with_nothing_lost() {
    let opts = DaemonOptions::default();
    let mut d = Daemon::prepare(&opts);
    std::fs::create_dir_all(&d.state_dir).unwrap();
    let db = d.state_dir.join("ugro.db");
    let rt = runtime();
    rt.block_on(async {
        let pool = database_of_release(&db, 1).await;
        // What the first release stored: its events and a cleanly closed session.
        for i in 0..50 {
            sqlx::query(
                "INSERT INTO events (ts_ms, kind, subject, severity, message) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(chrono::Utc::now().timestamp_millis() - 60_000 + i)
            .bind(EventKind::RunFailed.as_str())
            .bind(format!("exp/run_{i}"))
            .bind("warning")
            .bind(format!("old event {i}"))
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO daemon_sessions (started_ms, stopped_ms, pid, version) VALUES (1, 2, 42, '0.0.1')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });

    d.spawn(&opts);
    d.wait_ready();
    // Every old event is still there, beside the new daemon's own.
    let ev = d.ctl_json(&[
        "events",
        "--since",
        "1h",
        "--kind",
        EventKind::RunFailed.as_str(),
    ]);
    let old: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(old.len(), 50, "{ev}");
    assert!(old.contains(&"old event 0") && old.contains(&"old event 49"));
    // The previous session was closed: no unclean-stop report.
    let unclean = d.ctl_json(&[
        "events",
        "--since",
        "1h",
        "--kind",
        EventKind::DaemonUncleanStop.as_str(),
    ]);
    assert_eq!(unclean["events"].as_array().unwrap().len(), 0, "{unclean}");
    // And the schema is the current one: every migration of the repository applied.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, _) = d.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}", d.log());
    let applied: i64 = rt.block_on(async {
        let pool = pool(&db, false).await;
        let n = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        pool.close().await;
        n
    });
    assert_eq!(applied as usize, migration_files().len());
}

#[test]
fn a_database_from_a_newer_release_is_refused_and_left_untouched() {
    let opts = DaemonOptions::default();
    let mut d = Daemon::prepare(&opts);
    std::fs::create_dir_all(&d.state_dir).unwrap();
    let db = d.state_dir.join("ugro.db");
    let rt = runtime();
    rt.block_on(async {
        let pool = database_of_release(&db, migration_files().len()).await;
        // A release from the future applied a migration this binary does not know.
        sqlx::query("CREATE TABLE from_the_future (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES (29991231000001, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let before = std::fs::read(&db).unwrap();

    d.spawn(&opts);
    let (status, _) = d.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "the daemon started on a newer schema");
    let log = d.log();
    assert!(
        log.contains("29991231000001")
            && log.contains(&db.display().to_string())
            && log.contains("written by a newer ugro-monitor")
            && log.contains("not changed"),
        "the refusal names the database and the unknown migration:\n{log}"
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the refused database was changed"
    );
}
