//! `ugroctl`: the command-line client of ugro-monitor. Argument parsing and rendering only;
//! everything it knows comes from the daemon over the control socket (ugro-api).

mod logs;
mod render;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod snapshots;
mod socket;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ugro_api::{
    Client, ClientError, Events, NodeHealth, Nodes, ReloadResult, RunInfo, Runs, Status,
};

/// The heading of the options every command takes, kept apart from each command's own.
const GLOBAL: &str = "Global options";

/// Ask the ugro-monitor daemon about nodes, runs and events.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Control socket [default: $UGRO_SOCKET, then /run/ugro/ugro.sock, then $XDG_RUNTIME_DIR/ugro/ugro.sock]
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    socket: Option<PathBuf>,
    /// Print the daemon's JSON instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// Give up on the daemon after this long.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, help_heading = GLOBAL)]
    timeout: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Daemon version, uptime, paths and counts.
    Status,
    /// Node health: state, score, last and next check, failing checks. Exit 1 if any node is
    /// not healthy.
    Health {
        /// Only this node, with every check.
        node: Option<String>,
        /// Keep the table current from the daemon's change stream (a line per change when
        /// stdout is not a terminal).
        #[arg(long)]
        watch: bool,
    },
    /// Run a health sweep of NODE now and print it. Exit 1 if the node is not healthy.
    Check {
        /// The node's name, as configured (`[[nodes]] name`; "local" for this machine by default).
        node: String,
    },
    /// Runs under the log roots: progress, status, ETA. Exit 1 if any shown run failed or is stuck.
    Runs {
        /// Only runs with this status (running, finished, stuck, failed, outdated, unknown).
        #[arg(long)]
        status: Option<String>,
        /// Only runs under this root (absolute path, as configured).
        #[arg(long)]
        root: Option<String>,
        /// Keep the table current from the daemon's change stream (a line per change when
        /// stdout is not a terminal).
        #[arg(long)]
        watch: bool,
    },
    /// One run in detail: progress, scores, epoch times, process, error and diagnostic.
    Run {
        /// The run's id, as the RUN column of `ugroctl runs` shows it (its path under its root).
        id: String,
    },
    /// The last lines of a run's log, or follow it (-f). Terminal escapes in the log are shown
    /// as ^[ and ^X unless --raw. Exit 2 if the run is unknown.
    Logs {
        /// The run's id, as the RUN column of `ugroctl runs` shows it.
        run: String,
        /// How many lines from the end.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        /// Then print what is appended, until interrupted (resumes across daemon restarts).
        #[arg(short, long)]
        follow: bool,
        /// Another of the run's log files (the `logs` of `ugroctl --json run RUN`); default its
        /// newest.
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
        /// Print the log's bytes as they are, escapes included.
        #[arg(long)]
        raw: bool,
    },
    /// Recent events (daemon, config, nodes, runs), oldest first.
    Events {
        /// How far back: a duration ("24h", "7d") or an RFC 3339 time.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Only this kind; a trailing '.' matches a family, e.g. "daemon.".
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this subject (a node, a run id, "daemon").
        #[arg(long)]
        subject: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 200)]
        limit: u32,
        /// Then print each new event as it is stored, until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// The nightly summary. Without options: make one now (since last night's) and print its
    /// Markdown. With --date: print the stored summary of that date.
    Summary {
        /// The stored summary of this date (YYYY-MM-DD, in summary.timezone).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
        /// Email it (queued in the daemon's outbox; retried until delivered).
        #[arg(long)]
        send: bool,
        /// What to print.
        #[arg(long, value_enum, default_value = "md")]
        format: SummaryFormat,
        /// List the stored summaries and their email state instead.
        #[arg(long, conflicts_with_all = ["date", "send"])]
        list: bool,
    },
    /// Make the daemon re-read its configuration (like SIGHUP); prints the problems if rejected.
    Reload,
    /// Print a shell completion script.
    Completions {
        /// The shell to write the completion script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SummaryFormat {
    /// Markdown, as on disk and in the email's text part.
    Md,
    /// HTML, as in the email.
    Html,
}

