//! The events of run tracking: transitions, completed epochs, a root missing, a fallback from
//! inotify to polling; and the count of runs that turned failed, by kind.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::runs::{FailureKind, RunStatus};

use crate::config::RootConfig;
use crate::store::NewEvent;

use super::Run;

/// The `root.missing` event.
pub(super) fn missing_event(root: &Path, why: &str, runs: usize) -> NewEvent {
    NewEvent::new(
        EventKind::RootMissing,
        root.display().to_string(),
        Severity::Warning,
        format!(
            "root {} {why}; its {runs} run(s) stay listed as stale until it is back",
            root.display()
        ),
    )
}

pub(super) fn epoch_event(r: &Run, before: u32, after: u32) -> NewEvent {
    let range = if after - before == 1 {
        format!("epoch {}", after - 1)
    } else {
        format!("epochs {}–{}", before, after - 1)
    };
    let total = r
        .eval
        .progress
        .total_epochs
        .map_or("?".into(), |t| t.to_string());
    NewEvent::new(
        EventKind::RunEpochCompleted,
        &r.id,
        Severity::Info,
        format!("{}: {range} completed ({after}/{total})", r.id),
    )
}

pub(super) fn transition_event(r: &Run, old: RunStatus) -> Option<NewEvent> {
    let id = &r.id;
    let p = &r.eval.progress;
    let epochs = match p.total_epochs {
        Some(t) => format!("{}/{t} epochs", p.completed_epochs),
        None => format!("{} epochs", p.completed_epochs),
    };
    let reason = r.error.as_ref().map_or_else(
        || "no error found in the log".to_string(),
        |e| e.message.clone(),
    );
    Some(match r.status {
        RunStatus::Running if old != RunStatus::Unknown => NewEvent::new(
            EventKind::RunStarted,
            id,
            Severity::Info,
            format!("{id}: running ({epochs})"),
        ),
        RunStatus::Finished => NewEvent::new(
            EventKind::RunFinished,
            id,
            Severity::Info,
            format!("{id}: finished ({epochs})"),
        ),
        RunStatus::Failed => NewEvent::new(
            EventKind::RunFailed,
            id,
            Severity::Warning,
            format!("{id}: failed after {epochs}: {reason}"),
        ),
        RunStatus::Stuck => NewEvent::new(
            EventKind::RunStuck,
            id,
            Severity::Warning,
            format!(
                "{id}: stuck: its process (pid {} on {}) lives but the log is quiet ({epochs}); {reason}",
                r.process.as_ref().map_or(0, |p| p.pid),
                r.process.as_ref().map_or("?", |p| p.node.as_str()),
            ),
        ),
        RunStatus::Outdated => NewEvent::new(
            EventKind::RunOutdated,
            id,
            Severity::Info,
            format!("{id}: outdated (finished, artifacts older than the root's outdated_after)"),
        ),
        _ => return None,
    })
}

/// The `root.watch_fallback` warning: this root is polled instead of watched.
pub(super) fn fallback_event(root: &Path, cfg: &RootConfig, why: &str) -> NewEvent {
    NewEvent::new(
        EventKind::RootWatchFallback,
        root.display().to_string(),
        Severity::Warning,
        format!(
            "cannot watch {} with inotify ({why}); polling every {} instead",
            root.display(),
            humantime::format_duration(cfg.poll_interval)
        ),
    )
}

/// Runs that turned failed since the daemon started, by failure kind
/// (`ugro_run_failures_total`). The run tracker records each transition into failed.
#[derive(Debug, Default)]
pub struct RunFailures([AtomicU64; FailureKind::ALL.len()]);

impl RunFailures {
    /// One more run failed; `None` when its log told no reason (counted as `unknown`).
    pub fn record(&self, kind: Option<FailureKind>) {
        let kind = kind.unwrap_or(FailureKind::Unknown);
        if let Some(i) = FailureKind::ALL.iter().position(|k| *k == kind) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every kind with its count, zeros included.
    pub fn counts(&self) -> Vec<(FailureKind, u64)> {
        FailureKind::ALL
            .iter()
            .zip(&self.0)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_by_kind_with_zeros_and_unknown_for_no_reason() {
        let f = RunFailures::default();
        f.record(Some(FailureKind::CudaOom));
        f.record(Some(FailureKind::CudaOom));
        f.record(None);
        let c = f.counts();
        assert_eq!(c.len(), FailureKind::ALL.len());
        let get = |k| c.iter().find(|(kind, _)| *kind == k).unwrap().1;
        assert_eq!(get(FailureKind::CudaOom), 2);
        assert_eq!(get(FailureKind::Unknown), 1);
        assert_eq!(get(FailureKind::Nccl), 0);
    }
}
