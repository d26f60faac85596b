//! Storing a root's runs: the root's writer task, its backlog (one entry per run while the
//! database refuses writes) and what to store of each change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ugro_core::runs::{self as core, RunView, RunnerKind};

use crate::store::{NewEvent, Store, StoreError};
use crate::view::RunInfo;

use super::Run;
use super::host::RunsHost;

/// Rows per transaction when storing runs: a first scan stores every epoch of every run, and
/// other writers (health, events) must get the database in between.
pub(super) const STORE_BATCH: usize = 4000;

/// Runs to store: each changed run as published, with the epochs whose completion times are
/// not stored yet (`from..to` of its view), and the gone runs.
#[derive(Debug, Default)]
pub(super) struct ToStore {
    pub(super) changed: Vec<(RunInfo, Option<EpochsToStore>)>,
    pub(super) gone: Vec<String>,
}

/// The completion times of epochs `from..to` of a run's view.
pub(super) type EpochsToStore = (Arc<RunView>, u32, u32);

/// What the root's writer task stores, in order.
#[derive(Debug)]
pub(super) enum Write {
    Runs(ToStore),
    Events(Vec<NewEvent>),
    /// Time to try a failed store again (made by the writer itself).
    Retry,
}

/// What to store for the changed runs (`infos`, as published) and the gone ones; the epochs
/// handed over count as stored from now on.
pub(super) fn to_store(
    runs: &mut BTreeMap<String, Run>,
    infos: Vec<RunInfo>,
    gone: &[String],
) -> ToStore {
    let mut out = ToStore {
        gone: gone.to_vec(),
        changed: Vec::with_capacity(infos.len()),
    };
    for i in infos {
        let epochs = runs.get_mut(&i.id).and_then(|r| {
            let done = r.eval.progress.completed_epochs;
            (r.eval.kind == RunnerKind::Trainer && done > r.stored_epochs).then(|| {
                let from = std::mem::replace(&mut r.stored_epochs, done);
                (Arc::clone(&r.view), from, done)
            })
        });
        out.changed.push((i, epochs));
    }
    out
}

/// First wait before a failed store is tried again; it doubles up to [`RETRY_MAX`].
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(500);

/// Longest wait between two tries of a failed store.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(10);

/// One run's pending write: delete its rows (it went; maybe it came back since), then store
/// its newest state and the epochs not stored yet.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) delete: bool,
    pub(super) info: Option<RunInfo>,
    pub(super) epochs: Option<EpochsToStore>,
}

impl Pending {
    /// Rows this writes (a batch holds about [`STORE_BATCH`]).
    pub(super) fn rows(&self) -> usize {
        1 + self
            .epochs
            .as_ref()
            .map_or(0, |(_, from, to)| to.saturating_sub(*from) as usize)
    }
}

/// What a root's writer still has to store, one entry per run: a newer state replaces an older
/// one, so a database that refuses writes for hours costs one entry per run, never a growing
/// queue, and what lands once it takes writes again is the state held in memory.
#[derive(Debug, Default)]
pub(super) struct Backlog(pub(super) BTreeMap<String, Pending>);

impl Backlog {
    pub(super) fn merge(&mut self, s: ToStore) {
        for (info, epochs) in s.changed {
            let p = self.0.entry(info.id.clone()).or_default();
            p.epochs = match (p.epochs.take(), epochs) {
                // The newest view, from the first epoch not stored yet.
                (Some((_, old_from, _)), Some((view, from, to))) => {
                    Some((view, old_from.min(from).min(to), to))
                }
                (old, new) => new.or(old),
            };
            p.info = Some(info);
        }
        for id in s.gone {
            self.0.insert(
                id,
                Pending {
                    delete: true,
                    ..Pending::default()
                },
            );
        }
    }

    pub(super) fn rows(&self) -> usize {
        self.0.values().map(Pending::rows).sum()
    }

