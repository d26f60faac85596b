//! Status rules: running, stuck, finished, outdated or failed, from activity, `now` and the stall
//! window.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Evaluation, RunStatus, RunnerKind};

/// The stall window is at least this many median epochs ([`stall_window`]).
pub const STALL_EPOCHS: u32 = 3;

/// The thresholds of the status rules (a root's `stall_after` / `outdated_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRules {
    pub stall_after: Duration,
    pub outdated_after: Duration,
}

impl Default for StatusRules {
    /// The config defaults: 30 minutes and 30 days.
    fn default() -> Self {
        StatusRules {
            stall_after: Duration::from_secs(30 * 60),
            outdated_after: Duration::from_secs(30 * 86_400),
        }
    }
}

/// How long a run may stay quiet and still count as running: `stall_after`, widened to
/// [`STALL_EPOCHS`] × the median epoch time when that is longer.
pub fn stall_window(rules: &StatusRules, median_epoch: Option<Duration>) -> Duration {
    let widened = median_epoch
        .map(|m| m.checked_mul(STALL_EPOCHS).unwrap_or(Duration::MAX))
        .unwrap_or_default();
    rules.stall_after.max(widened)
}

/// How long ago `t` was; a time in the future (clock skew) is 0 ago.
fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

/// A run's status, in order: unknown kind → unknown; running — the last activity
/// ([`Evaluation::last_activity`]) is within the [`stall_window`]; finished — complete, or
/// outdated instead when the newest artifact is older than `outdated_after`; stuck — a live
/// process belongs to the run; failed — otherwise.
pub fn status(
    e: &Evaluation,
    rules: &StatusRules,
    has_process: bool,
    now: DateTime<Utc>,
) -> RunStatus {
    if e.kind == RunnerKind::Unknown {
        return RunStatus::Unknown;
    }
    let window = stall_window(rules, e.median_epoch);
    if e.last_activity.is_some_and(|t| age(now, t) <= window) {
        return RunStatus::Running;
    }
    if e.complete {
        if e.newest_artifact
            .is_some_and(|t| age(now, t) > rules.outdated_after)
        {
            return RunStatus::Outdated;
        }
        return RunStatus::Finished;
    }
    if has_process {
        RunStatus::Stuck
    } else {
        RunStatus::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::fixtures::*;
    use crate::runs::{CONFIG_JSON, EVALUATOR_SCORES, evaluate};
    use chrono::TimeDelta;
    use serde_json::json;

    #[test]
    fn fresh_log_is_running() {
        let v = trainer(3, 10).file("train_val_0.log", 100, 3 * H).build();
        let e = evaluate(&v, None);
        assert_eq!(e.last_activity, Some(at(3 * H)));
        assert_eq!(
            status(&e, &rules(), false, at(3 * H + 600)),
            RunStatus::Running
        );
        // Even when complete: activity comes first.
        let v = trainer(10, 10).file("train_val_0.log", 100, 10 * H).build();
        let e = evaluate(&v, None);
        assert_eq!(
            status(&e, &rules(), false, at(10 * H + 60)),
            RunStatus::Running
        );
    }

    #[test]
    fn newest_of_several_logs_counts() {
        let v = trainer(3, 10)
            .file("train_val_0.log", 100, H)
            .file("train_val_1.log", 100, 3 * H)
            .file("eval_9.log", 100, 4 * H)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(e.newest_log.as_ref().unwrap().0, "train_val_1.log");
    }

    #[test]
    fn complete_and_quiet_is_finished() {
        let v = trainer(10, 10).file("train_val_0.log", 100, 10 * H).build();
        let e = evaluate(&v, None);
        // 1 h epochs: the stall window is 3 h.
        assert_eq!(
            status(&e, &rules(), false, at(13 * H + 1)),
            RunStatus::Finished
        );
        // A leftover process does not make a complete run stuck.
        assert_eq!(
            status(&e, &rules(), true, at(13 * H + 1)),
            RunStatus::Finished
        );
    }

    #[test]
    fn aged_complete_is_outdated() {
        let v = trainer(10, 10).file("train_val_0.log", 100, 10 * H).build();
        let e = evaluate(&v, None);
        assert_eq!(e.newest_artifact, Some(at(10 * H)));
        let now = at(10 * H) + TimeDelta::days(31);
        assert_eq!(status(&e, &rules(), false, now), RunStatus::Outdated);
        let now = at(10 * H) + TimeDelta::days(29);
        assert_eq!(status(&e, &rules(), false, now), RunStatus::Finished);
    }

    #[test]
    fn live_process_and_quiet_log_is_stuck() {
        let v = trainer(3, 10).file("train_val_0.log", 100, 3 * H).build();
        let e = evaluate(&v, None);
        // 1 h epochs: the stall window is 3 h.
        assert_eq!(status(&e, &rules(), true, at(6 * H)), RunStatus::Running);
        assert_eq!(status(&e, &rules(), true, at(6 * H + 1)), RunStatus::Stuck);
    }

    #[test]
    fn nothing_is_failed() {
        let v = trainer(3, 10).file("train_val_0.log", 100, 3 * H).build();
        let e = evaluate(&v, None);
        assert_eq!(
            status(&e, &rules(), false, at(6 * H + 1)),
            RunStatus::Failed
        );
        // No log at all.
        let v = trainer(3, 10).build();
        let e = evaluate(&v, None);
        assert_eq!(e.newest_log, None);
        assert_eq!(status(&e, &rules(), false, at(3 * H)), RunStatus::Failed);
    }

    #[test]
    fn wrong_log_name_is_not_running() {
        let v = trainer(3, 10).file("training.log", 100, 3 * H).build();
        let e = evaluate(&v, None);
        assert_eq!(e.newest_log, None);
        assert_eq!(e.last_activity, None);
        assert_eq!(
            status(&e, &rules(), false, at(3 * H + 60)),
            RunStatus::Failed
        );
        assert_eq!(status(&e, &rules(), true, at(3 * H + 60)), RunStatus::Stuck);
    }

    #[test]
    fn evaluator_uses_eval_logs() {
        let v = B::default()
            .json_err(EVALUATOR_SCORES, 0, H, "empty")
            .file("train_val_0.log", 100, 2 * H)
            .file("eval_0.log", 100, H)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(e.newest_log.as_ref().unwrap().0, "eval_0.log");
        assert_eq!(status(&e, &rules(), false, at(H + 60)), RunStatus::Running);
        assert_eq!(
            status(&e, &rules(), false, at(2 * H + 60)),
            RunStatus::Failed
        );
    }

    #[test]
    fn evaluator_complete_is_finished_then_outdated() {
        let v = B::default()
            .json(EVALUATOR_SCORES, H, json!({"acc": 0.9}))
            .file("eval_0.log", 100, H)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(status(&e, &rules(), false, at(3 * H)), RunStatus::Finished);
        assert_eq!(
            status(&e, &rules(), false, at(H) + TimeDelta::days(40)),
            RunStatus::Outdated
        );
    }

    #[test]
    fn slow_epochs_widen_the_stall_window() {
        // Median epoch 2 h, stall_after 30 min, log quiet for 1 h: still running.
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 10}))
            .epochs(4, 0, 2 * H)
            .file("train_val_0.log", 100, 8 * H)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(e.median_epoch, Some(Duration::from_secs(2 * 3600)));
        assert_eq!(status(&e, &rules(), false, at(9 * H)), RunStatus::Running);
        // Quiet for longer than 3 median epochs: not running any more.
        assert_eq!(
            status(&e, &rules(), false, at(14 * H + 1)),
            RunStatus::Failed
        );
        // The same quiet hour with 10-minute epochs is a stall.
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 10}))
            .epochs(4, 0, 600)
            .file("train_val_0.log", 100, 2400)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(status(&e, &rules(), false, at(2400 + H)), RunStatus::Failed);
    }

    #[test]
    fn stall_window_is_max_of_rule_and_three_epochs() {
        let r = rules();
        assert_eq!(stall_window(&r, None), r.stall_after);
        assert_eq!(
            stall_window(&r, Some(Duration::from_secs(60))),
            r.stall_after
        );
        assert_eq!(
            stall_window(&r, Some(Duration::from_secs(2 * 3600))),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(stall_window(&r, Some(Duration::MAX)), Duration::MAX);
    }

    #[test]
    fn unknown_kind_has_unknown_status() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({}))
            .file("run.log", 10, H)
            .build();
        let e = evaluate(&v, Some(10));
        assert_eq!(e.kind, RunnerKind::Unknown);
        assert!(e.diagnostic.is_some());
        assert_eq!(e.newest_log.as_ref().unwrap().0, "run.log");
        assert_eq!(e.newest_artifact, Some(at(H)));
        for has_process in [false, true] {
            assert_eq!(
                status(&e, &rules(), has_process, at(H + 1)),
                RunStatus::Unknown
            );
        }
    }

    #[test]
    fn future_mtime_counts_as_active() {
        let v = trainer(3, 10).file("train_val_0.log", 100, 5 * H).build();
        let e = evaluate(&v, None);
        assert_eq!(status(&e, &rules(), false, at(4 * H)), RunStatus::Running);
    }
}
