//! The caller's view of a run directory: files, JSON reads, epochs, and which directories and logs
//! belong to runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::scores::merge_best;
use super::{
    CONFIG_JSON, EVALUATOR_SCORES, PROGRESS_JSON, RunnerKind, Scores, VALIDATION_SCORES,
    epoch_complete, flatten_scores,
};

/// Size and modification time of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub size: u64,
    pub mtime: DateTime<Utc>,
}

/// What the caller knows about one JSON file it read: `Ok(value)` or `Err(reason)` with reason
/// `"empty"`, `"invalid JSON at line 3 column 5: ..."` or `"unreadable: ..."` ([`read_json`]
/// builds the first two).
pub type JsonRead = Result<Value, String>;

/// Parses the bytes of a JSON file into a [`JsonRead`]: `Err("empty")` for an empty or
/// whitespace-only file, `Err("invalid JSON at line L column C: what")` otherwise on error.
pub fn read_json(bytes: &[u8]) -> JsonRead {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty".to_owned());
    }
    serde_json::from_slice(bytes).map_err(|e| json_error(&e))
}

/// Like [`read_json`], but only checks that the bytes parse: `Ok(Value::Null)` stands for
/// "valid JSON, value not kept" (an epoch's `optimizer_buffer.json` need only parse), and no
/// value is built.
pub fn validate_json(bytes: &[u8]) -> JsonRead {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty".to_owned());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| Value::Null)
        .map_err(|e| json_error(&e))
}

fn json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&suffix).unwrap_or(&full);
    format!(
        "invalid JSON at line {} column {}: {what}",
        e.line(),
        e.column()
    )
}

/// One `epoch_N/` directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochView {
    /// Regular files in the epoch directory.
    pub files: BTreeMap<String, FileInfo>,
    /// The parsed `.json` files of [`TRAINER_EXPECTED`](super::TRAINER_EXPECTED) that are present
    /// in `files`. A present, non-empty `.json` expected file without an entry here counts as not
    /// (yet) valid.
    pub json: BTreeMap<String, JsonRead>,
}

/// What is kept of a run's complete epochs `0..count`: their completion times and scores, not
/// their files. Completed epochs do not change, so a caller keeps this summary and reads only
/// the frontier (the next epoch dir) again; [`CompletedEpochs::push`] folds an epoch in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletedEpochs {
    /// Completion time of each complete epoch (its newest file mtime), in epoch order.
    pub times: Vec<DateTime<Utc>>,
    /// The newest file mtime of any of these epochs.
    pub newest_artifact: Option<DateTime<Utc>>,
    /// The flattened validation scores of the last of these epochs.
    pub latest: Scores,
    /// The best value of each score key over these epochs ([`best_scores`](super::best_scores)).
    pub best: Scores,
}

impl CompletedEpochs {
    /// How many epochs are folded in.
    pub fn count(&self) -> u32 {
        u32::try_from(self.times.len()).unwrap_or(u32::MAX)
    }

    /// Folds epoch `count()` in when it is complete ([`epoch_complete`]); returns whether it
    /// was. An incomplete epoch changes nothing.
    pub fn push(&mut self, e: &EpochView) -> bool {
        if !epoch_complete(e) {
            return false;
        }
        let Some(done_at) = e.files.values().map(|f| f.mtime).max() else {
            return false;
        };
        self.times.push(done_at);
        self.newest_artifact = self.newest_artifact.max(Some(done_at));
        self.latest = e
            .json
            .get(VALIDATION_SCORES)
            .and_then(|r| r.as_ref().ok())
            .map(flatten_scores)
            .unwrap_or_default();
        merge_best(&mut self.best, &self.latest);
        true
    }
}

/// One run directory as the caller saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunView {
    /// Regular files directly in the run dir, by name. Keys may also be relative paths such as
    /// `logs/train_val_0.log`; log patterns apply to the part after the last `/`.
    pub files: BTreeMap<String, FileInfo>,
    /// Names of the sub-directories that are not `epoch_N` dirs ([`epoch_dir_index`]).
    pub subdirs: Vec<String>,
    /// The indices of the `epoch_N` sub-directories, ascending.
    pub epoch_dirs: Vec<u32>,
    /// Epochs `0..completed.count()`, complete and summarised; their dirs are not kept.
    pub completed: CompletedEpochs,
    /// The `epoch_N` dirs the caller looked into beyond `completed`, from `completed.count()`
    /// upward (it may stop after the first incomplete one: the frontier).
    pub epochs: BTreeMap<u32, EpochView>,
    /// Parsed `config.json` / `progress.json` / `evaluation_scores.json` when present.
    pub json: BTreeMap<String, JsonRead>,
    /// The root's `log_globs`: files of `files` they match are logs of the run as well
    /// ([`is_run_log`](super::is_run_log)).
    pub log_globs: Vec<String>,
}