    /// Stores the backlog in transactions of about [`STORE_BATCH`] rows (the epoch rows are
    /// made one transaction at a time, so a first scan's 100 000 of them are never all in
    /// memory). Stops at the first failure, keeping what did not land; `Err` then.
    pub(super) async fn flush(&mut self, store: &Store, root: &str) -> Result<(), StoreError> {
        while !self.0.is_empty() {
            let mut batch = Vec::new();
            let mut rows = 0;
            while rows < STORE_BATCH
                && let Some((id, p)) = self.0.pop_first()
            {
                rows += p.rows();
                batch.push((id, p));
            }
            let mut gone = Vec::new();
            let mut changed = Vec::new();
            let mut epochs = Vec::new();
            for (id, p) in &batch {
                if p.delete {
                    gone.push(id.clone());
                }
                if let Some(info) = &p.info {
                    changed.push(info.clone());
                }
                if let Some((view, from, to)) = &p.epochs {
                    let times = core::epoch_completion_times(view, *to);
                    for (e, t) in times.into_iter().enumerate().skip(*from as usize) {
                        epochs.push((id.clone(), e as u32, t));
                    }
                }
            }
            let started = std::time::Instant::now();
            let result = store
                .save_runs(root, &changed, &gone, &epochs, Utc::now())
                .await;
            tracing::debug!(
                rows = changed.len() + gone.len() + epochs.len(),
                ms = started.elapsed().as_millis() as u64,
                ok = result.is_ok(),
                "stored runs"
            );
            if let Err(e) = result {
                // Nothing was merged meanwhile (this task is the only one merging): put it back.
                self.0.extend(batch);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The root's writer: stores runs and records events in the order they come, so the tracking
/// loop never waits on the database (it waits only when this falls far behind). A store that
/// fails is kept in the backlog and tried again, waiting longer each time (up to
/// [`RETRY_MAX`]); what comes meanwhile is merged into it.
pub(super) async fn writer<H: RunsHost>(
    host: Arc<H>,
    root: String,
    mut rx: tokio::sync::mpsc::Receiver<Write>,
) {
    let mut backlog = Backlog::default();
    let mut reported = 0usize;
    // Set while failing: when to try again, and the wait after that.
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    let report = |backlog: &Backlog, reported: &mut usize| {
        let rows = backlog.rows();
        host.store().add_pending(rows as i64 - *reported as i64);
        *reported = rows;
    };
    loop {
        let w = match retry {
            Some((at, _)) if !backlog.0.is_empty() => tokio::select! {
                w = rx.recv() => w,
                _ = tokio::time::sleep_until(at) => Some(Write::Retry),
            },
            _ => rx.recv().await,
        };
        let Some(w) = w else { break };
        let (flush, events) = match w {
            Write::Runs(s) => {
                backlog.merge(s);
                report(&backlog, &mut reported);
                (retry.is_none(), Vec::new())
            }
            Write::Retry => (true, Vec::new()),
            // The events follow the runs they are about: those go first (unless failing).
            Write::Events(events) => (retry.is_none() && !backlog.0.is_empty(), events),
        };
        if flush {
            let result = backlog.flush(host.store(), &root).await;
            report(&backlog, &mut reported);
            retry = match result {
                Ok(()) => {
                    host.store().write_landed();
                    None
                }
                Err(e) => {
                    let wait = retry.map_or(RETRY_FIRST, |(_, w)| w);
                    tracing::warn!(
                        error = %e,
                        runs = backlog.0.len(),
                        retry_in_ms = wait.as_millis() as u64,
                        "could not store runs; kept to try again"
                    );
                    Some((
                        tokio::time::Instant::now() + wait,
                        (wait * 2).min(RETRY_MAX),
                    ))
                }
            };
        }
        for e in events {
            host.event(e).await;
        }
    }
    // The root is gone or the daemon stops: one last try.
    if !backlog.0.is_empty() && backlog.flush(host.store(), &root).await.is_err() {
        tracing::warn!(
            runs = backlog.0.len(),
            "runs not stored; the next start's first scan stores them"
        );
    }
    host.store().add_pending(-(reported as i64));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::tests::stored;
    use super::*;
    use ugro_core::runs::RunStatus;

    #[test]
    fn a_failed_store_keeps_one_entry_per_run_with_its_newest_state() {
        let info = |id: &str, s| stored(id, s).1;
        let view = Arc::new(RunView::default());
        let mut b = Backlog::default();
        b.merge(ToStore {
            changed: vec![(info("a", RunStatus::Running), Some((view.clone(), 0, 3)))],
            gone: Vec::new(),
        });
        // Not stored yet: newer states and a run that went.
        b.merge(ToStore {
            changed: vec![(info("a", RunStatus::Finished), Some((view.clone(), 3, 5)))],
            gone: vec!["b".into()],
        });
        b.merge(ToStore {
            changed: vec![(info("b", RunStatus::Running), None)],
            gone: Vec::new(),
        });
        assert_eq!(b.0.len(), 2);
        let a = &b.0["a"];
        assert_eq!(a.info.as_ref().map(|i| i.status), Some(RunStatus::Finished));
        assert_eq!(
            a.epochs.as_ref().map(|(_, from, to)| (*from, *to)),
            Some((0, 5)),
            "every epoch not stored yet, from the first handed over"
        );
        assert!(!a.delete);
        let back = &b.0["b"];
        assert!(
            back.delete && back.info.is_some(),
            "gone, then back: its rows deleted, then stored fresh"
        );
        assert_eq!(b.rows(), (1 + 5) + 1);
        // Hours of failures cost no more entries.
        for _ in 0..1000 {
            b.merge(ToStore {
                changed: vec![(info("a", RunStatus::Running), None)],
                gone: Vec::new(),
            });
        }
        assert_eq!(b.0.len(), 2);
        assert_eq!(b.0["a"].rows(), 6, "epochs kept while newer states come");
    }
}
