//! The SQLite state file: opening it (WAL, migrations embedded in the binary, private file
//! modes, the start-up integrity check), keeping the WAL small, how writes are faring (the
//! `store` part of `/v1/status`) and every query the daemon makes. Only this module talks SQL.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqlitePool};
use ugro_api::{StoreState, StoreStatus};
use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::health::{Alert as CoreAlert, CheckResult, NodeState};
use ugro_core::parse::GpuReading;

use crate::view::Event;

/// Migrations from the workspace's `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Hard ceiling on events returned by one query.
pub const MAX_EVENTS_PER_QUERY: u32 = 10_000;

/// Mode of the database, its WAL and shared-memory file: the daemon's alone (readers go through
/// the socket, which decides who may see what).
pub const DB_FILE_MODE: u32 = 0o600;

/// Events kept to record once a failing database takes writes again.
pub const UNRECORDED_MAX: usize = 1000;

/// `PRAGMA journal_size_limit`: whenever the WAL starts over after a checkpoint, it is cut back
/// to this size instead of keeping its high-water mark.
pub const JOURNAL_SIZE_LIMIT: u64 = 16 << 20;

/// A write that leaves the WAL larger than this checkpoints it at once (TRUNCATE), so a big
/// discovery does not leave hundreds of MB behind.
pub const CHECKPOINT_WAL_ABOVE: u64 = 32 << 20;

/// Longest wait for this process's turn to write (see [`Store::write_turn`]).
pub const WRITE_TURN_WAIT: Duration = Duration::from_secs(30);

/// How long a write waits for another connection's write transaction. Write transactions start
/// with `BEGIN IMMEDIATE`, so this wait covers every lock conflict between the daemon's writers
/// (a runs batch of 4000 rows holds the lock for well under a second).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot open database {path}: {cause}")]
    Open { path: PathBuf, cause: sqlx::Error },
    #[error(
        "database {path} was written by a newer ugro-monitor: it has schema migration {version}, which ugro-monitor {} does not know. Run the newer ugro-monitor again, or restore the backup taken before the upgrade (docs/operations.md); the database was not changed",
        env!("CARGO_PKG_VERSION")
    )]
    NewerSchema { path: PathBuf, version: i64 },
    #[error("cannot migrate database {path}: {cause}")]
    Migrate {
        path: PathBuf,
        cause: sqlx::migrate::MigrateError,
    },
    #[error("database {path}: {op}: {cause}")]
    Query {
        path: PathBuf,
        op: &'static str,
        cause: sqlx::Error,
    },
    #[error("database {path}: {op}: no turn to write within {} s (other writes queued ahead)", WRITE_TURN_WAIT.as_secs())]
    NoTurn { path: PathBuf, op: &'static str },
    #[error("database file {path}: {op}: {cause}")]
    File {
        path: PathBuf,
        op: &'static str,
        cause: std::io::Error,
    },
}

/// A new event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub subject: String,
    pub severity: Severity,
    pub message: String,
}

impl NewEvent {
    pub fn new(
        kind: EventKind,
        subject: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            subject: subject.into(),
            severity,
            message: message.into(),
        }
    }
}

/// Filter for [`Store::events`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since: Option<DateTime<Utc>>,
    /// Exact kind, or a prefix ending in '.' (e.g. `daemon.`).
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub limit: u32,
}

/// Handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    health: Arc<WriteHealth>,
    /// One write at a time in this process, first come first served (see
    /// [`Store::write_turn`]).
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// How writes are faring: failing since when, and how many rows writers hold to redo.
#[derive(Debug, Default)]
struct WriteHealth {
    failing: Mutex<Option<Failing>>,
    /// Rows the writers hold in memory, not stored yet (see [`Store::add_pending`]).
    pending: AtomicU64,
    /// What the start-up `quick_check` found, when it found damage.
    integrity: Mutex<Option<String>>,
    /// Events the database refused, to record once it takes writes (at most
    /// [`UNRECORDED_MAX`]; past that only counted).
    unrecorded: Mutex<std::collections::VecDeque<(DateTime<Utc>, NewEvent)>>,
    unrecorded_dropped: AtomicU64,
    /// Set while a task records the kept events.
    flushing: std::sync::atomic::AtomicBool,
    /// Where the kept events go once recorded (see [`Store::take_late_events`]).
    late: std::sync::OnceLock<tokio::sync::mpsc::Sender<RecordedLate>>,
}

/// An event the database refused at first and recorded later: its id, time and content.
pub type RecordedLate = (i64, DateTime<Utc>, NewEvent);

/// Late-recorded events waiting for their receiver; past this they are only in the database.
pub const LATE_QUEUE: usize = 1024;

