//! Run tracking rules: which directories are runs, what kind of runner wrote them, how far they
//! got (epochs, scores, rate, ETA), their status, and why they failed (log tail classification).
//!
//! Everything here is pure. The caller lists a run directory, stats and reads the few files that
//! matter, and passes the result as a [`RunView`]; status rules take `now` and whether a live
//! process belongs to the run. The rules are documented in docs/run-layouts.md (run kinds, trainer
//! progress, status).
//!
//! One module per rule set, all re-exported here: `model` (layout names, kinds, statuses),
//! `view` (the caller's view of a run directory), `detect` (runner detection), `epochs`
//! (trainer epochs, median epoch time), `scores`, `progress` (progress and evaluation),
//! `status` and `failure` (failure classification from a log tail).

mod detect;
mod epochs;
mod failure;
#[cfg(test)]
mod fixtures;
mod logs;
mod model;
mod progress;
mod scores;
mod status;
mod view;

pub use detect::{Detection, detect};
pub use epochs::{
    RESTART_GAP_FACTOR, completed_epochs, epoch_complete, epoch_completion_times, epoch_gap,
    median_epoch_duration,
};
pub use failure::{
    Failure, FailureKind, MAX_ERROR_CHARS, MAX_LOG_TAIL, classify_failure, failure_from_log,
    log_tail_text,
};
pub use logs::{
    LOGS_DIR, MAX_LOG_GLOB_DEPTH, MAX_LOG_GLOB_LEN, all_logs, glob_match, is_run_log, log_dirs,
    log_glob_problem,
};
pub use model::{
    CONFIG_JSON, EVALUATOR_SCORES, GENERIC_PROGRESS_KEYS, PROGRESS_JSON, RunStatus, RunnerKind,
    STATUS_DONE, STATUS_STOPPED, TRAINER_EXPECTED, VALIDATION_SCORES,
};
pub use progress::{Evaluation, Progress, evaluate};
pub use scores::{Scores, best_scores, flatten_scores, lower_is_better};
pub use status::{STALL_EPOCHS, StatusRules, stall_window, status};
pub use view::{
    CompletedEpochs, EpochView, FileInfo, JsonRead, RunView, epoch_dir_index, is_log_of,
    is_run_dir, read_json, validate_json,
};
