//! The nightly summary: snapshots of runs and nodes, their diff, the window's events and
//! samples, and the Markdown/HTML rendering (docs/ARCHITECTURE.md "Contracts" → Semantics, summary).
//!
//! [`build`] is pure and linear-ish in its input (runs are looked up in a hash map, samples are
//! grouped once per node and per sampling bucket); [`render_markdown`], [`render_html`] and
//! [`subject`] only format a built [`Summary`]. The [`Summary`] keeps every item; the renderers
//! cap long lists ([`LIST_CAP`], [`EVENT_CAP`]) and say how many were left out.
//!
//! Decisions where the design is silent:
//! - The window is half-open at its start: a time `t` is in it iff `window_start < t <= window_end`,
//!   so consecutive windows never count the same moment twice.
//! - A run the previous snapshot did not know (or every run, for the first summary) is judged by
//!   its timestamps: it finished or failed in the window when its `last_update` is in the window;
//!   its new epochs are all of them when it started in the window, else those whose
//!   `epoch_times` fall in the window. A stuck run it did not know counts as newly stuck.
//! - Only bottlenecks, besides run changes and key events, make a window not quiet; idle
//!   periods alone do not.
//! - "At one instant" means one sampling bucket: `floor(at / sample_interval)`; a bucket's time is
//!   its earliest sample.
//! - Epoch progress is reported for trainer and generic runs (evaluators have no epochs).
//! - Durations are reported only when strictly longer than one hour ("more than one hour"), and
//!   measured from the first to the last sample that met the condition.
//! - The fourth bottleneck first planned ("planned experiments waiting while no GPU is idle") needs a
//!   queue of planned experiments, which ugro-monitor does not have; it is not reported.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::health::{NodeState, Severity};
use crate::runs::{RunStatus, RunnerKind};
use crate::sample::{GpuSample, NodeSample};

/// Items shown per list in the rendered summary; the rest are counted ("… and N more").
pub const LIST_CAP: usize = 20;
/// Key events shown in the rendered summary; the rest are counted.
pub const EVENT_CAP: usize = 50;
/// Default `summary.long_running`.
pub const DEFAULT_LONG_RUNNING: Duration = Duration::from_secs(7 * 24 * 3600);
/// A run at or above this percentage (and not complete) is "near completion".
pub const NEAR_COMPLETION_PCT: f64 = 90.0;
/// GPU utilisation above which every GPU counts as busy (bottleneck).
pub const GPU_BUSY_PCT: f64 = 90.0;
/// GPU utilisation below which a GPU counts as idle.
pub const GPU_IDLE_PCT: f64 = 5.0;
/// Available memory below this share of the total is "too low to launch".
pub const MEMORY_LOW_PCT: f64 = 10.0;
/// A bottleneck or idle period must last longer than this to be reported.
pub const MIN_CONDITION: Duration = Duration::from_secs(3600);
/// Characters kept of a failure reason (its first line).
pub const REASON_MAX_CHARS: usize = 200;
/// Characters kept of an event message (its first line).
pub const EVENT_MAX_CHARS: usize = 300;

/// Event kinds that always appear under Key Events (besides any warning or critical event).
pub const KEY_EVENT_KINDS: [&str; 13] = [
    "run.stuck",
    "run.outdated",
    "run.failed",
    "node.state_changed",
    "node.monitor_disconnected",
    "node.monitor_reconnected",
    "daemon.unclean_stop",
    "daemon.started",
    "daemon.task_failed",
    "root.missing",
    "root.back",
    "root.watch_fallback",
    "email.given_up",
];

// ---------------------------------------------------------------------------------------------
// Snapshots and events (input)

/// The state of every run and node at one instant, stored as JSON between summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    #[serde(default)]
    pub runs: Vec<RunSnapshot>,
    #[serde(default)]
    pub nodes: Vec<NodeSnapshot>,
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

/// Everything [`build`] needs; the caller reads the clock, the store and the config.
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

// ---------------------------------------------------------------------------------------------
// The summary (output)

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

    fn add(&mut self, s: RunStatus) {
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
    /// First line of the run's error, at most [`REASON_MAX_CHARS`] characters.
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

/// A run at or above [`NEAR_COMPLETION_PCT`] that is not complete.
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
    /// GPUs whose mean over the window is below [`GPU_IDLE_PCT`], by node and index.
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
    /// Every sampled GPU of every node above [`GPU_BUSY_PCT`]; `extreme` = lowest utilisation.
    AllGpusBusy,
    /// A node's load1 above its core count; `extreme` = highest load1, `threshold` = cores.
    CpuLoad,
    /// A node's available memory below [`MEMORY_LOW_PCT`] of its total; `extreme` = lowest
    /// available share in percent.
    MemoryLow,
}

/// A condition that held for more than [`MIN_CONDITION`].
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

/// A period in which every GPU of a node was below [`GPU_IDLE_PCT`].
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

// ---------------------------------------------------------------------------------------------
// Building

struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Window {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start < t && t <= self.end
    }

    fn contains_opt(&self, t: Option<DateTime<Utc>>) -> bool {
        t.is_some_and(|t| self.contains(t))
    }
}

fn is_complete(s: RunStatus) -> bool {
    matches!(s, RunStatus::Finished | RunStatus::Outdated)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The summary of one window: the current snapshot diffed against the previous one, the
/// window's events and samples. See the module docs for the rules beyond the documented contract.
pub fn build(input: &SummaryInput) -> Summary {
    let window = Window {
        start: input.window_start,
        end: input.window_end,
    };
    let experiments = experiment_stats(input, &window);
    let key_events = key_events(input.events);
    let progress = progress_overview(input);
    let nodes = node_health(input.current);
    let resources = resource_utilization(input);
    let quiet = experiments.started.is_empty()
        && experiments.finished.is_empty()
        && experiments.newly_failed.is_empty()
        && experiments.newly_stuck.is_empty()
        && experiments.epochs.is_empty()
        && key_events.is_empty()
        && resources.bottlenecks.is_empty();
    Summary {
        date: input.date,
        tz: input.tz,
        window_start: input.window_start,
        window_end: input.window_end,
        has_previous: input.previous.is_some(),
        quiet,
        experiments,
        key_events,
        progress,
        nodes,
        resources,
    }
}

fn experiment_stats(input: &SummaryInput, w: &Window) -> ExperimentStats {
    let previous: HashMap<&str, &RunSnapshot> = input
        .previous
        .map(|p| p.runs.iter().map(|r| (r.id.as_str(), r)).collect())
        .unwrap_or_default();
    let has_previous = input.previous.is_some();
    let mut st = ExperimentStats::default();
    for run in &input.current.runs {
        st.counts.add(run.status);
        let prev = previous.get(run.id.as_str()).copied();
        let started = w.contains_opt(run.started_at)
            || (has_previous && prev.is_none() && run.started_at.is_none());
        if started {
            st.started.push(RunRef {
                id: run.id.clone(),
                at: run.started_at,
            });
        }
        // Whether the run changed into its current status in the window.
        let changed_into = |was: &dyn Fn(RunStatus) -> bool| match prev {
            Some(p) => !was(p.status),
            None => w.contains_opt(run.last_update),
        };
        match run.status {
            RunStatus::Finished if changed_into(&is_complete) => st.finished.push(RunRef {
                id: run.id.clone(),
                at: run.last_update,
            }),
            RunStatus::Failed => {
                if changed_into(&|s| s == RunStatus::Failed) {
                    st.newly_failed.push(FailedRun {
                        id: run.id.clone(),
                        reason: run
                            .error
                            .as_deref()
                            .and_then(|e| first_line(e, REASON_MAX_CHARS)),
                        completed_epochs: run.completed_epochs,
                        total_epochs: run.total_epochs,
                        last_update: run.last_update,
                    });
                } else {
                    st.still_failed += 1;
                }
            }
            RunStatus::Stuck if prev.is_none_or(|p| p.status != RunStatus::Stuck) => {
                st.newly_stuck.push(RunRef {
                    id: run.id.clone(),
                    at: run.last_update,
                });
            }
            _ => {}
        }
        if matches!(run.runner, RunnerKind::Trainer | RunnerKind::Generic)
            && let Some(change) = epoch_change(run, prev, started, w)
        {
            st.epochs.push(EpochProgress {
                id: run.id.clone(),
                change,
            });
        }
    }
    let by_time_then_id = |a: &RunRef, b: &RunRef| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id));
    st.started.sort_by(by_time_then_id);
    st.finished.sort_by(by_time_then_id);
    st.newly_stuck.sort_by(by_time_then_id);
    st.newly_failed.sort_by(|a, b| {
        a.last_update
            .cmp(&b.last_update)
            .then_with(|| a.id.cmp(&b.id))
    });
    st.epochs.sort_by(|a, b| a.id.cmp(&b.id));
    st
}

/// New epochs of one run: the diff of completed counts against the previous snapshot, else
/// (unknown before) all of them when the run started in the window, else those whose completion
/// time is in the window.
fn epoch_change(
    run: &RunSnapshot,
    prev: Option<&RunSnapshot>,
    started_in_window: bool,
    w: &Window,
) -> Option<EpochChange> {
    let ranges = match prev {
        Some(p) if run.completed_epochs < p.completed_epochs => {
            return Some(EpochChange::Restarted {
                previous: p.completed_epochs,
                current: run.completed_epochs,
            });
        }
        Some(p) if run.completed_epochs == p.completed_epochs => return None,
        Some(p) => vec![EpochRange {
            first: p.completed_epochs,
            last: run.completed_epochs - 1,
        }],
        None if started_in_window && run.completed_epochs > 0 => vec![EpochRange {
            first: 0,
            last: run.completed_epochs - 1,
        }],
        None if started_in_window => return None,
        None => compress(
            &run.epoch_times
                .iter()
                .take(run.completed_epochs as usize)
                .zip(0u32..)
                .filter(|(t, _)| w.contains(**t))
                .map(|(_, n)| n)
                .collect::<Vec<_>>(),
        ),
    };
    (!ranges.is_empty()).then_some(EpochChange::Completed { ranges })
}

/// Sorted, deduplicated numbers compressed into inclusive ranges.
fn compress(numbers: &[u32]) -> Vec<EpochRange> {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<EpochRange> = Vec::new();
    for n in sorted {
        match out.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(n) => r.last = n,
            _ => out.push(EpochRange { first: n, last: n }),
        }
    }
    out
}