#[derive(Debug, Clone)]
struct Failing {
    since: DateTime<Utc>,
    last_error: String,
    failures: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Store {
    /// Opens (creating if needed) the database at `path` in WAL mode and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                cause: source,
            })?;
        }
        // Created (or narrowed) before SQLite sees it: SQLite gives the -wal and -shm files the
        // database's mode, and the umask plays no part.
        restrict_file(path, true)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                cause: source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string())
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            // A connection handed back inside a transaction (a COMMIT that failed on a full disk
            // leaves sqlx counting one SQLite already rolled back) would run every later
            // statement in a stale transaction: "database is locked" for good. Close it instead.
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!("closing a database connection left inside a transaction");
                    }
                    Ok(clean)
                })
            })
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                cause: source,
            })?;
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            restrict_file(Path::new(&p), false)?;
        }
        MIGRATOR.run(&pool).await.map_err(|source| match source {
            // Applied here but unknown to this binary: a newer release wrote the file.
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::NewerSchema {
                path: path.to_path_buf(),
                version,
            },
            source => StoreError::Migrate {
                path: path.to_path_buf(),
                cause: source,
            },
        })?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
            health: Arc::default(),
            turn: Arc::default(),
        })
    }

    /// Runs `PRAGMA quick_check` (every page and index, without the slower cross-checks of
    /// `integrity_check`). Returns the problems found (at most 10), none when the database is sound; a
    /// database too damaged to check counts as one problem. Problems show in
    /// [`Store::write_status`] until the next start.
    pub async fn quick_check(&self) -> Vec<String> {
        let problems = match sqlx::query("PRAGMA quick_check(10)")
            .fetch_all(&self.pool)
            .await
        {
            // One row per problem, or (newer SQLite) one row of lines under a
            // "*** in database main ***" heading.
            Ok(rows) => rows
                .iter()
                .filter_map(|r| r.try_get::<String, _>(0).ok())
                .flat_map(|text| {
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && *l != "ok" && !l.starts_with("***"))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .take(10)
                .collect(),
            Err(e) => vec![format!("the check itself failed: {e}")],
        };
        if !problems.is_empty() {
            *lock(&self.health.integrity) = Some(problems.join("; "));
        }
        problems
    }

    /// The `store` part of `/v1/status`.
    pub fn write_status(&self) -> StoreStatus {
        let failing = lock(&self.health.failing).clone();
        let integrity = lock(&self.health.integrity).clone();
        StoreStatus {
            state: if failing.is_some() || integrity.is_some() {
                StoreState::Degraded
            } else {
                StoreState::Ok
            },
            last_error: failing.as_ref().map(|f| f.last_error.clone()),
            since: failing.as_ref().map(|f| f.since),
            pending_writes: self.health.pending.load(Ordering::Relaxed)
                + lock(&self.health.unrecorded).len() as u64,
            integrity,
        }
    }

    /// Writers that hold rows to store in memory (and redo them after a failure) count them
    /// here: `delta` more (or fewer) rows pending. The store stays degraded while any are held
    /// after a failure.
    pub fn add_pending(&self, delta: i64) {
        if delta >= 0 {
            self.health
                .pending
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            let d = delta.unsigned_abs();
            let _ = self
                .health
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(p.saturating_sub(d))
                });
        }
    }

    /// Notes a failed write: degraded from now until writes land again with nothing pending.
    pub fn write_failed(&self, e: &StoreError) {
        let mut f = lock(&self.health.failing);
        match f.as_mut() {
            Some(f) => {
                f.last_error = e.to_string();
                f.failures += 1;
            }
            None => {
                tracing::error!(error = %e, "database writes fail; the store is degraded, what the daemon holds in memory is stored again once writes land");
                *f = Some(Failing {
                    since: Utc::now(),
                    last_error: e.to_string(),
                    failures: 1,
                });
            }
        }
    }

    /// Notes a write that landed: back to `ok` when nothing is pending any more, with an event
    /// saying how long writes failed.
    pub fn write_landed(&self) {
        if !lock(&self.health.unrecorded).is_empty() {
            self.record_unrecorded();
            return;
        }
        if self.health.pending.load(Ordering::Relaxed) > 0 {
            return;
        }
        let Some(f) = lock(&self.health.failing).take() else {
            return;
        };
        let now = Utc::now();
        let secs = (now - f.since).num_seconds().max(0);
        let message = format!(
            "database writes failed for {secs} s from {} ({} failed write(s), the last: {}); \
             everything held in memory has been stored again",
            f.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            f.failures,
            f.last_error
        );
        tracing::warn!(kind = "store.recovered", "{message}");
        let store = self.clone();
        tokio::spawn(async move {
            let e = NewEvent::new(
                EventKind::StoreRecovered,
                "daemon",
                Severity::Warning,
                message,
            );
            if let Err(err) = store.record_event(now, &e).await {
                tracing::error!(error = %err, kind = %e.kind, "could not record event");
            }
        });
    }

    /// Passes a write's result through, noting how it fared.
    pub(crate) fn track<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Ok(_) => self.write_landed(),
            Err(e) => self.write_failed(e),
        }
        r
    }

    /// Checkpoints the WAL (TRUNCATE) when it has grown past [`CHECKPOINT_WAL_ABOVE`]; a
    /// checkpoint that other connections keep from finishing is left to the next write.
    pub async fn settle_wal(&self) {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size <= CHECKPOINT_WAL_ABOVE {
            return;
        }
        let Ok(_turn) = self.write_turn("checkpoint").await else {
            return;
        };
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
        {
            Ok((busy, frames, done)) => {
                tracing::debug!(size, busy, frames, done, "checkpointed the WAL")
            }
            Err(e) => tracing::warn!(size, error = %e, "could not checkpoint the WAL"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pool, for `impl Store` blocks in other modules (samples, summaries, outbox) that
    /// keep their queries beside the logic that uses them (writes go through
    /// [`Store::begin_write`]).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Query {
            path: self.path.clone(),
            op,
            cause: source,
        }
    }

    /// A trivial query with a deadline: proves the database answers (used by the watchdog).
    pub async fn ping(&self, deadline: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(deadline, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(r) => r.map(|_| ()).map_err(self.err("ping")),
            Err(_) => Err(StoreError::Query {
                path: self.path.clone(),
                op: "ping",
                cause: sqlx::Error::PoolTimedOut,
            }),
        }
    }

    /// Records an event. One the database refuses is kept (the first [`UNRECORDED_MAX`] of an
    /// outage) and recorded, with its own time, once writes land again.
    pub async fn record_event(&self, at: DateTime<Utc>, e: &NewEvent) -> Result<i64, StoreError> {
        let r = self.insert_event(at, e).await;
        if r.is_err() {
            let mut kept = lock(&self.health.unrecorded);
            if kept.len() < UNRECORDED_MAX {
                kept.push_back((at, e.clone()));
            } else {
                self.health
                    .unrecorded_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.track(r)
    }

    /// Not `RETURNING id` with `fetch_one`: that takes the row and resets the statement before
    /// its implicit COMMIT reports a full disk, so a lost event looked recorded.
    async fn insert_event(&self, at: DateTime<Utc>, e: &NewEvent) -> Result<i64, StoreError> {
        let _turn = self.write_turn("insert event").await?;
        let done = sqlx::query(
            "INSERT INTO events (ts_ms, kind, subject, severity, message) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(to_ms(at))
        .bind(e.kind.as_str())
        .bind(&e.subject)
        .bind(e.severity.as_str())
        .bind(&e.message)
        .execute(&self.pool)
        .await
        .map_err(self.err("insert event"))?;
        Ok(done.last_insert_rowid())
    }

    /// The events kept while writes failed, each once it is recorded with its id (for the
    /// change stream, which publishes an event only when it is stored). The first call gets the
    /// receiver, later ones `None`. Bounded by [`LATE_QUEUE`]: a receiver that does not keep up
    /// misses some (they are in the database all the same).
    pub fn take_late_events(&self) -> Option<tokio::sync::mpsc::Receiver<RecordedLate>> {
        let (tx, rx) = tokio::sync::mpsc::channel(LATE_QUEUE);
        self.health.late.set(tx).ok().map(|()| rx)
    }

    fn recorded_late(&self, id: i64, at: DateTime<Utc>, e: NewEvent) {
        if let Some(tx) = self.health.late.get() {
            let _ = tx.try_send((id, at, e));
        }
    }

    /// Records the events kept while writes failed, oldest first, on a task of its own (one
    /// at a time); stops at the first failure, keeping the rest.
    fn record_unrecorded(&self) {
        if self.health.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                // Only this task takes from the front; new ones go to the back.
                let next = lock(&store.health.unrecorded).front().cloned();
                let Some((at, e)) = next else { break };
                match store.insert_event(at, &e).await {
                    Ok(id) => store.recorded_late(id, at, e),
                    Err(err) => {
                        store.health.flushing.store(false, Ordering::Release);
                        store.write_failed(&err);
                        return;
                    }
                }
                lock(&store.health.unrecorded).pop_front();
            }
            let dropped = store.health.unrecorded_dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let e = NewEvent::new(
                    EventKind::StoreEventsLost,
                    "daemon",
                    Severity::Warning,
                    format!(
                        "{dropped} event(s) could not be recorded while database writes failed \
                         (past the first {UNRECORDED_MAX} kept); the journal has them"
                    ),
                );
                let at = Utc::now();
                match store.insert_event(at, &e).await {
                    Ok(id) => store.recorded_late(id, at, e),
                    Err(_) => {
                        store
                            .health
                            .unrecorded_dropped
                            .fetch_add(dropped, Ordering::Relaxed);
                    }
                }
            }
            store.health.flushing.store(false, Ordering::Release);
            store.write_landed();
        });
    }

    /// Events matching `f`, oldest first; at most `f.limit` (the newest ones) and a flag saying
    /// whether more matched.
    pub async fn events(&self, f: &EventFilter) -> Result<(Vec<Event>, bool), StoreError> {
        let limit = f.limit.clamp(1, MAX_EVENTS_PER_QUERY);
        // A kind ending in '.' is a prefix (`daemon.` matches `daemon.started`).
        let q = sqlx::query(
            "SELECT id, ts_ms, kind, subject, severity, message FROM events \
             WHERE (?1 IS NULL OR ts_ms >= ?1) \
               AND (?2 IS NULL OR kind = ?2 OR (substr(?2, -1) = '.' AND substr(kind, 1, length(?2)) = ?2)) \
               AND (?3 IS NULL OR subject = ?3) \
             ORDER BY ts_ms DESC, id DESC LIMIT ?4",
        )
        .bind(f.since.map(to_ms))
        .bind(f.kind.as_deref())
        .bind(f.subject.as_deref())
        .bind(i64::from(limit) + 1);
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("select events"))?;
        let truncated = rows.len() > limit as usize;
        let mut events: Vec<Event> = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| Event {
                id: r.get(0),
                time: from_ms(r.get(1)),
                kind: r.get(2),
                subject: r.get(3),
                severity: Severity::parse(r.get::<&str, _>(4)).unwrap_or(Severity::Info),
                message: r.get(5),
            })
            .collect();
        events.reverse();
        Ok((events, truncated))
    }

    /// Number of events in total and since `since`.
    pub async fn event_counts(&self, since: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query("SELECT count(*), coalesce(sum(ts_ms >= ?), 0) FROM events")
            .bind(to_ms(since))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("count events"))?;
        let total: i64 = row.get(0);
        let recent: i64 = row.get(1);
        Ok((total.max(0) as u64, recent.max(0) as u64))
    }

    /// Deletes events older than `before`; returns how many.
    pub async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _turn = self.write_turn("prune events").await?;
        let r = sqlx::query("DELETE FROM events WHERE ts_ms < ?")
            .bind(to_ms(before))
            .execute(&self.pool)
            .await
            .map_err(self.err("prune events"))?;
        Ok(r.rows_affected())
    }

    /// Records this daemon's start. Returns the new session id and, if the previous session
    /// never recorded a clean stop, when that session started.
    pub async fn begin_session(
        &self,
        at: DateTime<Utc>,
        pid: u32,
        version: &str,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let (mut tx, _turn) = self.begin_write("begin session").await?;
        let unclean: Option<i64> = sqlx::query_scalar(
            "SELECT started_ms FROM daemon_sessions WHERE stopped_ms IS NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.err("find unclean session"))?;
        sqlx::query("UPDATE daemon_sessions SET stopped_ms = -1 WHERE stopped_ms IS NULL")
            .execute(&mut *tx)
            .await
            .map_err(self.err("close unclean sessions"))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO daemon_sessions (started_ms, pid, version) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(to_ms(at))
        .bind(i64::from(pid))
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.err("insert session"))?;
        tx.commit().await.map_err(self.err("commit session"))?;
        Ok((id, unclean.map(from_ms)))
    }

    pub async fn end_session(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let turn = self.write_turn("end session").await?;
        let r = sqlx::query("UPDATE daemon_sessions SET stopped_ms = ? WHERE id = ?")
            .bind(to_ms(at))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(self.err("end session"));
        drop(turn);
        self.track(r).map(|_| ())
    }

    /// Waits (at most [`WRITE_TURN_WAIT`]) for this process's turn to write; the turn lasts
    /// as long as the guard. Writers queue first come first served: SQLite's busy handler only
    /// polls, so a writer committing batch after batch (a big discovery) would get the lock
    /// back before a waiting health write noticed it was free, past the busy timeout.
    pub(crate) async fn write_turn(
        &self,
        op: &'static str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, StoreError> {
        tokio::time::timeout(WRITE_TURN_WAIT, Arc::clone(&self.turn).lock_owned())
            .await
            .map_err(|_| StoreError::NoTurn {
                path: self.path.clone(),
                op,
            })
    }

    /// Starts a write transaction in this process's turn (keep the guard until it ends),
    /// holding SQLite's write lock from the start (`BEGIN IMMEDIATE`): it waits up to the busy
    /// timeout for another process's writer, and never fails halfway with "database is
    /// locked" because another connection wrote since it read.
    pub(crate) async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<
        (
            sqlx::Transaction<'static, sqlx::Sqlite>,
            tokio::sync::OwnedMutexGuard<()>,
        ),
        StoreError,
    > {
        let turn = self.write_turn(op).await?;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err(op))?;
        Ok((tx, turn))
    }

    /// Waits for in-flight writes, checkpoints the WAL and closes every connection.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}