impl RunView {
    pub(super) fn json_ok(&self, name: &str) -> Option<&Value> {
        self.json.get(name).and_then(|r| r.as_ref().ok())
    }

    pub(super) fn json_obj(&self, name: &str) -> Option<&serde_json::Map<String, Value>> {
        self.json_ok(name).and_then(Value::as_object)
    }

    /// Records a sub-directory name: `epoch_N` dirs by index (kept sorted), others by name.
    pub fn add_subdir(&mut self, name: &str) {
        match epoch_dir_index(name) {
            Some(i) => {
                if let Err(at) = self.epoch_dirs.binary_search(&i) {
                    self.epoch_dirs.insert(at, i);
                }
            }
            None => self.subdirs.push(name.to_owned()),
        }
    }

    /// Moves the complete epochs at the start of `epochs` into `completed`.
    pub fn fold_completed(&mut self) {
        loop {
            let next = self.completed.count();
            let Some(e) = self.epochs.get(&next) else {
                return;
            };
            if !self.completed.push(e) {
                return;
            }
            self.epochs.remove(&next);
        }
    }
}

/// Whether a directory with these regular files and sub-directories is a run directory: it holds
/// `epoch_0/`, `evaluation_scores.json`, `progress.json`, `config.json`, a `train_val*.log` or an
/// `eval_*.log`. The caller must not call this for `epoch_*` directories inside a run (see
/// [`epoch_dir_index`]): they are never runs.
pub fn is_run_dir(file_names: &[&str], subdir_names: &[&str]) -> bool {
    subdir_names.contains(&"epoch_0")
        || file_names.iter().any(|f| {
            matches!(*f, EVALUATOR_SCORES | PROGRESS_JSON | CONFIG_JSON)
                || is_log_of(RunnerKind::Trainer, f)
                || is_log_of(RunnerKind::Evaluator, f)
        })
}

/// Whether `file_name` is a log whose changes show activity of a run of `kind`:
/// trainer `train_val*.log`, evaluator `eval_*.log`, generic and unknown any `*.log` (for generic
/// runs `progress.json` counts as well, see [`evaluate`](super::evaluate)); for every kind, any
/// `*.log` in the run's `logs/` subfolder (`logs/training_*.log`, the long-job layout). Matched
/// on the part after the last `/`, case-sensitively.
pub fn is_log_of(kind: RunnerKind, file_name: &str) -> bool {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let Some(stem) = base.strip_suffix(".log") else {
        return false;
    };
    if let Some(rest) = file_name.strip_prefix(super::LOGS_DIR)
        && let Some(name) = rest.strip_prefix('/')
        && !name.contains('/')
    {
        return !stem.is_empty();
    }
    match kind {
        RunnerKind::Trainer => stem.starts_with("train_val"),
        RunnerKind::Evaluator => stem.starts_with("eval_"),
        RunnerKind::Generic | RunnerKind::Unknown => !stem.is_empty(),
    }
}

