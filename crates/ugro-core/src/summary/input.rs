//! The summary's input: snapshots of runs and nodes, event records, and everything `build` takes.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::health::{NodeState, Severity};
use crate::runs::{RunStatus, RunnerKind};
use crate::sample::{GpuSample, NodeSample};

/// The state of every run and node at one instant, stored as JSON between summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    #[serde(default)]
    pub runs: Vec<RunSnapshot>,
    #[serde(default)]
    pub nodes: Vec<NodeSnapshot>,
    /// Slurm jobs pending longer than `slurm.queued_after` at `taken_at` (none without Slurm).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<crate::slurm::QueuedJob>,
}

/// One run in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSnapshot {
    pub id: String,
    pub root: String,
    pub runner: RunnerKind,
    pub status: RunStatus,
    pub completed_epochs: u32,
    #[serde(default)]
    pub total_epochs: Option<u32>,
    /// 0–100.
    pub percentage: f64,
    #[serde(default)]
    pub early_stopped: bool,
    #[serde(default)]
    pub eta_seconds: Option<u64>,
    /// First epoch completion or first sighting: when the run started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// Newest log/artifact change.
    #[serde(default)]
    pub last_update: Option<DateTime<Utc>>,
    /// Completion time of each completed epoch, index i = epoch i (0-based dirs epoch_i); may be
    /// shorter than completed_epochs when unknown.
    #[serde(default)]
    pub epoch_times: Vec<DateTime<Utc>>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub process: Option<ProcessSnapshot>,
}

/// The live process of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSnapshot {
    pub node: String,
    pub pid: u32,
    #[serde(default)]
    pub user: Option<String>,
}

/// One node in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    pub name: String,
    pub state: NodeState,
    pub score: u8,
    pub gpus: u32,
    #[serde(default)]
    pub alerts: Vec<String>,
}

/// One recorded event, as the store returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub subject: String,
    pub severity: Severity,
    pub message: String,
}

/// Everything [`build`](super::build) needs; the caller reads the clock, the store and the config.
#[derive(Debug, Clone, Copy)]
pub struct SummaryInput<'a> {
    /// The date the summary is for (its title and subject).
    pub date: NaiveDate,
    /// `summary.timezone`: every time is shown in it.
    pub tz: Tz,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub current: &'a Snapshot,
    pub previous: Option<&'a Snapshot>,
    /// Already limited to the window by the caller, any order.
    pub events: &'a [EventRecord],
    /// Window only, any order.
    pub gpu_samples: &'a [GpuSample],
    /// Window only, any order.
    pub node_samples: &'a [NodeSample],
    /// `summary.metrics_interval`: samples are bucketed by it, and samples further apart than
    /// twice it break an interval.
    pub sample_interval: Duration,
    /// `summary.long_running`.
    pub long_running: Duration,
}
