//! What every loop of the daemon uses of its surroundings, as one narrow handle ([`Host`]):
//! the configuration in force, the store, the event log and the heartbeat registry. Each
//! subsystem adds what it alone needs in a trait of its own (`HealthHost`, `RunsHost`, …, in
//! its module); the daemon's [`Shared`](crate::shared::Shared) implements them all, so no
//! subsystem names the daemon's state.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::store::{NewEvent, Store};
use crate::systemd::Heartbeats;

/// The services every loop takes from the daemon.
pub trait Host: Send + Sync + 'static {
    /// The configuration in force now.
    fn config(&self) -> Arc<Config>;
    /// Watches the configuration (loops re-read it after a reload).
    fn subscribe(&self) -> watch::Receiver<Arc<Config>>;
    /// Where events, samples, sweeps and jobs are stored.
    fn store(&self) -> &Store;
    /// The registry the loops beat to (and register their sub-tasks with).
    fn heartbeats(&self) -> &Arc<Heartbeats>;
    /// Records an event and logs it (never fails; failures are logged by the implementation).
    fn event(&self, e: NewEvent) -> impl Future<Output = ()> + Send;
}