/// The first non-empty line of `s`, trimmed, at most `max` characters (an ellipsis marks a cut).
fn first_line(s: &str, max: usize) -> Option<String> {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(truncate(line, max))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s[..cut].trim_end()),
        None => s.to_owned(),
    }
}

fn key_events(events: &[EventRecord]) -> Vec<EventRecord> {
    let mut out: Vec<EventRecord> = events
        .iter()
        .filter(|e| e.severity >= Severity::Warning || KEY_EVENT_KINDS.contains(&e.kind.as_str()))
        .cloned()
        .collect();
    // Stable: events at the same instant keep the caller's order.
    out.sort_by_key(|e| e.at);
    out
}

fn progress_overview(input: &SummaryInput) -> ProgressOverview {
    let cur = input.current;
    let long = delta(input.long_running);
    let mut p = ProgressOverview {
        long_running_threshold_secs: input.long_running.as_secs(),
        ..ProgressOverview::default()
    };
    for run in cur.runs.iter().filter(|r| r.runner != RunnerKind::Unknown) {
        p.considered += 1;
        if is_complete(run.status) {
            p.complete += 1;
            continue;
        }
        if run.percentage >= NEAR_COMPLETION_PCT {
            p.near_completion.push(NearCompletion {
                id: run.id.clone(),
                status: run.status,
                percentage: run.percentage,
                completed_epochs: run.completed_epochs,
                total_epochs: run.total_epochs,
            });
        }
        if run.status != RunStatus::Running {
            continue;
        }
        if let Some(started) = run.started_at {
            let running_for = input.window_end - started;
            if running_for > long {
                p.long_running.push(LongRunning {
                    id: run.id.clone(),
                    started_at: started,
                    running_for_secs: u64::try_from(running_for.num_seconds()).unwrap_or(0),
                    percentage: run.percentage,
                });
            }
        }
        if let Some(eta) = run.eta_seconds {
            let secs = i64::try_from(eta).unwrap_or(i64::MAX);
            let at = TimeDelta::try_seconds(secs)
                .and_then(|d| cur.taken_at.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            p.etas.push(Eta {
                id: run.id.clone(),
                at,
                eta_seconds: eta,
            });
        }
    }
    p.near_completion.sort_by(|a, b| {
        b.percentage
            .total_cmp(&a.percentage)
            .then_with(|| a.id.cmp(&b.id))
    });
    p.long_running.sort_by(|a, b| {
        b.running_for_secs
            .cmp(&a.running_for_secs)
            .then_with(|| a.id.cmp(&b.id))
    });
    p.etas
        .sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    p
}

fn node_health(cur: &Snapshot) -> NodeHealth {
    let mut h = NodeHealth {
        total: cur.nodes.len(),
        ..NodeHealth::default()
    };
    for n in &cur.nodes {
        match n.state {
            NodeState::Healthy => h.healthy += 1,
            NodeState::Unhealthy | NodeState::Unreachable => h.unhealthy += 1,
            NodeState::Degraded | NodeState::Unknown => {}
        }
        if !n.state.is_healthy() {
            h.not_healthy.push(NodeRef {
                name: n.name.clone(),
                state: n.state,
                score: n.score,
            });
        }
    }
    h.not_healthy.sort_by(|a, b| a.name.cmp(&b.name));
    h
}

// --- resources ---

/// Running mean and extremes of one sampling bucket (or series).
#[derive(Debug, Clone, Copy)]
struct Acc {
    sum: f64,
    n: u32,
    min: f64,
    max: f64,
    first_at: DateTime<Utc>,
}

impl Acc {
    fn new(at: DateTime<Utc>) -> Self {
        Acc {
            sum: 0.0,
            n: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first_at: at,
        }
    }

    fn add(&mut self, v: f64, at: DateTime<Utc>) {
        self.sum += v;
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.first_at = self.first_at.min(at);
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }
}

fn add_to(map: &mut BTreeMap<i64, Acc>, bucket: i64, v: f64, at: DateTime<Utc>) {
    map.entry(bucket).or_insert_with(|| Acc::new(at)).add(v, at);
}

/// The bucket's mean with the highest value, and when.
fn peak(buckets: &BTreeMap<i64, Acc>) -> Option<(f64, DateTime<Utc>)> {
    buckets
        .values()
        .filter_map(|a| a.mean().map(|m| (m, a.first_at)))
        .fold(
            None,
            |best: Option<(f64, DateTime<Utc>)>, (m, at)| match best {
                Some((b, _)) if b >= m => best,
                _ => Some((m, at)),
            },
        )
}

/// Contiguous stretches of a time-ordered series in which a condition held. A point that does not
/// meet it, or a gap longer than `max_gap` between two points that do, ends a stretch; stretches
/// not longer than `min_len` (first to last point) are dropped.
struct Stretches {
    max_gap: TimeDelta,
    min_len: TimeDelta,
    /// from, to, extreme so far
    open: Option<(DateTime<Utc>, DateTime<Utc>, f64)>,
    done: Vec<(DateTime<Utc>, DateTime<Utc>, f64)>,
    /// Keeps the more extreme of two values.
    pick: fn(f64, f64) -> f64,
}

impl Stretches {
    fn new(interval: Duration, pick: fn(f64, f64) -> f64) -> Self {
        Stretches {
            max_gap: delta(interval).checked_mul(2).unwrap_or(TimeDelta::MAX),
            min_len: delta(MIN_CONDITION),
            open: None,
            done: Vec::new(),
            pick,
        }
    }

    /// `value` is Some when the condition held at `at`.
    fn push(&mut self, at: DateTime<Utc>, value: Option<f64>) {
        match (self.open.as_mut(), value) {
            (Some((_, to, ext)), Some(v)) if at - *to <= self.max_gap => {
                *to = at;
                *ext = (self.pick)(*ext, v);
            }
            (_, Some(v)) => {
                self.close();
                self.open = Some((at, at, v));
            }
            (_, None) => self.close(),
        }
    }

    fn close(&mut self) {
        if let Some((from, to, ext)) = self.open.take()
            && to - from > self.min_len
        {
            self.done.push((from, to, ext));
        }
    }

    fn finish(mut self) -> Vec<(DateTime<Utc>, DateTime<Utc>, f64)> {
        self.close();
        self.done
    }
}

#[derive(Default)]
struct NodeAcc<'a> {
    gpu_sum: f64,
    gpu_n: u32,
    gpu_buckets: BTreeMap<i64, Acc>,
    cpu_sum: f64,
    cpu_n: u32,
    cpu_max: Option<f64>,
    samples: Vec<&'a NodeSample>,
}

fn resource_utilization(input: &SummaryInput) -> ResourceUtilization {
    let interval = input.sample_interval.max(Duration::from_secs(1));
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let bucket = |at: DateTime<Utc>| at.timestamp_millis().div_euclid(interval_ms);

    let mut nodes: BTreeMap<&str, NodeAcc> = BTreeMap::new();
    for n in &input.current.nodes {
        nodes.entry(n.name.as_str()).or_default();
    }

    // GPUs: cluster buckets, per node buckets, per GPU means.
    let mut cluster: BTreeMap<i64, Acc> = BTreeMap::new();
    let mut per_gpu: HashMap<(&str, u32), (f64, u32)> = HashMap::new();
    let mut gpu_sum = 0.0;
    for s in input.gpu_samples {
        let v = s.utilization_pct;
        let b = bucket(s.at);
        gpu_sum += v;
        add_to(&mut cluster, b, v, s.at);
        let node = nodes.entry(s.node.as_str()).or_default();
        node.gpu_sum += v;
        node.gpu_n += 1;
        add_to(&mut node.gpu_buckets, b, v, s.at);
        let g = per_gpu.entry((s.node.as_str(), s.gpu)).or_insert((0.0, 0));
        g.0 += v;
        g.1 += 1;
    }

    let mut idle: Vec<GpuRef> = per_gpu
        .iter()
        .filter(|(_, (sum, n))| sum / f64::from(*n) < GPU_IDLE_PCT)
        .map(|((node, gpu), _)| GpuRef {
            node: (*node).to_owned(),
            gpu: *gpu,
        })
        .collect();
    idle.sort_by(|a, b| a.node.cmp(&b.node).then(a.gpu.cmp(&b.gpu)));

    let gpu = peak(&cluster).map(|(peak_pct, peak_at)| GpuUsage {
        average_pct: gpu_sum / input.gpu_samples.len() as f64,
        peak_pct,
        peak_at,
        gpus: per_gpu.len(),
        idle: idle.clone(),
    });

    let mut bottlenecks = Vec::new();
    let mut all_busy = Stretches::new(interval, f64::min);
    for a in cluster.values() {
        all_busy.push(a.first_at, (a.min > GPU_BUSY_PCT).then_some(a.min));
    }
    for (from, to, ext) in all_busy.finish() {
        bottlenecks.push(Bottleneck {
            kind: BottleneckKind::AllGpusBusy,
            node: None,
            from,
            to,
            extreme: ext,
            threshold: GPU_BUSY_PCT,
        });
    }

    // CPU, load and memory.
    let mut cpu_cluster: BTreeMap<i64, Acc> = BTreeMap::new();
    let mut cpu_sum = 0.0;
    let mut cpu_n = 0u32;
    for s in input.node_samples {
        let node = nodes.entry(s.node.as_str()).or_default();
        node.samples.push(s);
        if let Some(c) = s.cpu_pct {
            cpu_sum += c;
            cpu_n += 1;
            node.cpu_sum += c;
            node.cpu_n += 1;
            node.cpu_max = Some(node.cpu_max.map_or(c, |m: f64| m.max(c)));
            add_to(&mut cpu_cluster, bucket(s.at), c, s.at);
        }
    }
    let cpu = peak(&cpu_cluster).map(|(peak_pct, peak_at)| CpuUsage {
        average_pct: cpu_sum / f64::from(cpu_n.max(1)),
        peak_pct,
        peak_at,
    });

    let mut idle_periods = Vec::new();
    let mut usage = Vec::with_capacity(nodes.len());
    for (name, acc) in &mut nodes {
        acc.samples.sort_by_key(|s| s.at);
        let mut load = Stretches::new(interval, f64::max);
        let mut memory = Stretches::new(interval, f64::min);
        let mut cores = 0u32;
        for s in &acc.samples {
            let overloaded = s.cores > 0 && s.load1 > f64::from(s.cores);
            if overloaded {
                cores = cores.max(s.cores);
            }
            load.push(s.at, overloaded.then_some(s.load1));
            let avail_pct = (s.memory_total_bytes > 0)
                .then(|| s.memory_available_bytes as f64 * 100.0 / s.memory_total_bytes as f64);
            memory.push(s.at, avail_pct.filter(|p| *p < MEMORY_LOW_PCT));
        }
        let node_bottleneck = |kind, threshold: f64| {
            move |(from, to, extreme): (DateTime<Utc>, DateTime<Utc>, f64)| Bottleneck {
                kind,
                node: Some((*name).to_owned()),
                from,
                to,
                extreme,
                threshold,
            }
        };
        bottlenecks.extend(
            load.finish()
                .into_iter()
                .map(node_bottleneck(BottleneckKind::CpuLoad, f64::from(cores))),
        );
        bottlenecks.extend(
            memory
                .finish()
                .into_iter()
                .map(node_bottleneck(BottleneckKind::MemoryLow, MEMORY_LOW_PCT)),
        );

        let mut idle_stretch = Stretches::new(interval, f64::max);
        for a in acc.gpu_buckets.values() {
            idle_stretch.push(a.first_at, (a.max < GPU_IDLE_PCT).then_some(a.max));
        }
        idle_periods.extend(
            idle_stretch
                .finish()
                .into_iter()
                .map(|(from, to, _)| IdlePeriod {
                    node: (*name).to_owned(),
                    from,
                    to,
                }),
        );

        let gpus = per_gpu.keys().filter(|(n, _)| n == name).count();
        usage.push(NodeUsage {
            node: (*name).to_owned(),
            gpus: u32::try_from(gpus).unwrap_or(u32::MAX),
            gpu_avg_pct: (acc.gpu_n > 0).then(|| acc.gpu_sum / f64::from(acc.gpu_n)),
            gpu_peak_pct: peak(&acc.gpu_buckets).map(|(p, _)| p),
            idle_gpus: u32::try_from(idle.iter().filter(|g| g.node == *name).count())
                .unwrap_or(u32::MAX),
            cpu_avg_pct: (acc.cpu_n > 0).then(|| acc.cpu_sum / f64::from(acc.cpu_n)),
            cpu_peak_pct: acc.cpu_max,
        });
    }
    bottlenecks.sort_by(|a, b| a.from.cmp(&b.from).then_with(|| a.node.cmp(&b.node)));
    idle_periods.sort_by(|a, b| a.from.cmp(&b.from).then_with(|| a.node.cmp(&b.node)));

    ResourceUtilization {
        gpu_samples: input.gpu_samples.len(),
        node_samples: input.node_samples.len(),
        gpu,
        cpu,
        nodes: usage,
        bottlenecks,
        idle_periods,
    }
}

