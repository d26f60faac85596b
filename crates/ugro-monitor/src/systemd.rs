//! systemd integration: the notify protocol (READY, RELOADING, STATUS, WATCHDOG, STOPPING) and
//! the task heartbeats that decide whether the watchdog may ping. Without `NOTIFY_SOCKET` every
//! notification is a no-op and the daemon runs the same.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use ugro_api::TaskStatus;
use ugro_core::liveness::{self, Beat};

use crate::store::Store;

type Sink = dyn Fn(&[NotifyState<'_>]) + Send + Sync;

/// Where notifications go. Production uses [`Notifier::systemd`]; tests may capture them.
#[derive(Clone)]
pub struct Notifier {
    sink: Arc<Sink>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Notifier {
    /// Sends to `$NOTIFY_SOCKET` (nothing happens when it is unset).
    pub fn systemd() -> Self {
        Self {
            sink: Arc::new(|states| {
                if let Err(e) = sd_notify::notify(states) {
                    tracing::debug!(error = %e, "sd_notify failed");
                }
            }),
        }
    }

    /// Sends to a custom sink (tests).
    pub fn from_fn(f: impl Fn(&[NotifyState<'_>]) + Send + Sync + 'static) -> Self {
        Self { sink: Arc::new(f) }
    }

    pub fn notify(&self, states: &[NotifyState<'_>]) {
        (self.sink)(states);
    }

    pub fn status(&self, text: &str) {
        self.notify(&[NotifyState::Status(text)]);
    }

    pub fn ready(&self, status: &str) {
        self.notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.notify(&[NotifyState::Reloading, now]),
            Err(_) => self.notify(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.notify(&[NotifyState::Stopping, NotifyState::Status("Stopping")]);
    }
}

/// Registry of background tasks and when each last reported.
#[derive(Debug)]
pub struct Heartbeats {
    origin: Instant,
    /// By registration number, so the listing keeps the order tasks were started in.
    tasks: Mutex<BTreeMap<u64, Beat>>,
    next: std::sync::atomic::AtomicU64,
}

/// A task's handle for reporting in. Dropping it marks the task ended, which stops the
/// watchdog pings — unless the task was told to stop ([`Heartbeats::register_until`]): then it
/// leaves the registry, as a node or root removed by a reload does.
#[derive(Debug)]
pub struct Heartbeat {
    registry: Arc<Heartbeats>,
    id: u64,
    stop: Option<CancellationToken>,
}

impl Heartbeats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            tasks: Mutex::new(BTreeMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Beat>> {
        // A panic while holding this lock cannot leave the data inconsistent (plain stores).
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a task that promises to report at least every `max_gap` for as long as the
    /// daemon runs: its end is a failure.
    pub fn register(self: &Arc<Self>, task: &str, max_gap: Duration) -> Heartbeat {
        self.add(task, max_gap, None)
    }

    /// Registers a task that runs until `stop` is cancelled (a node's or a root's loop, which a
    /// reload may end or restart). Ending after `stop` retires it from the registry; ending
    /// before is a failure, as for [`Heartbeats::register`].
    pub fn register_until(
        self: &Arc<Self>,
        task: &str,
        max_gap: Duration,
        stop: &CancellationToken,
    ) -> Heartbeat {
        self.add(task, max_gap, Some(stop.clone()))
    }

    fn add(
        self: &Arc<Self>,
        task: &str,
        max_gap: Duration,
        stop: Option<CancellationToken>,
    ) -> Heartbeat {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(
            id,
            Beat {
                task: task.to_string(),
                last: self.origin.elapsed(),
                max_gap,
                ended: false,
            },
        );
        Heartbeat {
            registry: Arc::clone(self),
            id,
            stop,
        }
    }

    /// The tasks that are not alive now.
    pub fn stalled(&self) -> Vec<liveness::Stalled> {
        let beats: Vec<Beat> = self.lock().values().cloned().collect();
        liveness::stalled(&beats, self.origin.elapsed())
    }

    pub fn status(&self) -> Vec<TaskStatus> {
        let now = self.origin.elapsed();
        self.lock()
            .values()
            .map(|b| TaskStatus {
                name: b.task.clone(),
                alive: liveness::is_alive(b, now),
                last_beat_seconds_ago: now.saturating_sub(b.last).as_secs(),
            })
            .collect()
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let now = self.registry.origin.elapsed();
        if let Some(b) = self.registry.lock().get_mut(&self.id) {
            b.last = now;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let mut tasks = self.registry.lock();
        if self
            .stop
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
        {
            tasks.remove(&self.id);
        } else if let Some(b) = tasks.get_mut(&self.id) {
            b.ended = true;
        }
    }
}

/// Pings the systemd watchdog every `period` while every registered task is alive and the
/// database answers; otherwise holds the pings (so systemd restarts a wedged daemon) and says
/// why in `STATUS=`.
pub async fn watchdog(
    period: Duration,
    heartbeats: Arc<Heartbeats>,
    store: Store,
    notifier: Notifier,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut holding = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut reasons: Vec<String> = heartbeats.stalled().iter().map(|s| s.to_string()).collect();
        if let Err(e) = store.ping(period / 2).await {
            reasons.push(format!("database not answering: {e}"));
        }
        if reasons.is_empty() {
            notifier.notify(&[NotifyState::Watchdog]);
            if holding {
                holding = false;
                tracing::info!("all tasks report again; watchdog pings resumed");
                notifier.status("Running");
            }
        } else {
            let why = reasons.join("; ");
            if !holding {
                tracing::error!(reason = %why, "holding watchdog pings");
            }
            holding = true;
            notifier.status(&format!("Unhealthy, watchdog held: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pings_stop_when_a_task_stalls_and_resume_when_it_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let notifier = Notifier::from_fn(move |states| {
            for s in states {
                let _ = tx.send(s.to_string());
            }
        });
        let beats = Heartbeats::new();
        let worker = beats.register("worker", Duration::from_millis(150));
        let cancel = CancellationToken::new();
        let wd = tokio::spawn(watchdog(
            Duration::from_millis(40),
            beats.clone(),
            store,
            notifier,
            cancel.clone(),
        ));

        // While the worker beats, pings flow.
        let mut pings = 0;
        for _ in 0..8 {
            worker.beat();
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        while let Ok(s) = rx.try_recv() {
            pings += usize::from(s == "WATCHDOG=1");
        }
        assert!(pings >= 3, "pings while alive: {pings}");

        // The worker goes silent: after its gap has passed, no more pings, and STATUS says why.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(200)).await;
        let held: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(!held.iter().any(|s| s == "WATCHDOG=1"), "{held:?}");
        assert!(
            held.iter()
                .any(|s| s.starts_with("STATUS=") && s.contains("task 'worker' silent")),
            "{held:?}"
        );

        // It reports again: pings resume.
        worker.beat();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let resumed: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(resumed.iter().any(|s| s == "WATCHDOG=1"), "{resumed:?}");

        // A task that ends (handle dropped, e.g. by a panic) is never alive again.
        drop(worker);
        assert_eq!(beats.stalled().len(), 1);
        assert!(beats.stalled()[0].ended);
        cancel.cancel();
        wd.await.unwrap();
    }

    #[test]
    fn a_task_told_to_stop_is_retired_one_that_ends_by_itself_is_dead() {
        let beats = Heartbeats::new();
        let _daemon_long = beats.register("control", Duration::from_secs(60));
        // A root removed by a reload: its token is cancelled, then its task returns.
        let token = CancellationToken::new();
        let root = beats.register_until("runs:/a", Duration::from_secs(60), &token);
        assert_eq!(beats.status().len(), 2);
        token.cancel();
        drop(root);
        assert!(beats.stalled().is_empty(), "{:?}", beats.stalled());
        let names: Vec<String> = beats.status().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["control"], "the retired task left the registry");

        // The same kind of task ending while still wanted (a panic): dead, pings stop.
        let token = CancellationToken::new();
        let node = beats.register_until("health:gpu1", Duration::from_secs(60), &token);
        drop(node);
        let stalled = beats.stalled();
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].to_string(), "task 'health:gpu1' has ended");

        // Reload after reload does not grow the registry.
        for i in 0..100 {
            let t = CancellationToken::new();
            let hb = beats.register_until(&format!("runs:/r{i}"), Duration::from_secs(60), &t);
            t.cancel();
            drop(hb);
        }
        assert_eq!(beats.status().len(), 2);
    }
}
