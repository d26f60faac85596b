//! Progress and evaluation: a run's epochs, scores, rate, ETA and diagnostics, for each runner
//! kind.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::detect::json_note;
use super::failure::truncate_chars;
use super::scores::merge_best;
use super::{
    CONFIG_JSON, EVALUATOR_SCORES, FileInfo, PROGRESS_JSON, RunView, RunnerKind, STATUS_DONE,
    STATUS_STOPPED, Scores, VALIDATION_SCORES, completed_epochs, detect, epoch_completion_times,
    epoch_gap, flatten_scores, median_epoch_duration,
};

/// A run's progress, as in the `runs` JSON (`progress`). For generic runs the unit of
/// `completed_epochs`/`total_epochs`/`rate_per_hour` is whatever the run counts (missions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
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

/// Everything the status rules and the `runs` JSON need to know about one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub kind: RunnerKind,
    pub progress: Progress,
    pub complete: bool,
    /// Unknown runs: the detection diagnostic. Other kinds: notable problems (total epochs
    /// unknown, a gap before a later epoch, an empty or corrupt scores file, …).
    pub diagnostic: Option<String>,
    /// The newest log of the kind's pattern, `logs/*.log` or the root's globs
    /// ([`is_run_log`](super::is_run_log)): its tail explains failures.
    pub newest_log: Option<(String, FileInfo)>,
    /// The newest change that counts as activity: `newest_log`, and for generic runs also
    /// `progress.json` unless its `status` is terminal ([`STATUS_DONE`], [`STATUS_STOPPED`]).
    pub last_activity: Option<DateTime<Utc>>,
    /// Trainer: newest file in any epoch dir; evaluator: `evaluation_scores.json`; generic:
    /// `progress.json`; unknown: newest file of the run dir.
    pub newest_artifact: Option<DateTime<Utc>>,
    /// Trainer: [`median_epoch_duration`] of the completed epochs.
    pub median_epoch: Option<Duration>,
}

fn as_u32(v: &Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    let x = v.as_f64()?;
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX)).then_some(x as u32)
}

fn as_nonneg_f64(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite() && *x >= 0.0)
}

fn secs_u64(x: f64) -> Option<u64> {
    (x.is_finite() && x >= 0.0 && x < u64::MAX as f64).then_some(x.round() as u64)
}

fn positive(n: Option<u32>) -> Option<u32> {
    n.filter(|n| *n > 0)
}

fn non_empty(s: Scores) -> Option<Scores> {
    (!s.is_empty()).then_some(s)
}

