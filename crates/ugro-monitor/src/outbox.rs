//! The durable outbox: emails to send are stored first, retried with exponential backoff for up to 24 h across restarts; delivery and giving up are events.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::daemon::Shared;
use crate::systemd::Heartbeat;

/// The outbox's in-memory side: wakes the sender when a message is queued.
#[derive(Debug, Default)]
pub struct Outbox {
    wake: tokio::sync::Notify,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the sender to look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Sends queued emails until `cancel`.
pub async fn supervise(shared: Arc<Shared>, cancel: CancellationToken, hb: Heartbeat) {
    let mut beat = tokio::time::interval(std::time::Duration::from_secs(20));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = beat.tick() => hb.beat(),
            _ = shared.outbox.wake.notified() => {}
        }
    }
}
