//! The Pylon-compatible progress.json each trainer or evaluator run gets (written only when its
//! content changed; a failure is an event).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::runs::RunnerKind;

use crate::store::NewEvent;

use super::Run;
use super::host::RunsHost;
use super::source::RootSource;

/// The Pylon-compatible progress.json of a trainer or evaluator run (field names as Pylon's
/// ProgressInfo), without a timestamp so identical progress gives identical bytes.
pub(super) fn progress_json(r: &Run) -> Option<String> {
    if !matches!(r.eval.kind, RunnerKind::Trainer | RunnerKind::Evaluator) {
        return None; // generic runs own their progress.json; unknown ones get nothing
    }
    let p = &r.eval.progress;
    let v = serde_json::json!({
        "completed_epochs": p.completed_epochs,
        "progress_percentage": p.percentage,
        "early_stopped": p.early_stopped,
        "early_stopped_at_epoch": p.early_stopped_at_epoch,
        "total_epochs": p.total_epochs,
        "runner_type": r.eval.kind.as_str(),
        "status": r.status.as_str(),
        "scores": {"best": p.best_score, "latest": p.latest_score},
        "timing": {
            "rate_per_hour": p.rate_per_hour,
            "eta_seconds": p.eta_seconds,
            "last_log_update": r.eval.newest_log.as_ref().map(|(_, f)| f.mtime),
            "last_artifact_update": r.eval.newest_artifact,
        },
        "written_by": "ugro-monitor",
    });
    serde_json::to_string_pretty(&v).ok()
}

/// Writes progress.json into each run whose content changed ([`crate::files::write_atomic`]).
/// Returns failures as (run id, message).
pub(super) fn write_progress_files(jobs: Vec<(String, PathBuf, String)>) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    for (id, dir, text) in jobs {
        let result = crate::files::write_atomic(&dir.join("progress.json"), text.as_bytes());
        if let Err(e) = result {
            failures.push((
                id,
                format!("cannot write {}: {e}", dir.join("progress.json").display()),
            ));
        }
    }
    failures
}

/// Writes the progress.json files whose content changed (of the changed runs, or of all with
/// `all`); a failure is an event once per run.
pub(super) async fn write_progress<H: RunsHost>(
    host: &H,
    source: &dyn RootSource,
    runs: &BTreeMap<String, Run>,
    written: &mut HashMap<String, String>,
    all: bool,
) {
    let jobs: Vec<(String, PathBuf, String)> = runs
        .values()
        .filter(|r| all || r.dirty)
        .filter_map(|r| {
            let text = progress_json(r)?;
            (written.get(&r.id) != Some(&text)).then(|| (r.id.clone(), r.dir.clone(), text))
        })
        .collect();
    if jobs.is_empty() {
        return;
    }
    for (id, _, text) in &jobs {
        written.insert(id.clone(), text.clone());
    }
    let failures = source.write_progress(jobs).await;
    for (id, message) in failures {
        host.event(NewEvent::new(
            EventKind::RunProgressWriteFailed,
            &id,
            Severity::Warning,
            format!("{id}: {message}"),
        ))
        .await;
    }
}
