//! JSON bodies of the `/v1` control API (see docs/ARCHITECTURE.md "Contracts"). Fields may be added;
//! renaming or removing one needs a [`crate::PROTOCOL_VERSION`] bump.
//!
//! Every type that crosses the socket is defined here, not borrowed from ugro-core: the daemon
//! converts its own types into these when it answers (ugro-monitor `view.rs`), so renaming a
//! field of the daemon's types cannot change the protocol. `tests/wire_json.rs` pins the JSON
//! of every `/v1` answer.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Declares a unit enum spoken on the wire as lowercase words, with `ALL`, `as_str`, `parse` and
/// `Display`.
macro_rules! wire_words {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The word used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }

            /// Parses the JSON word.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($word => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_words! {
    /// How bad an event or an alert is.
    pub enum Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

wire_words! {
    /// The state of a node.
    pub enum NodeState {
        Healthy = "healthy",
        Degraded = "degraded",
        Unhealthy = "unhealthy",
        /// ssh failed or hung.
        Unreachable = "unreachable",
        /// Never checked, or no check was applicable.
        Unknown = "unknown",
    }
}

impl NodeState {
    pub fn is_healthy(self) -> bool {
        self == NodeState::Healthy
    }
}

wire_words! {
    /// One kind of health check.
    pub enum CheckName {
        Ssh = "ssh",
        Latency = "latency",
        Gpu = "gpu",
        Pytorch = "pytorch",
        Disk = "disk",
        Memory = "memory",
        Load = "load",
    }
}

wire_words! {
    /// What became of one check in one sweep.
    pub enum Outcome {
        Pass = "pass",
        Fail = "fail",
        /// Not applicable to this node; not counted in the score.
        Skipped = "skipped",
        /// The probe did not answer by its deadline.
        Hung = "hung",
    }
}

/// The result of one check in the last sweep (`checks` of a node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: CheckName,
    /// `true` for pass, `false` for fail and hung, `null` for skipped.
    pub passed: Option<bool>,
    pub status: Outcome,
    /// What was measured (a number, or an object for checks with several readings).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// What it was compared against.
    #[serde(default)]
    pub threshold: Option<serde_json::Value>,
    /// One short human line, e.g. "median 180 ms > 100 ms".
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub duration_ms: u64,
    /// A failure that is only a warning (a busy node's load). Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

impl CheckResult {
    /// A failure that is only a warning.
    pub fn is_warning(&self) -> bool {
        self.warning && self.status == Outcome::Fail
    }
}

/// One GPU as its node's last GPU probe read it. Fields the GPU does not support are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub temperature_c: Option<f64>,
    pub utilization_pct: Option<f64>,
    pub memory_used_mib: Option<f64>,
    pub memory_total_mib: Option<f64>,
    pub power_w: Option<f64>,
    pub ecc_uncorrected: Option<u64>,
}

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

wire_words! {
    /// What wrote a run directory.
    pub enum RunnerKind {
        Trainer = "trainer",
        Evaluator = "evaluator",
        Generic = "generic",
        Unknown = "unknown",
    }
}

wire_words! {
    /// A run's status (docs/run-layouts.md "Status").
    pub enum RunStatus {
        Running = "running",
        Finished = "finished",
        Stuck = "stuck",
        Failed = "failed",
        Outdated = "outdated",
        Unknown = "unknown",
    }
}

/// Scores by flattened key (`"metrics.accuracy"`).
pub type Scores = BTreeMap<String, f64>;

/// A run's progress. For generic runs the unit of `completed_epochs`/`total_epochs`/
/// `rate_per_hour` is whatever the run counts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Progress {
    pub completed_epochs: u32,
    pub total_epochs: Option<u32>,
    /// 0–100.
    pub percentage: f64,
    pub early_stopped: bool,
    pub early_stopped_at_epoch: Option<u32>,
    pub best_score: Option<Scores>,
    pub latest_score: Option<Scores>,
    pub rate_per_hour: Option<f64>,
    pub eta_seconds: Option<u64>,
}

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
    /// Every log file of the run, by name (only in `GET /v1/runs/{id}`); left out when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogFile>,
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
    /// The Slurm job the run belongs to (`[slurm] enabled`; only in `GET /v1/runs/{id}`).
    /// Left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmJob>,
}

/// A Slurm job, as `squeue` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlurmJob {
    pub job_id: String,
    /// `PENDING`, `RUNNING`, …
    pub state: String,
    pub name: String,
    pub user: String,
    pub partition: String,
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
    /// The container the process runs in (its cgroup names one and the node's `docker inspect`
    /// knows it); left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<RunContainer>,
}

/// The container a run's process runs in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunContainer {
    /// The full container id.
    pub id: String,
    /// The container's name (without Docker's leading `/`).
    pub name: String,
    /// The image it was created from, as named then.
    pub image: String,
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

/// One log file of a run: its path relative to the run dir (`train_val_0.log`,
/// `logs/training_20251110.log`), size and modification time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogFile {
    pub name: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// `GET /v1/logs/{id}?offset=N&limit=BYTES[&file=NAME]`: a window of a run's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogWindow {
    pub run: String,
    /// The node the file is on.
    pub node: String,
    /// Absolute path of the file on that node.
    pub path: String,
    /// The file's name relative to the run dir (what `?file=` takes).
    pub file: String,
    /// The file's size when read.
    pub size: u64,
    /// Byte offset of the first byte of `text` (a negative request offset resolved).
    pub offset: u64,
    /// Byte offset just past `text`: the offset to ask for next.
    pub next_offset: u64,
    /// The bytes, UTF-8 decoded lossily; control characters are kept.
    pub text: String,
}

/// Data of a `log` event of `GET /v1/logs/{id}?follow=true` (its SSE id is `next_offset`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogChunk {
    pub offset: u64,
    pub next_offset: u64,
    pub text: String,
}

/// Data of a `truncated` or `rotated` event of a log follow: the file shrank (truncated) or
/// the path now names another file (rotated); following goes on from offset 0 of the file now
/// at `path`. Also the data of the first event, `open`, with the size at the start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogFileState {
    pub run: String,
    pub node: String,
    pub path: String,
    pub size: u64,
    /// The offset following goes on from.
    pub offset: u64,
}