/// The epoch of an `epoch_N` directory name: `"epoch_12"` → 12. Only canonical decimals count
/// (`"epoch_x"`, `"epoch_"`, `"epoch_01"`, `"epoch_-1"` → `None`).
pub fn epoch_dir_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("epoch_")?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::TRAINER_EXPECTED;
    use crate::runs::fixtures::*;
    use serde_json::json;

    #[test]
    fn epoch_dir_index_accepts_only_canonical_decimals() {
        assert_eq!(epoch_dir_index("epoch_0"), Some(0));
        assert_eq!(epoch_dir_index("epoch_12"), Some(12));
        for bad in [
            "epoch_x",
            "epoch_",
            "epoch_01",
            "epoch_-1",
            "epoch_1a",
            "epochs_1",
            "Epoch_1",
            "epoch_99999999999",
        ] {
            assert_eq!(epoch_dir_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn is_log_of_matches_each_kinds_pattern() {
        use RunnerKind::*;
        assert!(is_log_of(Trainer, "train_val.log"));
        assert!(is_log_of(Trainer, "train_val_2025-01-01.log"));
        assert!(is_log_of(Trainer, "logs/train_val_0.log"));
        assert!(!is_log_of(Trainer, "training.log"));
        assert!(is_log_of(Trainer, "logs/training_20251110.log"));
        assert!(is_log_of(Evaluator, "logs/training_20251110.log"));
        assert!(!is_log_of(Trainer, "logs/.log"));
        assert!(!is_log_of(Trainer, "old/logs/training_1.log"));
        assert!(!is_log_of(Trainer, "train_val.log.1"));
        assert!(!is_log_of(Trainer, "eval_0.log"));
        assert!(is_log_of(Evaluator, "eval_0.log"));
        assert!(!is_log_of(Evaluator, "eval.log"));
        assert!(!is_log_of(Evaluator, "train_val.log"));
        for k in [Generic, Unknown] {
            assert!(is_log_of(k, "training_20251110.log"));
            assert!(is_log_of(k, "train_val.log"));
            assert!(!is_log_of(k, ".log"));
            assert!(!is_log_of(k, "progress.json"));
        }
    }

    #[test]
    fn is_run_dir_needs_a_known_file_or_epoch_0() {
        assert!(is_run_dir(&[], &["epoch_0"]));
        assert!(is_run_dir(&[EVALUATOR_SCORES], &[]));
        assert!(is_run_dir(&[PROGRESS_JSON], &[]));
        assert!(is_run_dir(&[CONFIG_JSON], &[]));
        assert!(is_run_dir(&["train_val_0.log"], &[]));
        assert!(is_run_dir(&["eval_3.log"], &[]));
        assert!(!is_run_dir(&["notes.txt", "training.log"], &["data"]));
        assert!(!is_run_dir(&[], &["epoch_1", "checkpoints"]));
        // The contents of an epoch dir do not make a run.
        assert!(!is_run_dir(&TRAINER_EXPECTED, &[]));
    }

    #[test]
    fn read_json_reasons() {
        assert_eq!(read_json(b""), Err("empty".into()));
        assert_eq!(read_json(b"  \n"), Err("empty".into()));
        assert_eq!(read_json(br#"{"a": 1}"#), Ok(json!({"a": 1})));
        let err = read_json(b"{\n  \"a\": 1,\n  \"b\": }").unwrap_err();
        assert!(err.starts_with("invalid JSON at line 3 column "), "{err}");
        assert!(!err.ends_with("column 8"), "{err}");
        let truncated = read_json(br#"{"a": [1, 2"#).unwrap_err();
        assert!(truncated.contains("EOF"), "{truncated}");
        // Validation without a value gives the same reasons.
        assert_eq!(
            validate_json(br#"{"a": [1, {"b": null}]}"#),
            Ok(Value::Null)
        );
        assert_eq!(validate_json(b" \t"), Err("empty".into()));
        assert_eq!(
            validate_json(b"{\n  \"a\": 1,\n  \"b\": }"),
            read_json(b"{\n  \"a\": 1,\n  \"b\": }").map(|_| Value::Null)
        );
        assert!(validate_json(b"{} trailing").is_err());
    }

    #[test]
    fn completed_epochs_take_only_complete_epochs_in_order() {
        let mut c = CompletedEpochs::default();
        let mut empty_scores = plain_epoch(H);
        empty_scores
            .files
            .insert(VALIDATION_SCORES.into(), fi(0, H));
        assert!(!c.push(&empty_scores), "an empty expected file");
        assert!(!c.push(&EpochView::default()));
        assert_eq!(
            c,
            CompletedEpochs::default(),
            "refused epochs change nothing"
        );
        assert!(c.push(&epoch(H, json!({"loss": 3.0, "acc": 0.5}))));
        assert!(c.push(&epoch(2 * H, json!({"loss": 1.0, "acc": 0.4}))));
        assert!(c.push(&epoch(3 * H, json!({"loss": 2.0}))));
        assert_eq!(c.count(), 3);
        assert_eq!(c.times, vec![at(H), at(2 * H), at(3 * H)]);
        assert_eq!(c.newest_artifact, Some(at(3 * H)));
        assert_eq!(c.latest, Scores::from([("loss".into(), 2.0)]));
        assert_eq!(
            c.best,
            Scores::from([("loss".into(), 1.0), ("acc".into(), 0.5)])
        );
    }
}
