//! Pure domain logic of ugro-monitor. Nothing here touches the filesystem, the network or the
//! clock: callers pass views of the world and `now`, so every rule is unit-testable.
//!
//! - [`event`]: the kinds of event the daemon records (one enum, stored as `run.failed` strings).
//! - [`health`]: check results, verdict (score and state), hysteresis, adaptive interval, alerts.
//! - [`liveness`]: which background tasks are alive, for the systemd watchdog.
//! - [`parse`]: parsers of probe output (nvidia-smi, df, /proc, batched sections) and the checks
//!   built from them.
//! - [`runs`]: run detection (trainer/evaluator/generic/unknown), progress, scores, rate/ETA,
//!   status and failure classification from a view of a run directory.
//! - [`sample`]: GPU/CPU/memory samples and the parsing of the sampler's probe output.
//! - [`schedule`]: when summaries are due (cron in a timezone, catch-up), from a given `now`.
//! - [`slurm`]: `squeue`/`sinfo` command lines and parsing, queued jobs, jobs of runs, drain
//!   decisions (the `ugro: ` reason prefix).
//! - [`summary`]: snapshots, their diff, and the nightly summary's content and rendering.

pub mod containers;
pub mod event;
pub mod health;
pub mod liveness;
pub mod parse;
pub mod runs;
pub mod sample;
pub mod schedule;
pub mod slurm;
pub mod summary;
