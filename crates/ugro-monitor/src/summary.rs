//! Making a summary: snapshot of runs and nodes, the window's events and samples, ugro-core's
//! rendering, the files under `summary.dir`, and the outbox.
//!
//! The order is chosen so that nothing is lost: the summary (with its snapshot) is first stored
//! in SQLite in one transaction, then the files are written (a failure there is an event, not a
//! lost summary), then the email is queued in the durable outbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ugro_core::event::EventKind;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::Row;
use ugro_api::{EmailStatus, SummaryDoc, SummaryInfo};
use ugro_core::health::Severity;
use ugro_core::sample::{GpuSample, NodeSample};
use ugro_core::summary::{
    EventRecord, NodeSnapshot, ProcessSnapshot, RunSnapshot, Snapshot, SummaryInput,
};

use crate::outbox::OutboxHost;
use crate::store::{NewEvent, Store, StoreError, from_ms, to_ms};

/// The window of the very first summary (there is no previous one to start from).
pub const FIRST_WINDOW: TimeDelta = TimeDelta::hours(24);
/// At most this many events of a window are read (the newest); the Key Events section shows far
/// fewer and says how many it left out.
pub const MAX_WINDOW_EVENTS: u32 = 20_000;
/// Event kinds too frequent and too dull for a summary; left out of the window's events.
const NOISY_KINDS: [EventKind; 2] = [EventKind::RunEpochCompleted, EventKind::RunDiscovered];

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no summary for {0}")]
    NotFound(NaiveDate),
    #[error("email is disabled in {0} ([email] enabled = false): set it up, reload, and try again")]
    EmailDisabled(PathBuf),
    #[error("cannot build the summary email: {0}")]
    Mail(String),
    #[error("cannot queue the summary email: {0}")]
    Queue(String),
    #[error("making the summary failed: {0}")]
    Task(String),
}

/// Serialises summary making (the schedule and requests never run two at once).
#[derive(Debug, Default)]
pub struct Summaries {
    lock: tokio::sync::Mutex<()>,
}

impl Summaries {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Why a summary is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The nightly schedule, for `date` (at most one per date; always emailed when email is on).
    Schedule { date: NaiveDate },
    /// A request (`ugroctl summary`); dated today in `summary.timezone`.
    Request { send: bool },
}

/// A stored summary row.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub id: i64,
    pub date: NaiveDate,
    pub scheduled: bool,
    pub made_at: DateTime<Utc>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub snapshot_id: Option<i64>,
    pub subject: String,
    pub markdown: String,
    pub html: String,
    pub chart_png: Option<Vec<u8>>,
}

/// The files of one summary under `summary.dir`.
pub fn file_paths(dir: &Path, date: NaiveDate) -> (PathBuf, PathBuf, PathBuf) {
    let d = date.format("%Y-%m-%d");
    (
        dir.join(format!("{d}_summary.md")),
        dir.join(format!("{d}_summary.html")),
        dir.join(format!("{d}_gpu.png")),
    )
}

/// The JSON export of a snapshot: `<dir>/snapshots/YYYY-MM-DD_HHMMSS.json` (local time).
pub fn snapshot_path(dir: &Path, taken_at: DateTime<Utc>, tz: Tz) -> PathBuf {
    dir.join("snapshots").join(format!(
        "{}.json",
        taken_at.with_timezone(&tz).format("%Y-%m-%d_%H%M%S")
    ))
}

