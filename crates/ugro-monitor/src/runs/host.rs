//! What run tracking needs from the daemon, as a narrow handle ([`RunsHost`]): the `Runs` view
//! it publishes to, the store, the configuration in force, the event log, and the remote nodes'
//! SSH sessions and GPU readings that process matching asks. [`Shared`] is the daemon's one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::config::{Config, NodeHost};
use crate::shared::Shared;
use crate::ssh::NodeSession;
use crate::store::{NewEvent, Store};

use super::Runs;

/// What a root's tracker and writer use of their surroundings.
pub trait RunsHost: Send + Sync + 'static {
    /// The run lists served by the API (published to after every change).
    fn runs(&self) -> &Runs;
    /// Where runs, epochs and events are stored.
    fn store(&self) -> &Store;
    /// The configuration in force now (the root names, the roots listed before this one, the
    /// nodes and the probe deadline are read from it).
    fn config(&self) -> Arc<Config>;
    /// Records an event (never fails; failures are logged by the implementation).
    fn event(&self, e: NewEvent) -> impl Future<Output = ()> + Send;
    /// The SSH session of each remote node that has one, by node name (the process and GPU
    /// lists of remote nodes are asked over them).
    fn remote_sessions(&self) -> Vec<(String, Arc<NodeSession>)>;
    /// The GPU index of each GPU uuid, from the nodes' health readings.
    fn gpu_indices(&self) -> HashMap<String, u32>;
}

impl RunsHost for Shared {
    fn runs(&self) -> &Runs {
        &self.runs
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn config(&self) -> Arc<Config> {
        Shared::config(self)
    }

    fn event(&self, e: NewEvent) -> impl Future<Output = ()> + Send {
        Shared::event(self, e)
    }

    fn remote_sessions(&self) -> Vec<(String, Arc<NodeSession>)> {
        self.health
            .runtimes()
            .into_iter()
            .filter(|rt| matches!(rt.cfg.host, NodeHost::Remote(_)))
            .filter_map(|rt| Some((rt.cfg.name.clone(), rt.session()?.clone())))
            .collect()
    }

    fn gpu_indices(&self) -> HashMap<String, u32> {
        self.health
            .runtimes()
            .iter()
            .flat_map(|rt| rt.report().gpus)
            .map(|g| (g.uuid, g.index))
            .collect()
    }
}