/// Exit codes: 0 ok, 1 the daemon answered "no" (failed, unhealthy, forbidden), 2 usage or
/// daemon unreachable.
const EXIT_FAILED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "ugroctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ugroctl: cannot start: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let socket = match socket::resolve(cli.socket.as_deref()) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let client = Client::new(&socket).with_timeout(cli.timeout);
    if let Some(what) = watch::Watch::of(&cli.command) {
        return watch::follow(&client, what, cli.json).await;
    }
    if let Command::Logs {
        run,
        lines,
        follow,
        file,
        raw,
    } = &cli.command
    {
        let args = logs::Args {
            run: run.clone(),
            lines: *lines,
            follow: *follow,
            file: file.clone(),
            raw: *raw,
            json: cli.json,
        };
        return logs::logs(&client, args).await;
    }
    let mut unhealthy = false;
    let result = match &cli.command {
        Command::Health { node: None, .. } => client.get::<Nodes>("/v1/nodes").await.map(|n| {
            unhealthy = n.nodes.iter().any(|n| !n.healthy);
            output(cli.json, &n, || render::nodes(&n, chrono::Utc::now()));
        }),
        Command::Health {
            node: Some(name), ..
        } => client
            .get::<NodeHealth>(&format!("/v1/nodes/{}", encode(name)))
            .await
            .map(|n| {
                unhealthy = !n.healthy;
                output(cli.json, &n, || render::node(&n, chrono::Utc::now()));
            }),
        Command::Runs { status, root, .. } => {
            let mut uri = String::from("/v1/runs");
            let mut sep = '?';
            for (k, v) in [("status", status), ("root", root)] {
                if let Some(v) = v {
                    uri.push_str(&format!("{sep}{k}={}", encode(v)));
                    sep = '&';
                }
            }
            client.get::<Runs>(&uri).await.map(|r| {
                unhealthy = r.runs.iter().any(|r| {
                    matches!(
                        r.status,
                        ugro_api::RunStatus::Failed | ugro_api::RunStatus::Stuck
                    )
                });
                output(cli.json, &r, || render::runs(&r, chrono::Utc::now()));
            })
        }
        Command::Run { id } => client
            .get::<RunInfo>(&format!("/v1/runs/{}", encode_id(id)))
            .await
            .map(|r| {
                output(cli.json, &r, || render::run(&r, chrono::Utc::now()));
            }),
        Command::Check { node } => client
            .post::<NodeHealth>(&format!("/v1/nodes/{}/check", encode(node)), None)
            .await
            .map(|n| {
                // What this sweep found, not the confirmed state.
                unhealthy = !n.observed.is_healthy();
                output(cli.json, &n, || render::node(&n, chrono::Utc::now()));
            }),
        Command::Status => client.get::<Status>("/v1/status").await.map(|s| {
            output(cli.json, &s, || render::status(&s, chrono::Utc::now()));
        }),
        Command::Events {
            since,
            kind,
            subject,
            limit,
            ..
        } => {
            let mut uri = format!("/v1/events?since={}&limit={limit}", encode(since));
            if let Some(k) = kind {
                uri.push_str(&format!("&kind={}", encode(k)));
            }
            if let Some(s) = subject {
                uri.push_str(&format!("&subject={}", encode(s)));
            }
            client.get::<Events>(&uri).await.map(|e| {
                output(cli.json, &e, || render::events(&e, chrono::Utc::now()));
            })
        }
        Command::Summary { list: true, .. } => client
            .get::<ugro_api::Summaries>("/v1/summaries")
            .await
            .map(|s| {
                output(cli.json, &s, || render::summaries(&s, chrono::Utc::now()));
            }),
        Command::Summary {
            date, send, format, ..
        } => {
            let doc = match (date, send) {
                (None, send) => {
                    client
                        .post::<ugro_api::SummaryDoc>(
                            "/v1/summary",
                            Some(serde_json::json!({ "send": send })),
                        )
                        .await
                }
                (Some(d), false) => {
                    client
                        .get::<ugro_api::SummaryDoc>(&format!("/v1/summaries/{}", encode(d)))
                        .await
                }
                (Some(d), true) => {
                    client
                        .post::<ugro_api::SummaryDoc>(
                            &format!("/v1/summaries/{}/send", encode(d)),
                            None,
                        )
                        .await
                }
            };
            doc.map(|d| {
                if *send {
                    let mut err = anstream::stderr();
                    let _ = writeln!(
                        err,
                        "ugroctl: the summary of {} is queued for email (`ugroctl summary --list` shows its delivery)",
                        d.info.date
                    );
                }
                output(cli.json, &d, || match format {
                    SummaryFormat::Md => d.markdown.clone(),
                    SummaryFormat::Html => d.html.clone(),
                });
            })
        }
        Command::Reload => client
            .post::<ReloadResult>("/v1/reload", None)
            .await
            .map(|r| {
                output(cli.json, &r, || render::reload(&r));
            }),
        Command::Completions { .. } | Command::Logs { .. } => Ok(()),
    };
    match result {
        Ok(()) if unhealthy => ExitCode::from(EXIT_FAILED),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e, &socket),
    }
}