/// The current state of every run and node, from the daemon's live views.
pub async fn snapshot_of(
    store: &Store,
    runs: Vec<crate::view::RunInfo>,
    nodes: Vec<crate::view::NodeHealth>,
    now: DateTime<Utc>,
    with_epochs: bool,
) -> Result<Snapshot, StoreError> {
    let firsts = store.first_epoch_times().await?;
    let mut all_epochs = if with_epochs {
        store.all_epoch_times().await?
    } else {
        HashMap::new()
    };
    let runs = runs
        .into_iter()
        .map(|r| {
            let key = (r.root.clone(), r.id.clone());
            let first = firsts.get(&key).copied();
            let proc_start = r.process.as_ref().and_then(|p| p.start_time);
            let started_at = match (first, proc_start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            RunSnapshot {
                runner: r.runner,
                status: r.status,
                completed_epochs: r.progress.completed_epochs,
                total_epochs: r.progress.total_epochs,
                percentage: r.progress.percentage,
                early_stopped: r.progress.early_stopped,
                eta_seconds: r.progress.eta_seconds,
                started_at,
                last_update: r.last_log_update.max(r.last_artifact_update),
                epoch_times: all_epochs.remove(&key).unwrap_or_default(),
                error: r.error.clone(),
                process: r.process.as_ref().map(|p| ProcessSnapshot {
                    node: p.node.clone(),
                    pid: p.pid,
                    user: Some(p.user.clone()).filter(|u| !u.is_empty()),
                }),
                id: r.id,
                root: r.root,
            }
        })
        .collect();
    let nodes = nodes
        .into_iter()
        .map(|n| NodeSnapshot {
            gpus: u32::try_from(n.gpus.len()).unwrap_or(u32::MAX),
            alerts: n.alerts.iter().map(|a| a.message.clone()).collect(),
            state: n.state,
            score: n.score,
            name: n.name,
        })
        .collect();
    Ok(Snapshot {
        taken_at: now,
        runs,
        nodes,
        queued: Vec::new(),
    })
}

/// The live views a summary is made from.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub runs: Vec<crate::view::RunInfo>,
    pub nodes: Vec<crate::view::NodeHealth>,
    /// Slurm jobs pending longer than `slurm.queued_after` (none without Slurm).
    pub queued: Vec<ugro_core::slurm::QueuedJob>,
}

/// What making a summary needs from the daemon beyond the outbox's host: the lock that keeps
/// makers one at a time, the live state a summary reads, and a word when one is made. The
/// daemon's `Shared` implements it.
pub trait SummaryHost: OutboxHost {
    /// The summary makers' shared state (its lock).
    fn summaries(&self) -> &Summaries;
    /// The runs, node reports and long-queued Slurm jobs (those pending longer than
    /// `slurm.queued_after`) as they are now.
    fn live(&self, now: DateTime<Utc>) -> Live;
    /// A summary was made and stored: live views may show it.
    fn summary_made(&self, info: &SummaryInfo);
}

