//! systemd integration: the notify protocol (READY, RELOADING, STATUS, WATCHDOG, STOPPING) and
//! the task heartbeats that decide whether the watchdog may ping. Without `NOTIFY_SOCKET` every
//! notification is a no-op and the daemon runs the same.

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
    tasks: Mutex<Vec<Beat>>,
}

/// A task's handle for reporting in. Dropping it (the task returned or panicked) marks the
/// task ended, which stops the watchdog pings.
#[derive(Debug)]
pub struct Heartbeat {
    registry: Arc<Heartbeats>,
    index: usize,
}

impl Heartbeats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Beat>> {
        // A panic while holding this lock cannot leave the data inconsistent (plain stores).
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a task that promises to report at least every `max_gap`.
    pub fn register(self: &Arc<Self>, task: &str, max_gap: Duration) -> Heartbeat {
        let mut tasks = self.lock();
        tasks.push(Beat {
            task: task.to_string(),
            last: self.origin.elapsed(),
            max_gap,
            ended: false,
        });
        Heartbeat {
            registry: Arc::clone(self),
            index: tasks.len() - 1,
        }
    }

    /// The tasks that are not alive now.
    pub fn stalled(&self) -> Vec<liveness::Stalled> {
        liveness::stalled(&self.lock(), self.origin.elapsed())
    }

    pub fn status(&self) -> Vec<TaskStatus> {
        let now = self.origin.elapsed();
        self.lock()
            .iter()
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
        if let Some(b) = self.registry.lock().get_mut(self.index) {
            b.last = now;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(b) = self.registry.lock().get_mut(self.index) {
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
}
