//! JSON bodies of the `/v1` control API (see docs/ARCHITECTURE.md "Contracts"). Fields may be added;
//! renaming or removing one needs a [`crate::PROTOCOL_VERSION`] bump.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ugro_core::health::{CheckName, CheckResult, NodeState, Outcome, Severity};
pub use ugro_core::parse::GpuReading;

/// Error envelope: every non-2xx answer is `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `forbidden`, `not_found`, `invalid_config`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Further lines (e.g. every config problem as `file:line:col: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: u64,
    pub config_path: String,
    pub config_loaded_at: DateTime<Utc>,
    pub database_path: String,
    pub socket_path: String,
    pub counts: Counts,
    /// Background tasks and whether each reported in time (what the systemd watchdog sees).
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    /// Whether the database takes the daemon's writes (an older daemon omits it: `ok`).
    #[serde(default)]
    pub store: StoreStatus,
}

/// How the database takes writes: `degraded` while writes fail (a full or read-only disk) or
/// wait to be redone, or when the start-up integrity check found damage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreStatus {
    pub state: StoreState,
    /// The newest write error while degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Since when writes fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Rows held in memory that are still to be stored (redone once the database takes them).
    #[serde(default)]
    pub pending_writes: u64,
    /// What `PRAGMA quick_check` found at start, when it found damage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreState {
    #[default]
    Ok,
    Degraded,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub nodes: u64,
    pub roots: u64,
    pub events: u64,
    pub events_24h: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskStatus {
    pub name: String,
    pub alive: bool,
    /// Seconds since the task last reported.
    pub last_beat_seconds_ago: u64,
}

/// One significant happening, as stored in the events table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: i64,
    pub time: DateTime<Utc>,
    /// Dotted kind, e.g. `daemon.started`, `config.reload_rejected`, `node.state_changed`.
    pub kind: String,
    /// What it is about: `daemon`, a node name, a run id.
    pub subject: String,
    pub severity: Severity,
    pub message: String,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Events {
    pub events: Vec<Event>,
    /// True when more events matched than `limit` allowed; the newest are returned.
    #[serde(default)]
    pub truncated: bool,
}

/// `POST /v1/reload` on success.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadResult {
    pub config_path: String,
    /// Settings that changed but only take effect after a restart.
    #[serde(default)]
    pub needs_restart: Vec<String>,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Nodes {
    pub nodes: Vec<NodeHealth>,
}

/// One node's health (`GET /v1/nodes/{name}`, and `POST /v1/nodes/{name}/check`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeHealth {
    pub name: String,
    /// "local" or `host:port`.
    pub host: String,
    /// The confirmed state (changes only after two sweeps agree).
    pub state: NodeState,
    pub healthy: bool,
    /// What the last sweep alone says; differs from `state` while a change awaits confirmation.
    #[serde(default = "unknown_state")]
    pub observed: NodeState,
    pub score: u8,
    pub last_check: Option<DateTime<Utc>>,
    pub next_check: Option<DateTime<Utc>>,
    pub checks: Vec<CheckResult>,
    pub alerts: Vec<Alert>,
    /// Per-GPU readings of the last successful GPU probe.
    #[serde(default)]
    pub gpus: Vec<GpuReading>,
    /// Current (un-jittered) interval between sweeps, in seconds.
    #[serde(default)]
    pub interval_seconds: u64,
    /// When set, the state shown was restored from the database and no sweep has run since
    /// this daemon started.
    #[serde(default)]
    pub restored: bool,
}

fn unknown_state() -> NodeState {
    NodeState::Unknown
}

/// An open alert of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alert {
    pub severity: Severity,
    pub message: String,
    pub since: DateTime<Utc>,
}

pub use ugro_core::runs::{Progress, RunStatus, RunnerKind};

/// `GET /v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Runs {
    pub runs: Vec<RunInfo>,
}

/// One run (docs/ARCHITECTURE.md "Contracts" → `runs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Path of the run dir relative to its root.
    pub id: String,
    pub root: String,
    /// Absolute.
    pub work_dir: String,
    pub runner: RunnerKind,
    pub status: RunStatus,
    pub progress: Progress,
    pub last_log_update: Option<DateTime<Utc>>,
    pub last_artifact_update: Option<DateTime<Utc>>,
    pub process: Option<RunProcess>,
    /// Why the run failed or is stuck, from its log (≤ 1000 chars).
    pub error: Option<String>,
    /// Why the runner kind could not be told (files found, patterns expected).
    pub diagnostic: Option<String>,
    /// The log lines the error was read from.
    #[serde(default)]
    pub error_excerpt: Option<String>,
    /// The newest log of the run's pattern.
    #[serde(default)]
    pub log: Option<String>,
    /// Completion time of each epoch (only in `GET /v1/runs/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<EpochTime>,
    /// Served from the database; the disk has not been re-read since the daemon started.
    #[serde(default)]
    pub restored: bool,
    /// Its root is missing (gone, moved away or unmounted): this is the last state seen, not
    /// re-read and not re-judged until the root is back. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochTime {
    pub epoch: u32,
    pub completed_at: DateTime<Utc>,
}

/// The process a run belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunProcess {
    pub node: String,
    pub pid: u32,
    pub user: String,
    pub cmd: String,
    pub start_time: Option<DateTime<Utc>>,
    /// The GPUs the run's processes on this node compute on (NVML or
    /// `nvidia-smi --query-compute-apps`); empty when none or unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<RunGpu>,
}

/// One GPU a run's process computes on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunGpu {
    pub uuid: String,
    /// The GPU's index on its node, when the node's GPU readings name it.
    pub index: Option<u32>,
    /// The process on that GPU.
    pub pid: u32,
    pub used_memory_mib: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Summaries

/// `POST /v1/summary`: make a summary now (window: since the last nightly one), optionally
/// email it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SummaryRequest {
    #[serde(default)]
    pub send: bool,
}

/// Where a summary's email stands in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmailStatus {
    /// `pending`, `delivered` or `given_up`.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
}

/// One summary, without its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SummaryInfo {
    /// `YYYY-MM-DD` in `summary.timezone`.
    pub date: chrono::NaiveDate,
    /// Made by the nightly schedule (one per date) rather than on request.
    pub scheduled: bool,
    pub made_at: DateTime<Utc>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub subject: String,
    /// The Markdown file under `summary.dir` (null when it could not be written).
    pub file: Option<String>,
    /// The newest email of this date, if one was queued.
    pub email: Option<EmailStatus>,
}

/// `GET /v1/summaries`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summaries {
    pub summaries: Vec<SummaryInfo>,
}

/// `GET /v1/summaries/{date}` and the answer to `POST /v1/summary`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SummaryDoc {
    #[serde(flatten)]
    pub info: SummaryInfo,
    pub markdown: String,
    pub html: String,
}