/// Makes a summary now. See the module docs for the order of the steps.
pub async fn make(
    host: &impl SummaryHost,
    now: DateTime<Utc>,
    trigger: Trigger,
) -> Result<SummaryDoc, SummaryError> {
    let cfg = host.config();
    let send = match trigger {
        Trigger::Schedule { .. } => cfg.email.enabled,
        Trigger::Request { send } => send,
    };
    if send && !cfg.email.enabled {
        return Err(SummaryError::EmailDisabled(cfg.path.clone()));
    }
    let _guard = host.summaries().lock.lock().await;
    let tz = cfg.summary.timezone;
    let date = match trigger {
        Trigger::Schedule { date } => date,
        Trigger::Request { .. } => now.with_timezone(&tz).date_naive(),
    };
    let scheduled = matches!(trigger, Trigger::Schedule { .. });
    if scheduled && let Some(row) = host.store().scheduled_summary(date).await? {
        // Never two for one date: a race with a restart or a second trigger ends here.
        return Ok(host.store().doc(row, &cfg.summary.dir).await?);
    }

    let store = host.store();
    let composed = compose(store, &cfg.summary, host.live(now), now, date, scheduled).await?;
    let Composed {
        id,
        rendered,
        snapshot_json,
        ..
    } = composed;
    let Some(id) = id else {
        // The unique index saw a scheduled summary of this date appear meanwhile.
        let row = store
            .scheduled_summary(date)
            .await?
            .ok_or(SummaryError::NotFound(date))?;
        return Ok(store.doc(row, &cfg.summary.dir).await?);
    };

    // Files: a failure is reported, never fatal (the summary is in the database).
    let dir = cfg.summary.dir.clone();
    let files = {
        let dir = dir.clone();
        let snap_path = snapshot_path(&dir, now, tz);
        let rendered = rendered.clone();
        tokio::task::spawn_blocking(move || {
            write_files(&dir, date, &rendered, &snap_path, &snapshot_json)
        })
        .await
        .map_err(|e| SummaryError::Task(e.to_string()))?
    };
    if let Err((path, e)) = &files {
        host
            .event(NewEvent::new(
                EventKind::SummaryWriteFailed,
                "summary",
                Severity::Critical,
                format!(
                    "cannot write summary file {}: {e}; the summary of {date} is kept in the database (`ugroctl summary --date {date}`)",
                    path.display()
                ),
            ))
            .await;
    }

    let mut queued = None;
    if send {
        let email = crate::mail::Email {
            subject: rendered.subject.clone(),
            text: rendered.markdown.clone(),
            html: rendered.html_email.clone(),
            chart_png: rendered.chart.clone(),
        };
        let message = crate::mail::build_message(&cfg.email, &email, now)
            .map_err(|e| SummaryError::Mail(e.to_string()))?;
        let id = crate::outbox::enqueue(host, Some(date), message)
            .await
            .map_err(|e| SummaryError::Queue(e.to_string()))?;
        queued = Some(id);
    }
    host.event(NewEvent::new(
        EventKind::SummaryMade,
        "summary",
        Severity::Info,
        format!(
            "{} summary of {date} made ({}){}",
            if scheduled { "nightly" } else { "requested" },
            rendered.subject,
            if queued.is_some() {
                "; email queued"
            } else {
                ""
            }
        ),
    ))
    .await;

    let row = store
        .summary_by_id(id)
        .await?
        .ok_or(SummaryError::NotFound(date))?;
    let doc = store.doc(row, &dir).await?;
    host.summary_made(&doc.info);
    Ok(doc)
}

/// What [`compose`] made.
#[derive(Debug)]
pub struct Composed {
    /// The stored summary's id; None when a scheduled summary of the date existed already.
    pub id: Option<i64>,
    pub window_start: DateTime<Utc>,
    pub rendered: Rendered,
    pub snapshot_json: String,
}

/// Snapshot, window, events, samples, rendering and the database rows of one summary: all of
/// [`make`] but the files, the email and the events.
pub async fn compose(
    store: &Store,
    cfg: &crate::config::SummaryConfig,
    live: Live,
    now: DateTime<Utc>,
    date: NaiveDate,
    scheduled: bool,
) -> Result<Composed, SummaryError> {
    let tz = cfg.timezone;
    let last = store.last_scheduled_summary().await?;
    let window_start = last
        .as_ref()
        .map(|l| l.window_end)
        .unwrap_or(now - FIRST_WINDOW)
        .min(now);
    let previous = match last.as_ref().and_then(|l| l.snapshot_id) {
        Some(id) => store.load_snapshot(id).await?,
        None => None,
    };
    let Live {
        runs,
        nodes,
        queued,
    } = live;
    let mut current = snapshot_of(store, runs, nodes, now, previous.is_none()).await?;
    current.queued = queued;
    let events = store.window_events(window_start, now).await?;
    let (gpu_samples, node_samples) = store.samples_between(window_start, now).await?;

    let (interval, long_running) = (cfg.metrics_interval, cfg.long_running);
    let (rendered, current) = tokio::task::spawn_blocking(move || {
        (
            render(
                date,
                tz,
                window_start,
                now,
                &current,
                previous.as_ref(),
                &events,
                &gpu_samples,
                &node_samples,
                interval,
                long_running,
            ),
            current,
        )
    })
    .await
    .map_err(|e| SummaryError::Task(e.to_string()))?;

    let snapshot_json =
        serde_json::to_string(&current).map_err(|e| SummaryError::Task(e.to_string()))?;
    let row = SummaryRow {
        id: 0,
        date,
        scheduled,
        made_at: now,
        window_start,
        window_end: now,
        snapshot_id: None,
        subject: rendered.subject.clone(),
        markdown: rendered.markdown.clone(),
        html: rendered.html_email.clone(),
        chart_png: rendered.chart.clone(),
    };
    let id = store.save_summary(&row, &snapshot_json).await?;
    Ok(Composed {
        id,
        window_start,
        rendered,
        snapshot_json,
    })
}

