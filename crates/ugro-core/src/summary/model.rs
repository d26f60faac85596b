//! The summary's content (output): statistics, progress, node health, resource use, headline.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::health::NodeState;
use crate::runs::RunStatus;

use super::EventRecord;

/// The nightly summary's content, ready to render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub date: NaiveDate,
    #[serde(with = "tz_name")]
    pub tz: Tz,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// False for the first summary (no previous snapshot): changes were judged by timestamps.
    pub has_previous: bool,
    /// Nothing happened: no run started, finished, failed or got stuck, no new epochs, no key
    /// events, no bottleneck. Rendered as one line.
    pub quiet: bool,
    pub experiments: ExperimentStats,
    /// Time-ordered (oldest first).
    pub key_events: Vec<EventRecord>,
    pub progress: ProgressOverview,
    pub nodes: NodeHealth,
    pub resources: ResourceUtilization,
}

/// Run counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub running: usize,
    pub finished: usize,
    pub stuck: usize,
    pub failed: usize,
    pub outdated: usize,
    pub unknown: usize,
}

impl StatusCounts {
    pub fn total(&self) -> usize {
        self.running + self.finished + self.stuck + self.failed + self.outdated + self.unknown
    }

    pub(super) fn add(&mut self, s: RunStatus) {
        match s {
            RunStatus::Running => self.running += 1,
            RunStatus::Finished => self.finished += 1,
            RunStatus::Stuck => self.stuck += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Outdated => self.outdated += 1,
            RunStatus::Unknown => self.unknown += 1,
        }
    }
}

/// A run and the time that put it on a list (started_at, last_update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub id: String,
    pub at: Option<DateTime<Utc>>,
}

/// A run that failed in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRun {
    pub id: String,
    /// First line of the run's error, at most [`REASON_MAX_CHARS`](super::REASON_MAX_CHARS)
    /// characters.
    pub reason: Option<String>,
    pub completed_epochs: u32,
    pub total_epochs: Option<u32>,
    pub last_update: Option<DateTime<Utc>>,
}

/// Inclusive range of epoch numbers as the run's directories name them (`epoch_N` is epoch N,
/// counted from 0), the convention of the `run.epoch_completed` events and `ugroctl run` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRange {
    pub first: u32,
    pub last: u32,
}

/// What happened to a run's epochs in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum EpochChange {
    /// New epochs were completed (1-based, compressed into ranges).
    Completed { ranges: Vec<EpochRange> },
    /// Fewer completed epochs than before: the run was restarted.
    Restarted { previous: u32, current: u32 },
}

/// Epoch-level progress of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochProgress {
    pub id: String,
    pub change: EpochChange,
}

/// Section 1: Experiment Statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentStats {
    pub counts: StatusCounts,
    /// Oldest start first.
    pub started: Vec<RunRef>,
    /// Oldest finish first.
    pub finished: Vec<RunRef>,
    /// Failed now and not failed before, oldest first.
    pub newly_failed: Vec<FailedRun>,
    /// Failed now and already failed in the previous snapshot.
    pub still_failed: usize,
    /// Stuck now and not stuck before.
    pub newly_stuck: Vec<RunRef>,
    /// By run id.
    pub epochs: Vec<EpochProgress>,
}

/// A run at or above [`NEAR_COMPLETION_PCT`](super::NEAR_COMPLETION_PCT) that is not complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearCompletion {
    pub id: String,
    pub status: RunStatus,
    pub percentage: f64,
    pub completed_epochs: u32,
    pub total_epochs: Option<u32>,
}

/// A run running for longer than `long_running`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongRunning {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub running_for_secs: u64,
    pub percentage: f64,
}

/// A running run's expected completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eta {
    pub id: String,
    /// Current snapshot time + `eta_seconds`.
    pub at: DateTime<Utc>,
    pub eta_seconds: u64,
}

/// Section 3: Progress Overview.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressOverview {
    /// Finished + outdated runs, runner unknown excluded.
    pub complete: usize,
    /// All runs but those of runner unknown.
    pub considered: usize,
    /// Highest percentage first.
    pub near_completion: Vec<NearCompletion>,
    pub long_running_threshold_secs: u64,
    /// Longest first.
    pub long_running: Vec<LongRunning>,
    /// Soonest first.
    pub etas: Vec<Eta>,
}

impl ProgressOverview {
    /// Overall completion in percent; None without runs to consider.
    pub fn completion_pct(&self) -> Option<f64> {
        (self.considered > 0).then(|| self.complete as f64 * 100.0 / self.considered as f64)
    }
}

/// A node that is not healthy in the current snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRef {
    pub name: String,
    pub state: NodeState,
    pub score: u8,
}

