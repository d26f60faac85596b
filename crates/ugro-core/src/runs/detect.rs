//! Runner detection: trainer, evaluator, generic or unknown (with a diagnostic saying why).

use super::failure::truncate_chars;
use super::{
    CONFIG_JSON, EVALUATOR_SCORES, GENERIC_PROGRESS_KEYS, PROGRESS_JSON, RunView, RunnerKind,
    TRAINER_EXPECTED,
};

/// How many names a diagnostic lists before "… and N more".
const DIAG_NAMES: usize = 12;

/// The kind of a run and, for unknown runs, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: RunnerKind,
    /// For unknown runs: the files found and the patterns expected.
    pub diagnostic: Option<String>,
}

/// Detects the runner kind, in this order, never guessing:
/// 1. evaluator: `evaluation_scores.json` exists (whatever its content; wins over `epoch_0/`);
/// 2. trainer: `epoch_0/` holds one of [`TRAINER_EXPECTED`] (even empty), or `config.json` parses
///    to an object with a non-null `epochs`;
/// 3. generic: `progress.json` parses to an object with one of [`GENERIC_PROGRESS_KEYS`] and the
///    run has no `epoch_N` sub-directory;
/// 4. unknown, with a diagnostic listing the files found, the patterns expected and why each
///    candidate file did not qualify.
pub fn detect(view: &RunView) -> Detection {
    if view.files.contains_key(EVALUATOR_SCORES) {
        return Detection {
            kind: RunnerKind::Evaluator,
            diagnostic: None,
        };
    }
    let epoch0_has_expected = view.completed.count() > 0
        || view
            .epochs
            .get(&0)
            .is_some_and(|e| TRAINER_EXPECTED.iter().any(|f| e.files.contains_key(*f)));
    if epoch0_has_expected || config_has_epochs(view) {
        return Detection {
            kind: RunnerKind::Trainer,
            diagnostic: None,
        };
    }
    let has_epoch_dirs = !view.epoch_dirs.is_empty();
    if !has_epoch_dirs && self_reporting(view) {
        return Detection {
            kind: RunnerKind::Generic,
            diagnostic: None,
        };
    }
    Detection {
        kind: RunnerKind::Unknown,
        diagnostic: Some(unknown_diagnostic(view, has_epoch_dirs)),
    }
}

fn config_has_epochs(view: &RunView) -> bool {
    view.json_obj(CONFIG_JSON)
        .and_then(|c| c.get("epochs"))
        .is_some_and(|v| !v.is_null())
}

fn self_reporting(view: &RunView) -> bool {
    view.json_obj(PROGRESS_JSON)
        .is_some_and(|p| GENERIC_PROGRESS_KEYS.iter().any(|k| p.contains_key(*k)))
}

fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    if all.is_empty() {
        return "none".to_owned();
    }
    let mut out = all
        .iter()
        .take(DIAG_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > DIAG_NAMES {
        out.push_str(&format!(" … and {} more", all.len() - DIAG_NAMES));
    }
    out
}

pub(super) fn json_note(view: &RunView, name: &str) -> Option<String> {
    if !view.files.contains_key(name) {
        return None;
    }
    match view.json.get(name) {
        None => Some(format!("{name} was not read")),
        Some(Err(reason)) => Some(format!("{name}: {}", truncate_chars(reason, 160))),
        Some(Ok(v)) if !v.is_object() => Some(format!("{name} is not a JSON object")),
        Some(Ok(_)) => None,
    }
}

