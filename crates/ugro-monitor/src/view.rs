//! The daemon's own records of nodes, runs, alerts and events (ugro-core types inside; the run
//! record's JSON is also what the store keeps) and their conversion into ugro-api's wire types:
//! the one place the daemon's types meet the protocol, so a renamed field here or in ugro-core
//! is a compile error in this file, never a silent change of a `/v1` body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ugro_core::health::{CheckName, CheckResult, NodeState, Outcome, Severity};
use ugro_core::parse::GpuReading;
use ugro_core::runs::{Progress, RunStatus, RunnerKind};

/// One significant happening, as stored in the events table.
#[derive(Debug, Clone, PartialEq)]
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

/// One node's health as the health supervisor keeps it (served by `/v1/nodes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The state shown was restored from the database and no sweep has run since this daemon
    /// started.
    #[serde(default)]
    pub restored: bool,
}

fn unknown_state() -> NodeState {
    NodeState::Unknown
}

/// An open alert of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: Severity,
    pub message: String,
    pub since: DateTime<Utc>,
}

/// One run as the run tracker keeps it; its JSON is the row the store keeps for the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id: its path relative to its root (`NAME:RELPATH` when another root holds it).
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
    /// Completion time of each epoch (only filled for `GET /v1/runs/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<EpochTime>,
    /// Served from the database; the disk has not been re-read since the daemon started.
    #[serde(default)]
    pub restored: bool,
    /// Its root is missing: this is the last state seen, not re-read nor re-judged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochTime {
    pub epoch: u32,
    pub completed_at: DateTime<Utc>,
}

/// The process a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProcess {
    pub node: String,
    pub pid: u32,
    pub user: String,
    pub cmd: String,
    pub start_time: Option<DateTime<Utc>>,
    /// The GPUs the run's processes on this node compute on; empty when none or unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<RunGpu>,
    /// The container the process runs in, when its runtime on the node knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<RunContainer>,
}

/// The container a run's process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunContainer {
    pub id: String,
    pub name: String,
    pub image: String,
}

/// One GPU a run's process computes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGpu {
    pub uuid: String,
    /// The GPU's index on its node, when the node's GPU readings name it.
    pub index: Option<u32>,
    /// The process on that GPU.
    pub pid: u32,
    pub used_memory_mib: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Into the wire types. Every field is named on both sides: a field renamed or added on either
// side fails to compile here.

pub fn severity(s: Severity) -> ugro_api::Severity {
    match s {
        Severity::Info => ugro_api::Severity::Info,
        Severity::Warning => ugro_api::Severity::Warning,
        Severity::Critical => ugro_api::Severity::Critical,
    }
}

pub fn node_state(s: NodeState) -> ugro_api::NodeState {
    match s {
        NodeState::Healthy => ugro_api::NodeState::Healthy,
        NodeState::Degraded => ugro_api::NodeState::Degraded,
        NodeState::Unhealthy => ugro_api::NodeState::Unhealthy,
        NodeState::Unreachable => ugro_api::NodeState::Unreachable,
        NodeState::Unknown => ugro_api::NodeState::Unknown,
    }
}

pub fn check_name(c: CheckName) -> ugro_api::CheckName {
    match c {
        CheckName::Ssh => ugro_api::CheckName::Ssh,
        CheckName::Latency => ugro_api::CheckName::Latency,
        CheckName::Gpu => ugro_api::CheckName::Gpu,
        CheckName::Pytorch => ugro_api::CheckName::Pytorch,
        CheckName::Disk => ugro_api::CheckName::Disk,
        CheckName::Memory => ugro_api::CheckName::Memory,
        CheckName::Load => ugro_api::CheckName::Load,
    }
}

pub fn outcome(o: Outcome) -> ugro_api::Outcome {
    match o {
        Outcome::Pass => ugro_api::Outcome::Pass,
        Outcome::Fail => ugro_api::Outcome::Fail,
        Outcome::Skipped => ugro_api::Outcome::Skipped,
        Outcome::Hung => ugro_api::Outcome::Hung,
    }
}

pub fn runner_kind(k: RunnerKind) -> ugro_api::RunnerKind {
    match k {
        RunnerKind::Trainer => ugro_api::RunnerKind::Trainer,
        RunnerKind::Evaluator => ugro_api::RunnerKind::Evaluator,
        RunnerKind::Generic => ugro_api::RunnerKind::Generic,
        RunnerKind::Unknown => ugro_api::RunnerKind::Unknown,
    }
}

pub fn run_status(s: RunStatus) -> ugro_api::RunStatus {
    match s {
        RunStatus::Running => ugro_api::RunStatus::Running,
        RunStatus::Finished => ugro_api::RunStatus::Finished,
        RunStatus::Stuck => ugro_api::RunStatus::Stuck,
        RunStatus::Failed => ugro_api::RunStatus::Failed,
        RunStatus::Outdated => ugro_api::RunStatus::Outdated,
        RunStatus::Unknown => ugro_api::RunStatus::Unknown,
    }
}