/// The latest verdict of one node, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatusRow {
    pub node: String,
    pub state: NodeState,
    pub score: u8,
    pub last_check: Option<DateTime<Utc>>,
    pub next_check: Option<DateTime<Utc>>,
    pub checks: Vec<CheckResult>,
    pub gpus: Vec<GpuReading>,
}

/// How the open alerts of a node changed with one sweep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertChanges {
    pub opened: Vec<CoreAlert>,
    /// (key, message) of alerts that no longer hold.
    pub resolved: Vec<(String, String)>,
    /// Every alert open after the sweep.
    pub open: Vec<crate::view::Alert>,
}

impl Store {
    /// Records one sweep: every check result, and the node's latest verdict.
    pub async fn save_sweep(
        &self,
        row: &NodeStatusRow,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = self.save_sweep_tx(row, at).await;
        self.track(r)
    }

    async fn save_sweep_tx(
        &self,
        row: &NodeStatusRow,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (mut tx, _turn) = self.begin_write("begin sweep").await?;
        for c in &row.checks {
            sqlx::query(
                "INSERT INTO check_results (node, ts_ms, name, status, value_json, message, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&row.node)
            .bind(to_ms(at))
            .bind(c.name.as_str())
            .bind(c.outcome.as_str())
            .bind(c.value.as_ref().map(|v| v.to_string()))
            .bind(&c.message)
            .bind(i64::try_from(c.duration_ms).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(self.err("insert check result"))?;
        }
        let checks = serde_json::to_string(&row.checks).unwrap_or_else(|_| "[]".into());
        let gpus = serde_json::to_string(&row.gpus).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO node_status (node, state, score, last_check_ms, next_check_ms, checks_json, gpus_json, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (node) DO UPDATE SET state = ?2, score = ?3, last_check_ms = ?4, next_check_ms = ?5, \
             checks_json = ?6, gpus_json = ?7, updated_ms = ?8",
        )
        .bind(&row.node)
        .bind(row.state.as_str())
        .bind(i64::from(row.score))
        .bind(row.last_check.map(to_ms))
        .bind(row.next_check.map(to_ms))
        .bind(checks)
        .bind(gpus)
        .bind(to_ms(at))
        .execute(&mut *tx)
        .await
        .map_err(self.err("upsert node status"))?;
        tx.commit().await.map_err(self.err("commit sweep"))
    }

    /// The latest stored verdict of every node.
    pub async fn load_node_status(&self) -> Result<Vec<NodeStatusRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT node, state, score, last_check_ms, next_check_ms, checks_json, gpus_json FROM node_status ORDER BY node",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("select node status"))?;
        Ok(rows
            .into_iter()
            .map(|r| NodeStatusRow {
                node: r.get(0),
                state: NodeState::parse(r.get::<&str, _>(1)).unwrap_or(NodeState::Unknown),
                score: u8::try_from(r.get::<i64, _>(2)).unwrap_or(0),
                last_check: r.get::<Option<i64>, _>(3).map(from_ms),
                next_check: r.get::<Option<i64>, _>(4).map(from_ms),
                checks: serde_json::from_str(r.get::<&str, _>(5)).unwrap_or_default(),
                gpus: serde_json::from_str(r.get::<&str, _>(6)).unwrap_or_default(),
            })
            .collect())
    }

    /// Opens the alerts in `current` that are not open yet and resolves the open ones that are
    /// not in `current`.
    pub async fn sync_alerts(
        &self,
        node: &str,
        at: DateTime<Utc>,
        current: &[CoreAlert],
    ) -> Result<AlertChanges, StoreError> {
        let r = self.sync_alerts_tx(node, at, current).await;
        self.track(r)
    }

    async fn sync_alerts_tx(
        &self,
        node: &str,
        at: DateTime<Utc>,
        current: &[CoreAlert],
    ) -> Result<AlertChanges, StoreError> {
        let (mut tx, _turn) = self.begin_write("begin alerts").await?;
        let open: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, message FROM alerts WHERE node = ? AND resolved_ms IS NULL",
        )
        .bind(node)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.err("select alerts"))?;
        let mut changes = AlertChanges::default();
        for (key, message) in &open {
            if !current.iter().any(|a| &a.key == key) {
                sqlx::query("UPDATE alerts SET resolved_ms = ? WHERE node = ? AND key = ? AND resolved_ms IS NULL")
                    .bind(to_ms(at))
                    .bind(node)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("resolve alert"))?;
                changes.resolved.push((key.clone(), message.clone()));
            }
        }
        for a in current {
            if open.iter().any(|(k, _)| k == &a.key) {
                // Still open: keep its start, refresh what it says.
                sqlx::query("UPDATE alerts SET message = ?, severity = ? WHERE node = ? AND key = ? AND resolved_ms IS NULL")
                    .bind(&a.message)
                    .bind(a.severity.as_str())
                    .bind(node)
                    .bind(&a.key)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("update alert"))?;
            } else {
                sqlx::query("INSERT INTO alerts (node, key, severity, message, since_ms) VALUES (?, ?, ?, ?, ?)")
                    .bind(node)
                    .bind(&a.key)
                    .bind(a.severity.as_str())
                    .bind(&a.message)
                    .bind(to_ms(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("open alert"))?;
                changes.opened.push(a.clone());
            }
        }
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT severity, message, since_ms FROM alerts WHERE node = ? AND resolved_ms IS NULL ORDER BY since_ms, id",
        )
        .bind(node)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.err("select open alerts"))?;
        tx.commit().await.map_err(self.err("commit alerts"))?;
        changes.open = rows.into_iter().map(api_alert).collect();
        Ok(changes)
    }

    /// Open alerts of a node, oldest first.
    pub async fn open_alerts(&self, node: &str) -> Result<Vec<crate::view::Alert>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT severity, message, since_ms FROM alerts WHERE node = ? AND resolved_ms IS NULL ORDER BY since_ms, id",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("select open alerts"))?;
        Ok(rows.into_iter().map(api_alert).collect())
    }

    /// Deletes check results and resolved alerts older than `before`.
    pub async fn prune_health(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _turn = self.write_turn("prune health").await?;
        let a = sqlx::query("DELETE FROM check_results WHERE ts_ms < ?")
            .bind(to_ms(before))
            .execute(&self.pool)
            .await
            .map_err(self.err("prune check results"))?;
        let b = sqlx::query("DELETE FROM alerts WHERE resolved_ms IS NOT NULL AND resolved_ms < ?")
            .bind(to_ms(before))
            .execute(&self.pool)
            .await
            .map_err(self.err("prune alerts"))?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    /// Number of stored check results (tests, status).
    pub async fn check_result_count(&self, node: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM check_results WHERE node = ?")
            .bind(node)
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("count check results"))?;
        Ok(n.max(0) as u64)
    }
}