/// Detection, progress, completeness, scores, rate and ETA of one run.
///
/// - Trainer: completed epochs per [`completed_epochs`]; total from `config.json` `epochs` (a
///   positive integer), else `root_epochs`; percentage completed/total×100 capped at 100 (0 when
///   the total is unknown); complete when completed ≥ total, or when `progress.json` says
///   `early_stopped: true` (percentage 100, `early_stopped_at_epoch` as written there); latest
///   score from the last completed epoch's `validation_scores.json`, best per key over all
///   completed epochs; rate = 3600 / median epoch seconds; ETA = remaining epochs × median.
/// - Evaluator: complete iff `evaluation_scores.json` is non-empty valid JSON; then
///   completed 1 / total 1 / 100 % and best = latest = its scores, else 0 / 1 / 0 %.
/// - Generic (`progress.json`): completed from `mission_current` (else `completed_epochs`), total
///   from `mission_total` (else `total_epochs`); percentage from `progress_percent` (clamped),
///   else completed/total; complete when `status` is one of [`STATUS_DONE`] (case-insensitive),
///   or, without a `status`, when completed ≥ total > 0 or the percentage reaches 100;
///   `eta_seconds` as reported, else from the rate (`rate_per_hour`, or `rate_per_sec` /
///   `rate_missions_per_sec` × 3600).
///
/// Complete runs always report percentage 100 and ETA 0.
pub fn evaluate(view: &RunView, root_epochs: Option<u32>) -> Evaluation {
    let detection = detect(view);
    let kind = detection.kind;
    let mut diags: Vec<String> = detection.diagnostic.into_iter().collect();
    let mut progress = Progress::default();
    let mut complete = false;
    let mut median_epoch = None;
    let newest_artifact: Option<DateTime<Utc>>;
    let mut progress_json_is_heartbeat = false;

    match kind {
        RunnerKind::Trainer => {
            let done = completed_epochs(view);
            progress.completed_epochs = done;
            let config_epochs = view.json_obj(CONFIG_JSON).and_then(|c| c.get("epochs"));
            let from_config = positive(config_epochs.and_then(as_u32));
            if let Some(v) = config_epochs
                && from_config.is_none()
                && !v.is_null()
            {
                diags.push(format!(
                    "{CONFIG_JSON} \"epochs\" is not a positive integer ({v})"
                ));
            }
            let total = from_config.or(positive(root_epochs));
            progress.total_epochs = total;
            if total.is_none() {
                diags.push(format!(
                    "total epochs unknown: {CONFIG_JSON} has no usable \"epochs\" and the root sets none"
                ));
            }
            if let Some(gap) = trainer_gap_note(view, done) {
                diags.push(gap);
            } else if let Some(note) = unreadable_frontier_note(view, done) {
                diags.push(note);
            }
            if let Some(p) = view.json_obj(PROGRESS_JSON)
                && p.get("early_stopped").and_then(Value::as_bool) == Some(true)
            {
                progress.early_stopped = true;
                progress.early_stopped_at_epoch = p.get("early_stopped_at_epoch").and_then(as_u32);
            }
            complete = progress.early_stopped || total.is_some_and(|t| done >= t);
            progress.percentage = match total {
                Some(t) => (f64::from(done) / f64::from(t) * 100.0).min(100.0),
                None => 0.0,
            };
            let mut latest = view.completed.latest.clone();
            let mut best = view.completed.best.clone();
            for scores in (view.completed.count()..done)
                .filter_map(|i| view.epochs.get(&i))
                .filter_map(|e| e.json.get(VALIDATION_SCORES))
                .filter_map(|r| r.as_ref().ok())
                .map(flatten_scores)
            {
                merge_best(&mut best, &scores);
                latest = scores;
            }
            progress.latest_score = non_empty(latest);
            progress.best_score = non_empty(best);
            median_epoch = median_epoch_duration(&epoch_completion_times(view, done));
            if let Some(m) = median_epoch
                && !m.is_zero()
            {
                progress.rate_per_hour = Some(3600.0 / m.as_secs_f64());
                if let Some(t) = total {
                    progress.eta_seconds =
                        secs_u64(f64::from(t.saturating_sub(done)) * m.as_secs_f64());
                }
            }
            newest_artifact = view.completed.newest_artifact.max(
                view.epochs
                    .values()
                    .flat_map(|e| e.files.values())
                    .map(|f| f.mtime)
                    .max(),
            );
        }
        RunnerKind::Evaluator => {
            let scores_ok = view.files.get(EVALUATOR_SCORES).is_some_and(|f| f.size > 0);
            let parsed = view.json_ok(EVALUATOR_SCORES);
            complete = scores_ok && parsed.is_some();
            if !scores_ok {
                diags.push(format!("{EVALUATOR_SCORES} is empty"));
            } else if let Some(n) = json_note(view, EVALUATOR_SCORES)
                && parsed.is_none()
            {
                diags.push(n);
            }
            progress.total_epochs = Some(1);
            if complete {
                progress.completed_epochs = 1;
                let scores = parsed.map(flatten_scores).and_then(non_empty);
                progress.best_score = scores.clone();
                progress.latest_score = scores;
            }
            newest_artifact = view.files.get(EVALUATOR_SCORES).map(|f| f.mtime);
        }
        RunnerKind::Generic => {
            if let Some(p) = view.json_obj(PROGRESS_JSON) {
                let current = p
                    .get("mission_current")
                    .or_else(|| p.get("completed_epochs"))
                    .and_then(as_u32)
                    .unwrap_or(0);
                let total = positive(
                    p.get("mission_total")
                        .or_else(|| p.get("total_epochs"))
                        .and_then(as_u32),
                );
                progress.completed_epochs = current;
                progress.total_epochs = total;
                let ratio = total.map(|t| (f64::from(current) / f64::from(t) * 100.0).min(100.0));
                progress.percentage = p
                    .get("progress_percent")
                    .and_then(Value::as_f64)
                    .filter(|x| x.is_finite())
                    .map(|x| x.clamp(0.0, 100.0))
                    .or(ratio)
                    .unwrap_or(0.0);
                let status = p
                    .get("status")
                    .and_then(Value::as_str)
                    .map(|s| s.trim().to_lowercase());
                complete = match &status {
                    Some(s) => STATUS_DONE.contains(&s.as_str()),
                    None => total.is_some_and(|t| current >= t) || progress.percentage >= 100.0,
                };
                progress_json_is_heartbeat = !status
                    .as_deref()
                    .is_some_and(|s| STATUS_DONE.contains(&s) || STATUS_STOPPED.contains(&s));
                if p.get("early_stopped").and_then(Value::as_bool) == Some(true) {
                    progress.early_stopped = true;
                    progress.early_stopped_at_epoch =
                        p.get("early_stopped_at_epoch").and_then(as_u32);
                    complete = true;
                }
                progress.rate_per_hour =
                    p.get("rate_per_hour").and_then(as_nonneg_f64).or_else(|| {
                        p.get("rate_per_sec")
                            .or_else(|| p.get("rate_missions_per_sec"))
                            .and_then(as_nonneg_f64)
                            .map(|r| r * 3600.0)
                    });
                progress.eta_seconds = p
                    .get("eta_seconds")
                    .and_then(as_nonneg_f64)
                    .and_then(secs_u64)
                    .or_else(|| {
                        let rate = progress.rate_per_hour.filter(|r| *r > 0.0)?;
                        let left = f64::from(total?.saturating_sub(current));
                        secs_u64(left / rate * 3600.0)
                    });
            }
            newest_artifact = view.files.get(PROGRESS_JSON).map(|f| f.mtime);
        }
        RunnerKind::Unknown => {
            newest_artifact = view.files.values().map(|f| f.mtime).max();
        }
    }
    if complete {
        progress.percentage = 100.0;
        progress.eta_seconds = Some(0);
    }

    let newest_log = view
        .files
        .iter()
        .filter(|(name, _)| super::is_run_log(kind, &view.log_globs, name))
        .max_by(|a, b| a.1.mtime.cmp(&b.1.mtime).then_with(|| a.0.cmp(b.0)))
        .map(|(n, f)| (n.clone(), f.clone()));
    let mut last_activity = newest_log.as_ref().map(|(_, f)| f.mtime);
    if progress_json_is_heartbeat && let Some(p) = view.files.get(PROGRESS_JSON) {
        last_activity = last_activity.max(Some(p.mtime));
    }

    Evaluation {
        kind,
        progress,
        complete,
        diagnostic: (!diags.is_empty()).then(|| diags.join("; ")),
        newest_log,
        last_activity,
        newest_artifact,
        median_epoch,
    }
}