pub fn check(c: &CheckResult) -> ugro_api::CheckResult {
    let CheckResult {
        name,
        outcome: o,
        value,
        threshold,
        message,
        duration_ms,
        warning: _,
    } = c;
    ugro_api::CheckResult {
        name: check_name(*name),
        passed: o.passed(),
        status: outcome(*o),
        value: value.clone(),
        threshold: threshold.clone(),
        message: message.clone(),
        duration_ms: *duration_ms,
        warning: c.is_warning(),
    }
}

pub fn gpu(g: &GpuReading) -> ugro_api::GpuReading {
    let GpuReading {
        index,
        uuid,
        name,
        temperature_c,
        utilization_pct,
        memory_used_mib,
        memory_total_mib,
        power_w,
        ecc_uncorrected,
    } = g;
    ugro_api::GpuReading {
        index: *index,
        uuid: uuid.clone(),
        name: name.clone(),
        temperature_c: *temperature_c,
        utilization_pct: *utilization_pct,
        memory_used_mib: *memory_used_mib,
        memory_total_mib: *memory_total_mib,
        power_w: *power_w,
        ecc_uncorrected: *ecc_uncorrected,
    }
}

pub fn progress(p: &Progress) -> ugro_api::Progress {
    let Progress {
        completed_epochs,
        total_epochs,
        percentage,
        early_stopped,
        early_stopped_at_epoch,
        best_score,
        latest_score,
        rate_per_hour,
        eta_seconds,
    } = p;
    ugro_api::Progress {
        completed_epochs: *completed_epochs,
        total_epochs: *total_epochs,
        percentage: *percentage,
        early_stopped: *early_stopped,
        early_stopped_at_epoch: *early_stopped_at_epoch,
        best_score: best_score.clone(),
        latest_score: latest_score.clone(),
        rate_per_hour: *rate_per_hour,
        eta_seconds: *eta_seconds,
    }
}

impl From<&Alert> for ugro_api::Alert {
    fn from(a: &Alert) -> Self {
        let Alert {
            severity: s,
            message,
            since,
        } = a;
        ugro_api::Alert {
            severity: severity(*s),
            message: message.clone(),
            since: *since,
        }
    }
}

impl From<&Event> for ugro_api::Event {
    fn from(e: &Event) -> Self {
        let Event {
            id,
            time,
            kind,
            subject,
            severity: s,
            message,
        } = e;
        ugro_api::Event {
            id: *id,
            time: *time,
            kind: kind.clone(),
            subject: subject.clone(),
            severity: severity(*s),
            message: message.clone(),
        }
    }
}

impl From<&NodeHealth> for ugro_api::NodeHealth {
    fn from(n: &NodeHealth) -> Self {
        let NodeHealth {
            name,
            host,
            state,
            healthy,
            observed,
            score,
            last_check,
            next_check,
            checks,
            alerts,
            gpus,
            interval_seconds,
            restored,
        } = n;
        ugro_api::NodeHealth {
            name: name.clone(),
            host: host.clone(),
            state: node_state(*state),
            healthy: *healthy,
            observed: node_state(*observed),
            score: *score,
            last_check: *last_check,
            next_check: *next_check,
            checks: checks.iter().map(check).collect(),
            alerts: alerts.iter().map(Into::into).collect(),
            gpus: gpus.iter().map(gpu).collect(),
            interval_seconds: *interval_seconds,
            restored: *restored,
        }
    }
}

impl From<&EpochTime> for ugro_api::EpochTime {
    fn from(e: &EpochTime) -> Self {
        let EpochTime {
            epoch,
            completed_at,
        } = e;
        ugro_api::EpochTime {
            epoch: *epoch,
            completed_at: *completed_at,
        }
    }
}

impl From<&RunGpu> for ugro_api::RunGpu {
    fn from(g: &RunGpu) -> Self {
        let RunGpu {
            uuid,
            index,
            pid,
            used_memory_mib,
        } = g;
        ugro_api::RunGpu {
            uuid: uuid.clone(),
            index: *index,
            pid: *pid,
            used_memory_mib: *used_memory_mib,
        }
    }
}

impl From<&RunProcess> for ugro_api::RunProcess {
    fn from(p: &RunProcess) -> Self {
        let RunProcess {
            node,
            pid,
            user,
            cmd,
            start_time,
            gpus,
            container,
        } = p;
        ugro_api::RunProcess {
            node: node.clone(),
            pid: *pid,
            user: user.clone(),
            cmd: cmd.clone(),
            start_time: *start_time,
            gpus: gpus.iter().map(Into::into).collect(),
            container: container.as_ref().map(|c| {
                let RunContainer { id, name, image } = c;
                ugro_api::RunContainer {
                    id: id.clone(),
                    name: name.clone(),
                    image: image.clone(),
                }
            }),
        }
    }
}