fn unknown_diagnostic(view: &RunView, has_epoch_dirs: bool) -> String {
    let mut dirs: Vec<String> = view
        .subdirs
        .iter()
        .map(|d| format!("{d}/"))
        .chain(view.epoch_dirs.iter().map(|i| format!("epoch_{i}/")))
        .collect();
    dirs.sort();
    let mut notes = Vec::new();
    if let Some(n) = json_note(view, CONFIG_JSON) {
        notes.push(n);
    } else if view.files.contains_key(CONFIG_JSON) {
        notes.push(format!("{CONFIG_JSON} has no \"epochs\""));
    }
    if view.epoch_dirs.first() == Some(&0) {
        let found = view
            .epochs
            .get(&0)
            .map(|e| name_list(e.files.keys().map(String::as_str)))
            .unwrap_or_else(|| "not read".to_owned());
        notes.push(format!(
            "epoch_0/ holds none of the expected files (found: {found})"
        ));
    } else if has_epoch_dirs {
        notes.push("epoch_* dirs exist but epoch_0/ does not".to_owned());
    }
    if let Some(n) = json_note(view, PROGRESS_JSON) {
        notes.push(n);
    } else if view.files.contains_key(PROGRESS_JSON) {
        if has_epoch_dirs {
            notes.push(format!(
                "{PROGRESS_JSON} is ignored because epoch_* dirs exist"
            ));
        } else {
            notes.push(format!(
                "{PROGRESS_JSON} has none of {}",
                GENERIC_PROGRESS_KEYS.join(", ")
            ));
        }
    }
    let mut out = format!(
        "cannot tell the runner kind. Found files: {}; dirs: {}. Expected one of: {EVALUATOR_SCORES} \
         (evaluator); epoch_0/ holding {} or {CONFIG_JSON} with \"epochs\" (trainer); \
         {PROGRESS_JSON} with {} and no epoch_* dirs (generic). Logs: train_val*.log (trainer), \
         eval_*.log (evaluator).",
        name_list(view.files.keys().map(String::as_str)),
        name_list(dirs.iter().map(String::as_str)),
        TRAINER_EXPECTED.join(", "),
        GENERIC_PROGRESS_KEYS.join("/"),
    );
    if !notes.is_empty() {
        out.push_str(" Notes: ");
        out.push_str(&notes.join("; "));
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::EpochView;
    use crate::runs::fixtures::*;
    use serde_json::json;

    #[test]
    fn scores_file_beats_epoch_0() {
        let v = trainer(3, 10)
            .json(EVALUATOR_SCORES, 4 * H, json!({"acc": 0.9}))
            .build();
        assert_eq!(
            detect(&v),
            Detection {
                kind: RunnerKind::Evaluator,
                diagnostic: None
            }
        );
    }

    #[test]
    fn empty_scores_file_still_makes_an_evaluator() {
        let v = B::default()
            .json_err(EVALUATOR_SCORES, 0, 0, "empty")
            .file("eval_0.log", 10, 0)
            .build();
        assert_eq!(detect(&v).kind, RunnerKind::Evaluator);
    }

    #[test]
    fn epoch_0_with_an_expected_file_makes_a_trainer() {
        let mut e = EpochView::default();
        e.files.insert("training_losses.pt".into(), fi(0, 0));
        let v = B::default().epoch(0, e).build();
        assert_eq!(detect(&v).kind, RunnerKind::Trainer);
    }

    #[test]
    fn config_epochs_makes_a_trainer_without_epoch_dirs() {
        let v = B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": 100, "model": "resnet50"}))
            .file("train_val_0.log", 10, 0)
            .build();
        let d = detect(&v);
        assert_eq!(d.kind, RunnerKind::Trainer);
        assert_eq!(d.diagnostic, None);
    }

    #[test]
    fn self_reporting_progress_json_makes_a_generic_run() {
        let v = B::default()
            .json(
                PROGRESS_JSON,
                0,
                json!({"mission_current": 10, "mission_total": 1000, "status": "running"}),
            )
            .dir("missions")
            .dir("logs")
            .build();
        assert_eq!(detect(&v).kind, RunnerKind::Generic);
        // One self-reporting key is enough.
        let v = B::default()
            .json(PROGRESS_JSON, 0, json!({"eta_seconds": 12.5}))
            .build();
        assert_eq!(detect(&v).kind, RunnerKind::Generic);
    }

    #[test]
    fn progress_json_with_epoch_dirs_is_not_generic() {
        let v = B::default()
            .json(PROGRESS_JSON, 0, json!({"progress_percent": 40.0}))
            .epoch(0, EpochView::default())
            .build();
        let d = detect(&v);
        assert_eq!(d.kind, RunnerKind::Unknown);
        assert!(
            d.diagnostic
                .unwrap()
                .contains("progress.json is ignored because epoch_* dirs exist")
        );
    }

    #[test]
    fn unknown_diagnostic_names_files_found_and_patterns_expected() {
        let v = B::default()
            .json(
                CONFIG_JSON,
                0,
                json!({"model": "vit", "dataset": "imagenet"}),
            )
            .file("git_0.log", 10, 0)
            .dir("checkpoints")
            .build();
        let d = detect(&v);
        assert_eq!(d.kind, RunnerKind::Unknown);
        let msg = d.diagnostic.unwrap();
        for needle in [
            "Found files: config.json, git_0.log",
            "dirs: checkpoints/",
            "evaluation_scores.json (evaluator)",
            "epoch_0/ holding training_losses.pt, optimizer_buffer.json, validation_scores.json",
            "config.json with \"epochs\" (trainer)",
            "progress.json with mission_current/mission_total/progress_percent/status/eta_seconds",
            "train_val*.log (trainer)",
            "eval_*.log (evaluator)",
            "config.json has no \"epochs\"",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in {msg}");
        }
    }

    #[test]
    fn epoch_dirs_without_expected_files_are_unknown() {
        let mut e = EpochView::default();
        e.files.insert("notes.txt".into(), fi(5, 0));
        let v = B::default()
            .epoch(0, e)
            .epoch(1, EpochView::default())
            .build();
        let d = detect(&v);
        assert_eq!(d.kind, RunnerKind::Unknown);
        let msg = d.diagnostic.unwrap();
        assert!(
            msg.contains("epoch_0/ holds none of the expected files (found: notes.txt)"),
            "{msg}"
        );
        assert!(msg.contains("dirs: epoch_0/, epoch_1/"), "{msg}");
    }

    #[test]
    fn progress_json_without_self_reporting_keys_is_unknown() {
        let v = B::default()
            .json(
                PROGRESS_JSON,
                0,
                json!({"timestamp": "2025-11-10T16:19:12"}),
            )
            .build();
        let d = detect(&v);
        assert_eq!(d.kind, RunnerKind::Unknown);
        assert!(d.diagnostic.unwrap().contains("progress.json has none of"));
    }

    #[test]
    fn corrupt_config_is_unknown_and_says_why() {
        let v = B::default()
            .json_err(
                CONFIG_JSON,
                40,
                0,
                "invalid JSON at line 3 column 5: expected value",
            )
            .build();
        let d = detect(&v);
        assert_eq!(d.kind, RunnerKind::Unknown);
        assert!(
            d.diagnostic
                .unwrap()
                .contains("config.json: invalid JSON at line 3 column 5")
        );
    }

    #[test]
    fn unknown_diagnostic_caps_long_file_lists() {
        let mut b = B::default().json(CONFIG_JSON, 0, json!({}));
        for i in 0..30 {
            b = b.file(&format!("mission_{i:03}.jsonl"), 1, 0);
        }
        let msg = detect(&b.build()).diagnostic.unwrap();
        assert!(msg.contains("… and 19 more"), "{msg}");
    }
}