impl Store {
    /// Every stored run, grouped by root.
    pub async fn load_runs(&self) -> Result<Vec<(String, crate::view::RunInfo)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT root, info_json FROM runs ORDER BY root, id")
                .fetch_all(&self.pool)
                .await
                .map_err(self.err("select runs"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(root, json)| serde_json::from_str(&json).ok().map(|i| (root, i)))
            .collect())
    }

    /// Deletes the `gone` runs of a root, stores the given ones (upsert; a run both gone and
    /// changed comes back fresh) and records epoch completion times, in one transaction; then
    /// checkpoints the WAL if the write left it large.
    pub async fn save_runs(
        &self,
        root: &str,
        changed: &[crate::view::RunInfo],
        gone: &[String],
        epochs: &[(String, u32, DateTime<Utc>)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = self.save_runs_tx(root, changed, gone, epochs, at).await;
        let r = self.track(r);
        if r.is_ok() {
            self.settle_wal().await;
        }
        r
    }

    async fn save_runs_tx(
        &self,
        root: &str,
        changed: &[crate::view::RunInfo],
        gone: &[String],
        epochs: &[(String, u32, DateTime<Utc>)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (mut tx, _turn) = self.begin_write("begin runs").await?;
        for id in gone {
            sqlx::query("DELETE FROM runs WHERE root = ? AND id = ?")
                .bind(root)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err("delete run"))?;
            sqlx::query("DELETE FROM run_epochs WHERE root = ? AND id = ?")
                .bind(root)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err("delete run epochs"))?;
        }
        for r in changed {
            let json = serde_json::to_string(r).unwrap_or_else(|_| "{}".into());
            sqlx::query(
                "INSERT INTO runs (root, id, info_json, status, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (root, id) DO UPDATE SET info_json = ?3, status = ?4, updated_ms = ?5",
            )
            .bind(root)
            .bind(&r.id)
            .bind(json)
            .bind(r.status.as_str())
            .bind(to_ms(at))
            .execute(&mut *tx)
            .await
            .map_err(self.err("upsert run"))?;
        }
        for (id, epoch, t) in epochs {
            sqlx::query("INSERT OR IGNORE INTO run_epochs (root, id, epoch, completed_ms) VALUES (?, ?, ?, ?)")
                .bind(root)
                .bind(id)
                .bind(i64::from(*epoch))
                .bind(to_ms(*t))
                .execute(&mut *tx)
                .await
                .map_err(self.err("insert epoch"))?;
        }
        tx.commit().await.map_err(self.err("commit runs"))
    }

    /// Completion time of each recorded epoch of a run.
    pub async fn run_epochs(
        &self,
        root: &str,
        id: &str,
    ) -> Result<Vec<(u32, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT epoch, completed_ms FROM run_epochs WHERE root = ? AND id = ? ORDER BY epoch",
        )
        .bind(root)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("select epochs"))?;
        Ok(rows
            .into_iter()
            .map(|(e, t)| (u32::try_from(e).unwrap_or(0), from_ms(t)))
            .collect())
    }
}

