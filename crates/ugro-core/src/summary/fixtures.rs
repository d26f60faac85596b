//! Test fixtures shared by the summary modules' unit tests: times, runs, nodes, events, samples and
//! the `Fx` input builder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::*;
use crate::event::EventKind;
use crate::health::{NodeState, Severity};
use crate::runs::{RunStatus, RunnerKind};
use crate::sample::{GpuSample, NodeSample};

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

pub(super) const START: &str = "2026-11-21T23:55:00Z";
pub(super) const END: &str = "2026-11-22T23:55:00Z";
pub(super) const FIVE_MIN: Duration = Duration::from_secs(300);

pub(super) fn run(id: &str, status: RunStatus, done: u32, total: u32) -> RunSnapshot {
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

pub(super) fn node(name: &str, state: NodeState) -> NodeSnapshot {
    NodeSnapshot {
        name: name.to_owned(),
        state,
        score: if state == NodeState::Healthy { 100 } else { 20 },
        gpus: 8,
        alerts: Vec::new(),
    }
}

pub(super) fn event(
    at: &str,
    kind: EventKind,
    subject: &str,
    severity: Severity,
    msg: &str,
) -> EventRecord {
    EventRecord {
        at: t(at),
        kind: kind.as_str().to_owned(),
        subject: subject.to_owned(),
        severity,
        message: msg.to_owned(),
    }
}

pub(super) fn gpu(node: &str, idx: u32, at: DateTime<Utc>, util: f64) -> GpuSample {
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

pub(super) fn node_sample(
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
pub(super) fn instants() -> Vec<DateTime<Utc>> {
    let first = t("2026-11-22T00:00:00Z");
    (0..288)
        .map(|i| first + TimeDelta::minutes(5 * i))
        .collect()
}

pub(super) fn between(at: DateTime<Utc>, from: &str, to: &str) -> bool {
    t(from) <= at && at <= t(to)
}

pub(super) struct Fx {
    pub(super) tz: Tz,
    pub(super) current: Snapshot,
    pub(super) previous: Option<Snapshot>,
    pub(super) events: Vec<EventRecord>,
    pub(super) gpus: Vec<GpuSample>,
    pub(super) nodes: Vec<NodeSample>,
}

impl Fx {
    pub(super) fn new(runs: Vec<RunSnapshot>) -> Self {
        Fx {
            tz: chrono_tz::UTC,
            current: Snapshot {
                taken_at: t(END),
                runs,
                nodes: vec![node("gpu1", NodeState::Healthy)],
                queued: Vec::new(),
            },
            previous: None,
            events: Vec::new(),
            gpus: Vec::new(),
            nodes: Vec::new(),
        }
    }

    pub(super) fn previous(mut self, runs: Vec<RunSnapshot>) -> Self {
        self.previous = Some(Snapshot {
            taken_at: t(START),
            runs,
            nodes: self.current.nodes.clone(),
            queued: Vec::new(),
        });
        self
    }

    pub(super) fn build(&self) -> Summary {
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

    pub(super) fn md(&self) -> String {
        render_markdown(&self.build())
    }
}

pub(super) fn lines(md: &str) -> Vec<&str> {
    md.lines().collect()
}

pub(super) fn has_line(md: &str, line: &str) -> bool {
    md.lines().any(|l| l == line)
}

#[track_caller]
pub(super) fn assert_line(md: &str, line: &str) {
    assert!(has_line(md, line), "missing line {line:?} in:\n{md}");
}

/// Two nodes × two GPUs every 5 minutes all day; `busy(at)` decides 95 % vs 50 %.
pub(super) fn gpu_day(
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

pub(super) fn busy_fixture() -> Fx {
    let mut a = run("exp/a", RunStatus::Running, 5, 10);
    a.started_at = Some(t("2026-11-22T01:00:00Z"));
    let mut fx = Fx::new(vec![a, run("exp/b", RunStatus::Failed, 2, 10)]).previous(vec![]);
    fx.current.nodes.push(node("gpu2", NodeState::Unreachable));
    fx.events = vec![event(
        "2026-11-22T14:15:00Z",
        EventKind::RunStuck,
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