/// Queues the email of the stored summary of `date` again (e.g. after fixing the mail setup).
pub async fn resend(host: &impl SummaryHost, date: NaiveDate) -> Result<SummaryDoc, SummaryError> {
    let cfg = host.config();
    if !cfg.email.enabled {
        return Err(SummaryError::EmailDisabled(cfg.path.clone()));
    }
    let row = host
        .store()
        .summary_by_date(date)
        .await?
        .ok_or(SummaryError::NotFound(date))?;
    let email = crate::mail::Email {
        subject: row.subject.clone(),
        text: row.markdown.clone(),
        html: row.html.clone(),
        chart_png: row.chart_png.clone(),
    };
    let message = crate::mail::build_message(&cfg.email, &email, Utc::now())
        .map_err(|e| SummaryError::Mail(e.to_string()))?;
    crate::outbox::enqueue(host, Some(date), message)
        .await
        .map_err(|e| SummaryError::Queue(e.to_string()))?;
    Ok(host.store().doc(row, &cfg.summary.dir).await?)
}

/// What [`render`] produces.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub markdown: String,
    /// HTML referring to the chart as `cid:` (for the email).
    pub html_email: String,
    /// HTML referring to the chart file beside it (for `summary.dir`).
    pub html_file: String,
    pub chart: Option<Vec<u8>>,
}

/// The pure part of making a summary: ugro-core's content and rendering plus the chart.
#[allow(clippy::too_many_arguments)]
pub fn render(
    date: NaiveDate,
    tz: Tz,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    current: &Snapshot,
    previous: Option<&Snapshot>,
    events: &[EventRecord],
    gpu_samples: &[GpuSample],
    node_samples: &[NodeSample],
    sample_interval: Duration,
    long_running: Duration,
) -> Rendered {
    let input = SummaryInput {
        date,
        tz,
        window_start,
        window_end,
        current,
        previous,
        events,
        gpu_samples,
        node_samples,
        sample_interval,
        long_running,
    };
    let summary = ugro_core::summary::build(&input);
    let markdown = ugro_core::summary::render_markdown(&summary);
    let subject = ugro_core::summary::subject(&summary);
    let series = crate::chart::series_from_samples(gpu_samples, sample_interval);
    let chart = match crate::chart::gpu_utilisation_png(&crate::chart::ChartInput {
        title: format!("GPU utilisation per node, {date} ({})", tz.name()),
        tz,
        window_start,
        window_end,
        series: &series,
    }) {
        Ok(png) => Some(png),
        Err(e) => {
            tracing::warn!(error = %e, "the GPU chart could not be drawn; the summary goes without it");
            None
        }
    };
    let cid = crate::mail::CHART_CID;
    let html_email = ugro_core::summary::render_html(&summary, chart.as_ref().map(|_| cid));
    let (_, _, png_path) = file_paths(Path::new(""), date);
    let html_file = html_email.replace(&format!("cid:{cid}"), &png_path.display().to_string());
    Rendered {
        subject,
        markdown,
        html_email,
        html_file,
        chart,
    }
}

