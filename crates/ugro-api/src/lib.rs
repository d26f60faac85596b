//! Wire contract between the ugro-monitor daemon and its clients: JSON types, the protocol
//! version, and the HTTP-over-Unix-socket client used by `ugroctl` and the tests.

pub mod client;
pub mod stream;
pub mod types;

pub use client::{Client, ClientError};
pub use types::*;

/// Version of the control protocol. Bump it when a field of a `/v1` body is renamed or removed;
/// adding fields does not need a bump.
pub const PROTOCOL_VERSION: u32 = 1;

/// Response header carrying [`PROTOCOL_VERSION`] on every answer of the daemon, errors included,
/// so a client can tell "daemon too old/new" apart from other failures.
pub const PROTOCOL_HEADER: &str = "ugro-protocol";

/// Largest request body the daemon accepts.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