impl From<&RunInfo> for ugro_api::RunInfo {
    fn from(r: &RunInfo) -> Self {
        let RunInfo {
            id,
            root,
            work_dir,
            runner,
            status,
            progress: p,
            last_log_update,
            last_artifact_update,
            process,
            error,
            diagnostic,
            error_excerpt,
            log,
            epochs,
            restored,
            stale,
        } = r;
        ugro_api::RunInfo {
            id: id.clone(),
            root: root.clone(),
            work_dir: work_dir.clone(),
            runner: runner_kind(*runner),
            status: run_status(*status),
            progress: progress(p),
            last_log_update: *last_log_update,
            last_artifact_update: *last_artifact_update,
            process: process.as_ref().map(Into::into),
            error: error.clone(),
            diagnostic: diagnostic.clone(),
            error_excerpt: error_excerpt.clone(),
            log: log.clone(),
            logs: Vec::new(),
            epochs: epochs.iter().map(Into::into).collect(),
            restored: *restored,
            stale: *stale,
            slurm: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A node with every kind of check result (pass, a warning, a failure, skipped, hung), an
    /// alert and a GPU reading, in the JSON the daemon served before the wire types were its
    /// own.
    fn node() -> serde_json::Value {
        let check = |name: &str, passed: serde_json::Value, status: &str| {
            json!({"name": name, "passed": passed, "status": status, "value": 1.5,
                   "threshold": {"max": 2}, "message": "m", "duration_ms": 7})
        };
        let mut warn = check("load", json!(false), "fail");
        warn["warning"] = json!(true);
        json!({
            "name": "gpu01", "host": "gpu01:22", "state": "degraded", "healthy": false,
            "observed": "unhealthy", "score": 61,
            "last_check": "2026-12-01T10:00:00Z", "next_check": null,
            "checks": [check("ssh", json!(true), "pass"), warn, check("gpu", json!(false), "fail"),
                       check("pytorch", json!(null), "skipped"), check("disk", json!(false), "hung")],
            "alerts": [{"severity": "critical", "message": "gpu: lost", "since": "2026-12-01T09:00:00Z"}],
            "gpus": [{"index": 0, "uuid": "GPU-1", "name": "A100", "temperature_c": 40.0,
                      "utilization_pct": null, "memory_used_mib": 1.0, "memory_total_mib": 80.0,
                      "power_w": null, "ecc_uncorrected": 0}],
            "interval_seconds": 60, "restored": true
        })
    }

    fn run() -> serde_json::Value {
        json!({
            "id": "a/b", "root": "/r", "work_dir": "/r/a/b", "runner": "trainer",
            "status": "stuck",
            "progress": {"completed_epochs": 2, "total_epochs": 10, "percentage": 20.0,
                         "early_stopped": true, "early_stopped_at_epoch": 1,
                         "best_score": {"val.acc": 0.5}, "latest_score": null,
                         "rate_per_hour": 3.0, "eta_seconds": 9600},
            "last_log_update": "2026-12-01T10:00:00Z", "last_artifact_update": null,
            "process": {"node": "gpu01", "pid": 42, "user": "lab", "cmd": "python train.py",
                        "start_time": null,
                        "gpus": [{"uuid": "GPU-1", "index": 0, "pid": 42, "used_memory_mib": 100}]},
            "error": "stalled", "diagnostic": null, "error_excerpt": "x", "log": "train_val_0.log",
            "epochs": [{"epoch": 0, "completed_at": "2026-12-01T09:00:00Z"}],
            "restored": false, "stale": true
        })
    }

    /// Converting into the wire types changes nothing the daemon served before: the wire JSON
    /// of a node and of a run (every optional part present) is what the daemon's own records
    /// serialise to.
    #[test]
    fn wire_json_is_what_the_daemon_served() {
        let n: NodeHealth = serde_json::from_value(node()).unwrap();
        let wire = serde_json::to_value(ugro_api::NodeHealth::from(&n)).unwrap();
        assert_eq!(wire, node());
        let r: RunInfo = serde_json::from_value(run()).unwrap();
        let wire = serde_json::to_value(ugro_api::RunInfo::from(&r)).unwrap();
        assert_eq!(wire, run());
        // And the client reads it back as the daemon meant it.
        let back: ugro_api::NodeHealth = serde_json::from_value(node()).unwrap();
        assert!(back.checks[1].is_warning());
        assert_eq!(back.checks[4].status, ugro_api::Outcome::Hung);
    }

    /// The wire words of the daemon's enums are the protocol's: every value of every enum
    /// converts to the value the protocol spells the same way.
    #[test]
    fn enum_words_match_the_protocol() {
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(severity(s).as_str(), s.as_str());
        }
        for s in [
            NodeState::Healthy,
            NodeState::Degraded,
            NodeState::Unhealthy,
            NodeState::Unreachable,
            NodeState::Unknown,
        ] {
            assert_eq!(node_state(s).as_str(), s.as_str());
        }
        for c in CheckName::ALL {
            assert_eq!(check_name(c).as_str(), c.as_str());
        }
        for o in [
            Outcome::Pass,
            Outcome::Fail,
            Outcome::Skipped,
            Outcome::Hung,
        ] {
            assert_eq!(outcome(o).as_str(), o.as_str());
        }
        for k in RunnerKind::ALL {
            assert_eq!(runner_kind(k).as_str(), k.as_str());
        }
        for s in RunStatus::ALL {
            assert_eq!(run_status(s).as_str(), s.as_str());
        }
    }
}
