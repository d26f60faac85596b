//! Run tracking rules: which directories are runs, what kind of runner wrote them, how far they
//! got (epochs, scores, rate, ETA), their status, and why they failed (log tail classification).
//!
//! Everything here is pure. The caller lists a run directory, stats and reads the few files that
//! matter, and passes the result as a [`RunView`]; status rules take `now` and whether a live
//! process belongs to the run. The rules are documented in docs/run-layouts.md (run kinds, trainer
//! progress, status).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// How much of a log's end the daemon reads to classify a failure.
pub const MAX_LOG_TAIL: usize = 64 * 1024;

/// The longest [`Failure::message`], [`Failure::excerpt`] and [`Failure::error_text`], in chars.
pub const MAX_ERROR_CHARS: usize = 1000;

/// A gap between two epoch completions longer than this many times the plain median is a
/// restart (the run was down), not an epoch, and [`median_epoch_duration`] leaves it out.
pub const RESTART_GAP_FACTOR: u32 = 5;

/// The stall window is at least this many median epochs ([`stall_window`]).
pub const STALL_EPOCHS: u32 = 3;

/// How many names a diagnostic lists before "… and N more".
const DIAG_NAMES: usize = 12;

/// Longest line kept in a failure excerpt, in chars.
const EXCERPT_LINE_CHARS: usize = 300;

// ---------------------------------------------------------------------------------------------
// Kinds and statuses

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

    /// The glob of the logs whose changes mean the run is active (see [`is_log_of`]).
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
    /// ([`classify_failure`]).
    pub fn needs_failure_reason(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Stuck)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The caller's view of a run directory

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
    /// The parsed `.json` files of [`TRAINER_EXPECTED`] that are present in `files`. A present,
    /// non-empty `.json` expected file without an entry here counts as not (yet) valid.
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
    /// The best value of each score key over these epochs ([`best_scores`]).
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
}

impl RunView {
    fn json_ok(&self, name: &str) -> Option<&Value> {
        self.json.get(name).and_then(|r| r.as_ref().ok())
    }