fn output<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    let text = if json {
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    } else {
        human()
    };
    let mut out = anstream::stdout();
    let _ = writeln!(out, "{}", text.trim_end());
}

fn report(e: &ClientError, socket: &std::path::Path) -> ExitCode {
    let mut err = anstream::stderr();
    match e {
        ClientError::Connect { cause, .. } => {
            let hint = match cause.kind() {
                std::io::ErrorKind::NotFound => "no such socket: is the daemon running?",
                std::io::ErrorKind::ConnectionRefused => {
                    "nothing listens on it: the daemon is not running (stale socket)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied: run as root or as a member of the daemon's control_group"
                }
                _ => "",
            };
            let _ = writeln!(
                err,
                "ugroctl: cannot reach ugro-monitor at {}: {cause}{}{hint}\n  check: systemctl status ugro-monitor (or journalctl -u ugro-monitor)\n  or point ugroctl elsewhere: --socket PATH / UGRO_SOCKET",
                socket.display(),
                if hint.is_empty() { "" } else { " — " },
            );
            ExitCode::from(EXIT_UNREACHABLE)
        }
        ClientError::Timeout { .. }
        | ClientError::ProtocolMismatch { .. }
        | ClientError::Transport { .. }
        | ClientError::Decode { .. } => {
            let _ = writeln!(err, "ugroctl: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
        ClientError::Api {
            message,
            details,
            code,
            ..
        } => {
            let _ = writeln!(err, "ugroctl: {message} ({code})");
            for d in details {
                let _ = writeln!(err, "  {d}");
            }
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a run id for a path, segment by segment (its slashes kept).
fn encode_id(id: &str) -> String {
    id.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("2026-11-22T10:00:00+01:00"),
            "2026-11-22T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(encode("daemon."), "daemon.");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every positional and option of every command says what it is, and the global options
    /// sit under their own heading in each command's help.
    #[test]
    fn every_argument_is_described_and_globals_are_grouped() {
        let mut cli = Cli::command();
        cli.build();
        let mut undescribed = Vec::new();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() {
                    undescribed.push(format!("{} {id}", cmd.get_name()));
                }
                if matches!(id, "socket" | "json" | "timeout") {
                    assert_eq!(arg.get_help_heading(), Some(GLOBAL), "{id}");
                } else {
                    assert_eq!(arg.get_help_heading(), None, "{} {id}", cmd.get_name());
                }
            }
        }
        assert!(undescribed.is_empty(), "undescribed: {undescribed:?}");
        let help = Cli::command()
            .try_get_matches_from(["ugroctl", "run", "--help"])
            .unwrap_err()
            .render()
            .to_string();
        assert!(help.contains("The run's id"), "{help}");
        let own = help.find("Options:").unwrap();
        let global = help.find("Global options:").unwrap();
        assert!(own < global, "{help}");
    }
}
