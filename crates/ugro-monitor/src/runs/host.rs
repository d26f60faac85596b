//! What run tracking needs from the daemon beyond the common [`Host`] services, as a narrow
//! handle ([`RunsHost`]): the `Runs` view it publishes to, and the remote nodes' SSH sessions
//! and GPU readings that process matching asks. The daemon's `Shared` implements it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::host::Host;
use crate::ssh::NodeSession;

use super::Runs;

/// What a root's tracker and writer use of their surroundings.
pub trait RunsHost: Host {
    /// The run lists served by the API (published to after every change).
    fn runs(&self) -> &Runs;
    /// The SSH session of each remote node that has one, by node name (the process and GPU
    /// lists of remote nodes are asked over them).
    fn remote_sessions(&self) -> Vec<(String, Arc<NodeSession>)>;
    /// The GPU index of each GPU uuid, from the nodes' health readings.
    fn gpu_indices(&self) -> HashMap<String, u32>;
}