/// Epoch `done` (the frontier, with no later epoch dir) holds an expected JSON file the caller
/// could not read (too large, no permission): unlike a file still being written, that does not
/// fix itself, so the count stops here for a reason worth saying.
fn unreadable_frontier_note(view: &RunView, done: u32) -> Option<String> {
    let e = view.epochs.get(&done)?;
    let (name, reason) = e.json.iter().find_map(|(name, r)| match r {
        Err(reason) if reason.starts_with("unreadable") => Some((name, reason)),
        _ => None,
    })?;
    Some(format!(
        "epoch_{done}/{name} {}; epochs from {done} on are not counted",
        truncate_chars(reason, 160)
    ))
}

/// A real gap: epoch `done` is incomplete or absent while a later epoch dir exists.
fn trainer_gap_note(view: &RunView, done: u32) -> Option<String> {
    let later = view
        .epoch_dirs
        .iter()
        .chain(view.epochs.keys())
        .copied()
        .filter(|i| *i > done)
        .min()?;
    let why = match view.epochs.get(&done) {
        Some(e) => epoch_gap(e).unwrap_or_else(|| "incomplete".to_owned()),
        None if view.epoch_dirs.binary_search(&done).is_ok() => "not read".to_owned(),
        None => "missing".to_owned(),
    };
    Some(format!(
        "epoch_{done} is incomplete ({why}) but epoch_{later} exists; counting stops at the gap"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::fixtures::*;
    use crate::runs::{EpochView, RunStatus, epoch_complete, status};
    use serde_json::json;

    #[test]
    fn an_unreadable_frontier_file_is_the_diagnostic() {
        let mut big = plain_epoch(4 * H);
        big.files
            .insert(VALIDATION_SCORES.into(), fi(500 << 20, 4 * H));
        big.json.insert(
            VALIDATION_SCORES.into(),
            Err("unreadable: 500 MiB, over the 16 MiB read limit".into()),
        );
        let e = evaluate(&trainer(3, 10).epoch(3, big.clone()).build(), None);
        assert_eq!(e.progress.completed_epochs, 3);
        assert_eq!(
            e.diagnostic.as_deref(),
            Some(
                "epoch_3/validation_scores.json unreadable: 500 MiB, over the 16 MiB read limit; \
                 epochs from 3 on are not counted"
            )
        );
        // A file still being written says nothing; a later epoch makes it the gap note.
        let mut partial = plain_epoch(4 * H);
        partial.json.insert(
            VALIDATION_SCORES.into(),
            Err("invalid JSON at line 1 column 3: EOF".into()),
        );
        let e = evaluate(&trainer(3, 10).epoch(3, partial).build(), None);
        assert_eq!(e.diagnostic, None);
        let e = evaluate(
            &trainer(3, 10)
                .epoch(3, big)
                .epoch(4, plain_epoch(5 * H))
                .build(),
            None,
        );
        let d = e.diagnostic.unwrap();
        assert!(
            d.contains("over the 16 MiB read limit") && d.contains("epoch_4 exists"),
            "{d}"
        );
    }

    #[test]
    fn contiguous_complete_epochs_are_counted() {
        let v = trainer(4, 10).build();
        assert_eq!(completed_epochs(&v), 4);
        let e = evaluate(&v, None);
        assert_eq!(e.kind, RunnerKind::Trainer);
        assert_eq!(e.progress.completed_epochs, 4);
        assert_eq!(e.progress.total_epochs, Some(10));
        assert!((e.progress.percentage - 40.0).abs() < 1e-9);
        assert!(!e.complete);
        assert_eq!(e.diagnostic, None);
    }

    #[test]
    fn epoch_gap_stops_the_count() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 10}))
            .epoch(0, plain_epoch(H))
            .epoch(1, plain_epoch(2 * H))
            .epoch(3, plain_epoch(4 * H))
            .build();
        assert_eq!(completed_epochs(&v), 2);
        let e = evaluate(&v, None);
        assert_eq!(e.progress.completed_epochs, 2);
        let diag = e.diagnostic.unwrap();
        assert!(
            diag.contains("epoch_2 is incomplete (missing) but epoch_3 exists"),
            "{diag}"
        );
    }

    #[test]
    fn missing_expected_file_stops_the_count() {
        let mut broken = plain_epoch(2 * H);
        broken.files.remove("training_losses.pt");
        let v = B::default()
            .epoch(0, plain_epoch(H))
            .epoch(1, broken.clone())
            .epoch(2, plain_epoch(3 * H))
            .build();
        assert_eq!(
            epoch_gap(&broken),
            Some("training_losses.pt missing".into())
        );
        assert_eq!(completed_epochs(&v), 1);
        let diag = evaluate(&v, Some(5)).diagnostic.unwrap();
        assert!(diag.contains("epoch_1 is incomplete (training_losses.pt missing)"));
    }

    #[test]
    fn corrupt_json_expected_file_stops_the_count() {
        let mut e1 = plain_epoch(2 * H);
        e1.json.insert(
            VALIDATION_SCORES.into(),
            Err("invalid JSON at line 1 column 9: EOF while parsing an object".into()),
        );
        assert!(!epoch_complete(&e1));
        let v = B::default()
            .epoch(0, plain_epoch(H))
            .epoch(1, e1)
            .epoch(2, plain_epoch(3 * H))
            .build();
        assert_eq!(completed_epochs(&v), 1);
        let diag = evaluate(&v, Some(5)).diagnostic.unwrap();
        assert!(
            diag.contains("validation_scores.json: invalid JSON at line 1 column 9"),
            "{diag}"
        );
    }

    #[test]
    fn in_progress_last_epoch_is_not_a_gap() {
        let mut partial = EpochView::default();
        partial
            .files
            .insert("training_losses.pt".into(), fi(10, 3 * H));
        let v = trainer(2, 10).epoch(2, partial).build();
        let e = evaluate(&v, None);
        assert_eq!(e.progress.completed_epochs, 2);
        assert_eq!(e.diagnostic, None);
    }

    #[test]
    fn total_from_config_beats_root() {
        let v = trainer(5, 20).build();
        let e = evaluate(&v, Some(100));
        assert_eq!(e.progress.total_epochs, Some(20));
        assert!((e.progress.percentage - 25.0).abs() < 1e-9);
    }

    #[test]
    fn total_from_root_when_config_has_none() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"model": "x"}))
            .epochs(5, 0, H)
            .build();
        let e = evaluate(&v, Some(50));
        assert_eq!(e.progress.total_epochs, Some(50));
        assert!((e.progress.percentage - 10.0).abs() < 1e-9);
        assert_eq!(e.diagnostic, None);
    }

    #[test]
    fn invalid_config_epochs_falls_back_to_root_with_a_note() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": "100"}))
            .epochs(1, 0, H)
            .build();
        let e = evaluate(&v, Some(10));
        assert_eq!(e.progress.total_epochs, Some(10));
        assert!(
            e.diagnostic
                .unwrap()
                .contains("\"epochs\" is not a positive integer (\"100\")")
        );
    }

    #[test]
    fn unknown_total_gives_zero_percent_and_never_completes() {
        let v = B::default().epochs(3, 0, H).build();
        let e = evaluate(&v, None);
        assert_eq!(e.progress.total_epochs, None);
        assert_eq!(e.progress.percentage, 0.0);
        assert_eq!(e.progress.eta_seconds, None);
        assert!(!e.complete);
        assert!(e.diagnostic.unwrap().contains("total epochs unknown"));
    }

    #[test]
    fn all_epochs_done_completes_the_run() {
        let e = evaluate(&trainer(10, 10).build(), None);
        assert!(e.complete);
        assert_eq!(e.progress.percentage, 100.0);
        assert_eq!(e.progress.eta_seconds, Some(0));
        // More epochs on disk than configured: capped.
        let e = evaluate(&trainer(12, 10).build(), None);
        assert!(e.complete);
        assert_eq!(e.progress.percentage, 100.0);
    }

    #[test]
    fn early_stop_completes_the_run() {
        let v = trainer(8, 100)
            .json(
                PROGRESS_JSON,
                8 * H,
                json!({"completed_epochs": 8, "early_stopped": true, "early_stopped_at_epoch": 7}),
            )
            .build();
        let e = evaluate(&v, None);
        assert_eq!(e.kind, RunnerKind::Trainer);
        assert!(e.complete);
        assert!(e.progress.early_stopped);
        assert_eq!(e.progress.early_stopped_at_epoch, Some(7));
        assert_eq!(e.progress.completed_epochs, 8);
        assert_eq!(e.progress.total_epochs, Some(100));
        assert_eq!(e.progress.percentage, 100.0);
        assert_eq!(e.progress.eta_seconds, Some(0));
        assert_eq!(status(&e, &rules(), false, at(20 * H)), RunStatus::Finished);
    }

    #[test]
    fn early_stopped_false_does_not_complete() {
        let v = trainer(8, 100)
            .json(PROGRESS_JSON, 8 * H, json!({"early_stopped": false}))
            .build();
        let e = evaluate(&v, None);
        assert!(!e.complete);
        assert!(!e.progress.early_stopped);
    }

    #[test]
    fn trainer_scores_latest_and_best() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 10}))
            .epoch(
                0,
                epoch(H, json!({"aggregated": {"acc": 0.70, "loss": 0.9}, "per_datapoint": {"acc": [1, 0]}})),
            )
            .epoch(
                1,
                epoch(2 * H, json!({"aggregated": {"acc": 0.80, "loss": 0.5}})),
            )
            .epoch(
                2,
                epoch(3 * H, json!({"aggregated": {"acc": 0.75, "loss": 0.6}})),
            )
            .build();
        let p = evaluate(&v, None).progress;
        let latest = p.latest_score.unwrap();
        assert_eq!(latest.get("aggregated.acc"), Some(&0.75));
        assert_eq!(latest.get("aggregated.loss"), Some(&0.6));
        let best = p.best_score.unwrap();
        assert_eq!(best.get("aggregated.acc"), Some(&0.80));
        assert_eq!(best.get("aggregated.loss"), Some(&0.5));
        assert!(!best.keys().any(|k| k.starts_with("per_datapoint")));
    }

    #[test]
    fn trainer_without_epochs_has_no_scores() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 10}))
            .build();
        let p = evaluate(&v, None).progress;
        assert_eq!(p.best_score, None);
        assert_eq!(p.latest_score, None);
        assert_eq!(p.rate_per_hour, None);
    }

    /// Views that exercise every trainer rule the summary of completed epochs feeds.
    fn trainer_views() -> Vec<(&'static str, RunView)> {
        let mut corrupt = plain_epoch(3 * H);
        corrupt
            .json
            .insert(VALIDATION_SCORES.into(), Err("invalid JSON".into()));
        let mut partial = EpochView::default();
        partial
            .files
            .insert("training_losses.pt".into(), fi(10, 9 * H));
        vec![
            (
                "scores up and down, an extra file newer than the epoch",
                B::default()
                    .json(CONFIG_JSON, 0, json!({"epochs": 6}))
                    .epoch(0, epoch(H, json!({"val": {"loss": 2.0, "acc": 0.1}})))
                    .epoch(1, epoch(2 * H, json!({"val": {"loss": 1.0, "acc": 0.3}})))
                    .epoch(2, {
                        let mut e = epoch(3 * H, json!({"val": {"loss": 1.5, "acc": 0.2}}));
                        e.files.insert("ckpt.pt".into(), fi(5, 3 * H + 120));
                        e
                    })
                    .epoch(3, epoch(4 * H, json!({"val": {"loss": 1.2}, "n": [1, 2]})))
                    .file("train_val.log", 10, 4 * H)
                    .build(),
            ),
            (
                "gap: epoch 2 missing, epoch 3 complete",
                trainer(2, 10).epoch(3, plain_epoch(4 * H)).build(),
            ),
            ("corrupt frontier", trainer(3, 10).epoch(3, corrupt).build()),
            (
                "in-progress frontier",
                trainer(4, 10).epoch(4, partial.clone()).build(),
            ),
            (
                "restart gap",
                B::default()
                    .json(CONFIG_JSON, 0, json!({"epochs": 8}))
                    .epochs(3, 0, H)
                    .epoch(3, plain_epoch(30 * H))
                    .epoch(4, plain_epoch(31 * H))
                    .build(),
            ),
            (
                "early stop",
                trainer(5, 100)
                    .json(
                        PROGRESS_JSON,
                        5 * H,
                        json!({"early_stopped": true, "early_stopped_at_epoch": 4}),
                    )
                    .build(),
            ),
            ("all done", trainer(4, 4).build()),
            (
                "epoch_0 incomplete",
                trainer(0, 10).epoch(0, partial).build(),
            ),
            (
                "no epochs, root total",
                B::default().epochs(2, 0, H).build(),
            ),
        ]
    }

    #[test]
    fn summarised_epochs_evaluate_like_the_full_view() {
        for (what, full) in trainer_views() {
            let mut folded = full.clone();
            folded.fold_completed();
            let done = completed_epochs(&full);
            assert_eq!(folded.completed.count(), done, "{what}");
            assert!(
                folded.epochs.keys().all(|i| *i >= done),
                "{what}: complete epochs are not kept: {:?}",
                folded.epochs.keys().collect::<Vec<_>>()
            );
            assert_eq!(completed_epochs(&folded), done, "{what}");
            assert_eq!(
                epoch_completion_times(&folded, done),
                epoch_completion_times(&full, done),
                "{what}"
            );
            assert_eq!(
                evaluate(&folded, Some(20)),
                evaluate(&full, Some(20)),
                "{what}"
            );
            // Folding twice changes nothing.
            let again = {
                let mut v = folded.clone();
                v.fold_completed();
                v
            };
            assert_eq!(again, folded, "{what}");
        }
    }

    #[test]
    fn evaluator_complete_with_valid_scores() {
        let v = B::default()
            .json(
                EVALUATOR_SCORES,
                H,
                json!({"val": {"accuracy": 0.93, "loss": 0.07}}),
            )
            .file("eval_0.log", 10, H)
            .build();
        let e = evaluate(&v, Some(100));
        assert_eq!(e.kind, RunnerKind::Evaluator);
        assert!(e.complete);
        assert_eq!(e.progress.percentage, 100.0);
        assert_eq!(e.progress.completed_epochs, 1);
        assert_eq!(e.progress.total_epochs, Some(1));
        let scores = e.progress.latest_score.clone().unwrap();
        assert_eq!(scores.get("val.accuracy"), Some(&0.93));
        assert_eq!(e.progress.best_score, Some(scores));
        assert_eq!(e.newest_artifact, Some(at(H)));
        assert_eq!(e.diagnostic, None);
    }

    #[test]
    fn evaluator_zero_byte_scores_is_incomplete() {
        let v = B::default()
            .json_err(EVALUATOR_SCORES, 0, H, "empty")
            .build();
        let e = evaluate(&v, None);
        assert!(!e.complete);
        assert_eq!(e.progress.percentage, 0.0);
        assert_eq!(e.progress.completed_epochs, 0);
        assert_eq!(e.progress.latest_score, None);
        assert_eq!(
            e.diagnostic.as_deref(),
            Some("evaluation_scores.json is empty")
        );
        assert_eq!(status(&e, &rules(), false, at(2 * H)), RunStatus::Failed);
    }

    #[test]
    fn evaluator_corrupt_scores_is_incomplete() {
        let v = B::default()
            .json_err(
                EVALUATOR_SCORES,
                37,
                H,
                "invalid JSON at line 1 column 37: EOF while parsing an object",
            )
            .build();
        let e = evaluate(&v, None);
        assert!(!e.complete);
        assert_eq!(e.progress.percentage, 0.0);
        assert!(
            e.diagnostic
                .unwrap()
                .contains("evaluation_scores.json: invalid JSON at line 1 column 37")
        );
    }

    // --- generic -----------------------------------------------------------------------------

    fn synexs_progress(current: u32, total: u32, status: &str) -> Value {
        json!({
            "timestamp": "2025-11-10T16:19:12.527253",
            "mission_current": current,
            "mission_total": total,
            "progress_percent": f64::from(current) / f64::from(total) * 100.0,
            "elapsed_seconds": 26.9,
            "rate_missions_per_sec": 37.0,
            "eta_seconds": 120.4,
            "stats": {"success_count": 575, "failure_count": 380},
            "status": status,
        })
    }

    #[test]
    fn generic_progress_fields() {
        let v = B::default()
            .json(PROGRESS_JSON, H, synexs_progress(250, 1000, "running"))
            .file("logs/training_20251110.log", 10, H)
            .build();
        let e = evaluate(&v, Some(100));
        assert_eq!(e.kind, RunnerKind::Generic);
        assert!(!e.complete);
        assert_eq!(e.progress.completed_epochs, 250);
        assert_eq!(e.progress.total_epochs, Some(1000));
        assert!((e.progress.percentage - 25.0).abs() < 1e-9);
        assert_eq!(e.progress.eta_seconds, Some(120));
        assert!((e.progress.rate_per_hour.unwrap() - 37.0 * 3600.0).abs() < 1e-6);
        assert_eq!(e.progress.best_score, None);
        assert_eq!(
            e.newest_log.as_ref().map(|(n, _)| n.as_str()),
            Some("logs/training_20251110.log")
        );
    }

    #[test]
    fn generic_status_completed_completes() {
        for s in ["completed", "done", "finished", "Completed"] {
            let v = B::default()
                .json(PROGRESS_JSON, H, synexs_progress(1000, 1000, s))
                .build();
            let e = evaluate(&v, None);
            assert!(e.complete, "{s}");
            assert_eq!(e.progress.percentage, 100.0);
            assert_eq!(e.progress.eta_seconds, Some(0));
        }
        // A status that is not "done" wins over counters.
        let v = B::default()
            .json(PROGRESS_JSON, H, synexs_progress(1000, 1000, "running"))
            .build();
        assert!(!evaluate(&v, None).complete);
    }

    #[test]
    fn generic_without_status_uses_counters() {
        let v = B::default()
            .json(
                PROGRESS_JSON,
                H,
                json!({"mission_current": 10, "mission_total": 10}),
            )
            .build();
        assert!(evaluate(&v, None).complete);
        let v = B::default()
            .json(
                PROGRESS_JSON,
                H,
                json!({"mission_current": 4, "mission_total": 10}),
            )
            .build();
        let e = evaluate(&v, None);
        assert!(!e.complete);
        assert!((e.progress.percentage - 40.0).abs() < 1e-9);
        let v = B::default()
            .json(PROGRESS_JSON, H, json!({"progress_percent": 250.0}))
            .build();
        let e = evaluate(&v, None);
        assert!(e.complete);
        assert_eq!(e.progress.percentage, 100.0);
    }

    #[test]
    fn generic_eta_from_rate_when_not_reported() {
        let v = B::default()
            .json(
                PROGRESS_JSON,
                H,
                json!({"mission_current": 100, "mission_total": 1000, "rate_per_hour": 300.0}),
            )
            .build();
        let p = evaluate(&v, None).progress;
        assert_eq!(p.eta_seconds, Some(3 * 3600));
    }

    #[test]
    fn generic_progress_json_counts_as_activity_until_terminal() {
        let running = B::default()
            .json(PROGRESS_JSON, 5 * H, synexs_progress(10, 100, "running"))
            .file("run.log", 10, H)
            .build();
        let e = evaluate(&running, None);
        assert_eq!(e.last_activity, Some(at(5 * H)));
        assert_eq!(e.newest_log.as_ref().unwrap().1.mtime, at(H));
        assert_eq!(
            status(&e, &rules(), false, at(5 * H + 60)),
            RunStatus::Running
        );

        let stopped = B::default()
            .json(
                PROGRESS_JSON,
                5 * H,
                synexs_progress(10, 100, "interrupted"),
            )
            .file("run.log", 10, H)
            .build();
        let e = evaluate(&stopped, None);
        assert_eq!(e.last_activity, Some(at(H)));
        assert_eq!(
            status(&e, &rules(), false, at(5 * H + 60)),
            RunStatus::Failed
        );
    }

    #[test]
    fn rate_and_eta_from_epoch_times() {
        // 4 epochs of 2 h each, 10 in total.
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 10}))
            .epochs(4, 0, 2 * H)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(e.median_epoch, Some(Duration::from_secs(2 * 3600)));
        assert!((e.progress.rate_per_hour.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(e.progress.eta_seconds, Some(6 * 2 * 3600));
    }

    #[test]
    fn progress_serializes_with_the_wire_names() {
        let v = serde_json::to_value(Progress::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "completed_epochs",
            "total_epochs",
            "percentage",
            "early_stopped",
            "early_stopped_at_epoch",
            "best_score",
            "latest_score",
            "rate_per_hour",
            "eta_seconds",
        ];
        want.sort();
        assert_eq!(keys, want);
    }
}
