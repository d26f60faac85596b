//! JSON bodies of the `/v1` control API (see DESIGN.md "Contracts"). Fields may be added;
//! renaming or removing one needs a [`crate::PROTOCOL_VERSION`] bump.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// Severity of an [`Event`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
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
