//! The ugro-monitor daemon as a library: configuration, the SQLite store, the control API,
//! systemd integration and the daemon's life cycle. The `ugro-monitor` binary only parses its
//! arguments, sets up logging and calls [`daemon::run`].

pub mod config;
pub mod control;
pub mod daemon;
pub mod health;
pub mod metrics;
pub mod runs;
pub mod scan;
pub mod ssh;
pub mod store;
pub mod systemd;

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
