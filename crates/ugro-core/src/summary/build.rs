//! Building a summary from its input: run changes, key events, progress overview, node health,
//! bottlenecks and idle periods.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::event::EventKind;
use crate::health::{NodeState, Severity};
use crate::runs::{RunStatus, RunnerKind};
use crate::sample::NodeSample;

use super::{
    Bottleneck, BottleneckKind, CpuUsage, EpochChange, EpochProgress, EpochRange, Eta, EventRecord,
    ExperimentStats, FailedRun, GpuRef, GpuUsage, IdlePeriod, LongRunning, NearCompletion,
    NodeHealth, NodeRef, NodeUsage, ProgressOverview, ResourceUtilization, RunRef, RunSnapshot,
    Snapshot, Summary, SummaryInput,
};

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

/// Event kinds that always appear under Key Events (besides any warning or critical event).
pub const KEY_EVENT_KINDS: [EventKind; 13] = [
    EventKind::RunStuck,
    EventKind::RunOutdated,
    EventKind::RunFailed,
    EventKind::NodeStateChanged,
    EventKind::NodeMonitorDisconnected,
    EventKind::NodeMonitorReconnected,
    EventKind::DaemonUncleanStop,
    EventKind::DaemonStarted,
    EventKind::DaemonTaskFailed,
    EventKind::RootMissing,
    EventKind::RootBack,
    EventKind::RootWatchFallback,
    EventKind::EmailGivenUp,
];

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
        && resources.bottlenecks.is_empty()
        && resources.queued.is_empty();
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
pub(super) fn first_line(s: &str, max: usize) -> Option<String> {
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
        .filter(|e| {
            e.severity >= Severity::Warning || KEY_EVENT_KINDS.iter().any(|k| k.as_str() == e.kind)
        })
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
        queued: input.current.queued.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::summary::fixtures::*;
    use crate::summary::{EVENT_CAP, Headline, LIST_CAP, StatusCounts, headline, render_markdown};

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
                    EventKind::NodeAlertOpened,
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

    #[test]
    fn key_events_are_filtered_ordered_and_marked() {
        let mut fx = Fx::new(vec![run("a", RunStatus::Running, 1, 10)]);
        fx.events = vec![
            event(
                "2026-11-22T18:45:00Z",
                EventKind::RunFailed,
                "m3",
                Severity::Warning,
                "m3: failed after 3/10 epochs: CUDA out of memory",
            ),
            event(
                "2026-11-22T09:00:00Z",
                EventKind::RunDiscovered,
                "a",
                Severity::Info,
                "a: discovered",
            ),
            event(
                "2026-11-22T06:00:00Z",
                EventKind::DaemonStarted,
                "daemon",
                Severity::Info,
                "started (version 0.1.0)",
            ),
            event(
                "2026-11-22T14:15:00Z",
                EventKind::NodeStateChanged,
                "gpu2",
                Severity::Critical,
                "gpu2: healthy → unreachable (score 0): ssh failed",
            ),
            event(
                "2026-11-22T12:00:00Z",
                EventKind::StoreCorrupt,
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
                "store.corrupt",
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
                "- 12:00 — **critical** gpu1: /data full (store.corrupt)",
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
                EventKind::DaemonUncleanStop,
                "daemon",
                Severity::Warning,
                "daemon: crashed",
            ),
            event(
                "2026-11-22T13:05:00Z",
                EventKind::RootMissing,
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

    fn queued(id: &str, reason: &str, submitted: &str) -> crate::slurm::QueuedJob {
        crate::slurm::QueuedJob {
            job_id: id.into(),
            name: format!("train-{id}"),
            user: "ana".into(),
            partition: "gpu".into(),
            submitted: t(submitted),
            reason: reason.into(),
        }
    }

    #[test]
    fn queued_experiments_are_bottlenecks_with_their_reason() {
        let mut fx = Fx::new(vec![]);
        assert_eq!(
            bottleneck_lines(&fx.md()),
            Vec::<String>::new(),
            "no samples, nothing queued"
        );
        fx.current.queued = vec![
            queued("41", "Resources", "2026-11-22T20:55:00Z"),
            queued("42", "JobHeldUser", "2026-11-22T23:25:00Z"),
        ];
        let s = fx.build();
        assert!(!s.quiet, "a queue is not a quiet day");
        assert_eq!(
            bottleneck_lines(&render_markdown(&s)),
            [
                "- **Bottlenecks**:",
                "  - Experiments queued: job 41 \"train-41\" (ana, partition gpu) pending for 3 h: Resources",
                "  - Experiments queued: job 42 \"train-42\" (ana, partition gpu) pending for 30 min: JobHeldUser",
            ]
        );
        // With samples, after the other bottlenecks.
        fx.gpus = gpu_day(
            |at| between(at, "2026-11-22T14:00:00Z", "2026-11-22T16:30:59Z"),
            |_| false,
        );
        let lines = bottleneck_lines(&fx.md());
        assert_eq!(lines[0], "- **Bottlenecks**:");
        assert!(lines.last().unwrap().contains("job 42"), "{lines:?}");
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
            EventKind::RunStuck,
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
            EventKind::RunStuck,
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
            EventKind::RunStuck,
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