/// Node health in the current snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub total: usize,
    pub healthy: usize,
    /// Unhealthy or unreachable.
    pub unhealthy: usize,
    /// Every node that is not healthy, by name.
    pub not_healthy: Vec<NodeRef>,
}

/// One GPU of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRef {
    pub node: String,
    pub gpu: u32,
}

/// Cluster-wide GPU figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuUsage {
    /// Mean over every sample.
    pub average_pct: f64,
    /// Highest cluster-wide mean at one sampling instant.
    pub peak_pct: f64,
    pub peak_at: DateTime<Utc>,
    /// Distinct (node, index) pairs sampled.
    pub gpus: usize,
    /// GPUs whose mean over the window is below [`GPU_IDLE_PCT`](super::GPU_IDLE_PCT), by node and
    /// index.
    pub idle: Vec<GpuRef>,
}

/// Cluster-wide CPU figures (`cpu_pct`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub average_pct: f64,
    /// Highest cluster-wide mean at one sampling instant.
    pub peak_pct: f64,
    pub peak_at: DateTime<Utc>,
}

/// One node's row of the per-node breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub node: String,
    /// Distinct GPU indices sampled.
    pub gpus: u32,
    pub gpu_avg_pct: Option<f64>,
    /// Highest mean over the node's GPUs at one instant.
    pub gpu_peak_pct: Option<f64>,
    pub idle_gpus: u32,
    pub cpu_avg_pct: Option<f64>,
    pub cpu_peak_pct: Option<f64>,
}

/// What kind of bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckKind {
    /// Every sampled GPU of every node above [`GPU_BUSY_PCT`](super::GPU_BUSY_PCT); `extreme` =
    /// lowest utilisation.
    AllGpusBusy,
    /// A node's load1 above its core count; `extreme` = highest load1, `threshold` = cores.
    CpuLoad,
    /// A node's available memory below [`MEMORY_LOW_PCT`](super::MEMORY_LOW_PCT) of its total;
    /// `extreme` = lowest available share in percent.
    MemoryLow,
}

/// A condition that held for more than [`MIN_CONDITION`](super::MIN_CONDITION).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    pub kind: BottleneckKind,
    /// None for cluster-wide bottlenecks.
    pub node: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub extreme: f64,
    pub threshold: f64,
}

/// A period in which every GPU of a node was below [`GPU_IDLE_PCT`](super::GPU_IDLE_PCT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdlePeriod {
    pub node: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Section 4: Resource Utilization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUtilization {
    pub gpu_samples: usize,
    pub node_samples: usize,
    /// None without GPU samples.
    pub gpu: Option<GpuUsage>,
    /// None without a `cpu_pct` figure.
    pub cpu: Option<CpuUsage>,
    /// By node name: every node sampled or in the current snapshot.
    pub nodes: Vec<NodeUsage>,
    /// By start time.
    pub bottlenecks: Vec<Bottleneck>,
    /// By start time.
    pub idle_periods: Vec<IdlePeriod>,
    /// Experiments queued: Slurm jobs pending too long at the summary's time, oldest first.
    #[serde(default)]
    pub queued: Vec<crate::slurm::QueuedJob>,
}

/// The counts a subject line and a dashboard need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headline {
    pub running: usize,
    pub failed: usize,
    pub stuck: usize,
    pub finished_in_window: usize,
    /// Unhealthy or unreachable.
    pub nodes_unhealthy: usize,
}

mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Tz>().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::summary::fixtures::*;
    use crate::summary::{ProcessSnapshot, Snapshot};

    #[test]
    fn snapshot_and_summary_round_trip_through_json() {
        let mut r = run("a", RunStatus::Running, 2, 10);
        r.epoch_times = vec![t("2026-11-22T01:00:00Z"), t("2026-11-22T02:00:00Z")];
        r.process = Some(ProcessSnapshot {
            node: "gpu1".into(),
            pid: 42,
            user: Some("alice".into()),
        });
        let mut fx = Fx::new(vec![r]);
        fx.tz = chrono_tz::Europe::Berlin;
        let json = serde_json::to_string(&fx.current).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), fx.current);
        let s = fx.build();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["tz"], "Europe/Berlin");
        assert_eq!(serde_json::from_value::<Summary>(json).unwrap(), s);
        // Old snapshots without the optional fields still load.
        let minimal = r#"{"taken_at":"2026-11-22T00:00:00Z","runs":[{"id":"x","root":"/r",
            "runner":"trainer","status":"failed","completed_epochs":3,"percentage":30.0}]}"#;
        let snap: Snapshot = serde_json::from_str(minimal).unwrap();
        assert_eq!(snap.runs[0].status, RunStatus::Failed);
        assert!(snap.nodes.is_empty());
    }
}
