//! The ugro-monitor daemon as a library, one module per concern (each says what it owns in its
//! first line; docs/ARCHITECTURE.md has the map). The `ugro-monitor` binary only parses its
//! arguments, sets up logging and calls [`daemon::run`].

pub mod chart;
pub mod config;
pub mod control;
pub mod daemon;
pub mod files;
pub mod health;
pub mod host;
pub mod http;
pub mod local;
pub mod logs;
pub mod mail;
pub mod metrics;
pub mod outbox;
pub mod runs;
pub mod sampler;
pub mod scan;
pub mod scheduler;
pub mod shared;
pub mod slurm;
pub mod ssh;
pub mod store;
pub mod stream;
pub mod summary;
pub mod supervise;
pub mod systemd;
pub mod view;
pub mod web;

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
