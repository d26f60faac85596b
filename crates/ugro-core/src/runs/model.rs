//! Run layout names (the files a runner writes, `progress.json` keys and statuses) and the run
//! kinds and statuses.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The files every completed trainer epoch (`epoch_N/`) holds.
pub const TRAINER_EXPECTED: [&str; 3] = [
    "training_losses.pt",
    "optimizer_buffer.json",
    "validation_scores.json",
];

/// The file an evaluator writes when it is done; its presence makes a run an evaluator.
pub const EVALUATOR_SCORES: &str = "evaluation_scores.json";

/// A run's configuration; a trainer's has `epochs`.
pub const CONFIG_JSON: &str = "config.json";

/// Self-reported progress (generic runs), or a trainer's early-stop record.
pub const PROGRESS_JSON: &str = "progress.json";

/// The per-epoch scores file of a trainer.
pub const VALIDATION_SCORES: &str = "validation_scores.json";

/// Keys of `progress.json` that make a run "self-reporting" (a generic run). One is enough.
pub const GENERIC_PROGRESS_KEYS: [&str; 5] = [
    "mission_current",
    "mission_total",
    "progress_percent",
    "status",
    "eta_seconds",
];

/// `progress.json` `status` values meaning the run completed.
pub const STATUS_DONE: [&str; 6] = [
    "completed",
    "complete",
    "done",
    "finished",
    "success",
    "succeeded",
];

/// `progress.json` `status` values meaning the run stopped without completing.
pub const STATUS_STOPPED: [&str; 12] = [
    "failed",
    "failure",
    "error",
    "errored",
    "crashed",
    "interrupted",
    "aborted",
    "cancelled",
    "canceled",
    "killed",
    "stopped",
    "terminated",
];

/// What wrote a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerKind {
    Trainer,
    Evaluator,
    Generic,
    Unknown,
}

impl RunnerKind {
    pub const ALL: [RunnerKind; 4] = [
        RunnerKind::Trainer,
        RunnerKind::Evaluator,
        RunnerKind::Generic,
        RunnerKind::Unknown,
    ];

    /// The name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerKind::Trainer => "trainer",
            RunnerKind::Evaluator => "evaluator",
            RunnerKind::Generic => "generic",
            RunnerKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<RunnerKind> {
        RunnerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The glob of the logs whose changes mean the run is active (see
    /// [`is_log_of`](super::is_log_of)).
    pub fn log_pattern(self) -> &'static str {
        match self {
            RunnerKind::Trainer => "train_val*.log",
            RunnerKind::Evaluator => "eval_*.log",
            RunnerKind::Generic | RunnerKind::Unknown => "*.log",
        }
    }
}

impl fmt::Display for RunnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's status (docs/run-layouts.md "Status").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Stuck,
    Failed,
    Outdated,
    Unknown,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Finished,
        RunStatus::Stuck,
        RunStatus::Failed,
        RunStatus::Outdated,
        RunStatus::Unknown,
    ];

    /// The name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Stuck => "stuck",
            RunStatus::Failed => "failed",
            RunStatus::Outdated => "outdated",
            RunStatus::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Failed or stuck: the states for which the daemon reads the log tail
    /// ([`classify_failure`](super::classify_failure)).
    pub fn needs_failure_reason(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Stuck)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::FailureKind;
    use serde_json::json;

    #[test]
    fn enums_round_trip_names_and_serde() {
        for k in RunnerKind::ALL {
            assert_eq!(RunnerKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for f in FailureKind::ALL {
            assert_eq!(FailureKind::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), json!(f.as_str()));
        }
        assert_eq!(RunnerKind::parse("Trainer"), None);
        assert_eq!(RunStatus::parse("done"), None);
        assert_eq!(
            serde_json::to_value(FailureKind::CudaOom).unwrap(),
            json!("cuda_oom")
        );
        assert!(RunStatus::Stuck.needs_failure_reason());
        assert!(!RunStatus::Finished.needs_failure_reason());
    }
}
