//! `ugro-monitor`: the daemon binary. Parses arguments, sets up logging, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ugro_monitor::{EXIT_CONFIG, config, daemon, systemd::Notifier};

/// Watches GPU nodes and ML experiment runs; answers `ugroctl` on a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file [default: $UGRO_CONFIG, then /etc/ugro/ugro.toml]
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the config, print every problem as file:line:col, exit 0 (valid) or 78.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    let path = config::config_path(
        args.config.as_deref(),
        std::env::var_os("UGRO_CONFIG").as_deref(),
    );

    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            if !args.check_config {
                eprintln!("ugro-monitor: not started: fix the configuration above");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        println!(
            "{}: OK ({} node{}, {} root{})",
            cfg.path.display(),
            cfg.nodes.len(),
            if cfg.nodes.len() == 1 { "" } else { "s" },
            cfg.roots.len(),
            if cfg.roots.len() == 1 { "" } else { "s" }
        );
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ugro-monitor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(daemon::run(cfg, Notifier::systemd()));
    // Don't let a stuck blocking task hold the process past the stop deadline.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ugro-monitor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The filter when neither `UGRO_LOG` nor `RUST_LOG` is set: the daemon's info lines.
const DEFAULT_LOG_FILTER: &str = "info";

/// Logs to stderr; `UGRO_LOG` (or `RUST_LOG`) sets the filter. Under systemd (journal attached)
/// timestamps are left to the journal.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("UGRO_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        // Colour only for a person at a terminal: never escape codes in a file or a pipe.
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.with_ansi(tty).init();
    }
}