// ---------------------------------------------------------------------------------------------
// Headline and subject

/// The summary's headline counts: runs running, failed and stuck now, finished in the window,
/// nodes unhealthy or unreachable now.
pub fn headline(s: &Summary) -> Headline {
    let c = &s.experiments.counts;
    Headline {
        running: c.running,
        failed: c.failed,
        stuck: c.stuck,
        finished_in_window: s.experiments.finished.len(),
        nodes_unhealthy: s.nodes.unhealthy,
    }
}

/// The email subject: "[ugro] 2026-11-22 — 12 running, 3 failed, 1 node unhealthy". The running
/// count is always there; finished (in the window), failed, stuck and unhealthy nodes only when
/// not zero.
pub fn subject(s: &Summary) -> String {
    let h = headline(s);
    let mut parts = vec![format!("{} running", h.running)];
    if h.finished_in_window > 0 {
        parts.push(format!("{} finished", h.finished_in_window));
    }
    if h.failed > 0 {
        parts.push(format!("{} failed", h.failed));
    }
    if h.stuck > 0 {
        parts.push(format!("{} stuck", h.stuck));
    }
    if h.nodes_unhealthy > 0 {
        let noun = if h.nodes_unhealthy == 1 {
            "node"
        } else {
            "nodes"
        };
        parts.push(format!("{} {noun} unhealthy", h.nodes_unhealthy));
    }
    format!(
        "[ugro] {} — {}",
        s.date.format("%Y-%m-%d"),
        parts.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Escapes text for Markdown so that it renders as itself (no emphasis, links, raw HTML or
/// table breaks) while staying readable as plain text: underscores inside words stay as they are.
fn md(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let escape = match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '|' => true,
            '&' => chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphanumeric() || *n == '#'),
            '_' => {
                let word = |j: Option<usize>| {
                    j.and_then(|j| chars.get(j))
                        .is_some_and(|c| c.is_alphanumeric())
                };
                !(word(i.checked_sub(1)) && word(i.checked_add(1)))
            }
            '\n' | '\r' | '\t' => {
                out.push(' ');
                continue;
            }
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes what would make the start of a list item a block of its own (heading, quote, nested
/// list, ordered list).
fn md_lead(s: &str) -> String {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let after_digits = s[digits..].chars().next();
    let block = match s.chars().next() {
        Some('#' | '>' | '-' | '+' | '=') => true,
        Some(c) if c.is_ascii_digit() => matches!(after_digits, Some('.' | ')')),
        _ => false,
    };
    if !block {
        return s.to_owned();
    }
    if digits > 0 {
        // "1. x" → "1\. x"
        format!("{}\\{}", &s[..digits], &s[digits..])
    } else {
        format!("\\{s}")
    }
}

/// "HH:MM" in `tz`, with the date in front when it is not the summary's date.
fn local_time(t: DateTime<Utc>, tz: Tz, date: NaiveDate) -> String {
    let l = t.with_timezone(&tz);
    if l.date_naive() == date {
        l.format("%H:%M").to_string()
    } else {
        l.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// "95%", "73.5%".
fn pct(x: f64) -> String {
    let s = format!("{x:.1}");
    format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
}

/// "2.5 h", "3 h".
fn hours(d: TimeDelta) -> String {
    let s = format!("{:.1}", d.num_seconds() as f64 / 3600.0);
    format!("{} h", s.strip_suffix(".0").unwrap_or(&s))
}

/// "10 days", "1 day", "5 h", "12 min".
fn human(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => {
            let d = s / 86_400;
            format!("{d} {}", if d == 1 { "day" } else { "days" })
        }
        s if s >= 3600 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    }
}

fn epochs_text(ranges: &[EpochRange]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}–{}", r.first, r.last)
            }
        })
        .collect();
    let single = matches!(ranges, [r] if r.first == r.last);
    format!(
        "{} {}",
        if single { "epoch" } else { "epochs" },
        parts.join(", ")
    )
}

/// Writes at most `cap` items as nested list entries, then "… and N more".
fn capped<T>(
    out: &mut String,
    items: &[T],
    cap: usize,
    indent: &str,
    mut item: impl FnMut(&T) -> String,
) -> fmt::Result {
    for i in items.iter().take(cap) {
        writeln!(out, "{indent}- {}", md_lead(&item(i)))?;
    }
    if items.len() > cap {
        writeln!(out, "{indent}- … and {} more", items.len() - cap)?;
    }
    Ok(())
}

/// The summary as CommonMark (with one GFM table), readable as plain text.
pub fn render_markdown(s: &Summary) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_markdown(&mut out, s);
    // Text from logs (failure reasons, event messages) may carry terminal escapes: the file,
    // the email's text part and the HTML made from this never hold a raw control character.
    match neutralise_controls(&out) {
        Cow::Borrowed(_) => out,
        Cow::Owned(clean) => clean,
    }
}