fn api_alert((severity, message, since): (String, String, i64)) -> crate::view::Alert {
    crate::view::Alert {
        severity: Severity::parse(&severity).unwrap_or(Severity::Warning),
        message,
        since: from_ms(since),
    }
}

/// The `store.corrupt` event's text: what the check found, and the way out.
pub fn corrupt_message(path: &Path, problems: &[String]) -> String {
    let p = path.display();
    format!(
        "PRAGMA quick_check found damage in {p}: {}. The daemon keeps running on it, but what sits \
         on the damaged pages cannot be read and writes there fail. Stop the daemon and rebuild \
         the file: `sqlite3 {p} .recover | sqlite3 {p}.recovered`, then move the recovered file \
         in place of {p} (and delete {p}-wal, {p}-shm), or restore the last backup",
        problems.join("; ")
    )
}

/// Gives the database file at `path` mode [`DB_FILE_MODE`] whatever the umask: creates it
/// empty with that mode when missing and `create` (SQLite fills an empty file), and narrows
/// an existing one (a database from an older daemon, created 0644; only warns when it cannot).
fn restrict_file(path: &Path, create: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |op| {
        move |source| StoreError::File {
            path: path.to_path_buf(),
            op,
            cause: source,
        }
    };
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o777 != DB_FILE_MODE => {
            // Not ours to change (another owner): say so, and work with it as it is.
            if let Err(e) =
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(DB_FILE_MODE))
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", m.permissions().mode() & 0o777),
                    error = %e,
                    "cannot make the database file private (chmod 0600)"
                );
            }
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(DB_FILE_MODE)
                .open(path)
                .map_err(fail("create"))?;
            // The umask may have narrowed the mode further (never widened it): set it exactly.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(DB_FILE_MODE))
                .map_err(fail("chmod 0600"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail("stat")(e)),
    }
}