    fn json_obj(&self, name: &str) -> Option<&serde_json::Map<String, Value>> {
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
/// runs `progress.json` counts as well, see [`evaluate`]). Matched on the part after the last `/`,
/// case-sensitively.
pub fn is_log_of(kind: RunnerKind, file_name: &str) -> bool {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let Some(stem) = base.strip_suffix(".log") else {
        return false;
    };
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

// ---------------------------------------------------------------------------------------------
// Detection

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

fn json_note(view: &RunView, name: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// Trainer epochs

/// Why an epoch is not complete (the first expected file, in [`TRAINER_EXPECTED`] order, that is
/// missing, empty, unread or invalid JSON), or `None` when it is complete.
pub fn epoch_gap(e: &EpochView) -> Option<String> {
    for name in TRAINER_EXPECTED {
        match e.files.get(name) {
            None => return Some(format!("{name} missing")),
            Some(f) if f.size == 0 => return Some(format!("{name} empty")),
            Some(_) => {}
        }
        if name.ends_with(".json") {
            match e.json.get(name) {
                None => return Some(format!("{name} not read")),
                Some(Err(reason)) => {
                    return Some(format!("{name}: {}", truncate_chars(reason, 160)));
                }
                Some(Ok(_)) => {}
            }
        }
    }
    None
}

/// Every expected file exists, is non-empty and (for `.json`) parses.
pub fn epoch_complete(e: &EpochView) -> bool {
    epoch_gap(e).is_none()
}

/// Epochs counted from `epoch_0` upward while complete; the first gap stops the count. The
/// summarised epochs ([`RunView::completed`]) count, then the read ones that follow them.
pub fn completed_epochs(view: &RunView) -> u32 {
    let mut n = view.completed.count();
    while view.epochs.get(&n).is_some_and(epoch_complete) {
        n += 1;
    }
    n
}

/// The newest file mtime of each of the first `completed` epochs, in epoch order (epochs the view
/// lacks or that hold no files are skipped).
pub fn epoch_completion_times(view: &RunView, completed: u32) -> Vec<DateTime<Utc>> {
    let summarised = view.completed.count().min(completed);
    let mut out: Vec<DateTime<Utc>> = view.completed.times[..summarised as usize].to_vec();
    out.extend(
        (summarised..completed)
            .filter_map(|i| view.epochs.get(&i))
            .filter_map(|e| e.files.values().map(|f| f.mtime).max()),
    );
    out
}

fn median_of_sorted(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// Robust median time per epoch. Takes the durations between consecutive completion times
/// (sorted first), computes the lower median `m`, drops durations longer than
/// [`RESTART_GAP_FACTOR`] × `m` (the run was down: a restart, not an epoch), and returns the
/// median of the rest. `None` with fewer than 2 times.
pub fn median_epoch_duration(times: &[DateTime<Utc>]) -> Option<Duration> {
    if times.len() < 2 {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut diffs: Vec<f64> = sorted
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0)
        .collect();
    diffs.sort_by(f64::total_cmp);
    let lower_median = diffs[(diffs.len() - 1) / 2];
    let limit = lower_median * f64::from(RESTART_GAP_FACTOR);
    let kept: Vec<f64> = diffs.into_iter().filter(|d| *d <= limit).collect();
    let m = median_of_sorted(&kept)?;
    Duration::try_from_secs_f64(m).ok()
}

// ---------------------------------------------------------------------------------------------
// Scores

/// Scores by flattened key (`"val.accuracy"`).
pub type Scores = BTreeMap<String, f64>;

/// The numeric leaves of a scores document, keys joined with `.`. Arrays are skipped entirely
/// (per-datapoint lists would explode the map), as are strings, booleans and null. A bare number
/// gets the key `"value"`.
pub fn flatten_scores(v: &Value) -> Scores {
    let mut out = Scores::new();
    flatten_into(v, String::new(), &mut out);
    out
}

fn flatten_into(v: &Value, prefix: String, out: &mut Scores) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64()
                && x.is_finite()
            {
                let key = if prefix.is_empty() {
                    "value".to_owned()
                } else {
                    prefix
                };
                out.insert(key, x);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(v, key, out);
            }
        }
        Value::Array(_) | Value::String(_) | Value::Bool(_) | Value::Null => {}
    }
}

/// Whether smaller is better for a score key: the lowercased key contains `loss` or `error`, or
/// one of its alphanumeric tokens is `err`, `mae`, `mse`, `rmse`, `epe`, `wer`, `cer`, `ppl` or
/// `perplexity`. Everything else is larger-is-better.
pub fn lower_is_better(key: &str) -> bool {
    let k = key.to_lowercase();
    k.contains("loss")
        || k.contains("error")
        || k.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| {
            matches!(
                t,
                "err" | "mae" | "mse" | "rmse" | "epe" | "wer" | "cer" | "ppl" | "perplexity"
            )
        })
}

/// The best value of each key over a history: the minimum for [`lower_is_better`] keys, the
/// maximum otherwise. Keys may appear in only some entries.
pub fn best_scores(history: &[Scores]) -> Scores {
    let mut best = Scores::new();
    for scores in history {
        merge_best(&mut best, scores);
    }
    best
}

/// Folds one entry of a history into the running best ([`best_scores`]).
fn merge_best(best: &mut Scores, scores: &Scores) {
    for (k, &v) in scores {
        match best.get_mut(k) {
            Some(b) => {
                *b = if lower_is_better(k) {
                    b.min(v)
                } else {
                    b.max(v)
                }
            }
            None => {
                best.insert(k.clone(), v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Progress and evaluation

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
    /// The newest log of the kind's pattern ([`is_log_of`]): its tail explains failures.
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
        .filter(|(name, _)| is_log_of(kind, name))
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

// ---------------------------------------------------------------------------------------------
// Status

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

// ---------------------------------------------------------------------------------------------
// Failure classification

/// Why a run failed, from its log tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    CudaOom,
    Nccl,
    NanLoss,
    Traceback,
    Killed,
    NoSpace,
    Preempted,
    MissingFile,
    /// Never returned by [`classify_failure`]; [`failure_from_log`] uses it when nothing matched.
    Unknown,
}

impl FailureKind {
    pub const ALL: [FailureKind; 9] = [
        FailureKind::CudaOom,
        FailureKind::Nccl,
        FailureKind::NanLoss,
        FailureKind::Traceback,
        FailureKind::Killed,
        FailureKind::NoSpace,
        FailureKind::Preempted,
        FailureKind::MissingFile,
        FailureKind::Unknown,
    ];

    /// The name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::CudaOom => "cuda_oom",
            FailureKind::Nccl => "nccl",
            FailureKind::NanLoss => "nan_loss",
            FailureKind::Traceback => "traceback",
            FailureKind::Killed => "killed",
            FailureKind::NoSpace => "no_space",
            FailureKind::Preempted => "preempted",
            FailureKind::MissingFile => "missing_file",
            FailureKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A short human label ("CUDA out of memory", "Killed (SIGKILL / OOM killer)", …).
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::CudaOom => "CUDA out of memory",
            FailureKind::Nccl => "NCCL error",
            FailureKind::NanLoss => "NaN/inf loss",
            FailureKind::Traceback => "Python exception",
            FailureKind::Killed => "Killed (SIGKILL / OOM killer)",
            FailureKind::NoSpace => "No space left on device",
            FailureKind::Preempted => "Terminated (SIGTERM / preemption)",
            FailureKind::MissingFile => "Missing file",
            FailureKind::Unknown => "Unknown failure",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line, ≤ [`MAX_ERROR_CHARS`] chars, e.g. "CUDA out of memory: Tried to allocate
    /// 2.00 GiB (GPU 0; 79.35 GiB total capacity ...)"; for tracebacks the last exception line.
    pub message: String,
    /// The matched line with a few lines of context, ≤ [`MAX_ERROR_CHARS`] chars.
    pub excerpt: String,
}

impl Failure {
    /// The run's `error`: the message, a blank line and the excerpt, ≤ [`MAX_ERROR_CHARS`] chars
    /// (the excerpt is shortened from its start, the message kept whole).
    pub fn error_text(&self) -> String {
        let head = truncate_chars(&self.message, MAX_ERROR_CHARS);
        let room = MAX_ERROR_CHARS.saturating_sub(head.chars().count() + 2);
        if self.excerpt.is_empty() || room < 20 {
            return head;
        }
        let n = self.excerpt.chars().count();
        let excerpt = if n <= room {
            self.excerpt.clone()
        } else {
            let tail: String = self.excerpt.chars().skip(n - (room - 1)).collect();
            format!("…{tail}")
        };
        format!("{head}\n\n{excerpt}")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The text of a log's last [`MAX_LOG_TAIL`] bytes: lossily decoded, without the partial first
/// line when the log was cut.
pub fn log_tail_text(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_LOG_TAIL {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let tail = &bytes[bytes.len() - MAX_LOG_TAIL..];
    let tail = match tail.iter().position(|b| *b == b'\n') {
        Some(i) => &tail[i + 1..],
        None => tail,
    };
    String::from_utf8_lossy(tail).into_owned()
}

/// Truncates to at most `max` chars, ending with `…` when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Strips a torchrun per-rank prefix (`[rank0]:`, `[default3]:`) and one following space.
fn strip_rank_prefix(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[')
        && let Some(end) = rest.find("]:")
        && end > 0
        && end <= 16
        && rest[..end].chars().all(|c| c.is_ascii_alphanumeric())
    {
        let after = &rest[end + 2..];
        return after.strip_prefix(' ').unwrap_or(after);
    }
    line
}

/// Non-blank lines, split on `\n` and `\r` (progress bars), rank prefixes removed.
fn log_lines(tail: &str) -> Vec<&str> {
    tail.split(['\n', '\r'])
        .map(strip_rank_prefix)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn excerpt(lines: &[&str], idx: usize, before: usize, after: usize) -> String {
    let start = idx.saturating_sub(before);
    let end = (idx + after).min(lines.len().saturating_sub(1));
    let parts: Vec<String> = lines[start..=end]
        .iter()
        .map(|l| truncate_chars(l.trim_end(), EXCERPT_LINE_CHARS))
        .collect();
    let matched = idx - start;
    let mut first = 0;
    let len = |ps: &[String]| ps.iter().map(|p| p.chars().count() + 1).sum::<usize>();
    while first < matched && len(&parts[first..]) > MAX_ERROR_CHARS {
        first += 1;
    }
    truncate_chars(&parts[first..].join("\n"), MAX_ERROR_CHARS)
}

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
}

/// Whether `lower` mentions an exit code / status / return code in `codes`.
fn has_exit_code(lower: &str, codes: &[i64]) -> bool {
    for key in [
        "exit code",
        "exitcode",
        "exit_code",
        "exit status",
        "returncode",
        "return code",
    ] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(key) {
            let start = from + pos + key.len();
            let rest = lower[start..].trim_start_matches([' ', '\t', ':', '=']);
            let (neg, digits) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if let Ok(n) = digits[..end].parse::<i64>()
                && codes.contains(&if neg { -n } else { n })
            {
                return true;
            }
            from = start;
        }
    }
    false
}

fn is_cuda_oom(lower: &str) -> bool {
    lower.contains("cuda out of memory") || lower.contains("cuda error: out of memory")
}

fn is_nccl(lower: &str) -> bool {
    lower.contains("watchdog caught collective operation timeout")
        || (lower.contains("nccl")
            && (lower.contains("error")
                || lower.contains("timeout")
                || lower.contains("timed out")))
}

fn is_nan_loss(lower: &str) -> bool {
    let nan_word = words(lower).any(|w| w == "nan");
    (lower.contains("loss") && nan_word)
        || lower.contains("non-finite loss")
        || lower.contains("loss is not finite")
        || lower.contains("loss is inf")
        || lower.contains("infinite loss")
        || lower.contains("nan or inf")
        || lower.contains("inf or nan")
        || lower.contains("returned nan values")
}

fn is_no_space(lower: &str) -> bool {
    lower.contains("no space left on device")
        || lower.contains("errno 28")
        || words(lower).any(|w| w == "enospc")
        || lower.contains("disk quota exceeded")
}

fn is_missing_file(lower: &str) -> bool {
    lower.contains("filenotfounderror") || lower.contains("no such file or directory")
}

fn is_killed(line: &str, lower: &str) -> bool {
    words(line).any(|w| w == "Killed")
        || lower.contains("oom-kill")
        || lower.contains("oom_kill")
        || lower.contains("oom killer")
        || lower.contains("out of memory: killed process")
        || lower.contains("sigkill")
        || has_exit_code(lower, &[137, -9])
}

fn is_preempted(line: &str, lower: &str) -> bool {
    // torchrun sends SIGTERM to the other workers when one fails: not the cause.
    if lower.contains("closing signal sigterm") {
        return false;
    }
    lower.contains("sigterm")
        || lower.contains("preempt")
        || words(line).any(|w| w == "Terminated")
        || lower.contains("due to time limit")
        || has_exit_code(lower, &[143, -15])
}

/// The exception line of a traceback, if `line` is one: starts unindented with a dotted
/// identifier followed by `:` or nothing.
fn exception_type(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t']) {
        return None;
    }
    let head = line.split(':').next().unwrap_or(line).trim_end();
    let ok = !head.is_empty()
        && head
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        && head
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_');
    ok.then_some(head)
}

/// The exception line of every `Traceback (most recent call last):` block, in order.
fn traceback_exceptions(lines: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_tb = false;
    for (i, line) in lines.iter().enumerate() {
        if line
            .trim_start()
            .starts_with("Traceback (most recent call last)")
        {
            in_tb = true;
            continue;
        }
        if in_tb && exception_type(line).is_some() {
            out.push(i);
            in_tb = false;
        }
    }
    out
}

/// Classifies a log tail. Most specific wins: CUDA out of memory > NCCL error/timeout > NaN/inf
/// loss > no space left on device > missing file > killed (SIGKILL, OOM killer, exit code
/// 137/-9) > SIGTERM/preemption (also exit code 143/-15, Slurm time limit; torchrun's "closing
/// signal SIGTERM" to sibling workers does not count) > Python traceback (the exception line of
/// the last traceback, skipping torchrun's `ChildFailedError` wrapper when an earlier one
/// exists). Within a kind the last matching line is used, except that for NCCL the first
/// watchdog timeout line (the first observed failure) is preferred. Lines are split on `\n` and
/// `\r`, torchrun `[rankN]:` prefixes removed. `None` when nothing matches.
pub fn classify_failure(log_tail: &str) -> Option<Failure> {
    let lines = log_lines(log_tail);
    let lowers: Vec<String> = lines.iter().map(|l| l.to_lowercase()).collect();
    let last = |pred: &dyn Fn(&str, &str) -> bool| -> Option<usize> {
        (0..lines.len()).rev().find(|&i| pred(lines[i], &lowers[i]))
    };
    let make = |kind: FailureKind, idx: usize, message: String| Failure {
        kind,
        message: truncate_chars(&message, MAX_ERROR_CHARS),
        excerpt: excerpt(&lines, idx, 3, 1),
    };
    let labelled = |kind: FailureKind, idx: usize| {
        make(
            kind,
            idx,
            format!("{}: {}", kind.label(), lines[idx].trim()),
        )
    };

    if let Some(i) = last(&|_, l| is_cuda_oom(l)) {
        let line = lines[i];
        let lower = &lowers[i];
        let phrase_end = ["cuda out of memory", "cuda error: out of memory"]
            .iter()
            .filter_map(|p| lower.find(p).map(|at| at + p.len()))
            .min()
            .unwrap_or(line.len());
        // Lowercasing keeps ASCII byte offsets; fall back to the whole line otherwise.
        let detail = if lower.len() == line.len() && line.is_char_boundary(phrase_end) {
            line[phrase_end..]
                .trim_start_matches(['.', ':', ' '])
                .trim()
        } else {
            line.trim()
        };
        let message = if detail.is_empty() {
            FailureKind::CudaOom.label().to_owned()
        } else {
            format!("{}: {detail}", FailureKind::CudaOom.label())
        };
        return Some(make(FailureKind::CudaOom, i, message));
    }
    let first_watchdog = lowers
        .iter()
        .position(|l| l.contains("watchdog caught collective operation timeout"));
    if let Some(i) = first_watchdog.or_else(|| last(&|_, l| is_nccl(l))) {
        let lower = &lowers[i];
        let label = if lower.contains("timeout")
            || lower.contains("timed out")
            || lower.contains("timing out")
        {
            "NCCL timeout"
        } else {
            "NCCL error"
        };
        return Some(make(
            FailureKind::Nccl,
            i,
            format!("{label}: {}", lines[i].trim()),
        ));
    }
    if let Some(i) = last(&|_, l| is_nan_loss(l)) {
        return Some(labelled(FailureKind::NanLoss, i));
    }
    if let Some(i) = last(&|_, l| is_no_space(l)) {
        return Some(labelled(FailureKind::NoSpace, i));
    }
    if let Some(i) = last(&|_, l| is_missing_file(l)) {
        return Some(labelled(FailureKind::MissingFile, i));
    }
    if let Some(i) = last(&is_killed) {
        return Some(labelled(FailureKind::Killed, i));
    }
    if let Some(i) = last(&is_preempted) {
        return Some(labelled(FailureKind::Preempted, i));
    }
    let exceptions = traceback_exceptions(&lines);
    let is_wrapper =
        |i: &usize| exception_type(lines[*i]).is_some_and(|t| t.ends_with("ChildFailedError"));
    let chosen = exceptions
        .iter()
        .rev()
        .find(|i| !is_wrapper(i))
        .or(exceptions.last())
        .copied();
    chosen.map(|i| Failure {
        kind: FailureKind::Traceback,
        message: truncate_chars(lines[i].trim(), MAX_ERROR_CHARS),
        excerpt: excerpt(&lines, i, 4, 0),
    })
}

/// [`classify_failure`], or a [`FailureKind::Unknown`] failure quoting the last log lines when
/// nothing matched ("log is empty" for an empty tail).
pub fn failure_from_log(log_tail: &str) -> Failure {
    if let Some(f) = classify_failure(log_tail) {
        return f;
    }
    let lines = log_lines(log_tail);
    match lines.last() {
        None => Failure {
            kind: FailureKind::Unknown,
            message: "no recognisable error: the log is empty".to_owned(),
            excerpt: String::new(),
        },
        Some(last) => Failure {
            kind: FailureKind::Unknown,
            message: truncate_chars(
                &format!("no recognisable error; last log line: {}", last.trim()),
                MAX_ERROR_CHARS,
            ),
            excerpt: excerpt(&lines, lines.len() - 1, 4, 0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use serde_json::json;

    const H: i64 = 3600;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + TimeDelta::seconds(secs)
    }

    fn fi(size: u64, secs: i64) -> FileInfo {
        FileInfo {
            size,
            mtime: at(secs),
        }
    }

    /// A complete epoch whose files were written at `secs`, with these validation scores.
    fn epoch(secs: i64, scores: Value) -> EpochView {
        let mut e = EpochView::default();
        e.files
            .insert("training_losses.pt".into(), fi(1024, secs - 60));
        e.files
            .insert("optimizer_buffer.json".into(), fi(200, secs - 30));
        e.files.insert(VALIDATION_SCORES.into(), fi(100, secs));
        e.json
            .insert("optimizer_buffer.json".into(), Ok(json!({"lr": 0.001})));
        e.json.insert(VALIDATION_SCORES.into(), Ok(scores));
        e
    }

    fn plain_epoch(secs: i64) -> EpochView {
        epoch(secs, json!({"acc": 0.5}))
    }

    #[derive(Default)]
    struct B(RunView);

    impl B {
        fn file(mut self, name: &str, size: u64, secs: i64) -> Self {
            self.0.files.insert(name.into(), fi(size, secs));
            self
        }
        fn json(mut self, name: &str, secs: i64, v: Value) -> Self {
            self.0.files.insert(name.into(), fi(100, secs));
            self.0.json.insert(name.into(), Ok(v));
            self
        }
        fn json_err(mut self, name: &str, size: u64, secs: i64, reason: &str) -> Self {
            self.0.files.insert(name.into(), fi(size, secs));
            self.0.json.insert(name.into(), Err(reason.into()));
            self
        }
        fn dir(mut self, name: &str) -> Self {
            self.0.add_subdir(name);
            self
        }
        fn epoch(mut self, i: u32, e: EpochView) -> Self {
            self.0.add_subdir(&format!("epoch_{i}"));
            self.0.epochs.insert(i, e);
            self
        }
        /// Complete epochs 0..n, epoch i finished at `start + (i+1) × every`.
        fn epochs(mut self, n: u32, start: i64, every: i64) -> Self {
            for i in 0..n {
                self = self.epoch(i, plain_epoch(start + (i64::from(i) + 1) * every));
            }
            self
        }
        fn build(self) -> RunView {
            self.0
        }
    }

    fn trainer(n: u32, total: u32) -> B {
        B::default()
            .json(CONFIG_JSON, 0, json!({"epochs": total}))
            .epochs(n, 0, H)
    }

    fn rules() -> StatusRules {
        StatusRules {
            stall_after: Duration::from_secs(30 * 60),
            outdated_after: Duration::from_secs(30 * 86_400),
        }
    }

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

    // --- names and patterns ------------------------------------------------------------------

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

    // --- detection ---------------------------------------------------------------------------

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

    // --- trainer progress --------------------------------------------------------------------

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
    fn empty_expected_file_stops_the_count() {
        let mut e1 = plain_epoch(2 * H);
        e1.files.insert("training_losses.pt".into(), fi(0, 2 * H));
        assert!(!epoch_complete(&e1));
        assert_eq!(epoch_gap(&e1), Some("training_losses.pt empty".into()));
        let v = B::default()
            .epoch(0, plain_epoch(H))
            .epoch(1, e1)
            .epoch(2, plain_epoch(3 * H))
            .build();
        assert_eq!(completed_epochs(&v), 1);
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
    fn unread_json_expected_file_is_not_complete() {
        let mut e = plain_epoch(H);
        e.json.remove("optimizer_buffer.json");
        assert_eq!(epoch_gap(&e), Some("optimizer_buffer.json not read".into()));
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

    // --- evaluator ---------------------------------------------------------------------------

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

    // --- rate, ETA, median -------------------------------------------------------------------

    #[test]
    fn completion_time_is_newest_artifact_per_epoch() {
        let mut e0 = plain_epoch(H);
        e0.files.insert("extra.txt".into(), fi(1, H + 500));
        let v = B::default()
            .epoch(0, e0)
            .epoch(1, plain_epoch(2 * H))
            .epoch(2, plain_epoch(3 * H))
            .build();
        assert_eq!(epoch_completion_times(&v, 2), vec![at(H + 500), at(2 * H)]);
        assert!(epoch_completion_times(&v, 0).is_empty());
    }

    #[test]
    fn median_needs_two_times() {
        assert_eq!(median_epoch_duration(&[]), None);
        assert_eq!(median_epoch_duration(&[at(0)]), None);
        assert_eq!(
            median_epoch_duration(&[at(0), at(H)]),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn median_of_regular_epochs() {
        let times = [at(0), at(H), at(3 * H), at(4 * H), at(6 * H)];
        // diffs 1, 2, 1, 2 h → median 1.5 h
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(5400))
        );
        // Order does not matter.
        let mut shuffled = times;
        shuffled.reverse();
        assert_eq!(
            median_epoch_duration(&shuffled),
            Some(Duration::from_secs(5400))
        );
    }

    #[test]
    fn median_is_robust_to_a_restart_gap() {
        // 1 h epochs, the run was down for a day between epochs 3 and 4.
        let times = [at(0), at(H), at(2 * H), at(3 * H), at(27 * H), at(28 * H)];
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(3600))
        );
        // Even with only three completions.
        let times = [at(0), at(H), at(21 * H)];
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(3600))
        );
        // Moderate variation is not a restart.
        let times = [at(0), at(H), at(3 * H)];
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(5400))
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

    // --- status ------------------------------------------------------------------------------

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

    // --- scores ------------------------------------------------------------------------------

    #[test]
    fn flatten_keeps_numeric_leaves_with_dotted_keys() {
        let v = json!({
            "val": {"accuracy": 0.93, "loss": 0.07, "per_class": [0.9, 0.8], "name": "x"},
            "epoch": 3,
            "ok": true,
            "none": null,
            "deep": {"a": {"b": {"c": -1.5}}},
        });
        let s = flatten_scores(&v);
        let want: Scores = [
            ("val.accuracy".to_owned(), 0.93),
            ("val.loss".to_owned(), 0.07),
            ("epoch".to_owned(), 3.0),
            ("deep.a.b.c".to_owned(), -1.5),
        ]
        .into_iter()
        .collect();
        assert_eq!(s, want);
        assert_eq!(
            flatten_scores(&json!(0.5)),
            [("value".to_owned(), 0.5)].into()
        );
        assert!(flatten_scores(&json!([1, 2, 3])).is_empty());
    }

    #[test]
    fn best_scores_min_for_losses_and_errors_max_otherwise() {
        let h: Vec<Scores> = vec![
            [
                ("acc", 0.7),
                ("val.Loss", 0.9),
                ("top1_error", 0.3),
                ("mean_err", 2.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            [
                ("acc", 0.8),
                ("val.Loss", 0.5),
                ("top1_error", 0.2),
                ("new", 1.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            [
                ("acc", 0.75),
                ("val.Loss", 0.6),
                ("top1_error", 0.25),
                ("mean_err", 1.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ];
        let b = best_scores(&h);
        assert_eq!(b["acc"], 0.8);
        assert_eq!(b["val.Loss"], 0.5);
        assert_eq!(b["top1_error"], 0.2);
        assert_eq!(b["mean_err"], 1.0);
        assert_eq!(b["new"], 1.0);
        assert!(best_scores(&[]).is_empty());
    }

    #[test]
    fn lower_is_better_keys() {
        for k in [
            "loss",
            "val.LOSS",
            "train_loss_total",
            "error",
            "top5Error",
            "err",
            "abs_rel.err",
            "rmse",
            "val.mae",
            "epe",
            "wer",
            "ppl",
        ] {
            assert!(lower_is_better(k), "{k}");
        }
        for k in [
            "accuracy",
            "f1",
            "miou",
            "terrain_acc",
            "interrupt_rate",
            "auroc",
        ] {
            assert!(!lower_is_better(k), "{k}");
        }
    }

    // --- failure classification --------------------------------------------------------------

    const CUDA_OOM: &str = "\
Epoch 3:  45%|████▌     | 450/1000 [05:12<06:21,  1.44it/s, loss=0.231]\r\
Epoch 3:  45%|████▌     | 451/1000 [05:13<06:20,  1.44it/s, loss=0.229]
Traceback (most recent call last):
  File \"/home/ugro/proj/main.py\", line 212, in <module>
    main()
  File \"/home/ugro/proj/runners/base_trainer.py\", line 341, in run
    self._train_epoch_()
  File \"/home/ugro/proj/runners/base_trainer.py\", line 198, in _train_step_
    outputs = self.model(inputs)
  File \"/opt/conda/lib/python3.10/site-packages/torch/nn/modules/module.py\", line 1501, in _call_impl
    return forward_call(*args, **kwargs)
  File \"/opt/conda/lib/python3.10/site-packages/torch/nn/functional.py\", line 1457, in relu
    result = torch.relu(input)
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity; 75.12 GiB already allocated; 1.23 GiB free; 76.80 GiB reserved in total by PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF
";

    #[test]
    fn classifies_cuda_oom() {
        let f = classify_failure(CUDA_OOM).unwrap();
        assert_eq!(f.kind, FailureKind::CudaOom);
        assert!(
            f.message.starts_with(
                "CUDA out of memory: Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity"
            ),
            "{}",
            f.message
        );
        assert!(f.excerpt.contains("torch.relu(input)"), "{}", f.excerpt);
        assert!(f.excerpt.contains("torch.cuda.OutOfMemoryError"));
        assert!(f.excerpt.chars().count() <= MAX_ERROR_CHARS);
    }

    #[test]
    fn classifies_new_style_cuda_oom() {
        let log = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 23.65 GiB of which 3.06 MiB is free.\n";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::CudaOom);
        assert!(
            f.message
                .starts_with("CUDA out of memory: Tried to allocate 20.00 MiB. GPU 0")
        );
    }

    const NCCL_TIMEOUT: &str = "\
[rank0]:[E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48213, OpType=ALLREDUCE, NumelIn=25557032, NumelOut=25557032, Timeout(ms)=1800000) ran for 1800000 milliseconds before timing out.
[rank0]:[E ProcessGroupNCCL.cpp:1537] [PG 0 Rank 0] Timeout at NCCL work: 48213, last enqueued NCCL work: 48213, last completed NCCL work: 48212.
[rank0]:[E ProcessGroupNCCL.cpp:577] [Rank 0] Some NCCL operations have failed or timed out. Due to the asynchronous nature of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.
[rank0]:[E ProcessGroupNCCL.cpp:583] [Rank 0] To avoid data inconsistency, we are taking the entire process down.
terminate called after throwing an instance of 'c10::DistBackendError'
  what():  [PG 0 Rank 0] Process group watchdog thread terminated with exception: [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48213, OpType=ALLREDUCE, NumelIn=25557032, NumelOut=25557032, Timeout(ms)=1800000) ran for 1800000 milliseconds before timing out.
E0101 03:00:00.000000 140 torch/distributed/elastic/multiprocessing/api.py:826] failed (exitcode: -6) local_rank: 0 (pid: 4242) of binary: /opt/conda/bin/python
";

    #[test]
    fn classifies_nccl_watchdog_timeout() {
        let f = classify_failure(NCCL_TIMEOUT).unwrap();
        assert_eq!(f.kind, FailureKind::Nccl);
        assert!(
            f.message.starts_with(
                "NCCL timeout: [E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48213, OpType=ALLREDUCE"
            ),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("ran for 1800000 milliseconds before timing out")
        );
        assert!(
            f.excerpt.starts_with("[E ProcessGroupNCCL.cpp:563]"),
            "{}",
            f.excerpt
        );
    }

    #[test]
    fn classifies_nccl_error() {
        let log = "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5\n";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::Nccl);
        assert!(
            f.message
                .starts_with("NCCL error: torch.distributed.DistBackendError")
        );
        // Plain NCCL chatter is not an error.
        assert_eq!(
            classify_failure("gpu1:4242:4242 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>\n"),
            None
        );
    }

    #[test]
    fn cuda_oom_beats_nccl() {
        let log = format!("{CUDA_OOM}{NCCL_TIMEOUT}");
        assert_eq!(classify_failure(&log).unwrap().kind, FailureKind::CudaOom);
    }

    #[test]
    fn classifies_nan_loss() {
        let log = "\
Epoch 12 | step 4800 | loss 0.4123 | lr 3.0e-04
Epoch 12 | step 4850 | loss nan | lr 3.0e-04
Loss is nan, stopping training
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::NanLoss);
        assert_eq!(f.message, "NaN/inf loss: Loss is nan, stopping training");
        assert!(f.excerpt.contains("loss nan | lr"));
    }

    const VALUE_ERROR: &str = "\
2025-01-01 03:00:00 INFO best_val_loss = inf
Traceback (most recent call last):
  File \"/home/u/proj/data/loader.py\", line 88, in __getitem__
    sample = self.cache[key]
KeyError: 'img_00042'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/home/u/proj/main.py\", line 212, in <module>
    main()
  File \"/home/u/proj/data/loader.py\", line 91, in __getitem__
    raise ValueError(f\"bad sample shape {shape}, expected (3, 224, 224)\")
ValueError: bad sample shape (1, 224, 224), expected (3, 224, 224)
";

    #[test]
    fn traceback_last_exception_line_wins() {
        let f = classify_failure(VALUE_ERROR).unwrap();
        assert_eq!(f.kind, FailureKind::Traceback);
        assert_eq!(
            f.message,
            "ValueError: bad sample shape (1, 224, 224), expected (3, 224, 224)"
        );
        assert!(f.excerpt.contains("loader.py\", line 91"), "{}", f.excerpt);
        assert!(f.excerpt.ends_with("expected (3, 224, 224)"));
        assert!(!f.excerpt.contains("KeyError"));
    }

    #[test]
    fn torchrun_child_failure_reports_the_child_exception() {
        let log = "\
[rank1]: Traceback (most recent call last):
[rank1]:   File \"/home/u/proj/main.py\", line 10, in <module>
[rank1]:     main()
[rank1]: AssertionError: labels out of range
W0101 03:00:00.000000 1234 torch/distributed/elastic/multiprocessing/api.py:890] Sending process 4243 closing signal SIGTERM
E0101 03:00:01.000000 1234 torch/distributed/elastic/multiprocessing/api.py:862] failed (exitcode: 1) local_rank: 1 (pid: 4244) of binary: /opt/conda/bin/python
Traceback (most recent call last):
  File \"/opt/conda/bin/torchrun\", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
main.py FAILED
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::Traceback);
        assert_eq!(f.message, "AssertionError: labels out of range");
    }

    #[test]
    fn classifies_killed() {
        let log = "Epoch 3:  12%|█▏        | 120/1000 [00:40<04:53,  3.00it/s]\rEpoch 3:  12%|█▏        | 121/1000 [00:40<04:53,  3.00it/s]\nKilled\n";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::Killed);
        assert_eq!(f.message, "Killed (SIGKILL / OOM killer): Killed");
        for log in [
            "run.sh: line 12:  4242 Killed                  python main.py --config c.py\n",
            "[12345.678] Out of memory: Killed process 4242 (python) total-vm:98765432kB\n",
            "Process finished with exit code 137\n",
            "  exitcode  : -9 (pid: 4242)\n",
            "subprocess.CalledProcessError: Command '['python', 'main.py']' died with <Signals.SIGKILL: 9>.\n",
        ] {
            assert_eq!(
                classify_failure(log).map(|f| f.kind),
                Some(FailureKind::Killed),
                "{log}"
            );
        }
        // Other exit codes are not kills.
        assert_eq!(
            classify_failure("Process finished with exit code 1370\n"),
            None
        );
    }

    #[test]
    fn classifies_no_space() {
        let log = "\
Traceback (most recent call last):
  File \"/home/u/proj/runners/base_trainer.py\", line 402, in _save_scores_
    json.dump(scores, f)
  File \"/opt/conda/lib/python3.10/json/__init__.py\", line 180, in dump
    fp.write(chunk)
OSError: [Errno 28] No space left on device
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::NoSpace);
        assert_eq!(
            f.message,
            "No space left on device: OSError: [Errno 28] No space left on device"
        );
        assert!(f.excerpt.contains("fp.write(chunk)"));
    }

    #[test]
    fn classifies_missing_file() {
        let log = "\
  File \"/home/u/proj/data/imagenet.py\", line 40, in _load_
    with open(path, 'rb') as f:
FileNotFoundError: [Errno 2] No such file or directory: '/data/imagenet/train/n01440764/n01440764_10026.JPEG'
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::MissingFile);
        assert!(
            f.message
                .starts_with("Missing file: FileNotFoundError: [Errno 2]")
        );
        assert!(f.message.ends_with("n01440764_10026.JPEG'"));
    }

    #[test]
    fn classifies_sigterm_and_preemption() {
        for log in [
            "Received SIGTERM, saving checkpoint and exiting\n",
            "slurmstepd: error: *** JOB 4242 ON gpu1 CANCELLED AT 2025-01-01T03:00:00 DUE TO PREEMPTION ***\n",
            "Terminated\n",
            "Instance preempted by the cloud provider\n",
            "slurmstepd: error: *** JOB 4242 ON gpu1 CANCELLED AT 2025-01-01T03:00:00 DUE TO TIME LIMIT ***\n",
        ] {
            assert_eq!(
                classify_failure(log).map(|f| f.kind),
                Some(FailureKind::Preempted),
                "{log}"
            );
        }
    }

    #[test]
    fn specific_kinds_beat_each_other_in_order() {
        // NaN beats no-space, no-space beats missing file, missing file beats killed, killed beats
        // SIGTERM, SIGTERM beats a traceback.
        let nan = "loss: nan\n";
        let space = "OSError: [Errno 28] No space left on device\n";
        let missing = "FileNotFoundError: [Errno 2] No such file or directory: 'x'\n";
        let killed = "Killed\n";
        let term = "Received SIGTERM\n";
        let tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: x\n";
        let cases = [
            (format!("{space}{nan}"), FailureKind::NanLoss),
            (format!("{missing}{space}"), FailureKind::NoSpace),
            (format!("{killed}{missing}"), FailureKind::MissingFile),
            (format!("{term}{killed}"), FailureKind::Killed),
            (format!("{tb}{term}"), FailureKind::Preempted),
        ];
        for (log, kind) in cases {
            assert_eq!(classify_failure(&log).map(|f| f.kind), Some(kind), "{log}");
        }
    }

    #[test]
    fn initial_infinite_best_loss_is_not_a_nan_failure() {
        let log = "best_val_loss = inf\nbest loss: inf\nEpoch 1 done\n";
        assert_eq!(classify_failure(log), None);
    }

    #[test]
    fn clean_log_has_no_failure() {
        assert_eq!(classify_failure(""), None);
        assert_eq!(
            classify_failure("Epoch 9 | loss 0.12 | acc 0.93\nTraining finished.\n"),
            None
        );
    }

    #[test]
    fn messages_are_capped() {
        let long = format!("RuntimeError: {}\n", "x".repeat(5000));
        let log = format!("Traceback (most recent call last):\n  File \"a.py\", line 1\n{long}");
        let f = classify_failure(&log).unwrap();
        assert_eq!(f.kind, FailureKind::Traceback);
        assert_eq!(f.message.chars().count(), MAX_ERROR_CHARS);
        assert!(f.message.ends_with('…'));
        assert!(f.excerpt.chars().count() <= MAX_ERROR_CHARS);
        assert!(f.error_text().chars().count() <= MAX_ERROR_CHARS);
    }

    #[test]
    fn error_text_joins_message_and_excerpt() {
        let f = classify_failure(CUDA_OOM).unwrap();
        let text = f.error_text();
        assert!(text.starts_with(&f.message));
        assert!(text.contains("\n\n"));
        assert!(text.chars().count() <= MAX_ERROR_CHARS);
        let short = Failure {
            kind: FailureKind::Killed,
            message: "Killed (SIGKILL / OOM killer): Killed".into(),
            excerpt: "step 10\nKilled".into(),
        };
        assert_eq!(
            short.error_text(),
            "Killed (SIGKILL / OOM killer): Killed\n\nstep 10\nKilled"
        );
    }

    #[test]
    fn failure_from_log_falls_back_to_unknown() {
        let f = failure_from_log("Epoch 3 | loss 0.3\nsaving checkpoint\n");
        assert_eq!(f.kind, FailureKind::Unknown);
        assert_eq!(
            f.message,
            "no recognisable error; last log line: saving checkpoint"
        );
        assert_eq!(f.excerpt, "Epoch 3 | loss 0.3\nsaving checkpoint");
        assert_eq!(
            failure_from_log("").message,
            "no recognisable error: the log is empty"
        );
        assert_eq!(failure_from_log("Killed\n").kind, FailureKind::Killed);
    }

    #[test]
    fn log_tail_drops_the_partial_first_line() {
        assert_eq!(log_tail_text(b"a\nb\n"), "a\nb\n");
        let mut big = vec![b'x'; MAX_LOG_TAIL];
        big.extend_from_slice(b"\nlast line\n");
        assert_eq!(log_tail_text(&big), "last line\n");
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(log_tail_text(b"a\xffb"), "a\u{fffd}b");
    }
}