/// Replaces every control character but newline and tab (C0, DEL, C1: ESC, BEL, CR, the CSI
/// byte, …) by a visible Rust-style escape, `\u{1b}` for ESC, so that text from logs cannot
/// move a terminal's cursor, change its colours or ring its bell when a summary is read with
/// `cat`, in a mail reader or a pager. Borrowed when there is nothing to replace.
pub fn neutralise_controls(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn write_markdown(out: &mut String, s: &Summary) -> fmt::Result {
    let tz = s.tz;
    writeln!(out, "# Daily Summary — {}", s.date.format("%Y-%m-%d"))?;
    writeln!(out)?;
    writeln!(
        out,
        "Window: {} → {} ({})",
        s.window_start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        s.window_end.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name()
    )?;
    writeln!(out)?;
    if s.quiet {
        return write_quiet(out, s);
    }
    if !s.has_previous {
        writeln!(
            out,
            "First summary: no previous snapshot, changes are judged by their timestamps."
        )?;
        writeln!(out)?;
    }
    write_experiments(out, s)?;
    write_events(out, s)?;
    write_progress(out, s)?;
    write_resources(out, s)
}

fn write_quiet(out: &mut String, s: &Summary) -> fmt::Result {
    let c = &s.experiments.counts;
    let mut tracked = format!("{} runs tracked", c.total());
    let mut notes = Vec::new();
    if c.failed > 0 {
        notes.push(format!("{} failed", c.failed));
    }
    if c.stuck > 0 {
        notes.push(format!("{} stuck", c.stuck));
    }
    if !notes.is_empty() {
        tracked.push_str(&format!(" ({})", notes.join(", ")));
    }
    let nodes = if s.nodes.total > 0 {
        format!(", {}/{} nodes healthy", s.nodes.healthy, s.nodes.total)
    } else {
        String::new()
    };
    writeln!(
        out,
        "Quiet window: no run started, finished or failed, no new epochs and no notable events; \
         {tracked}{nodes}."
    )
}

fn write_experiments(out: &mut String, s: &Summary) -> fmt::Result {
    let e = &s.experiments;
    let c = &e.counts;
    let (tz, date) = (s.tz, s.date);
    writeln!(out, "## Experiment Statistics")?;
    writeln!(out)?;
    writeln!(
        out,
        "- **Runs tracked**: {} — running {}, finished {}, stuck {}, failed {}, outdated {}, unknown {}",
        c.total(),
        c.running,
        c.finished,
        c.stuck,
        c.failed,
        c.outdated,
        c.unknown
    )?;
    let run_at = |r: &RunRef| match r.at {
        Some(t) => format!("{} ({})", md(&r.id), local_time(t, tz, date)),
        None => md(&r.id),
    };
    writeln!(out, "- **Started in window**: {}", e.started.len())?;
    capped(out, &e.started, LIST_CAP, "  ", run_at)?;
    writeln!(out, "- **Finished in window**: {}", e.finished.len())?;
    capped(out, &e.finished, LIST_CAP, "  ", run_at)?;
    if e.still_failed > 0 {
        writeln!(
            out,
            "- **Failed in window**: {} ({} still failed from before)",
            e.newly_failed.len(),
            e.still_failed
        )?;
    } else {
        writeln!(out, "- **Failed in window**: {}", e.newly_failed.len())?;
    }
    capped(out, &e.newly_failed, LIST_CAP, "  ", |f| {
        let epochs = match f.total_epochs {
            Some(t) => format!("{}/{t} epochs", f.completed_epochs),
            None => format!("{} epochs", f.completed_epochs),
        };
        let reason = f
            .reason
            .as_deref()
            .map_or_else(|| "no reason recorded".to_owned(), md);
        format!("{} ({epochs}): {reason}", md(&f.id))
    })?;
    if !e.newly_stuck.is_empty() {
        writeln!(out, "- **Stuck in window**: {}", e.newly_stuck.len())?;
        capped(out, &e.newly_stuck, LIST_CAP, "  ", run_at)?;
    }
    if e.epochs.is_empty() {
        writeln!(out, "- **Epoch progress**: no new epochs")?;
    } else {
        let n = e.epochs.len();
        let noun = if n == 1 { "run" } else { "runs" };
        writeln!(out, "- **Epoch progress**: {n} {noun}")?;
        capped(out, &e.epochs, LIST_CAP, "  ", |p| match &p.change {
            EpochChange::Completed { ranges } => {
                format!("{}: completed {}", md(&p.id), epochs_text(ranges))
            }
            EpochChange::Restarted { previous, current } => format!(
                "{}: restarted (completed epochs went from {previous} to {current})",
                md(&p.id)
            ),
        })?;
    }
    writeln!(out)
}

fn write_events(out: &mut String, s: &Summary) -> fmt::Result {
    writeln!(out, "## Key Events")?;
    writeln!(out)?;
    if s.key_events.is_empty() {
        writeln!(out, "No notable events.")?;
        return writeln!(out);
    }
    for e in s.key_events.iter().take(EVENT_CAP) {
        let text = first_line(&e.message, EVENT_MAX_CHARS).unwrap_or_default();
        let text = if e.subject.is_empty() || text.starts_with(e.subject.as_str()) {
            text
        } else {
            format!("{}: {text}", e.subject)
        };
        let mark = if e.severity == Severity::Critical {
            "**critical** "
        } else {
            ""
        };
        writeln!(
            out,
            "- {} — {mark}{} ({})",
            local_time(e.at, s.tz, s.date),
            md(&text),
            md(&e.kind)
        )?;
    }
    if s.key_events.len() > EVENT_CAP {
        writeln!(
            out,
            "- … and {} more events (see `ugroctl events`)",
            s.key_events.len() - EVENT_CAP
        )?;
    }
    writeln!(out)
}

fn write_progress(out: &mut String, s: &Summary) -> fmt::Result {
    let p = &s.progress;
    writeln!(out, "## Progress Overview")?;
    writeln!(out)?;
    match p.completion_pct() {
        Some(x) => writeln!(
            out,
            "- **Overall completion**: {} ({}/{} runs)",
            pct(x),
            p.complete,
            p.considered
        )?,
        None => writeln!(out, "- **Overall completion**: no runs tracked")?,
    }
    writeln!(
        out,
        "- **Near completion** (≥ {}): {}",
        pct(NEAR_COMPLETION_PCT),
        p.near_completion.len()
    )?;
    capped(out, &p.near_completion, LIST_CAP, "  ", |n| {
        let mut line = format!("{}: {}", md(&n.id), pct(n.percentage));
        if let Some(t) = n.total_epochs {
            line.push_str(&format!(" ({}/{t} epochs)", n.completed_epochs));
        }
        if n.status != RunStatus::Running {
            line.push_str(&format!(", {}", n.status.as_str()));
        }
        line
    })?;
    writeln!(
        out,
        "- **Long running** (> {}): {}",
        human(p.long_running_threshold_secs),
        p.long_running.len()
    )?;
    capped(out, &p.long_running, LIST_CAP, "  ", |l| {
        format!(
            "{}: running for {}, {} complete",
            md(&l.id),
            human(l.running_for_secs),
            pct(l.percentage)
        )
    })?;
    if p.etas.is_empty() {
        writeln!(out, "- **ETAs**: none known")?;
    } else {
        writeln!(out, "- **ETAs**: {}", p.etas.len())?;
        capped(out, &p.etas, LIST_CAP, "  ", |e| {
            format!(
                "{}: {} (in {})",
                md(&e.id),
                local_time(e.at, s.tz, s.date),
                human(e.eta_seconds)
            )
        })?;
    }
    writeln!(out)
}

fn write_resources(out: &mut String, s: &Summary) -> fmt::Result {
    let r = &s.resources;
    let (tz, date) = (s.tz, s.date);
    writeln!(out, "## Resource Utilization")?;
    writeln!(out)?;
    let n = &s.nodes;
    if n.total > 0 {
        let others: Vec<String> = n
            .not_healthy
            .iter()
            .take(LIST_CAP)
            .map(|x| format!("{} {} (score {})", md(&x.name), x.state.as_str(), x.score))
            .collect();
        let more = n.not_healthy.len().saturating_sub(LIST_CAP);
        let tail = match (others.is_empty(), more) {
            (true, _) => String::new(),
            (false, 0) => format!("; {}", others.join(", ")),
            (false, m) => format!("; {} and {m} more", others.join(", ")),
        };
        writeln!(out, "- **Nodes**: {}/{} healthy{tail}", n.healthy, n.total)?;
    }
    if r.gpu_samples == 0 && r.node_samples == 0 {
        writeln!(out, "- No resource samples were recorded in the window.")?;
        return Ok(());
    }
    match &r.gpu {
        Some(g) => {
            writeln!(out, "- **GPU usage**:")?;
            writeln!(out, "  - Average: {}", pct(g.average_pct))?;
            writeln!(
                out,
                "  - Peak: {} ({})",
                pct(g.peak_pct),
                local_time(g.peak_at, tz, date)
            )?;
            let share = if g.gpus > 0 {
                g.idle.len() as f64 * 100.0 / g.gpus as f64
            } else {
                0.0
            };
            let mut line = format!(
                "  - Idle GPUs: {}/{} ({})",
                g.idle.len(),
                g.gpus,
                pct(share)
            );
            if !g.idle.is_empty() {
                let names: Vec<String> = g
                    .idle
                    .iter()
                    .take(LIST_CAP)
                    .map(|x| format!("{}:{}", md(&x.node), x.gpu))
                    .collect();
                line.push_str(&format!(" — {}", names.join(", ")));
                if g.idle.len() > LIST_CAP {
                    line.push_str(&format!(" and {} more", g.idle.len() - LIST_CAP));
                }
            }
            writeln!(out, "{line}")?;
        }
        None => writeln!(out, "- **GPU usage**: no GPU samples")?,
    }
    match &r.cpu {
        Some(c) => {
            writeln!(out, "- **CPU usage**:")?;
            writeln!(out, "  - Average: {}", pct(c.average_pct))?;
            writeln!(
                out,
                "  - Peak: {} ({})",
                pct(c.peak_pct),
                local_time(c.peak_at, tz, date)
            )?;
        }
        None => writeln!(out, "- **CPU usage**: no CPU figures")?,
    }
    let span = |from: DateTime<Utc>, to: DateTime<Utc>| {
        format!(
            "from {} to {} ({})",
            local_time(from, tz, date),
            local_time(to, tz, date),
            hours(to - from)
        )
    };
    if r.bottlenecks.is_empty() {
        writeln!(out, "- **Bottlenecks**: none")?;
    } else {
        writeln!(out, "- **Bottlenecks**:")?;
        capped(out, &r.bottlenecks, LIST_CAP, "  ", |b| {
            let node = b.node.as_deref().map(md).unwrap_or_default();
            match b.kind {
                BottleneckKind::AllGpusBusy => format!(
                    "All GPUs > {} {} (lowest {})",
                    pct(b.threshold),
                    span(b.from, b.to),
                    pct(b.extreme)
                ),
                BottleneckKind::CpuLoad => format!(
                    "{node}: load above its {} cores {} (peak load {:.1})",
                    b.threshold,
                    span(b.from, b.to),
                    b.extreme
                ),
                BottleneckKind::MemoryLow => format!(
                    "{node}: available memory < {} of total, too low to launch, {} (lowest {})",
                    pct(b.threshold),
                    span(b.from, b.to),
                    pct(b.extreme)
                ),
            }
        })?;
    }
    if r.idle_periods.is_empty() {
        writeln!(out, "- **Idle periods**: none")?;
    } else {
        writeln!(
            out,
            "- **Idle periods** (every GPU of a node < {}):",
            pct(GPU_IDLE_PCT)
        )?;
        capped(out, &r.idle_periods, LIST_CAP, "  ", |p| {
            format!("{}: idle {}", md(&p.node), span(p.from, p.to))
        })?;
    }
    if !r.nodes.is_empty() {
        let opt = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), pct);
        writeln!(out)?;
        writeln!(
            out,
            "| Node | GPUs | GPU avg | GPU peak | Idle GPUs | CPU avg | CPU peak |"
        )?;
        writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        for u in &r.nodes {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md(&u.node),
                u.gpus,
                opt(u.gpu_avg_pct),
                opt(u.gpu_peak_pct),
                u.idle_gpus,
                opt(u.cpu_avg_pct),
                opt(u.cpu_peak_pct)
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTML

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
font-size:14px;line-height:1.45;color:#1f2328;max-width:56em;margin:1em auto;padding:0 1em}\
h1{font-size:1.5em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}\
h2{font-size:1.2em;margin-top:1.4em;border-bottom:1px solid #eaeef2;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #d0d7de;padding:3px 8px}\
th{background:#f6f8fa}td{font-variant-numeric:tabular-nums}ul{padding-left:1.4em}\
code{background:#f6f8fa;padding:0 .2em;border-radius:3px}img{max-width:100%}";

/// The summary as a full HTML document: the Markdown converted with pulldown-cmark, a small
/// inline style sheet, and with `chart_cid` an `<img src="cid:…">` right under the Resource
/// Utilization heading. Raw HTML in the Markdown is never passed through.
pub fn render_html(s: &Summary, chart_cid: Option<&str>) -> String {
    use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

    let markdown = render_markdown(s);
    let img = chart_cid.map(|cid| {
        format!(
            "<p><img src=\"cid:{}\" alt=\"GPU utilisation\"></p>\n",
            escape_html(cid)
        )
    });
    let mut in_h2 = false;
    let mut h2_text = String::new();
    let mut events = Vec::new();
    for ev in Parser::new_ext(&markdown, Options::ENABLE_TABLES) {
        match &ev {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H2,
                ..
            }) => {
                in_h2 = true;
                h2_text.clear();
            }
            Event::Text(t) if in_h2 => h2_text.push_str(t),
            Event::End(TagEnd::Heading(HeadingLevel::H2)) => {
                in_h2 = false;
                events.push(ev);
                if h2_text == "Resource Utilization"
                    && let Some(img) = &img
                {
                    events.push(Event::Html(img.clone().into()));
                }
                continue;
            }
            _ => {}
        }
        events.push(match ev {
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            other => other,
        });
    }
    let mut body = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut body, events.into_iter());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape_html(&subject(s))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    const START: &str = "2026-11-21T23:55:00Z";
    const END: &str = "2026-11-22T23:55:00Z";
    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn run(id: &str, status: RunStatus, done: u32, total: u32) -> RunSnapshot {
        RunSnapshot {
            id: id.to_owned(),
            root: "/data/logs".to_owned(),
            runner: RunnerKind::Trainer,
            status,
            completed_epochs: done,
            total_epochs: Some(total),
            percentage: f64::from(done) * 100.0 / f64::from(total),
            early_stopped: false,
            eta_seconds: None,
            started_at: Some(t("2026-11-20T00:00:00Z")),
            last_update: Some(t("2026-11-21T00:00:00Z")),
            epoch_times: Vec::new(),
            error: None,
            process: None,
        }
    }

    fn node(name: &str, state: NodeState) -> NodeSnapshot {
        NodeSnapshot {
            name: name.to_owned(),
            state,
            score: if state == NodeState::Healthy { 100 } else { 20 },
            gpus: 8,
            alerts: Vec::new(),
        }
    }

    fn event(at: &str, kind: &str, subject: &str, severity: Severity, msg: &str) -> EventRecord {
        EventRecord {
            at: t(at),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            severity,
            message: msg.to_owned(),
        }
    }

    fn gpu(node: &str, idx: u32, at: DateTime<Utc>, util: f64) -> GpuSample {
        GpuSample {
            node: node.to_owned(),
            at,
            gpu: idx,
            utilization_pct: util,
            memory_used_mib: 1000,
            memory_total_mib: 80_000,
            temperature_c: Some(50.0),
            power_w: None,
            processes: None,
        }
    }

    fn node_sample(
        node: &str,
        at: DateTime<Utc>,
        cpu: f64,
        load1: f64,
        avail_pct: u64,
    ) -> NodeSample {
        NodeSample {
            node: node.to_owned(),
            at,
            cpu_pct: Some(cpu),
            load1,
            load5: load1,
            load15: load1,
            cores: 8,
            memory_available_bytes: avail_pct * 1_000_000_000,
            memory_total_bytes: 100_000_000_000,
        }
    }

    /// Every 5 minutes from 00:00 to 23:50 on the summary day.
    fn instants() -> Vec<DateTime<Utc>> {
        let first = t("2026-11-22T00:00:00Z");
        (0..288)
            .map(|i| first + TimeDelta::minutes(5 * i))
            .collect()
    }

    fn between(at: DateTime<Utc>, from: &str, to: &str) -> bool {
        t(from) <= at && at <= t(to)
    }

    struct Fx {
        tz: Tz,
        current: Snapshot,
        previous: Option<Snapshot>,
        events: Vec<EventRecord>,
        gpus: Vec<GpuSample>,
        nodes: Vec<NodeSample>,
    }

    impl Fx {
        fn new(runs: Vec<RunSnapshot>) -> Self {
            Fx {
                tz: chrono_tz::UTC,
                current: Snapshot {
                    taken_at: t(END),
                    runs,
                    nodes: vec![node("gpu1", NodeState::Healthy)],
                },
                previous: None,
                events: Vec::new(),
                gpus: Vec::new(),
                nodes: Vec::new(),
            }
        }

        fn previous(mut self, runs: Vec<RunSnapshot>) -> Self {
            self.previous = Some(Snapshot {
                taken_at: t(START),
                runs,
                nodes: self.current.nodes.clone(),
            });
            self
        }

        fn build(&self) -> Summary {
            build(&SummaryInput {
                date: day(),
                tz: self.tz,
                window_start: t(START),
                window_end: t(END),
                current: &self.current,
                previous: self.previous.as_ref(),
                events: &self.events,
                gpu_samples: &self.gpus,
                node_samples: &self.nodes,
                sample_interval: FIVE_MIN,
                long_running: DEFAULT_LONG_RUNNING,
            })
        }

        fn md(&self) -> String {
            render_markdown(&self.build())
        }
    }

    fn lines(md: &str) -> Vec<&str> {
        md.lines().collect()
    }

    fn has_line(md: &str, line: &str) -> bool {
        md.lines().any(|l| l == line)
    }

    #[track_caller]
    fn assert_line(md: &str, line: &str) {
        assert!(has_line(md, line), "missing line {line:?} in:\n{md}");
    }

    // --- experiment statistics ---

    #[test]
    fn counts_by_status_started_and_finished() {
        let mut fresh = run("new/started", RunStatus::Running, 2, 10);
        fresh.started_at = Some(t("2026-11-22T08:00:00Z"));
        let mut old_root = run("old/discovered", RunStatus::Running, 2, 10);
        old_root.started_at = Some(t("2026-10-01T00:00:00Z"));
        let mut done = run("a/done", RunStatus::Finished, 10, 10);
        done.last_update = Some(t("2026-11-22T09:30:00Z"));
        let mut unknown = run("u/x", RunStatus::Unknown, 0, 1);
        unknown.runner = RunnerKind::Unknown;
        let current = vec![
            fresh,
            old_root,
            run("r/1", RunStatus::Running, 3, 10),
            done.clone(),
            run("b/finished_long_ago", RunStatus::Finished, 10, 10),
            run("f/1", RunStatus::Failed, 1, 10),
            run("f/2", RunStatus::Failed, 1, 10),
            run("s/1", RunStatus::Stuck, 1, 10),
            run("o/1", RunStatus::Outdated, 10, 10),
            unknown.clone(),
        ];
        let previous = vec![
            run("r/1", RunStatus::Running, 3, 10),
            RunSnapshot {
                status: RunStatus::Running,
                ..done
            },
            run("b/finished_long_ago", RunStatus::Finished, 10, 10),
            run("f/1", RunStatus::Failed, 1, 10),
            run("f/2", RunStatus::Failed, 1, 10),
            run("s/1", RunStatus::Stuck, 1, 10),
            run("o/1", RunStatus::Outdated, 10, 10),
            unknown,
        ];
        let fx = Fx::new(current).previous(previous);
        let s = fx.build();
        assert_eq!(
            s.experiments.counts,
            StatusCounts {
                running: 3,
                finished: 2,
                stuck: 1,
                failed: 2,
                outdated: 1,
                unknown: 1
            }
        );
        let ids = |v: &[RunRef]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&s.experiments.started), ["new/started"]);
        assert_eq!(ids(&s.experiments.finished), ["a/done"]);
        assert!(s.experiments.newly_failed.is_empty());
        assert_eq!(s.experiments.still_failed, 2);
        assert!(s.experiments.newly_stuck.is_empty());
        let md = render_markdown(&s);
        assert_line(
            &md,
            "- **Runs tracked**: 10 — running 3, finished 2, stuck 1, failed 2, outdated 1, unknown 1",
        );
        assert_line(&md, "- **Started in window**: 1");
        assert_line(&md, "  - new/started (08:00)");
        assert_line(&md, "- **Finished in window**: 1");
        assert_line(&md, "  - a/done (09:30)");
        assert_line(
            &md,
            "- **Failed in window**: 0 (2 still failed from before)",
        );
        assert_eq!(
            headline(&s),
            Headline {
                running: 3,
                failed: 2,
                stuck: 1,
                finished_in_window: 1,
                nodes_unhealthy: 0
            }
        );
    }

    #[test]
    fn epoch_ranges_against_previous_snapshot() {
        let current = vec![
            run("a", RunStatus::Running, 19, 20),
            run("b", RunStatus::Running, 5, 100),
            run("c", RunStatus::Running, 3, 100),
            run("d", RunStatus::Running, 7, 100),
        ];
        let previous = vec![
            run("a", RunStatus::Running, 16, 20),
            run("b", RunStatus::Running, 4, 100),
            run("c", RunStatus::Running, 10, 100),
            run("d", RunStatus::Running, 7, 100),
        ];
        let s = Fx::new(current).previous(previous).build();
        assert_eq!(
            s.experiments.epochs,
            vec![
                EpochProgress {
                    id: "a".into(),
                    change: EpochChange::Completed {
                        // 16 → 19 completed: the directories epoch_16 to epoch_18.
                        ranges: vec![EpochRange {
                            first: 16,
                            last: 18
                        }]
                    }
                },
                EpochProgress {
                    id: "b".into(),
                    change: EpochChange::Completed {
                        ranges: vec![EpochRange { first: 4, last: 4 }]
                    }
                },
                EpochProgress {
                    id: "c".into(),
                    change: EpochChange::Restarted {
                        previous: 10,
                        current: 3
                    }
                },
            ]
        );
        let md = render_markdown(&s);
        assert_line(&md, "- **Epoch progress**: 3 runs");
        assert_line(&md, "  - a: completed epochs 16–18");
        assert_line(&md, "  - b: completed epoch 4");
        assert_line(&md, "  - c: restarted (completed epochs went from 10 to 3)");
        assert!(!md.contains("  - d:"), "{md}");
    }

    #[test]
    fn epoch_ranges_of_the_first_summary_come_from_epoch_times() {
        // Epochs 0–2 (epoch_0 … epoch_2) before the window, 3 and 5–6 inside, 4 completed
        // before the window too (out of order, e.g. a re-run epoch): "epochs 3, 5–6".
        let mut x = run("x", RunStatus::Running, 7, 10);
        x.epoch_times = vec![
            t("2026-11-21T10:00:00Z"),
            t("2026-11-21T12:00:00Z"),
            t("2026-11-21T23:55:00Z"), // exactly at the start: belongs to the previous window
            t("2026-11-22T01:00:00Z"),
            t("2026-11-21T20:00:00Z"),
            t("2026-11-22T05:00:00Z"),
            t("2026-11-22T23:55:00Z"), // exactly at the end: this window
        ];
        // Started in the window, epoch times unknown: all its epochs are new.
        let mut y = run("y", RunStatus::Running, 3, 10);
        y.started_at = Some(t("2026-11-22T02:00:00Z"));
        // Evaluators have no epochs to report.
        let mut e = run("ev", RunStatus::Finished, 1, 1);
        e.runner = RunnerKind::Evaluator;
        e.started_at = Some(t("2026-11-22T02:00:00Z"));
        let s = Fx::new(vec![x, y, e]).build();
        assert!(!s.has_previous);
        let md = render_markdown(&s);
        assert_line(
            &md,
            "First summary: no previous snapshot, changes are judged by their timestamps.",
        );
        assert_line(&md, "  - x: completed epochs 3, 5–6");
        assert_line(&md, "  - y: completed epochs 0–2");
        assert!(!md.contains("  - ev: completed"), "{md}");
    }

    #[test]
    fn compress_makes_ranges() {
        let r = |first, last| EpochRange { first, last };
        assert_eq!(
            compress(&[5, 3, 4, 9, 9, 1]),
            vec![r(1, 1), r(3, 5), r(9, 9)]
        );
        assert_eq!(compress(&[]), vec![]);
        assert_eq!(
            compress(&[u32::MAX, u32::MAX - 1]),
            vec![r(u32::MAX - 1, u32::MAX)]
        );
    }

    #[test]
    fn failure_reasons_first_line_truncated_and_still_failed_counted() {
        let mut oom = run("exp/oom", RunStatus::Failed, 5, 20);
        oom.error = Some(
            "\n  CUDA out of memory. Tried to allocate 2.00 GiB  \nTraceback (most recent call last):\n  File \"train.py\""
                .to_owned(),
        );
        oom.last_update = Some(t("2026-11-22T18:45:00Z"));
        // Unknown to the previous snapshot, failed in the window: judged by last_update.
        let mut long = run("exp/long", RunStatus::Failed, 0, 20);
        long.error = Some("é".repeat(500));
        long.last_update = Some(t("2026-11-22T03:00:00Z"));
        // Unknown before, but its last update is older than the window: not newly failed.
        let mut stale = run("exp/stale", RunStatus::Failed, 2, 20);
        stale.error = Some("old".to_owned());
        let mut still = run("exp/still", RunStatus::Failed, 1, 20);
        still.error = Some("segfault".to_owned());
        let mut silent = run("exp/silent", RunStatus::Failed, 3, 20);
        silent.last_update = Some(t("2026-11-22T04:00:00Z"));
        let fx = Fx::new(vec![oom, long, stale, still.clone(), silent]).previous(vec![
            run("exp/oom", RunStatus::Running, 4, 20),
            still,
            run("exp/silent", RunStatus::Stuck, 3, 20),
        ]);
        let s = fx.build();
        let failed = &s.experiments.newly_failed;
        assert_eq!(
            failed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["exp/long", "exp/silent", "exp/oom"]
        );
        assert_eq!(
            failed[2].reason.as_deref(),
            Some("CUDA out of memory. Tried to allocate 2.00 GiB")
        );
        let long_reason = failed[0].reason.as_deref().unwrap();
        assert_eq!(long_reason.chars().count(), REASON_MAX_CHARS + 1);
        assert!(long_reason.ends_with('…'));
        assert_eq!(s.experiments.still_failed, 2);
        let md = render_markdown(&s);
        assert_line(
            &md,
            "- **Failed in window**: 3 (2 still failed from before)",
        );
        assert_line(
            &md,
            "  - exp/oom (5/20 epochs): CUDA out of memory. Tried to allocate 2.00 GiB",
        );
        assert_line(&md, "  - exp/silent (3/20 epochs): no reason recorded");
        assert!(
            !md.contains("segfault") && !md.contains("Traceback"),
            "{md}"
        );
    }

    // --- progress overview ---

    #[test]
    fn near_completion_long_running_etas_and_overall_completion() {
        let mut near = run("near", RunStatus::Running, 19, 20);
        near.eta_seconds = Some(2 * 3600);
        let stuck = run("stuck-near", RunStatus::Stuck, 92, 100);
        let mut long = run("large_model", RunStatus::Running, 45, 100);
        long.started_at = Some(t("2026-11-12T23:55:00Z")); // 10 days before the window's end
        long.eta_seconds = Some(5 * 86_400);
        let mut six = run("six-days", RunStatus::Running, 10, 100);
        six.started_at = Some(t("2026-11-16T23:55:00Z"));
        let mut unknown = run("odd", RunStatus::Unknown, 0, 1);
        unknown.runner = RunnerKind::Unknown;
        let runs = vec![
            near,
            stuck,
            long,
            six,
            run("done", RunStatus::Finished, 20, 20),
            run("gone", RunStatus::Outdated, 20, 20),
            run("broken", RunStatus::Failed, 1, 20),
            run("starting", RunStatus::Running, 0, 20),
            unknown,
        ];
        let s = Fx::new(runs).build();
        let p = &s.progress;
        assert_eq!((p.complete, p.considered), (2, 8));
        assert_eq!(
            p.near_completion
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>(),
            ["near", "stuck-near"]
        );
        assert_eq!(
            p.long_running
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>(),
            ["large_model"]
        );
        let md = render_markdown(&s);
        assert_line(&md, "- **Overall completion**: 25% (2/8 runs)");
        assert_line(&md, "- **Near completion** (≥ 90%): 2");
        assert_line(&md, "  - near: 95% (19/20 epochs)");
        assert_line(&md, "  - stuck-near: 92% (92/100 epochs), stuck");
        assert_line(&md, "- **Long running** (> 7 days): 1");
        assert_line(&md, "  - large_model: running for 10 days, 45% complete");
        assert!(!md.contains("six-days: running for"), "{md}");
        assert_line(&md, "- **ETAs**: 2");
        assert_line(&md, "  - near: 2026-11-23 01:55 (in 2 h)");
        assert_line(&md, "  - large_model: 2026-11-27 23:55 (in 5 days)");
        let etas: Vec<usize> = ["  - near: 2026", "  - large_model: 2026-11-27"]
            .iter()
            .map(|l| md.find(l).unwrap())
            .collect();
        assert!(etas[0] < etas[1], "soonest first");
    }

    #[test]
    fn lists_are_capped() {
        let runs: Vec<RunSnapshot> = (0..25)
            .map(|i| run(&format!("near/{i:02}"), RunStatus::Running, 95, 100))
            .collect();
        let mut fx = Fx::new(runs);
        fx.events = (0..60)
            .map(|i| {
                let mut e = event(
                    "2026-11-22T10:00:00Z",
                    "node.alert_opened",
                    "gpu1",
                    Severity::Warning,
                    &format!("gpu1: alert {i}"),
                );
                e.at += TimeDelta::minutes(i);
                e
            })
            .collect();
        let md = fx.md();
        let near: Vec<&str> = lines(&md)
            .into_iter()
            .filter(|l| l.starts_with("  - near/"))
            .collect();
        assert_eq!(near.len(), LIST_CAP);
        assert_line(&md, "  - … and 5 more");
        let events = lines(&md)
            .into_iter()
            .filter(|l| l.contains("(node.alert_opened)"))
            .count();
        assert_eq!(events, EVENT_CAP);
        assert_line(&md, "- … and 10 more events (see `ugroctl events`)");
        // The structure keeps everything.
        assert_eq!(fx.build().key_events.len(), 60);
    }

    // --- key events ---

    #[test]
    fn key_events_are_filtered_ordered_and_marked() {
        let mut fx = Fx::new(vec![run("a", RunStatus::Running, 1, 10)]);
        fx.events = vec![
            event(
                "2026-11-22T18:45:00Z",
                "run.failed",
                "m3",
                Severity::Warning,
                "m3: failed after 3/10 epochs: CUDA out of memory",
            ),
            event(
                "2026-11-22T09:00:00Z",
                "run.discovered",
                "a",
                Severity::Info,
                "a: discovered",
            ),
            event(
                "2026-11-22T06:00:00Z",
                "daemon.started",
                "daemon",
                Severity::Info,
                "started (version 0.1.0)",
            ),
            event(
                "2026-11-22T14:15:00Z",
                "node.state_changed",
                "gpu2",
                Severity::Critical,
                "gpu2: healthy → unreachable (score 0): ssh failed",
            ),
            event(
                "2026-11-22T12:00:00Z",
                "disk.full",
                "gpu1",
                Severity::Critical,
                "gpu1: /data full",
            ),
        ];
        let s = fx.build();
        assert_eq!(
            s.key_events
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>(),
            [
                "daemon.started",
                "disk.full",
                "node.state_changed",
                "run.failed"
            ]
        );
        let md = render_markdown(&s);
        let body: Vec<&str> = lines(&md)
            .into_iter()
            .skip_while(|l| *l != "## Key Events")
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            body,
            [
                "- 06:00 — daemon: started (version 0.1.0) (daemon.started)",
                "- 12:00 — **critical** gpu1: /data full (disk.full)",
                "- 14:15 — **critical** gpu2: healthy → unreachable (score 0): ssh failed (node.state_changed)",
                "- 18:45 — m3: failed after 3/10 epochs: CUDA out of memory (run.failed)",
            ]
        );
    }

    #[test]
    fn times_follow_the_summary_timezone() {
        let mut fx = Fx::new(vec![run("a", RunStatus::Running, 1, 10)]);
        fx.events = vec![
            event(
                "2026-11-21T23:58:00Z",
                "daemon.unclean_stop",
                "daemon",
                Severity::Warning,
                "daemon: crashed",
            ),
            event(
                "2026-11-22T13:05:00Z",
                "root.missing",
                "/data",
                Severity::Warning,
                "/data: root missing",
            ),
        ];
        let utc = fx.md();
        assert_line(&utc, "Window: 2026-11-21 23:55 → 2026-11-22 23:55 (UTC)");
        assert_line(
            &utc,
            "- 2026-11-21 23:58 — daemon: crashed (daemon.unclean_stop)",
        );
        assert_line(&utc, "- 13:05 — /data: root missing (root.missing)");
        fx.tz = chrono_tz::Europe::Berlin;
        let berlin = fx.md();
        assert_line(
            &berlin,
            "Window: 2026-11-22 00:55 → 2026-11-23 00:55 (Europe/Berlin)",
        );
        assert_line(&berlin, "- 00:58 — daemon: crashed (daemon.unclean_stop)");
        assert_line(&berlin, "- 14:05 — /data: root missing (root.missing)");
    }

    // --- resources ---

    /// Two nodes × two GPUs every 5 minutes all day; `busy(at)` decides 95 % vs 50 %.
    fn gpu_day(
        busy: impl Fn(DateTime<Utc>) -> bool,
        skip: impl Fn(DateTime<Utc>) -> bool,
    ) -> Vec<GpuSample> {
        let mut v = Vec::new();
        for at in instants().into_iter().filter(|at| !skip(*at)) {
            for n in ["gpu1", "gpu2"] {
                for i in 0..2 {
                    // Samples of one round are a few seconds apart, as real ones are.
                    let at = at + TimeDelta::seconds(i64::from(i) * 3);
                    v.push(gpu(n, i, at, if busy(at) { 95.0 } else { 50.0 }));
                }
            }
        }
        v
    }

    fn bottleneck_lines(md: &str) -> Vec<String> {
        lines(md)
            .into_iter()
            .skip_while(|l| !l.starts_with("- **Bottlenecks**"))
            .take_while(|l| !l.starts_with("- **Idle periods**"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn all_gpus_busy_for_more_than_an_hour_is_a_bottleneck() {
        let mut fx = Fx::new(vec![]);
        fx.gpus = gpu_day(
            |at| between(at, "2026-11-22T14:00:00Z", "2026-11-22T16:30:59Z"),
            |_| false,
        );
        let s = fx.build();
        assert_eq!(s.resources.bottlenecks.len(), 1);
        let b = &s.resources.bottlenecks[0];
        assert_eq!(
            (b.kind, b.from),
            (BottleneckKind::AllGpusBusy, t("2026-11-22T14:00:00Z"))
        );
        assert_eq!(
            bottleneck_lines(&render_markdown(&s)),
            [
                "- **Bottlenecks**:",
                "  - All GPUs > 90% from 14:00 to 16:30 (2.5 h) (lowest 95%)"
            ]
        );
    }

    #[test]
    fn fifty_minutes_busy_or_one_gpu_below_is_no_bottleneck() {
        let mut fx = Fx::new(vec![]);
        fx.events = vec![event(
            "2026-11-22T01:00:00Z",
            "run.stuck",
            "a",
            Severity::Warning,
            "a: stuck",
        )];
        fx.gpus = gpu_day(
            |at| between(at, "2026-11-22T14:00:00Z", "2026-11-22T14:50:59Z"),
            |_| false,
        );
        assert_eq!(bottleneck_lines(&fx.md()), ["- **Bottlenecks**: none"]);

        fx.gpus = gpu_day(
            |at| between(at, "2026-11-22T14:00:00Z", "2026-11-22T16:30:59Z"),
            |_| false,
        );
        for s in fx
            .gpus
            .iter_mut()
            .filter(|s| s.node == "gpu2" && s.gpu == 1)
        {
            s.utilization_pct = 89.0;
        }
        assert!(fx.build().resources.bottlenecks.is_empty());
    }

    #[test]
    fn a_gap_in_samples_ends_an_interval() {
        // Busy 14:00–16:30, but nothing sampled 15:00–15:20 (25 min > 2 × 5 min): 14:00–14:55
        // (55 min) is too short, 15:25–16:30 (65 min) is reported.
        let mut fx = Fx::new(vec![]);
        fx.gpus = gpu_day(
            |at| between(at, "2026-11-22T14:00:00Z", "2026-11-22T16:30:59Z"),
            |at| between(at, "2026-11-22T15:00:00Z", "2026-11-22T15:20:59Z"),
        );
        assert_eq!(
            bottleneck_lines(&fx.md()),
            [
                "- **Bottlenecks**:",
                "  - All GPUs > 90% from 15:25 to 16:30 (1.1 h) (lowest 95%)"
            ]
        );
        // One missed round (10 min apart) does not break it.
        fx.gpus = gpu_day(
            |at| between(at, "2026-11-22T14:00:00Z", "2026-11-22T16:30:59Z"),
            |at| between(at, "2026-11-22T15:00:00Z", "2026-11-22T15:00:59Z"),
        );
        assert_eq!(
            bottleneck_lines(&fx.md())[1],
            "  - All GPUs > 90% from 14:00 to 16:30 (2.5 h) (lowest 95%)"
        );
    }

    #[test]
    fn cpu_load_above_cores_for_more_than_an_hour() {
        let mut fx = Fx::new(vec![]);
        for at in instants() {
            let hot1 = between(at, "2026-11-22T10:00:00Z", "2026-11-22T11:30:00Z");
            let hot2 = between(at, "2026-11-22T10:00:00Z", "2026-11-22T10:40:00Z");
            fx.nodes.push(node_sample(
                "gpu1",
                at,
                50.0,
                if hot1 { 12.0 } else { 4.0 },
                50,
            ));
            fx.nodes.push(node_sample(
                "gpu2",
                at,
                30.0,
                if hot2 { 9.0 } else { 8.0 },
                50,
            ));
        }
        // A brief spike inside the stretch raises its peak.
        fx.nodes.push(node_sample(
            "gpu1",
            t("2026-11-22T10:32:00Z"),
            99.0,
            15.5,
            50,
        ));
        let s = fx.build();
        assert_eq!(
            bottleneck_lines(&render_markdown(&s)),
            [
                "- **Bottlenecks**:",
                "  - gpu1: load above its 8 cores from 10:00 to 11:30 (1.5 h) (peak load 15.5)"
            ]
        );
        let md = render_markdown(&s);
        assert_line(&md, "- **GPU usage**: no GPU samples");
        // The spike shares the 10:30 bucket with both nodes' 10:30 samples: (50 + 30 + 99) / 3.
        assert_line(&md, "  - Peak: 59.7% (10:30)");
        assert_line(&md, "| gpu1 | 0 | – | – | 0 | 50.2% | 99% |");
    }

    #[test]
    fn memory_too_low_to_launch() {
        let mut fx = Fx::new(vec![]);
        for at in instants() {
            let low = between(at, "2026-11-22T02:00:00Z", "2026-11-22T03:30:00Z");
            let avail = if low {
                if at == t("2026-11-22T03:00:00Z") {
                    3
                } else {
                    5
                }
            } else {
                40
            };
            fx.nodes.push(node_sample("gpu3", at, 20.0, 1.0, avail));
            // 10 % exactly is not below 10 %.
            fx.nodes.push(node_sample("gpu4", at, 20.0, 1.0, 10));
        }
        assert_eq!(
            bottleneck_lines(&fx.md()),
            [
                "- **Bottlenecks**:",
                "  - gpu3: available memory < 10% of total, too low to launch, from 02:00 to 03:30 (1.5 h) (lowest 3%)"
            ]
        );
    }

    #[test]
    fn idle_gpus_averages_peaks_and_idle_periods() {
        let mut fx = Fx::new(vec![]);
        // Five nodes × four GPUs; all of n5's GPUs idle all day (4/20), the rest at 60 %
        // except a 80 % round at 12:00.
        for at in instants() {
            for n in 1..=5 {
                for i in 0..4 {
                    let util = match (n, at == t("2026-11-22T12:00:00Z")) {
                        (5, _) => 2.0,
                        (_, true) => 80.0,
                        _ => 60.0,
                    };
                    fx.gpus.push(gpu(&format!("n{n}"), i, at, util));
                }
            }
        }
        // Something must happen, or the window is quiet and shows no resources.
        fx.events = vec![event(
            "2026-11-22T01:00:00Z",
            "run.stuck",
            "a",
            Severity::Warning,
            "a: stuck",
        )];
        let s = fx.build();
        let g = s.resources.gpu.as_ref().unwrap();
        assert_eq!((g.gpus, g.idle.len()), (20, 4));
        assert!(g.idle.iter().all(|x| x.node == "n5"));
        assert_eq!(g.peak_at, t("2026-11-22T12:00:00Z"));
        assert!((g.peak_pct - (16.0 * 80.0 + 4.0 * 2.0) / 20.0).abs() < 1e-9);
        let md = render_markdown(&s);
        assert_line(&md, "  - Idle GPUs: 4/20 (20%) — n5:0, n5:1, n5:2, n5:3");
        assert_line(&md, "  - Peak: 64.4% (12:00)");
        assert_line(&md, "- **Idle periods** (every GPU of a node < 5%):");
        assert_line(&md, "  - n5: idle from 00:00 to 23:55 (23.9 h)");
        assert_line(&md, "| n5 | 4 | 2% | 2% | 4 | – | – |");
        assert_line(&md, "| n1 | 4 | 60.1% | 80% | 0 | – | – |");
        assert_line(&md, "- **CPU usage**: no CPU figures");
    }

    #[test]
    fn no_samples_is_one_line() {
        let mut fx = Fx::new(vec![run("a", RunStatus::Running, 2, 10)]);
        fx.events = vec![event(
            "2026-11-22T01:00:00Z",
            "run.stuck",
            "a",
            Severity::Warning,
            "a: stuck",
        )];
        let md = fx.md();
        let section: Vec<&str> = lines(&md)
            .into_iter()
            .skip_while(|l| *l != "## Resource Utilization")
            .collect();
        assert_eq!(
            section,
            [
                "## Resource Utilization",
                "",
                "- **Nodes**: 1/1 healthy",
                "- No resource samples were recorded in the window."
            ]
        );
    }

    // --- whole document ---

    fn busy_fixture() -> Fx {
        let mut a = run("exp/a", RunStatus::Running, 5, 10);
        a.started_at = Some(t("2026-11-22T01:00:00Z"));
        let mut fx = Fx::new(vec![a, run("exp/b", RunStatus::Failed, 2, 10)]).previous(vec![]);
        fx.current.nodes.push(node("gpu2", NodeState::Unreachable));
        fx.events = vec![event(
            "2026-11-22T14:15:00Z",
            "run.stuck",
            "exp/b",
            Severity::Warning,
            "exp/b: stuck",
        )];
        fx.gpus = gpu_day(|_| false, |_| false);
        fx.nodes = instants()
            .into_iter()
            .map(|at| node_sample("gpu1", at, 40.0, 1.0, 50))
            .collect();
        fx
    }

    #[test]
    fn sections_in_order_each_once() {
        let md = busy_fixture().md();
        let headings: Vec<&str> = lines(&md)
            .into_iter()
            .filter(|l| l.starts_with('#'))
            .collect();
        assert_eq!(
            headings,
            [
                "# Daily Summary — 2026-11-22",
                "## Experiment Statistics",
                "## Key Events",
                "## Progress Overview",
                "## Resource Utilization"
            ]
        );
        assert_eq!(
            lines(&md)[2],
            "Window: 2026-11-21 23:55 → 2026-11-22 23:55 (UTC)"
        );
        assert_line(&md, "- **Nodes**: 1/2 healthy; gpu2 unreachable (score 20)");
    }

    #[test]
    fn quiet_window_is_one_line_without_headings() {
        let runs = vec![
            run("a", RunStatus::Running, 5, 10),
            run("b", RunStatus::Failed, 2, 10),
        ];
        let mut fx = Fx::new(runs.clone()).previous(runs);
        fx.current.nodes.push(node("gpu2", NodeState::Degraded));
        // Info events of other kinds are not notable; samples alone do not make a window busy.
        fx.events = vec![event(
            "2026-11-22T03:00:00Z",
            "root.scanned",
            "/data",
            Severity::Info,
            "scanned",
        )];
        fx.gpus = gpu_day(|_| false, |_| false);
        let s = fx.build();
        assert!(s.quiet);
        let md = render_markdown(&s);
        assert_eq!(
            lines(&md),
            [
                "# Daily Summary — 2026-11-22",
                "",
                "Window: 2026-11-21 23:55 → 2026-11-22 23:55 (UTC)",
                "",
                "Quiet window: no run started, finished or failed, no new epochs and no notable \
                 events; 2 runs tracked (1 failed), 1/2 nodes healthy."
            ]
        );
        assert!(subject(&s).starts_with("[ugro] 2026-11-22 — 1 running, 1 failed"));

        // One new epoch is enough to make it a full summary.
        fx.current.runs[0].completed_epochs = 6;
        let s = fx.build();
        assert!(!s.quiet);
        assert!(render_markdown(&s).contains("## Resource Utilization"));
    }

    #[test]
    fn subject_has_date_and_headline_counts() {
        let mut runs: Vec<RunSnapshot> = (0..12)
            .map(|i| run(&format!("r{i}"), RunStatus::Running, 1, 10))
            .collect();
        runs.extend((0..3).map(|i| run(&format!("f{i}"), RunStatus::Failed, 1, 10)));
        let mut fx = Fx::new(runs.clone()).previous(runs);
        fx.current.nodes.push(node("gpu2", NodeState::Unhealthy));
        fx.current.nodes.push(node("gpu3", NodeState::Degraded));
        assert_eq!(
            subject(&fx.build()),
            "[ugro] 2026-11-22 — 12 running, 3 failed, 1 node unhealthy"
        );
        fx.current.nodes.push(node("gpu4", NodeState::Unreachable));
        fx.current.runs[0].status = RunStatus::Finished;
        fx.current.runs[1].status = RunStatus::Stuck;
        assert_eq!(
            subject(&fx.build()),
            "[ugro] 2026-11-22 — 10 running, 1 finished, 3 failed, 1 stuck, 2 nodes unhealthy"
        );
    }

    #[test]
    fn html_has_headings_table_and_the_chart() {
        let mut fx = busy_fixture();
        fx.events.push(event(
            "2026-11-22T15:00:00Z",
            "daemon.task_failed",
            "daemon",
            Severity::Critical,
            "daemon: <script>alert(1)</script> & friends",
        ));
        let s = fx.build();
        let html = render_html(&s, Some("gpu-chart@ugro"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<style>"));
        assert!(html.contains(&format!("<title>{}</title>", escape_html(&subject(&s)))));
        for h in [
            "<h1>Daily Summary — 2026-11-22</h1>",
            "<h2>Experiment Statistics</h2>",
            "<h2>Key Events</h2>",
            "<h2>Progress Overview</h2>",
            "<h2>Resource Utilization</h2>",
        ] {
            assert!(html.contains(h), "{h} missing in {html}");
        }
        assert!(html.contains(
            "<h2>Resource Utilization</h2>\n<p><img src=\"cid:gpu-chart@ugro\" alt=\"GPU utilisation\"></p>"
        ));
        assert!(html.contains("<table>"));
        assert!(html.contains("<strong>critical</strong>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends"));
        assert!(!render_html(&s, None).contains("<img"));
    }

    #[test]
    fn markdown_is_commonmark_and_text_stays_literal() {
        use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag};

        let mut weird = run("1. exp/*star*_[x](y)<b>", RunStatus::Running, 95, 100);
        weird.started_at = Some(t("2026-11-22T01:00:00Z"));
        let mut fx = busy_fixture();
        fx.current.runs.push(weird);
        let md = fx.md();
        let events: Vec<Event> = Parser::new_ext(&md, Options::ENABLE_TABLES).collect();
        let count = |f: &dyn Fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
        assert_eq!(
            count(&|e| matches!(
                e,
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H1,
                    ..
                })
            )),
            1
        );
        assert_eq!(
            count(&|e| matches!(
                e,
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H2,
                    ..
                })
            )),
            4
        );
        assert_eq!(count(&|e| matches!(e, Event::Start(Tag::Table(_)))), 1);
        for bad in [
            count(&|e| matches!(e, Event::Start(Tag::Emphasis))),
            count(&|e| matches!(e, Event::Start(Tag::Link { .. }))),
            count(&|e| matches!(e, Event::Html(_) | Event::InlineHtml(_))),
            count(&|e| matches!(e, Event::Start(Tag::List(Some(_))))),
        ] {
            assert_eq!(bad, 0, "{md}");
        }
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        assert!(text.contains("1. exp/*star*_[x](y)<b> (01:00)"), "{text}");
    }

    #[test]
    fn control_characters_from_logs_are_neutralised_in_markdown_and_html() {
        let mut red = run("exp/\u{1b}]0;title\u{7}red", RunStatus::Failed, 5, 20);
        red.error = Some("\u{1b}[31mred\u{7} alert\u{9b}2J\r done\u{7f}".to_owned());
        red.last_update = Some(t("2026-11-22T18:45:00Z"));
        let mut fx = Fx::new(vec![red]).previous(vec![run("exp/x", RunStatus::Running, 4, 20)]);
        fx.events.push(event(
            "2026-11-22T18:46:00Z",
            "run.failed",
            "exp/red",
            Severity::Warning,
            "failed: \u{1b}[2Jcleared",
        ));
        let s = fx.build();
        let md = render_markdown(&s);
        let html = render_html(&s, None);
        for (what, text) in [("markdown", &md), ("html", &html)] {
            let raw: Vec<char> = text
                .chars()
                .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
                .collect();
            assert!(raw.is_empty(), "{what} holds raw controls {raw:?}:\n{text}");
        }
        assert!(md.contains("\\u{1b}\\[31mred\\u{7} alert\\u{9b}2J"), "{md}");
        assert!(md.contains("\\u{1b}\\[2Jcleared"), "{md}");
        assert!(html.contains("\\u{1b}[31mred\\u{7} alert"), "{html}");
        assert_eq!(
            neutralise_controls("tab\tand\nnewline"),
            "tab\tand\nnewline"
        );
        assert!(matches!(neutralise_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(neutralise_controls("a\u{0}b\u{1b}"), "a\\u{0}b\\u{1b}");
    }

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

    #[test]
    fn a_day_of_a_large_cluster() {
        // 2,000 runs; 20 nodes × 8 GPUs every 5 minutes; the figures stay exact.
        let runs: Vec<RunSnapshot> = (0..2000)
            .map(|i| run(&format!("exp/{i}"), RunStatus::Running, i % 100 + 1, 100))
            .collect();
        let prev: Vec<RunSnapshot> = (0..2000)
            .map(|i| run(&format!("exp/{i}"), RunStatus::Running, i % 100, 100))
            .collect();
        let mut fx = Fx::new(runs).previous(prev);
        for at in instants() {
            for n in 0..20 {
                let name = format!("node{n:02}");
                for g in 0..8 {
                    fx.gpus
                        .push(gpu(&name, g, at, if n == 0 { 1.0 } else { 95.0 }));
                }
                fx.nodes.push(node_sample(&name, at, 50.0, 2.0, 50));
            }
        }
        let s = fx.build();
        let g = s.resources.gpu.as_ref().unwrap();
        assert_eq!((g.gpus, g.idle.len()), (160, 8));
        assert_eq!(s.experiments.epochs.len(), 2000);
        assert_eq!(
            s.resources.nodes.len(),
            21,
            "20 sampled + gpu1 of the snapshot"
        );
        assert_eq!(s.resources.idle_periods.len(), 1);
        let md = render_markdown(&s);
        assert_line(
            &md,
            "  - Idle GPUs: 8/160 (5%) — node00:0, node00:1, node00:2, node00:3, node00:4, node00:5, node00:6, node00:7",
        );
    }
}