/// Creates `dir` (and parents) with mode 0750 when missing.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_round_trip_filter_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ugro.db");
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        {
            let s = Store::open(&path).await.unwrap();
            for (i, kind) in [
                EventKind::DaemonStarted,
                EventKind::ConfigReloaded,
                EventKind::DaemonStopped,
            ]
            .iter()
            .enumerate()
            {
                let at = t0 + chrono::Duration::minutes(i as i64);
                s.record_event(
                    at,
                    &NewEvent::new(*kind, "daemon", Severity::Info, format!("m{i}")),
                )
                .await
                .unwrap();
            }
            s.close().await;
        }
        let s = Store::open(&path).await.unwrap();
        let all = s
            .events(&EventFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["m0", "m1", "m2"]
        );
        assert!(!all.1);

        let daemon = s
            .events(&EventFilter {
                kind: Some("daemon.".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(daemon.0.len(), 2);

        let recent = s
            .events(&EventFilter {
                since: Some(t0 + chrono::Duration::seconds(30)),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(recent.0.len(), 1);
        assert_eq!(recent.0[0].message, "m2", "limit keeps the newest");
        assert!(recent.1, "truncation is reported");

        assert_eq!(
            s.prune_events(t0 + chrono::Duration::seconds(90))
                .await
                .unwrap(),
            2
        );
        assert_eq!(s.event_counts(t0).await.unwrap(), (1, 1));
    }

    #[tokio::test]
    async fn unclean_previous_session_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        let t = Utc::now();
        let (first, prev) = s.begin_session(t, 1, "0.1.0").await.unwrap();
        assert_eq!(prev, None);
        // no end_session: as if killed
        let (second, prev) = s.begin_session(t, 2, "0.1.0").await.unwrap();
        assert!(prev.is_some());
        s.end_session(second, t).await.unwrap();
        let (_, prev) = s.begin_session(t, 3, "0.1.0").await.unwrap();
        assert_eq!(prev, None, "a clean stop is not reported");
        assert!(second > first);
    }

    /// A small tmpfs of its own (we run as root in CI); unmounted on drop. `None` where mounting
    /// is not allowed (the caller skips, saying so).
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(size: &str) -> Option<Self> {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(Self(dir))
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        /// Writes a filler file until the filesystem is full.
        fn fill(&self) -> PathBuf {
            use std::io::Write;
            let p = self.path().join("filler");
            let mut f = std::fs::File::create(&p).unwrap();
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).is_ok() {}
            p
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    fn epochs(run: &str, n: u32) -> Vec<(String, u32, DateTime<Utc>)> {
        (0..n).map(|e| (run.to_string(), e, Utc::now())).collect()
    }

    #[tokio::test]
    async fn writes_land_again_once_a_full_disk_has_room() {
        let Some(fs) = Tmpfs::mount("4m") else {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        };
        let s = Store::open(&fs.path().join("ugro.db")).await.unwrap();
        s.save_runs("/r", &[], &[], &epochs("warm", 100), Utc::now())
            .await
            .unwrap();
        let filler = fs.fill();
        let mut failed = 0;
        let mut recorded = 0;
        for i in 0..6 {
            if s.save_runs(
                "/r",
                &[],
                &[],
                &epochs(&format!("big{i}"), 20_000),
                Utc::now(),
            )
            .await
            .is_err()
            {
                failed += 1;
            }
            if s.record_event(
                Utc::now(),
                &NewEvent::new(EventKind::DaemonStarted, "t", Severity::Info, "x"),
            )
            .await
            .is_ok()
            {
                recorded += 1;
            }
        }
        assert!(failed > 0, "the full disk made writes fail");
        std::fs::remove_file(filler).unwrap();
        for i in 0..8 {
            s.save_runs(
                "/r",
                &[],
                &[],
                &epochs(&format!("after{i}"), 2_000),
                Utc::now(),
            )
            .await
            .unwrap_or_else(|e| panic!("write {i} after space returned: {e}"));
            s.record_event(
                Utc::now(),
                &NewEvent::new(EventKind::DaemonStopped, "t", Severity::Info, "y"),
            )
            .await
            .unwrap_or_else(|e| panic!("event {i} after space returned: {e}"));
        }
        // What said it was recorded is there, and what was refused was kept and recorded since.
        let mut kinds = Vec::new();
        for _ in 0..100 {
            let (events, _) = s
                .events(&EventFilter {
                    kind: Some(EventKind::DaemonStarted.as_str().into()),
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap();
            kinds = events;
            if kinds.len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(kinds.len(), 6, "{recorded} said recorded during the outage");
        assert_eq!(s.write_status().state, StoreState::Ok);
        s.close().await;
    }

    #[tokio::test]
    async fn an_outbox_message_the_full_disk_refuses_is_an_error_not_a_silent_loss() {
        let Some(fs) = Tmpfs::mount("4m") else {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        };
        let s = Store::open(&fs.path().join("ugro.db")).await.unwrap();
        let msg = crate::outbox::NewOutboxMessage {
            summary_date: None,
            subject: "nightly".into(),
            envelope_from: "ugro@example.org".into(),
            recipients: vec!["ops@example.org".into()],
            message: vec![b'x'; 64 * 1024],
        };
        // The WAL emptied first, so a write needs new blocks.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&s.pool)
            .await
            .unwrap();
        let filler = fs.fill();
        let mut said_stored = 0;
        for _ in 0..5 {
            if s.outbox_enqueue(Utc::now(), &msg).await.is_ok() {
                said_stored += 1;
            }
        }
        std::fs::remove_file(filler).unwrap();
        let stored = s.outbox_pending().await.unwrap();
        assert_eq!(
            stored, said_stored,
            "every message reported stored is in the outbox"
        );
    }

    #[tokio::test]
    async fn events_the_full_disk_refused_are_recorded_later_and_handed_on_with_their_ids() {
        let Some(fs) = Tmpfs::mount("4m") else {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        };
        let s = Store::open(&fs.path().join("ugro.db")).await.unwrap();
        let mut late = s.take_late_events().unwrap();
        assert!(s.take_late_events().is_none(), "one receiver");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&s.pool)
            .await
            .unwrap();
        let filler = fs.fill();
        let big = "x".repeat(64 * 1024);
        let mut refused = Vec::new();
        for i in 0..20 {
            let e = NewEvent::new(
                EventKind::RunDiscovered,
                format!("run{i}"),
                Severity::Info,
                big.clone(),
            );
            if s.record_event(Utc::now(), &e).await.is_err() {
                refused.push(format!("run{i}"));
            }
        }
        assert!(!refused.is_empty(), "the full disk refused some events");
        std::fs::remove_file(filler).unwrap();
        // The next write that lands records the kept ones, oldest first, and hands them on.
        s.record_event(
            Utc::now(),
            &NewEvent::new(EventKind::DaemonStarted, "daemon", Severity::Info, "after"),
        )
        .await
        .unwrap();
        s.write_landed();
        let mut got = Vec::new();
        while got.len() < refused.len() {
            let (id, _, e) = tokio::time::timeout(Duration::from_secs(10), late.recv())
                .await
                .expect("a late event within 10 s")
                .unwrap();
            assert!(id > 0);
            got.push(e.subject);
        }
        assert_eq!(got, refused);
        let (stored, _) = s
            .events(&EventFilter {
                kind: Some(EventKind::RunDiscovered.as_str().into()),
                limit: 100,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 20, "every event is stored once");
    }

    #[tokio::test]
    async fn a_wal_grown_behind_a_reader_is_cut_back_by_the_next_runs_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        let wal = dir.path().join("ugro.db-wal");
        let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        // A reader holding its snapshot keeps every checkpoint from starting the WAL over, as a
        // long read during a big discovery does: the WAL grows past the threshold.
        let mut reader = s.pool.acquire().await.unwrap();
        let mut snapshot = reader.begin().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut *snapshot)
            .await
            .unwrap();
        let big = "x".repeat(256 * 1024);
        let mut i = 0;
        while wal_size() <= CHECKPOINT_WAL_ABOVE + (4 << 20) {
            s.record_event(
                Utc::now(),
                &NewEvent::new(EventKind::DaemonStarted, "t", Severity::Info, &big),
            )
            .await
            .unwrap();
            i += 1;
            assert!(i < 1000, "the WAL never grew: {}", wal_size());
        }
        snapshot.rollback().await.unwrap();
        drop(reader);
        // The reader is gone: the next runs write checkpoints the WAL and cuts it back.
        s.save_runs("/r", &[], &[], &epochs("after", 10), Utc::now())
            .await
            .unwrap();
        assert!(
            wal_size() <= JOURNAL_SIZE_LIMIT,
            "WAL still {} bytes after the write",
            wal_size()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_writes_get_their_turn_between_back_to_back_runs_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        // A big discovery: runs batches one after the other, each holding the write lock.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let discovery = {
            let (s, stop) = (s.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    s.save_runs(
                        "/r",
                        &[],
                        &[],
                        &epochs(&format!("run{n}"), 4000),
                        Utc::now(),
                    )
                    .await
                    .unwrap();
                    n += 1;
                }
                n
            })
        };
        // Meanwhile a node's alerts change at every sweep (read, then write, in one transaction).
        for i in 0..40 {
            let current = [CoreAlert {
                key: format!("k{}", i % 3),
                severity: Severity::Warning,
                message: format!("m{i}"),
            }];
            s.sync_alerts("node1", Utc::now(), &current)
                .await
                .unwrap_or_else(|e| panic!("sweep {i}: {e}"));
            s.record_event(
                Utc::now(),
                &NewEvent::new(EventKind::DaemonStarted, "t", Severity::Info, "e"),
            )
            .await
            .unwrap_or_else(|e| panic!("event {i}: {e}"));
        }
        stop.store(true, Ordering::Relaxed);
        let batches = discovery.await.unwrap();
        assert!(batches > 1, "the writes overlapped ({batches} batches)");
        assert_eq!(s.open_alerts("node1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn database_is_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