fn write_files(
    dir: &Path,
    date: NaiveDate,
    r: &Rendered,
    snapshot_path: &Path,
    snapshot_json: &str,
) -> Result<(), (PathBuf, std::io::Error)> {
    let (md, html, png) = file_paths(dir, date);
    let mut jobs: Vec<(&Path, &[u8])> = vec![
        (snapshot_path, snapshot_json.as_bytes()),
        (&md, r.markdown.as_bytes()),
        (&html, r.html_file.as_bytes()),
    ];
    if let Some(c) = &r.chart {
        jobs.push((&png, c));
    }
    for (path, bytes) in jobs {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| (parent.to_path_buf(), e))?;
        }
        crate::files::write_atomic(path, bytes).map_err(|e| (path.to_path_buf(), e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Storage

fn date_of(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
}

/// `SELECT <every column of a summary row> FROM summaries <tail>`, as one static string.
macro_rules! select_summaries {
    ($tail:literal) => {
        concat!(
            "SELECT id, date, scheduled, made_ms, window_start_ms, window_end_ms, snapshot_id, \
             subject, markdown, html, chart_png FROM summaries ",
            $tail
        )
    };
}

fn summary_row(r: &sqlx::sqlite::SqliteRow) -> SummaryRow {
    SummaryRow {
        id: r.get("id"),
        date: date_of(r.get("date")),
        scheduled: r.get::<i64, _>("scheduled") != 0,
        made_at: from_ms(r.get("made_ms")),
        window_start: from_ms(r.get("window_start_ms")),
        window_end: from_ms(r.get("window_end_ms")),
        snapshot_id: r.get("snapshot_id"),
        subject: r.get("subject"),
        markdown: r.get("markdown"),
        html: r.get("html"),
        chart_png: r.get("chart_png"),
    }
}

impl Store {
    /// The newest scheduled summary (whose end starts the next window).
    pub async fn last_scheduled_summary(&self) -> Result<Option<SummaryRow>, StoreError> {
        let r = sqlx::query(select_summaries!(
            "WHERE scheduled = 1 ORDER BY window_end_ms DESC, id DESC LIMIT 1"
        ))
        .fetch_optional(self.pool())
        .await
        .map_err(self.err("select last summary"))?;
        Ok(r.as_ref().map(summary_row))
    }

    /// The newest date with a scheduled summary.
    pub async fn last_scheduled_date(&self) -> Result<Option<NaiveDate>, StoreError> {
        let r: Option<String> =
            sqlx::query_scalar("SELECT MAX(date) FROM summaries WHERE scheduled = 1")
                .fetch_one(self.pool())
                .await
                .map_err(self.err("select last summary date"))?;
        Ok(r.as_deref().map(date_of))
    }

    pub async fn scheduled_summary(
        &self,
        date: NaiveDate,
    ) -> Result<Option<SummaryRow>, StoreError> {
        let r = sqlx::query(select_summaries!("WHERE scheduled = 1 AND date = ?1"))
            .bind(date.format("%Y-%m-%d").to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(self.err("select summary"))?;
        Ok(r.as_ref().map(summary_row))
    }

    /// The summary of `date`: the nightly one if there is one, else the newest requested one.
    pub async fn summary_by_date(&self, date: NaiveDate) -> Result<Option<SummaryRow>, StoreError> {
        let r = sqlx::query(select_summaries!(
            "WHERE date = ?1 ORDER BY scheduled DESC, made_ms DESC, id DESC LIMIT 1"
        ))
        .bind(date.format("%Y-%m-%d").to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(self.err("select summary"))?;
        Ok(r.as_ref().map(summary_row))
    }

    pub async fn summary_by_id(&self, id: i64) -> Result<Option<SummaryRow>, StoreError> {
        let r = sqlx::query(select_summaries!("WHERE id = ?1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(self.err("select summary"))?;
        Ok(r.as_ref().map(summary_row))
    }

    /// Summaries newest first, without bodies.
    pub async fn list_summaries(&self, limit: u32) -> Result<Vec<SummaryRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, date, scheduled, made_ms, window_start_ms, window_end_ms, snapshot_id, subject, '' AS markdown, '' AS html, NULL AS chart_png \
             FROM summaries ORDER BY date DESC, made_ms DESC, id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(self.err("list summaries"))?;
        Ok(rows.iter().map(summary_row).collect())
    }

    /// Stores the snapshot and the summary in one transaction. `None` when a scheduled summary
    /// of the same date exists already (nothing is written then).
    pub async fn save_summary(
        &self,
        row: &SummaryRow,
        snapshot_json: &str,
    ) -> Result<Option<i64>, StoreError> {
        let (mut tx, _turn) = self.begin_write("store summary").await?;
        let snap: i64 = sqlx::query_scalar(
            "INSERT INTO snapshots (taken_ms, scheduled, body) VALUES (?1, ?2, ?3) RETURNING id",
        )
        .bind(to_ms(row.made_at))
        .bind(i64::from(row.scheduled))
        .bind(snapshot_json)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.err("insert snapshot"))?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO summaries (date, scheduled, made_ms, window_start_ms, window_end_ms, snapshot_id, subject, markdown, html, chart_png) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(row.date.format("%Y-%m-%d").to_string())
        .bind(i64::from(row.scheduled))
        .bind(to_ms(row.made_at))
        .bind(to_ms(row.window_start))
        .bind(to_ms(row.window_end))
        .bind(snap)
        .bind(&row.subject)
        .bind(&row.markdown)
        .bind(&row.html)
        .bind(row.chart_png.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.err("insert summary"))?;
        if inserted.is_none() {
            tx.rollback().await.map_err(self.err("rollback"))?;
            return Ok(None);
        }
        tx.commit().await.map_err(self.err("commit summary"))?;
        Ok(inserted)
    }

    pub async fn load_snapshot(&self, id: i64) -> Result<Option<Snapshot>, StoreError> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM snapshots WHERE id = ?1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(self.err("select snapshot"))?;
        Ok(body.and_then(|b| match serde_json::from_str(&b) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(snapshot = id, error = %e, "stored snapshot unreadable; summarising without a previous one");
                None
            }
        }))
    }

    /// The window's events, oldest first, without the noisy kinds.
    pub async fn window_events(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts_ms, kind, subject, severity, message FROM events \
             WHERE ts_ms > ?1 AND ts_ms <= ?2 AND kind NOT IN (?3, ?4) \
             ORDER BY ts_ms DESC, id DESC LIMIT ?5",
        )
        .bind(to_ms(start))
        .bind(to_ms(end))
        .bind(NOISY_KINDS[0].as_str())
        .bind(NOISY_KINDS[1].as_str())
        .bind(i64::from(MAX_WINDOW_EVENTS))
        .fetch_all(self.pool())
        .await
        .map_err(self.err("select window events"))?;
        let mut out: Vec<EventRecord> = rows
            .iter()
            .map(|r| EventRecord {
                at: from_ms(r.get(0)),
                kind: r.get(1),
                subject: r.get(2),
                severity: Severity::parse(r.get::<&str, _>(3)).unwrap_or(Severity::Info),
                message: r.get(4),
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// When each run's first epoch completed, by (root, id).
    pub async fn first_epoch_times(
        &self,
    ) -> Result<HashMap<(String, String), DateTime<Utc>>, StoreError> {
        let rows =
            sqlx::query("SELECT root, id, MIN(completed_ms) FROM run_epochs GROUP BY root, id")
                .fetch_all(self.pool())
                .await
                .map_err(self.err("select first epochs"))?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), from_ms(r.get(2))))
            .collect())
    }

    /// Every run's epoch completion times (index = epoch, contiguous from 0), for the first
    /// summary, which has no previous snapshot to diff against.
    pub async fn all_epoch_times(
        &self,
    ) -> Result<HashMap<(String, String), Vec<DateTime<Utc>>>, StoreError> {
        let rows = sqlx::query(
            "SELECT root, id, epoch, completed_ms FROM run_epochs ORDER BY root, id, epoch",
        )
        .fetch_all(self.pool())
        .await
        .map_err(self.err("select epochs"))?;
        let mut out: HashMap<(String, String), Vec<DateTime<Utc>>> = HashMap::new();
        for r in &rows {
            let v = out.entry((r.get(0), r.get(1))).or_default();
            // Only a contiguous prefix keeps "index = epoch" true.
            if r.get::<i64, _>(2) == v.len() as i64 {
                v.push(from_ms(r.get(3)));
            }
        }
        Ok(out)
    }

    /// When this installation's first daemon started (catch-up never reaches before it).
    pub async fn first_start(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r: Option<i64> = sqlx::query_scalar("SELECT MIN(started_ms) FROM daemon_sessions")
            .fetch_one(self.pool())
            .await
            .map_err(self.err("select first start"))?;
        Ok(r.map(from_ms))
    }

    /// When job `name` last ran.
    pub async fn job_last(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r: Option<i64> = sqlx::query_scalar("SELECT last_ms FROM jobs WHERE name = ?1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(self.err("select job"))?;
        Ok(r.map(from_ms))
    }

    pub async fn job_done(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (name, last_ms) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET last_ms = excluded.last_ms",
        )
        .bind(name)
        .bind(to_ms(at))
        .execute(self.pool())
        .await
        .map_err(self.err("update job"))?;
        Ok(())
    }

    /// Deletes summaries made before `before` and snapshots taken before it that no kept
    /// summary refers to. Returns (summaries, snapshots) deleted.
    pub async fn prune_summaries(&self, before: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let s = sqlx::query("DELETE FROM summaries WHERE made_ms < ?1")
            .bind(to_ms(before))
            .execute(self.pool())
            .await
            .map_err(self.err("prune summaries"))?
            .rows_affected();
        let n = sqlx::query(
            "DELETE FROM snapshots WHERE taken_ms < ?1 \
             AND id NOT IN (SELECT snapshot_id FROM summaries WHERE snapshot_id IS NOT NULL)",
        )
        .bind(to_ms(before))
        .execute(self.pool())
        .await
        .map_err(self.err("prune snapshots"))?
        .rows_affected();
        Ok((s, n))
    }

    /// The newest email queued for the summary of `date` (outbox table, read only).
    pub async fn email_status(&self, date: NaiveDate) -> Result<Option<EmailStatus>, StoreError> {
        let r = sqlx::query(
            "SELECT state, attempts, last_error, next_attempt_ms, done_ms FROM outbox \
             WHERE summary_date = ?1 ORDER BY id DESC LIMIT 1",
        )
        .bind(date.format("%Y-%m-%d").to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(self.err("select email status"))?;
        Ok(r.map(|r| {
            let state: String = r.get(0);
            let pending = state == "pending";
            EmailStatus {
                state,
                attempts: u32::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                last_error: r.get(2),
                next_attempt: pending.then(|| from_ms(r.get(3))),
                done_at: r.get::<Option<i64>, _>(4).map(from_ms),
            }
        }))
    }

    /// The API view of a stored summary.
    pub async fn doc(&self, row: SummaryRow, dir: &Path) -> Result<SummaryDoc, StoreError> {
        let info = self.info(&row, dir).await?;
        Ok(SummaryDoc {
            info,
            markdown: row.markdown,
            html: row.html,
        })
    }

    pub async fn info(&self, row: &SummaryRow, dir: &Path) -> Result<SummaryInfo, StoreError> {
        let (md, _, _) = file_paths(dir, row.date);
        let email = self.email_status(row.date).await?;
        Ok(SummaryInfo {
            date: row.date,
            scheduled: row.scheduled,
            made_at: row.made_at,
            window_start: row.window_start,
            window_end: row.window_end,
            subject: row.subject.clone(),
            file: md.is_file().then(|| md.display().to_string()),
            email,
        })
    }
}
